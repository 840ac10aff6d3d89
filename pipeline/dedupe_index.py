"""MinHash signatures and the persistent, bounded near-duplicate index behind `pipeline.dedupe`.

Signatures use datasketch's "affine32" MinHash scheme (datasketch >= 2.0: the
input hash is pre-mixed with the MurmurHash3 finalizer, then each permutation is
``a_k * h + b_k mod 2**32``), with datasketch's own permutation parameters, so a
signature here equals ``MinHash(num_perm, seed, scheme="affine32",
hashfunc=<shingle hash>).update_batch(shingles).hashvalues`` (a test checks this).
It is computed in numpy over whole batches of documents because datasketch's
per-shingle Python hashing is ~50x too slow for the throughput goal (see
benchmarks/bench_dedupe.py). LSH band/row counts come from datasketch's
`MinHashLSH` for the configured threshold.

The index keeps per document: the signature (uint32 x num_perm), 64-bit keys of
the canonical URL and the content hash, ids, version and day. Band tables are
numpy hash tables with chaining (no Python object per entry), rebuilt on load.
In the bucket it is one `.npz` object per run date under ``state/dedupe/v1/``,
written with S3 conditional puts; shards older than the window are deleted.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
from datetime import date, timedelta
from functools import lru_cache

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from pipeline.s3 import Bucket, PreconditionFailed

log = logging.getLogger(__name__)

INDEX_PREFIX = "state/dedupe/v1/"
FORMAT_VERSION = 1
_EPOCH = date(1970, 1, 1)


class DedupeConfig(BaseModel):
    """Near-duplicate settings. Defaults chosen on the labelled set of benchmarks/bench_dedupe.py.

    threshold 0.5 / shingle_size 3 / num_perm 128: on the benchmark's labelled set
    (syndicated copies with light edits, machine rewrites with ~12% synonyms,
    same-topic different stories) this setting gave the best pairwise F1 with
    precision >= 0.99; 2-word shingles merge same-topic stories (precision drops),
    4-word shingles lose rewritten copies (recall drops). 64 permutations halve
    index memory but cost recall near the threshold (see the benchmark table).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: Estimated Jaccard similarity of word-shingle sets at or above which two texts are near-duplicates.
    threshold: float = Field(default=0.5, gt=0.0, lt=1.0)
    #: MinHash permutations (signature length); memory is 4 bytes each per document.
    num_perm: int = Field(default=128, ge=8, le=1024)
    #: Words per shingle.
    shingle_size: int = Field(default=3, ge=1, le=10)
    #: Index entries whose run date is older than this many days are pruned.
    window_days: int = Field(default=30, ge=1)
    #: Seed of the MinHash permutations (stored with the index; changing it invalidates the index).
    seed: int = 1
    #: Most LSH candidates verified per document (a big cluster needs only a few to be found).
    max_candidates: int = Field(default=16, ge=1)


# --------------------------------------------------------------------------- signatures

_M32 = np.uint32(0xFFFFFFFF)


def fmix32(h: np.ndarray) -> np.ndarray:
    """MurmurHash3's 32-bit finalizer (the pre-mix of datasketch's affine32 scheme)."""
    h = h ^ (h >> np.uint32(16))
    h = h * np.uint32(0x85EBCA6B)
    h = h ^ (h >> np.uint32(13))
    h = h * np.uint32(0xC2B2AE35)
    return h ^ (h >> np.uint32(16))


def fmix64(h: np.ndarray) -> np.ndarray:
    """MurmurHash3's 64-bit finalizer: spreads combined band values over 64 bits."""
    h = h ^ (h >> np.uint64(33))
    h = h * np.uint64(0xFF51AFD7ED558CCD)
    h = h ^ (h >> np.uint64(33))
    h = h * np.uint64(0xC4CEB9FE1A85EC53)
    return h ^ (h >> np.uint64(33))


