-- Dead letters grouped by reason: what failed to decode, how often, and one example.
SELECT error, count(*) AS records, min(_offset) AS first_offset, first_value(raw_text) AS example
FROM dlq
GROUP BY error
ORDER BY records DESC;
