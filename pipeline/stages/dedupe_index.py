"""MinHash signatures and the persistent, bounded near-duplicate index behind `pipeline.stages.dedupe`.

Signatures use datasketch's "affine32" MinHash scheme (datasketch >= 2.0: the
input hash is pre-mixed with the MurmurHash3 finalizer, then each permutation is
``a_k * h + b_k mod 2**32``), with datasketch's own permutation parameters, so a
signature here equals ``MinHash(num_perm, seed, scheme="affine32",
hashfunc=<shingle hash>).update_batch(shingles).hashvalues`` (a test checks this).
It is computed in numpy over whole batches of documents (words hashed with prefix
sums over the batch's bytes, one vectorised product per permutation block) because
datasketch's per-shingle Python hashing is ~20x slower (benchmarks/bench_dedupe.py).
LSH band/row counts are the ones datasketch's `MinHashLSH` picks for the configured threshold.

The index keeps per document: the signature as b-bit MinHash (low 16 bits of each
value), 64-bit keys of the canonical URL and the content hash, ids, version, day and
run. URL, content and band-key lookups are `KeyRows` multimaps: sorted numpy levels,
queried for a whole batch at once (~0.7 KiB per document in all, measured by the
benchmark). In the bucket it is one `.npz` object per run date under
``state/dedupe/v1/day=YYYY-MM-DD.npz``, written with S3 conditional puts; shards
older than the window are deleted.

With ``DedupeConfig.rewrite`` (the default) each row also keeps what the ``rewrite`` kind
needs (`pipeline.text.rewrite`): the document's term ids per sentence (at most
`REWRITE_MAX_TERMS`, 2 bytes each, plus one byte per sentence), and a 48-value MinHash of its
term set whose 24 two-row LSH bands find candidates; and every row keeps its ``story_id``.
At most ~2,000 bytes per document in all (the benchmark measures the average). Shards
written before rewrite features existed load with none (their rows are never rewrite
candidates) and their ``story_id`` taken from ``cluster_id``.

Since format 2 the index is immutable segments (``state/dedupe/v2/day=YYYY-MM-DD/seq=N.seg``,
`encode_segment`, `Segment`). A run's ~58 keys per document fall in nearly every key block of a
segment, so ranged reads of the key blocks grow with history; a worker therefore keeps a local
copy of each window segment's key section (`KeyCache`, under ``$NEWS_INGEST_CACHE_DIR``, default
``~/.cache/news-ingest``; ``off`` disables it), downloaded once per segment and probed by
memory map, one segment mapped at a time. Matched rows are still read from the bucket by range.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import mmap
import os
import threading
import time
import uuid
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import date
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from botocore.exceptions import BotoCoreError, ClientError
from pydantic import BaseModel, ConfigDict, Field, model_validator

from pipeline.core.bucket import Bucket, PreconditionFailed, StorageError, describe_error
from pipeline.core.layout import (
    DEDUPE_INDEX_PREFIX,
    dedupe_commit_key,
    dedupe_commit_of,
    dedupe_commit_prefix,
    dedupe_segment_key,
    dedupe_segment_of,
    dedupe_segment_prefix,
    dedupe_shard_day,
    dedupe_shard_key,
)

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
_EPOCH = date(1970, 1, 1)

#: The rewrite candidates' MinHash: 48 values of the document's term set, LSH in 24 bands of 2
#: rows. Rewrites replacing 40% of the words keep a term-set Jaccard of 0.26-0.41 with their
#: original (benchmarks/bench_dedupe.py); 24 x 2 finds a pair at Jaccard 0.26 / 0.3 / 0.36 with
#: probability 0.81 / 0.90 / 0.96, and candidates of the near-duplicate bands are added to these.
REWRITE_PERM, REWRITE_BANDS, REWRITE_ROWS, REWRITE_SEED = 48, 24, 2, 2
#: Term ids kept per document: 2 bytes each (pipeline.text.rewrite.MAX_TERMS).
REWRITE_MAX_TERMS = 384


class DedupeConfig(BaseModel):
    """Near-duplicate settings. Defaults chosen on the labelled set of benchmarks/bench_dedupe.py.

    threshold 0.4 / shingle_size 3 / num_perm 128 (LSH 32 bands x 4 rows): on the
    benchmark's labelled set this was the best setting with precision 1.0 (pairwise
    recall 0.990; rewrites with 3-12% synonyms found at 0.95). 0.35 / 0.3 merge
    follow-up stories that reuse 15-45% of an earlier story (precision 0.98 / 0.95);
    0.5 loses a quarter of the rewrites (recall 0.94); 2-word shingles at 0.4 merge
    follow-ups, at 0.5 they recall less (0.97); 4- and 5-word shingles recall less;
    num_perm 64 halves the signature but drops recall to 0.95. Rewrites replacing
    15-25% of words are out of reach of word-shingle MinHash at any precise setting.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: Estimated Jaccard similarity of word-shingle sets at or above which two texts are near-duplicates.
    threshold: float = Field(default=0.4, gt=0.0, lt=1.0)
    #: MinHash permutations (signature length); the index keeps 2 bytes of each per document.
    num_perm: int = Field(default=128, ge=8, le=1024)
    #: Words per shingle.
    shingle_size: int = Field(default=3, ge=1, le=10)
    #: Index entries whose run date is older than this many days are pruned.
    window_days: int = Field(default=30, ge=1)
    #: Seed of the MinHash permutations (stored with the index; changing it invalidates the index).
    seed: int = 1
    #: Look for rewritten copies (`dup_kind='rewrite'`) and related stories (`story_id`) too.
    rewrite: bool = True

    @model_validator(mode="after")
    def _lsh_feasible(self) -> DedupeConfig:
        try:
            lsh_params(self.threshold, self.num_perm)
        except ValueError as exc:  # datasketch refuses e.g. a 0.99 threshold with 64 permutations
            raise ValueError(f"threshold {self.threshold} with num_perm {self.num_perm}: {exc}") from exc
        return self


# --------------------------------------------------------------------------- signatures


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
    """datasketch's affine32 permutation parameters, drawn the way `MinHash._init_permutations` draws them.

    Importing datasketch pulls in scipy (~1 s of a run's start-up), so the two draws are
    repeated here; a test checks that the signatures equal datasketch's, value for value.
    """
    gen = np.random.RandomState(seed)
    a = gen.randint(0, 1 << 31, num_perm, dtype=np.uint32) * np.uint32(2) + np.uint32(1)
    b = gen.randint(0, 1 << 32, num_perm, dtype=np.uint32)
    return np.ascontiguousarray(a), np.ascontiguousarray(b)


def _gauss_legendre(lo: float, hi: float, nodes: int) -> tuple[np.ndarray, np.ndarray]:
    x, w = np.polynomial.legendre.leggauss(nodes)
    half = (hi - lo) / 2
    return lo + half * (x + 1), w * half


