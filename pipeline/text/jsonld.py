"""A page's JSON-LD (schema.org) objects, parsed once with a real JSON parser.

Metadata (authors, dates, section) and the page-type decision both read them; `jsonld_nodes` gives
every object of every `<script type="application/ld+json">` block, with `@graph` containers and
top-level arrays flattened, in document order. Malformed blocks are skipped (CMSs emit trailing
commas, raw newlines in strings, HTML comments around the JSON, `//` comment lines and several objects
one after the other in one block; those lenient cases are retried).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

from lxml import etree
from lxml.html import HtmlElement

__all__ = ["jsonld_nodes", "node_types"]

# Matched loosely, as browsers and search engines do: any case, spaces, a "; charset=" parameter.
_SCRIPTS = etree.XPath('//script[contains(translate(@type, "LDJSON", "ldjson"), "ld+json")]')
_MIME = "application/ld+json"
_TRAILING_COMMA = re.compile(r",\s*([\]}])")
# A line that is only a `//` comment (hand-written templates keep their notes); removed on the retry only.
_LINE_COMMENT = re.compile(r"^\s*//[^\n]*$", re.MULTILINE)
_SEPARATOR = re.compile(r"[\s,;]*")
_COMMENT = re.compile(r"^\s*(?:<!--|/\*<!\[CDATA\[\*/|//<!\[CDATA\[)|(?:-->|/\*\]\]>\*/|//\]\]>)\s*$")
#: Blocks larger than this are not parsed (a page's JSON-LD is a few KB; a huge one is data, not metadata).
MAX_BLOCK_CHARS = 1_000_000
#: Nesting depth followed when flattening (`@graph` inside arrays inside objects ...).
MAX_DEPTH = 8


_DECODER = json.JSONDecoder(strict=False)  # strict=False: raw control characters inside strings


def _skip_separators(raw: str, pos: int) -> int:
    match = _SEPARATOR.match(raw, pos)
    return match.end() if match else pos


def _decode_all(raw: str) -> Any:
    """One JSON value, or a list of the values written one after the other (`{...}{...}`, `{...},{...}`)."""
    values = []
    pos = _skip_separators(raw, 0)
    while pos < len(raw):
        value, pos = _DECODER.raw_decode(raw, pos)
        values.append(value)
        pos = _skip_separators(raw, pos)
    if not values:
        raise ValueError("empty JSON-LD block")
    return values[0] if len(values) == 1 else values


def _load(raw: str) -> Any:
    raw = _COMMENT.sub("", raw.strip())
    try:
        return _DECODER.decode(raw)
    except (ValueError, RecursionError):  # RecursionError: arrays nested thousands deep
        pass
    try:
        return _decode_all(_TRAILING_COMMA.sub(r"\1", _LINE_COMMENT.sub("", raw)))
    except (ValueError, RecursionError):
        return None


def _flatten(value: Any, depth: int = 0) -> Iterator[dict]:
    if depth > MAX_DEPTH:
        return
    if isinstance(value, list):
        for item in value:
            yield from _flatten(item, depth + 1)
    elif isinstance(value, dict):
        graph = value.get("@graph")
        if "@type" in value or not graph:
            yield value
        if graph:
            yield from _flatten(graph, depth + 1)


def jsonld_nodes(tree: HtmlElement) -> list[dict]:
    """Every JSON-LD object on the page (`@graph` and arrays flattened), in document order."""
    nodes: list[dict] = []
    for script in _SCRIPTS(tree):
        if script.get("type", "").split(";", 1)[0].strip().lower() != _MIME:
            continue
        raw = script.text
        if not raw or len(raw) > MAX_BLOCK_CHARS:
            continue
        nodes.extend(_flatten(_load(raw)))
    return nodes


def node_types(node: dict) -> list[str]:
    """The node's `@type` values as plain names ("NewsArticle", never "schema:NewsArticle" or a URL)."""
    value = node.get("@type")
    values = value if isinstance(value, list) else [value]
    return [str(v).rsplit("/", 1)[-1].rsplit(":", 1)[-1] for v in values if isinstance(v, str) and v]
