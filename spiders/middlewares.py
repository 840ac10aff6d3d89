"""Downloader middlewares: SSRF guard, strict robots.txt (RFC 9309), Retry-After.

Wiring (``spiders/settings.py``)::

    DOWNLOADER_MIDDLEWARES = {
        "spiders.middlewares.SsrfGuardMiddleware": 40,          # before robots: no robots fetch to a private host
        "scrapy.downloadermiddlewares.robotstxt.RobotsTxtMiddleware": None,
        "spiders.middlewares.StrictRobotsTxtMiddleware": 100,
        "scrapy.downloadermiddlewares.retry.RetryMiddleware": None,
        "spiders.middlewares.RetryAfterMiddleware": 550,
        "spiders.middlewares.HeaderLimitMiddleware": 950,        # first to see a response
    }
    TWISTED_DNS_RESOLVER = "spiders.resolver.GuardedResolver"
    NEWS_ALLOW_PRIVATE = [...]      # from crawl.allow_private

Every refusal raises ``IgnoreRequest`` whose message starts with a stable
reason code, so a spider errback can record it in the rejects file as is:
``ssrf_blocked: ...``, ``robots_denied: ...``, ``robots_unreachable: ...``,
``retry_after_too_long: ...``, ``headers_too_large: ...``.
"""

from __future__ import annotations

import email.utils
import logging
import re
import socket
import time
from dataclasses import dataclass
from datetime import timezone
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from scrapy import signals
from scrapy.downloadermiddlewares.retry import RetryMiddleware
from scrapy.downloadermiddlewares.robotstxt import RobotsTxtMiddleware
from scrapy.exceptions import CannotResolveHostError, IgnoreRequest, NotConfigured
from scrapy.http import Request, Response
from scrapy.http.request import NO_CALLBACK
from scrapy.utils.asyncio import call_later
from scrapy.utils.defer import maybe_deferred_to_future
from scrapy.utils.httpobj import urlparse_cached
from scrapy.utils.misc import build_from_crawler
from scrapy.utils.response import response_status_message
from twisted.internet.defer import Deferred
from twisted.internet.error import DNSLookupError
from twisted.internet.threads import deferToThread

from spiders.netguard import Allowlist, check_address, default_port, parse_ip_literal
from spiders.resolver import installed_resolver

if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Self

    from scrapy.crawler import Crawler
    from scrapy.robotstxt import RobotParser

logger = logging.getLogger(__name__)

#: Custom signal: a robots.txt fetch finished.  Handlers get ``response``
#: (None on a network error), ``request`` (the robots.txt request; its
#: ``meta["news_kind"] == "robots"``), ``outcome`` (``ok``, ``4xx_allow``,
#: ``unreachable``) and ``reason``.  The WARC pipeline connects to it with
#: ``crawler.signals.connect(handler, signal=spiders.middlewares.robots_fetched)``
#: to archive robots.txt.  (Scrapy's own ``response_received`` signal also
#: fires for robots.txt responses, tagged by the same meta key.)
robots_fetched = object()


# --------------------------------------------------------------------------- SSRF


