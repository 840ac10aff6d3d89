"""The worker-local key cache of the dedupe index: same verdicts on, off, cold, warm and after a merge;
wrong files are replaced; files of segments gone from the window are evicted."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.core.layout import dedupe_segment_prefix
from pipeline.stages import dedupe_index
from pipeline.stages.dedupe import dedupe_records
from pipeline.stages.dedupe_index import CACHE_ENV, DedupeIndex, KeyCache, cache_root, compact_segments
from tests.dedupe_docs import article as _article
from tests.dedupe_docs import copy_of as _copy
from tests.dedupe_docs import docs as _docs

DAY, NEXT = "2026-11-01", "2026-11-02"
FIELDS = ("dup_kind", "cluster_id", "duplicate_of", "story_id", "version", "supersedes")


def _commit(bucket, docs: list[dict], run_id: str, day: str = DAY) -> None:
    index = DedupeIndex.open(bucket, run_date=day)
    index.drop_run(run_id)
    dedupe_records([dict(d) for d in docs], index=index, run_date=day, run_id=run_id)
    index.save(bucket)


def _history(bucket) -> None:
    """Four commits of one day with copies across them, and a re-run replacing its first attempt."""
    for hour in range(4):
        docs = _docs(range(10 * hour, 10 * hour + 8), f"h{hour}")
        if hour:
            docs.append({"url": f"https://c{hour}.example/x", "text": _copy(_article(10 * hour - 10))})
        _commit(bucket, docs, f"20261101T0{hour}0000Z")
    _commit(bucket, _docs(range(20, 24), "h2"), "20261101T020000Z")


PROBE = [
    {"url": "https://n.example/1", "text": _copy(_article(3))},  # near
    {"url": "https://n.example/2", "text": _article(31)},  # exact
    {"url": "https://n.example/3", "text": _copy(_article(22))},  # near a re-run's row
    {"url": "https://n.example/4", "text": _copy(_article(26))},  # only in the replaced attempt: new
    {"url": "https://h3.example/35", "text": _article(35) + "\nUpdate: more."},  # a new version
    *_docs(range(2000, 2003), "fresh"),
]


def _verdicts(bucket) -> list[tuple]:
    """A lazy run over the bucket (nothing saved, so every call sees the same bucket)."""
    index = DedupeIndex.open(bucket, run_date=NEXT)
    out = dedupe_records([dict(d) for d in PROBE], index=index, run_date=NEXT, run_id="20261102T000000Z")
    return [tuple(r[f] for f in FIELDS) for r in out]


def _stats() -> dict:
    return {**dedupe_index.CACHE_STATS, **{f"s3_{k}": v for k, v in dedupe_index.FETCHED.items()}}


def _delta(before: dict) -> dict:
    return {k: v - before[k] for k, v in _stats().items()}


def _measured(bucket) -> tuple[list[tuple], dict]:
    before = _stats()
    return _verdicts(bucket), _delta(before)


def _files(root: Path) -> set[str]:
    return {p.name for p in (root / "dedupe").rglob("*.keys")}


def _live_names(bucket) -> set[str]:
    index = DedupeIndex.open(bucket, run_date=NEXT)
    assert index._cache is not None
    return {index._cache.path(s).name for s in index.segments}  # type: ignore[union-attr]


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.setattr(dedupe_index, "SEGMENT_BLOCK", 64)  # ranged reads over many blocks, like a big history
    return tmp_path / "cache"


def test_same_verdicts_with_cache_off_cold_warm_and_after_a_merge(bucket, cache, monkeypatch):
    monkeypatch.setenv(CACHE_ENV, "off")
    _history(bucket)
    off, s_off = _measured(bucket)
    assert s_off["downloads"] == s_off["hits"] == 0 and not _files(cache)
    assert [v[0] for v in off[:5]] == ["near", "exact", "near", None, None] and off[4][4] == 2

    monkeypatch.setenv(CACHE_ENV, str(cache))
    cold, s_cold = _measured(bucket)
    assert cold == off
    assert s_cold["downloads"] == 5 and len(_files(cache)) == 5  # every live segment's key section, once
    warm, s_warm = _measured(bucket)
    assert warm == off
    assert s_warm["downloads"] == 0 and s_warm["hits"] == 5
    # Warm, the bucket is read for footers and matched rows only: less than the key blocks read cache off.
    assert s_warm["s3_bytes"] < s_off["s3_bytes"]

    before_merge = _files(cache)
    result = compact_segments(bucket, DAY)
    assert result.inputs == 5
    merged, s_merged = _measured(bucket)
    assert merged == off
    assert s_merged["evicted"] == 5 and s_merged["downloads"] == 1  # the merge's keys, under its own name
    assert _files(cache) == _live_names(bucket) and not _files(cache) & before_merge


def test_a_wrong_cache_file_is_detected_and_replaced(bucket, cache):
    _history(bucket)
    expected, _ = _measured(bucket)  # warms the cache
    files = sorted((cache / "dedupe").rglob("*.keys"))
    assert len(files) == 5
    sizes = {p: p.stat().st_size for p in files}
    truncated, bad_magic, bad_keys = files[:3]
    truncated.write_bytes(truncated.read_bytes()[:-12])  # one entry short
    bad_magic.write_bytes(b"XXXXXXXX" + bad_magic.read_bytes()[8:])
    body = bytearray(bad_keys.read_bytes())
    body[32:40] = b"\xff" * 8  # the first key, which the footer's block index names
    bad_keys.write_bytes(bytes(body))
    got, stats = _measured(bucket)
    assert got == expected
    assert stats["replaced"] == 3 and stats["downloads"] == 3 and stats["hits"] == 2
    assert {p: p.stat().st_size for p in files} == sizes
    assert bad_magic.read_bytes()[:8] == b"DDIXKEY1" and bad_keys.read_bytes()[32:40] != b"\xff" * 8


def test_a_saved_segment_is_cached_from_the_bytes_in_hand(bucket, cache):
    _history(bucket)  # every commit cached the segment it wrote
    assert len(_files(cache)) == 5
    _, stats = _measured(bucket)
    assert stats["downloads"] == 0 and stats["hits"] == 5 and stats["evicted"] == 0
    assert _files(cache) == _live_names(bucket)


def test_expired_segments_are_evicted(bucket, cache):
    _commit(bucket, _docs(range(3), "a"), "20261101T000000Z")
    _commit(bucket, _docs(range(3, 6), "b"), "20261102T000000Z", day=NEXT)
    assert len(_files(cache)) == 2
    later = DedupeIndex.open(bucket, run_date="2026-12-02")  # the window (30 days) no longer holds Nov 1
    assert len(later.segments) == 1 and len(_files(cache)) == 1


def test_cache_location_and_names(bucket, monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv(CACHE_ENV, raising=False)
    assert cache_root() == tmp_path / ".cache" / "news-ingest" / "dedupe"
    for off in ("off", "", "OFF"):
        monkeypatch.setenv(CACHE_ENV, off)
        assert cache_root() is None
        assert DedupeIndex.open(bucket, run_date=NEXT)._cache is None
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "c"))
    assert cache_root() == tmp_path / "c" / "dedupe"
    _commit(bucket, _docs(range(2), "a"), "20261101T000000Z")
    seg = DedupeIndex.open(bucket, run_date=DAY).segments[0]
    cache = KeyCache(tmp_path / "c" / "dedupe", bucket, dedupe_segment_prefix())
    name = cache.path(seg)
    seg.etag = "another"  # the same key written again: another file
    assert name is not None and cache.path(seg) not in (None, name)
    seg.etag = ""  # no ETag listed: never cached
    assert cache.path(seg) is None


def test_concurrent_downloads_of_one_segment_leave_one_whole_file(bucket, cache):
    """Two workers' processes sharing a folder (or two runs on one worker) download the same segment at once."""
    from concurrent.futures import ThreadPoolExecutor

    _commit(bucket, _docs(range(4), "a"), "20261101T000000Z")
    for p in (cache / "dedupe").rglob("*.keys"):
        p.unlink()  # as if another worker had written the segment
    seg = DedupeIndex.open(bucket, run_date=DAY).segments[0]
    caches = [KeyCache(cache / "dedupe", bucket, dedupe_segment_prefix()) for _ in range(4)]
    with ThreadPoolExecutor(4) as pool:
        paths = list(pool.map(lambda c: c.ensure(seg), caches))
    assert len(set(paths)) == 1 and paths[0] is not None
    assert [p.name for p in paths[0].parent.iterdir()] == [paths[0].name]  # no temp file left
    assert paths[0].stat().st_size == 32 + 12 * seg.n_entries
    assert caches[0]._valid(paths[0], seg)


def test_an_unusable_cache_folder_falls_back_to_ranged_reads(bucket, cache, monkeypatch, tmp_path):
    _history(bucket)
    expected, _ = _measured(bucket)
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    monkeypatch.setenv(CACHE_ENV, str(blocker))  # every mkdir under it fails
    got, stats = _measured(bucket)
    assert got == expected and stats["downloads"] == 0 and stats["s3_bytes"] > 0
    _commit(bucket, _docs(range(50, 52), "z"), "20261101T090000Z")  # the save commits; only the cache write fails
    assert len(DedupeIndex.open(bucket, run_date=DAY).segments) == 6
