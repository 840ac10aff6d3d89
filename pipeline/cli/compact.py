"""`python -m pipeline compact`: OPTIMIZE a day partition of the articles Delta table (Z-order on source,
published), checkpoint it, and with `--cleanup` VACUUM it (`pipeline.stages.store`)."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from pipeline.cli.common import UsageError
from pipeline.core.config import S3Settings
from pipeline.core.layout import check_dt
from pipeline.stages.store import checkpoint, optimize_day, vacuum


def configure_compact(parser: argparse.ArgumentParser) -> None:
    """Arguments of `python -m pipeline compact`."""
    parser.add_argument(
        "--dt", action="append", required=True, metavar="YYYY-MM-DD", help="day partition to optimize (repeatable)"
    )
    parser.add_argument(
        "--cleanup", action="store_true", help="also VACUUM: delete files no version of the last 7 days uses"
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
    settings = settings or S3Settings.from_env()
    for dt in days:
        metrics = optimize_day(settings, dt)
        removed, added = metrics.get("numFilesRemoved", 0), metrics.get("numFilesAdded", 0)
        out(f"{dt}: optimized {removed} files into {added}" if removed else f"{dt}: nothing to optimize")
    out(f"checkpoint at version {checkpoint(settings)}")
    if getattr(args, "cleanup", False):
        removed_files = vacuum(settings)
        out(f"removed {len(removed_files)} unreferenced files")
    return 0
