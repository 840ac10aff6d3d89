"""Discovery helpers and URL canonicalisation on literal documents (no network, no reactor)."""

from __future__ import annotations

import gzip
from datetime import datetime, timedelta, timezone

import pytest

from pipeline.text.urls import canonicalize
from spiders import discovery

# Per test: pure parsing: a bomb that is no longer bounded must fail fast, not exhaust memory slowly.
pytestmark = pytest.mark.timeout(30)


BASE = "http://news.example/"


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("http://News.Example/a/?utm_source=x&b=2&fbclid=1&gclid=3&a=1#frag", "http://news.example/a/?a=1&b=2"),
        ("https://news.example:443/p?utm_medium=email&utm_campaign=c", "https://news.example/p"),
        ("http://news.example/story#comments", "http://news.example/story"),
        ("http://news.example/x?id=7", "http://news.example/x?id=7"),
    ],
)
def test_canonicalize_strips_trackers_and_fragments(raw, expected):
    assert canonicalize(raw) == expected


def test_canonicalize_is_idempotent():
    url = "http://news.example/a b/?z=1&utm_term=t&a=%7e"
    assert canonicalize(canonicalize(url)) == canonicalize(url)


RSS2 = b"""<?xml version="1.0"?><rss version="2.0"><channel><title>T</title><link>http://news.example/</link>
<item><title>One</title><link>http://news.example/a/1?utm_source=rss</link>
<pubDate>Fri, 27 Nov 2026 10:00:00 GMT</pubDate></item>
<item><title>Two</title><guid>http://news.example/a/2</guid></item>
<item><title>Rel</title><link>/a/3</link></item>
</channel></rss>"""

RSS091 = b"""<?xml version="1.0" encoding="ISO-8859-1"?>
<!DOCTYPE rss PUBLIC "-//Netscape Communications//DTD RSS 0.91//EN" "http://my.netscape.com/publish/formats/rss-0.91.dtd">
<rss version="0.91"><channel><title>Old</title><link>http://news.example/</link><description>d</description>
<item><title>Caf\xe9</title><link>http://news.example/old/1</link></item></channel></rss>"""

ATOM = b"""<?xml version="1.0" encoding="utf-8"?><feed xmlns="http://www.w3.org/2005/Atom"><title>A</title>
<link href="http://news.example/"/>
<entry><title>E1</title><link rel="alternate" href="http://news.example/e/1"/>
<link rel="enclosure" href="http://news.example/e/1.mp3"/><updated>2026-11-26T08:00:00Z</updated></entry>
<entry><title>E2</title><link href="e/2"/><published>2026-11-01T08:00:00+01:00</published></entry>
</feed>"""


def test_rss2_items_with_dates_and_relative_links():
    entries = discovery.parse_feed(RSS2, BASE)
    assert [e.url for e in entries] == [
        "http://news.example/a/1?utm_source=rss",
        "http://news.example/a/2",
        "http://news.example/a/3",
    ]
    assert entries[0].published == datetime(2026, 11, 27, 10, tzinfo=timezone.utc)
    assert entries[1].published is None


def test_rss091_latin1():
    entries = discovery.parse_feed(RSS091, BASE)
    assert [e.url for e in entries] == ["http://news.example/old/1"]
    assert entries[0].title == "Café"


def test_atom_alternate_links_only():
    entries = discovery.parse_feed(ATOM, BASE)
    assert [e.url for e in entries] == ["http://news.example/e/1", "http://news.example/e/2"]
    assert entries[1].published == datetime(2026, 11, 1, 7, tzinfo=timezone.utc)


