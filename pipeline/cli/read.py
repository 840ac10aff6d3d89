"""`python -m pipeline read`: stream committed articles (the `articles/` Delta table) as JSON Lines, CSV or Parquet."""

from __future__ import annotations

import argparse
import csv
import io
import json
import logging
import sys
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import IO, Any

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.cli.common import UsageError
from pipeline.core.config import S3Settings, load_sources
from pipeline.core.errors import ConfigError
from pipeline.core.paths import default_sources_path
from pipeline.dataset import delta
from pipeline.dataset.read import check_read_args, iter_tables
from pipeline.dataset.schema import ARTICLE_SCHEMA

log = logging.getLogger(__name__)


def configure_read(parser: argparse.ArgumentParser) -> None:
    """Arguments of `python -m pipeline read`."""
    parser.add_argument("--since", help="first day (YYYY-MM-DD, inclusive) or ISO timestamp of ingestion")
    parser.add_argument("--until", help="last day (YYYY-MM-DD, inclusive) or ISO timestamp (exclusive)")
    parser.add_argument(
        "--source",
        action="append",
        help="only this source (repeatable); a name neither in the sources file nor in the table: exit 2",
    )
    parser.add_argument(
        "--sources",
        help=f"sources file naming the known sources (default: $NEWS_INGEST_SOURCES or {default_sources_path()})",
    )
    parser.add_argument("--canonical-only", action="store_true", help="drop duplicates (duplicate_of set)")
    parser.add_argument("--run", dest="run_id", help="only this run id")
    parser.add_argument("--committed-after", help="only rows committed after this ISO timestamp (and still there)")
    parser.add_argument(
        "--since-version",
        type=int,
        metavar="N",
        help="only rows committed by a table version after N (and still there); the version read is logged",
    )
    parser.add_argument("--columns", help="comma-separated columns (default: all)")
    parser.add_argument(
        "--format",
        choices=("jsonl", "csv", "parquet"),
        default="jsonl",
        help="jsonl (default) or csv; parquet (binary) needs --out FILE, or --out - with stdout piped, not a terminal",
    )
    parser.add_argument("--out", help="output file, or - for stdout (default: stdout for jsonl and csv)")


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat().replace("+00:00", "Z")
    return str(value)


def _open_output(out: str | None, binary: bool) -> IO[Any]:
    """Where `read` writes: stdout or a new file (the caller closes it); bytes for Parquet, text otherwise."""
    if out in (None, "-"):
        return sys.stdout.buffer if binary else sys.stdout
    if binary:
        return open(out, "wb")
    return open(out, "w", encoding="utf-8", newline="")


def check_output(fmt: str, out: str | None, *, stdout_is_tty: bool) -> None:
    """Parquet is binary: it goes to `--out FILE`, or to stdout only with `--out -` and stdout not a terminal
    (a pipe or a redirect). Anything else raises UsageError (exit 2) before the bucket is touched."""
    if fmt != "parquet":
        return
    if out is None:
        raise UsageError("--format parquet is binary: give --out FILE (or --out - to pipe it to another program)")
    if out == "-" and stdout_is_tty:
        raise UsageError("--format parquet --out -: stdout is a terminal; give --out FILE or pipe the output")


def check_sources(wanted: Sequence[str], sources_path: Path, settings: S3Settings) -> None:
    """Every `--source` name is in the sources file or has rows in the articles table (a source since
    removed from the file); otherwise UsageError (exit 2) naming the known sources.

    Only names missing from the file cost a table lookup, pruned by the files' `source` statistics.
    """
    configured = [s.name for s in load_sources(sources_path).sources]
    unknown = [n for n in dict.fromkeys(wanted) if n not in configured]
    if not unknown:
        return
    stored = {
        v for batch in delta.scan(settings, source=unknown, columns=["source"]) for v in batch["source"].to_pylist()
    }
    missing = [n for n in unknown if n not in stored]
    if not missing:
        return
    also = sorted(table_sources_hint(settings) - set(configured))
    raise UsageError(
        f"no source named {', '.join(repr(n) for n in missing)} in the sources file or the articles table "
        f"({sources_path} has: {', '.join(configured)}"
        + (f"; the table also holds at least: {', '.join(also)})" if also else ")")
    )


def table_sources_hint(settings: S3Settings) -> set[str]:
    """Source names the table's file statistics show (each file's smallest and largest `source`): read from
    the Delta log alone, no data file; every name is in the table, not every name of the table is here."""
    table = delta.open_table(settings)
    if table is None:
        return set()
    actions = pa.table(table.get_add_actions(flatten=True))
    return {
        v
        for name in ("min.source", "max.source")
        if name in actions.column_names
        for v in actions.column(name).to_pylist()
        if v
    }


def cmd_read(args: argparse.Namespace, *, settings: S3Settings | None = None) -> int:
    """Stream committed articles. Bad arguments raise UsageError (exit 2) before the bucket is touched,
    except a `--source` missing from the sources file, which the table is asked about first;
    storage errors propagate (exit 1)."""
    columns = [c.strip() for c in args.columns.split(",")] if getattr(args, "columns", None) else None
    try:
        check_read_args(
            args.since,
            args.until,
            committed_after=args.committed_after,
            since_version=getattr(args, "since_version", None),
            run_id=args.run_id,
            columns=columns,
        )
    except ConfigError:
        raise  # a bad run id (BadRunId): exit 2 already
    except ValueError as exc:  # a bad date, timestamp or column: the user's argument, not a failure
        raise UsageError(str(exc)) from None
    check_output(args.format, args.out, stdout_is_tty=sys.stdout.isatty())
    if args.source:
        settings = settings or S3Settings.from_env()
        check_sources(args.source, Path(args.sources) if args.sources else default_sources_path(), settings)
    source = args.source[0] if args.source and len(args.source) == 1 else args.source
    tables = iter_tables(
        args.since,
        args.until,
        source,
        args.canonical_only,
        settings=settings,
        committed_after=args.committed_after,
        since_version=getattr(args, "since_version", None),
        run_id=args.run_id,
        columns=columns,
    )
    to_stdout = args.out in (None, "-")
    schema = ARTICLE_SCHEMA if columns is None else pa.schema([ARTICLE_SCHEMA.field(c) for c in columns])
    binary = args.format == "parquet"
    try:
        fh = _open_output(args.out, binary)
    except OSError as exc:
        raise UsageError(f"cannot write {args.out}: {exc.strerror or exc}") from None
    n = 0
    try:
        if binary:
            # A pipe cannot seek: buffer when writing Parquet to stdout.
            buffer = io.BytesIO() if to_stdout else None
            with pq.ParquetWriter(
                fh if buffer is None else buffer, schema.with_metadata(ARTICLE_SCHEMA.metadata), compression="zstd"
            ) as writer:
                for t in tables:
                    writer.write_table(t.cast(writer.schema))
                    n += t.num_rows
            if buffer is not None:
                fh.write(buffer.getvalue())
        elif args.format == "jsonl":
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
                    for column, value in row.items():  # lists (authors, removed ...): JSON text in a CSV cell
                        if isinstance(value, list):
                            row[column] = json.dumps(value, ensure_ascii=False)
                    out.writerow({k: _jsonable(v) if isinstance(v, datetime) else v for k, v in row.items()})
                    n += 1
        fh.flush()
    except BrokenPipeError:
        return 0  # `read | head`: the consumer has what it wanted
    finally:
        if not to_stdout:
            fh.close()
    log.info("read %d articles", n)
    return 0
