"""The store stage against the real SeaweedFS: one Delta transaction per run, replaced by run AND source."""

from __future__ import annotations

import io
import json
import threading
from datetime import datetime, timedelta, timezone

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from benchmarks.bench_store import generate_articles
from pipeline.core.context import RunContext
from pipeline.core.errors import StorageError
from pipeline.core.layout import deduped_key
from pipeline.dataset import delta
from pipeline.dataset.read import read_articles, table_version
from pipeline.dataset.schema import ARTICLE_SCHEMA, SCHEMA_VERSION
from pipeline.stages.store import checkpoint, optimize_day, store_articles, store_stage, vacuum

RUN = "20261127T060000Z"
SOURCES = ["chronicle", "daily-planet", "gazette", "tribune", "wire-service"]  # generate_articles' sources


def _ids(settings, **kw) -> list[str]:
    return sorted(read_articles(settings=settings, columns=["article_id"], **kw).column("article_id").to_pylist())


def _of(recs, *sources) -> list[dict]:
    return [r for r in recs if r["source"] in sources]


def _aids(recs) -> list[str]:
    return sorted(r["article_id"] for r in recs)


def test_a_run_is_one_commit_with_the_schema_partitioned_by_day(s3_settings, bucket):
    recs = generate_articles(250, words=40)
    key = store_articles(RunContext(RUN, s3=s3_settings), recs)
    assert key == delta.commit_key(1) and bucket.exists(key)  # version 0 created the table
    entries = [json.loads(line) for line in bucket.get(key).decode().splitlines()]
    created = [json.loads(line) for line in bucket.get(delta.commit_key(0)).decode().splitlines()]
    info = next(e["commitInfo"] for e in entries if "commitInfo" in e)
    assert info["news_ingest.run_id"] == RUN and info["news_ingest.schema_version"] == str(SCHEMA_VERSION)
    assert json.loads(info["news_ingest.sources"]) == SOURCES
    meta = next(e["metaData"] for e in created if "metaData" in e)
    assert meta["partitionColumns"] == ["dt"] and meta["configuration"]["delta.enableChangeDataFeed"] == "true"
    adds = [e["add"] for e in entries if "add" in e]
    assert adds and all(a["path"].startswith("dt=2026-11-27/") for a in adds)
    body = bucket.get(f"articles/{adds[0]['path']}")
    assert pq.ParquetFile(io.BytesIO(body)).metadata.row_group(0).column(0).compression == "ZSTD"
    table = read_articles(settings=s3_settings)
    assert table.schema.equals(ARTICLE_SCHEMA, check_metadata=False) and table.num_rows == 250
    row = table.filter(pa.compute.equal(table["article_id"], recs[0]["article_id"])).to_pylist()[0]
    assert row["run_id"] == RUN and row["schema_version"] == SCHEMA_VERSION
    assert row["ingested_at"] == datetime(2026, 11, 27, 6, tzinfo=timezone.utc)  # the run's clock
    assert row["removed"] == [{"rule": "see-also", "text": "See also: another headline"}]


def test_rerunning_one_source_replaces_only_that_source(s3_settings):
    """Issue #17's data loss: `run --run-id R --source X` once replaced the whole run with X's rows."""
    recs = generate_articles(100, words=10)
    ctx = RunContext(RUN, s3=s3_settings)
    store_articles(ctx, recs)
    again = generate_articles(7, seed=5, words=10)
    for r in again:
        r["source"] = "gazette"
    store_articles(ctx, again, sources=["gazette"])
    want = _aids([r for r in recs if r["source"] != "gazette"] + again)
    assert _ids(s3_settings) == want
    assert _ids(s3_settings, source="gazette") == _aids(again)
    # A source the re-run covers but which yields nothing now loses its rows of this run.
    store_articles(ctx, [], sources=["tribune"])
    assert _ids(s3_settings) == _aids([r for r in recs if r["source"] not in ("gazette", "tribune")] + again)


def test_whole_rerun_replaces_the_run_never_doubles_and_leaves_other_runs(s3_settings):
    other = RunContext("20261127T120000Z", s3=s3_settings)
    store_articles(other, generate_articles(10, seed=3, words=10))
    ctx = RunContext(RUN, s3=s3_settings)
    first = generate_articles(60, words=10)
    store_articles(ctx, first)
    store_articles(ctx, first)  # a retried task: same rows, not doubled
    assert _ids(s3_settings, run_id=RUN) == _aids(first)
    second = generate_articles(40, seed=1, words=10)
    store_articles(ctx, second, sources=SOURCES)
    assert _ids(s3_settings, run_id=RUN) == _aids(second)
    assert _ids(s3_settings, run_id=other.run_id) == _aids(generate_articles(10, seed=3, words=10))


