"""Read the articles Delta table into pandas, two ways:

1. `read_with_deltalake`: `deltalake.DeltaTable(...).to_pandas()`, no code of this project: a
   consumer with the bucket's credentials (the AWS environment `s3 up --env` exports) needs nothing else;
2. `read_with_pipeline`: `pipeline.read_articles(..., as_="pandas")`, the same rows with the
   project's filters (source, run, canonical only, what changed since a version).

    eval "$(python -m pipeline s3 up --env)"
    python -m examples.pandas_read 2026-11-27
"""

from __future__ import annotations

import os
import sys
from typing import Any

import pandas as pd


def storage_options(endpoint_url: str | None = None, key_id: str | None = None, secret: str | None = None) -> dict:
    """`deltalake` options for an S3-compatible endpoint (default: the AWS environment variables)."""
    endpoint_url = endpoint_url or os.environ.get("AWS_ENDPOINT_URL") or ""
    opts = {
        "AWS_ACCESS_KEY_ID": key_id or os.environ.get("AWS_ACCESS_KEY_ID", ""),
        "AWS_SECRET_ACCESS_KEY": secret or os.environ.get("AWS_SECRET_ACCESS_KEY", ""),
        "AWS_REGION": os.environ.get("AWS_DEFAULT_REGION", "us-east-1"),
    }
    if endpoint_url:
        opts |= {"AWS_ENDPOINT_URL": endpoint_url, "AWS_ALLOW_HTTP": str(endpoint_url.startswith("http:")).lower()}
    return opts


def read_with_deltalake(day: str, bucket: str | None = None, **creds: str | None) -> pd.DataFrame:
    """One day of articles: the `dt` partition filter prunes every other day's files."""
    from deltalake import DeltaTable

    uri = f"s3://{bucket or os.environ.get('NEWS_INGEST_BUCKET', 'news')}/articles"
    return DeltaTable(uri, storage_options=storage_options(**creds)).to_pandas(filters=[("dt", "=", day)])


def read_with_pipeline(day: str, settings: Any = None, **filters: Any) -> pd.DataFrame:
    """The same through the project's API (`filters`: source, run_id, canonical_only, since_version ...)."""
    from pipeline import read_articles

    return read_articles(since=day, until=day, settings=settings, as_="pandas", **filters)


if __name__ == "__main__":  # pragma: no cover - manual use
    print(read_with_deltalake(sys.argv[1]).groupby("source").size())
