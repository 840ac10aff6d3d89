"""Extraction measured the same way by `make bench-extract` and the quality gate in the test suite.

Both shared sets (../shared/benchmarks: the 181-page article-extraction-benchmark and the 695 article
pages of wcxb-dev), scored with the benchmark's own method (`benchmarks.scoring`), ours against plain
trafilatura; the pages ours loses; and a rule ablation: each pruning or cleaning rule turned off
(`cleaning.disable`, the same switch a source has) on the pages where it fired.
"""

from __future__ import annotations

import gzip
import json
import logging
import multiprocessing as mp
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.scoring import score
from pipeline.core.config import CleaningRules
from pipeline.core.paths import ROOT
from pipeline.text.decoding import decode_html

SHARED = ROOT.parent / "shared" / "benchmarks"
SETS = {"article-extraction-benchmark": SHARED / "article-extraction-benchmark", "wcxb-dev": SHARED / "wcxb-dev"}
#: A page is lost when plain trafilatura scores at least LOST_THEIRS on it and ours below LOST_OURS.
LOST_THEIRS, LOST_OURS = 0.8, 0.5
#: The quality gate's floor: no page more than this below plain trafilatura where it scores >= LOST_THEIRS.
FLOOR_MARGIN = 0.3
#: Always-on "rules" the ablation also turns off (they fire on every page, so every page is re-run).
GLOBAL_RULES = ("trafilatura:favor_precision", "safety_net")
#: Extraction quality is measured on the labelled article pages with the page-type decision off: that decision
#: has its own measure and goal (`make bench-page-type`, tests/test_page_type.py), and a page it refuses would
#: count here as text lost by extraction.
EXTRACTION_ONLY = ("page_type",)


@dataclass
class PageSet:
    """One benchmark set's pages: decoded HTML, URL and true article body by id (article pages only),
    plus what the set knows besides (wcxb-dev's `must_not_contain`)."""

    name: str
    html: dict[str, str]
    urls: dict[str, str]
    truth: dict[str, str]
    must_not_contain: dict[str, list[str]] = field(default_factory=dict)
    others: dict[str, str] = field(default_factory=dict)  # non-article pages' HTML (wcxb-dev)


def load_set(name: str) -> PageSet:
    """A shared set, decoded as the crawl decodes a response without a charset header."""
    folder = SETS[name]
    truth_raw = json.loads((folder / "ground-truth.json").read_text(encoding="utf-8"))
    out = PageSet(name, {}, {}, {})
    for key, entry in sorted(truth_raw.items()):
        page = decode_html(None, gzip.decompress((folder / "html" / f"{key}.html.gz").read_bytes()))
        if entry.get("page_type", "article") != "article":
            out.others[key] = page
            continue
        out.html[key] = page
        out.urls[key] = entry.get("url") or f"https://benchmark.invalid/{key}"
        out.truth[key] = entry.get("articleBody") or ""
        if entry.get("must_not_contain"):
            out.must_not_contain[key] = list(entry["must_not_contain"])
    return out


def page_f1(pred: str, true: str) -> float:
    """F1 of one page by the benchmark's method."""
    r = score({"p": pred}, {"p": true})
    return r["f1"]


def per_page_f1(preds: dict[str, str], truth: dict[str, str]) -> dict[str, float]:
    return {k: page_f1(preds.get(k) or "", t) for k, t in truth.items()}


def run_ours(
    items: Iterable[tuple[str, str, str]], workers: int, disable: dict[str, list[str]] | None = None
) -> dict[tuple[str, str], dict]:
    """Records of `article_from_html` for (tag, url, html) items over `workers` processes, by (tag, url).

    `disable` maps a tag to the rules turned off for its items (the tag is passed as the item's source); a tag in
    it also has the page-type decision off (EXTRACTION_ONLY). Without `disable`: the whole page flow."""
    from pipeline.flows.pages import articles_from_items
    from pipeline.stages.clean import CleanStep

    rules = {tag: CleaningRules(disable=[*names, *EXTRACTION_ONLY]) for tag, names in (disable or {}).items()}
    items = list(items)
    out = articles_from_items(
        ({"url": url, "html": html, "source": tag} for tag, url, html in items),
        workers=workers,
        rules_for=lambda item: rules.get(item["source"]),
        step=CleanStep(rules),
    )
    return {(tag, url): rec for (tag, url, _), rec in zip(items, out)}


