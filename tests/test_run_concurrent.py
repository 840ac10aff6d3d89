"""`python -m pipeline run` crawls its sources at once, never two of one host at once, and one failing
source does not stop the others.

Real crawls (Scrapy children) of the session's sample site into the session's SeaweedFS, through the
in-process CLI. When each crawl ran is read from the crawl's own output, never from wall-clock
measurements in the test: its log (first to last timestamped line, whole seconds: a strict order of
two floored times is a true order) and the fetch times of its archived pages (WARC-Date, microseconds).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest
import yaml

from pipeline.cli.main import main as cli_main
from pipeline.core.bucket import Bucket
from pipeline.core.config import S3Settings, Source
from pipeline.core.context import RunContext
from pipeline.core.layout import report_key
from pipeline.dataset.read import read_articles
from pipeline.dataset.warc import read_warc
from pipeline.flows.streaming import default_jobs, host_of, source_hosts, startable
from pipeline.stages.crawl import crawl_log_path, crawl_summaries
from tests.crawl_helpers import free_port
from tests.fixtures.s3 import drop_bucket

pytestmark = pytest.mark.timeout(400)

GOOD = ["the-daily-courier", "metro-herald", "valley-gazette"]
#: Scrapy's log line time (LOG_DATEFORMAT "%Y-%m-%d %H:%M:%S"); the fixed width sorts as text.
LOG_TIME = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) ")


def _bucket(s3_server) -> S3Settings:
    info = s3_server.info()
    settings = info.settings(f"t-{uuid.uuid4().hex[:16]}")
    Bucket(settings).ensure()
    return settings


def _run(settings: S3Settings, sources: Path, run_id: str, *extra: str) -> tuple[int, dict]:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("NEWS_INGEST_BUCKET", settings.bucket)
        code = cli_main(["run", "--sources", str(sources), "--run-id", run_id, *extra])
    return code, Bucket(settings).get_json(report_key(run_id))


def _windows(settings: S3Settings, sources: Path, run_id: str) -> dict[str, tuple[datetime, datetime]]:
    """{source: (first, last) fetch time of its archived responses}, from its WARC records."""
    ctx = RunContext(run_id=run_id, s3=settings, sources_path=sources)
    out = {}
    for summary in crawl_summaries(ctx):
        dates = [
            datetime.fromisoformat(rec.date.replace("Z", "+00:00"))
            for key in summary["warc_keys"]
            for rec in read_warc(ctx.bucket, key)
            if rec.date
        ]
        if dates:
            out[summary["source"]] = (min(dates), max(dates))
    return out


def _log_spans(settings: S3Settings, sources: Path, names: list[str], run_id: str) -> dict[str, tuple[str, str]]:
    """{source: (first, last) timestamp of its crawl log}, whole seconds ("2026-12-03 10:00:01")."""
    ctx = RunContext(run_id=run_id, s3=settings, sources_path=sources)
    out = {}
    for name in names:
        lines = crawl_log_path(ctx, name).read_text(errors="replace").splitlines()
        stamps = [m.group(1) for m in map(LOG_TIME.match, lines) if m]
        out[name] = (stamps[0], stamps[-1])
    return out


def _overlap(a: tuple, b: tuple) -> bool:
    return a[0] < b[1] and b[0] < a[1]


def _sources_with(path: Path, site, outlets: list[str], extra: list[dict], allow: list[str] = ()) -> Path:
    site.write_sources_yaml(path, outlets=outlets, download_timeout=3, max_page_bytes=8 * 2**20)
    cfg = yaml.safe_load(path.read_text())
    cfg["sources"] += extra
    cfg["crawl"]["allow_private"] += list(allow)
    path.write_text(yaml.safe_dump(cfg, sort_keys=False), encoding="utf-8")
    return path


# --------------------------------------------------------------------------- the sample site + one dead source


RUN = "20261203T100000Z"


@pytest.fixture(scope="module")
def mixed_run(s3_server, sample_site, tmp_path_factory) -> Iterator[dict]:
    """One `run --jobs 4`: three outlets of the sample site and a source on a port nobody listens on."""
    settings = _bucket(s3_server)
    dead = free_port()
    gone = {"name": "gone", "feeds": [f"http://127.0.0.1:{dead}/feed.xml"], "delay": 0, "max_age_days": 0}
    sources = _sources_with(
        tmp_path_factory.mktemp("mixed") / "sources.yaml", sample_site, GOOD, [gone], [f"127.0.0.1:{dead}"]
    )
    code, report = _run(settings, sources, RUN, "--jobs", "4")
    yield {"code": code, "report": report, "settings": settings, "sources": sources}
    drop_bucket(Bucket(settings))


def test_crawls_of_different_hosts_overlap(mixed_run):
    spans = _log_spans(mixed_run["settings"], mixed_run["sources"], [*GOOD, "gone"], RUN)
    overlapping = [(a, b) for a in spans for b in spans if a < b and _overlap(spans[a], spans[b])]
    assert len(overlapping) >= 1, spans  # one after another, no two spans would intersect
    windows = _windows(mixed_run["settings"], mixed_run["sources"], RUN)
    assert set(windows) == set(GOOD), windows  # the dead source archived nothing


def test_a_failing_source_fails_the_run_and_the_others_are_stored(mixed_run, sample_site):
    report = mixed_run["report"]
    assert mixed_run["code"] == 1
    assert report["health"]["gone"]["status"] == "failed", report["health"]["gone"]
    assert all(report["health"][name]["status"] == "ok" for name in GOOD), report["health"]
    rows = read_articles(settings=mixed_run["settings"], run_id=RUN).to_pylist()
    expected = {e["url"] for e in sample_site.expected() if e["expected"] == "stored" and e["outlet"] in GOOD}
    assert {r["source"] for r in rows} == set(GOOD)
    assert {r["url"] for r in rows} == expected
    assert report["manifest"] is not None  # the good sources' articles are committed


# --------------------------------------------------------------------------- two sources on one host


def test_two_sources_of_one_host_never_crawl_at_once(s3_server, sample_site, tmp_path):
    settings = _bucket(s3_server)
    try:
        path = tmp_path / "sources.yaml"
        sample_site.write_sources_yaml(path, outlets=["valley-gazette"])
        twin = {**yaml.safe_load(path.read_text())["sources"][0], "name": "valley-gazette-twin"}
        sources = _sources_with(path, sample_site, ["valley-gazette", "metro-herald"], [twin])
        run_id = "20261203T110000Z"
        code, report = _run(settings, sources, run_id, "--jobs", "3")
        assert code == 0, report.get("health")
        twins = ["valley-gazette", "valley-gazette-twin"]
        windows = _windows(settings, sources, run_id)
        assert set(windows) == {*twins, "metro-herald"}, windows
        # The twins share 127.0.0.1:<port>: one crawl after the other, although 3 could run at once. Their
        # pages were fetched at disjoint times, and one's log starts no earlier than the other's ends.
        assert not _overlap(windows[twins[0]], windows[twins[1]]), windows
        spans = _log_spans(settings, sources, [*twins, "metro-herald"], run_id)
        first, second = sorted(twins, key=lambda t: spans[t])
        assert spans[second][0] >= spans[first][1], spans
        # ... while the other host's crawl ran next to one of them
        assert any(_overlap(spans["metro-herald"], spans[t]) for t in twins), spans
    finally:
        drop_bucket(Bucket(settings))


# --------------------------------------------------------------------------- the rules, without a crawl


def _src(name: str, *urls: str) -> Source:
    return Source(name=name, feeds=list(urls))


def test_hosts_are_host_and_port():
    assert host_of("http://Example.org/a") == "example.org:80"
    assert host_of("https://example.org/a") == "example.org:443"
    assert host_of("http://127.0.0.1:8701/feed") == "127.0.0.1:8701"
    src = Source(
        name="a",
        feeds=["http://a.example/feed"],
        sitemaps=["https://a.example/sitemap.xml"],
        sections=["http://a.example:8080/"],
        home="http://www.a.example/",
    )
    assert source_hosts(src) == {"a.example:80", "a.example:443", "a.example:8080", "www.a.example:80"}


def test_startable_keeps_one_crawl_per_host_and_the_bound():
    hosts = {
        "a": source_hosts(_src("a", "http://one.example/f")),
        "b": source_hosts(_src("b", "http://one.example/g")),  # same host as a
        "c": source_hosts(_src("c", "http://two.example/f")),
        "d": source_hosts(_src("d", "http://three.example/f", "http://two.example/x")),  # shares two.example with c
        "e": source_hosts(_src("e", "http://four.example/f")),
    }
    pending = list(hosts)
    assert startable(pending, hosts, set(), slots=4) == ["a", "c", "e"]
    assert startable(pending, hosts, set(), slots=2) == ["a", "c"]
    assert startable(pending, hosts, {"one.example:80"}, slots=4) == ["c", "e"]
    assert startable(["b", "d"], hosts, {"one.example:80", "two.example:80"}, slots=4) == []
    assert startable(pending, hosts, set(), slots=0) == []


def test_default_jobs():
    assert default_jobs(1) == 1 and default_jobs(3) == 3 and default_jobs(40) == 4 and default_jobs(0) == 1


def test_jobs_must_be_positive(capsys):
    with pytest.raises(SystemExit) as exc:
        cli_main(["run", "--jobs", "0"])
    assert exc.value.code == 2 and "--jobs" in capsys.readouterr().err
