"""SSRF guard: address classification, the middleware, the resolver, and real crawls."""

from __future__ import annotations

import asyncio
import ipaddress

import pytest
from scrapy import Request, Spider
from scrapy.exceptions import CannotResolveHostError, IgnoreRequest, NotConfigured
from scrapy.utils.test import get_crawler
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.error import DNSLookupError
from twisted.internet.interfaces import IHostnameResolver, IResolutionReceiver
from zope.interface import implementer, provider

from spiders import resolver as resolver_mod
from spiders.middlewares import SsrfGuardMiddleware
from spiders.netguard import Allowlist, check_address, classify, parse_ip_literal
from spiders.resolver import GuardedResolver
from tests.crawl_helpers import LocalServer, guard_settings, page, redirect, run_crawl

# Per test: a guard that let a request through to a blackholed address would wait on the connection.
pytestmark = pytest.mark.timeout(120)


LOOPBACK = ipaddress.ip_address("127.0.0.1")


# --------------------------------------------------------------------------- pure helpers


@pytest.mark.parametrize(
    "host",
    [
        "127.0.0.1",
        "2130706433",
        "0x7f000001",
        "0X7F000001",
        "0177.0.0.1",
        "127.1",
        "0x7f.1",
        "127.0.0.1.",
        "017700000001",
    ],
)
def test_legacy_ipv4_literals_parse_like_inet_aton(host):
    assert parse_ip_literal(host) == LOOPBACK


@pytest.mark.parametrize("host", ["example.com", "1.2.3.4.5", "999.1.1.1", "127.0.0.1 junk", "", "0x7g.1"])
def test_names_are_not_literals(host):
    assert parse_ip_literal(host) is None


@pytest.mark.parametrize(
    "address,reason",
    [
        ("127.0.0.1", "loopback"),
        ("::1", "loopback"),
        ("169.254.169.254", "link-local"),
        ("fe80::1", "link-local"),
        ("10.0.0.1", "private"),
        ("172.16.5.4", "private"),
        ("192.168.1.10", "private"),
        ("fd00::1", "private"),
        ("100.64.0.1", "cgnat"),
        ("224.0.0.1", "multicast"),
        ("ff02::1", "multicast"),
        ("0.0.0.0", "unspecified"),
        ("::", "unspecified"),
        ("240.0.0.1", "reserved"),
    ],
)
def test_classify_non_public(address, reason):
    assert classify(address) == reason


@pytest.mark.parametrize("address", ["::ffff:127.0.0.1", "::ffff:169.254.169.254", "64:ff9b::a00:1", "2002:7f00:1::1"])
def test_ipv6_carrying_a_private_ipv4_is_judged_by_it(address):
    reason = classify(parse_ip_literal(address))
    assert reason is not None and "embedded IPv4" in reason


@pytest.mark.parametrize("address", ["8.8.8.8", "93.184.216.34", "2606:4700::1111", "::ffff:8.8.8.8"])
def test_public_addresses_pass(address):
    assert classify(address) is None


def test_allowlist_matches_ip_and_port_exactly():
    allow = Allowlist.parse(["127.0.0.1:8701", "10.1.0.0/16", "[::1]:9000"])
    assert check_address("127.0.0.1", 8701, allow) is None
    assert check_address("127.0.0.1", 8702, allow) == "127.0.0.1:8702 is loopback (not in NEWS_ALLOW_PRIVATE)"
    assert check_address("10.1.200.3", 1234, allow) is None
    assert check_address("10.2.0.1", 80, allow) is not None
    assert check_address("::1", 9000, allow) is None
    assert check_address("::1", 8701, allow) is not None
    # the mapped form of an allowlisted address is the same address
    assert check_address("::ffff:127.0.0.1", 8701, allow) is None


