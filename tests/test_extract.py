"""extract_page, extract_batch / extract_outcomes, extract_stage, the page flow (extract then clean)
and the extract CLI handler."""

from __future__ import annotations

import argparse
import gzip
import json
from pathlib import Path

import pytest

from pipeline.cli.extract import cmd_extract, configure_extract
from pipeline.core.config import CleaningRules
from pipeline.core.context import RunContext
from pipeline.core.errors import NotAnArticle
from pipeline.core.layout import extract_rejects_name, extracted_key, raw_prefix, rejects_key, warc_basename
from pipeline.dataset.warc import KIND_FIELD, SOURCE_FIELD, RotatingWarcWriter
from pipeline.flows.pages import article_from_html, articles_from_items
from pipeline.stages.clean import CleanStep, clean_article
from pipeline.stages.extract import (
    EXTRACTOR_VERSION,
    PageOutcome,
    canonical_url,
    extract_batch,
    extract_outcomes,
    extract_page,
    extract_stage,
)
from pipeline.text.normalise import word_count

#: A news article's URL: the page-type decision reads the URL too, and these tests are not about it.
ARTICLE_URL = "https://example.org/2024/05/01/tram-line-gets-four-new-stops"

DATA = Path(__file__).parent / "data" / "extract"
FIXTURES = sorted(p.stem for p in DATA.glob("*.html") if (DATA / f"{p.stem}.expected.txt").exists())
PARA = (
    "<p>The harbour tram line will get four new stops by the end of next year, the council decided on "
    "Tuesday after a debate that lasted most of the afternoon and ended in a narrow vote.</p>"
)
PARAS = "".join(
    f"<p>Paragraph {n}: the tram line will get four new stops by the end of next year, the council "
    f"decided on Tuesday after debate number {n} that lasted most of the afternoon.</p>"
    for n in range(5)
)


def _page(body: str, head: str = "") -> str:
    return f"<!DOCTYPE html><html><head><meta charset='utf-8'>{head}</head><body>{body}</body></html>"


def test_fixture_list_is_not_empty():
    assert len(FIXTURES) >= 3


@pytest.mark.parametrize("name", FIXTURES)
def test_fixture_text_matches_expected(name):
    html = (DATA / f"{name}.html").read_text(encoding="utf-8")
    record = article_from_html(html, f"https://example.org/{name}")
    assert record["text"] + "\n" == (DATA / f"{name}.expected.txt").read_text(encoding="utf-8")


def test_boilerplate_is_removed_and_explained():
    html = (DATA / "wordpress_boilerplate.html").read_text(encoding="utf-8")
    rec = article_from_html(html, "https://courier.example.org/news/harbour-bridge-reopens?utm_source=x&fbclid=1#c")
    for phrase in (
        "See also",
        "Read also",
        "Leave a Reply",
        "will not be published",
        "newsletter",
        "cookies",
        "Share",
        "transport reporter",
        "bus lanes",
        "All rights reserved",
    ):
        assert phrase not in rec["text"], phrase
    assert rec["text"].startswith("The harbour bridge reopened")
    assert rec["text"].endswith("the council said.")
    rules = [r["rule"] for r in rec["removed"]]
    for rule in (
        "html:widget:share",
        "html:widget:newsletter",
        "html:widget:cookie",
        "html:widget:bio",
        "html:widget:related",
        "html:widget:comments",
        "related_link",
    ):
        assert rule in rules
    assert {"rule": "related_link", "text": "See also Ferry timetable changes for the spring season"} in rec["removed"]
    assert rec["warnings"] == []


def test_metadata_fields():
    html = (DATA / "wordpress_boilerplate.html").read_text(encoding="utf-8")
    rec = article_from_html(html, "https://courier.example.org/news/harbour-bridge-reopens?utm_source=x")
    assert rec["title"] == "Harbour bridge reopens after two-year repair"
    assert rec["author"] == "Maria Lindqvist"
    assert rec["published"] == "2024-03-05T08:30:00+00:00"
    assert rec["sitename"] == "The Coastal Courier"
    assert rec["image"] == "https://courier.example.org/img/bridge.jpg"
    assert rec["language"] == "en"
    # rel=canonical is same-site; its utm parameter is dropped too
    assert rec["canonical_url"] == "https://courier.example.org/news/harbour-bridge-reopens"
    assert rec["extractor_version"] == EXTRACTOR_VERSION
    assert rec["word_count"] == word_count(rec["text"]) > 150
    assert set(rec) >= {
        "url",
        "canonical_url",
        "title",
        "author",
        "published",
        "language",
        "sitename",
        "image",
        "text",
        "word_count",
        "removed",
        "extractor_version",
    }


