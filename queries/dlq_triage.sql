-- description: Dead letters grouped by reason: what failed to decode, how often, when, one example,
-- and how many `tweetlake dlq replay` replayed (queued into dlq_replays and run through the models) and when.
-- param: limit = 20
SELECT d.error, count(*) AS records, min(d._offset) AS first_offset, max(d._ingested_at) AS last_seen,
       count(r.replay_offset) AS replayed, max(r.queued_at) AS last_replayed,
       first_value(d.raw_text) AS example
FROM dlq d
LEFT JOIN dlq_replays r
    ON r._topic = d._topic AND r._partition = d._partition AND r._offset = d._offset
       AND r._batch_id = d._batch_id
GROUP BY d.error
ORDER BY records DESC, d.error
LIMIT :limit;
