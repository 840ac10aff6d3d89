"""Run report: JSON + HTML from synthetic stage outputs in a real (SeaweedFS) bucket."""

from __future__ import annotations

import json

import lxml.html
import pytest

from pipeline.cli.main import main as cli_main
from pipeline.core.context import RunContext
from pipeline.core.layout import (
    crawl_summary_key,
    deduped_key,
    raw_prefix,
    report_key,
    warc_file_name,
)
from pipeline.dataset.rejects import reject, write_rejects
from pipeline.report.html import render_html
from pipeline.report.run_report import build_report, print_summary, quality_flags, write_report
from pipeline.stages.store import store_articles

RUN = "20261127T210000Z"
HOSTILE = '<img src=x onerror="alert(1)">'


def _article(
    source: str,
    i: int,
    *,
    title: bool = True,
    author: bool = True,
    date: bool = True,
    words: int = 400,
    cluster: str | None = None,
    dup_of: str | None = None,
    dup_kind: str | None = None,
    removed: list[str] = ("related_link",),
    undone: list[str] = (),
) -> dict:
    aid = f"{source}-{i}"
    return {
        "url": f"https://{source}.example/a/{i}",
        "canonical_url": f"https://{source}.example/a/{i}",
        "source": source,
        "title": f"Story {i} of {source}" if title else None,
        "author": "A. Writer" if author else None,
        "published": "2026-11-27T10:00:00+00:00" if date else None,
        "language": "en",
        "text": "word " * words,
        "word_count": words,
        "removed": [{"rule": r, "text": "See also: something"} for r in removed],
        "warnings": [{"rule": f"safety_net:{r}", "message": "undone", "words": 300} for r in undone],
        "article_id": aid,
        "content_hash": aid,
        "cluster_id": cluster or aid,
        "duplicate_of": dup_of,
        "dup_kind": dup_kind,
        "version": 1,
        "supersedes": None,
    }


def make_synthetic_run(settings, run_id: str = RUN) -> tuple[RunContext, dict]:
    """Write crawl summaries, rejects and a deduped file for three sources (+ a hostile name);
    `gamma` has lost its titles and most of its text. Returns the context and write_report's kwargs."""
    ctx = RunContext(run_id=run_id, s3=settings)
    bucket = ctx.bucket
    pages = {"alpha": 14, "beta": 12, "gamma": 13, HOSTILE: 3}
    for name, n in pages.items():
        bucket.put_json(
            crawl_summary_key(run_id, name),
            {
                "source": name,
                "warc_keys": [f"{raw_prefix(run_id, name)}{warc_file_name('x', 0)}"],
                "stats": {"news/fetched": n, "news/archived/article": n - 2},
                "rejects_key": None,
            },
        )
    articles = []
    for i in range(10):
        articles.append(_article("alpha", i, words=300 + 40 * i, removed=["related_link", "share_bar"]))
        articles.append(_article("beta", i, author=i % 4 != 0, words=500 + 30 * i))
        articles.append(
            _article("gamma", i, title=i < 2, words=60 + i, removed=[], undone=["html:widget:paywall"] if i < 3 else [])
        )
    # one story run by three outlets (near copies), one by two (exact copy)
    articles.append(_article("beta", 10, cluster="alpha-0", dup_of="alpha-0", dup_kind="near"))
    articles.append(_article("gamma", 10, cluster="alpha-0", dup_of="alpha-0", dup_kind="near"))
    articles.append(_article("gamma", 11, cluster="beta-1", dup_of="beta-1", dup_kind="exact"))
    articles.append(_article("alpha", 10, cluster="alpha-1", dup_of="alpha-1", dup_kind="url"))
    deduped = deduped_key(run_id)
    bucket.put_jsonl(deduped, articles)
    write_rejects(
        ctx,
        "extract-x-00000",
        [
            reject("https://alpha.example/tag/x", "extract", "navigation_only", source="alpha"),
            reject("https://gamma.example/a/90", "extract", "no_article_text", source="gamma"),
            reject("https://gamma.example/a/91", "extract", "no_article_text", source="gamma"),
        ],
    )
    write_rejects(ctx, "clean", [reject("https://beta.example/a/99", "clean", "too_short", source="beta")])
    manifest = store_articles(ctx, [], sources=["alpha"])  # the run's commit (a table version)
    kwargs = {
        "sources": ["alpha", "beta", "gamma", HOSTILE],
        "timings": {"crawl": 12.5, "extract": 4.25, "clean": 0.5, "dedupe": 0.75, "store": 1.0},
        "failed_sources": {HOSTILE: "Traceback ...\nCrawlError: <b>boom</b>"},
        "deduped_key": deduped,
        "manifest_key": manifest,
    }
    return ctx, kwargs


