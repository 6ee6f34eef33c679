-- gold.hashtag_hour: how many posts use each hashtag, per hour (UTC), over the whole history.
-- hashtag (lower-cased, no `#`), hour: the key; posts; engagement: the sum of those posts'.
-- Merged by (hashtag, hour), so every row equals a full recompute over silver.tweets.
-- @materialized: merge
-- @unique_key: hashtag, hour
-- @update: posts = target.posts + source.posts
-- @update: engagement = target.engagement + source.engagement
SELECT hashtag, date_trunc('hour', created_at) AS hour, count(*) AS posts,
       coalesce(sum(engagement), 0) AS engagement
FROM (SELECT created_at, engagement, unnest(hashtags) AS hashtag FROM silver.tweets WHERE created_at IS NOT NULL)
GROUP BY hashtag, date_trunc('hour', created_at)
