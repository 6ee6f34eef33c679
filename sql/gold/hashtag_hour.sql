-- gold.hashtag_hour: how often each hashtag is used per hour, over the whole history.
-- @materialized: merge
-- @unique_key: hashtag, hour
-- @update: posts = target.posts + source.posts
SELECT hashtag, date_trunc('hour', created_at) AS hour, count(*) AS posts
FROM (SELECT created_at, unnest(hashtags) AS hashtag FROM silver.tweets WHERE created_at IS NOT NULL)
GROUP BY hashtag, date_trunc('hour', created_at)
