"""Incremental crawl state in the bucket, sharded so a run reads and writes only the shards its URLs fall in.

- Seen state, ``state/seen/<source>/<shard>.json``: canonical URL -> {url, content_hash, etag,
  last_modified, stored_at, article_id, run_id} of every stored article. Written ONLY by the store
  stage after the run's manifest commit (``record_stored``), so a crawl killed mid-run loses nothing:
  its pages were never marked seen and the next run fetches them again. When the fetched URL
  canonicalises to another key than the canonical URL, a copy of the entry with ``alias_of`` is kept
  under it too (in its own shard), so a lookup by the URL the crawl discovered finds it.
- Refused state, ``state/refused/<source>/<shard>.json``: canonical URL -> {url, reason, refused_at,
  run_id} of every page fetched as an article and refused as not one (a tag page, an about page ...):
  the spider skips it while the refusal is younger than the source's `revisit_hours` (a week when
  that is 0). Written after the commit too (``record_refused``).
- HTTP state, ``state/http/<source>/<shard>.json``: feed/sitemap/robots URL -> {etag, last_modified,
  links} written by the crawl at its end; ``links`` are the (url, kind) pairs the document
  announced, so a 304 can re-announce them without parsing.

A key's shard is a hash of it modulo `SHARDS` (fixed per kind: changing it would need a migration),
so a shard holds ~1/65536 of a source's seen URLs (~15 entries at a million stored URLs).
A crawl reads shards lazily, when it asks about a URL (`open_seen`, `open_refused`, `open_http`).

A commit does not touch the shards of seen and refused state: it writes ONE delta object, its new
entries, ``state/deltas/<kind>/<source>/<stamp>-<run>-<rand>.json``, created with If-None-Match: *
(one PUT whatever the history; concurrent runs write distinct deltas, so none can lose another's
entries). Readers lay the source's pending deltas (one LIST, a few GETs) over the shards.
`fold_deltas` merges pending deltas into the shards they touch and deletes them; maintenance runs it
(`fold_all`, before pruning), and a writer that finds more than `MAX_PENDING` deltas folds the oldest
so readers stay bounded when maintenance does not run. Shard writes use conditional puts (If-Match
on the ETag read, If-None-Match: * when creating) and retry on a lost race, so concurrent folds and
prunes merge instead of overwriting each other. HTTP state (a few feeds per source) is written into
its shards directly.

The single-object layout of earlier versions (``state/seen/<source>.json`` ...) is still read; the
first fold (or HTTP write) of a source moves its entries into the shards (without overwriting newer
shard entries) and deletes the old object. `load_seen`, `load_refused` and `load_http` read a source's whole
state (tools, tests, maintenance); a crawl never does.
"""

from __future__ import annotations

import json
import logging
import random
import secrets
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from hashlib import blake2b

from pipeline.core.bucket import Bucket, PreconditionFailed
from pipeline.core.layout import (
    HTTP_PREFIX,
    REFUSED_PREFIX,
    SEEN_PREFIX,
    http_key,
    refused_key,
    seen_key,
    state_delta_key,
    state_delta_prefix,
    state_delta_source,
    state_shard_key,
    state_shard_of,
    state_shard_prefix,
)
from pipeline.text.urls import canonicalize

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 10
#: Shards per source of each kind of state. A URL's shard is a hash of it modulo this, so it is
#: fixed. Many small shards: a run's URLs hit about as many shards as they are, so what a run reads
#: and writes stays ~1 shard per URL whatever the history (15 entries a shard at a million stored
#: URLs). With 1,024 shards a 1,000-URL crawl read 62% of a million-URL state (1.4 GB of dicts,
#: benchmarks/bench_state.py). Feeds, sitemaps and robots of one source are far fewer.
SHARDS = {SEEN_PREFIX: 65536, REFUSED_PREFIX: 65536, HTTP_PREFIX: 64}
#: Shard reads and writes in flight at once (botocore's connection pool holds 10).
WORKERS = 8
#: Pending deltas of one source and kind a writer tolerates before it folds the oldest into the shards
#: (maintenance normally folds them daily; this bounds what a crawl reads when it does not run).
MAX_PENDING = 48
_LEGACY_KEY = {SEEN_PREFIX: seen_key, REFUSED_PREFIX: refused_key, HTTP_PREFIX: http_key}


def _encode(obj: dict) -> bytes:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"), default=str).encode()


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
        body = _encode(new)
        try:
            if etag:
                bucket.put(key, body, content_type="application/json", if_match=etag)
            else:
                bucket.put(key, body, content_type="application/json", if_none_match="*")
            return new
        except PreconditionFailed:
            log.info("state %s changed under us (attempt %s), retrying", key, attempt)
            time.sleep(min(2.0, 0.05 * 2**attempt) * random.uniform(0.5, 1.5))
    raise PreconditionFailed(f"state {key}: gave up after {MAX_ATTEMPTS} concurrent-write conflicts")


