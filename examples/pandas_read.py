"""Read the article dataset into pandas, two ways.

    python -m examples.pandas_read [YYYY-MM-DD]

1. `read_with_pyarrow_fs`: what any pyarrow user can do: `pyarrow.fs.S3FileSystem`
   pointed at the endpoint (`endpoint_override`), reading the files the committed
   manifests list.
2. `read_with_pipeline`: `pipeline.read_articles(..., as_="pandas")`, which does the same
   plus filters (source, canonical only, incremental by commit time).
"""

from __future__ import annotations

import sys
from datetime import date
from urllib.parse import urlsplit

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from pipeline.core.config import S3Settings
from pipeline.dataset.manifest import plan_files
from pipeline.dataset.schema import ARTICLE_SCHEMA, conform


def s3_filesystem(settings: S3Settings) -> pafs.S3FileSystem:
    """A pyarrow S3 filesystem for the bucket's endpoint (path-style, as SeaweedFS and MinIO want)."""
    parts = urlsplit(settings.endpoint_url) if settings.endpoint_url else None
    return pafs.S3FileSystem(
        access_key=settings.access_key_id,
        secret_key=settings.secret_access_key,
        region=settings.region,
        endpoint_override=parts.netloc if parts else None,
        scheme=parts.scheme if parts else "https",
        force_virtual_addressing=False,
    )


def read_with_pyarrow_fs(
    day: str | date | None = None, settings: S3Settings | None = None, columns: list[str] | None = None
) -> pd.DataFrame:
    """Committed articles of one day (or all days) as a DataFrame, via pyarrow's own S3 client."""
    settings = settings or S3Settings.from_env()
    fs = s3_filesystem(settings)
    specs, _ = plan_files(settings, since_dt=str(day) if day else None, until_dt=str(day) if day else None)
    tables = []
    for spec in specs:
        table = conform(pq.read_table(f"{settings.bucket}/{spec.key}", filesystem=fs))
        if spec.runs is not None:  # a compacted file partly superseded by a re-run
            table = table.filter(pc.is_in(table.column("run_id"), pa.array(sorted(spec.runs))))
        tables.append(table.select(columns) if columns else table)
    if not tables:
        schema = ARTICLE_SCHEMA if not columns else pa.schema([ARTICLE_SCHEMA.field(c) for c in columns])
        return schema.empty_table().to_pandas()
    return pa.concat_tables(tables, promote_options="permissive").to_pandas()


def read_with_pipeline(day: str | date | None = None, settings: S3Settings | None = None, **filters) -> pd.DataFrame:
    """The same through the project's reader (filters: source, canonical_only, committed_after, columns)."""
    from pipeline import read_articles

    return read_articles(since=day, until=day, settings=settings, as_="pandas", **filters)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    df = read_with_pyarrow_fs(argv[0] if argv else None)
    print(f"{len(df)} articles")
    if len(df):
        print(df.groupby("source").size().rename("articles").to_string())
        print(df[["published", "source", "title", "word_count"]].head(10).to_string(index=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
