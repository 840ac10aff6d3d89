"""JavaScript rendering of article and section pages in headless Chromium, behind the crawl's own guards.

``RenderMiddleware`` (downloader middleware, order 540: after redirects, decompression and retries) takes
the spider's HTML response of a ``render: js`` source (or of a ``render: auto`` source whose page is an
app shell with too little text) and loads it in Playwright-driven Chromium (Debian's ``/usr/bin/chromium``,
no browser download). The response is then replaced by the rendered DOM.

Chromium itself never touches the network:

* the page's own document is fulfilled from the response Scrapy already fetched;
* every other request the page makes goes through ``page.route``: only documents (frames), scripts and
  XHR/fetch are allowed (images, media, fonts, stylesheets, beacons... are aborted), only to the page's
  own site (third parties, trackers included, are aborted), and only after the SSRF guard accepted the URL;
  an allowed request is then downloaded by Scrapy's downloader (``engine.download_async``), so the SSRF
  middleware checks every redirect hop and ``GuardedResolver`` the address actually connected to;
* WebSockets are refused (``page.route_web_socket``), service workers blocked, downloads refused, and
  the browser is started with an unreachable proxy, so anything that escaped interception goes nowhere;
* main-frame navigations away from the page are aborted.

``NEWS_RENDER_PATTERNS`` (a source's ``render_patterns``): only pages whose URL matches one of these regular
expressions are rendered.

Bounded: ``NEWS_RENDER_TIMEOUT`` seconds per page, ``NEWS_RENDER_MAX_PAGES`` open pages (8), a browser restart
after ``NEWS_RENDER_RESTART_PAGES`` pages or when its processes use more than ``NEWS_RENDER_MAX_MEMORY_MB``;
a crash or time-out is a reject (``render_failed: ...`` / ``render_timeout: ...``), never a dead crawl.

Cost: one browser, one context and its pages reused from render to render (``BrowserPool``), at most
``NEWS_RENDER_PROCESSES`` renderer processes (2), no GPU process or zygotes, the network service in the
browser process. ``NEWS_RENDER_WAIT_UNTIL`` (``load``) is the page event awaited before the requests settle.
On the JavaScript outlet (``benchmarks.bench_crawl --render``, 187 articles, on 2 cores other work kept at a
load average of 12-15) a new context and page per render gave 1.38 pages/s and a 2,224 MiB peak (crawl and
browser); this gives 4.10 pages/s and 1,299 MiB, at ~0.23 CPU seconds per rendered page.

Stats: ``render/pages``, ``render/auto_triggered``, ``render/skipped_pattern``, ``render/failed``,
``render/subresources``, ``render/blocked/<ssrf|third_party|type|websocket|navigation|scheme>``,
``render/browser_launches``.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import lxml.html
from scrapy import signals
from scrapy.exceptions import IgnoreRequest, NotConfigured
from scrapy.http import HtmlResponse, Request, Response
from scrapy.http.request import NO_CALLBACK

from pipeline.text.urls import same_site
from spiders.middlewares import SsrfGuardMiddleware

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from typing import Self

    from scrapy.crawler import Crawler

log = logging.getLogger(__name__)

#: Request.meta key set on a response the browser rendered; its value is the original response (archived as is).
RENDERED = "news_rendered"
RENDER_KIND = "render_subresource"
RENDERED_KINDS = ("article", "section")
#: What a news page needs to show its text: documents (frames), scripts and XHR / fetch.
ALLOWED_TYPES = frozenset({"document", "script", "xhr", "fetch"})
#: Response headers never handed to the browser (Scrapy already decoded the body; no cookies are kept).
_DROPPED_HEADERS = {"content-encoding", "content-length", "transfer-encoding", "set-cookie", "connection"}
#: Nowhere: anything Chromium would send outside interception goes to this dead proxy.
DEAD_PROXY = "http://127.0.0.1:9"
LAUNCH_ARGS = [
    f"--proxy-server={DEAD_PROXY}",
    "--proxy-bypass-list=<-loopback>",  # loopback too: by default Chromium would bypass the proxy for it
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-domain-reliability",
    "--dns-prefetch-disable",
    "--no-pings",
    "--disable-dev-shm-usage",
    # Memory and CPU: no GPU process, no zygotes, the network service inside the browser process (it
    # carries nothing: every request is answered through page.route), pages of the site sharing renderers.
    "--disable-gpu",
    "--in-process-gpu",
    "--no-zygote",
    "--enable-features=NetworkServiceInProcess2",
    "--disable-features=site-per-process,IsolateOrigins,SpareRendererForSitePerProcess,Translate,MediaRouter",
    "--disable-extensions",
    "--mute-audio",
    "--js-flags=--max-old-space-size=256",
]

_SHELL = re.compile(
    r"""id=["'](?:root|app|__next|__nuxt|svelte)["']|__NEXT_DATA__|__NUXT__|window\.__INITIAL_STATE__|"""
    r"""<noscript[^>]*>[^<]*(?:enable|requires?|turn on)\s+javascript""",
    re.I,
)
#: An app shell has less visible text than this (characters).
SHELL_MAX_TEXT = 600


