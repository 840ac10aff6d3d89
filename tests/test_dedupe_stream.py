"""`dedupe` streams: records are read batch by batch and the stage's output equals the in-memory dedupe."""

from __future__ import annotations

import pytest

from benchmarks.dedupe_data import speed_corpus
from pipeline.core.bucket import BodyStream
from pipeline.core.context import RunContext
from pipeline.core.layout import cleaned_key
from pipeline.stages import dedupe as dedupe_mod
from pipeline.stages.dedupe import DedupeIndex, dedupe_records, dedupe_stage, iter_dedupe

pytestmark = pytest.mark.timeout(240)


def test_iter_dedupe_reads_its_input_one_batch_at_a_time(monkeypatch):
    monkeypatch.setattr(dedupe_mod, "BATCH", 10)
    docs = list(speed_corpus(35, seed=3))
    consumed: list[int] = []

    def source():
        for i, d in enumerate(docs):
            consumed.append(i)
            yield d

    it = iter_dedupe(source())
    first = next(it)
    assert len(first) == 10 and len(consumed) == 10  # nothing read past the first batch
    rest = [r for batch in it for r in batch]
    assert len(consumed) == 35 and len(first) + len(rest) == 35
    assert [r["cluster_id"] for r in first + rest] == [r["cluster_id"] for r in dedupe_records(docs)]


def test_stage_streams_its_input_and_writes_what_dedupe_records_gives(s3_settings, monkeypatch):
    monkeypatch.setattr(dedupe_mod, "BATCH", 16)
    docs = list(speed_corpus(60, seed=5))
    docs += [dict(docs[3]), dict(docs[7])]  # unchanged re-fetches: dropped from the stage's output
    ctx = RunContext(run_id="20261127T120000Z", s3=s3_settings)
    ctx.bucket.put_jsonl(cleaned_key(ctx.run_id), docs)
    reads: list[int] = []
    real = BodyStream.readinto

    def readinto(self, b):
        n = real(self, b)
        reads.append(n)
        return n

    monkeypatch.setattr(BodyStream, "readinto", readinto)
    monkeypatch.setattr(ctx.bucket, "get", None)  # the whole-object read is not used
    deduped = dedupe_stage(ctx, cleaned_key(ctx.run_id))
    assert reads and sum(reads) > 0
    out = list(ctx.bucket.iter_jsonl(deduped))
    expected = [r for r in dedupe_records(docs, index=DedupeIndex(), run_date="2026-11-27") if r["dup_kind"] != "url"]
    assert len(out) == len(expected) == 60
    assert [(r["article_id"], r["cluster_id"], r["dup_kind"]) for r in out] == [
        (r["article_id"], r["cluster_id"], r["dup_kind"]) for r in expected
    ]
    index = DedupeIndex.load(ctx.bucket, run_date="2026-11-27")
    assert len(index) == 60  # every article but the re-fetches got a row