@lru_cache(maxsize=64)
def lsh_params(threshold: float, num_perm: int, weights: tuple[float, float] = (0.5, 0.5)) -> tuple[int, int]:
    """(bands, rows) minimising the weighted false-positive + false-negative area, as datasketch's
    `MinHashLSH(threshold, num_perm)` picks them (the same search; a test compares the two).

    datasketch integrates with scipy's adaptive quadrature; the integrands are polynomials of
    degree at most num_perm, which Gauss-Legendre with num_perm/2 + 1 nodes integrates exactly.
    Raises ValueError where datasketch does (fewer than 2 bands).
    """
    if not 0.0 <= threshold <= 1.0:
        raise ValueError("threshold must be in [0.0, 1.0]")
    if num_perm < 2:
        raise ValueError("Too few permutation functions")
    nodes = num_perm // 2 + 2
    s_fp, w_fp = _gauss_legendre(0.0, threshold, nodes)
    s_fn, w_fn = _gauss_legendre(threshold, 1.0, nodes)
    best, opt = float("inf"), (0, 0)
    for b in range(1, num_perm + 1):
        r = np.arange(1, num_perm // b + 1, dtype=np.float64)[:, None]
        fp = (1 - (1 - s_fp**r) ** b) @ w_fp
        fn = ((1 - s_fn**r) ** b) @ w_fn
        error = fp * weights[0] + fn * weights[1]
        i = int(np.argmin(error))  # the first minimum, as datasketch's strict "<" keeps the first
        if error[i] < best:
            best, opt = float(error[i]), (b, i + 1)
    if opt[0] < 2:
        raise ValueError("The number of bands are too small (b < 2)")
    return opt


# Odd multipliers: the polynomial word hash, and the k word hashes of a shingle (position-dependent).
_P = 0x100000001B3  # FNV-64 prime (odd, so invertible mod 2**64)
_P_INV = pow(_P, -1, 1 << 64)
_SHINGLE_MULT = np.array(
    [
        0x9E3779B97F4A7C15,
        0xC2B2AE3D27D4EB4F,
        0x165667B19E3779F9,
        0x85EBCA77C2B2AE63,
        0x27D4EB2F165667C5,
        0xD6E8FEB86659FD93,
        0xFF51AFD7ED558CCD,
        0xC4CEB9FE1A85EC53,
        0xA0761D6478BD642F,
        0xE7037ED1A0B428DB,
    ],
    dtype=np.uint64,
)
_pow_cache: dict[str, np.ndarray] = {}


def _powers(n: int) -> tuple[np.ndarray, np.ndarray]:
    """P**i and P**-i mod 2**64 for i < n (cached, grown on demand)."""
    if len(_pow_cache.get("p", ())) < n:
        size = max(n, 1 << 16)
        with np.errstate(over="ignore"):
            _pow_cache["p"] = np.cumprod(np.full(size, _P, dtype=np.uint64)) * np.uint64(_P_INV)
            _pow_cache["q"] = np.cumprod(np.full(size, _P_INV, dtype=np.uint64)) * np.uint64(_P)
    return _pow_cache["p"][:n], _pow_cache["q"][:n]


def shingles_of(texts: list[bytes], k: int) -> tuple[np.ndarray, np.ndarray]:
    """32-bit hashes of the k-word shingles of many normalised texts: (flat hashes, count per text).

    Word hashes are polynomial hashes of the bytes, computed for the whole batch with
    prefix sums (no Python work per word); a text shorter than k words is one shingle,
    an empty text one constant shingle.
    """
    buf = b" ".join(texts) + b" "
    data = np.frombuffer(buf, dtype=np.uint8)
    lens = np.fromiter(map(len, texts), dtype=np.int64, count=len(texts))
    doc_start = np.zeros(len(texts), dtype=np.int64)
    np.cumsum(lens[:-1] + 1, out=doc_start[1:])
    space = np.flatnonzero(data == 32)
    # Token boundaries: a token starts after a space (or at 0) and ends at the next space.
    starts = np.concatenate([[0], space[:-1] + 1])
    ends = space
    keep = ends > starts
    starts, ends = starts[keep], ends[keep]
    pw, inv = _powers(len(data) + 1)
    with np.errstate(over="ignore"):
        prefix = np.zeros(len(data) + 1, dtype=np.uint64)
        np.cumsum(data.astype(np.uint64) * pw[: len(data)], out=prefix[1:])
        tok = fmix64((prefix[ends] - prefix[starts]) * inv[starts] + (ends - starts).astype(np.uint64))
        doc = np.searchsorted(doc_start, starts, "right") - 1
        counts = np.bincount(doc, minlength=len(texts))
        first_tok = np.zeros(len(texts), dtype=np.int64)
        np.cumsum(counts[:-1], out=first_tok[1:])
        n = len(tok)
        padded = np.concatenate([tok, np.zeros(k, dtype=np.uint64)])
        h = padded[:n] * _SHINGLE_MULT[0]
        for j in range(1, k):
            h += padded[j : n + j] * _SHINGLE_MULT[j]
        # A text shorter than k words is one shingle of its own words only (the sums above ran past it).
        for d in np.flatnonzero((counts > 0) & (counts < k)).tolist():
            f = int(first_tok[d])
            h[f] = sum(int(tok[f + j]) * int(_SHINGLE_MULT[j]) for j in range(int(counts[d]))) & 0xFFFFFFFFFFFFFFFF
    # Shingle starts: the first max(1, count-k+1) tokens of each text.
    n_sh = np.maximum(counts - k + 1, 1)
    n_sh[counts == 0] = 0
    sel = np.repeat(first_tok, n_sh) + (np.arange(int(n_sh.sum())) - np.repeat(np.cumsum(n_sh) - n_sh, n_sh))
    sh32 = (h[sel] ^ (h[sel] >> np.uint64(32))).astype(np.uint32)
    if (counts == 0).any():  # empty texts: one constant shingle each, inserted at their place
        out_counts = np.maximum(n_sh, 1)
        flat = np.zeros(int(out_counts.sum()), dtype=np.uint32)
        pos = np.cumsum(out_counts) - out_counts
        mask = np.ones(len(flat), dtype=bool)
        mask[pos[counts == 0]] = False
        flat[mask] = sh32
        return flat, out_counts
    return sh32, n_sh


def shingle_hashes(words: list[str], k: int) -> np.ndarray:
    """Shingle hashes of one word list (the same values `shingles_of` gives for the joined text)."""
    flat, _ = shingles_of([" ".join(words).encode("utf-8")], k)
    return flat


def signatures(shingle_sets: list[np.ndarray], num_perm: int, seed: int = 1) -> np.ndarray:
    """MinHash signatures (n_docs x num_perm, uint32) of many shingle-hash arrays."""
    counts = np.fromiter(map(len, shingle_sets), dtype=np.int64, count=len(shingle_sets))
    return signatures_flat(np.concatenate(shingle_sets), counts, num_perm, seed)


def signatures_flat(flat: np.ndarray, counts: np.ndarray, num_perm: int, seed: int = 1) -> np.ndarray:
    """MinHash signatures of texts whose shingle hashes are `flat`, `counts[i]` of them for text i (all > 0)."""
    a, b = _permutations(num_perm, seed)
    a, b = a[:, None], b[:, None]
    out = np.empty((len(counts), num_perm), dtype=np.uint32)
    x_all = fmix32(flat.astype(np.uint32))
    ends = np.cumsum(counts)
    begins = ends - counts
    # Blocks of ~4k shingles, one reused buffer (no fresh allocation and page faults per block).
    # Measured on 10,000 generated articles (2 cores, best of 3): 0.34 s at 4096 against
    # 0.92 s at 2048 and 0.45 s at 8192; identical signatures.
    block = 4096
    buf = np.empty((num_perm, block + int(counts.max(initial=0))), dtype=np.uint32)
    d = 0
    while d < len(counts):
        e = max(int(np.searchsorted(ends, begins[d] + block, "right")), d + 1)
        x = x_all[begins[d] : ends[e - 1]]
        prod = buf[:, : len(x)]
        np.multiply(a, x, out=prod)
        prod += b
        out[d:e] = np.minimum.reduceat(prod, begins[d:e] - begins[d], axis=1).T
        d = e
    return out


def band_keys(sigs: np.ndarray, bands: int, rows: int) -> np.ndarray:
    """One 64-bit key per LSH band (n_docs x bands): equal keys mean equal band values."""
    n = sigs.shape[0]
    v = sigs[:, : bands * rows].reshape(n, bands, rows).astype(np.uint64)
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


# --------------------------------------------------------------------------- key -> rows multimap


class KeyRows:
    """A multimap of 64-bit keys to row numbers in sorted numpy levels (a small LSM tree).

    12 bytes per entry and no Python object per entry; lookups are batched (one
    `searchsorted` per level for a whole batch of documents); appends are sorted
    into a new level and equal-sized levels merge, so total merge work is O(n log n).
    """

    def __init__(self) -> None:
        self.levels: list[tuple[np.ndarray, np.ndarray]] = []

    def __len__(self) -> int:
        return sum(len(k) for k, _ in self.levels)

    @property
    def nbytes(self) -> int:
        return sum(k.nbytes + r.nbytes for k, r in self.levels)

    def add(self, keys: np.ndarray, rows: np.ndarray) -> None:
        if len(keys) == 0:
            return
        keys = np.asarray(keys, dtype=np.uint64)
        rows = np.asarray(rows, dtype=np.int32)
        while self.levels and len(self.levels[-1][0]) <= 2 * len(keys):
            k, r = self.levels.pop()
            keys, rows = np.concatenate([k, keys]), np.concatenate([r, rows])
        order = np.argsort(keys, kind="stable")
        self.levels.append((keys[order], rows[order]))

    def query(self, q: np.ndarray, max_per_key: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """All (query index, row) pairs with keys[row] == q[query index].

        `max_per_key`: skip keys held by more rows than this (per level), without materialising them.
        """
        order = np.argsort(q)  # sorted probes make searchsorted walk the level in order (cache-friendly)
        qs = q[order]
        qi_parts, row_parts = [], []
        for keys, rows in self.levels:
            if max_per_key is not None:
                lo = np.searchsorted(keys, qs, "left")
                n = np.searchsorted(keys, qs, "right") - lo
                ok = (n > 0) & (n <= max_per_key)
                lo, n, probe = lo[ok], n[ok], np.flatnonzero(ok)
                at = np.repeat(lo, n) + (np.arange(int(n.sum())) - np.repeat(np.cumsum(n) - n, n))
                qi_parts.append(order[np.repeat(probe, n)])
                row_parts.append(rows[at])
                continue
            pos = np.searchsorted(keys, qs, "left")
            probe = np.arange(len(qs))
            # Walk forward over equal keys: most keys occur once, a cluster's band key a few times.
            while len(pos):
                inside = pos < len(keys)
                probe, pos = probe[inside], pos[inside]
                hit = keys[pos] == qs[probe]
                probe, pos = probe[hit], pos[hit]
                if not len(pos):
                    break
                qi_parts.append(order[probe])
                row_parts.append(rows[pos])
                pos = pos + 1
        if not qi_parts:
            return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int32)
        return np.concatenate(qi_parts), np.concatenate(row_parts)


def earlier_equal(keys: np.ndarray, owners: np.ndarray, depth: int) -> tuple[np.ndarray, np.ndarray]:
    """(earlier owner, later owner) pairs whose keys are equal, each later owner paired with at most
    `depth` earlier owners per key (enough to reach a cluster without quadratic pairs)."""
    order = np.lexsort((owners, keys))
    k, o = keys[order], owners[order]
    first, second = [], []
    for d in range(1, depth + 1):
        same = (k[d:] == k[:-d]) & (o[d:] != o[:-d])
        if not same.any():
            break
        first.append(o[:-d][same])
        second.append(o[d:][same])
    if not first:
        return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64)
    return np.concatenate(first), np.concatenate(second)


# --------------------------------------------------------------------------- the index

_REWRITE_SCHEME = f"terms16-v1:{REWRITE_PERM}x{REWRITE_SEED}:{REWRITE_BANDS}x{REWRITE_ROWS}:{REWRITE_MAX_TERMS}"

_STR_FIELDS = ("article_id", "cluster_id", "supersedes", "story_id")
_REWRITE_FIELDS = ("rw_sig", "t_n", "s_n")
_ROW_FIELDS = (
    "url_key",
    "content_key",
    "version",
    "day",
    "run",
    "linked",
    "rw_sig",
    "t_start",
    "t_n",
    "s_start",
    "s_n",
    "seq",
    "hist",
)
#: Row fields kept in memory only (never in an old-format .npz).
_MEM_FIELDS = ("seq", "hist")
#: Order of rows: history rows by (day, segment seq, doc) below this, this process's rows above it.
_RUN_SEQ = 1 << 62


class Ragged:
    """Variable-length rows of one dtype in one growing buffer (capacity doubles): a row is data[start:start+n]."""

    def __init__(self, dtype: type) -> None:
        self.data: np.ndarray = np.zeros(0, dtype=dtype)
        self.used = 0

    def append(self, flat: np.ndarray) -> int:
        """Append values; returns where they start."""
        start = self.used
        end = start + len(flat)
        if end > len(self.data):
            grown = np.zeros(max(end, 2 * len(self.data), 4096), dtype=self.data.dtype)
            grown[:start] = self.data[:start]
            self.data = grown
        self.data[start:end] = flat
        self.used = end
        return start

    def gather(self, starts: np.ndarray, counts: np.ndarray) -> np.ndarray:
        """The rows (starts[i], counts[i]) back to back."""
        counts = counts.astype(np.int64)
        idx = np.repeat(starts.astype(np.int64) - (np.cumsum(counts) - counts), counts) + np.arange(int(counts.sum()))
        return self.data[idx]

    @property
    def nbytes(self) -> int:
        return self.used * self.data.itemsize


