"""Evaluation gate: extraction quality on both shared sets must not drop, and no page may fall far below
plain trafilatura.

Runs extraction and cleaning (`article_from_html`, over all cores, the page-type decision off: it has its own
gate in tests/test_page_type.py) on the 181 pages of the
article-extraction-benchmark and the 695 article pages of wcxb-dev, scores them with the benchmark's own
method and compares with benchmarks/extract_baseline.json, written by
`python -m benchmarks.bench_extract --update-baseline` when a change is meant to move the numbers:
- F1 on each set may not drop more than 0.002 below the committed figure;
- on every page where plain trafilatura scores >= 0.8 (its F1 is committed, trafilatura being pinned),
  ours may not score below that F1 - 0.3.
"""

from __future__ import annotations

import json

import pytest

from benchmarks import extract_eval as ev
from benchmarks.bench_extract import BASELINE
from benchmarks.scoring import score

TOLERANCE = 0.002


def test_scorer_matches_the_published_method():
    truth = {"a": "one two three four five", "b": "", "c": "alpha beta gamma delta"}
    perfect = score(dict(truth), truth)
    assert perfect["f1"] == perfect["accuracy"] == 1.0
    # empty prediction: 1 against an empty truth, 0 against a non-empty one
    empty = score({}, truth)
    assert empty["per_page"]["b"] == {"precision": 1.0, "recall": 1.0}
    assert empty["per_page"]["a"] == {"precision": 0.0, "recall": 0.0}
    # 5 tokens -> 2 shingles; predicting 4 of them -> 1 shingle, all right: precision 1, recall 1/2
    half = score({"a": "one two three four"}, {"a": "one two three four five"})
    assert half["precision"] == 1.0 and half["recall"] == 0.5 and half["accuracy"] == 0.0


@pytest.fixture(scope="module")
def baseline() -> dict:
    return json.loads(BASELINE.read_text(encoding="utf-8"))


@pytest.mark.parametrize("name", list(ev.SETS))
def test_extraction_quality_does_not_drop(name, baseline):
    committed = baseline["sets"][name]
    pages = ev.load_set(name)
    assert len(pages.truth) == committed["pages"]
    records = ev.run_ours(((name, pages.urls[k], pages.html[k]) for k in pages.html), workers=None, disable={name: []})
    texts = {k: records[(name, pages.urls[k])].get("text") or "" for k in pages.html}
    result = score(texts, pages.truth)
    assert result["f1"] >= committed["f1"] - TOLERANCE, (
        f"{name}: F1 {result['f1']:.4f} is below the committed {committed['f1']:.4f} - {TOLERANCE} "
        f"(precision {result['precision']:.4f}, recall {result['recall']:.4f})"
    )
    floor = committed["trafilatura_floor"]
    assert len(floor) > 0.7 * len(pages.truth)  # the floor covers most pages: it was written, not emptied
    below = {
        key: (round(ev.page_f1(texts[key], pages.truth[key]), 3), theirs)
        for key, theirs in floor.items()
        if ev.page_f1(texts[key], pages.truth[key]) < theirs - ev.FLOOR_MARGIN
    }
    assert not below, f"{name}: pages far below plain trafilatura (ours, theirs): {below}"
