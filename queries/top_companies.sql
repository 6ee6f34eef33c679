-- Top companies by number of posts, with engagement.
SELECT company, sum(posts) AS posts, sum(likes) AS likes, sum(retweets) AS retweets
FROM gold.company_minute
GROUP BY company
ORDER BY posts DESC
LIMIT 20;