@pytest.mark.parametrize(
    "url, declared, expected",
    [
        (
            "https://news.example.com/a/b?utm_source=tw&utm_medium=x&id=7&fbclid=abc#comments",
            None,
            "https://news.example.com/a/b?id=7",
        ),
        ("https://news.example.com/a/b?gclid=1", "/canonical/b", "https://news.example.com/canonical/b"),
        (
            "https://news.example.com/a/b",
            "https://www.example.com/other?utm_campaign=z",
            "https://www.example.com/other",
        ),
        ("https://news.example.com/a/b", "https://aggregator.example.net/copy", "https://news.example.com/a/b"),
        ("https://news.example.com/a/b", "javascript:void(0)", "https://news.example.com/a/b"),
    ],
)
def test_canonical_url(url, declared, expected):
    assert canonical_url(url, declared) == expected


@pytest.mark.parametrize("stamp", ["2099-01-01T10:00:00Z", "1990-06-01T10:00:00Z"])
def test_dates_in_the_future_or_before_1995_are_dropped(stamp):
    head = f'<meta property="article:published_time" content="{stamp}"><title>Tram line</title>'
    rec = article_from_html(_page(f"<article>{PARAS}</article>", head), "https://example.org/tram")
    assert rec["published"] is None


def test_plausible_date_kept():
    head = '<meta property="article:published_time" content="2021-02-03T04:05:06+01:00"><title>Tram</title>'
    rec = article_from_html(_page(f"<article>{PARAS}</article>", head), "https://example.org/tram")
    assert rec["published"] == "2021-02-03T04:05:06+01:00"


def test_source_drop_selectors_remove_html_blocks():
    body = (
        f'<article>{PARAS}<div class="partner-box"><p>Our partner Acme Insurance brings you this story every '
        f"week with the support of readers like you and many others.</p></div>{PARA}</article>"
    )
    rules = CleaningRules(drop_selectors=[".partner-box"])
    assert "Acme" in article_from_html(_page(body), ARTICLE_URL)["text"]
    rec = article_from_html(_page(body), ARTICLE_URL, rules=rules)
    assert "Acme" not in rec["text"]
    assert rec["removed"][0]["rule"] == "source:drop_selectors:.partner-box"


def test_extract_page_leaves_cleaning_to_the_clean_stage():
    body = f"<article>{PARAS}<p>See also <a href='/x'>Ferry fares rise again</a></p>{PARA}</article>"
    assert "See also" not in article_from_html(_page(body), ARTICLE_URL)["text"]
    raw = extract_page(_page(body), ARTICLE_URL)
    assert "See also Ferry fares rise again" in raw["text"]
    # The language is the cleaning layer's to detect, on the final text: once, not here as well.
    assert raw["language"] is None
    assert clean_article(raw)["language"] == "en"


def test_not_an_article_has_a_reason():
    with pytest.raises(NotAnArticle) as err:
        article_from_html(_page("<p>Hello.</p>"), ARTICLE_URL)
    assert err.value.reason in {"too_short", "no_article_text"}
    assert isinstance(err.value.reason, str)


def test_bytes_are_refused():
    with pytest.raises(TypeError):
        extract_page(b"<html></html>", ARTICLE_URL)  # type: ignore[arg-type]


# ------------------------------------------------------------------ batch


def test_extract_batch_keeps_order_and_copies_extra_keys():
    good = (DATA / "wordpress_boilerplate.html").read_text(encoding="utf-8")
    items = [{"url": f"https://example.org/{i}", "html": good if i % 3 else "", "seq": i} for i in range(9)]
    out = list(extract_batch(iter(items), workers=2))
    assert [o["url"] for o in out] == [i["url"] for i in items]
    for i, o in enumerate(out):
        if i % 3:
            assert o["seq"] == i and o["title"].startswith("Harbour bridge") and "html" not in o
        else:
            assert o["error"] == "empty"


