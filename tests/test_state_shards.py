"""Sharded crawl state: a run reads and writes only its URLs' shards; old single objects are read and moved."""

from __future__ import annotations

import threading

import pytest

from pipeline.core.bucket import Bucket
from pipeline.core.layout import REFUSED_PREFIX, SEEN_PREFIX, refused_key, seen_key, state_delta_prefix, state_shard_key
from pipeline.dataset import state
from pipeline.dataset.state import (
    SHARDS,
    fold_deltas,
    load_refused,
    load_seen,
    open_refused,
    open_seen,
    record_stored,
    shard_of,
    update_json,
)

pytestmark = pytest.mark.timeout(120)

N = SHARDS[SEEN_PREFIX]


class CountingBucket(Bucket):
    """A Bucket that remembers which keys were read and written."""

    def __init__(self, settings) -> None:
        super().__init__(settings)
        self.reads: list[str] = []
        self.writes: list[str] = []

    def get_with_etag(self, key):
        self.reads.append(key)
        return super().get_with_etag(key)

    def put(self, key, body, **kwargs):
        self.writes.append(key)
        return super().put(key, body, **kwargs)


def _row(canonical: str, source: str = "alpha", **extra) -> dict:
    return {
        "source": source,
        "canonical_url": canonical,
        "url": canonical,
        "content_hash": "h-" + canonical,
        "http_etag": None,
        "http_last_modified": None,
        "article_id": "id-" + canonical,
        "run_id": "20261130T100000Z",
        **extra,
    }


def _urls_in_one_shard(count: int) -> list[str]:
    """`count` URLs that fall in the same seen shard."""
    target = shard_of("http://a.example/0", N)
    out, i = [], 0
    while len(out) < count:
        url = f"http://a.example/{i}"
        if shard_of(url, N) == target:
            out.append(url)
        i += 1
    return out


@pytest.fixture
def counting(s3_settings) -> CountingBucket:
    return CountingBucket(s3_settings)


def test_a_commit_writes_one_delta_and_a_fold_rewrites_only_the_shards_of_its_urls(counting):
    history = [_row(f"http://a.example/old/{i}") for i in range(300)]
    record_stored(counting, history)
    assert fold_deltas(counting, SEEN_PREFIX, "alpha") == 300
    before = set(counting.list("state/seen/alpha/"))
    assert len(before) > 200  # 300 URLs spread over many shards
    counting.reads.clear()
    counting.writes.clear()
    new = [_row(f"http://a.example/new/{i}") for i in range(3)]
    record_stored(counting, new)
    # the commit: one PUT of one new object, no shard read or written, whatever the history
    assert len(counting.writes) == 1 and counting.writes[0].startswith(state_delta_prefix(SEEN_PREFIX, "alpha"))
    assert counting.reads == []
    assert len(load_seen(counting, "alpha")) == 303  # readers see the pending delta
    counting.reads.clear()
    counting.writes.clear()
    assert fold_deltas(counting, SEEN_PREFIX, "alpha") == 3
    touched = {state_shard_key(SEEN_PREFIX, "alpha", shard_of(r["canonical_url"], N)) for r in new}
    assert set(counting.writes) == touched
    delta_reads = {k for k in counting.reads if k.startswith(state_delta_prefix(SEEN_PREFIX, "alpha"))}
    assert len(delta_reads) == 1
    assert set(counting.reads) - {seen_key("alpha")} - delta_reads == touched  # plus one look for an old object
    assert counting.list(state_delta_prefix(SEEN_PREFIX, "alpha")) == []
    assert len(load_seen(counting, "alpha")) == 303


def test_a_writer_folds_the_oldest_deltas_past_the_pending_limit(bucket, monkeypatch):
    monkeypatch.setattr(state, "MAX_PENDING", 2)
    for i in range(4):
        record_stored(bucket, [_row(f"http://a.example/{i}")])
    pending = bucket.list(state_delta_prefix(SEEN_PREFIX, "alpha"))
    assert len(pending) == 2
    in_shards = {k for key in bucket.list("state/seen/alpha/") for k in bucket.get_json(key)}
    assert in_shards == {"http://a.example/0", "http://a.example/1"}  # the two oldest were folded
    assert set(load_seen(bucket, "alpha")) == {f"http://a.example/{i}" for i in range(4)}


