"""Start-up cost of the crawl child: a real crawl of the sample site, with a probe extension
that writes the child's `sys.modules` when its engine stops.

Scrapy imports every component named in its settings (even one set to None or switched off)
before the component can decline; the project leaves the ones it switches off for good out,
and these tests check that a real crawl neither imports them nor loses an enabled component.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

from scrapy import signals

RUN = "20261127T120000Z"

#: Modules only the switched-off components import (aiohttp: RemoteControl; tldextract and
#: requests: CookiesMiddleware; twisted.conch: TelnetConsole; the ftp/file/s3 handlers).
NOT_IMPORTED = (
    "aiohttp",
    "tldextract",
    "requests",
    "twisted.conch",
    "scrapy.extensions.remote_control",
    "scrapy.extensions.telnet",
    "scrapy.downloadermiddlewares.cookies",
    "scrapy.core.downloader.handlers.ftp",
    "scrapy.core.downloader.handlers.file",
    "scrapy.core.downloader.handlers.s3",
)

#: What a crawl of the sample site (AutoThrottle on) enabled before the change, as its log
#: lists it: unchanged by it.
ENABLED = {
    "addons": [],
    "extensions": [
        "scrapy.extensions.corestats.CoreStats",
        "scrapy.extensions.logcount.LogCount",
        "scrapy.extensions.memusage.MemoryUsage",
        "scrapy.extensions.logstats.LogStats",
        "scrapy.extensions.throttle.AutoThrottle",
        "spiders.extensions.CrawlReport",
        "tests.test_spiders_startup.ModuleProbe",
    ],
    "downloader middlewares": [
        "spiders.middlewares.SsrfGuardMiddleware",
        "scrapy.downloadermiddlewares.offsite.OffsiteMiddleware",
        "spiders.extensions.IncrementalMiddleware",
        "spiders.middlewares.StrictRobotsTxtMiddleware",
        "scrapy.downloadermiddlewares.httpauth.HttpAuthMiddleware",
        "scrapy.downloadermiddlewares.downloadtimeout.DownloadTimeoutMiddleware",
        "scrapy.downloadermiddlewares.defaultheaders.DefaultHeadersMiddleware",
        "scrapy.downloadermiddlewares.useragent.UserAgentMiddleware",
        "spiders.middlewares.RetryAfterMiddleware",
        "scrapy.downloadermiddlewares.httpcompression.HttpCompressionMiddleware",
        "scrapy.downloadermiddlewares.redirect.RedirectMiddleware",
        "scrapy.downloadermiddlewares.httpproxy.HttpProxyMiddleware",
        "scrapy.downloadermiddlewares.stats.DownloaderStats",
        "spiders.middlewares.HeaderLimitMiddleware",
    ],
    "spider middlewares": [
        "scrapy.spidermiddlewares.start.StartSpiderMiddleware",
        "spiders.extensions.IncrementalMiddleware",
        "scrapy.spidermiddlewares.httperror.HttpErrorMiddleware",
        "scrapy.spidermiddlewares.referer.RefererMiddleware",
        "scrapy.spidermiddlewares.urllength.UrlLengthMiddleware",
        "scrapy.spidermiddlewares.depth.DepthMiddleware",
        "scrapy.spidermiddlewares.metacopy.MetaCopyDetectionMiddleware",
    ],
    "item pipelines": ["spiders.pipelines.WarcArchivePipeline"],
}


class ModuleProbe:
    """Extension run inside the crawl child: `sys.modules` to NEWS_TEST_MODULES_FILE at engine stop."""

    def __init__(self, path: str):
        self.path = path

    @classmethod
    def from_crawler(cls, crawler):
        probe = cls(crawler.settings["NEWS_TEST_MODULES_FILE"])
        crawler.signals.connect(probe.engine_stopped, signal=signals.engine_stopped)
        return probe

    def engine_stopped(self):
        Path(self.path).write_text(json.dumps(sorted(sys.modules)))


def enabled_components(log_text: str) -> dict[str, list[str]]:
    found = {}
    for kind, body in re.findall(r"INFO: Enabled ([a-z ]+):\n(\[.*?\])\n", log_text, re.S):
        found[kind] = json.loads(body.replace("'", '"'))
    return found


def test_crawl_child_skips_switched_off_components(s3_settings, sources_file, sample_site, tmp_path):
    from pipeline.core.context import RunContext
    from pipeline.stages.crawl import crawl_log_path, crawl_stage
    from tests.test_crawl import outlets

    ctx = RunContext(run_id=RUN, s3=s3_settings, sources_path=sources_file)
    outlet = outlets(sample_site)["plain"]
    modules_file = tmp_path / "modules.json"
    extensions = {"spiders.extensions.CrawlReport": 500, f"{__name__}.ModuleProbe": 900}
    result = crawl_stage(
        ctx, outlet, settings={"EXTENSIONS": json.dumps(extensions), "NEWS_TEST_MODULES_FILE": str(modules_file)}
    )
    assert result["stats"]["finish_reason"] == "finished" and result["stats"]["news/fetched/article"] > 0

    modules = set(json.loads(modules_file.read_text()))
    assert "scrapy.core.downloader.handlers.http11" in modules and "spiders.middlewares" in modules
    imported = sorted(m for m in modules if any(m == n or m.startswith(n + ".") for n in NOT_IMPORTED))
    assert imported == []

    # every guard and every default component that was enabled still is, in the same order
    assert enabled_components(crawl_log_path(ctx, outlet).read_text(errors="replace")) == ENABLED


def test_switched_off_components_stay_off():
    """The _BASE dicts are Scrapy's own minus the three switched-off components, whose
    enabling settings stay off too (a hand-run crawl gets the same components)."""
    from scrapy.settings import default_settings

    import spiders.settings as project

    assert project.REMOTE_CONTROL_ENABLED is False and project.TELNETCONSOLE_ENABLED is False
    assert project.COOKIES_ENABLED is False
    for name in ("EXTENSIONS_BASE", "DOWNLOADER_MIDDLEWARES_BASE"):
        default = getattr(default_settings, name)
        ours = getattr(project, name)
        assert set(default) - set(ours) <= project._SWITCHED_OFF
        assert ours == {k: v for k, v in default.items() if k in ours}
    assert "scrapy.extensions.throttle.AutoThrottle" in project.EXTENSIONS_BASE
    assert "scrapy.extensions.closespider.CloseSpider" in project.EXTENSIONS_BASE
    assert {"http", "https", "data"}.isdisjoint(k for k, v in project.DOWNLOAD_HANDLERS.items() if v is None)


def test_crawl_logs_are_redacted_by_the_redacted_logs_extension():
    """A URL with a password or token that a crawled page links to never reaches the crawl's log output."""
    import io
    import logging

    from scrapy.utils.test import get_crawler

    import spiders.settings as project
    from spiders.extensions import RedactedLogs

    assert project.EXTENSIONS.get("spiders.extensions.RedactedLogs") is not None
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        RedactedLogs.from_crawler(get_crawler())
        RedactedLogs.from_crawler(get_crawler())  # a second crawler adds no second filter
        logging.getLogger("scrapy.core.engine").warning(
            "Crawled (200) <GET %s>", "http://editor:hunter2@127.0.0.1:8701/story?token=abc123"
        )
    finally:
        root.removeHandler(handler)
    out = stream.getvalue()
    assert "Crawled (200)" in out and "127.0.0.1:8701/story" in out
    assert "hunter2" not in out and "abc123" not in out
    assert len(handler.filters) == 1


