"""The store stage: a run's articles -> one transaction on the `articles/` Delta table.

A run commits with one `replaceWhere` transaction (`pipeline.dataset.delta.commit_run`): the rows
of its `run_id` AND of the sources it covers are replaced by the new ones, so

* re-running one source of a run replaces that source's rows only (the other sources stay);
* re-running a whole run replaces the whole run; no row is ever doubled;
* runs committing at the same time both land (Delta's optimistic concurrency retries the commit).

A failure before the log entry is written leaves nothing visible: the data files it wrote are
referenced by no version, and VACUUM (`vacuum`, run by the maintenance DAG) removes them.
Maintenance: `optimize_day` (OPTIMIZE ZORDER BY source, published) replaced the old `compact`, and
`vacuum` (>= 7 days of time travel) the old orphan cleanup.
"""

from __future__ import annotations

import gzip
import io
import json
import logging
from collections.abc import Iterable, Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pj

import pipeline
from pipeline.core.bucket import Bucket, StorageError
from pipeline.core.config import S3Settings
from pipeline.core.context import RunContext
from pipeline.core.layout import check_dt, run_date
from pipeline.dataset import delta
from pipeline.dataset.delta_migrate import unmigrated
from pipeline.dataset.schema import JSON_PARSE_SCHEMA, records_to_table, table_to_articles

log = logging.getLogger(__name__)

#: ~128 MB files: big enough for efficient scans, small enough to rewrite and to hold in memory.
MAX_FILE_BYTES = 128 * 1024 * 1024
#: Rows converted at a time (and the Parquet row group size): bounded memory per batch.
ROW_GROUP_ROWS = delta.ROW_GROUP_ROWS
#: zstd level 3: measured (`make bench-store`, before Delta) to cost about the same store CPU as the
#: faster codecs once the server's CPU for the extra bytes is counted, with files 50-85% smaller.
PARQUET_OPTIONS: dict[str, Any] = {"compression": "ZSTD", "compression_level": 3}


def run_time(run_id: str) -> datetime:
    """The timestamp a run id encodes (`20261127T210000Z...`): the run's deterministic clock."""
    return datetime.strptime(run_id[:16], "%Y%m%dT%H%M%SZ").replace(tzinfo=timezone.utc)


def _batches(records: Iterable[dict], size: int) -> Iterator[list[dict]]:
    batch: list[dict] = []
    for rec in records:
        batch.append(rec)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def _article_tables(
    records: Iterable[dict] | pa.Table | pa.RecordBatchReader, run_id: str, stamp: datetime, batch_rows: int
) -> Iterator[pa.Table]:
    """The input as ARTICLE_SCHEMA tables of at most `batch_rows` rows (Arrow input: no per-value Python)."""
    if isinstance(records, pa.Table):
        for rb in records.to_batches(max_chunksize=batch_rows):
            yield table_to_articles(pa.Table.from_batches([rb]), run_id=run_id, ingested_at=stamp)
    elif isinstance(records, pa.RecordBatchReader):
        for rb in records:
            yield table_to_articles(pa.Table.from_batches([rb]), run_id=run_id, ingested_at=stamp)
    else:
        for batch in _batches(records, batch_rows):
            yield records_to_table(batch, run_id=run_id, ingested_at=stamp)


def _first_occurrences(tables: Iterable[pa.Table]) -> tuple[list[pa.Table], int]:
    """The tables without rows repeating an `article_id` seen before in the run; and how many were dropped."""
    seen: set[str] = set()
    out: list[pa.Table] = []
    repeats = 0
    for table in tables:
        keep = []
        for a in table.column("article_id").to_pylist():
            keep.append(a not in seen)
            seen.add(a)
        if not all(keep):
            repeats += keep.count(False)
            table = table.filter(pa.array(keep))
        if table.num_rows:
            out.append(table)
    return out, repeats


def _writer_properties(parquet_options: dict[str, Any] | None) -> Any:
    opts = {**PARQUET_OPTIONS, **(parquet_options or {})}
    return delta.writer_properties(str(opts["compression"]).upper(), opts.get("compression_level"))


