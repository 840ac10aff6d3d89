"""Crawl and extract at once (`pipeline run`): the same output as extracting the WARC files
from the bucket afterwards, a fallback when the local records cannot be vouched for, and a
crawl that ends early drops its pages."""

from __future__ import annotations

from collections import Counter

import pytest

import pipeline.stages.crawl as crawl_module
from pipeline.core.context import RunContext
from pipeline.core.layout import WARC_SUFFIX, cleaned_key, extracted_prefix, raw_prefix
from pipeline.dataset.read import read_articles
from pipeline.dataset.rejects import read_rejects
from pipeline.dataset.warc import WarcTail
from pipeline.flows.ingest import run_once
from pipeline.flows.streaming import _Crawl, _write, crawl_and_extract
from pipeline.runtime.progress import reporter_for
from pipeline.stages.clean import clean_stage
from pipeline.stages.extract import extract_stage

RUN = "20261127T140000Z"
OUTLETS = ["the-daily-courier", "metro-herald"]


@pytest.fixture
def streamed(s3_settings, sources_file, sample_site):
    sample_site.set_epoch(0)
    ctx = RunContext(run_id=RUN, s3=s3_settings, sources_path=sources_file)
    with crawl_and_extract(ctx, OUTLETS, rep=reporter_for(None)) as streamed:  # its local spool goes after
        yield ctx, streamed.extracted_keys, streamed.timings, streamed.failed_sources, streamed.cleaned


def _snapshot(ctx: RunContext, keys: list[str]) -> dict:
    """Every extracted row and extract reject of the run, by key."""
    rows = {k: list(ctx.bucket.iter_jsonl(k)) for k in keys}
    rejects = [r for r in read_rejects(ctx) if r["stage"] == "extract"]
    return {"rows": rows, "rejects": sorted(rejects, key=lambda r: r["url"])}


def test_streamed_extraction_is_what_extracting_from_the_bucket_gives(streamed):
    ctx, keys, timings, failed, _ = streamed
    assert failed == {}
    warc_keys = sorted(k for k in ctx.bucket.list(raw_prefix(ctx.run_id)) if k.endswith(WARC_SUFFIX))
    assert len(keys) == len(warc_keys) >= len(OUTLETS)  # one extracted file per WARC file
    before = _snapshot(ctx, keys)
    urls = [row["url"] for rows in before["rows"].values() for row in rows]
    assert len(urls) >= 2 * 10 and len(set(urls)) == len(urls)
    assert set(timings) == {"crawl", "extract"}
    # The DAG's path: the same WARC files, read back from the bucket, one extract task each.
    again = [extract_stage(ctx, key) for key in warc_keys]
    assert sorted(again) == sorted(keys)
    assert _snapshot(ctx, keys) == before


def test_pages_cleaned_in_the_workers_are_what_the_clean_stage_makes_of_the_bucket(streamed):
    ctx, keys, _, _, cleaned = streamed
    assert sorted(cleaned) == sorted(keys)
    assert sum(len(outcomes) for outcomes in cleaned.values()) >= 2 * 10
    key = cleaned_key(ctx.run_id)

    def snapshot() -> tuple[list, list]:
        rejects = sorted((r for r in read_rejects(ctx) if r["stage"] == "clean"), key=lambda r: r["url"])
        return list(ctx.bucket.iter_jsonl(key)), rejects

    assert clean_stage(ctx, keys, cleaned=cleaned) == key
    from_workers = snapshot()
    assert clean_stage(ctx, keys) == key  # the DAG's path: every extracted file read back and cleaned here
    assert snapshot() == from_workers
    rows, rejects = from_workers
    assert len(rows) + len(rejects) == sum(len(outcomes) for outcomes in cleaned.values())
    assert all(row["content_hash"] and row["article_id"] and row["language"] for row in rows)