@lru_cache(maxsize=16)
def _permutations(num_perm: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    from datasketch import MinHash

    a, b = MinHash(num_perm=num_perm, seed=seed, scheme="affine32").permutations
    return np.ascontiguousarray(a, dtype=np.uint32), np.ascontiguousarray(b, dtype=np.uint32)


@lru_cache(maxsize=64)
def lsh_params(threshold: float, num_perm: int) -> tuple[int, int]:
    """(bands, rows) that datasketch's MinHashLSH picks for this threshold and num_perm."""
    from datasketch import MinHashLSH

    lsh = MinHashLSH(threshold=threshold, num_perm=num_perm)
    return int(lsh.b), int(lsh.r)


class _TokenHashes(dict):
    """word -> stable 32-bit hash (blake2b), cached: news vocabulary is small, texts are not."""

    def __missing__(self, word: str) -> int:
        if len(self) > 2_000_000:  # bound memory on pathological input; hashes are stable, so clearing is safe
            self.clear()
        value = int.from_bytes(hashlib.blake2b(word.encode("utf-8"), digest_size=4).digest(), "little")
        self[word] = value
        return value


_TOKENS = _TokenHashes()
# Odd multipliers combining the k word hashes of a shingle (position-dependent, so word order matters).
_SHINGLE_MULT = np.array([0x9E3779B1, 0x85EBCA77, 0xC2B2AE3D, 0x27D4EB2F, 0x165667B1,
                          0xD3A2646D, 0xFD7046C5, 0xB55A4F09, 0x8CB92BA7, 0x6A09E667], dtype=np.uint32)


def shingle_hashes(words: list[str], k: int) -> np.ndarray:
    """32-bit hashes of the k-word shingles of a word list (at least one: a short text is one shingle)."""
    n = len(words)
    if n == 0:
        return np.zeros(1, dtype=np.uint32)
    ids = np.fromiter(map(_TOKENS.__getitem__, words), dtype=np.uint32, count=n)
    k = min(k, n)
    m = n - k + 1
    h = ids[:m] * _SHINGLE_MULT[0]
    for i in range(1, k):
        h += ids[i:i + m] * _SHINGLE_MULT[i]
    return h


def signatures(shingle_sets: list[np.ndarray], num_perm: int, seed: int = 1) -> np.ndarray:
    """MinHash signatures (n_docs x num_perm, uint32) of many shingle-hash arrays at once."""
    a, b = _permutations(num_perm, seed)
    out = np.empty((len(shingle_sets), num_perm), dtype=np.uint32)
    # Chunks of ~32k shingles: the (num_perm x chunk) product stays in cache-sized blocks (16 MiB at 128).
    start = 0
    while start < len(shingle_sets):
        stop, total = start, 0
        while stop < len(shingle_sets) and (total == 0 or total + len(shingle_sets[stop]) <= 32768):
            total += len(shingle_sets[stop])
            stop += 1
        chunk = shingle_sets[start:stop]
        x = fmix32(np.concatenate(chunk))
        offsets = np.zeros(len(chunk), dtype=np.int64)
        np.cumsum([len(c) for c in chunk[:-1]], out=offsets[1:])
        prod = a[:, None] * x[None, :]
        prod += b[:, None]
        out[start:stop] = np.minimum.reduceat(prod, offsets, axis=1).T
        start = stop
    return out


def band_keys(sigs: np.ndarray, bands: int, rows: int) -> np.ndarray:
    """One 64-bit key per LSH band (n_docs x bands): equal keys mean equal band values."""
    n = sigs.shape[0]
    v = sigs[:, :bands * rows].reshape(n, bands, rows).astype(np.uint64)
    mult = (np.arange(1, rows + 1, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15)) | np.uint64(1)
    with np.errstate(over="ignore"):
        combined = (v * mult).sum(axis=2, dtype=np.uint64)
        combined += np.arange(bands, dtype=np.uint64) * np.uint64(0xD6E8FEB86659FD93)
    return fmix64(combined)


def key64(hex_or_text: str) -> int:
    """A 64-bit key: the first 16 hex digits of a sha256 hex digest, else a blake2b of the text."""
    if len(hex_or_text) == 64:
        try:
            return int(hex_or_text[:16], 16)
        except ValueError:
            pass  # not hex: fall through and hash it like any other text
    return int.from_bytes(hashlib.blake2b(hex_or_text.encode("utf-8"), digest_size=8).digest(), "little")


def day_number(run_date: str | None) -> int:
    """Days since 1970-01-01 of a YYYY-MM-DD date (0 when no date is given)."""
    if not run_date:
        return 0
    return (date.fromisoformat(run_date[:10]) - _EPOCH).days


def day_string(day: int) -> str:
    return (_EPOCH + timedelta(days=int(day))).isoformat()


# --------------------------------------------------------------------------- band tables


class _BandTables:
    """`bands` hash tables (band key -> rows) in numpy arrays, chained, newest entry first.

    One table per band, so one document's keys never collide with each other and
    an insert is a few vectorised assignments.
    """

    def __init__(self, bands: int, capacity: int = 1024):
        self.bands = bands
        self.size = 1 << max(10, int(np.ceil(np.log2(max(capacity, 1) * 2))))
        self.mask = np.uint64(self.size - 1)
        self.head = np.full((bands, self.size), -1, dtype=np.int32)
        self.keys = np.zeros((max(capacity, 16), bands), dtype=np.uint64)
        self.next = np.full((max(capacity, 16), bands), -1, dtype=np.int32)
        self.linked = np.zeros(max(capacity, 16), dtype=bool)
        self._band_ix = np.arange(bands)
        self.count = 0

    @classmethod
    def build(cls, keys: np.ndarray, live: np.ndarray) -> "_BandTables":
        """Bulk build from (rows x bands) keys; rows where `live` is False get no entry."""
        n, bands = keys.shape
        t = cls(bands, capacity=max(n, 16) * 2)
        t.keys[:n] = keys
        t.linked[:n] = live
        t.count = n
        rows = np.nonzero(live)[0].astype(np.int32)
        for band in range(bands):
            slots = (keys[rows, band] & t.mask).astype(np.int64)
            order = np.lexsort((rows, slots))  # by slot, then insertion order
            s, r = slots[order], rows[order]
            same = np.zeros(len(r), dtype=bool)
            same[1:] = s[1:] == s[:-1]
            nxt = np.full(len(r), -1, dtype=np.int32)
            nxt[1:][same[1:]] = r[:-1][same[1:]]
            t.next[r, band] = nxt
            last = np.ones(len(r), dtype=bool)
            last[:-1] = ~same[1:]
            t.head[band, s[last]] = r[last]
        return t

    def _grow(self, n: int) -> None:
        if n > self.keys.shape[0]:
            cap = max(n, self.keys.shape[0] * 2)
            self.keys = np.resize(self.keys, (cap, self.bands))
            self.next = np.resize(self.next, (cap, self.bands))
            self.linked = np.resize(self.linked, cap)
        if n * 2 > self.size:  # keep the load factor <= 0.5: short chains
            rebuilt = _BandTables.build(self.keys[:self.count], self.linked[:self.count])
            self.__dict__.update(rebuilt.__dict__)
            self._grow(n)

    def add(self, row: int, keys: np.ndarray, linked: bool = True) -> None:
        """Register row `row` (rows are added in order) with its band keys."""
        self._grow(row + 1)
        self.keys[row] = keys
        self.linked[row] = linked
        self.count = row + 1
        if not linked:
            self.next[row] = -1
            return
        slots = (keys & self.mask).astype(np.int64)
        self.next[row] = self.head[self._band_ix, slots]
        self.head[self._band_ix, slots] = row

    def query(self, keys: np.ndarray, limit: int) -> np.ndarray:
        """Distinct rows sharing at least one band key, newest first, at most `limit`."""
        band = self._band_ix
        slots = (keys & self.mask).astype(np.int64)
        cur = self.head[band, slots]
        found: list[np.ndarray] = []
        n_found = 0
        while True:
            live = cur >= 0
            if not live.all():
                band, cur = band[live], cur[live]
                if band.size == 0:
                    break
            hit = self.keys[cur, band] == keys[band]
            if hit.any():
                rows = cur[hit]
                found.append(rows)
                n_found += rows.size
                if n_found >= limit * 2:
                    break
            cur = self.next[cur, band]
        if not found:
            return np.empty(0, dtype=np.int32)
        rows = np.unique(np.concatenate(found))[::-1]
        return rows[:limit]


# --------------------------------------------------------------------------- the index

_STR_FIELDS = ("article_id", "cluster_id", "supersedes")


class DedupeIndex:
    """What earlier articles (this run and earlier runs in the window) looked like.

    Rows are kept in first-seen order. Per row: signature, URL key, content key,
    article_id, cluster_id, supersedes, version, day, run. URL and content
    lookups are dicts of 64-bit ints (two per row); bands live in `_BandTables`.
    """

    def __init__(self, config: DedupeConfig | None = None):
        self.config = config or DedupeConfig()
        self.bands, self.rows_per_band = lsh_params(self.config.threshold, self.config.num_perm)
        self.n = 0
        cap = 1024
        self.sig = np.zeros((cap, self.config.num_perm), dtype=np.uint32)
        self.url_key = np.zeros(cap, dtype=np.uint64)
        self.content_key = np.zeros(cap, dtype=np.uint64)
        self.ids = {f: np.zeros(cap, dtype="S24") for f in _STR_FIELDS}
        self.version = np.zeros(cap, dtype=np.int32)
        self.day = np.zeros(cap, dtype=np.int32)
        self.run = np.zeros(cap, dtype=np.int32)
        self.linked = np.zeros(cap, dtype=bool)  # False for exact copies: their signature is already indexed
        self.runs: list[str] = []
        self._run_ix: dict[str, int] = {}
        self._tables: _BandTables | None = None
        self._by_url: dict[int, int] | None = None
        self._by_content: dict[int, int] | None = None
        # Where this index came from, for conditional saves: shard key -> ETag ("" = did not exist).
        self.prefix = INDEX_PREFIX
        self.run_date: str | None = None
        self.etags: dict[str, str] = {}

    # -- size
    def __len__(self) -> int:
        return self.n

    @property
    def nbytes(self) -> int:
        """Bytes held by the row arrays and band tables (dict overhead for URL/content not included)."""
        arrays = [self.sig, self.url_key, self.content_key, self.version, self.day, self.run, self.linked,
                  *self.ids.values()]
        total = sum(a.nbytes for a in arrays)
        if self._tables is not None:
            total += self._tables.head.nbytes + self._tables.keys.nbytes + self._tables.next.nbytes
        return total

    def _grow(self, n: int) -> None:
        cap = self.sig.shape[0]
        if n <= cap:
            return
        cap = max(n, cap * 2)
        self.sig = np.resize(self.sig, (cap, self.config.num_perm))
        for name in ("url_key", "content_key", "version", "day", "run", "linked"):
            setattr(self, name, np.resize(getattr(self, name), cap))
        self.ids = {f: np.resize(a, cap) for f, a in self.ids.items()}

    def _ensure_lookups(self) -> None:
        if self._tables is None:
            keys = band_keys(self.sig[:self.n], self.bands, self.rows_per_band)
            self._tables = _BandTables.build(keys, self.linked[:self.n])
        if self._by_url is None:
            # Later rows overwrite earlier ones: the URL maps to its latest version.
            self._by_url = dict(zip(self.url_key[:self.n].tolist(), range(self.n)))
        if self._by_content is None:
            # First-seen wins: iterate newest to oldest so the oldest overwrites.
            self._by_content = {k: i for i, k in reversed(list(enumerate(self.content_key[:self.n].tolist())))}

    def run_index(self, run_id: str) -> int:
        if run_id not in self._run_ix:
            self._run_ix[run_id] = len(self.runs)
            self.runs.append(run_id)
        return self._run_ix[run_id]

    # -- lookups used by dedupe_records
    def latest_for_url(self, url_key: int) -> int | None:
        self._ensure_lookups()
        return self._by_url.get(url_key)

    def first_for_content(self, content_key: int) -> int | None:
        self._ensure_lookups()
        return self._by_content.get(content_key)

    def near(self, sig: np.ndarray, bkeys: np.ndarray) -> tuple[int, float] | None:
        """(row, estimated Jaccard) of the most similar indexed row at or above the threshold, or None."""
        self._ensure_lookups()
        rows = self._tables.query(bkeys, self.config.max_candidates)
        if rows.size == 0:
            return None
        sims = np.count_nonzero(self.sig[rows] == sig, axis=1) / self.config.num_perm
        best = int(np.argmax(sims))
        if sims[best] < self.config.threshold:
            return None
        return int(rows[best]), float(sims[best])

    def get(self, row: int, field: str) -> str | None:
        value = self.ids[field][row].decode()
        return value or None

    def add(self, *, sig: np.ndarray, bkeys: np.ndarray, url_key: int, content_key: int, article_id: str,
            cluster_id: str, supersedes: str | None, version: int, day: int, run_id: str,
            link: bool = True) -> int:
        """Append one row; `link=False` leaves it out of the band tables (an exact copy adds nothing there)."""
        self._ensure_lookups()
        row = self.n
        self._grow(row + 1)
        self.sig[row] = sig
        self.url_key[row] = url_key
        self.content_key[row] = content_key
        self.ids["article_id"][row] = article_id.encode()
        self.ids["cluster_id"][row] = cluster_id.encode()
        self.ids["supersedes"][row] = (supersedes or "").encode()
        self.version[row] = version
        self.day[row] = day
        self.run[row] = self.run_index(run_id)
        self.linked[row] = link
        self.n = row + 1
        self._tables.add(row, bkeys, linked=link)
        self._by_url[url_key] = row
        self._by_content.setdefault(content_key, row)
        return row

    # -- bounding
    def _keep(self, mask: np.ndarray) -> int:
        """Keep only rows where mask is True (order preserved); returns how many were dropped."""
        dropped = int(self.n - mask.sum())
        if dropped == 0:
            return 0
        idx = np.nonzero(mask)[0]
        self.sig = self.sig[idx].copy()
        for name in ("url_key", "content_key", "version", "day", "run", "linked"):
            setattr(self, name, getattr(self, name)[idx].copy())
        self.ids = {f: a[idx].copy() for f, a in self.ids.items()}
        self.n = len(idx)
        self._tables = self._by_url = self._by_content = None
        return dropped

    def prune(self, run_date: str, window_days: int | None = None) -> int:
        """Drop rows whose run date is more than `window_days` before `run_date`; returns the count."""
        window = self.config.window_days if window_days is None else window_days
        oldest = day_number(run_date) - window
        return self._keep(self.day[:self.n] >= oldest)

    def drop_run(self, run_id: str) -> int:
        """Forget the rows a run added (re-running a run id must not see its own articles)."""
        if run_id not in self._run_ix:
            return 0
        return self._keep(self.run[:self.n] != self._run_ix[run_id])

    # -- serialisation
    def _meta(self) -> dict:
        c = self.config
        return {"format": FORMAT_VERSION, "num_perm": c.num_perm, "shingle_size": c.shingle_size,
                "seed": c.seed, "scheme": "datasketch-affine32", "runs": self.runs}

    def to_bytes(self, mask: np.ndarray | None = None) -> bytes:
        """The rows (all, or where `mask`) as an .npz object."""
        idx = np.arange(self.n) if mask is None else np.nonzero(mask[:self.n])[0]
        buf = io.BytesIO()
        np.savez_compressed(
            buf, meta=np.frombuffer(json.dumps(self._meta()).encode(), dtype=np.uint8),
            sig=self.sig[idx], url_key=self.url_key[idx], content_key=self.content_key[idx],
            version=self.version[idx], day=self.day[idx], run=self.run[idx], linked=self.linked[idx],
            **{f: self.ids[f][idx] for f in _STR_FIELDS})
        return buf.getvalue()

    def extend_from_bytes(self, data: bytes) -> int:
        """Append the rows of an .npz object written by `to_bytes`; returns how many."""
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            meta = json.loads(z["meta"].tobytes())
            mine = self._meta()
            for field in ("num_perm", "shingle_size", "seed", "scheme"):
                if meta.get(field) != mine[field]:
                    raise ValueError(f"dedupe index was built with {field}={meta.get(field)!r}, "
                                     f"config has {mine[field]!r}: signatures are not comparable "
                                     f"(delete {self.prefix} or keep the old setting)")
            k = len(z["day"])
            run_map = np.array([self.run_index(r) for r in meta["runs"]] or [0], dtype=np.int32)
            start = self.n
            self._grow(start + k)
            sl = slice(start, start + k)
            self.sig[sl] = z["sig"]
            self.url_key[sl] = z["url_key"]
            self.content_key[sl] = z["content_key"]
            self.version[sl] = z["version"]
            self.day[sl] = z["day"]
            self.run[sl] = run_map[z["run"]] if k else z["run"]
            self.linked[sl] = z["linked"]
            for f in _STR_FIELDS:
                self.ids[f][sl] = z[f]
        self.n = start + k
        self._tables = self._by_url = self._by_content = None
        return k

    @staticmethod
    def shard_key(prefix: str, day: str) -> str:
        return f"{prefix}day={day}.npz"

    @classmethod
    def load(cls, bucket: Bucket, *, key: str = INDEX_PREFIX, run_date: str,
             config: DedupeConfig | None = None) -> "DedupeIndex":
        """The index as of `run_date`: the day shards within the window, oldest first, with their ETags."""
        index = cls(config)
        index.prefix = key
        index.run_date = run_date[:10]
        today = day_number(run_date)
        oldest = today - index.config.window_days
        for shard in bucket.list(key):
            name = shard[len(key):]
            if not (name.startswith("day=") and name.endswith(".npz")):
                continue
            shard_day = day_number(name[4:14])
            if oldest <= shard_day <= today:
                got = bucket.get_with_etag(shard)
                if got is not None:
                    index.extend_from_bytes(got[0])
                    index.etags[shard] = got[1]
        today_key = cls.shard_key(key, index.run_date)
        index.etags.setdefault(today_key, "")
        index.prune(index.run_date)
        return index

    def save(self, bucket: Bucket) -> str:
        """Write this run date's shard, conditionally: raises PreconditionFailed if another writer got there first.

        Only the run date's rows are written; older shards are immutable for this
        writer. Returns the shard key.
        """
        if self.run_date is None:
            raise ValueError("save() needs an index from DedupeIndex.load (it knows the run date and ETags)")
        shard = self.shard_key(self.prefix, self.run_date)
        body = self.to_bytes(self.day[:self.n] == day_number(self.run_date))
        etag = self.etags.get(shard, "")
        if etag:
            new = bucket.put(shard, body, if_match=etag)
        else:
            new = bucket.put(shard, body, if_none_match="*")
        self.etags[shard] = new
        return shard

    def delete_expired(self, bucket: Bucket) -> list[str]:
        """Delete shards older than the window before this index's run date; returns their keys."""
        if self.run_date is None:
            return []
        oldest = day_number(self.run_date) - self.config.window_days
        old = [k for k in bucket.list(self.prefix)
               if k[len(self.prefix):].startswith("day=") and day_number(k[len(self.prefix) + 4:][:10]) < oldest]
        if old:
            bucket.delete(old)
            log.info("dedupe index: deleted %s expired shards", len(old))
        return old


__all__ = ["DedupeConfig", "DedupeIndex", "INDEX_PREFIX", "PreconditionFailed", "band_keys", "day_number",
           "lsh_params", "shingle_hashes", "signatures"]