def _plain(item: tuple[str, str]) -> str:
    import trafilatura

    logging.disable(logging.WARNING)
    return trafilatura.extract(item[0], url=item[1]) or ""


def run_plain(pages: list[tuple[str, str]], workers: int) -> list[str]:
    """Plain `trafilatura.extract()` (its defaults) over (html, url) pages, `workers` processes."""
    with mp.get_context("fork").Pool(workers) as pool:
        return pool.map(_plain, pages, chunksize=8)


@dataclass
class SetResult:
    """Ours and plain trafilatura on one set."""

    name: str
    ours: dict[str, dict]  # id -> record (text, removed, warnings) or {"error", ...}
    plain: dict[str, str]
    ours_f1: dict[str, float]
    plain_f1: dict[str, float]
    summary: dict[str, dict]  # "ours" / "trafilatura" -> f1, precision, recall, pages_per_s

    def text(self, key: str) -> str:
        return self.ours[key].get("text") or ""

    def lost(self) -> list[str]:
        """Pages plain trafilatura gets (F1 >= 0.8) and ours does not (F1 < 0.5)."""
        return [k for k, f in self.plain_f1.items() if f >= LOST_THEIRS and self.ours_f1[k] < LOST_OURS]

    def below_floor(self) -> list[str]:
        """Pages more than FLOOR_MARGIN below plain trafilatura where it scores >= 0.8."""
        return [k for k, f in self.plain_f1.items() if f >= LOST_THEIRS and self.ours_f1[k] < f - FLOOR_MARGIN]

    def safety_net_events(self) -> Counter:
        return Counter(
            w["rule"]
            for rec in self.ours.values()
            for w in rec.get("warnings") or []
            if w["rule"].startswith("safety_net")
        )


def evaluate(pages: PageSet, workers: int, *, with_plain: bool = True) -> SetResult:
    """Ours (and plain trafilatura) over the set's article pages; pages/s from the pools' wall time."""
    keys = list(pages.html)
    start = time.perf_counter()
    records = run_ours(((pages.name, pages.urls[k], pages.html[k]) for k in keys), workers, {pages.name: []})
    ours_s = time.perf_counter() - start
    ours = {k: records[(pages.name, pages.urls[k])] for k in keys}
    plain: dict[str, str] = {}
    plain_s = 0.0
    if with_plain:
        start = time.perf_counter()
        plain = dict(zip(keys, run_plain([(pages.html[k], pages.urls[k]) for k in keys], workers)))
        plain_s = time.perf_counter() - start
    summary = {}
    ours_text = {k: ours[k].get("text") or "" for k in keys}
    for name, preds, spent in (("ours", ours_text, ours_s), ("trafilatura", plain, plain_s)):
        if name == "trafilatura" and not with_plain:
            continue
        r = score(preds, pages.truth)
        summary[name] = {
            "f1": r["f1"],
            "precision": r["precision"],
            "recall": r["recall"],
            "pages_per_s": len(keys) / spent if spent else None,
        }
    return SetResult(
        pages.name,
        ours,
        plain,
        per_page_f1(ours_text, pages.truth),
        per_page_f1(plain, pages.truth) if with_plain else {},
        summary,
    )


def fired_rules(record: dict) -> set[str]:
    """The rules that removed something from this page (pruning and cleaning), by name."""
    return {r["rule"] for r in record.get("removed") or [] if not r["rule"].startswith("source:")}


