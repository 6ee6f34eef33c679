-- description: Posts and engagement per company per time bucket over the last hours of data: the trend line
-- (the sentiment trend once silver.tweets has sentiment columns).
-- param: company = %
-- param: hours = 24
-- param: bucket = hour
SELECT company, date_trunc('${bucket}', minute) AS bucket, sum(posts) AS posts, sum(likes) AS likes
FROM gold.company_minute
WHERE company LIKE '${company}'
  AND minute > (SELECT max(minute) FROM gold.company_minute) - INTERVAL '${hours} hours'
GROUP BY company, date_trunc('${bucket}', minute)
ORDER BY company, bucket;
