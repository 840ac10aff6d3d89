"""Where WARC archives to import come from: local paths and globs, `s3://` keys and globs on any
endpoint (signed or anonymous), `https://` URLs, and `warc.paths.gz` listings as CC-NEWS publishes them.

Every archive is opened as a byte stream from an offset (`ArchiveFile.open(offset)`: a seek, an S3
ranged GET or an HTTP `Range` request), never downloaded whole first: resuming a file part-way and
fetching one record back (`fetch_range`) use the same call.
"""

from __future__ import annotations

import fnmatch
import glob
import gzip
import io
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import IO, Any, cast
from urllib.parse import urlsplit

from pipeline.core.bucket import BodyStream
from pipeline.core.config import ConfigError, S3Settings

#: Where CC-NEWS listings' relative paths live (`crawl-data/CC-NEWS/...`).
COMMONCRAWL_BASE = "https://data.commoncrawl.org/"
#: HTTP timeouts (connect, read) in seconds: a stalled server fails the file, the import goes on.
HTTP_TIMEOUT = (15, 120)
_WILDCARDS = "*?["


@dataclass(frozen=True)
class Remote:
    """How to reach remote archives: the S3 endpoint and credentials (None: the project's), anonymous reads."""

    s3: S3Settings | None = None
    anonymous: bool = False
    paths_base: str = COMMONCRAWL_BASE

    def s3_client(self) -> Any:
        """A boto3 client for archive buckets (unsigned when anonymous)."""
        from botocore import UNSIGNED
        from botocore.config import Config

        from pipeline.core.bucket import RETRY_CONFIG, client

        settings = self.s3 or S3Settings.from_env()
        if self.anonymous:
            settings = settings.model_copy(update={"access_key_id": None, "secret_access_key": None})
            return client(settings, config=RETRY_CONFIG.merge(Config(signature_version=UNSIGNED)))
        return client(settings)


@dataclass(frozen=True)
class ArchiveFile:
    """One archive to import: its URI, and its size and ETag when the listing told them (the import's key)."""

    uri: str
    size: int | None = None
    etag: str | None = None

    def open(self, remote: Remote, offset: int = 0) -> IO[bytes]:
        """The archive's bytes from `offset` to its end, as a stream."""
        return open_range(self.uri, remote, offset)

    def stat(self, remote: Remote) -> ArchiveFile:
        """This file with its size and ETag asked of its server (an S3 HEAD, an HTTP HEAD)."""
        if _is_s3(self.uri):
            bucket, key = _split_s3(self.uri)
            head = remote.s3_client().head_object(Bucket=bucket, Key=key)
            return ArchiveFile(self.uri, head.get("ContentLength"), head.get("ETag"))
        if _is_http(self.uri):
            import requests

            resp = requests.head(self.uri, timeout=HTTP_TIMEOUT, allow_redirects=True)
            resp.raise_for_status()
            size = resp.headers.get("Content-Length")
            return ArchiveFile(self.uri, int(size) if size else None, resp.headers.get("ETag"))
        stat = os.stat(self.uri.removeprefix("file://"))
        return ArchiveFile(self.uri, stat.st_size, f"{int(stat.st_mtime)}")

    def identity(self) -> str:
        """What must match for a finished import to count as this file: size and ETag, when known."""
        return f"{self.size}:{(self.etag or '').strip(chr(34))}"


def _is_s3(uri: str) -> bool:
    return uri.startswith("s3://")


def _is_http(uri: str) -> bool:
    return uri.startswith(("http://", "https://"))


def _split_s3(uri: str) -> tuple[str, str]:
    parts = urlsplit(uri)
    if not parts.netloc:
        raise ConfigError(f"not an s3://bucket/key URI: {uri}")
    return parts.netloc, parts.path.lstrip("/")


def is_listing(uri: str) -> bool:
    """A `warc.paths(.gz)` listing, one archive path per line (CC-NEWS's monthly lists)."""
    name = uri.rstrip("/").rsplit("/", 1)[-1]
    return name.endswith((".paths.gz", ".paths"))