def test_allowlist_host_names_are_resolved_once():
    table = {"sample.local": ["127.0.0.5"]}
    allow = Allowlist.parse(["sample.local:8080"], lookup=table.__getitem__)
    assert check_address("127.0.0.5", 8080, allow) is None
    assert check_address("127.0.0.5", 8081, allow) is not None
    assert check_address("127.0.0.1", 8080, allow) is not None


@pytest.mark.parametrize("entry", ["127.0.0.1:99999", "10.0.0.0/33", "[::1", "1.2.3.4:abc"])
def test_bad_allowlist_entry_fails_naming_it(entry):
    with pytest.raises(ValueError, match="NEWS_ALLOW_PRIVATE"):
        Allowlist.parse([entry], lookup=lambda host: (_ for _ in ()).throw(OSError("no such host")))


# --------------------------------------------------------------------------- middleware (no reactor)


def _middleware(**settings) -> SsrfGuardMiddleware:
    crawler = get_crawler(Spider, settings_dict=settings)
    return SsrfGuardMiddleware.from_crawler(crawler)


@pytest.mark.parametrize(
    "url,category",
    [
        ("http://169.254.169.254/latest/meta-data/", "link-local"),
        ("http://10.0.0.1/", "private"),
        ("http://192.168.1.10/feed.xml", "private"),
        ("http://2130706433/", "loopback"),
        ("http://0x7f000001/", "loopback"),
        ("http://0177.0.0.1/", "loopback"),
        ("http://127.1/", "loopback"),
        ("http://[::ffff:127.0.0.1]/", "loopback"),
        ("http://[::1]:8080/", "loopback"),
        ("http://100.64.1.1/", "cgnat"),
        ("http://0.0.0.0:80/", "unspecified"),
        ("file:///etc/passwd", "scheme"),
    ],
)
def test_middleware_refuses_with_reason_and_stats(url, category):
    mw = _middleware(NEWS_ALLOW_PRIVATE=["127.0.0.1:8701"])
    with pytest.raises(IgnoreRequest, match=r"^ssrf_blocked: ") as info:
        asyncio.run(mw.process_request(Request(url)))
    assert mw.stats.get_value("ssrf/blocked") == 1
    assert mw.stats.get_value(f"ssrf/blocked/{category}") == 1
    if category != "scheme":
        assert category in str(info.value)


def test_middleware_lets_allowlisted_and_public_literals_through():
    mw = _middleware(NEWS_ALLOW_PRIVATE=["127.0.0.1:8701", "10.1.0.0/16"])
    for url in (
        "http://127.0.0.1:8701/a",
        "http://2130706433:8701/",
        "http://10.1.3.4/x",
        "http://8.8.8.8/",
        "data:,hi",
    ):
        assert asyncio.run(mw.process_request(Request(url))) is None, url
    assert mw.stats.get_value("ssrf/blocked") is None
    # allowlisted address, other port: refused
    with pytest.raises(IgnoreRequest, match="127.0.0.1:8702 is loopback"):
        asyncio.run(mw.process_request(Request("http://127.0.0.1:8702/")))


def test_host_names_are_judged_on_every_resolved_address():
    mw = _middleware(NEWS_ALLOW_PRIVATE=["127.0.0.1:8701"])
    assert mw.lookup_target("http://news.example:8080/x") == ("news.example", 8080)
    assert mw.lookup_target("http://127.1/") is None
    assert mw.reason_for("http://news.example/", ["93.184.216.34"]) is None
    # one private answer among public ones is enough to refuse (the connection may pick it)
    reason = mw.reason_for("http://rebind.example/", ["93.184.216.34", "169.254.169.254"])
    assert reason == "rebind.example -> 169.254.169.254:80 is link-local (not in NEWS_ALLOW_PRIVATE)"
    # matched on the resolved IP and port, not on the name
    assert mw.reason_for("http://localhost:8701/", ["127.0.0.1"]) is None
    assert mw.reason_for("http://localhost:8702/", ["127.0.0.1"]) is not None
    assert mw.reason_for("http://localhost:8701/", ["127.0.0.1", "::1"]) is not None


