"""`render: js` and autodiscovery through the real spider, the real browser (/usr/bin/chromium) and SeaweedFS.

One crawl per outlet of `examples.sample_site.modern`; each crawl process starts one browser for its pages.
"""

from __future__ import annotations

import importlib.util
import os

import pytest

from pipeline.core.context import RunContext
from pipeline.dataset.warc import read_warc
from pipeline.stages.crawl import crawl_stage
from pipeline.text.urls import canonicalize
from spiders.pipelines import RENDERED_FIELD

pytestmark = [
    pytest.mark.timeout(240),
    # On CI (.ci/run installs chromium) a missing browser is a failure, never a skip.
    pytest.mark.skipif(
        not os.environ.get("CI")
        and (not os.access("/usr/bin/chromium", os.X_OK) or importlib.util.find_spec("playwright") is None),
        reason="needs Debian's chromium (scripts/install-system-packages.sh) and playwright",
    ),
]

RUN = "20261127T130000Z"


@pytest.fixture
def ctx(s3_settings, tmp_path, modern_site) -> RunContext:
    path = modern_site.write_sources_yaml(tmp_path / "sources.yaml", download_timeout=5)
    return RunContext(run_id=RUN, s3=s3_settings, sources_path=path)


def crawl(ctx: RunContext, outlet: str) -> tuple[dict, dict[str, object], list[dict]]:
    """Crawl one outlet: (summary, {canonical article URL: WARC record}, rejects)."""
    result = crawl_stage(ctx, outlet)
    records = [r for key in result["warc_keys"] for r in read_warc(ctx.bucket, key)]
    articles = {canonicalize(r.url): r for r in records if r.kind == "article"}
    rejects = list(ctx.bucket.iter_jsonl(result["rejects_key"])) if result["rejects_key"] else []
    return result, articles, rejects


def test_js_outlet_is_rendered_and_trackers_media_blocked(ctx, modern_site):
    from examples.sample_site.modern import SCRIPT

    result, articles, rejects = crawl(ctx, SCRIPT)
    stats = result["stats"]
    expected = modern_site.expected(SCRIPT)
    assert {canonicalize(e["url"]) for e in expected} == set(articles), rejects
    for e in expected:
        record = articles[canonicalize(e["url"])]
        html = record.body.decode("utf-8")
        assert 'data-rendered="yes"' in html  # the DOM after app.js ran, not the shell
        assert e["text"].split("\n")[0] in html.replace("&amp;", "&").replace("&#x27;", "'")
        assert record.extra.get(RENDERED_FIELD) == "chromium"
    assert stats.get("render/pages") == len(expected)
    assert stats.get("render/blocked/third_party", 0) >= len(expected)  # the tracker script, once per page
    assert stats.get("render/blocked/type", 0) >= 2 * len(expected)  # stylesheet and image, per page
    for url in modern_site.never_fetched():
        assert modern_site.hits(url) == 0, url


def test_hostile_script_reaches_nothing(ctx, modern_site):
    from examples.sample_site.modern import TRAP

    result, articles, rejects = crawl(ctx, TRAP)
    stats = result["stats"]
    expected = modern_site.expected(TRAP)
    assert {canonicalize(e["url"]) for e in expected} == set(articles), rejects
    for record in articles.values():
        html = record.body.decode("utf-8")
        assert 'data-script-ran="yes"' in html  # the script did run, and got nothing
        assert "LEAKED" not in html and "SECRET" not in html
    # 169.254.169.254, 10.0.0.1, the canary (v4, v6, iframe) and both same-site redirects, per page
    assert stats.get("render/blocked/ssrf", 0) >= 6 * len(expected), stats
    assert stats.get("render/blocked/websocket", 0) >= len(expected), stats
    assert modern_site.canary_connections() == 0


def test_feeds_found_through_link_alternate_and_robots(ctx, modern_site):
    from examples.sample_site.modern import LINKWISE

    result, articles, rejects = crawl(ctx, LINKWISE)
    expected = modern_site.expected(LINKWISE)
    assert {canonicalize(e["url"]) for e in expected} == set(articles), (rejects, result["stats"])
    assert result["stats"].get("news/discovered/feed") == 4  # main RSS, JSON Feed, comments, section Atom
    assert "render/pages" not in result["stats"]


def test_feedburner_origlinks_not_the_tracker(ctx, modern_site):
    from examples.sample_site.modern import RELAY

    result, articles, rejects = crawl(ctx, RELAY)
    expected = modern_site.expected(RELAY)
    assert {canonicalize(e["url"]) for e in expected} == set(articles), rejects
    assert modern_site.hits("/~r/relay/~3/0/") == 0


def test_auto_renders_only_app_shells(s3_settings, tmp_path, modern_site):
    import yaml

    from examples.sample_site.modern import NAMES, SCRIPT

    data = yaml.safe_load(modern_site.write_sources_yaml(tmp_path / "s.yaml", download_timeout=5).read_text())
    for src in data["sources"]:
        src["render"] = "auto"
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(data))
    ctx = RunContext(run_id=RUN, s3=s3_settings, sources_path=tmp_path / "s.yaml")
    result, articles, _ = crawl(ctx, SCRIPT)
    n = len(modern_site.expected(SCRIPT))
    assert result["stats"].get("render/auto_triggered") == n and result["stats"].get("render/pages") == n
    # a server-rendered outlet under `auto` is never rendered
    result, articles, _ = crawl(ctx, NAMES[3])
    assert articles and "render/auto_triggered" not in result["stats"]
    assert not any(r.extra.get(RENDERED_FIELD) for r in articles.values())


def test_render_patterns_render_only_matching_urls(s3_settings, tmp_path, modern_site):
    import re

    import yaml

    from examples.sample_site.modern import SCRIPT

    expected = modern_site.expected(SCRIPT)
    chosen = [e["url"].rsplit("/", 1)[1] for e in expected[:2]]
    data = yaml.safe_load(modern_site.write_sources_yaml(tmp_path / "s.yaml", download_timeout=5).read_text())
    for src in data["sources"]:
        if src["name"] == SCRIPT:
            src["render_patterns"] = [f"/news/{re.escape(slug)}$" for slug in chosen]
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(data))
    ctx = RunContext(run_id=RUN, s3=s3_settings, sources_path=tmp_path / "s.yaml")
    result, articles, _ = crawl(ctx, SCRIPT)
    stats = result["stats"]
    assert stats.get("render/pages") == 2 and stats.get("render/skipped_pattern") == len(expected) - 2
    rendered = {url for url, r in articles.items() if r.extra.get(RENDERED_FIELD)}
    assert rendered == {canonicalize(e["url"]) for e in expected[:2]}
    for url, record in articles.items():  # the others are stored as fetched: the app shell
        assert ('data-rendered="yes"' in record.text()) == (url in rendered)


def test_browser_restarts_drain_and_every_page_still_renders(ctx, modern_site):
    from examples.sample_site.modern import SCRIPT

    result = crawl_stage(ctx, SCRIPT, settings={"NEWS_RENDER_RESTART_PAGES": "2", "NEWS_RENDER_MAX_PAGES": "2"})
    stats = result["stats"]
    n = len(modern_site.expected(SCRIPT))
    assert stats.get("render/pages") == n and "render/failed" not in stats
    # a restart is due after 2 renders; renders already past the check finish on the old browser first
    assert stats.get("render/browser_launches", 0) >= 2
