"""The offline sample news site, over real HTTP on 127.0.0.1."""

from __future__ import annotations

import gzip
import json
import re
import threading
import urllib.error
import urllib.request
import zlib
from collections import Counter
from urllib.parse import urljoin, urlsplit

import pytest
from lxml import etree, html

from examples.sample_site import BOILERPLATE_PHRASES, SampleSite
from examples.sample_site.build import OLD_DAYS
from examples.sample_site.hostile import SITEMAP_BOMB_BYTES, SITEMAP_HEAD
from pipeline.core.config import load_sources

# Per test: the slow and endless pages must never hold a test up.
pytestmark = pytest.mark.timeout(60)


SM = "{http://www.sitemaps.org/schemas/sitemap/0.9}"
ATOM = "{http://www.w3.org/2005/Atom}"


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


_plain = urllib.request.build_opener(_NoRedirect)


def fetch(url: str, headers: dict[str, str] | None = None, timeout: float = 10):
    """(status, headers, body) without following redirects and without raising on HTTP errors."""
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with _plain.open(req, timeout=timeout) as resp:
            return resp.status, resp.headers, resp.read()
    except urllib.error.HTTPError as err:
        return err.code, err.headers, err.read()


def by_kind(site: SampleSite, kind: str) -> list[dict]:
    return [e for e in site.expected() if e["kind"] == kind]


def entry(site: SampleSite, path: str) -> dict:
    return next(e for e in site.expected() if urlsplit(e["url"]).path == path)


def shingles(text: str, n: int = 5) -> set[tuple[str, ...]]:
    words = re.findall(r"\w+", text.lower())
    return {tuple(words[i : i + n]) for i in range(len(words) - n + 1)}


def jaccard(a: str, b: str) -> float:
    sa, sb = shingles(a), shingles(b)
    return len(sa & sb) / len(sa | sb)


# --------------------------------------------------------------------------- discovery


def test_robots_txt_disallows_private_and_announces_sitemaps(sample_site):
    for base in sample_site.base_urls.values():
        status, headers, body = fetch(base + "/robots.txt")
        assert status == 200 and headers["Content-Type"].startswith("text/plain")
        text = body.decode()
        assert "Disallow: /private/" in text
    courier = fetch(sample_site.base_urls["the-daily-courier"] + "/robots.txt")[2].decode()
    assert f"Sitemap: {sample_site.base_urls['the-daily-courier']}/sitemap_index.xml" in courier


def test_robots_denied_page_is_linked_from_a_feed(sample_site):
    denied = by_kind(sample_site, "robots_denied")
    assert denied and all(urlsplit(e["url"]).path.startswith("/private/") for e in denied)
    assert all(e["expected"] == "skipped" for e in denied)
    feed = fetch(sample_site.base_urls["the-daily-courier"] + "/feed/")[2].decode()
    assert any(e["url"] in feed for e in denied)


def test_rss20_feed_lists_articles_with_dates(sample_site):
    status, headers, body = fetch(sample_site.base_urls["the-daily-courier"] + "/feed/")
    root = etree.fromstring(body)
    assert status == 200 and root.tag == "rss" and root.get("version") == "2.0"
    items = root.findall("./channel/item")
    articles = {
        e["url"]
        for e in sample_site.expected()
        if e["outlet"] == "the-daily-courier" and e["kind"] in ("article", "syndicated")
    }
    links = {i.findtext("link") for i in items}
    assert articles <= links
    assert all(i.findtext("pubDate") for i in items)


def test_atom_feed_lists_articles(sample_site):
    body = fetch(sample_site.base_urls["metro-herald"] + "/feeds/atom.xml")[2]
    root = etree.fromstring(body)
    assert root.tag == f"{ATOM}feed"
    links = {e.find(f"{ATOM}link").get("href") for e in root.findall(f"{ATOM}entry")}
    herald = {
        e["url"]
        for e in sample_site.expected()
        if e["outlet"] == "metro-herald" and e["kind"] in ("article", "syndicated", "updated")
    }
    assert herald == links