class DedupeIndex:
    """What earlier articles (this run's and earlier runs' in the window) looked like.

    Rows are kept in first-seen order. Per row: the signature as 16-bit b-bit
    MinHash values (the low 16 bits of each datasketch affine32 value: a chance
    match is 1/65536 per value, negligible against the threshold), 64-bit keys of
    the canonical URL and the content hash, article_id, cluster_id, supersedes,
    version, day and run. Lookups: `KeyRows` multimaps for URL, content and LSH band keys.
    """

    def __init__(self, config: DedupeConfig | None = None):
        self.config = config or DedupeConfig()
        self.bands, self.rows_per_band = lsh_params(self.config.threshold, self.config.num_perm)
        self.n = 0
        self.sig = np.zeros((0, self.config.num_perm), dtype=np.uint16)
        self.url_key = np.zeros(0, dtype=np.uint64)
        self.content_key = np.zeros(0, dtype=np.uint64)
        self.ids = {f: np.zeros(0, dtype="S24") for f in _STR_FIELDS}
        self.version = np.zeros(0, dtype=np.int32)
        self.day = np.zeros(0, dtype=np.int32)
        self.run = np.zeros(0, dtype=np.int32)
        self.linked = np.zeros(0, dtype=bool)  # False for exact copies: their signature is indexed already
        # Rewrite features: MinHash of the term set, and term ids / sentence lengths as ragged rows.
        self.rw_sig = np.zeros((0, REWRITE_PERM), dtype=np.uint16)
        self.t_start = np.zeros(0, dtype=np.uint32)
        self.t_n = np.zeros(0, dtype=np.uint16)
        self.s_start = np.zeros(0, dtype=np.uint32)
        self.s_n = np.zeros(0, dtype=np.uint8)
        self.seq = np.zeros(0, dtype=np.int64)  # first-seen order (rows are renumbered by it after fetches)
        self.hist = np.zeros(0, dtype=bool)  # True: the row is stored in the bucket already
        self._next_seq = _RUN_SEQ
        self.terms = Ragged(np.uint16)
        self.sent_lens = Ragged(np.uint8)
        self._rw_lookup: KeyRows | None = None
        self.runs: list[str] = []
        self._run_ix: dict[str, int] = {}
        self._lookups: tuple[KeyRows, KeyRows, KeyRows] | None = None
        # Where this index came from, for conditional saves: shard key -> ETag ("" = did not exist).
        self.prefix = DEDUPE_INDEX_PREFIX
        self.run_date: str | None = None
        self.etags: dict[str, str] = {}
        # Segments (format 2) of the window, when opened lazily: rows are fetched for the keys a batch asks about.
        self.segments: list[Segment] = []
        self._fetched: set[int] = set()  # segment number << 32 | doc: rows already in memory
        self._dead: set[int] = set()  # segment numbers compacted and deleted since `open` (see `_redirect`)
        # run id -> (day, seq) of the latest segment of a re-run of it: its rows in earlier segments are void.
        self._replaced: dict[str, tuple[int, int]] = {}
        self._skip_runs: set[str] = set()  # run ids whose stored rows are ignored (drop_run)
        self._replaces: set[str] = set()  # run ids dropped here: the next segment saved replaces their rows
        self._day_seq: dict[str, int] = {}  # run date -> highest segment seq seen
        self._clock = 0  # the number of the last commit marker seen at open: `save` creates the next
        self._bucket: Bucket | None = None
        self._cache: KeyCache | None = None  # worker-local key sections (`KeyCache`), when on

    # -- size
    def __len__(self) -> int:
        return self.n

    @property
    def nbytes(self) -> int:
        """Bytes held by the row arrays and the lookup multimaps."""
        total = self.sig.nbytes + sum(getattr(self, f).nbytes for f in _ROW_FIELDS)
        total += sum(a.nbytes for a in self.ids.values()) + self.terms.nbytes + self.sent_lens.nbytes
        if self._lookups is not None:
            total += sum(m.nbytes for m in self._lookups)
        if self._rw_lookup is not None:
            total += self._rw_lookup.nbytes
        return total

    def run_index(self, run_id: str) -> int:
        if run_id not in self._run_ix:
            self._run_ix[run_id] = len(self.runs)
            self.runs.append(run_id)
        return self._run_ix[run_id]

    def band_keys(self, sig16: np.ndarray) -> np.ndarray:
        return band_keys(sig16, self.bands, self.rows_per_band)

    def lookups(self) -> tuple[KeyRows, KeyRows, KeyRows]:
        """(url, content, band) multimaps over all rows, built on first use."""
        if self._lookups is None:
            url, content, band = KeyRows(), KeyRows(), KeyRows()
            rows = np.arange(self.n, dtype=np.int32)
            url.add(self.url_key[: self.n], rows)
            content.add(self.content_key[: self.n], rows)
            linked = rows[self.linked[: self.n]]
            bk = self.band_keys(self.sig[linked])
            band.add(bk.ravel(), np.repeat(linked, self.bands))
            self._lookups = (url, content, band)
        return self._lookups

    def rewrite_lookup(self) -> KeyRows:
        """The rewrite LSH band multimap over the rows that have rewrite features, built on first use."""
        if self._rw_lookup is None:
            lookup = KeyRows()
            rows = np.flatnonzero(self.linked[: self.n] & (self.t_n[: self.n] > 0)).astype(np.int32)
            bk = band_keys(self.rw_sig[rows], REWRITE_BANDS, REWRITE_ROWS)
            lookup.add(bk.ravel(), np.repeat(rows, REWRITE_BANDS))
            self._rw_lookup = lookup
        return self._rw_lookup

    def rewrite_features(self, row: int) -> tuple[np.ndarray, np.ndarray]:
        """(term ids, sentence lengths) of a row (empty when it has none)."""
        t0, s0 = int(self.t_start[row]), int(self.s_start[row])
        return (
            self.terms.data[t0 : t0 + int(self.t_n[row])],
            self.sent_lens.data[s0 : s0 + int(self.s_n[row])],
        )

    def get(self, row: int, field: str) -> str | None:
        value = self.ids[field][row].decode()
        return value or None

    def _reserve(self, n: int) -> None:
        """Room for n rows; capacity doubles so appending batches stays O(n) overall."""
        cap = self.sig.shape[0]
        if n <= cap:
            return
        self._resize(max(n, cap * 2, 1024))

    def _resize(self, cap: int) -> None:
        def fit(a: np.ndarray) -> np.ndarray:
            out = np.zeros((cap, *a.shape[1:]), dtype=a.dtype)
            out[: self.n] = a[: self.n]
            return out

        self.sig = fit(self.sig)
        for f in _ROW_FIELDS:
            setattr(self, f, fit(getattr(self, f)))
        self.ids = {f: fit(a) for f, a in self.ids.items()}

    def trim(self) -> None:
        """Give back the spare capacity (call when a batch of appends is done)."""
        if self.sig.shape[0] != self.n:
            self._resize(self.n)

    def _fit_ids(self, width: int) -> None:
        for f, a in self.ids.items():
            if a.dtype.itemsize < width:
                self.ids[f] = a.astype(f"S{width}")

    def append(
        self,
        *,
        sig16: np.ndarray,
        bkeys: np.ndarray,
        url_key: np.ndarray,
        content_key: np.ndarray,
        ids: dict[str, list[str | None]],  # None: an empty id (no `supersedes`)
        version: np.ndarray,
        day: int,
        run_id: str,
        linked: np.ndarray,
        rewrite: tuple[np.ndarray, np.ndarray, list[np.ndarray], list[np.ndarray]] | None = None,
    ) -> np.ndarray:
        """Append a batch of rows (in first-seen order); returns their row numbers.

        `rewrite`: (MinHash uint16 rows, band keys, term ids per row, sentence lengths per row).
        """
        k = len(url_key)
        url, content, band = self.lookups()
        rw_lookup = self.rewrite_lookup()
        rows = np.arange(self.n, self.n + k, dtype=np.int32)
        encoded = {f: [(v or "").encode() for v in vals] for f, vals in ids.items()}
        self._fit_ids(max((len(v) for vals in encoded.values() for v in vals), default=1))
        self._reserve(self.n + k)
        sl = slice(self.n, self.n + k)
        self.sig[sl] = sig16
        self.url_key[sl] = url_key
        self.content_key[sl] = content_key
        for f in _STR_FIELDS:
            self.ids[f][sl] = encoded[f]
        self.version[sl] = version
        self.day[sl] = day
        self.run[sl] = self.run_index(run_id)
        self.linked[sl] = linked
        self.seq[sl] = np.arange(self._next_seq, self._next_seq + k, dtype=np.int64)
        self.hist[sl] = False
        self._next_seq += k
        if rewrite is not None:
            rw_sig, rw_bkeys, terms, lens = rewrite
            self.rw_sig[sl] = rw_sig
            for r, t, s in zip(rows.tolist(), terms, lens):
                if len(t):
                    self.t_start[r], self.t_n[r] = self.terms.append(t), len(t)
                    self.s_start[r], self.s_n[r] = self.sent_lens.append(s), len(s)
            has = linked & (self.t_n[sl] > 0)
            rw_lookup.add(rw_bkeys[has].ravel(), np.repeat(rows[has], REWRITE_BANDS))
        self.n += k
        url.add(url_key, rows)
        content.add(content_key, rows)
        band.add(bkeys[linked].ravel(), np.repeat(rows[linked], self.bands))
        return rows

    # -- bounding
    def _keep(self, mask: np.ndarray) -> int:
        """Keep only rows where mask is True (order preserved); returns how many were dropped."""
        dropped = int(self.n - mask[: self.n].sum())
        if dropped == 0:
            return 0
        self._take(np.nonzero(mask[: self.n])[0])
        return dropped

    def _take(self, idx: np.ndarray) -> None:
        """Keep the rows `idx`, in that order (lookups are rebuilt on next use)."""
        self.sig = self.sig[idx]
        for name in _ROW_FIELDS:
            setattr(self, name, getattr(self, name)[idx])
        self.ids = {f: a[idx] for f, a in self.ids.items()}
        self._compact_ragged()
        self.n = len(idx)
        self._lookups = None
        self._rw_lookup = None

    def _compact_ragged(self) -> None:
        """Rebuild the ragged buffers for the rows kept (after the row arrays were filtered)."""
        terms = self.terms.gather(self.t_start, self.t_n)
        lens = self.sent_lens.gather(self.s_start, self.s_n)
        self.terms, self.sent_lens = Ragged(np.uint16), Ragged(np.uint8)
        self.t_start = (np.cumsum(self.t_n, dtype=np.int64) - self.t_n).astype(np.uint32)
        self.s_start = (np.cumsum(self.s_n, dtype=np.int64) - self.s_n).astype(np.uint32)
        self.terms.append(terms)
        self.sent_lens.append(lens)

    def prune(self, run_date: str, window_days: int | None = None) -> int:
        """Drop rows whose run date is more than `window_days` before `run_date`; returns the count."""
        window = self.config.window_days if window_days is None else window_days
        oldest = day_number(run_date) - window
        return self._keep(self.day[: self.n] >= oldest)

    def drop_run(self, run_id: str) -> int:
        """Forget the rows a run added (re-running a run id must not see its own articles)."""
        self._skip_runs.add(run_id)
        self._replaces.add(run_id)
        if run_id not in self._run_ix:
            return 0
        return self._keep(self.run[: self.n] != self._run_ix[run_id])

    # -- serialisation
    def _meta(self) -> dict:
        c = self.config
        return {
            "format": FORMAT_VERSION,
            "num_perm": c.num_perm,
            "shingle_size": c.shingle_size,
            "seed": c.seed,
            "scheme": "datasketch-affine32-b16",
            "rewrite": _REWRITE_SCHEME,
            "runs": self.runs,
        }

    def to_bytes(self, mask: np.ndarray | None = None) -> bytes:
        """The rows (all, or where `mask`) as an .npz object."""
        idx = np.arange(self.n) if mask is None else np.nonzero(mask[: self.n])[0]
        buf = io.BytesIO()
        np.savez_compressed(
            buf,
            meta=np.frombuffer(json.dumps(self._meta()).encode(), dtype=np.uint8),
            sig=self.sig[idx],
            terms=self.terms.gather(self.t_start[idx], self.t_n[idx]),
            sent_lens=self.sent_lens.gather(self.s_start[idx], self.s_n[idx]),
            **{f: getattr(self, f)[idx] for f in _ROW_FIELDS if f not in ("t_start", "s_start", *_MEM_FIELDS)},
            # numpy's stub matches a ** dict against the allow_pickle: bool keyword too
            **{f: self.ids[f][idx] for f in _STR_FIELDS},  # type: ignore[arg-type]
        )
        return buf.getvalue()

    def extend_from_bytes(self, data: bytes, *, seq_base: int | None = None) -> int:
        """Append the rows of an .npz object written by `to_bytes`; returns how many.

        `seq_base`: the rows are stored history ordered from there (an old-format day file), else new rows.
        """
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            meta = json.loads(z["meta"].tobytes())
            mine = self._meta()
            for field in ("num_perm", "shingle_size", "seed", "scheme"):
                if meta.get(field) != mine[field]:
                    raise ValueError(
                        f"dedupe index was built with {field}={meta.get(field)!r}, "
                        f"config has {mine[field]!r}: signatures are not comparable "
                        f"(delete {self.prefix} or keep the old setting)"
                    )
            k = len(z["day"])
            run_map = np.array([self.run_index(r) for r in meta["runs"]] or [0], dtype=np.int32)
            names = set(z.files)
            self._fit_ids(max(z[f].dtype.itemsize for f in _STR_FIELDS if f in names))
            self._reserve(self.n + k)
            sl = slice(self.n, self.n + k)
            self.sig[sl] = z["sig"]
            # Shards of an older format, or another rewrite scheme: no rewrite features (never candidates).
            has_rw = meta.get("rewrite") == _REWRITE_SCHEME
            for f in _ROW_FIELDS:
                if f in ("t_start", "s_start", *_MEM_FIELDS):
                    continue
                if f in names and (has_rw or f not in _REWRITE_FIELDS):
                    getattr(self, f)[sl] = run_map[z[f]] if (f == "run" and k) else z[f]
                else:
                    getattr(self, f)[sl] = 0
            if has_rw:
                self.t_start[sl] = self.terms.append(z["terms"]) + np.cumsum(z["t_n"], dtype=np.int64) - z["t_n"]
                self.s_start[sl] = (
                    self.sent_lens.append(z["sent_lens"]) + np.cumsum(z["s_n"], dtype=np.int64) - z["s_n"]
                )
            for f in _STR_FIELDS:
                self.ids[f][sl] = z[f] if f in names else z["cluster_id"]  # story_id: since the rewrite kind
        if seq_base is None:
            self.seq[sl], self.hist[sl] = np.arange(self._next_seq, self._next_seq + k), False
            self._next_seq += k
        else:
            self.seq[sl], self.hist[sl] = seq_base + np.arange(k), True
        self.n += k
        self._lookups = None
        self._rw_lookup = None
        return k

    @staticmethod
    def shard_key(prefix: str, day: str) -> str:
        """`<prefix>day=YYYY-MM-DD.npz`: the shard of one run date."""
        return dedupe_shard_key(day, prefix)

    @classmethod
    def open(
        cls, bucket: Bucket, *, key: str = DEDUPE_INDEX_PREFIX, run_date: str, config: DedupeConfig | None = None
    ) -> DedupeIndex:
        """The index as of `run_date`, lazily: only the window's segment footers (block indexes) are read.

        `fetch` then reads, per batch, only the key blocks its keys can be in and the rows they point at.
        Old-format day files (`state/dedupe/v1/day=*.npz`) in the window are read whole, as they are.
        """
        index = cls(config)
        index.prefix = key
        index.run_date = run_date[:10]
        index._bucket = bucket
        today = day_number(run_date)
        oldest = today - index.config.window_days
        seg_prefix = dedupe_segment_prefix(key)
        # The commit markers before the segments: a segment is written before its marker, so every
        # segment a seen marker stands for is in the listing that follows.
        index._clock = last_commit(bucket, seg_prefix)
        index.segments = open_window(bucket, seg_prefix, oldest, today)
        index._cache = KeyCache.for_bucket(bucket, seg_prefix)
        if index._cache is not None:
            try:
                index._cache.evict(index.segments)
            except OSError as exc:  # a cache folder that cannot be used: read by range
                log.warning("dedupe key cache off: %s", exc)
                index._cache = None
        for seg in index.segments:
            seg.check(index._meta())
            for run in seg.meta.get("replaces", ()):
                index._replaced[run] = (seg.day, seg.seq)
            name = _day_name(seg.day)
            index._day_seq[name] = max(index._day_seq.get(name, 0), seg.seq)
        for shard in bucket.list(key):  # old format: whole day files, read as they are
            day = dedupe_shard_day(shard, key)
            if day is None or not oldest <= day_number(day) <= today:
                continue
            body_etag = bucket.get_with_etag(shard)
            if body_etag is not None:
                index.extend_from_bytes(body_etag[0], seq_base=day_number(day) << 47)
                index.etags[shard] = body_etag[1]
        # A run that wrote a segment since replaced the rows it had in an old day file.
        superseded = [index._run_ix[r] for r in index._replaced if r in index._run_ix]
        index._keep(~np.isin(index.run[: index.n], superseded))
        index.prune(index.run_date)
        index._renumber()
        return index

    @classmethod
    def load(
        cls, bucket: Bucket, *, key: str = DEDUPE_INDEX_PREFIX, run_date: str, config: DedupeConfig | None = None
    ) -> DedupeIndex:
        """The whole index as of `run_date` (every row of the window in memory): for inspection and tests."""
        index = cls.open(bucket, key=key, run_date=run_date, config=config)
        for s_no, seg in enumerate(index.segments):
            index._add_docs(bucket, s_no, np.arange(seg.n_docs, dtype=np.int64))
        index._renumber()
        return index

    def fetch(self, **keys: np.ndarray | None) -> int:
        """Bring into memory the stored rows holding any of these keys; returns how many rows were added.

        `keys`: url=, content=, band=, rewrite= arrays of 64-bit keys (None or absent: not asked).
        Rewrite band keys held by more than `REWRITE_BUCKET` rows of a segment are not followed.
        """
        asked = {KINDS[k]: np.unique(np.asarray(v, dtype=np.uint64).ravel()) for k, v in keys.items() if v is not None}
        bucket = self._bucket
        if bucket is None or not self.segments or not asked:
            return 0
        query = KeyQuery(asked)
        added = 0
        s_no = 0
        probed: dict[int, np.ndarray] = {}
        if self._cache is not None:  # a cold cache: download the window's key sections in parallel
            live = {i: s for i, s in enumerate(self.segments) if i not in self._dead}
            self._cache.prefetch(list(live.values()))
            probed = self._cache.probe_many(live, query)
        while s_no < len(self.segments):  # a redirect appends the merged segment that replaced one
            seg = self.segments[s_no]
            if s_no not in self._dead:
                try:
                    docs = probed.pop(s_no, None)
                    if docs is None:
                        docs = self._probe(bucket, seg, query)
                    if len(docs):
                        added += self._add_docs(bucket, s_no, docs)
                except StorageError as exc:
                    if exc.code not in _MISSING:
                        raise
                    self._redirect(bucket, seg.day)  # compacted and deleted since `open`: read its merge
                    if s_no not in self._dead:
                        raise  # deleted, yet no merge covers it (expired?): not an index this run can use
                    continue
            s_no += 1
        if added:
            self._renumber()
        return added

    def _probe(self, bucket: Bucket, seg: Segment, query: KeyQuery) -> np.ndarray:
        """`Segment.probe` from the key cache when it is on, else by ranged reads (the same rows)."""
        if self._cache is not None:
            try:
                docs = self._cache.probe(seg, query)
                if docs is not None:
                    return docs
            except OSError as exc:  # full disk, unwritable folder: the cache is only a cache
                log.warning("dedupe key cache off: %s", exc)
                self._cache = None
        return seg.probe(bucket, query)

    def _add_docs(self, bucket: Bucket, s_no: int, docs: np.ndarray) -> int:
        """Append segment `s_no`'s rows `docs` (those not in memory yet, of runs not dropped or superseded)."""
        seg = self.segments[s_no]
        ids = (np.int64(s_no) << 32) | docs.astype(np.int64)
        new = ~np.isin(ids, np.fromiter(self._fetched, dtype=np.int64, count=len(self._fetched)))
        docs = docs[new]
        if not len(docs):
            return 0
        self._fetched.update(ids[new].tolist())
        recs, terms, sents = seg.read_docs(bucket, docs)
        runs = seg.meta["runs"]
        live = np.array(
            [
                runs[r] not in self._skip_runs and self._replaced.get(runs[r], (-1, -1)) <= (seg.day, seg.seq)
                for r in recs["run"].tolist()
            ],
            dtype=bool,
        )
        if not live.any():
            return 0
        recs, docs = recs[live], docs[live]
        terms = [t for t, ok in zip(terms, live) if ok]
        sents = [x for x, ok in zip(sents, live) if ok]
        k = len(recs)
        self._fit_ids(max(recs[f].dtype.itemsize for f in _STR_FIELDS))
        self._reserve(self.n + k)
        sl = slice(self.n, self.n + k)
        self.sig[sl] = recs["sig"]
        self.rw_sig[sl] = recs["rw_sig"]
        for f in ("url_key", "content_key", "version", "day", "linked", "t_n", "s_n"):
            getattr(self, f)[sl] = recs[f]
        run_map = np.array([self.run_index(r) for r in runs] or [0], dtype=np.int32)
        self.run[sl] = run_map[recs["run"].astype(np.int64)]
        for f in _STR_FIELDS:
            self.ids[f][sl] = recs[f]
        self.t_start[sl] = (
            self.terms.append(np.concatenate(terms)) + np.cumsum(recs["t_n"], dtype=np.int64) - recs["t_n"]
        )
        self.s_start[sl] = (
            self.sent_lens.append(np.concatenate(sents)) + np.cumsum(recs["s_n"], dtype=np.int64) - recs["s_n"]
        )
        if seg.origin is not None:  # a merge read after its inputs: order its rows as the inputs were
            o = seg.origin[docs]
            self.seq[sl] = (np.int64(seg.day) << 47) | (o["seq"].astype(np.int64) << 27) | o["doc"].astype(np.int64)
        else:
            self.seq[sl] = (np.int64(seg.day) << 47) | (np.int64(seg.seq) << 27) | docs.astype(np.int64)
        self.hist[sl] = True
        self.n += k
        self._lookups = None
        self._rw_lookup = None
        return k

    def _redirect(self, bucket: Bucket, day: int) -> None:
        """Segments of `day` were compacted and deleted while this index used them: read the day's live
        segments again, and mark the rows already fetched from the deleted ones as fetched in their merge
        (by the merge's origin column), so each stored row is in memory at most once."""
        seg_prefix = dedupe_segment_prefix(self.prefix)
        live = open_window(bucket, seg_prefix, day, day)
        known = {(s.key, s.etag): i for i, s in enumerate(self.segments) if i not in self._dead}
        fetched = np.fromiter(self._fetched, dtype=np.int64, count=len(self._fetched))
        for seg in live:
            covered = {(int(q), e) for q, e in seg.meta.get("covers", ())}
            gone = [i for i, s in enumerate(self.segments) if s.day == day and (s.seq, s.etag) in covered]
            if (seg.key, seg.etag) in known or not gone:
                continue  # commits since `open` stay unseen, as they were: `save` conflicts with them
            seg.check(self._meta())
            new_no = len(self.segments)
            self.segments.append(seg)
            name = _day_name(day)
            self._day_seq[name] = max(self._day_seq.get(name, 0), seg.seq)
            seg.origin = seg.read_origin(bucket)
            here = seg.origin["seq"].astype(np.int64) << 32 | seg.origin["doc"].astype(np.int64)
            had = []
            for i in gone:
                self._dead.add(i)
                docs = fetched[(fetched >> 32) == i] & _DOC_MASK
                src = self.segments[i]
                # A merge merged again: its origin column (read now, if it was not) maps its rows.
                o = src.origin if src.origin is not None else src.read_origin(bucket)
                had.append((o["seq"][docs].astype(np.int64) << 32) | o["doc"][docs].astype(np.int64))
            rows = np.flatnonzero(np.isin(here, np.concatenate(had)))
            self._fetched.update(((np.int64(new_no) << 32) | rows).tolist())

    def _renumber(self) -> None:
        """Put rows in first-seen order again (fetched history rows arrive after this run's rows)."""
        order = np.argsort(self.seq[: self.n], kind="stable")
        if not np.array_equal(order, np.arange(self.n)):
            self._take(order)

    def save(self, bucket: Bucket) -> str:
        """Write this process's new rows as the run date's next segment; returns its key.

        The segment is created with If-None-Match, then the next commit marker (numbered across all
        days) likewise: PreconditionFailed when another writer saved a segment of this day or of any
        other since `open` (this index missed its rows: redo against a fresh `open`). A segment that
        lost the marker is deleted again, so two runs of different days that met the same article at
        once never both keep it. Stored rows are never rewritten, so concurrent runs lose no entry.
        """
        if self.run_date is None:
            raise ValueError("save() needs an index from DedupeIndex.open (it knows the run date)")
        seq = self._day_seq.get(self.run_date, 0) + 1
        shard = dedupe_segment_key(self.run_date, seq, dedupe_segment_prefix(self.prefix))
        rows = np.flatnonzero(~self.hist[: self.n])
        runs = sorted({self.runs[r] for r in self.run[rows].tolist()})
        body = encode_segment(self, rows, runs, replaces=sorted(self._replaces))
        etag = bucket.put(shard, body, if_none_match="*")
        seg_prefix = dedupe_segment_prefix(self.prefix)
        try:
            bucket.put_json(dedupe_commit_key(self._clock + 1, seg_prefix), {"segment": shard}, if_none_match="*")
        except PreconditionFailed:
            bucket.delete([shard])  # ours alone (created above): readers that listed it meanwhile skip it
            raise
        self._clock += 1
        self._day_seq[self.run_date] = seq
        if self._cache is not None:  # the next run on this worker finds it cached
            seg = Segment.from_bytes(shard, day_number(self.run_date), seq, body)
            seg.etag = etag.strip('"')
            self._cache.store(seg, body)
        self.hist[rows] = True
        self._replaces.clear()  # a later save of this index adds rows; it replaces nothing
        return shard

    def delete_expired(self, bucket: Bucket) -> list[str]:
        """Delete shards older than the window before this index's run date; returns their keys."""
        if self.run_date is None:
            return []
        oldest = day_number(self.run_date) - self.config.window_days
        old = [
            k
            for k in bucket.list(self.prefix)
            if (day := dedupe_shard_day(k, self.prefix)) is not None and day_number(day) < oldest
        ]
        seg_prefix = dedupe_segment_prefix(self.prefix)
        old += [
            k
            for k in bucket.list(seg_prefix)
            if (got := dedupe_segment_of(k, seg_prefix)) is not None and day_number(got[0]) < oldest
        ]
        # Commit markers far behind the last: a save opened that many commits ago is long over.
        old += [
            k
            for k in bucket.list(dedupe_commit_prefix(seg_prefix))
            if (n := dedupe_commit_of(k, seg_prefix)) is not None and n <= self._clock - COMMITS_KEPT
        ]
        if old:
            bucket.delete(old)
            log.info("dedupe index: deleted %s expired shards and markers", len(old))
        return old


