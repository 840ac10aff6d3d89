"""Tiny local HTTP servers and a subprocess crawl runner for the guard tests.

* ``LocalServer(routes)``: ``http.server`` on 127.0.0.1, a free port, in a
  daemon thread, with a listen backlog of ``LISTEN_BACKLOG`` (socketserver's
  default of 5 drops connections when a crawler opens 8 at once, see below).  ``routes`` maps a path to a ``Reply`` (or a list of them,
  served in turn, the last one repeated) or to a callable ``(path) -> Reply``;
  unknown paths get 404.  ``hits(path)`` counts requests.
* ``run_crawl(urls, settings)``: runs ``ProbeSpider`` in a fresh Python
  process (Twisted's reactor cannot be restarted in-process) with
  ``CrawlerProcess`` and returns what happened: pages fetched, errback
  failures (class and message), robots.txt fetches seen through the
  ``robots_fetched`` signal, and the final stats.
* ``guard_settings(allow)``: the project's guard components, as the settings
  owner wires them.
* ``tcp_listen_counters()``: the kernel's count of connections dropped at a
  full listen queue, and of SYN retransmissions (Linux; machine-wide).

Why the backlog matters: these servers answer HTTP/1.0, one connection per
request, accepted by one Python thread.  With ``socketserver``'s backlog of 5,
a crawler that opens 8 connections at once (Scrapy's 8 per domain) overflows
the accept queue whenever that thread waits for the GIL; Linux then drops the
handshake and the client retransmits its SYN after 1 s.  A crawl of 2,000
pages lost 1-3 s that way (20-100 dropped connections), which the crawl
benchmark measured as the guards' cost.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent


@dataclass
class Reply:
    status: int = 200
    body: bytes | str = b""
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = "text/html; charset=utf-8"


def redirect(location: str, status: int = 302) -> Reply:
    return Reply(status, b"", {"Location": location})


def page(html: str) -> Reply:
    return Reply(200, f"<html><head><title>t</title></head><body>{html}</body></html>")


Route = Reply | list[Reply] | Callable[[str], Reply]

#: listen(2) backlog of the test servers; Linux caps it at net.core.somaxconn
LISTEN_BACKLOG = 128


class _HTTPServer(ThreadingHTTPServer):
    request_queue_size = LISTEN_BACKLOG
    daemon_threads = True


class LocalServer:
    def __init__(self, routes: dict[str, Route] | None = None):
        self.routes: dict[str, Route] = dict(routes or {})
        self._hits: dict[str, int] = {}
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                reply = server._reply(self.path)
                body = reply.body.encode() if isinstance(reply.body, str) else reply.body
                self.send_response_only(reply.status)
                self.send_header("Server", "crawl-helpers")
                if "Date" not in reply.headers:
                    self.send_header("Date", self.date_time_string())
                self.send_header("Content-Type", reply.content_type)
                self.send_header("Content-Length", str(len(body)))
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:  # quiet
                return None

        self.httpd = _HTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.base = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def _reply(self, path: str) -> Reply:
        with self._lock:
            n = self._hits.get(path, 0)
            self._hits[path] = n + 1
        route = self.routes.get(path)
        if route is None:
            return Reply(404, "not found", content_type="text/plain")
        if isinstance(route, list):
            return route[min(n, len(route) - 1)]
        if callable(route):
            return route(path)
        return route

    def hits(self, path: str) -> int:
        with self._lock:
            return self._hits.get(path, 0)

    def start(self) -> LocalServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def __enter__(self) -> LocalServer:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def free_port() -> int:
    """A port nothing listens on (bound then released)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tcp_listen_counters() -> dict[str, int] | None:
    """``{"ListenOverflows", "ListenDrops", "TCPSynRetrans"}`` from /proc/net/netstat (None off Linux).

    Machine-wide counters: take the difference around a crawl; other processes' traffic counts too.
    """
    try:
        lines = [ln.split() for ln in Path("/proc/net/netstat").read_text().splitlines() if ln.startswith("TcpExt:")]
    except OSError:
        return None
    if len(lines) < 2:
        return None
    values = dict(zip(lines[0][1:], lines[1][1:]))
    return {k: int(values.get(k, 0)) for k in ("ListenOverflows", "ListenDrops", "TCPSynRetrans")}


def guard_settings(allow: list[str] | None = None, **extra: Any) -> dict[str, Any]:
    settings: dict[str, Any] = {
        "DOWNLOADER_MIDDLEWARES": {
            "spiders.middlewares.SsrfGuardMiddleware": 40,
            "scrapy.downloadermiddlewares.robotstxt.RobotsTxtMiddleware": None,
            "spiders.middlewares.StrictRobotsTxtMiddleware": 100,
            "scrapy.downloadermiddlewares.retry.RetryMiddleware": None,
            "spiders.middlewares.RetryAfterMiddleware": 550,
        },
        "TWISTED_DNS_RESOLVER": "spiders.resolver.GuardedResolver",
        "NEWS_ALLOW_PRIVATE": list(allow or []),
        "ROBOTSTXT_OBEY": True,
    }
    settings.update(extra)
    return settings


