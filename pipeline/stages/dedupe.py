"""Deduplication: same canonical URL, same normalised text, near-duplicate and rewritten text; updates become versions.

Four levels, in order, recorded in `dup_kind`:

1. ``url``: the canonical URL was seen before with the same content hash (a re-fetch).
   The same URL with *changed* text is not a duplicate but a new version of that
   article: ``version`` = previous + 1, ``supersedes`` = the previous version's id,
   same ``cluster_id``, ``dup_kind`` null.
2. ``exact``: the normalised text (`pipeline.text.hashing.content_hash`) was seen before.
3. ``near``: MinHash LSH over word shingles finds an earlier text whose estimated
   Jaccard similarity is at least ``DedupeConfig.threshold``.
4. ``rewrite`` (with ``DedupeConfig.rewrite``): a spun or machine-translated copy.
   Candidates come from a MinHash LSH over the text's stemmed content terms (names
   spelt one way, numbers written one way: `pipeline.text.rewrite`) and from the near
   level's band matches that fell short of its threshold; a candidate is confirmed by
   sentence alignment (`pipeline.text.rewrite.align`): at least half of *both* texts'
   terms lie in sentences that align. A candidate with only a few aligned sentences
   is a *related* story (a follow-up, a live blog's other update): not a duplicate,
   but it shares the earlier article's ``story_id``.

Every article gets ``cluster_id`` (the article_id of the cluster's first-seen
member), ``duplicate_of`` (that same id for duplicates, null for the first one and
for new versions), ``dup_kind``, ``dup_similarity`` (1.0 for url and exact, the
estimated shingle Jaccard for near, the smaller aligned coverage for rewrite),
``story_id`` (groups copies *and* related stories: the story_id of the earlier
article it copies or relates to, else its own article_id) and ``dup_evidence``
(JSON text for rewrite and related verdicts: which sentences align, with their
cosine, which names and numbers and quotes match). `dedupe_records` drops nothing;
`dedupe_stage` drops unchanged re-fetches of a URL (``url`` duplicates: a revisit
that found the same text adds no row) and logs how many.

Across runs, `dedupe_stage` loads the persistent index (`pipeline.stages.dedupe_index`,
``state/dedupe/v1/``), forgets what this same run id added before (re-runs are
idempotent), dedupes, and saves with S3 conditional writes, redoing the whole
step against the fresh index when another writer won the race. It streams: the input is
read from the bucket in `BATCH`-article batches (gzip decoded as it arrives) and each deduped
batch is written on to a local gzip file uploaded at the end, so memory holds one batch of
articles plus the index (signatures, keys and ids), not the run's texts.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import logging
import random
import tempfile
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from typing import IO

import numpy as np

from pipeline.core.bucket import Bucket, PreconditionFailed, StorageError
from pipeline.core.context import RunContext
from pipeline.core.layout import deduped_key
from pipeline.core.layout import run_date as run_date_of
from pipeline.stages.dedupe_index import (
    REWRITE_BANDS,
    REWRITE_MAX_TERMS,
    REWRITE_PERM,
    REWRITE_ROWS,
    REWRITE_SEED,
    DedupeConfig,
    DedupeIndex,
    band_keys,
    day_number,
    earlier_equal,
    key64,
    shingles_of,
    signatures_flat,
)
from pipeline.text import rewrite as rw
from pipeline.text.hashing import article_id as make_article_id
from pipeline.text.hashing import normalised_bytes
from pipeline.text.urls import canonicalize

log = logging.getLogger(__name__)

#: Documents handled together: numpy works on the whole batch at once. At 512 the ~60 numpy
#: calls per batch cost little per document (profile in benchmarks/bench_dedupe.py runs) and
#: the batch's byte buffers stay ~2 MB (512 articles of ~3.7 kB).
BATCH = 512
#: Attempts at saving the index when other writers keep winning the conditional write
#: (the four-writer test needs at most 3; runs of one day are hourly, so 8 is ample).
SAVE_ATTEMPTS = 8
#: Rewrite candidates verified per document, most similar term sets first (index rows and earlier batch
#: documents together). On the rewrite benchmark 2 and 3 find the same copies (recall 0.955) and 2 merges
#: fewer negatives (precision 0.995 against 0.993); 2 is ~10% faster on the speed corpus.
REWRITE_CANDIDATES = 2
#: Candidates whose term sets' estimated Jaccard is below this are not verified: rewrites replacing
#: 40% of the words keep 0.26 or more (benchmarks/bench_dedupe.py); 48 values estimate it within ~0.07.
REWRITE_MIN_JACCARD = 0.17
#: Band keys of the rewrite LSH held by more rows than this are not used to find candidates: such a
#: band (two common terms) says little about which story a text is, and would make candidates quadratic.
REWRITE_BUCKET = 32
#: A rewrite verdict this strong ends the search among a document's candidates.
REWRITE_SURE = 0.7

__all__ = ["DedupeConfig", "DedupeIndex", "dedupe_records", "dedupe_stage", "iter_dedupe"]


def _canonical(record: dict) -> str:
    url = record.get("canonical_url") or record.get("url")
    if not url or not isinstance(url, str):
        raise ValueError("article has no url")
    if record.get("canonical_url"):
        return url  # extract already canonicalised it (rel=canonical or pipeline.text.urls)
    return canonicalize(url)


def dedupe_records(
    records: Iterable[dict],
    *,
    config: DedupeConfig | None = None,
    index: DedupeIndex | None = None,
    run_date: str | None = None,
    run_id: str | None = None,
) -> list[dict]:
    """The records (copies, same order) with cluster_id, duplicate_of, dup_kind, version, supersedes,
    story_id, dup_similarity and dup_evidence added.

    Records need `url` (or `canonical_url`) and `text`; `content_hash` and `article_id`
    are computed when missing. With `index`, earlier articles (other runs) count as
    first-seen and this batch is added to it (rows tagged with `run_date`/`run_id`).
    """
    return [
        r for batch in iter_dedupe(records, config=config, index=index, run_date=run_date, run_id=run_id) for r in batch
    ]


def iter_dedupe(
    records: Iterable[dict],
    *,
    config: DedupeConfig | None = None,
    index: DedupeIndex | None = None,
    run_date: str | None = None,
    run_id: str | None = None,
) -> Iterator[list[dict]]:
    """`dedupe_records` batch by batch: reads `records` lazily and yields each deduped batch of up to
    `BATCH` records, so only one batch of articles is held at a time (the index keeps the rest)."""
    if index is None:
        index = DedupeIndex(config)
    elif config is not None and config != index.config:
        raise ValueError("config differs from the index's config; pass one or the other")
    cfg = index.config
    day = day_number(run_date)
    run = run_id or ""
    batch: list[dict] = []
    for record in records:
        batch.append(dict(record))
        if len(batch) >= BATCH:
            yield _dedupe_batch(batch, index, cfg, day, run)
            batch = []
    if batch:
        yield _dedupe_batch(batch, index, cfg, day, run)
    index.trim()


def _later_to_earlier(first: np.ndarray, second: np.ndarray) -> dict[int, list[int]]:
    """{later doc: [earlier docs, ascending]} from (earlier, later) pairs."""
    out: dict[int, list[int]] = {}
    for i, j in sorted(zip(first.tolist(), second.tolist())):
        out.setdefault(j, []).append(i)
    return out


class _Rewrite:
    """The batch's rewrite features: per document term ids and sentence lengths, MinHash, band keys."""

    def __init__(self, texts: list[str]) -> None:
        feats = [rw.features(t, max_terms=REWRITE_MAX_TERMS) for t in texts]
        self.terms = [f.terms for f in feats]
        self.lens = [f.lens for f in feats]
        self.where = [f.where for f in feats]
        sets = [np.unique(t).astype(np.uint32) if len(t) else np.zeros(1, dtype=np.uint32) for t in self.terms]
        counts = np.fromiter(map(len, sets), dtype=np.int64, count=len(sets))
        sig = signatures_flat(np.concatenate(sets), counts, REWRITE_PERM, REWRITE_SEED)
        self.sig = (sig & 0xFFFF).astype(np.uint16)
        self.bkeys = band_keys(self.sig, REWRITE_BANDS, REWRITE_ROWS)
        self.has = np.array([len(t) > 0 for t in self.terms], dtype=bool)