# --------------------------------------------------------------------------- segments (format 2)

#: Key kinds of a segment's entries (the top two bits of an entry's ref; the rest is the row number).
KINDS = {"url": 0, "content": 1, "band": 2, "rewrite": 3}
SEGMENT_MAGIC = b"DDIXSEG2"
#: Entries per block of the sorted key section: 1,024 entries of 12 bytes, one 12 KiB range read.
SEGMENT_BLOCK = 1024
#: Reads of one segment part further apart than this are separate GETs; nearer ones are one GET.
_GAP = 16384
#: Bytes read from a segment's end at open: its footer (block index and meta) fits in one read up to here.
_TAIL = 1 << 17
_ENTRY = np.dtype([("key", "<u8"), ("ref", "<u4")])
#: A merged segment's origin column: where each row was first stored (seq of the day, row there).
_ORIGIN = np.dtype([("seq", "<u4"), ("doc", "<u4")])
#: Error codes of a ranged GET of a segment deleted since it was listed (compacted).
_MISSING = ("NoSuchKey", "404", "NotFound")
_DOC_MASK = (1 << 30) - 1
#: What the index read from the bucket in this process (benchmarks report it).
FETCHED = {"requests": 0, "bytes": 0}
_lock = threading.Lock()


@lru_cache(maxsize=1)
def _pool() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(8, thread_name_prefix="dedupe-index")


