-- Every post's sentiment_label follows VADER's thresholds on its score: positive from 0.05,
-- negative from -0.05, neutral between, NULL without a score. Returns the posts that do not.
SELECT id, sentiment, sentiment_label
FROM silver.tweets
WHERE sentiment_label IS DISTINCT FROM CASE
    WHEN sentiment >= 0.05 THEN 'positive'
    WHEN sentiment <= -0.05 THEN 'negative'
    WHEN sentiment IS NOT NULL THEN 'neutral'
END