def test_scrapy_crawl_without_run_id_defaults_to_now(s3_settings, sources_file, sample_site, tmp_path):
    """`scrapy crawl news -a source=X` by hand, no `-a run_id`: the run id is now (UTC), as `pipeline crawl`
    makes it; the crawl succeeds and its WARC files and summary are filed under that id."""
    import os
    import subprocess
    from datetime import datetime, timedelta, timezone

    from pipeline.core.bucket import Bucket
    from pipeline.core.layout import RAW_PREFIX, WARC_SUFFIX, check_run_id, crawl_summary_key, raw_run_id
    from pipeline.core.paths import ROOT
    from pipeline.dataset.warc import read_warc
    from tests.test_crawl import outlets

    outlet = outlets(sample_site)["plain"]
    env = {**os.environ, **s3_settings.as_env(), "NEWS_INGEST_HOME": str(tmp_path / "home")}
    cmd = [sys.executable, "-m", "scrapy", "crawl", "news", "-a", f"source={outlet}", "-a", f"sources={sources_file}"]
    before = datetime.now(timezone.utc).replace(microsecond=0)
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    after = datetime.now(timezone.utc)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Field required" not in proc.stderr and "Traceback" not in proc.stderr

    bucket = Bucket(s3_settings)
    keys = [k for k in bucket.list(RAW_PREFIX) if k.endswith(WARC_SUFFIX) and f"/{outlet}/" in k]
    run_ids = {raw_run_id(k) for k in keys}
    run_ids = {r for r in run_ids if before <= datetime.strptime(r, "%Y%m%dT%H%M%SZ").replace(tzinfo=timezone.utc)}
    assert len(run_ids) == 1, (run_ids, proc.stderr[-2000:])
    (run_id,) = run_ids
    assert check_run_id(run_id) == run_id
    assert datetime.strptime(run_id, "%Y%m%dT%H%M%SZ").replace(tzinfo=timezone.utc) <= after + timedelta(seconds=1)
    assert f"run id {run_id} (now)" in proc.stderr  # the log says where the files went
    summary = json.loads(bucket.get(crawl_summary_key(run_id, outlet)))
    assert summary["run_id"] == run_id
    pages = [r for k in keys if raw_run_id(k) == run_id for r in read_warc(bucket, k)]
    assert pages, "the crawl archived no page"
