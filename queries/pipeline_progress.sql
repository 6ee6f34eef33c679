-- description: Pipeline progress: the latest batches in bronze with their records, dead letters, ingest time
-- and age in seconds (how far behind the pipeline is). \d shows each table's latest Delta version.
-- param: batches = 10
SELECT b._batch_id AS batch_id, b.records, coalesce(d.dead_letters, 0) AS dead_letters, b.ingested_at,
       round(date_part('epoch', now()) - date_part('epoch', b.ingested_at), 1) AS age_seconds
FROM (
    SELECT _batch_id, count(*) AS records, max(_ingested_at) AS ingested_at FROM bronze GROUP BY _batch_id
) b
LEFT JOIN (SELECT _batch_id, count(*) AS dead_letters FROM dlq GROUP BY _batch_id) d
    ON d._batch_id = b._batch_id
ORDER BY b._batch_id DESC
LIMIT :batches;
