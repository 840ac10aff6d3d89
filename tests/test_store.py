"""The store stage against the real SeaweedFS: layout, schema, atomic and idempotent commits, compaction."""

from __future__ import annotations

import io
from datetime import datetime, timezone

import pyarrow.parquet as pq
import pytest

from benchmarks.bench_store import generate_articles
from pipeline.core.bucket import PreconditionFailed
from pipeline.core.context import RunContext
from pipeline.core.layout import (
    articles_day_prefix,
    compacted_prefix,
    deduped_key,
    part_key,
    run_articles_prefix,
    run_manifest_key,
)
from pipeline.dataset.manifest import committed_runs, compaction_manifest_key, plan_files
from pipeline.dataset.read import read_articles
from pipeline.dataset.schema import ARTICLE_SCHEMA, SCHEMA_VERSION
from pipeline.stages.store import cleanup_orphans, compact, store_articles, store_stage

RUN = "20261127T060000Z"


def _ids(settings, **kw) -> list[str]:
    return sorted(read_articles(settings=settings, columns=["article_id"], **kw).column("article_id").to_pylist())


def test_layout_schema_and_manifest(s3_settings, bucket):
    ctx = RunContext(RUN, s3=s3_settings)
    recs = generate_articles(250, words=40)
    key = store_articles(ctx, recs, max_rows_per_file=100)
    assert key == run_manifest_key(RUN)
    m = bucket.get_json(key)
    assert m["run_id"] == RUN and m["dt"] == "2026-11-27" and m["rows"] == 250
    assert m["schema_version"] == SCHEMA_VERSION and m["code_version"] and m["attempt"]
    assert m["committed_at"] == "2026-11-27T06:00:00.000000Z"  # the run's clock: deterministic
    assert [f["rows"] for f in m["files"]] == [100, 100, 50]
    keys = bucket.list("articles/")
    assert keys == sorted(f["key"] for f in m["files"])
    for k in keys:
        assert k.startswith(f"{run_articles_prefix(RUN)}part-{m['attempt']}-")
        assert k.endswith(".parquet")
    body = bucket.get(keys[0])
    meta = pq.ParquetFile(io.BytesIO(body)).metadata
    assert meta.row_group(0).column(0).compression == "ZSTD"
    table = pq.read_table(io.BytesIO(body))
    assert table.schema.equals(ARTICLE_SCHEMA, check_metadata=False)
    row = table.slice(0, 1).to_pylist()[0]
    assert row["run_id"] == RUN and row["schema_version"] == SCHEMA_VERSION
    assert row["published"] == datetime(2026, 11, 27, 6, 0, tzinfo=timezone.utc)
    assert row["removed"] == [{"rule": "see-also", "text": "See also: another headline"}]
    assert "http_etag" not in table.column_names


def test_rerun_replaces_never_duplicates(s3_settings, bucket):
    ctx = RunContext(RUN, s3=s3_settings)
    first = generate_articles(120, words=20)
    store_articles(ctx, first, max_rows_per_file=50)
    a1 = bucket.get_json(run_manifest_key(RUN))["attempt"]
    # The re-run sees partly different input (an article fixed, one gone): its output replaces the first.
    second = first[:100] + generate_articles(5, seed=7, words=20)
    store_articles(ctx, second, max_rows_per_file=50)
    m = bucket.get_json(run_manifest_key(RUN))
    assert m["attempt"] != a1 and m["replaces_attempt"] == a1
    assert _ids(s3_settings) == sorted(r["article_id"] for r in second)
    assert not [k for k in bucket.list("articles/") if a1 in k], "previous attempt's files must be deleted"
    # And a third identical run: still exactly the same rows.
    store_articles(ctx, second)
    assert _ids(s3_settings) == sorted(r["article_id"] for r in second)


def test_repeated_article_ids_in_one_run_are_stored_once(s3_settings, bucket):
    recs = generate_articles(10, words=10)
    key = store_articles(RunContext(RUN, s3=s3_settings), recs + recs[:3])
    assert bucket.get_json(key)["repeats_dropped"] == 3
    assert len(_ids(s3_settings)) == 10