def test_rss091_feed_lists_articles(sample_site):
    body = fetch(sample_site.base_urls["valley-gazette"] + "/rss.xml")[2]
    root = etree.fromstring(body)
    assert root.get("version") == "0.91"
    links = {i.findtext("link") for i in root.findall("./channel/item")}
    assert len(links) == 14 and all(link.startswith(sample_site.base_urls["valley-gazette"]) for link in links)


def test_sitemap_index_leads_to_child_sitemaps_with_news_dates(sample_site):
    base = sample_site.base_urls["the-daily-courier"]
    index = etree.fromstring(fetch(base + "/sitemap_index.xml")[2])
    assert index.tag == f"{SM}sitemapindex"
    children = [loc.text for loc in index.iter(f"{SM}loc")]
    assert len(children) == 4
    locs: list[str] = []
    for child in children:
        status, _h, body = fetch(child)
        assert status == 200
        root = etree.fromstring(body)
        locs += [loc.text for loc in root.iter(f"{SM}loc")]
        if "news-sitemap" in child:
            dates = root.findall(".//{http://www.google.com/schemas/sitemap-news/0.9}publication_date")
            assert len(dates) == 14
    old = {e["url"] for e in by_kind(sample_site, "old") if e["outlet"] == "the-daily-courier"}
    assert old and old <= set(locs)
    assert base + "/about" in locs and base + "/tag/politics" in locs


def test_gzip_sitemap(sample_site):
    status, headers, body = fetch(sample_site.base_urls["valley-gazette"] + "/sitemap.xml.gz")
    assert status == 200 and body[:2] == b"\x1f\x8b" and "Content-Encoding" not in headers
    root = etree.fromstring(gzip.decompress(body))
    locs = {loc.text for loc in root.iter(f"{SM}loc")}
    gazette = {
        e["url"]
        for e in sample_site.expected()
        if e["outlet"] == "valley-gazette" and e["kind"] in ("article", "syndicated", "old", "nonarticle")
    }
    assert gazette == locs
    lastmods = [m.text for m in root.iter(f"{SM}lastmod")]
    assert len(lastmods) == len(locs)


def test_old_articles_are_about_400_days_old(sample_site):
    old = by_kind(sample_site, "old")
    assert len(old) >= 3
    for e in old:
        published = _published(e["url"])
        assert (sample_site.created_at - published).days >= OLD_DAYS
        assert e["expected"] == "skipped"


def test_every_discoverable_link_is_described_by_expected(sample_site):
    """Feeds, sitemaps and section pages link only to URLs expected() describes (or to other sections)."""
    described = {e["url"] for e in sample_site.expected()}
    surfaces = sample_site.surfaces()
    sections = {u for s in surfaces.values() for u in s["sections"]}
    found: set[str] = set()
    for s in surfaces.values():
        for u in s["feeds"] + s["sitemaps"]:
            found |= _links_in_xml(u)
        for u in s["sections"]:
            doc = html.fromstring(fetch(u)[2])
            found |= {urljoin(u, a.get("href")).split("#")[0] for a in doc.iter("a") if a.get("href")}
    found = {u for u in found if u and not u.endswith(".xml") and u not in sections}
    assert found - described == set()
    assert "http://192.168.1.10/story" in found


def _links_in_xml(url: str) -> set[str]:
    body = fetch(url)[2]
    if body[:2] == b"\x1f\x8b":
        d = zlib.decompressobj(16 + zlib.MAX_WBITS)
        body = d.decompress(body, 2**24)
        if d.unconsumed_tail:  # the hostile outlet's sitemap bomb: it announces nothing
            return set()
    root = etree.fromstring(body)
    out = {el.text for el in root.iter(f"{SM}loc", "link") if el.text}
    out |= {el.get("href") for el in root.iter(f"{ATOM}link") if el.get("rel") == "alternate"}
    out |= {x for u in out if u.endswith(".xml") and u != url for x in _links_in_xml(u)}
    return out


