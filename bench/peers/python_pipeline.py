"""The pipeline a data engineer would write in Python instead of tweetlake, for bench/peers.

Micro-batches of X v2 stream messages (JSONL file or Kafka topic) -> pyarrow JSON decode with an
explicit schema (bad records to a dead-letter table) -> bronze (append) -> DuckDB SQL for silver
(with a VADER UDF) -> DuckDB aggregates for gold, merged into Delta with deltalake's MERGE.

Like `tweetlake run --once`: it snapshots the end of the input at start and stops there. A batch
closes at --max-records records or --max-bytes bytes, whichever comes first (tweetlake's
pipeline.max_records_per_batch and max_bytes_per_batch). Kafka offsets are committed after a
batch's writes: at least once, not exactly once (a crash between the writes and the commit writes
the batch again; gold then counts it twice).

What differs from tweetlake's models is listed in bench/peers/README.md.
"""

import argparse
import csv
import datetime as dt
import io
import json
import os
import re
import sys
import time

import duckdb
from duckdb import sqltypes
import pyarrow as pa
import pyarrow.json as pj
from deltalake import DeltaTable, write_deltalake
from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

from bronze_schema import MESSAGE

PARSE = pj.ParseOptions(explicit_schema=MESSAGE, unexpected_field_behavior="ignore")
READ = pj.ReadOptions(block_size=16 << 20)


# --- source -------------------------------------------------------------------------------------

def file_batches(path, max_records, max_bytes):
    """Yields (lines, lineage) per batch: lineage is (topic, partition, first offset)."""
    topic = os.path.basename(path)
    offset = 0
    lines, size = [], 0
    with open(path, "rb") as f:
        for line in f:
            line = line.rstrip(b"\r\n")
            if not line:
                offset += 1
                continue
            if lines and (len(lines) >= max_records or size + len(line) > max_bytes):
                yield lines, [topic] * len(lines), [0] * len(lines), list(range(offset - len(lines), offset)), None
                lines, size = [], 0
            lines.append(line)
            size += len(line)
            offset += 1
    if lines:
        yield lines, [topic] * len(lines), [0] * len(lines), list(range(offset - len(lines), offset)), None


def kafka_batches(bootstrap, topic, group, max_records, max_bytes):
    """Consumes each partition to its end-of-file event (like `run --once`); the caller commits.

    The consumer settings that matter are tweetlake's: a 10 s session timeout (the group join
    waits on it with some brokers), read-ahead sized to a batch, a 20 ms fetch queue backoff."""
    from confluent_kafka import Consumer, KafkaError

    consumer = Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": group,
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "enable.partition.eof": True,
        "session.timeout.ms": 10000,
        "queued.max.messages.kbytes": max(65536, 2 * max_bytes // 1024),
        "fetch.queue.backoff.ms": 20,
    })
    partitions_total = len(consumer.list_topics(topic, timeout=30).topics[topic].partitions)
    consumer.subscribe([topic])
    done = set()  # partitions read to their end
    lines, topics, partitions, offsets, size = [], [], [], [], 0
    try:
        while len(done) < partitions_total:
            for msg in consumer.consume(num_messages=min(10000, max_records), timeout=1.0):
                if msg.error():
                    if msg.error().code() == KafkaError._PARTITION_EOF:
                        done.add(msg.partition())
                        continue
                    raise RuntimeError(msg.error())
                if msg.partition() in done:
                    continue  # arrived after the end we stop at: left for the next run
                value = msg.value() or b""
                if lines and (len(lines) >= max_records or size + len(value) > max_bytes):
                    yield lines, topics, partitions, offsets, consumer
                    lines, topics, partitions, offsets, size = [], [], [], [], 0
                lines.append(value)
                topics.append(msg.topic())
                partitions.append(msg.partition())
                offsets.append(msg.offset())
                size += len(value)
        if lines:
            yield lines, topics, partitions, offsets, consumer
    finally:
        consumer.close()