def visible_text_length(html: str) -> int:
    """Characters of text a reader sees without scripts (script, style, noscript and template left out)."""
    try:
        doc = lxml.html.document_fromstring(html or "<html></html>")
    except (lxml.etree.ParserError, ValueError):
        return 0
    for bad in doc.xpath("//script|//style|//noscript|//template"):
        bad.drop_tree()
    body = doc.find("body")
    return len(" ".join((body if body is not None else doc).text_content().split()))


def needs_render(html: str) -> bool:
    """``render: auto``: is this an app shell (a JS framework mount point or a "enable JavaScript"
    notice) with too little text of its own to be an article?"""
    return bool(_SHELL.search(html[: 512 * 1024])) and visible_text_length(html) < SHELL_MAX_TEXT


class RenderError(Exception):
    """The browser could not render a page (crash, time-out, navigation failure)."""


class _Tab:
    """A pooled page; its request handlers (installed once) answer for the render it currently serves."""

    def __init__(self, page: Any, context: Any):
        self.page = page
        self.context = context
        self.guard: PageGuard | None = None
        self.crashed = False

    async def on_route(self, route: Any) -> None:
        if self.guard is not None:
            await self.guard.on_route(route)
            return
        try:  # between renders (a late request of the previous document): nothing goes out
            await route.abort("blockedbyclient")
        except Exception as exc:
            log.debug("route between renders failed: %s", exc)

    async def on_websocket(self, ws: Any) -> None:
        if self.guard is not None:
            await self.guard.on_websocket(ws)
        else:
            await ws.close(code=1008, reason="blocked by the crawler")