def test_records_without_id_fail_before_anything_is_visible(s3_settings, bucket):
    recs = generate_articles(30, words=10)
    recs[25]["article_id"] = None
    with pytest.raises(ValueError, match="article_id"):
        store_articles(RunContext(RUN, s3=s3_settings), recs, max_rows_per_file=10)
    assert committed_runs(s3_settings) == []
    assert bucket.list("articles/") == [], "files of the failed attempt are removed"


def test_uncommitted_files_are_invisible_and_cleaned(s3_settings, bucket):
    ctx = RunContext(RUN, s3=s3_settings)
    store_articles(ctx, generate_articles(20, words=10))
    # A crashed attempt of another run: its part file is there, its manifest never written.
    orphan_run = "20261127T070000Z"
    orphan = part_key(run_articles_prefix(orphan_run), "dead00000000", 0)
    bucket.put(orphan, bucket.get(bucket.list("articles/")[0]))
    assert len(_ids(s3_settings)) == 20
    assert cleanup_orphans(s3_settings, min_age_seconds=3600) == []  # too young: may still be writing
    assert cleanup_orphans(s3_settings, min_age_seconds=0) == [orphan]
    assert not bucket.exists(orphan)
    # A crashed earlier attempt of the *same* run is removed by its next attempt.
    stale = part_key(run_articles_prefix(RUN), "dead00000000", 0)
    bucket.put(stale, b"not parquet")
    store_articles(ctx, generate_articles(20, words=10))
    assert not bucket.exists(stale)


def test_concurrent_writer_loses_cleanly(s3_settings, bucket):
    ctx = RunContext(RUN, s3=s3_settings)
    store_articles(ctx, generate_articles(10, words=10))

    def records():
        yield from generate_articles(5, seed=1, words=10)
        # Another writer commits the same run while this one is still writing.
        store_articles(RunContext(RUN, s3=s3_settings), generate_articles(7, seed=2, words=10))

    with pytest.raises(PreconditionFailed):
        store_articles(ctx, records())
    assert _ids(s3_settings) == sorted(r["article_id"] for r in generate_articles(7, seed=2, words=10))
    m = bucket.get_json(run_manifest_key(RUN))
    assert sorted(bucket.list("articles/")) == sorted(f["key"] for f in m["files"])


def test_store_stage_reads_jsonl(s3_settings, bucket):
    ctx = RunContext(RUN, s3=s3_settings)
    recs = generate_articles(30, words=10)
    deduped = deduped_key(RUN)
    bucket.put_jsonl(deduped, recs)
    key = store_stage(ctx, deduped, max_rows_per_file=10)
    assert len(bucket.get_json(key)["files"]) == 3
    assert _ids(s3_settings) == sorted(r["article_id"] for r in recs)


@pytest.mark.parametrize(
    "odd",
    [
        {"published": "2026-11-27", "fetched_at": "2026-11-27T10:00:00"},  # no zone
        {"word_count": 12.5},  # pyarrow.json refuses: record-by-record path
        {"published": "not a date"},
    ],
)
def test_store_stage_arrow_and_fallback_paths_agree(s3_settings, bucket, odd):
    ctx = RunContext(RUN, s3=s3_settings)
    recs = generate_articles(12, words=10)
    recs[3].update(odd)
    # a safety-net event, with a key the column does not hold (dropped, not fatal)
    recs[0]["warnings"] = [{"rule": "safety_net:html:widget:paywall", "message": "undone", "words": 812, "of_words": 9}]
    deduped = deduped_key(RUN)
    bucket.put_jsonl(deduped, recs)
    store_stage(ctx, deduped)
    got = {r["article_id"]: r for r in read_articles(settings=s3_settings, as_="records")}
    assert sorted(got) == sorted(r["article_id"] for r in recs)
    row = got[recs[3]["article_id"]]
    if odd.get("published") == "2026-11-27":
        assert row["published"] == datetime(2026, 11, 27, tzinfo=timezone.utc)
        assert row["fetched_at"] == datetime(2026, 11, 27, 10, tzinfo=timezone.utc)  # naive means UTC
    elif "word_count" in odd:
        assert row["word_count"] == 12
    else:
        assert row["published"] is None  # unparseable metadata is dropped, not fatal
    assert got[recs[0]["article_id"]]["published"] == datetime(2026, 11, 27, 6, tzinfo=timezone.utc)
    assert got[recs[0]["article_id"]]["removed"] == recs[0]["removed"]
    assert got[recs[0]["article_id"]]["warnings"] == [
        {"rule": "safety_net:html:widget:paywall", "message": "undone", "words": 812}
    ]
    assert got[recs[0]["article_id"]]["warnings"] == [
        {"rule": "safety_net:html:widget:paywall", "message": "undone", "words": 812}
    ]
    assert got[recs[1]["article_id"]]["warnings"] is None


