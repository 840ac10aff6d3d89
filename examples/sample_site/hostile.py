"""The hostile outlet: broken, slow, huge, malicious and misleading pages a crawl must survive.

Every URL here is linked from the outlet's RSS feed and/or sitemap, so a
normal crawl meets it; `expected` entries say what the pipeline should do.
"""

from __future__ import annotations

import threading
import zlib
from collections.abc import Iterator
from dataclasses import replace
from datetime import datetime, timedelta

from examples.sample_site import content, feeds
from examples.sample_site.build import Article, OutletSite, _nonarticles, _other, url, view
from examples.sample_site.reply import XML, Reply, Request, page
from examples.sample_site.templates import Outlet, render_article, render_listing, render_nav_only

BOMB_BYTES = 2**30  # decompressed size of the gzip bomb
SITEMAP_BOMB_BYTES = 2**28  # the sitemap bomb: 32 times the default page limit, lighter on a test machine
HTML_HEAD = b"<!DOCTYPE html><html><head><title>Bomb</title></head><body><p>"
SITEMAP_HEAD = b'<?xml version="1.0" encoding="UTF-8"?><urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">'
N_HEADERS = 100_003  # the many-headers page: ~11 MB of headers, a tiny body
SITEMAP_CHAIN = 10  # levels of the sitemap-index chain
_bomb_lock = threading.Lock()
_bomb_cache: dict[tuple[int, bytes], bytes] = {}


def gzip_bomb(size: int = BOMB_BYTES, head: bytes = HTML_HEAD) -> bytes:
    """A valid single-member gzip stream of `size` decompressed bytes (mostly spaces), about 1 MB.

    Built without compressing 1 GiB: after a full flush a deflate compressor has no
    history, so every 1 MiB block of spaces compresses to the same bytes; those bytes
    are repeated and the gzip trailer's CRC is computed over the repeated block.
    """
    with _bomb_lock:
        if (size, head) in _bomb_cache:
            return _bomb_cache[(size, head)]
        block = b" " * 2**20
        n_blocks, rest = divmod(size - len(head), len(block))
        comp = zlib.compressobj(9, zlib.DEFLATED, -15)
        parts = [comp.compress(head) + comp.flush(zlib.Z_FULL_FLUSH)]
        one = comp.compress(block) + comp.flush(zlib.Z_FULL_FLUSH)
        parts.append(one * n_blocks)
        parts.append(comp.compress(b" " * rest) + comp.flush(zlib.Z_FINISH))
        crc = zlib.crc32(head)
        for _ in range(n_blocks):
            crc = zlib.crc32(block, crc)
        crc = zlib.crc32(b" " * rest, crc)
        header = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff"  # magic, deflate, no flags, mtime 0, max compression
        trailer = crc.to_bytes(4, "little") + (size % 2**32).to_bytes(4, "little")
        _bomb_cache[(size, head)] = header + b"".join(parts) + trailer
        return _bomb_cache[(size, head)]


def many_headers(n: int = N_HEADERS) -> dict[str, str]:
    """`n` distinct response headers of about 110 bytes each."""
    return {f"X-Hostile-{i:06d}": "h" * 90 for i in range(n)}


def sitemap_chain_path(level: int) -> str:
    return f"/sitemap-chain-{level}.xml"


