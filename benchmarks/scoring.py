"""Scorer of the article-extraction-benchmark, exactly as its README describes it.

Tokens are the matches of ``\\w+`` (Unicode); a text becomes the multiset of its
4-token shingles (a text shorter than 4 tokens is one shorter shingle, and an
empty text is the one empty shingle, which is how the published scorer gives an
empty prediction against an empty truth 1 and against a non-empty truth 0).
Per page TP/FP/FN are the multiset intersection and differences, normalised by
their sum so every page weighs the same; precision and recall are the means
over pages and F1 their harmonic mean. Accuracy is the share of pages whose
token lists match exactly.
"""

from __future__ import annotations

import re
from collections import Counter

_TOKEN = re.compile(r"\w+", re.UNICODE)
SHINGLE = 4


def tokens(text: str | None) -> list[str]:
    """The benchmark's tokens of a text."""
    return _TOKEN.findall(text or "")


def shingles(text: str | None, n: int = SHINGLE) -> Counter:
    """Multiset of n-token shingles (at least one, possibly short or empty)."""
    toks = tokens(text)
    return Counter(" ".join(toks[i : i + n]) for i in range(max(1, len(toks) - n + 1)))


def page_counts(pred: str | None, true: str | None) -> tuple[float, float, float]:
    """(tp, fp, fn) of one page, normalised to sum to 1."""
    p, t = shingles(pred), shingles(true)
    tp = sum((p & t).values())
    fp = sum((p - t).values())
    fn = sum((t - p).values())
    total = tp + fp + fn
    return (tp / total, fp / total, fn / total) if total else (0.0, 0.0, 0.0)


def score(predictions: dict[str, str], truth: dict[str, str]) -> dict:
    """F1, precision, recall and accuracy of predictions over the ids of `truth`.

    A missing prediction counts as an empty text.
    """
    precisions: list[float] = []
    recalls: list[float] = []
    exact = 0
    per_page: dict[str, dict[str, float]] = {}
    for key, true in truth.items():
        pred = predictions.get(key) or ""
        tp, fp, fn = page_counts(pred, true)
        prec = tp / (tp + fp) if tp + fp else 0.0
        rec = tp / (tp + fn) if tp + fn else 0.0
        precisions.append(prec)
        recalls.append(rec)
        exact += tokens(pred) == tokens(true)
        per_page[key] = {"precision": prec, "recall": rec}
    n = len(truth) or 1
    precision = sum(precisions) / n
    recall = sum(recalls) / n
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "f1": f1,
        "precision": precision,
        "recall": recall,
        "accuracy": exact / n,
        "pages": len(truth),
        "per_page": per_page,
    }