@lru_cache(maxsize=1)
def _probe_pool() -> ThreadPoolExecutor:
    """Probes of cached key sections: two at a time (one mapped segment per thread bounds RSS)."""
    return ThreadPoolExecutor(2, thread_name_prefix="dedupe-probe")


def _doc_dtype(num_perm: int, id_width: int) -> np.dtype:
    """One stored row: fixed size, so row d is at offset d * itemsize; term ids and sentence lengths apart."""
    fields: list[tuple[Any, ...]] = [("sig", "<u2", (num_perm,)), ("rw_sig", "<u2", (REWRITE_PERM,))]
    fields += [("url_key", "<u8"), ("content_key", "<u8"), ("version", "<i4"), ("day", "<i4"), ("run", "<u4")]
    fields += [("linked", "u1"), ("t_n", "<u2"), ("s_n", "u1"), ("t_off", "<u8"), ("s_off", "<u8")]
    return np.dtype(fields + [(f, f"S{id_width}") for f in _STR_FIELDS])


def _get_range(bucket: Bucket, key: str, rng: str) -> tuple[bytes, int]:
    """(bytes, object size) of one HTTP range of an object."""
    try:
        resp = bucket.client.get_object(Bucket=bucket.name, Key=key, Range=rng)
        data = resp["Body"].read()
    except (ClientError, BotoCoreError) as exc:
        raise describe_error(exc, bucket.settings, f"get {key} {rng}") from None
    with _lock:
        FETCHED["requests"] += 1
        FETCHED["bytes"] += len(data)
    return data, int(resp["ContentRange"].rsplit("/", 1)[1])


def _read_spans(bucket: Bucket, key: str, starts: np.ndarray, ends: np.ndarray) -> list[bytes]:
    """The bytes [starts[i], ends[i]) of an object (sorted by start), nearby spans merged into one ranged GET."""
    starts, ends = np.asarray(starts, dtype=np.int64), np.asarray(ends, dtype=np.int64)
    full = ends > starts
    if not full.all():  # empty spans (rows without term ids) need no read
        got = iter(_read_spans(bucket, key, starts[full], ends[full]))
        return [next(got) if f else b"" for f in full.tolist()]
    if not len(starts):
        return []
    reach = np.maximum.accumulate(ends)
    new = np.ones(len(starts), dtype=bool)
    new[1:] = starts[1:] > reach[:-1] + _GAP
    group = np.cumsum(new) - 1
    g_start = starts[new]
    g_end = np.maximum.reduceat(ends, np.flatnonzero(new))
    parts = list(_pool().map(lambda a, b: _get_range(bucket, key, f"bytes={a}-{b - 1}")[0], g_start, g_end))
    return [
        parts[g][a - g_start[g] : b - g_start[g]] for g, a, b in zip(group.tolist(), starts.tolist(), ends.tolist())
    ]