def commit(consumer, topics, partitions, offsets):
    """Commits the next offset of every partition in the batch (after its writes)."""
    from confluent_kafka import TopicPartition

    last = {}
    for t, p, o in zip(topics, partitions, offsets):
        last[(t, p)] = max(o, last.get((t, p), -1))
    consumer.commit(offsets=[TopicPartition(t, p, o + 1) for (t, p), o in last.items()],
                    asynchronous=False)


# --- decode -------------------------------------------------------------------------------------

def decode(lines):
    """The batch as one Arrow table, or per line when the whole batch fails to parse.

    Returns (table, good line indexes, dead letters as (index, error))."""
    try:
        return pj.read_json(io.BytesIO(b"\n".join(lines)), read_options=READ,
                            parse_options=PARSE), list(range(len(lines))), []
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        pass
    tables, good, dead = [], [], []
    for i, line in enumerate(lines):
        try:
            tables.append(pj.read_json(io.BytesIO(line), parse_options=PARSE))
            good.append(i)
        except (pa.ArrowInvalid, pa.ArrowTypeError) as e:
            dead.append((i, str(e)))
    table = pa.concat_tables(tables) if tables else MESSAGE.empty_table()
    return table, good, dead


# --- SQL ----------------------------------------------------------------------------------------

def load_companies(path):
    """Aliases of sql/companies.csv: ({'$aapl': 'AAPL'}, {'#iphone': ..., 'apple inc': ...})."""
    cashtags, words = {}, {}
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            alias = " ".join(row["alias"].strip().lower().split())
            if alias.startswith("$"):
                cashtags[alias[1:]] = row["company_id"].strip()
            else:
                words[alias] = row["company_id"].strip()
    return cashtags, words


def sql_str(s):
    return "'" + s.replace("'", "''") + "'"


