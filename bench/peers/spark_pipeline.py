"""Spark Structured Streaming peer for bench/peers: the same silver and gold, written as Parquet.

    spark_pipeline.py split --file POSTS.jsonl --out DIR [--max-records N] [--max-bytes B]
    spark_pipeline.py run --input DIR --out DIR --companies sql/companies.csv

`split` cuts the posts into one file per micro-batch, with the batch limits tweetlake and the
Python peer use, so that the file source (maxFilesPerTrigger=1) makes the same batches.
`run` is a file-source stream with Trigger.AvailableNow and foreachBatch: the text lines are
parsed with from_json and the declared schema (bronze_schema.py; a line it cannot parse goes to
the dead letters), bronze and silver are appended as Parquet, and gold is each batch's aggregates
appended as Parquet. Delta Lake's Spark jars (delta-spark) come from Maven, which this machine
cannot reach: without them there is no Delta table and no MERGE, so gold here is partial
aggregates per batch that a reader must sum, not tables kept equal to a full recompute.
"""

import argparse
import os
import re
import sys

import pyarrow as pa

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)


def split(args):
    from python_pipeline import file_batches

    os.makedirs(args.out, exist_ok=True)
    n = 0
    for i, (lines, *_rest) in enumerate(file_batches(args.file, args.max_records, args.max_bytes)):
        with open(os.path.join(args.out, f"batch-{i:06d}.jsonl"), "wb") as f:
            f.write(b"\n".join(lines) + b"\n")
        n = i + 1
    print(f"{n} batch files in {args.out}")


def spark_type(t):
    from pyspark.sql import types as T

    if pa.types.is_struct(t):
        return T.StructType([T.StructField(f.name, spark_type(f.type)) for f in t])
    if pa.types.is_list(t):
        return T.ArrayType(spark_type(t.value_type))
    if pa.types.is_timestamp(t):
        return T.TimestampType()
    return {pa.string(): T.StringType(), pa.int32(): T.IntegerType(), pa.int64(): T.LongType(),
            pa.float64(): T.DoubleType(), pa.bool_(): T.BooleanType()}[t]


