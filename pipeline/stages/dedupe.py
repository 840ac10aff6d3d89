"""Deduplication: same canonical URL, same normalised text, near-duplicate text; updates become versions.

Three levels, in order, recorded in `dup_kind`:

1. ``url``: the canonical URL was seen before with the same content hash (a re-fetch).
   The same URL with *changed* text is not a duplicate but a new version of that
   article: ``version`` = previous + 1, ``supersedes`` = the previous version's id,
   same ``cluster_id``, ``dup_kind`` null.
2. ``exact``: the normalised text (`pipeline.text.hashing.content_hash`) was seen before.
3. ``near``: MinHash LSH over word shingles finds an earlier text whose estimated
   Jaccard similarity is at least ``DedupeConfig.threshold``.

Every article gets ``cluster_id`` (the article_id of the cluster's first-seen
member), ``duplicate_of`` (that same id for duplicates, null for the first one and
for new versions) and ``dup_kind``. Nothing is dropped.

Across runs, `dedupe_stage` loads the persistent index (`pipeline.stages.dedupe_index`,
``state/dedupe/v1/``), forgets what this same run id added before (re-runs are
idempotent), dedupes, and saves with S3 conditional writes, redoing the whole
step against the fresh index when another writer won the race.
"""

from __future__ import annotations

import hashlib
import logging
import random
import time
from collections.abc import Iterable

import numpy as np

from pipeline.core.bucket import PreconditionFailed, StorageError
from pipeline.core.context import RunContext
from pipeline.core.layout import deduped_key
from pipeline.core.layout import run_date as run_date_of
from pipeline.stages.dedupe_index import (
    DedupeConfig,
    DedupeIndex,
    day_number,
    earlier_equal,
    key64,
    shingles_of,
    signatures_flat,
)
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

__all__ = ["DedupeConfig", "DedupeIndex", "dedupe_records", "dedupe_stage"]


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
    """The records (copies, same order) with cluster_id, duplicate_of, dup_kind, version, supersedes added.

    Records need `url` (or `canonical_url`) and `text`; `content_hash` and `article_id`
    are computed when missing. With `index`, earlier articles (other runs) count as
    first-seen and this batch is added to it (rows tagged with `run_date`/`run_id`).
    """
    if index is None:
        index = DedupeIndex(config)
    elif config is not None and config != index.config:
        raise ValueError("config differs from the index's config; pass one or the other")
    cfg = index.config
    day = day_number(run_date)
    run = run_id or ""
    out: list[dict] = []
    batch: list[dict] = []
    for record in records:
        batch.append(dict(record))
        if len(batch) >= BATCH:
            out.extend(_dedupe_batch(batch, index, cfg, day, run))
            batch = []
    if batch:
        out.extend(_dedupe_batch(batch, index, cfg, day, run))
    index.trim()
    return out


