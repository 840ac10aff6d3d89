"""Reading the article dataset: committed runs only, by date, source, run or commit time.

`read_articles()` is the Python API (Arrow, pandas or an iterator of dicts); the
`read` command streams the same rows as JSON Lines, CSV or Parquet. Both resolve
files through the manifests (`pipeline.dataset.manifest.plan_files`), never by listing
`articles/`, so files of uncommitted or replaced attempts are never read.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import logging
import sys
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import date, datetime, timezone
from typing import Any, Literal

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipeline.core.config import S3Settings
from pipeline.core.layout import check_dt
from pipeline.dataset.manifest import FileSpec, normalise_ts, plan_files
from pipeline.core.bucket import Bucket, StorageError
from pipeline.dataset.schema import ARTICLE_SCHEMA, conform, project

log = logging.getLogger(__name__)

DateLike = date | datetime | str | None
#: Files downloaded ahead of the one being decoded (bounded memory, overlapped I/O).
PREFETCH = 4


class DatasetChanged(StorageError):
    """A file vanished mid-read: a re-run or compaction replaced it. Reading again is consistent."""


def _bound(value: DateLike, name: str) -> tuple[str | None, datetime | None]:
    """(partition date, exact instant or None) of a since/until argument."""
    if value is None:
        return None, None
    if isinstance(value, str):
        text = value.strip()
        if len(text) == 10:
            return check_dt(text), None
        try:
            value = datetime.fromisoformat(text)
        except ValueError as exc:
            raise ValueError(f"bad {name} {text!r}: expected YYYY-MM-DD or an ISO 8601 timestamp") from exc
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=timezone.utc)
        value = value.astimezone(timezone.utc)
        return value.date().isoformat(), value
    return check_dt(value), None


def _row_filter(spec: FileSpec, source: str | Sequence[str] | None, canonical_only: bool,
                since_ts: datetime | None, until_ts: datetime | None) -> pc.Expression | None:
    conds = []
    if spec.runs is not None:
        conds.append(pc.field("run_id").isin(sorted(spec.runs)))
    if source is not None:
        sources = [source] if isinstance(source, str) else list(source)
        conds.append(pc.field("source").isin(sources))
    if canonical_only:
        conds.append(pc.field("duplicate_of").is_null())
    if since_ts is not None:
        conds.append(pc.field("ingested_at") >= pa.scalar(since_ts, type=ARTICLE_SCHEMA.field("ingested_at").type))
    if until_ts is not None:
        conds.append(pc.field("ingested_at") < pa.scalar(until_ts, type=ARTICLE_SCHEMA.field("ingested_at").type))
    if not conds:
        return None
    expr = conds[0]
    for c in conds[1:]:
        expr = expr & c
    return expr


def iter_tables(since: DateLike = None, until: DateLike = None, source: str | Sequence[str] | None = None,
                canonical_only: bool = False, *, settings: S3Settings | None = None,
                committed_after: str | datetime | None = None, run_id: str | None = None,
                columns: Sequence[str] | None = None) -> Iterator[pa.Table]:
    """The matching rows, one table per committed file, in a stable order (day, commit order).

    `since`/`until`: a date bounds the `dt` partition (inclusive both ends); a datetime
    also bounds `ingested_at` (since inclusive, until exclusive).
    """
    settings = settings or S3Settings.from_env()
    bucket = Bucket(settings)
    cols = project(ARTICLE_SCHEMA, columns)
    since_dt, since_ts = _bound(since, "since")
    until_dt, until_ts = _bound(until, "until")
    specs, _ = plan_files(settings, since_dt=since_dt, until_dt=until_dt,
                          committed_after=normalise_ts(committed_after), run_id=run_id, bucket=bucket)

    def fetch(spec: FileSpec) -> tuple[FileSpec, bytes]:
        try:
            return spec, bucket.get(spec.key)
        except StorageError as exc:
            if exc.code in ("NoSuchKey", "404"):
                raise DatasetChanged(f"{spec.key} was replaced while reading (a re-run or compaction "
                                     f"committed meanwhile); read again", code=exc.code) from None
            raise

    with ThreadPoolExecutor(max_workers=PREFETCH, thread_name_prefix="read-fetch") as pool:
        pending = [pool.submit(fetch, s) for s in specs[:PREFETCH]]
        nxt = PREFETCH
        while pending:
            spec, body = pending.pop(0).result()
            if nxt < len(specs):
                pending.append(pool.submit(fetch, specs[nxt]))
                nxt += 1
            expr = _row_filter(spec, source, canonical_only, since_ts, until_ts)
            table = pq.read_table(io.BytesIO(body), filters=expr)
            table = conform(table)
            if cols is not None:
                table = table.select(cols)
            if table.num_rows:
                yield table


def read_articles(since: DateLike = None, until: DateLike = None, source: str | Sequence[str] | None = None,
                  canonical_only: bool = False, *, settings: S3Settings | None = None,
                  committed_after: str | datetime | None = None, run_id: str | None = None,
                  columns: Sequence[str] | None = None,
                  as_: Literal["arrow", "pandas", "records"] = "arrow") -> Any:
    """Committed articles as a pyarrow Table (`as_="arrow"`), a pandas DataFrame or an iterator of dicts.

    `committed_after`: only runs committed strictly after this time (ISO text or datetime),
    for incremental consumers; remember the largest `committed_at` of `committed_runs()`.
    `canonical_only`: drop rows that are duplicates of another article (`duplicate_of` set).
    """
    kwargs = dict(settings=settings, committed_after=committed_after, run_id=run_id, columns=columns)
    if as_ == "records":
        return (row for t in iter_tables(since, until, source, canonical_only, **kwargs) for row in t.to_pylist())
    if as_ not in ("arrow", "pandas"):
        raise ValueError(f"as_ must be 'arrow', 'pandas' or 'records', not {as_!r}")
    try:
        tables = list(iter_tables(since, until, source, canonical_only, **kwargs))
    except DatasetChanged as exc:
        # Materialised reads restart cleanly: the new plan is consistent.
        log.info("%s; reading again", exc)
        tables = list(iter_tables(since, until, source, canonical_only, **kwargs))
    schema = ARTICLE_SCHEMA if columns is None else pa.schema([ARTICLE_SCHEMA.field(c) for c in columns],
                                                             metadata=ARTICLE_SCHEMA.metadata)
    table = pa.concat_tables([t.cast(schema) for t in tables]) if tables else schema.empty_table()
    if as_ == "pandas":
        return table.to_pandas()
    return table


# --------------------------------------------------------------------------- CLI


def configure_read(parser: argparse.ArgumentParser) -> None:
    """Arguments of `python -m pipeline read`."""
    parser.add_argument("--since", help="first day (YYYY-MM-DD, inclusive) or ISO timestamp of ingestion")
    parser.add_argument("--until", help="last day (YYYY-MM-DD, inclusive) or ISO timestamp (exclusive)")
    parser.add_argument("--source", action="append", help="only this source (repeatable)")
    parser.add_argument("--canonical-only", action="store_true", help="drop duplicates (duplicate_of set)")
    parser.add_argument("--run", dest="run_id", help="only this run id")
    parser.add_argument("--committed-after", help="only runs committed after this ISO timestamp")
    parser.add_argument("--columns", help="comma-separated columns (default: all)")
    parser.add_argument("--format", choices=("jsonl", "csv", "parquet"), default="jsonl")
    parser.add_argument("--out", default="-", help="output file, or - for stdout (default)")


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat().replace("+00:00", "Z")
    return str(value)


def cmd_read(args: argparse.Namespace, *, settings: S3Settings | None = None) -> int:
    """Stream committed articles. Exit 0 on success, 1 on a storage error, 2 on bad arguments."""
    from pipeline.core.context import check_run_id

    try:
        if args.run_id is not None:
            check_run_id(args.run_id)
        columns = [c.strip() for c in args.columns.split(",")] if getattr(args, "columns", None) else None
        project(ARTICLE_SCHEMA, columns)
        _bound(args.since, "since"), _bound(args.until, "until"), normalise_ts(args.committed_after)
    except ValueError as exc:
        print(f"read: {exc}", file=sys.stderr)
        return 2
    source = args.source[0] if args.source and len(args.source) == 1 else args.source
    tables = iter_tables(args.since, args.until, source, args.canonical_only, settings=settings,
                         committed_after=args.committed_after, run_id=args.run_id, columns=columns)
    to_stdout = args.out in (None, "-")
    schema = ARTICLE_SCHEMA if columns is None else pa.schema([ARTICLE_SCHEMA.field(c) for c in columns])
    n = 0
    try:
        if args.format == "parquet":
            sink = sys.stdout.buffer if to_stdout else args.out
            # A pipe cannot seek: buffer when writing Parquet to stdout.
            target = io.BytesIO() if to_stdout else sink
            with pq.ParquetWriter(target, schema.with_metadata(ARTICLE_SCHEMA.metadata),
                                  compression="zstd") as writer:
                for t in tables:
                    writer.write_table(t.cast(writer.schema))
                    n += t.num_rows
            if to_stdout:
                sink.write(target.getvalue())
                sink.flush()
        else:
            fh = sys.stdout if to_stdout else open(args.out, "w", encoding="utf-8", newline="")
            try:
                if args.format == "jsonl":
                    for t in tables:
                        for row in t.to_pylist():
                            fh.write(json.dumps(row, ensure_ascii=False, default=_jsonable))
                            fh.write("\n")
                            n += 1
                else:
                    out = csv.DictWriter(fh, fieldnames=schema.names, extrasaction="ignore")
                    out.writeheader()
                    for t in tables:
                        for row in t.to_pylist():
                            if isinstance(row.get("removed"), list):
                                row["removed"] = json.dumps(row["removed"], ensure_ascii=False)
                            out.writerow({k: _jsonable(v) if isinstance(v, datetime) else v
                                          for k, v in row.items()})
                            n += 1
                fh.flush()
            finally:
                if not to_stdout:
                    fh.close()
    except StorageError as exc:
        print(f"read: {exc}", file=sys.stderr)
        return 1
    except BrokenPipeError:
        return 0  # `read | head`: the consumer has what it wanted
    log.info("read %d articles", n)
    return 0
