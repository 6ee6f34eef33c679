-- description: Geotagged posts per country over the last hours of data, with each country's share:
-- the data for a geo heatmap.
-- param: hours = 24
SELECT country_code, sum(posts) AS posts, round(100.0 * sum(posts) / sum(sum(posts)) OVER (), 1) AS percent
FROM gold.country_hour
WHERE hour > (SELECT max(hour) FROM gold.country_hour) - INTERVAL '${hours} hours'
GROUP BY country_code
ORDER BY posts DESC, country_code;
