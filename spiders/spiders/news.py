"""The generic `news` spider: discovery from a source's feeds, sitemaps and section pages.

    scrapy crawl news -a source=NAME [-a run_id=RUN] [-a sources=PATH]

`run_id` defaults to now (UTC), as `python -m pipeline crawl` makes it.

It only routes and parses: every response worth keeping becomes a `FetchedPage` item
(archived as WARC by `spiders.pipelines.WarcArchivePipeline`), every failure a
`CrawlReject` item; incremental skipping and conditional GETs are done by
`spiders.extensions.IncrementalMiddleware` from the state in the bucket.
"""

from __future__ import annotations

import logging
import re
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import lxml.etree
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from scrapy import Request, Spider, signals
from scrapy.exceptions import (
    CannotResolveHostError,
    DownloadCancelledError,
    DownloadConnectionRefusedError,
    DownloadTimeoutError,
    IgnoreRequest,
    UsageError,
)
from scrapy.http import HtmlResponse, Response
from scrapy.spidermiddlewares.httperror import HttpError
from twisted.internet import error as twisted_error
from twisted.internet.defer import CancelledError

from pipeline.core.config import ConfigError, CrawlSettings, Source, load_sources
from pipeline.core.context import check_run_id, make_run_id
from pipeline.core.paths import default_sources_path
from pipeline.text.urls import canonicalize, robots_url
from spiders import discovery
from spiders.items import CrawlReject, FetchedPage, NotModified

log = logging.getLogger(__name__)

#: Request.meta keys used by the spider, the incremental middleware and the pipeline.
KIND = "news_kind"
DEPTH = "news_depth"
CACHED_LINKS = "news_cached_links"
DISCOVERED = "news_discovered_url"
SITEMAP_DEPTH = "news_sitemap_depth"
OWN = "news_spider_request"
#: Set by spiders.render.RenderMiddleware on a response whose body is the DOM Chromium rendered (the original response).
RENDERED = "news_rendered"

_CODED = re.compile(r"^([a-z][a-z0-9_]{2,40}): ")
_HTML_TYPES = re.compile(rb"^\s*(text/html|application/xhtml\+xml)", re.I)


class SkippedSeen(IgnoreRequest):
    """Raised by the incremental middleware for an article already stored (not a reject)."""


class NewsArgs(BaseModel):
    """The spider's `-a` arguments."""

    model_config = ConfigDict(extra="forbid")

    source: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$")
    run_id: str = Field(default_factory=lambda: make_run_id(datetime.now(timezone.utc)))
    sources: Path = Field(default_factory=default_sources_path)

    @field_validator("run_id")
    @classmethod
    def _run_id(cls, value: str) -> str:
        return check_run_id(value)