class BrowserPool:
    """One Chromium per crawl with one browser context and up to ``max_pages`` pages, reused from one render
    to the next (a new context and page per render cost a renderer process each: most of a render's CPU).

    The crawl is one source and the browser itself sends nothing (every request is answered through the
    guard, without cookies): the pages of the site share its script storage, as in a reader's browser, and
    nothing else. A page is reset to ``about:blank`` between renders. The browser restarts after ``restart_after``
    renders or when its processes use more than ``max_memory_mb``: new renders wait while it drains.
    """

    #: The browser's memory is read (a walk of the process tree) once per this many renders.
    MEMORY_CHECK_EVERY = 20
    #: Seconds allowed for resetting or closing a page before it is given up.
    RESET_TIMEOUT = 5.0

    def __init__(
        self,
        executable: str,
        max_pages: int,
        restart_after: int,
        max_memory_mb: float,
        user_agent: str,
        stats: Any = None,
        renderers: int = 2,
    ):
        self.executable = executable
        self.renderers = renderers
        self.restart_after = restart_after
        self.max_memory_mb = max_memory_mb
        self.user_agent = user_agent
        self.stats = stats
        self.slots = asyncio.Semaphore(max_pages)
        self.open_pages = 0
        self.served = 0
        self.launches = 0
        self._pw: Any = None
        self._browser: Any = None
        self._context: Any = None
        self._tabs: list[_Tab] = []
        self._idle = asyncio.Event()
        self._idle.set()
        self._lock = asyncio.Lock()

    async def _ensure_context(self) -> Any:
        async with self._lock:  # while a restart drains the browser, new renders wait here
            if self._browser is not None and self._should_restart():
                log.info("restarting the browser after %s pages", self.served)
                await self._idle.wait()
                await self._close_browser()
            if self._browser is None or not self._browser.is_connected():
                await self._launch()
            return self._context

    async def _launch(self) -> None:
        from playwright.async_api import async_playwright

        if self._pw is None:
            self._pw = await async_playwright().start()
        self._tabs = []
        args = [*LAUNCH_ARGS, f"--renderer-process-limit={self.renderers}"]
        self._browser = await self._pw.chromium.launch(executable_path=self.executable, headless=True, args=args)
        self._context = await self._browser.new_context(
            user_agent=self.user_agent,
            service_workers="block",
            accept_downloads=False,
            java_script_enabled=True,
        )
        self.launches += 1
        self.served = 0
        if self.stats is not None:
            self.stats.inc_value("render/browser_launches")

    def _should_restart(self) -> bool:
        if self.restart_after and self.served >= self.restart_after:
            return True
        if not self.max_memory_mb or not self.served or self.served % self.MEMORY_CHECK_EVERY:
            return False
        return browser_memory_mb() > self.max_memory_mb

    async def _new_tab(self, context: Any) -> _Tab:
        page = await context.new_page()
        tab = _Tab(page, context)
        page.on("crash", lambda _page: setattr(tab, "crashed", True))
        await page.route("**/*", tab.on_route)
        await page.route_web_socket(re.compile(".*"), tab.on_websocket)
        return tab

    @asynccontextmanager
    async def page(self, guard: PageGuard) -> AsyncIterator[Any]:
        """A page whose every request ``guard`` judges, for one render."""
        async with self.slots:
            context = await self._ensure_context()
            self.open_pages += 1
            self._idle.clear()
            tab: _Tab | None = None
            clean = False
            try:
                tab = self._tabs.pop() if self._tabs else await self._new_tab(context)
                tab.guard = guard
                yield tab.page
                clean = True
            finally:
                if tab is not None:
                    tab.guard = None
                    await self._release(tab, clean)
                self.open_pages -= 1
                self.served += 1
                if self.open_pages == 0:
                    self._idle.set()

    async def _release(self, tab: _Tab, clean: bool) -> None:
        """Back to the pool after a render that ended well; otherwise (a crash, a time-out) closed."""
        reuse = clean and not tab.crashed and tab.context is self._context and not tab.page.is_closed()
        try:
            if reuse:
                await asyncio.wait_for(tab.page.goto("about:blank"), self.RESET_TIMEOUT)
                self._tabs.append(tab)
                return
            await asyncio.wait_for(tab.page.close(), self.RESET_TIMEOUT)
        except Exception as exc:  # the browser died under the page: relaunched on next use
            log.info("resetting a render page failed: %s", exc)
            if reuse:
                try:
                    await asyncio.wait_for(tab.page.close(), self.RESET_TIMEOUT)
                except Exception:
                    pass

    async def _close_browser(self) -> None:
        browser, self._browser = self._browser, None
        self._context, self._tabs = None, []
        if browser is not None:
            try:
                await browser.close()
            except Exception as exc:
                log.info("closing the browser failed: %s", exc)

    async def close(self) -> None:
        await self._close_browser()
        if self._pw is not None:
            pw, self._pw = self._pw, None
            await pw.stop()


