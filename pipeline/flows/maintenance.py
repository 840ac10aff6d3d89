"""Maintenance of the bucket over months: re-extraction from the WARC archive, compaction, pruning.

Each function is what one task of the `news_maintenance` DAG calls; each is also usable
from a shell. They are idempotent: running one twice for the same day leaves the same state.

* `runs_between()` + `reextract()`: rebuild committed runs from their WARC files with the
  current extractor and cleaner (no crawling), e.g. after an extractor upgrade.
* `compact_day()`: OPTIMIZE ZORDER BY (source, published) of one `dt=` partition of the Delta table,
  then a checkpoint; `cleanup_orphans()`: VACUUM (files older than 7 days no kept version uses).
* `prune_dedupe_index()`: delete near-duplicate index shards older than the dedupe window.
* `abort_stale_uploads()`: abort multipart uploads left open for more than a day (by a store
  that died, or lost the server, before it could abort its own).
* `prune_seen_state()`: drop seen-URL entries stored longer ago than a retention period, and
  `prune_refused_state()` refusals recorded longer ago than theirs. Shard by shard: each shard is
  read on its own and rewritten only when it holds an expired entry, with the conditional
  `update_json` of `pipeline.dataset.state`, so a crawl recording URLs at the same time loses nothing.
  A source still in the old single-object layout is moved into its shards first.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

from pipeline.core.bucket import Bucket
from pipeline.core.config import S3Settings
from pipeline.core.context import RunContext, check_run_id
from pipeline.core.layout import (
    REFUSED_PREFIX,
    SEEN_PREFIX,
    WARC_SUFFIX,
    raw_day_prefix,
    raw_run_id,
    refused_source,
    seen_source,
)
from pipeline.dataset.state import DELTA_KINDS, WORKERS, fold_all, iter_shards, migrate_legacy, update_json
from pipeline.flows.ingest import reextract_run
from pipeline.stages.dedupe_index import DedupeConfig, DedupeIndex
from pipeline.stages.store import checkpoint, optimize_day, vacuum

log = logging.getLogger(__name__)

#: Seen-URL entries older than this are forgotten (a feed rarely re-lists an article after
#: a few days, `max_age_days` cuts sitemaps at 3 by default; 90 leaves a wide margin).
SEEN_RETENTION_DAYS = 90
#: Refusals older than this are forgotten: a refusal holds for the source's `revisit_hours` (a week by
#: default), after which the page is fetched again anyway; the entry is only history by then.
REFUSED_RETENTION_DAYS = 30
#: A multipart upload open this long is a leftover: a store takes minutes, and its own
#: failure handling aborts what it started whenever the server can still be reached.
STALE_UPLOAD_AGE = timedelta(days=1)
#: The most days one re-extraction request may cover (a typo in a date should not queue a year).
MAX_REEXTRACT_DAYS = 62


def _day(value: date | str) -> date:
    if isinstance(value, date):
        return value
    try:
        return date.fromisoformat(str(value).strip()[:10])
    except ValueError as exc:
        raise ValueError(f"bad date {value!r}: expected YYYY-MM-DD") from exc


def days_between(start: date | str, end: date | str) -> list[str]:
    """Every day from start to end inclusive, as YYYY-MM-DD (ValueError when reversed or too long)."""
    first, last = _day(start), _day(end)
    if last < first:
        raise ValueError(f"date range {first}..{last} is reversed")
    n = (last - first).days + 1
    if n > MAX_REEXTRACT_DAYS:
        raise ValueError(f"date range {first}..{last} covers {n} days; at most {MAX_REEXTRACT_DAYS} at once")
    return [(first + timedelta(days=i)).isoformat() for i in range(n)]


def runs_between(bucket: Bucket, start: date | str, end: date | str) -> list[str]:
    """Run ids with WARC files under `raw/dt=<day>/run=<id>/` for each day in the range, sorted."""
    runs: set[str] = set()
    for day in days_between(start, end):
        for key in bucket.list(raw_day_prefix(day)):
            run_id = raw_run_id(key) if key.endswith(WARC_SUFFIX) else None  # ValueError: a folder named no run id
            if run_id:
                runs.add(run_id)
    return sorted(runs)


def reextract(settings: S3Settings, run_id: str, sources_path: Path | str) -> dict:
    """Re-extract one run from its WARC archive and commit it again (replacing its articles).

    Returns the small headline of its report (run id, manifest key, articles stored).
    """
    ctx = RunContext(run_id=check_run_id(run_id), s3=settings, sources_path=Path(sources_path))
    report = reextract_run(ctx)
    return {"run_id": run_id, "manifest": report.get("manifest"), "articles_stored": report.get("articles_stored")}


def compact_day(settings: S3Settings, dt: date | str) -> str | None:
    """OPTIMIZE one day partition (Z-order on source, published) and checkpoint the table; a one-line
    summary, or None when there was nothing to rewrite."""
    metrics = optimize_day(settings, _day(dt).isoformat())
    version = checkpoint(settings)
    removed, added = metrics.get("numFilesRemoved", 0), metrics.get("numFilesAdded", 0)
    return f"{removed} files -> {added} (checkpoint at version {version})" if removed else None


def prune_dedupe_index(bucket: Bucket, as_of: date | str, *, window_days: int | None = None) -> list[str]:
    """Delete dedupe index shards older than the window before `as_of`; the deleted keys.

    Only shard names are listed: nothing is loaded, so this is cheap on a large index.
    """
    config = DedupeConfig() if window_days is None else DedupeConfig(window_days=window_days)
    index = DedupeIndex(config)
    index.run_date = _day(as_of).isoformat()
    return index.delete_expired(bucket)


def abort_stale_uploads(
    bucket: Bucket, as_of: datetime | None = None, *, max_age: timedelta = STALE_UPLOAD_AGE
) -> list[str]:
    """Abort multipart uploads started more than `max_age` before `as_of` (default: now); their keys.

    Their parts take space and are invisible to every reader; no committed object depends on them.
    `as_of` is the wall clock by default, because S3 stamps an upload's start with the server's clock.
    """
    cutoff = (as_of or datetime.now(timezone.utc)) - max_age
    aborted = []
    for upload in bucket.open_uploads():
        if upload["Initiated"] <= cutoff:
            bucket.abort_upload(upload["Key"], upload["UploadId"])
            aborted.append(upload["Key"])
    if aborted:
        log.info("aborted %d multipart uploads started before %s", len(aborted), cutoff.isoformat())
    return sorted(aborted)


def prune_seen_state(
    bucket: Bucket, as_of: datetime | date | str, *, retention_days: float = SEEN_RETENTION_DAYS
) -> dict[str, int]:
    """Forget seen-URL entries stored more than `retention_days` before `as_of`; {source: removed}.

    Entries without a parseable `stored_at` are kept (never lose state on a format surprise).
    """
    return _prune_state(bucket, SEEN_PREFIX, seen_source, "stored_at", _cutoff(as_of, retention_days))


def prune_refused_state(
    bucket: Bucket, as_of: datetime | date | str, *, retention_days: float = REFUSED_RETENTION_DAYS
) -> dict[str, int]:
    """Forget refusals (pages refused as not articles) recorded more than `retention_days` before `as_of`."""
    cutoff = _cutoff(as_of, retention_days)
    return _prune_state(bucket, REFUSED_PREFIX, refused_source, "refused_at", cutoff)


def _cutoff(as_of: datetime | date | str, retention_days: float) -> datetime:
    if not isinstance(as_of, datetime):
        d = _day(as_of)
        as_of = datetime(d.year, d.month, d.day, tzinfo=timezone.utc)
    return as_of - timedelta(days=retention_days)


def _prune_state(
    bucket: Bucket,
    prefix: str,
    legacy_source: Callable[[str], str | None],
    stamp: str,
    cutoff: datetime,
) -> dict[str, int]:
    """Drop the entries of every `prefix` state shard whose `stamp` is before `cutoff`; {source: removed}.

    One shard at a time (memory is one shard's); a shard with nothing expired is not written.
    """
    for key in bucket.list(prefix):
        source = legacy_source(key)
        if source is not None:
            migrate_legacy(bucket, prefix, source)
    if prefix in DELTA_KINDS:
        fold_all(bucket, prefix)  # the runs' pending deltas into their shards, so they are pruned too
    shards = list(iter_shards(bucket, prefix))
    removed: dict[str, int] = {source: 0 for source, _, _ in shards}
    _ = bucket.client  # made once, before the threads share it
    with ThreadPoolExecutor(WORKERS) as pool:
        counts = list(pool.map(lambda item: _prune_shard(bucket, item[2], stamp, cutoff), shards))
    for (source, _, _), n in zip(shards, counts):
        removed[source] += n
    for source, n in removed.items():
        if n:
            log.info("%s%s: forgot %d entries from before %s", prefix, source, n, cutoff.date())
    return removed


def _prune_shard(bucket: Bucket, key: str, stamp: str, cutoff: datetime) -> int:
    """Drop the expired entries of one shard; how many (0: the shard was not rewritten)."""
    got = bucket.get_with_etag(key)
    if got is None or not any(_expired(e, stamp, cutoff) for e in json.loads(got[0] or b"{}").values()):
        return 0  # nothing to do: no write, no race with a crawl recording URLs
    count = {"n": 0}

    def merge(current: dict) -> dict:
        keep = {url: entry for url, entry in current.items() if not _expired(entry, stamp, cutoff)}
        count["n"] = len(current) - len(keep)
        return keep

    update_json(bucket, key, merge)
    return count["n"]


def _expired(entry, stamp: str, cutoff: datetime) -> bool:
    stored = _parse_ts(entry.get(stamp) if isinstance(entry, dict) else None)
    return stored is not None and stored < cutoff


def _parse_ts(value) -> datetime | None:
    if not value:
        return None
    try:
        ts = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
    return ts if ts.tzinfo else ts.replace(tzinfo=timezone.utc)


def cleanup_orphans(settings: S3Settings, as_of: datetime) -> int:
    """VACUUM the articles table: files no version of the last 7 days uses (replaced, optimized away, or
    left by a commit that never happened); how many were deleted. Its retention is the table's own (the
    wall clock, not `as_of`: the log's timestamps are)."""
    return len(vacuum(settings))