def test_a_crawl_lookup_reads_only_the_shard_of_its_url(counting):
    record_stored(counting, [_row(f"http://a.example/{i}") for i in range(200)])
    fold_deltas(counting, SEEN_PREFIX, "alpha")
    view = open_seen(counting, "alpha")
    counting.reads.clear()
    assert "http://a.example/7" in view
    assert view["http://a.example/7"]["article_id"] == "id-http://a.example/7"
    assert "http://a.example/never" not in view
    assert view.get("http://a.example/never") is None
    shards = {
        state_shard_key(SEEN_PREFIX, "alpha", shard_of(u, N)) for u in ("http://a.example/7", "http://a.example/never")
    }
    assert set(counting.reads) - {seen_key("alpha")} == shards
    assert view.shards_read == len(shards)
    counting.reads.clear()
    assert "http://a.example/7" in view  # cached: no second read
    assert counting.reads == []
    # prefetch reads the missing shards of a batch of discovered URLs at once
    urls = [f"http://a.example/{i}" for i in range(50)]
    read = view.prefetch(urls)
    assert read == len(
        {shard_of(u, N) for u in urls} - {shard_of(u, N) for u in ("http://a.example/7", "http://a.example/never")}
    )
    counting.reads.clear()
    assert all(u in view for u in urls) and counting.reads == []


def test_view_leaves_out_the_run_itself_and_finds_fetched_urls(bucket):
    record_stored(
        bucket,
        [
            _row("http://a.example/canon/5", url="http://a.example/5", run_id="20261130T100000Z"),
            _row("http://a.example/6", run_id="20261201T100000Z"),
        ],
    )
    view = open_seen(bucket, "alpha")
    assert "http://a.example/canon/5" in view
    assert view["http://a.example/5"]["article_id"] == "id-http://a.example/canon/5"  # by the fetched URL
    assert set(load_seen(bucket, "alpha")) == {"http://a.example/canon/5", "http://a.example/6"}  # no aliases
    rerun = open_seen(bucket, "alpha", exclude_run="20261130T100000Z")
    assert "http://a.example/canon/5" not in rerun and "http://a.example/5" not in rerun
    assert "http://a.example/6" in rerun


def test_single_object_state_is_read_and_moved_into_shards_on_first_fold(bucket):
    old = {
        f"http://a.example/{i}": {"url": f"http://a.example/{i}", "stored_at": "2026-11-01T00:00:00+00:00"}
        for i in range(40)
    }
    old["http://a.example/canon"] = {"url": "http://a.example/fetched", "stored_at": "2026-11-01T00:00:00+00:00"}
    bucket.put_json(seen_key("alpha"), old)
    view = open_seen(bucket, "alpha")
    assert "http://a.example/3" in view and "http://a.example/fetched" in view  # read before any migration
    assert load_seen(bucket, "alpha") == old
    # a newer entry already in a shard (another writer got there first) must survive the move
    newer = _row("http://a.example/1", content_hash="newer")
    bucket.put_json(state_shard_key(SEEN_PREFIX, "alpha", shard_of("http://a.example/1", N)), {})
    record_stored(bucket, [newer])
    assert bucket.exists(seen_key("alpha"))  # a commit only writes its delta
    assert load_seen(bucket, "alpha")["http://a.example/1"]["content_hash"] == "newer"
    fold_deltas(bucket, SEEN_PREFIX, "alpha")
    assert not bucket.exists(seen_key("alpha"))
    seen = load_seen(bucket, "alpha")
    assert set(seen) == set(old)
    assert seen["http://a.example/1"]["content_hash"] == "newer"
    assert seen["http://a.example/2"] == old["http://a.example/2"]
    view = open_seen(bucket, "alpha")
    assert "http://a.example/fetched" in view and "http://a.example/39" in view


def test_refused_single_object_is_still_read(bucket):
    entry = {"url": "http://a.example/tag/x", "reason": "too_short", "refused_at": "2026-11-01T00:00:00Z"}
    bucket.put_json(refused_key("alpha"), {"http://a.example/tag/x": entry})
    assert open_refused(bucket, "alpha")["http://a.example/tag/x"] == entry
    assert load_refused(bucket, "alpha") == {"http://a.example/tag/x": entry}
    assert not bucket.list(f"{REFUSED_PREFIX}alpha/")  # reading moves nothing


