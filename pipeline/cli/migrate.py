"""`python -m pipeline migrate`: turn a bucket written with run manifests into the articles Delta table
(every committed run once, no uncommitted attempt; `pipeline.dataset.delta_migrate`)."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from pipeline.core.config import S3Settings
from pipeline.dataset.delta_migrate import migrate


def configure_migrate(parser: argparse.ArgumentParser) -> None:
    """Arguments of `python -m pipeline migrate` (none: the bucket comes from the environment)."""


def cmd_migrate(
    args: argparse.Namespace, *, settings: S3Settings | None = None, out: Callable[[str], Any] = print
) -> int:
    """Migrate; one line per run, then a total. Storage errors propagate (exit 1); running it again is safe."""
    result = migrate(settings or S3Settings.from_env())
    for run_id, version in result["migrated"].items():
        out(f"{run_id}: committed as table version {version}")
    for run_id in result["skipped"]:
        out(f"{run_id}: already in the table, left alone")
    out(f"migrated {len(result['migrated'])} runs, {result['rows']} rows; skipped {len(result['skipped'])}")
    return 0
