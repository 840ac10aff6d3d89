"""Run reports: what happened in a run, per source and per stage, as JSON and HTML in `reports/`.

`write_report()` assembles the report from what the stages wrote to the bucket
(crawl summaries, rejects, the deduped articles), so the CLI run, the DAG's
report task and re-extraction all report the same way. Besides the counts it
computes quality signals per source (share of articles with title / author /
date, body length distribution, boilerplate removals by rule) and flags a
source that falls well below the others, so one outlet's broken extraction
stands out. `pipeline.report.html.render_html()` turns the report into a
self-contained HTML page stored beside the JSON.
"""

from __future__ import annotations

import logging
import sys
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from typing import Any, TextIO

from pipeline.core.bucket import StorageError
from pipeline.core.config import HealthThresholds
from pipeline.core.context import RunContext
from pipeline.core.layout import (
    REPORTS_PREFIX,
    deduped_key,
    delta_commit_key,
    rejects_prefix,
    report_key,
    report_run_id,
)
from pipeline.dataset.delta import run_commits
from pipeline.report.health import (
    crawl_rejects,
    http_status_mix,
    network_errors,
    refused_article_pages,
    source_health,
)
from pipeline.report.html import render_html
from pipeline.stages.crawl import crawl_summaries

log = logging.getLogger(__name__)

#: Body length histogram bin edges (words). News briefs run to ~50 words, typical articles
#: 300-1,500; the open-ended last bin catches long reads and pages that swallowed a whole site.
LENGTH_BINS = (0, 100, 250, 500, 1000, 2000)

#: A source is flagged when a quality signal falls below this share of the median of the
#: other sources (e.g. 40% of its articles have a title while the others have ~100%).
#: A judgement call, not a calibrated number: real outlets differ (wire copies often lack
#: bylines) by much less than a broken template does; tune it on real runs.
FLAG_RATIO = 0.6
#: Fewer articles than this and a share says nothing about a source: no flag.
FLAG_MIN_ARTICLES = 3
#: Rejected URLs listed per reason in the report; the rest are counted (the JSONL files hold them all).
REJECT_SAMPLES = 20
#: Recent run reports read for trends, yield medians and "last successful run".
TREND_RUNS = 20
#: The signals compared across sources (key in the per-source quality dict, label).
FLAG_SIGNALS = {
    "title_share": "articles with a title",
    "author_share": "articles with an author",
    "published_share": "articles with a date",
    "yield": "articles per article page fetched",
    "median_words": "median body length (words)",
}


def write_report(
    ctx: RunContext,
    *,
    sources: list[str],
    timings: dict[str, float],
    failed_sources: dict[str, str],
    deduped_key: str | None,
    manifest_key: str | None,
) -> dict:
    """Assemble the run report from what the stages wrote, store it (JSON + HTML) under reports/, return it."""

    summaries = {s["source"]: s for s in crawl_summaries(ctx)}
    rejects = _read_rejects_with_keys(ctx)
    articles = ctx.bucket.iter_jsonl(deduped_key) if deduped_key else iter(())
    history = recent_reports(ctx.bucket, ctx.run_id)
    report = build_report(
        ctx.run_id,
        sources=sources,
        timings=timings,
        failed_sources=failed_sources,
        summaries=summaries,
        rejects=rejects,
        articles=articles,
        manifest_key=manifest_key,
        previous=next((r for r in history if _alive(r)), None),
        history=history,
        thresholds=_thresholds(ctx, sources),
    )
    store_report(ctx.bucket, report)
    return report


def _read_rejects_with_keys(ctx: RunContext) -> list[dict]:
    """All rejects of the run, each with `rejects_key`: the JSONL file it came from (the report links it)."""
    out: list[dict] = []
    for key in ctx.bucket.list(rejects_prefix(ctx.run_id)):
        out.extend({**row, "rejects_key": key} for row in ctx.bucket.iter_jsonl(key))
    return out


def _thresholds(ctx: RunContext, sources: Iterable[str]) -> dict[str, HealthThresholds]:
    """Each source's health thresholds from the sources file (defaults for a source no longer in it)."""
    try:
        config = {s.name: s.health for s in ctx.sources.sources}
    except Exception as exc:  # a report of an old run must not fail on today's sources file
        log.warning("health thresholds: sources file unreadable (%s); using the defaults", exc)
        config = {}
    return {name: config.get(name, HealthThresholds()) for name in sources}