def _published(url: str):
    from datetime import datetime

    doc = html.fromstring(fetch(url)[2])
    return datetime.fromisoformat(doc.xpath('//meta[@property="article:published_time"]/@content')[0])


# --------------------------------------------------------------------------- conditional requests, hits


@pytest.mark.parametrize(
    "outlet,path",
    [
        ("the-daily-courier", "/feed/"),
        ("metro-herald", "/sitemap-news.xml"),
        ("valley-gazette", "/sitemap.xml.gz"),
        ("valley-gazette", "/"),
    ],
)
def test_conditional_requests_get_304(sample_site, outlet, path):
    url = sample_site.base_urls[outlet] + path
    status, headers, body = fetch(url)
    assert status == 200 and headers["ETag"] and headers["Last-Modified"]
    before = sample_site.hits(url)
    assert fetch(url, {"If-None-Match": headers["ETag"]})[0] == 304
    assert fetch(url, {"If-Modified-Since": headers["Last-Modified"]})[0] == 304
    assert fetch(url, {"If-None-Match": '"stale"'})[0] == 200
    assert fetch(url, {"If-Modified-Since": "Mon, 01 Jan 2001 00:00:00 GMT"})[0] == 200
    assert sample_site.hits(url) == before + 4


def test_article_pages_answer_304(sample_site):
    url = by_kind(sample_site, "article")[0]["url"]
    status, headers, _ = fetch(url)
    assert fetch(url, {"If-None-Match": headers["ETag"]})[0] == 304


def test_hits_are_counted_per_url_and_reset():
    with SampleSite(slow_seconds=1, huge_bytes=2**20) as site:
        url = site.base_urls["metro-herald"] + "/robots.txt"
        assert site.hits(url) == 0
        fetch(url)
        fetch(url)
        fetch(site.base_urls["valley-gazette"] + "/robots.txt")
        assert site.hits(url) == 2 and site.hits("/robots.txt") == 3
        site.reset_hits()
        assert site.hits("/robots.txt") == 0


# --------------------------------------------------------------------------- articles


def test_at_least_30_articles_in_three_templates(sample_site):
    articles = by_kind(sample_site, "article")
    assert len(articles) >= 30
    markers = Counter()
    for e in articles:
        status, headers, body = fetch(e["url"])
        page = body.decode()
        assert status == 200 and headers["Content-Type"] == "text/html; charset=utf-8"
        doc = html.fromstring(body)
        assert doc.xpath('//meta[@property="article:published_time"]/@content')
        assert doc.xpath('//link[@rel="canonical"]/@href') == [e["url"]]
        assert doc.xpath('//meta[@property="og:title"]/@content') == [e["title"]]
        assert e["author"] in page
        for marker in ('class="entry-content"', 'class="article-body"', "field--name-body"):
            if marker in page:
                markers[marker] += 1
        assert 250 <= len(e["text"].split()) <= 900
        assert "“" in e["text"] and "”" in e["text"]
        assert len(e["text"].split("\n")) >= 4
    assert len(markers) == 3 and min(markers.values()) >= 12
    assert len({e["story_id"] for e in articles}) == len(articles)


def test_json_ld_news_article(sample_site):
    e = next(e for e in by_kind(sample_site, "article") if e["outlet"] == "the-daily-courier")
    doc = html.fromstring(fetch(e["url"])[2])
    data = json.loads(doc.xpath('//script[@type="application/ld+json"]/text()')[0])
    assert data["@type"] == "NewsArticle" and data["headline"] == e["title"]


