-- gold.cashtag_hour: how many posts use each cashtag, per hour (UTC), over the whole history.
-- cashtag (lower-cased, no `$`), hour: the key; posts; engagement: the sum of those posts'.
-- Merged by (cashtag, hour), so every row equals a full recompute over silver.tweets.
-- @materialized: merge
-- day (UTC date of the hour): the partition, and part of the key so that each merge reads and
-- rewrites only the days its batch touches, not the whole history.
-- @unique_key: day, cashtag, hour
-- @partition_by: day
-- @update: posts = target.posts + source.posts
-- @update: engagement = target.engagement + source.engagement
SELECT CAST(created_at AS DATE) AS day, cashtag, date_trunc('hour', created_at) AS hour,
       count(*) AS posts,
       coalesce(sum(engagement), 0) AS engagement
FROM (SELECT created_at, engagement, unnest(cashtags) AS cashtag FROM silver.tweets WHERE created_at IS NOT NULL)
GROUP BY CAST(created_at AS DATE), cashtag, date_trunc('hour', created_at)