def test_extract_batch_applies_rules_per_item():
    body = f'<article>{PARAS}<div class="partner-box"><p>Photo: a tram at the depot</p></div>{PARA}</article>'
    items = [
        {"url": "https://example.org/a", "html": _page(body), "source": "a"},
        {"url": "https://example.org/b", "html": _page(body), "source": "b"},
    ]
    rules = {"a": CleaningRules(drop_selectors=[".partner-box"]), "b": None}
    out = list(extract_batch(items, workers=2, rules_for=lambda item: rules[item["source"]]))
    assert "Photo:" not in out[0]["text"] and "Photo:" in out[1]["text"]


def test_articles_from_items_cleans_with_each_items_source_rules():
    body = f"<article>{PARAS}<p>Photo: a tram at the depot</p>{PARA}</article>"
    items = [
        {"url": "https://example.org/a", "html": _page(body), "source": "a"},
        {"url": "https://example.org/b", "html": _page(body), "source": "b"},
    ]
    step = CleanStep(rules={"a": CleaningRules(drop_lines=["^Photo:"])})
    out = list(articles_from_items(items, workers=2, step=step))
    assert "Photo:" not in out[0]["text"] and "Photo:" in out[1]["text"]
    assert out[0]["removed"][-1] == {"rule": "source:drop_lines:^Photo:", "text": "Photo: a tram at the depot"}


def test_extract_outcomes_runs_the_step_it_is_handed_in_the_worker():
    from pipeline.stages.clean import clean_one

    body = f"<article>{PARAS}<p>Photo: a tram at the depot</p>{PARA}</article>"
    items = [
        {"url": "https://example.org/en", "html": _page(body), "source": "en"},
        {"url": "https://example.org/de", "html": _page(body), "source": "de"},
        {"url": "https://example.org/empty", "html": "", "source": "en"},
    ]
    rules = {"en": CleaningRules(drop_lines=["^Photo:"]), "de": None}
    step = CleanStep(rules=rules, languages={"en": "en", "de": "de"})
    out = list(extract_outcomes(items, workers=2, rules_for=lambda item: rules[item["source"]], then=step))
    assert all(isinstance(o, PageOutcome) for o in out)
    record = out[0].record
    assert out[0].ok and "Photo:" in record["text"]  # the extracted record itself is not cleaned
    assert out[0].then == clean_one(record, rules["en"], language="en")
    assert "Photo:" not in out[0].then["text"] and out[0].then["content_hash"]
    assert out[1].then == {"error": "wrong_language", "detail": "text is 'en', the source is configured as 'de'"}
    assert not out[2].ok and out[2].then is None  # nothing to clean
    assert out[2].record == {"url": "https://example.org/empty", "error": "empty", "detail": ""}


def test_extract_batch_kills_a_page_that_hangs_and_goes_on():
    # A per-source rule with catastrophic backtracking: (a+)+ on 40 a's and a "!" never ends.
    # It hangs its worker for real, which is what the timeout is for.
    html = _page(f"<article>{PARAS}<p>{'a' * 40}!</p></article>")
    evil = CleanStep(rules={"evil": CleaningRules(drop_lines=[r"^(a+)+$"])})
    items = [
        {"url": "https://example.org/hangs", "html": html, "source": "evil"},
        {"url": "https://example.org/ok", "html": html, "source": "ok"},
        {"url": "https://example.org/ok2", "html": html, "source": "ok"},
    ]
    out = list(articles_from_items(items, workers=2, timeout=1, step=evil))
    assert out[0] == {"url": "https://example.org/hangs", "error": "timeout", "detail": "no result after 1s"}
    assert "a" * 40 + "!" in out[1]["text"] and out[2]["url"] == "https://example.org/ok2" and "text" in out[2]


# ------------------------------------------------------------------ stage


def _sources(tmp_path: Path) -> Path:
    path = tmp_path / "sources.yaml"
    path.write_text(
        "sources:\n  - name: courier\n    feeds: ['https://courier.example.org/feed']\n"
        "    cleaning:\n      drop_lines: ['^The bridge will be closed again']\n",
        encoding="utf-8",
    )
    return path


