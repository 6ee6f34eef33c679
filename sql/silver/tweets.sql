-- silver.tweets: one row per post, cleaned and flattened, with its author and place looked up in
-- `includes`. Reads the batch's decoded messages (`bronze`); the tweet functions (clean_text,
-- extract_*, sentiment, detect_lang, company_of, bbox_centroid) do the text and geo work.
--
-- id, created_at (timestamp, UTC), created_date (its UTC date: the partition)
-- platform: where the post comes from, `x` or `bluesky` (the message's `platform`; X's
--     messages have none: x)
-- author_id, author_username, author_location, author_followers, author_tier:
--     mega >= 1,000,000 followers, macro >= 100,000, micro >= 10,000, else nano; NULL when the
--     follower count is missing. The thresholds live here only.
-- lang: X's language, or detect_lang(full_text) when X gives none or `und`
-- text (as delivered), full_text (`note_tweet.text` for long posts, else text), is_long
-- clean_text: full_text without RT prefix, URLs and @mentions, entities decoded, spaces collapsed
-- is_retweet, is_quote, is_reply and retweeted_id, quoted_id, replied_to_id (X attaches at
--     most two references: a reply that quotes), conversation_id, in_reply_to_user_id
-- hashtags, cashtags, mentions: lower-cased, without sigil, distinct, from full_text; a
--     Bluesky post's mentions are its mention entities' handles (`alice.bsky.social`, which
--     X's username rules would cut at the first dot)
-- like_count, retweet_count, reply_count, quote_count, impression_count
-- engagement (likes + retweets + replies + quotes) and engagement_tier: viral >= 10,000,
--     high >= 1,000, medium >= 100, else low; NULL without metrics
-- rule_ids, rule_tags: the matching stream rules, in X's order
-- company: the first `company:<ID>` rule tag, else company_of(cashtags), else
--     company_of(clean_text), by the aliases of companies.csv; company_source says which:
--     rule | cashtag | text (NULL when no company)
-- sentiment: VADER compound of clean_text in [-1, 1]; sentiment_label: positive >= 0.05,
--     negative <= -0.05, else neutral
-- geo_source: point (exact coordinates) | place (the place's bbox centroid) | profile (only
--     the author's free-text location) | none; lon, lat: the point, else the centroid
-- place_id, place_name, place_full_name, place_type, country, country_code, place_bbox
--     ([west, south, east, north]): the tagged place when `includes` has it
-- source_topic, source_partition, source_offset, batch_id, ingested_at: lineage
--
-- A post delivered twice in one batch keeps its first delivery (lowest topic, partition,
-- offset); the text functions run after that, once per post. A post delivered again in a later
-- batch (X's backfill_minutes, a rewound Bluesky cursor, a producer retry) is not inserted again
-- when silver already holds its id with a created_date in the 2 days before the batch's day:
-- the models reading silver see only the posts inserted, so gold counts each post once.
-- @materialized: insert_new
-- @unique_key: id
-- @dedup_window: created_date 2 days
-- @partition_by: created_date
-- The author and the place come from the message's own `includes` (find_by), the rules from
-- its `matching_rules` (pluck, tag_value): per-row lookups, no join or aggregate over the batch.
WITH posts AS (
    SELECT
        _topic, _partition, _offset, _batch_id, _ingested_at,
        data['id'] AS id,
        coalesce(platform, 'x') AS platform,
        data['created_at'] AS created_at,
        data['author_id'] AS author_id,
        data['lang'] AS lang,
        data['text'] AS text,
        coalesce(data['note_tweet']['text'], data['text']) AS full_text,
        data['note_tweet']['text'] IS NOT NULL AS is_long,
        data['conversation_id'] AS conversation_id,
        data['in_reply_to_user_id'] AS in_reply_to_user_id,
        CASE platform
            WHEN 'bluesky' THEN array_distinct(pluck(data['entities']['mentions'], 'username'))
        END AS entity_mentions,
        CASE 'retweeted'
            WHEN data['referenced_tweets'][1]['type'] THEN data['referenced_tweets'][1]['id']
            WHEN data['referenced_tweets'][2]['type'] THEN data['referenced_tweets'][2]['id']
        END AS retweeted_id,
        CASE 'quoted'
            WHEN data['referenced_tweets'][1]['type'] THEN data['referenced_tweets'][1]['id']
            WHEN data['referenced_tweets'][2]['type'] THEN data['referenced_tweets'][2]['id']
        END AS quoted_id,
        CASE 'replied_to'
            WHEN data['referenced_tweets'][1]['type'] THEN data['referenced_tweets'][1]['id']
            WHEN data['referenced_tweets'][2]['type'] THEN data['referenced_tweets'][2]['id']
        END AS replied_to_id,
        data['public_metrics'] AS metrics,
        data['geo']['place_id'] AS place_id,
        data['geo']['coordinates']['coordinates'] AS point,
        find_by(includes['users'], 'id', data['author_id']) AS author,
        find_by(includes['places'], 'id', data['geo']['place_id']) AS place,
        pluck(matching_rules, 'id') AS rule_ids,
        pluck(matching_rules, 'tag') AS rule_tags
    FROM bronze
),
-- Sorted by id, then in delivery order, a row is its post's first delivery when the row before
-- it holds another id. (A window partitioned by id makes one partition per post: the batch's
-- SQL took half as long again.) Sorting after the flattening above moves only silver's
-- columns, not each message's whole `data` and `includes`.
deliveries AS (
    SELECT *, lag(id) OVER (ORDER BY id, _topic, _partition, _offset) AS previous_id
    FROM posts
),
texts AS (
    SELECT
        *,
        clean_text(full_text) AS clean_text,
        extract_hashtags(full_text) AS hashtags,
        extract_cashtags(full_text) AS cashtags,
        coalesce(entity_mentions, extract_mentions(full_text)) AS mentions
    FROM deliveries
    WHERE previous_id IS DISTINCT FROM id
),
scored AS (
    SELECT
        *,
        sentiment(clean_text) AS sentiment,
        company_of(cashtags) AS cashtag_company,
        company_of(clean_text) AS text_company
    FROM texts
),
joined AS (
    SELECT
        *,
        author['username'] AS username, author['location'] AS location,
        author['public_metrics']['followers_count'] AS followers,
        place['name'] AS place_name, place['full_name'] AS place_full_name,
        place['place_type'] AS place_type, place['country'] AS country,
        place['country_code'] AS country_code, place['geo']['bbox'] AS bbox,
        bbox_centroid(place['geo']['bbox']) AS centroid,
        upper(tag_value(rule_tags, 'company')) AS rule_company,
        point[1] BETWEEN -180 AND 180 AND point[2] BETWEEN -90 AND 90 AS has_point,
        metrics['like_count'] + metrics['retweet_count'] + metrics['reply_count']
            + metrics['quote_count'] AS engagement
    FROM scored
)
SELECT
    id,
    platform,
    created_at,
    CAST(created_at AS DATE) AS created_date,
    author_id,
    username AS author_username,
    location AS author_location,
    followers AS author_followers,
    CASE
        WHEN followers >= 1000000 THEN 'mega'
        WHEN followers >= 100000 THEN 'macro'
        WHEN followers >= 10000 THEN 'micro'
        WHEN followers >= 0 THEN 'nano'
    END AS author_tier,
    coalesce(nullif(lang, 'und'), detect_lang(full_text)) AS lang,
    text,
    full_text,
    is_long,
    clean_text,
    retweeted_id IS NOT NULL AS is_retweet,
    quoted_id IS NOT NULL AS is_quote,
    replied_to_id IS NOT NULL AS is_reply,
    retweeted_id,
    quoted_id,
    replied_to_id,
    conversation_id,
    in_reply_to_user_id,
    hashtags,
    cashtags,
    mentions,
    metrics['like_count'] AS like_count,
    metrics['retweet_count'] AS retweet_count,
    metrics['reply_count'] AS reply_count,
    metrics['quote_count'] AS quote_count,
    metrics['impression_count'] AS impression_count,
    engagement,
    CASE
        WHEN engagement >= 10000 THEN 'viral'
        WHEN engagement >= 1000 THEN 'high'
        WHEN engagement >= 100 THEN 'medium'
        WHEN engagement >= 0 THEN 'low'
    END AS engagement_tier,
    rule_ids,
    rule_tags,
    coalesce(rule_company, cashtag_company, text_company) AS company,
    CASE
        WHEN rule_company IS NOT NULL THEN 'rule'
        WHEN cashtag_company IS NOT NULL THEN 'cashtag'
        WHEN text_company IS NOT NULL THEN 'text'
    END AS company_source,
    sentiment,
    sentiment_label(sentiment) AS sentiment_label,
    CASE
        WHEN has_point THEN 'point'
        WHEN centroid IS NOT NULL THEN 'place'
        WHEN trim(location) <> '' THEN 'profile'
        ELSE 'none'
    END AS geo_source,
    CASE WHEN has_point THEN point[1] ELSE centroid['lon'] END AS lon,
    CASE WHEN has_point THEN point[2] ELSE centroid['lat'] END AS lat,
    place_id,
    place_name,
    place_full_name,
    place_type,
    country,
    country_code,
    bbox AS place_bbox,
    _topic AS source_topic,
    _partition AS source_partition,
    _offset AS source_offset,
    _batch_id AS batch_id,
    _ingested_at AS ingested_at
FROM joined