def encode_segment(index: DedupeIndex, rows: np.ndarray, runs: list[str], replaces: Sequence[str] = ()) -> bytes:
    """Rows of `index` as one immutable segment: sorted (key, kind|row) entries, fixed-size rows, term ids,
    sentence lengths, then the footer (every `SEGMENT_BLOCK`th key, meta JSON, their sizes and the magic).

    `runs`: the run ids of the rows; `replaces`: run ids re-run here (their rows in earlier segments are void).
    """
    width = max(1, max(index.ids[f].dtype.itemsize for f in _STR_FIELDS))
    recs = np.zeros(len(rows), dtype=_doc_dtype(index.config.num_perm, width))
    recs["sig"], recs["rw_sig"] = index.sig[rows], index.rw_sig[rows]
    for f in ("url_key", "content_key", "version", "day", "linked", "t_n", "s_n"):
        recs[f] = getattr(index, f)[rows]
    run_ix = {r: i for i, r in enumerate(runs)}
    recs["run"] = [run_ix[index.runs[r]] for r in index.run[rows].tolist()]
    for f in _STR_FIELDS:
        recs[f] = index.ids[f][rows]
    terms = index.terms.gather(index.t_start[rows], index.t_n[rows])
    sents = index.sent_lens.gather(index.s_start[rows], index.s_n[rows])
    recs["t_off"] = np.cumsum(recs["t_n"], dtype=np.int64) - recs["t_n"]
    recs["s_off"] = np.cumsum(recs["s_n"], dtype=np.int64) - recs["s_n"]
    doc = np.arange(len(rows), dtype=np.uint32)
    linked = recs["linked"].astype(bool)
    has_rw = linked & (recs["t_n"] > 0)
    keys = [recs["url_key"], recs["content_key"], index.band_keys(recs["sig"][linked]).ravel()]
    keys.append(band_keys(recs["rw_sig"][has_rw], REWRITE_BANDS, REWRITE_ROWS).ravel())
    refs = [doc | np.uint32(KINDS["url"] << 30), doc | np.uint32(KINDS["content"] << 30)]
    refs.append(np.repeat(doc[linked], index.bands) | np.uint32(KINDS["band"] << 30))
    refs.append(np.repeat(doc[has_rw], REWRITE_BANDS) | np.uint32(KINDS["rewrite"] << 30))
    k, r = np.concatenate(keys).astype(np.uint64), np.concatenate(refs).astype(np.uint32)
    order = np.lexsort((r, k))
    entries = np.empty(len(k), dtype=_ENTRY)
    entries["key"], entries["ref"] = k[order], r[order]
    parts = [entries.tobytes(), recs.tobytes(), terms.astype("<u2").tobytes(), sents.astype("u1").tobytes()]
    offsets = np.cumsum([0] + [len(p) for p in parts]).tolist()
    meta = {
        **index._meta(),
        "runs": runs,
        "replaces": list(replaces),
        "n_docs": len(rows),
        "n_entries": len(k),
        "id_width": width,
    }
    meta.update(block=SEGMENT_BLOCK, offsets=offsets)
    blocks = entries["key"][::SEGMENT_BLOCK].astype("<u8").tobytes()
    meta_b = json.dumps(meta).encode()
    tail = np.array([len(blocks), len(meta_b)], dtype="<u8").tobytes() + SEGMENT_MAGIC
    return b"".join(parts) + blocks + meta_b + tail


class Segment:
    """One stored segment, opened by its footer; key blocks and rows are read by range on demand."""

    def __init__(self, key: str, day: int, seq: int, meta: dict, block_keys: np.ndarray) -> None:
        self.key, self.day, self.seq, self.meta, self.block_keys = key, day, seq, meta, block_keys
        self.n_docs, self.n_entries = int(meta["n_docs"]), int(meta["n_entries"])
        self.offsets = meta["offsets"]
        self.dtype = _doc_dtype(int(meta["num_perm"]), int(meta["id_width"]))
        self.etag = ""  # as listed: with the seq, what a merged segment's `covers` names
        self.origin: np.ndarray | None = None  # (seq, doc) each row had before a merge, when read

    def read_origin(self, bucket: Bucket) -> np.ndarray:
        """The (seq, doc) each row had in its first segment: a merge's origin column, else (own seq, row)."""
        if not self.meta.get("origin"):
            out = np.zeros(self.n_docs, dtype=_ORIGIN)
            out["seq"], out["doc"] = self.seq, np.arange(self.n_docs)
            return out
        data = b"".join(_read_spans(bucket, self.key, np.array(self.offsets[4:5]), np.array(self.offsets[5:6])))
        return np.frombuffer(data, dtype=_ORIGIN)

    @classmethod
    def from_bytes(cls, key: str, day: int, seq: int, data: bytes) -> Segment:
        """A segment from its whole body (one this process just encoded)."""
        if data[-8:] != SEGMENT_MAGIC:
            raise ValueError(f"{key}: not a dedupe index segment")
        n_blocks_b, n_meta = np.frombuffer(data[-24:-8], dtype="<u8").tolist()
        footer = data[len(data) - 24 - n_blocks_b - n_meta : -24]
        return cls(key, day, seq, json.loads(footer[n_blocks_b:]), np.frombuffer(footer[:n_blocks_b], dtype="<u8"))

    @classmethod
    def open(cls, bucket: Bucket, key: str, day: int, seq: int) -> Segment:
        """Read the footer: one ranged GET of the object's end (two when the footer is larger)."""
        data, size = _get_range(bucket, key, f"bytes=-{_TAIL}")
        if data[-8:] != SEGMENT_MAGIC:
            raise ValueError(f"{key}: not a dedupe index segment")
        n_blocks_b, n_meta = np.frombuffer(data[-24:-8], dtype="<u8").tolist()
        need = n_blocks_b + n_meta + 24
        if need > len(data):
            data = _get_range(bucket, key, f"bytes={size - need}-{size - 1}")[0]
        footer = data[len(data) - need : -24]
        meta = json.loads(footer[n_blocks_b:])
        return cls(key, day, seq, meta, np.frombuffer(footer[:n_blocks_b], dtype="<u8"))

    def check(self, mine: dict) -> None:
        for field in ("num_perm", "shingle_size", "seed", "scheme", "rewrite"):
            if self.meta.get(field) != mine[field]:
                raise ValueError(
                    f"dedupe index segment {self.key} was built with {field}={self.meta.get(field)!r}, config has "
                    f"{mine[field]!r}: signatures are not comparable (delete it or keep the old setting)"
                )

    def probe(self, bucket: Bucket, query: KeyQuery) -> np.ndarray:
        """Row numbers (sorted, unique) holding any asked key of its kind, reading only the blocks they can be in."""
        q = query.keys
        nb = len(self.block_keys)
        if not len(q) or not nb:
            return np.zeros(0, dtype=np.int64)
        b0 = np.maximum(np.searchsorted(self.block_keys, q, "left") - 1, 0)
        b1 = np.maximum(np.searchsorted(self.block_keys, q, "right") - 1, 0)
        mark = np.zeros(nb + 1, dtype=np.int64)
        np.add.at(mark, b0, 1)
        np.add.at(mark, b1 + 1, -1)
        blocks = np.flatnonzero(np.cumsum(mark[:nb]) > 0)
        size = _ENTRY.itemsize
        first = self.offsets[0] + blocks * SEGMENT_BLOCK * size
        last = self.offsets[0] + np.minimum((blocks + 1) * SEGMENT_BLOCK, self.n_entries) * size
        entries = np.frombuffer(b"".join(_read_spans(bucket, self.key, first, last)), dtype=_ENTRY)
        qi = np.minimum(np.searchsorted(q, entries["key"]), len(q) - 1)
        asked = q[qi] == entries["key"]
        return query.rows(qi[asked], entries["key"][asked], entries["ref"][asked])

    def read_docs(self, bucket: Bucket, docs: np.ndarray) -> tuple[np.ndarray, list[np.ndarray], list[np.ndarray]]:
        """(fixed-size rows, term ids per row, sentence lengths per row) of rows `docs` (sorted)."""
        size = self.dtype.itemsize
        spans = _read_spans(bucket, self.key, self.offsets[1] + docs * size, self.offsets[1] + (docs + 1) * size)
        recs = np.frombuffer(b"".join(spans), dtype=self.dtype)
        t0 = self.offsets[2] + recs["t_off"].astype(np.int64) * 2
        s0 = self.offsets[3] + recs["s_off"].astype(np.int64)
        t_spans = _read_spans(bucket, self.key, t0, t0 + recs["t_n"].astype(np.int64) * 2)
        s_spans = _read_spans(bucket, self.key, s0, s0 + recs["s_n"].astype(np.int64))
        terms = [np.frombuffer(b, dtype="<u2").astype(np.uint16) for b in t_spans]
        return recs, terms, [np.frombuffer(b, dtype=np.uint8) for b in s_spans]


#: Commit markers kept behind the last one (`DedupeIndex.delete_expired`): a save whose `open` saw a marker
#: older than these could take a deleted number again; dedupe stages last minutes, runs save once an hour.
COMMITS_KEPT = 256


def last_commit(bucket: Bucket, seg_prefix: str) -> int:
    """The number of the index's last commit marker (0 when none)."""
    numbers = [n for k in bucket.list(dedupe_commit_prefix(seg_prefix)) if (n := dedupe_commit_of(k, seg_prefix))]
    return max(numbers, default=0)


#: Rewrite band keys held by more rows than this are not followed into a segment (`pipeline.stages.dedupe` too).
REWRITE_BUCKET = 32


class KeyQuery:
    """The keys one `DedupeIndex.fetch` asks about, prepared once for all segments: sorted unique keys and,
    per key, a bit per kind (`KINDS`) it is asked as."""

    def __init__(self, asked: dict[int, np.ndarray]) -> None:
        parts = [np.asarray(v, dtype=np.uint64).ravel() for v in asked.values()]
        self.keys = np.unique(np.concatenate(parts)) if parts else np.zeros(0, dtype=np.uint64)
        self.kinds = np.zeros(len(self.keys), dtype=np.uint8)
        for kind, want in zip(asked, parts):
            self.kinds[np.searchsorted(self.keys, want)] |= np.uint8(1 << kind)

    def __len__(self) -> int:
        return len(self.keys)

    def rows(self, qi: np.ndarray, keys: np.ndarray, refs: np.ndarray) -> np.ndarray:
        """Row numbers (sorted, unique) of entries (keys, refs), entry i holding asked key `self.keys[qi[i]]`,
        whose kind is one that key is asked as.

        The entries must be whole key runs (every entry of a key they include): the count of a rewrite
        key's entries decides whether it is followed. The ranged reads and the cache both use this.
        """
        kind = (refs >> np.uint32(30)).astype(np.uint8)
        hit = ((self.kinds[qi] >> kind) & np.uint8(1)).astype(bool)
        rw = hit & (kind == KINDS["rewrite"])
        if rw.any():  # over-full rewrite buckets say little: not followed
            u, inv, cnt = np.unique(keys[rw], return_inverse=True, return_counts=True)
            hit[np.flatnonzero(rw)[cnt[inv] > REWRITE_BUCKET]] = False
        return np.unique((refs[hit] & np.uint32(_DOC_MASK)).astype(np.int64))


# --------------------------------------------------------------------------- worker-local key cache

#: Environment variable naming the worker-local cache folder (default ~/.cache/news-ingest; "off" or empty: none).
CACHE_ENV = "NEWS_INGEST_CACHE_DIR"
_CACHE_MAGIC = b"DDIXKEY1"
#: Cache file header: magic, entry count, reserved (keys column, then refs column, follow).
_CACHE_HEAD = 32
#: Temp files of downloads older than this (seconds) were left by a crashed process: evicted.
_TMP_MAX_AGE = 3600
#: What the key cache did in this process (benchmarks report it).
CACHE_STATS = {"hits": 0, "downloads": 0, "download_bytes": 0, "stored": 0, "replaced": 0, "evicted": 0}


