"""Outlets that need autodiscovery or a browser, each on its own 127.0.0.1 port, plus a canary.

- ``linkwise-post``: announces its feeds only through ``<link rel="alternate">`` (RSS and a JSON Feed on the
  home page, Atom on its section page) and a sitemap only through robots.txt; no page links an article.
- ``relay-tribune``: a FeedBurner-style RSS feed whose item links go through a click tracker
  (``/~r/...``, never to be fetched); the article URL is in ``feedburner:origLink``.
- ``script-street``: article pages are app shells; ``/static/app.js`` fetches ``/api/stories/<slug>.json``
  and writes the article into the page. It also loads a third-party tracker, an image and a stylesheet
  (all to be blocked). ``/prerendered/news/<slug>`` serves the same article as plain HTML (benchmark).
- ``trap-gazette``: articles are plain HTML, but ``/static/trap.js`` tries the cloud metadata address, a
  private address, the canary (directly, through a same-site redirect, an iframe and a WebSocket).

The canary is a TCP listener on 127.0.0.1 that no allowlist names: ``canary_connections()`` must stay 0.
"""

from __future__ import annotations

import json
import socket
import threading
from datetime import datetime, timedelta, timezone
from html import escape
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from examples.sample_site import content, feeds
from examples.sample_site.reply import XML, Reply, Route, page
from examples.sample_site.server import HttpSite
from examples.sample_site.templates import ArticleView, Outlet, render_article

LINKWISE, RELAY, SCRIPT, TRAP = "linkwise-post", "relay-tribune", "script-street", "trap-gazette"
NAMES = (LINKWISE, RELAY, SCRIPT, TRAP)
JS = "application/javascript; charset=utf-8"
JSON = "application/json; charset=utf-8"

APP_JS = """(async () => {
  const root = document.getElementById("root");
  const story = await (await fetch(root.dataset.story)).json();
  const art = document.createElement("article");
  const h1 = document.createElement("h1");
  h1.textContent = story.title;
  art.appendChild(h1);
  const by = document.createElement("p");
  by.className = "byline";
  by.textContent = "By " + story.author;
  art.appendChild(by);
  for (const text of story.paragraphs) {
    const p = document.createElement("p");
    p.textContent = text;
    art.appendChild(p);
  }
  root.replaceChildren(art);
  document.title = story.title;
  document.documentElement.dataset.rendered = "yes";
})();
"""

TRAP_JS = """(() => {
  const canary = "http://127.0.0.1:%(canary)d";
  const targets = ["http://169.254.169.254/latest/meta-data/", "http://10.0.0.1/admin", canary + "/xhr",
                   "/go/metadata", "/go/canary", "http://[::1]:%(canary)d/v6"];
  for (const t of targets) {
    fetch(t).then(r => r.text()).then(body => {
      const p = document.createElement("p");
      p.className = "leak";
      p.textContent = "LEAKED " + body;
      document.body.appendChild(p);
    }).catch(() => {});
  }
  try { new WebSocket("ws://127.0.0.1:%(canary)d/ws"); } catch (e) {}
  const frame = document.createElement("iframe");
  frame.src = canary + "/frame";
  document.body.appendChild(frame);
  const img = new Image();
  img.src = canary + "/pixel.gif";
  document.documentElement.dataset.scriptRan = "yes";
})();
"""


class Canary:
    """A TCP listener that counts the connections it accepts (and answers nothing useful)."""

    def __init__(self) -> None:
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(16)
        self._sock.settimeout(0.2)
        self.port: int = self._sock.getsockname()[1]
        self.connections = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sample-canary", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except (TimeoutError, OSError):
                continue
            self.connections += 1
            try:
                conn.sendall(b"HTTP/1.0 200 OK\r\nContent-Length: 6\r\n\r\nSECRET")
            finally:
                conn.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        self._sock.close()


