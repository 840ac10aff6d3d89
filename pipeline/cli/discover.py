"""``python -m pipeline discover URL``: find an outlet's feeds and sitemaps, print a ready sources.yaml entry.

Feeds are the ``<link rel="alternate">`` ones of the home page and of up to ``--sections`` section pages
linked from its navigation; sitemaps are the ``Sitemap:`` lines of robots.txt. Each is fetched and parsed
the way the crawl parses it, and a few of the article URLs it lists are printed as comments.

Every fetch (and every redirect hop) is checked against the crawl's SSRF rules first: a private, loopback
or link-local address is refused unless ``--allow-private`` names it (as ``crawl.allow_private`` does).
The connection goes to the address that was checked: a host is resolved once per connection, so a DNS answer
that changes between the check and the connect (DNS rebinding) cannot reach a refused address.
"""

from __future__ import annotations

import argparse
import http.client
import re
import socket
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import lxml.etree
import lxml.html
import yaml

from pipeline.core.config import CrawlSettings
from pipeline.core.errors import ConfigError
from pipeline.text.urls import absolute, robots_url, same_site
from spiders import discovery
from spiders.netguard import Allowlist, check_address, parse_ip_literal

MAX_BYTES = 8 * 2**20


class RefusedURL(ConfigError):
    """A URL the SSRF rules do not allow (exit code 2: add it to --allow-private if it is meant)."""


@dataclass
class Found:
    """What discovery found on one outlet."""

    home: str
    feeds: list[discovery.FeedLink] = field(default_factory=list)
    sitemaps: list[str] = field(default_factory=list)
    samples: dict[str, list[str]] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)


class GuardedFetcher:
    """GETs with a size limit, a timeout and the SSRF check on the URL and on every redirect."""

    def __init__(self, allow: Allowlist, *, timeout: float = 10.0, user_agent: str = CrawlSettings().user_agent):
        self.allow = allow
        self.timeout = timeout
        self.user_agent = user_agent
        fetcher = self

        class _Redirects(urllib.request.HTTPRedirectHandler):
            def redirect_request(self, req, fp, code, msg, headers, newurl):
                fetcher.check(newurl)
                return super().redirect_request(req, fp, code, msg, headers, newurl)

        def pinned(conn_class: type[http.client.HTTPConnection]) -> type[http.client.HTTPConnection]:
            class _Pinned(conn_class):  # type: ignore[valid-type,misc]
                """Connects to the address `fetcher.resolve` checked, never to a second DNS answer."""

                def __init__(self, *args: Any, **kwargs: Any) -> None:
                    super().__init__(*args, **kwargs)
                    self._create_connection = self._connect_checked

                def _connect_checked(self, address: tuple[str, int], *args: Any) -> socket.socket:
                    host, port = address
                    return socket.create_connection((fetcher.resolve(host, port), port), *args)

            return _Pinned

        class _HTTP(urllib.request.HTTPHandler):
            def http_open(self, req):
                return self.do_open(pinned(http.client.HTTPConnection), req)

        class _HTTPS(urllib.request.HTTPSHandler):
            def https_open(self, req):
                return self.do_open(pinned(http.client.HTTPSConnection), req, context=self._context)  # type: ignore[attr-defined]

        # No ProxyHandler: a proxy would resolve the host itself, past the check.
        self.opener = urllib.request.OpenerDirector()
        for handler in (_HTTP(), _HTTPS(), _Redirects(), urllib.request.HTTPErrorProcessor()):
            self.opener.add_handler(handler)

    def resolve(self, host: str, port: int) -> str:
        """The one address of `host` to connect to; RefusedURL when any of its addresses is refused."""
        ip = parse_ip_literal(host)
        try:
            addresses = [str(ip)] if ip else sorted({str(i[4][0]) for i in socket.getaddrinfo(host, port)})
        except OSError as exc:
            raise RefusedURL(f"cannot resolve {host}: {exc}") from None
        for address in addresses:
            reason = check_address(address, port, self.allow)
            if reason is not None:
                raise RefusedURL(f"ssrf_blocked: {host}:{port}: {reason} (use --allow-private to allow it)")
        return addresses[0]

    def check(self, url: str) -> None:
        """Raise RefusedURL when `url` is not http(s) (its address is checked again when it is connected to)."""
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise RefusedURL(f"not an http(s) URL: {url}")

    def get(self, url: str) -> tuple[bytes, str, str]:
        """(body, content type, final URL) of a 2xx answer; OSError for anything else."""
        self.check(url)
        request = urllib.request.Request(url, headers={"User-Agent": self.user_agent})
        with self.opener.open(request, timeout=self.timeout) as resp:
            body = resp.read(MAX_BYTES + 1)
            if len(body) > MAX_BYTES:
                raise OSError(f"{url}: larger than {MAX_BYTES} bytes")
            return body, resp.headers.get("Content-Type", ""), resp.geturl()


