"""The articles dataset as a Delta Lake table (`s3://<bucket>/articles`, partitioned by `dt`).

The commit log (`articles/_delta_log/`) is the only commit point: a reader of any Delta client
(DuckDB `delta_scan`, Polars, Spark, `deltalake`) sees exactly the committed rows, never a file of
an attempt that died. The store commits a run with one transaction that replaces the rows of
`run_id` AND the sources the run covers (`replaceWhere`), so re-running one source of a run
replaces only that source, and a re-run never doubles a row. Commits of different runs both land:
conflicts are resolved by the library's optimistic protocol (a conditional PUT of the next log
entry, `conditional_put=etag`, which SeaweedFS honours).

Change data feed is on: `changes()` answers "what changed since version N" with inserts and the
deletes of replaced rows.

`deltalake` runs a tokio runtime that does not survive `fork()`: use it in the process that
imported it (or in `spawn`ed children), never in a forked child of a process that already used it.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime, timedelta, timezone
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from pipeline.core.config import S3Settings
from pipeline.core.errors import StorageError
from pipeline.core.layout import (
    ARTICLES_PREFIX,
    check_dt,
    check_run_id,
    delta_commit_key,
    delta_commit_version,
    run_date,
)
from pipeline.core.layout import DELTA_LOG_PREFIX as DELTA_LOG_PREFIX  # re-exported: the table's log prefix
from pipeline.dataset.schema import ARTICLE_SCHEMA, SCHEMA_VERSION, conform

log = logging.getLogger(__name__)

#: The partition column: the run's date (`run_date(run_id)`), as in the bucket layout's `dt=`.
PARTITION = "dt"
#: Where the table lives in the bucket (its log: `articles/_delta_log/`).
TABLE_PREFIX = ARTICLES_PREFIX.rstrip("/")
#: VACUUM never removes files younger than this: time travel and `--since-version` reach back 7 days.
MIN_RETENTION = timedelta(days=7)
#: Columns without file statistics: long free text, where min/max prune nothing and cost bytes.
NO_STATS = ("text", "removed", "warnings", "dup_evidence")
#: Row group size: ~20k articles keeps per-group statistics useful while bounding writer memory.
ROW_GROUP_ROWS = 20_000

#: Set when the table is created (and on each commit, for tables created before a property existed).
TABLE_CONFIG: dict[str, str] = {
    "delta.enableChangeDataFeed": "true",
    "delta.checkpointInterval": "100",
    "delta.logRetentionDuration": "interval 30 days",
    "delta.deletedFileRetentionDuration": f"interval {MIN_RETENTION.days} days",
    "delta.dataSkippingStatsColumns": ",".join(n for n in ARTICLE_SCHEMA.names if n not in NO_STATS),
}

#: The table's Arrow schema: the article columns plus the partition column.
TABLE_SCHEMA: pa.Schema = ARTICLE_SCHEMA.append(pa.field(PARTITION, pa.string(), nullable=False))

#: Error texts of the object store that mean "wrong credentials or bucket": a retry cannot help.
_TERMINAL_HINTS = {
    "InvalidAccessKeyId": "the access key is not known to the server",
    "SignatureDoesNotMatch": "the secret key is wrong",
    "AccessDenied": "access denied (wrong or missing credentials?)",
    "NoSuchBucket": "the bucket does not exist",
}


#: Causes in an object_store error that mean the endpoint did not answer at all.
_UNREACHABLE_HINTS = ("tcp connect error", "Connection refused", "dns error", "error trying to connect")
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def table_uri(settings: S3Settings) -> str:
    """`s3://<bucket>/articles`: the table's URI, for any Delta client."""
    return f"s3://{settings.bucket}/{TABLE_PREFIX}"


def storage_options(settings: S3Settings) -> dict[str, str]:
    """`deltalake` (object_store) options for the bucket: endpoint, credentials, etag-conditional commits."""
    opts = {
        "AWS_REGION": settings.region,
        "conditional_put": "etag",
        "AWS_S3_ADDRESSING_STYLE": "path",
        **settings.aws_env(),
    }
    if (settings.endpoint_url or "").startswith("http://"):
        opts["AWS_ALLOW_HTTP"] = "true"
    return opts


