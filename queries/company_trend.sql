-- description: Sentiment trend per company per time bucket over the last hours of data: posts by
-- label and mean sentiment (VADER compound) per bucket.
-- param: company = %
-- param: hours = 24
-- param: bucket = hour
SELECT company,
       date_trunc('${bucket}', minute) AS bucket,
       sum(posts) AS posts,
       sum(positive) AS positive,
       sum(neutral) AS neutral,
       sum(negative) AS negative,
       round(CAST(sum(sentiment_sum) AS DOUBLE) / nullif(sum(scored_posts), 0), 3) AS mean_sentiment
FROM gold.company_minute
WHERE company LIKE '${company}'
  AND minute > (SELECT max(minute) FROM gold.company_minute) - INTERVAL '${hours} hours'
GROUP BY company, date_trunc('${bucket}', minute)
ORDER BY company, bucket;
