-- description: Companies with the most posts in the last hours of data (up to the newest post), with
-- engagement. Sentiment is not in silver.tweets yet: once the sentiment columns land, rank by the
-- share of negative posts here.
-- param: hours = 1
-- param: limit = 20
SELECT company, sum(posts) AS posts, sum(likes) AS likes, sum(retweets) AS retweets, sum(replies) AS replies
FROM gold.company_minute
WHERE minute > (SELECT max(minute) FROM gold.company_minute) - INTERVAL '${hours} hours'
GROUP BY company
ORDER BY posts DESC, company
LIMIT :limit;
