"""Maintenance of the bucket over months: re-extraction from the WARC archive, compaction, pruning.

Each function is what one task of the `news_maintenance` DAG calls; each is also usable
from a shell. They are idempotent: running one twice for the same day leaves the same state.

* `runs_between()` + `reextract()`: rebuild committed runs from their WARC files with the
  current extractor and cleaner (no crawling), e.g. after an extractor upgrade.
* `compact_day()`: OPTIMIZE ZORDER BY (source, published) of one `dt=` partition of the Delta table,
  then a checkpoint; `compact_partition()` without the checkpoint, saying why when there is nothing to
  rewrite; `cleanup_orphans()`: VACUUM (files older than 7 days no kept version uses).
* `prune_dedupe_index()`: delete near-duplicate index shards older than the dedupe window;
  `compact_dedupe_segments()` merges one day's index segments into one (a reader then reads one footer
  for the day instead of one per commit), `compact_dedupe_window()` every earlier day of the window.
* `abort_stale_uploads()`: abort multipart uploads left open for more than a day (by a store
  that died, or lost the server, before it could abort its own).
* `prune_unused_warcs()`: delete the WARC files of crawl attempts a finished run did not use (a retry
  replaced them; no reader opens them again).
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
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

from pipeline.core.bucket import Bucket
from pipeline.core.config import S3Settings
from pipeline.core.context import RunContext, check_run_id
from pipeline.core.layout import (
    DEDUPE_INDEX_PREFIX,
    REFUSED_PREFIX,
    SEEN_PREFIX,
    WARC_SUFFIX,
    crawl_summaries_prefix,
    dedupe_segment_prefix,
    raw_day_prefix,
    raw_prefix,
    raw_run_id,
    refused_source,
    seen_source,
)
from pipeline.dataset import delta
from pipeline.dataset.state import DELTA_KINDS, WORKERS, fold_all, iter_shards, migrate_legacy, update_json
from pipeline.dataset.warc import run_warc_keys
from pipeline.flows.ingest import reextract_run
from pipeline.stages.dedupe_index import DedupeConfig, DedupeIndex, SegmentCompaction, compact_segments, list_segments
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
#: A run younger than this may still be retrying a crawl: its unnamed WARC files may be a live attempt's.
UNUSED_WARC_GRACE = timedelta(days=2)
#: How many days before the grace period each prune looks at (a daily schedule covers each day 7 times).
UNUSED_WARC_DAYS = 7
#: The most days one re-extraction request may cover (a typo in a date should not queue a year).
MAX_REEXTRACT_DAYS = 62
#: A day of one file is not rewritten when that file is one row group: OPTIMIZE would merge nothing, and
#: sorting one row group changes no file or row-group statistic a reader prunes by. A larger single file is sorted.
MIN_FILES = 2
#: How far back the history is searched for the last OPTIMIZE of a day (commits, newest first).
OPTIMIZE_LOOKBACK = 500


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


@dataclass(frozen=True)
class Compaction:
    """What compacting one day did: the files it rewrote, or why it rewrote none (`skipped`)."""

    dt: str
    files_removed: int = 0
    files_added: int = 0
    skipped: str | None = None

    def summary(self) -> str:
        """One line: `optimized N files into M`, or `nothing to compact: <why>`."""
        if self.skipped is not None:
            return f"nothing to compact: {self.skipped}"
        return f"optimized {self.files_removed} files into {self.files_added}"


def compact_partition(settings: S3Settings, dt: date | str) -> Compaction:
    """OPTIMIZE one day partition (Z-order on source, published) unless there is nothing to gain
    (`compaction_skip_reason`); no checkpoint (`compact_day` adds it)."""
    day = _day(dt).isoformat()
    reason = compaction_skip_reason(settings, day)
    if reason is not None:
        return Compaction(day, skipped=reason)
    metrics = optimize_day(settings, day)
    return Compaction(day, metrics.get("numFilesRemoved", 0), metrics.get("numFilesAdded", 0))


def compact_day(settings: S3Settings, dt: date | str) -> str:
    """`compact_partition` then a checkpoint of the table; a one-line summary that says why when
    nothing was rewritten."""
    done = compact_partition(settings, dt)
    if done.skipped is not None:
        return done.summary()
    return f"{done.files_removed} files -> {done.files_added} (checkpoint at version {checkpoint(settings)})"


def compaction_skip_reason(settings: S3Settings, dt: str) -> str | None:
    """Why OPTIMIZE of day `dt` would gain nothing, or None when it would rewrite something useful:
    no table yet, no partition for the day, the last OPTIMIZE of the day wrote exactly its current files,
    or a single file of one row group. (delta-rs's Z-order rewrites whatever it is given, even its own output.)"""
    table = delta.open_table(settings)
    if table is None:
        return (
            f"no articles table in s3://{settings.bucket}/{delta.TABLE_PREFIX} yet (nothing stored, or an empty bucket)"
        )
    files = _day_files(table)
    today = files.get(dt, [])
    if not today:
        days = sorted(files)
        where = f"the table has {len(days)} day(s), {days[0]} to {days[-1]}" if days else "the table has no rows"
        return f"no partition dt={dt}: nothing was stored that day ({where})"
    paths = {f["path"] for f in today}
    last = _last_optimize(table, dt)
    if (
        last is not None
        and {f["path"] for f in _day_files(delta.open_table(settings, last["version"])).get(dt, [])} == paths
    ):
        when = datetime.fromtimestamp(last["timestamp"] / 1000, tz=timezone.utc).isoformat(timespec="seconds")
        return (
            f"already compacted: the OPTIMIZE of table version {last['version']} ({when}) wrote its "
            f"{len(paths)} file(s), {_size(today)}, and no commit changed the day since"
        )
    rows = sum(f["num_records"] or 0 for f in today)
    if len(today) < MIN_FILES and rows <= delta.ROW_GROUP_ROWS:
        return (
            f"dt={dt} is 1 file ({rows} rows, {_size(today)}): compaction merges {MIN_FILES} or more files, "
            f"or sorts a file of more than {delta.ROW_GROUP_ROWS} rows"
        )
    return None


def _day_files(table) -> dict[str, list[dict]]:
    """dt -> the add actions (path, size_bytes, num_records) of the table version `table` is at."""
    import pyarrow as pa

    actions = pa.table(table.get_add_actions(flatten=True)).select(
        ["path", "size_bytes", "num_records", "partition.dt"]
    )
    out: dict[str, list[dict]] = {}
    for row in actions.to_pylist():
        out.setdefault(row["partition.dt"], []).append(row)
    return out


def _last_optimize(table, dt: str) -> dict | None:
    """The newest OPTIMIZE commit (history entry) whose predicate covered day `dt`, within the lookback."""
    for entry in table.history(limit=OPTIMIZE_LOOKBACK):
        if entry.get("operation") != "OPTIMIZE":
            continue
        predicate = str((entry.get("operationParameters") or {}).get("predicate") or "[]")
        if f"'{dt}'" in predicate or predicate.strip() == "[]":  # this day, or every day
            return entry
    return None


def _size(files: list[dict]) -> str:
    n = sum(f["size_bytes"] for f in files)
    return f"{n / 2**20:.1f} MiB" if n >= 2**20 else f"{n / 2**10:.1f} KiB"


def prune_dedupe_index(bucket: Bucket, as_of: date | str, *, window_days: int | None = None) -> list[str]:
    """Delete dedupe index shards older than the window before `as_of`; the deleted keys.

    Only shard names are listed: nothing is loaded, so this is cheap on a large index.
    """
    config = DedupeConfig() if window_days is None else DedupeConfig(window_days=window_days)
    index = DedupeIndex(config)
    index.run_date = _day(as_of).isoformat()
    return index.delete_expired(bucket)


def compact_dedupe_segments(bucket: Bucket, day: date | str) -> SegmentCompaction:
    """Merge the dedupe index segments of one run date into one, then delete the merged ones.

    Safe beside running dedupe stages: readers see each row once, and a commit of that day made
    meanwhile is kept (`pipeline.stages.dedupe_index.compact_segments`).
    """
    return compact_segments(bucket, _day(day).isoformat())


def compact_dedupe_window(
    bucket: Bucket, as_of: date | str, *, window_days: int | None = None
) -> list[SegmentCompaction]:
    """Compact the index segments of each day of the window before `as_of` that has more than one.

    Only days before `as_of`'s: the current day is still being committed to (it would be merged again
    within the hour). One listing decides which days need it.
    """
    window = DedupeConfig().window_days if window_days is None else window_days
    today = _day(as_of)
    oldest = today - timedelta(days=window)
    per_day: dict[date, int] = {}
    for _, number, _, _ in list_segments(bucket, dedupe_segment_prefix(DEDUPE_INDEX_PREFIX)):
        day = date(1970, 1, 1) + timedelta(days=number)
        per_day[day] = per_day.get(day, 0) + 1
    return [compact_dedupe_segments(bucket, d) for d in sorted(per_day) if oldest <= d < today and per_day[d] > 1]


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


def prune_unused_warcs(
    bucket: Bucket, as_of: datetime | date | str, *, grace: timedelta = UNUSED_WARC_GRACE, days: int = UNUSED_WARC_DAYS
) -> list[str]:
    """Delete the WARC files of crawl attempts no crawl summary names, in runs older than `grace`; the keys.

    A retried crawl writes new files next to the failed attempt's, and its summary names the ones the run
    used (`run_warc_keys`): the others are never read again. Only runs of the `days` days before
    `as_of - grace` are looked at, so a daily schedule stays incremental; a run without summaries (archived
    by an older version, where every file counts) is left alone.
    """
    cutoff = _cutoff(as_of, grace.total_seconds() / 86400)
    last_day = cutoff.date()
    deleted: list[str] = []
    for run_id in runs_between(bucket, last_day - timedelta(days=days), last_day):
        run_time = datetime.strptime(run_id[:16], "%Y%m%dT%H%M%SZ").replace(tzinfo=timezone.utc)
        if run_time > cutoff or not bucket.list(crawl_summaries_prefix(run_id)):
            continue
        used = set(run_warc_keys(bucket, run_id))
        unused = [k for k in bucket.list(raw_prefix(run_id)) if k.endswith(WARC_SUFFIX) and k not in used]
        if unused:
            bucket.delete(unused)
            deleted.extend(unused)
    if deleted:
        log.info("deleted %d WARC files of crawl attempts no run used", len(deleted))
    return sorted(deleted)
