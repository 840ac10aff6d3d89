"""`SampleSite`: every outlet on its own 127.0.0.1 port, served by threaded HTTP servers."""

from __future__ import annotations

import logging
import threading
from collections import Counter
from datetime import datetime, timezone
from email.utils import format_datetime, parsedate_to_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from examples.sample_site.build import OUTLETS, Article, OutletSite, build_bulk, build_regular, url
from examples.sample_site.hostile import build_hostile
from examples.sample_site.reply import Reply, Request, Route
from examples.sample_site.templates import Outlet

log = logging.getLogger(__name__)

HOSTILE_OUTLET = ("hostile-times", "Hostile Times", "wordpress", [])  # no sections: its nav is Home only
BULK_OUTLET = ("bulk-news", "Bulk News", "arc", ["all"])
DEFAULT_PORTS = (8701, 8702, 8703, 8704)
N_EPOCHS = 3
SOURCES_HEADER = """\
# Sources file for the offline sample news site (examples/sample_site), validated by
# pipeline.core.config.load_sources. Written by `python -m examples.sample_site sources`.
#
# crawl:                 crawl-wide settings (pipeline.core.config.CrawlSettings)
#   allow_private        host:port entries the SSRF guard lets through: the site's own 127.0.0.1 ports.
#                        Nothing else private is allowed (the hostile outlet redirects to 169.254.169.254
#                        and 10.0.0.1, and its feed links to 192.168.1.10: all must stay blocked).
#   download_timeout, max_page_bytes, ...  may be added here (tests use 3 s and 8 MiB).
# sources:               one per outlet (pipeline.core.config.Source)
#   feeds                RSS 2.0 (courier), Atom (herald), RSS 0.91 (gazette), RSS 2.0 (hostile)
#   sitemaps             a sitemap index (courier), news sitemaps (herald), a gzip sitemap (gazette)
#   sections             front and section pages, followed `depth` links deep
#   robots_sitemaps      also read the Sitemap: lines of robots.txt
#   max_age_days         feed/sitemap entries older than this are not fetched (the archive articles are ~400 days old)
#   concurrency, delay   politeness per source
#   language             expected language of the articles

"""


class _Server(ThreadingHTTPServer):
    daemon_threads = True  # a slow page must never hold up stop()
    allow_reuse_address = True
    # socketserver listens with a backlog of 5; pages go over HTTP/1.0 (a connection each), and a
    # crawler opening 8-16 at once overflowed it: the kernel dropped connections and each cost the
    # client a 1 s retransmit wait. Real web servers listen with 128 or more.
    request_queue_size = 128


class HttpSite:
    """Hit counting and the HTTP handler, shared by `SampleSite` and `BenchmarkOutlet`.

    Subclasses implement `_route(port, path)`.
    """

    def __init__(self) -> None:
        self._stopping = threading.Event()
        self._hits: Counter[tuple[int, str]] = Counter()
        self._hits_lock = threading.Lock()

    def hits(self, path_or_url: str) -> int:
        """Requests served for a path (on any port) or a full URL (on that port), 304s included."""
        parts = urlsplit(path_or_url)
        with self._hits_lock:
            if parts.scheme:
                return self._hits[(parts.port or 80, parts.path or "/")]
            return sum(v for (_port, path), v in self._hits.items() if path == parts.path)

    def reset_hits(self) -> None:
        with self._hits_lock:
            self._hits.clear()

    def _route(self, port: int, path: str) -> Route | None:
        raise NotImplementedError

    def _serve(self, ports: list[int]) -> tuple[list[_Server], list[threading.Thread]]:
        """Bind `ports` (0 = free) and serve each in a daemon thread."""
        servers: list[_Server] = []
        try:
            for port in ports:
                servers.append(_Server(("127.0.0.1", port), self._handler_class()))
        except OSError:
            for server in servers:
                server.server_close()
            raise
        threads = []
        for server in servers:
            t = threading.Thread(
                target=server.serve_forever,
                kwargs={"poll_interval": 0.2},
                name=f"sample-site-{server.server_address[1]}",
                daemon=True,
            )
            t.start()
            threads.append(t)
        return servers, threads

    def _shutdown(self, servers: list[_Server], threads: list[threading.Thread]) -> None:
        self._stopping.set()
        for server in servers:
            server.shutdown()
            server.server_close()
        for t in threads:
            t.join(timeout=5)

    def _count(self, port: int, path: str) -> int:
        with self._hits_lock:
            self._hits[(port, path)] += 1
            return self._hits[(port, path)]

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        site = self

        class Handler(BaseHTTPRequestHandler):
            server_version = "SampleNews/1.0"

            def do_GET(self) -> None:
                self._respond(send_body=True)

            def do_HEAD(self) -> None:
                self._respond(send_body=False)

            def log_message(self, format: str, *args: Any) -> None:
                log.debug("%s " + format, self.server.server_address[1], *args)

            def _respond(self, send_body: bool) -> None:
                port = self.server.server_address[1]
                path = urlsplit(self.path).path or "/"
                hit = site._count(port, path)
                route = site._route(port, path)
                if route is None:
                    reply = Reply(status=404, body=b"<html><body><h1>Not found</h1></body></html>")
                else:
                    reply = route(Request(path=path, headers=dict(self.headers.items()), hit=hit))
                try:
                    self._send(reply, send_body)
                except (BrokenPipeError, ConnectionResetError) as exc:
                    # Expected for the huge page and the bomb: the client gives up mid-body.
                    log.debug("client went away from %s: %s", path, exc)

            def _send(self, reply: Reply, send_body: bool) -> None:
                status, body = reply.status, reply.body
                headers = dict(reply.headers)
                etag = reply.etag
                if reply.last_modified is not None:
                    headers["Last-Modified"] = format_datetime(reply.last_modified, usegmt=True)
                    if etag:
                        headers["ETag"] = etag
                    if self._not_modified(etag, reply.last_modified):
                        status, body = 304, b""
                        headers.pop("Content-Encoding", None)
                self.send_response(status)
                if reply.content_type and status != 304:
                    self.send_header("Content-Type", reply.content_type)
                for k, v in headers.items():
                    self.send_header(k, v)
                if isinstance(body, bytes):
                    self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if not send_body:
                    return
                if isinstance(body, bytes):
                    self.wfile.write(body)
                else:
                    for chunk in body:
                        if site._stopping.is_set():
                            break
                        self.wfile.write(chunk)

            def _not_modified(self, etag: str | None, last_modified: datetime) -> bool:
                # RFC 9110 13.2.2: If-None-Match wins; If-Modified-Since only when it is absent.
                inm = self.headers.get("If-None-Match")
                if inm is not None:
                    return etag is not None and (inm.strip() == "*" or etag in [t.strip() for t in inm.split(",")])
                ims = self.headers.get("If-Modified-Since")
                if ims:
                    try:
                        since = parsedate_to_datetime(ims)
                    except (TypeError, ValueError):
                        return False  # an unparseable date is ignored, as the RFC says
                    if since.tzinfo is None:
                        since = since.replace(tzinfo=timezone.utc)
                    return last_modified.replace(microsecond=0) <= since
                return False

        return Handler


