"""Extraction quality and speed: `python -m benchmarks.bench_extract [--json PATH]`.

One run, one table: this project's `article_from_html` (extract, then clean), trafilatura's
`extract()` with its defaults, and readability-lxml (the text of its summary), each scored on
the 181 real pages of ../shared/benchmarks/article-extraction-benchmark with the benchmark's own
method (benchmarks/scoring.py), plus pages/second of the process pool against one process.
A second table scores ours and trafilatura on ../shared/benchmarks/wcxb-dev: F1 on its 695
article pages, and the page-type gate (articles kept, non-article pages refused). Timings are noisy on a shared machine: compare the ratios of one
run, not numbers across runs. When `examples.sample_site` is importable, its articles
are extracted too and the boilerplate phrases left in their text are counted.
"""

from __future__ import annotations

import argparse
import gzip
import json
import logging
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

from w3lib.encoding import html_to_unicode

from benchmarks.scoring import score
from pipeline.core.paths import ROOT

BENCHMARK_DIR = ROOT.parent / "shared" / "benchmarks" / "article-extraction-benchmark"
WCXB_DIR = ROOT.parent / "shared" / "benchmarks" / "wcxb-dev"
OURS = "news-ingest article_from_html"
BASELINE = Path(__file__).with_name("extract_baseline.json")


def load_benchmark(folder: Path = BENCHMARK_DIR) -> tuple[dict[str, str], dict[str, str], dict[str, str]]:
    """(html by id, url by id, true article body by id); pages decoded as Scrapy would (w3lib)."""
    truth_raw = json.loads((folder / "ground-truth.json").read_text(encoding="utf-8"))
    html, urls, truth = {}, {}, {}
    for key, entry in sorted(truth_raw.items()):
        data = gzip.decompress((folder / "html" / f"{key}.html.gz").read_bytes())
        html[key] = html_to_unicode(None, data)[1]
        urls[key] = entry.get("url") or f"https://benchmark.invalid/{key}"
        truth[key] = entry.get("articleBody") or ""
    return html, urls, truth


def ours(html: str, url: str) -> str:
    from pipeline.core.errors import NotAnArticle
    from pipeline.flows.pages import article_from_html

    try:
        return article_from_html(html, url)["text"]
    except NotAnArticle:
        return ""


def trafilatura_default(html: str, url: str) -> str:
    import trafilatura

    return trafilatura.extract(html, url=url) or ""


def readability_lxml(html: str, url: str) -> str:
    from lxml import html as lxml_html
    from readability import Document

    try:
        summary = Document(html, url=url).summary(html_partial=True)
    except Exception:  # readability raises bare Exception on pages it cannot score: an empty prediction
        return ""
    return lxml_html.fromstring(summary).text_content() if summary.strip() else ""


def run_interleaved(
    fns: dict[str, Callable[[str, str], str]], html: dict[str, str], urls: dict[str, str]
) -> tuple[dict[str, dict], dict[str, float]]:
    """Predictions of each fn over all pages in this process, and each fn's pages/second.

    The extractors take turns page by page, so load from other processes on a shared
    machine slows them all alike and the ratios stay comparable within one run.
    """
    first = next(iter(html))
    for fn in fns.values():
        fn(html[first], urls[first])  # warm-up: lazy imports and models
    preds: dict[str, dict] = {name: {} for name in fns}
    spent = dict.fromkeys(fns, 0.0)
    for key, page in html.items():
        for name, fn in fns.items():
            start = time.perf_counter()
            preds[name][key] = fn(page, urls[key])
            spent[name] += time.perf_counter() - start
    return preds, {name: len(html) / spent[name] for name in fns}


def run_pool(html: dict[str, str], urls: dict[str, str], workers: int) -> tuple[dict, float]:
    """Predictions of extract_batch with `workers` processes, and pages/second (pool start-up included)."""
    from pipeline.flows.pages import articles_from_items

    keys = list(html)
    start = time.perf_counter()
    out = list(articles_from_items(({"url": urls[k], "html": html[k]} for k in keys), workers=workers))
    elapsed = time.perf_counter() - start
    return {k: o.get("text", "") for k, o in zip(keys, out)}, len(keys) / elapsed