def nav_sections(html: str, base_url: str, limit: int) -> list[str]:
    """Same-site links inside `<nav>` (section pages, where section feeds are announced), first `limit`."""
    try:
        doc = lxml.html.document_fromstring(html or "<html></html>")
    except (lxml.etree.ParserError, ValueError):
        return []
    out: list[str] = []
    for href in doc.xpath("//nav//a/@href"):
        url = absolute(base_url, href)
        if url and same_site(url, base_url) and url.rstrip("/") != base_url.rstrip("/") and url not in out:
            out.append(url)
    return out[:limit]


def discover(home: str, fetcher: GuardedFetcher, *, sections: int = 5, samples: int = 3) -> Found:
    """Feeds announced on the home and section pages, sitemaps from robots.txt, sample article URLs of each."""
    found = Found(home=home)
    body, _ctype, final = fetcher.get(home)  # the home page itself must answer: errors go to the caller
    html = body.decode("utf-8", "replace")
    pages = [(final, html)]
    for url in nav_sections(html, final, sections):
        try:
            pages.append((url, fetcher.get(url)[0].decode("utf-8", "replace")))
        except (OSError, RefusedURL) as exc:
            found.problems.append(f"section {url}: {exc}")
    seen: set[str] = set()
    for url, text in pages:
        for link in discovery.feed_links(text, url):
            if link.url not in seen:
                seen.add(link.url)
                found.feeds.append(link)
    try:
        robots = fetcher.get(robots_url(final))[0]
        found.sitemaps = discovery.robots_sitemaps(robots, robots_url(final))
    except (OSError, RefusedURL) as exc:
        found.problems.append(f"robots.txt: {exc}")
    for link in found.feeds:
        found.samples[link.url] = _sample(fetcher, link.url, samples, feed=True, problems=found.problems)
    for url in found.sitemaps:
        found.samples[url] = _sample(fetcher, url, samples, feed=False, problems=found.problems)
    return found


def _sample(fetcher: GuardedFetcher, url: str, n: int, *, feed: bool, problems: list[str]) -> list[str]:
    try:
        body, ctype, final = fetcher.get(url)
        if feed:
            return [e.url for e in discovery.parse_feed(body, final, ctype or None)[:n]]
        doc = discovery.parse_sitemap(discovery.maybe_gunzip(body, max_size=MAX_BYTES), final)
        return [("sitemap: " if doc.kind == "sitemapindex" else "") + e.url for e in doc.entries[:n]]
    except (OSError, ValueError, lxml.etree.XMLSyntaxError) as exc:
        problems.append(f"{url}: {exc}")
        return []


def source_name(url: str) -> str:
    """A source name (`[a-z0-9][a-z0-9_-]*`) made of the host name."""
    host = (urlsplit(url).hostname or "outlet").lower().removeprefix("www.")
    return (re.sub(r"[^a-z0-9]+", "-", host).strip("-") or "outlet")[:63]


def render_entry(found: Found, name: str) -> str:
    """The sources.yaml entry (a one-item YAML list) with the samples and problems as comments."""
    entry: dict[str, object] = {"name": name, "home": found.home}
    main_feeds = [f.url for f in found.feeds if "comment" not in f"{f.title or ''} {f.url}".lower()]
    if main_feeds:
        entry["feeds"] = main_feeds
    if found.sitemaps:
        entry["sitemaps"] = found.sitemaps
    lines = [f"# discovered from {found.home}: {len(found.feeds)} feed(s), {len(found.sitemaps)} sitemap(s)"]
    lines += [f"#   feed {f.url} ({f.format}{', ' + f.title if f.title else ''})" for f in found.feeds]
    lines.append(yaml.safe_dump([entry], sort_keys=False).rstrip())
    for url, urls in found.samples.items():
        lines.append(f"  # sample from {url}:")
        lines += [f"  #   {u}" for u in urls] or ["  #   (nothing listed)"]
    lines += [f"  # problem: {p}" for p in found.problems]
    return "\n".join(lines) + "\n"


def configure_discover(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("url", help="the outlet's home page, e.g. https://outlet.example/")
    parser.add_argument("--name", help="source name (default: from the host name)")
    parser.add_argument("--samples", type=int, default=3, help="article URLs shown per feed / sitemap (default 3)")
    parser.add_argument("--sections", type=int, default=5, help="section pages of the home page's <nav> to scan")
    parser.add_argument("--timeout", type=float, default=10.0, help="per-request timeout in seconds")
    parser.add_argument(
        "--allow-private",
        action="append",
        default=[],
        metavar="ENTRY",
        help="IP:port, host:port or CIDR the SSRF check lets through (as crawl.allow_private); repeatable",
    )


def cmd_discover(args: argparse.Namespace) -> int:
    try:
        allow = Allowlist.parse(args.allow_private)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    fetcher = GuardedFetcher(allow, timeout=args.timeout)
    try:
        found = discover(args.url, fetcher, sections=args.sections, samples=args.samples)
    except urllib.error.URLError as exc:
        raise ConfigError(f"cannot fetch {args.url}: {exc.reason}") from None
    sys.stdout.write(render_entry(found, args.name or source_name(args.url)))
    return 0 if found.feeds or found.sitemaps else 3