def test_arrow_input_matches_record_input(s3_settings, bucket):
    import pyarrow as pa

    recs = generate_articles(50, words=10)
    store_articles(RunContext(RUN, s3=s3_settings), recs)
    from_records = read_articles(settings=s3_settings).sort_by("article_id")
    table = pa.Table.from_pylist(recs + recs[:5])  # timestamps as text, extra column, repeated ids
    key = store_articles(RunContext(RUN, s3=s3_settings), table, max_rows_per_file=20)
    assert bucket.get_json(key)["repeats_dropped"] == 5
    assert read_articles(settings=s3_settings).sort_by("article_id").equals(from_records)


def test_empty_run_commits_an_empty_manifest(s3_settings, bucket):
    ctx = RunContext(RUN, s3=s3_settings)
    store_articles(ctx, generate_articles(5, words=10))
    key = store_articles(ctx, [])
    assert bucket.get_json(key)["rows"] == 0
    assert _ids(s3_settings) == [] and bucket.list("articles/") == []


def test_compaction_is_atomic_and_survives_reruns(s3_settings, bucket):
    runs = [f"20261127T{h:02d}0000Z" for h in range(6)]
    expected: dict[str, list[str]] = {}
    for i, run in enumerate(runs):
        recs = generate_articles(40, seed=i, words=15)
        store_articles(RunContext(run, s3=s3_settings), recs, max_rows_per_file=15)
        expected[run] = [r["article_id"] for r in recs]
    # Another day is not touched.
    store_articles(RunContext("20261128T010000Z", s3=s3_settings), generate_articles(5, seed=99, words=5))
    before = read_articles(since="2026-11-27", until="2026-11-27", settings=s3_settings)
    assert len(plan_files(s3_settings, since_dt="2026-11-27", until_dt="2026-11-27")[0]) == 18

    key = compact(s3_settings, "2026-11-27", max_rows_per_file=200)
    assert key == compaction_manifest_key("2026-11-27")
    specs, _ = plan_files(s3_settings, since_dt="2026-11-27", until_dt="2026-11-27")
    assert [s.rows for s in specs] == [200, 40] and all(s.runs is None for s in specs)
    assert all(s.key.startswith(compacted_prefix("2026-11-27")) for s in specs)
    after = read_articles(since="2026-11-27", until="2026-11-27", settings=s3_settings)
    assert sorted(after.column("article_id").to_pylist()) == sorted(before.column("article_id").to_pylist())
    assert after.sort_by("article_id").equals(before.sort_by("article_id"))
    day_keys = bucket.list(articles_day_prefix("2026-11-27"))
    assert day_keys == sorted(s.key for s in specs), "the replaced small files are deleted"
    assert len(bucket.list(articles_day_prefix("2026-11-28"))) == 1

    # A run re-run after compaction: its new rows replace its compacted ones, nothing doubles.
    new = generate_articles(3, seed=50, words=5)
    store_articles(RunContext(runs[2], s3=s3_settings), new)
    expected[runs[2]] = [r["article_id"] for r in new]
    want = sorted(a for ids in expected.values() for a in ids)
    assert _ids(s3_settings, since="2026-11-27", until="2026-11-27") == want
    assert _ids(s3_settings, run_id=runs[2]) == sorted(expected[runs[2]])
    # A new compaction generation folds the re-run in; still the same rows.
    compact(s3_settings, "2026-11-27")
    comp = bucket.get_json(compaction_manifest_key("2026-11-27"))
    assert comp["generation"] >= 2 and set(comp["covers"]) == set(runs)
    assert _ids(s3_settings, since="2026-11-27", until="2026-11-27") == want


def test_compaction_rejects_bad_day(s3_settings):
    with pytest.raises(ValueError, match="YYYY-MM-DD"):
        compact(s3_settings, "../../etc")


