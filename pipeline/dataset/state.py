"""Incremental crawl state in the bucket.

- ``state/seen/<source>.json``: canonical URL -> {url, content_hash, etag, last_modified,
  stored_at, article_id} of every stored article. Written ONLY by the store stage after the
  run's manifest commit (``record_stored``), so a crawl killed mid-run loses nothing: its
  pages were never marked seen and the next run fetches them again.
- ``state/refused/<source>.json``: canonical URL -> {url, reason, refused_at, run_id} of every page
  fetched as an article and refused as not one (a tag page, an about page ...): the spider skips it
  while the refusal is younger than the source's `revisit_hours` (a week when that is 0). Written
  after the commit too (``record_refused``).
- ``state/http/<source>.json``: feed/sitemap/robots URL -> {etag, last_modified, links}
  written by the crawl at its end; ``links`` are the (url, kind) pairs the document
  announced, so a 304 can re-announce them without parsing.

Writers use conditional puts (If-Match on the ETag read, If-None-Match: * when creating)
and retry on a lost race, so concurrent writers merge instead of overwriting each other.
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Callable
from datetime import datetime, timezone

from pipeline.core.bucket import Bucket, PreconditionFailed
from pipeline.core.layout import http_key, refused_key, seen_key
from pipeline.text.urls import canonicalize

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 10


def _load(bucket: Bucket, key: str) -> tuple[dict, str | None]:
    got = bucket.get_with_etag(key)
    if got is None:
        return {}, None
    body, etag = got
    data = json.loads(body) if body.strip() else {}
    if not isinstance(data, dict):
        raise ValueError(f"{key}: expected a JSON object")
    return data, etag


def update_json(bucket: Bucket, key: str, merge: Callable[[dict], dict]) -> dict:
    """Read-modify-write `key` with a conditional put; retried with jittered backoff on a lost race."""
    for attempt in range(1, MAX_ATTEMPTS + 1):
        current, etag = _load(bucket, key)
        new = merge(current)
        try:
            if etag:
                bucket.put_json(key, new, if_match=etag)
            else:
                bucket.put_json(key, new, if_none_match="*")
            return new
        except PreconditionFailed:
            log.info("state %s changed under us (attempt %s), retrying", key, attempt)
            time.sleep(min(2.0, 0.05 * 2**attempt) * random.uniform(0.5, 1.5))
    raise PreconditionFailed(f"state {key}: gave up after {MAX_ATTEMPTS} concurrent-write conflicts")


def merge_entries(bucket: Bucket, key: str, entries: dict) -> dict:
    """Add `entries` to the JSON object at `key` (newer values win), with `update_json`'s conditional write."""

    def merge(current: dict) -> dict:
        current.update(entries)
        return current

    return update_json(bucket, key, merge)


def load_seen(bucket: Bucket, source: str, *, exclude_run: str | None = None) -> dict:
    """{canonical URL: {url, content_hash, etag, last_modified, stored_at, article_id, run_id}} ({} when new).

    `exclude_run` leaves out what that run stored itself: re-running a run id must
    fetch its own articles again, or the re-run would commit an empty run over them.
    """
    return _entries(bucket, seen_key(source), exclude_run)


def _entries(bucket: Bucket, key: str, exclude_run: str | None) -> dict:
    """The entries of a per-source state object, without those `exclude_run` wrote."""
    data, _ = _load(bucket, key)
    if exclude_run:
        data = {k: v for k, v in data.items() if v.get("run_id") != exclude_run}
    return data


def record_stored(bucket: Bucket, rows: list[dict]) -> None:
    """Mark stored articles as seen; call AFTER the run's manifest commit.

    Each row is a stored article record with at least `source`, `canonical_url`, `url`,
    `content_hash`, `http_etag`, `http_last_modified`, `article_id`, `run_id`. Rows of several
    sources are split per source file.
    """
    by_source: dict[str, list[dict]] = {}
    for row in rows:
        by_source.setdefault(row["source"], []).append(row)
    now = datetime.now(timezone.utc).isoformat()
    for source, source_rows in by_source.items():
        entries = {}
        for row in source_rows:
            key = canonicalize(row.get("canonical_url") or row["url"])
            entries[key] = {
                "url": row.get("url"),
                "content_hash": row.get("content_hash"),
                "etag": row.get("http_etag"),
                "last_modified": row.get("http_last_modified"),
                "stored_at": row.get("ingested_at") or now,
                "article_id": row.get("article_id"),
                "run_id": row.get("run_id"),
            }
        merge_entries(bucket, seen_key(source), entries)
        log.info("seen state of %s: %s article(s) recorded", source, len(entries))


#: Extraction reasons that mean "this page is not an article" (not "this fetch went wrong"): the page's
#: type will not change by fetching it again tomorrow. Page-type refusals are "not_article:<type>".
REFUSAL_REASONS = ("navigation_only", "too_short", "no_article_text")
#: How long a refusal holds when the source does not revisit stored articles (`revisit_hours: 0`).
DEFAULT_REFUSED_HOURS = 7 * 24


def is_refusal(reason: str) -> bool:
    """Does this reject reason say the page is not an article (rather than that its fetch failed)?"""
    return reason.startswith("not_article") or reason in REFUSAL_REASONS


def record_refused(bucket: Bucket, rejects: list[dict], run_id: str) -> None:
    """Remember the pages the run refused as not articles (extract and clean rejects); call after the commit."""
    now = datetime.now(timezone.utc).isoformat()
    by_source: dict[str, dict] = {}
    for r in rejects:
        if r.get("stage") not in ("extract", "clean") or not r.get("source") or not is_refusal(str(r.get("reason"))):
            continue
        by_source.setdefault(r["source"], {})[canonicalize(r["url"])] = {
            "url": r["url"],
            "reason": r["reason"],
            "refused_at": now,
            "run_id": run_id,
        }
    for source, entries in by_source.items():
        merge_entries(bucket, refused_key(source), entries)
        log.info("refused state of %s: %s page(s) recorded", source, len(entries))


def load_refused(bucket: Bucket, source: str, *, exclude_run: str | None = None) -> dict:
    """{canonical URL: {url, reason, refused_at, run_id}} ({} when new); `exclude_run` as for `load_seen`."""
    return _entries(bucket, refused_key(source), exclude_run)


def seen_lookup(seen: dict) -> dict[str, dict]:
    """The seen entries indexed by canonical URL AND by the canonicalised fetched URL."""
    out: dict[str, dict] = {}
    for key, entry in seen.items():
        out[key] = entry
        if entry.get("url"):
            out.setdefault(canonicalize(entry["url"]), entry)
    return out


def load_http(bucket: Bucket, source: str) -> dict:
    """{URL: {etag, last_modified, links: [[url, kind], ...]}} of the source's feeds, sitemaps, robots."""
    data, _ = _load(bucket, http_key(source))
    return data


def save_http(bucket: Bucket, source: str, entries: dict) -> None:
    """Merge validators of documents fetched this crawl into `state/http/<source>.json`."""
    merge_entries(bucket, http_key(source), entries)