def _merge_into(current: dict, entries: dict, *, keep_existing: bool = False) -> dict:
    """`entries` into `current`: newer values win, but an alias never replaces a primary entry.

    `keep_existing`: entries already in `current` stay (a migration must not undo newer writes).
    """
    for k, v in entries.items():
        old = current.get(k)
        if old is not None and (keep_existing or (_is_alias(v) and not _is_alias(old))):
            continue
        current[k] = v
    return current


def _is_alias(entry: object) -> bool:
    return isinstance(entry, dict) and bool(entry.get("alias_of"))


def merge_entries(bucket: Bucket, key: str, entries: dict) -> dict:
    """Add `entries` to the JSON object at `key` (newer values win), with `update_json`'s conditional write."""
    return update_json(bucket, key, lambda current: _merge_into(current, entries))


def shard_of(key: str, shards: int) -> int:
    """The shard a state key (a canonical URL) falls in: a stable hash of it modulo `shards`."""
    return int.from_bytes(blake2b(key.encode("utf-8", "surrogatepass"), digest_size=8).digest(), "little") % shards


def _parallel(fn: Callable, items: Iterable) -> list:
    """fn over items with up to WORKERS threads (S3 round trips overlap; the client is thread-safe)."""
    items = list(items)
    if len(items) <= 1:
        return [fn(i) for i in items]
    with ThreadPoolExecutor(WORKERS) as pool:
        return list(pool.map(fn, items))


def _merge_sharded(bucket: Bucket, prefix: str, source: str, entries: dict) -> None:
    """Merge `entries` into the shards they fall in (only those), after moving an old single object in."""
    if not entries:
        return
    _ = bucket.client  # made once, before the threads share it
    migrate_legacy(bucket, prefix, source)
    n = SHARDS[prefix]
    groups: dict[int, dict] = {}
    for k, v in entries.items():
        groups.setdefault(shard_of(k, n), {})[k] = v
    _parallel(lambda item: merge_entries(bucket, state_shard_key(prefix, source, item[0]), item[1]), groups.items())


def migrate_legacy(bucket: Bucket, prefix: str, source: str) -> int:
    """Move a source's single-object state (`state/seen/<source>.json` ...) into its shards; entries moved.

    Shard entries already there are newer and stay. Safe to run concurrently (each shard is a
    conditional merge, the move is idempotent); the old object is deleted once every shard has it.
    """
    key = _LEGACY_KEY[prefix](source)
    old, etag = _load(bucket, key)
    if etag is None:
        return 0
    n = SHARDS[prefix]
    groups: dict[int, dict] = {}
    for k, v in old.items():
        groups.setdefault(shard_of(k, n), {})[k] = v
    if prefix == SEEN_PREFIX:
        for k, v in _aliases(old).items():
            groups.setdefault(shard_of(k, n), {}).setdefault(k, v)

    def move(item: tuple[int, dict]) -> None:
        update_json(
            bucket,
            state_shard_key(prefix, source, item[0]),
            lambda current: _merge_into(current, item[1], keep_existing=True),
        )

    _parallel(move, groups.items())
    bucket.delete([key])
    log.info("state %s: %s entries moved into %s shard(s)", key, len(old), len(groups))
    return len(old)


def _aliases(entries: dict) -> dict:
    """Alias entries for the entries whose fetched URL canonicalises to another key than their own."""
    out = {}
    for k, v in entries.items():
        if isinstance(v, dict) and v.get("url") and not v.get("alias_of"):
            fetched = canonicalize(v["url"])
            if fetched != k and fetched not in entries:
                out[fetched] = {**v, "alias_of": k}
    return out