def silver_sql(cashtags, words):
    """silver.tweets as DuckDB SQL, over the batch's table `batch` (see sql/silver/tweets.sql)."""
    cashtag_case = "CASE c " + " ".join(
        f"WHEN {sql_str(a)} THEN {sql_str(c)}" for a, c in cashtags.items()) + " END"
    # Longest alias first, so `apple inc` wins over `apple`; a hashtag alias keeps its `#`.
    alternatives = "|".join(re.escape(a).replace("\\ ", "\\s+")
                            for a in sorted(words, key=len, reverse=True))
    text_regex = f"(?:^|[^\\w#$])({alternatives})(?:$|[^\\w])"
    matched = (f"regexp_replace(regexp_extract(lower(clean_text), {sql_str(text_regex)}, 1),"
               " '\\s+', ' ', 'g')")
    word_case = f"CASE {matched} " + " ".join(
        f"WHEN {sql_str(a)} THEN {sql_str(c)}" for a, c in words.items()) + " END"
    return f"""
WITH posts AS (
    SELECT
        _topic, _partition, _offset, _batch_id, _ingested_at,
        data.id AS id,
        coalesce(platform, 'x') AS platform,
        data.created_at AS created_at,
        data.author_id AS author_id,
        data.lang AS lang,
        data.text AS text,
        coalesce(data.note_tweet.text, data.text) AS full_text,
        data.note_tweet.text IS NOT NULL AS is_long,
        data.conversation_id AS conversation_id,
        data.in_reply_to_user_id AS in_reply_to_user_id,
        list_filter(data.referenced_tweets, lambda r: r.type = 'retweeted')[1].id AS retweeted_id,
        list_filter(data.referenced_tweets, lambda r: r.type = 'quoted')[1].id AS quoted_id,
        list_filter(data.referenced_tweets, lambda r: r.type = 'replied_to')[1].id AS replied_to_id,
        data.public_metrics AS metrics,
        data.geo.place_id AS place_id,
        data.geo.coordinates.coordinates AS point,
        list_filter(includes.users, lambda u: u.id = data.author_id)[1] AS author,
        list_filter(includes.places, lambda p: p.id = data.geo.place_id)[1] AS place,
        list_transform(matching_rules, lambda r: r.id) AS rule_ids,
        list_transform(matching_rules, lambda r: r.tag) AS rule_tags
    FROM batch
    -- a post delivered twice in one batch keeps its first delivery
    QUALIFY row_number() OVER (PARTITION BY data.id ORDER BY _topic, _partition, _offset) = 1
),
texts AS (
    SELECT
        *,
        trim(regexp_replace(
            replace(replace(replace(replace(replace(
                regexp_replace(regexp_replace(regexp_replace(full_text,
                    '^RT @\\w+:\\s*', ''), 'https?://\\S+', '', 'g'), '@\\w+', '', 'g'),
                '&lt;', '<'), '&gt;', '>'), '&quot;', '"'), '&#39;', ''''), '&amp;', '&'),
            '\\s+', ' ', 'g')) AS clean_text,
        list_distinct(list_transform(
            regexp_extract_all(full_text, '(?:^|[^\\w&])[#＃](\\w*[^\\W\\d_]\\w*)', 1),
            lambda h: lower(h))) AS hashtags,
        list_distinct(list_transform(
            regexp_extract_all(full_text, '(?:^|[^\\w$])\\$([A-Za-z]{{1,6}}(?:[._][A-Za-z]{{1,2}})?)\\b', 1),
            lambda c: lower(c))) AS cashtags,
        list_distinct(list_transform(
            regexp_extract_all(full_text, '(?:^|[^\\w@])@(\\w{{1,15}})', 1),
            lambda m: lower(m))) AS mentions
    FROM posts
),
scored AS (
    SELECT
        *,
        vader(clean_text) AS sentiment,
        list_filter(list_transform(cashtags, lambda c: {cashtag_case}), lambda x: x IS NOT NULL)[1]
            AS cashtag_company,
        {word_case} AS text_company
    FROM texts
),
joined AS (
    SELECT
        *,
        author.username AS username, author.location AS location,
        author.public_metrics.followers_count AS followers,
        place.name AS place_name, place.full_name AS place_full_name,
        place.place_type AS place_type, place.country AS country,
        place.country_code AS country_code, place.geo.bbox AS bbox,
        upper(list_filter(list_transform(rule_tags,
            lambda t: CASE WHEN lower(t) LIKE 'company:%' THEN trim(substr(t, 9)) END),
            lambda x: x IS NOT NULL AND x <> '')[1]) AS rule_company,
        point[1] BETWEEN -180 AND 180 AND point[2] BETWEEN -90 AND 90 AS has_point,
        metrics.like_count + metrics.retweet_count + metrics.reply_count + metrics.quote_count
            AS engagement
    FROM scored
)
SELECT
    id, platform, created_at, CAST(created_at AS DATE) AS created_date,
    author_id, username AS author_username, location AS author_location,
    followers AS author_followers,
    CASE WHEN followers >= 1000000 THEN 'mega' WHEN followers >= 100000 THEN 'macro'
         WHEN followers >= 10000 THEN 'micro' WHEN followers >= 0 THEN 'nano' END AS author_tier,
    nullif(lang, 'und') AS lang,
    text, full_text, is_long, clean_text,
    retweeted_id IS NOT NULL AS is_retweet, quoted_id IS NOT NULL AS is_quote,
    replied_to_id IS NOT NULL AS is_reply,
    retweeted_id, quoted_id, replied_to_id, conversation_id, in_reply_to_user_id,
    hashtags, cashtags, mentions,
    metrics.like_count AS like_count, metrics.retweet_count AS retweet_count,
    metrics.reply_count AS reply_count, metrics.quote_count AS quote_count,
    metrics.impression_count AS impression_count,
    engagement,
    CASE WHEN engagement >= 10000 THEN 'viral' WHEN engagement >= 1000 THEN 'high'
         WHEN engagement >= 100 THEN 'medium' WHEN engagement >= 0 THEN 'low' END
        AS engagement_tier,
    rule_ids, rule_tags,
    coalesce(rule_company, cashtag_company, text_company) AS company,
    CASE WHEN rule_company IS NOT NULL THEN 'rule' WHEN cashtag_company IS NOT NULL THEN 'cashtag'
         WHEN text_company IS NOT NULL THEN 'text' END AS company_source,
    sentiment,
    CASE WHEN sentiment >= 0.05 THEN 'positive' WHEN sentiment <= -0.05 THEN 'negative'
         WHEN sentiment IS NOT NULL THEN 'neutral' END AS sentiment_label,
    CASE WHEN has_point THEN 'point'
         WHEN len(bbox) = 4 THEN 'place'
         WHEN trim(location) <> '' THEN 'profile'
         ELSE 'none' END AS geo_source,
    CASE WHEN has_point THEN point[1] WHEN len(bbox) = 4 THEN (bbox[1] + bbox[3]) / 2 END AS lon,
    CASE WHEN has_point THEN point[2] WHEN len(bbox) = 4 THEN (bbox[2] + bbox[4]) / 2 END AS lat,
    place_id, place_name, place_full_name, place_type, country, country_code,
    bbox AS place_bbox,
    _topic AS source_topic, _partition AS source_partition, _offset AS source_offset,
    _batch_id AS batch_id, _ingested_at AS ingested_at
FROM joined
"""