def store_report(bucket, report: dict) -> None:
    """Write the report's JSON and its HTML page to the bucket (deterministic keys: a re-run overwrites)."""

    report["html"] = report_key(report["run_id"], "html")
    bucket.put(report["html"], render_html(report).encode("utf-8"), content_type="text/html; charset=utf-8")
    bucket.put_json(report_key(report["run_id"]), report)


def build_report(
    run_id: str,
    *,
    sources: list[str],
    timings: dict[str, float],
    failed_sources: dict[str, str],
    summaries: dict[str, dict],
    rejects: list[dict],
    articles: Iterable[dict],
    manifest_key: str | None,
    previous: dict | None = None,
    history: list[dict] | None = None,
    thresholds: Mapping[str, HealthThresholds] | None = None,
) -> dict:
    """The report dict from the stage outputs (pure: no bucket access). Articles are streamed once.

    `previous` is the report of the last run that reached a source (if any): each source's quality is
    also compared with its own previous values, which catches a drop even when there is only one source.
    `history`: recent run reports, newest first, for trends, yield medians and each source's last success.
    """
    history = list(history or [])
    acc = _Accumulator()
    for article in articles:
        acc.add(article)
    names = list(sources) + sorted({a for a in acc.sources} - set(sources))
    rejects_by_source = Counter(r.get("source") for r in rejects)

    per_source: dict[str, dict] = {}
    for name in names:
        stats = summaries.get(name, {}).get("stats", {})
        per_source[name] = {
            "pages_fetched": int(stats.get("news/fetched", 0)),
            # article pages only (feeds, sitemaps, robots.txt and section pages left out); no such stat means
            # none was archived (a quiet incremental run), not "count every page fetched"
            "article_pages": int(stats.get("news/fetched/article", stats.get("news/archived/article", 0))),
            "articles": acc.count[name],
            "canonical": acc.canonical[name],
            "duplicates": acc.count[name] - acc.canonical[name],
            "rejects": rejects_by_source.get(name, 0),
            "crawl_stats": stats,
            "failed": failed_sources.get(name),
        }
    quality = {name: acc.quality(name, per_source[name]) for name in names}
    health = _health(run_id, names, per_source, summaries, rejects, failed_sources, history, thresholds or {})
    by_stage: dict[str, Counter] = defaultdict(Counter)
    for r in rejects:
        by_stage[r.get("stage") or "?"][r.get("reason") or "?"] += 1

    report = {
        "run_id": run_id,
        "sources": per_source,
        "failed_sources": failed_sources,
        "pages_fetched": sum(p["pages_fetched"] for p in per_source.values()),
        "articles_stored": acc.total,
        "canonical_articles": sum(acc.canonical.values()),
        "duplicates": {kind: acc.dup_kinds.get(kind, 0) for kind in ("url", "exact", "near", "rewrite")},
        "clusters_with_copies": acc.clusters_with_copies(),
        "clusters": acc.cluster_summary(),
        "rejects": len(rejects),
        "rejects_by_reason": {f"{s}/{r}": n for s, c in by_stage.items() for r, n in c.items()},
        "rejects_by_stage": {s: dict(c.most_common()) for s, c in sorted(by_stage.items())},
        "quality": quality,
        "removed_by_rule": dict(acc.removed_total.most_common()),
        "safety_net_by_rule": dict(acc.net_total.most_common()),
        "length_bins": list(LENGTH_BINS),
        "flags": quality_flags(quality, per_source, rejects) + trend_flags(quality, previous),
        "health": health,
        "status_counts": dict(Counter(h["status"] for h in health.values())),
        "rejected": rejected_urls(rejects),
        "rejects_files": sorted({r["rejects_key"] for r in rejects if r.get("rejects_key")}),
        "previous_run": previous.get("run_id") if previous else None,
        "previous_quality": {
            n: {k: q.get(k) for k in FLAG_SIGNALS}
            for n, q in (previous or {}).get("quality", {}).items()
            if n in quality
        },
        "stage_seconds": {k: round(v, 3) for k, v in timings.items()},
        "manifest": manifest_key,
    }
    report["trends"] = trends(report, history)
    return report


