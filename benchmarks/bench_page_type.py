"""The page-type gate on wcxb-dev: articles kept, non-article pages refused, by label; and its cost.

    python -m benchmarks.bench_page_type [--workers N] [--refresh] [--json PATH]

A page counts as refused when extraction refuses it (NotAnArticle: no text) or when `classify_page` gives a
kind that is not kept. Three views:
- cv: 5-fold cross-validation with folds split by site (`train_page_type.fold_of`): the model is trained on four
  folds, its threshold set from those four alone (an inner cross-validation), and the fifth is classified;
- in-sample: the committed model (`pipeline/stages/page_type_model.json`) on every page;
- "gate" shares count only the pages that extraction gave text (the gate's own decisions); "overall" shares
  count extraction's refusals too.
Cost: milliseconds per page of the metadata the gate reads (JSON-LD types, og:type) and of `classify_page`,
on the parsed tree (parsing is the extraction's, not counted), over every page with text, in one process.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from benchmarks.train_page_type import DEFAULT_KEEP, DEFAULT_L2, Page, fold_of, page_inputs, training_data
from benchmarks.train_page_type import load_pages as load_wcxb
from pipeline.stages.page_type import PageModel, PageType, classify_page, load_model

LABEL_ORDER = ("article", "listing", "collection", "product", "service", "forum", "documentation")


def cv_models(pages: Sequence[Page], *, l2: float = DEFAULT_L2, keep: float = DEFAULT_KEEP) -> dict[int, PageModel]:
    """{fold: the model trained without that fold}, each threshold set by an inner cross-validation."""
    data = training_data(pages)
    return {
        int(k): PageModel.from_dict(data.model(np.flatnonzero(data.folds != k), l2=l2, keep=keep))
        for k in np.unique(data.folds)
    }


def classify_all(pages: Sequence[Page], model_of: Callable[[Page], PageModel]) -> tuple[dict[str, PageType], dict]:
    """({key: PageType} for the pages with text, timings in ms per page: metadata and classify_page)."""
    out: dict[str, PageType] = {}
    meta_ms: list[float] = []
    gate_ms: list[float] = []
    for page in pages:
        if page.refused is not None:
            continue
        t0 = time.perf_counter()
        tree, types, og = page_inputs(page.html)  # parse + metadata: parsing is timed apart below
        t1 = time.perf_counter()
        assert tree is not None
        out[page.key] = classify_page(tree, page.url, page.text, schema_types=types, og_type=og, model=model_of(page))
        gate_ms.append((time.perf_counter() - t1) * 1000)
        meta_ms.append((t1 - t0) * 1000)
    return out, {"classify_ms": _summary(gate_ms), "parse_and_metadata_ms": _summary(meta_ms)}


def metadata_ms(pages: Sequence[Page]) -> dict:
    """Milliseconds per page of reading the JSON-LD types and og:type off an already parsed tree."""
    from trafilatura.utils import load_html

    from pipeline.text.jsonld import jsonld_nodes, node_types

    times = []
    for page in pages:
        if page.refused is not None:
            continue
        tree = load_html(page.html)
        if tree is None:
            continue
        t0 = time.perf_counter()
        [t for node in jsonld_nodes(tree) for t in node_types(node)]
        tree.xpath("//meta[@property='og:type']/@content")
        times.append((time.perf_counter() - t0) * 1000)
    return _summary(times)


def _summary(times: list[float]) -> dict:
    ordered = sorted(times)
    return {
        "mean": round(statistics.fmean(times), 3),
        "median": round(statistics.median(times), 3),
        "p90": round(ordered[int(0.9 * (len(ordered) - 1))], 3),
        "max": round(ordered[-1], 3),
        "pages": len(times),
    }


def shares(pages: Sequence[Page], decided: dict[str, PageType]) -> dict:
    """Per label: pages, refused by extraction, refused by the gate, and the share handled right (articles kept,
    the others refused), overall and for the gate alone."""
    rows: dict[str, dict] = defaultdict(lambda: {"pages": 0, "extraction_refused": 0, "gate_refused": 0})
    for page in pages:
        row = rows[page.label]
        row["pages"] += 1
        if page.refused is not None:
            row["extraction_refused"] += 1
        elif not decided[page.key].kept:
            row["gate_refused"] += 1
    out: dict = {}
    for label in sorted(rows, key=lambda lab: LABEL_ORDER.index(lab) if lab in LABEL_ORDER else 99):
        row = rows[label]
        refused = row["extraction_refused"] + row["gate_refused"]
        with_text = row["pages"] - row["extraction_refused"]
        if label == "article":
            row["overall_kept"] = round(1 - refused / row["pages"], 4)
            row["gate_kept"] = round(1 - row["gate_refused"] / max(1, with_text), 4)
        else:
            row["overall_refused"] = round(refused / row["pages"], 4)
            row["gate_refused_share"] = round(row["gate_refused"] / max(1, with_text), 4)
        out[label] = row
    non = [r for lab, r in out.items() if lab != "article"]
    n_pages = sum(r["pages"] for r in non)
    n_text = n_pages - sum(r["extraction_refused"] for r in non)
    out["non-article"] = {
        "pages": n_pages,
        "extraction_refused": sum(r["extraction_refused"] for r in non),
        "gate_refused": sum(r["gate_refused"] for r in non),
        "overall_refused": round(sum(r["extraction_refused"] + r["gate_refused"] for r in non) / n_pages, 4),
        "gate_refused_share": round(sum(r["gate_refused"] for r in non) / max(1, n_text), 4),
    }
    return out


def kinds(decided: dict[str, PageType], pages: Sequence[Page]) -> dict[str, dict[str, int]]:
    """{label: {kind: pages}}: what the gate called each label's pages."""
    out: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for page in pages:
        if page.key in decided:
            out[page.label][decided[page.key].kind] += 1
    return {label: dict(v) for label, v in out.items()}


