"""Run health on real crawls: an outage is a failure, 500s degrade a source, a quiet run is quiet.

Each test runs `python -m pipeline run` (in-process CLI, Scrapy in its child) against local servers:
the sample site stopped (a port nobody listens on), a source under `.invalid` (DNS fails), sources
answering 500, and the session's sample site twice (a quiet second run).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from pipeline.cli.main import main as cli_main
from pipeline.core.bucket import Bucket
from pipeline.core.config import HealthThresholds
from pipeline.core.context import RunContext
from pipeline.core.layout import report_key, run_manifest_key
from pipeline.flows.ingest import RunFailed, check_step, headline, run_once
from pipeline.report.health import source_health
from tests.crawl_helpers import LocalServer, Reply, free_port

pytestmark = pytest.mark.timeout(300)


def _write(path: Path, sources: list[dict], allow: list[str]) -> Path:
    crawl = {"allow_private": allow, "download_timeout": 3}
    path.write_text(yaml.safe_dump({"crawl": crawl, "sources": sources}, sort_keys=False), encoding="utf-8")
    return path


def _source(name: str, base: str, **extra) -> dict:
    return {"name": name, "feeds": [f"{base}/feed.xml"], "concurrency": 4, "delay": 0, "max_age_days": 0, **extra}


def _rss(base: str, paths: list[str]) -> str:
    items = "".join(f"<item><title>Story {p}</title><link>{base}{p}</link></item>" for p in paths)
    return f'<?xml version="1.0"?><rss version="2.0"><channel><title>t</title>{items}</channel></rss>'


def _run(s3_settings, monkeypatch, sources: Path, run_id: str, capsys) -> tuple[int, str, dict]:
    monkeypatch.setenv("NEWS_INGEST_BUCKET", s3_settings.bucket)
    code = cli_main(["run", "--sources", str(sources), "--run-id", run_id])
    err = capsys.readouterr().err
    report = Bucket(s3_settings).get_json(report_key(run_id))
    return code, err, report


def test_stopped_site_and_dns_failure_fail_the_run_and_commit_nothing(s3_settings, monkeypatch, tmp_path, capsys):
    dead = free_port()  # the sample site stopped: nothing listens there
    sources = _write(
        tmp_path / "sources.yaml",
        [
            _source("the-daily-courier", f"http://127.0.0.1:{dead}", sections=[f"http://127.0.0.1:{dead}/"]),
            _source("nowhere", "http://news.nowhere.invalid"),
        ],
        [f"127.0.0.1:{dead}"],
    )
    run_id = "20261201T100000Z"
    code, err, report = _run(s3_settings, monkeypatch, sources, run_id, capsys)
    assert code == 1
    health = report["health"]
    assert health["the-daily-courier"]["status"] == "failed"
    assert health["nowhere"]["status"] == "failed"
    assert any(
        "connection_refused" in r or "robots.txt unreachable" in r for r in health["the-daily-courier"]["reasons"]
    )
    assert any("dns_error" in r for r in health["nowhere"]["reasons"]), health["nowhere"]
    assert health["nowhere"]["last_success"] is None and health["nowhere"]["failing_since"] == run_id
    # the error line names each failed source with its reasons
    assert "source the-daily-courier failed:" in err and "source nowhere failed:" in err
    assert "dns_error" in err
    # an outage is not an empty hour: nothing committed
    assert report["manifest"] is None
    assert not Bucket(s3_settings).exists(run_manifest_key(run_id))
    # the DAG's check task fails with the same reasons
    with pytest.raises(RunFailed) as exc:
        check_step(headline(report))
    assert "source nowhere failed:" in str(exc.value) and "nothing was committed" in str(exc.value)


def test_a_source_answering_500s_is_degraded_one_answering_only_500s_failed(s3_settings, monkeypatch, tmp_path, capsys):
    articles = [f"/news/story-{i}" for i in range(4)]
    with LocalServer() as half, LocalServer() as down:
        half.routes.update(
            {
                "/robots.txt": Reply(200, "User-agent: *\nAllow: /\n", content_type="text/plain"),
                "/feed.xml": Reply(200, _rss(half.base, articles), content_type="application/rss+xml"),
                **{p: Reply(500, "oops") for p in articles},
            }
        )
        down.routes.update({p: Reply(500, "oops") for p in ("/robots.txt", "/feed.xml")})
        sources = _write(
            tmp_path / "sources.yaml",
            [_source("flaky", half.base), _source("broken", down.base)],
            [f"127.0.0.1:{half.port}", f"127.0.0.1:{down.port}"],
        )
        code, err, report = _run(s3_settings, monkeypatch, sources, "20261201T110000Z", capsys)
    flaky, broken = report["health"]["flaky"], report["health"]["broken"]
    assert flaky["status"] == "degraded", flaky
    assert flaky["http_status"].get("500", 0) >= len(articles)
    assert any("requests failed" in r and "HTTP 500" in r for r in flaky["reasons"])
    assert broken["status"] == "failed", broken
    assert code == 1 and "source broken failed:" in err and "source flaky" not in err.split("error:")[-1]
    # a source was reached: the run commits (its empty hour) and names the failure
    assert report["manifest"] is not None


def test_quiet_second_run_is_quiet_and_trends_skip_a_dead_run(s3_settings, sample_site, tmp_path):
    sample_site.set_epoch(0)
    live = sample_site.write_sources_yaml(tmp_path / "live.yaml", outlets=["valley-gazette"], download_timeout=3)
    cfg = yaml.safe_load(live.read_text())
    dead_port = free_port()
    for src in cfg["sources"]:
        for key in ("feeds", "sitemaps", "sections"):
            src[key] = [_moved(u, dead_port) for u in src[key]]
    cfg["crawl"]["allow_private"].append(f"127.0.0.1:{dead_port}")
    dead = tmp_path / "dead.yaml"
    dead.write_text(yaml.safe_dump(cfg), encoding="utf-8")

    first = run_once(RunContext(run_id="20261202T100000Z", s3=s3_settings, sources_path=live))
    assert first["health"]["valley-gazette"]["status"] == "ok", first["health"]
    latency = first["health"]["valley-gazette"]["latency_ms"]  # from the crawl's latency histogram
    assert latency and latency["responses"] > 0 and 0 < latency["p50"] <= latency["p90"] <= latency["p99"]
    outage = run_once(RunContext(run_id="20261202T110000Z", s3=s3_settings, sources_path=dead))
    assert outage["health"]["valley-gazette"]["status"] == "failed"
    assert outage["health"]["valley-gazette"]["last_success"] == "20261202T100000Z"
    quiet = run_once(RunContext(run_id="20261202T120000Z", s3=s3_settings, sources_path=live))
    h = quiet["health"]["valley-gazette"]
    assert h["status"] == "quiet", h
    assert not [f for f in quiet["flags"] if "no article kept" in f["message"]]
    # the outage is no baseline: the quiet run compares with the first run
    assert quiet["previous_run"] == "20261202T100000Z"
    assert quiet["trends"]["runs"] == ["20261202T100000Z", "20261202T110000Z", "20261202T120000Z"]
    assert quiet["trends"]["sources"]["valley-gazette"]["status"] == ["ok", "failed", "quiet"]
    check_step(headline(quiet))  # quiet is not a failure


def _moved(url: str, port: int) -> str:
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    return urlunsplit(parts._replace(netloc=f"127.0.0.1:{port}"))


# --------------------------------------------------------------------------- the rules, without a crawl

LIMITS = HealthThresholds()


def _health(stats: dict | None = None, **kw) -> dict:
    args = {"failed_reason": None, "articles": 0, "article_pages": 0, "refused_pages": 0, "thresholds": LIMITS}
    args.update(kw)
    return source_health(stats=stats, **args)


def test_health_rules():
    ok = {"news/fetched": 5, "downloader/response_status_count/200": 5}
    assert _health(ok, articles=3, article_pages=3)["status"] == "ok"
    # nothing new, or only pages refused as not articles: quiet, not "no article kept"
    assert _health(ok)["status"] == "quiet"
    assert _health(ok, article_pages=4, refused_pages=4)["status"] == "quiet"
    broken = _health(ok, article_pages=4, refused_pages=1)
    assert broken["status"] == "degraded" and broken["reasons"] == ["3 article page(s) fetched, none kept"]
    # a yield far below the source's recent median
    low = _health(ok, articles=1, article_pages=10, recent_yields=[0.9, 0.8, 1.0])
    assert low["status"] == "degraded" and "median 90%" in low["reasons"][0]
    assert _health(ok, articles=1, article_pages=10, recent_yields=[0.9])["status"] == "ok"  # too little history
    # failures: the crawl raised, nothing fetched, robots.txt unreachable everywhere
    crashed = _health(ok, failed_reason="CrawlError: crawl of x failed (exit 1); log tail:\n...\nBoom")
    assert crashed["status"] == "failed" and crashed["reasons"] == ["CrawlError: crawl of x failed (exit 1): Boom"]
    refused = _health({"news/rejected/connection_refused": 2, "robots/fetch": 1, "robots/unreachable": 1})
    assert refused["status"] == "failed"
    assert refused["reasons"][0] == "no page fetched (connection_refused 2)"
    assert "robots.txt unreachable for every host" in refused["reasons"][1]
    # the error-rate threshold is per source
    flaky = {**ok, "downloader/response_status_count/503": 2}
    assert _health(flaky, articles=3, article_pages=3)["status"] == "degraded"
    lenient = HealthThresholds(max_error_rate=0.5)
    assert _health(flaky, articles=3, article_pages=3, thresholds=lenient)["status"] == "ok"


def test_thresholds_come_from_the_sources_file(tmp_path):
    from pipeline.core.config import load_sources

    path = _write(
        tmp_path / "s.yaml",
        [_source("a", "http://a.example"), _source("b", "http://b.example", health={"max_error_rate": 0.5})],
        [],
    )
    cfg = load_sources(path)
    assert cfg.source("a").health == HealthThresholds()
    assert cfg.source("b").health.max_error_rate == 0.5


def test_requests_the_crawl_chose_to_skip_are_no_errors():
    stats = {
        "news/fetched": 3,
        "downloader/response_status_count/200": 3,
        "downloader/exception_type_count/spiders.extensions.SkippedSeen": 20,
        "downloader/exception_type_count/scrapy.exceptions.IgnoreRequest": 4,
        "downloader/exception_type_count/twisted.internet.error.DNSLookupError": 1,
    }
    h = _health(stats)
    assert h["errors"] == 1 and h["requests"] == 4 and h["status"] == "degraded"


def test_crawl_command_ends_with_a_summary_table(s3_settings, sample_site, monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("NEWS_INGEST_BUCKET", s3_settings.bucket)
    live = sample_site.write_sources_yaml(tmp_path / "live.yaml", outlets=["metro-herald"], download_timeout=3)
    assert cli_main(["crawl", "--source", "metro-herald", "--sources", str(live), "--run-id", "20261203T100000Z"]) == 0
    out = capsys.readouterr().out
    rows = dict(line.split("  ", 1) for line in out.splitlines())
    assert rows["status"].strip() == "reached"
    assert int(rows["pages fetched"].split()[0]) > 0 and "article" in rows["pages fetched"]
    assert rows["HTTP status"].strip().startswith("200 ")
    dead = free_port()
    gone = _write(tmp_path / "dead.yaml", [_source("gone", f"http://127.0.0.1:{dead}")], [f"127.0.0.1:{dead}"])
    assert cli_main(["crawl", "--source", "gone", "--sources", str(gone), "--run-id", "20261203T110000Z"]) == 1
    captured = capsys.readouterr()
    assert "status" in captured.out and "unreachable: no page fetched" in captured.out
    assert "error: crawl of gone reached nothing: no page fetched" in captured.err


def test_latency_percentiles_from_the_histogram():
    from pipeline.report.run_report import _latency

    stats = {"news/latency_ms/10": 50, "news/latency_ms/100": 45, "news/latency_ms/1000": 4, "news/latency_ms/inf": 1}
    assert _latency(stats) == {"p50": 10, "p90": 100, "p99": 1000, "responses": 100}
    assert _latency({"news/latency_ms/inf": 1}) == {"p50": ">0", "p90": ">0", "p99": ">0", "responses": 1}
    assert _latency({}) is None