def _health(
    run_id: str,
    names: list[str],
    per_source: dict[str, dict],
    summaries: Mapping[str, dict],
    rejects: list[dict],
    failed_sources: Mapping[str, str],
    history: list[dict],
    thresholds: Mapping[str, HealthThresholds],
) -> dict[str, dict]:
    """Each source's status and reasons, with the crawl facts an operator checks (HTTP mix, errors, bytes)."""
    refused = refused_article_pages(rejects)
    out: dict[str, dict] = {}
    for name in names:
        src = per_source[name]
        stats = summaries[name].get("stats", {}) if name in summaries else None
        limits = thresholds.get(name, HealthThresholds())
        recent = [
            y
            for r in history[: limits.history_runs]
            if (r.get("health") or {}).get(name, {}).get("status") in ("ok", "degraded")
            and (y := (r.get("quality") or {}).get(name, {}).get("yield")) is not None
        ]
        h = source_health(
            stats=stats,
            failed_reason=failed_sources.get(name),
            articles=src["articles"],
            article_pages=src["article_pages"],
            refused_pages=refused.get(name, 0),
            thresholds=limits,
            recent_yields=recent,
        )
        stats = stats or {}
        h.update(
            {
                "http_status": http_status_mix(stats),
                "network_errors": network_errors(stats),
                "crawl_rejects": crawl_rejects(stats),
                "bytes": int(stats.get("downloader/response_bytes", stats.get("news/bytes", 0)) or 0),
                "latency_ms": _latency(stats),
                "elapsed_seconds": stats.get("elapsed_time_seconds"),
            }
        )
        h["last_success"] = run_id if h["status"] != "failed" else _last_success(name, history)
        h["failing_since"] = _failing_since(name, run_id, history) if h["status"] == "failed" else None
        out[name] = h
    return out


def _latency(stats: Mapping[str, Any]) -> dict | None:
    """Latency percentiles (ms, the histogram bin's upper edge) from the crawl's `news/latency_ms/<edge>` stats."""
    prefix = "news/latency_ms/"
    bins = sorted(
        (float(k[len(prefix) :]), int(v))
        for k, v in stats.items()
        if k.startswith(prefix) and _number(k[len(prefix) :])
    )
    total = sum(n for _, n in bins)
    if not total:
        return None
    out: dict[str, int | str] = {}
    for q in (0.5, 0.9, 0.99):
        seen = 0
        for edge, n in bins:
            seen += n
            if seen >= q * total:
                out[f"p{int(q * 100)}"] = (
                    int(edge) if edge != float("inf") else f">{int(bins[-2][0]) if len(bins) > 1 else 0}"
                )
                break
    out["responses"] = total
    return out


def _number(text: str) -> bool:
    try:
        float(text)  # "inf": slower than the last edge
    except ValueError:
        return False
    return True


def _last_success(name: str, history: list[dict]) -> str | None:
    """The newest earlier run in which `name` was reached (None: not within the history read)."""
    for r in history:
        h = (r.get("health") or {}).get(name)
        if h is not None and h.get("status") != "failed":
            return r.get("run_id")
        if h is None and name in (r.get("sources") or {}) and name not in (r.get("failed_sources") or {}):
            return r.get("run_id")  # a report from before run health: a source not failed was reached
    return None


def _failing_since(name: str, run_id: str, history: list[dict]) -> str:
    """The first run of the current streak of failures of `name` (this run when the one before was fine)."""
    since = run_id
    for r in history:
        h = (r.get("health") or {}).get(name)
        if h is None or h.get("status") != "failed":
            break
        since = r.get("run_id") or since
    return since


def rejected_urls(rejects: list[dict], cap: int = REJECT_SAMPLES) -> dict[str, dict]:
    """{stage/reason: {"count", "samples": [{url, source, detail, rejects_key}], "more"}}, most common first."""
    groups: dict[str, list[dict]] = defaultdict(list)
    for r in rejects:
        groups[f"{r.get('stage') or '?'}/{r.get('reason') or '?'}"].append(r)
    out: dict[str, dict] = {}
    for reason, rows in sorted(groups.items(), key=lambda kv: (-len(kv[1]), kv[0])):
        out[reason] = {
            "count": len(rows),
            "samples": [
                {k: r.get(k) for k in ("url", "source", "detail", "rejects_key")}
                for r in sorted(rows, key=lambda r: str(r.get("url")))[:cap]
            ],
            "more": max(0, len(rows) - cap),
        }
    return out