def ablation(sets: list[tuple[PageSet, SetResult]], workers: int, min_pages: int = 3) -> list[dict]:
    """For each rule that fired on at least `min_pages` pages (plus the always-on ones): the pages it fired on
    per set and the F1 change on each set with it turned off. Positive delta: the set is better without it.

    A rule turned off changes only the pages it fired on (and pages ours refused, whose rules are unknown),
    so only those are re-run; every other page keeps its output."""
    fired: dict[str, dict[str, list[str]]] = {}
    for pages, result in sets:
        for key, rec in result.ours.items():
            for rule in fired_rules(rec):
                fired.setdefault(rule, {}).setdefault(pages.name, []).append(key)
    rules = [r for r, by in fired.items() if sum(map(len, by.values())) >= min_pages]
    rules = sorted(rules, key=lambda r: -sum(map(len, fired[r].values()))) + list(GLOBAL_RULES)
    items: list[tuple[str, str, str]] = []
    for rule in rules:
        for pages, result in sets:
            refused = [k for k, rec in result.ours.items() if "error" in rec]
            keys = (
                list(pages.html)
                if rule in GLOBAL_RULES
                else sorted(set(fired.get(rule, {}).get(pages.name, [])) | set(refused))
            )
            items += [(f"{rule}\x00{pages.name}", pages.urls[k], pages.html[k]) for k in keys]
    records = run_ours(items, workers, disable={tag: [tag.split("\x00")[0]] for tag, _, _ in items})
    rows = []
    for rule in rules:
        row: dict = {"rule": rule, "fired": {}, "delta": {}, "pages": {}}
        for pages, result in sets:
            tag = f"{rule}\x00{pages.name}"
            texts = {k: result.text(k) for k in pages.html}
            changed = {}
            for k in pages.html:
                rec = records.get((tag, pages.urls[k]))
                if rec is not None:
                    texts[k] = rec.get("text") or ""
                    changed[k] = page_f1(texts[k], pages.truth[k]) - result.ours_f1[k]
            row["fired"][pages.name] = (
                len(pages.html) if rule in GLOBAL_RULES else len(fired.get(rule, {}).get(pages.name, []))
            )
            row["delta"][pages.name] = score(texts, pages.truth)["f1"] - result.summary["ours"]["f1"]
            row["pages"][pages.name] = changed  # per-page F1 change with the rule off
        rows.append(row)
    return rows


def culprit(rows: list[dict], set_name: str, key: str) -> str | None:
    """The rule whose turning off raises this page's F1 the most (None when none does)."""
    best, gain = None, 0.01
    for row in rows:
        d = row["pages"].get(set_name, {}).get(key, 0.0)
        if d > gain:
            best, gain = row["rule"], d
    return best


#: Widgets of common CMS plugins whose text must not reach an article (WordPress/Jetpack share and like
#: buttons, related-post blocks, comment forms), looked for in every extracted text.
CMS_WIDGET_PHRASES = (
    "Like this:",
    "Like Loading...",
    "Share this:",
    "Click to share on",
    "Related Posts",
    "Leave a Reply",
    "Leave a Comment",
    "Your email address will not be published",
    "Required fields are marked",
    "Save my name, email",
    "Notify me of new posts",
    "Posted in",
)


def boilerplate_left(texts: dict[str, str], pages: PageSet) -> dict[str, int]:
    """How many `must_not_contain` strings (wcxb-dev) and CMS widget phrases survive in the texts."""
    nmc = sum(s in (texts.get(k) or "") for k, strings in pages.must_not_contain.items() for s in strings)
    cms = sum(p.casefold() in (texts.get(k) or "").casefold() for k in pages.html for p in CMS_WIDGET_PHRASES)
    return {
        "must_not_contain": nmc,
        "must_not_contain_total": sum(map(len, pages.must_not_contain.values())),
        "cms_widgets": cms,
    }


def baseline_floor(result: SetResult) -> dict[str, float]:
    """Plain trafilatura's F1 on the pages where it scores >= 0.8 (the quality gate's floor), rounded."""
    return {k: round(f, 4) for k, f in sorted(result.plain_f1.items()) if f >= LOST_THEIRS}


def write_baseline(path: Path, results: list[SetResult], version: str) -> None:
    data = {
        "extractor_version": version,
        "sets": {
            r.name: {
                "pages": len(r.ours),
                "f1": round(r.summary["ours"]["f1"], 4),
                "precision": round(r.summary["ours"]["precision"], 4),
                "recall": round(r.summary["ours"]["recall"], 4),
                "trafilatura_f1": round(r.summary["trafilatura"]["f1"], 4),
                "trafilatura_floor": baseline_floor(r),
            }
            for r in results
        },
    }
    path.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
