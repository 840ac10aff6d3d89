"""Manifests: the commit points of the article dataset, and how readers resolve them to files.

Two kinds of manifest (JSON objects in the bucket):

* ``_manifests/run=<run_id>.json``: one per committed run. A run's Parquet files are
  visible only through it. Re-running a run replaces it (new ``attempt``).
* ``_manifests/compaction/dt=YYYY-MM-DD.json``: written by `pipeline.stages.store.compact`. It
  lists merged files for a day and ``covers``: ``{run_id: attempt}`` of the runs whose
  rows they hold.

Resolution rule (`plan_files`): a run is served by its day's compaction manifest when
``covers[run_id]`` equals the run manifest's current ``attempt``; otherwise by its own
manifest's files. Rows of runs a compaction covers but no longer serves (re-run since)
are filtered out of the compacted files by ``run_id``. Each switch is one PUT of one
object, so readers see a run's old rows or its new rows, never both or neither.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date, datetime, timezone
from typing import Any

from pipeline.core.bucket import Bucket, StorageError
from pipeline.core.config import S3Settings
from pipeline.core.layout import RUN_MANIFEST_PREFIX, compaction_manifest_key

MANIFEST_VERSION = 1


def iso_utc(value: datetime) -> str:
    """Fixed-width UTC ISO 8601 (`2026-11-27T21:00:00.000000Z`): sorts as text in time order."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def normalise_ts(value: str | datetime | date | None) -> str | None:
    """`committed_after` as given by a user (date, datetime or ISO text) -> `iso_utc` text."""
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.strip())
        except ValueError as exc:
            raise ValueError(f"bad timestamp {value!r}: expected ISO 8601") from exc
    if isinstance(value, date) and not isinstance(value, datetime):
        value = datetime(value.year, value.month, value.day, tzinfo=timezone.utc)
    return iso_utc(value)


def _get_many(bucket: Bucket, keys: list[str]) -> list[Any]:
    if not keys:
        return []
    # Manifests are small; fetching them in parallel keeps `read` snappy with many runs.
    with ThreadPoolExecutor(max_workers=min(8, len(keys))) as pool:
        return list(pool.map(bucket.get_json, keys))


def load_run_manifests(settings: S3Settings, *, bucket: Bucket | None = None) -> list[dict]:
    """Every run manifest in the bucket, sorted by (committed_at, run_id)."""
    bucket = bucket or Bucket(settings)
    keys = [k for k in bucket.list(RUN_MANIFEST_PREFIX) if k.endswith(".json")]
    try:
        manifests = _get_many(bucket, keys)
    except StorageError as exc:
        if exc.code in ("NoSuchKey", "404"):
            # A manifest vanished between list and get (should not happen: they are replaced,
            # not deleted); listing again gives a consistent view.
            manifests = _get_many(bucket, [k for k in bucket.list(RUN_MANIFEST_PREFIX) if k.endswith(".json")])
        else:
            raise
    return sorted(manifests, key=lambda m: (m.get("committed_at", ""), m.get("run_id", "")))


def committed_runs(
    settings: S3Settings, *, committed_after: str | datetime | None = None, bucket: Bucket | None = None
) -> list[dict]:
    """Manifests of committed runs, oldest commit first; only those committed strictly after
    `committed_after` when given (incremental readers pass the last `committed_at` they saw)."""
    after = normalise_ts(committed_after)
    runs = load_run_manifests(settings, bucket=bucket)
    if after is not None:
        runs = [m for m in runs if m.get("committed_at", "") > after]
    return runs


def load_compaction(bucket: Bucket, dt: str) -> tuple[dict, str] | None:
    """(compaction manifest, etag) of a day, or None."""
    got = bucket.get_with_etag(compaction_manifest_key(dt))
    if got is None:
        return None
    return json.loads(got[0]), got[1]


@dataclass(frozen=True)
class FileSpec:
    """One Parquet file to read, with the runs whose rows to keep (None: all rows)."""

    key: str
    dt: str
    rows: int
    bytes: int
    runs: frozenset[str] | None = None


def plan_files(
    settings: S3Settings,
    *,
    since_dt: str | None = None,
    until_dt: str | None = None,
    committed_after: str | datetime | None = None,
    run_id: str | None = None,
    bucket: Bucket | None = None,
) -> tuple[list[FileSpec], list[dict]]:
    """The committed files a reader must read for these filters, and the run manifests selected.

    Files are ordered by day, then commit order, so output is stable between reads.
    """
    bucket = bucket or Bucket(settings)
    runs = committed_runs(settings, committed_after=committed_after, bucket=bucket)
    if run_id is not None:
        runs = [m for m in runs if m.get("run_id") == run_id]
    if since_dt is not None:
        runs = [m for m in runs if m["dt"] >= since_dt]
    if until_dt is not None:
        runs = [m for m in runs if m["dt"] <= until_dt]
    days = sorted({m["dt"] for m in runs})
    compactions = dict(zip(days, _get_many_compactions(bucket, days)))
    specs: list[FileSpec] = []
    for dt in days:
        day_runs = [m for m in runs if m["dt"] == dt]
        comp = compactions.get(dt)
        covers = comp.get("covers", {}) if comp else {}
        served = {m["run_id"] for m in day_runs if covers.get(m["run_id"]) == m.get("attempt")}
        if served:
            assert comp is not None  # `served` is non-empty only when the compaction's `covers` matched
            for f in comp["files"]:
                file_runs = set(f.get("runs", []))
                keep = file_runs & served
                if not keep:
                    continue
                specs.append(
                    FileSpec(f["key"], dt, f["rows"], f["bytes"], None if file_runs <= served else frozenset(keep))
                )
        for m in day_runs:
            if m["run_id"] in served:
                continue
            for f in m["files"]:
                specs.append(FileSpec(f["key"], dt, f["rows"], f["bytes"], None))
    return specs, runs


def _get_many_compactions(bucket: Bucket, days: list[str]) -> list[dict | None]:
    if not days:
        return []
    with ThreadPoolExecutor(max_workers=min(8, len(days))) as pool:
        return [None if got is None else got[0] for got in pool.map(lambda d: load_compaction(bucket, d), days)]


def referenced_keys(manifests: Iterable[dict]) -> set[str]:
    """Every file key a set of manifests (run or compaction) lists."""
    return {f["key"] for m in manifests for f in m.get("files", [])}