class ModernSite(HttpSite):
    """The four outlets of this module on free (or given) ports; ``n_js_articles`` sizes script-street."""

    def __init__(self, ports: list[int] | None = None, n_js_articles: int = 6) -> None:
        super().__init__()
        self.created_at = datetime.now(timezone.utc).replace(microsecond=0)
        self.n_js_articles = n_js_articles
        self._ports = list(ports or [0] * len(NAMES))
        self._servers: list = []
        self._threads: list[threading.Thread] = []
        self._routes: dict[str, dict[str, Route]] = {}
        self._expected: list[dict[str, Any]] = []
        self.canary: Canary | None = None

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> ModernSite:
        if self._servers:
            return self
        self._stopping.clear()
        self.canary = Canary()
        self._servers, self._threads = self._serve(self._ports)
        self._ports = [s.server_address[1] for s in self._servers]
        self._build()
        return self

    def stop(self) -> None:
        self._shutdown(self._servers, self._threads)
        self._servers, self._threads = [], []
        if self.canary is not None:
            self.canary.close()

    def __enter__(self) -> ModernSite:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ public API

    @property
    def base_urls(self) -> dict[str, str]:
        return {name: f"http://127.0.0.1:{port}" for name, port in zip(NAMES, self._ports)}

    def canary_connections(self) -> int:
        """TCP connections the canary accepted since the site started (must be 0)."""
        return self.canary.connections if self.canary else 0

    def expected(self, outlet: str | None = None) -> list[dict[str, Any]]:
        """Articles a crawl should store: url, outlet, title, text (paragraphs joined by newlines), found_via."""
        return [dict(e) for e in self._expected if outlet in (None, e["outlet"])]

    def never_fetched(self) -> list[str]:
        """URLs of this site a guarded crawl must never request (trackers, media, redirects to private hosts)."""
        base = self.base_urls
        return [
            base[RELAY] + "/~r/relay/~3/0/",
            base[SCRIPT] + "/static/hero.jpg",
            base[SCRIPT] + "/static/site.css",
        ]

    def source(self, name: str, **overrides: Any) -> dict[str, Any]:
        """The sources.yaml entry of one outlet (autodiscovery and rendering settings included)."""
        base = self.base_urls[name]
        src: dict[str, Any] = {"name": name, "max_age_days": 0, "concurrency": 4, "delay": 0.0, "language": "en"}
        if name == LINKWISE:
            src.update(home=base + "/", allow=["/stories/"], depth=2)
        elif name == RELAY:
            src.update(feeds=[base + "/feeds/relay"])
        elif name == SCRIPT:
            src.update(feeds=[base + "/feed.xml"], render="js")
        else:
            src.update(feeds=[base + "/feed.xml"], render="js")
        src.update(overrides)
        return src

    def write_sources_yaml(self, path: str | Path, outlets: list[str] | None = None, **crawl: Any) -> Path:
        """A sources file for these outlets; only the outlets' own ports are allowed (not the canary's)."""
        data = {
            "crawl": {"allow_private": [f"127.0.0.1:{p}" for p in self._ports], **crawl},
            "sources": [self.source(n) for n in outlets or NAMES],
        }
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
        return path

    # ------------------------------------------------------------------ internals

    def _route(self, port: int, path: str) -> Route | None:
        name = NAMES[self._ports.index(port)]
        routes = self._routes[name]
        if name == RELAY and path.startswith("/~r/"):
            return lambda _req: Reply(status=404, body=b"tracker")
        return routes.get(path)

    def _stories(self, name: str, n: int) -> list[tuple[content.Story, datetime]]:
        return [(content.make_story(f"{name}-{i}"), self.created_at - timedelta(hours=1 + i)) for i in range(n)]

    def _article_html(self, o: Outlet, story: content.Story, path: str, when: datetime, extra_head: str = "") -> str:
        view = ArticleView(
            url=o.base_url + path,
            title=story.title,
            standfirst=story.standfirst,
            paragraphs=story.paragraphs,
            author=story.author,
            section=story.topic,
            published=when,
            modified=when,
        )
        html = render_article(o, view)
        return html.replace("</head>", extra_head + "</head>", 1) if extra_head else html

    def _expect(self, name: str, url: str, story: content.Story, found_via: str) -> None:
        self._expected.append(
            {
                "url": url,
                "outlet": name,
                "kind": "article",
                "title": story.title,
                "text": "\n".join(story.paragraphs),
                "expected": "stored",
                "found_via": found_via,
            }
        )

    def _build(self) -> None:
        base = self.base_urls
        self._expected = []
        self._routes = {
            LINKWISE: self._linkwise(Outlet(LINKWISE, "Linkwise Post", "wordpress", base[LINKWISE], ["world"])),
            RELAY: self._relay(Outlet(RELAY, "Relay Tribune", "drupal", base[RELAY])),
            SCRIPT: self._script(Outlet(SCRIPT, "Script Street", "arc", base[SCRIPT])),
            TRAP: self._trap(Outlet(TRAP, "Trap Gazette", "wordpress", base[TRAP])),
        }

    def _page(self, html: str | bytes, ctype: str = "text/html; charset=utf-8") -> Route:
        now = self.created_at
        return page(lambda: (html, now), ctype)

    def _linkwise(self, o: Outlet) -> dict[str, Route]:
        stories = self._stories(LINKWISE, 7)
        paths = [f"/stories/{s.slug}" for s, _ in stories]
        urls = [o.base_url + p for p in paths]
        routes = {p: self._page(self._article_html(o, s, p, w)) for p, (s, w) in zip(paths, stories)}

        def entries(idx: list[int]) -> list[feeds.Entry]:
            return [feeds.Entry(urls[i], stories[i][0].title, published=stories[i][1]) for i in idx]

        json_feed = {
            "version": "https://jsonfeed.org/version/1.1",
            "title": o.display,
            "home_page_url": o.base_url + "/",
            "items": [
                {
                    "id": urls[i],
                    "url": urls[i],
                    "title": stories[i][0].title,
                    "date_published": stories[i][1].isoformat(),
                }
                for i in (2, 3, 4)
            ],
        }
        head = (
            f'<link rel="alternate" type="application/rss+xml" title="{o.display}" href="/syndication/main.rss"/>'
            f'<link rel="alternate" type="application/feed+json" title="{o.display} (JSON)" href="/syndication/feed.json"/>'
            '<link rel="alternate" type="application/rss+xml" title="Comments" href="/syndication/comments.rss"/>'
        )
        home = (
            f"<!DOCTYPE html><html><head><title>{o.display}</title>{head}</head><body><header>{o.display}"
            '<nav><a href="/">Home</a> <a href="/section/world">World</a></nav></header>'
            "<main><p>Our stories reach you through our feeds.</p></main></body></html>"
        )
        section = (
            '<!DOCTYPE html><html><head><title>World</title><link rel="alternate" type="application/atom+xml" '
            'title="World" href="/section/world/atom.xml"/></head><body><nav><a href="/">Home</a></nav>'
            "<main><h1>World</h1><p>Follow the section feed.</p></main></body></html>"
        )
        now = self.created_at
        routes.update(
            {
                "/": self._page(home),
                "/section/world": self._page(section),
                "/syndication/main.rss": self._page(
                    feeds.rss20(o.display, o.base_url, entries([0, 1, 2]), now), "application/rss+xml"
                ),
                "/syndication/feed.json": self._page(json.dumps(json_feed), "application/feed+json"),
                "/syndication/comments.rss": self._page(
                    feeds.rss20("Comments", o.base_url, [], now), "application/rss+xml"
                ),
                "/section/world/atom.xml": self._page(
                    feeds.atom("World", o.base_url, entries([5]), now), "application/atom+xml"
                ),
                "/sitemap-stories.xml": self._page(feeds.urlset(entries([6])), XML),
                "/robots.txt": self._page(
                    feeds.robots_txt(["/private/"], [o.base_url + "/sitemap-stories.xml"]), "text/plain"
                ),
            }
        )
        via = ["rss", "rss", "rss", "json", "json", "atom (section page)", "sitemap (robots.txt)"]
        for (s, _), u, v in zip(stories, urls, via):
            self._expect(LINKWISE, u, s, v)
        return routes

    def _relay(self, o: Outlet) -> dict[str, Route]:
        stories = self._stories(RELAY, 4)
        paths = [f"/articles/{s.slug}" for s, _ in stories]
        routes = {p: self._page(self._article_html(o, s, p, w)) for p, (s, w) in zip(paths, stories)}
        items = "".join(
            f"<item><title>{escape(s.title)}</title><link>{o.base_url}/~r/relay/~3/{i}/</link>"
            f'<guid isPermaLink="false">relay-{i}</guid><pubDate>{w.strftime("%a, %d %b %Y %H:%M:%S +0000")}</pubDate>'
            f"<feedburner:origLink>{o.base_url}{p}</feedburner:origLink></item>"
            for i, ((s, w), p) in enumerate(zip(stories, paths))
        )
        rss = (
            '<?xml version="1.0" encoding="UTF-8"?><rss version="2.0" '
            'xmlns:feedburner="http://rssnamespace.org/feedburner/ext/1.0"><channel>'
            f"<title>{o.display}</title><link>{o.base_url}/</link><description>d</description>{items}</channel></rss>"
        )
        routes["/feeds/relay"] = self._page(rss, "application/rss+xml")
        routes["/robots.txt"] = self._page(feeds.robots_txt([], []), "text/plain")
        for (s, _), p in zip(stories, paths):
            self._expect(RELAY, o.base_url + p, s, "feedburner:origLink")
        return routes

    def _script(self, o: Outlet) -> dict[str, Route]:
        stories = self._stories(SCRIPT, self.n_js_articles)
        routes: dict[str, Route] = {"/static/app.js": self._page(APP_JS, JS)}
        routes["/static/site.css"] = self._page("body { font-family: serif }", "text/css")
        routes["/static/hero.jpg"] = self._page(b"\xff\xd8\xff\xe0 not really a jpeg", "image/jpeg")
        entries = []
        for s, w in stories:
            path = f"/news/{s.slug}"
            api = f"/api/stories/{s.slug}.json"
            shell = (
                f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"/><title>{escape(o.display)}</title>'
                '<link rel="stylesheet" href="/static/site.css"/>'
                '<script src="http://tracker.invalid/pixel.js"></script>'
                '<script src="/static/app.js" defer></script></head>'
                f'<body><div id="root" data-story="{api}"><noscript>Please enable JavaScript to read this '
                'article.</noscript></div><img src="/static/hero.jpg" alt=""/></body></html>'
            )
            data = {"title": s.title, "author": s.author, "paragraphs": s.paragraphs}
            routes[path] = self._page(shell)
            routes[api] = self._page(json.dumps(data), JSON)
            routes["/prerendered" + path] = self._page(self._article_html(o, s, path, w))
            entries.append(feeds.Entry(o.base_url + path, s.title, published=w))
            self._expect(SCRIPT, o.base_url + path, s, "rss, rendered")
        routes["/feed.xml"] = self._page(feeds.rss20(o.display, o.base_url, entries, self.created_at), XML)
        pre = [
            feeds.Entry(o.base_url + "/prerendered" + urlsplit(e.url).path, e.title, published=e.published)
            for e in entries
        ]
        routes["/prerendered/feed.xml"] = self._page(feeds.rss20(o.display, o.base_url, pre, self.created_at), XML)
        routes["/robots.txt"] = self._page(feeds.robots_txt(["/private/"], []), "text/plain")
        return routes

    def _trap(self, o: Outlet) -> dict[str, Route]:
        assert self.canary is not None
        stories = self._stories(TRAP, 2)
        canary = f"http://127.0.0.1:{self.canary.port}"
        routes: dict[str, Route] = {
            "/static/trap.js": self._page(TRAP_JS % {"canary": self.canary.port}, JS),
            "/go/metadata": lambda _r: Reply(
                status=302, headers={"Location": "http://169.254.169.254/latest/meta-data/"}
            ),
            "/go/canary": lambda _r: Reply(status=302, headers={"Location": canary + "/redirected"}),
            "/robots.txt": self._page(feeds.robots_txt([], []), "text/plain"),
        }
        entries = []
        for s, w in stories:
            path = f"/news/{s.slug}/"
            routes[path] = self._page(
                self._article_html(o, s, path, w, '<script src="/static/trap.js" defer></script>')
            )
            entries.append(feeds.Entry(o.base_url + path, s.title, published=w))
            self._expect(TRAP, o.base_url + path, s, "rss, rendered (hostile script)")
        routes["/feed.xml"] = self._page(feeds.rss20(o.display, o.base_url, entries, self.created_at), XML)
        return routes
