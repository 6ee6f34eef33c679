"""Prints bench/peers results (results.jsonl) as a Markdown table, with the machine and versions."""

import datetime as dt
import json
import os
import platform
import statistics
import subprocess
import sys
from importlib import metadata


def version(pkg):
    try:
        return metadata.version(pkg)
    except metadata.PackageNotFoundError:
        return None


def main():
    rows = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo")
                if l.startswith("model name")), platform.processor())
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    tweetlake = os.environ.get("TWEETLAKE_VERSION", "")
    java = ""
    try:
        java = subprocess.run(["java", "-version"], capture_output=True, text=True).stderr.splitlines()[0]
    except (OSError, IndexError):
        pass
    versions = [f"{tweetlake}".strip(), f"Python {platform.python_version()}"]
    for pkg in ["pyarrow", "duckdb", "deltalake", "vaderSentiment", "confluent-kafka", "pyspark"]:
        if version(pkg):
            versions.append(f"{pkg} {version(pkg)}")
    if java and version("pyspark"):
        versions.append(java)
    print(f"{dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} cores "
          f"({cpu}), {mem:.1f} GiB RAM, {platform.system()} {platform.release()}; "
          + ", ".join(v for v in versions if v) + ".\n")
    print("| pipeline | source | posts | run | wall s | posts/s | CPU s per 1,000 posts "
          "| peak RSS MiB | load avg (1 min) before |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    groups = {}
    for r in rows:
        groups.setdefault((r["pipeline"], r["source"]), []).append(r)
        print(f"| {r['pipeline']} | {r['source']} | {r['posts']:,} | {r['run']} | {r['wall_s']:.1f} "
              f"| {r['posts'] / r['wall_s']:,.0f} | {r['cpu_s'] * 1000 / r['posts']:.2f} "
              f"| {r['peak_rss_mib']:,.0f} | {r['load_before'][0]:.2f} |")
    print("\nMedians:\n")
    print("| pipeline | source | runs | posts/s | CPU s per 1,000 posts | peak RSS MiB |")
    print("|---|---|---:|---:|---:|---:|")
    for (name, source), rs in groups.items():
        print(f"| {name} | {source} | {len(rs)} "
              f"| {statistics.median(r['posts'] / r['wall_s'] for r in rs):,.0f} "
              f"| {statistics.median(r['cpu_s'] * 1000 / r['posts'] for r in rs):.2f} "
              f"| {statistics.median(r['peak_rss_mib'] for r in rs):,.0f} |")


if __name__ == "__main__":
    main()
