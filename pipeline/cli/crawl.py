"""`python -m pipeline crawl`: one source into the raw WARC archive, ad hoc (`pipeline.stages.crawl`)."""

from __future__ import annotations

import argparse
import json
from datetime import datetime, timezone
from pathlib import Path

from pipeline.core.context import RunContext, make_run_id
from pipeline.core.paths import default_sources_path
from pipeline.stages.crawl import CrawlError, crawl_log_path, crawl_stage


def configure_crawl(parser: argparse.ArgumentParser) -> None:
    """Arguments of `python -m pipeline crawl`."""
    parser.add_argument("--source", required=True, help="source name from the sources file")
    parser.add_argument("--run-id", help="run id (YYYYMMDDTHHMMSSZ[suffix]); default: now")
    parser.add_argument("--sources", help="sources file (default: config/sources.yaml or $NEWS_INGEST_SOURCES)")


def cmd_crawl(args: argparse.Namespace) -> int:
    """Crawl `--source`; print its summary (WARC keys, stats) as JSON.

    A bad run id, sources file or source name raises ConfigError (exit 2) before anything starts;
    a failed crawl raises CrawlError (exit 1).
    """
    ctx = RunContext(
        run_id=args.run_id or make_run_id(datetime.now(timezone.utc)),
        sources_path=Path(args.sources) if args.sources else default_sources_path(),
    )
    try:
        result = crawl_stage(ctx, args.source)
    except CrawlError as exc:
        # The one-line message loses the log tail (shown with -v): name the whole log instead.
        head, _, tail = str(exc).partition("\n")
        head = head.removesuffix("; log tail:")
        raise CrawlError(f"{head} (log: {crawl_log_path(ctx, args.source)})\n{tail}".rstrip()) from exc
    print(json.dumps(result, indent=1, default=str))
    return 0
