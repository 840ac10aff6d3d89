"""Run health: one status per source, with the reasons an operator needs to act on it.

* `failed`: the source was unreachable. Its crawl raised or left no summary, no page was fetched
  (DNS, connection refused, timeouts), or robots.txt could not be fetched for any host (the crawl
  then may not fetch anything there).
* `degraded`: reachable, but too many requests ended in an HTTP 5xx / 429 or a network error, or
  article pages were fetched and far fewer were kept than the source's recent median.
* `quiet`: reachable, nothing new (no article kept, and no article page fetched that could have been one).
* `ok`: everything else.

Thresholds come from the source's `health:` block in the sources file
(`pipeline.core.config.HealthThresholds`). The crawl-only part (`crawl_failure`) needs just the crawl
summary, so a run can decide not to commit before extraction finishes.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from pipeline.core.config import HealthThresholds
from pipeline.dataset.state import is_refusal

STATUSES = ("failed", "degraded", "quiet", "ok")
#: Crawl reject reasons that mean the host could not be reached (not that a page was refused).
UNREACHABLE_REASONS = ("dns_error", "connection_refused", "timeout", "robots_unreachable", "tcp_timed_out_error")
_STATUS_PREFIX = "downloader/response_status_count/"
_EXC_PREFIX = "downloader/exception_type_count/"
_REJECT_PREFIX = "news/rejected/"
#: Exception class names of network failures (twisted.internet.error, Scrapy's download errors).
_NETWORK = re.compile(r"DNS|Resolve|Refused|TimedOut|Timeout|Connect|NeverReceived|ResponseFailed|NoRoute")


def http_status_mix(stats: Mapping[str, Any]) -> dict[str, int]:
    """{"200": n, "404": n, ...} of the responses the crawl received (retries included)."""
    mix = {k[len(_STATUS_PREFIX) :]: int(v) for k, v in stats.items() if k.startswith(_STATUS_PREFIX)}
    return dict(sorted(mix.items()))


def network_errors(stats: Mapping[str, Any]) -> dict[str, int]:
    """{exception class: n} of requests that got no response at all (DNS, refused, timeout).

    Scrapy counts every exception a request ended in, and most are the crawl's own choices (URLs already
    seen or refused, robots.txt denials, SSRF blocks: IgnoreRequest subclasses): only network errors count.
    """
    out: dict[str, int] = {}
    for key, value in stats.items():
        if key.startswith(_EXC_PREFIX) and _NETWORK.search(name := key[len(_EXC_PREFIX) :].rsplit(".", 1)[-1]):
            out[name] = out.get(name, 0) + int(value)
    return out


def crawl_rejects(stats: Mapping[str, Any]) -> dict[str, int]:
    """{reason: n} of the crawl's rejects (`news/rejected/<reason>`)."""
    return {k[len(_REJECT_PREFIX) :]: int(v) for k, v in stats.items() if k.startswith(_REJECT_PREFIX)}


