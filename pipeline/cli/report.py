"""`python -m pipeline report`: print, write as HTML, or rebuild the report of the latest or a given run."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from pipeline.cli.common import NothingToDo, UsageError
from pipeline.core.bucket import Bucket
from pipeline.core.config import S3Settings
from pipeline.core.context import RunContext, check_run_id
from pipeline.core.layout import report_key
from pipeline.report.html import render_html
from pipeline.report.run_report import latest_run, print_summary, rebuild_report


def configure_report(parser: argparse.ArgumentParser) -> None:
    """Arguments of `python -m pipeline report`."""
    parser.add_argument("run", nargs="?", default=None, help="run id (default: the latest run with a report)")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument(
        "--html", type=Path, default=None, metavar="PATH", help="write the report as a self-contained HTML page to PATH"
    )
    parser.add_argument(
        "--rebuild",
        action="store_true",
        help="recompute the report from the run's stage outputs in the bucket and store it again",
    )


def cmd_report(args: argparse.Namespace) -> int:
    """The report of `run` (default: the latest). No report to show raises NothingToDo (exit 3); a bad
    run id raises BadRunId (exit 2) before the bucket is touched."""
    if args.run is not None:
        check_run_id(args.run)
    if args.html is not None and not args.html.parent.is_dir():
        raise UsageError(f"cannot write {args.html}: no such directory {args.html.parent}")
    settings = S3Settings.from_env()
    bucket = Bucket(settings)
    run = args.run or latest_run(bucket)
    if run is None:
        raise NothingToDo("no run reports in the bucket yet (give a run id with --rebuild to build one)")
    key = report_key(run)
    previous = bucket.get_json(key) if bucket.exists(key) else None
    if args.rebuild:
        report = rebuild_report(RunContext(run_id=run, s3=settings), previous)
    elif previous is None:
        raise NothingToDo(f"no report for run {run} (use --rebuild to build it from the run's outputs)")
    else:
        report = previous
    if args.html:
        args.html.write_text(render_html(report), encoding="utf-8")
        print(f"wrote {args.html}", file=sys.stderr)
    if args.json:
        print(json.dumps(report, indent=1, ensure_ascii=False))
    elif not args.html:
        print_summary(report)
    return 0