def _top_candidates(
    parts: list[tuple[np.ndarray, np.ndarray]], sig: np.ndarray, other_sig: np.ndarray
) -> dict[int, list[tuple[int, int]]]:
    """{doc: up to REWRITE_CANDIDATES (matching MinHash values, other)}, from (doc, other) pair arrays: those
    whose term-set MinHash estimates a Jaccard of at least REWRITE_MIN_JACCARD, most similar first, then the earliest."""
    parts = [p for p in parts if len(p[0])]
    if not parts:
        return {}
    key = np.unique(np.concatenate([d.astype(np.int64) << 32 | o.astype(np.int64) for d, o in parts]))
    doc, other = key >> 32, key & 0xFFFFFFFF
    hits = np.count_nonzero(sig[doc] == other_sig[other], axis=1)
    ok = hits >= REWRITE_MIN_JACCARD * REWRITE_PERM
    doc, other, hits = doc[ok], other[ok], hits[ok]
    order = np.lexsort((other, -hits, doc))
    doc, other, hits = doc[order], other[order], hits[order]
    first = np.searchsorted(doc, doc, "left")
    keep = (np.arange(len(doc)) - first) < REWRITE_CANDIDATES
    out: dict[int, list[tuple[int, int]]] = {}
    for d, o, h in zip(doc[keep].tolist(), other[keep].tolist(), hits[keep].tolist()):
        out.setdefault(d, []).append((h, o))
    return out


