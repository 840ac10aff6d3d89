"""One whole run: crawl, extract, clean, dedupe, store, remember, report.

`run_once()` is what `python -m pipeline run` does; the Airflow DAG calls the
same stage functions one task at a time. `reextract_run()` rebuilds a run's
articles from its WARC files alone.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

from pipeline.core.context import RunContext, check_run_id, make_run_id
from pipeline.core.paths import default_sources_path
from pipeline.report.run_report import print_summary, write_report

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------- stage glue


def list_sources(ctx: RunContext, only: list[str] | None = None) -> list[str]:
    """Names of the sources to crawl (validates the sources file; unknown names fail fast)."""
    names = [s.name for s in ctx.sources.sources]
    if only:
        for name in only:
            ctx.sources.source(name)  # raises ConfigError naming the bad source
        names = [n for n in names if n in only]
    return names


def crawl_summaries(ctx: RunContext) -> list[dict]:
    """The crawl summaries this run wrote to the bucket (one per source that finished)."""
    prefix = f"{ctx.prefix('work')}crawl/"
    return [ctx.bucket.get_json(key) for key in ctx.bucket.list(prefix) if key.endswith(".json")]


def warc_keys_of(summaries: list[dict]) -> list[str]:
    """Every WARC file written by the crawls, in a stable order."""
    return sorted({key for s in summaries for key in s.get("warc_keys", [])})


def remember_stored(ctx: RunContext, deduped_key: str) -> int:
    """After the commit: record the stored URLs in the crawl state, so later runs skip them."""
    from pipeline.dataset.state import record_stored

    rows = [{**row, "run_id": ctx.run_id} for row in ctx.bucket.iter_jsonl(deduped_key)]
    record_stored(ctx.bucket, rows)
    return len(rows)


# --------------------------------------------------------------------------- the whole run


def run_once(ctx: RunContext, *, only_sources: list[str] | None = None,
             say: Callable[[str], None] | None = None) -> dict:
    """Crawl every source, then extract, clean, dedupe, store and report. Returns the report.

    A source whose crawl fails is named in the report; the others go on.
    """
    from pipeline.flows.streaming import crawl_and_extract
    from pipeline.runtime.progress import reporter_for

    rep = reporter_for(say)
    ctx.bucket.check()  # wrong credentials or a missing bucket: fail before crawling anything
    sources = list_sources(ctx, only_sources)
    # Pages are extracted and cleaned while the crawls run (see pipeline.flows.streaming); the
    # report's "extract" time is the extraction left after the last crawl ended, its "clean"
    # time writing the cleaned file (and cleaning what had to be extracted again from the bucket).
    # The same rule as the DAG: only crawls that finished feed extraction; the rest are named.
    extracted, timings, failed, precleaned = crawl_and_extract(ctx, sources, rep=rep)
    # Imported after the crawl: a thread of crawl_and_extract loaded them while Scrapy started.
    from pipeline.stages.clean import clean_stage
    from pipeline.stages.dedupe import dedupe_stage
    from pipeline.stages.store import store_stage

    t0 = time.perf_counter()
    rep.stage("clean")
    cleaned = clean_stage(ctx, extracted, cleaned=precleaned)  # most pages were cleaned by the workers
    timings["clean"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    rep.stage("dedupe")
    deduped = dedupe_stage(ctx, cleaned)
    timings["dedupe"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    rep.stage("store")
    manifest = store_stage(ctx, deduped)
    remember_stored(ctx, deduped)
    timings["store"] = time.perf_counter() - t0
    rep.close()
    return write_report(ctx, sources=sources, timings=timings, failed_sources=failed,
                        deduped_key=deduped, manifest_key=manifest)


def reextract_run(ctx: RunContext, *, say: Callable[[str], None] | None = None) -> dict:
    """Rebuild a run's articles from its WARC files alone (no network), and commit them again."""
    from pipeline.stages.clean import clean_stage
    from pipeline.stages.dedupe import dedupe_stage
    from pipeline.stages.extract import extract_stage
    from pipeline.stages.store import store_stage

    say = say or (lambda msg: log.info("%s", msg))
    warc_keys = [k for k in ctx.bucket.list(ctx.prefix("raw")) if k.endswith(".warc.gz")]
    if not warc_keys:
        raise FileNotFoundError(f"no WARC files under {ctx.prefix('raw')}")
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    extracted = [extract_stage(ctx, key) for key in warc_keys]
    timings["extract"] = time.perf_counter() - t0
    cleaned = clean_stage(ctx, extracted)
    deduped = dedupe_stage(ctx, cleaned)
    manifest = store_stage(ctx, deduped)
    timings["total"] = time.perf_counter() - t0
    say(f"re-extracted {len(warc_keys)} WARC files")
    sources = sorted({s["source"] for s in crawl_summaries(ctx)})
    return write_report(ctx, sources=sources, timings=timings, failed_sources={},
                        deduped_key=deduped, manifest_key=manifest)


# --------------------------------------------------------------------------- CLI


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--sources", type=Path, default=None,
                        help=f"sources file (default: $NEWS_INGEST_SOURCES or {default_sources_path()})")
    parser.add_argument("--json", action="store_true", help="print the run report as JSON")


def configure_run(parser: argparse.ArgumentParser) -> None:
    _common(parser)
    parser.add_argument("--run-id", default=None, help="YYYYMMDDTHHMMSSZ (default: now, UTC)")
    parser.add_argument("--source", action="append", default=None, help="only this source (repeatable)")


def configure_reextract(parser: argparse.ArgumentParser) -> None:
    _common(parser)
    parser.add_argument("--run-id", required=True, help="the run whose WARC files to re-extract")


def _ctx(args: argparse.Namespace, run_id: str) -> RunContext:
    ctx = RunContext(run_id=check_run_id(run_id), sources_path=args.sources or default_sources_path())
    ctx.sources  # validate now: a bad file stops the run before anything starts
    return ctx


def cmd_run(args: argparse.Namespace) -> int:
    ctx = _ctx(args, args.run_id or make_run_id(datetime.now(timezone.utc)))
    from pipeline.runtime.progress import progress_reporter

    # Live bars on a terminal; a few plain lines when stderr is a log or a pipe.
    with progress_reporter(sys.stderr) as progress:
        report = run_once(ctx, only_sources=args.source, say=progress)
    _print_report(report, as_json=args.json)
    # Like the DAG's `check` task: the good sources are committed, but a failed one is an error.
    return 1 if report["failed_sources"] else 0


def cmd_reextract(args: argparse.Namespace) -> int:
    ctx = _ctx(args, args.run_id)
    try:
        report = reextract_run(ctx, say=_say)
    except FileNotFoundError as exc:
        print(f"error: run {args.run_id}: {exc}", file=sys.stderr)
        return 3
    _print_report(report, as_json=args.json)
    return 0


def _print_report(report: dict, *, as_json: bool) -> None:
    if as_json:
        print(json.dumps(report, indent=1))
    else:
        print_summary(report)


def _say(msg: str) -> None:
    # Progress goes to stderr; stdout stays the report.
    print(msg, file=sys.stderr, flush=True)