def _count_text(counts: Mapping[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in Counter(counts).most_common())


def _one_line(reason: str) -> str:
    """A crawl failure's first line and, when it ends with a log tail, that tail's last line (the error)."""
    lines = [line.strip() for line in reason.strip().splitlines() if line.strip()]
    if not lines:
        return "crawl failed"
    head = lines[0].removesuffix("; log tail:")
    return f"{head}: {lines[-1]}" if len(lines) > 1 else head


def crawl_failure(stats: Mapping[str, Any] | None, failed_reason: str | None) -> list[str]:
    """Why the source counts as unreachable in this run ([] when it was reached)."""
    if failed_reason:
        return [_one_line(failed_reason)]
    if stats is None:  # no crawl facts (a report rebuilt without summaries): the articles speak for the source
        return []
    reasons = []
    unreachable = {r: n for r, n in crawl_rejects(stats).items() if r in UNREACHABLE_REASONS}
    fetched = int(stats.get("news/fetched", 0)) + int(stats.get("news/not_modified", 0))
    if fetched == 0:
        why = _count_text(unreachable) or _count_text(network_errors(stats)) or _count_text(http_status_mix(stats))
        reasons.append(f"no page fetched ({why})" if why else "no page fetched")
    robots_fetches = int(stats.get("robots/fetch", 0))
    robots_down = int(stats.get("robots/unreachable", 0))
    if robots_fetches and robots_down >= robots_fetches:
        reasons.append(f"robots.txt unreachable for every host ({robots_down} of {robots_fetches})")
    return reasons


def error_rate(stats: Mapping[str, Any]) -> tuple[float | None, int, int]:
    """(share of requests that ended in an HTTP 5xx / 429 or a network error, errors, requests)."""
    mix = http_status_mix(stats)
    errors = sum(n for code, n in mix.items() if code.startswith("5") or code == "429")
    no_response = sum(network_errors(stats).values())
    requests = sum(mix.values()) + no_response
    errors += no_response
    return (round(errors / requests, 4) if requests else None), errors, requests


def _median(values: Sequence[float]) -> float:
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def source_health(
    *,
    stats: Mapping[str, Any] | None,
    failed_reason: str | None,
    articles: int,
    article_pages: int,
    refused_pages: int,
    thresholds: HealthThresholds,
    recent_yields: Sequence[float] = (),
) -> dict:
    """{"status", "reasons", "error_rate", ...} of one source in one run.

    `refused_pages`: article-kind pages the run refused as not articles (about, contact, tag pages):
    fetching those is no sign of trouble. `recent_yields`: the source's yields in recent healthy runs.
    """
    failure = crawl_failure(stats, failed_reason)
    stats = stats or {}
    rate, errors, requests = error_rate(stats)
    out: dict = {"error_rate": rate, "errors": errors, "requests": requests}
    if failure:
        return {"status": "failed", "reasons": failure, **out}
    reasons = []
    if rate is not None and rate > thresholds.max_error_rate:
        mix = {c: n for c, n in http_status_mix(stats).items() if c.startswith("5") or c == "429"}
        detail = _count_text({**{f"HTTP {c}": n for c, n in mix.items()}, **network_errors(stats)})
        reasons.append(
            f"{errors} of {requests} requests failed ({rate:.0%} > {thresholds.max_error_rate:.0%}: {detail})"
        )
    candidates = max(0, article_pages - refused_pages)  # pages that could have been articles
    if articles == 0 and candidates > 0:
        reasons.append(f"{candidates} article page(s) fetched, none kept")
    elif articles and article_pages and len(recent_yields) >= thresholds.min_history:
        median = _median(recent_yields)
        value = articles / article_pages
        if median > 0 and value < thresholds.min_yield_ratio * median:
            reasons.append(
                f"yield {value:.0%} (articles per article page) is below {thresholds.min_yield_ratio:.0%} "
                f"of its median {median:.0%} over the last {len(recent_yields)} runs"
            )
    if reasons:
        return {"status": "degraded", "reasons": reasons, **out}
    if articles == 0:
        return {"status": "quiet", "reasons": ["reachable, nothing new"], **out}
    return {"status": "ok", "reasons": [], **out}


def refused_article_pages(rejects: Sequence[Mapping[str, Any]]) -> Counter:
    """{source: pages refused as not articles by extract or clean} (they were fetched as article pages)."""
    return Counter(
        str(r.get("source"))
        for r in rejects
        if r.get("stage") in ("extract", "clean") and is_refusal(str(r.get("reason") or ""))
    )


def unhealthy(report: Mapping[str, Any]) -> dict[str, list[str]]:
    """{source: reasons} of the sources whose status is `failed` in a report."""
    health = report.get("health") or {}
    return {name: h.get("reasons", []) for name, h in health.items() if h.get("status") == "failed"}
