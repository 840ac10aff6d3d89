"""Crawl-wide components around the news spider.

- `IncrementalMiddleware` (downloader middleware): opens lazy views of the source's seen-URL,
  refused and HTTP-validator state when the spider opens (a lookup reads the one state shard
  its URL falls in); skips articles already stored (`news/skipped_seen`), or revalidates them
  with a conditional GET when `revisit_hours` says they are young enough; adds If-None-Match / If-Modified-Since to feeds, sitemaps and
  robots.txt, and hands the links a 304'd document announced last time back to the spider.
  Registered as a spider middleware too (the same instance): the requests a feed, sitemap or
  section yields are looked at in batches before they reach the scheduler, and the state shards
  their URLs fall in are read at once, several GETs in parallel, instead of one GET per new URL
  when the request comes up for download.
- `CrawlReport` (extension): when the spider closes, writes the crawl summary
  `work/dt=/run=/crawl/<source>.json` (source, warc_keys, rejects_key, stats, bytes) that
  `pipeline.stages.crawl.crawl_stage` returns.
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import AsyncIterator, Iterable, Iterator
from datetime import datetime, timedelta, timezone

from scrapy import Request, signals
from scrapy.exceptions import NotConfigured

from pipeline.core.bucket import Bucket
from pipeline.core.config import S3Settings
from pipeline.core.layout import crawl_summary_key
from pipeline.dataset.state import DEFAULT_REFUSED_HOURS, ShardedState, open_http, open_refused, open_seen
from pipeline.text.urls import RedactSecretsFilter
from spiders.spiders.news import CACHED_LINKS, DISCOVERED, KIND, OWN, SkippedSeen

log = logging.getLogger(__name__)

#: Sent by the WARC pipeline once its files and rejects are in the bucket.
archive_closed = object()

_VALIDATED_KINDS = ("feed", "sitemap", "robots")
#: Requests a callback yields that are held back at most, so their state shards are read in one go.
PREFETCH_BATCH = 256
#: One IncrementalMiddleware per crawler, whether Scrapy builds it as a downloader or a spider middleware.
_INSTANCES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


class IncrementalMiddleware:
    def __init__(self, crawler, source: str, revisit_hours: float):
        self.crawler = crawler
        self.stats = crawler.stats
        self.source = source
        self.revisit = timedelta(hours=revisit_hours)
        # a page refused as not an article is skipped this long (its type does not change overnight)
        self.refused_for = timedelta(hours=revisit_hours or DEFAULT_REFUSED_HOURS)
        self.seen: ShardedState | dict[str, dict] = {}
        self.refused: ShardedState | dict[str, dict] = {}
        self.http: ShardedState | dict[str, dict] = {}

    @classmethod
    def from_crawler(cls, crawler):
        source = crawler.settings.get("NEWS_SOURCE")
        if not source or not crawler.settings.getbool("NEWS_INCREMENTAL", True):
            raise NotConfigured
        mw = _INSTANCES.get(crawler)
        if mw is None:
            mw = _INSTANCES[crawler] = cls(crawler, source, crawler.settings.getfloat("NEWS_REVISIT_HOURS", 0))
            crawler.signals.connect(mw.spider_opened, signal=signals.spider_opened)
        return mw

    def spider_opened(self, spider=None):
        bucket = Bucket(S3Settings.from_env())
        run_id = self.crawler.settings.get("NEWS_RUN_ID")
        # Lazy views: a lookup reads the one state shard its URL falls in (cached), nothing is loaded whole.
        self.seen = open_seen(bucket, self.source, exclude_run=run_id)
        self.refused = open_refused(bucket, self.source, exclude_run=run_id)
        self.http = open_http(bucket, self.source)
        log.info("incremental state of %s: read lazily, per URL shard", self.source)

    def _count_reads(self) -> None:
        # What the state cost this crawl so far; `news/state_shards_prefetched` of them came in batches.
        views = (self.seen, self.refused, self.http)
        self.stats.set_value("news/state_shards_read", sum(v.shards_read for v in views if isinstance(v, ShardedState)))

    def _prefetch(self, requests: list) -> None:
        """Read the state shards of these requests' URLs that are not cached yet, in parallel."""
        articles: list[str] = []
        documents: list[str] = []
        for request in requests:
            if request.meta.get(OWN):
                kind = request.meta.get(KIND)
                url = request.meta.get(DISCOVERED, request.url)
                (articles if kind == "article" else documents if kind in _VALIDATED_KINDS else []).append(url)
        fetched = 0
        for view in (self.seen, self.refused) if articles else ():
            if isinstance(view, ShardedState):
                fetched += view.prefetch(articles)
        if documents and isinstance(self.http, ShardedState):
            fetched += self.http.prefetch(documents)
        if fetched:
            self.stats.inc_value("news/state_shards_prefetched", fetched)

    def _batches(self, pending: list) -> list:
        """`pending` unchanged, once the state shards of its requests' URLs are read."""
        requests = [r for r in pending if isinstance(r, Request)]
        if requests:
            self._prefetch(requests)
        return pending

    def process_spider_output(self, response, result: Iterable, spider=None) -> Iterator:
        pending: list = []
        for item in result:
            pending.append(item)
            if len(pending) >= PREFETCH_BATCH:
                yield from self._batches(pending)
                pending = []
        yield from self._batches(pending)

    async def process_spider_output_async(self, response, result: AsyncIterator, spider=None) -> AsyncIterator:
        pending: list = []
        async for item in result:
            pending.append(item)
            if len(pending) >= PREFETCH_BATCH:
                for out in self._batches(pending):
                    yield out
                pending = []
        for out in self._batches(pending):
            yield out

    @staticmethod
    def _within(when: object, window: timedelta) -> bool:
        """Is the ISO time `when` less than `window` ago?"""
        if not window:
            return False
        try:
            stamp = datetime.fromisoformat(str(when))
        except ValueError:
            return False
        if stamp.tzinfo is None:
            stamp = stamp.replace(tzinfo=timezone.utc)
        return datetime.now(timezone.utc) - stamp < window

    def _young(self, entry: dict) -> bool:
        return self._within(entry.get("stored_at"), self.revisit)

    def process_request(self, request, spider=None):
        if not request.meta.get(OWN):
            return None
        try:
            self._check(request)
        finally:
            self._count_reads()
        return None

    def _check(self, request) -> None:
        """Skip (SkippedSeen) or make conditional a request of ours, from the state of its URL."""
        kind = request.meta.get(KIND)
        url = request.meta.get(DISCOVERED, request.url)
        if kind == "article" and url in self.seen and "news_revalidating" not in request.meta:
            entry = self.seen[url]
            if not self._young(entry):
                self.stats.inc_value("news/skipped_seen")
                raise SkippedSeen(f"already stored: {url}")
            request.meta["news_revalidating"] = True
            self.stats.inc_value("news/revalidated")
            self._conditional(request, entry.get("etag"), entry.get("last_modified"))
        elif (
            kind == "article"
            and url in self.refused
            and self._within(self.refused[url].get("refused_at"), self.refused_for)
        ):
            self.stats.inc_value("news/skipped_refused")
            raise SkippedSeen(f"refused as not an article ({self.refused[url].get('reason')}): {url}")
        elif kind in _VALIDATED_KINDS and url in self.http:
            entry = self.http[url]
            self._conditional(request, entry.get("etag"), entry.get("last_modified"))

    @staticmethod
    def _conditional(request, etag, last_modified) -> None:
        if etag:
            request.headers.setdefault("If-None-Match", etag)
        if last_modified:
            request.headers.setdefault("If-Modified-Since", last_modified)

    def process_response(self, request, response, spider=None):
        if response.status == 304 and request.meta.get(OWN) and request.meta.get(KIND) in _VALIDATED_KINDS:
            entry = self.http.get(request.meta.get(DISCOVERED, request.url)) or {}
            request.meta[CACHED_LINKS] = entry.get("links") or []
        return response