class ShardedState:
    """A lazy view of one source's state of one kind: a lookup reads only the shard the URL falls in.

    Shards read are cached for the life of the view (a crawl); the old single object, when a
    source still has one, is read once, on the first lookup. `exclude_run` leaves out what that
    run wrote itself. Lookups answer with the entry (an alias answers with the entry it copies).
    """

    def __init__(self, bucket: Bucket, prefix: str, source: str, *, exclude_run: str | None = None) -> None:
        self.bucket = bucket
        self.prefix = prefix
        self.source = source
        self.exclude_run = exclude_run
        self.shards = SHARDS[prefix]
        self._cache: dict[int, dict] = {}
        self._legacy: dict | None = None
        self._pending: dict | None = None

    def _filter(self, data: dict) -> dict:
        if self.exclude_run:
            data = {k: v for k, v in data.items() if v.get("run_id") != self.exclude_run}
        return data

    def _shard(self, shard: int) -> dict:
        if shard not in self._cache:
            data, _ = _load(self.bucket, state_shard_key(self.prefix, self.source, shard))
            self._cache[shard] = self._filter(data)
        return self._cache[shard]

    def _old(self) -> dict:
        if self._legacy is None:
            data, _ = _load(self.bucket, _LEGACY_KEY[self.prefix](self.source))
            self._legacy = seen_lookup(self._filter(data)) if data else {}
        return self._legacy

    def _deltas(self) -> dict:
        """The source's pending (not yet folded) deltas, merged in order; read once, on the first lookup."""
        if self._pending is None:
            self._pending = {}
            if self.prefix in DELTA_KINDS:
                self._pending = self._filter(read_deltas(self.bucket, self.prefix, self.source)[1])
        return self._pending

    def get(self, url: str, default: dict | None = None) -> dict | None:
        """The entry of `url` (a canonical URL), or `default`."""
        entry = self._deltas().get(url)
        if entry is None:
            entry = self._shard(shard_of(url, self.shards)).get(url)
        if entry is None:
            entry = self._old().get(url)
        return default if entry is None else entry

    def __contains__(self, url: object) -> bool:
        return isinstance(url, str) and self.get(url) is not None

    def __getitem__(self, url: str) -> dict:
        entry = self.get(url)
        if entry is None:
            raise KeyError(url)
        return entry

    def prefetch(self, urls: Iterable[str]) -> int:
        """Read the shards these URLs fall in that are not cached yet, several at once; how many were read."""
        missing = sorted({shard_of(u, self.shards) for u in urls} - set(self._cache))
        _ = self.bucket.client
        self._old()
        self._deltas()
        for shard, data in zip(missing, _parallel(self._read, missing)):
            self._cache[shard] = data
        return len(missing)

    def _read(self, shard: int) -> dict:
        data, _ = _load(self.bucket, state_shard_key(self.prefix, self.source, shard))
        return self._filter(data)

    @property
    def shards_read(self) -> int:
        """Shards read so far (what this view cost)."""
        return len(self._cache)


def open_seen(bucket: Bucket, source: str, *, exclude_run: str | None = None) -> ShardedState:
    """The lazy seen-URL lookup of a crawl: `url in view`, `view[url]` read one shard each (cached)."""
    return ShardedState(bucket, SEEN_PREFIX, source, exclude_run=exclude_run)


def open_refused(bucket: Bucket, source: str, *, exclude_run: str | None = None) -> ShardedState:
    """The lazy refused-page lookup of a crawl (as `open_seen`)."""
    return ShardedState(bucket, REFUSED_PREFIX, source, exclude_run=exclude_run)


def open_http(bucket: Bucket, source: str) -> ShardedState:
    """The lazy HTTP-validator lookup of a crawl (as `open_seen`)."""
    return ShardedState(bucket, HTTP_PREFIX, source)


def iter_shards(bucket: Bucket, prefix: str) -> Iterator[tuple[str, int, str]]:
    """(source segment, shard, key) of every shard object under a state prefix (`SEEN_PREFIX` ...)."""
    for key in bucket.list(prefix):
        got = state_shard_of(key, prefix)
        if got is not None:
            yield got[0], got[1], key


def _load_all(bucket: Bucket, prefix: str, source: str, exclude_run: str | None) -> dict:
    """A source's whole state of one kind (old single object, then the shards over it), aliases left out."""
    view = ShardedState(bucket, prefix, source, exclude_run=exclude_run)
    data, _ = _load(bucket, _LEGACY_KEY[prefix](source))
    out = view._filter(data)
    keys = bucket.list(state_shard_prefix(prefix, source))
    shards = [s for k in keys if (got := state_shard_of(k, prefix)) is not None for s in [got[1]]]
    _ = bucket.client
    for part in _parallel(view._read, shards):
        out.update({k: v for k, v in part.items() if not _is_alias(v)})
    if prefix in DELTA_KINDS:
        pending = view._filter(read_deltas(bucket, prefix, source)[1])
        out.update({k: v for k, v in pending.items() if not _is_alias(v)})
    return out


def load_seen(bucket: Bucket, source: str, *, exclude_run: str | None = None) -> dict:
    """The whole seen state of a source: {canonical URL: {url, content_hash, etag, last_modified, stored_at,
    article_id, run_id}} ({} when new). Reads every shard: for tools and tests; a crawl uses `open_seen`.

    `exclude_run` leaves out what that run stored itself: re-running a run id must
    fetch its own articles again, or the re-run would commit an empty run over them.
    """
    return _load_all(bucket, SEEN_PREFIX, source, exclude_run)


#: The fields of a stored article that `record_stored` reads (callers need keep no more of a run's rows).
SEEN_FIELDS = (
    "source",
    "canonical_url",
    "url",
    "content_hash",
    "http_etag",
    "http_last_modified",
    "article_id",
    "ingested_at",
    "run_id",
)


