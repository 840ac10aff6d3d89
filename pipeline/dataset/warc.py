"""WARC 1.1 archive of raw responses: a rotating writer that uploads to the bucket, and a reader.

Every response the pipeline keeps is written here before extraction sees it,
so any run can be re-extracted from its WARC files alone. Records are gzip
compressed one by one (the standard `.warc.gz` layout), so any WARC reader
(warcio, fastwarc, pywb) can open the files and seek to a record.

Scrapy hands the body over already decompressed, so the stored HTTP headers
drop `Content-Encoding`/`Transfer-Encoding` (the originals are kept as
`X-Archive-Orig-*` headers) and `Content-Length` is set to the stored body.
"""

from __future__ import annotations

import io
import logging
import os
import tempfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import BinaryIO

from warcio.archiveiterator import ArchiveIterator
from warcio.statusandheaders import StatusAndHeaders
from warcio.warcwriter import GzippingWrapper, WARCWriter

from pipeline.core.layout import WARC_SUFFIX, raw_prefix, warc_file_name
from pipeline.text.decoding import decode_html

log = logging.getLogger(__name__)

#: Extra WARC header fields on response records (WARC 1.1 allows extension fields).
SOURCE_FIELD = "WARC-X-Source"
KIND_FIELD = "WARC-X-Kind"
DEFAULT_MAX_BYTES = 100 * 1024 * 1024  # rotate files at ~100 MiB (compressed)
_HOP_HEADERS = {"content-encoding", "transfer-encoding", "content-length"}

#: zlib level of each record's gzip member. warcio uses 9; on the 181 pages of the extraction
#: benchmark (31.5 MB of HTML) level 9 took 1.09 s for 6.13 MB, level 6 0.79 s for 6.16 MB,
#: level 3 0.35 s for 6.92 MB, level 1 0.30 s for 7.36 MB (one zlib stream, one core). The
#: crawl compresses on Scrapy's reactor thread, so level 9 was the largest CPU cost of a crawl;
#: level 3 keeps the archive within 13% of level 9's size at a third of the time.
GZIP_LEVEL = 3


class _LeveledGzip(GzippingWrapper):
    """warcio's per-record gzip member writer, at `GZIP_LEVEL` instead of its fixed 9."""

    def __init__(self, out: BinaryIO, level: int = GZIP_LEVEL):
        super().__init__(out)
        self.compressor = zlib.compressobj(level, zlib.DEFLATED, zlib.MAX_WBITS + 16)


class _WarcWriter(WARCWriter):
    """WARCWriter whose records are gzip members compressed at `GZIP_LEVEL`.

    Built with gzip=False so warcio writes plain record bytes; each record goes through its
    own `_LeveledGzip`, which makes it one gzip member, as warcio's gzip=True would.
    """

    def __init__(self, filebuf: BinaryIO, **kwargs):
        super().__init__(filebuf, gzip=False, **kwargs)

    def _write_warc_record(self, out, record):
        return super()._write_warc_record(_LeveledGzip(out), record)


@dataclass
class WarcResponse:
    """One archived HTTP response, as read back from a WARC file."""

    record_id: str
    url: str
    status: int
    headers: list[tuple[str, str]]
    body: bytes
    source: str | None = None
    kind: str | None = None
    date: str | None = None
    warc_key: str = ""
    extra: dict[str, str] = field(default_factory=dict)

    def header(self, name: str) -> str | None:
        name = name.lower()
        for key, value in self.headers:
            if key.lower() == name:
                return value
        return None

    def text(self) -> str:
        """The body decoded as `pipeline.text.decoding.decode_html` does: Scrapy's (w3lib's) order, except that
        bytes contradicting their declared charset are decoded as what they are."""
        return decode_html(self.header("Content-Type"), self.body)


class RotatingWarcWriter:
    """Writes request/response record pairs into `<prefix><basename>-NNNNN.warc.gz` files.

    Files are built in a local temp folder and uploaded when they pass `max_bytes`
    and on `close()`. `upload(path, key)` is any callable that stores a file
    (usually `Bucket.put_file`); the key of the file a record lands in is known
    when the record is written, so items can carry it.
    """

    def __init__(
        self,
        key_prefix: str,
        basename: str,
        upload,
        *,
        max_bytes: int = DEFAULT_MAX_BYTES,
        local_dir: str | Path | None = None,
        keep_local: bool = False,
    ):
        self.key_prefix = key_prefix
        self.keep_local = keep_local  # leave uploaded files in local_dir (a WarcTail reads them)
        self.basename = basename
        self.upload = upload
        self.max_bytes = max_bytes
        self.local_dir = Path(local_dir or tempfile.mkdtemp(prefix="warc-"))
        self.local_dir.mkdir(parents=True, exist_ok=True)
        self.seq = 0
        self.keys: list[str] = []
        self._fh: BinaryIO | None = None
        self._writer: WARCWriter | None = None
        self._path: Path | None = None
        self.current_key = ""

    def _open(self) -> None:
        self.seq += 1
        name = warc_file_name(self.basename, self.seq)
        self._path = self.local_dir / name
        self._fh = open(self._path, "wb")
        self._writer = _WarcWriter(self._fh, warc_version="1.1")
        self.current_key = f"{self.key_prefix}{name}"
        info = self._writer.create_warcinfo_record(name, {"software": "news-ingest", "format": "WARC File Format 1.1"})
        self._writer.write_record(info)

    def write(
        self,
        *,
        url: str,
        status: int,
        headers: list[tuple[str, str]],
        body: bytes,
        request_headers: list[tuple[str, str]] | None = None,
        method: str = "GET",
        reason: str = "",
        fetched_at: datetime | None = None,
        extra: dict[str, str] | None = None,
    ) -> tuple[str, str]:
        """Append a request + response pair; returns (warc file key, response record id)."""
        if self._writer is None:
            self._open()
        assert self._writer is not None and self._fh is not None
        date = (fetched_at or datetime.now(timezone.utc)).astimezone(timezone.utc)
        warc_date = date.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        stored = [(k, v) for k, v in headers if k.lower() not in _HOP_HEADERS]
        stored += [(f"X-Archive-Orig-{k}", v) for k, v in headers if k.lower() in _HOP_HEADERS]
        stored.append(("Content-Length", str(len(body))))
        http_headers = StatusAndHeaders(f"{status} {reason or _reason(status)}", stored, protocol="HTTP/1.1")
        warc_headers = {"WARC-Date": warc_date}
        for key, value in (extra or {}).items():
            warc_headers[key] = value
        response = self._writer.create_warc_record(
            url,
            "response",
            payload=io.BytesIO(body),
            length=len(body),
            http_headers=http_headers,
            warc_headers_dict=warc_headers,
        )
        record_id = response.rec_headers.get_header("WARC-Record-ID")
        req_headers = StatusAndHeaders(
            f"{method} {_path_of(url)} HTTP/1.1", list(request_headers or []), is_http_request=True
        )
        request = self._writer.create_warc_record(
            url,
            "request",
            payload=io.BytesIO(b""),
            length=0,
            http_headers=req_headers,
            warc_headers_dict={"WARC-Date": warc_date, "WARC-Concurrent-To": record_id},
        )
        self._writer.write_request_response_pair(request, response)
        key = self.current_key
        if self._fh.tell() >= self.max_bytes:
            self._finish()
        return key, record_id

    def _finish(self) -> None:
        if self._fh is None or self._path is None:
            return
        self._fh.close()
        self.upload(str(self._path), self.current_key)
        self.keys.append(self.current_key)
        if not self.keep_local:
            os.unlink(self._path)
        self._fh = self._writer = self._path = None

    def close(self) -> list[str]:
        """Upload the open file; returns every key written."""
        self._finish()
        return list(self.keys)