def test_extract_stage_against_a_real_bucket(bucket, s3_settings, tmp_path):
    ctx = RunContext(run_id="20261127T120000Z", s3=s3_settings, sources_path=_sources(tmp_path))
    article = (DATA / "wordpress_boilerplate.html").read_bytes()
    nav = _page("<nav>" + "".join(f"<a href='/s{i}'>Section {i}</a> " for i in range(80)) + "</nav>").encode()
    # declared ISO-8859-1 by the server, but the bytes are UTF-8
    misdeclared = _page(
        "<article><h1>Café culture</h1>" + PARAS.replace("council", "café owners' council") + "</article>"
    ).encode("utf-8")
    writer = RotatingWarcWriter(
        raw_prefix(ctx.run_id, "courier"),
        warc_basename("courier"),
        upload=lambda path, key: bucket.put_file(key, path),
        local_dir=tmp_path / "warc",
    )
    html_type = [
        ("Content-Type", "text/html; charset=utf-8"),
        ("ETag", '"abc"'),
        ("Last-Modified", "Tue, 05 Mar 2024 09:00:00 GMT"),
    ]
    kind = lambda k: {SOURCE_FIELD: "courier", KIND_FIELD: k}
    _, article_id = writer.write(
        url="https://courier.example.org/news/bridge",
        status=200,
        headers=html_type,
        body=article,
        extra=kind("article"),
    )
    _, nav_id = writer.write(
        url="https://courier.example.org/sections", status=200, headers=html_type, body=nav, extra=kind("article")
    )
    writer.write(
        url="https://courier.example.org/cafe",
        status=200,
        headers=[("Content-Type", "text/html; charset=iso-8859-1")],
        body=misdeclared,
        extra=kind("article"),
    )
    writer.write(
        url="https://courier.example.org/feed",
        status=200,
        headers=[("Content-Type", "application/rss+xml")],
        body=b"<rss></rss>",
        extra=kind("feed"),
    )
    writer.write(
        url="https://courier.example.org/gone", status=404, headers=html_type, body=article, extra=kind("article")
    )
    (warc_key,) = writer.close()

    out_key = extract_stage(ctx, warc_key, workers=2)

    assert out_key == extracted_key(ctx.run_id, warc_key) and warc_key.endswith("/courier-00001.warc.gz")
    rows = [json.loads(line) for line in gzip.decompress(bucket.get(out_key)).splitlines()]
    assert [r["url"] for r in rows] == ["https://courier.example.org/news/bridge", "https://courier.example.org/cafe"]
    bridge, cafe = rows
    assert bridge["source"] == "courier" and bridge["warc_key"] == warc_key
    assert bridge["warc_record_id"] == article_id
    assert bridge["http_etag"] == '"abc"' and bridge["http_last_modified"] == "Tue, 05 Mar 2024 09:00:00 GMT"
    assert bridge["fetched_at"].endswith("Z")

    # Text-level cleaning is the clean stage's: run it over the stage's output.
    from pipeline.stages.clean import clean_stage

    cleaned = list(bucket.iter_jsonl(clean_stage(ctx, [out_key])))
    assert [r["url"] for r in cleaned] == [r["url"] for r in rows]
    bridge, cafe = cleaned
    assert bridge["content_hash"] and bridge["article_id"]
    assert "See also" not in bridge["text"]
    # the source's own drop_lines rule ran
    assert "closed again" not in bridge["text"]
    assert any(r["rule"].startswith("source:drop_lines:") for r in bridge["removed"])
    # mojibake from the wrong charset is repaired
    assert "café owners" in cafe["text"] and "Ã" not in cafe["text"]

    rejects = list(bucket.iter_jsonl(rejects_key(ctx.run_id, extract_rejects_name(warc_key))))
    assert len(rejects) == 1
    assert rejects[0]["reason"] == "navigation_only" and rejects[0]["stage"] == "extract"
    assert rejects[0]["warc_record_id"] == nav_id and rejects[0]["source"] == "courier"


# ------------------------------------------------------------------ CLI


def _args(*argv: str) -> argparse.Namespace:
    return configure_extract(argparse.ArgumentParser()).parse_args(list(argv))


def test_cli_single_page(tmp_path, capsys):
    page = tmp_path / "page.html"
    page.write_bytes((DATA / "wordpress_boilerplate.html").read_bytes())
    assert cmd_extract(_args(str(page), "--url", "https://courier.example.org/x")) == 0
    rec = json.loads(capsys.readouterr().out)
    assert rec["title"].startswith("Harbour bridge") and rec["removed"]


def test_cli_not_an_article_exits_3_with_reason(tmp_path, capsys):
    from pipeline.cli.main import main

    page = tmp_path / "page.html"
    page.write_bytes(b"")
    assert main(["extract", str(page), "--url", "https://example.org/x"]) == 3
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == "error: not an article: empty\n"


