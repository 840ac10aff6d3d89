"""Discovery documents: RSS 2.0, RSS 0.91, Atom, sitemaps (plain, news, index) and robots.txt."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from email.utils import format_datetime
from xml.sax.saxutils import escape


@dataclass
class Entry:
    """One URL as a feed or sitemap lists it."""

    url: str
    title: str = ""
    summary: str = ""
    author: str = ""
    published: datetime | None = None
    modified: datetime | None = None


def _iso(dt: datetime) -> str:
    return dt.isoformat(timespec="seconds")


def rss20(title: str, site_url: str, entries: list[Entry], built: datetime) -> str:
    items = "".join(
        f"<item><title>{escape(e.title)}</title><link>{escape(e.url)}</link>"
        f'<guid isPermaLink="true">{escape(e.url)}</guid>'
        + (f"<pubDate>{format_datetime(e.published, usegmt=True)}</pubDate>" if e.published else "")
        + (f"<dc:creator>{escape(e.author)}</dc:creator>" if e.author else "")
        + f"<description>{escape(e.summary)}</description></item>"
        for e in entries
    )
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<rss version="2.0" xmlns:dc="http://purl.org/dc/elements/1.1/" '
        'xmlns:atom="http://www.w3.org/2005/Atom"><channel>'
        f"<title>{escape(title)}</title><link>{escape(site_url)}/</link>"
        f'<atom:link href="{escape(site_url)}/feed/" rel="self" type="application/rss+xml"/>'
        f"<description>Latest news from {escape(title)}</description><language>en-gb</language>"
        f"<lastBuildDate>{format_datetime(built, usegmt=True)}</lastBuildDate>{items}</channel></rss>"
    )


def rss091(title: str, site_url: str, entries: list[Entry]) -> str:
    """Netscape RSS 0.91: items have only title, link and description (no dates)."""
    items = "".join(
        f"<item><title>{escape(e.title)}</title><link>{escape(e.url)}</link>"
        f"<description>{escape(e.summary)}</description></item>"
        for e in entries
    )
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<!DOCTYPE rss PUBLIC "-//Netscape Communications//DTD RSS 0.91//EN" '
        '"http://my.netscape.com/publish/formats/rss-0.91.dtd">\n'
        f'<rss version="0.91"><channel><title>{escape(title)}</title><link>{escape(site_url)}/</link>'
        f"<description>News from {escape(title)}</description><language>en-gb</language>{items}"
        "</channel></rss>"
    )


def atom(title: str, site_url: str, entries: list[Entry], updated: datetime) -> str:
    items = "".join(
        f'<entry><title>{escape(e.title)}</title><link rel="alternate" type="text/html" href="{escape(e.url)}"/>'
        f"<id>{escape(e.url)}</id>"
        f"<published>{_iso(e.published or updated)}</published>"
        f"<updated>{_iso(e.modified or e.published or updated)}</updated>"
        f"<author><name>{escape(e.author or title)}</name></author>"
        f'<summary type="text">{escape(e.summary)}</summary></entry>'
        for e in entries
    )
    return (
        '<?xml version="1.0" encoding="utf-8"?>\n<feed xmlns="http://www.w3.org/2005/Atom">'
        f'<title>{escape(title)}</title><link rel="alternate" href="{escape(site_url)}/"/>'
        f'<link rel="self" href="{escape(site_url)}/feeds/atom.xml"/><id>{escape(site_url)}/</id>'
        f"<updated>{_iso(updated)}</updated>{items}</feed>"
    )


def urlset(entries: list[Entry], *, news_name: str | None = None) -> str:
    """A sitemap; with `news_name`, a Google News sitemap (news:publication_date, news:title)."""
    ns = ' xmlns:news="http://www.google.com/schemas/sitemap-news/0.9"' if news_name else ""
    rows = []
    for e in entries:
        row = f"<url><loc>{escape(e.url)}</loc>"
        lastmod = e.modified or e.published
        if lastmod:
            row += f"<lastmod>{_iso(lastmod)}</lastmod>"
        if news_name and e.published:
            row += (
                f"<news:news><news:publication><news:name>{escape(news_name)}</news:name>"
                f"<news:language>en</news:language></news:publication>"
                f"<news:publication_date>{_iso(e.published)}</news:publication_date>"
                f"<news:title>{escape(e.title)}</news:title></news:news>"
            )
        rows.append(row + "</url>")
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9"{ns}>{"".join(rows)}</urlset>'
    )


def sitemapindex(children: list[tuple[str, datetime]]) -> str:
    rows = "".join(f"<sitemap><loc>{escape(u)}</loc><lastmod>{_iso(m)}</lastmod></sitemap>" for u, m in children)
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<sitemapindex xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">{rows}</sitemapindex>'
    )


def robots_txt(disallow: list[str], sitemaps: list[str]) -> str:
    lines = ["# robots.txt for the news-ingest sample site", "User-agent: *"]
    lines += [f"Disallow: {d}" for d in disallow] or ["Disallow:"]  # an empty Disallow allows everything
    lines += ["", *(f"Sitemap: {s}" for s in sitemaps)]
    return "\n".join(lines) + "\n"