def cache_root() -> Path | None:
    """The key cache's folder (`$NEWS_INGEST_CACHE_DIR/dedupe`), or None when the cache is off."""
    raw = os.environ.get(CACHE_ENV)
    if raw is None:
        try:
            return Path.home() / ".cache" / "news-ingest" / "dedupe"
        except RuntimeError:  # no HOME and no passwd entry: no default folder
            return None
    if raw.strip().lower() in ("", "off"):
        return None
    return Path(raw).expanduser() / "dedupe"


def _digest(*parts: str) -> str:
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:32]


class KeyCache:
    """Worker-local copies of segments' key sections, so a run probes its keys without reading them from S3.

    Safe without shared state because segments are immutable: a file is named by a hash of (endpoint,
    bucket, segment key, ETag as listed), so a segment written again at the same key (another ETag) never
    reads a stale file. A file holds the sorted entries as two columns (keys u64, refs u32) after a
    header; it is written to a temp file and renamed into place (no torn file, even with two processes
    downloading the same segment), and checked on open (size, magic, count, the footer's block keys):
    a wrong file is downloaded again. The bucket stays the truth: deleting the folder is always safe.
    """

    def __init__(self, root: Path, bucket: Bucket, seg_prefix: str) -> None:
        self.bucket = bucket
        self.ident = (bucket.settings.endpoint_url or "aws", bucket.name)
        self.folder = root / _digest(*self.ident, seg_prefix)
        self._checked: set[str] = set()  # file names validated by this process

    @classmethod
    def for_bucket(cls, bucket: Bucket, seg_prefix: str) -> KeyCache | None:
        root = cache_root()
        return None if root is None else cls(root, bucket, seg_prefix)

    def path(self, seg: Segment) -> Path | None:
        """The cache file of a segment; None when its ETag is unknown (then it is never cached)."""
        if not seg.etag:
            return None
        return self.folder / f"{_digest(*self.ident, seg.key, seg.etag)}.keys"

    def _valid(self, path: Path, seg: Segment) -> bool:
        n = seg.n_entries
        try:
            if path.stat().st_size != _CACHE_HEAD + 12 * n:
                return False
            with path.open("rb") as fh:
                head = fh.read(_CACHE_HEAD)
                if head[:8] != _CACHE_MAGIC or int.from_bytes(head[8:16], "little") != n:
                    return False
                if not n:
                    return True
                block = int(seg.meta.get("block", SEGMENT_BLOCK))
                with mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as mm:
                    ok = bool(np.array_equal(np.frombuffer(mm, "<u8", n, _CACHE_HEAD)[::block], seg.block_keys))
                return ok
        except (OSError, ValueError):
            return False

    def ensure(self, seg: Segment) -> Path | None:
        """The segment's checked cache file, downloaded first when missing or wrong (None: not cacheable)."""
        path = self.path(seg)
        if path is None:
            return None
        if path.name in self._checked and path.exists():
            return path
        if self._valid(path, seg):
            with _lock:
                CACHE_STATS["hits"] += 1
        else:
            if path.exists():
                with _lock:
                    CACHE_STATS["replaced"] += 1
                log.warning("dedupe key cache: %s does not match segment %s: downloading it again", path, seg.key)
            self._download(seg, path)
        self._checked.add(path.name)
        return path

    def _tmp(self, path: Path) -> Path:
        self.folder.mkdir(parents=True, exist_ok=True)
        return path.with_name(f".{path.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp")

    @staticmethod
    def _header(n: int) -> bytes:
        return _CACHE_MAGIC + n.to_bytes(8, "little") + bytes(_CACHE_HEAD - 16)

    def _download(self, seg: Segment, path: Path) -> None:
        """One ranged GET of the key section, streamed to disk as two columns (never whole in memory)."""
        n, start = seg.n_entries, int(seg.offsets[0])
        tmp = self._tmp(path)
        try:
            with tmp.open("wb") as fh:
                fh.truncate(_CACHE_HEAD + 12 * n)
                got, nbytes, rest = 0, 0, b""
                if n:
                    rng = f"bytes={start}-{start + 12 * n - 1}"
                    try:
                        resp = self.bucket.client.get_object(Bucket=self.bucket.name, Key=seg.key, Range=rng)
                        for chunk in resp["Body"].iter_chunks(1 << 20):
                            nbytes += len(chunk)
                            buf = rest + chunk
                            m = len(buf) // 12
                            ent = np.frombuffer(buf, dtype=_ENTRY, count=m)
                            fh.seek(_CACHE_HEAD + 8 * got)
                            fh.write(ent["key"].tobytes())
                            fh.seek(_CACHE_HEAD + 8 * n + 4 * got)
                            fh.write(ent["ref"].tobytes())
                            got, rest = got + m, buf[12 * m :]
                    except (ClientError, BotoCoreError) as exc:
                        raise describe_error(exc, self.bucket.settings, f"get {seg.key} {rng}") from None
                    finally:
                        with _lock:
                            FETCHED["requests"] += 1
                            FETCHED["bytes"] += nbytes
                            CACHE_STATS["download_bytes"] += nbytes
                if got != n or rest:
                    raise StorageError(f"dedupe key cache: {seg.key}: read {nbytes} bytes of its key section")
                fh.seek(0)
                fh.write(self._header(n))
            os.replace(tmp, path)
            with _lock:
                CACHE_STATS["downloads"] += 1
        finally:
            tmp.unlink(missing_ok=True)

    def store(self, seg: Segment, body: bytes) -> None:
        """Put a segment this process just wrote into the cache, from its bytes in hand."""
        path = self.path(seg)
        if path is None:
            return
        entries = np.frombuffer(body, dtype=_ENTRY, count=seg.n_entries, offset=int(seg.offsets[0]))
        tmp: Path | None = None
        try:
            tmp = self._tmp(path)
            with tmp.open("wb") as fh:
                fh.write(self._header(seg.n_entries))
                fh.write(entries["key"].astype("<u8").tobytes())
                fh.write(entries["ref"].astype("<u4").tobytes())
            os.replace(tmp, path)
            with _lock:
                CACHE_STATS["stored"] += 1
        except OSError as exc:  # the segment is committed; a cache that cannot be written is only slower
            log.warning("dedupe key cache: cannot write %s: %s", path, exc)
        finally:
            if tmp is not None:
                tmp.unlink(missing_ok=True)

    def prefetch(self, segments: Sequence[Segment]) -> None:
        """Download the missing cache files of `segments` in parallel (errors are left to `probe`)."""

        def one(seg: Segment) -> None:
            try:
                self.ensure(seg)
            except (StorageError, OSError):
                pass  # e.g. compacted since listed: `probe` meets it again and handles it

        # Only absent files: checking present ones maps them, and one mapped segment at a time bounds RSS.
        missing = [s for s in segments if (p := self.path(s)) is not None and not p.exists()]
        if len(missing) > 1:
            list(_pool().map(one, missing))

    def probe(self, seg: Segment, query: KeyQuery) -> np.ndarray | None:
        """`Segment.probe` from the cache file (None: not cacheable, read by range instead).

        The two columns are mapped, searched with the run's sorted keys, and unmapped again, so at most
        one segment's pages are resident at a time.
        """
        path = self.ensure(seg)
        if path is None:
            return None
        n, q = seg.n_entries, query.keys
        if not n or not len(q):
            return np.zeros(0, dtype=np.int64)
        try:
            fh = path.open("rb")
        except FileNotFoundError:  # evicted by another process since checked: fetch it again
            self._checked.discard(path.name)
            return self.probe(seg, query)
        # Unmapped on leaving the block (its pages count in RSS while mapped); only copies leave it.
        with fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as mm:
            keys = np.frombuffer(mm, "<u8", n, _CACHE_HEAD)
            lo = np.searchsorted(keys, q, "left")
            # Most asked keys are absent: the end of a key's run is searched for present ones only.
            found = np.flatnonzero(keys[np.minimum(lo, n - 1)] == q)
            lo = lo[found]
            cnt = np.searchsorted(keys, q[found], "right") - lo
            at = np.repeat(lo, cnt) + (np.arange(int(cnt.sum())) - np.repeat(np.cumsum(cnt) - cnt, cnt))
            k = keys[at]
            r = np.frombuffer(mm, "<u4", n, _CACHE_HEAD + 8 * n)[at]
            del keys  # the view must go before the map closes
        return query.rows(np.repeat(found, cnt), k, r)

    def probe_many(self, segments: dict[int, Segment], query: KeyQuery) -> dict[int, np.ndarray]:
        """`probe` of many segments (by number), two at a time: numpy's search runs outside the GIL, and
        two mapped segments still bound RSS. Segments it cannot answer for are left out (probed again one
        by one, where errors are handled)."""

        def one(item: tuple[int, Segment]) -> tuple[int, np.ndarray | None]:
            try:
                return item[0], self.probe(item[1], query)
            except (StorageError, OSError):
                return item[0], None

        got = _probe_pool().map(one, segments.items())
        return {i: docs for i, docs in got if docs is not None}

    def evict(self, live: Sequence[Segment]) -> list[str]:
        """Delete the cache files of this bucket's segments not in `live` (merged away, expired); their names.

        Only this bucket's folder is listed (one entry per cached segment). Another process may still be
        reading an evicted file: it stays readable while open, and a later miss downloads it again.
        """
        keep = {p.name for s in live if (p := self.path(s)) is not None}
        gone = []
        try:
            entries = list(os.scandir(self.folder))
        except FileNotFoundError:
            return []
        now = time.time()
        for e in entries:
            stale = e.name.endswith(".keys") and e.name not in keep
            try:
                stale = stale or (e.name.endswith(".tmp") and now - e.stat().st_mtime > _TMP_MAX_AGE)
                if stale:
                    os.unlink(e.path)
                    gone.append(e.name)
            except FileNotFoundError:
                continue  # another process evicted it first
        self._checked -= set(gone)
        CACHE_STATS["evicted"] += len(gone)
        return gone


# --------------------------------------------------------------------------- the window's live segments, compaction


def _day_name(day: int) -> str:
    return date.fromordinal(_EPOCH.toordinal() + day).isoformat()


def list_segments(bucket: Bucket, seg_prefix: str, day: str | None = None) -> list[tuple[str, int, int, str]]:
    """(key, day number, seq, ETag) of the segments under `seg_prefix` (of one `day` when given), sorted.

    The ETag (an MD5 of the body) tells a segment apart from another written later at the same key.
    """
    prefix = f"{seg_prefix}day={day}/" if day else seg_prefix
    out = []
    try:
        for page in bucket.client.get_paginator("list_objects_v2").paginate(Bucket=bucket.name, Prefix=prefix):
            for obj in page.get("Contents", []):
                got = dedupe_segment_of(obj["Key"], seg_prefix)
                if got is not None:
                    out.append((obj["Key"], day_number(got[0]), got[1], obj.get("ETag", "").strip('"')))
    except (ClientError, BotoCoreError) as exc:
        raise describe_error(exc, bucket.settings, f"list {prefix}") from None
    return sorted(out, key=lambda x: (x[1], x[2]))


