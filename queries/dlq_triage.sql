-- description: Dead letters grouped by reason: what failed to decode, how often, when, and one example.
-- param: limit = 20
SELECT error, count(*) AS records, min(_offset) AS first_offset, max(_ingested_at) AS last_seen,
       first_value(raw_text) AS example
FROM dlq
GROUP BY error
ORDER BY records DESC, error
LIMIT :limit;
