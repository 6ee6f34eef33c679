-- silver.tweets: one row per post, flattened from the decoded stream message and joined with
-- its author and place from `includes`. Long posts use their full `note_tweet` text.
-- A post delivered twice in one batch keeps its first delivery (lowest partition, offset).
-- company: the `company:<ID>` tag of the first matching rule, else the first cashtag.
-- geo_source: `point` (exact coordinates), `place` (the place's bbox centroid), `profile`
-- (only the author's free-text location) or `none`.
-- @partition_by: created_date
WITH posts AS (
    SELECT
        _topic, _partition, _offset, _batch_id, _ingested_at,
        data['id'] AS id,
        data['created_at'] AS created_at,
        data['author_id'] AS author_id,
        data['lang'] AS lang,
        data['text'] AS text,
        coalesce(data['note_tweet']['text'], data['text']) AS full_text,
        data['note_tweet']['text'] IS NOT NULL AS is_long,
        data['conversation_id'] AS conversation_id,
        data['in_reply_to_user_id'] AS in_reply_to_user_id,
        data['referenced_tweets'][1]['type'] AS ref1_type,
        data['referenced_tweets'][2]['type'] AS ref2_type,
        data['referenced_tweets'][1]['id'] AS referenced_id,
        data['public_metrics'] AS metrics,
        data['geo']['place_id'] AS place_id,
        data['geo']['coordinates']['coordinates'] AS point,
        data['entities']['cashtags'][1]['tag'] AS first_cashtag,
        matching_rules[1]['tag'] AS rule_tag,
        matching_rules[1]['id'] AS rule_id,
        row_number() OVER (PARTITION BY data['id'] ORDER BY _partition, _offset) AS delivery
    FROM bronze
),
authors AS (
    SELECT _topic, _partition, _offset,
           u['id'] AS user_id, u['username'] AS username, u['location'] AS location,
           u['public_metrics']['followers_count'] AS followers
    FROM (SELECT _topic, _partition, _offset, unnest(includes['users']) AS u FROM bronze)
),
places AS (
    SELECT _topic, _partition, _offset,
           p['id'] AS place_id, p['name'] AS place_name, p['full_name'] AS place_full_name,
           p['place_type'] AS place_type, p['country'] AS country, p['country_code'] AS country_code,
           p['geo']['bbox'] AS bbox
    FROM (SELECT _topic, _partition, _offset, unnest(includes['places']) AS p FROM bronze)
),
hashtags AS (
    SELECT _topic, _partition, _offset, array_agg(DISTINCT lower(h['tag'])) AS hashtags
    FROM (SELECT _topic, _partition, _offset, unnest(data['entities']['hashtags']) AS h FROM bronze)
    GROUP BY _topic, _partition, _offset
),
cashtags AS (
    SELECT _topic, _partition, _offset, array_agg(DISTINCT upper(c['tag'])) AS cashtags
    FROM (SELECT _topic, _partition, _offset, unnest(data['entities']['cashtags']) AS c FROM bronze)
    GROUP BY _topic, _partition, _offset
)
SELECT
    p.id,
    p.created_at,
    CAST(p.created_at AS DATE) AS created_date,
    p.author_id,
    a.username AS author_username,
    a.location AS author_location,
    a.followers AS author_followers,
    p.lang,
    p.text,
    p.full_text,
    p.is_long,
    coalesce(p.ref1_type = 'retweeted' OR p.ref2_type = 'retweeted', false) AS is_retweet,
    coalesce(p.ref1_type = 'quoted' OR p.ref2_type = 'quoted', false) AS is_quote,
    coalesce(p.ref1_type = 'replied_to' OR p.ref2_type = 'replied_to', false) AS is_reply,
    p.referenced_id,
    p.conversation_id,
    h.hashtags,
    c.cashtags,
    p.metrics['like_count'] AS like_count,
    p.metrics['retweet_count'] AS retweet_count,
    p.metrics['reply_count'] AS reply_count,
    p.metrics['quote_count'] AS quote_count,
    p.metrics['impression_count'] AS impression_count,
    p.rule_id,
    p.rule_tag,
    CASE
        WHEN p.rule_tag LIKE 'company:%' THEN upper(substr(p.rule_tag, 9))
        ELSE upper(p.first_cashtag)
    END AS company,
    CASE
        WHEN p.point IS NOT NULL THEN 'point'
        WHEN pl.bbox IS NOT NULL THEN 'place'
        WHEN a.location IS NOT NULL AND a.location <> '' THEN 'profile'
        ELSE 'none'
    END AS geo_source,
    coalesce(p.point[1], (pl.bbox[1] + pl.bbox[3]) / 2) AS lon,
    coalesce(p.point[2], (pl.bbox[2] + pl.bbox[4]) / 2) AS lat,
    pl.place_name,
    pl.place_full_name,
    pl.place_type,
    pl.country,
    pl.country_code,
    p._topic AS source_topic,
    p._partition AS source_partition,
    p._offset AS source_offset,
    p._batch_id AS batch_id,
    p._ingested_at AS ingested_at
FROM posts p
LEFT JOIN authors a
    ON a._topic = p._topic AND a._partition = p._partition AND a._offset = p._offset AND a.user_id = p.author_id
LEFT JOIN places pl
    ON pl._topic = p._topic AND pl._partition = p._partition AND pl._offset = p._offset AND pl.place_id = p.place_id
LEFT JOIN hashtags h
    ON h._topic = p._topic AND h._partition = p._partition AND h._offset = p._offset
LEFT JOIN cashtags c
    ON c._topic = p._topic AND c._partition = p._partition AND c._offset = p._offset
WHERE p.delivery = 1
