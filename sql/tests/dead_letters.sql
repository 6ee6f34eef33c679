-- The dead-letter table is queryable like any table: every record that failed to decode is
-- there with its reason and its raw text, and no post is both there and in bronze.
SELECT d._offset, d.error, d.raw_text
FROM dlq d
WHERE d.error = '' OR d.raw IS NULL
   OR d._offset IN (SELECT _offset FROM bronze)
