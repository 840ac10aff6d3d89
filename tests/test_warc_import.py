"""Importing web archives: CC-NEWS-shaped WARC files read from a path, the embedded S3 and an HTTP server
with range support; filters, counts, provenance (one record fetched back by offset and length),
idempotence, and a `kill -9` mid-import followed by a resume."""

from __future__ import annotations

import functools
import gzip
import http.server
import io
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import pyarrow as pa
import pytest
from warcio.archiveiterator import ArchiveIterator

from examples.sample_site.warc_archive import ArchivePage, cc_news_pages, write_archive
from pipeline.core.bucket import Bucket
from pipeline.core.paths import ROOT
from pipeline.dataset.read import iter_tables
from pipeline.dataset.warc import iter_archive
from pipeline.dataset.warc_sources import Remote, expand, fetch_range
from pipeline.flows.warc_import import ImportOptions, import_archives, lease_key, state_key
from pipeline.stages.warc_import import REJECT_SAMPLE, ImportCounts, ImportFilters, select

pytestmark = pytest.mark.timeout(180)

NAME = "ccnews"
#: cc_news_pages(3): 9 articles of three hosts + one ISO-8859-1 article, a PDF, a JSON feed, 404, 301, 500.
ARTICLES = 10


@pytest.fixture(scope="module")
def archive_dir(tmp_path_factory) -> Path:
    """The archives, written once: gzip per record with a cut last record (the 500), whole-file gzip."""
    folder = tmp_path_factory.mktemp("warc")
    write_archive(folder / "CC-NEWS-20261102-00000.warc.gz", cc_news_pages(), truncate_last=True)
    write_archive(folder / "whole.warc.gz", cc_news_pages(), compression="file")
    return folder


def _rows(settings, source: str = NAME) -> pa.Table:
    tables = list(iter_tables(source=source, settings=settings))
    return pa.concat_tables(tables) if tables else pa.table({"article_id": pa.array([], pa.string())})


# --------------------------------------------------------------------------- the reader


def test_reader_gives_offsets_that_fetch_each_record_back(tmp_path):
    path = tmp_path / "a.warc.gz"
    written = write_archive(path, cc_news_pages(1))
    data = path.read_bytes()
    with open(path, "rb") as fh:
        responses = [r for r in iter_archive(fh, str(path)) if r.response is not None]
    assert [(r.offset, r.length) for r in responses] == [(w.offset, w.length) for w in written]
    for rec in responses:
        (again,) = list(ArchiveIterator(io.BytesIO(data[rec.offset : rec.offset + rec.length])))
        assert again.rec_headers.get_header("WARC-Record-ID") == rec.response.record_id


