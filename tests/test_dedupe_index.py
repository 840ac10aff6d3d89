"""The dedupe index: signatures, lookups, persistence in a real bucket, pruning, concurrent writers."""

from __future__ import annotations

import random
import subprocess
import sys

import numpy as np
import pytest
from datasketch import MinHash

from benchmarks.dedupe_data import Topic, render, story
from pipeline.core.bucket import PreconditionFailed
from pipeline.core.layout import dedupe_segment_key, dedupe_segment_prefix
from pipeline.stages.dedupe import dedupe_records
from pipeline.stages.dedupe_index import (
    DedupeConfig,
    DedupeIndex,
    KeyRows,
    earlier_equal,
    lsh_params,
    shingle_hashes,
    shingles_of,
    signatures,
)
from pipeline.text.hashing import normalise_for_hash, normalised_bytes


def _article(seed: int) -> str:
    rng = random.Random(seed)
    headline, paras = story(rng, Topic(rng))
    return render(headline, paras)


def test_signature_equals_datasketch_affine32_minhash():
    """Our vectorised MinHash is datasketch's affine32 scheme with its permutations, value for value."""
    words = normalise_for_hash(_article(1)).split()
    sh = shingle_hashes(words, 3)
    ours = signatures([sh], 128, seed=1)[0]
    theirs = MinHash(num_perm=128, seed=1, scheme="affine32", hashfunc=lambda v: v)
    theirs.update_batch([int(x) for x in sh])
    assert np.array_equal(ours, theirs.hashvalues)


@pytest.mark.parametrize(
    "text",
    [
        "Hello, World! It's 2026",
        "Smart \u201cquotes\u201d \u2014 and caf\u00e9 \u00dcber_x\ttabs",
        "",
        "   \n ",
        "snake_case and 3.5% of CAPS",
        "\u00bdfull-width\uff21\uff22",
        "\u0130stanbul \u00df",
    ],
)
def test_normalised_bytes_is_normalise_for_hash(text):
    assert normalised_bytes(text) == normalise_for_hash(text).encode("utf-8")


def test_shingles_batch_equals_one_by_one_and_handles_short_texts():
    texts = [b"a b c d e", b"", b"x y", b"one two three"]
    flat, counts = shingles_of(texts, 3)
    assert counts.tolist() == [3, 1, 1, 1]
    pos = 0
    for t, c in zip(texts, counts):
        assert np.array_equal(flat[pos : pos + c], shingle_hashes(t.decode().split(), 3))
        pos += c
    # Word order matters inside a shingle, extra spaces do not.
    assert shingle_hashes(["a", "b", "c"], 3)[0] != shingle_hashes(["c", "b", "a"], 3)[0]
    assert np.array_equal(shingles_of([b"a  b   c"], 3)[0], shingles_of([b"a b c"], 3)[0])


def test_keyrows_multimap_across_levels():
    m = KeyRows()
    m.add(np.array([5, 3, 5, 9], dtype=np.uint64), np.array([0, 1, 2, 3]))
    m.add(np.array([5], dtype=np.uint64), np.array([4]))
    qi, rows = m.query(np.array([5, 7, 9, 3], dtype=np.uint64))
    got = sorted(zip(qi.tolist(), rows.tolist()))
    assert got == [(0, 0), (0, 2), (0, 4), (2, 3), (3, 1)]
    assert len(m) == 5


def test_earlier_equal_pairs_each_later_owner_with_earlier_ones():
    keys = np.array([7, 8, 7, 7, 9], dtype=np.uint64)
    first, second = earlier_equal(keys, np.arange(5), depth=8)
    assert sorted(zip(first.tolist(), second.tolist())) == [(0, 2), (0, 3), (2, 3)]


@pytest.mark.parametrize("num_perm", [16, 64, 128, 256])
def test_lsh_params_are_the_ones_datasketch_picks(num_perm):
    from datasketch import MinHashLSH

    for threshold in [x / 20 for x in range(1, 20)]:
        try:
            lsh = MinHashLSH(threshold=threshold, num_perm=num_perm)
            theirs = (lsh.b, lsh.r)
        except ValueError:
            theirs = None
        try:
            ours = lsh_params(threshold, num_perm)
        except ValueError:
            ours = None
        assert ours == theirs, (threshold, num_perm)
    assert lsh_params(0.4, 128) == (32, 4)