def silver_sql(companies):
    """silver.tweets in Spark SQL over the view `batch` (the DuckDB query of python_pipeline.py)."""
    from python_pipeline import load_companies, sql_str

    cashtags, words = load_companies(companies)
    cashtag_case = "CASE c " + " ".join(
        f"WHEN {sql_str(a)} THEN {sql_str(c)}" for a, c in cashtags.items()) + " END"
    alternatives = "|".join(re.escape(a).replace("\\ ", "\\s+")
                            for a in sorted(words, key=len, reverse=True))
    text_regex = f"(?:^|[^\\w#$])({alternatives})(?:$|[^\\w])"
    matched = (f"regexp_replace(regexp_extract(lower(clean_text), {sql_str(text_regex)}, 1),"
               " '\\\\s+', ' ')")
    matched = matched.replace(sql_str(text_regex), sql_str(text_regex.replace("\\", "\\\\")))
    word_case = f"CASE {matched} " + " ".join(
        f"WHEN {sql_str(a)} THEN {sql_str(c)}" for a, c in words.items()) + " END"
    return f"""
WITH numbered AS (
    SELECT *, row_number() OVER (PARTITION BY m.data.id ORDER BY _topic, _offset) AS delivery
    FROM batch
),
posts AS (
    SELECT
        _topic, _offset, _batch_id, _ingested_at,
        m.data.id AS id,
        coalesce(m.platform, 'x') AS platform,
        m.data.created_at AS created_at,
        m.data.author_id AS author_id,
        m.data.lang AS lang,
        m.data.text AS text,
        coalesce(m.data.note_tweet.text, m.data.text) AS full_text,
        m.data.note_tweet.text IS NOT NULL AS is_long,
        m.data.conversation_id AS conversation_id,
        m.data.in_reply_to_user_id AS in_reply_to_user_id,
        filter(m.data.referenced_tweets, r -> r.type = 'retweeted')[0].id AS retweeted_id,
        filter(m.data.referenced_tweets, r -> r.type = 'quoted')[0].id AS quoted_id,
        filter(m.data.referenced_tweets, r -> r.type = 'replied_to')[0].id AS replied_to_id,
        m.data.public_metrics AS metrics,
        m.data.geo.place_id AS place_id,
        m.data.geo.coordinates.coordinates AS point,
        filter(m.includes.users, u -> u.id = m.data.author_id)[0] AS author,
        filter(m.includes.places, p -> p.id = m.data.geo.place_id)[0] AS place,
        transform(m.matching_rules, r -> r.id) AS rule_ids,
        transform(m.matching_rules, r -> r.tag) AS rule_tags
    FROM numbered
    WHERE delivery = 1
),
texts AS (
    SELECT
        *,
        trim(regexp_replace(
            replace(replace(replace(replace(replace(
                regexp_replace(regexp_replace(regexp_replace(full_text,
                    '^RT @\\\\w+:\\\\s*', ''), 'https?://\\\\S+', ''), '@\\\\w+', ''),
                '&lt;', '<'), '&gt;', '>'), '&quot;', '"'), '&#39;', "'"), '&amp;', '&'),
            '\\\\s+', ' ')) AS clean_text,
        array_distinct(transform(
            regexp_extract_all(full_text, '(?:^|[^\\\\w&])[#＃](\\\\w*[^\\\\W\\\\d_]\\\\w*)', 1),
            h -> lower(h))) AS hashtags,
        array_distinct(transform(
            regexp_extract_all(full_text, '(?:^|[^\\\\w$])\\\\$([A-Za-z]{{1,6}}(?:[._][A-Za-z]{{1,2}})?)\\\\b', 1),
            c -> lower(c))) AS cashtags,
        array_distinct(transform(
            regexp_extract_all(full_text, '(?:^|[^\\\\w@])@(\\\\w{{1,15}})', 1),
            x -> lower(x))) AS mentions
    FROM posts
),
scored AS (
    SELECT
        *,
        vader(clean_text) AS sentiment,
        filter(transform(cashtags, c -> {cashtag_case}), x -> x IS NOT NULL)[0] AS cashtag_company,
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
        upper(filter(transform(rule_tags,
            t -> CASE WHEN lower(t) LIKE 'company:%' THEN trim(substr(t, 9)) END),
            x -> x IS NOT NULL AND x <> '')[0]) AS rule_company,
        point[0] BETWEEN -180 AND 180 AND point[1] BETWEEN -90 AND 90 AS has_point,
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
    CASE WHEN has_point THEN 'point' WHEN size(bbox) = 4 THEN 'place'
         WHEN trim(location) <> '' THEN 'profile' ELSE 'none' END AS geo_source,
    CASE WHEN has_point THEN point[0] WHEN size(bbox) = 4 THEN (bbox[0] + bbox[2]) / 2 END AS lon,
    CASE WHEN has_point THEN point[1] WHEN size(bbox) = 4 THEN (bbox[1] + bbox[3]) / 2 END AS lat,
    place_id, place_name, place_full_name, place_type, country, country_code,
    bbox AS place_bbox,
    _topic AS source_topic, _offset AS source_offset,
    _batch_id AS batch_id, _ingested_at AS ingested_at
FROM joined
"""


GOLD = {
    "company_minute": """
SELECT CAST(created_at AS DATE) AS day, company, date_trunc('minute', created_at) AS minute,
    count(*) AS posts,
    count_if(sentiment_label = 'positive') AS positive,
    count_if(sentiment_label = 'neutral') AS neutral,
    count_if(sentiment_label = 'negative') AS negative,
    coalesce(sum(CAST(sentiment AS DECIMAL(18, 4))), 0) AS sentiment_sum,
    count(sentiment) AS scored_posts,
    CAST(coalesce(sum(CAST(sentiment AS DECIMAL(18, 4))), 0) AS DOUBLE) / nullif(count(sentiment), 0)
        AS sentiment_mean,
    coalesce(sum(engagement), 0) AS engagement, coalesce(sum(like_count), 0) AS likes,
    count_if(is_retweet) AS retweets, coalesce(sum(retweet_count), 0) AS retweet_count,
    coalesce(sum(reply_count), 0) AS replies, coalesce(sum(quote_count), 0) AS quotes,
    count_if(geo_source IN ('point', 'place')) AS geo_posts,
    collect_set(author_id) AS authors, count(DISTINCT author_id) AS distinct_authors
FROM silver WHERE company IS NOT NULL AND created_at IS NOT NULL
GROUP BY 1, 2, 3""",
    "country_hour": """
SELECT CAST(created_at AS DATE) AS day, country_code, date_trunc('hour', created_at) AS hour,
    count(*) AS posts, count_if(geo_source = 'point') AS point_posts,
    coalesce(sum(engagement), 0) AS engagement,
    count_if(sentiment_label = 'positive') AS positive,
    count_if(sentiment_label = 'neutral') AS neutral,
    count_if(sentiment_label = 'negative') AS negative
FROM silver WHERE country_code IS NOT NULL AND created_at IS NOT NULL
GROUP BY 1, 2, 3""",
    "hashtag_hour": """
SELECT CAST(created_at AS DATE) AS day, hashtag, date_trunc('hour', created_at) AS hour,
    count(*) AS posts, coalesce(sum(engagement), 0) AS engagement
FROM (SELECT created_at, engagement, explode(hashtags) AS hashtag FROM silver
      WHERE created_at IS NOT NULL)
GROUP BY 1, 2, 3""",
    "cashtag_hour": """
SELECT CAST(created_at AS DATE) AS day, cashtag, date_trunc('hour', created_at) AS hour,
    count(*) AS posts, coalesce(sum(engagement), 0) AS engagement
FROM (SELECT created_at, engagement, explode(cashtags) AS cashtag FROM silver
      WHERE created_at IS NOT NULL)
GROUP BY 1, 2, 3""",
}