def test_article_text_and_related_headlines_are_in_the_body(sample_site):
    """The expected text is really in the page, and the related headlines sit inside the body element."""
    body_xpath = {
        "the-daily-courier": '//div[@class="entry-content"]',
        "metro-herald": '//div[@class="article-body"]',
        "valley-gazette": '//div[contains(@class, "field--name-body")]',
    }
    for e in by_kind(sample_site, "article"):
        doc = html.fromstring(fetch(e["url"])[2])
        body_text = doc.xpath(body_xpath[e["outlet"]])[0].text_content()
        assert e["related_headlines"]
        for headline in e["related_headlines"]:
            assert headline in body_text
        for para in e["text"].split("\n"):
            assert para in body_text


def test_generated_articles_are_not_near_duplicates_of_each_other(sample_site):
    texts = [e["text"] for e in by_kind(sample_site, "article")]
    worst = max(jaccard(a, b) for i, a in enumerate(texts) for b in texts[i + 1 :])
    assert worst < 0.3


def test_boilerplate_phrases_appear_in_raw_html(sample_site):
    pages = "".join(fetch(e["url"])[2].decode() for e in by_kind(sample_site, "article")[::4])
    text = html.fromstring(pages).text_content() + pages  # "Post Comment" is an input's value
    missing = [p for p in BOILERPLATE_PHRASES if p not in text]
    assert missing == []


def test_boilerplate_phrases_are_not_in_article_texts(sample_site):
    """Otherwise "none survives" tests downstream could fail for the wrong reason."""
    for e in sample_site.expected():
        if e.get("text"):
            text = e["text"].lower()  # downstream tests compare case-insensitively
            assert [p for p in BOILERPLATE_PHRASES if p.lower() in text] == []
            assert [h for h in e["related_headlines"] + e["sidebar_headlines"] if h.lower() in text] == []


def test_nonarticle_pages_are_served_and_listed(sample_site):
    nonarticles = by_kind(sample_site, "nonarticle")
    assert {urlsplit(e["url"]).path.split("/")[1] for e in nonarticles} == {"about", "contact", "tag"}
    for e in nonarticles:
        status, _h, body = fetch(e["url"])
        doc = html.fromstring(body)
        assert status == 200 and e["expected"] == "rejected"
        assert doc.xpath('//meta[@property="og:type"]/@content') == ["website"]
        assert not doc.xpath('//meta[@property="article:published_time"]')


# --------------------------------------------------------------------------- wire copies and updates


def test_wire_story_is_syndicated_with_light_edits(sample_site):
    copies = by_kind(sample_site, "syndicated")
    assert len(copies) >= 5 and len({e["story_id"] for e in copies}) == 1
    assert len({e["url"] for e in copies}) == len(copies)
    assert len({e["outlet"] for e in copies}) == 3
    assert len({e["title"] for e in copies}) >= 2
    texts = [e["text"] for e in copies]
    assert len(set(texts)) >= 4  # edited copies differ...
    assert min(jaccard(a, b) for a in texts for b in texts) > 0.75  # ...but only lightly
    pages = {fetch(e["url"])[2] for e in copies}
    assert len(pages) == len(copies)


def test_epochs_change_the_updated_article(sample_site):
    (upd,) = by_kind(sample_site, "updated")
    assert upd["versions"] == 3
    seen = []
    try:
        for epoch in range(3):
            sample_site.set_epoch(epoch)
            status, headers, body = fetch(upd["url"])
            doc = html.fromstring(body)
            text = " ".join(doc.xpath('//div[@class="article-body"]//text()'))
            modified = doc.xpath('//meta[@property="article:modified_time"]/@content')[0]
            seen.append((headers["ETag"], headers["Last-Modified"], modified, text))
            current = next(e for e in sample_site.expected() if e["kind"] == "updated")
            assert current["text"].split("\n")[-1] in text
            if seen[:-1]:  # the previous version's validators no longer match
                assert fetch(upd["url"], {"If-None-Match": seen[-2][0]})[0] == 200
        assert len({s[0] for s in seen}) == 3 and len({s[1] for s in seen}) == 3
        assert len({s[2] for s in seen}) == 3
        assert "Correction:" not in seen[0][3] and "Correction:" in seen[1][3]
        assert len(seen[2][3]) > len(seen[1][3]) > len(seen[0][3])
    finally:
        sample_site.set_epoch(0)
    with pytest.raises(ValueError):
        sample_site.set_epoch(3)