def browser_memory_mb() -> float:
    """Resident memory (MiB) of this process's Chromium descendants."""
    try:
        import psutil
    except ImportError:
        return 0.0
    total = 0
    for child in psutil.Process().children(recursive=True):
        try:
            if "chrom" in child.name().lower():
                total += child.memory_info().rss
        except psutil.Error:
            continue
    return total / 2**20


class PageGuard:
    """The `page.route` handler of one rendered page: every request it makes is judged here."""

    def __init__(self, mw: RenderMiddleware, response: Response):
        self.mw = mw
        self.response = response
        self.page_url = response.url
        self.inflight = 0
        self.served_document = False

    def _count(self, key: str) -> None:
        self.mw.stats.inc_value(key)

    async def block(self, route: Any, why: str, detail: str) -> None:
        self._count("render/blocked")
        self._count(f"render/blocked/{why}")
        log.info("render_blocked (%s): %s on %s", why, detail, self.page_url)
        await route.abort("blockedbyclient")

    async def on_route(self, route: Any) -> None:
        self.inflight += 1
        try:
            await self._handle(route)
        except Exception as exc:  # the page went away meanwhile: nothing left to answer
            log.debug("route of %s failed: %s", route.request.url, exc)
        finally:
            self.inflight -= 1

    async def _handle(self, route: Any) -> None:
        req = route.request
        url = req.url
        main_frame = req.is_navigation_request() and req.frame.parent_frame is None
        if main_frame and not self.served_document:  # page.goto(): the response Scrapy already has
            self.served_document = True
            await route.fulfill(status=self.response.status, headers=_headers(self.response), body=self.response.body)
            return
        if main_frame:
            await self.block(route, "navigation", url)
            return
        if not url.startswith(("http://", "https://")):
            await self.block(route, "scheme", url[:80])
            return
        if req.resource_type not in ALLOWED_TYPES:
            await self.block(route, "type", f"{req.resource_type} {url}")
            return
        ssrf = self.mw.ssrf
        if ssrf.lookup_target(url) is None:  # an IP literal: judged without a DNS lookup
            reason = ssrf.reason_for(url)
            if reason is not None:
                await self.block(route, "ssrf", reason)
                return
        if not same_site(url, self.page_url):
            await self.block(route, "third_party", url)
            return
        reason = await ssrf.check_url(url)
        if reason is not None:
            await self.block(route, "ssrf", reason)
            return
        await self._fetch(route, req)

    async def _fetch(self, route: Any, req: Any) -> None:
        """Download through Scrapy (SSRF middleware on every hop, guarded resolver) and hand the result over."""
        headers = {k: v for k, v in (await req.all_headers()).items() if k.lower() not in ("cookie", "host")}
        request = Request(
            req.url,
            method=req.method,
            headers=headers,
            body=req.post_data_buffer or b"",
            callback=NO_CALLBACK,
            dont_filter=True,
            # robots.txt is obeyed for the page and its frames; its scripts and data are part of the page
            meta={"news_kind": RENDER_KIND, "dont_obey_robotstxt": req.resource_type != "document"},
        )
        self._count("render/subresources")
        try:
            response = await self.mw.crawler.engine.download_async(request)
        except IgnoreRequest as exc:
            text = str(exc)
            await self.block(route, "ssrf" if text.startswith("ssrf_blocked") else "refused", text[:200])
            return
        except Exception as exc:
            self._count("render/subresource_failed")
            log.info("render subresource %s failed: %s", req.url, exc)
            await route.abort("failed")
            return
        await route.fulfill(status=response.status, headers=_headers(response), body=response.body)

    async def on_websocket(self, ws: Any) -> None:
        self._count("render/blocked")
        self._count("render/blocked/websocket")
        log.info("render_blocked (websocket): %s on %s", ws.url, self.page_url)
        await ws.close(code=1008, reason="blocked by the crawler")

    async def settle(self, deadline: float) -> None:
        """Wait until no routed request has been in flight for two checks in a row (or the deadline)."""
        quiet = 0
        while quiet < 2 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
            quiet = quiet + 1 if self.inflight == 0 else 0