# Each gold table: (DuckDB SQL over the batch's silver rows, unique key, update expressions).
# The update expressions are sql/gold/*.sql's @update directives, run by deltalake's MERGE.
GOLD = {
    "company_minute": ("""
SELECT
    CAST(created_at AS DATE) AS day, company, date_trunc('minute', created_at) AS minute,
    count(*) AS posts,
    count(*) FILTER (WHERE sentiment_label = 'positive') AS positive,
    count(*) FILTER (WHERE sentiment_label = 'neutral') AS neutral,
    count(*) FILTER (WHERE sentiment_label = 'negative') AS negative,
    CAST(coalesce(sum(CAST(sentiment AS DECIMAL(18, 4))), 0) AS DECIMAL(38, 4)) AS sentiment_sum,
    count(sentiment) AS scored_posts,
    CAST(coalesce(sum(CAST(sentiment AS DECIMAL(18, 4))), 0) AS DOUBLE) / nullif(count(sentiment), 0)
        AS sentiment_mean,
    CAST(coalesce(sum(engagement), 0) AS BIGINT) AS engagement,
    CAST(coalesce(sum(like_count), 0) AS BIGINT) AS likes,
    count(*) FILTER (WHERE is_retweet) AS retweets,
    CAST(coalesce(sum(retweet_count), 0) AS BIGINT) AS retweet_count,
    CAST(coalesce(sum(reply_count), 0) AS BIGINT) AS replies,
    CAST(coalesce(sum(quote_count), 0) AS BIGINT) AS quotes,
    count(*) FILTER (WHERE geo_source IN ('point', 'place')) AS geo_posts,
    coalesce(array_agg(DISTINCT author_id) FILTER (WHERE author_id IS NOT NULL), []) AS authors,
    count(DISTINCT author_id) AS distinct_authors
FROM silver
WHERE company IS NOT NULL AND created_at IS NOT NULL
GROUP BY ALL
""", ["day", "company", "minute"], {
        "posts": "target.posts + source.posts",
        "positive": "target.positive + source.positive",
        "neutral": "target.neutral + source.neutral",
        "negative": "target.negative + source.negative",
        "sentiment_sum": "target.sentiment_sum + source.sentiment_sum",
        "scored_posts": "target.scored_posts + source.scored_posts",
        "sentiment_mean": "CAST(target.sentiment_sum + source.sentiment_sum AS DOUBLE)"
                          " / nullif(target.scored_posts + source.scored_posts, 0)",
        "engagement": "target.engagement + source.engagement",
        "likes": "target.likes + source.likes",
        "retweets": "target.retweets + source.retweets",
        "retweet_count": "target.retweet_count + source.retweet_count",
        "replies": "target.replies + source.replies",
        "quotes": "target.quotes + source.quotes",
        "geo_posts": "target.geo_posts + source.geo_posts",
        "authors": "array_union(target.authors, source.authors)",
        "distinct_authors": "CAST(cardinality(array_union(target.authors, source.authors)) AS BIGINT)",
    }),
    "country_hour": ("""
SELECT
    CAST(created_at AS DATE) AS day, country_code, date_trunc('hour', created_at) AS hour,
    count(*) AS posts,
    count(*) FILTER (WHERE geo_source = 'point') AS point_posts,
    CAST(coalesce(sum(engagement), 0) AS BIGINT) AS engagement,
    count(*) FILTER (WHERE sentiment_label = 'positive') AS positive,
    count(*) FILTER (WHERE sentiment_label = 'neutral') AS neutral,
    count(*) FILTER (WHERE sentiment_label = 'negative') AS negative
FROM silver
WHERE country_code IS NOT NULL AND created_at IS NOT NULL
GROUP BY ALL
""", ["day", "country_code", "hour"], {
        c: f"target.{c} + source.{c}"
        for c in ["posts", "point_posts", "engagement", "positive", "neutral", "negative"]
    }),
    "hashtag_hour": ("""
SELECT CAST(created_at AS DATE) AS day, hashtag, date_trunc('hour', created_at) AS hour,
       count(*) AS posts, CAST(coalesce(sum(engagement), 0) AS BIGINT) AS engagement
FROM (SELECT created_at, engagement, unnest(hashtags) AS hashtag FROM silver
      WHERE created_at IS NOT NULL)
GROUP BY ALL
""", ["day", "hashtag", "hour"], {
        c: f"target.{c} + source.{c}" for c in ["posts", "engagement"]
    }),
    "cashtag_hour": ("""
SELECT CAST(created_at AS DATE) AS day, cashtag, date_trunc('hour', created_at) AS hour,
       count(*) AS posts, CAST(coalesce(sum(engagement), 0) AS BIGINT) AS engagement
FROM (SELECT created_at, engagement, unnest(cashtags) AS cashtag FROM silver
      WHERE created_at IS NOT NULL)
GROUP BY ALL
""", ["day", "cashtag", "hour"], {
        c: f"target.{c} + source.{c}" for c in ["posts", "engagement"]
    }),
}