class SsrfGuardMiddleware:
    """Refuse requests (and redirect hops) to non-public addresses.

    Redirects and meta refreshes come back through ``process_request`` as new
    requests, so every hop is checked.  IP literals in every form a resolver
    accepts are checked directly; host names are resolved (off the reactor
    thread, cached ``NEWS_SSRF_DNS_CACHE_SECONDS``) and refused when *any*
    address is refused.  ``spiders.resolver.GuardedResolver`` repeats the
    check on the address actually connected to.

    Settings: ``NEWS_SSRF_GUARD_ENABLED`` (default True), ``NEWS_ALLOW_PRIVATE``
    (list of ``ip:port`` / CIDR / ``host:port``), ``NEWS_SSRF_DNS_CACHE_SECONDS``
    (60), ``NEWS_ALLOWED_SCHEMES`` (http, https, data).
    Stats: ``ssrf/blocked``, ``ssrf/blocked/<reason>``.
    """

    def __init__(
        self,
        crawler: Crawler,
        allow: Allowlist,
        *,
        schemes: set[str],
        dns_cache_seconds: float = 60.0,
        lookup: Callable[[str, int], list[str]] | None = None,
    ):
        self.crawler = crawler
        self.stats = crawler.stats
        self.allow = allow
        self.schemes = schemes
        self.dns_cache_seconds = dns_cache_seconds
        #: (host, port) -> list of IP strings; injectable for tests
        self.lookup = lookup or _getaddrinfo
        self._dns_cache: dict[str, tuple[float, list[str]]] = {}

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> Self:
        settings = crawler.settings
        if not settings.getbool("NEWS_SSRF_GUARD_ENABLED", True):
            raise NotConfigured
        allow = Allowlist.parse(settings.getlist("NEWS_ALLOW_PRIVATE"))
        schemes = {s.lower() for s in settings.getlist("NEWS_ALLOWED_SCHEMES", ["http", "https", "data"])}
        return cls(
            crawler,
            allow,
            schemes=schemes,
            dns_cache_seconds=settings.getfloat("NEWS_SSRF_DNS_CACHE_SECONDS", 60.0),
        )

    async def process_request(self, request: Request) -> None:
        reason = await self.check_url(request.url)
        if reason is not None:
            self._block(request, reason)

    def process_exception(self, request: Request, exception: Exception) -> None:
        """A failed lookup caused by GuardedResolver becomes an ssrf_blocked IgnoreRequest."""
        if not isinstance(exception, (CannotResolveHostError, DNSLookupError)):
            return None
        resolver = installed_resolver()
        host = urlparse_cached(request).hostname or ""
        reason = resolver.blocked_reasons.get(host) if resolver is not None else None
        if reason is not None:
            self._block(request, reason, category_from=reason)
        return None

    async def check_url(self, url: str) -> str | None:
        """None when ``url`` may be fetched, else the refusal reason (without the code prefix)."""
        target = self.lookup_target(url)
        addresses = await self._resolve(*target) if target is not None else None
        return self.reason_for(url, addresses)

    def lookup_target(self, url: str) -> tuple[str, int] | None:
        """(host, port) when ``url``'s host is a name that must be resolved before judging it."""
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme not in self.schemes or scheme == "data" or not parts.hostname:
            return None
        if parse_ip_literal(parts.hostname) is not None:
            return None
        try:
            port = parts.port or default_port(scheme) or 0
        except ValueError:
            return None
        return parts.hostname, port

    def reason_for(self, url: str, addresses: list[str] | None = None) -> str | None:
        """Judge ``url``; for a host name, ``addresses`` is what it resolved to (None: unresolvable)."""
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme not in self.schemes:
            return f"scheme {scheme or '(none)'} is not allowed"
        if scheme == "data":
            return None
        host = parts.hostname or ""
        try:
            port = parts.port or default_port(scheme)
        except ValueError:
            return f"bad port in {url}"
        if not host:
            return f"no host in {url}"
        ip = parse_ip_literal(host)
        if ip is not None:
            return check_address(ip, port, self.allow)
        for address in addresses or ():
            reason = check_address(address, port, self.allow)
            if reason is not None:
                return f"{host} -> {reason}"
        return None

    async def _resolve(self, host: str, port: int) -> list[str]:
        now = time.monotonic()
        hit = self._dns_cache.get(host)
        if hit is not None and hit[0] > now:
            return hit[1]
        try:
            addresses = await maybe_deferred_to_future(deferToThread(self.lookup, host, port))
        except OSError as exc:
            # Unresolvable: nothing to connect to, so nothing to guard; the
            # download itself fails with DNSLookupError and is reported there.
            logger.debug("SSRF guard could not resolve %s: %s", host, exc)
            return []
        if len(self._dns_cache) > 10000:
            self._dns_cache.clear()
        self._dns_cache[host] = (now + self.dns_cache_seconds, addresses)
        return addresses

    def _block(self, request: Request, reason: str, category_from: str | None = None) -> None:
        category = _reason_category(category_from or reason)
        self.stats.inc_value("ssrf/blocked")
        self.stats.inc_value(f"ssrf/blocked/{category}")
        logger.warning("ssrf_blocked: %s (%s)", reason, request.url)
        raise IgnoreRequest(f"ssrf_blocked: {reason}")