def test_cli_bad_usage_exits_2(tmp_path, capsys):
    from pipeline.cli.main import main

    page = tmp_path / "page.html"
    page.write_bytes(b"<html></html>")
    assert main(["extract", str(page)]) == 2
    assert "--url" in capsys.readouterr().err
    assert main(["extract", str(tmp_path / "missing.html"), "--url", "https://example.org/"]) == 2
    assert "error: cannot read" in capsys.readouterr().err


def test_cli_jsonl_one_line_out_per_line_in(tmp_path, capsys):
    good = (DATA / "wordpress_boilerplate.html").read_text(encoding="utf-8")
    lines = [
        json.dumps({"url": "https://example.org/1", "html": good}),
        "not json",
        json.dumps({"url": "https://example.org/3", "html": ""}),
    ]
    src = tmp_path / "in.jsonl"
    src.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(Exception, match="1 of 3 input lines unusable: line 2: not JSON"):  # exit 1, after all lines
        cmd_extract(_args("--jsonl", str(src), "--workers", "2"))
    out = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(out) == 3
    assert out[0]["url"] == "https://example.org/1" and "text" in out[0]
    assert out[1]["error"] == "bad_input" and out[1]["line"] == 2
    assert out[2] == {"url": "https://example.org/3", "error": "empty", "detail": ""}


def test_standfirst_repeating_the_description_is_removed_but_a_plain_first_paragraph_is_kept():
    dek = "Four new stops will open by the end of next year after a narrow vote at the council."
    head = f'<title>Tram line grows</title><meta name="description" content="{dek}">'
    as_heading = _page(f"<article><h1>Tram line grows</h1><h2 class='c-subheadline'>{dek}</h2>{PARAS}</article>", head)
    rec = article_from_html(as_heading, "https://example.org/tram")
    assert dek not in rec["text"]
    assert {"rule": "html:standfirst", "text": dek} in rec["removed"]
    # a CMS that derives the description from the first paragraph: that paragraph is the article's own
    as_paragraph = _page(f"<article><h1>Tram line grows</h1><p>{dek}</p>{PARAS}</article>", head)
    assert article_from_html(as_paragraph, "https://example.org/tram")["text"].startswith(dek)


def test_related_headlines_spliced_into_the_body_are_removed():
    links = "<br>".join(
        f"<a href='/n/{i}'>Headline number {i} about something else entirely</a> [VIDEO]" for i in range(3)
    )
    run = "".join(f"<p><a href='/r/{i}'>Another story somewhere else, number {i}</a></p>" for i in range(2))
    body = (
        f"<article>{PARAS}<p><strong>DON'T MISS</strong></p><p>{links}</p>{PARA}{run}"
        f"<p>The closing paragraph of the story has <a href='/x'>one link</a> in running text, which stays.</p>"
        f"</article>"
    )
    rec = article_from_html(_page(body), ARTICLE_URL)
    assert "Headline number" not in rec["text"] and "Another story" not in rec["text"]
    assert "DON'T MISS" not in rec["text"]
    assert "one link in running text" in rec["text"]
    rules = [r["rule"] for r in rec["removed"]]
    assert "html:link_list" in rules and rules.count("html:link_run") == 2


def test_a_sources_timezone_dates_naive_page_times():
    # the page states a time without an offset; the source's `timezone:` says where the newsroom is
    from pipeline.core.config import SourcesConfig

    config = SourcesConfig.model_validate(
        {
            "sources": [
                {"name": "mumbai", "feeds": ["https://news.example.in/feed"], "timezone": "Asia/Kolkata"},
                {"name": "nowhere", "feeds": ["https://news.example.org/feed"]},
            ]
        }
    )
    rules = config.cleaning_rules()
    page = _page(
        "<article><h1>Monsoon arrives early</h1>" + PARAS + "</article>",
        "<title>Monsoon arrives early</title><meta property='article:published_time' content='2026-06-02T08:15:00'>",
    )
    dated = extract_page(page, "https://news.example.in/2026/06/02/monsoon", rules=rules["mumbai"])
    assert dated["published"] == "2026-06-02T08:15:00+05:30"
    assert dated["published_precision"] == "second" and dated["published_offset_minutes"] == 330
    undated = extract_page(page, "https://news.example.org/2026/06/02/monsoon", rules=rules["nowhere"])
    assert undated["published"] == "2026-06-02" and undated["published_precision"] == "day"
    assert undated["published_offset_minutes"] is None
