"""An outlet serving the 181 real pages of the article-extraction benchmark, for end-to-end quality checks.

The pages are read from the benchmark folder at runtime (never copied into the
repository): ``html/<id>.html.gz`` is served decompressed at ``/articles/<id>.html``,
with an index page, an RSS feed, a sitemap and robots.txt.

With ``pages=N`` above the benchmark's size (the end-to-end run's scale test), the pages are
served again under ``/articles/<id>-<copy>.html`` until N URLs are listed. Each copy carries
a short sentence of its own in its longest paragraphs (`vary`), so its text, content hash and
article id are its own (on 44 of 45 pages tried): it is stored and indexed as an article of its
own (a near duplicate of the original) rather than as an exact duplicate.
"""

from __future__ import annotations

import gzip
import json
import re
import threading
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import yaml

from examples.sample_site import feeds
from examples.sample_site.reply import XML, Reply, Request, Route, page
from examples.sample_site.server import HttpSite
from examples.sample_site.templates import Outlet, render_listing
from pipeline.core.paths import ROOT

DEFAULT_BENCH_DIR = ROOT.parent / "shared" / "benchmarks" / "article-extraction-benchmark"
NAME = "extraction-benchmark"

_PARAGRAPH = re.compile(rb"<p(?:\s[^>]*)?>(.*?)</p>", re.IGNORECASE | re.DOTALL)


def vary(body: bytes, copy: int, paragraphs: int = 3) -> bytes:
    """`body` with a sentence naming `copy` at the end of each of its `paragraphs` longest paragraphs
    (the article's text, most likely: the longest alone is a comment or a footer on some pages);
    unchanged when it has no paragraph."""
    longest = sorted(_PARAGRAPH.finditer(body), key=lambda m: m.end(1) - m.start(1), reverse=True)[:paragraphs]
    note = f" Reprinted as copy number {copy} of this page.".encode()
    for at in sorted((m.end(1) for m in longest), reverse=True):  # from the end: earlier offsets stay valid
        body = body[:at] + note + body[at:]
    return body


class BenchmarkOutlet(HttpSite):
    """The benchmark pages on one 127.0.0.1 port; `ground_truth()` maps each URL to its article body."""

    def __init__(self, bench_dir: Path = DEFAULT_BENCH_DIR, port: int | None = None, pages: int | None = None) -> None:
        self.bench_dir = Path(bench_dir)
        truth_file = self.bench_dir / "ground-truth.json"
        if not truth_file.is_file():
            raise FileNotFoundError(f"no benchmark at {self.bench_dir} (expected {truth_file.name} and html/)")
        self._truth: dict[str, dict[str, Any]] = json.loads(truth_file.read_text(encoding="utf-8"))
        self.ids = sorted(i for i in self._truth if (self.bench_dir / "html" / f"{i}.html.gz").is_file())
        #: URLs served: the benchmark's pages first, then copies of them (`pages=N`); at least the benchmark's.
        self.pages = max(len(self.ids), pages or 0)
        self.port = port or 0
        self.created_at = datetime.now(timezone.utc).replace(microsecond=0)
        self._routes_table: dict[str, Route] = {}
        self._servers: list = []
        self._threads: list[threading.Thread] = []
        super().__init__()

    @property
    def base_url(self) -> str:
        if not self.port:
            raise RuntimeError("the free port is chosen at start(): start the outlet first")
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> BenchmarkOutlet:
        """Bind the port (free if none was given) and serve in a background thread."""
        if self._servers:
            return self
        self._stopping.clear()
        self._servers, self._threads = self._serve([self.port])
        self.port = self._servers[0].server_address[1]
        self._routes_table = self._routes()
        return self

    def stop(self) -> None:
        self._shutdown(self._servers, self._threads)
        self._servers, self._threads = [], []

    def __enter__(self) -> BenchmarkOutlet:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def url_of(self, page_id: str) -> str:
        return f"{self.base_url}/articles/{page_id}.html"

    def served(self) -> list[tuple[str, str, int]]:
        """(URL path, benchmark page id, copy number) of every page served; copy 0 is the original."""
        n = len(self.ids)
        return [
            (f"/articles/{i}.html" if k < n else f"/articles/{i}-{k // n}.html", i, k // n)
            for k, i in ((k, self.ids[k % n]) for k in range(self.pages))
        ]

    def ground_truth(self) -> dict[str, str]:
        """{served URL: expected articleBody} for every benchmark page (the originals, not their copies)."""
        return {self.url_of(i): self._truth[i]["articleBody"] for i in self.ids}

    def original_urls(self) -> dict[str, str]:
        """{served URL: the page's original URL on the web} (for reference only; never fetched)."""
        return {self.url_of(i): self._truth[i].get("url", "") for i in self.ids}

    def write_sources_yaml(
        self, path: str | Path, *, source_delay: float = 0.0, source_concurrency: int = 4, **crawl_overrides: Any
    ) -> Path:
        """A sources file with this outlet as its only source (feed, sitemap and index page)."""
        source = {
            "name": NAME,
            "feeds": [self.base_url + "/feed.xml"],
            "sitemaps": [self.base_url + "/sitemap.xml"],
            "sections": [self.base_url + "/"],
            "depth": 1,
            "max_age_days": 0,
            "concurrency": source_concurrency,
            "delay": source_delay,
        }
        crawl = {"allow_private": [f"127.0.0.1:{self.port}"], **crawl_overrides}
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump({"crawl": crawl, "sources": [source]}, sort_keys=False), encoding="utf-8")
        return path

    def _route(self, port: int, path: str) -> Route | None:
        return self._routes_table.get(path)

    def _routes(self) -> dict[str, Route]:
        now = self.created_at
        # The benchmark has no dates: give pages distinct, recent, made-up ones for feeds and sitemaps.
        dated = [(path, i, copy, now - timedelta(minutes=10 * n)) for n, (path, i, copy) in enumerate(self.served())]
        entries = [
            feeds.Entry(
                url=self.base_url + path,
                title=f"Benchmark page {i[:12]}" + (f" (copy {copy})" if copy else ""),
                published=d,
            )
            for path, i, copy, d in dated
        ]
        outlet = Outlet(name=NAME, display="Extraction benchmark", template="wordpress", base_url=self.base_url)
        index = render_listing(outlet, "Benchmark pages", [(e.title, e.url, "") for e in entries], "front")
        routes: dict[str, Route] = {
            "/": page(lambda: (index, now)),
            "/feed.xml": page(
                lambda: (feeds.rss20(outlet.display, self.base_url, entries, now), now),
                "application/rss+xml; charset=utf-8",
            ),
            "/sitemap.xml": page(lambda: (feeds.urlset(entries), now), XML),
            "/robots.txt": page(
                lambda: (feeds.robots_txt([], [self.base_url + "/sitemap.xml"]), now), "text/plain; charset=utf-8"
            ),
        }
        for path, i, copy, d in dated:
            routes[path] = self._page_route(i, d, copy)
        return routes

    def _page_route(self, page_id: str, modified: datetime, copy: int = 0) -> Route:
        path = self.bench_dir / "html" / f"{page_id}.html.gz"

        def route(_req: Request) -> Reply:
            # Read per request (not cached): 181 pages of a few hundred KB each stay on disk.
            body = gzip.decompress(path.read_bytes())
            if copy:
                body = vary(body, copy)
            return Reply(body=body, content_type="text/html", last_modified=modified)

        return route
