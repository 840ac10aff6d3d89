"""Seen-URL and HTTP-validator state against the real SeaweedFS (conditional writes, concurrency)."""

from __future__ import annotations

import threading

import pytest

from pipeline.core.bucket import PreconditionFailed
from pipeline.core.layout import HTTP_PREFIX, SEEN_PREFIX, http_key, seen_key, state_delta_prefix, state_shard_prefix
from pipeline.dataset.state import (
    fold_deltas,
    load_http,
    load_seen,
    merge_entries,
    record_stored,
    save_http,
    seen_lookup,
    update_json,
)

# Per test: the first test also starts SeaweedFS; a retry loop that never ends must fail.
pytestmark = pytest.mark.timeout(120)


def _row(i: int, source: str = "alpha", **extra) -> dict:
    return {
        "source": source,
        "canonical_url": f"http://a.example/{i}",
        "url": f"http://a.example/{i}?utm_source=x",
        "content_hash": f"h{i}",
        "http_etag": f'"e{i}"',
        "http_last_modified": None,
        "article_id": f"id{i}",
        **extra,
    }


def test_empty_state(bucket):
    assert load_seen(bucket, "alpha") == {}
    assert load_http(bucket, "alpha") == {}


def test_record_and_load(bucket):
    record_stored(bucket, [_row(1), _row(2), _row(3, source="beta")])
    seen = load_seen(bucket, "alpha")
    assert set(seen) == {"http://a.example/1", "http://a.example/2"}
    assert seen["http://a.example/1"]["etag"] == '"e1"'
    assert seen["http://a.example/1"]["article_id"] == "id1"
    assert seen["http://a.example/1"]["stored_at"]
    assert set(load_seen(bucket, "beta")) == {"http://a.example/3"}
    assert not bucket.exists(seen_key("alpha"))  # sharded: no single object per source
    # a commit writes one delta per source and touches no shard; a fold moves it into one shard per URL
    assert len(bucket.list(state_delta_prefix(SEEN_PREFIX, "alpha"))) == 1
    assert bucket.list(state_shard_prefix(SEEN_PREFIX, "alpha")) == []
    assert fold_deltas(bucket, SEEN_PREFIX, "alpha") == 2
    assert len(bucket.list(state_shard_prefix(SEEN_PREFIX, "alpha"))) == 2
    assert bucket.list(state_delta_prefix(SEEN_PREFIX, "alpha")) == []
    # later records merge, a newer version of the same URL replaces the entry
    record_stored(bucket, [_row(2, content_hash="new"), _row(4)])
    seen = load_seen(bucket, "alpha")
    assert set(seen) == {f"http://a.example/{i}" for i in (1, 2, 4)}
    assert seen["http://a.example/2"]["content_hash"] == "new"  # the pending delta over the folded shard
    fold_deltas(bucket, SEEN_PREFIX, "alpha")
    assert load_seen(bucket, "alpha") == seen


def test_lookup_also_by_fetched_url(bucket):
    record_stored(bucket, [{**_row(5), "canonical_url": "http://a.example/canon/5", "url": "http://a.example/5"}])
    lookup = seen_lookup(load_seen(bucket, "alpha"))
    assert "http://a.example/canon/5" in lookup and "http://a.example/5" in lookup


def test_concurrent_writers_lose_nothing(bucket):
    errors: list[BaseException] = []

    def writer(start: int) -> None:
        try:
            for i in range(start, start + 5):
                record_stored(bucket, [_row(i)])
        except BaseException as exc:  # surfaced by the assert below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(n * 100,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(load_seen(bucket, "alpha")) == 20


def test_conditional_write_detects_a_lost_race(bucket):
    key = "state/test.json"
    calls = []

    def merge(current: dict) -> dict:
        calls.append(dict(current))
        if len(calls) == 1:  # another writer sneaks in between our read and our write
            bucket.put_json(key, {"other": 1})
        current["mine"] = 1
        return current

    result = update_json(bucket, key, merge)
    assert len(calls) == 2  # the first conditional put failed and was retried
    assert result == {"other": 1, "mine": 1}
    assert bucket.get_json(key) == {"other": 1, "mine": 1}


