-- gold.country_hour: geotagged posts per country per hour, over the whole history.
-- @materialized: merge
-- @unique_key: country_code, hour
-- @update: posts = target.posts + source.posts
SELECT country_code, date_trunc('hour', created_at) AS hour, count(*) AS posts
FROM silver.tweets
WHERE country_code IS NOT NULL AND created_at IS NOT NULL
GROUP BY country_code, date_trunc('hour', created_at)