def test_repeated_article_ids_in_one_run_are_stored_once(s3_settings, bucket):
    recs = generate_articles(20, words=10)
    key = store_articles(RunContext(RUN, s3=s3_settings), recs + recs[:3])
    info = json.loads(bucket.get(key).decode().splitlines()[0])["commitInfo"]
    assert info["news_ingest.repeats_dropped"] == "3" and info["news_ingest.rows"] == "20"
    assert _ids(s3_settings) == _aids(recs)


def test_records_without_id_fail_before_anything_is_visible(s3_settings):
    store_articles(RunContext(RUN, s3=s3_settings), generate_articles(5, words=10))
    recs = generate_articles(30, seed=1, words=10)
    recs[25]["article_id"] = None
    with pytest.raises(ValueError, match="article_id"):
        store_articles(RunContext(RUN, s3=s3_settings), recs, max_rows_per_file=10)
    assert table_version(s3_settings) == 1
    assert _ids(s3_settings) == _aids(generate_articles(5, words=10))


def test_concurrent_commits_of_different_runs_all_land(s3_settings):
    store_articles(RunContext("20261127T000000Z", s3=s3_settings), generate_articles(3, seed=99, words=5))
    runs = [f"20261127T0{i}0000Z" for i in range(1, 7)]
    barrier = threading.Barrier(len(runs))
    errors: list[BaseException] = []

    def commit(run: str, seed: int) -> None:
        barrier.wait()
        try:
            store_articles(RunContext(run, s3=s3_settings), generate_articles(20, seed=seed, words=5))
        except BaseException as exc:  # collected: asserted below
            errors.append(exc)

    threads = [threading.Thread(target=commit, args=(run, i)) for i, run in enumerate(runs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert table_version(s3_settings) == 1 + len(runs)
    for i, run in enumerate(runs):
        assert _ids(s3_settings, run_id=run) == _aids(generate_articles(20, seed=i, words=5))


def test_concurrent_commits_of_one_run_never_double(s3_settings):
    barrier = threading.Barrier(2)
    outcomes: list[object] = []

    def commit(seed: int) -> None:
        barrier.wait()
        try:
            outcomes.append(store_articles(RunContext(RUN, s3=s3_settings), generate_articles(15, seed=seed, words=5)))
        except StorageError as exc:
            outcomes.append(exc)

    threads = [threading.Thread(target=commit, args=(seed,)) for seed in (1, 2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [o for o in outcomes if isinstance(o, StorageError)] == []  # the loser of a conflict commits again
    assert len(delta.run_commits(s3_settings, RUN)) == 2
    got = _ids(s3_settings, run_id=RUN)
    assert got in (_aids(generate_articles(15, seed=1, words=5)), _aids(generate_articles(15, seed=2, words=5)))


def test_a_commit_that_loses_to_a_commit_of_the_same_run_is_written_again_on_top(s3_settings, monkeypatch, caplog):
    """The race forced: another commit of the run's rows lands after this one opened the table."""
    first, second = generate_articles(12, seed=1, words=5), generate_articles(9, seed=2, words=5)
    real_open = delta.open_table
    opened: list[int] = []

    def open_then_let_another_commit(settings, *args):
        table = real_open(settings, *args)
        opened.append(1)
        if len(opened) == 2:  # commit_run's own open (after ensure_table's): the other run commits now
            monkeypatch.setattr(delta, "open_table", real_open)
            store_articles(RunContext(RUN, s3=s3_settings), second)
            monkeypatch.setattr(delta, "open_table", open_then_let_another_commit)
        return table

    monkeypatch.setattr(delta, "open_table", open_then_let_another_commit)
    with caplog.at_level("WARNING", logger="pipeline.stages.store"):
        key = store_articles(RunContext(RUN, s3=s3_settings), first)
    monkeypatch.setattr(delta, "open_table", real_open)
    assert any("committing again" in r.getMessage() and "concurrent commit" in r.getMessage() for r in caplog.records)
    versions = delta.run_commits(s3_settings, RUN)
    assert len(versions) == 2 and delta.version_of_key(key) == versions[-1]  # it landed after the other
    assert _ids(s3_settings, run_id=RUN) == _aids(first)  # the later commit replaced the other's rows, once each


def test_store_stage_reads_jsonl_and_covers_the_given_sources(s3_settings, bucket):
    ctx = RunContext(RUN, s3=s3_settings)
    old = generate_articles(30, seed=4, words=10)
    store_articles(ctx, old)
    recs = _of(generate_articles(30, words=10), "gazette")
    bucket.put_jsonl(deduped_key(RUN), recs)
    key = store_stage(ctx, deduped_key(RUN), sources=["gazette", "tribune"])
    assert delta.version_of_key(key) == 2
    assert _ids(s3_settings) == _aids(_of(old, "chronicle", "daily-planet", "wire-service") + recs)


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


def test_arrow_input_matches_record_input(s3_settings):
    recs = generate_articles(50, words=10)
    store_articles(RunContext(RUN, s3=s3_settings), recs)
    from_records = read_articles(settings=s3_settings).sort_by("article_id")
    table = pa.Table.from_pylist(recs + recs[:5])  # timestamps as text, extra column, repeated ids
    store_articles(RunContext(RUN, s3=s3_settings), table, max_rows_per_file=20)
    assert read_articles(settings=s3_settings).sort_by("article_id").equals(from_records)


def test_change_feed_carries_replacements(s3_settings):
    ctx = RunContext(RUN, s3=s3_settings)
    first = generate_articles(20, words=10)
    store_articles(ctx, first)
    seen = table_version(s3_settings)
    again = _of(generate_articles(20, seed=7, words=10), "gazette")
    store_articles(ctx, again, sources=["gazette"])
    feed = delta.changes(s3_settings, since_version=seen, columns=["article_id", "source"])
    inserted = sorted(r["article_id"] for r in feed.to_pylist() if r["_change_type"] == "insert")
    deleted = sorted(r["article_id"] for r in feed.to_pylist() if r["_change_type"] == "delete")
    assert inserted == _aids(again) and deleted == _aids(_of(first, "gazette"))
    assert set(feed.column("_commit_version").to_pylist()) == {seen + 1}
    assert _ids(s3_settings, since_version=seen) == _aids(again)
    assert _ids(s3_settings, since_version=seen + 1) == []
    assert _ids(s3_settings, since_version=0) == _aids(_of(first, *SOURCES[:2], *SOURCES[3:]) + again)
    assert delta.changes(s3_settings, since_version=5).num_rows == 0


def test_optimize_vacuum_and_checkpoint(s3_settings, bucket):
    for i in range(4):
        store_articles(RunContext(f"20261127T0{i}0000Z", s3=s3_settings), generate_articles(25, seed=i, words=10))
    before = read_articles(settings=s3_settings).sort_by("article_id")
    version = table_version(s3_settings)
    metrics = optimize_day(s3_settings, "2026-11-27")
    assert metrics["numFilesRemoved"] >= 4 and metrics["numFilesAdded"] == 1
    assert read_articles(settings=s3_settings).sort_by("article_id").equals(before)
    # OPTIMIZE changes files, not rows: nothing new for an incremental reader.
    assert read_articles(settings=s3_settings, since_version=version).num_rows == 0
    with pytest.raises(ValueError, match="7 days"):
        vacuum(s3_settings, retention=timedelta(days=1))
    assert vacuum(s3_settings) == []  # the replaced files are younger than 7 days: kept for time travel
    assert checkpoint(s3_settings) == version + 1
    assert any(k.endswith(".checkpoint.parquet") for k in bucket.list(delta.DELTA_LOG_PREFIX))
    with pytest.raises(ValueError):
        optimize_day(s3_settings, "../etc")


def test_no_credentials_in_the_delta_log(s3_settings, bucket):
    store_articles(RunContext(RUN, s3=s3_settings), generate_articles(10, words=5))
    optimize_day(s3_settings, "2026-11-27")
    checkpoint(s3_settings)
    for key in bucket.list(delta.DELTA_LOG_PREFIX):
        body = bucket.get(key)
        assert s3_settings.secret_access_key.encode() not in body
        assert s3_settings.access_key_id.encode() not in body


def test_a_data_file_without_a_commit_is_invisible(s3_settings, bucket):
    """What a store killed between writing its data files and committing the log leaves behind."""
    store_articles(RunContext(RUN, s3=s3_settings), generate_articles(10, words=5))
    [path] = [a.split("/articles/", 1)[1] for a in delta.open_table(s3_settings).file_uris()]
    bucket.put("articles/dt=2026-11-27/part-00000-orphan-c000.zstd.parquet", bucket.get(f"articles/{path}"))
    assert _ids(s3_settings) == _aids(generate_articles(10, words=5))
    assert delta.vacuum(s3_settings, dry_run=True) == []  # younger than 7 days: VACUUM waits, then removes it
