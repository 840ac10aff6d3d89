"""What every stage function needs to know about the run it belongs to."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import cached_property
from pathlib import Path

from pipeline.core.config import S3Settings, SourcesConfig, load_sources
from pipeline.core.paths import default_sources_path
from pipeline.core.bucket import Bucket, run_prefix

_RUN_ID = re.compile(r"^\d{8}T\d{6}Z(?:[A-Za-z0-9._-]{0,40})$")


def make_run_id(when: datetime) -> str:
    """Deterministic run id from a timestamp (an Airflow data interval end, or now for ad-hoc runs)."""
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return when.astimezone(timezone.utc).strftime("%Y%m%dT%H%M%SZ")


def check_run_id(run_id: str) -> str:
    """Run ids go into keys: accept only the documented shape (YYYYMMDDTHHMMSSZ, optional suffix)."""
    if not _RUN_ID.match(run_id):
        raise ValueError(f"bad run id {run_id!r}: expected YYYYMMDDTHHMMSSZ, optionally followed by [A-Za-z0-9._-]")
    return run_id


@dataclass
class RunContext:
    """Run id, bucket settings and the sources file; cheap to build, safe to pickle."""

    run_id: str
    s3: S3Settings = field(default_factory=S3Settings.from_env)
    sources_path: Path = field(default_factory=default_sources_path)

    def __post_init__(self) -> None:
        check_run_id(self.run_id)
        self.sources_path = Path(self.sources_path)

    @cached_property
    def sources(self) -> SourcesConfig:
        return load_sources(self.sources_path)

    @cached_property
    def bucket(self) -> Bucket:
        return Bucket(self.s3)

    def prefix(self, area: str) -> str:
        """`<area>/dt=YYYY-MM-DD/run=<run_id>/`: this run's folder in raw/, work/ or rejects/."""
        return run_prefix(area, self.run_id)

    def __getstate__(self) -> dict:
        # Drop cached clients: boto3 clients do not pickle across processes.
        state = dict(self.__dict__)
        state.pop("bucket", None)
        return state