def _later_to_earlier(first: np.ndarray, second: np.ndarray) -> dict[int, list[int]]:
    """{later doc: [earlier docs, ascending]} from (earlier, later) pairs."""
    out: dict[int, list[int]] = {}
    for i, j in sorted(zip(first.tolist(), second.tolist())):
        out.setdefault(j, []).append(i)
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
    qi, rows = band_map.query(bkeys.ravel())
    if len(qi):
        pairs = np.unique((qi // index.bands).astype(np.int64) << 32 | rows.astype(np.int64))
        pj, pr = pairs >> 32, pairs & 0xFFFFFFFF
        m = np.count_nonzero(sig16[pj] == index.sig[pr], axis=1)
        ok = m >= need
        pj, pr, m = pj[ok], pr[ok], m[ok]
        order = np.lexsort((pr, -m, pj))  # per doc: most similar first, then the earliest row
        pj, pr, m = pj[order], pr[order], m[order]
        best = np.ones(len(pj), dtype=bool)
        best[1:] = pj[1:] != pj[:-1]
        g_near = dict(zip(pj[best].tolist(), zip(pr[best].tolist(), m[best].tolist())))

    # Earlier documents of this batch.
    # Depth 8 / 4: a document needs one earlier member of its URL / content / cluster, not all of them.
    b_url = _later_to_earlier(*earlier_equal(ukeys, docs, 8))
    b_content = _later_to_earlier(*earlier_equal(ckeys, docs, 8))
    b_near: dict[int, list[tuple[int, int]]] = {}
    bi, bj = earlier_equal(bkeys.ravel(), np.repeat(docs, index.bands), 4)
    if len(bi):
        pairs = np.unique(bj.astype(np.int64) << 32 | bi.astype(np.int64))
        pj, pi = pairs >> 32, pairs & 0xFFFFFFFF
        m = np.count_nonzero(sig16[pj] == sig16[pi], axis=1)
        for j, i, mm in zip(pj.tolist(), pi.tolist(), m.tolist()):
            if mm >= need:
                b_near.setdefault(j, []).append((mm, i))

    cluster: list[str] = [""] * n
    supersedes: list[str | None] = [None] * n
    version = np.ones(n, dtype=np.int32)
    added = np.zeros(n, dtype=bool)
    linked = np.ones(n, dtype=bool)
    for j, rec in enumerate(batch):
        aid = rec["article_id"]
        fields: dict = {"cluster_id": aid, "duplicate_of": None, "dup_kind": None, "version": 1, "supersedes": None}
        # Latest version of this URL: this batch's rows are newer than the index's.
        # (cluster_id, article_id, version, supersedes, content key)
        prev: tuple[str | None, str | None, int, str | None, int] | None = None
        for i in reversed(b_url.get(j, ())):
            if added[i]:
                prev = (cluster[i], batch[i]["article_id"], int(version[i]), supersedes[i], int(ckeys[i]))
                break
        if prev is None and g_url[j] >= 0:
            r = int(g_url[j])
            prev = (
                index.get(r, "cluster_id"),
                index.get(r, "article_id"),
                int(index.version[r]),
                index.get(r, "supersedes"),
                int(index.content_key[r]),
            )
        if prev is not None and prev[4] == int(ckeys[j]):
            # Re-fetch of an article we already hold: same story, same version; nothing new to index.
            fields.update(cluster_id=prev[0], duplicate_of=prev[0], dup_kind="url", version=prev[2], supersedes=prev[3])
            rec.update(fields)
            continue
        if prev is not None:
            # Same URL, changed text: a new version of the same article, not a duplicate.
            fields.update(cluster_id=prev[0], version=prev[2] + 1, supersedes=prev[1])
        else:
            exact = index.get(int(g_content[j]), "cluster_id") if g_content[j] >= 0 else None
            if exact is None:
                exact = next((cluster[i] for i in b_content.get(j, ()) if added[i]), None)
            if exact is not None:
                fields.update(cluster_id=exact, duplicate_of=exact, dup_kind="exact")
                linked[j] = False  # its signature is in the band maps already
            else:
                near, score = None, -1
                if j in g_near:
                    near, score = index.get(g_near[j][0], "cluster_id"), g_near[j][1]
                for mm, i in b_near.get(j, ()):
                    if added[i] and mm > score:  # ties go to the index row: it was seen first
                        near, score = cluster[i], mm
                if near is not None:
                    fields.update(cluster_id=near, duplicate_of=near, dup_kind="near")
        rec.update(fields)
        cluster[j] = fields["cluster_id"]
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
            },
            version=version[pick],
            day=day,
            run_id=run,
            linked=linked[pick],
        )
    return batch


def dedupe_stage(ctx: RunContext, cleaned_key: str, *, config: DedupeConfig | None = None) -> str:
    """Dedupe a run's cleaned articles against the persistent index; returns the deduped JSONL.gz key.

    Idempotent per run id: entries this run id added on an earlier attempt are
    ignored and replaced. Concurrent runs lose no entry: the index shard is written
    with If-Match / If-None-Match and the step is redone on a lost race.
    """
    cfg = config or DedupeConfig()
    bucket = ctx.bucket
    day = run_date_of(ctx.run_id)
    records = list(bucket.iter_jsonl(cleaned_key))
    for attempt in range(1, SAVE_ATTEMPTS + 1):
        index = DedupeIndex.load(bucket, run_date=day, config=cfg)
        index.drop_run(ctx.run_id)
        out = dedupe_records(records, index=index, run_date=day, run_id=ctx.run_id)
        try:
            index.save(bucket)
            break
        except PreconditionFailed:
            # Another writer saved the shard since we loaded it: redo against its entries.
            log.info("dedupe index changed during run %s (attempt %s), retrying", ctx.run_id, attempt)
            time.sleep(random.uniform(0.05, 0.2) * attempt)
    else:
        raise StorageError(f"dedupe index: gave up after {SAVE_ATTEMPTS} conflicting concurrent writes")
    key = deduped_key(ctx.run_id)
    bucket.put_jsonl(key, out)
    index.delete_expired(bucket)
    kinds = {k: sum(1 for r in out if r["dup_kind"] == k) for k in ("url", "exact", "near")}
    log.info(
        "dedupe %s: %s articles, %s new versions, duplicates %s; index %s rows",
        ctx.run_id,
        len(out),
        sum(1 for r in out if r["version"] > 1),
        kinds,
        len(index),
    )
    return key