def test_big_files_stream_as_multipart_uploads(s3_settings, bucket, monkeypatch):
    import hashlib
    import os

    import pipeline.stages.store as store

    part = 5 * 1024 * 1024  # the smallest part S3 (and SeaweedFS) accept
    monkeypatch.setattr(store, "PART_BYTES", part)
    recs = generate_articles(1100, words=5)
    for r in recs:
        r["text"] = os.urandom(12_000).hex()  # incompressible-ish: ~12 KB of Parquet per row
    key = store_articles(RunContext(RUN, s3=s3_settings), recs, max_rows_per_file=900)
    files = bucket.get_json(key)["files"]
    assert [f["rows"] for f in files] == [900, 200] and files[0]["bytes"] > 2 * part
    for f in files:
        body = bucket.get(f["key"])
        assert len(body) == f["bytes"] and hashlib.sha256(body).hexdigest() == f["sha256"]
    head = bucket.client.head_object(Bucket=s3_settings.bucket, Key=files[0]["key"])
    assert head["ETag"].strip('"').endswith(tuple(f"-{n}" for n in range(2, 100)))  # a multipart ETag
    assert _ids(s3_settings) == sorted(r["article_id"] for r in recs)
    uploads = bucket.client.list_multipart_uploads(Bucket=s3_settings.bucket)
    assert not uploads.get("Uploads"), "no multipart upload left open"