def trends(report: dict, history: list[dict], runs: int = TREND_RUNS) -> dict:
    """Per-source series over the last `runs` runs, oldest first (this run last), for the sparklines."""
    reports = list(reversed(history[: runs - 1])) + [report]
    series: dict[str, dict[str, list]] = {}
    for name in report["sources"]:
        s: dict[str, list] = {
            k: [] for k in ("run_id", "status", "articles", "rejects", "yield", "duplicates", "words")
        }
        for r in reports:
            src = (r.get("sources") or {}).get(name)
            q = (r.get("quality") or {}).get(name) or {}
            s["run_id"].append(r.get("run_id"))
            s["status"].append(((r.get("health") or {}).get(name) or {}).get("status"))
            s["articles"].append(src.get("articles") if src else None)
            s["rejects"].append(src.get("rejects") if src else None)
            s["yield"].append(q.get("yield"))
            s["duplicates"].append(src.get("duplicates") if src else None)
            s["words"].append(q.get("median_words"))
        series[name] = s
    return {"runs": [r.get("run_id") for r in reports], "sources": series}


class _Accumulator:
    """Per-source counters over the article stream; keeps no article text."""

    def __init__(self) -> None:
        self.total = 0
        self.sources: list[str] = []
        self.count: Counter = Counter()
        self.canonical: Counter = Counter()
        self.with_field: dict[str, Counter] = {f: Counter() for f in ("title", "author", "published")}
        self.words: dict[str, list[int]] = defaultdict(list)
        self.removed: dict[str, Counter] = defaultdict(Counter)
        self.removed_total: Counter = Counter()
        # the extraction safety net's events (rules undone on a page), per source: a misfiring rule shows here
        self.net: dict[str, Counter] = defaultdict(Counter)
        self.net_total: Counter = Counter()
        self.dup_kinds: Counter = Counter()
        self.cluster_sources: dict[str, set] = defaultdict(set)
        self.cluster_size: Counter = Counter()
        self.cluster_title: dict[str, str] = {}

    def add(self, a: dict) -> None:
        name = a.get("source") or "?"
        if name not in self.count:
            self.sources.append(name)
        self.total += 1
        self.count[name] += 1
        if not a.get("duplicate_of"):
            self.canonical[name] += 1
        for f, c in self.with_field.items():
            if a.get(f):
                c[name] += 1
        self.words[name].append(int(a.get("word_count") or 0))
        for r in a.get("removed") or []:
            rule = str(r.get("rule") if isinstance(r, dict) else r)
            self.removed[name][rule] += 1
            self.removed_total[rule] += 1
        for w in a.get("warnings") or []:
            rule = str(w.get("rule") if isinstance(w, dict) else w)
            if rule.startswith("safety_net"):
                self.net[name][rule] += 1
                self.net_total[rule] += 1
        if a.get("dup_kind"):
            self.dup_kinds[a["dup_kind"]] += 1
        cid = a.get("cluster_id")
        if cid:
            self.cluster_sources[cid].add(name)
            self.cluster_size[cid] += 1
            if not a.get("duplicate_of") or cid not in self.cluster_title:
                self.cluster_title[cid] = (a.get("title") or a.get("url") or "")[:200]

    def quality(self, name: str, per_source: dict) -> dict:
        n = self.count[name]
        words = sorted(self.words.get(name, []))
        article_pages = per_source["article_pages"]
        hist = [0] * len(LENGTH_BINS)
        for w in words:
            hist[sum(1 for edge in LENGTH_BINS[1:] if w >= edge)] += 1
        removed = self.removed.get(name, Counter())
        return {
            "articles": n,
            "title_share": _share(self.with_field["title"][name], n),
            "author_share": _share(self.with_field["author"][name], n),
            "published_share": _share(self.with_field["published"][name], n),
            "yield": _share(n, article_pages) if article_pages else None,
            "median_words": _quantile(words, 0.5),
            "words": {
                "min": words[0] if words else None,
                "p25": _quantile(words, 0.25),
                "median": _quantile(words, 0.5),
                "p75": _quantile(words, 0.75),
                "max": words[-1] if words else None,
            },
            "length_histogram": hist,
            "removed_by_rule": dict(removed.most_common()),
            "safety_net_by_rule": dict(self.net.get(name, Counter()).most_common()),
            "removals_per_article": round(sum(removed.values()) / n, 2) if n else None,
        }

    def clusters_with_copies(self) -> dict[str, int]:
        """cluster_id -> articles, for clusters with more than one article (largest first)."""
        return {k: v for k, v in self.cluster_size.most_common() if v > 1}

    def cluster_summary(self, top: int = 10) -> dict:
        """How many outlets ran each story: a histogram and the most widely run stories."""
        outlets = {cid: len(s) for cid, s in self.cluster_sources.items()}
        hist = Counter(outlets.values())
        ranked = sorted(outlets, key=lambda c: (-outlets[c], -self.cluster_size[c], c))[:top]
        return {
            "total": len(outlets),
            "with_copies": sum(1 for c in self.cluster_size.values() if c > 1),
            "outlets_histogram": {str(k): hist[k] for k in sorted(hist)},
            "top": [
                {
                    "cluster_id": c,
                    "outlets": sorted(self.cluster_sources[c]),
                    "articles": self.cluster_size[c],
                    "title": self.cluster_title.get(c, ""),
                }
                for c in ranked
                if outlets[c] > 1
            ],
        }


