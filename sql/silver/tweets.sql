-- silver.tweets: one row per post, cleaned and flattened, with its author and place joined from
-- `includes`. Reads the batch's decoded messages (`bronze`); the tweet functions (clean_text,
-- extract_*, sentiment, detect_lang, company_of, bbox_centroid) do the text and geo work.
--
-- id, created_at (timestamp, UTC), created_date (its UTC date: the partition)
-- author_id, author_username, author_location, author_followers, author_tier:
--     mega >= 1,000,000 followers, macro >= 100,000, micro >= 10,000, else nano; NULL when the
--     follower count is missing. The thresholds live here only.
-- lang: X's language, or detect_lang(full_text) when X gives none or `und`
-- text (as delivered), full_text (`note_tweet.text` for long posts, else text), is_long
-- clean_text: full_text without RT prefix, URLs and @mentions, entities decoded, spaces collapsed
-- is_retweet, is_quote, is_reply and retweeted_id, quoted_id, replied_to_id (X attaches at
--     most two references: a reply that quotes), conversation_id, in_reply_to_user_id
-- hashtags, cashtags, mentions: lower-cased, without sigil, distinct, from full_text
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
-- offset); the text functions run after that, once per post.
-- @partition_by: created_date
WITH deliveries AS (
    SELECT
        _topic, _partition, _offset, _batch_id, _ingested_at, data,
        row_number() OVER (PARTITION BY data['id'] ORDER BY _topic, _partition, _offset) AS delivery
    FROM bronze
),
posts AS (
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
        data['geo']['coordinates']['coordinates'] AS point
    FROM deliveries
    WHERE delivery = 1
),
texts AS (
    SELECT
        *,
        clean_text(full_text) AS clean_text,
        extract_hashtags(full_text) AS hashtags,
        extract_cashtags(full_text) AS cashtags,
        extract_mentions(full_text) AS mentions
    FROM posts
),
scored AS (
    SELECT
        *,
        sentiment(clean_text) AS sentiment,
        company_of(cashtags) AS cashtag_company,
        company_of(clean_text) AS text_company
    FROM texts
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
           p['geo']['bbox'] AS bbox, bbox_centroid(p['geo']['bbox']) AS centroid
    FROM (SELECT _topic, _partition, _offset, unnest(includes['places']) AS p FROM bronze)
),
-- Rules by position (unnest alone does not promise an order): the first company tag wins.
rules AS (
    SELECT _topic, _partition, _offset,
           array_agg(rule['id'] ORDER BY i) AS rule_ids,
           array_agg(rule['tag'] ORDER BY i) AS rule_tags,
           array_agg(upper(substr(rule['tag'], 9)) ORDER BY i)
               FILTER (WHERE rule['tag'] ILIKE 'company:_%') AS rule_companies
    FROM (
        SELECT _topic, _partition, _offset, i, matching_rules[i] AS rule
        FROM (SELECT _topic, _partition, _offset, matching_rules,
                     unnest(generate_series(1, cardinality(matching_rules))) AS i
              FROM bronze)
    )
    GROUP BY _topic, _partition, _offset
),
joined AS (
    SELECT
        s.*,
        a.username, a.location, a.followers,
        pl.place_name, pl.place_full_name, pl.place_type, pl.country, pl.country_code, pl.bbox, pl.centroid,
        r.rule_ids, r.rule_tags, r.rule_companies[1] AS rule_company,
        s.point[1] BETWEEN -180 AND 180 AND s.point[2] BETWEEN -90 AND 90 AS has_point,
        s.metrics['like_count'] + s.metrics['retweet_count'] + s.metrics['reply_count']
            + s.metrics['quote_count'] AS engagement
    FROM scored s
    LEFT JOIN authors a
        ON a._topic = s._topic AND a._partition = s._partition AND a._offset = s._offset
       AND a.user_id = s.author_id
    LEFT JOIN places pl
        ON pl._topic = s._topic AND pl._partition = s._partition AND pl._offset = s._offset
       AND pl.place_id = s.place_id
    LEFT JOIN rules r
        ON r._topic = s._topic AND r._partition = s._partition AND r._offset = s._offset
)
SELECT
    id,
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
