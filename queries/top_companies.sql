-- description: Companies ranked by their share of negative posts in the last hours of data (up to
-- the newest post), with posts, mean sentiment (VADER compound) and engagement.
-- param: hours = 1
-- param: limit = 20
SELECT company,
       sum(posts) AS posts,
       sum(negative) AS negative,
       round(sum(negative) * 1.0 / sum(posts), 3) AS negative_share,
       round(CAST(sum(sentiment_sum) AS DOUBLE) / nullif(sum(scored_posts), 0), 3) AS mean_sentiment,
       sum(engagement) AS engagement
FROM gold.company_minute
WHERE minute > (SELECT max(minute) FROM gold.company_minute) - INTERVAL '${hours} hours'
GROUP BY company
ORDER BY negative_share DESC, posts DESC, company
LIMIT :limit;