def test_three_concurrent_runs_and_folds_lose_no_entry(bucket):
    """Three overlapping commits (their URLs in one shard) while two folds run: every entry arrives."""
    urls = _urls_in_one_shard(30)
    errors: list[BaseException] = []

    def guarded(fn, *args) -> None:
        try:
            fn(*args)
        except BaseException as exc:  # surfaced by the assert below
            errors.append(exc)

    def run(part: list[str]) -> None:
        for url in part:
            record_stored(bucket, [_row(url)])

    def folder() -> None:
        for _ in range(5):
            fold_deltas(bucket, SEEN_PREFIX, "alpha")

    threads = [threading.Thread(target=guarded, args=(run, urls[n::3])) for n in range(3)]
    threads += [threading.Thread(target=guarded, args=(folder,)) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert set(load_seen(bucket, "alpha")) == set(urls)  # shards and pending deltas together
    fold_deltas(bucket, SEEN_PREFIX, "alpha")
    assert bucket.list("state/seen/alpha/") == [state_shard_key(SEEN_PREFIX, "alpha", shard_of(urls[0], N))]
    assert bucket.list(state_delta_prefix(SEEN_PREFIX, "alpha")) == []
    assert set(bucket.get_json(state_shard_key(SEEN_PREFIX, "alpha", shard_of(urls[0], N)))) == set(urls)


def test_a_delta_folded_while_a_crawl_reads_is_found_in_its_shard(bucket, monkeypatch):
    record_stored(bucket, [_row("http://a.example/1")])
    view = open_seen(bucket, "alpha")
    real = state._load

    def load(b, key):  # the crawl listed the delta; a fold moves it before the crawl reads it
        if key.startswith(state_delta_prefix(SEEN_PREFIX, "alpha")):
            monkeypatch.setattr(state, "_load", real)
            fold_deltas(bucket, SEEN_PREFIX, "alpha")
        return real(b, key)

    monkeypatch.setattr(state, "_load", load)
    assert "http://a.example/1" in view


def test_forced_if_match_race_on_a_shard_is_retried(bucket):
    first, second, third = _urls_in_one_shard(3)
    record_stored(bucket, [_row(first)])
    fold_deltas(bucket, SEEN_PREFIX, "alpha")
    key = state_shard_key(SEEN_PREFIX, "alpha", shard_of(first, N))
    calls: list[set] = []

    def writer_a(current: dict) -> dict:
        calls.append(set(current))
        if len(calls) == 1:  # writer B folds into the same shard between A's read and A's write
            record_stored(bucket, [_row(second)])
            fold_deltas(bucket, SEEN_PREFIX, "alpha")
        current[third] = {"url": third, "stored_at": "2026-11-30T00:00:00+00:00"}
        return current

    update_json(bucket, key, writer_a)
    assert calls == [{first}, {first, second}]  # A's If-Match failed; A re-read B's write and retried
    assert set(load_seen(bucket, "alpha")) == {first, second, third}


def test_prune_rewrites_only_shards_with_expired_entries(counting):
    from pipeline.flows.maintenance import prune_seen_state

    record_stored(counting, [_row(f"http://a.example/{i}", ingested_at="2026-11-20T00:00:00+00:00") for i in range(30)])
    old_url = "http://a.example/old"
    record_stored(counting, [_row(old_url, ingested_at="2026-07-01T00:00:00+00:00")])
    fold_deltas(counting, SEEN_PREFIX, "alpha")
    counting.writes.clear()
    assert prune_seen_state(counting, "2026-11-27", retention_days=90) == {"alpha": 1}
    assert counting.writes == [state_shard_key(SEEN_PREFIX, "alpha", shard_of(old_url, N))]
    assert old_url not in load_seen(counting, "alpha") and len(load_seen(counting, "alpha")) == 30
    counting.writes.clear()
    assert prune_seen_state(counting, "2026-11-27", retention_days=90) == {"alpha": 0}
    assert counting.writes == []


def test_prune_folds_pending_deltas_first(bucket):
    from pipeline.dataset.rejects import reject
    from pipeline.dataset.state import record_refused
    from pipeline.flows.maintenance import prune_refused_state, prune_seen_state

    record_stored(bucket, [_row("http://a.example/old", ingested_at="2026-07-01T00:00:00+00:00")])
    record_stored(bucket, [_row("http://a.example/new", ingested_at="2026-11-20T00:00:00+00:00")])
    record_refused(bucket, [reject("http://a.example/tag", "extract", "too_short", source="alpha")], "r1")
    assert prune_seen_state(bucket, "2026-11-27", retention_days=90) == {"alpha": 1}
    assert bucket.list(state_delta_prefix(SEEN_PREFIX, "alpha")) == []
    assert set(load_seen(bucket, "alpha")) == {"http://a.example/new"}
    prune_refused_state(bucket, "2026-11-27")
    assert bucket.list(state_delta_prefix(REFUSED_PREFIX, "alpha")) == []
    assert set(load_refused(bucket, "alpha")) == {"http://a.example/tag"}
