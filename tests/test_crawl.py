"""The crawl stage end to end: the news spider in its own process, the sample site over HTTP,
the real SeaweedFS. Each test has its own bucket."""

from __future__ import annotations

import hashlib
import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from warcio.archiveiterator import ArchiveIterator

from pipeline.core.bucket import Bucket
from pipeline.core.context import RunContext
from pipeline.core.layout import raw_prefix
from pipeline.core.paths import ROOT
from pipeline.dataset.state import is_refusal, load_http, record_stored
from pipeline.dataset.warc import read_warc
from pipeline.stages.crawl import CrawlError, crawl_command, crawl_stage, summary_key
from pipeline.text.urls import canonicalize
from spiders.pipelines import CANONICAL_FIELD

# Per test: a crawl that stops honouring its download timeout would otherwise hang until the suite's 600 s.
pytestmark = pytest.mark.timeout(240)


RUN = "20261127T120000Z"


# --------------------------------------------------------------------------- helpers


def outlets(site) -> dict[str, str]:
    """Role -> outlet name, found from what the site says it serves."""
    by_outlet: dict[str, set[str]] = {}
    for e in site.expected():
        by_outlet.setdefault(e["outlet"], set()).add(e["kind"])
    roles = {}
    for name, kinds in by_outlet.items():
        if "hostile" in kinds:
            roles["hostile"] = name
        elif "old" in kinds and "robots_denied" in kinds:
            roles["wordpress"] = name
        elif "updated" in kinds:
            roles["arc"] = name
        elif "old" in kinds:
            roles["plain"] = name
    return roles


def expected(site, outlet: str, outcome: str | None = None, kind: str | None = None) -> list[dict]:
    return [
        e
        for e in site.expected()
        if e["outlet"] == outlet
        and (outcome is None or e["expected"] == outcome)
        and (kind is None or e["kind"] == kind)
    ]


def responses(bucket: Bucket, keys: list[str]):
    return [r for key in keys for r in read_warc(bucket, key)]


def article_urls(bucket: Bucket, keys: list[str]) -> list[str]:
    return [canonicalize(r.url) for r in responses(bucket, keys) if r.kind == "article"]


def edit_source(path: Path, outlet: str, **changes) -> Path:
    data = yaml.safe_load(path.read_text())
    for src in data["sources"]:
        if src["name"] == outlet:
            src.update(changes)
    path.write_text(yaml.safe_dump(data))
    return path


def simulate_store(bucket: Bucket, site, outlet: str, keys: list[str]) -> list[str]:
    """What the store stage does after its commit: mark the pages expected to be stored as seen."""
    wanted = {canonicalize(e["url"]) for e in expected(site, outlet, "stored")}
    rows = []
    for r in responses(bucket, keys):
        if r.kind == "article" and canonicalize(r.url) in wanted:
            canonical = r.extra.get(CANONICAL_FIELD) or r.url
            rows.append(
                {
                    "source": outlet,
                    "canonical_url": canonical,
                    "url": r.url,
                    "content_hash": hashlib.sha256(r.body).hexdigest(),
                    "http_etag": r.header("ETag"),
                    "http_last_modified": r.header("Last-Modified"),
                    "article_id": r.record_id,
                }
            )
    record_stored(bucket, rows)
    return sorted({canonicalize(r["url"]) for r in rows})


@pytest.fixture
def ctx(s3_settings, sources_file) -> RunContext:
    return RunContext(run_id=RUN, s3=s3_settings, sources_path=sources_file)


@pytest.fixture
def roles(sample_site) -> dict[str, str]:
    found = outlets(sample_site)
    assert {"hostile", "wordpress", "arc", "plain"} <= set(found), found
    return found


# --------------------------------------------------------------------------- tests


