"""What every stage function needs to know about the run it belongs to."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from pipeline.core.bucket import Bucket
from pipeline.core.config import S3Settings, SourcesConfig, load_sources

# Run ids are defined with the keys they go into; importable from here too (`RunContext` checks them).
from pipeline.core.layout import check_run_id, make_run_id, run_prefix
from pipeline.core.paths import default_sources_path

__all__ = ["RunContext", "check_run_id", "make_run_id"]


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
        """`<area>/dt=YYYY-MM-DD/run=<run_id>/`: this run's folder in raw/, work/ or rejects/ (see `layout`)."""
        return run_prefix(area, self.run_id)

    def __getstate__(self) -> dict:
        # Drop cached clients: boto3 clients do not pickle across processes.
        state = dict(self.__dict__)
        state.pop("bucket", None)
        return state