def test_feed_revalidation_sees_the_update(sample_site):
    url = sample_site.base_urls["metro-herald"] + "/feeds/atom.xml"
    try:
        etag = fetch(url)[1]["ETag"]
        sample_site.set_epoch(1)
        assert fetch(url, {"If-None-Match": etag})[0] == 200
    finally:
        sample_site.set_epoch(0)
    assert fetch(url, {"If-None-Match": etag})[0] == 304


# --------------------------------------------------------------------------- hostile pages


def hostile(site: SampleSite, path: str) -> str:
    return site.base_urls["hostile-times"] + path


def test_hostile_pages_are_linked_from_feed_and_sitemap(sample_site):
    feed = fetch(hostile(sample_site, "/feed.xml"))[2].decode()
    sitemap = fetch(hostile(sample_site, "/sitemap.xml"))[2].decode()
    entries = [e for e in sample_site.expected() if e["outlet"] == "hostile-times"]
    assert len(entries) >= 15
    for e in entries:
        assert e["url"] in feed and e["reject_reason_hint"]
        if not e["url"].startswith("http://192.168."):
            assert e["url"] in sitemap
    assert "http://192.168.1.10/story" in feed


def test_server_error_empty_and_non_html(sample_site):
    assert fetch(hostile(sample_site, "/story/server-error"))[0] == 500
    status, headers, body = fetch(hostile(sample_site, "/story/empty"))
    assert status == 200 and body == b"" and headers["Content-Length"] == "0"
    for path, ctype, magic in [
        ("/story/budget-figures", "application/pdf", b"%PDF"),
        ("/story/photo-of-the-day", "image/jpeg", b"\xff\xd8"),
        ("/story/live-data", "application/json", b"{"),
    ]:
        status, headers, body = fetch(hostile(sample_site, path))
        assert status == 200 and headers["Content-Type"] == ctype and body.startswith(magic)


def test_redirects_loop_and_point_at_private_addresses(sample_site):
    a, b = hostile(sample_site, "/story/loop-a"), hostile(sample_site, "/story/loop-b")
    assert fetch(a)[0] == 302 and fetch(a)[1]["Location"] == b and fetch(b)[1]["Location"] == a
    assert (
        fetch(hostile(sample_site, "/story/cloud-metadata"))[1]["Location"]
        == "http://169.254.169.254/latest/meta-data/"
    )
    assert fetch(hostile(sample_site, "/story/intranet-link"))[1]["Location"] == "http://10.0.0.1/"


def test_rate_limited_page_gives_429_then_200(sample_site):
    url = hostile(sample_site, "/story/rate-limited")
    results = [fetch(url) for _ in range(3)]
    codes = [r[0] for r in results]
    i = codes.index(429)
    assert results[i][1]["Retry-After"] == "1" and codes[i + 1] == 200
    assert entry(sample_site, "/story/rate-limited")["expected"] == "stored"
    assert entry(sample_site, "/story/rate-limited")["title"] in results[i + 1][2].decode()


def test_misdeclared_charset_page(sample_site):
    status, headers, body = fetch(hostile(sample_site, "/story/seafront-bakery"))
    assert headers["Content-Type"] == "text/html; charset=ISO-8859-1"
    assert b'<meta charset="ISO-8859-1"/>' in body
    text = body.decode("utf-8")  # the bytes really are UTF-8
    e = entry(sample_site, "/story/seafront-bakery")
    for word in e["must_contain"]:
        assert word in text and word in e["text"] + e["title"]
    assert "ZÃ¼rich" in body.decode("iso-8859-1")  # what believing the header gives


def test_navigation_only_page_has_no_paragraphs(sample_site):
    doc = html.fromstring(fetch(hostile(sample_site, "/story/navigation-only"))[2])
    assert doc.xpath("//nav//a") and not doc.xpath("//p[string-length(normalize-space()) > 80]")