def bars(doc, chart: str) -> list:
    """The bar rects of one chart in a parsed page."""
    return doc.xpath(f'//svg[@data-chart="{chart}"]//rect[contains(@class, "bar")]')


@pytest.fixture
def synthetic(s3_settings):
    ctx, kwargs = make_synthetic_run(s3_settings)
    return ctx, kwargs, write_report(ctx, **kwargs)


def test_report_keeps_existing_keys_and_counts(synthetic):
    ctx, kwargs, report = synthetic
    for key in (
        "run_id",
        "pages_fetched",
        "articles_stored",
        "canonical_articles",
        "duplicates",
        "rejects",
        "rejects_by_reason",
        "failed_sources",
        "sources",
        "stage_seconds",
        "manifest",
    ):
        assert key in report, key
    assert report["run_id"] == RUN
    assert report["pages_fetched"] == 14 + 12 + 13 + 3
    assert report["articles_stored"] == 34
    assert report["canonical_articles"] == 30
    assert report["duplicates"] == {"url": 1, "exact": 1, "near": 2, "rewrite": 0}
    assert report["rejects"] == 4
    assert report["rejects_by_reason"] == {
        "extract/navigation_only": 1,
        "extract/no_article_text": 2,
        "clean/too_short": 1,
    }
    assert report["rejects_by_stage"] == {
        "clean": {"too_short": 1},
        "extract": {"no_article_text": 2, "navigation_only": 1},
    }
    assert report["sources"]["gamma"]["articles"] == 12 and report["sources"]["gamma"]["duplicates"] == 2
    assert report["sources"]["gamma"]["rejects"] == 2
    assert report["sources"][HOSTILE]["failed"].endswith("boom</b>")
    assert report["stage_seconds"]["extract"] == 4.25
    assert report["manifest"] == kwargs["manifest_key"]
    # both artefacts are in the bucket, the JSON equal to what was returned
    assert ctx.bucket.get_json(report_key(RUN)) == json.loads(json.dumps(report))
    assert ctx.bucket.get(report_key(RUN, "html")).startswith(b"<!DOCTYPE html>")
    assert report["html"] == f"reports/run={RUN}.html"


def test_quality_signals_and_clusters(synthetic):
    _, _, report = synthetic
    q = report["quality"]
    assert q["alpha"]["title_share"] == 1.0 and q["alpha"]["author_share"] == 1.0
    assert q["beta"]["author_share"] == pytest.approx(8 / 11, abs=1e-3)  # 7 of 10 + the near copy
    assert q["gamma"]["title_share"] == pytest.approx(4 / 12, abs=1e-3)
    assert q["alpha"]["yield"] == pytest.approx(11 / 12, abs=1e-3)  # articles / article pages archived
    assert q["gamma"]["words"]["min"] == 60 and q["gamma"]["words"]["max"] == 400
    assert q["alpha"]["words"]["median"] == pytest.approx(460.0)  # 300..660 by 40, plus 400
    assert sum(q["alpha"]["length_histogram"]) == 11
    assert q["gamma"]["length_histogram"][0] == 10  # ten bodies under 100 words
    assert q["alpha"]["removed_by_rule"] == {"related_link": 11, "share_bar": 10}
    assert q["alpha"]["removals_per_article"] == pytest.approx(21 / 11, abs=0.01)
    assert report["removed_by_rule"]["related_link"] == 11 + 11 + 2
    # the safety net's events, per source: the outlet whose paywall wrapper holds its articles shows up
    assert q["gamma"]["safety_net_by_rule"] == {"safety_net:html:widget:paywall": 3}
    assert q["alpha"]["safety_net_by_rule"] == {}
    assert report["safety_net_by_rule"] == {"safety_net:html:widget:paywall": 3}
    clusters = report["clusters"]
    assert clusters["outlets_histogram"] == {"1": 28, "2": 1, "3": 1}  # alpha-1: 2 copies, 1 outlet
    assert clusters["top"][0]["cluster_id"] == "alpha-0"
    assert clusters["top"][0]["outlets"] == ["alpha", "beta", "gamma"]
    assert clusters["top"][0]["title"] == "Story 0 of alpha"
    assert report["clusters_with_copies"] == {"alpha-0": 3, "beta-1": 2, "alpha-1": 2}