def _huge_chunks(total: int) -> Iterator[bytes]:
    """`total` bytes of valid-looking HTML, generated chunk by chunk (never held in memory)."""
    head = b"<!DOCTYPE html><html><head><title>Endless archive</title></head><body>"
    para = b"<p>" + b"This archive page goes on and on, one paragraph after another. " * 15 + b"</p>\n"
    chunk = para * max(1, 65536 // len(para))
    yield head
    sent = len(head)
    while sent < total:
        piece = chunk[: total - sent]
        sent += len(piece)
        yield piece


# path -> (title, expected outcome, reason hint, reject reason a crawl records); each is listed in the feed
# and the sitemap
HOSTILE: dict[str, tuple[str, str, str, str]] = {
    "/story/server-error": (
        "Council statement on budget (server error)",
        "rejected",
        "HTTP 500 on every request",
        "http_500",
    ),
    "/story/slow-loading": (
        "Live: results night",
        "rejected",
        "download timeout: the server waits slow_seconds before answering",
        "timeout",
    ),
    "/story/endless-archive": (
        "The complete archive",
        "rejected",
        "larger than max_page_bytes (streamed, no Content-Length)",
        "too_large",
    ),
    "/story/compressed-report": (
        "Compressed report",
        "rejected",
        "gzip bomb: Content-Encoding gzip, ~1 GiB decompressed",
        "decompression_bomb",
    ),
    "/story/loop-a": ("Redirect loop", "rejected", "redirect loop (loop-a -> loop-b -> loop-a)", "redirect_loop"),
    "/story/budget-figures": ("Budget figures (PDF)", "rejected", "not HTML: application/pdf", "not_html"),
    "/story/photo-of-the-day": ("Photo of the day (JPEG)", "rejected", "not HTML: image/jpeg", "not_html"),
    "/story/live-data": ("Live data (JSON)", "rejected", "not HTML: application/json", "not_html"),
    "/story/cloud-metadata": (
        "Redirect to cloud metadata",
        "rejected",
        "SSRF: redirects to http://169.254.169.254/latest/meta-data/",
        "ssrf_blocked",
    ),
    "/story/intranet-link": (
        "Redirect to a private address",
        "rejected",
        "SSRF: redirects to http://10.0.0.1/",
        "ssrf_blocked",
    ),
    "/story/empty": ("Empty page", "rejected", "empty body (200, Content-Length 0)", "empty_body"),
    "/story/navigation-only": (
        "Navigation only",
        "rejected",
        "no article: the page is only navigation (its few words fail the clean stage's minimum length)",
        "too_short",
    ),
    "/story/many-headers": (
        "Story with 100,003 headers",
        "rejected",
        f"{N_HEADERS:,} response headers (~11 MB) over max_header_bytes",
        "headers_too_large",
    ),
}
#: Discovery documents of the outlet (configured sitemaps, not links): path -> (hint, reject reason).
HOSTILE_SITEMAPS: dict[str, tuple[str, str]] = {
    "/sitemap-archive.xml.gz": ("gzip bomb: a sitemap of 256 MiB decompressed", "decompression_bomb"),
    sitemap_chain_path(1): (
        f"a chain of {SITEMAP_CHAIN} nested sitemap indexes; levels past the depth limit are rejected",
        "sitemap_too_deep",
    ),
}
PRIVATE_FEED_LINK = "http://192.168.1.10/story"


def build_hostile(
    o: Outlet, now: datetime, slow_seconds: float, huge_bytes: int, stopping: threading.Event
) -> OutletSite:
    """The hostile outlet: its feed and sitemap list every hostile URL and two good articles."""
    site = OutletSite(outlet=o)
    r = site.routes

    def slow(_req: Request) -> Reply:
        stopping.wait(slow_seconds)  # an Event, not sleep(): stop() must not wait for it
        return Reply(body=b"<html><body><p>Too late.</p></body></html>")

    def rate_limited_or(article_route):
        # Odd-numbered hits get 429, even ones the article: every client sees "429, then 200 on retry".
        def route(req: Request) -> Reply:
            if req.hit % 2 == 1:
                return Reply(
                    status=429, body=b"Too Many Requests", content_type="text/plain", headers={"Retry-After": "1"}
                )
            return article_route(req)

        return route

    r["/story/server-error"] = lambda req: Reply(status=500, body=b"<html><body>Internal Server Error</body></html>")
    r["/story/slow-loading"] = slow
    r["/story/endless-archive"] = lambda req: Reply(body=_huge_chunks(huge_bytes))
    r["/story/compressed-report"] = lambda req: Reply(body=gzip_bomb(), headers={"Content-Encoding": "gzip"})
    r["/story/loop-a"] = lambda req: Reply(status=302, headers={"Location": url(o, "/story/loop-b")})
    r["/story/loop-b"] = lambda req: Reply(status=302, headers={"Location": url(o, "/story/loop-a")})
    r["/story/budget-figures"] = lambda req: Reply(
        body=b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n",
        content_type="application/pdf",
    )
    r["/story/photo-of-the-day"] = lambda req: Reply(
        body=b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00" + b"\x00" * 64 + b"\xff\xd9",
        content_type="image/jpeg",
    )
    r["/story/live-data"] = lambda req: Reply(
        body=b'{"headline": "Live data", "items": [1, 2, 3]}', content_type="application/json"
    )
    r["/story/cloud-metadata"] = lambda req: Reply(
        status=302, headers={"Location": "http://169.254.169.254/latest/meta-data/"}
    )
    r["/story/intranet-link"] = lambda req: Reply(status=302, headers={"Location": "http://10.0.0.1/"})
    r["/story/empty"] = lambda req: Reply(body=b"")
    r["/story/navigation-only"] = page(lambda: (render_nav_only(o), now - timedelta(hours=2)))
    r["/story/many-headers"] = lambda req: Reply(
        body=b"<html><body><p>Headers all the way down.</p></body></html>", headers=many_headers()
    )
    site.others = [
        _other(o, path, "hostile", title, hint, expected, reject_reason=reason)
        for path, (title, expected, hint, reason) in HOSTILE.items()
    ]
    site.others.append(
        {
            **_other(
                o,
                "/story/x",
                "hostile",
                "Story on a private network",
                "SSRF: feed links to a private address; never fetched",
            ),
            "url": PRIVATE_FEED_LINK,
            "story_id": f"{o.name}:{PRIVATE_FEED_LINK}",
            "reject_reason": "ssrf_blocked",
        }
    )

    # Two real articles among the traps: mis-declared charset, and 429-then-200.
    charset_art = Article(
        o.name,
        "/story/seafront-bakery",
        "hostile",
        content.CHARSET_TITLE,
        "hostile-seafront-bakery",
        "A Swiss-Brazilian bakery opens on the seafront.",
        content.CHARSET_PARAGRAPHS,
        "Renée Whitcombe",
        "culture",
        now - timedelta(hours=7),
        now - timedelta(hours=7),
        expected="stored",
        hint="mis-declared charset: header and <meta> say ISO-8859-1, bytes are UTF-8; "
        "stored text must read café, Zürich, São Paulo",
        extra={"must_contain": content.ACCENTED_WORDS + content.CURLY_QUOTED},
    )
    story = content.make_story("hostile-times-rate-limited", "politics")
    limited = Article(
        o.name,
        "/story/rate-limited",
        "hostile",
        story.title,
        story.story_id,
        story.standfirst,
        story.paragraphs,
        story.author,
        story.topic,
        now - timedelta(hours=9),
        now - timedelta(hours=9),
        expected="stored",
        hint="429 with Retry-After: 1 on odd-numbered hits, 200 on the retry",
    )
    for a in (charset_art, limited):
        a.related = [(x["title"], x["url"]) for x in site.others[:2]]
    site.articles = [charset_art, limited]
    _nonarticles(site, now)  # about and contact, linked from every page's footer

    def charset_page() -> tuple[bytes, datetime]:
        v = replace(view(o, charset_art), section="culture", trending=[], charset="ISO-8859-1")
        return render_article(o, v).encode("utf-8"), charset_art.modified

    r[charset_art.path] = page(charset_page, "text/html; charset=ISO-8859-1")
    limited_view = replace(view(o, limited), trending=[])
    r[limited.path] = rate_limited_or(page(lambda: (render_article(o, limited_view), limited.modified)))

    listed = [
        feeds.Entry(url=x["url"], title=x["title"], summary=x["reject_reason_hint"], published=now - timedelta(hours=3))
        for x in site.others
    ]
    listed += [
        feeds.Entry(url=url(o, a.path), title=a.title, summary=a.standfirst, author=a.author, published=a.published)
        for a in site.articles
    ]
    rss = feeds.rss20(o.display, o.base_url, listed, now)
    sitemap = feeds.urlset([e for e in listed if e.url != PRIVATE_FEED_LINK])
    r["/feed.xml"] = page(lambda: (rss, now), "application/rss+xml; charset=utf-8")
    r["/sitemap.xml"] = page(lambda: (sitemap, now), XML)
    r["/robots.txt"] = page(
        lambda: (feeds.robots_txt(["/private/"], [url(o, "/sitemap.xml")]), now), "text/plain; charset=utf-8"
    )
    front = render_listing(o, o.display, [(e.title, e.url, e.summary) for e in listed], "front")
    r["/"] = page(lambda: (front, now))
    r["/sitemap-archive.xml.gz"] = lambda req: Reply(
        body=gzip_bomb(SITEMAP_BOMB_BYTES, SITEMAP_HEAD), content_type="application/gzip"
    )
    for level in range(1, SITEMAP_CHAIN + 1):
        r[sitemap_chain_path(level)] = page(lambda level=level: (_chain_level(o, level, now), now), XML)
    site.sections = [url(o, "/")]
    site.feeds = [url(o, "/feed.xml")]
    site.sitemaps = [url(o, "/sitemap.xml"), *(url(o, path) for path in HOSTILE_SITEMAPS)]
    return site


def _chain_level(o: Outlet, level: int, now: datetime) -> str:
    """Level `level` of the sitemap chain: an index of the next level; the last is an empty urlset."""
    if level == SITEMAP_CHAIN:
        return feeds.urlset([])
    return feeds.sitemapindex([(url(o, sitemap_chain_path(level + 1)), now)])