def test_slow_page_times_out_without_blocking_others(sample_site):
    url = hostile(sample_site, "/story/slow-loading")
    outcome: list[BaseException] = []

    def slow_fetch() -> None:
        try:
            fetch(url, timeout=2)
        except (TimeoutError, urllib.error.URLError) as exc:
            outcome.append(exc)

    t = threading.Thread(target=slow_fetch)
    t.start()
    assert fetch(sample_site.base_urls["metro-herald"] + "/robots.txt")[0] == 200  # served meanwhile
    t.join()
    assert len(outcome) == 1


def test_huge_page_is_streamed_past_the_limit(sample_site):
    limit = 8 * 2**20
    req = urllib.request.Request(hostile(sample_site, "/story/endless-archive"))
    with urllib.request.urlopen(req, timeout=10) as resp:
        assert resp.headers.get("Content-Length") is None
        received = 0
        while received <= limit:
            chunk = resp.read(2**20)
            assert chunk
            received += len(chunk)
    assert received > limit


def test_gzip_bomb_is_small_on_the_wire_and_huge_decompressed(sample_site):
    status, headers, body = fetch(hostile(sample_site, "/story/compressed-report"), timeout=30)
    assert status == 200 and headers["Content-Encoding"] == "gzip"
    assert len(body) < 2 * 2**20
    d = zlib.decompressobj(16 + zlib.MAX_WBITS)
    total, data = 0, body
    while data:
        total += len(d.decompress(data, 2**24))
        data = d.unconsumed_tail
    assert total == 2**30 and d.eof  # zlib checked the trailer (CRC32, size) at eof


def test_sitemap_bomb_is_a_valid_gzip_urlset_of_256_mib(sample_site):
    status, headers, body = fetch(hostile(sample_site, "/sitemap-archive.xml.gz"), timeout=30)
    assert status == 200 and headers["Content-Type"] == "application/gzip" and "Content-Encoding" not in headers
    assert len(body) < 2**20
    d = zlib.decompressobj(16 + zlib.MAX_WBITS)
    first = d.decompress(body, 4096)
    assert first.startswith(SITEMAP_HEAD)
    total, data = len(first), d.unconsumed_tail
    while data:
        total += len(d.decompress(data, 2**24))
        data = d.unconsumed_tail
    assert total == SITEMAP_BOMB_BYTES == 2**28 and d.eof
    assert hostile(sample_site, "/sitemap-archive.xml.gz") in sample_site.surfaces()["hostile-times"]["sitemaps"]


def test_sitemap_index_chain_is_ten_levels_deep(sample_site):
    url = hostile(sample_site, "/sitemap-chain-1.xml")
    assert url in sample_site.surfaces()["hostile-times"]["sitemaps"]
    levels = []
    while url:
        root = etree.fromstring(fetch(url)[2])
        levels.append(etree.QName(root).localname)
        locs = [el.text for el in root.iter(f"{SM}loc")]
        url = locs[0] if locs else None
    assert levels == ["sitemapindex"] * 9 + ["urlset"]


def test_many_headers_page_sends_100003_headers(sample_site):
    import socket

    port = urlsplit(hostile(sample_site, "/")).port
    received = b""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"GET /story/many-headers HTTP/1.0\r\nHost: x\r\n\r\n")
        while chunk := sock.recv(2**20):
            received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    assert lines[0].startswith(b"HTTP/1.0 200")
    assert sum(1 for ln in lines if ln.startswith(b"X-Hostile-")) == 100_003
    assert len(head) > 10 * 2**20 and b"Headers all the way down" in body
    assert entry(sample_site, "/story/many-headers")["reject_reason"] == "headers_too_large"


# --------------------------------------------------------------------------- config, determinism, bulk