def _getaddrinfo(host: str, port: int) -> list[str]:
    infos = socket.getaddrinfo(host, port or None, type=socket.SOCK_STREAM)
    # sockaddr[0] is the address text for AF_INET/AF_INET6 (typeshed says str | int for AF_CAN etc.)
    return sorted({str(info[4][0]) for info in infos})


def _reason_category(reason: str) -> str:
    for category in (
        "scheme",
        "loopback",
        "link-local",
        "multicast",
        "cgnat",
        "reserved",
        "unspecified",
        "private",
        "not-global",
    ):
        if f" is {category}" in reason or reason.startswith(category):
            return category
    return "other"


# --------------------------------------------------------------------------- response headers


def header_size(response: Response) -> tuple[int, int]:
    """(number of header lines, their bytes as sent: name, ": ", value, CRLF) of a response."""
    count = size = 0
    for name, values in response.headers.items():
        for value in values:
            count += 1
            size += len(name) + len(value) + 4
    return count, size


class HeaderLimitMiddleware:
    """Refuse responses with too many or too large headers (``headers_too_large: ...``).

    ``DOWNLOAD_MAXSIZE`` counts only the body: a server could send megabytes of headers
    that would be archived and parsed with the page. Placed after the downloader
    (order 950), so an oversized response is refused before redirects or decompression.

    Settings: ``NEWS_MAX_HEADER_BYTES`` (65536, from ``crawl.max_header_bytes``),
    ``NEWS_MAX_HEADER_COUNT`` (500). Stats: ``news/headers_too_large``.
    """

    def __init__(self, crawler: Crawler, max_bytes: int, max_count: int):
        self.stats = crawler.stats
        self.max_bytes = max_bytes
        self.max_count = max_count

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> Self:
        settings = crawler.settings
        return cls(
            crawler,
            settings.getint("NEWS_MAX_HEADER_BYTES", 64 * 1024),
            settings.getint("NEWS_MAX_HEADER_COUNT", 500),
        )

    def process_response(self, request: Request, response: Response, spider: Any = None) -> Response:
        count, size = header_size(response)
        if count <= self.max_count and size <= self.max_bytes:
            return response
        self.stats.inc_value("news/headers_too_large")
        logger.warning("headers_too_large: %s sent %s headers, %s bytes", request.url, count, size)
        raise IgnoreRequest(
            f"headers_too_large: {request.url} sent {count} headers ({size} bytes); "
            f"limits are {self.max_count} headers and {self.max_bytes} bytes"
        )


# --------------------------------------------------------------------------- robots.txt


@dataclass
class RobotsEntry:
    """What is known about one scheme://host:port's robots.txt."""

    outcome: str  # "ok", "4xx_allow", "unreachable"
    parser: RobotParser | None
    expires: float  # time.monotonic() after which it is fetched again
    reason: str
    robots_url: str


def product_token(useragent: str | bytes) -> str:
    """The product token of a User-Agent ("news-ingest" of "news-ingest/0.1 (+https://...)").

    RFC 9309 2.2.1 matches robots.txt groups against the product token only: the whole header
    would also match groups named after words of its comment ("example", "ops").
    """
    if isinstance(useragent, bytes):
        useragent = useragent.decode("latin-1")
    match = re.match(r"\s*([A-Za-z_-]+)", useragent)
    return match.group(1) if match else useragent.strip()