def best_rates(html: dict[str, str], urls: dict[str, str], workers: int, repeat: int) -> tuple[float, float]:
    """Best-of-`repeat` pages/second of `article_from_html` in this process and of the pool, alternating.

    Best-of because other processes on a shared machine only ever slow a pass down; alternating so
    that a busy spell hits both sides."""
    single = pool = 0.0
    for _ in range(repeat):
        start = time.perf_counter()
        for key, page in html.items():
            ours(page, urls[key])
        single = max(single, len(html) / (time.perf_counter() - start))
        pool = max(pool, run_pool(html, urls, workers)[1])
    return single, pool


def sample_site_leftovers() -> dict | None:
    """Boilerplate phrases and spliced headlines left in the sample site's articles; None without the site."""
    try:
        from examples.sample_site import BOILERPLATE_PHRASES, SampleSite
    except ImportError:
        return None
    from urllib.request import urlopen

    from pipeline.core.errors import NotAnArticle
    from pipeline.flows.pages import article_from_html

    site = SampleSite()
    site.start()
    try:
        entries = [
            e for e in site.expected() if e.get("kind") == "article" and e.get("expected") == "stored" and e.get("text")
        ]
        preds, truth, leftovers, headlines, failures = {}, {}, {}, 0, []
        for e in entries:
            with urlopen(e["url"], timeout=10) as resp:  # 127.0.0.1 only: the project's own site
                _, text = html_to_unicode(resp.headers.get("Content-Type"), resp.read())
            try:
                got = article_from_html(text, e["url"])["text"]
            except NotAnArticle as exc:
                failures.append(f"{e['url']}: {exc.reason}")
                got = ""
            preds[e["url"]], truth[e["url"]] = got, e["text"]
            low = got.casefold()
            for phrase in BOILERPLATE_PHRASES:
                if phrase.casefold() in low:
                    leftovers[phrase] = leftovers.get(phrase, 0) + 1
            for title in (e.get("related_headlines") or []) + (e.get("sidebar_headlines") or []):
                headlines += title.casefold() in low
    finally:
        site.stop()
    scored = score(preds, truth)
    return {
        "articles": len(entries),
        "phrases_left": sum(leftovers.values()),
        "by_phrase": leftovers,
        "headlines_left": headlines,
        "not_extracted": failures,
        "f1": scored["f1"],
        "precision": scored["precision"],
        "recall": scored["recall"],
        "accuracy": scored["accuracy"],
    }


def load_wcxb(folder: Path = WCXB_DIR) -> tuple[dict[str, str], dict[str, str], dict[str, dict]]:
    """(html by id, url by id, ground-truth entry by id) of wcxb-dev, decoded as Scrapy would (w3lib)."""
    truth = json.loads((folder / "ground-truth.json").read_text(encoding="utf-8"))
    html, urls = {}, {}
    for key, entry in sorted(truth.items()):
        html[key] = html_to_unicode(None, gzip.decompress((folder / "html" / f"{key}.html.gz").read_bytes()))[1]
        urls[key] = entry.get("url") or f"https://benchmark.invalid/{key}"
    return html, urls, truth


def _trafilatura_item(item: tuple[str, str]) -> str | None:
    logging.disable(logging.WARNING)
    return trafilatura_default(*item) or None