def test_records_that_cannot_be_vouched_for_are_extracted_again_from_the_bucket(streamed, tmp_path):
    ctx, keys, _, _, _ = streamed
    before = _snapshot(ctx, keys)
    for key in keys:
        ctx.bucket.delete([key])
    # A crawl whose local folder holds none of the files it uploaded: nothing streamed counts.
    empty = tmp_path / "empty"
    empty.mkdir()
    quiet = reporter_for()
    crawls = {name: _Crawl(name, WarcTail(empty, "raw/"), quiet.line(name)) for name in OUTLETS}
    rewritten, failed, cleaned = _write(ctx, OUTLETS, crawls, outcomes={}, workers=1, timeout=30)
    assert failed == {}
    assert cleaned == {}  # nothing was cleaned in the workers: the clean stage reads these from the bucket
    assert sorted(rewritten) == sorted(keys)
    assert _snapshot(ctx, keys) == before


def test_a_crawl_that_ends_early_loses_its_streamed_pages_to_the_next_run(
    s3_settings, sources_file, sample_site, monkeypatch
):
    victim, healthy = OUTLETS
    real = crawl_module.crawl_command

    def crawl_command(ctx, source_name, *, settings=None):
        if source_name == victim:  # Scrapy stops it after 3 items: finish reason closespider_itemcount
            settings = {**(settings or {}), "CLOSESPIDER_ITEMCOUNT": "3"}
        return real(ctx, source_name, settings=settings)

    monkeypatch.setattr(crawl_module, "crawl_command", crawl_command)
    sample_site.set_epoch(0)
    ctx = RunContext(run_id=RUN, s3=s3_settings, sources_path=sources_file)
    report = run_once(ctx, only_sources=OUTLETS)
    assert list(report["failed_sources"]) == [victim]
    assert "closespider_itemcount" in report["failed_sources"][victim]
    stored = {row["source"] for row in read_articles(settings=s3_settings, run_id=RUN).to_pylist()}
    assert stored == {healthy}
    # Its pages were archived (and streamed) before it stopped, but nothing was extracted from them.
    assert ctx.bucket.list(raw_prefix(ctx.run_id, victim))
    assert not [k for k in ctx.bucket.list(extracted_prefix(ctx.run_id)) if victim in k]


def test_run_once_with_and_without_streaming_stores_the_same_articles(
    s3_server, s3_settings, sources_file, sample_site
):
    """The one stage order, two ways to run its first steps: the same rows and rejects either way."""
    import uuid

    from pipeline.core.bucket import Bucket
    from pipeline.core.config import S3Settings
    from tests.fixtures.s3 import drop_bucket

    def stored(settings: S3Settings, *, streaming: bool) -> tuple[list, list]:
        sample_site.set_epoch(0)
        ctx = RunContext(run_id=RUN, s3=settings, sources_path=sources_file)
        report = run_once(ctx, only_sources=OUTLETS, streaming=streaming)
        assert report["failed_sources"] == {} and report["articles_stored"] >= 2 * 10
        rows = read_articles(settings=settings, run_id=RUN, columns=["url", "content_hash", "title", "dup_kind"])
        rejects = sorted((r["url"], r["stage"], r["reason"]) for r in read_rejects(ctx))
        return sorted(rows.to_pylist(), key=lambda r: r["url"]), rejects

    other = s3_settings.model_copy(update={"bucket": f"t-{uuid.uuid4().hex[:16]}"})
    Bucket(other).ensure()
    try:
        (rows, rejects), (rows_b, rejects_b) = stored(s3_settings, streaming=True), stored(other, streaming=False)
        assert rejects == rejects_b
        # Which of two syndicated copies counts as the copy follows the order the pages were fetched in,
        # which two crawls need not share: the rows are the same, and so are the duplicate counts.
        assert [{k: v for k, v in r.items() if k != "dup_kind"} for r in rows] == [
            {k: v for k, v in r.items() if k != "dup_kind"} for r in rows_b
        ]
        assert Counter(r["dup_kind"] for r in rows) == Counter(r["dup_kind"] for r in rows_b)
    finally:
        drop_bucket(Bucket(other))