BASE_TEST_SETTINGS: dict[str, Any] = {
    "TELNETCONSOLE_ENABLED": False,
    "LOG_LEVEL": "INFO",
    "DOWNLOAD_TIMEOUT": 10,
    "RETRY_TIMES": 2,
    "REMOTE_CONTROL_ENABLED": False,
    "USER_AGENT": "news-ingest-test/0.1",
}


def run_crawl(
    urls: list[str],
    settings: dict[str, Any] | None = None,
    *,
    follow: bool = False,
    spider: str = "probe",
    timeout: float = 120,
    cwd: Path | None = None,
    project: bool = False,
) -> dict[str, Any]:
    """Crawl ``urls`` in a subprocess; returns ``{"pages", "failures", "robots", "stats", "log"}``.

    ``project=True`` starts from the project's settings (``spiders.settings``) and applies only
    ``settings`` on top (not ``BASE_TEST_SETTINGS``), to check what a real run gets.
    """
    spec = {
        "urls": urls,
        "settings": dict(settings or {}) if project else {**BASE_TEST_SETTINGS, **(settings or {})},
        "follow": follow,
        "spider": spider,
        "project": project,
    }
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("SCRAPY_SETTINGS_MODULE", None)
    if project:
        env["SCRAPY_SETTINGS_MODULE"] = "spiders.settings"
    proc = subprocess.run(
        [sys.executable, "-m", "tests.crawl_helpers"],
        input=json.dumps(spec),
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=str(cwd or REPO),
        env=env,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"crawl subprocess failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("CRAWL_RESULT ")]
    if not lines:
        raise RuntimeError(f"no result from crawl subprocess:\n{proc.stderr[-4000:]}")
    result = json.loads(lines[-1][len("CRAWL_RESULT ") :])
    result["log"] = proc.stderr
    return result


def _child() -> None:
    """Subprocess side of run_crawl: one CrawlerProcess, results as one JSON line."""
    import scrapy
    from scrapy.crawler import CrawlerProcess

    from spiders.middlewares import robots_fetched

    spec = json.loads(sys.stdin.read())
    pages: list[dict[str, Any]] = []
    failures: list[dict[str, Any]] = []
    robots: list[dict[str, Any]] = []

    class ProbeSpider(scrapy.Spider):
        name = "probe"

        async def start(self):
            for url in spec["urls"]:
                yield scrapy.Request(url, callback=self.parse, errback=self.failed, dont_filter=True)

        def parse(self, response):
            pages.append(
                {
                    "url": response.url,
                    "status": response.status,
                    "request_url": response.request.url,
                    "retry_after_wait": response.request.meta.get("retry_after_wait"),
                }
            )
            if spec["follow"] and hasattr(response, "css"):
                for href in response.css("a::attr(href)").getall():
                    yield response.follow(href, callback=self.parse, errback=self.failed)

        def failed(self, failure):
            failures.append(
                {
                    "url": failure.request.url,
                    "type": failure.type.__name__,
                    "message": str(failure.value),
                }
            )

    class BareSpider(scrapy.Spider):
        """For the benchmark: fetch the URLs, nothing else."""

        name = "bare"

        async def start(self):
            for url in spec["urls"]:
                yield scrapy.Request(url, callback=self.parse, errback=self.failed)

        def parse(self, response):
            pages.append({"url": response.url, "status": response.status})

        def failed(self, failure):
            failures.append({"url": failure.request.url, "type": failure.type.__name__, "message": str(failure.value)})

    spider_cls = {"probe": ProbeSpider, "bare": BareSpider}[spec["spider"]]
    if spec.get("project"):
        from scrapy.utils.project import get_project_settings

        settings = get_project_settings()
        settings.setdict(spec["settings"], priority="cmdline")
    else:
        settings = spec["settings"]
    process = CrawlerProcess(settings, install_root_handler=True)
    crawler = process.create_crawler(spider_cls)

    def on_robots(response, request, outcome, reason):
        robots.append(
            {
                "url": request.url,
                "outcome": outcome,
                "reason": reason,
                "status": None if response is None else response.status,
                "kind": request.meta.get("news_kind"),
                "body": None if response is None else response.text[:200],
            }
        )

    crawler.signals.connect(on_robots, signal=robots_fetched)
    process.crawl(crawler)
    process.start()
    stats = {
        k: (v if isinstance(v, (int, float, str, bool)) or v is None else str(v))
        for k, v in crawler.stats.get_stats().items()
    }
    print("CRAWL_RESULT " + json.dumps({"pages": pages, "failures": failures, "robots": robots, "stats": stats}))


if __name__ == "__main__":
    _child()