def test_flags_single_out_the_outlet_that_dropped(synthetic):
    _, _, report = synthetic
    flagged = {(f["source"], f["signal"]) for f in report["flags"]}
    assert ("gamma", "title_share") in flagged
    assert ("gamma", "median_words") in flagged
    assert not {s for s, _ in flagged} & {"alpha", "beta"}
    # the failed source is reported as failed, not as "no articles"
    assert (HOSTILE, "articles") not in flagged


def test_flags_need_other_sources_and_enough_articles():
    q = {
        "solo": {
            "articles": 10,
            "title_share": 0.1,
            "author_share": 0.1,
            "published_share": 0.1,
            "yield": 0.1,
            "median_words": 10,
        }
    }
    per = {"solo": {"pages_fetched": 10, "failed": None}}
    assert quality_flags(q, per) == []  # nobody to compare with
    q["tiny"] = dict(q["solo"], articles=2, title_share=1.0)
    q["big"] = dict(q["solo"], title_share=1.0)
    per["tiny"] = per["big"] = {"pages_fetched": 10, "failed": None}
    flags = quality_flags(q, per)
    assert [(f["source"], f["signal"]) for f in flags] == [("solo", "title_share")]
    per["empty"] = {"pages_fetched": 7, "failed": None}
    q["empty"] = dict(q["solo"], articles=0)
    assert any(f["source"] == "empty" and f["signal"] == "articles" for f in quality_flags(q, per))


def test_html_is_self_contained_escaped_and_has_every_chart(synthetic):
    ctx, _, report = synthetic
    page = ctx.bucket.get(report_key(RUN, "html")).decode()
    assert "Content-Security-Policy" in page
    lowered = page.lower()
    for external in ("<script", "<link", " src=", "url(", "@import", "https://cdn", "<iframe"):
        assert external not in lowered.replace("&lt;img src=x", ""), external
    assert HOSTILE not in page and "&lt;img src=x onerror=" in page
    assert "<b>boom</b>" not in page
    doc = lxml.html.fromstring(page.encode())
    n_sources = len(report["sources"])
    assert len(bars(doc, "pages-articles")) == 3 * n_sources
    assert len(bars(doc, "stage-seconds")) == 5
    assert len(bars(doc, "rejects")) == 3
    assert len(bars(doc, "clusters")) == 3
    assert len(bars(doc, "metadata")) == 3 * 3  # sources with articles x (title, author, date)
    assert len(bars(doc, "body-length")) == 3
    assert len(bars(doc, "removals")) == len(report["removed_by_rule"])
    # the bar of the longest stage is the widest
    widths = {r.findtext("title").split(":")[0]: float(r.get("width")) for r in bars(doc, "stage-seconds")}
    assert max(widths, key=widths.get) == "crawl"
    # the outlet that dropped is highlighted in the charts and named in the alert box
    alerts = doc.xpath('//section[@id="alerts"]')[0].text_content()
    assert "gamma: articles with a title 33% vs 100%" in alerts
    flagged_labels = [t.text_content() for t in doc.xpath('//svg[@data-chart="metadata"]//text[@class="flag"]')]
    assert flagged_labels == ["gamma ⚠"]
    (net,) = [s for s in doc.xpath("//section") if s.findtext("h2").startswith("Safety net")]
    assert [[td.text_content() for td in tr.xpath("td")] for tr in net.xpath(".//tr[td]")] == [
        ["gamma", "3", "html:widget:paywall (3)"]
    ]


def test_html_of_an_empty_run_renders_without_charts(s3_settings):
    ctx = RunContext(run_id="20261127T220000Z", s3=s3_settings)
    report = write_report(ctx, sources=["alpha"], timings={}, failed_sources={}, deduped_key=None, manifest_key=None)
    assert report["articles_stored"] == 0 and report["flags"] == [] and report["quality"]["alpha"]["articles"] == 0
    doc = lxml.html.fromstring(render_html(report).encode())
    assert doc.xpath('//p[@class="empty"]')
    assert not doc.xpath('//svg[@data-chart="metadata"]')


def test_build_report_streams_articles_once():
    seen = []

    def stream():
        for i in range(3):
            seen.append(i)
            yield _article("alpha", i)

    report = build_report(
        RUN,
        sources=["alpha"],
        timings={},
        failed_sources={},
        summaries={},
        rejects=[],
        articles=stream(),
        manifest_key=None,
    )
    assert seen == [0, 1, 2] and report["articles_stored"] == 3