def store_articles(
    ctx: RunContext,
    records: Iterable[dict] | pa.Table | pa.RecordBatchReader,
    *,
    sources: Iterable[str] | None = None,
    max_rows_per_file: int = 100_000,
    max_file_bytes: int = MAX_FILE_BYTES,
    now: datetime | None = None,
    parquet_options: dict[str, Any] | None = None,
) -> str:
    """Commit a run's articles to the Delta table in one transaction; returns the commit's log key
    (`articles/_delta_log/<version>.json`, see `pipeline.dataset.delta.version_of_key`).

    The rows of this run whose source is among `sources` or among the records' own sources are
    replaced; the run's other sources keep their rows. Pass every source the run crawled, so that
    a source that now yields no article loses its old rows too.

    `records`: article dicts (the dedupe stage's records), or Arrow data with those columns (the
    fast path). They are converted to Arrow first (the sources must be known before the commit
    starts): memory is the run's size in Arrow. `now` stamps `ingested_at`; by default the run
    id's own timestamp, so re-running a task is deterministic. Rows repeating an `article_id` of
    the run are dropped. `max_file_bytes` is the writer's target file size; `max_rows_per_file`
    bounds the rows converted at a time. `parquet_options` (`compression`, `compression_level`)
    replaces PARQUET_OPTIONS (the benchmark compares codecs with it).
    """
    if max_rows_per_file < 1:
        raise ValueError("max_rows_per_file must be >= 1")
    run_id = ctx.run_id
    stamp = now or run_time(run_id)
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=timezone.utc)
    batch_rows = min(ROW_GROUP_ROWS, max_rows_per_file)
    tables, repeats = _first_occurrences(_article_tables(records, run_id, stamp, batch_rows))
    covered: set[str | None] = set(sources or ())
    for table in tables:
        covered.update(pc.unique(table.column("source")).to_pylist())
    dt = run_date(run_id)
    rows = sum(t.num_rows for t in tables)
    version = delta.commit_run(
        ctx.s3,
        run_id,
        (delta.with_partition(rb, dt) for t in tables for rb in t.to_batches(max_chunksize=batch_rows)),
        sources=covered,
        metadata={
            "news_ingest.code_version": pipeline.__version__,
            "news_ingest.sources": json.dumps(sorted(s for s in covered if s is not None)),
            "news_ingest.rows": rows,
            "news_ingest.repeats_dropped": repeats,
        },
        properties=_writer_properties(parquet_options),
        target_file_size=max_file_bytes,
    )
    log.info(
        "committed run %s (sources %s): %d rows, table version %d", run_id, sorted(map(str, covered)), rows, version
    )
    return delta.commit_key(version)


def store_stage(
    ctx: RunContext,
    deduped_key: str,
    *,
    sources: Iterable[str] | None = None,
    max_rows_per_file: int = 100_000,
    now: datetime | None = None,
) -> str:
    """Stage 5: the dedupe stage's JSONL(.gz) -> one Delta commit; returns the commit's log key.

    `sources`: the sources this run covers (their old rows of the run are replaced even when they
    yield nothing now); the records' own sources are always covered. The JSON is parsed by pyarrow
    (C++, straight to columns); a file pyarrow cannot parse against the schema (a float word
    count ...) takes the per-record Python path instead.
    """
    data = ctx.bucket.get(deduped_key)
    if deduped_key.endswith(".gz"):
        data = gzip.decompress(data)
    records: Iterable[dict] | pa.Table
    try:
        records = pj.read_json(
            io.BytesIO(data),
            read_options=pj.ReadOptions(block_size=16 << 20),
            parse_options=pj.ParseOptions(explicit_schema=JSON_PARSE_SCHEMA, unexpected_field_behavior="ignore"),
        )
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as exc:
        log.info("%s: not parseable as Arrow JSON (%s); converting record by record", deduped_key, exc)
        records = (json.loads(line) for line in data.splitlines() if line.strip())
    return store_articles(ctx, records, sources=sources, max_rows_per_file=max_rows_per_file, now=now)


# --------------------------------------------------------------------------- maintenance


def optimize_day(settings: S3Settings, dt: str, *, target_size: int = MAX_FILE_BYTES) -> dict[str, Any]:
    """OPTIMIZE one day partition, Z-ordered by (source, published); the library's metrics.

    Rows and the change feed are unchanged: incremental readers do not see optimized rows again.
    """
    return delta.optimize(settings, check_dt(dt), target_size=target_size)


def vacuum(settings: S3Settings, *, retention: timedelta = delta.MIN_RETENTION) -> list[str]:
    """VACUUM: delete files older than `retention` (>= 7 days) that no kept version uses, the files of
    commits that never happened included; the deleted files' URIs.

    Refused (StorageError) on a bucket with run manifests not yet migrated: their Parquet files sit in
    the table's folder, listed by no version, and VACUUM would delete them (`python -m pipeline migrate`).
    """
    if unmigrated(Bucket(settings)):
        raise StorageError(
            f"refusing to VACUUM s3://{settings.bucket}/articles: the bucket has run manifests that were not "
            "migrated and VACUUM would delete their files; run `python -m pipeline migrate` first",
            terminal=True,
        )
    return delta.vacuum(settings, retention=retention)


def checkpoint(settings: S3Settings) -> int | None:
    """Checkpoint the table's latest version and expire old log entries; the version, None without a table."""
    return delta.checkpoint(settings)