def test_crawl_archives_expected_articles_and_discovery_documents(ctx, sample_site, roles):
    outlet = roles["wordpress"]
    sample_site.reset_hits()  # the site is shared by the session: count only this crawl's requests
    result = crawl_stage(ctx, outlet)
    bucket = ctx.bucket
    assert set(result) >= {"source", "warc_keys", "stats", "rejects_key"}
    assert result["source"] == outlet and result["warc_keys"]
    assert bucket.list(raw_prefix(RUN, outlet)) == sorted(result["warc_keys"])

    recs = responses(bucket, result["warc_keys"])
    fetched = article_urls(bucket, result["warc_keys"])
    # every page expected to end up stored was fetched as an article candidate, exactly once
    for e in expected(sample_site, outlet, "stored"):
        assert fetched.count(canonicalize(e["url"])) == 1, e["url"]
    # non-articles listed in the sitemaps are fetched too (the extract stage rejects them)
    for e in expected(sample_site, outlet, kind="nonarticle"):
        assert canonicalize(e["url"]) in fetched, e["url"]
    kinds = {r.kind for r in recs}
    assert {"article", "feed", "sitemap", "robots"} <= kinds
    assert all(r.source == outlet for r in recs)
    sitemaps = {r.url for r in recs if r.kind == "sitemap"}
    assert any(u.endswith("/sitemap_index.xml") for u in sitemaps)
    assert any(u.endswith("/news-sitemap.xml") for u in sitemaps)  # child of the index

    # each response record is preceded by its request record, and carries the X headers
    raw = bucket.get(result["warc_keys"][0])
    types = [(r.rec_type, r.rec_headers.get_header("WARC-X-Kind")) for r in ArchiveIterator(io.BytesIO(raw))]
    assert types[0][0] == "warcinfo"
    assert ("request", None) in types
    assert all(kind for t, kind in types if t == "response")

    # canonicalisation: no tracking parameters, no fragments in what was requested
    assert not [u for u in fetched if "utm_" in u or "fbclid" in u or "gclid" in u or "#" in u]

    # The crawl log has a line per response (progress counts them), but neither page bodies
    # (items' reprs) nor botocore's per-call DEBUG chatter.
    from pipeline.runtime.progress import SCRAPY_RESPONSE
    from pipeline.stages.crawl import crawl_log_path

    log_text = crawl_log_path(ctx, outlet).read_text(errors="replace")
    assert sum(1 for line in log_text.splitlines() if SCRAPY_RESPONSE.search(line)) >= len(recs)
    assert "[botocore" not in log_text and "<html" not in log_text.lower()
    # rel=canonical recorded on the article records of stored pages (the sample templates declare it)
    stored_urls = {canonicalize(e["url"]) for e in expected(sample_site, outlet, "stored")}
    for r in recs:
        if r.kind == "article" and canonicalize(r.url) in stored_urls:
            assert canonicalize(r.extra[CANONICAL_FIELD]) == canonicalize(r.url)

    # cutoff: the archive sitemap's old articles are never requested
    old = expected(sample_site, outlet, kind="old")
    assert old and all(sample_site.hits(e["url"]) == 0 for e in old)
    assert result["stats"]["news/too_old"] >= 1
    # robots.txt Disallow: /private/ is obeyed
    denied = expected(sample_site, outlet, kind="robots_denied")
    assert denied and all(sample_site.hits(e["url"]) == 0 for e in denied)
    assert result["stats"]["news/robots_denied"] >= 1
    rejects = list(bucket.iter_jsonl(result["rejects_key"]))
    assert {r["reason"] for r in rejects if r["url"] == canonicalize(denied[0]["url"])} <= {
        "robots_denied",
        "robots_unreachable",
    }
    assert all(r["stage"] == "crawl" and r["source"] == outlet for r in rejects)

    stats = result["stats"]
    assert stats["news/fetched/article"] == len(set(fetched))
    assert stats["news/bytes"] > 0
    assert stats["finish_reason"] == "finished"
    assert bucket.exists(summary_key(ctx, outlet))


