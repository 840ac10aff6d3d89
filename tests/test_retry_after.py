"""Retry-After on 429/503: parsed (seconds and HTTP-date), bounded, the host's slot paused, retries counted."""

from __future__ import annotations

import email.utils

import pytest
from scrapy import Request, Spider
from scrapy.exceptions import IgnoreRequest
from scrapy.http import Response
from scrapy.utils.test import get_crawler

from spiders.middlewares import RetryAfterMiddleware, parse_retry_after
from tests.crawl_helpers import LocalServer, Reply, guard_settings, page, run_crawl

NOW = 1_800_000_000.0  # a fixed clock for the HTTP-date cases


def http_date(ts: float) -> str:
    return email.utils.formatdate(ts, usegmt=True)


@pytest.mark.parametrize(
    "value,date,expected",
    [
        (b"120", None, 120.0),
        ("0", None, 0.0),
        (b" 7 ", None, 7.0),
        (http_date(NOW + 90), http_date(NOW), 90.0),  # measured against the server's Date
        (http_date(NOW + 90), None, 90.0),  # against our clock (NOW) without a Date header
        (http_date(NOW - 30), http_date(NOW), 0.0),  # in the past: retry now
        ("soon", None, None),
        ("", None, None),
        (None, None, None),
        ("-5", None, None),
    ],
)
def test_parse_retry_after(value, date, expected):
    assert parse_retry_after(value, date, now=NOW) == expected


def _mw(**settings):
    crawler = get_crawler(Spider, settings_dict={"RETRY_TIMES": 2, **settings})
    crawler.spider = crawler._create_spider("t")
    return RetryAfterMiddleware.from_crawler(crawler), crawler.stats


def _resp(url, status, **headers):
    return Response(url, status=status, headers=headers)


@pytest.mark.parametrize("status", [429, 503])
def test_retry_scheduled_with_the_advertised_wait(status):
    mw, stats = _mw()
    req = Request("http://news.example/a")
    retry = mw.process_response(req, _resp(req.url, status, **{"Retry-After": "42"}))
    assert isinstance(retry, Request) and retry.url == req.url
    assert retry.meta["retry_after_wait"] == 42.0 and retry.meta["retry_times"] == 1
    assert mw.waits == [(req.url, 42.0)]
    assert stats.get_value("retry_after/waited") == 1
    assert stats.get_value("retry_after/max_wait_seconds") == 42.0
    assert stats.get_value("retry/count") == 1


def test_http_date_form_uses_the_response_date():
    mw, stats = _mw()
    req = Request("http://news.example/a")
    resp = _resp(req.url, 503, **{"Retry-After": http_date(NOW + 15), "Date": http_date(NOW)})
    retry = mw.process_response(req, resp)
    assert retry.meta["retry_after_wait"] == 15.0


def test_longer_than_max_gives_up_with_a_reason():
    mw, stats = _mw(RETRY_AFTER_MAX=300)
    req = Request("http://news.example/a")
    with pytest.raises(
        IgnoreRequest,
        match=r"^retry_after_too_long: http://news.example/a answered 429 with Retry-After 3600s > RETRY_AFTER_MAX 300s",
    ):
        mw.process_response(req, _resp(req.url, 429, **{"Retry-After": "3600"}))
    assert stats.get_value("retry_after/too_long") == 1
    assert stats.get_value("retry/count") is None


def test_retries_exhausted_returns_the_response():
    mw, stats = _mw(RETRY_TIMES=1)
    req = Request("http://news.example/a", meta={"retry_times": 1})
    resp = _resp(req.url, 429, **{"Retry-After": "5"})
    assert mw.process_response(req, resp) is resp
    assert stats.get_value("retry/max_reached") == 1
    assert stats.get_value("retry_after/waited") is None


def test_without_header_or_other_codes_it_is_plain_retry():
    mw, stats = _mw()
    req = Request("http://news.example/a")
    retry = mw.process_response(req, _resp(req.url, 429))
    assert isinstance(retry, Request) and "retry_after_wait" not in retry.meta
    retry = mw.process_response(req, _resp(req.url, 500, **{"Retry-After": "5"}))
    assert isinstance(retry, Request) and "retry_after_wait" not in retry.meta
    ok = _resp(req.url, 200, **{"Retry-After": "5"})
    assert mw.process_response(req, ok) is ok
    assert stats.get_value("retry/count") == 2 and stats.get_value("retry_after/waited") is None


def test_dont_retry_is_respected():
    mw, _ = _mw()
    req = Request("http://news.example/a", meta={"dont_retry": True})
    resp = _resp(req.url, 429, **{"Retry-After": "5"})
    assert mw.process_response(req, resp) is resp


def test_no_engine_means_no_pause_but_still_a_retry():
    mw, _ = _mw()
    assert mw.pause_slot(Request("http://news.example/a"), 5) is False


# --------------------------------------------------------------------------- real crawl


def test_crawl_honours_retry_after_by_pausing_the_host_slot():
    # a fixed Date and a Retry-After 2 s later: the wait is exactly 2 s whatever the clocks say
    busy = Reply(503, "busy", {"Date": http_date(NOW), "Retry-After": http_date(NOW + 2)})
    routes = {
        "/limited": [Reply(429, "slow down", {"Retry-After": "1"}), page("limited ok")],
        "/busy": [busy, page("busy ok")],
        "/forever": Reply(429, "go away", {"Retry-After": "100000"}),
    }
    with LocalServer(routes) as site:
        result = run_crawl(
            [site.base + p for p in ("/limited", "/busy", "/forever")],
            guard_settings([f"127.0.0.1:{site.port}"], RETRY_AFTER_MAX=60),
        )
        assert site.hits("/limited") == 2 and site.hits("/busy") == 2 and site.hits("/forever") == 1
        waits = {p["url"].rsplit("/", 1)[1]: p["retry_after_wait"] for p in result["pages"]}
        assert waits == {"limited": 1.0, "busy": 2.0}
        [failure] = result["failures"]
        assert failure["message"].startswith(
            f"retry_after_too_long: {site.base}/forever answered 429 with Retry-After 100000s"
        )
        stats = result["stats"]
        assert stats["retry_after/waited"] == 2
        assert stats["retry_after/wait_seconds_total"] == 3.0
        assert stats["retry_after/max_wait_seconds"] == 2.0
        assert stats["retry_after/too_long"] == 1
        assert stats["retry/count"] == 2
        # the pause was installed on the host's download slot (not a sleep in the reactor)
        assert stats["retry_after/last_pause_seconds"] in (1.0, 2.0)
        assert "slot paused" in result["log"] and "slot not found" not in result["log"]