class StrictRobotsTxtMiddleware(RobotsTxtMiddleware):
    """Scrapy's RobotsTxtMiddleware (Protego) with RFC 9309's error handling.

    * 2xx: the rules apply; cached ``ROBOTS_CACHE_SECONDS`` (default and max 86400).
    * 4xx (except 429), or more than ``ROBOTS_MAX_REDIRECTS`` (5) redirects:
      "unavailable" -- everything allowed (``robots/4xx_allow``).  The body
      of an error page is never parsed as rules.
    * 5xx, 429, a network error (refused, timeout, DNS) or a refused
      redirect hop: "unreachable" -- everything on that host is disallowed
      (``robots/unreachable_disallow`` per refused request) until a fetch
      succeeds; it is tried again on the first request after
      ``ROBOTS_RETRY_SECONDS`` (60).
    * Requests refused raise ``IgnoreRequest("robots_denied: ...")`` or
      ``IgnoreRequest("robots_unreachable: ...")`` and count ``robots/denied``.

    * Groups are matched on the product token of ``ROBOTSTXT_USER_AGENT`` (else the
      request's User-Agent): our own group wins over ``*`` (RFC 9309 2.2.1).

    Each fetch fires the ``robots_fetched`` signal (see module) so robots.txt
    can be archived.
    """

    def __init__(self, crawler: Crawler):
        super().__init__(crawler)
        settings = crawler.settings
        # RFC 9309 2.4: "crawlers SHOULD NOT use the cached version for more than 24 hours"
        self.cache_seconds = min(settings.getfloat("ROBOTS_CACHE_SECONDS", 86400.0), 86400.0)
        self.retry_seconds = settings.getfloat("ROBOTS_RETRY_SECONDS", 60.0)
        # RFC 9309 2.3.1.2: follow at least five consecutive redirects
        self.max_redirects = settings.getint("ROBOTS_MAX_REDIRECTS", 5)
        self._entries: dict[str, RobotsEntry] = {}
        self._waiters: dict[str, list[Deferred[RobotsEntry]]] = {}
        self._disallow_all: RobotParser = build_from_crawler(self._parserimpl, crawler, b"User-agent: *\nDisallow: /\n")

    async def process_request(self, request: Request, spider: Any = None) -> None:
        if request.meta.get("dont_obey_robotstxt"):
            return
        if urlparse_cached(request).scheme not in ("http", "https"):
            return
        entry = await self.robots_entry(request)
        self.check(entry, request)

    def check(self, entry: RobotsEntry, request: Request) -> None:
        if entry.outcome == "unreachable":
            self._stats.inc_value("robots/denied")
            self._stats.inc_value("robots/unreachable_disallow")
            logger.info("robots_unreachable: %s refused, %s", request.url, entry.reason)
            raise IgnoreRequest(f"robots_unreachable: {entry.robots_url} {entry.reason}; disallowing the host")
        if entry.parser is None:
            return
        useragent: str | bytes | None = self._robotstxt_useragent
        if not useragent:
            useragent = request.headers.get(b"User-Agent", self._default_useragent)
            assert useragent is not None  # as in Scrapy's RobotsTxtMiddleware: the USER_AGENT default is set
        if not entry.parser.allowed(request.url, product_token(useragent)):
            self._stats.inc_value("robots/denied")
            logger.debug("robots_denied: %s", request.url)
            raise IgnoreRequest(f"robots_denied: {request.url} is disallowed by {entry.robots_url}")

    async def robots_entry(self, request: Request) -> RobotsEntry:
        url = urlparse_cached(request)
        key = f"{url.scheme}://{url.netloc}"
        entry = self._entries.get(key)
        if entry is not None and entry.expires > time.monotonic():
            return entry
        if key in self._waiters:
            waiter: Deferred[RobotsEntry] = Deferred()
            self._waiters[key].append(waiter)
            return await maybe_deferred_to_future(waiter)
        self._waiters[key] = []
        try:
            entry = await self._fetch(key)
        except BaseException:
            # cancelled (shutdown): release whoever waits for this host, then propagate
            entry = self._entry("unreachable", None, "fetch was cancelled", f"{key}/robots.txt")
            for waiter in self._waiters.pop(key, []):
                waiter.callback(entry)
            raise
        waiters = self._waiters.pop(key, [])
        self._entries[key] = entry
        for waiter in waiters:
            waiter.callback(entry)
        return entry

    async def _fetch(self, key: str) -> RobotsEntry:
        robots_url = f"{key}/robots.txt"
        robots_req = Request(
            robots_url,
            priority=self.DOWNLOAD_PRIORITY,
            meta={
                "dont_obey_robotstxt": True,
                "redirect_ttl": self.max_redirects,
                "news_kind": "robots",
            },
            callback=NO_CALLBACK,
            dont_filter=True,
        )
        self._stats.inc_value("robots/fetch")
        response: Response | None = None
        try:
            response = await self.crawler.engine.download_async(robots_req)
        except IgnoreRequest as exc:
            if "max redirections" in str(exc):
                entry = self._entry("4xx_allow", None, f"more than {self.max_redirects} redirects", robots_url)
            else:
                entry = self._entry("unreachable", None, f"could not be fetched ({exc})", robots_url)
        except Exception as exc:  # network errors: connection refused, timeout, DNS
            entry = self._entry("unreachable", None, f"could not be fetched ({type(exc).__name__}: {exc})", robots_url)
        else:
            entry = self._from_response(response, robots_url)
        self._stats.inc_value(f"robots/{entry.outcome}")
        logger.info("robots.txt %s: %s (%s)", robots_url, entry.outcome, entry.reason)
        await self.crawler.signals.send_catch_log_async(
            signal=robots_fetched,
            response=response,
            request=robots_req,
            outcome=entry.outcome,
            reason=entry.reason,
        )
        if entry.parser is not None and entry.outcome == "ok":
            await self.crawler.signals.send_catch_log_async(
                signal=signals.robots_parsed, robotparser=entry.parser, request=robots_req
            )
        return entry

    def _from_response(self, response: Response, robots_url: str) -> RobotsEntry:
        status = response.status
        if 200 <= status < 300:
            parser = build_from_crawler(self._parserimpl, self.crawler, response.body)
            return self._entry("ok", parser, f"HTTP {status}", robots_url)
        if status == 429 or status >= 500:
            return self._entry("unreachable", None, f"answered HTTP {status}", robots_url)
        # 4xx, or a 3xx that could not be followed: "unavailable", allow all
        return self._entry("4xx_allow", None, f"answered HTTP {status}", robots_url)

    def _entry(self, outcome: str, parser: RobotParser | None, reason: str, robots_url: str) -> RobotsEntry:
        ttl = self.retry_seconds if outcome == "unreachable" else self.cache_seconds
        return RobotsEntry(outcome, parser, time.monotonic() + ttl, reason, robots_url)