def test_feed_with_external_entity_is_not_expanded(tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("TOPSECRET")
    xxe = (
        f'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY x SYSTEM "file://{secret}">]>'
        "<rss><channel><item><title>Before &x; after</title><link>http://news.example/x</link></item></channel></rss>"
    )
    entries = discovery.parse_feed(xxe.encode(), BASE)
    # parsed (so the check below is not vacuous), and the entity left unexpanded
    assert [e.url for e in entries] == ["http://news.example/x"]
    assert entries[0].title and entries[0].title.startswith("Before")
    assert "TOPSECRET" not in entries[0].title


def test_sitemap_with_external_entity_is_not_expanded(tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("TOPSECRET")
    xxe = (
        f'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY x SYSTEM "file://{secret}">]>'
        '<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">'
        "<url><loc>http://news.example/a/&x;</loc></url><url><loc>http://news.example/b</loc></url></urlset>"
    )
    doc = discovery.parse_sitemap(xxe.encode(), BASE)
    assert doc.kind == "urlset" and len(doc.entries) == 2
    assert doc.entries[1].url == "http://news.example/b"
    assert not any("TOPSECRET" in e.url for e in doc.entries)


NEWS_SITEMAP = b"""<?xml version="1.0" encoding="UTF-8"?>
<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9" xmlns:news="http://www.google.com/schemas/sitemap-news/0.9">
<url><loc>http://news.example/n/1</loc><news:news><news:publication><news:name>N</news:name>
<news:language>en</news:language></news:publication><news:publication_date>2026-11-27T09:00:00Z</news:publication_date>
<news:title>Fresh</news:title></news:news></url>
<url><loc>http://news.example/n/2</loc><lastmod>2020-01-01</lastmod></url>
</urlset>"""

INDEX = b"""<?xml version="1.0"?><sitemapindex xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">
<sitemap><loc>http://news.example/sitemap-1.xml.gz</loc><lastmod>2026-11-27</lastmod></sitemap>
<sitemap><loc>http://news.example/sitemap-old.xml</loc></sitemap></sitemapindex>"""


def test_news_sitemap_publication_date_and_lastmod():
    doc = discovery.parse_sitemap(NEWS_SITEMAP, BASE)
    assert doc.kind == "urlset"
    assert [e.url for e in doc.entries] == ["http://news.example/n/1", "http://news.example/n/2"]
    assert doc.entries[0].published == datetime(2026, 11, 27, 9, tzinfo=timezone.utc)
    assert doc.entries[0].title == "Fresh"
    assert doc.entries[1].published == datetime(2020, 1, 1, tzinfo=timezone.utc)


def test_sitemap_index_and_gzip():
    doc = discovery.parse_sitemap(discovery.maybe_gunzip(gzip.compress(INDEX), max_size=2**20), BASE)
    assert doc.kind == "sitemapindex"
    assert [e.url for e in doc.entries] == [
        "http://news.example/sitemap-1.xml.gz",
        "http://news.example/sitemap-old.xml",
    ]


def test_gzip_sitemap_bomb_is_bounded():
    bomb = gzip.compress(b"<urlset>" + b" " * (4 * 2**20))
    with pytest.raises(discovery.DecompressionBomb, match=r"more than 1048576 bytes"):
        discovery.maybe_gunzip(bomb, max_size=2**20)
    assert len(discovery.maybe_gunzip(bomb, max_size=8 * 2**20)) == 8 + 4 * 2**20


def test_gzip_limit_is_required():
    with pytest.raises(TypeError):
        discovery.maybe_gunzip(gzip.compress(INDEX))  # type: ignore[call-arg]
    with pytest.raises(ValueError, match="max_size must be positive"):
        discovery.maybe_gunzip(gzip.compress(INDEX), max_size=0)


def test_not_a_sitemap_raises():
    with pytest.raises(ValueError):
        discovery.parse_sitemap(b"<html><body>hello</body></html>", BASE)


def test_cutoff():
    now = datetime(2026, 11, 27, 12, tzinfo=timezone.utc)
    assert discovery.is_fresh(now - timedelta(days=1), 3, now)
    assert not discovery.is_fresh(now - timedelta(days=4), 3, now)
    assert discovery.is_fresh(None, 3, now)  # undated entries are kept
    assert discovery.is_fresh(now - timedelta(days=400), 0, now)  # 0 = no cutoff


def test_robots_sitemaps():
    robots = "User-agent: *\nDisallow: /private/\nSitemap: http://news.example/sitemap.xml\nsitemap: /news.xml\n"
    assert discovery.robots_sitemaps(robots, "http://news.example/robots.txt") == [
        "http://news.example/sitemap.xml",
        "http://news.example/news.xml",
    ]


SECTION = """<html><head><base href="http://news.example/world/"></head><body>
<a href="/2026/11/27/story-one?utm_source=home#top">One</a>
<a href="2026/11/27/story-two">Two (relative to base)</a>
<a href="/2026/11/27/story-one">One again</a>
<a href="/world/page/2">Next page</a>
<a href="/tag/sponsored/2026/11/27/ad">Ad</a>
<a href="http://elsewhere.example/2026/11/27/x">Off-site</a>
<a href="mailto:x@news.example">Mail</a>
<a href="/login" rel="nofollow">Login</a>
</body></html>"""


def test_section_links_allow_deny_and_dedupe():
    found = discovery.section_links(SECTION, "http://news.example/world/", [r"/\d{4}/\d{2}/\d{2}/"], [r"/tag/"])
    assert found.articles == [
        "http://news.example/2026/11/27/story-one",
        "http://news.example/world/2026/11/27/story-two",
    ]
    assert found.sections == ["http://news.example/world/page/2"]
    assert found.denied == ["http://news.example/tag/sponsored/2026/11/27/ad"]


def test_rel_canonical():
    html = '<html><head><link rel="canonical" href="/a/1"></head><body></body></html>'
    assert discovery.rel_canonical(html, "http://news.example/a/1?utm_source=x") == "http://news.example/a/1"
    assert discovery.rel_canonical("<html><body>x</body></html>", BASE) is None