def test_http_state_merges(bucket):
    save_http(
        bucket,
        "alpha",
        {
            "http://a.example/feed": {
                "etag": '"f1"',
                "last_modified": None,
                "links": [["http://a.example/1", "article"]],
            }
        },
    )
    save_http(bucket, "alpha", {"http://a.example/sitemap.xml": {"etag": None, "last_modified": "x", "links": []}})
    state = load_http(bucket, "alpha")
    assert set(state) == {"http://a.example/feed", "http://a.example/sitemap.xml"}
    assert state["http://a.example/feed"]["links"] == [["http://a.example/1", "article"]]
    assert not bucket.exists(http_key("alpha"))
    assert bucket.list(state_shard_prefix(HTTP_PREFIX, "alpha"))


def test_refused_pages_are_remembered_per_source(bucket):
    from pipeline.core.layout import refused_key
    from pipeline.dataset.rejects import reject
    from pipeline.dataset.state import is_refusal, load_refused, record_refused

    rejects = [
        reject("http://a.example/tag/x?utm_source=feed", "extract", "not_article:listing", source="alpha"),
        reject("http://a.example/about", "clean", "too_short", source="alpha"),
        reject("http://a.example/slow", "extract", "timeout", source="alpha"),  # a failed fetch: tried again
        reject("http://a.example/gone", "crawl", "http_404", source="alpha"),
        reject("http://b.example/nav", "extract", "navigation_only", source="beta"),
    ]
    assert is_refusal("not_article:other") and not is_refusal("timeout")
    record_refused(bucket, rejects, "20261130T100000Z")
    alpha = load_refused(bucket, "alpha")
    assert set(alpha) == {"http://a.example/tag/x", "http://a.example/about"}
    assert alpha["http://a.example/about"]["reason"] == "too_short"
    assert (
        alpha["http://a.example/about"]["run_id"] == "20261130T100000Z"
        and alpha["http://a.example/about"]["refused_at"]
    )
    assert set(load_refused(bucket, "beta")) == {"http://b.example/nav"}
    assert not bucket.exists(refused_key("alpha"))
    # a re-run of the same run id fetches its own refusals again (as with stored articles)
    assert load_refused(bucket, "alpha", exclude_run="20261130T100000Z") == {}


def test_stale_etag_on_an_existing_object_is_refused_by_the_store(bucket):
    key = "state/existing.json"
    bucket.put_json(key, {"a": 1})
    _, stale = bucket.get_with_etag(key)
    bucket.put_json(key, {"a": 2})  # another writer: the ETag we read is now stale
    with pytest.raises(PreconditionFailed):
        bucket.put_json(key, {"a": 3}, if_match=stale)
    assert bucket.get_json(key) == {"a": 2}


@pytest.mark.parametrize("rounds", range(3))  # every time, not most times: the order is forced, not timed
def test_if_match_race_on_an_existing_object_is_detected_every_time(bucket, rounds):
    """Two writers read the same version; B writes first, so A's If-Match carries a stale ETag."""
    key = f"state/seen/race-{rounds}.json"
    bucket.put_json(key, {"old": 1})
    calls: list[dict] = []

    def writer_a(current: dict) -> dict:
        calls.append(dict(current))
        if len(calls) == 1:  # writer B read the same version and commits between A's read and A's write
            merge_entries(bucket, key, {"b": 1})
        current["a"] = 1
        return current

    result = update_json(bucket, key, writer_a)
    assert calls == [{"old": 1}, {"old": 1, "b": 1}]  # A's stale put failed, A re-read B's write and retried
    assert result == bucket.get_json(key) == {"old": 1, "b": 1, "a": 1}
