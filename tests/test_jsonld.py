"""pipeline.text.jsonld: every JSON-LD object of a page, parsed once, malformed blocks skipped or repaired."""

from __future__ import annotations

import json

import pytest
from lxml import html as lxml_html

from pipeline.text.jsonld import jsonld_nodes, node_types


def _page(*blocks: str, script_type: str = "application/ld+json") -> lxml_html.HtmlElement:
    scripts = "".join(f'<script type="{script_type}">{b}</script>' for b in blocks)
    return lxml_html.fromstring(f"<html><head>{scripts}</head><body><p>x</p></body></html>")


def _names(tree: lxml_html.HtmlElement) -> list[str]:
    return [n.get("name") for n in jsonld_nodes(tree)]


def test_graph_and_arrays_are_flattened_in_document_order() -> None:
    graph = {
        "@context": "https://schema.org",
        "@graph": [{"@type": "WebSite", "name": "a"}, [{"@type": "NewsArticle", "name": "b"}]],
    }
    tree = _page(json.dumps(graph), json.dumps([{"@type": "Person", "name": "c"}]))
    assert _names(tree) == ["a", "b", "c"]


def test_graph_container_with_its_own_type_is_kept() -> None:
    tree = _page(json.dumps({"@type": "WebPage", "name": "page", "@graph": [{"@type": "Person", "name": "p"}]}))
    assert _names(tree) == ["page", "p"]


@pytest.mark.parametrize(
    "script_type", ["application/ld+json", "APPLICATION/LD+JSON", " application/ld+json; charset=utf-8 "]
)
def test_type_attribute_matched_loosely(script_type: str) -> None:
    assert _names(_page('{"@type": "Thing", "name": "n"}', script_type=script_type)) == ["n"]


def test_other_script_types_ignored() -> None:
    assert jsonld_nodes(_page('{"@type": "Thing", "name": "n"}', script_type="application/json")) == []


@pytest.mark.parametrize(
    "raw",
    [
        '{"@type": "Thing", "name": "n",}',  # trailing comma
        '<!-- {"@type": "Thing", "name": "n"} -->',  # HTML comment around the JSON
        '{"@type": "Thing",\n// the publisher asked for this\n"name": "n"}',  # a // comment line
    ],
)
def test_lenient_cases_are_repaired(raw: str) -> None:
    assert _names(_page(raw)) == ["n"]


def test_raw_newline_inside_a_string() -> None:
    assert _names(_page('{"@type": "Thing", "name": "two\nlines"}')) == ["two\nlines"]


def test_objects_one_after_the_other_in_one_block() -> None:
    assert _names(_page('{"@type": "A", "name": "x"},{"@type": "B", "name": "y"}')) == ["x", "y"]
    assert _names(_page('{"@type": "A", "name": "x"}\n{"@type": "B", "name": "y"}')) == ["x", "y"]


@pytest.mark.parametrize("raw", ["{not json", "", "   ", '{"a": "unterminated', "[" * 50_000, "null", "42"])
def test_malformed_blocks_are_skipped_without_raising(raw: str) -> None:
    tree = _page(raw, '{"@type": "Thing", "name": "ok"}')
    assert _names(tree) == ["ok"]


def test_node_types_are_plain_names() -> None:
    node = {"@type": ["schema:NewsArticle", "https://schema.org/Article", "", 3]}
    assert node_types(node) == ["NewsArticle", "Article"]
    assert node_types({"@type": "BlogPosting"}) == ["BlogPosting"]
    assert node_types({}) == []