# --------------------------------------------------------------------------- Retry-After


def parse_retry_after(
    value: bytes | str | None, date: bytes | str | None = None, now: float | None = None
) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP-date), or None.

    An HTTP-date is measured from the response's ``Date`` header when present
    (the server's clock), else from ``now`` (this machine's); a date in the
    past means 0.
    """
    if value is None:
        return None
    if isinstance(value, bytes):
        value = value.decode("latin-1")
    value = value.strip()
    if not value:
        return None
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    base: float | None = None
    if date is not None:
        if isinstance(date, bytes):
            date = date.decode("latin-1")
        try:
            base_dt = email.utils.parsedate_to_datetime(date)
            if base_dt.tzinfo is None:
                base_dt = base_dt.replace(tzinfo=timezone.utc)
            base = base_dt.timestamp()
        except (TypeError, ValueError):
            base = None
    if base is None:
        base = time.time() if now is None else now
    return max(0.0, when.timestamp() - base)


class RetryAfterMiddleware(RetryMiddleware):
    """RetryMiddleware that honours ``Retry-After`` on 429 and 503.

    The retry is scheduled at once, but the download slot of the host is
    paused for the advertised time (``Slot.latercall``, the same mechanism
    ``DOWNLOAD_DELAY`` uses), so no thread or reactor is blocked and every
    request to that host waits, as the server asked.  Longer than
    ``RETRY_AFTER_MAX`` (300 s): no retry, ``IgnoreRequest("retry_after_too_long: ...")``.
    Without the header, or on other codes, it is RetryMiddleware.

    Settings: ``RETRY_AFTER_MAX``, ``RETRY_AFTER_HTTP_CODES`` ([429, 503]) plus
    RetryMiddleware's.  Stats: ``retry_after/waited``,
    ``retry_after/wait_seconds_total``, ``retry_after/max_wait_seconds``,
    ``retry_after/too_long``, plus ``retry/count`` etc.  The retry request
    carries ``meta["retry_after_wait"]``; ``self.waits`` lists (url, seconds).
    """

    def __init__(self, settings: Any):
        super().__init__(settings)
        self.max_wait = settings.getfloat("RETRY_AFTER_MAX", 300.0)
        self.retry_after_codes = {int(c) for c in settings.getlist("RETRY_AFTER_HTTP_CODES", [429, 503])}
        self.waits: list[tuple[str, float]] = []
        self._paused_until: dict[str, float] = {}

    def process_response(self, request: Request, response: Response, spider: Any = None) -> Request | Response:
        if request.meta.get("dont_retry", False):
            return response
        if response.status in self.retry_after_codes:
            wait = parse_retry_after(response.headers.get(b"Retry-After"), response.headers.get(b"Date"))
            if wait is not None:
                return self._retry_after(request, response, wait)
        return super().process_response(request, response)

    def _retry_after(self, request: Request, response: Response, wait: float) -> Request | Response:
        stats = self.crawler.stats
        if wait > self.max_wait:
            stats.inc_value("retry_after/too_long")
            logger.warning(
                "retry_after_too_long: %s answered %s with Retry-After %.0fs (RETRY_AFTER_MAX %.0fs)",
                request.url,
                response.status,
                wait,
                self.max_wait,
            )
            raise IgnoreRequest(
                f"retry_after_too_long: {request.url} answered {response.status} with "
                f"Retry-After {wait:.0f}s > RETRY_AFTER_MAX {self.max_wait:.0f}s"
            )
        retry = self._retry(request, response_status_message(response.status))
        if retry is None:
            return response  # retries exhausted: RetryMiddleware already logged and counted it
        retry.meta["retry_after_wait"] = wait
        self.waits.append((request.url, wait))
        stats.inc_value("retry_after/waited")
        # StatsCollector adds any number; Scrapy annotates `count` as int
        stats.inc_value("retry_after/wait_seconds_total", wait)  # type: ignore[arg-type]
        stats.max_value("retry_after/max_wait_seconds", wait)
        paused = self.pause_slot(request, wait)
        logger.info(
            "Retry-After %.1fs on %s (HTTP %s): slot %s",
            wait,
            request.url,
            response.status,
            "paused" if paused else "not found, retrying without pause",
        )
        return retry

    def pause_slot(self, request: Request, wait: float) -> bool:
        """Hold the download slot of ``request`` for ``wait`` seconds; False if there is none."""
        try:
            engine = self.crawler.engine
        except RuntimeError:  # Scrapy >= 2.19: no engine before the crawl starts
            logger.debug("no engine: cannot pause the slot of %s", request.url)
            return False
        downloader = getattr(engine, "downloader", None)
        if downloader is None or wait <= 0:
            return False
        key = downloader.get_slot_key(request)
        slot = downloader.slots.get(key)
        if slot is None:
            return False
        until = time.monotonic() + wait
        if self._paused_until.get(key, 0.0) >= until and slot.latercall is not None:
            return True  # already paused at least that long
        self._paused_until[key] = until
        # lastseen in the future also keeps the slot from being garbage-collected meanwhile
        slot.lastseen = max(slot.lastseen, until)
        if slot.latercall is not None:
            slot.latercall.cancel()
        slot.latercall = call_later(wait, downloader._latercall, slot)
        self.crawler.stats.set_value("retry_after/last_pause_seconds", wait)
        return True
