"""Discovery helpers: pure functions from a fetched document to the URLs it announces.

No Scrapy reactor needed: each takes bytes/text and returns plain dataclasses, so they are
tested with literal documents. Sitemaps are parsed with lxml in recover mode with entity
resolution and network access off (XXE / billion-laughs safe), the way Scrapy's own
`scrapy.utils.sitemap.Sitemap` does; feeds with feedparser after their DOCTYPE (and so every
entity declaration) is removed, JSON Feeds with `json`.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from email.utils import parsedate_to_datetime
from io import BytesIO

import feedparser
import lxml.etree
import lxml.html
from scrapy.utils._compression import _DecompressionMaxSizeExceeded  # what gunzip raises over max_size
from scrapy.utils.gz import gunzip
from scrapy.utils.sitemap import sitemap_urls_from_robots

from pipeline.text.urls import absolute, canonicalize, same_site

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Entry:
    """One URL announced by a feed or sitemap."""

    url: str
    published: datetime | None = None
    title: str | None = None


@dataclass(frozen=True)
class SitemapDoc:
    """A parsed sitemap: `kind` is 'urlset' or 'sitemapindex'."""

    kind: str
    entries: list[Entry]


def _tag(elem) -> str:
    tag = elem.tag
    if not isinstance(tag, str):
        return ""
    return tag.rsplit("}", 1)[-1].lower()


def _iterparse(body: bytes):
    return lxml.etree.iterparse(
        BytesIO(body),
        events=("end",),
        recover=True,
        remove_comments=True,
        resolve_entities=False,
        no_network=True,
        huge_tree=False,
        remove_pis=True,
        collect_ids=False,
    )


def parse_date(value: str | None) -> datetime | None:
    """W3C datetime (sitemaps, Atom), RFC 822 (RSS) or a bare date; aware UTC, None if unreadable."""
    if not value:
        return None
    value = value.strip()
    dt: datetime | None = None
    try:
        dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        try:
            dt = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
    if dt is None:
        return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return dt.astimezone(timezone.utc)


def is_fresh(published: datetime | None, max_age_days: float, now: datetime | None = None) -> bool:
    """Within the cutoff (an entry without a date is kept: better a fetch too many than a lost article)."""
    if not max_age_days or published is None:
        return True
    now = now or datetime.now(timezone.utc)
    return published >= now - timedelta(days=max_age_days)


class DecompressionBomb(ValueError):
    """A gzip document decompresses to more than the allowed size."""


def maybe_gunzip(body: bytes, *, max_size: int) -> bytes:
    """Body of a gzip sitemap decompressed, other bodies unchanged.

    `max_size` (bytes, > 0) is required: an unbounded gunzip of a hostile sitemap is a memory bomb.
    Over it, DecompressionBomb is raised.
    """
    if max_size <= 0:
        raise ValueError(f"max_size must be positive, got {max_size}")
    if body[:2] != b"\x1f\x8b":
        return body
    try:
        return gunzip(body, max_size=max_size)
    except _DecompressionMaxSizeExceeded as exc:
        raise DecompressionBomb(f"gzip body decompresses to more than {max_size} bytes") from exc


# --------------------------------------------------------------------------- feeds


class BadFeed(ValueError):
    """A document that is neither an XML feed (RSS/Atom) nor a JSON Feed."""


#: The DOCTYPE of an XML prolog with its internal subset (entity declarations live there).
_DOCTYPE = re.compile(rb"<!DOCTYPE(?:[^\[>]*)(?:\[.*?\])?\s*>", re.S | re.I)
_FIRST_ELEMENT = re.compile(rb"<[A-Za-z_]")
JSON_FEED_VERSION = "https://jsonfeed.org/version/"


def strip_doctype(body: bytes) -> bytes:
    """`body` without the DOCTYPE of its prolog.

    Checked before any XML parser sees the document: without a DOCTYPE there is no entity
    declaration, so neither an external entity (XXE) nor a nested one (billion laughs) can be
    expanded, whatever the parser behind it does. Entity references left in the text are then
    undeclared and kept as text by feedparser's fallback parser.
    """
    first = _FIRST_ELEMENT.search(body)
    head_end = first.start() if first else len(body)
    head = body[:head_end]
    if b"<!" not in head:
        return body
    return _DOCTYPE.sub(b"", head) + body[head_end:]


def _struct_to_dt(value) -> datetime | None:
    """feedparser's `*_parsed` (a UTC `time.struct_time`) as an aware datetime."""
    if not value:
        return None
    try:
        y, mo, d, h, mi, sec = value[:6]
        return datetime(y, mo, d, h, mi, sec, tzinfo=timezone.utc)
    except (TypeError, ValueError):
        return None


