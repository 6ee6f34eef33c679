-- description: The most used hashtags in the last hours of data (up to the newest post).
-- param: hours = 24
-- param: limit = 20
SELECT hashtag, sum(posts) AS posts
FROM gold.hashtag_hour
WHERE hour > (SELECT max(hour) FROM gold.hashtag_hour) - INTERVAL '${hours} hours'
GROUP BY hashtag
ORDER BY posts DESC, hashtag
LIMIT :limit;
