"""Evaluation gate: extraction quality on the 181-page article-extraction-benchmark must not drop.

Runs extraction and cleaning over every page (through articles_from_items, so it uses all cores), scores it with
the benchmark's own method and fails when F1 falls more than 0.005 below the figure committed in
benchmarks/extract_baseline.json (update it with `python -m benchmarks.bench_extract --update-baseline`
when a change is meant to move it).
"""

from __future__ import annotations

import json

from benchmarks.bench_extract import BASELINE, load_benchmark
from benchmarks.scoring import score
from pipeline.flows.pages import articles_from_items

TOLERANCE = 0.005


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


def test_extraction_quality_does_not_drop():
    baseline = json.loads(BASELINE.read_text(encoding="utf-8"))
    html, urls, truth = load_benchmark()
    assert len(truth) == baseline["pages"] == 181
    keys = list(html)
    out = articles_from_items(({"url": urls[k], "html": html[k]} for k in keys), workers=None)
    preds = {k: o.get("text", "") for k, o in zip(keys, out)}
    result = score(preds, truth)
    assert result["f1"] >= baseline["f1"] - TOLERANCE, (
        f"F1 {result['f1']:.4f} is below the committed {baseline['f1']:.4f} - {TOLERANCE} "
        f"(precision {result['precision']:.4f}, recall {result['recall']:.4f})"
    )
