"""`python -m pipeline run` crawls its sources at once, never two of one host at once, and one failing
source does not stop the others.

Real crawls (Scrapy children) of the session's sample site into the session's SeaweedFS, through the
in-process CLI. When each crawl ran is read from what the run itself reports, never from wall-clock
measurements in the test: the order of its progress lines (`crawl X: started` / `crawl X: done`, printed
by the one process that starts and collects the crawls) and the fetch times of the archived pages
(WARC-Date, microseconds).
"""

from __future__ import annotations

import contextlib
import io
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
from pipeline.stages.crawl import crawl_summaries
from tests.crawl_helpers import free_port
from tests.fixtures.s3 import drop_bucket

pytestmark = pytest.mark.timeout(400)

GOOD = ["the-daily-courier", "metro-herald", "valley-gazette"]
#: A crawl's progress line: its start, or its end (done or FAILED).
EVENT = re.compile(r"^crawl ([a-z0-9_-]+): (started|done|FAILED)")


def _bucket(s3_server) -> S3Settings:
    info = s3_server.info()
    settings = info.settings(f"t-{uuid.uuid4().hex[:16]}")
    Bucket(settings).ensure()
    return settings


def _run(settings: S3Settings, sources: Path, run_id: str, *extra: str) -> tuple[int, dict, list[tuple[str, str]]]:
    """(exit code, run report, [(source, "started" | "ended")] in the order the run printed them)."""
    err = io.StringIO()
    with pytest.MonkeyPatch.context() as mp, contextlib.redirect_stderr(err):
        mp.setenv("NEWS_INGEST_BUCKET", settings.bucket)
        code = cli_main(["run", "--sources", str(sources), "--run-id", run_id, *extra])
    events = [
        (m.group(1), "started" if m.group(2) == "started" else "ended")
        for m in map(EVENT.match, err.getvalue().splitlines())
        if m
    ]
    return code, Bucket(settings).get_json(report_key(run_id)), events


def _overlapping(events: list[tuple[str, str]]) -> set[frozenset[str]]:
    """Pairs of crawls where one started while the other had started and not yet ended."""
    running: set[str] = set()
    pairs: set[frozenset[str]] = set()
    for name, what in events:
        if what == "started":
            pairs |= {frozenset((name, other)) for other in running}
            running.add(name)
        else:
            running.discard(name)
    return pairs


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
    code, report, events = _run(settings, sources, RUN, "--jobs", "4")
    yield {"code": code, "report": report, "events": events, "settings": settings, "sources": sources}
    drop_bucket(Bucket(settings))


def test_crawls_of_different_hosts_overlap(mixed_run):
    events = mixed_run["events"]
    assert {name for name, what in events if what == "started"} == {*GOOD, "gone"}, events
    assert len(_overlapping(events)) >= 1, events  # one after another, none would start while another runs
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
        code, report, events = _run(settings, sources, run_id, "--jobs", "3")
        assert code == 0, report.get("health")
        twins = ["valley-gazette", "valley-gazette-twin"]
        windows = _windows(settings, sources, run_id)
        assert set(windows) == {*twins, "metro-herald"}, windows
        # The twins share 127.0.0.1:<port>: one crawl after the other, although 3 could run at once. Their
        # pages were fetched at disjoint times, and one's log starts no earlier than the other's ends.
        assert not _overlap(windows[twins[0]], windows[twins[1]]), windows
        pairs = _overlapping(events)
        assert frozenset(twins) not in pairs, events  # the second started only once the first had ended
        # ... while the other host's crawl ran next to one of them
        assert any(frozenset(("metro-herald", t)) in pairs for t in twins), events
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