def _dedupe_batch(batch: list[dict], index: DedupeIndex, cfg: DedupeConfig, day: int, run: str) -> list[dict]:
    n = len(batch)
    urls: list[str] = []
    norms: list[bytes] = []
    for rec in batch:
        url = _canonical(rec)
        text = rec.get("text")
        if not isinstance(text, str):
            raise ValueError(f"article {url} has no text")
        if rec.get("content_hash"):
            norm = normalised_bytes(text, collapse=False)  # the clean stage hashed it already
        else:
            norm = normalised_bytes(text)
            # Same as pipeline.text.hashing.content_hash(text), without normalising twice.
            rec["content_hash"] = hashlib.sha256(norm).hexdigest()
        if not rec.get("article_id"):
            rec["article_id"] = make_article_id(url, rec["content_hash"])
        urls.append(url)
        norms.append(norm)
    flat, counts = shingles_of(norms, cfg.shingle_size)
    # b-bit MinHash: the low 16 bits of each value are kept (and compared) everywhere.
    sig16 = (signatures_flat(flat, counts, cfg.num_perm, cfg.seed) & 0xFFFF).astype(np.uint16)
    bkeys = index.band_keys(sig16)
    ukeys = np.fromiter((key64(u) for u in urls), dtype=np.uint64, count=n)
    ckeys = np.fromiter((key64(r["content_hash"]) for r in batch), dtype=np.uint64, count=n)
    rwf = _Rewrite([r["text"] for r in batch]) if cfg.rewrite else None
    # A lazily opened index reads the stored rows these keys can match (nothing for an in-memory one).
    index.fetch(url=ukeys, content=ckeys, band=bkeys, rewrite=None if rwf is None else rwf.bkeys[rwf.has])
    url_map, content_map, band_map = index.lookups()
    docs = np.arange(n)
    need = cfg.threshold * cfg.num_perm  # matching signature values needed for a near-duplicate

    # Earlier runs / batches: latest row per URL, first row per content, best verified near row.
    g_url = np.full(n, -1, dtype=np.int64)
    qi, rows = url_map.query(ukeys)
    np.maximum.at(g_url, qi, rows)
    g_content = np.full(n, -1, dtype=np.int64)
    qi, rows = content_map.query(ckeys)
    if len(qi):
        first_row = np.full(n, np.iinfo(np.int64).max, dtype=np.int64)
        np.minimum.at(first_row, qi, rows)
        g_content = np.where(first_row == np.iinfo(np.int64).max, -1, first_row)
    g_near: dict[int, tuple[int, int]] = {}
    g_parts: list[tuple[np.ndarray, np.ndarray]] = []  # (doc, index row) hits: rewrite candidates
    qi, rows = band_map.query(bkeys.ravel())
    if len(qi):
        pairs = np.unique((qi // index.bands).astype(np.int64) << 32 | rows.astype(np.int64))
        pj, pr = pairs >> 32, pairs & 0xFFFFFFFF
        m = np.count_nonzero(sig16[pj] == index.sig[pr], axis=1)
        if rwf is not None:
            g_parts.append((pj[m < need], pr[m < need]))
        ok = m >= need
        pj, pr, m = pj[ok], pr[ok], m[ok]
        order = np.lexsort((pr, -m, pj))  # per doc: most similar first, then the earliest row
        pj, pr, m = pj[order], pr[order], m[order]
        best = np.ones(len(pj), dtype=bool)
        best[1:] = pj[1:] != pj[:-1]
        g_near = dict(zip(pj[best].tolist(), zip(pr[best].tolist(), m[best].tolist())))
    if rwf is not None:
        qi, rows = index.rewrite_lookup().query(rwf.bkeys.ravel(), max_per_key=REWRITE_BUCKET)
        g_parts.append((qi // REWRITE_BANDS, rows))
    g_rw = _top_candidates(g_parts, rwf.sig, index.rw_sig) if rwf is not None else {}

    # Earlier documents of this batch.
    # Depth 8 / 4: a document needs one earlier member of its URL / content / cluster, not all of them.
    b_url = _later_to_earlier(*earlier_equal(ukeys, docs, 8))
    b_content = _later_to_earlier(*earlier_equal(ckeys, docs, 8))
    b_near: dict[int, list[tuple[int, int]]] = {}
    b_parts: list[tuple[np.ndarray, np.ndarray]] = []  # (doc, earlier doc of the batch) hits
    bi, bj = earlier_equal(bkeys.ravel(), np.repeat(docs, index.bands), 4)
    if len(bi):
        pairs = np.unique(bj.astype(np.int64) << 32 | bi.astype(np.int64))
        pj, pi = pairs >> 32, pairs & 0xFFFFFFFF
        m = np.count_nonzero(sig16[pj] == sig16[pi], axis=1)
        for j, i, mm in zip(pj.tolist(), pi.tolist(), m.tolist()):
            if mm >= need:
                b_near.setdefault(j, []).append((mm, i))
        if rwf is not None:
            b_parts.append((pj[m < need], pi[m < need]))
    if rwf is not None:
        has = np.repeat(rwf.has, REWRITE_BANDS)
        bi, bj = earlier_equal(rwf.bkeys.ravel()[has], np.repeat(docs, REWRITE_BANDS)[has], 4)
        b_parts.append((bj, bi))
    b_rw = _top_candidates(b_parts, rwf.sig, rwf.sig) if rwf is not None else {}

    cluster: list[str] = [""] * n
    story: list[str] = [""] * n
    supersedes: list[str | None] = [None] * n
    version = np.ones(n, dtype=np.int32)
    added = np.zeros(n, dtype=bool)
    linked = np.ones(n, dtype=bool)
    for j, rec in enumerate(batch):
        aid = rec["article_id"]
        fields: dict = {
            "cluster_id": aid,
            "duplicate_of": None,
            "dup_kind": None,
            "version": 1,
            "supersedes": None,
            "story_id": aid,
            "dup_similarity": None,
            "dup_evidence": None,
        }
        # Latest version of this URL: this batch's rows are newer than the index's.
        # (cluster_id, article_id, version, supersedes, content key, story_id)
        prev: tuple[str | None, str | None, int, str | None, int, str | None] | None = None
        for i in reversed(b_url.get(j, ())):
            if added[i]:
                prev = (cluster[i], batch[i]["article_id"], int(version[i]), supersedes[i], int(ckeys[i]), story[i])
                break
        if prev is None and g_url[j] >= 0:
            r = int(g_url[j])
            prev = (
                index.get(r, "cluster_id"),
                index.get(r, "article_id"),
                int(index.version[r]),
                index.get(r, "supersedes"),
                int(index.content_key[r]),
                index.get(r, "story_id"),
            )
        if prev is not None and prev[4] == int(ckeys[j]):
            # Re-fetch of an article we already hold: same story, same version; nothing new to index.
            fields.update(
                cluster_id=prev[0],
                duplicate_of=prev[0],
                dup_kind="url",
                version=prev[2],
                supersedes=prev[3],
                story_id=prev[5] or prev[0],
                dup_similarity=1.0,
            )
            rec.update(fields)
            continue
        if prev is not None:
            # Same URL, changed text: a new version of the same article, not a duplicate.
            fields.update(cluster_id=prev[0], version=prev[2] + 1, supersedes=prev[1], story_id=prev[5] or prev[0])
        else:
            exact: tuple[str | None, str | None] | None = None
            if g_content[j] >= 0:
                r = int(g_content[j])
                exact = (index.get(r, "cluster_id"), index.get(r, "story_id"))
            if exact is None:
                exact = next(((cluster[i], story[i]) for i in b_content.get(j, ()) if added[i]), None)
            if exact is not None:
                fields.update(
                    cluster_id=exact[0],
                    duplicate_of=exact[0],
                    dup_kind="exact",
                    story_id=exact[1] or exact[0],
                    dup_similarity=1.0,
                )
                linked[j] = False  # its signature is in the band maps already
            else:
                near, near_story, score = None, None, -1
                if j in g_near:
                    r = g_near[j][0]
                    near, near_story, score = index.get(r, "cluster_id"), index.get(r, "story_id"), g_near[j][1]
                for mm, i in b_near.get(j, ()):
                    if added[i] and mm > score:  # ties go to the index row: it was seen first
                        near, near_story, score = cluster[i], story[i], mm
                if near is not None:
                    fields.update(
                        cluster_id=near,
                        duplicate_of=near,
                        dup_kind="near",
                        story_id=near_story or near,
                        dup_similarity=round(score / cfg.num_perm, 3),
                    )
                elif rwf is not None and rwf.has[j]:
                    fields.update(_rewrite_verdict(j, rec["text"], rwf, index, g_rw, b_rw, added, cluster, story))
        rec.update(fields)
        cluster[j] = fields["cluster_id"]
        story[j] = fields["story_id"]
        supersedes[j] = fields["supersedes"]
        version[j] = fields["version"]
        added[j] = True
    if added.any():
        pick = np.nonzero(added)[0]
        index.append(
            sig16=sig16[pick],
            bkeys=bkeys[pick],
            url_key=ukeys[pick],
            content_key=ckeys[pick],
            ids={
                "article_id": [batch[i]["article_id"] for i in pick],
                "cluster_id": [cluster[i] for i in pick],
                "supersedes": [supersedes[i] for i in pick],
                "story_id": [story[i] for i in pick],
            },
            version=version[pick],
            day=day,
            run_id=run,
            linked=linked[pick],
            rewrite=None
            if rwf is None
            else (
                rwf.sig[pick],
                rwf.bkeys[pick],
                [rwf.terms[i] if linked[i] else rwf.terms[i][:0] for i in pick],
                [rwf.lens[i] if linked[i] else rwf.lens[i][:0] for i in pick],
            ),
        )
    return batch


def _rewrite_verdict(
    j: int,
    text: str,
    rwf: _Rewrite,
    index: DedupeIndex,
    g_rw: dict[int, list[tuple[int, int]]],
    b_rw: dict[int, list[tuple[int, int]]],
    added: np.ndarray,
    cluster: list[str],
    story: list[str],
) -> dict:
    """Fields of document j after verifying its rewrite candidates: a rewrite, a related story, or nothing."""
    a_terms, a_lens = rwf.terms[j], rwf.lens[j]
    best: tuple[float, rw.Alignment, str, str] | None = None  # (score, alignment, cluster, story)
    related: tuple[int, rw.Alignment, str] | None = None

    def others():
        # The REWRITE_CANDIDATES most similar of index rows and earlier batch documents (index rows first on ties).
        ranked = [(-h, 0, r) for h, r in g_rw.get(j, ())] + [(-h, 1, i) for h, i in b_rw.get(j, ()) if added[i]]
        for _, from_batch, k in sorted(ranked)[:REWRITE_CANDIDATES]:
            if from_batch:
                if len(rwf.terms[k]):
                    yield rwf.terms[k], rwf.lens[k], cluster[k], story[k]
                continue
            t, s = index.rewrite_features(k)
            if len(t):
                yield t, s, index.get(k, "cluster_id"), index.get(k, "story_id")

    for t, s, cid, sid in others():
        al = rw.align(a_terms, a_lens, t, s)
        verdict = al.verdict()
        if verdict == "rewrite" and cid and (best is None or al.score > best[0]):
            best = (al.score, al, cid, sid or cid)
            if al.score >= REWRITE_SURE:
                break
        elif verdict == "related" and sid and (related is None or len(al.pairs) > related[0]):
            related = (len(al.pairs), al, sid)
    if best is not None:
        al = best[1]
        return {
            "cluster_id": best[2],
            "duplicate_of": best[2],
            "dup_kind": "rewrite",
            "story_id": best[3],
            "dup_similarity": round(al.score, 3),
            "dup_evidence": json.dumps(rw.evidence(text, rwf.where[j], al)),
        }
    if related is not None:
        al = related[1]
        ev = rw.evidence(text, rwf.where[j], al)
        return {"story_id": related[2], "dup_evidence": json.dumps({"related": True, **ev})}
    return {}


def _dedupe_to_file(
    bucket: Bucket, cleaned_key: str, index: DedupeIndex, day: str, run_id: str, out: IO[bytes]
) -> Counter:
    """Dedupe the streamed input against `index` into `out` (gzip JSON Lines, re-fetches dropped); the counts."""
    counts: Counter = Counter()
    with gzip.GzipFile(fileobj=out, mode="wb", compresslevel=1, mtime=0) as gz:
        for batch in iter_dedupe(bucket.iter_jsonl(cleaned_key), index=index, run_date=day, run_id=run_id):
            for r in batch:
                counts[r["dup_kind"] or "none"] += 1
                if r["dup_kind"] == "url":
                    continue
                counts["kept"] += 1
                counts["versions"] += r["version"] > 1
                counts["related"] += r["story_id"] != r["cluster_id"]
                gz.write(json.dumps(r, ensure_ascii=False, default=str).encode())
                gz.write(b"\n")
    return counts


def dedupe_stage(ctx: RunContext, cleaned_key: str, *, config: DedupeConfig | None = None) -> str:
    """Dedupe a run's cleaned articles against the persistent index; returns the deduped JSONL.gz key.

    Unchanged re-fetches (``dup_kind='url'``) are dropped from the output and counted in the log.
    Streams: one batch of articles in memory at a time (the module's docstring).

    Idempotent per run id: entries this run id added on an earlier attempt are
    ignored and replaced. Concurrent runs lose no entry: the index shard is written
    with If-Match / If-None-Match and the step is redone on a lost race.
    """
    cfg = config or DedupeConfig()
    bucket = ctx.bucket
    day = run_date_of(ctx.run_id)
    key = deduped_key(ctx.run_id)
    for attempt in range(1, SAVE_ATTEMPTS + 1):
        index = DedupeIndex.open(bucket, run_date=day, config=cfg)
        index.drop_run(ctx.run_id)
        with tempfile.NamedTemporaryFile(prefix="deduped-", suffix=".jsonl.gz") as tmp:
            counts = _dedupe_to_file(bucket, cleaned_key, index, day, ctx.run_id, tmp)
            tmp.flush()
            try:
                index.save(bucket)
            except PreconditionFailed:
                # Another writer saved the shard since we loaded it: redo against its entries.
                log.info("dedupe index changed during run %s (attempt %s), retrying", ctx.run_id, attempt)
                time.sleep(random.uniform(0.05, 0.2) * attempt)
                continue
            # An unchanged re-fetch (a revisit of a stored URL, or the same URL twice in this run) has the
            # article_id of the row already stored: storing it again would only repeat that row.
            bucket.put_file(key, tmp.name, content_type="application/x-ndjson")
        break
    else:
        raise StorageError(f"dedupe index: gave up after {SAVE_ATTEMPTS} conflicting concurrent writes")
    index.delete_expired(bucket)
    kinds = {k: counts[k] for k in ("url", "exact", "near", "rewrite")}
    log.info(
        "dedupe %s: %s articles kept, %s unchanged re-fetches dropped, %s new versions, duplicates %s, "
        "related to an earlier story %s; index %s rows",
        ctx.run_id,
        counts["kept"],
        kinds["url"],
        counts["versions"],
        kinds,
        counts["related"],
        len(index),
    )
    return key
