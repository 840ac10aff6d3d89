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

import errno
import fcntl
import io
import logging
import os
import shutil
import tempfile
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any, BinaryIO, cast

from warcio.archiveiterator import ArchiveIterator
from warcio.statusandheaders import StatusAndHeaders
from warcio.warcwriter import GzippingWrapper, WARCWriter

from pipeline.core.layout import WARC_SUFFIX, crawl_summaries_prefix, raw_prefix, warc_file_name
from pipeline.text.decoding import decode_html

log = logging.getLogger(__name__)

#: Extra WARC header fields on response records (WARC 1.1 allows extension fields).
SOURCE_FIELD = "WARC-X-Source"
KIND_FIELD = "WARC-X-Kind"
DEFAULT_MAX_BYTES = 100 * 1024 * 1024  # rotate files at ~100 MiB (compressed)
#: A `WarcTail` reads about this much of a file per poll (compressed; ~300 pages of ~10 kB).
POLL_MAX_BYTES = 4 * 1024 * 1024
_HOP_HEADERS = {"content-encoding", "transfer-encoding", "content-length"}
#: Content type of a `conversion` record: the DOM a browser rendered from the response it refers to.
CONVERSION_TYPE = "text/html; charset=utf-8"

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

    def _record(self, url: str, record_type: str, payload: bytes, **kwargs: Any) -> Any:
        """One warcio record of `record_type` with `payload` as its block (a file is open: `write` opened it)."""
        assert self._writer is not None
        return self._writer.create_warc_record(
            url, record_type, payload=io.BytesIO(payload), length=len(payload), **kwargs
        )

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
        conversion: bytes | None = None,
        conversion_extra: dict[str, str] | None = None,
    ) -> tuple[str, str]:
        """Append a request + response pair; returns (warc file key, response record id).

        `conversion`: the page as a browser rendered it (UTF-8 HTML), stored as a `conversion` record that
        refers to the response (`WARC-Refers-To`) and carries `conversion_extra` fields. It is written
        before the pair, so a reader of a growing file (`WarcTail`) has it by the time the response lands."""
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
        response = self._record(url, "response", body, http_headers=http_headers, warc_headers_dict=warc_headers)
        record_id = response.rec_headers.get_header("WARC-Record-ID")
        if conversion is not None:
            converted = self._record(
                url,
                "conversion",
                conversion,
                warc_content_type=CONVERSION_TYPE,
                warc_headers_dict={"WARC-Date": warc_date, "WARC-Refers-To": record_id, **(conversion_extra or {})},
            )
            self._writer.write_record(converted)
        req_headers = StatusAndHeaders(
            f"{method} {_path_of(url)} HTTP/1.1", list(request_headers or []), is_http_request=True
        )
        request = self._record(
            url,
            "request",
            b"",
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


def iter_responses(
    stream: IO[bytes], warc_key: str = "", conversions: dict[str, WarcResponse] | None = None
) -> Iterator[WarcResponse]:
    """Response records of a WARC (gzip or not), in file order.

    A response that a `conversion` record refers to (a page a browser rendered) comes with the converted
    body and content type in its place, and the conversion's `WARC-X-*` fields; extraction reads what the
    crawl read. `conversions` keeps conversions seen but not yet matched, between calls on one file."""
    pending: dict[str, WarcResponse] = {} if conversions is None else conversions
    for record in ArchiveIterator(stream):
        if record.rec_type == "conversion" and record.rec_headers.get_header("WARC-Refers-To"):
            pending[record.rec_headers.get_header("WARC-Refers-To")] = _response_of(record, warc_key)
        elif record.rec_type == "response":
            response = _response_of(record, warc_key)
            converted = pending.pop(response.record_id, None)
            yield response if converted is None else _converted(response, converted)


def _converted(response: WarcResponse, conversion: WarcResponse) -> WarcResponse:
    """`response` with the body of the `conversion` record that refers to it."""
    kind = conversion.extra.pop("Content-Type", None) or CONVERSION_TYPE
    headers = [(k, v) for k, v in response.headers if k.lower() not in ("content-type", "content-length")]
    headers += [("Content-Type", kind), ("Content-Length", str(len(conversion.body)))]
    return replace(response, headers=headers, body=conversion.body, extra={**response.extra, **conversion.extra})


def _response_of(record, warc_key: str) -> WarcResponse:
    """A warcio response record (its content not read yet) as a WarcResponse."""
    http = record.http_headers
    status = int(http.get_statuscode() or 0) if http else 0
    headers = list(http.headers) if http else []
    rec = record.rec_headers
    return WarcResponse(
        record_id=rec.get_header("WARC-Record-ID"),
        url=rec.get_header("WARC-Target-URI"),
        status=status,
        headers=headers,
        body=record.content_stream().read(),
        source=rec.get_header(SOURCE_FIELD),
        kind=rec.get_header(KIND_FIELD),
        date=rec.get_header("WARC-Date"),
        warc_key=warc_key,
        extra={k: v for k, v in rec.headers if k.startswith("WARC-X-") and k not in (SOURCE_FIELD, KIND_FIELD)}
        | ({"Content-Type": rec.get_header("Content-Type")} if record.rec_type == "conversion" else {}),
    )


def read_warc(bucket, warc_key: str) -> Iterator[WarcResponse]:
    """Response records of one WARC file in the bucket."""
    return iter_responses(io.BytesIO(bucket.get(warc_key)), warc_key)


def run_warc_keys(bucket, run_id: str) -> list[str]:
    """The WARC files of a run, all sources, in key order: those its crawl summaries name.

    A source crawled more than once for the run (a retry, two runs at once) keeps every attempt's
    files; the summary names the attempt whose pages the run used, so its pages are not read twice.
    A run without summaries (archived by an older version) gives every WARC file under its folder.
    """
    present = sorted(k for k in bucket.list(raw_prefix(run_id)) if k.endswith(WARC_SUFFIX))
    summaries = [k for k in bucket.list(crawl_summaries_prefix(run_id)) if k.endswith(".json")]
    if not summaries:
        return present
    named = {key for s in summaries for key in bucket.get_json(s).get("warc_keys", [])}
    missing = named.difference(present)
    if missing:
        log.warning("run %s: %d WARC file(s) named by its crawl summaries are gone", run_id, len(missing))
    return sorted(named.intersection(present))


class WarcTail:
    """The response records of the WARC files a running crawl writes into `folder`, as they land.

    The writer appends one gzip member per record and flushes it, so every complete member
    is a complete record; a member whose end is not written yet waits for the next `poll()`.
    Files are read in name order (`-00001`, `-00002`, ... as they rotate); each record's
    `warc_key` is `key_prefix` + the file name, the key the writer uploads it under.
    """

    def __init__(self, folder: str | Path, key_prefix: str, *, max_bytes: int | None = None):
        self.folder = Path(folder)
        self.key_prefix = key_prefix
        self.max_bytes = max_bytes or POLL_MAX_BYTES
        self.offsets: dict[str, int] = {}  # file name -> bytes consumed (complete members)
        self.conversions: dict[str, WarcResponse] = {}  # read, but their response not yet (iter_responses)
        #: The last `poll()` stopped at `max_bytes`: more complete records may be waiting.
        self.behind = False

    def poll(self) -> list[WarcResponse]:
        """Response records completed since the last poll, in file order: those of about `max_bytes` of the
        files at most (a crawl faster than extraction must not pile its pages up in memory: see `behind`)."""
        out: list[WarcResponse] = []
        self.behind = False
        for path in sorted(self.folder.glob("*.warc.gz")):
            offset = self.offsets.get(path.name, 0)
            size = self.max_bytes
            with open(path, "rb") as fh:
                while True:
                    fh.seek(offset)
                    data = fh.read(size)
                    used, raw = _complete_members(data)
                    if used or len(data) < size:
                        break
                    size *= 2  # one record larger than the cap: read far enough to hold it
            if used:
                self.offsets[path.name] = offset + used
                out.extend(iter_responses(io.BytesIO(raw), self.key_prefix + path.name, self.conversions))
            if len(data) == size:
                self.behind = True
                break  # the later files wait for the next poll: records stay in file order
        return out

    def fully_read(self) -> bool:
        """True when every file was consumed to its end (no partial record left behind)."""
        files = list(self.folder.glob("*.warc.gz"))
        return all(self.offsets.get(p.name, 0) == p.stat().st_size for p in files)

    def keys(self) -> list[str]:
        return sorted(self.key_prefix + p.name for p in self.folder.glob("*.warc.gz"))


# --------------------------------------------------------------------------- local spool folders
#
# A crawl builds its WARC files in a local folder (`var/warc-*`). Each folder holds a lock file,
# flock'ed by the process that made it for as long as it lives (and by its forked workers, which die
# with it): the kernel drops the lock when they are all gone, however they ended, so a later start
# can tell a dead run's folder from a live one without trusting a pid that may have been reused.

#: The lock file in each spool folder (holds the owner's pid, for people; the lock is what counts).
SPOOL_LOCK = ".owner"
#: A spool folder without a lock file is left alone this long (seconds): its owner may be creating it.
SPOOL_GRACE_SECONDS = 60.0


class Spool:
    """A local folder of WARC files, held by this process (its lock) until `release()`."""

    def __init__(self, parent: str | Path, prefix: str):
        parent = Path(parent)
        parent.mkdir(parents=True, exist_ok=True)
        self.path = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
        self._fd: int | None = os.open(self.path / SPOOL_LOCK, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o600)
        fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # a new folder: nobody else can hold it
        os.write(self._fd, f"{os.getpid()}\n".encode())

    def release(self) -> None:
        """Remove the folder and drop the lock."""
        shutil.rmtree(self.path, ignore_errors=True)
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> Spool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def remove_stale_spools(parent: str | Path, prefix: str = "warc-", *, grace: float = SPOOL_GRACE_SECONDS) -> list[Path]:
    """Delete the spool folders under `parent` whose owner is gone (their lock is free); the folders removed.

    A folder without a lock file (made by an older version, or one being made right now) goes once it
    is older than `grace` seconds.
    """
    removed: list[Path] = []
    parent = Path(parent)
    if not parent.is_dir():
        return removed
    for folder in sorted(parent.glob(f"{prefix}*")):
        if not folder.is_dir() or folder.is_symlink():
            continue
        lock = folder / SPOOL_LOCK
        try:
            fd = os.open(lock, os.O_RDONLY | os.O_NOFOLLOW)
        except FileNotFoundError:
            try:
                stale = time.time() - folder.stat().st_mtime > grace
            except FileNotFoundError:
                continue
            if stale:
                shutil.rmtree(folder, ignore_errors=True)
                removed.append(folder)
            continue
        except OSError as exc:
            log.warning("spool folder %s: cannot open its lock: %s", folder, exc)
            continue
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                    continue  # its owner (or one of its workers) still runs
                raise
            log.info("removing the spool folder of a process that is gone: %s", folder)
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
        finally:
            os.close(fd)
    return removed


def _complete_members(data: bytes, chunk: int = 1 << 16) -> tuple[int, bytes]:
    """(bytes of `data` made of complete gzip members, their decompressed content).

    Each member is fed in `chunk`-byte slices: zlib copies the input left after a member's end into
    `unused_data`, which for the whole rest of `data` made this quadratic in its size."""
    used = 0
    parts: list[bytes] = []
    view = memoryview(data)  # no copy of the rest of the file per member
    while used < len(data):
        d = zlib.decompressobj(zlib.MAX_WBITS | 16)
        pos = used
        out: list[bytes] = []
        try:
            while not d.eof and pos < len(data):
                out.append(d.decompress(view[pos : pos + chunk]))
                pos = min(pos + chunk, len(data))
        except zlib.error:
            break  # not a complete gzip header yet
        if not d.eof:
            break  # the writer is still in this member
        parts.append(b"".join(out))
        used = pos - len(d.unused_data)
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


# --------------------------------------------------------------------------- archives from elsewhere
#
# `iter_archive` reads any WARC file (CC-NEWS, a research collection) as a stream and says where each
# record lies, so a reader can fetch it back with one range request. Records compressed one by one
# (the standard `.warc.gz`) are split into gzip members here (zlib, one member in memory at a time),
# which gives each record's compressed offset and length, tells a cut-off last record from a clean
# end, and lets a corrupt member be skipped to the next one. A whole-file gzip or an uncompressed
# WARC goes through warcio in one stream; offsets are then positions in the uncompressed bytes.

#: Bytes read at a time from an archive stream.
READ_CHUNK = 1 << 20
#: A record larger than this once decompressed is skipped ("too_large"): a gzip bomb, not a news page.
MAX_RECORD_BYTES = 64 << 20
_GZIP_MAGIC = b"\x1f\x8b\x08"


@dataclass
class ArchiveRecord:
    """One record of an archive and where it lies; `response` is None for other record types and
    for records that could not be read (`problem`: truncated, corrupt, too_large)."""

    offset: int
    length: int
    rec_type: str
    response: WarcResponse | None = None
    problem: str | None = None
    detail: str = ""
    #: True when offset/length are positions in the compressed file (a range request returns the record).
    compressed: bool = True


def iter_archive(stream: IO[bytes], warc_key: str, *, start: int = 0, skip_before: int = 0) -> Iterator[ArchiveRecord]:
    """Every record of a WARC stream, in file order, with its offset and length.

    `start`: the offset the stream begins at (a resumed read of a gzip-per-record or uncompressed
    file: a record boundary). Records before `skip_before` are read but not yielded (resuming a
    whole-file gzip, which cannot be entered part-way). A truncated or corrupt record is yielded
    with its `problem`; reading goes on with the next record when there is one.
    """
    for rec in _archive_records(stream, warc_key, start):
        if rec.offset >= skip_before:
            yield rec


def _archive_records(stream: IO[bytes], warc_key: str, start: int) -> Iterator[ArchiveRecord]:
    head = stream.read(READ_CHUNK)
    if not head:
        return
    if head[:2] == _GZIP_MAGIC[:2]:
        per_record = _one_record_per_member(head)
        if per_record:
            yield from _member_records(stream, head, warc_key, start)
            return
        import gzip as _gzip

        yield from _stream_records(
            cast(IO[bytes], _gzip.GzipFile(fileobj=_Chained(head, stream))), warc_key, 0, compressed=False
        )
        return
    yield from _stream_records(cast(IO[bytes], _Chained(head, stream)), warc_key, start, compressed=True)


def _one_record_per_member(head: bytes) -> bool:
    """Whether a gzip file starting with `head` holds one record per member: its first member ends
    within `head` and holds exactly one record (a whole-file gzip's first member holds them all)."""
    d = zlib.decompressobj(zlib.MAX_WBITS | 16)
    try:
        first = d.decompress(head, MAX_RECORD_BYTES)
    except zlib.error:
        return True  # a corrupt first member: the member reader reports it and resyncs
    if not d.eof:
        return False
    try:
        records = ArchiveIterator(io.BytesIO(first))
        for _ in records:
            pass
        return records.get_record_offset() == 0
    except Exception:  # not a WARC record: the member reader reports it as corrupt
        return True


def _member_records(stream: IO[bytes], pending: bytes, warc_key: str, offset: int) -> Iterator[ArchiveRecord]:
    """Records of a gzip-per-record stream, one gzip member at a time."""
    while True:
        if not pending:
            pending = stream.read(READ_CHUNK)
            if not pending:
                return
        d = zlib.decompressobj(zlib.MAX_WBITS | 16)
        parts: list[bytes] = []
        size = used = 0
        data, pending = pending, b""
        problem = ""
        while True:
            try:
                out = d.decompress(data)
            except zlib.error as exc:
                problem = f"corrupt: {exc}"
                break
            if size <= MAX_RECORD_BYTES:
                parts.append(out)
            size += len(out)
            if d.eof:
                used += len(data) - len(d.unused_data)
                pending = d.unused_data
                break
            used += len(data)
            data = stream.read(READ_CHUNK)
            if not data:
                problem = "truncated"
                break
        if problem == "truncated":
            yield ArchiveRecord(offset, used, "unknown", problem="truncated", detail="the file ends inside this record")
            return
        if problem:  # skip to the next gzip member that starts a record
            used, pending = _resync(stream, data, used)
            yield ArchiveRecord(offset, used, "unknown", problem="corrupt", detail=problem[len("corrupt: ") :])
            offset += used
            continue
        if size > MAX_RECORD_BYTES:
            yield ArchiveRecord(offset, used, "unknown", problem="too_large", detail=f"{size} bytes decompressed")
        else:
            yield _parse_member(b"".join(parts), warc_key, offset, used)
        offset += used


def _resync(stream: IO[bytes], data: bytes, used: int) -> tuple[int, bytes]:
    """After a corrupt member whose bytes so far were `used` + `data`: (its length, the bytes from the next
    member on). The next member is the next gzip header whose start decompresses to a WARC record."""
    buf = data
    pos = 1
    while True:
        at = buf.find(_GZIP_MAGIC, pos)
        if at >= 0:
            probe = zlib.decompressobj(zlib.MAX_WBITS | 16)
            try:
                if probe.decompress(buf[at : at + 4096], 8).startswith(b"WARC/"):
                    return used + at, buf[at:]
            except zlib.error:
                pass
            pos = at + 1
            continue
        more = stream.read(READ_CHUNK)
        if not more:
            return used + len(buf), b""
        keep = len(buf) - len(_GZIP_MAGIC) + 1 if len(buf) >= len(_GZIP_MAGIC) else 0
        used += keep
        buf = buf[keep:] + more
        pos = 0


def _parse_member(raw: bytes, warc_key: str, offset: int, length: int) -> ArchiveRecord:
    """The one record of a decompressed gzip member."""
    try:
        for record in ArchiveIterator(io.BytesIO(raw)):
            if record.rec_type != "response":
                return ArchiveRecord(offset, length, record.rec_type)
            declared = int(record.rec_headers.get_header("Content-Length") or 0)
            response = _response_of(record, warc_key)
            if len(raw) < declared:
                return ArchiveRecord(
                    offset, length, "response", problem="truncated", detail="record shorter than its Content-Length"
                )
            return ArchiveRecord(offset, length, "response", response)
    except Exception as exc:  # warcio raises many kinds on malformed headers
        return ArchiveRecord(offset, length, "unknown", problem="corrupt", detail=f"{type(exc).__name__}: {exc}")
    return ArchiveRecord(offset, length, "unknown", problem="corrupt", detail="no WARC record in this gzip member")


def _stream_records(stream: IO[bytes], warc_key: str, start: int, *, compressed: bool) -> Iterator[ArchiveRecord]:
    """Records of an uncompressed or whole-file gzip stream (warcio in one pass) that begins at offset `start`.

    `compressed` False: offsets are positions in the decompressed bytes (no range request returns a record)."""
    counted = _Counting(stream)
    it = ArchiveIterator(counted)
    end = 0
    try:
        for record in it:
            if record.rec_type == "response":
                response = _response_of(record, warc_key)
            else:
                response = None
                record.content_stream().read()
            offset, length = start + it.get_record_offset(), it.get_record_length()
            end = offset + length
            yield ArchiveRecord(offset, length, record.rec_type, response, compressed=compressed)
    except (EOFError, zlib.error) as exc:  # a whole-file gzip cut short
        yield ArchiveRecord(
            end, 0, "unknown", problem="truncated", detail=f"{type(exc).__name__}: {exc}", compressed=compressed
        )
        return
    counted.read()  # warcio stops quietly at a record cut short: what is left after the last record is one
    end = max(end, start)
    if start + counted.total > end + 4:
        yield ArchiveRecord(
            end,
            start + counted.total - end,
            "unknown",
            problem="truncated",
            detail="the file ends inside this record",
            compressed=compressed,
        )


class _Chained(io.RawIOBase):
    """`head` then the rest of `stream`, as one stream."""

    def __init__(self, head: bytes, stream: IO[bytes]) -> None:
        self._head = memoryview(head)
        self._stream = stream

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        if self._head:
            n = min(len(b), len(self._head))
            b[:n] = self._head[:n]
            self._head = self._head[n:]
            return n
        data = self._stream.read(len(b))
        b[: len(data)] = data
        return len(data)


class _Counting(io.RawIOBase):
    """A stream that counts the bytes read through it."""

    def __init__(self, stream: IO[bytes]) -> None:
        self._stream = stream
        self.total = 0

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        data = self._stream.read(len(b))
        b[: len(data)] = data
        self.total += len(data)
        return len(data)
