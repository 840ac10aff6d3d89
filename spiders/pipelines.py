"""Item pipeline: the raw WARC archive, the crawl rejects and the HTTP validators of the crawl.

`WarcArchivePipeline` writes every `FetchedPage` as a WARC 1.1 request/response pair (and, for a page a
browser rendered, a `conversion` record of the rendered DOM referring to the response) via
`pipeline.dataset.warc.RotatingWarcWriter` into `raw/dt=/run=/<source>/<source>-NNNNN.warc.gz`
(response records carry WARC-X-Source / WARC-X-Kind), collects `CrawlReject` items into
`rejects/dt=/run=/crawl-<source>.jsonl`, and merges the ETag / Last-Modified of fetched
feeds, sitemaps and robots.txt (plus the links they announced) into `state/http/<source>.json`.

WARC keys are unique per crawl attempt (`raw/dt=/run=/<source>/<source>-<attempt>-NNNNN.warc.gz`)
and never deleted or overwritten here: two crawls of one run and source (a retry, or two runs at
once) each keep their own files, so a row committed from either still finds its record. The crawl
summary names the files of the attempt that wrote it last; earlier attempts' files go with the run.
"""

from __future__ import annotations

import ctypes
import logging
import os
import secrets
import shutil
import signal
import tempfile
import time
from datetime import datetime
from pathlib import Path

from scrapy.exceptions import NotConfigured

from pipeline.core.bucket import Bucket
from pipeline.core.config import S3Settings
from pipeline.core.context import RunContext
from pipeline.core.layout import crawl_rejects_name, http_key, raw_prefix, warc_basename
from pipeline.core.paths import default_sources_path
from pipeline.dataset.rejects import reject, write_rejects
from pipeline.dataset.state import save_http
from pipeline.dataset.warc import DEFAULT_MAX_BYTES, KIND_FIELD, SOURCE_FIELD, RotatingWarcWriter
from spiders.extensions import archive_closed
from spiders.items import CrawlReject, FetchedPage, NotModified

log = logging.getLogger(__name__)

CANONICAL_FIELD = "WARC-X-Canonical-URL"
#: On the `conversion` record holding the DOM the browser rendered from the response record it refers to.
RENDERED_FIELD = "WARC-X-Rendered"
DISCOVERED_FIELD = "WARC-X-Discovered-URL"
_VALIDATED_KINDS = ("feed", "sitemap", "robots")


#: Set by `pipeline.stages.crawl` to its pid (`pipeline.runtime.pool.PARENT_PID_ENV`; the spiders may
#: not import the runtime layer, so the parent-death signal is armed here as `die_with_parent` does).
PARENT_PID_ENV = "NEWS_PARENT_PID"


def die_with_crawl_parent() -> None:
    """SIGKILL this crawl when the process that started it dies (Linux PR_SET_PDEATHSIG); exit now if it is gone.

    Without it a `kill -9` of `pipeline run` leaves the crawl fetching and writing to the bucket for a dead run.
    """
    try:
        parent = int(os.environ[PARENT_PID_ENV])
    except (KeyError, ValueError):
        return  # started by hand: nobody to die with
    try:
        if ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGKILL), 0, 0, 0) != 0:  # 1: PR_SET_PDEATHSIG
            log.warning("prctl(PR_SET_PDEATHSIG) failed: errno %s", ctypes.get_errno())
    except (OSError, AttributeError) as exc:  # not Linux
        log.debug("no parent-death signal: %s", exc)
    if os.getppid() != parent:
        os._exit(1)  # the parent died before the signal was armed


def new_attempt_id() -> str:
    """A crawl attempt's id: seconds since the epoch (hex, so attempts sort by start) and 4 random hex digits."""
    return f"{int(time.time()):x}{secrets.token_hex(2)}"


