"""Feed parsing through feedparser and JSON Feed, on literal documents (no network, no reactor)."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest

from spiders import discovery

pytestmark = pytest.mark.timeout(30)

BASE = "http://news.example/feed"

RSS10 = b"""<?xml version="1.0"?>
<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#" xmlns="http://purl.org/rss/1.0/"
  xmlns:dc="http://purl.org/dc/elements/1.1/">
<channel rdf:about="http://news.example/"><title>R</title><link>http://news.example/</link></channel>
<item rdf:about="http://news.example/r/1"><title>One</title><link>http://news.example/r/1</link>
<dc:date>2026-11-27T09:30:00+02:00</dc:date></item>
</rdf:RDF>"""

FEEDBURNER = b"""<?xml version="1.0" encoding="UTF-8"?>
<rss version="2.0" xmlns:feedburner="http://rssnamespace.org/feedburner/ext/1.0"><channel><title>F</title>
<item><title>Tracked</title><link>http://feeds.example/~r/news/~3/abc/</link>
<feedburner:origLink>http://news.example/2026/11/27/real-story/</feedburner:origLink></item>
</channel></rss>"""

XML_BASE = b"""<?xml version="1.0" encoding="utf-8"?>
<feed xmlns="http://www.w3.org/2005/Atom" xml:base="http://news.example/blog/"><title>B</title>
<entry xml:base="posts/"><title>Based</title><link href="one.html"/><updated>2026-11-26T08:00:00Z</updated></entry>
<entry><title>Root</title><link href="/two.html"/></entry>
</feed>"""

JSON_FEED = json.dumps(
    {
        "version": "https://jsonfeed.org/version/1.1",
        "title": "J",
        "home_page_url": "http://news.example/",
        "items": [
            {
                "id": "1",
                "url": "http://news.example/j/1",
                "title": "Json one",
                "date_published": "2026-11-27T10:00:00Z",
            },
            {"id": "2", "external_url": "/j/2", "title": "Linked"},
            {"id": "3", "content_text": "no link at all"},
            "not an object",
        ],
    }
).encode()


def test_rss10_rdf_items():
    entries = discovery.parse_feed(RSS10, BASE)
    assert [e.url for e in entries] == ["http://news.example/r/1"]
    assert entries[0].published == datetime(2026, 11, 27, 7, 30, tzinfo=timezone.utc)


def test_feedburner_origlink_wins_over_the_tracking_link():
    entries = discovery.parse_feed(FEEDBURNER, BASE)
    assert [e.url for e in entries] == ["http://news.example/2026/11/27/real-story/"]


def test_xml_base_resolves_relative_links():
    entries = discovery.parse_feed(XML_BASE, BASE)
    assert [e.url for e in entries] == ["http://news.example/blog/posts/one.html", "http://news.example/two.html"]


def test_json_feed_items():
    entries = discovery.parse_feed(JSON_FEED, BASE)
    assert [e.url for e in entries] == ["http://news.example/j/1", "http://news.example/j/2"]
    assert entries[0].title == "Json one"
    assert entries[0].published == datetime(2026, 11, 27, 10, tzinfo=timezone.utc)


def test_json_that_is_not_a_json_feed_is_refused():
    with pytest.raises(discovery.BadFeed):
        discovery.parse_feed(b'{"items": [{"url": "http://news.example/x"}]}', BASE)


def test_wrongly_declared_encoding_still_parses():
    # declared UTF-8, sent as ISO-8859-1: a strict parser gives up at the first byte over 0x7f
    body = (
        '<?xml version="1.0" encoding="UTF-8"?><rss version="2.0"><channel><title>E</title>'
        "<item><title>Caf\u00e9 in Z\u00fcrich</title><link>http://news.example/e/1</link></item></channel></rss>"
    ).encode("latin-1")
    entries = discovery.parse_feed(body, BASE, "application/rss+xml; charset=utf-8")
    assert [e.url for e in entries] == ["http://news.example/e/1"]
    assert entries[0].title and entries[0].title.startswith("Caf")


def test_malformed_feed_is_recovered():
    body = b"<rss version='2.0'><channel><item><title>A & B</title><link>http://news.example/m/1</link></item>"
    assert [e.url for e in discovery.parse_feed(body, BASE)] == ["http://news.example/m/1"]


def test_html_page_is_not_a_feed():
    with pytest.raises(discovery.BadFeed):
        discovery.parse_feed(b"<html><head><title>x</title></head><body><p>hello</p></body></html>", BASE)


def test_billion_laughs_is_not_expanded():
    lol = '<!ENTITY lol0 "lol">' + "".join(
        f'<!ENTITY lol{i} "{("&lol" + str(i - 1) + ";") * 10}">' for i in range(1, 10)
    )
    body = (
        f'<?xml version="1.0"?><!DOCTYPE rss [{lol}]><rss version="2.0"><channel>'
        "<item><title>&lol9;</title><link>http://news.example/b/1</link></item></channel></rss>"
    ).encode()
    entries = discovery.parse_feed(body, BASE)
    assert [e.url for e in entries] == ["http://news.example/b/1"]
    assert len(entries[0].title or "") < 100  # 10^9 "lol"s were never built


def test_strip_doctype_only_touches_the_prolog():
    body = (
        b'<?xml version="1.0"?>\n<!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]>\n<rss><t>&lt;!DOCTYPE</t></rss>'
    )
    out = discovery.strip_doctype(body)
    assert b"ENTITY" not in out and out.endswith(b"<rss><t>&lt;!DOCTYPE</t></rss>")
    plain = b"<rss><channel/></rss>"
    assert discovery.strip_doctype(plain) is plain


# --------------------------------------------------------------------------- autodiscovery


def test_feed_links_from_head():
    html = """<html><head><base href="http://news.example/en/">
    <link rel="alternate" type="application/rss+xml" title="Comments" href="comments.rss">
    <link rel="alternate" type="application/atom+xml" href="/atom.xml">
    <link rel="alternate" type="application/feed+json" title="JSON" href="feed.json">
    <link rel="alternate" type="text/html" hreflang="de" href="/de/">
    <link rel="stylesheet" type="text/css" href="/s.css">
    <link rel="alternate" type="application/atom+xml" href="/atom.xml">
    </head><body><a href="/x">x</a></body></html>"""
    found = discovery.feed_links(html, "http://news.example/")
    assert [(f.url, f.format) for f in found] == [
        ("http://news.example/atom.xml", "atom"),
        ("http://news.example/en/feed.json", "json"),
        ("http://news.example/en/comments.rss", "rss"),  # comment feeds last
    ]


def test_discover_cli_prints_a_sources_entry(modern_site, capsys):
    import yaml

    from examples.sample_site.modern import LINKWISE
    from pipeline.cli.main import main

    base = modern_site.base_urls[LINKWISE]
    port = base.rsplit(":", 1)[1]
    code = main(["discover", base + "/", "--name", "linkwise", "--allow-private", f"127.0.0.1:{port}"])
    out = capsys.readouterr().out
    assert code == 0, out
    entry = yaml.safe_load(out)[0]
    assert entry["name"] == "linkwise" and entry["home"] == base + "/"
    assert entry["feeds"] == [
        base + "/syndication/main.rss",
        base + "/syndication/feed.json",
        base + "/section/world/atom.xml",  # announced on the section page
    ]
    assert entry["sitemaps"] == [base + "/sitemap-stories.xml"]
    samples = [line.strip("# ").strip() for line in out.splitlines() if "/stories/" in line]
    assert len(samples) >= 5 and all(s.startswith(base + "/stories/") for s in samples)
    # the entry loads as a source of a sources file
    from pipeline.core.config import SourcesConfig

    SourcesConfig.model_validate({"crawl": {"allow_private": [f"127.0.0.1:{port}"]}, "sources": [entry]})


def test_discover_cli_refuses_a_private_address_not_allowed(modern_site, capsys):
    from examples.sample_site.modern import LINKWISE
    from pipeline.cli.main import main

    code = main(["discover", modern_site.base_urls[LINKWISE] + "/"])
    assert code == 2
    assert "ssrf_blocked" in capsys.readouterr().err
    assert main(["discover", "http://169.254.169.254/latest/"]) == 2


def test_discover_connects_to_the_address_it_checked(modern_site, monkeypatch):
    """DNS rebinding: the first answer is allowed, a second would be the metadata IP; only the first is used."""
    import socket

    from examples.sample_site.modern import LINKWISE
    from pipeline.cli.discover import GuardedFetcher
    from spiders.netguard import Allowlist

    port = int(modern_site.base_urls[LINKWISE].rsplit(":", 1)[1])
    answers = iter(["127.0.0.1", "169.254.169.254", "169.254.169.254"])
    real = socket.getaddrinfo
    asked: list[str] = []

    def rebinding(host, *args, **kwargs):
        if host != "rebind.test":
            return real(host, *args, **kwargs)
        asked.append(host)
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (next(answers), port))]

    monkeypatch.setattr(socket, "getaddrinfo", rebinding)
    fetcher = GuardedFetcher(Allowlist.parse([f"127.0.0.1:{port}"]), timeout=5)
    body, _ctype, final = fetcher.get(f"http://rebind.test:{port}/")
    assert b"<html" in body.lower() and final == f"http://rebind.test:{port}/"
    assert asked == ["rebind.test"]  # resolved once, for the connection itself