class SampleSite(HttpSite):
    """The offline sample news site: 3 regular outlets, a hostile one, optionally a bulk one.

    Dates are relative to the moment the object is created; everything else is deterministic.
    ``ports=None`` picks free ports at ``start()``; a list gives the outlets' ports in order
    (missing ones continue from the last given port, e.g. ``[8701, 8702, 8703]`` puts the
    hostile outlet on 8704).
    """

    def __init__(
        self,
        ports: list[int] | tuple[int, ...] | None = None,
        slow_seconds: float = 20,
        huge_bytes: int = 40 * 2**20,
        n_bulk_articles: int = 0,
        epoch: int = 0,
    ) -> None:
        self.created_at = datetime.now(timezone.utc).replace(microsecond=0)
        self.slow_seconds = slow_seconds
        self.huge_bytes = huge_bytes
        self.n_bulk_articles = n_bulk_articles
        specs = [*OUTLETS, HOSTILE_OUTLET] + ([BULK_OUTLET] if n_bulk_articles else [])
        self._outlets = [Outlet(name=n, display=d, template=t, sections=list(s)) for n, d, t, s in specs]
        self._ports = self._port_list(ports, len(self._outlets))
        self._epoch = 0
        self.set_epoch(epoch)
        super().__init__()
        self._servers: list[_Server] = []
        self._threads: list[threading.Thread] = []
        self._sites: dict[str, OutletSite] | None = None
        self._bulk_entries: list[dict[str, Any]] | None = None

    @staticmethod
    def _port_list(ports: list[int] | tuple[int, ...] | None, n: int) -> list[int] | None:
        if ports is None:
            return None
        out = list(ports)[:n]
        if not out:
            raise ValueError("ports must not be empty (use None for free ports)")
        while len(out) < n:
            out.append(out[-1] + 1 if out[-1] else 0)
        return out

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> SampleSite:
        """Bind every outlet's port and serve in background threads."""
        if self._servers:
            return self
        self._stopping.clear()
        self._servers, self._threads = self._serve(self._ports or [0] * len(self._outlets))
        self._ports = [srv.server_address[1] for srv in self._servers]
        self._build()
        return self

    def stop(self) -> None:
        """Stop serving; slow responses in flight are released."""
        self._shutdown(self._servers, self._threads)
        self._servers, self._threads = [], []

    def __enter__(self) -> SampleSite:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ public API

    @property
    def base_urls(self) -> dict[str, str]:
        """{outlet name: "http://127.0.0.1:PORT"}; with ports=None, known only after start()."""
        if self._ports is None:
            raise RuntimeError("free ports are chosen at start(): start the site first")
        return {o.name: f"http://127.0.0.1:{p}" for o, p in zip(self._outlets, self._ports)}

    @property
    def epoch(self) -> int:
        return self._epoch

    def set_epoch(self, n: int) -> None:
        """Switch the updated article (and the feed/sitemap listing it) to version n (0, 1 or 2)."""
        if not 0 <= n < N_EPOCHS:
            raise ValueError(f"epoch must be 0..{N_EPOCHS - 1}, got {n}")
        self._epoch = n

    def surfaces(self) -> dict[str, dict[str, list[str]]]:
        """Per outlet: its feeds, sitemaps (as configured) and section pages."""
        return {
            name: {
                "feeds": s.feeds,
                "sitemaps": s.sitemaps,
                "sections": s.sections,
                "robots": [url(s.outlet, "/robots.txt")],
            }
            for name, s in self._built().items()
        }

    def expected(self) -> list[dict[str, Any]]:
        """One entry per URL a crawl can discover (feeds, sitemaps, sections and the links on them).

        Keys: url, outlet, kind, title, story_id, expected, reject_reason_hint, related_headlines,
        plus for articles: author, published (ISO 8601), standfirst, text (the body paragraphs joined
        by newlines, at the current epoch), sidebar_headlines; and must_contain / versions where relevant.
        """
        out: list[dict[str, Any]] = []
        for s in self._built().values():
            out += [self._article_entry(s.outlet, a) for a in s.articles]
            if s.article_factory is not None:
                if self._bulk_entries is None:  # thousands of generated stories: build them once
                    self._bulk_entries = [
                        self._article_entry(s.outlet, s.article_factory(i)) for i in range(self.n_bulk_articles)
                    ]
                out += [dict(e) for e in self._bulk_entries]
            out += [dict(x) for x in s.others]
        return out

    def write_sources_yaml(
        self,
        path: str | Path,
        *,
        source_delay: float = 0.0,
        source_concurrency: int = 4,
        max_age_days: float = 3.0,
        outlets: list[str] | None = None,
        **crawl_overrides: Any,
    ) -> Path:
        """A sources file for `pipeline.core.config.load_sources`: one source per outlet (or those named)."""
        sites = self._built()
        names = outlets or list(sites)
        unknown = set(names) - set(sites)
        if unknown:
            raise ValueError(f"unknown outlets: {sorted(unknown)}")
        crawl = {"allow_private": [f"127.0.0.1:{p}" for p in self._ports or []], **crawl_overrides}
        sources = []
        for name in names:
            s = sites[name]
            sources.append(
                {
                    "name": name,
                    "feeds": s.feeds,
                    "sitemaps": s.sitemaps,
                    "sections": s.sections,
                    "robots_sitemaps": s.outlet.template == "wordpress" and name != HOSTILE_OUTLET[0],
                    "depth": 1,
                    "max_age_days": max_age_days,
                    "concurrency": source_concurrency,
                    "delay": source_delay,
                    "language": "en",
                }
            )
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        body = yaml.safe_dump({"crawl": crawl, "sources": sources}, sort_keys=False, allow_unicode=True)
        path.write_text(SOURCES_HEADER + body, encoding="utf-8")
        return path

    # ------------------------------------------------------------------ internals

    def _built(self) -> dict[str, OutletSite]:
        if self._sites is None:
            self._build()
        assert self._sites is not None
        return self._sites

    def _build(self) -> None:
        if self._sites is not None:
            return
        for o, base in zip(self._outlets, self.base_urls.values()):
            o.base_url = base
        sites: dict[str, OutletSite] = {}
        for i, o in enumerate(self._outlets):
            if o.name == HOSTILE_OUTLET[0]:
                sites[o.name] = build_hostile(o, self.created_at, self.slow_seconds, self.huge_bytes, self._stopping)
            elif o.name == BULK_OUTLET[0]:
                sites[o.name] = build_bulk(o, self.created_at, self.n_bulk_articles)
            else:
                sites[o.name] = build_regular(o, i, self.created_at, lambda: self._epoch)
        self._sites = sites

    def _article_entry(self, o: Outlet, a: Article) -> dict[str, Any]:
        paragraphs = a.paragraphs
        entry: dict[str, Any] = {
            "url": url(o, a.path),
            "outlet": o.name,
            "kind": a.kind,
            "title": a.title,
            "story_id": a.story_id,
            "expected": a.expected,
            "reject_reason_hint": a.hint,
            "related_headlines": [t for t, _u in a.related],
            "sidebar_headlines": [t for t, _u in a.trending],
            "author": a.author,
            "published": a.published.isoformat(timespec="seconds"),
            "standfirst": a.standfirst,
        }
        if a.kind == "updated":
            paragraphs = a.extra["versions"][self._epoch]
            entry["versions"] = len(a.extra["versions"])
            entry["modified"] = a.extra["modified"][self._epoch].isoformat(timespec="seconds")
        entry["text"] = "\n".join(paragraphs)
        if "must_contain" in a.extra:
            entry["must_contain"] = list(a.extra["must_contain"])
        return entry

    def _route(self, port: int, path: str) -> Route | None:
        assert self._sites is not None and self._ports is not None
        site = list(self._sites.values())[self._ports.index(port)]
        route = site.routes.get(path)
        if route is None and site.resolve is not None:
            route = site.resolve(path)
        return route
