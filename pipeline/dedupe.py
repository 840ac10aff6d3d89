"""Deduplication: same canonical URL, same normalised text, near-duplicate text; updates become versions.

Three levels, in order, recorded in `dup_kind`:

1. ``url``: the canonical URL was seen before with the same content hash (a re-fetch).
   The same URL with *changed* text is not a duplicate but a new version of that
   article: ``version`` = previous + 1, ``supersedes`` = the previous version's id,
   same ``cluster_id``, ``dup_kind`` null.
2. ``exact``: the normalised text (`pipeline.hashing.content_hash`) was seen before.
3. ``near``: MinHash LSH over word shingles finds an earlier text whose estimated
   Jaccard similarity is at least ``DedupeConfig.threshold``.

Every article gets ``cluster_id`` (the article_id of the cluster's first-seen
member), ``duplicate_of`` (that same id for duplicates, null for the first one and
for new versions) and ``dup_kind``. Nothing is dropped.

Across runs, `dedupe_stage` loads the persistent index (`pipeline.dedupe_index`,
``state/dedupe/v1/``), forgets what this same run id added before (re-runs are
idempotent), dedupes, and saves with S3 conditional writes, redoing the whole
step against the fresh index when another writer won the race.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import random
import sys
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING

from pydantic import ValidationError

from pipeline.dedupe_index import (
    DedupeConfig,
    DedupeIndex,
    band_keys,
    day_number,
    key64,
    shingle_hashes,
    signatures,
)
from pipeline.hashing import article_id as make_article_id
from pipeline.hashing import normalise_for_hash
from pipeline.s3 import PreconditionFailed, StorageError, run_date as run_date_of

if TYPE_CHECKING:
    from pipeline.context import RunContext

log = logging.getLogger(__name__)

#: Documents whose signatures are computed together (numpy works on the whole batch at once).
BATCH = 512
#: Attempts at saving the index when other writers keep winning the conditional write.
SAVE_ATTEMPTS = 8

__all__ = ["DedupeConfig", "DedupeIndex", "cmd_dedupe", "configure_dedupe", "dedupe_records", "dedupe_stage"]


def _canonical(record: dict) -> str:
    url = record.get("canonical_url") or record.get("url")
    if not url or not isinstance(url, str):
        raise ValueError("article has no url")
    if record.get("canonical_url"):
        return url  # extract already canonicalised it (rel=canonical or pipeline.urls)
    from pipeline.urls import canonicalize

    return canonicalize(url)


def dedupe_records(records: Iterable[dict], *, config: DedupeConfig | None = None,
                   index: DedupeIndex | None = None, run_date: str | None = None,
                   run_id: str | None = None) -> list[dict]:
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
    return out


def _dedupe_batch(batch: list[dict], index: DedupeIndex, cfg: DedupeConfig, day: int, run: str) -> list[dict]:
    urls: list[str] = []
    shingles = []
    for rec in batch:
        url = _canonical(rec)
        text = rec.get("text")
        if not isinstance(text, str):
            raise ValueError(f"article {url} has no text")
        norm = normalise_for_hash(text)
        if not rec.get("content_hash"):
            # Same as pipeline.hashing.content_hash(text), without normalising twice.
            rec["content_hash"] = hashlib.sha256(norm.encode("utf-8")).hexdigest()
        if not rec.get("article_id"):
            rec["article_id"] = make_article_id(url, rec["content_hash"])
        urls.append(url)
        shingles.append(shingle_hashes(norm.split(), cfg.shingle_size))
    sigs = signatures(shingles, cfg.num_perm, cfg.seed)
    bkeys = band_keys(sigs, index.bands, index.rows_per_band)

    for i, rec in enumerate(batch):
        aid = rec["article_id"]
        ukey, ckey = key64(urls[i]), key64(rec["content_hash"])
        fields: dict = {"cluster_id": aid, "duplicate_of": None, "dup_kind": None, "version": 1, "supersedes": None}
        link = True
        prev = index.latest_for_url(ukey)
        if prev is not None and int(index.content_key[prev]) == ckey:
            # Re-fetch of an article we already hold: same story, same version; nothing new to index.
            cluster = index.get(prev, "cluster_id")
            fields.update(cluster_id=cluster, duplicate_of=cluster, dup_kind="url",
                          version=int(index.version[prev]), supersedes=index.get(prev, "supersedes"))
            rec.update(fields)
            continue
        if prev is not None:
            # Same URL, changed text: a new version of the same article, not a duplicate.
            fields.update(cluster_id=index.get(prev, "cluster_id"), version=int(index.version[prev]) + 1,
                          supersedes=index.get(prev, "article_id"))
        else:
            first = index.first_for_content(ckey)
            if first is not None:
                cluster = index.get(first, "cluster_id")
                fields.update(cluster_id=cluster, duplicate_of=cluster, dup_kind="exact")
                link = False  # its signature is already in the band tables
            else:
                hit = index.near(sigs[i], bkeys[i])
                if hit is not None:
                    cluster = index.get(hit[0], "cluster_id")
                    fields.update(cluster_id=cluster, duplicate_of=cluster, dup_kind="near")
        rec.update(fields)
        index.add(sig=sigs[i], bkeys=bkeys[i], url_key=ukey, content_key=ckey, article_id=aid,
                  cluster_id=fields["cluster_id"], supersedes=fields["supersedes"], version=fields["version"],
                  day=day, run_id=run, link=link)
    return batch


def dedupe_stage(ctx: "RunContext", cleaned_key: str, *, config: DedupeConfig | None = None) -> str:
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
    key = f"{ctx.prefix('work')}deduped.jsonl.gz"
    bucket.put_jsonl(key, out)
    index.delete_expired(bucket)
    kinds = {k: sum(1 for r in out if r["dup_kind"] == k) for k in ("url", "exact", "near")}
    log.info("dedupe %s: %s articles, %s new versions, duplicates %s; index %s rows",
             ctx.run_id, len(out), sum(1 for r in out if r["version"] > 1), kinds, len(index))
    return key


# --------------------------------------------------------------------------- CLI


def configure_dedupe(parser: argparse.ArgumentParser) -> None:
    """Arguments of `python -m pipeline dedupe`."""
    defaults = DedupeConfig()
    parser.add_argument("file", nargs="?", default="-", help="JSON Lines of articles (url, text); - for stdin")
    parser.add_argument("--threshold", type=float, default=defaults.threshold,
                        help=f"near-duplicate Jaccard threshold (default {defaults.threshold})")
    parser.add_argument("--shingle-size", type=int, default=defaults.shingle_size,
                        help=f"words per shingle (default {defaults.shingle_size})")
    parser.add_argument("--num-perm", type=int, default=defaults.num_perm,
                        help=f"MinHash permutations (default {defaults.num_perm})")


def cmd_dedupe(args: argparse.Namespace) -> int:
    """JSON Lines in, the same lines out with cluster_id, duplicate_of, dup_kind (and version, supersedes)."""
    try:
        config = DedupeConfig(threshold=args.threshold, shingle_size=args.shingle_size, num_perm=args.num_perm)
    except ValidationError as exc:
        print(f"dedupe: bad option: {exc.errors()[0]['loc'][0]}: {exc.errors()[0]['msg']}", file=sys.stderr)
        return 2
    try:
        stream = sys.stdin if args.file in (None, "-") else open(args.file, encoding="utf-8")
    except OSError as exc:
        print(f"dedupe: cannot read {args.file}: {exc.strerror}", file=sys.stderr)
        return 2
    records = []
    with stream:
        for n, line in enumerate(stream, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except ValueError as exc:
                print(f"dedupe: line {n}: not JSON: {exc}", file=sys.stderr)
                return 2
            if not isinstance(rec, dict) or not isinstance(rec.get("text"), str) \
                    or not (rec.get("url") or rec.get("canonical_url")):
                print(f"dedupe: line {n}: need an object with url and text", file=sys.stderr)
                return 2
            records.append(rec)
    out = dedupe_records(records, config=config)
    write = sys.stdout.write
    for rec in out:
        write(json.dumps(rec, ensure_ascii=False))
        write("\n")
    sys.stdout.flush()
    return 0