def _print(title: str, table: dict) -> None:
    print(f"\n{title}")
    print(f"  {'label':14s} {'pages':>5s} {'extr.ref':>8s} {'gate.ref':>8s} {'overall':>8s} {'gate':>8s}")
    for label, row in table.items():
        overall = row.get("overall_kept", row.get("overall_refused"))
        gate = row.get("gate_kept", row.get("gate_refused_share"))
        what = "kept" if label == "article" else "refused"
        print(
            f"  {label:14s} {row['pages']:5d} {row['extraction_refused']:8d} {row['gate_refused']:8d} "
            f"{overall:8.3f} {gate:8.3f}  ({what})"
        )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=1, help="extraction processes for an empty text cache")
    parser.add_argument("--refresh", action="store_true", help="re-extract the texts (ignore the cache)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)

    pages = load_wcxb(workers=args.workers, refresh=args.refresh)
    models = cv_models(pages)
    cv, _ = classify_all(pages, lambda p: models[fold_of(p.domain)])
    committed = load_model()
    in_sample, timing = classify_all(pages, lambda p: committed)
    timing["metadata_ms"] = metadata_ms(pages)
    result = {
        "cv": shares(pages, cv),
        "in_sample": shares(pages, in_sample),
        "cv_kinds": kinds(cv, pages),
        "timing": timing,
    }
    _print("5-fold cross-validated by site (share handled right: articles kept, others refused)", result["cv"])
    _print("in-sample, committed model", result["in_sample"])
    print("\nkinds given (cv):")
    for label, counts in result["cv_kinds"].items():
        print(f"  {label:14s} {counts}")
    print("\nms per page (one process):")
    for name, row in timing.items():
        print(
            f"  {name:22s} mean {row['mean']:.2f}  median {row['median']:.2f}  p90 {row['p90']:.2f}  max {row['max']:.1f}"
        )
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
