"""Strict robots.txt (RFC 9309): 4xx allows, 5xx / network errors disallow, redirects, cache, archive hook."""

from __future__ import annotations

import asyncio
import time

import pytest
from scrapy import Request, Spider
from scrapy.exceptions import IgnoreRequest, NotConfigured
from scrapy.http import Response, TextResponse
from scrapy.utils.test import get_crawler

from pipeline.core.config import CrawlSettings, Source
from spiders.middlewares import StrictRobotsTxtMiddleware, product_token
from spiders.spiders.news import source_settings
from tests.crawl_helpers import LocalServer, Reply, free_port, guard_settings, page, redirect, run_crawl

# Per test: real crawls run in a child with its own 120 s limit; the unit tests take milliseconds.
pytestmark = pytest.mark.timeout(120)


ROBOTS_URL = "http://news.example/robots.txt"


def _mw(**settings) -> StrictRobotsTxtMiddleware:
    crawler = get_crawler(Spider, settings_dict={"ROBOTSTXT_OBEY": True, "USER_AGENT": "news-ingest/0.1", **settings})
    return StrictRobotsTxtMiddleware.from_crawler(crawler)


def _robots_response(status: int, body: bytes = b"") -> Response:
    return TextResponse(ROBOTS_URL, status=status, body=body, encoding="utf-8")


# --------------------------------------------------------------------------- decisions, no reactor


def test_off_unless_robotstxt_obey():
    with pytest.raises(NotConfigured):
        _mw(ROBOTSTXT_OBEY=False)


def test_200_rules_apply():
    mw = _mw()
    entry = mw._from_response(_robots_response(200, b"User-agent: *\nDisallow: /private\n"), ROBOTS_URL)
    assert entry.outcome == "ok"
    mw.check(entry, Request("http://news.example/story"))
    with pytest.raises(
        IgnoreRequest,
        match=r"^robots_denied: http://news.example/private/x is disallowed by http://news.example/robots.txt",
    ):
        mw.check(entry, Request("http://news.example/private/x"))
    assert mw._stats.get_value("robots/denied") == 1


@pytest.mark.parametrize("status", [400, 401, 403, 404, 410])
def test_4xx_means_allow_all_even_if_the_error_page_looks_like_rules(status):
    mw = _mw()
    entry = mw._from_response(_robots_response(status, b"User-agent: *\nDisallow: /\n"), ROBOTS_URL)
    assert entry.outcome == "4xx_allow" and entry.parser is None
    mw.check(entry, Request("http://news.example/anything"))
    assert mw._stats.get_value("robots/denied") is None


@pytest.mark.parametrize("status", [500, 502, 503, 504, 429])
def test_5xx_and_429_mean_disallow_all(status):
    mw = _mw()
    entry = mw._from_response(_robots_response(status, b"User-agent: *\nAllow: /\n"), ROBOTS_URL)
    assert entry.outcome == "unreachable"
    with pytest.raises(IgnoreRequest, match=rf"^robots_unreachable: {ROBOTS_URL} answered HTTP {status}"):
        mw.check(entry, Request("http://news.example/story"))
    assert mw._stats.get_value("robots/denied") == 1
    assert mw._stats.get_value("robots/unreachable_disallow") == 1


def test_cache_is_at_most_24h_and_unreachable_is_retried_after_the_interval():
    mw = _mw(ROBOTS_CACHE_SECONDS=7 * 86400, ROBOTS_RETRY_SECONDS=60)
    before = time.monotonic()
    ok = mw._entry("ok", None, "HTTP 200", ROBOTS_URL)
    bad = mw._entry("unreachable", None, "HTTP 503", ROBOTS_URL)
    assert mw.cache_seconds == 86400
    assert before + 86400 <= ok.expires <= time.monotonic() + 86400
    assert before + 60 <= bad.expires <= time.monotonic() + 60


def test_entries_are_reused_until_they_expire_then_fetched_again():
    mw = _mw()
    fetched = []

    async def fake_fetch(key):
        fetched.append(key)
        outcome = "unreachable" if len(fetched) == 1 else "4xx_allow"
        return mw._entry(outcome, None, f"fetch {len(fetched)}", f"{key}/robots.txt")

    mw._fetch = fake_fetch

    async def scenario():
        req = Request("http://news.example:8080/a")
        first = await mw.robots_entry(req)
        again = await mw.robots_entry(Request("http://news.example:8080/b"))
        other = await mw.robots_entry(Request("https://news.example:8080/b"))  # other scheme: other robots.txt
        first.expires = time.monotonic() - 1  # the retry interval has passed
        later = await mw.robots_entry(req)
        return first, again, other, later

    first, again, other, later = asyncio.run(scenario())
    assert fetched == ["http://news.example:8080", "https://news.example:8080", "http://news.example:8080"]
    assert again is first and first.outcome == "unreachable"
    assert later.outcome == "4xx_allow"


OWN_GROUP_DENIES = "User-agent: news-ingest\nDisallow: /\n\nUser-agent: *\nAllow: /\n"


