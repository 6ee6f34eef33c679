-- gold.company_minute: activity and engagement per company per minute, over the whole history.
-- Merged by (company, minute): each batch adds its counts to the row of its key, so every row
-- equals a full recompute over silver.tweets.
-- @materialized: merge
-- @unique_key: company, minute
-- @update: posts = target.posts + source.posts
-- @update: retweets = target.retweets + source.retweets
-- @update: likes = target.likes + source.likes
-- @update: retweet_count = target.retweet_count + source.retweet_count
-- @update: replies = target.replies + source.replies
-- @update: quotes = target.quotes + source.quotes
-- @update: geo_posts = target.geo_posts + source.geo_posts
SELECT
    company,
    date_trunc('minute', created_at) AS minute,
    count(*) AS posts,
    sum(CASE WHEN is_retweet THEN 1 ELSE 0 END) AS retweets,
    sum(like_count) AS likes,
    sum(retweet_count) AS retweet_count,
    sum(reply_count) AS replies,
    sum(quote_count) AS quotes,
    sum(CASE WHEN geo_source IN ('point', 'place') THEN 1 ELSE 0 END) AS geo_posts
FROM silver.tweets
WHERE company IS NOT NULL AND created_at IS NOT NULL
GROUP BY company, date_trunc('minute', created_at)
