"""Query the article dataset with DuckDB straight over the bucket's S3 endpoint (httpfs).

    python -m examples.duckdb_query "SELECT source, count(*) AS n FROM articles GROUP BY source"

The endpoint and credentials are the standard ones (`S3Settings.from_env()`: the AWS
environment variables, or the embedded SeaweedFS that `python -m pipeline s3 up` runs).
The `articles` view covers exactly the files the committed manifests list
(`pipeline.dataset.manifest.plan_files`), so DuckDB never sees a half-written or replaced run.
DuckDB is offline here: the httpfs extension comes from the `duckdb-ext-httpfs` wheel.
"""

from __future__ import annotations

import sys
from datetime import date, datetime
from pathlib import Path
from urllib.parse import urlsplit

import duckdb
import pyarrow as pa

from pipeline.core.config import S3Settings
from pipeline.dataset.manifest import plan_files
from pipeline.dataset.schema import ARTICLE_SCHEMA


def httpfs_extension_path() -> Path:
    """The httpfs extension file shipped by the `duckdb-ext-httpfs` wheel for this DuckDB version."""
    import duckdb_ext  # namespace package of the duckdb-ext-* wheels

    for root in duckdb_ext.__path__:
        found = sorted(Path(root).glob(f"extensions/v{duckdb.__version__}/*/httpfs.duckdb_extension"))
        if found:
            return found[0]
    raise RuntimeError(f"no httpfs extension for duckdb {duckdb.__version__}: pip install duckdb-ext-httpfs")


def _sql_str(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def connect(settings: S3Settings | None = None) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB with httpfs loaded and an S3 secret for the bucket's endpoint."""
    settings = settings or S3Settings.from_env()
    con = duckdb.connect()
    con.execute(f"INSTALL {_sql_str(str(httpfs_extension_path()))}")
    con.execute("LOAD httpfs")
    parts = urlsplit(settings.endpoint_url or "https://s3.amazonaws.com")
    # Secrets are given as SQL literals: DuckDB does not take parameters in CREATE SECRET.
    con.execute(f"""
        CREATE OR REPLACE SECRET news_ingest (
            TYPE s3,
            KEY_ID {_sql_str(settings.access_key_id or "")},
            SECRET {_sql_str(settings.secret_access_key or "")},
            REGION {_sql_str(settings.region)},
            ENDPOINT {_sql_str(parts.netloc)},
            URL_STYLE 'path',
            USE_SSL {"true" if parts.scheme == "https" else "false"}
        )""")
    return con


def register_articles(
    con: duckdb.DuckDBPyConnection,
    settings: S3Settings | None = None,
    *,
    since: str | date | None = None,
    until: str | date | None = None,
    committed_after: str | datetime | None = None,
) -> int:
    """Create the view `articles` over the committed files of the days asked for; returns the file count."""
    settings = settings or S3Settings.from_env()
    specs, _ = plan_files(
        settings,
        since_dt=str(since) if since else None,
        until_dt=str(until) if until else None,
        committed_after=committed_after,
    )
    url = lambda key: _sql_str(f"s3://{settings.bucket}/{key}")
    whole = [url(s.key) for s in specs if s.runs is None]
    parts = []
    if whole:
        parts.append(f"SELECT * FROM read_parquet([{', '.join(whole)}], union_by_name = true)")
    for s in specs:
        if s.runs is not None:  # compacted file partly superseded by a re-run: keep the runs it still serves
            runs = ", ".join(_sql_str(r) for r in sorted(s.runs))
            parts.append(f"SELECT * FROM read_parquet({url(s.key)}, union_by_name = true) WHERE run_id IN ({runs})")
    if not parts:  # nothing committed yet: an empty view with the right columns
        con.register("articles_empty", pa.Table.from_batches([], schema=ARTICLE_SCHEMA))
        parts.append("SELECT * FROM articles_empty")
    con.execute("CREATE OR REPLACE VIEW articles AS " + " UNION ALL BY NAME ".join(parts))
    return len(specs)


def query(sql: str, settings: S3Settings | None = None, **filters) -> pa.Table:
    """Run `sql` (which refers to the view `articles`) and return an Arrow table."""
    con = connect(settings)
    try:
        register_articles(con, settings, **filters)
        return con.execute(sql).fetch_arrow_table()
    finally:
        con.close()


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    sql = (
        argv[0]
        if argv
        else (
            "SELECT source, count(*) AS articles, count(*) FILTER (WHERE duplicate_of IS NULL) "
            "AS canonical FROM articles GROUP BY source ORDER BY articles DESC"
        )
    )
    print(query(sql).to_pandas().to_string(index=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