def test_the_dedupe_stage_does_not_import_datasketch_or_scipy():
    """datasketch imports scipy, about a second of every run's start-up: the stage must not need it."""
    code = (
        "import sys; from pipeline.stages.dedupe import dedupe_records; "
        "dedupe_records([{'url': 'https://a.example/1', 'text': 'one two three four five six'}]); "
        "print(sorted(m for m in ('datasketch', 'scipy') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def _run(bucket, run_id: str, day: str, docs: list[dict], config: DedupeConfig | None = None) -> list[dict]:
    index = DedupeIndex.load(bucket, run_date=day, config=config)
    index.drop_run(run_id)
    out = dedupe_records(docs, index=index, run_date=day, run_id=run_id)
    index.save(bucket)
    return out


def test_index_persists_across_runs_and_days(bucket):
    text = _article(2)
    first = _run(bucket, "20261101T000000Z", "2026-11-01", [{"url": "https://a.example/1", "text": text}])
    assert bucket.list(dedupe_segment_prefix()) == [dedupe_segment_key("2026-11-01", 1)]
    copy = text.replace("\n", "\nSign up for our newsletter\n", 1) + "\nCopyright 2026 Other Outlet."
    second = _run(bucket, "20261102T000000Z", "2026-11-02", [{"url": "https://b.example/9", "text": copy}])
    assert second[0]["dup_kind"] == "near"
    assert second[0]["cluster_id"] == second[0]["duplicate_of"] == first[0]["article_id"]
    index = DedupeIndex.load(bucket, run_date="2026-11-02")
    assert len(index) == 2 and index.runs == ["20261101T000000Z", "20261102T000000Z"]


def test_prune_by_window_judged_by_run_date(bucket):
    cfg = DedupeConfig(window_days=5)
    old = _run(bucket, "20261101T000000Z", "2026-11-01", [{"url": "https://a.example/1", "text": _article(3)}], cfg)
    _run(bucket, "20261104T000000Z", "2026-11-04", [{"url": "https://a.example/2", "text": _article(4)}], cfg)
    # Eight days later the first story is outside the 5-day window: forgotten, not a duplicate any more.
    index = DedupeIndex.load(bucket, run_date="2026-11-09", config=cfg)
    assert len(index) == 1 and index.get(0, "article_id") != old[0]["article_id"]
    again = dedupe_records([{"url": "https://c.example/x", "text": _article(3)}], index=index, run_date="2026-11-09")
    assert again[0]["dup_kind"] is None
    index.save(bucket)
    assert index.delete_expired(bucket) == [dedupe_segment_key("2026-11-01", 1)]
    assert dedupe_segment_key("2026-11-01", 1) not in bucket.list(dedupe_segment_prefix())
    # In memory too: prune() drops rows older than the window.
    mem = DedupeIndex(cfg)
    dedupe_records([{"url": "https://a.example/1", "text": _article(5)}], index=mem, run_date="2026-10-01")
    dedupe_records([{"url": "https://a.example/2", "text": _article(6)}], index=mem, run_date="2026-10-20")
    assert mem.prune("2026-10-22") == 1 and len(mem) == 1


def test_a_stale_index_cannot_take_a_committed_sequence_number(bucket):
    """Two writers opened before either committed: the second's segment number is taken, it must redo."""
    a = DedupeIndex.open(bucket, run_date="2026-11-01")
    b = DedupeIndex.open(bucket, run_date="2026-11-01")
    dedupe_records([{"url": "https://a.example/1", "text": _article(7)}], index=a, run_date="2026-11-01", run_id="A")
    dedupe_records([{"url": "https://b.example/1", "text": _article(8)}], index=b, run_date="2026-11-01", run_id="B")
    assert a.save(bucket) == dedupe_segment_key("2026-11-01", 1)
    with pytest.raises(PreconditionFailed):
        b.save(bucket)  # If-None-Match: * fails: A committed segment 1 first
    # A later save of the same index writes only its new rows, as the next segment.
    dedupe_records([{"url": "https://c.example/1", "text": _article(9)}], index=a, run_date="2026-11-01", run_id="A")
    assert a.save(bucket) == dedupe_segment_key("2026-11-01", 2)
    assert len(DedupeIndex.load(bucket, run_date="2026-11-01")) == 2
