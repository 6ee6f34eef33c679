-- gold.country_hour: activity per country (of the tagged place) per hour (UTC), over the whole
-- history. country_code (ISO 3166-1 alpha-2), hour: the key; posts; point_posts: those with
-- exact coordinates; engagement; positive, neutral, negative: posts by sentiment_label.
-- Merged by (country_code, hour), so every row equals a full recompute over silver.tweets.
-- @materialized: merge
-- day (UTC date of the hour): the partition, and part of the key so that each merge reads and
-- rewrites only the days its batch touches, not the whole history.
-- @unique_key: day, country_code, hour
-- @partition_by: day
-- @update: posts = target.posts + source.posts
-- @update: point_posts = target.point_posts + source.point_posts
-- @update: engagement = target.engagement + source.engagement
-- @update: positive = target.positive + source.positive
-- @update: neutral = target.neutral + source.neutral
-- @update: negative = target.negative + source.negative
SELECT
    CAST(created_at AS DATE) AS day,
    country_code,
    date_trunc('hour', created_at) AS hour,
    count(*) AS posts,
    count(*) FILTER (WHERE geo_source = 'point') AS point_posts,
    coalesce(sum(engagement), 0) AS engagement,
    count(*) FILTER (WHERE sentiment_label = 'positive') AS positive,
    count(*) FILTER (WHERE sentiment_label = 'neutral') AS neutral,
    count(*) FILTER (WHERE sentiment_label = 'negative') AS negative
FROM silver.tweets
WHERE country_code IS NOT NULL AND created_at IS NOT NULL
GROUP BY CAST(created_at AS DATE), country_code, date_trunc('hour', created_at)