def _project_mw() -> StrictRobotsTxtMiddleware:
    """The middleware with the settings the news spider derives from a sources file."""
    crawl = CrawlSettings()
    return _mw(**source_settings(crawl, Source(name="outlet", feeds=["http://news.example/feed.xml"])))


def test_our_own_group_is_obeyed_although_star_allows():
    mw = _project_mw()
    assert mw._robotstxt_useragent == CrawlSettings().user_agent
    entry = mw._from_response(_robots_response(200, OWN_GROUP_DENIES.encode()), ROBOTS_URL)
    with pytest.raises(IgnoreRequest, match=r"^robots_denied: http://news.example/story "):
        mw.check(entry, Request("http://news.example/story"))


def test_our_own_group_is_preferred_over_star_not_merged_with_it():
    # RFC 9309 2.2.1: the matching group (case-insensitive product token) replaces `*`'s rules
    body = b"User-agent: *\nDisallow: /\n\nUser-agent: News-Ingest\nDisallow: /private/\n"
    mw = _project_mw()
    entry = mw._from_response(_robots_response(200, body), ROBOTS_URL)
    mw.check(entry, Request("http://news.example/story"))  # `*` disallows it; our group does not
    with pytest.raises(IgnoreRequest, match=r"^robots_denied: "):
        mw.check(entry, Request("http://news.example/private/x"))


def test_groups_match_the_product_token_not_words_of_the_comment():
    # our User-Agent's comment holds "example.org" and "ops@": groups named so are someone else's
    body = b"User-agent: example\nDisallow: /\n\nUser-agent: ops\nDisallow: /\n\nUser-agent: *\nAllow: /\n"
    mw = _project_mw()
    entry = mw._from_response(_robots_response(200, body), ROBOTS_URL)
    mw.check(entry, Request("http://news.example/story"))
    assert product_token(CrawlSettings().user_agent) == "news-ingest"
    assert product_token(b"news-ingest-test/0.1") == "news-ingest-test"


def test_without_robots_user_agent_the_request_user_agent_is_used():
    mw = _mw(USER_AGENT="news-ingest/0.1 (+https://example.org/news-ingest)")
    entry = mw._from_response(_robots_response(200, OWN_GROUP_DENIES.encode()), ROBOTS_URL)
    with pytest.raises(IgnoreRequest, match=r"^robots_denied: "):
        mw.check(entry, Request("http://news.example/story"))
    mw.check(entry, Request("http://news.example/story", headers={"User-Agent": "otherbot/1.0"}))


def test_meta_and_non_http_requests_skip_robots():
    mw = _mw()

    async def boom(key):
        raise AssertionError("must not fetch robots.txt")

    mw._fetch = boom
    assert asyncio.run(mw.process_request(Request("http://x.example/", meta={"dont_obey_robotstxt": True}))) is None
    assert asyncio.run(mw.process_request(Request("data:,hello"))) is None


# --------------------------------------------------------------------------- real crawls


def _crawl(site: LocalServer, paths: list[str], **settings):
    merged = guard_settings([f"127.0.0.1:{site.port}"], **settings)
    return run_crawl([site.base + p for p in paths], merged)


def _by_url(result):
    return {f["url"]: f["message"] for f in result["failures"]}


def test_crawl_200_rules_fetched_once_and_archived_via_signal():
    body = "User-agent: *\nDisallow: /private\n"
    with LocalServer(
        {
            "/robots.txt": Reply(200, body, content_type="text/plain"),
            "/a": page("a"),
            "/b": page("b"),
            "/private/x": page("p"),
        }
    ) as site:
        result = _crawl(site, ["/a", "/b", "/private/x"])
        assert sorted(p["url"] for p in result["pages"]) == [site.base + "/a", site.base + "/b"]
        assert site.hits("/private/x") == 0
        assert _by_url(result)[site.base + "/private/x"].startswith("robots_denied: ")
        assert site.hits("/robots.txt") == 1
        assert result["stats"]["robots/denied"] == 1 and result["stats"]["robots/ok"] == 1
        [archived] = result["robots"]
        assert archived == {
            "url": site.base + "/robots.txt",
            "outcome": "ok",
            "reason": "HTTP 200",
            "status": 200,
            "kind": "robots",
            "body": body,
        }


def test_crawl_site_that_disallows_us_but_allows_everyone_else_is_not_crawled():
    user_agent = CrawlSettings().user_agent
    routes = {"/robots.txt": Reply(200, OWN_GROUP_DENIES, content_type="text/plain"), "/a": page("a")}
    with LocalServer(routes) as site:
        result = _crawl(site, ["/a"], USER_AGENT=user_agent, ROBOTSTXT_USER_AGENT=user_agent)
        assert site.hits("/robots.txt") == 1 and site.hits("/a") == 0
        assert result["pages"] == []
        assert _by_url(result)[site.base + "/a"].startswith(f"robots_denied: {site.base}/a is disallowed")