def record_stored(bucket: Bucket, rows: list[dict]) -> None:
    """Mark stored articles as seen; call AFTER the run's manifest commit.

    Each row is a stored article record with at least `source`, `canonical_url`, `url`,
    `content_hash`, `http_etag`, `http_last_modified`, `article_id`, `run_id`. Rows of several
    sources are split per source; only the shards of the rows' URLs are rewritten.
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
        write_delta(bucket, SEEN_PREFIX, source, {**_aliases(entries), **entries}, run_id=source_rows[0].get("run_id"))
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
        write_delta(bucket, REFUSED_PREFIX, source, entries, run_id=run_id)
        log.info("refused state of %s: %s page(s) recorded", source, len(entries))


def load_refused(bucket: Bucket, source: str, *, exclude_run: str | None = None) -> dict:
    """{canonical URL: {url, reason, refused_at, run_id}} ({} when new), read whole; as `load_seen`."""
    return _load_all(bucket, REFUSED_PREFIX, source, exclude_run)


def seen_lookup(seen: dict) -> dict[str, dict]:
    """The seen entries indexed by canonical URL AND by the canonicalised fetched URL."""
    out: dict[str, dict] = {}
    for key, entry in seen.items():
        out[key] = entry
        if entry.get("url"):
            out.setdefault(canonicalize(entry["url"]), entry)
    return out


def load_http(bucket: Bucket, source: str) -> dict:
    """{URL: {etag, last_modified, links: [[url, kind], ...]}} of the source's feeds, sitemaps, robots (whole)."""
    return _load_all(bucket, HTTP_PREFIX, source, None)


def save_http(bucket: Bucket, source: str, entries: dict) -> None:
    """Merge validators of documents fetched this crawl into the source's HTTP-state shards."""
    _merge_sharded(bucket, HTTP_PREFIX, source, entries)


# --------------------------------------------------------------------------- per-run deltas

#: The kinds of state a commit writes as deltas (HTTP state is written into its shards directly).
DELTA_KINDS = (SEEN_PREFIX, REFUSED_PREFIX)


def write_delta(bucket: Bucket, prefix: str, source: str, entries: dict, *, run_id: str | None = None) -> str | None:
    """Record `entries` of a source as one new delta object (a conditional create); its key (None: nothing).

    One PUT whatever the history. The name sorts by time, so folding in name order lets later
    writes win as a direct merge would. More than `MAX_PENDING` pending deltas: the oldest are folded.
    """
    if not entries:
        return None
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
    name = f"{stamp}-{run_id or 'run'}-{secrets.token_hex(4)}"
    key = state_delta_key(prefix, source, name)
    bucket.put(key, _encode(entries), content_type="application/json", if_none_match="*")
    pending = pending_deltas(bucket, prefix, source)
    if len(pending) > MAX_PENDING:
        fold_deltas(bucket, prefix, source, keys=pending[: len(pending) - MAX_PENDING])
    return key


def pending_deltas(bucket: Bucket, prefix: str, source: str) -> list[str]:
    """The keys of a source's deltas not folded yet, oldest first."""
    return sorted(bucket.list(state_delta_prefix(prefix, source)))


def read_deltas(bucket: Bucket, prefix: str, source: str, keys: list[str] | None = None) -> tuple[list[str], dict]:
    """(the delta keys read, their entries merged oldest first). A delta folded meanwhile is skipped:
    its entries are in the shards by then."""
    keys = pending_deltas(bucket, prefix, source) if keys is None else sorted(keys)
    _ = bucket.client
    read = []
    merged: dict = {}
    for key, (data, etag) in zip(keys, _parallel(lambda k: _load(bucket, k), keys)):
        if etag is not None:
            read.append(key)
            _merge_into(merged, data)
    return read, merged


def fold_deltas(bucket: Bucket, prefix: str, source: str, *, keys: list[str] | None = None) -> int:
    """Merge a source's pending deltas (or `keys` of them) into the shards they touch, then delete them;
    entries folded. Each shard is a conditional read-modify-write, so a fold racing another fold, a
    prune or a commit loses nothing; a delta is deleted only once every shard has its entries.
    """
    read, entries = read_deltas(bucket, prefix, source, keys)
    if not read:
        return 0
    _merge_sharded(bucket, prefix, source, entries)
    bucket.delete(read)
    log.info("state %s%s: %s delta(s), %s entries folded into the shards", prefix, source, len(read), len(entries))
    return len(entries)


def fold_all(bucket: Bucket, prefix: str) -> dict[str, int]:
    """`fold_deltas` for every source with pending deltas of a kind (`SEEN_PREFIX`, `REFUSED_PREFIX`);
    {source segment: entries folded}."""
    sources = sorted({s for k in bucket.list(state_delta_prefix(prefix)) if (s := state_delta_source(k, prefix))})
    return {source: fold_deltas(bucket, prefix, source) for source in sources}