def test_load_sources_accepts_written_file(sample_site, sources_file):
    config = load_sources(sources_file)
    assert {s.name for s in config.sources} == set(sample_site.base_urls)
    assert config.crawl.download_timeout == 3 and config.crawl.max_page_bytes == 8 * 2**20
    assert sorted(config.crawl.allow_private) == sorted(
        f"127.0.0.1:{urlsplit(u).port}" for u in sample_site.base_urls.values()
    )
    assert all(s.delay == 0 and s.concurrency == 4 for s in config.sources)
    assert config.source("valley-gazette").sitemaps[0].endswith("/sitemap.xml.gz")


def test_committed_demo_sources_file_matches_the_generator(tmp_path):
    from pipeline.core.paths import ROOT

    written = SampleSite(ports=[8701, 8702, 8703]).write_sources_yaml(
        tmp_path / "s.yaml", source_delay=0.25, source_concurrency=2
    )
    assert (ROOT / "config" / "sources.yaml").read_text() == written.read_text()
    assert len(load_sources(written).sources) == 4


def test_content_is_deterministic():
    a, b = SampleSite(ports=[9001, 9002, 9003]), SampleSite(ports=[9001, 9002, 9003])
    keys = ("url", "title", "text", "related_headlines", "expected")
    assert [[e.get(k) for k in keys] for e in a.expected()] == [[e.get(k) for k in keys] for e in b.expected()]


def test_bulk_outlet_serves_many_generated_articles():
    with SampleSite(n_bulk_articles=60, slow_seconds=1, huge_bytes=2**20) as site:
        base = site.base_urls["bulk-news"]
        root = etree.fromstring(fetch(base + "/sitemap.xml")[2])
        locs = [loc.text for loc in root.iter(f"{SM}loc")]
        bulk = [e for e in site.expected() if e["outlet"] == "bulk-news"]
        assert len(locs) == 60 and {e["url"] for e in bulk} == set(locs)
        status, _h, body = fetch(locs[42])
        assert status == 200 and bulk[42]["title"] in body.decode()
        assert bulk[42]["text"].split("\n")[0] in html.fromstring(body).text_content()
        assert fetch(base + "/news/99999-nope.html")[0] == 404
        assert len(html.fromstring(fetch(base + "/section/all")[2]).xpath("//li/h3/a")) == 60


# --------------------------------------------------------------------------- benchmark outlet


def test_benchmark_outlet_serves_the_real_pages(tmp_path):
    from examples.sample_site.benchmark_outlet import BenchmarkOutlet

    with BenchmarkOutlet() as bench:
        truth = bench.ground_truth()
        assert len(truth) == 181
        url = sorted(truth)[7]
        status, headers, body = fetch(url)
        page_id = urlsplit(url).path.split("/")[-1][: -len(".html")]
        assert status == 200 and headers["Content-Type"] == "text/html"
        assert body == gzip.decompress((bench.bench_dir / "html" / f"{page_id}.html.gz").read_bytes())
        assert fetch(url, {"If-None-Match": headers["ETag"]})[0] == 304
        feed_links = {
            i.findtext("link")
            for i in etree.fromstring(fetch(bench.base_url + "/feed.xml")[2]).findall("./channel/item")
        }
        sitemap = {loc.text for loc in etree.fromstring(fetch(bench.base_url + "/sitemap.xml")[2]).iter(f"{SM}loc")}
        index = html.fromstring(fetch(bench.base_url + "/")[2]).xpath("//li/h3/a/@href")
        assert feed_links == sitemap == set(truth) == set(index)
        assert "Disallow:" in fetch(bench.base_url + "/robots.txt")[2].decode()
        assert bench.hits(url) == 2
        config = load_sources(bench.write_sources_yaml(tmp_path / "b.yaml", download_timeout=3))
        assert config.crawl.allow_private == [f"127.0.0.1:{bench.port}"] and config.crawl.download_timeout == 3
    assert fetch_fails(url)


def fetch_fails(url: str) -> bool:
    try:
        fetch(url, timeout=2)
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return True
    return False
