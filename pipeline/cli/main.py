"""``python -m pipeline``: the stable command-line contract (see DESIGN.md).

Each command's arguments and handler live in the module that does the work
(`configure_<cmd>(parser)` and `cmd_<cmd>(args) -> int`); this file only
wires them up, importing a module when its command runs so `--help` is fast.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

#: command -> (module, help). Exit codes: 0 ok, 2 bad usage or config, 3 no article / nothing to do, 1 failure.
COMMANDS: dict[str, tuple[str, str]] = {
    "extract": ("pipeline.cli.extract", "extract one page (or JSON Lines of pages) to article JSON"),
    "dedupe": ("pipeline.stages.dedupe", "mark url / exact / near duplicates in JSON Lines of articles"),
    "run": ("pipeline.cli.run", "crawl, extract, clean, dedupe and store once for the configured sources"),
    "crawl": ("pipeline.stages.crawl", "crawl one source into the raw WARC archive (ad hoc)"),
    "reextract": ("pipeline.cli.run", "rebuild a run's articles from its WARC files alone, no network"),
    "read": ("pipeline.dataset.read", "stream committed articles from the bucket"),
    "compact": ("pipeline.stages.store", "compact a day's small Parquet files (atomic)"),
    "report": ("pipeline.report.run_report", "write or print the report of the latest or a given run"),
    "s3": ("pipeline.cli.s3", "the embedded S3 server: up | down | status"),
}


def _load(module: str):
    return importlib.import_module(module)


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The full parser; with `only`, just that command's module is imported."""
    parser = argparse.ArgumentParser(prog="python -m pipeline", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-vv for debug)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, help_text) in COMMANDS.items():
        sp = sub.add_parser(name, help=help_text, description=help_text)
        if only in (None, name):
            configure = getattr(_load(module), f"configure_{name}", None)
            if configure is not None:
                configure(sp)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = next((a for a in argv if not a.startswith("-")), None)
    parser = build_parser(command if command in COMMANDS else "")
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help()
        return 2
    logging.basicConfig(
        level=[logging.WARNING, logging.INFO, logging.DEBUG][min(args.verbose, 2)],
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    from pipeline.core.config import ConfigError
    from pipeline.core.bucket import StorageError

    handler = getattr(_load(COMMANDS[args.command][0]), f"cmd_{args.command}")
    try:
        return int(handler(args) or 0)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except StorageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