class RedactedLogs:
    """Puts `RedactSecretsFilter` on every root log handler of the crawl process: a link or redirect found on a
    crawled page may carry `user:password@` or a token, and the crawl logs URLs at every step."""

    def __init__(self) -> None:
        root = logging.getLogger()
        for handler in root.handlers:
            if not any(isinstance(f, RedactSecretsFilter) for f in handler.filters):
                handler.addFilter(RedactSecretsFilter())

    @classmethod
    def from_crawler(cls, crawler) -> RedactedLogs:
        return cls()


class CrawlReport:
    def __init__(self, crawler, source: str, run_id: str):
        self.crawler = crawler
        self.source = source
        self.run_id = run_id
        self.archive: dict | None = None

    @classmethod
    def from_crawler(cls, crawler):
        source = crawler.settings.get("NEWS_SOURCE")
        run_id = crawler.settings.get("NEWS_RUN_ID")
        if not source or not run_id:
            raise NotConfigured
        ext = cls(crawler, source, run_id)
        crawler.signals.connect(ext.on_archive_closed, signal=archive_closed)
        crawler.signals.connect(ext.spider_closed, signal=signals.spider_closed)
        return ext

    def on_archive_closed(self, warc_keys, rejects_key, http_key=None):
        self.archive = {"warc_keys": list(warc_keys), "rejects_key": rejects_key, "http_state_key": http_key}

    def spider_closed(self, spider=None, reason: str = ""):
        if self.archive is None:
            log.error("crawl of %s: the WARC archive did not close cleanly; no summary written", self.source)
            return
        stats = {k: v for k, v in self.crawler.stats.get_stats().items() if isinstance(v, (int, float, str))}
        stats = {k: v for k, v in stats.items() if not k.startswith(("log_count/", "memusage/startup"))}
        summary = {
            "source": self.source,
            "run_id": self.run_id,
            "finish_reason": reason,
            **self.archive,
            "bytes": int(self.crawler.stats.get_value("news/bytes", 0)),
            "stats": stats,
        }
        key = crawl_summary_key(self.run_id, self.source)
        Bucket(S3Settings.from_env()).put_json(key, summary)
        log.info(
            "crawl summary of %s written to %s (%s WARC file(s), finish reason %s)",
            self.source,
            key,
            len(summary["warc_keys"]),
            reason,
        )