def _headers(response: Response) -> dict[str, str]:
    out = {}
    for key, values in response.headers.items():
        name = key.decode("latin-1")
        if name.lower() not in _DROPPED_HEADERS and values:
            out[name] = b", ".join(values).decode("latin-1")
    return out


class RenderMiddleware:
    """Replaces the HTML response of an article or section page by the DOM Chromium rendered from it."""

    def __init__(self, crawler: Crawler, mode: str, pool: BrowserPool, timeout: float):
        self.crawler = crawler
        self.stats = crawler.stats
        self.mode = mode
        self.pool = pool
        self.timeout = timeout
        self.wait_until = crawler.settings.get("NEWS_RENDER_WAIT_UNTIL", "load")
        self.patterns = [re.compile(p) for p in crawler.settings.getlist("NEWS_RENDER_PATTERNS")]
        self.ssrf = SsrfGuardMiddleware.from_crawler(crawler)

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> Self:
        s = crawler.settings
        mode = s.get("NEWS_RENDER", "off") or "off"
        if mode == "off":
            raise NotConfigured
        pool = BrowserPool(
            s.get("NEWS_CHROMIUM", "/usr/bin/chromium"),
            max_pages=s.getint("NEWS_RENDER_MAX_PAGES", 8),
            restart_after=s.getint("NEWS_RENDER_RESTART_PAGES", 200),
            max_memory_mb=s.getfloat("NEWS_RENDER_MAX_MEMORY_MB", 1024),
            user_agent=s.get("USER_AGENT"),
            stats=crawler.stats,
            renderers=s.getint("NEWS_RENDER_PROCESSES", 2),
        )
        mw = cls(crawler, mode, pool, s.getfloat("NEWS_RENDER_TIMEOUT", 20.0))
        crawler.signals.connect(mw.spider_closed, signal=signals.spider_closed)
        return mw

    async def spider_closed(self, spider: Any = None) -> None:
        await self.pool.close()

    async def process_response(self, request: Request, response: Response, spider: Any = None) -> Response:
        if not request.meta.get("news_spider_request") or request.meta.get("news_kind") not in RENDERED_KINDS:
            return response
        if response.status != 200 or not isinstance(response, HtmlResponse):
            return response
        if self.patterns and not any(p.search(response.url) for p in self.patterns):
            self.stats.inc_value("render/skipped_pattern")
            return response
        if self.mode == "auto":
            if not needs_render(response.text):
                return response
            self.stats.inc_value("render/auto_triggered")
        try:
            html = await asyncio.wait_for(self.render(response), self.timeout + 5)
        except (TimeoutError, RenderError) as exc:
            self.stats.inc_value("render/failed")
            code = "render_timeout" if isinstance(exc, TimeoutError) else "render_failed"
            raise IgnoreRequest(f"{code}: {response.url}: {exc or 'no answer in time'}") from None
        self.stats.inc_value("render/pages")
        request.meta[RENDERED] = response
        headers = response.headers.copy()
        headers["Content-Type"] = "text/html; charset=utf-8"
        for name in ("Content-Length", "Content-Encoding"):
            headers.pop(name, None)
        return response.replace(body=html.encode("utf-8"), headers=headers, encoding="utf-8")

    async def render(self, response: Response) -> str:
        """The DOM after the page's scripts ran (and its requests settled), as HTML."""
        from playwright.async_api import Error as PlaywrightError

        guard = PageGuard(self, response)
        deadline = time.monotonic() + self.timeout
        try:
            async with self.pool.page(guard) as page:
                await page.goto(response.url, wait_until=self.wait_until, timeout=self.timeout * 1000)
                await guard.settle(deadline)
                return await page.content()
        except PlaywrightError as exc:
            raise RenderError(str(exc).splitlines()[0][:300]) from None