def test_crawl_404_allows_all():
    with LocalServer(
        {"/robots.txt": Reply(404, "User-agent: *\nDisallow: /\n", content_type="text/plain"), "/a": page("a")}
    ) as site:
        result = _crawl(site, ["/a"])
        assert [p["status"] for p in result["pages"]] == [200]
        assert result["stats"]["robots/4xx_allow"] == 1
        assert "robots/denied" not in result["stats"]
        assert result["robots"][0]["status"] == 404


def test_crawl_500_disallows_the_host():
    with LocalServer({"/robots.txt": Reply(500, "oops"), "/a": page("a"), "/b": page("b")}) as site:
        result = _crawl(site, ["/a", "/b"], RETRY_TIMES=1)
        assert result["pages"] == []
        assert site.hits("/a") == 0 and site.hits("/b") == 0
        assert site.hits("/robots.txt") == 2  # the first try and one retry, then no more within the interval
        messages = _by_url(result)
        assert messages[site.base + "/a"].startswith(f"robots_unreachable: {site.base}/robots.txt answered HTTP 500")
        assert result["stats"]["robots/unreachable_disallow"] == 2
        assert result["stats"]["robots/denied"] == 2


def test_crawl_connection_refused_disallows():
    port = free_port()  # nothing listens there
    url = f"http://127.0.0.1:{port}/a"
    result = run_crawl([url], guard_settings([f"127.0.0.1:{port}"], RETRY_TIMES=0))
    [failure] = result["failures"]
    assert failure["type"] == "IgnoreRequest"
    assert failure["message"].startswith(f"robots_unreachable: http://127.0.0.1:{port}/robots.txt could not be fetched")
    assert "Refused" in failure["message"]
    assert result["robots"][0]["outcome"] == "unreachable" and result["robots"][0]["status"] is None


def test_crawl_unreachable_robots_is_fetched_again_after_the_retry_interval():
    routes = {
        "/robots.txt": [Reply(503, "busy"), Reply(200, "User-agent: *\nAllow: /\n", content_type="text/plain")],
        "/a": page("a"),
        "/b": page("b"),
    }
    with LocalServer(routes) as site:
        # interval 0: the next request re-fetches; one request at a time keeps the order /a, /b
        result = _crawl(site, ["/a", "/b"], ROBOTS_RETRY_SECONDS=0, RETRY_TIMES=0, CONCURRENT_REQUESTS=1)
        assert site.hits("/robots.txt") == 2
        assert _by_url(result)[site.base + "/a"].startswith("robots_unreachable: ")
        assert [p["url"] for p in result["pages"]] == [site.base + "/b"]
        assert [r["outcome"] for r in result["robots"]] == ["unreachable", "ok"]


def test_crawl_follows_robots_redirects_up_to_five():
    routes = {
        "/robots.txt": redirect("/r1", 301),
        "/r1": redirect("/r2"),
        "/r2": redirect("/real-robots.txt"),
        "/real-robots.txt": Reply(200, "User-agent: *\nDisallow: /no\n", content_type="text/plain"),
        "/yes": page("y"),
        "/no": page("n"),
    }
    with LocalServer(routes) as site:
        result = _crawl(site, ["/yes", "/no"])
        assert site.hits("/real-robots.txt") == 1
        assert [p["url"] for p in result["pages"]] == [site.base + "/yes"]
        assert _by_url(result)[site.base + "/no"].startswith("robots_denied: ")


def test_crawl_more_than_five_robots_redirects_means_unavailable():
    routes = {"/robots.txt": redirect("/r1")}
    for i in range(1, 8):
        routes[f"/r{i}"] = redirect(f"/r{i + 1}")
    routes["/r8"] = Reply(200, "User-agent: *\nDisallow: /\n", content_type="text/plain")
    routes["/a"] = page("a")
    with LocalServer(routes) as site:
        result = _crawl(site, ["/a"])
        assert site.hits("/r5") == 1 and site.hits("/r6") == 0  # robots.txt + 5 redirects followed, no more
        assert [p["status"] for p in result["pages"]] == [200]
        assert result["robots"][0]["outcome"] == "4xx_allow"
        assert "more than 5 redirects" in result["robots"][0]["reason"]


def test_crawl_robots_redirect_to_private_address_is_refused_and_disallows():
    routes = {"/robots.txt": redirect("http://169.254.169.254/robots.txt"), "/a": page("a")}
    with LocalServer(routes) as site:
        result = _crawl(site, ["/a"], RETRY_TIMES=0)
        assert site.hits("/a") == 0
        assert "ssrf_blocked: 169.254.169.254:80 is link-local" in _by_url(result)[site.base + "/a"]
        assert result["stats"]["ssrf/blocked/link-local"] == 1


def test_a_cancelled_fetch_releases_waiters_and_is_not_cached():
    mw = _mw()

    async def cancelled(key):
        raise asyncio.CancelledError

    mw._fetch = cancelled
    with pytest.raises(asyncio.CancelledError):
        asyncio.run(mw.robots_entry(Request("http://news.example/a")))
    assert mw._waiters == {} and mw._entries == {}