def wcxb_rows(workers: int) -> dict[str, dict]:
    """Ours and trafilatura's defaults on wcxb-dev, both over `workers` processes: article F1, and the
    page-type gate (a page counts as refused when no text comes back)."""
    import multiprocessing as mp

    from pipeline.flows.pages import articles_from_items

    html, urls, truth = load_wcxb()
    keys = list(html)
    outputs: dict[str, dict[str, str | None]] = {}
    ours_out = articles_from_items(({"url": urls[k], "html": html[k]} for k in keys), workers=workers)
    outputs[OURS] = {k: o.get("text") for k, o in zip(keys, ours_out)}
    with mp.get_context("fork").Pool(workers) as pool:
        theirs = pool.map(_trafilatura_item, [(html[k], urls[k]) for k in keys], chunksize=8)
    outputs["trafilatura 2.3.1 extract() defaults"] = dict(zip(keys, theirs))
    articles = [k for k in keys if truth[k]["page_type"] == "article"]
    others = [k for k in keys if truth[k]["page_type"] != "article"]
    rows = {}
    for name, out in outputs.items():
        result = score({k: out[k] or "" for k in articles}, {k: truth[k]["articleBody"] or "" for k in articles})
        rows[name] = {
            "f1": result["f1"],
            "precision": result["precision"],
            "recall": result["recall"],
            "articles_kept": sum(bool(out[k]) for k in articles) / len(articles),
            "non_articles_refused": sum(not out[k] for k in others) / len(others),
            "articles": len(articles),
            "non_articles": len(others),
        }
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    parser.add_argument("--workers", type=int, default=2, help="processes for the pool row (default 2)")
    parser.add_argument("--repeat", type=int, default=3, help="passes for the pool/one-process comparison (default 3)")
    parser.add_argument(
        "--update-baseline", action="store_true", help=f"write this run's F1 of article_from_html to {BASELINE.name}"
    )
    args = parser.parse_args(argv)
    logging.disable(logging.WARNING)  # trafilatura logs every discarded page

    html, urls, truth = load_benchmark()
    fns = {
        OURS: ours,
        "trafilatura 2.3.1 extract() defaults": trafilatura_default,
        "readability-lxml 0.9 summary": readability_lxml,
    }
    preds, speeds = run_interleaved(fns, html, urls)
    rows: dict[str, dict] = {}
    for name in fns:
        result = score(preds[name], truth)
        result.pop("per_page")
        rows[name] = {**result, "pages_per_s": speeds[name]}
    pool_preds, _ = run_pool(html, urls, args.workers)
    pool_score = score(pool_preds, truth)
    single, pool_speed = best_rates(html, urls, args.workers, args.repeat)
    rows[f"news-ingest articles_from_items ({args.workers} workers)"] = {
        k: v for k, v in pool_score.items() if k != "per_page"
    } | {"pages_per_s": pool_speed}

    print(f"article-extraction-benchmark: {len(truth)} pages\n")
    print(f"| {'extractor':<40} | {'F1':>6} | {'prec.':>6} | {'recall':>6} | {'exact':>6} | {'pages/s':>7} |")
    print(f"|{'-' * 42}|{'-' * 8}|{'-' * 8}|{'-' * 8}|{'-' * 8}|{'-' * 9}|")
    for name, r in rows.items():
        print(
            f"| {name:<40} | {r['f1']:.4f} | {r['precision']:.4f} | {r['recall']:.4f} | {r['accuracy']:.4f} "
            f"| {r['pages_per_s']:7.1f} |"
        )
    print(
        f"\npool speed-up: {pool_speed / single:.2f}x with {args.workers} workers (best of {args.repeat} alternating passes; "
        f"one process: {single:.1f} pages/s); "
        f"load average during the run: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"
    )

    wcxb = wcxb_rows(args.workers)
    first = next(iter(wcxb.values()))
    print(f"\nwcxb-dev: {first['articles']} article pages (F1), {first['non_articles']} non-article pages\n")
    print(f"| {'extractor':<40} | {'F1':>6} | {'prec.':>6} | {'recall':>6} | {'kept':>6} | {'refused':>7} |")
    print(f"|{'-' * 42}|{'-' * 8}|{'-' * 8}|{'-' * 8}|{'-' * 8}|{'-' * 9}|")
    for name, r in wcxb.items():
        print(
            f"| {name:<40} | {r['f1']:.4f} | {r['precision']:.4f} | {r['recall']:.4f} "
            f"| {r['articles_kept']:.4f} | {r['non_articles_refused']:7.4f} |"
        )
    print("(kept: share of article pages with text; refused: share of non-article pages without)")

    sample = sample_site_leftovers()
    if sample is not None:
        print(
            f"\nsample site: {sample['articles']} articles, F1 {sample['f1']:.4f} "
            f"(precision {sample['precision']:.4f}, recall {sample['recall']:.4f}); "
            f"boilerplate phrases left: {sample['phrases_left']} {sample['by_phrase'] or ''}; "
            f"spliced/sidebar headlines left: {sample['headlines_left']}; "
            f"not extracted: {len(sample['not_extracted'])}"
        )

    out = {
        "benchmark": "article-extraction-benchmark",
        "pages": len(truth),
        "rows": rows,
        "pool_speedup": pool_speed / single,
        "single_process_best_pages_per_s": single,
        "workers": args.workers,
        "repeat": args.repeat,
        "load_average": os.getloadavg()[0],
        "sample_site": sample,
        "wcxb_dev": wcxb,
    }
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1), encoding="utf-8")
    if args.update_baseline:
        from pipeline.stages.extract import EXTRACTOR_VERSION

        r = rows[OURS]
        BASELINE.write_text(
            json.dumps(
                {
                    "f1": round(r["f1"], 4),
                    "precision": round(r["precision"], 4),
                    "recall": round(r["recall"], 4),
                    "extractor_version": EXTRACTOR_VERSION,
                    "pages": len(truth),
                },
                indent=1,
            )
            + "\n",
            encoding="utf-8",
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
