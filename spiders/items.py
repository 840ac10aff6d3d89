"""Typed items the news spider yields; the item pipeline (spiders/pipelines.py) consumes them."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class FetchedPage:
    """One response to archive raw (WARC request + response records)."""

    url: str
    kind: str
    status: int
    # Scrapy logs every scraped item with its repr at DEBUG: without repr=False each line
    # carried the whole page (a 33 MB log for the 181 pages of the extraction benchmark).
    headers: list[tuple[str, str]] = field(repr=False)
    body: bytes = field(repr=False)
    request_headers: list[tuple[str, str]] = field(default_factory=list, repr=False)
    method: str = "GET"
    #: Canonicalised URL the page was discovered under (before redirects).
    discovered_url: str = ""
    #: The page's own rel=canonical (absolute), when it declares one.
    rel_canonical: str | None = None
    #: For feeds/sitemaps/robots: the (url, kind) pairs it announced, kept in the HTTP state
    #: so a later 304 can re-announce them without parsing.
    links: list[tuple[str, str]] = field(default_factory=list, repr=False)
    fetched_at: str = ""
    #: The DOM headless Chromium rendered from the response (`render: js|auto`); empty when not rendered.
    #: `body` and `headers` stay the response's own (the WARC response record; this is its conversion record).
    rendered: bytes = field(default=b"", repr=False)


@dataclass
class CrawlReject:
    """A URL the crawl gave up on: written to rejects/…/crawl-<source>.jsonl at close."""

    url: str
    reason: str
    detail: str = ""
    kind: str = ""


@dataclass
class NotModified:
    """A 304 for a feed/sitemap/robots: its stored validators and links stay valid."""

    url: str
    kind: str
