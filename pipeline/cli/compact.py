"""`python -m pipeline compact`: OPTIMIZE a day partition of the articles Delta table (Z-order on source,
published), checkpoint it, and with `--cleanup` VACUUM it (`pipeline.flows.maintenance`, `pipeline.stages.store`).

A day with nothing to rewrite is not an error (exit 0): its line says why (no table yet, no partition for
the day, already compacted by the last OPTIMIZE, or a single small file).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from pipeline.cli.common import UsageError
from pipeline.core.config import S3Settings
from pipeline.core.layout import check_dt
from pipeline.dataset.delta import ROW_GROUP_ROWS
from pipeline.flows.maintenance import compact_partition
from pipeline.stages.store import checkpoint, vacuum


def configure_compact(parser: argparse.ArgumentParser) -> None:
    """Arguments of `python -m pipeline compact`."""
    parser.add_argument(
        "--dt",
        action="append",
        required=True,
        metavar="YYYY-MM-DD",
        help=f"day partition to optimize (repeatable); a day with nothing to gain (no files, already compacted, "
        f"a single file of at most {ROW_GROUP_ROWS} rows) is skipped, saying why",
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
    rewrote = False
    for dt in days:
        done = compact_partition(settings, dt)
        rewrote = rewrote or done.skipped is None
        out(f"{dt}: {done.summary()}")
    if rewrote:
        out(f"checkpoint at version {checkpoint(settings)}")
    if getattr(args, "cleanup", False):
        removed_files = vacuum(settings)
        out(f"removed {len(removed_files)} unreferenced files")
    return 0
