"""`python -m pipeline run` and `reextract`: whole runs (`pipeline.flows.ingest`) from the command line."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime, timezone
from pathlib import Path

from pipeline.cli.common import UsageError
from pipeline.core.context import RunContext, check_run_id, make_run_id
from pipeline.core.paths import default_sources_path
from pipeline.flows.ingest import check_step, headline, reextract_run, run_once
from pipeline.flows.streaming import DEFAULT_JOBS
from pipeline.report.run_report import print_summary
from pipeline.runtime.progress import progress_reporter


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--sources",
        type=Path,
        default=None,
        help=f"sources file (default: $NEWS_INGEST_SOURCES or {default_sources_path()})",
    )
    parser.add_argument("--json", action="store_true", help="print the run report as JSON")


def configure_run(parser: argparse.ArgumentParser) -> None:
    _common(parser)
    parser.add_argument("--run-id", default=None, help="YYYYMMDDTHHMMSSZ (default: now, UTC)")
    parser.add_argument("--source", action="append", default=None, help="only this source (repeatable)")
    parser.add_argument(
        "--jobs",
        type=_positive_int,
        default=None,
        metavar="N",
        help=f"crawl up to N sources at once, never two of one host (default: min(sources, {DEFAULT_JOBS}))",
    )


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, got {text!r}")
    return value


def configure_reextract(parser: argparse.ArgumentParser) -> None:
    _common(parser)
    parser.add_argument("--run-id", required=True, help="the run whose WARC files to re-extract")


def _ctx(args: argparse.Namespace, run_id: str) -> RunContext:
    # A bad run id (BadRunId) or sources file (ConfigError) ends here, exit 2, before anything starts.
    ctx = RunContext(run_id=check_run_id(run_id), sources_path=args.sources or default_sources_path())
    _ = ctx.sources  # validate now: a bad file stops the run before anything starts
    return ctx


def cmd_run(args: argparse.Namespace) -> int:
    # `--run-id ""` is a bad run id like any other, not "now".
    ctx = _ctx(args, make_run_id(datetime.now(timezone.utc)) if args.run_id is None else args.run_id)

    # Live bars on a terminal; a few plain lines when stderr is a log or a pipe.
    with progress_reporter(sys.stderr) as progress:
        report = run_once(ctx, only_sources=args.source, say=progress, jobs=args.jobs)
    _print_report(report, as_json=args.json)
    # The DAG's `check` task, with the same reasons: the good sources are committed, but a source that
    # failed (unreachable included) or a run that committed nothing is an error (exit 1).
    check_step(headline(report))
    return 0


def cmd_reextract(args: argparse.Namespace) -> int:
    ctx = _ctx(args, args.run_id)
    try:
        report = reextract_run(ctx, say=_say)
    except FileNotFoundError as exc:  # no WARC files: a run id that names no archived run (exit 2, not 3)
        raise UsageError(
            f"{exc} (is --run-id a run that crawled? `python -m pipeline report` shows the latest)"
        ) from None
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
