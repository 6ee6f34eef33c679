-- gold.cashtag_hour: how many posts use each cashtag, per hour (UTC), over the whole history.
-- cashtag (lower-cased, no `$`), hour: the key; posts; engagement: the sum of those posts'.
-- Merged by (cashtag, hour), so every row equals a full recompute over silver.tweets.
-- @materialized: merge
-- @unique_key: cashtag, hour
-- @update: posts = target.posts + source.posts
-- @update: engagement = target.engagement + source.engagement
SELECT cashtag, date_trunc('hour', created_at) AS hour, count(*) AS posts,
       coalesce(sum(engagement), 0) AS engagement
FROM (SELECT created_at, engagement, unnest(cashtags) AS cashtag FROM silver.tweets WHERE created_at IS NOT NULL)
GROUP BY cashtag, date_trunc('hour', created_at)
