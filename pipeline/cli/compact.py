"""`python -m pipeline compact`: merge a day's small Parquet files into a few, atomically (`pipeline.stages.store`)."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from pipeline.cli.common import UsageError
from pipeline.core.config import S3Settings
from pipeline.core.layout import check_dt
from pipeline.stages.store import cleanup_orphans, compact


def configure_compact(parser: argparse.ArgumentParser) -> None:
    """Arguments of `python -m pipeline compact`."""
    parser.add_argument(
        "--dt", action="append", required=True, metavar="YYYY-MM-DD", help="day partition to compact (repeatable)"
    )
    parser.add_argument("--max-rows-per-file", type=int, default=500_000)
    parser.add_argument(
        "--cleanup", action="store_true", help="also delete unreferenced files older than an hour (crashed attempts)"
    )


def cmd_compact(
    args: argparse.Namespace, *, settings: S3Settings | None = None, out: Callable[[str], Any] = print
) -> int:
    """`compact --dt D`: a bad date raises UsageError (exit 2) before the bucket is touched; storage errors
    propagate (exit 1)."""
    try:
        days = [check_dt(d) for d in args.dt]
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if args.max_rows_per_file < 1:
        raise UsageError(f"--max-rows-per-file must be at least 1, not {args.max_rows_per_file}")
    settings = settings or S3Settings.from_env()
    for dt in days:
        key = compact(settings, dt, max_rows_per_file=args.max_rows_per_file)
        out(f"{dt}: {'committed ' + key if key else 'nothing to compact'}")
    if getattr(args, "cleanup", False):
        removed = cleanup_orphans(settings)
        out(f"removed {len(removed)} orphaned files")
    return 0