def test_a_run_is_encoded_into_concurrent_files_with_a_fixed_layout(s3_settings, bucket, monkeypatch):
    import hashlib

    import pipeline.stages.store as store

    monkeypatch.setattr(store, "ROW_GROUP_ROWS", 50)  # batches (= row groups) of 50 rows
    assert store.ENCODERS == 2
    recs = generate_articles(250, words=20)
    key = store_articles(RunContext(RUN, s3=s3_settings), recs, max_rows_per_file=1000)
    m = bucket.get_json(key)
    # Batches go to the two encoders in turn: 3 + 2 batches; lane i names its files i, i + 2, ...
    assert [(f["key"].rsplit("-", 1)[1], f["rows"]) for f in m["files"]] == [
        ("00000.parquet", 150),
        ("00001.parquet", 100),
    ]
    first_ids = []
    for f in m["files"]:
        body = bucket.get(f["key"])
        assert len(body) == f["bytes"] and hashlib.sha256(body).hexdigest() == f["sha256"]
        meta = pq.ParquetFile(io.BytesIO(body)).metadata
        assert [meta.row_group(i).num_rows for i in range(meta.num_row_groups)] == [50] * (f["rows"] // 50)
        first_ids.append(pq.read_table(io.BytesIO(body), columns=["article_id"]).column(0).to_pylist())
    assert first_ids[0] == [r["article_id"] for r in recs[0:50] + recs[100:150] + recs[200:250]]
    assert first_ids[1] == [r["article_id"] for r in recs[50:100] + recs[150:200]]
    assert _ids(s3_settings) == sorted(r["article_id"] for r in recs)

    monkeypatch.setattr(store, "ENCODERS", 1)
    key = store_articles(RunContext(RUN, s3=s3_settings), recs, max_rows_per_file=1000)
    assert [f["rows"] for f in bucket.get_json(key)["files"]] == [250]
    assert _ids(s3_settings) == sorted(r["article_id"] for r in recs)


def test_a_failing_encoder_lane_leaves_nothing_behind(s3_settings, bucket):
    from pipeline.core.bucket import StorageError
    from tests.test_s3_faults import FaultProxy, _ctx_via

    recs = generate_articles(40, words=10)
    # Every PUT of the second lane's file fails; the first lane's file uploads fine.
    with FaultProxy(s3_settings.endpoint_url, pattern=r"^PUT .*part-\w+-00001\.parquet", times=10_000) as proxy:
        with pytest.raises(StorageError, match="00001.parquet"):
            store_articles(_ctx_via(proxy, s3_settings), recs, max_rows_per_file=20)
        assert proxy.count(r"^PUT .*part-\w+-00000\.parquet") == 1
    assert committed_runs(s3_settings) == []
    assert bucket.list("articles/") == [], "the other lane's uploaded file is removed too"


def test_records_missing_fields_get_nulls(s3_settings, bucket):
    recs = generate_articles(30, words=10)
    for i, r in enumerate(recs):
        if i % 2:
            del r["image"], r["removed"], r["published"]  # the dedupe stage may omit empty fields
    store_articles(RunContext(RUN, s3=s3_settings), recs, max_rows_per_file=7)
    got = {r["article_id"]: r for r in read_articles(settings=s3_settings, as_="records")}
    assert sorted(got) == sorted(r["article_id"] for r in recs)
    for i, r in enumerate(recs):
        row = got[r["article_id"]]
        assert row["text"] == r["text"] and row["url"] == r["url"]
        if i % 2:
            assert row["image"] is None and row["removed"] is None and row["published"] is None
        else:
            assert row["image"] == r["image"] and row["removed"] == r["removed"]


def test_statistics_skip_free_text_and_codec_can_be_overridden(s3_settings, bucket):
    import pipeline.stages.store as store

    recs = generate_articles(30, words=10)
    key = store_articles(RunContext(RUN, s3=s3_settings), recs)
    meta = pq.ParquetFile(io.BytesIO(bucket.get(bucket.get_json(key)["files"][0]["key"]))).metadata
    cols = {meta.row_group(0).column(i).path_in_schema: meta.row_group(0).column(i) for i in range(meta.num_columns)}
    assert cols["published"].is_stats_set and cols["ingested_at"].is_stats_set and cols["run_id"].is_stats_set
    assert not cols["text"].is_stats_set and not cols["removed.list.element.text"].is_stats_set
    assert cols["text"].compression == "ZSTD"
    snappy = {**store.PARQUET_OPTIONS, "compression": "snappy"}
    del snappy["compression_level"]
    key = store_articles(RunContext(RUN, s3=s3_settings), recs, parquet_options=snappy)
    meta = pq.ParquetFile(io.BytesIO(bucket.get(bucket.get_json(key)["files"][0]["key"]))).metadata
    assert meta.row_group(0).column(0).compression == "SNAPPY"
    assert store.PARQUET_OPTIONS["compression"] == "zstd", "the default is untouched"
    assert _ids(s3_settings) == sorted(r["article_id"] for r in recs)


def test_records_of_other_shapes_take_the_coercing_path(s3_settings, bucket):
    recs = generate_articles(20, words=10)
    recs[2].update(word_count="17", version=2.0, title=123, published=datetime(2026, 11, 27, 8, 30))  # naive: UTC
    recs[5].update(
        fetched_at="2026-11-27T10:00:00",
        published="not a date",
        removed=[{"rule": "ads", "text": "Buy now", "extra": 1}, "junk"],
    )
    recs[7]["author"] = None
    recs[7].update(authors=("Ana Lima", None, 7), keywords="not a list", published_offset_minutes="330")
    recs[0]["warnings"] = [{"rule": "safety_net:html:widget:paywall", "message": "undone", "words": "812"}, "junk"]
    store_articles(RunContext(RUN, s3=s3_settings), recs, max_rows_per_file=10)
    got = {r["article_id"]: r for r in read_articles(settings=s3_settings, as_="records")}
    assert sorted(got) == sorted(r["article_id"] for r in recs)
    row = got[recs[2]["article_id"]]
    assert (row["word_count"], row["version"], row["title"]) == (17, 2, "123")
    assert row["published"] == datetime(2026, 11, 27, 8, 30, tzinfo=timezone.utc)
    row = got[recs[5]["article_id"]]
    assert row["fetched_at"] == datetime(2026, 11, 27, 10, tzinfo=timezone.utc) and row["published"] is None
    assert row["removed"] == [{"rule": "ads", "text": "Buy now"}]
    assert got[recs[7]["article_id"]]["author"] is None
    assert got[recs[7]["article_id"]]["authors"] == ["Ana Lima", "7"] and got[recs[7]["article_id"]]["keywords"] is None
    assert got[recs[7]["article_id"]]["published_offset_minutes"] == 330
    # The rows of the other shapes' batch-mates are converted exactly like the fast path's.
    assert got[recs[0]["article_id"]]["published"] == datetime(2026, 11, 27, 6, tzinfo=timezone.utc)
    assert got[recs[0]["article_id"]]["removed"] == recs[0]["removed"]
    assert got[recs[0]["article_id"]]["warnings"] == [
        {"rule": "safety_net:html:widget:paywall", "message": "undone", "words": 812}
    ]
    assert got[recs[1]["article_id"]]["warnings"] is None
    assert got[recs[12]["article_id"]]["text"] == recs[12]["text"]
