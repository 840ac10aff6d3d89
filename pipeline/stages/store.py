"""The store stage: a run's articles -> one transaction on the `articles/` Delta table.

A run commits with one `replaceWhere` transaction (`pipeline.dataset.delta.commit_run`): the rows
of its `run_id` AND of the sources it covers are replaced by the new ones, so

* re-running one source of a run replaces that source's rows only (the other sources stay);
* re-running a whole run replaces the whole run; no row is ever doubled;
* runs committing at the same time both land (Delta's optimistic concurrency retries the commit);
* two commits of the same run and sources at once both land too, one after the other: the one that
  loses Delta's conflict check is written again on top of the winner (`COMMIT_ATTEMPTS`).

A failure before the log entry is written leaves nothing visible: the data files it wrote are
referenced by no version, and VACUUM (`vacuum`, run by the maintenance DAG) removes them.
Maintenance: `optimize_day` (OPTIMIZE ZORDER BY source, published) replaced the old `compact`, and
`vacuum` (>= 7 days of time travel) the old orphan cleanup.
"""

from __future__ import annotations

import itertools
import json
import logging
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime, timedelta, timezone
from typing import IO, Any

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
#: The JSON is read a block at a time: a few blocks and their tables in memory (16 MiB blocks held ~100 MB
#: for a 5,000-article run, 4 MiB ~65 MB). A line longer than a block takes the per-record path.
JSON_BLOCK_BYTES = 4 << 20
#: Tries of a commit that lost to a concurrent commit of the same run's rows (see `commit_tables`).
COMMIT_ATTEMPTS = 3
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
    starts): memory is the run's size in Arrow (`store_stage` reads its file twice instead). `now`
    stamps `ingested_at`; by default the run id's own timestamp, so re-running a task is
    deterministic. Rows repeating an `article_id` of the run are dropped. `max_file_bytes` is the
    writer's target file size; `max_rows_per_file` bounds the rows converted at a time.
    `parquet_options` (`compression`, `compression_level`) replaces PARQUET_OPTIONS (the benchmark
    compares codecs with it).
    """
    stamp, batch_rows = _stamp_and_rows(ctx.run_id, now, max_rows_per_file)
    tables = list(_article_tables(records, ctx.run_id, stamp, batch_rows))
    return commit_tables(
        ctx,
        lambda: iter(tables),
        sources=sources,
        batch_rows=batch_rows,
        max_file_bytes=max_file_bytes,
        parquet_options=parquet_options,
    )


def _stamp_and_rows(run_id: str, now: datetime | None, max_rows_per_file: int) -> tuple[datetime, int]:
    if max_rows_per_file < 1:
        raise ValueError("max_rows_per_file must be >= 1")
    stamp = now or run_time(run_id)
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=timezone.utc)
    return stamp, min(ROW_GROUP_ROWS, max_rows_per_file)


def commit_tables(
    ctx: RunContext,
    tables: Callable[[], Iterator[pa.Table]],
    *,
    sources: Iterable[str] | None = None,
    batch_rows: int = ROW_GROUP_ROWS,
    max_file_bytes: int = MAX_FILE_BYTES,
    parquet_options: dict[str, Any] | None = None,
) -> str:
    """Commit the ARTICLE_SCHEMA tables that each call of `tables()` yields anew, in one transaction;
    the commit's log key. Two passes: the first learns the sources covered and the rows (what the
    commit is stamped with before it starts), the second streams the tables, rows repeating an
    `article_id` of the run dropped, to the writer. Memory holds one table and the run's article ids."""
    run_id = ctx.run_id
    covered: set[str | None] = set(sources or ())
    seen: set[str] = set()
    repeats = 0
    for table in tables():
        covered.update(pc.unique(table.column("source")).to_pylist())
        for a in table.column("article_id").to_pylist():
            repeats += a in seen
            seen.add(a)
    rows = len(seen)
    dt = run_date(run_id)

    def first_occurrences() -> Iterator[pa.RecordBatch]:
        kept: set[str] = set()
        for table in tables():
            keep = []
            for a in table.column("article_id").to_pylist():
                keep.append(a not in kept)
                kept.add(a)
            if not all(keep):
                table = table.filter(pa.array(keep))
            for rb in table.to_batches(max_chunksize=batch_rows):
                yield delta.with_partition(rb, dt)

    metadata = {
        "news_ingest.code_version": pipeline.__version__,
        "news_ingest.sources": json.dumps(sorted(s for s in covered if s is not None)),
        "news_ingest.rows": rows,
        "news_ingest.repeats_dropped": repeats,
    }
    properties = _writer_properties(parquet_options)
    for attempt in range(1, COMMIT_ATTEMPTS + 1):
        try:
            version = delta.commit_run(
                ctx.s3,
                run_id,
                first_occurrences(),  # a fresh pass over the tables on every try
                sources=covered,
                metadata=metadata,
                properties=properties,
                target_file_size=max_file_bytes,
            )
            break
        except StorageError as exc:
            # Another commit replaced rows of this run and these sources while this one was writing (two
            # runs of one run id at once, or a task and its retry). Redone on top of it, this commit
            # replaces them as it would have a moment later: the later commit wins, as when run one
            # after the other. Its first try's files are referenced by no version; VACUUM removes them.
            if exc.code != "CommitFailed" or attempt == COMMIT_ATTEMPTS:
                raise
            log.warning("run %s: %s; committing again on top of it (try %d)", run_id, exc, attempt + 1)
    log.info(
        "committed run %s (sources %s): %d rows, table version %d", run_id, sorted(map(str, covered)), rows, version
    )
    return delta.commit_key(version)


