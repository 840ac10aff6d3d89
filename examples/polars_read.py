"""Read the articles Delta table with Polars: `scan_delta` (lazy, filters pushed down) or `read_delta`.

    eval "$(python -m pipeline s3 up --env)"
    python -m examples.polars_read 2026-11-27

No code of this project is needed: the credentials are the AWS environment (`s3 up --env`).
"""

from __future__ import annotations

import os
import sys

import polars as pl

from examples.pandas_read import storage_options


def table_uri(bucket: str | None = None) -> str:
    return f"s3://{bucket or os.environ.get('NEWS_INGEST_BUCKET', 'news')}/articles"


def per_source(day: str, bucket: str | None = None, **creds: str | None) -> pl.DataFrame:
    """Articles per source on one day: lazy, so only the day's partition and two columns are read."""
    lazy = pl.scan_delta(table_uri(bucket), storage_options=storage_options(**creds))
    return lazy.filter(pl.col("dt") == day).group_by("source").agg(pl.len().alias("n")).sort("source").collect()


def read_day(day: str, bucket: str | None = None, **creds: str | None) -> pl.DataFrame:
    """One day's articles, eagerly (`read_delta` with a partition filter)."""
    return pl.read_delta(table_uri(bucket), storage_options=storage_options(**creds)).filter(pl.col("dt") == day)


if __name__ == "__main__":  # pragma: no cover - manual use
    print(per_source(sys.argv[1]))
