"""Where the project and its local runtime state live."""

from __future__ import annotations

import os
from pathlib import Path

#: The repository root (the folder holding scrapy.cfg).
ROOT = Path(__file__).resolve().parents[2]


def var_dir() -> Path:
    """Project-local runtime folder (git-ignored): embedded S3 data, pid files, work dirs.

    ``NEWS_INGEST_HOME`` moves it, so tests and parallel checkouts do not collide.
    """
    return Path(os.environ.get("NEWS_INGEST_HOME") or ROOT / "var")


def default_sources_path() -> Path:
    """The sources file used when neither the CLI nor the DAG names one."""
    return Path(os.environ.get("NEWS_INGEST_SOURCES") or ROOT / "config" / "sources.yaml")
