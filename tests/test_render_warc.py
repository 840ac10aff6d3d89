"""A rendered page in the WARC archive: the response as fetched, the DOM as a `conversion` record referring
to it, and readers (the whole file, a growing file, `reextract`) that give the rendered page."""

from __future__ import annotations

import importlib.util
import io
import os
from pathlib import Path

import pytest
from warcio.archiveiterator import ArchiveIterator

from pipeline.dataset.warc import CONVERSION_TYPE, RotatingWarcWriter, WarcTail, iter_responses

ORIGINAL = b'<html><body><div id="root"><noscript>enable JavaScript</noscript></div></body></html>'
RENDERED = "<html><body><article><p>Caf\u00e9 text the script wrote.</p></article></body></html>".encode()
URL = "http://127.0.0.1:1/news/a"


def write_one(folder: Path) -> tuple[Path, str]:
    """A WARC file with one rendered page (latin-1 original, UTF-8 DOM); (its path, the response record id)."""
    writer = RotatingWarcWriter("raw/", "t", upload=lambda path, key: None, local_dir=folder, keep_local=True)
    _, record_id = writer.write(
        url=URL,
        status=200,
        headers=[("Content-Type", "text/html; charset=iso-8859-1")],
        body=ORIGINAL,
        extra={"WARC-X-Source": "s", "WARC-X-Kind": "article"},
        conversion=RENDERED,
        conversion_extra={"WARC-X-Rendered": "chromium"},
    )
    writer.close()
    return next(folder.glob("*.warc.gz")), record_id


def test_response_record_keeps_the_original_and_conversion_refers_to_it(tmp_path):
    path, record_id = write_one(tmp_path)
    records = {}
    with open(path, "rb") as fh:
        for rec in ArchiveIterator(fh):
            records[rec.rec_type] = (rec.rec_headers, rec.content_stream().read())
    assert set(records) == {"warcinfo", "conversion", "response", "request"}
    head, body = records["response"]
    assert body == ORIGINAL and head.get_header("WARC-Record-ID") == record_id
    head, body = records["conversion"]
    assert body == RENDERED
    assert head.get_header("WARC-Refers-To") == record_id
    assert head.get_header("WARC-Target-URI") == URL
    assert head.get_header("Content-Type") == CONVERSION_TYPE


def test_reader_gives_the_rendered_page(tmp_path):
    path, record_id = write_one(tmp_path)
    [page] = list(iter_responses(io.BytesIO(path.read_bytes()), "k"))
    assert page.record_id == record_id and page.url == URL and page.kind == "article"
    assert page.body == RENDERED and page.header("Content-Type") == CONVERSION_TYPE
    assert page.text() == RENDERED.decode("utf-8")  # not read as latin-1, the original's charset
    assert page.extra.get("WARC-X-Rendered") == "chromium"


def test_growing_file_matches_a_conversion_read_in_an_earlier_poll(tmp_path):
    path, _ = write_one(tmp_path / "src")
    data = path.read_bytes()
    with open(path, "rb") as fh:
        it = ArchiveIterator(fh)
        starts = {rec.rec_type: it.get_record_offset() for rec in it}
    tail_dir = tmp_path / "tail"
    tail_dir.mkdir()
    grown = tail_dir / path.name
    tail = WarcTail(tail_dir, "raw/")
    grown.write_bytes(data[: starts["response"] + 10])  # the conversion whole, the response cut
    assert tail.poll() == []
    grown.write_bytes(data)
    [page] = tail.poll()
    assert page.body == RENDERED and tail.fully_read()


needs_browser = pytest.mark.skipif(
    not os.environ.get("CI")
    and (not os.access("/usr/bin/chromium", os.X_OK) or importlib.util.find_spec("playwright") is None),
    reason="needs Debian's chromium (scripts/install-system-packages.sh) and playwright",
)


@needs_browser
@pytest.mark.timeout(300)
def test_reextract_of_a_rendered_crawl_gives_the_same_text(s3_settings, tmp_path, modern_site):
    from examples.sample_site.modern import SCRIPT
    from pipeline.core.context import RunContext
    from pipeline.dataset.read import read_articles
    from pipeline.dataset.warc import read_warc
    from pipeline.flows.ingest import reextract_run, run_once

    run = "20261127T140000Z"
    path = modern_site.write_sources_yaml(tmp_path / "sources.yaml", outlets=[SCRIPT], download_timeout=5)
    ctx = RunContext(run_id=run, s3=s3_settings, sources_path=path)
    run_once(ctx)
    keys = [k for k in ctx.bucket.list("raw/") if k.endswith(".warc.gz") and run in k]
    assert keys
    raw = b"".join(ctx.bucket.get(k) for k in keys)
    shells = [
        rec.content_stream().read()
        for rec in ArchiveIterator(io.BytesIO(raw))
        if rec.rec_type == "response" and rec.rec_headers.get_header("WARC-X-Kind") == "article"
    ]
    assert shells and all(b"Please enable JavaScript" in s for s in shells)  # the response as fetched
    assert all(r.extra.get("WARC-X-Rendered") for k in keys for r in read_warc(ctx.bucket, k) if r.kind == "article")

    def texts() -> dict[str, str]:
        return {r["url"]: r["text"] for r in read_articles(settings=s3_settings, run_id=run, as_="records")}

    first = texts()
    expected = modern_site.expected(SCRIPT)
    assert len(first) == len(expected)
    for e in expected:
        assert e["text"].split("\n")[0] in first[e["url"]]  # the text the script wrote, not the shell
    reextract_run(ctx)
    assert texts() == first
