-- gold.company_minute: what is said about each company, per minute, over the whole history.
--
-- company, minute (UTC): the key. posts; positive, neutral, negative: posts by sentiment_label;
-- sentiment_sum (exact decimal sum of the compound scores) and scored_posts (posts with a
-- score), so sentiment_mean = sentiment_sum / scored_posts stays exact however batches fall;
-- engagement, likes, retweet_count, replies, quotes: sums of the posts' metrics (0 when none);
-- retweets: posts that are retweets; geo_posts: posts with a point or a place;
-- distinct_authors: authors who posted, exact: `authors` keeps their ids so each merge can
-- take the union (per-batch counts cannot be added: an author may post in many batches).
--
-- Merged by (company, minute): each batch's row adds to the stored one, so every row equals a
-- full recompute over silver.tweets.
-- @materialized: merge
-- day (UTC date of the minute): the partition, and part of the key so that each merge reads and
-- rewrites only the days its batch touches, not the whole history.
-- @unique_key: day, company, minute
-- @partition_by: day
-- @update: posts = target.posts + source.posts
-- @update: positive = target.positive + source.positive
-- @update: neutral = target.neutral + source.neutral
-- @update: negative = target.negative + source.negative
-- @update: sentiment_sum = target.sentiment_sum + source.sentiment_sum
-- @update: scored_posts = target.scored_posts + source.scored_posts
-- @update: sentiment_mean = CAST(target.sentiment_sum + source.sentiment_sum AS DOUBLE) / nullif(target.scored_posts + source.scored_posts, 0)
-- @update: engagement = target.engagement + source.engagement
-- @update: likes = target.likes + source.likes
-- @update: retweets = target.retweets + source.retweets
-- @update: retweet_count = target.retweet_count + source.retweet_count
-- @update: replies = target.replies + source.replies
-- @update: quotes = target.quotes + source.quotes
-- @update: geo_posts = target.geo_posts + source.geo_posts
-- @update: authors = array_union(target.authors, source.authors)
-- @update: distinct_authors = CAST(cardinality(array_union(target.authors, source.authors)) AS BIGINT)
SELECT
    CAST(created_at AS DATE) AS day,
    company,
    date_trunc('minute', created_at) AS minute,
    count(*) AS posts,
    count(*) FILTER (WHERE sentiment_label = 'positive') AS positive,
    count(*) FILTER (WHERE sentiment_label = 'neutral') AS neutral,
    count(*) FILTER (WHERE sentiment_label = 'negative') AS negative,
    coalesce(sum(CAST(sentiment AS DECIMAL(18, 4))), 0) AS sentiment_sum,
    count(sentiment) AS scored_posts,
    CAST(coalesce(sum(CAST(sentiment AS DECIMAL(18, 4))), 0) AS DOUBLE) / nullif(count(sentiment), 0)
        AS sentiment_mean,
    coalesce(sum(engagement), 0) AS engagement,
    coalesce(sum(like_count), 0) AS likes,
    count(*) FILTER (WHERE is_retweet) AS retweets,
    coalesce(sum(retweet_count), 0) AS retweet_count,
    coalesce(sum(reply_count), 0) AS replies,
    coalesce(sum(quote_count), 0) AS quotes,
    count(*) FILTER (WHERE geo_source IN ('point', 'place')) AS geo_posts,
    coalesce(array_agg(DISTINCT author_id) FILTER (WHERE author_id IS NOT NULL), []) AS authors,
    count(DISTINCT author_id) AS distinct_authors
FROM silver.tweets
WHERE company IS NOT NULL AND created_at IS NOT NULL
GROUP BY CAST(created_at AS DATE), company, date_trunc('minute', created_at)
