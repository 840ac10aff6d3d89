"""The WARC writer: one gzip member per record at the project's level, readable by warcio."""

from __future__ import annotations

import gzip
import io
import zlib
from pathlib import Path

import pytest
from warcio.archiveiterator import ArchiveIterator

from pipeline.dataset.warc import GZIP_LEVEL, RotatingWarcWriter, iter_responses

# Per test: in-memory WARC files: seconds at most.
pytestmark = pytest.mark.timeout(30)


HTML = (
    "<html><head><title>Story</title></head><body>"
    + "<p>Ministers met on Tuesday to agree the new rules for energy markets.</p>" * 200
    + "</body></html>"
).encode()


def _members(data: bytes) -> list[bytes]:
    """Split a multi-member gzip file into its members (raw compressed bytes of each)."""
    out = []
    while data:
        d = zlib.decompressobj(zlib.MAX_WBITS | 16)
        d.decompress(data)
        assert d.eof, "truncated gzip member"
        used = len(data) - len(d.unused_data)
        out.append(data[:used])
        data = d.unused_data
    return out


def _write(tmp_path: Path, n: int) -> bytes:
    stored: dict[str, bytes] = {}
    writer = RotatingWarcWriter(
        "raw/x/", "x", lambda path, key: stored.__setitem__(key, Path(path).read_bytes()), local_dir=tmp_path
    )
    for i in range(n):
        writer.write(
            url=f"https://example.org/news/{i}",
            status=200,
            headers=[("Content-Type", "text/html; charset=utf-8"), ("Content-Encoding", "gzip")],
            body=HTML,
            request_headers=[("User-Agent", "news-ingest-test")],
        )
    writer.close()
    (data,) = stored.values()
    return data


def test_each_record_is_its_own_gzip_member_at_the_configured_level(tmp_path):
    data = _write(tmp_path, 3)
    members = _members(data)
    assert len(members) == 1 + 3 * 2  # warcinfo, then a response and its request per page
    # RFC 1952 XFL byte: 2 means "maximum compression" (level 9, warcio's own choice),
    # 4 "fastest" (level 1), 0 anything between. GZIP_LEVEL is between.
    assert 1 < GZIP_LEVEL < 9
    assert {m[8] for m in members} == {0}
    # The members decompress one by one: a reader can seek to any record.
    assert all(gzip.decompress(m).startswith(b"WARC/1.1\r\n") for m in members)


def test_warcio_reads_the_records_with_valid_digests(tmp_path):
    data = _write(tmp_path, 2)
    kinds = []
    for record in ArchiveIterator(io.BytesIO(data), check_digests=True):
        kinds.append(record.rec_type)
        body = record.content_stream().read()
        if record.rec_type == "response":
            assert body == HTML
        if record.rec_type in ("response", "request"):
            # Both digests written, and checked: `passed` is None when a record has no digest at all.
            assert record.rec_headers.get_header("WARC-Block-Digest"), record.rec_type
            assert record.rec_headers.get_header("WARC-Payload-Digest"), record.rec_type
            assert record.digest_checker.passed is True, record.digest_checker.problems
        else:
            assert record.digest_checker.passed is not False, record.digest_checker.problems
    assert kinds == ["warcinfo", "response", "request", "response", "request"]
    responses = list(iter_responses(io.BytesIO(data), "raw/x/x-00001.warc.gz"))
    assert [r.url for r in responses] == ["https://example.org/news/0", "https://example.org/news/1"]
    # Scrapy hands over decompressed bodies: the original Content-Encoding is kept aside.
    assert responses[0].header("X-Archive-Orig-Content-Encoding") == "gzip"
    assert responses[0].header("Content-Encoding") is None


def test_a_corrupted_body_fails_its_digest_check(tmp_path):
    data = _write(tmp_path, 1)
    members = _members(data)
    response = gzip.decompress(members[1])
    assert b"WARC-Payload-Digest: sha1:" in response
    broken = response.replace(b"Ministers met", b"Ministers MET", 1)  # same length, other bytes
    (record,) = [r for r in ArchiveIterator(io.BytesIO(gzip.compress(broken)), check_digests=True)]
    record.content_stream().read()
    assert record.digest_checker.passed is False


def test_tail_reads_records_as_they_are_written_across_rotations(tmp_path):
    from pipeline.dataset.warc import WarcTail

    stored: dict[str, bytes] = {}
    folder = tmp_path / "spool"
    writer = RotatingWarcWriter(
        "raw/x/",
        "x",
        lambda path, key: stored.__setitem__(key, Path(path).read_bytes()),
        local_dir=folder,
        max_bytes=1,
        keep_local=True,
    )
    tail = WarcTail(folder, "raw/x/")
    seen = []
    for i in range(3):
        key, record_id = writer.write(
            url=f"https://example.org/news/{i}", status=200, headers=[("Content-Type", "text/html")], body=HTML
        )
        got = tail.poll()
        assert [(r.url, r.record_id, r.warc_key) for r in got] == [(f"https://example.org/news/{i}", record_id, key)]
        assert got[0].body == HTML
        seen.append(key)
    assert tail.poll() == []
    writer.close()
    # Rotated at each record: three files, kept in the folder, uploaded byte for byte.
    assert seen == ["raw/x/x-00001.warc.gz", "raw/x/x-00002.warc.gz", "raw/x/x-00003.warc.gz"]
    assert tail.keys() == sorted(stored) == seen
    assert all((folder / k.rsplit("/", 1)[1]).read_bytes() == v for k, v in stored.items())
    assert tail.fully_read()


def test_tail_waits_for_a_record_whose_end_is_not_written_yet(tmp_path):
    from pipeline.dataset.warc import WarcTail

    data = _write(tmp_path / "w", 2)
    members = _members(data)
    folder = tmp_path / "spool"
    folder.mkdir()
    path = folder / "x-00001.warc.gz"
    cut = len(b"".join(members[:3])) + len(members[3]) // 2  # warcinfo, response 0, request 0, half of response 1
    path.write_bytes(data[:cut])
    tail = WarcTail(folder, "raw/x/")
    assert [r.url for r in tail.poll()] == ["https://example.org/news/0"]
    assert not tail.fully_read()
    assert tail.poll() == []  # still half a record
    path.write_bytes(data)
    assert [r.url for r in tail.poll()] == ["https://example.org/news/1"]
    assert tail.fully_read()
