"""``python -m pipeline``: the stable command-line contract (see README.md).

Each command's arguments and handler live in `pipeline/cli/<module>.py` (`configure_<cmd>(parser)`
and `cmd_<cmd>(args) -> int`); this file wires them up, importing a module only when its command
runs so `--help` is fast, and turns what a handler raises into the exit code, with one table for
every command (`EXIT_CODES`, first match wins):

    exit  meaning                     raised as
    0     ok                          (the handler returns)
    1     failure                     StorageError, CrawlError, RunFailed, BadInputLines (`extract --jsonl`),
                                      any other exception
    2     bad usage or configuration  argparse errors; ConfigError: a bad sources file, BadRunId, UsageError
    3     nothing to do               NotAnArticle, NothingToDo (no report yet, a run without WARC files)
    130   interrupted                 KeyboardInterrupt

A handler may still return 1 itself where nothing was raised (`s3 status`: not answering).

An error is one line on stderr, `error: <message>`, never a traceback. A long message of several
lines (a crawl's log tail) is cut to its first line there; `-v` prints the rest below it. `-vv`
(debug) also prints the traceback, above the `error:` line: that is for debugging, not for scripts.
Credentials in URLs (`user:password@`, token parameters) are redacted in the message and in log lines.
Handlers do not catch these errors themselves, except to add what only they know (which log file,
which run) or to turn a failure of the user's input into a UsageError.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
import traceback

from pipeline.cli.common import NothingToDo
from pipeline.core.errors import ConfigError, NotAnArticle, StorageError

#: command -> (module, help). The handlers' exit codes: `EXIT_CODES`.
COMMANDS: dict[str, tuple[str, str]] = {
    "extract": ("pipeline.cli.extract", "extract one page (or JSON Lines of pages) to article JSON"),
    "dedupe": ("pipeline.cli.dedupe", "mark url / exact / near duplicates in JSON Lines of articles"),
    "run": ("pipeline.cli.run", "crawl, extract, clean, dedupe and store once for the configured sources"),
    "crawl": ("pipeline.cli.crawl", "crawl one source into the raw WARC archive (ad hoc)"),
    "reextract": ("pipeline.cli.run", "rebuild a run's articles from its WARC files alone, no network"),
    "import-warc": ("pipeline.cli.import_warc", "import WARC archives (CC-NEWS, any collection): extract to store"),
    "read": ("pipeline.cli.read", "stream committed articles from the bucket"),
    "compact": ("pipeline.cli.compact", "OPTIMIZE a day of the articles table (VACUUM with --cleanup)"),
    "migrate": ("pipeline.cli.migrate", "convert a bucket written with run manifests into the articles table"),
    "report": ("pipeline.cli.report", "write or print the report of the latest or a given run"),
    "s3": ("pipeline.cli.s3", "the embedded S3 server: up | down | status"),
    "discover": ("pipeline.cli.discover", "find an outlet's feeds and sitemaps; print an entry for the sources file"),
    "sources": ("pipeline.cli.sources", "the sources file in the bucket: push (versioned by hash) | show"),
}

#: The one error-to-exit-code table of every command; first match wins (BadRunId and UsageError are
#: ConfigErrors). CrawlError and RunFailed (RuntimeErrors) fall in the `Exception` row: importing them
#: here would load the crawl stage and the flows for every command, `--help` included.
EXIT_CODES: tuple[tuple[type[BaseException], int], ...] = (
    (KeyboardInterrupt, 130),
    (ConfigError, 2),
    (NotAnArticle, 3),
    (NothingToDo, 3),
    (StorageError, 1),
    (Exception, 1),
)
#: A multi-line message longer than this is cut to its first line (a crawl's log tail); shorter ones
#: (a YAML error with its line and column) are joined into one line.
JOIN_UP_TO = 400


def _load(module: str):
    return importlib.import_module(module)


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The full parser; with `only`, just that command's module is imported."""
    parser = argparse.ArgumentParser(prog="python -m pipeline", description=__doc__.splitlines()[0])
    parser.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=0,
        help="more logging and whole error messages (-vv: debug, and a traceback on errors)",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, help_text) in COMMANDS.items():
        sp = sub.add_parser(name, help=help_text, description=help_text)
        if only in (None, name):
            configure = getattr(_load(module), f"configure_{name.replace('-', '_')}", None)
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
    _redact_log_handlers()
    try:
        handler = getattr(_load(COMMANDS[args.command][0]), f"cmd_{args.command.replace('-', '_')}")
        return int(handler(args) or 0)
    except (Exception, KeyboardInterrupt) as exc:  # not SystemExit: a handler that exits chose its code
        return report_error(exc, verbose=args.verbose)


def _redact_log_handlers() -> None:
    """Credentials in URLs (``user:password@``, token parameters) never reach a log line of this process."""
    from pipeline.text.urls import RedactSecretsFilter

    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, RedactSecretsFilter) for f in handler.filters):
            handler.addFilter(RedactSecretsFilter())


def exit_code(exc: BaseException) -> int:
    """The exit code of an exception that ended a command (`EXIT_CODES`)."""
    return next(code for kind, code in EXIT_CODES if isinstance(exc, kind))


def error_message(exc: BaseException) -> str:
    """What `error:` says: the message, with the type's name for errors that are not the project's own."""
    if isinstance(exc, NotAnArticle):
        return f"not an article: {exc.reason}" + (f" ({exc.detail})" if exc.detail else "")
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted"
    from pipeline.text.urls import redact_secrets

    text = redact_secrets(str(exc).strip())  # a URL in a message may carry a password
    if type(exc).__module__.startswith("pipeline."):
        return text or type(exc).__name__
    # A bare KeyError('x') or OSError says little without its type.
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def report_error(exc: BaseException, *, verbose: int = 0) -> int:
    """Print `exc` as one `error: ...` line on stderr (the traceback too with -vv); return its exit code."""
    if verbose >= 2:
        traceback.print_exception(exc, file=sys.stderr)
    lines = [line.rstrip() for line in error_message(exc).splitlines() if line.strip(" ^")]
    first, rest = (lines[0], lines[1:]) if lines else ("", [])
    if rest and len("\n".join(lines)) <= JOIN_UP_TO:
        first, rest = " ".join(line.strip() for line in lines), []
    if rest and not verbose:
        first += f" [{len(rest)} more lines: -v shows them]"
    print(f"error: {first}", file=sys.stderr)
    if rest and verbose:
        print("\n".join(rest), file=sys.stderr)
    sys.stderr.flush()
    return exit_code(exc)