def merge_gold(lake, name, rows, key, updates):
    """Upserts a batch's aggregates: matched keys add up (the @update directives), new keys insert."""
    path = f"{lake}/gold/{name}"
    if not DeltaTable.is_deltatable(path):
        write_deltalake(path, rows, partition_by=["day"])
        return "created"
    predicate = " AND ".join(f"target.{k} = source.{k}" for k in key)
    stats = (DeltaTable(path).merge(rows, predicate=predicate, source_alias="source",
                                    target_alias="target")
             .when_matched_update(updates=updates)
             .when_not_matched_insert_all()
             .execute())
    return stats


# --- main ---------------------------------------------------------------------------------------

def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--file", help="JSONL file of X v2 stream messages")
    ap.add_argument("--kafka", help="bootstrap servers (HOST:PORT)")
    ap.add_argument("--topic")
    ap.add_argument("--group", default="peers-python")
    ap.add_argument("--lake", required=True, help="local directory of the Delta tables")
    ap.add_argument("--companies", required=True, help="sql/companies.csv")
    ap.add_argument("--max-records", type=int, default=100_000)
    ap.add_argument("--max-bytes", type=int, default=50_331_648)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    args = ap.parse_args()

    cashtags, words = load_companies(args.companies)
    analyzer = SentimentIntensityAnalyzer()
    score = analyzer.polarity_scores

    def vader(texts):
        return pa.array([None if t is None else score(t)["compound"] for t in texts.to_pylist()],
                        pa.float64())

    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.execute(f"SET threads = {args.threads}")
    con.create_function("vader", vader, [sqltypes.VARCHAR], sqltypes.DOUBLE,
                        type="arrow", null_handling="special", side_effects=False)
    silver_query = silver_sql(cashtags, words)

    if args.kafka:
        batches = kafka_batches(args.kafka, args.topic, args.group, args.max_records, args.max_bytes)
    else:
        batches = file_batches(args.file, args.max_records, args.max_bytes)

    lake = os.path.abspath(args.lake)
    total = dead_total = 0
    started = time.monotonic()
    for batch_id, (lines, topics, partitions, offsets, consumer) in enumerate(batches):
        t0 = time.monotonic()
        now = dt.datetime.now(dt.timezone.utc)
        table, good, dead = decode(lines)
        if dead:
            write_deltalake(f"{lake}/dlq", pa.table({
                "_topic": [topics[i] for i, _ in dead],
                "_partition": pa.array([partitions[i] for i, _ in dead], pa.int32()),
                "_offset": [offsets[i] for i, _ in dead],
                "raw_text": [lines[i].decode("utf-8", "replace") for i, _ in dead],
                "error": [e for _, e in dead],
                "_ingested_at": pa.array([now] * len(dead), pa.timestamp("us", tz="UTC")),
            }), mode="append")
        n = table.num_rows
        lineage = {
            "_topic": pa.array([topics[i] for i in good], pa.string()),
            "_partition": pa.array([partitions[i] for i in good], pa.int32()),
            "_offset": pa.array([offsets[i] for i in good], pa.int64()),
            "_batch_id": pa.array([batch_id] * n, pa.int64()),
            "_ingested_at": pa.array([now] * n, pa.timestamp("us", tz="UTC")),
            "_ingest_date": pa.array([now.date()] * n, pa.date32()),
        }
        batch = pa.Table.from_arrays(list(lineage.values()) + table.columns,
                                     names=list(lineage) + table.column_names)
        t_decode = time.monotonic()
        con.register("batch", batch)
        bronze = batch.append_column("_raw", pa.array([lines[i] for i in good], pa.binary())
                                     .cast(pa.string()))
        write_deltalake(f"{lake}/bronze", bronze, mode="append", partition_by=["_ingest_date"])
        del bronze
        t_bronze = time.monotonic()
        silver = con.sql(silver_query).arrow()
        if isinstance(silver, pa.RecordBatchReader):
            silver = silver.read_all()
        con.register("silver", silver)
        t_silver_sql = time.monotonic()
        write_deltalake(f"{lake}/silver/tweets", silver, mode="append", partition_by=["created_date"])
        t_silver = time.monotonic()
        gold_rows = {}
        for name, (query, key, updates) in GOLD.items():
            rows = con.sql(query).arrow()
            if isinstance(rows, pa.RecordBatchReader):
                rows = rows.read_all()
            gold_rows[name] = rows.num_rows
            if rows.num_rows:
                merge_gold(lake, name, rows, key, updates)
        t_gold = time.monotonic()
        if consumer is not None:
            commit(consumer, topics, partitions, offsets)
        total += len(lines)
        dead_total += len(dead)
        print(json.dumps({
            "batch_id": batch_id, "records": len(lines), "dead_letters": len(dead),
            "silver_rows": silver.num_rows, "gold_rows": gold_rows,
            "decode_ms": round((t_decode - t0) * 1000, 1),
            "bronze_ms": round((t_bronze - t_decode) * 1000, 1),
            "silver_sql_ms": round((t_silver_sql - t_bronze) * 1000, 1),
            "silver_write_ms": round((t_silver - t_silver_sql) * 1000, 1),
            "gold_ms": round((t_gold - t_silver) * 1000, 1),
            "total_ms": round((time.monotonic() - t0) * 1000, 1),
        }), file=sys.stderr, flush=True)
    elapsed = time.monotonic() - started
    print(json.dumps({"done": True, "records": total, "dead_letters": dead_total,
                      "seconds": round(elapsed, 2)}), file=sys.stderr)


if __name__ == "__main__":
    main()