class WarcArchivePipeline:
    def __init__(
        self, crawler, source: str, run_id: str, sources_path: str, max_bytes: int, local_dir: str | None = None
    ):
        self.crawler = crawler
        self.stats = crawler.stats
        self.source = source
        self.run_id = run_id
        self.sources_path = sources_path
        self.max_bytes = max_bytes
        self.bucket: Bucket | None = None
        self.writer: RotatingWarcWriter | None = None
        # NEWS_WARC_LOCAL_DIR: build the files there and keep them after the upload, for a
        # caller that reads the records while the crawl runs (`pipeline run` extracts them at
        # once); that caller owns the folder. Otherwise a temp folder, removed at close.
        self.keep_local = bool(local_dir)
        self.local_dir: str | None = local_dir or None
        self.rejects: list[dict] = []
        self.http: dict[str, dict] = {}
        self.attempt = new_attempt_id()

    @classmethod
    def from_crawler(cls, crawler):
        s = crawler.settings
        if not s.get("NEWS_SOURCE") or not s.get("NEWS_RUN_ID"):
            raise NotConfigured("WarcArchivePipeline needs NEWS_SOURCE and NEWS_RUN_ID")
        die_with_crawl_parent()
        return cls(
            crawler,
            s.get("NEWS_SOURCE"),
            s.get("NEWS_RUN_ID"),
            s.get("NEWS_SOURCES_PATH", ""),
            s.getint("NEWS_WARC_MAX_BYTES", DEFAULT_MAX_BYTES),
            s.get("NEWS_WARC_LOCAL_DIR") or None,
        )

    def open_spider(self, spider=None):
        self.bucket = Bucket(S3Settings.from_env())
        self.bucket.check()
        prefix = raw_prefix(self.run_id, self.source)
        log.info("crawl attempt %s of %s for run %s", self.attempt, self.source, self.run_id)
        if not self.keep_local:
            self.local_dir = tempfile.mkdtemp(prefix=f"warc-{self.source}-")
        bucket = self.bucket
        self.writer = RotatingWarcWriter(
            prefix,
            warc_basename(self.source, self.attempt),
            upload=lambda path, key: bucket.put_file(key, path, content_type="application/warc"),
            max_bytes=self.max_bytes,
            local_dir=self.local_dir,
            keep_local=self.keep_local,
        )

    def process_item(self, item, spider=None):
        if isinstance(item, FetchedPage):
            self._archive(item)
        elif isinstance(item, CrawlReject):
            self.rejects.append(reject(item.url, "crawl", item.reason, source=self.source, detail=item.detail))
        elif isinstance(item, NotModified):
            self.stats.inc_value("news/archive/skipped_304")
        return item

    def _archive(self, page: FetchedPage) -> None:
        assert self.writer is not None
        extra = {SOURCE_FIELD: self.source, KIND_FIELD: page.kind}
        if page.rel_canonical:
            extra[CANONICAL_FIELD] = page.rel_canonical
        if page.discovered_url and page.discovered_url != page.url:
            extra[DISCOVERED_FIELD] = page.discovered_url
        fetched = datetime.fromisoformat(page.fetched_at) if page.fetched_at else None
        key, record_id = self.writer.write(
            url=page.url,
            status=page.status,
            headers=page.headers,
            body=page.body,
            request_headers=page.request_headers,
            method=page.method,
            fetched_at=fetched,
            extra=extra,
            conversion=page.rendered or None,
            conversion_extra={RENDERED_FIELD: "chromium"},
        )
        self.stats.inc_value("news/archived")
        self.stats.inc_value(f"news/archived/{page.kind}")
        self.stats.inc_value("news/archived_bytes", len(page.body))
        if page.kind in _VALIDATED_KINDS:
            headers = {k.lower(): v for k, v in page.headers}
            self.http[page.discovered_url or page.url] = {
                "etag": headers.get("etag"),
                "last_modified": headers.get("last-modified"),
                "links": [list(x) for x in page.links],
                "fetched_at": page.fetched_at,
                "warc_key": key,
                "warc_record_id": record_id,
            }

    def close_spider(self, spider=None):
        assert self.writer is not None and self.bucket is not None
        try:
            keys = self.writer.close()
        finally:
            if self.local_dir and not self.keep_local:
                shutil.rmtree(self.local_dir, ignore_errors=True)
        ctx = RunContext(
            run_id=self.run_id,
            s3=self.bucket.settings,
            sources_path=Path(self.sources_path) if self.sources_path else default_sources_path(),
        )
        ctx.__dict__["bucket"] = self.bucket  # reuse this client (cached_property slot)
        rejects_key = write_rejects(ctx, crawl_rejects_name(self.source), self.rejects)
        state_key = None
        if self.http:
            save_http(self.bucket, self.source, self.http)
            state_key = http_key(self.source)
        log.info("archive of %s closed: %s WARC file(s), %s reject(s)", self.source, len(keys), len(self.rejects))
        self.crawler.signals.send_catch_log(
            signal=archive_closed, warc_keys=keys, rejects_key=rejects_key, http_key=state_key
        )
