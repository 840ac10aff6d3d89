"""The extraction safety net: a pruning rule (or trafilatura's precision mode) that removes an article's
body is undone for that page, against a plain trafilatura pass; and `cleaning.disable` turns rules off."""

from __future__ import annotations

import pytest

from pipeline.core.config import CleaningRules, Source
from pipeline.core.errors import NotAnArticle
from pipeline.flows.pages import article_from_html
from pipeline.text.normalise import word_count

URL = "https://news.example.org/2026/11/30/harbour-tram"
BODY = [
    f"Paragraph {n}: the harbour tram line will get four new stops by the end of next year, the council "
    f"decided on Tuesday after a debate that lasted most of the afternoon and ended in vote number {n}, "
    "with residents of the old quarter saying the works would close their street for months."
    for n in range(8)
]


def _page(wrapper_class: str) -> str:
    """A news page whose body sits in a container with `wrapper_class` (as metered-paywall wrappers do),
    on a page with a lot of other text: the body is under a third of it, so pruning may take it."""
    nav = "".join(f"<li><a href='/section/{i}'>Section number {i}</a></li>" for i in range(40))
    more = "".join(
        f"<li><a href='/2026/11/{i}/story'>Another headline about the city council and its budget, part {i}</a></li>"
        for i in range(120)
    )
    paras = "".join(f"<p>{p}</p>" for p in BODY)
    return (
        "<!DOCTYPE html><html><head><meta charset='utf-8'><title>Harbour tram gets four new stops</title></head>"
        f"<body><header><ul class='menu'>{nav}</ul></header><main><article>"
        "<h1>Harbour tram gets four new stops</h1>"
        f"<div class='{wrapper_class}'>{paras}</div></article>"
        f"<div class='more-links'><ul>{more}</ul></div></main>"
        "<footer><p>Copyright 2026 The Harbour News. All rights reserved.</p></footer></body></html>"
    )


def test_a_paywall_wrapper_holding_the_body_is_undone_and_logged():
    record = article_from_html(_page("article-body paywall"), URL)
    for paragraph in BODY:
        assert paragraph in record["text"]
    (event,) = [w for w in record["warnings"] if w["rule"].startswith("safety_net")]
    assert event["rule"] == "safety_net:html:widget:paywall"
    assert event["words"] >= sum(word_count(p) for p in BODY) * 0.9
    assert f"{event['words']} of the" in event["message"]
    # the undone rule's blocks are back in the text, so they are no longer listed as removed
    assert not [r for r in record["removed"] if r["rule"] == "html:widget:paywall"]


def test_without_the_safety_net_that_body_is_lost():
    # the same page with the net turned off: the paywall rule takes the body, what is left reads as a link page
    with pytest.raises(NotAnArticle) as err:
        article_from_html(_page("article-body paywall"), URL, rules=CleaningRules(disable=["safety_net"]))
    assert err.value.reason in ("too_short", "no_article_text", "navigation_only")


def test_a_real_widget_stays_removed_and_the_net_does_not_fire():
    page = _page("article-body").replace(
        "</article>", "<div class='share-bar'><a href='/s'>Share on Facebook</a> <a href='/t'>Tweet</a></div></article>"
    )
    record = article_from_html(page, URL)
    assert "Share on Facebook" not in record["text"] and BODY[0] in record["text"]
    assert not [w for w in record["warnings"] if w["rule"].startswith("safety_net")]


def test_cleaning_disable_turns_one_built_in_rule_off():
    article = "".join(f"<p>{p}</p>" for p in BODY[:5])
    page = (
        "<!DOCTYPE html><html><head><title>T</title></head><body><article><h1>Harbour tram</h1>"
        f"{article}<p>See also: Council approves the new budget</p>"
        "<div class='share-bar'><a href='/s'>Share on Facebook</a> <a href='/t'>Tweet</a> <a href='/e'>Email</a></div>"
        "</article></body></html>"
    )
    default = article_from_html(page, URL)
    assert "See also" not in default["text"]
    assert {"related_link"} <= {r["rule"] for r in default["removed"]}
    kept = article_from_html(page, URL, rules=CleaningRules(disable=["related_link"]))
    assert "See also: Council approves the new budget" in kept["text"]
    assert "related_link" not in {r["rule"] for r in kept["removed"]}


def test_a_disabled_widget_family_is_not_pruned():
    page = _page("article-body")
    rules = CleaningRules(disable=["html:widget"])
    assert (
        rules.disables("html:widget:share") and rules.disables("html:widget") and not rules.disables("html:link_list")
    )
    record = article_from_html(page, URL, rules=rules)
    assert not [r for r in record["removed"] if r["rule"].startswith("html:widget")]


def test_sources_file_accepts_cleaning_disable():
    source = Source.model_validate(
        {
            "name": "harbour",
            "feeds": ["https://news.example.org/feed"],
            "cleaning": {"disable": ["html:widget:paywall"]},
        }
    )
    assert source.cleaning.disables("html:widget:paywall")
    assert not source.cleaning.disables("html:widget:promo")