def iter_responses(stream: BinaryIO, warc_key: str = "") -> Iterator[WarcResponse]:
    """Response records of a WARC (gzip or not), in file order."""
    for record in ArchiveIterator(stream):
        if record.rec_type != "response":
            continue
        http = record.http_headers
        status = int(http.get_statuscode() or 0) if http else 0
        headers = list(http.headers) if http else []
        rec = record.rec_headers
        yield WarcResponse(
            record_id=rec.get_header("WARC-Record-ID"),
            url=rec.get_header("WARC-Target-URI"),
            status=status,
            headers=headers,
            body=record.content_stream().read(),
            source=rec.get_header(SOURCE_FIELD),
            kind=rec.get_header(KIND_FIELD),
            date=rec.get_header("WARC-Date"),
            warc_key=warc_key,
            extra={k: v for k, v in rec.headers if k.startswith("WARC-X-") and k not in (SOURCE_FIELD, KIND_FIELD)},
        )


def read_warc(bucket, warc_key: str) -> Iterator[WarcResponse]:
    """Response records of one WARC file in the bucket."""
    return iter_responses(io.BytesIO(bucket.get(warc_key)), warc_key)


def run_warc_keys(bucket, run_id: str) -> list[str]:
    """Every WARC file archived for a run, all sources, in key order."""
    return sorted(k for k in bucket.list(raw_prefix(run_id)) if k.endswith(WARC_SUFFIX))


class WarcTail:
    """The response records of the WARC files a running crawl writes into `folder`, as they land.

    The writer appends one gzip member per record and flushes it, so every complete member
    is a complete record; a member whose end is not written yet waits for the next `poll()`.
    Files are read in name order (`-00001`, `-00002`, ... as they rotate); each record's
    `warc_key` is `key_prefix` + the file name, the key the writer uploads it under.
    """

    def __init__(self, folder: str | Path, key_prefix: str):
        self.folder = Path(folder)
        self.key_prefix = key_prefix
        self.offsets: dict[str, int] = {}  # file name -> bytes consumed (complete members)

    def poll(self) -> list[WarcResponse]:
        """Response records completed since the last poll."""
        out: list[WarcResponse] = []
        for path in sorted(self.folder.glob("*.warc.gz")):
            offset = self.offsets.get(path.name, 0)
            with open(path, "rb") as fh:
                fh.seek(offset)
                data = fh.read()
            used, raw = _complete_members(data)
            if used:
                self.offsets[path.name] = offset + used
                out.extend(iter_responses(io.BytesIO(raw), self.key_prefix + path.name))
        return out

    def fully_read(self) -> bool:
        """True when every file was consumed to its end (no partial record left behind)."""
        files = list(self.folder.glob("*.warc.gz"))
        return all(self.offsets.get(p.name, 0) == p.stat().st_size for p in files)

    def keys(self) -> list[str]:
        return sorted(self.key_prefix + p.name for p in self.folder.glob("*.warc.gz"))


def _complete_members(data: bytes) -> tuple[int, bytes]:
    """(bytes of `data` made of complete gzip members, their decompressed content)."""
    used = 0
    parts: list[bytes] = []
    view = memoryview(data)  # no copy of the rest of the file per member
    while used < len(data):
        d = zlib.decompressobj(zlib.MAX_WBITS | 16)
        try:
            part = d.decompress(view[used:])
        except zlib.error:
            break  # not a complete gzip header yet
        if not d.eof:
            break  # the writer is still in this member
        parts.append(part)
        used = len(data) - len(d.unused_data)
    return used, b"".join(parts)


def _path_of(url: str) -> str:
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    return (parts.path or "/") + (f"?{parts.query}" if parts.query else "")


def _reason(status: int) -> str:
    from http import HTTPStatus

    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return ""