def test_hostile_pages_are_rejected_with_reasons(ctx, sample_site, roles):
    outlet = roles["hostile"]
    sample_site.reset_hits()
    result = crawl_stage(ctx, outlet)
    rejects: dict[str, list[str]] = {}
    for r in ctx.bucket.iter_jsonl(result["rejects_key"]):
        rejects.setdefault(r["url"], []).append(r["reason"])
    # each hostile page the crawl can refuse is refused once, for its own reason, under its exact URL
    # (the navigation-only page is fetched: a later stage refuses it as not an article)
    crawl_refused = [
        e for e in expected(sample_site, outlet, "rejected", "hostile") if not is_refusal(e["reject_reason"])
    ]
    assert len(crawl_refused) >= 13
    for e in crawl_refused:
        assert rejects.get(canonicalize(e["url"])) == [e["reject_reason"]], (e["url"], rejects)
    base = sample_site.base_urls[outlet]
    # the gzip-bomb sitemap: refused as a bomb, without decompressing it all
    assert rejects[f"{base}/sitemap-archive.xml.gz"] == ["decompression_bomb"]
    # the sitemap-index chain: 3 levels below the configured one followed, the 5th refused, nothing deeper asked for
    assert [sample_site.hits(f"{base}/sitemap-chain-{n}.xml") for n in range(1, 11)] == [1] * 4 + [0] * 6
    assert rejects[f"{base}/sitemap-chain-5.xml"] == ["sitemap_too_deep"]
    assert result["stats"]["news/rejected/sitemap_too_deep"] == 1
    # 100,003 headers: refused, counted, not archived
    assert result["stats"]["news/rejected/headers_too_large"] == 1
    assert result["stats"]["news/headers_too_large"] == 1
    for reason in {"http_500", "timeout", "too_large", "redirect_loop", "not_html"}:
        assert result["stats"][f"news/rejected/{reason}"] >= 1
    # the good articles among the traps are archived (mis-declared charset; 429 then 200)
    fetched = article_urls(ctx.bucket, result["warc_keys"])
    for e in expected(sample_site, outlet, "stored"):
        assert canonicalize(e["url"]) in fetched, e["url"]
    # rejected pages are not archived as articles
    assert not any(u.endswith(("/story/server-error", "/story/budget-figures", "/story/many-headers")) for u in fetched)
    # the gzip bomb (1 GiB decompressed) did not blow up memory
    assert result["stats"].get("memusage/max", 0) < 1024 * 2**20


def test_second_run_skips_seen_and_revalidates_feeds(ctx, s3_settings, sample_site, roles):
    outlet = roles["arc"]
    first = crawl_stage(ctx, outlet)
    assert load_http(ctx.bucket, outlet)  # validators remembered at the end of the crawl
    stored = simulate_store(ctx.bucket, sample_site, outlet, first["warc_keys"])
    assert stored
    sample_site.reset_hits()
    ctx2 = RunContext(run_id="20261127T130000Z", s3=s3_settings, sources_path=ctx.sources_path)
    second = crawl_stage(ctx2, outlet)
    assert [u for u in stored if sample_site.hits(u)] == []  # not one stored article fetched again
    stats = second["stats"]
    assert stats["news/skipped_seen"] >= len(stored)
    assert stats["news/not_modified/feed"] >= 1
    assert stats["news/not_modified/sitemap"] >= 1
    assert article_urls(ctx.bucket, second["warc_keys"]) and not (
        set(article_urls(ctx.bucket, second["warc_keys"])) & set(stored)
    )


def test_revisit_window_uses_conditional_get(ctx, s3_settings, sample_site, roles):
    outlet = roles["arc"]
    edit_source(ctx.sources_path, outlet, revisit_hours=24)
    first = crawl_stage(ctx, outlet)
    stored = simulate_store(ctx.bucket, sample_site, outlet, first["warc_keys"])
    ctx2 = RunContext(run_id="20261127T140000Z", s3=s3_settings, sources_path=ctx.sources_path)
    second = crawl_stage(ctx2, outlet)
    stats = second["stats"]
    assert stats["news/revalidated"] >= len(stored)
    assert stats["news/not_modified/article"] >= 1  # unchanged articles answered 304, nothing archived
    assert stats.get("news/skipped_seen", 0) == 0