def parse_args(kwargs: dict[str, Any]) -> NewsArgs:
    """Validate spider arguments; a bad one raises UsageError with a one-line message."""
    try:
        return NewsArgs.model_validate(kwargs)
    except ValidationError as exc:
        problems = "; ".join(f"-a {'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        raise UsageError(f"news spider: bad arguments: {problems}") from None


def source_settings(crawl: CrawlSettings, source: Source) -> dict[str, Any]:
    """Scrapy settings derived from the sources file (politeness, limits)."""
    return {
        "USER_AGENT": crawl.user_agent,
        "ROBOTSTXT_OBEY": crawl.obey_robots,
        "ROBOTSTXT_USER_AGENT": crawl.user_agent,
        "AUTOTHROTTLE_ENABLED": crawl.autothrottle,
        # AutoThrottle starts at the configured delay (its default, 5 s, would dominate small crawls)
        # and never goes below DOWNLOAD_DELAY.
        "AUTOTHROTTLE_START_DELAY": source.delay,
        "AUTOTHROTTLE_TARGET_CONCURRENCY": float(source.concurrency),
        "CONCURRENT_REQUESTS_PER_DOMAIN": source.concurrency,
        "DOWNLOAD_DELAY": source.delay,
        "DOWNLOAD_TIMEOUT": crawl.download_timeout,
        "DOWNLOAD_MAXSIZE": crawl.max_page_bytes,
        "DOWNLOAD_WARNSIZE": max(1, crawl.max_page_bytes // 2),
        "REDIRECT_MAX_TIMES": crawl.max_redirects,
        "NEWS_MAX_HEADER_BYTES": crawl.max_header_bytes,
        "NEWS_MAX_SITEMAP_DEPTH": crawl.max_sitemap_depth,
        "NEWS_ALLOW_PRIVATE": list(crawl.allow_private),
        "NEWS_RENDER": source.render,
        "NEWS_RENDER_PATTERNS": list(source.render_patterns),
    }


def classify_failure(failure) -> tuple[str, str]:
    """(reason, detail) of a failed request: a short stable counter name and the message."""
    exc = failure.value
    detail = str(exc)[:300]
    if isinstance(exc, HttpError):
        return f"http_{exc.response.status}", detail
    if isinstance(exc, (DownloadTimeoutError, twisted_error.TimeoutError)):
        return "timeout", detail
    if isinstance(exc, (DownloadCancelledError, CancelledError)):
        return "too_large", detail or "download cancelled: body exceeded DOWNLOAD_MAXSIZE"
    if isinstance(exc, IgnoreRequest):
        coded = _CODED.match(detail)
        if coded:  # spiders.middlewares: "ssrf_blocked: ...", "robots_denied: ...", "robots_unreachable: ..."
            return coded.group(1), detail
        if "during decompression" in detail:
            return "decompression_bomb", detail
        if "DOWNLOAD_MAXSIZE" in detail or "max size" in detail:
            return "too_large", detail
        if "max redirections" in detail:
            return "redirect_loop", detail
        if "robots.txt" in detail.lower():
            return "robots_denied", detail
        name = type(exc).__name__
        if name != "IgnoreRequest":  # e.g. the SSRF guard's own exception class
            return _snake(name), detail
        return "ignored", detail
    if isinstance(exc, (CannotResolveHostError, twisted_error.DNSLookupError)):
        return "dns_error", detail
    if isinstance(exc, (DownloadConnectionRefusedError, twisted_error.ConnectionRefusedError)):
        return "connection_refused", detail
    return _snake(type(exc).__name__), detail


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def _headers(headers) -> list[tuple[str, str]]:
    out = []
    for key, values in headers.items():
        for value in values:
            out.append((key.decode("latin-1"), value.decode("latin-1")))
    return out


#: Upper edges (ms) of the response latency histogram in the crawl stats (`news/latency_ms/<edge>`).
LATENCY_EDGES_MS = (10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000)

_CALLBACKS = ("parse_robots", "parse_feed", "parse_sitemap", "parse_section", "parse_article", "on_error")


class NewsSpider(Spider):
    name = "news"

    def __init__(self, *args, news_args: NewsArgs, crawl: CrawlSettings, source_cfg: Source, **kwargs):
        super().__init__(*args, **kwargs)
        self.args = news_args
        self.crawl_cfg = crawl
        self.source_cfg = source_cfg
        self.now = datetime.now(timezone.utc)
        self._requested: set[str] = set()
        # One bound method per callback for the whole crawl. Scrapy checks every response's
        # callback for a generator `return value` (inspect.getsource + ast.parse, ~1.5 ms) and
        # caches the answer weakly keyed by the callable object: with `self.parse_article`
        # evaluated per request, the key died with its request and 1 response in 8 paid again.
        for name in _CALLBACKS:
            setattr(self, name, getattr(self, name))

    @classmethod
    def from_crawler(cls, crawler, *args, **kwargs):
        known: dict[str, Any] = {k: kwargs.pop(k) for k in ("source", "run_id", "sources") if k in kwargs}
        if kwargs:
            raise UsageError(
                f"news spider: unknown argument(s): {', '.join(sorted(kwargs))} (expected source, run_id, sources)"
            )
        news_args = parse_args(known)
        if "run_id" not in known:  # say where the WARC files go: the id is needed to find them
            log.info("news spider: no -a run_id given: run id %s (now)", news_args.run_id)
        try:
            config = load_sources(news_args.sources)
            source = config.source(news_args.source)
        except ConfigError as exc:
            raise UsageError(f"news spider: {exc}") from None
        # Settings are still mutable here (Crawler applies them after creating the spider).
        crawler.settings.setdict(source_settings(config.crawl, source), priority="spider")
        crawler.settings.setdict(
            {
                "NEWS_SOURCE": source.name,
                "NEWS_RUN_ID": news_args.run_id,
                "NEWS_SOURCES_PATH": str(news_args.sources),
                "NEWS_REVISIT_HOURS": source.revisit_hours,
            },
            priority="spider",
        )
        spider = cls(*args, news_args=news_args, crawl=config.crawl, source_cfg=source, **kwargs)
        spider._set_crawler(crawler)
        crawler.signals.connect(spider._widen_resolver, signal=signals.spider_opened)
        return spider

    def _widen_resolver(self, spider=None) -> None:
        """The SSRF-guarding DNS resolver is built from process settings, before this spider read
        the sources file: add the file's `crawl.allow_private` entries to it, so a hand-run
        `scrapy crawl news` needs no `-s NEWS_ALLOW_PRIVATE=...`."""
        wanted = list(self.crawl_cfg.allow_private)
        if not wanted:
            return
        try:
            from spiders.netguard import Allowlist
            from spiders.resolver import installed_resolver
        except ImportError as exc:
            log.debug("no guarded resolver to configure: %s", exc)
            return
        resolver = installed_resolver()
        if resolver is None:
            return
        have = list(resolver.allow.entries)
        missing = [e for e in wanted if e not in have]
        if missing:
            resolver.allow = Allowlist.parse(have + missing)
            log.info("DNS resolver allowlist extended from the sources file: %s", ", ".join(missing))

    # ------------------------------------------------------------------ routing

    def _request(self, url: str, kind: str, callback, **meta) -> Request | None:
        # Duplicates are dropped here rather than by Scrapy's dupefilter, so that redirect
        # chains (dont_filter is inherited by redirected requests) end in REDIRECT_MAX_TIMES
        # and a reject, instead of vanishing silently when a loop comes back to its start.
        if url in self._requested:
            self._count("news/duplicate_link")
            return None
        self._requested.add(url)
        # OWN marks the spider's requests: robots.txt fetched by the robots middleware also
        # carries KIND=robots but must never be made conditional.
        meta.update({KIND: kind, DISCOVERED: url, OWN: True, "handle_httpstatus_list": [304]})
        return Request(url, callback=callback, errback=self.on_error, meta=meta, dont_filter=True)

    def _count(self, key: str, n: int = 1) -> None:
        self.crawler.stats.inc_value(key, n)

    def _article(self, url: str) -> list[Request]:
        self._count("news/discovered/article")
        req = self._request(url, "article", self.parse_article)
        return [req] if req else []

    def _sitemap(self, url: str, depth: int = 0) -> list[Request]:
        """A request for a sitemap `depth` index levels below a configured (or robots.txt) one."""
        self._count("news/discovered/sitemap")
        req = self._request(url, "sitemap", self.parse_sitemap, **{SITEMAP_DEPTH: depth})
        return [req] if req else []

    def _child_sitemap(self, url: str, parent: Response):
        """A sitemap announced by a sitemap index: followed up to NEWS_MAX_SITEMAP_DEPTH levels, else a reject."""
        depth = parent.meta.get(SITEMAP_DEPTH, 0) + 1
        limit = self.crawler.settings.getint("NEWS_MAX_SITEMAP_DEPTH", 3)
        if depth > limit:
            detail = f"sitemap index {parent.url} is nested {depth} levels deep; the limit is {limit}"
            yield self._reject(url, "sitemap_too_deep", detail, "sitemap")
            return
        yield from self._sitemap(url, depth)

    async def start(self):
        src = self.source_cfg
        hosts: dict[str, None] = {}
        for url in [*src.feeds, *src.sitemaps, *src.sections, *([src.home] if src.home else [])]:
            hosts[robots_url(url)] = None
        for url in hosts:
            # Archived, and read for `Sitemap:` lines; the robots middleware fetches its own copy.
            if req := self._request(url, "robots", self.parse_robots, dont_obey_robotstxt=True):
                yield req
        for url in src.feeds:
            if req := self._request(url, "feed", self.parse_feed):
                yield req
        for url in src.sitemaps:
            for req in self._sitemap(url):
                yield req
        for url in [*src.sections, *([src.home] if src.home else [])]:
            if req := self._request(canonicalize(url), "section", self.parse_section, **{DEPTH: 0}):
                yield req

    def _page(self, response: Response, kind: str, links=(), rel_canonical=None) -> FetchedPage:
        self._count("news/fetched")
        self._count(f"news/fetched/{kind}")
        self._count("news/bytes", len(response.body))
        if (latency := response.meta.get("download_latency")) is not None:  # for the run report's percentiles
            self._count(f"news/latency_ms/{next((e for e in LATENCY_EDGES_MS if latency * 1000 <= e), 'inf')}")
        request = response.request
        assert request is not None  # a response reaching a spider callback always carries its request
        original = response.meta.get(RENDERED, response)  # a rendered page: archived as fetched, plus its DOM
        return FetchedPage(
            url=response.url,
            kind=kind,
            status=response.status,
            headers=_headers(original.headers),
            body=original.body,
            request_headers=_headers(request.headers),
            method=request.method,
            discovered_url=response.meta.get(DISCOVERED, response.url),
            rel_canonical=rel_canonical,
            links=[tuple(x) for x in links],
            fetched_at=datetime.now(timezone.utc).isoformat(),
            rendered=response.body if original is not response else b"",
        )

    def _not_modified(self, response: Response, kind: str):
        """304: nothing parsed; the links the document announced last time are announced again."""
        self._count("news/not_modified")
        self._count(f"news/not_modified/{kind}")
        yield NotModified(url=response.meta.get(DISCOVERED, response.url), kind=kind)
        for url, link_kind in response.meta.get(CACHED_LINKS) or []:
            if link_kind == "article":
                yield from self._article(url)
            elif link_kind == "sitemap" and kind == "robots":
                yield from self._sitemap(url)  # announced by robots.txt: a top-level sitemap
            elif link_kind == "sitemap":
                yield from self._child_sitemap(url, response)

    def _reject(self, url: str, reason: str, detail: str = "", kind: str = "") -> CrawlReject:
        self._count(f"news/rejected/{reason}")
        log.info("rejected %s (%s): %s", url, reason, detail)
        return CrawlReject(url=url, reason=reason, detail=detail, kind=kind)

    # ------------------------------------------------------------------ callbacks

    def parse_robots(self, response: Response):
        if response.status == 304:
            yield from self._not_modified(response, "robots")
            return
        links: list[tuple[str, str]] = []
        home = self.source_cfg.home
        # A `home:` source discovers the sitemaps its own host's robots.txt announces.
        if self.source_cfg.robots_sitemaps or (home and robots_url(home) == robots_url(response.url)):
            for url in discovery.robots_sitemaps(response.body, response.url):
                links.append((url, "sitemap"))
                yield from self._sitemap(url)
        yield self._page(response, "robots", links)

    def parse_feed(self, response: Response):
        if response.status == 304:
            yield from self._not_modified(response, "feed")
            return
        try:
            entries = discovery.parse_feed(response.body, response.url, self._content_type(response) or None)
        except discovery.BadFeed as exc:
            yield self._page(response, "feed")
            yield self._reject(response.url, "bad_feed", str(exc), "feed")
            return
        links = []
        for entry in entries:
            if not discovery.is_fresh(entry.published, self.source_cfg.max_age_days, self.now):
                self._count("news/too_old")
                continue
            url = canonicalize(entry.url)
            links.append((url, "article"))
            yield from self._article(url)
        yield self._page(response, "feed", links)

    def parse_sitemap(self, response: Response):
        if response.status == 304:
            yield from self._not_modified(response, "sitemap")
            return
        try:
            body = discovery.maybe_gunzip(response.body, max_size=self.crawler.settings.getint("DOWNLOAD_MAXSIZE"))
            doc = discovery.parse_sitemap(body, response.url)
        except discovery.DecompressionBomb as exc:
            # not archived: the compressed body is what a bomb is made of
            yield self._reject(response.url, "decompression_bomb", str(exc), "sitemap")
            return
        except (OSError, ValueError, lxml.etree.XMLSyntaxError) as exc:
            yield self._page(response, "sitemap")
            yield self._reject(response.url, "bad_sitemap", str(exc), "sitemap")
            return
        links = []
        for entry in doc.entries:
            if not discovery.is_fresh(entry.published, self.source_cfg.max_age_days, self.now):
                self._count("news/too_old")
                continue
            url = canonicalize(entry.url)
            if doc.kind == "sitemapindex":
                links.append((url, "sitemap"))
                yield from self._child_sitemap(url, response)
            else:
                links.append((url, "article"))
                yield from self._article(url)
        yield self._page(response, "sitemap", links)

    def parse_section(self, response: Response):
        if response.status == 304:
            self._count("news/not_modified")
            return
        if not isinstance(response, HtmlResponse):
            yield self._reject(response.url, "not_html", self._content_type(response), "section")
            return
        depth = response.meta.get(DEPTH, 0)
        src = self.source_cfg
        found = discovery.section_links(response.text, response.url, src.allow, src.deny)
        self._count("news/denied_links", len(found.denied))
        if src.home:  # autodiscovery: the feeds the home and section pages announce
            yield from self._announced_feeds(response)
        if depth + 1 <= src.depth:
            for url in found.articles:
                yield from self._article(url)
        if depth + 1 < src.depth:
            for url in found.sections:
                self._count("news/discovered/section")
                if req := self._request(url, "section", self.parse_section, **{DEPTH: depth + 1}):
                    yield req
        yield self._page(response, "section")

    def _announced_feeds(self, response: Response):
        """Requests for the feeds a page announces with `<link rel=alternate>` (each once per crawl)."""
        for link in discovery.feed_links(response.text, response.url):
            url = canonicalize(link.url)
            if url in self._requested:
                continue
            self._count("news/discovered/feed")
            log.info("feed discovered on %s: %s (%s)", response.url, url, link.format)
            if req := self._request(url, "feed", self.parse_feed):
                yield req

    @staticmethod
    def _content_type(response: Response) -> str:
        return (response.headers.get("Content-Type") or b"").decode("latin-1")

    def parse_article(self, response: Response):
        if response.status == 304:
            self._count("news/not_modified")
            self._count("news/not_modified/article")
            yield NotModified(url=response.meta.get(DISCOVERED, response.url), kind="article")
            return
        ctype = response.headers.get("Content-Type") or b""
        if not isinstance(response, HtmlResponse) or (ctype and not _HTML_TYPES.match(ctype)):
            yield self._reject(response.url, "not_html", f"Content-Type: {self._content_type(response)!r}", "article")
            return
        if not response.body.strip():
            yield self._reject(response.url, "empty_body", f"HTTP {response.status} with an empty body", "article")
            return
        canonical = discovery.rel_canonical(response.text, response.url)
        yield self._page(response, "article", rel_canonical=canonical)

    def on_error(self, failure):
        request = failure.request
        kind = request.meta.get(KIND, "")
        if failure.check(SkippedSeen):
            return  # counted by the incremental middleware; not a reject
        reason, detail = classify_failure(failure)
        if reason in ("robots_denied", "robots_unreachable"):
            self._count("news/robots_denied")
        if kind == "robots" and reason == "http_404":
            self._count("news/robots_missing")  # no robots.txt: everything allowed, nothing to archive
            return
        yield self._reject(request.meta.get(DISCOVERED, request.url), reason, detail, kind)
