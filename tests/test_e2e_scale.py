"""Memory flat with run size (#19 item 5): the run's pages pass through bounded pieces, and none is lost.

* a crawl faster than extraction: the WARC tail hands its backlog out a few records at a time, in order;
* the store stage reads its file in blocks, twice (sources and row count first, then the rows), Arrow
  and the per-record path mixed in one file, repeats dropped once;
* a whole `run_once` whose tail reads a few kB at a time stores or rejects every article page it archived,
  and leaves no local spool behind.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from benchmarks.bench_store import generate_articles
from pipeline.core.context import RunContext
from pipeline.core.layout import deduped_key
from pipeline.core.paths import var_dir
from pipeline.dataset import warc as warc_module
from pipeline.dataset.read import read_articles
from pipeline.dataset.rejects import read_rejects
from pipeline.dataset.warc import RotatingWarcWriter, WarcTail, read_warc, run_warc_keys
from pipeline.flows.ingest import run_once
from pipeline.stages import store as store_module
from pipeline.stages.store import store_stage

RUN = "20261201T010000Z"
OUTLETS = ["the-daily-courier", "metro-herald"]


def _page(i: int, size: int = 600) -> bytes:
    # Incompressible enough (a counter in every line) that a few records pass the tail's byte cap.
    return (
        "<html><body>" + "".join(f"<p>page {i} line {n}</p>" for n in range(size // 20)) + "</body></html>"
    ).encode()


def test_the_tail_hands_out_a_backlog_in_pieces_in_file_order(tmp_path):
    folder = tmp_path / "spool"
    writer = RotatingWarcWriter(
        "raw/x/", "x", lambda path, key: None, local_dir=folder, max_bytes=6_000, keep_local=True
    )
    urls = [f"https://example.org/news/{i}" for i in range(40)]
    for i, url in enumerate(urls):
        # one record far larger than the cap: it is read all the same
        writer.write(
            url=url, status=200, headers=[("Content-Type", "text/html")], body=_page(i, 40_000 if i == 7 else 600)
        )
    writer.close()
    assert len(list(folder.glob("*.warc.gz"))) > 2  # rotated: the backlog spans files

    tail = WarcTail(folder, "raw/x/", max_bytes=1_500)
    polls: list[list[str]] = []
    while True:
        polls.append([r.url for r in tail.poll()])
        if not tail.behind:
            break
    assert [u for got in polls for u in got] == urls  # every record once, in file order
    assert len(polls) > 5 and max(len(got) for got in polls) < len(urls) // 2
    assert tail.fully_read() and tail.poll() == []


def test_work_files_stream_through_a_local_file(bucket):
    rows = [{"n": i, "text": "é" * i} for i in range(50)]
    for key in ("work/x/rows.jsonl.gz", "work/x/rows.jsonl"):
        with bucket.jsonl_upload(key) as out:
            for row in rows:
                out.write(row)
        assert out.rows == 50
        assert list(bucket.iter_jsonl(key)) == rows
    with pytest.raises(RuntimeError), bucket.jsonl_upload("work/x/failed.jsonl.gz") as out:
        out.write(rows[0])
        raise RuntimeError("the stage failed half-way")
    assert not bucket.exists("work/x/failed.jsonl.gz")  # nothing half-written is left for the next step


def test_the_store_stage_reads_its_file_in_blocks_and_keeps_every_article_once(s3_settings, bucket, monkeypatch):
    monkeypatch.setattr(store_module, "JSON_BLOCK_BYTES", 8_192)  # several blocks, several tables
    ctx = RunContext(RUN, s3=s3_settings)
    recs = generate_articles(60, words=10)
    recs[45]["word_count"] = 12.5  # pyarrow.json refuses it: the per-record path takes over from there
    repeat = dict(recs[5])  # an article the run met twice: stored once
    bucket.put_jsonl(deduped_key(RUN), [*recs[:30], repeat, *recs[30:]])
    store_stage(ctx, deduped_key(RUN), max_rows_per_file=7)
    got = [
        r["article_id"] for r in read_articles(settings=s3_settings, run_id=RUN, columns=["article_id"], as_="records")
    ]
    assert sorted(got) == sorted(r["article_id"] for r in recs)
    assert {r["word_count"] for r in read_articles(settings=s3_settings, run_id=RUN, as_="records")} >= {12}


def test_a_run_whose_tail_reads_a_few_kb_at_a_time_loses_no_page(s3_settings, sources_file, sample_site, monkeypatch):
    monkeypatch.setattr(warc_module, "POLL_MAX_BYTES", 4_096)  # the crawl is "behind" at almost every poll
    sample_site.set_epoch(0)
    ctx = RunContext(run_id=RUN, s3=s3_settings, sources_path=sources_file)
    spools_before = _spools()
    report = run_once(ctx, only_sources=OUTLETS)
    assert report["failed_sources"] == {}
    archived = {
        rec.url
        for key in run_warc_keys(ctx.bucket, RUN)
        for rec in read_warc(ctx.bucket, key)
        if rec.kind == "article" and 200 <= rec.status < 300
    }
    stored = {r["url"] for r in read_articles(settings=s3_settings, run_id=RUN, columns=["url"], as_="records")}
    rejected = {r["url"] for r in read_rejects(ctx) if r["stage"] in ("extract", "clean")}
    assert len(archived) >= 2 * 10 and report["articles_stored"] >= 2 * 10
    assert archived == stored | rejected  # every archived article page ended stored or rejected
    assert _spools() - spools_before == set()  # the run's spools are gone


def _spools() -> set[Path]:
    """The spool folders in the runtime folder (other tests' runs share it)."""
    return {p for p in Path(var_dir()).glob("warc-*") if os.path.isdir(p)}
