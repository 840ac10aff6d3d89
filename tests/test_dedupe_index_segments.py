"""The dedupe index in immutable segments: lazy reads by key, old-format day files, same verdicts as a whole load."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.core.errors import PreconditionFailed
from pipeline.core.layout import dedupe_segment_key, dedupe_segment_of, dedupe_segment_prefix, dedupe_shard_key
from pipeline.stages import dedupe_index
from pipeline.stages.dedupe import dedupe_records
from pipeline.stages.dedupe_index import DedupeConfig, DedupeIndex, Segment, encode_segment
from tests.dedupe_docs import article as _article
from tests.dedupe_docs import copy_of as _copy
from tests.dedupe_docs import docs as _docs

FIELDS = ("article_id", "cluster_id", "duplicate_of", "dup_kind", "story_id", "version", "supersedes")


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


# --------------------------------------------------------------------------- compaction

DAY, NEXT = "2026-11-01", "2026-11-02"
VERDICT = ("dup_kind", "cluster_id", "duplicate_of", "story_id")


def _commit(bucket, docs: list[dict], run_id: str, day: str = DAY) -> list[dict]:
    """One dedupe run's commit: open, drop the run's earlier rows, dedupe, save a segment."""
    index = DedupeIndex.open(bucket, run_date=day)
    index.drop_run(run_id)
    out = dedupe_records([dict(d) for d in docs], index=index, run_date=day, run_id=run_id)
    index.save(bucket)
    return out


def _hourly_day(bucket) -> int:
    """Six commits of one day, with copies across them and a re-run that replaces its first attempt."""
    for hour in range(5):
        docs = _docs(range(10 * hour, 10 * hour + 8), f"h{hour}")
        if hour:  # a copy of the previous hour's first article, and an exact reprint
            docs += [
                {"url": f"https://c{hour}.example/x", "text": _copy(_article(10 * hour - 10))},
                {"url": f"https://r{hour}.example/x", "text": _article(10 * hour - 9)},
            ]
        _commit(bucket, docs, f"20261101T0{hour}0000Z")
    # Hour 2 re-run with fewer articles: its first segment's rows are void.
    _commit(bucket, _docs(range(20, 24), "h2"), "20261101T020000Z")
    return 6


def _probe_run() -> list[dict]:
    return [
        {"url": "https://n.example/1", "text": _copy(_article(3))},
        {"url": "https://n.example/2", "text": _article(31)},
        {"url": "https://n.example/3", "text": _copy(_article(22))},  # of the re-run's rows
        {"url": "https://n.example/4", "text": _copy(_article(26))},  # of the replaced attempt only: new
        {"url": "https://h4.example/45", "text": _article(45) + "\nUpdate: more."},  # a new version
        *_docs(range(2000, 2003), "fresh"),
    ]


def _verdicts(index: DedupeIndex, docs: list[dict], run_id: str = "20261102T000000Z") -> list[tuple]:
    out = dedupe_records([dict(d) for d in docs], index=index, run_date=NEXT, run_id=run_id)
    return [tuple(r[f] for f in (*VERDICT, "version", "supersedes")) for r in out]


def _footers(day: str = NEXT) -> tuple[DedupeIndex, int]:
    """A lazy index and the ranged GETs its `open` made (one per segment footer read)."""
    return _opened(lambda b: DedupeIndex.open(b, run_date=day))


def _opened(fn):
    before = dedupe_index.FETCHED["requests"]
    index = fn(_BUCKET[0])
    return index, dedupe_index.FETCHED["requests"] - before


_BUCKET: list = []


@pytest.fixture
def day_bucket(bucket):
    _BUCKET[:] = [bucket]
    yield bucket
    _BUCKET.clear()


def _rows(bucket, day: str = NEXT) -> list[tuple[str, str]]:
    index = DedupeIndex.load(bucket, run_date=day)
    return sorted((index.get(i, "article_id"), index.runs[index.run[i]]) for i in range(len(index)))


def test_compaction_keeps_verdicts_and_reads_one_footer(day_bucket, monkeypatch):
    from pipeline.flows.maintenance import compact_dedupe_segments

    bucket = day_bucket
    n = _hourly_day(bucket)
    rows = _rows(bucket)
    assert len(rows) == 5 * 8 + 4 * 2 - 10 + 4  # the replaced attempt's 10 rows are gone, its re-run's 4 are in
    probe = _probe_run()
    before_index, footers_before = _footers()
    expected = _verdicts(before_index, probe)
    assert footers_before == n
    assert [v[0] for v in expected] == ["near", "exact", "near", None, None, None, None, None]
    assert expected[4][4] == 2  # version 2 of an indexed URL

    early, _ = _footers()  # opened before the compaction, deduping half its run before and half after
    first_half = _verdicts(early, probe[:4])

    # During: the merge is written, its inputs not deleted yet.
    deletes: list[list[str]] = []
    monkeypatch.setattr(bucket, "delete", lambda keys: deletes.append(list(keys)))
    result = compact_dedupe_segments(bucket, DAY)
    assert result.inputs == n and result.rows == len(rows) and len(deletes) == 1
    assert result.merged == dedupe_segment_key(DAY, n + 1)
    during, footers_during = _footers()
    assert footers_during == 1  # the merge's footer covers the six inputs: theirs are not read
    assert _verdicts(during, probe) == expected
    assert _rows(bucket) == rows  # each row once: the inputs' or the merge's, never both
    monkeypatch.undo()

    # After: the inputs are gone.
    bucket.delete(deletes[0])
    assert [k for k in bucket.list(dedupe_segment_prefix())] == [result.merged]
    after, footers_after = _footers()
    assert footers_after == 1
    assert _verdicts(after, probe) == expected
    assert _rows(bucket) == rows
    # The reader opened before the compaction reads on in the merge, seeing each row once.
    assert first_half + _verdicts(early, probe[4:], "20261102T000000Z") == _verdicts(
        DedupeIndex.open(bucket, run_date=NEXT), probe
    )
    assert len(early._dead) == n  # it found its six segments gone, and read their merge
    assert len(early) == len({early.get(i, "article_id") for i in range(len(early))})
    # Compacting again merges nothing.
    assert compact_dedupe_segments(bucket, DAY).merged == ""


def test_a_commit_racing_the_compaction_is_kept(day_bucket, monkeypatch):
    from pipeline.flows.maintenance import compact_dedupe_segments

    bucket = day_bucket
    _commit(bucket, _docs(range(3), "a"), "20261101T000000Z")
    _commit(bucket, _docs(range(3, 6), "b"), "20261101T010000Z")
    # A late writer that opened before the compaction: its save takes the merge's seq first,
    # so the compaction starts over and merges it too.
    late = DedupeIndex.open(bucket, run_date=DAY)
    dedupe_records(_docs(range(6, 9), "c"), index=late, run_date=DAY, run_id="20261101T020000Z")
    merge = dedupe_index.merge_segments
    calls = []

    def racing(inputs):
        if not calls:
            late.save(bucket)  # seq 3: the one the compaction is about to create
        calls.append(len(inputs))
        return merge(inputs)

    monkeypatch.setattr(dedupe_index, "merge_segments", racing)
    result = compact_dedupe_segments(bucket, DAY)
    assert calls == [2, 3] and result.merged == dedupe_segment_key(DAY, 4)
    assert len(_rows(bucket)) == 9
    # A writer that opened before the compaction and saves after it: its seq was covered, so
    # If-None-Match fails and the stage's redo saves above the merge.
    stale = DedupeIndex.open(bucket, run_date=DAY)
    stale._day_seq[DAY] = 3  # as it was before the merge
    dedupe_records(_docs(range(9, 10), "d"), index=stale, run_date=DAY, run_id="20261101T030000Z")
    with pytest.raises(dedupe_index.PreconditionFailed):
        stale.save(bucket)
    _commit(bucket, _docs(range(9, 10), "d"), "20261101T030000Z")
    assert len(_rows(bucket)) == 10


def test_a_writer_that_missed_a_commit_before_a_merge_dedupes_again(day_bucket):
    """A writer that saw seqs 1..2 saves seq 3 after a merge (seq 4) covered and deleted another seq 3: the
    key is free again, but the commit marker of that other seq 3 is not, so the save fails, its segment is
    deleted again, and the redo sees every row of the merge."""
    from pipeline.flows.maintenance import compact_dedupe_segments

    bucket = day_bucket
    _commit(bucket, _docs(range(3), "a"), "20261101T000000Z")
    _commit(bucket, _docs(range(3, 6), "b"), "20261101T010000Z")
    slow = DedupeIndex.open(bucket, run_date=DAY)
    dedupe_records(_docs(range(10, 12), "slow"), index=slow, run_date=DAY, run_id="20261101T050000Z")
    _commit(bucket, _docs(range(6, 9), "c"), "20261101T020000Z")
    assert compact_dedupe_segments(bucket, DAY).merged == dedupe_segment_key(DAY, 4)
    with pytest.raises(PreconditionFailed):
        slow.save(bucket)
    assert bucket.list(dedupe_segment_prefix()) == [dedupe_segment_key(DAY, 4)]  # the lost save left nothing
    _commit(bucket, _docs(range(10, 12), "slow"), "20261101T050000Z")
    assert bucket.list(dedupe_segment_prefix())[-1] == dedupe_segment_key(DAY, 5)
    rows = _rows(bucket)
    assert len(rows) == 11 and sum(run == "20261101T050000Z" for _, run in rows) == 2
    # The next compaction merges it; readers still see every row once.
    assert compact_dedupe_segments(bucket, DAY).merged == dedupe_segment_key(DAY, 6)
    assert _rows(bucket) == rows and len(bucket.list(dedupe_segment_prefix())) == 1


def test_compact_window_compacts_only_earlier_days_with_several_segments(day_bucket):
    from pipeline.flows.maintenance import compact_dedupe_window

    bucket = day_bucket
    for day, n in (("2026-10-01", 2), ("2026-10-30", 2), ("2026-10-31", 1), ("2026-11-01", 3)):
        for i in range(n):
            _commit(bucket, _docs(range(10 * i, 10 * i + 2), day), f"{day.replace('-', '')}T0{i}0000Z", day)
    done = compact_dedupe_window(bucket, "2026-11-01")
    # 2026-10-01 is out of the window (pruned, not compacted), 2026-10-31 has one segment, 2026-11-01 is today.
    assert [(c.day, c.inputs) for c in done] == [("2026-10-30", 2)]
    days = [dedupe_segment_of(k)[0] for k in bucket.list(dedupe_segment_prefix())]
    assert days.count("2026-10-30") == 1 and days.count("2026-11-01") == 3


def test_old_commit_markers_are_pruned_and_saves_go_on(day_bucket, monkeypatch):
    from pipeline.core.layout import dedupe_commit_of, dedupe_commit_prefix

    monkeypatch.setattr(dedupe_index, "COMMITS_KEPT", 2)
    bucket = day_bucket
    for i in range(4):
        _commit(bucket, _docs(range(3 * i, 3 * i + 3), f"m{i}"), f"20261101T0{i}0000Z")
    index = DedupeIndex.open(bucket, run_date=DAY)
    index.delete_expired(bucket)
    assert sorted(dedupe_commit_of(k) for k in bucket.list(dedupe_commit_prefix())) == [3, 4]
    _commit(bucket, _docs(range(20, 23), "m5"), "20261101T050000Z")  # numbering goes on from the last marker
    assert sorted(dedupe_commit_of(k) for k in bucket.list(dedupe_commit_prefix())) == [3, 4, 5]
    assert len(_rows(bucket)) == 15