def test_dns_error_caused_by_the_resolver_becomes_ssrf_blocked(monkeypatch):
    mw = _middleware()

    class FakeResolver:
        blocked_reasons = {"evil.example": "evil.example -> 10.0.0.7:80 is private (not in NEWS_ALLOW_PRIVATE)"}

    monkeypatch.setattr(resolver_mod, "_installed", [FakeResolver()])
    with pytest.raises(IgnoreRequest, match="ssrf_blocked: evil.example -> 10.0.0.7:80 is private"):
        mw.process_exception(Request("http://evil.example/"), CannotResolveHostError("no results"))
    assert mw.stats.get_value("ssrf/blocked/private") == 1
    # an ordinary DNS failure stays what it is
    assert mw.process_exception(Request("http://other.example/"), DNSLookupError("nx")) is None


def test_guard_can_be_switched_off():
    with pytest.raises(NotConfigured):
        _middleware(NEWS_SSRF_GUARD_ENABLED=False)


# --------------------------------------------------------------------------- resolver (fake lookup table)


@implementer(IHostnameResolver)
class TableResolver:
    """Answers from a dict, like the system resolver would."""

    def __init__(self, table):
        self.table = table
        self.calls = 0

    def resolveHostName(self, receiver, hostName, portNumber=0, addressTypes=None, transportSemantics="TCP"):
        self.calls += 1
        receiver.resolutionBegan(object())
        for ip in self.table.get(hostName, []):
            cls = IPv6Address if ":" in ip else IPv4Address
            receiver.addressResolved(cls("TCP", ip, portNumber))
        receiver.resolutionComplete()
        return object()


class FakeReactor:
    def __init__(self, table):
        self.nameResolver = TableResolver(table)
        self.installed = None

    def installNameResolver(self, resolver):
        self.installed = resolver


@provider(IResolutionReceiver)
class Collect:
    def __init__(self):
        self.addresses = []
        self.done = False

    def resolutionBegan(self, resolution):
        pass

    def addressResolved(self, address):
        self.addresses.append((address.host, address.port))

    def resolutionComplete(self):
        self.done = True


TABLE = {
    "news.example": ["93.184.216.34"],
    "metadata.internal": ["169.254.169.254"],
    "mixed.example": ["93.184.216.34", "10.0.0.1"],
    "localhost": ["127.0.0.1", "::1"],
    "2130706433": ["127.0.0.1"],
}


def _resolver(allow=()):
    reactor = FakeReactor(TABLE)
    return GuardedResolver(reactor, Allowlist.parse(list(allow)), cache_size=100), reactor


def test_resolver_drops_non_public_addresses_and_remembers_why():
    res, _ = _resolver(["127.0.0.1:8701"])
    for host, port, expected in [
        ("news.example", 80, [("93.184.216.34", 80)]),
        ("metadata.internal", 80, []),
        ("mixed.example", 443, [("93.184.216.34", 443)]),
        ("localhost", 8701, [("127.0.0.1", 8701)]),
        ("localhost", 8702, []),
        ("2130706433", 80, []),
    ]:
        got = Collect()
        res.resolveHostName(got, host, port)
        assert got.done and got.addresses == expected, host
    assert "169.254.169.254:80 is link-local" in res.blocked_reasons["metadata.internal"]
    assert res.blocked_reasons["localhost"] == "localhost -> 127.0.0.1:8702 is loopback (not in NEWS_ALLOW_PRIVATE)"
    assert "mixed.example" not in res.blocked_reasons  # a public address was left to connect to
    assert res.blocked_count == 6


def test_resolver_caches_raw_answers_but_checks_each_port():
    res, reactor = _resolver(["127.0.0.1:8701"])
    first, second = Collect(), Collect()
    res.resolveHostName(first, "localhost", 8701)
    res.resolveHostName(second, "localhost", 8702)
    assert reactor.nameResolver.calls == 1
    assert first.addresses == [("127.0.0.1", 8701)]
    assert second.addresses == []


