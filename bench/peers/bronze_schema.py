"""The decoded message: the nested schema of tweetlake's bronze table (src/decode/schema.rs),
read from a bronze table tweetlake wrote, so that both pipelines decode the same fields.
Fields a message has beyond it are ignored; the whole message is kept in `_raw`."""

import pyarrow as pa

# A post: the message's `data`, and each of `includes.tweets` (the posts it references).
TWEET = pa.struct([
    pa.field("id", pa.string()),
    pa.field("text", pa.string()),
    pa.field("edit_history_tweet_ids", pa.list_(pa.string())),
    pa.field("author_id", pa.string()),
    pa.field("created_at", pa.timestamp("us", tz="UTC")),
    pa.field("lang", pa.string()),
    pa.field("conversation_id", pa.string()),
    pa.field("in_reply_to_user_id", pa.string()),
    pa.field("possibly_sensitive", pa.bool_()),
    pa.field("reply_settings", pa.string()),
    pa.field("source", pa.string()),
    pa.field("geo", pa.struct([
        pa.field("place_id", pa.string()),
        pa.field("coordinates", pa.struct([
            pa.field("type", pa.string()),
            pa.field("coordinates", pa.list_(pa.float64()))
        ]))
    ])),
    pa.field("entities", pa.struct([
        pa.field("hashtags", pa.list_(pa.struct([
            pa.field("start", pa.int32()),
            pa.field("end", pa.int32()),
            pa.field("tag", pa.string())
        ]))),
        pa.field("cashtags", pa.list_(pa.struct([
            pa.field("start", pa.int32()),
            pa.field("end", pa.int32()),
            pa.field("tag", pa.string())
        ]))),
        pa.field("mentions", pa.list_(pa.struct([
            pa.field("start", pa.int32()),
            pa.field("end", pa.int32()),
            pa.field("username", pa.string()),
            pa.field("id", pa.string())
        ]))),
        pa.field("urls", pa.list_(pa.struct([
            pa.field("start", pa.int32()),
            pa.field("end", pa.int32()),
            pa.field("url", pa.string()),
            pa.field("expanded_url", pa.string()),
            pa.field("display_url", pa.string()),
            pa.field("unwound_url", pa.string()),
            pa.field("title", pa.string()),
            pa.field("description", pa.string()),
            pa.field("status", pa.int32()),
            pa.field("media_key", pa.string())
        ]))),
        pa.field("annotations", pa.list_(pa.struct([
            pa.field("start", pa.int32()),
            pa.field("end", pa.int32()),
            pa.field("probability", pa.float64()),
            pa.field("type", pa.string()),
            pa.field("normalized_text", pa.string())
        ])))
    ])),
    pa.field("public_metrics", pa.struct([
        pa.field("retweet_count", pa.int64()),
        pa.field("reply_count", pa.int64()),
        pa.field("like_count", pa.int64()),
        pa.field("quote_count", pa.int64()),
        pa.field("impression_count", pa.int64()),
        pa.field("bookmark_count", pa.int64())
    ])),
    pa.field("referenced_tweets", pa.list_(pa.struct([
        pa.field("type", pa.string()),
        pa.field("id", pa.string())
    ]))),
    pa.field("note_tweet", pa.struct([
        pa.field("text", pa.string()),
        pa.field("entities", pa.struct([
            pa.field("hashtags", pa.list_(pa.struct([
                pa.field("start", pa.int32()),
                pa.field("end", pa.int32()),
                pa.field("tag", pa.string())
            ]))),
            pa.field("cashtags", pa.list_(pa.struct([
                pa.field("start", pa.int32()),
                pa.field("end", pa.int32()),
                pa.field("tag", pa.string())
            ]))),
            pa.field("mentions", pa.list_(pa.struct([
                pa.field("start", pa.int32()),
                pa.field("end", pa.int32()),
                pa.field("username", pa.string()),
                pa.field("id", pa.string())
            ]))),
            pa.field("urls", pa.list_(pa.struct([
                pa.field("start", pa.int32()),
                pa.field("end", pa.int32()),
                pa.field("url", pa.string()),
                pa.field("expanded_url", pa.string()),
                pa.field("display_url", pa.string()),
                pa.field("unwound_url", pa.string()),
                pa.field("title", pa.string()),
                pa.field("description", pa.string()),
                pa.field("status", pa.int32()),
                pa.field("media_key", pa.string())
            ])))
        ]))
    ])),
    pa.field("attachments", pa.struct([
        pa.field("media_keys", pa.list_(pa.string())),
        pa.field("poll_ids", pa.list_(pa.string()))
    ]))
])

MESSAGE = pa.schema([
    pa.field("data", TWEET),
    pa.field("includes", pa.struct([
        pa.field("users", pa.list_(pa.struct([
            pa.field("id", pa.string()),
            pa.field("name", pa.string()),
            pa.field("username", pa.string()),
            pa.field("location", pa.string()),
            pa.field("description", pa.string()),
            pa.field("created_at", pa.timestamp("us", tz="UTC")),
            pa.field("protected", pa.bool_()),
            pa.field("verified", pa.bool_()),
            pa.field("verified_type", pa.string()),
            pa.field("url", pa.string()),
            pa.field("profile_image_url", pa.string()),
            pa.field("public_metrics", pa.struct([
                pa.field("followers_count", pa.int64()),
                pa.field("following_count", pa.int64()),
                pa.field("tweet_count", pa.int64()),
                pa.field("listed_count", pa.int64()),
                pa.field("like_count", pa.int64())
            ]))
        ]))),
        pa.field("places", pa.list_(pa.struct([
            pa.field("id", pa.string()),
            pa.field("full_name", pa.string()),
            pa.field("name", pa.string()),
            pa.field("country", pa.string()),
            pa.field("country_code", pa.string()),
            pa.field("place_type", pa.string()),
            pa.field("contained_within", pa.list_(pa.string())),
            pa.field("geo", pa.struct([
                pa.field("type", pa.string()),
                pa.field("bbox", pa.list_(pa.float64())),
                pa.field("geometry", pa.struct([
                    pa.field("type", pa.string()),
                    pa.field("coordinates", pa.list_(pa.float64()))
                ]))
            ]))
        ]))),
        pa.field("tweets", pa.list_(TWEET)),
        pa.field("media", pa.list_(pa.struct([
            pa.field("media_key", pa.string()),
            pa.field("type", pa.string()),
            pa.field("url", pa.string()),
            pa.field("preview_image_url", pa.string()),
            pa.field("width", pa.int32()),
            pa.field("height", pa.int32()),
            pa.field("alt_text", pa.string())
        ])))
    ])),
    pa.field("matching_rules", pa.list_(pa.struct([
        pa.field("id", pa.string()),
        pa.field("tag", pa.string())
    ]))),
    pa.field("errors", pa.list_(pa.struct([
        pa.field("title", pa.string()),
        pa.field("detail", pa.string()),
        pa.field("type", pa.string()),
        pa.field("disconnect_type", pa.string()),
        pa.field("connection_issue", pa.string()),
        pa.field("resource_type", pa.string()),
        pa.field("resource_id", pa.string()),
        pa.field("parameter", pa.string())
    ]))),
    pa.field("platform", pa.string()),
])