def test_rerun_same_run_id_keeps_each_attempts_files(ctx, sample_site, roles):
    outlet = roles["plain"]
    first = crawl_stage(ctx, outlet, settings={"NEWS_WARC_MAX_BYTES": "20000"})
    assert len(first["warc_keys"]) > 1  # rotated at the size setting
    # gzip sitemap parsed: its fresh articles are fetched; old ones are cut off
    fetched = article_urls(ctx.bucket, first["warc_keys"])
    for e in expected(sample_site, outlet, "stored"):
        assert canonicalize(e["url"]) in fetched
    assert all(sample_site.hits(e["url"]) == 0 for e in expected(sample_site, outlet, kind="old"))
    second = crawl_stage(ctx, outlet)
    assert len(second["warc_keys"]) == 1
    # each attempt has keys of its own: the first one's files are neither overwritten nor deleted
    assert sorted(ctx.bucket.list(raw_prefix(RUN, outlet))) == sorted(first["warc_keys"] + second["warc_keys"])


def test_sigkill_mid_crawl_then_rerun_loses_nothing(ctx, s3_settings, sample_site, roles):
    outlet = roles["wordpress"]
    # slow enough to be killed in the middle: one request at a time, 0.3 s apart
    edit_source(ctx.sources_path, outlet, delay=0.3, concurrency=1)
    want = sorted({canonicalize(e["url"]) for e in expected(sample_site, outlet, "stored")})
    sample_site.reset_hits()
    env = {**os.environ, **s3_settings.as_env()}
    cmd = crawl_command(ctx, outlet, settings={"NEWS_WARC_MAX_BYTES": "5000"})
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while sum(sample_site.hits(u) for u in want) < 3 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL  # it really died mid-crawl
    assert 0 < sum(1 for u in want if sample_site.hits(u)) < len(want)
    assert not ctx.bucket.exists(summary_key(ctx, outlet))

    edit_source(ctx.sources_path, outlet, delay=0, concurrency=4)
    result = crawl_stage(ctx, outlet)
    assert set(result["warc_keys"]) <= set(ctx.bucket.list(raw_prefix(RUN, outlet)))  # the killed attempt's are apart
    fetched = article_urls(ctx.bucket, result["warc_keys"])
    assert sorted(set(fetched) & set(want)) == want  # nothing lost
    assert len(fetched) == len(set(fetched))  # nothing twice

    stored = simulate_store(ctx.bucket, sample_site, outlet, result["warc_keys"])
    assert stored == want
    sample_site.reset_hits()
    third = crawl_stage(RunContext(run_id="20261127T150000Z", s3=s3_settings, sources_path=ctx.sources_path), outlet)
    assert [u for u in want if sample_site.hits(u)] == []
    assert not set(article_urls(ctx.bucket, third["warc_keys"])) & set(want)