def expand(sources: Iterable[str], remote: Remote) -> list[ArchiveFile]:
    """The archive files named by `sources`, in order, each once (ConfigError for a source that names none)."""
    out: list[ArchiveFile] = []
    seen: set[str] = set()
    for source in sources:
        found = list(_expand_one(source, remote))
        if not found:
            raise ConfigError(f"no WARC file matches {source}")
        for item in found:
            if item.uri not in seen:
                seen.add(item.uri)
                out.append(item)
    return out


def _expand_one(source: str, remote: Remote) -> Iterator[ArchiveFile]:
    if is_listing(source):
        yield from _listing(source, remote)
    elif _is_s3(source):
        yield from _s3_glob(source, remote)
    elif _is_http(source):
        yield ArchiveFile(source)
    else:
        pattern = os.path.expanduser(source)
        paths = sorted(glob.glob(pattern)) if any(c in pattern for c in _WILDCARDS) else [pattern]
        for path in paths:
            if not os.path.isfile(path):
                raise ConfigError(f"no such file: {path}")
            stat = os.stat(path)
            yield ArchiveFile(os.path.abspath(path), stat.st_size, f"{int(stat.st_mtime)}")


def _listing(source: str, remote: Remote) -> Iterator[ArchiveFile]:
    """The archives of a paths listing: relative paths are joined to `remote.paths_base`."""
    with open_range(source, remote, 0) as fh:
        data = fh.read()
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    base = remote.paths_base if remote.paths_base.endswith("/") else remote.paths_base + "/"
    for line in data.decode("utf-8").splitlines():
        path = line.strip()
        if path and not path.startswith("#"):
            yield ArchiveFile(path if "://" in path else base + path.lstrip("/"))


def _s3_glob(source: str, remote: Remote) -> Iterator[ArchiveFile]:
    bucket, key = _split_s3(source)
    s3 = remote.s3_client()
    if not any(c in key for c in _WILDCARDS):
        head = s3.head_object(Bucket=bucket, Key=key)
        yield ArchiveFile(source, head.get("ContentLength"), head.get("ETag"))
        return
    prefix = key[: min(key.index(c) for c in _WILDCARDS if c in key)]
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            if fnmatch.fnmatchcase(obj["Key"], key):
                yield ArchiveFile(f"s3://{bucket}/{obj['Key']}", obj.get("Size"), obj.get("ETag"))


def open_range(uri: str, remote: Remote, offset: int = 0, length: int | None = None) -> IO[bytes]:
    """A stream of `uri`'s bytes from `offset` (`length` of them, or to the end)."""
    if offset < 0 or (length is not None and length < 1):
        raise ValueError(f"bad range: offset {offset}, length {length}")
    end = "" if length is None else str(offset + length - 1)
    if _is_s3(uri):
        bucket, key = _split_s3(uri)
        kwargs = {"Range": f"bytes={offset}-{end}"} if offset or length else {}
        body = remote.s3_client().get_object(Bucket=bucket, Key=key, **kwargs)["Body"]
        return cast(IO[bytes], BodyStream(body))
    if _is_http(uri):
        import requests

        headers = {"Range": f"bytes={offset}-{end}"} if offset or length else {}
        resp = requests.get(uri, headers=headers, stream=True, timeout=HTTP_TIMEOUT)
        resp.raise_for_status()
        if headers and resp.status_code != 206:
            resp.close()
            raise OSError(f"{uri}: the server ignored the Range request (status {resp.status_code})")
        resp.raw.decode_content = False  # the archive's own bytes (a .gz stays compressed)
        return resp.raw
    fh = open(uri.removeprefix("file://"), "rb")
    fh.seek(offset)
    if length is None:
        return fh
    with fh:
        return io.BytesIO(fh.read(length))


def fetch_range(uri: str, offset: int, length: int, remote: Remote | None = None) -> bytes:
    """The `length` bytes of `uri` at `offset` (one stored record: its `warc_offset` and `warc_length`)."""
    with open_range(uri, remote or Remote(), offset, length) as fh:
        return fh.read()