def storage_error(exc: Exception, settings: S3Settings, action: str) -> StorageError:
    """A deltalake / object_store error as a StorageError naming table, endpoint and cause (no credentials)."""
    text = str(exc)
    for secret in (settings.secret_access_key, settings.access_key_id, settings.session_token):
        if secret:
            text = text.replace(secret, "***")
    where = f"{action} on {table_uri(settings)} at {settings.endpoint_url or 'AWS'}"
    for code, meaning in _TERMINAL_HINTS.items():
        if code in text:
            return StorageError(f"{where} failed: {meaning} ({code})", terminal=True, code=code)
    if any(hint in text for hint in _UNREACHABLE_HINTS):
        return StorageError(f"{where} failed: cannot connect to the S3 endpoint (is it running?)", code="Unreachable")
    # object_store nests its causes, one per line ("Generic S3 error / ↳ HTTP error / ↳ ..."): keep them
    # all, on one line, without the terminal colours.
    causes = [_ANSI.sub("", line).strip(" ↳") for line in text.strip().splitlines()]
    detail = " <- ".join(c for c in causes if c) or type(exc).__name__
    return StorageError(f"{where} failed: {type(exc).__name__}: {detail[:500]}")


def _sql_text(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def replace_predicate(run_id: str, sources: Iterable[str | None] | None) -> str:
    """The `replaceWhere` of a run's commit: its partition, its run id and (when given) its sources.

    `None` among the sources stands for rows without a source.
    """
    run_id = check_run_id(run_id)
    parts = [f"{PARTITION} = {_sql_text(run_date(run_id))}", f"run_id = {_sql_text(run_id)}"]
    if sources is not None:
        names = sorted({s for s in sources if s is not None})
        alts = [f"source IN ({', '.join(_sql_text(s) for s in names)})"] if names else []
        if any(s is None for s in sources):
            alts.append("source IS NULL")
        parts.append("(" + " OR ".join(alts) + ")" if alts else "FALSE")
    return " AND ".join(parts)


def open_table(settings: S3Settings, version: int | None = None) -> Any | None:
    """The table (a `deltalake.DeltaTable`) at its latest or a given version; None when there is none yet."""
    from deltalake import DeltaTable
    from deltalake.exceptions import TableNotFoundError

    try:
        return DeltaTable(table_uri(settings), version=version, storage_options=storage_options(settings))
    except TableNotFoundError:
        return None
    except Exception as exc:  # object_store errors surface as OSError / DeltaError with the server's text
        raise storage_error(exc, settings, "open") from None


def ensure_table(settings: S3Settings) -> None:
    """Create the (empty) table with its schema, partitioning and properties, unless it exists.

    Two processes creating it at once: one commit of version 0 wins, the other finds the table there.
    """
    from deltalake import DeltaTable

    if open_table(settings) is not None:
        return
    try:
        DeltaTable.create(
            table_uri(settings),
            TABLE_SCHEMA,
            mode="ignore",
            partition_by=[PARTITION],
            name="articles",
            configuration=TABLE_CONFIG,
            storage_options=storage_options(settings),
        )
    except Exception as exc:
        if open_table(settings) is None:  # not a lost race: a real failure
            raise storage_error(exc, settings, "create the table") from None


def writer_properties(compression: str = "ZSTD", level: int | None = 3) -> Any:
    """Parquet settings of the table's files: zstd-3 (see `pipeline.stages.store`), no stats on free text."""
    from deltalake import ColumnProperties, WriterProperties

    return WriterProperties(
        compression=compression,  # type: ignore[arg-type]
        compression_level=level,
        max_row_group_size=ROW_GROUP_ROWS,
        column_properties={n: ColumnProperties(statistics_enabled="NONE") for n in NO_STATS},
    )


def with_partition(table: pa.Table | pa.RecordBatch, dt: str) -> pa.RecordBatch:
    """An ARTICLE_SCHEMA batch with the `dt` partition column appended (TABLE_SCHEMA)."""
    batch = table if isinstance(table, pa.RecordBatch) else table.combine_chunks().to_batches()[0]
    n = batch.num_rows
    cols = list(batch.columns) + [pa.repeat(pa.scalar(dt, pa.string()), n)]
    return pa.RecordBatch.from_arrays(cols, schema=TABLE_SCHEMA)


def commit_run(
    settings: S3Settings,
    run_id: str,
    batches: Iterable[pa.RecordBatch],
    *,
    sources: Iterable[str | None] | None,
    metadata: dict[str, Any] | None = None,
    properties: Any = None,
    target_file_size: int | None = None,
) -> int:
    """One transaction: replace the run's rows of `sources` (all of the run's rows when None) by `batches`.

    `batches` are TABLE_SCHEMA batches (`with_partition`), streamed to the writer. Returns the
    committed table version. A concurrent commit of the same run and sources fails with a
    StorageError (code "CommitFailed"): never both, never a doubled row (`store.commit_tables` then
    writes the loser again, on top of the winner).
    """
    from deltalake import CommitProperties, write_deltalake
    from deltalake.exceptions import CommitFailedError

    predicate = replace_predicate(run_id, None if sources is None else list(sources))
    reader = pa.RecordBatchReader.from_batches(TABLE_SCHEMA, iter(batches))
    custom = {"news_ingest.run_id": run_id, "news_ingest.schema_version": str(SCHEMA_VERSION), **(metadata or {})}
    ensure_table(settings)  # so every commit is a replaceWhere: two first commits of one run never both append
    # Written through a DeltaTable object: after the write it is at the version this commit got, even
    # when another run commits right after (reopening the table would report that run's version).
    table = open_table(settings)
    assert table is not None  # just ensured
    try:
        write_deltalake(
            table,
            reader,
            mode="overwrite",
            predicate=predicate,
            partition_by=[PARTITION],
            schema_mode="merge",
            storage_options=storage_options(settings),
            writer_properties=properties or writer_properties(),
            target_file_size=target_file_size,
            commit_properties=CommitProperties(
                custom_metadata={k: str(v) for k, v in custom.items()}, max_commit_retries=50
            ),
        )
    except CommitFailedError as exc:
        raise StorageError(
            f"commit of run {run_id} to {table_uri(settings)} lost to a concurrent commit of the same rows: {exc}",
            code="CommitFailed",
        ) from None
    except StorageError:
        raise
    except Exception as exc:
        raise storage_error(exc, settings, f"commit run {run_id}") from None
    return int(table.version())


def commit_key(version: int) -> str:
    """`articles/_delta_log/<version:020d>.json`: the bucket key of a committed table version."""
    return delta_commit_key(version)


def version_of_key(key: str) -> int | None:
    """The table version a `commit_key` names; None for other keys."""
    return delta_commit_version(key)


def run_commits(settings: S3Settings, run_id: str) -> list[int]:
    """The table versions that committed rows of `run_id` (its commit info), oldest first."""
    table = open_table(settings)
    if table is None:
        return []
    try:
        history = table.history()
    except Exception as exc:
        raise storage_error(exc, settings, "read the history") from None
    return sorted(int(h["version"]) for h in history if h.get("news_ingest.run_id") == run_id)


# --------------------------------------------------------------------------- reading


def _filters(
    since_dt: str | None, until_dt: str | None, run_id: str | None, source: Sequence[str] | None
) -> tuple[list[tuple[str, str, Any]], pc.Expression | None]:
    """(partition filters, row filter) for a scan; the run id bounds the partition too."""
    parts: list[tuple[str, str, Any]] = []
    conds = []
    if since_dt is not None:
        parts.append((PARTITION, ">=", since_dt))
    if until_dt is not None:
        parts.append((PARTITION, "<=", until_dt))
    if run_id is not None:
        parts.append((PARTITION, "=", run_date(run_id)))
        conds.append(pc.field("run_id") == run_id)
    if source is not None:
        conds.append(pc.field("source").isin(list(source)))
    expr = None
    for c in conds:
        expr = c if expr is None else expr & c
    return parts, expr


def scan(
    settings: S3Settings,
    *,
    since_dt: str | None = None,
    until_dt: str | None = None,
    run_id: str | None = None,
    source: Sequence[str] | None = None,
    row_filter: pc.Expression | None = None,
    columns: Sequence[str] | None = None,
    version: int | None = None,
) -> Iterator[pa.RecordBatch]:
    """Batches of the table's current rows (ARTICLE_SCHEMA columns, no `dt`), files pruned by
    partition and by file statistics (`run_id`, `source`), rows filtered while decoding."""
    table = open_table(settings, version)
    if table is None:
        return
    parts, expr = _filters(since_dt, until_dt, run_id, source)
    if row_filter is not None:
        expr = row_filter if expr is None else expr & row_filter
    try:
        dataset = table.to_pyarrow_dataset(file_pruning_predicate=parts or None)
        cols = list(columns) if columns is not None else list(ARTICLE_SCHEMA.names)
        yield from dataset.to_batches(columns=cols, filter=expr, batch_readahead=4, fragment_readahead=4)
    except StorageError:
        raise
    except (OSError, pa.ArrowException) as exc:
        raise storage_error(exc, settings, "read") from None


def changes(
    settings: S3Settings,
    *,
    since_version: int | None = None,
    since_timestamp: datetime | None = None,
    until_version: int | None = None,
    columns: Sequence[str] | None = None,
) -> pa.Table:
    """The change data feed after `since_version` (exclusive) or from `since_timestamp` (inclusive),
    up to `until_version` (inclusive) when given:
    ARTICLE_SCHEMA columns (or `columns`) plus `_change_type` ('insert', 'delete', 'update_preimage',
    'update_postimage'), `_commit_version` and `_commit_timestamp`, in commit order."""
    table = open_table(settings)
    meta = ["_change_type", "_commit_version", "_commit_timestamp"]
    cols = (list(columns) if columns is not None else list(ARTICLE_SCHEMA.names)) + meta
    if table is None:
        return _empty_feed(cols)
    start: dict[str, Any] = {}
    if since_timestamp is not None:
        ts = since_timestamp if since_timestamp.tzinfo else since_timestamp.replace(tzinfo=timezone.utc)
        start["starting_timestamp"] = ts.astimezone(timezone.utc).isoformat()
    else:
        start["starting_version"] = (since_version if since_version is not None else -1) + 1
    if start.get("starting_version", 0) > table.version():
        return _empty_feed(cols)
    if until_version is not None:
        if until_version < start.get("starting_version", 0):
            return _empty_feed(cols)
        start["ending_version"] = min(until_version, int(table.version()))
    try:
        reader = table.load_cdf(**start, allow_out_of_range=True, columns=cols)
        feed = pa.table(reader.read_all())
    except Exception as exc:
        raise storage_error(exc, settings, "read the change feed") from None
    if feed.num_rows == 0:
        return _empty_feed(cols)
    feed = _as_feed(feed, cols)
    order = pc.sort_indices(feed, sort_keys=[("_commit_version", "ascending")])
    return feed.take(order)


def _as_feed(feed: pa.Table, cols: Sequence[str]) -> pa.Table:
    """The feed with the article columns as ARTICLE_SCHEMA types (deltalake returns string views)."""
    schema = _empty_feed(cols).schema
    return pa.Table.from_arrays([feed.column(f.name).cast(f.type) for f in schema], schema=schema.with_metadata({}))


def _empty_feed(cols: Sequence[str]) -> pa.Table:
    fields = []
    for c in cols:
        if c in ARTICLE_SCHEMA.names:
            fields.append(ARTICLE_SCHEMA.field(c).with_nullable(True))
        elif c == "_commit_version":
            fields.append(pa.field(c, pa.int64()))
        elif c == "_commit_timestamp":
            fields.append(pa.field(c, pa.timestamp("us", tz="UTC")))
        else:
            fields.append(pa.field(c, pa.string()))
    return pa.schema(fields).empty_table()


def net_inserts(feed: pa.Table) -> pa.Table:
    """The rows of a change feed still in the table: each row's (article_id, run_id) last commit in the
    feed decides; kept when that commit inserted it (a replacement deletes and inserts in one commit)."""
    if feed.num_rows == 0:
        return feed
    keys = zip(feed.column("article_id").to_pylist(), feed.column("run_id").to_pylist())
    kinds = feed.column("_change_type").to_pylist()
    versions = feed.column("_commit_version").to_pylist()
    latest: dict[tuple[str, str], tuple[int, int | None]] = {}  # key -> (version, index of its insert there)
    for i, key in enumerate(keys):
        inserted = i if kinds[i] in ("insert", "update_postimage") else None
        version, index = latest.get(key, (-1, None))
        if versions[i] > version:
            latest[key] = (versions[i], inserted)
        elif versions[i] == version and inserted is not None:
            latest[key] = (version, inserted)
    keep = sorted(i for _, i in latest.values() if i is not None)
    return feed.take(pa.array(keep, type=pa.int64()))


# --------------------------------------------------------------------------- maintenance


def optimize(settings: S3Settings, dt: str | None = None, *, target_size: int | None = None) -> dict[str, Any]:
    """OPTIMIZE ZORDER BY (source, published) on one `dt` partition (all when None): few large files,
    sorted so filters on source and time skip most of them. Data are unchanged (no change-feed rows)."""
    table = open_table(settings)
    if table is None:
        return {"numFilesAdded": 0, "numFilesRemoved": 0}
    filters = [(PARTITION, "=", check_dt(dt))] if dt is not None else None
    try:
        return table.optimize.z_order(
            ["source", "published"],
            partition_filters=filters,
            target_size=target_size,
            writer_properties=writer_properties(),
        )
    except Exception as exc:
        raise storage_error(exc, settings, f"optimize {dt or 'all days'}") from None


def vacuum(settings: S3Settings, *, retention: timedelta = MIN_RETENTION, dry_run: bool = False) -> list[str]:
    """Delete files no version younger than `retention` uses (replaced rows, compacted inputs, and
    files of attempts that died before their commit). `retention` below MIN_RETENTION is refused."""
    if retention < MIN_RETENTION:
        raise ValueError(f"vacuum retention must keep at least {MIN_RETENTION.days} days of time travel")
    table = open_table(settings)
    if table is None:
        return []
    try:
        # `full`: list the whole table folder, so data files no log entry names (an attempt killed
        # before its commit) go too; the default "lite" mode only deletes files the log removed.
        # MIN_RETENTION is enforced above; the library's own check would refuse a lower MIN_RETENTION.
        return table.vacuum(
            retention_hours=int(retention.total_seconds() // 3600),
            dry_run=dry_run,
            full=True,
            enforce_retention_duration=False,
        )
    except Exception as exc:
        raise storage_error(exc, settings, "vacuum") from None


def checkpoint(settings: S3Settings) -> int | None:
    """Write a checkpoint of the latest version (readers then skip the JSON log before it) and drop
    log entries older than the log retention; the version checkpointed, None without a table."""
    table = open_table(settings)
    if table is None:
        return None
    try:
        table.create_checkpoint()
        table.cleanup_metadata()
    except Exception as exc:
        raise storage_error(exc, settings, "checkpoint") from None
    return int(table.version())


def as_articles(batch: pa.RecordBatch | pa.Table) -> pa.Table:
    """Rows read from the table as ARTICLE_SCHEMA types (Delta readers may return string views, large types)."""
    table = batch if isinstance(batch, pa.Table) else pa.Table.from_batches([batch])
    return conform(table.drop_columns([c for c in table.column_names if c not in ARTICLE_SCHEMA.names]))