def _share(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def _quantile(sorted_values: list[int], q: float) -> float | None:
    """Linear-interpolated quantile of an already sorted list (None when empty)."""
    if not sorted_values:
        return None
    pos = q * (len(sorted_values) - 1)
    lo = int(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    return round(sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo), 1)


def _median(values: list[float]) -> float:
    values = sorted(values)
    mid = len(values) // 2
    return values[mid] if len(values) % 2 else (values[mid - 1] + values[mid]) / 2


def quality_flags(quality: dict[str, dict], per_source: dict[str, dict], rejects: Iterable[dict] = ()) -> list[dict]:
    """Sources whose quality signal falls well below the other sources' median, and sources
    that fetched pages but kept no article: the "look here" list at the top of the report."""
    flags: list[dict] = []
    refused = refused_article_pages(list(rejects))
    for name, q in quality.items():
        # An incremental run that found nothing new fetches feeds but no article page: no flag. Nor do
        # pages refused as not articles (about, contact, tag pages found on a section page).
        pages = per_source[name].get("article_pages", per_source[name]["pages_fetched"]) - refused.get(name, 0)
        if q["articles"] == 0 and pages > 0 and not per_source[name]["failed"]:
            flags.append(
                {
                    "source": name,
                    "signal": "articles",
                    "value": 0,
                    "others_median": None,
                    "message": f"{name}: {pages} article pages fetched, no article kept",
                }
            )
    eligible = {n: q for n, q in quality.items() if q["articles"] >= FLAG_MIN_ARTICLES}
    for signal, label in FLAG_SIGNALS.items():
        for name, q in eligible.items():
            value = q.get(signal)
            others = [o[signal] for n, o in eligible.items() if n != name and o.get(signal) is not None]
            if value is None or not others:
                continue
            ref = _median(others)
            if ref > 0 and value < FLAG_RATIO * ref:
                shown = f"{value:.0%} vs {ref:.0%}" if signal.endswith(("share", "yield")) else f"{value:g} vs {ref:g}"
                flags.append(
                    {
                        "source": name,
                        "signal": signal,
                        "value": value,
                        "others_median": round(ref, 4),
                        "message": f"{name}: {label} {shown} for the other sources",
                    }
                )
    return flags


def trend_flags(quality: dict[str, dict], previous: dict | None) -> list[dict]:
    """Sources whose quality signal fell well below their own value in the previous run."""
    if not previous:
        return []
    flags: list[dict] = []
    before_all = previous.get("quality", {})
    for name, q in quality.items():
        before = before_all.get(name)
        if not before or q["articles"] < FLAG_MIN_ARTICLES or before.get("articles", 0) < FLAG_MIN_ARTICLES:
            continue
        for signal, label in FLAG_SIGNALS.items():
            value, ref = q.get(signal), before.get(signal)
            if value is None or not ref or value >= FLAG_RATIO * ref:
                continue
            shown = f"{value:.0%}, was {ref:.0%}" if signal.endswith(("share", "yield")) else f"{value:g}, was {ref:g}"
            flags.append(
                {
                    "source": name,
                    "signal": signal,
                    "value": value,
                    "previous": ref,
                    "previous_run": previous.get("run_id"),
                    "message": f"{name}: {label} {shown} in run {previous.get('run_id')}",
                }
            )
    return flags


def previous_report(bucket, run_id: str) -> dict | None:
    """The report of the latest run before `run_id` (run ids sort by time), or None."""

    # Compare run ids, not keys: `<id>.json` sorts a suffixed id (`<id>-a`) before its base id.
    before = sorted((rid, k) for k in bucket.list(REPORTS_PREFIX) if (rid := report_run_id(k)) and rid < run_id)
    for _, key in reversed(before):
        try:
            report = bucket.get_json(key)
        except (StorageError, ValueError) as exc:  # unreadable old report: compare with the one before
            log.warning("previous report %s unreadable: %s", key, exc)
            continue
        if isinstance(report, dict) and report.get("quality") and _alive(report):
            return report
    return None


def _alive(report: Mapping[str, Any]) -> bool:
    """Did the run reach any source and keep articles? A dead run is no baseline for a trend."""
    if not report.get("quality") or not report.get("articles_stored"):
        return False
    health = report.get("health") or {}
    if health:
        return any(h.get("status") != "failed" for h in health.values())
    return set(report.get("sources") or {}) != set(report.get("failed_sources") or {})


def recent_reports(bucket, run_id: str, runs: int = TREND_RUNS) -> list[dict]:
    """The readable reports of up to `runs` runs before `run_id`, newest first."""
    before = sorted((rid, k) for k in bucket.list(REPORTS_PREFIX) if (rid := report_run_id(k)) and rid < run_id)
    out: list[dict] = []
    for _, key in reversed(before):
        if len(out) >= runs:
            break
        try:
            report = bucket.get_json(key)
        except (StorageError, ValueError) as exc:
            log.warning("report %s unreadable: %s", key, exc)
            continue
        if isinstance(report, dict):
            out.append(report)
    return out


# --------------------------------------------------------------------------- text summary


def print_summary(report: dict, out: TextIO | None = None) -> None:
    """The human summary printed at the end of a run (to stdout unless `out` is given)."""
    out = out or sys.stdout
    print(
        f"run {report['run_id']}: {report['pages_fetched']} pages fetched, "
        f"{report['articles_stored']} articles stored ({report['canonical_articles']} canonical, "
        f"duplicates: {', '.join(f'{k} {v}' for k, v in report['duplicates'].items())}), "
        f"{report['rejects']} rejects",
        file=out,
    )
    for reason, n in sorted(report["rejects_by_reason"].items()):
        print(f"  rejected {reason}: {n}", file=out)
    for name, h in (report.get("health") or {}).items():
        if h.get("status") in ("failed", "degraded"):
            print(f"  {h['status'].upper()} source {name}: {'; '.join(h.get('reasons') or [])}", file=out)
    for name, err in report.get("failed_sources", {}).items():
        if name not in (report.get("health") or {}):
            print(f"  FAILED source {name}: {err.splitlines()[-1] if err else ''}", file=out)
    for flag in report.get("flags", []):
        print(f"  CHECK {flag['message']}", file=out)
    if report.get("html"):
        print(f"  report: {report['html']} (python -m pipeline report {report['run_id']} --html FILE)", file=out)


# --------------------------------------------------------------------------- the report of a given run


def latest_run(bucket) -> str | None:
    """The run id of the newest report in the bucket (run ids sort by time)."""
    runs = [rid for k in bucket.list(REPORTS_PREFIX) if (rid := report_run_id(k))]
    return max(runs) if runs else None


def rebuild_report(ctx: RunContext, previous: dict | None = None) -> dict:
    """Recompute a run's report from its stage outputs; timings and failures come from `previous`."""

    previous = previous or {}
    deduped = deduped_key(ctx.run_id)
    # The run's commit: the latest table version whose commit info names this run.
    versions = run_commits(ctx.s3, ctx.run_id)
    sources = list(previous.get("sources") or sorted(s["source"] for s in crawl_summaries(ctx)))
    return write_report(
        ctx,
        sources=sources,
        timings=previous.get("stage_seconds", {}),
        failed_sources=previous.get("failed_sources", {}),
        deduped_key=deduped if ctx.bucket.exists(deduped) else None,
        manifest_key=delta_commit_key(versions[-1]) if versions else previous.get("manifest"),
    )
