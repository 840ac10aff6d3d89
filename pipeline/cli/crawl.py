"""`python -m pipeline crawl`: one source into the raw WARC archive, ad hoc (`pipeline.stages.crawl`)."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime, timezone
from pathlib import Path

from pipeline.core.context import RunContext, make_run_id
from pipeline.core.paths import default_sources_path
from pipeline.report.health import crawl_failure, crawl_rejects, error_rate, http_status_mix, network_errors
from pipeline.runtime.progress import progress_reporter
from pipeline.stages.crawl import CrawlError, crawl_log_path, crawl_stage


def configure_crawl(parser: argparse.ArgumentParser) -> None:
    """Arguments of `python -m pipeline crawl`."""
    parser.add_argument("--source", required=True, help="source name from the sources file")
    parser.add_argument("--run-id", help="run id (YYYYMMDDTHHMMSSZ[suffix]); default: now")
    parser.add_argument(
        "--sources",
        help=f"sources file (default: $NEWS_INGEST_SOURCES or {default_sources_path()})",
    )
    parser.add_argument("--json", action="store_true", help="print the crawl summary (WARC keys, stats) as JSON")


def cmd_crawl(args: argparse.Namespace) -> int:
    """Crawl `--source` with live counts on stderr; print a summary table (or `--json`).

    A bad run id, sources file or source name raises ConfigError (exit 2) before anything starts;
    a failed crawl, or one that reached nothing (DNS, refused, robots.txt unreachable), raises CrawlError (exit 1).
    """
    ctx = RunContext(
        run_id=args.run_id or make_run_id(datetime.now(timezone.utc)),
        sources_path=Path(args.sources) if args.sources else default_sources_path(),
    )
    ctx.sources.source(args.source)  # an unknown source: exit 2 before the display starts
    log_path = crawl_log_path(ctx, args.source)
    try:
        with progress_reporter(sys.stderr) as progress:
            progress.stage(f"crawl {args.source}", unit="responses")
            with progress.follow(log_path):
                result = crawl_stage(ctx, args.source)
    except CrawlError as exc:
        # The one-line message loses the log tail (shown with -v): name the whole log instead.
        head, _, tail = str(exc).partition("\n")
        head = head.removesuffix("; log tail:")
        raise CrawlError(f"{head} (log: {log_path})\n{tail}".rstrip()) from exc
    if args.json:
        print(json.dumps(result, indent=1, default=str))
    else:
        print(summary_table(args.source, ctx.run_id, result, log_path))
    failure = crawl_failure(result.get("stats") or {}, None)
    if failure:
        raise CrawlError(f"crawl of {args.source} reached nothing: {'; '.join(failure)} (log: {log_path})")
    return 0


def summary_table(source: str, run_id: str, result: dict, log_path: Path) -> str:
    """The crawl's outcome as aligned `name  value` rows: what was fetched, refused and kept."""
    stats = result.get("stats") or {}
    rate, errors, requests = error_rate(stats)
    failure = crawl_failure(stats, None)
    kinds = {k.rsplit("/", 1)[1]: v for k, v in stats.items() if k.startswith("news/fetched/")}
    rows = [
        ("source", source),
        ("run", run_id),
        ("status", "unreachable: " + "; ".join(failure) if failure else "reached"),
        ("pages fetched", f"{stats.get('news/fetched', 0)} ({_counts(kinds) or 'none'})"),
        ("not modified (304)", stats.get("news/not_modified", 0)),
        ("skipped (seen / refused)", f"{stats.get('news/skipped_seen', 0)} / {stats.get('news/skipped_refused', 0)}"),
        ("HTTP status", _counts(http_status_mix(stats)) or "none"),
        ("network errors", _counts(network_errors(stats)) or "none"),
        ("error rate", "n/a" if rate is None else f"{rate:.0%} ({errors} of {requests} requests)"),
        ("rejected", _counts(crawl_rejects(stats)) or "none"),
        ("bytes", stats.get("downloader/response_bytes", 0)),
        ("seconds", stats.get("elapsed_time_seconds", "?")),
        ("WARC files", len(result.get("warc_keys") or [])),
        ("log", str(log_path)),
    ]
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)


def _counts(counts: dict) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(counts.items(), key=lambda kv: (-int(kv[1]), kv[0])))
