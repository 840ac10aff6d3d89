"""Query the articles Delta table with DuckDB's `delta_scan`: no code of this project needed.

    eval "$(python -m pipeline s3 up --env)"
    python -m examples.duckdb_query "SELECT source, count(*) AS n FROM articles GROUP BY source"

The endpoint and credentials are the standard AWS environment variables (what `s3 up --env`
exports); the bucket is `NEWS_INGEST_BUCKET` (default `news`). `delta_scan` reads the table's
commit log, so DuckDB sees exactly the committed rows: never a half-written or replaced run.
DuckDB is offline here: the httpfs and delta extensions come from the `duckdb-ext-httpfs` and
`duckdb-ext-delta` wheels (`INSTALL '<file>'`, then `LOAD`).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from urllib.parse import urlsplit

import duckdb
import pyarrow as pa


def extension_path(name: str) -> Path:
    """The `<name>.duckdb_extension` file shipped by the `duckdb-ext-<name>` wheel for this DuckDB version."""
    import duckdb_ext  # namespace package of the duckdb-ext-* wheels

    for root in duckdb_ext.__path__:
        found = sorted(Path(root).glob(f"extensions/v{duckdb.__version__}/*/{name}.duckdb_extension"))
        if found:
            return found[0]
    raise RuntimeError(f"no {name} extension for duckdb {duckdb.__version__}: pip install duckdb-ext-{name}")


def _sql_str(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def connect(
    endpoint_url: str | None = None, key_id: str | None = None, secret: str | None = None, region: str | None = None
) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB with httpfs and delta loaded and an S3 secret (default: the AWS environment)."""
    endpoint_url = endpoint_url or os.environ.get("AWS_ENDPOINT_URL") or "https://s3.amazonaws.com"
    con = duckdb.connect()
    for ext in ("httpfs", "delta"):
        con.execute(f"INSTALL {_sql_str(str(extension_path(ext)))}")
        con.execute(f"LOAD {ext}")
    parts = urlsplit(endpoint_url)
    # Secrets are given as SQL literals: DuckDB does not take parameters in CREATE SECRET.
    con.execute(f"""
        CREATE OR REPLACE SECRET news_ingest (
            TYPE s3,
            KEY_ID {_sql_str(key_id or os.environ.get("AWS_ACCESS_KEY_ID", ""))},
            SECRET {_sql_str(secret or os.environ.get("AWS_SECRET_ACCESS_KEY", ""))},
            REGION {_sql_str(region or os.environ.get("AWS_DEFAULT_REGION", "us-east-1"))},
            ENDPOINT {_sql_str(parts.netloc)},
            URL_STYLE 'path',
            USE_SSL {"true" if parts.scheme == "https" else "false"}
        )""")
    return con


def table_uri(bucket: str | None = None) -> str:
    """`s3://<bucket>/articles`: the table (bucket default: `NEWS_INGEST_BUCKET`, else `news`)."""
    return f"s3://{bucket or os.environ.get('NEWS_INGEST_BUCKET', 'news')}/articles"


def register_articles(con: duckdb.DuckDBPyConnection, bucket: str | None = None) -> None:
    """Create the `articles` view over the table (`delta_scan`: partition and statistics pruning included)."""
    con.execute(f"CREATE OR REPLACE VIEW articles AS SELECT * FROM delta_scan({_sql_str(table_uri(bucket))})")


def query(sql: str, bucket: str | None = None, **secret: str | None) -> pa.Table:
    """Run `sql` against the `articles` view; the result as Arrow."""
    con = connect(**secret)
    try:
        register_articles(con, bucket)
        return con.execute(sql).arrow().read_all()
    finally:
        con.close()


if __name__ == "__main__":  # pragma: no cover - manual use
    print(query(sys.argv[1] if len(sys.argv) > 1 else "SELECT source, count(*) AS n FROM articles GROUP BY 1"))