def test_print_summary_names_flags(synthetic, capsys):
    _, _, report = synthetic
    print_summary(report)
    out = capsys.readouterr().out
    assert "34 articles stored" in out
    assert "CHECK gamma: articles with a title" in out
    assert f"reports/run={RUN}.html" in out


def test_report_command(synthetic, s3_settings, monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("NEWS_INGEST_BUCKET", s3_settings.bucket)
    ctx, kwargs, _ = synthetic
    later = "20261127T230000Z"
    write_report(
        RunContext(run_id=later, s3=s3_settings),
        sources=["alpha"],
        timings={"crawl": 1.0},
        failed_sources={},
        deduped_key=None,
        manifest_key=None,
    )
    # latest run by default
    assert cli_main(["report", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["run_id"] == later
    # a given run, as HTML to a file
    out = tmp_path / "r.html"
    assert cli_main(["report", RUN, "--html", str(out)]) == 0
    assert bars(lxml.html.fromstring(out.read_bytes()), "pages-articles")
    # text summary
    assert cli_main(["report", RUN]) == 0
    assert "34 articles stored" in capsys.readouterr().out
    # unknown run: exit 3 with a reason
    assert cli_main(["report", "20200101T000000Z"]) == 3
    assert "no report for run" in capsys.readouterr().err
    # --rebuild recomputes from the stage outputs, keeping timings and failures
    ctx.bucket.delete([report_key(RUN), report_key(RUN, "html")])
    ctx.bucket.put_json(
        report_key(RUN),
        {"run_id": RUN, "stage_seconds": {"crawl": 9.0}, "failed_sources": {}, "sources": {"alpha": {}, "gamma": {}}},
    )
    assert cli_main(["report", RUN, "--rebuild", "--json"]) == 0
    rebuilt = json.loads(capsys.readouterr().out)
    assert rebuilt["articles_stored"] == 34 and rebuilt["stage_seconds"] == {"crawl": 9.0}
    assert list(rebuilt["sources"])[:2] == ["alpha", "gamma"]
    assert rebuilt["manifest"] == kwargs["manifest_key"]
    assert ctx.bucket.exists(report_key(RUN, "html"))


def _single_source_run(settings, run_id: str, *, titled: int) -> dict:
    ctx = RunContext(run_id=run_id, s3=settings)
    key = deduped_key(run_id)
    ctx.bucket.put_jsonl(key, [_article("solo", i, title=i < titled) for i in range(10)])
    return write_report(ctx, sources=["solo"], timings={}, failed_sources={}, deduped_key=key, manifest_key=None)


def test_a_lone_source_is_compared_with_its_previous_run(s3_settings):
    first = _single_source_run(s3_settings, "20261126T100000Z", titled=10)
    assert first["previous_run"] is None and first["flags"] == []
    # an unrelated later run must not be taken as "previous" of an earlier one
    _single_source_run(s3_settings, "20261128T100000Z", titled=0)
    second = _single_source_run(s3_settings, "20261127T100000Z", titled=3)
    assert second["previous_run"] == "20261126T100000Z"
    assert second["previous_quality"]["solo"]["title_share"] == 1.0
    assert [(f["source"], f["signal"]) for f in second["flags"]] == [("solo", "title_share")]
    assert second["flags"][0]["message"] == "solo: articles with a title 30%, was 100% in run 20261126T100000Z"
    doc = lxml.html.fromstring(render_html(second).encode())
    markers = doc.xpath('//svg[@data-chart="metadata"]//line[@class="marker"]')
    assert len(markers) == 3  # previous title, author and date shares
    # the title marker sits at 100% while the bar is at 30%: the drop is visible
    title_bar = bars(doc, "metadata")[0]
    assert float(markers[0].get("x1")) > float(title_bar.get("x")) + float(title_bar.get("width")) * 3


def test_no_article_flag_counts_article_pages_only():
    def report_for(article_pages: int) -> dict:
        stats = {"news/fetched": 3 + article_pages, "news/fetched/feed": 1, "news/fetched/article": article_pages}
        return build_report(
            RUN,
            sources=["alpha"],
            timings={},
            failed_sources={},
            summaries={"alpha": {"stats": stats}},
            rejects=[],
            articles=[],
            manifest_key=None,
        )

    # an incremental run with nothing new: feeds fetched, no article page, nothing to flag
    quiet = report_for(0)
    assert quiet["sources"]["alpha"]["article_pages"] == 0 and quiet["flags"] == []
    broken = report_for(5)
    assert [f["message"] for f in broken["flags"]] == ["alpha: 5 article pages fetched, no article kept"]