def test_resolver_reads_process_settings_and_installs_as_name_resolver():
    from scrapy.settings import Settings

    class ProcessLike:  # Scrapy passes the CrawlerProcess, which only has .settings
        settings = Settings({"NEWS_ALLOW_PRIVATE": ["127.0.0.1:8701"]})

    reactor = FakeReactor(TABLE)
    res = GuardedResolver.from_crawler(ProcessLike(), reactor)
    res.install_on_reactor()
    try:
        assert reactor.installed is res
        assert res.allow.allows(LOOPBACK, 8701)
    finally:
        resolver_mod._installed.remove(res)


# --------------------------------------------------------------------------- real crawls


def _failure_for(result, url):
    found = [f for f in result["failures"] if f["url"] == url]
    assert found, f"no failure recorded for {url}: {result['failures']}"
    return found[0]


def test_real_crawl_refuses_redirects_links_names_and_literals():
    with LocalServer() as target, LocalServer() as site:
        target.routes["/"] = page("internal admin")
        site.routes.update(
            {
                "/ok": page("fine"),
                "/to-metadata": redirect("http://169.254.169.254/latest/meta-data/"),
                "/to-ten": redirect("http://10.0.0.1/"),
                "/to-other-port": redirect(f"http://127.0.0.1:{target.port}/"),
                "/to-localhost": redirect(f"http://localhost:{target.port}/"),
                "/links": page('<a href="http://192.168.1.10/feed.xml">feed</a>'),
            }
        )
        literal_urls = [
            f"http://2130706433:{target.port}/",
            f"http://0x7f000001:{target.port}/",
            f"http://0177.0.0.1:{target.port}/",
            f"http://127.1:{target.port}/",
            f"http://[::ffff:127.0.0.1]:{target.port}/",
        ]
        urls = [site.base + p for p in ("/ok", "/to-metadata", "/to-ten", "/to-other-port", "/to-localhost", "/links")]
        urls += [f"http://localhost:{target.port}/"] + literal_urls
        result = run_crawl(urls, guard_settings([f"127.0.0.1:{site.port}"]), follow=True)

        assert target.hits("/") == 0, "a non-allowlisted local port was reached"
        fetched = {p["url"] for p in result["pages"]}
        assert site.base + "/ok" in fetched and site.base + "/links" in fetched
        assert site.hits("/to-metadata") == 1 and site.hits("/to-ten") == 1
        msg = _failure_for(result, "http://169.254.169.254/latest/meta-data/")["message"]
        assert msg == "ssrf_blocked: 169.254.169.254:80 is link-local (not in NEWS_ALLOW_PRIVATE)"
        assert _failure_for(result, "http://10.0.0.1/")["message"].startswith("ssrf_blocked: 10.0.0.1:80 is private")
        assert "is loopback" in _failure_for(result, f"http://127.0.0.1:{target.port}/")["message"]
        assert "is private" in _failure_for(result, "http://192.168.1.10/feed.xml")["message"]
        localhost = _failure_for(result, f"http://localhost:{target.port}/")
        assert localhost["type"] == "IgnoreRequest"
        assert localhost["message"].startswith("ssrf_blocked: localhost -> ") and "loopback" in localhost["message"]
        for url in literal_urls:
            failure = _failure_for(result, url)
            assert failure["type"] == "IgnoreRequest" and "loopback" in failure["message"], failure
        stats = result["stats"]
        assert stats["ssrf/blocked/link-local"] == 1
        assert stats["ssrf/blocked/private"] == 2
        assert stats["ssrf/blocked"] == stats["ssrf/blocked/link-local"] + 2 + stats["ssrf/blocked/loopback"]
        assert stats["ssrf/blocked/loopback"] >= 2 + len(literal_urls)


