"""`python -m pipeline read`: stream committed articles (the `articles/` Delta table) as JSON Lines, CSV or Parquet."""

from __future__ import annotations

import argparse
import csv
import io
import json
import logging
import sys
from datetime import datetime
from typing import IO, Any

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.cli.common import UsageError
from pipeline.core.config import S3Settings
from pipeline.core.errors import ConfigError
from pipeline.dataset.read import check_read_args, iter_tables
from pipeline.dataset.schema import ARTICLE_SCHEMA

log = logging.getLogger(__name__)


def configure_read(parser: argparse.ArgumentParser) -> None:
    """Arguments of `python -m pipeline read`."""
    parser.add_argument("--since", help="first day (YYYY-MM-DD, inclusive) or ISO timestamp of ingestion")
    parser.add_argument("--until", help="last day (YYYY-MM-DD, inclusive) or ISO timestamp (exclusive)")
    parser.add_argument("--source", action="append", help="only this source (repeatable)")
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
    parser.add_argument("--format", choices=("jsonl", "csv", "parquet"), default="jsonl")
    parser.add_argument("--out", default="-", help="output file, or - for stdout (default)")


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


def cmd_read(args: argparse.Namespace, *, settings: S3Settings | None = None) -> int:
    """Stream committed articles. Bad arguments raise UsageError (exit 2) before the bucket is touched;
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
