"""Migrate a bucket written with manifests into the articles Delta table (`python -m pipeline migrate`).

Before the Delta table, a run became visible through `_manifests/run=<run_id>.json` (its Parquet
files under `articles/dt=…/run=<run_id>/`), and a day's compaction through
`_manifests/compaction/dt=….json` (merged files under `run=compacted/`, `covers`: the attempt of
each run whose rows they hold). The rule those readers followed, kept here to read such a bucket
once more: a run is served by its day's compaction when `covers[run_id]` is the run manifest's
current `attempt`, otherwise by its own manifest's files. Files that no manifest lists (attempts
that died, superseded attempts) are never read.

Each committed run becomes one Delta commit replacing that run's rows (`delta.commit_run`), so
running the migration again gives the same table; runs the table already has a commit of (stored
after the switch to Delta) are left alone. At the end `_manifests/migrated.json` records what was
migrated: until it exists, VACUUM refuses to run, since it would delete the old files (they sit
in the table's folder and no table version lists them).
"""

from __future__ import annotations

import io
import logging
from collections import defaultdict
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipeline.core.bucket import Bucket
from pipeline.core.config import S3Settings
from pipeline.core.layout import RUN_MANIFEST_PREFIX, compaction_manifest_key
from pipeline.dataset import delta
from pipeline.dataset.schema import conform

log = logging.getLogger(__name__)

#: Written when a migration finished; its presence lets VACUUM run on a bucket that has manifests.
MIGRATED_KEY = "_manifests/migrated.json"


def legacy_manifests(bucket: Bucket) -> list[dict]:
    """Every run manifest in the bucket, oldest commit first."""
    keys = [k for k in bucket.list(RUN_MANIFEST_PREFIX) if k.endswith(".json")]
    if not keys:
        return []
    with ThreadPoolExecutor(max_workers=min(8, len(keys))) as pool:
        manifests = list(pool.map(bucket.get_json, keys))
    return sorted(manifests, key=lambda m: (m.get("committed_at", ""), m.get("run_id", "")))


def run_sources(bucket: Bucket, manifests: list[dict]) -> dict[str, list[tuple[str, frozenset[str] | None]]]:
    """run id -> [(file key, runs to keep from it or None for all rows)] by the manifests' resolution rule."""
    plan: dict[str, list[tuple[str, frozenset[str] | None]]] = defaultdict(list)
    by_day: dict[str, list[dict]] = defaultdict(list)
    for m in manifests:
        by_day[m["dt"]].append(m)
    for dt, runs in sorted(by_day.items()):
        got = bucket.get_json(compaction_manifest_key(dt)) if bucket.exists(compaction_manifest_key(dt)) else None
        covers = (got or {}).get("covers", {})
        served = {m["run_id"] for m in runs if covers.get(m["run_id"]) == m.get("attempt")}
        for f in (got or {}).get("files", []):
            for run_id in set(f.get("runs", [])) & served:
                plan[run_id].append((f["key"], frozenset({run_id})))
        for m in runs:
            if m["run_id"] not in served:
                plan[m["run_id"]].extend((f["key"], None) for f in m.get("files", []))
    return dict(plan)


def _rows(bucket: Bucket, files: list[tuple[str, frozenset[str] | None]], dt: str) -> Iterator[pa.RecordBatch]:
    """The run's rows of its files, as TABLE_SCHEMA batches (older schema versions conformed)."""
    for key, runs in files:
        table = conform(pq.read_table(io.BytesIO(bucket.get(key))))
        if runs is not None:
            table = table.filter(pc.is_in(table.column("run_id"), pa.array(sorted(runs))))
        for batch in table.to_batches(max_chunksize=delta.ROW_GROUP_ROWS):
            yield delta.with_partition(batch, dt)


def migrate(settings: S3Settings, *, bucket: Bucket | None = None) -> dict:
    """Commit every run the manifests commit into the Delta table, each once, no uncommitted attempt.

    Returns {"migrated": {run_id: version}, "skipped": [run ids already in the table], "rows": n}.
    """
    bucket = bucket or Bucket(settings)
    manifests = legacy_manifests(bucket)
    plan = run_sources(bucket, manifests)
    migrated: dict[str, int] = {}
    skipped: list[str] = []
    rows = 0
    for m in manifests:
        run_id = m["run_id"]
        if delta.run_commits(settings, run_id):
            skipped.append(run_id)  # stored (or migrated) into the table already: its rows there are newer
            continue
        counted = [0]

        def batches(files=plan.get(run_id, []), dt=m["dt"], counted=counted) -> Iterator[pa.RecordBatch]:
            for batch in _rows(bucket, files, dt):
                counted[0] += batch.num_rows
                yield batch

        migrated[run_id] = delta.commit_run(
            settings,
            run_id,
            batches(),
            sources=None,
            metadata={
                "news_ingest.migrated_from": f"_manifests/run={run_id}.json",
                "news_ingest.attempt": m.get("attempt", ""),
            },
        )
        n = counted[0]
        rows += n
        log.info("migrated run %s: %d rows, table version %d", run_id, n, migrated[run_id])
    bucket.put_json(
        MIGRATED_KEY,
        {
            "migrated_at": datetime.now(timezone.utc).isoformat(),
            "runs": sorted({m["run_id"] for m in manifests}),
            "version": delta.open_table(settings).version() if manifests else None,  # type: ignore[union-attr]
        },
    )
    return {"migrated": migrated, "skipped": skipped, "rows": rows}


def unmigrated(bucket: Bucket) -> bool:
    """True when the bucket has run manifests and no finished migration: VACUUM would delete their files."""
    return bool(bucket.list(RUN_MANIFEST_PREFIX)) and not bucket.exists(MIGRATED_KEY)