def _open_day(bucket: Bucket, listed: list[tuple[str, int, int, str]]) -> tuple[list[Segment], list[str]]:
    """(live segments, keys of covered ones) of one day's listing.

    Newest first: a merged segment's footer names the (seq, ETag) it `covers`, and those are skipped
    without reading their footers. A segment at a covered seq with another ETag was written after the
    merge deleted the one it covered: it is live.
    """
    live: list[Segment] = []
    stale: list[str] = []
    covered: set[tuple[int, str]] = set()
    for key, day, seq, etag in sorted(listed, key=lambda x: -x[2]):
        if (seq, etag) in covered:
            stale.append(key)
            continue
        seg = Segment.open(bucket, key, day, seq)
        seg.etag = etag
        covered.update((int(q), str(e)) for q, e in seg.meta.get("covers", ()))
        live.append(seg)
    return live[::-1], stale


def open_window(bucket: Bucket, seg_prefix: str, first_day: int, last_day: int) -> list[Segment]:
    """The live segments of days `first_day`..`last_day` (day numbers), in (day, seq) order.

    A segment deleted between the listing and its footer read was compacted: the listing is read again.
    """
    for attempt in range(4):
        listed = [x for x in list_segments(bucket, seg_prefix) if first_day <= x[1] <= last_day]
        days: dict[int, list] = {}
        for item in listed:
            days.setdefault(item[1], []).append(item)
        try:
            got = list(_pool().map(lambda d: _open_day(bucket, d)[0], days.values()))
        except StorageError as exc:
            if exc.code not in _MISSING or attempt == 3:
                raise
            continue
        return [seg for segs in got for seg in segs]
    raise AssertionError("unreachable")


def _decode(data: bytes, key: str) -> tuple[dict, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
    """(meta, entries, rows, term ids, sentence lengths, origin) of a whole segment object."""
    if data[-8:] != SEGMENT_MAGIC:
        raise ValueError(f"{key}: not a dedupe index segment")
    n_blocks_b, n_meta = np.frombuffer(data[-24:-8], dtype="<u8").tolist()
    meta = json.loads(data[len(data) - 24 - n_meta : -24])
    o = meta["offsets"]
    entries = np.frombuffer(data[o[0] : o[1]], dtype=_ENTRY)
    recs = np.frombuffer(data[o[1] : o[2]], dtype=_doc_dtype(int(meta["num_perm"]), int(meta["id_width"])))
    terms = np.frombuffer(data[o[2] : o[3]], dtype="<u2")
    sents = np.frombuffer(data[o[3] : o[4]], dtype="u1")
    origin = np.frombuffer(data[o[4] : o[5]], dtype=_ORIGIN) if meta.get("origin") else None
    return meta, entries, recs, terms, sents, origin


_CONFIG_FIELDS = ("num_perm", "shingle_size", "seed", "scheme", "rewrite")


def merge_segments(inputs: list[tuple[int, str, bytes]]) -> bytes:
    """One segment holding the rows of `inputs` ((seq, ETag, body) of one day, any order) that readers see.

    Rows of a run that a later input `replaces` are dropped (a reader would skip them); the rest keep
    their order, keys and bytes (band keys are copied, not recomputed). The meta `covers` the inputs'
    (seq, ETag) and what they covered; `replaces` is their union (it still voids the runs' rows of
    earlier days); an `origin` column keeps each row's first (seq, row).
    """
    inputs = sorted(inputs, key=lambda x: x[0])
    decoded = [_decode(body, f"seq={seq}") for seq, _, body in inputs]
    base = decoded[-1][0]
    for meta, *_ in decoded:
        for field in _CONFIG_FIELDS:
            if meta.get(field) != base.get(field):
                raise ValueError(f"dedupe index segments differ in {field}: {meta.get(field)!r} != {base.get(field)!r}")
    last_replace: dict[str, int] = {}
    for (seq, _, _), (meta, *_) in zip(inputs, decoded):
        for run in meta.get("replaces", ()):
            last_replace[run] = seq
    runs: list[str] = []
    run_ix: dict[str, int] = {}
    width = max(int(m["id_width"]) for m, *_ in decoded)
    dtype = _doc_dtype(int(base["num_perm"]), width)
    keys, refs, recs_out, terms_out, sents_out, origin_out = [], [], [], [], [], []
    n = 0
    for (seq, _, _), (meta, entries, recs, terms, sents, origin) in zip(inputs, decoded):
        seg_runs = meta["runs"]
        for r in seg_runs:
            if r not in run_ix:
                run_ix[r] = len(runs)
                runs.append(r)
        keep = np.array([last_replace.get(seg_runs[r], -1) <= seq for r in recs["run"].tolist()], dtype=bool)
        new_doc = np.full(len(recs), -1, dtype=np.int64)
        new_doc[keep] = n + np.arange(int(keep.sum()))
        doc = (entries["ref"] & np.uint32(_DOC_MASK)).astype(np.int64)
        ok = keep[doc]
        keys.append(entries["key"][ok])
        refs.append((entries["ref"][ok] & ~np.uint32(_DOC_MASK)) | new_doc[doc[ok]].astype(np.uint32))
        kept = recs[keep]
        out = np.zeros(len(kept), dtype=dtype)
        for f in dtype.names or ():
            out[f] = kept[f]
        out["run"] = np.array([run_ix[seg_runs[r]] for r in kept["run"].tolist()], dtype=np.uint32)
        t_off, t_n = kept["t_off"].astype(np.int64), kept["t_n"].astype(np.int64)
        s_off, s_n = kept["s_off"].astype(np.int64), kept["s_n"].astype(np.int64)
        terms_out.append(terms[np.repeat(t_off - (np.cumsum(t_n) - t_n), t_n) + np.arange(int(t_n.sum()))])
        sents_out.append(sents[np.repeat(s_off - (np.cumsum(s_n) - s_n), s_n) + np.arange(int(s_n.sum()))])
        recs_out.append(out)
        o = np.zeros(len(recs), dtype=_ORIGIN) if origin is None else origin.copy()
        if origin is None:
            o["seq"], o["doc"] = seq, np.arange(len(recs))
        origin_out.append(o[keep])
        n += len(kept)
    recs_all = np.concatenate(recs_out) if recs_out else np.zeros(0, dtype=dtype)
    recs_all["t_off"] = np.cumsum(recs_all["t_n"], dtype=np.int64) - recs_all["t_n"]
    recs_all["s_off"] = np.cumsum(recs_all["s_n"], dtype=np.int64) - recs_all["s_n"]
    k, r = np.concatenate(keys), np.concatenate(refs)
    order = np.lexsort((r, k))
    entries = np.empty(len(k), dtype=_ENTRY)
    entries["key"], entries["ref"] = k[order], r[order]
    parts = [
        entries.tobytes(),
        recs_all.tobytes(),
        np.concatenate(terms_out).astype("<u2").tobytes(),
        np.concatenate(sents_out).astype("u1").tobytes(),
        np.concatenate(origin_out).tobytes(),
    ]
    covers = {(seq, etag) for seq, etag, _ in inputs}
    for meta, *_ in decoded:
        covers.update((int(q), str(e)) for q, e in meta.get("covers", ()))
    meta = {field: base[field] for field in ("format", *_CONFIG_FIELDS)}
    meta.update(
        runs=runs,
        replaces=sorted({r for m, *_ in decoded for r in m.get("replaces", ())}),
        n_docs=n,
        n_entries=len(k),
        id_width=width,
        covers=sorted(covers),
        origin=True,
        block=SEGMENT_BLOCK,
        offsets=np.cumsum([0] + [len(p) for p in parts]).tolist(),
    )
    blocks = entries["key"][::SEGMENT_BLOCK].astype("<u8").tobytes()
    meta_b = json.dumps(meta).encode()
    tail = np.array([len(blocks), len(meta_b)], dtype="<u8").tobytes() + SEGMENT_MAGIC
    return b"".join(parts) + blocks + meta_b + tail


class SegmentCompaction(BaseModel):
    """What `compact_segments` did to one day."""

    day: str
    #: The merged segment written ("" when there was nothing to merge).
    merged: str = ""
    #: Segments merged into it.
    inputs: int = 0
    #: Keys deleted: the merged inputs, and covered segments an earlier compaction left behind.
    deleted: list[str] = Field(default_factory=list)
    rows: int = 0


def compact_segments(
    bucket: Bucket, day: str, *, key: str = DEDUPE_INDEX_PREFIX, attempts: int = 5
) -> SegmentCompaction:
    """Merge a day's live segments into one (`merge_segments`) at the day's next seq, then delete the inputs.

    The merge is created with If-None-Match: a commit that took that seq first makes it start over, and
    a commit after it gets a higher seq, so no commit is lost. Readers see the inputs or the merge,
    never both (its `covers`), never neither (the inputs go only after the merge exists); a reader
    that opened the inputs before they went reads on in the merge (`DedupeIndex._redirect`).
    """
    day = day[:10]
    seg_prefix = dedupe_segment_prefix(key)
    for _ in range(attempts):
        listed = list_segments(bucket, seg_prefix, day)
        try:
            live, stale = _open_day(bucket, listed)
        except StorageError as exc:
            if exc.code not in _MISSING:
                raise
            continue  # a concurrent compaction deleted what was listed: list again
        if len(live) <= 1:
            if stale:
                bucket.delete(stale)
            return SegmentCompaction(day=day, deleted=stale)
        seq = max(x[2] for x in listed) + 1
        bodies = list(_pool().map(lambda s: bucket.get(s.key), live))
        body = merge_segments([(s.seq, s.etag, b) for s, b in zip(live, bodies)])
        merged = dedupe_segment_key(day, seq, seg_prefix)
        try:
            bucket.put(merged, body, if_none_match="*")
        except PreconditionFailed:
            continue  # a commit took the seq: merge it too
        gone = [s.key for s in live] + stale
        bucket.delete(gone)
        n = int(_decode(body, merged)[0]["n_docs"])
        log.info("dedupe index %s: merged %s segments (%s rows) into %s", day, len(live), n, merged)
        return SegmentCompaction(day=day, merged=merged, inputs=len(live), deleted=gone, rows=n)
    raise PreconditionFailed(f"dedupe index {day}: compaction gave up after {attempts} conflicting commits")


__all__ = [
    "SegmentCompaction",
    "DedupeConfig",
    "CACHE_ENV",
    "DedupeIndex",
    "KeyCache",
    "KeyQuery",
    "Segment",
    "encode_segment",
    "KeyRows",
    "PreconditionFailed",
    "Ragged",
    "band_keys",
    "cache_root",
    "compact_segments",
    "list_segments",
    "merge_segments",
    "open_window",
    "day_number",
    "earlier_equal",
    "lsh_params",
    "shingle_hashes",
    "signatures",
]
