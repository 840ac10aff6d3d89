"""Three processes dedupe disjoint articles of the same day at once against the real S3 server: none lost."""

from __future__ import annotations

import logging
import multiprocessing
import random

from benchmarks.dedupe_data import Topic, render, story
from pipeline.core.context import RunContext
from pipeline.core.layout import (
    cleaned_key,
    dedupe_commit_of,
    dedupe_commit_prefix,
    dedupe_segment_of,
    dedupe_segment_prefix,
    deduped_key,
)
from pipeline.stages.dedupe import dedupe_stage
from pipeline.stages.dedupe_index import DedupeIndex

WRITERS, PER_WRITER, DAY = 3, 12, "2026-11-05"


def _article(seed: int) -> str:
    rng = random.Random(seed)
    return render(*story(rng, Topic(rng)))


def _rows(w: int) -> list[dict]:
    return [{"url": f"https://w{w}.example/{i}", "text": _article(1000 * w + i)} for i in range(PER_WRITER)]


class _Retries(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        self.count += "retrying" in record.getMessage()


def _writer(ctx: RunContext, start, results) -> None:
    """One process: wait for the others, then run the dedupe stage (with its retry on a lost race)."""
    counter = _Retries()
    logging.getLogger("pipeline.stages.dedupe").addHandler(counter)
    logging.getLogger("pipeline.stages.dedupe").setLevel(logging.INFO)
    start.wait()
    dedupe_stage(ctx, cleaned_key(ctx.run_id))
    results.put((ctx.run_id, counter.count))


def test_three_processes_dedupe_the_same_day_at_once_and_lose_nothing(s3_settings):
    ctxs = [RunContext(f"{DAY.replace('-', '')}T10000{w}Z", s3=s3_settings) for w in range(WRITERS)]
    for w, ctx in enumerate(ctxs):
        ctx.bucket.put_jsonl(cleaned_key(ctx.run_id), _rows(w))
    mp = multiprocessing.get_context("spawn")
    start, results = mp.Barrier(WRITERS), mp.Queue()
    procs = [mp.Process(target=_writer, args=(ctx, start, results)) for ctx in ctxs]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=300)
    assert [p.exitcode for p in procs] == [0] * WRITERS
    done = dict(results.get(timeout=10) for _ in range(WRITERS))
    assert sorted(done) == sorted(c.run_id for c in ctxs)

    bucket = ctxs[0].bucket
    index = DedupeIndex.load(bucket, run_date=DAY)
    stored = sorted(index.get(i, "article_id") for i in range(len(index)))
    written = sorted(r["article_id"] for c in ctxs for r in bucket.iter_jsonl(deduped_key(c.run_id)))
    assert len(written) == WRITERS * PER_WRITER and stored == written  # every document of all three, once
    assert sorted(index.runs) == sorted(c.run_id for c in ctxs)
    segs = [dedupe_segment_of(k, dedupe_segment_prefix()) for k in bucket.list(dedupe_segment_prefix())]
    assert sorted(segs) == [(DAY, 1), (DAY, 2), (DAY, 3)]  # one commit each: a lost race redid, not overwrote
    markers = bucket.list(dedupe_commit_prefix())
    assert sorted(dedupe_commit_of(k) for k in markers) == [1, 2, 3]  # one marker per save, none taken twice

    # A fourth run finds copies of all three sets.
    fourth = RunContext(f"{DAY.replace('-', '')}T110000Z", s3=s3_settings)
    copies = [
        {"url": f"https://copy.example/{w}", "text": _article(1000 * w + 3) + "\nCopyright 2026 Other Outlet."}
        for w in range(WRITERS)
    ]
    bucket.put_jsonl(cleaned_key(fourth.run_id), copies)
    out = list(bucket.iter_jsonl(dedupe_stage(fourth, cleaned_key(fourth.run_id))))
    originals = {r["url"]: r["article_id"] for c in ctxs for r in bucket.iter_jsonl(deduped_key(c.run_id))}
    assert [r["dup_kind"] for r in out] == ["near"] * WRITERS
    assert [r["duplicate_of"] for r in out] == [originals[f"https://w{w}.example/3"] for w in range(WRITERS)]
