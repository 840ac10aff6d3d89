"""The dedupe index in immutable segments: lazy reads by key, old-format day files, same verdicts as a whole load."""

from __future__ import annotations

import random

import numpy as np
import pytest

from benchmarks.dedupe_data import Topic, render, story
from pipeline.core.layout import dedupe_segment_key, dedupe_segment_of, dedupe_segment_prefix, dedupe_shard_key
from pipeline.stages import dedupe_index
from pipeline.stages.dedupe import dedupe_records
from pipeline.stages.dedupe_index import DedupeConfig, DedupeIndex, Segment, encode_segment

FIELDS = ("article_id", "cluster_id", "duplicate_of", "dup_kind", "story_id", "version", "supersedes")


def _article(seed: int) -> str:
    rng = random.Random(seed)
    headline, paras = story(rng, Topic(rng))
    return render(headline, paras)


def _docs(seeds: range, host: str) -> list[dict]:
    return [{"url": f"https://{host}.example/{s}", "text": _article(s)} for s in seeds]


def _copy(text: str) -> str:
    return text.replace("\n", "\nSign up for our newsletter\n", 1) + "\nCopyright 2026 Other Outlet."


def test_segment_keys_round_trip():
    key = dedupe_segment_key("2026-11-01", 7)
    assert key == "state/dedupe/v2/day=2026-11-01/seq=00000007.seg"
    assert dedupe_segment_of(key) == ("2026-11-01", 7)
    assert dedupe_segment_of("state/dedupe/v2/day=2026-11-01/notes.txt") is None
    assert dedupe_segment_prefix() == "state/dedupe/v2/"


@pytest.mark.parametrize("rewrite", [True, False])
def test_lazy_open_reads_only_what_the_batch_touches_and_decides_as_a_whole_load(bucket, monkeypatch, rewrite):
    """A run against a 300-article history: the same verdicts as against the whole index in memory.
    Without the rewrite kind (whose term-set bands match most same-topic articles) it reads few rows."""
    cfg = DedupeConfig(rewrite=rewrite)
    monkeypatch.setattr(dedupe_index, "SEGMENT_BLOCK", 64)  # many blocks on a small history
    history = _docs(range(300), "old")
    whole = DedupeIndex.open(bucket, run_date="2026-11-01", config=cfg)
    whole.drop_run("R1")
    dedupe_records(history, index=whole, run_date="2026-11-01", run_id="R1")
    key = whole.save(bucket)
    size = len(bucket.get(key))
    run = [
        {"url": "https://new.example/copy", "text": _copy(history[5]["text"])},  # near
        {"url": "https://new.example/same", "text": history[9]["text"]},  # exact
        history[12],  # unchanged re-fetch
        {"url": history[20]["url"], "text": history[20]["text"] + "\nUpdate: it rained."},  # a new version
        *_docs(range(1000, 1004), "fresh"),
    ]
    full = DedupeIndex.load(bucket, run_date="2026-11-02", config=cfg)
    expected = dedupe_records([dict(r) for r in run], index=full, run_date="2026-11-02", run_id="R2")
    before = dict(dedupe_index.FETCHED)
    lazy = DedupeIndex.open(bucket, run_date="2026-11-02", config=cfg)
    assert len(lazy) == 0  # nothing but the footer yet
    got = dedupe_records([dict(r) for r in run], index=lazy, run_date="2026-11-02", run_id="R2")
    read = dedupe_index.FETCHED["bytes"] - before["bytes"]
    assert [tuple(r[f] for f in FIELDS) for r in got] == [tuple(r[f] for f in FIELDS) for r in expected]
    assert [r["dup_kind"] for r in got[:4]] == ["near", "exact", "url", None] and got[3]["version"] == 2
    if not rewrite:
        # Rows are read only for candidates; key blocks are read for every asked key (most of them here).
        assert 0 < len(lazy) < 30 and read <= size, (len(lazy), read, size)


def test_old_format_day_files_are_read_as_they_are(bucket):
    """A bucket written before segments: its day file is still the history, and a re-run supersedes its rows."""
    old = DedupeIndex()
    first = dedupe_records(_docs(range(3), "a"), index=old, run_date="2026-11-01", run_id="20261101T000000Z")
    bucket.put(dedupe_shard_key("2026-11-01"), old.to_bytes())
    lazy = DedupeIndex.open(bucket, run_date="2026-11-02")
    out = dedupe_records(
        [{"url": "https://b.example/1", "text": _copy(_article(1))}],
        index=lazy,
        run_date="2026-11-02",
        run_id="20261102T000000Z",
    )
    assert out[0]["dup_kind"] == "near" and out[0]["duplicate_of"] == first[1]["article_id"]
    lazy.save(bucket)
    index = DedupeIndex.load(bucket, run_date="2026-11-02")
    assert len(index) == 4 and index.runs == ["20261101T000000Z", "20261102T000000Z"]
    # Re-running the old day's run id under segments replaces its rows of the day file.
    again = DedupeIndex.open(bucket, run_date="2026-11-01")
    again.drop_run("20261101T000000Z")
    dedupe_records(_docs(range(2), "a"), index=again, run_date="2026-11-01", run_id="20261101T000000Z")
    again.save(bucket)
    assert len(DedupeIndex.load(bucket, run_date="2026-11-02")) == 3
    assert sorted(DedupeIndex(again.config).delete_expired(bucket)) == []  # no run date: deletes nothing


def test_encoded_segment_footer_and_rows_read_back(bucket):
    index = DedupeIndex()
    out = dedupe_records(_docs(range(5), "s"), index=index, run_date="2026-11-01", run_id="S")
    bucket.put("x.seg", encode_segment(index, np.arange(index.n), ["S"]))
    seg = Segment.open(bucket, "x.seg", 0, 1)
    assert seg.n_docs == 5 and seg.meta["runs"] == ["S"]
    recs, terms, sents = seg.read_docs(bucket, np.array([1, 3]))
    assert [r.decode() for r in recs["article_id"]] == [out[1]["article_id"], out[3]["article_id"]]
    assert np.array_equal(terms[0], index.rewrite_features(1)[0]) and np.array_equal(
        sents[1], index.rewrite_features(3)[1]
    )