def run(args):
    import pandas as pd
    from pyspark.sql import SparkSession, functions as F
    from pyspark.sql.functions import pandas_udf
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    from bronze_schema import MESSAGE

    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)  # the workers use this venv too
    spark = (SparkSession.builder.master(f"local[{args.cores}]").appName("tweetlake-peer")
             .config("spark.ui.enabled", "false")
             .config("spark.sql.shuffle.partitions", str(args.cores))
             .config("spark.driver.memory", args.driver_memory)
             .config("spark.sql.session.timeZone", "UTC")
             # Spark 3's semantics: list[0] of an empty list is NULL (Spark 4's ANSI mode fails)
             .config("spark.sql.ansi.enabled", "false")
             .getOrCreate())
    spark.sparkContext.setLogLevel("WARN")

    analyzer = None

    @pandas_udf("double")
    def vader(texts: pd.Series) -> pd.Series:
        nonlocal analyzer
        if analyzer is None:
            analyzer = SentimentIntensityAnalyzer()
        score = analyzer.polarity_scores
        return texts.map(lambda t: None if t is None else score(t)["compound"])

    spark.udf.register("vader", vader)
    schema = spark_type(pa.struct(list(MESSAGE)))
    silver_query = silver_sql(args.companies)
    out = args.out

    def each_batch(df, batch_id):
        session = df.sparkSession  # the batch's views live in its session
        now = F.current_timestamp()
        parsed = (df.select(F.col("value").alias("_raw"),
                            F.col("_topic"),
                            F.from_json("value", schema).alias("m"))
                  .withColumn("_offset", F.monotonically_increasing_id())
                  .withColumn("_batch_id", F.lit(batch_id).cast("long"))
                  .withColumn("_ingested_at", now)
                  .withColumn("_ingest_date", F.to_date(now))
                  .persist())
        good = parsed.where("m IS NOT NULL AND m.data IS NOT NULL OR m.errors IS NOT NULL")
        (parsed.where("NOT (m IS NOT NULL AND m.data IS NOT NULL OR m.errors IS NOT NULL)")
         .select("_topic", "_offset", "_raw", "_ingested_at")
         .write.mode("append").parquet(f"{out}/dlq"))
        (good.select("_topic", "_offset", "_batch_id", "_ingested_at", "_ingest_date", "m.*", "_raw")
         .write.mode("append").partitionBy("_ingest_date").parquet(f"{out}/bronze"))
        good.createOrReplaceTempView("batch")
        silver = session.sql(silver_query).persist()
        silver.write.mode("append").partitionBy("created_date").parquet(f"{out}/silver/tweets")
        silver.createOrReplaceTempView("silver")
        for name, query in GOLD.items():
            session.sql(query).write.mode("append").partitionBy("day").parquet(f"{out}/gold/{name}")
        silver.unpersist()
        parsed.unpersist()
        print(f"batch {batch_id} done", file=sys.stderr, flush=True)

    stream = (spark.readStream.format("text").option("maxFilesPerTrigger", 1)
              .load(args.input)
              .select("value", F.col("_metadata.file_name").alias("_topic"))
              .writeStream.foreachBatch(each_batch)
              .option("checkpointLocation", f"{out}/_checkpoint")
              .trigger(availableNow=True)
              .start())
    stream.awaitTermination()
    spark.stop()


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("split")
    s.add_argument("--file", required=True)
    s.add_argument("--out", required=True)
    s.add_argument("--max-records", type=int, default=100_000)
    s.add_argument("--max-bytes", type=int, default=50_331_648)
    r = sub.add_parser("run")
    r.add_argument("--input", required=True)
    r.add_argument("--out", required=True)
    r.add_argument("--companies", required=True)
    r.add_argument("--cores", type=int, default=os.cpu_count())
    r.add_argument("--driver-memory", default="2g")
    args = ap.parse_args()
    split(args) if args.cmd == "split" else run(args)


if __name__ == "__main__":
    main()
