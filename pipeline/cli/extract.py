"""`python -m pipeline extract`: one page (or JSON Lines of pages) in, article JSON out."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from typing import IO

from pipeline.cli.common import UsageError, open_input
from pipeline.flows.pages import article_from_html, articles_from_items
from pipeline.stages.extract import extract_batch, extract_page


def worker_count(text: str) -> int:
    """`--workers`: a whole number from 1 to 4 per core (more only adds memory: extraction is CPU-bound)."""
    from pipeline.runtime.pool import default_workers

    most = 4 * default_workers()
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if not 1 <= value <= most:
        raise argparse.ArgumentTypeError(f"must be 1 to {most} (4 per core), got {value}")
    return value


def positive_seconds(text: str) -> float:
    """`--timeout`: seconds, more than 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be more than 0 seconds, got {text}")
    return value


def configure_extract(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Arguments of `python -m pipeline extract`."""
    parser.add_argument(
        "file",
        nargs="?",
        default="-",
        help="HTML file (or, with --jsonl, a JSON Lines file); '-' or nothing reads stdin",
    )
    parser.add_argument("--url", help="the page's URL (required for a single page)")
    parser.add_argument(
        "--jsonl",
        action="store_true",
        help='batch: JSON Lines of {"url", "html"} in (UTF-8), exactly one line out per line in, same order; '
        'an unusable line (blank, not UTF-8, not a JSON object, no "url" or "html") gives '
        '{"line": N, "url", "error": "bad_input", "detail"} and makes the exit code 1 once all lines are out',
    )
    parser.add_argument("--workers", type=worker_count, default=None, help="processes for --jsonl (default: all cores)")
    parser.add_argument(
        "--timeout", type=positive_seconds, default=30, help="seconds per page in --jsonl mode (default 30)"
    )
    parser.add_argument(
        "--raw", action="store_true", help="skip the cleaning layer (extraction only; no language detection either)"
    )
    return parser


class BadInputLines(Exception):
    """Some --jsonl input lines were unusable (their output lines say why): exit 1, after every line is out."""


#: What replaces an unusable line on its way through the workers (one output line per input line).
_PLACEHOLDER = {"url": None, "html": ""}


def _line_problem(line_no: int, raw: bytes) -> tuple[dict, str | None]:
    """(item, None) for a usable JSON Lines line, else (what is known of the item, why it is unusable)."""
    if not raw.strip():
        return {}, f"line {line_no}: blank line"
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        problem = f"line {line_no}: not UTF-8 (byte {raw[exc.start]:#04x} at column {exc.start + 1})"
        return _known_url(raw.decode("utf-8", errors="replace")), problem
    try:
        item = json.loads(text)
    except ValueError as exc:
        return {}, f"line {line_no}: not JSON ({exc})"
    if not isinstance(item, dict):
        return {}, f"line {line_no}: not a JSON object"
    url = item.get("url")
    if not isinstance(url, str) or not url.strip():
        return {}, f'line {line_no}: "url" missing or not a non-empty string'
    if not isinstance(item.get("html"), str):
        return {"url": url}, f'line {line_no}: "html" missing or not a string'
    return item, None


def _known_url(text: str) -> dict:
    """{"url": ...} of an unusable line when it still names one (to match the error to its page), else {}."""
    try:
        url = json.loads(text).get("url")
    except (ValueError, AttributeError):
        return {}
    return {"url": url} if isinstance(url, str) and url.strip() else {}


def _jsonl_items(stream: IO[bytes], bad: list[tuple[int, dict, str] | None]) -> Iterator[dict]:
    """Items of a JSON Lines byte stream, one per line; `bad` gets, per line, (line number, what is known
    of the item, why it is unusable) or None. An unusable line yields a placeholder so order is kept."""
    for line_no, raw in enumerate(stream, 1):
        item, problem = _line_problem(line_no, raw)
        bad.append((line_no, item, problem) if problem else None)
        yield dict(_PLACEHOLDER) if problem else item


def _error_line(line_no: int, item: dict, problem: str) -> dict:
    return {"line": line_no, "url": item.get("url"), "error": "bad_input", "detail": problem}


def cmd_extract(args: argparse.Namespace) -> int:
    """Handler of `extract`: exit 0 article; NotAnArticle (exit 3, reason on stderr) and UsageError (exit 2)
    propagate to the exit-code table of `pipeline.cli.main`; unusable --jsonl lines end in exit 1."""
    if args.jsonl:
        return _extract_jsonl(args)
    if not args.url:
        raise UsageError("--url URL is required for a single page (or use --jsonl)")
    with open_input(args.file, binary=True) as stream:
        data = stream.read()
    from pipeline.text.decoding import decode_html

    html = decode_html(None, data)  # the crawl's decoding, without HTTP headers
    record = extract_page(html, args.url) if args.raw else article_from_html(html, args.url)
    sys.stdout.write(json.dumps(record, ensure_ascii=False) + "\n")
    return 0


def _extract_jsonl(args: argparse.Namespace) -> int:
    """--jsonl: one output line per input line, in order; BadInputLines (exit 1) at the end if some were unusable."""
    bad: list[tuple[int, dict, str] | None] = []
    with open_input(args.file, binary=True) as stream:  # bytes: one undecodable line must not end the stream
        items = _jsonl_items(stream, bad)
        results = (
            extract_batch(items, workers=args.workers, timeout=args.timeout)
            if args.raw
            else articles_from_items(items, workers=args.workers, timeout=args.timeout)
        )
        for index, result in enumerate(results):
            problem = bad[index]
            if problem is not None:
                result = _error_line(*problem)
            sys.stdout.write(json.dumps(result, ensure_ascii=False) + "\n")
            sys.stdout.flush()
    problems = [b[2] for b in bad if b]
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise BadInputLines(f"{len(problems)} of {len(bad)} input lines unusable: {problems[0]}{more}")
    return 0