def _entry_link(entry) -> str | None:
    """The article URL of a feedparser entry: FeedBurner's origLink, the alternate link, a permalink guid."""
    for key in ("feedburner_origlink", "pheedo_origlink"):
        if entry.get(key):
            return entry[key]
    for link in entry.get("links") or []:
        if link.get("rel", "alternate") == "alternate" and link.get("href"):
            return link["href"]
    if entry.get("link"):
        return entry["link"]
    guid = entry.get("id") or ""
    return guid if guid.startswith(("http://", "https://")) else None


def parse_json_feed(body: bytes, base_url: str) -> list[Entry]:
    """Items of a JSON Feed 1.0/1.1 (https://jsonfeed.org): `url`, else `external_url`; `date_published`."""
    try:
        doc = json.loads(body.decode("utf-8-sig"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise BadFeed(f"not a JSON Feed: {exc}") from None
    if not isinstance(doc, dict) or not str(doc.get("version", "")).startswith(JSON_FEED_VERSION):
        raise BadFeed("JSON without a jsonfeed.org version")
    items = doc.get("items")
    entries: list[Entry] = []
    for item in items if isinstance(items, list) else []:
        if not isinstance(item, dict):
            continue
        link = item.get("url") or item.get("external_url")
        url = absolute(base_url, link) if isinstance(link, str) else None
        if url:
            title = item.get("title") if isinstance(item.get("title"), str) else None
            date = item.get("date_published") or item.get("date_modified")
            entries.append(
                Entry(url=url, published=parse_date(date if isinstance(date, str) else None), title=title or None)
            )
    return entries


def parse_feed(body: bytes, base_url: str, content_type: str | None = None) -> list[Entry]:
    """Item links of an RSS 0.9x/1.0/2.0, Atom or JSON Feed document, resolved against `base_url`.

    XML goes through feedparser (xml:base, FeedBurner origLink, wrong or missing encodings, malformed
    markup) after `strip_doctype`. Raises BadFeed when the document is no feed at all.
    """
    if body.lstrip(b"\xef\xbb\xbf \t\r\n")[:1] == b"{":  # JSON (after an optional UTF-8 BOM)
        return parse_json_feed(body, base_url)
    headers = {"content-location": base_url}
    if content_type:
        headers["content-type"] = content_type
    parsed = feedparser.parse(BytesIO(strip_doctype(body)), response_headers=headers)
    if not parsed.get("version") and not parsed.entries:
        why = parsed.get("bozo_exception") or "no RSS, RDF or Atom root"
        raise BadFeed(f"not a feed: {why}")
    entries: list[Entry] = []
    for item in parsed.entries:
        url = absolute(base_url, _entry_link(item))
        if not url:
            continue
        published = _struct_to_dt(item.get("published_parsed") or item.get("updated_parsed"))
        title = (item.get("title") or "").strip() or None
        entries.append(Entry(url=url, published=published, title=title))
    return entries


# --------------------------------------------------------------------------- sitemaps


def parse_sitemap(body: bytes, base_url: str) -> SitemapDoc:
    """`<urlset>` (plain or news sitemap) or `<sitemapindex>`; date = news:publication_date or lastmod."""
    kind = ""
    entries: list[Entry] = []
    for _, elem in _iterparse(body):
        tag = _tag(elem)
        if tag in ("urlset", "sitemapindex"):
            kind = tag
            continue
        if tag not in ("url", "sitemap"):
            continue
        loc = lastmod = pubdate = title = None
        for child in elem.iter():
            ctag = _tag(child)
            if ctag == "loc" and loc is None:
                loc = child.text
            elif ctag == "lastmod":
                lastmod = child.text
            elif ctag == "publication_date":
                pubdate = child.text
            elif ctag == "title" and child is not elem:
                title = (child.text or "").strip() or None
        url = absolute(base_url, loc)
        if url:
            entries.append(Entry(url=url, published=parse_date(pubdate) or parse_date(lastmod), title=title))
        elem.clear()
    if not kind:
        raise ValueError("not a sitemap (no <urlset> or <sitemapindex> root)")
    return SitemapDoc(kind=kind, entries=entries)


def robots_sitemaps(robots: bytes | str, base_url: str) -> list[str]:
    """`Sitemap:` lines of a robots.txt (body bytes), absolute."""
    if isinstance(robots, str):
        robots = robots.encode("utf-8")
    return [u for u in (absolute(base_url, s) for s in sitemap_urls_from_robots(robots, base_url=base_url)) if u]


# --------------------------------------------------------------------------- section pages


@dataclass(frozen=True)
class SectionLinks:
    articles: list[str]
    sections: list[str]
    denied: list[str]


def section_links(html: str, base_url: str, allow: list[str], deny: list[str]) -> SectionLinks:
    """Same-site links of a section page: articles match an `allow` regex (any link when `allow`
    is empty) and no `deny` regex; other same-site, non-denied links may be followed as sections."""
    allow_re = [re.compile(p) for p in allow]
    deny_re = [re.compile(p) for p in deny]
    try:
        doc = lxml.html.document_fromstring(html or "<html></html>")
    except (lxml.etree.ParserError, ValueError) as exc:
        log.info("section page %s not parseable: %s", base_url, exc)
        return SectionLinks([], [], [])
    base = doc.xpath("//base/@href")
    page_base = absolute(base_url, base[0]) if base else base_url
    seen: set[str] = set()
    articles: list[str] = []
    sections: list[str] = []
    denied: list[str] = []
    for a in doc.iter("a"):
        if "nofollow" in (a.get("rel") or "").lower():
            continue
        url = absolute(page_base or base_url, a.get("href"))
        if not url or not same_site(url, base_url):
            continue
        url = canonicalize(url)
        if url in seen or url == canonicalize(base_url):
            continue
        seen.add(url)
        if any(r.search(url) for r in deny_re):
            denied.append(url)
        elif not allow_re or any(r.search(url) for r in allow_re):
            articles.append(url)
        else:
            sections.append(url)
    return SectionLinks(articles, sections, denied)


def rel_canonical(html: str, base_url: str) -> str | None:
    """The page's `<link rel="canonical">`, absolute, or None."""
    # The link belongs in <head>: parse only that much when the page has one (a fifth of
    # the crawl's parsing time on article pages went to building trees of whole bodies).
    head_end = html.find("</head", 0, 512 * 1024) if html else -1
    if head_end < 0:
        head_end = html.find("</HEAD", 0, 512 * 1024) if html else -1
    if head_end > 0:
        html = html[:head_end] + "</head><body></body></html>"
    try:
        doc = lxml.html.document_fromstring(html or "<html></html>")
    except (lxml.etree.ParserError, ValueError):
        return None
    for link in doc.xpath("//link[@href]"):
        if "canonical" in (link.get("rel") or "").lower().split():
            return absolute(base_url, link.get("href"))
    return None


# --------------------------------------------------------------------------- autodiscovery

#: `<link rel="alternate" type=...>` types that announce a feed.
FEED_TYPES = {
    "application/rss+xml": "rss",
    "application/atom+xml": "atom",
    "application/feed+json": "json",
    "application/json": "json",  # JSON Feed 1.0 announced itself with the generic type
    "application/rdf+xml": "rdf",
}


@dataclass(frozen=True)
class FeedLink:
    """A feed a page announces: absolute URL, format (rss, atom, json, rdf) and its title."""

    url: str
    format: str
    title: str | None = None


def feed_links(html: str, base_url: str) -> list[FeedLink]:
    """Feeds announced by `<link rel="alternate" type="application/(rss|atom)+xml|feed+json">`, in page order.

    Comment feeds (a title or URL saying so) come last: a site's main feed is what a source wants.
    """
    head_end = html.find("</head", 0, 512 * 1024) if html else -1
    if head_end > 0:  # the links belong in <head>; do not build a tree of the whole body
        html = html[:head_end] + "</head><body></body></html>"
    try:
        doc = lxml.html.document_fromstring(html or "<html></html>")
    except (lxml.etree.ParserError, ValueError):
        return []
    base = doc.xpath("//base/@href")
    page_base = absolute(base_url, base[0]) if base else base_url
    found: list[FeedLink] = []
    seen: set[str] = set()
    for link in doc.xpath("//link[@href][@type]"):
        rel = (link.get("rel") or "").lower().split()
        kind = FEED_TYPES.get((link.get("type") or "").split(";")[0].strip().lower())
        url = absolute(page_base or base_url, link.get("href"))
        if "alternate" not in rel or kind is None or not url or url in seen:
            continue
        seen.add(url)
        found.append(FeedLink(url=url, format=kind, title=(link.get("title") or "").strip() or None))
    return sorted(found, key=lambda f: "comment" in f"{f.title or ''} {f.url}".lower())