def _download(bucket: Bucket, key: str, out: IO[bytes]) -> None:
    """`key` into `out` as it arrives (gunzipped when it ends in .gz): never whole in memory."""
    with bucket.reading(key) as body:
        shutil.copyfileobj(body, out, 1 << 20)
    out.flush()


def _file_tables(path: str, run_id: str, stamp: datetime, batch_rows: int) -> Iterator[pa.Table]:
    """The JSON Lines file at `path` as ARTICLE_SCHEMA tables of at most `batch_rows` rows, parsed by
    pyarrow (C++, straight to columns, a block at a time); from the first line pyarrow cannot parse against
    the schema (a float word count ...) on, the per-record Python path takes over. The same tables, in the
    same order, on every call."""
    done = 0  # lines yielded as tables: the blocks pyarrow parsed are the file's first lines, in order
    try:
        reader = pj.open_json(
            path,
            read_options=pj.ReadOptions(block_size=JSON_BLOCK_BYTES),
            parse_options=pj.ParseOptions(explicit_schema=JSON_PARSE_SCHEMA, unexpected_field_behavior="ignore"),
        )
        for table in _article_tables(
            pa.RecordBatchReader.from_batches(reader.schema, reader), run_id, stamp, batch_rows
        ):
            done += table.num_rows
            yield table
        return
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as exc:
        log.info("%s: not parseable as Arrow JSON after %d lines (%s); converting record by record", path, done, exc)
    yield from _article_tables(itertools.islice(_json_lines(path), done, None), run_id, stamp, batch_rows)


def _json_lines(path: str) -> Iterator[dict]:
    with open(path, "rb") as fh:
        for line in fh:
            if line.strip():
                yield json.loads(line)


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
    yield nothing now); the records' own sources are always covered. The file is downloaded (gunzipped)
    to a local file and read from there twice (`commit_tables`), a block at a time.
    """
    stamp, batch_rows = _stamp_and_rows(ctx.run_id, now, max_rows_per_file)
    with tempfile.NamedTemporaryFile(prefix="deduped-", suffix=".jsonl") as tmp:
        _download(ctx.bucket, deduped_key, tmp)
        return commit_tables(
            ctx, lambda: _file_tables(tmp.name, ctx.run_id, stamp, batch_rows), sources=sources, batch_rows=batch_rows
        )


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