def test_truncated_last_record_is_reported_and_a_corrupt_one_skipped(tmp_path):
    path = tmp_path / "cut.warc.gz"
    written = write_archive(path, cc_news_pages(1), truncate_last=True)
    with open(path, "rb") as fh:
        records = list(iter_archive(fh, "cut"))
    assert [r.problem for r in records if r.problem] == ["truncated"]
    assert len([r for r in records if r.response]) == len(written)
    # A record cut in the middle of the file: reported, and every record after it still read.
    data = path.read_bytes()
    bad = written[1]
    spliced = data[: bad.offset + bad.length // 2] + data[bad.offset + bad.length :]
    records = list(iter_archive(io.BytesIO(spliced), "spliced"))
    assert [r.problem for r in records if r.problem] == ["corrupt", "truncated"]
    assert len([r for r in records if r.response]) == len(written) - 1


def test_whole_file_gzip_and_uncompressed_read_the_same_responses(tmp_path):
    pages = cc_news_pages(1)
    urls = {}
    for compression in ("record", "file", "none"):
        path = tmp_path / f"{compression}.warc.gz"
        write_archive(path, pages, compression=compression)
        with open(path, "rb") as fh:
            records = list(iter_archive(fh, "x"))
        urls[compression] = [r.response.url for r in records if r.response]
        assert not [r for r in records if r.problem]
        assert all(r.compressed == (compression != "file") for r in records)
    assert urls["record"] == urls["file"] == urls["none"] == [p.url for p in pages]


def test_filters_count_every_skipped_record_by_reason(tmp_path):
    path = tmp_path / "f.warc.gz"
    pages = cc_news_pages(2)
    write_archive(path, pages)
    counts = ImportCounts()
    filters = ImportFilters(
        deny_domains=frozenset({"ledger.example"}),
        since=datetime(2026, 11, 1, tzinfo=timezone.utc),
    )
    with open(path, "rb") as fh:
        kept = [item["url"] for _, item in select(iter_archive(fh, "f"), filters, counts, NAME)]
    assert counts.skipped == {
        "status": 3,  # 404, 301, 500
        "mime_type": 2,  # the PDF and the JSON feed
        "domain_denied": 2,  # news.ledger.example: a subdomain of a denied domain
        "before_since": 2,  # gazette's pages are two days old
    }
    assert kept == [p.url for p in pages[:2]] + [pages[-6].url]  # courier's two and the ISO-8859-1 page
    allow = ImportFilters(allow_domains=frozenset({"courier.example"}))
    counts = ImportCounts()
    with open(path, "rb") as fh:
        assert len(list(select(iter_archive(fh, "f"), allow, counts, NAME))) == 2
    assert counts.skipped["domain_not_allowed"] == 5


def test_rejects_are_a_bounded_sample():
    counts = ImportCounts()
    for i in range(100):
        counts.skip("status", f"https://x.example/{i}", NAME, "import")
    assert counts.skipped["status"] == 100
    assert len(counts.samples) == 20


# --------------------------------------------------------------------------- whole imports


def _opts(settings, **kwargs) -> ImportOptions:
    return ImportOptions(name=NAME, s3=settings, remote=Remote(s3=settings), workers=2, **kwargs)


def test_import_local_archive_counts_provenance_and_idempotence(s3_settings, archive_dir):
    path = archive_dir / "CC-NEWS-20261102-00000.warc.gz"
    (summary,) = import_archives(expand([str(archive_dir / "CC-NEWS-*.warc.gz")], Remote()), _opts(s3_settings))
    counts = summary["counts"]
    assert summary["status"] == "done"
    assert counts["responses"] == 14 and counts["records"]["unreadable"] == 1
    assert counts["skipped"]["truncated"] == 1
    assert counts["skipped"]["status"] == 2 and counts["skipped"]["mime_type"] == 2
    assert counts["kept"] == ARTICLES

    table = _rows(s3_settings)
    assert table.num_rows == ARTICLES
    rows = table.to_pylist()
    assert {r["warc_key"] for r in rows} == {str(path)}
    assert all(r["fetched_at"] is not None and r["warc_record_id"] for r in rows)
    assert any("Señora Müller" in r["text"] for r in rows), "the ISO-8859-1 page decoded"
    # Provenance: the one record, fetched back by offset and length, is the row's response.
    row = rows[3]
    raw = fetch_range(row["warc_key"], row["warc_offset"], row["warc_length"])
    (record,) = list(ArchiveIterator(io.BytesIO(raw)))
    assert record.rec_headers.get_header("WARC-Record-ID") == row["warc_record_id"]
    assert record.rec_headers.get_header("WARC-Target-URI") == row["url"]
    rejects = Bucket(s3_settings).list("rejects/")
    assert rejects, "the sample of skipped records is kept"

    # Importing the same file again adds nothing.
    (again,) = import_archives(expand([str(path)], Remote()), _opts(s3_settings))
    assert again["status"] == "skipped"
    assert _rows(s3_settings).num_rows == ARTICLES


def test_reject_sample_is_capped_per_file_over_its_chunks_while_counts_stay_exact(s3_settings, tmp_path):
    articles = [p for p in cc_news_pages(2) if p.kind == "article"][:4]
    pages = []
    for i, article in enumerate(articles):  # 12 404s before each article: 48 in all, over 4 chunks of 1 page
        pages += [ArchivePage(f"https://gone.example/{i}/{n}", b"<html></html>", status=404) for n in range(12)]
        pages.append(article)
    path = tmp_path / "CC-NEWS-many-404.warc.gz"
    write_archive(path, pages)
    (summary,) = import_archives(expand([str(path)], Remote()), _opts(s3_settings, chunk_records=1))
    assert len(summary["runs"]) == 4, "one run per chunk"
    assert summary["counts"]["skipped"]["status"] == 48  # counted exactly
    bucket = Bucket(s3_settings)
    sampled = [row for key in bucket.list("rejects/") for row in bucket.iter_jsonl(key) if row["reason"] == "status"]
    assert len(sampled) == REJECT_SAMPLE  # not 20 per chunk
    assert {row["url"] for row in sampled} == {f"https://gone.example/{i}/{n}" for i in range(2) for n in range(12)} - {
        f"https://gone.example/1/{n}" for n in range(8, 12)
    }, "the file's first 20"


def test_whole_file_gzip_import_stores_no_offsets(s3_settings, archive_dir):
    (summary,) = import_archives(expand([str(archive_dir / "whole.warc.gz")], Remote()), _opts(s3_settings))
    assert summary["counts"]["kept"] == ARTICLES and "truncated" not in summary["counts"]["skipped"]
    rows = _rows(s3_settings).to_pylist()
    assert len(rows) == ARTICLES
    assert all(r["warc_offset"] is None and r["warc_length"] is None for r in rows)


class _RangeHandler(http.server.SimpleHTTPRequestHandler):
    """Static files with `Range: bytes=a-b` / `bytes=a-` answered by 206."""

    def log_message(self, *args) -> None:
        pass

    def send_head(self):  # type: ignore[no-untyped-def]
        rng = self.headers.get("Range")
        path = Path(self.translate_path(self.path))
        if not rng or not path.is_file():
            return super().send_head()
        start_s, _, end_s = rng.removeprefix("bytes=").partition("-")
        data = path.read_bytes()
        start, end = int(start_s), int(end_s) if end_s else len(data) - 1
        part = data[start : end + 1]
        self.send_response(206)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Range", f"bytes {start}-{end}/{len(data)}")
        self.send_header("Content-Length", str(len(part)))
        self.end_headers()
        return io.BytesIO(part)


@pytest.fixture
def http_server(archive_dir) -> Iterator[str]:
    handler = functools.partial(_RangeHandler, directory=str(archive_dir))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


def test_import_from_s3_glob_and_from_a_paths_listing_over_http(s3_settings, archive_dir, http_server, tmp_path):
    bucket = Bucket(s3_settings)
    src = archive_dir / "CC-NEWS-20261102-00000.warc.gz"
    bucket.put("crawl-data/CC-NEWS/2026/11/CC-NEWS-20261102-00000.warc.gz", src.read_bytes())
    uri = f"s3://{s3_settings.bucket}/crawl-data/CC-NEWS/2026/11/*.warc.gz"
    (summary,) = import_archives(expand([uri], Remote(s3=s3_settings)), _opts(s3_settings))
    assert summary["counts"]["kept"] == ARTICLES
    rows = _rows(s3_settings).to_pylist()
    assert len(rows) == ARTICLES and rows[0]["warc_key"].startswith(f"s3://{s3_settings.bucket}/crawl-data/")

    # The same archive over HTTP, named by a CC-NEWS-style paths listing: another file (URI), same pages.
    listing = tmp_path / "warc.paths.gz"
    listing.write_bytes(gzip.compress(b"CC-NEWS-20261102-00000.warc.gz\n"))
    remote = Remote(s3=s3_settings, paths_base=http_server)
    (archive,) = expand([str(listing)], remote)
    assert archive.uri == http_server + "CC-NEWS-20261102-00000.warc.gz"
    opts = ImportOptions(name="ccnews-http", s3=s3_settings, remote=remote, workers=2)
    (summary,) = import_archives([archive], opts)
    assert summary["status"] == "done" and summary["counts"]["kept"] == ARTICLES
    # Deduped across imports: the same URLs with the same texts are already stored, so nothing is added.
    assert _rows(s3_settings, "ccnews-http").num_rows == 0
    assert _rows(s3_settings).num_rows == ARTICLES
    # Provenance over HTTP: a range request returns the one record.
    row = rows[2]
    http_uri = http_server + "CC-NEWS-20261102-00000.warc.gz"
    raw = fetch_range(http_uri, row["warc_offset"], row["warc_length"], remote)
    (record,) = list(ArchiveIterator(io.BytesIO(raw)))
    assert record.rec_headers.get_header("WARC-Record-ID") == row["warc_record_id"]


def import_command(path: Path, *options: str) -> list[str]:
    """`python -m pipeline import-warc PATH --name NAME --workers 1 OPTIONS...` as a child process runs it."""
    return [sys.executable, "-m", "pipeline", "import-warc", str(path), "--name", NAME, "--workers", "1", *options]


def test_kill_9_mid_import_then_resume_stores_each_article_once(s3_settings, tmp_path):
    many = [p for p in cc_news_pages(8) if p.kind == "article"]
    path = tmp_path / "CC-NEWS-big.warc.gz"
    write_archive(path, many)
    env = {**os.environ, **s3_settings.as_env()}
    args = import_command(path, "--chunk", "3", "--lease-seconds", "4")
    proc = subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    bucket = Bucket(s3_settings)
    key = state_key(NAME, str(path))
    deadline = time.monotonic() + 150
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            got = bucket.get_with_etag(key)
            if got is not None and b'"next_chunk": 2' in got[0]:
                break
            time.sleep(0.05)
        assert proc.poll() is None, "the import finished before it could be killed"
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert bucket.get_json(key)["status"] == "running"
    # The killed importer's lease is left behind; the next importer takes the file over once it expires.
    lease = bucket.get_json(lease_key(NAME, str(path)))
    while time.time() <= lease["expires_at"]:
        time.sleep(0.2)
    done = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=150)
    assert done.returncode == 0, done.stderr[-2000:]
    state = bucket.get_json(key)
    assert state["status"] == "done" and state["attempts"] == 2
    assert "taking the file over" in done.stderr
    assert not bucket.exists(lease_key(NAME, str(path))), "released at the end"
    ids = _rows(s3_settings).column("article_id").to_pylist()
    assert len(ids) == len(set(ids)) == len(many)


# --------------------------------------------------------------------------- the DAG


def test_dag_imports_mapped_files_then_skips_them_on_a_second_run(s3_settings, archive_dir, tmp_path):
    from tests.test_dags import _conn_env, _dag_test

    env = _conn_env(tmp_path / "airflow", s3_settings)
    conf = {"sources": [str(archive_dir / "*.warc.gz")], "name": NAME, "chunk": 50}
    result, output = _dag_test(env, "2026-11-27T09:00:00+00:00", conf, dag_id="news_warc_import")
    assert result["state"] == "success", output[-4000:]
    assert result["tasks"]["import_file[0]"] == "success" and result["tasks"]["import_file[1]"] == "success"
    assert _rows(s3_settings).num_rows == ARTICLES  # two archives of the same pages: stored once
    result, output = _dag_test(env, "2026-11-27T10:00:00+00:00", conf, dag_id="news_warc_import")
    assert result["state"] == "success", output[-4000:]
    assert "'skipped': 2" in output
    assert _rows(s3_settings).num_rows == ARTICLES