def test_real_crawl_resolver_alone_refuses_the_connection():
    """With the middleware off, GuardedResolver still keeps the downloader away."""
    with LocalServer() as target, LocalServer() as site:
        target.routes["/x"] = page("internal")
        site.routes["/ok"] = page("fine")
        settings = guard_settings(
            [f"127.0.0.1:{site.port}"], NEWS_SSRF_GUARD_ENABLED=False, RETRY_TIMES=0, ROBOTSTXT_OBEY=False
        )
        urls = [
            f"http://127.0.0.1:{target.port}/x",
            f"http://localhost:{target.port}/x",
            f"http://2130706433:{target.port}/x",
            site.base + "/ok",
        ]
        result = run_crawl(urls, settings)
        assert target.hits("/x") == 0
        assert [p["url"] for p in result["pages"]] == [site.base + "/ok"]
        assert {f["url"]: f["type"] for f in result["failures"]} == {u: "CannotResolveHostError" for u in urls[:3]}
        assert f"ssrf_blocked (resolver): 127.0.0.1 -> 127.0.0.1:{target.port} is loopback" in result["log"]


def test_real_crawl_allowlisted_cidr_and_host_port_work():
    with LocalServer() as a, LocalServer() as b:
        a.routes["/p"] = page("a")
        b.routes["/p"] = page("b")
        result = run_crawl(
            [a.base + "/p", f"http://localhost:{b.port}/p"],
            guard_settings([f"127.0.0.1:{a.port}", "127.0.0.0/8", "::1"]),
        )
        assert sorted(p["status"] for p in result["pages"]) == [200, 200], result["failures"]
        assert a.hits("/p") == 1 and b.hits("/p") == 1
        assert "ssrf/blocked" not in result["stats"]


# --------------------------------------------------------------------------- the project's own settings


def test_project_settings_turn_telnet_off_and_wire_the_guards():
    """A real crawler with spiders.settings: no telnet console, our guards and resolver in place."""
    import spiders.settings as project

    middlewares = dict(project.DOWNLOADER_MIDDLEWARES)
    # the incremental middleware reads state from the bucket: not part of this check
    middlewares["spiders.extensions.IncrementalMiddleware"] = None
    with LocalServer({"/a": page("a")}) as site:
        result = run_crawl(
            [site.base + "/a", "http://169.254.169.254/latest/meta-data/"],
            {
                "DOWNLOADER_MIDDLEWARES": middlewares,
                "ITEM_PIPELINES": {},
                "EXTENSIONS": {},
                "NEWS_ALLOW_PRIVATE": [f"127.0.0.1:{site.port}"],
                "DOWNLOAD_DELAY": 0,
                "AUTOTHROTTLE_ENABLED": False,
                "LOG_LEVEL": "INFO",
            },
            project=True,
        )
    log = result["log"]
    assert project.TELNETCONSOLE_ENABLED is False
    assert "Telnet console listening" not in log and "scrapy.extensions.telnet.TelnetConsole" not in log
    # Scrapy's remote-control HTTP server executes Python: it must not listen on a crawler.
    assert project.REMOTE_CONTROL_ENABLED is False
    assert "Remote control HTTP server listening" not in log
    for name in ("SsrfGuardMiddleware", "StrictRobotsTxtMiddleware", "RetryAfterMiddleware"):
        assert f"spiders.middlewares.{name}" in log
    assert "scrapy.downloadermiddlewares.robotstxt.RobotsTxtMiddleware" not in log
    assert "scrapy.downloadermiddlewares.retry.RetryMiddleware'" not in log
    assert project.TWISTED_DNS_RESOLVER == "spiders.resolver.GuardedResolver"
    assert [p["status"] for p in result["pages"]] == [200]
    assert result["failures"][0]["message"].startswith("ssrf_blocked: 169.254.169.254:80 is link-local")
