"""Compares two lakes' silver.tweets and gold tables (tweetlake's and the Python pipeline's).

    compare.py LAKE_A LAKE_B

Prints, per silver column that gold reads, how many posts agree, and each gold table's rows and
totals in both lakes.
"""

import sys

import duckdb
from deltalake import DeltaTable


def main():
    a_lake, b_lake = sys.argv[1:3]
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    a = DeltaTable(f"{a_lake}/silver/tweets").to_pyarrow_table()
    b = DeltaTable(f"{b_lake}/silver/tweets").to_pyarrow_table()
    con.register("a", a)
    con.register("b", b)
    checks = {
        "company": "a.company IS NOT DISTINCT FROM b.company",
        "sentiment": "a.sentiment IS NOT DISTINCT FROM b.sentiment OR abs(a.sentiment - b.sentiment) < 1e-9",
        "sentiment_label": "a.sentiment_label IS NOT DISTINCT FROM b.sentiment_label",
        "clean_text": "a.clean_text IS NOT DISTINCT FROM b.clean_text",
        "hashtags": "list_sort(a.hashtags) IS NOT DISTINCT FROM list_sort(b.hashtags)",
        "cashtags": "list_sort(a.cashtags) IS NOT DISTINCT FROM list_sort(b.cashtags)",
        "country_code": "a.country_code IS NOT DISTINCT FROM b.country_code",
        "geo_source": "a.geo_source IS NOT DISTINCT FROM b.geo_source",
        "engagement": "a.engagement IS NOT DISTINCT FROM b.engagement",
        "created_at": "a.created_at IS NOT DISTINCT FROM b.created_at",
        "lang": "a.lang IS NOT DISTINCT FROM b.lang",
    }
    cols = ", ".join(f"count(*) FILTER (WHERE {c}) AS {k}" for k, c in checks.items())
    row = con.sql(f"SELECT count(*) AS posts, {cols} FROM a JOIN b USING (id)").fetchall()[0]
    print(f"silver.tweets: {a.num_rows} and {b.num_rows} rows, {row[0]} ids in both")
    for k, v in zip(checks, row[1:]):
        print(f"  {k:16} agrees on {v} of {row[0]}")
    for name, sums in {
        "company_minute": "sum(posts), sum(positive), sum(neutral), sum(negative), sum(sentiment_sum), "
                          "sum(distinct_authors), sum(engagement), sum(geo_posts)",
        "country_hour": "sum(posts), sum(point_posts), sum(engagement), sum(positive)",
        "hashtag_hour": "sum(posts), sum(engagement)",
        "cashtag_hour": "sum(posts), sum(engagement)",
    }.items():
        out = []
        for lake in (a_lake, b_lake):
            con.register("g", DeltaTable(f"{lake}/gold/{name}").to_pyarrow_table())
            out.append(con.sql(f"SELECT count(*), {sums} FROM g").fetchall()[0])
        same = "same" if out[0] == out[1] else "DIFFERENT"
        print(f"gold.{name}: rows and totals ({sums}): {same}\n  {out[0]}\n  {out[1]}")


if __name__ == "__main__":
    main()