def test_scrapy_crawl_from_repo_root(ctx, s3_settings, roles):
    outlet = roles["plain"]
    # no NEWS_ALLOW_PRIVATE: the spider takes the allowlist from the sources file
    env = {k: v for k, v in {**os.environ, **s3_settings.as_env()}.items() if k != "NEWS_ALLOW_PRIVATE"}
    scrapy = [sys.executable, "-m", "scrapy"]
    ok = subprocess.run(
        [
            *scrapy,
            "crawl",
            "news",
            "-a",
            f"source={outlet}",
            "-a",
            f"run_id={RUN}",
            "-a",
            f"sources={ctx.sources_path}",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert ok.returncode == 0, ok.stderr[-3000:]
    summary = ctx.bucket.get_json(summary_key(ctx, outlet))
    assert summary["source"] == outlet and summary["warc_keys"]
    assert summary["stats"]["news/fetched/article"] > 0

    bad = subprocess.run(
        [
            *scrapy,
            "crawl",
            "news",
            "-a",
            "source=no-such-outlet",
            "-a",
            f"run_id={RUN}",
            "-a",
            f"sources={ctx.sources_path}",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bad.returncode != 0
    assert "no source named 'no-such-outlet'" in bad.stderr
    bad_run = subprocess.run(
        [
            *scrapy,
            "crawl",
            "news",
            "-a",
            f"source={outlet}",
            "-a",
            "run_id=yesterday",
            "-a",
            f"sources={ctx.sources_path}",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bad_run.returncode != 0 and "bad run id 'yesterday'" in bad_run.stderr


def test_crawl_stage_unknown_source_and_failure(ctx):
    from pipeline.core.config import ConfigError

    with pytest.raises(ConfigError):
        crawl_stage(ctx, "no-such-outlet")
    with pytest.raises(CrawlError) as err:
        crawl_stage(ctx, ctx.sources.sources[0].name, settings={"ITEM_PIPELINES": "{not json"})
    assert "log tail" in str(err.value)


def test_crawl_stage_timeout_kills_the_crawl_process(ctx, roles):
    import psutil

    def crawl_children() -> list:
        return [
            p
            for p in psutil.Process().children(recursive=True)
            if "scrapy" in " ".join(p.cmdline()) and f"run_id={RUN}" in p.cmdline()
        ]

    with pytest.raises(CrawlError) as err:
        crawl_stage(ctx, roles["plain"], timeout=0.5)  # the child's Python start-up alone takes longer
    assert "timed out after" in str(err.value)
    assert crawl_children() == []  # killed and reaped, not left running behind the task


def test_cli_crawl(ctx, s3_settings, roles):
    env = {**os.environ, **s3_settings.as_env()}
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "pipeline",
            "crawl",
            "--source",
            roles["plain"],
            "--run-id",
            RUN,
            "--sources",
            str(ctx.sources_path),
            "--json",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    summary = json.loads(out.stdout)  # --json: the crawl summary alone on stdout, for scripts
    assert summary["source"] == roles["plain"] and summary["warc_keys"]
    assert all(Bucket(s3_settings).exists(key) for key in summary["warc_keys"])


def test_spider_arguments_and_settings_are_validated(sources_file):
    from scrapy.crawler import Crawler
    from scrapy.exceptions import UsageError

    from spiders.spiders.news import NewsSpider, parse_args

    with pytest.raises(UsageError, match="-a source"):
        parse_args({"source": "Bad Name!", "run_id": RUN})
    with pytest.raises(UsageError, match="-a run_id"):
        parse_args({"source": "x", "run_id": "yesterday"})  # a bad one; none given defaults to now
    crawler = Crawler(NewsSpider, {})  # settings still mutable, as in a real crawl
    with pytest.raises(UsageError, match="unknown argument"):
        NewsSpider.from_crawler(crawler, source="x", run_id=RUN, sources=str(sources_file), colour="red")
    name = yaml.safe_load(sources_file.read_text())["sources"][0]["name"]
    crawler = Crawler(NewsSpider, {})  # settings still mutable, as in a real crawl
    spider = NewsSpider.from_crawler(crawler, source=name, run_id=RUN, sources=str(sources_file))
    s = crawler.settings
    assert spider.source_cfg.name == name
    assert s.getint("DOWNLOAD_MAXSIZE") == 8 * 2**20 and s.getfloat("DOWNLOAD_TIMEOUT") == 3
    assert s.getint("CONCURRENT_REQUESTS_PER_DOMAIN") == spider.source_cfg.concurrency
    assert s.getbool("AUTOTHROTTLE_ENABLED") and s.getbool("ROBOTSTXT_OBEY")
    assert s.get("USER_AGENT") == spider.crawl_cfg.user_agent
    assert s.get("NEWS_SOURCE") == name and s.get("NEWS_RUN_ID") == RUN
    assert s.getint("NEWS_MAX_HEADER_BYTES") == 64 * 1024 and s.getint("NEWS_MAX_SITEMAP_DEPTH") == 3


def _header_limit(**settings):
    from scrapy import Spider
    from scrapy.utils.test import get_crawler

    from spiders.middlewares import HeaderLimitMiddleware

    return HeaderLimitMiddleware.from_crawler(get_crawler(Spider, settings_dict=settings))


@pytest.mark.parametrize(
    "headers",
    [
        {f"X-H{i}": "v" for i in range(501)},  # over the count (default 500), small in bytes
        {"X-Big": "v" * (64 * 1024)},  # one header over the bytes (default 64 KiB)
        {"Set-Cookie": ["c=" + "v" * 1000] * 70},  # repeated values of one name count one by one
    ],
)
def test_response_headers_over_the_limits_are_refused(headers):
    from scrapy.exceptions import IgnoreRequest
    from scrapy.http import HtmlResponse, Request

    mw = _header_limit()
    request = Request("http://news.example/a")
    ok = HtmlResponse("http://news.example/a", headers={f"X-H{i}": "v" * 100 for i in range(100)}, body=b"<p>x</p>")
    assert mw.process_response(request, ok) is ok
    with pytest.raises(IgnoreRequest, match=r"^headers_too_large: http://news.example/a sent \d+ headers"):
        mw.process_response(request, HtmlResponse("http://news.example/a", headers=headers, body=b"<p>x</p>"))
    assert mw.stats.get_value("news/headers_too_large") == 1


def test_header_limits_come_from_the_settings():
    from scrapy.http import HtmlResponse, Request

    mw = _header_limit(NEWS_MAX_HEADER_BYTES=10 * 2**20, NEWS_MAX_HEADER_COUNT=200_000)
    many = HtmlResponse("http://news.example/a", headers={f"X-H{i}": "v" for i in range(1000)}, body=b"")
    assert mw.process_response(Request("http://news.example/a"), many) is many


# --------------------------------------------------------------------------- local servers of the tests and benchmark


def _pending_connections_accepted(port: int, n: int, timeout: float = 0.5) -> int:
    """Open ``n`` connections to ``port`` and keep them; how many completed their handshake in time."""
    import socket

    done, socks = 0, []
    try:
        for _ in range(n):
            s = socket.socket()
            socks.append(s)
            s.settimeout(timeout)
            try:
                s.connect(("127.0.0.1", port))
                done += 1
            except OSError:
                pass
    finally:
        for s in socks:
            s.close()
    return done


def test_local_server_queues_a_burst_of_connections():
    """socketserver's backlog of 5 dropped the 7th pending connection (1 s SYN retransmit for the client)."""
    from tests.crawl_helpers import LISTEN_BACKLOG, LocalServer

    server = LocalServer({})  # bound and listening, but nothing accepts yet: every connection waits in the queue
    try:
        assert _pending_connections_accepted(server.port, 64) == 64 <= LISTEN_BACKLOG
    finally:
        server.httpd.server_close()  # (stop() would wait for a serve_forever() that never ran)


def test_sample_site_server_queues_a_burst_of_connections():
    """The sample site and the benchmark outlet serve from `_Server`: it must queue a crawler's burst
    (with socketserver's default backlog of 5 the kernel dropped the rest)."""
    from http.server import BaseHTTPRequestHandler

    from examples.sample_site.server import _Server

    server = _Server(("127.0.0.1", 0), BaseHTTPRequestHandler)  # listening; nothing accepts yet
    try:
        assert _pending_connections_accepted(server.server_address[1], 64) == 64
    finally:
        server.server_close()


def test_spider_requests_share_one_callable_per_callback(sources_file, monkeypatch):
    """Scrapy's generator-return check of a callback (getsource + ast.parse) runs once per crawl,
    not again whenever the bound method it was cached under has died with its request."""
    import gc

    from scrapy.crawler import Crawler
    from scrapy.utils import misc
    from scrapy.utils.request import request_from_dict

    from spiders.spiders.news import NewsSpider

    name = yaml.safe_load(sources_file.read_text())["sources"][0]["name"]
    spider = NewsSpider.from_crawler(Crawler(NewsSpider, {}), source=name, run_id=RUN, sources=str(sources_file))
    misc._generator_callbacks_cache.clear()

    def article(url):  # what spider._article() builds (without its stats, which need a running crawl)
        return spider._request(url, "article", spider.parse_article)

    first = article("http://127.0.0.1:1/a.html")
    assert misc.is_generator_with_return_value(first.callback) is False
    del first
    gc.collect()

    sources_read = []
    real_getsource = misc.inspect.getsource
    monkeypatch.setattr(misc.inspect, "getsource", lambda f: sources_read.append(f) or real_getsource(f))
    second = article("http://127.0.0.1:1/b.html")
    assert misc.is_generator_with_return_value(second.callback) is False
    assert sources_read == []  # answered from the cache
    other = article("http://127.0.0.1:1/c.html")
    assert other.callback is second.callback and other.errback is second.errback
    # a request still serialises by method name (JOBDIR disk queues)
    back = request_from_dict(second.to_dict(spider=spider), spider=spider)
    assert back.callback == spider.parse_article and back.errback == spider.on_error
