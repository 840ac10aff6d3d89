"""`python -m pipeline extract`: one page (or JSON Lines of pages) in, article JSON out."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator

from pipeline.cli.common import UsageError, open_input
from pipeline.flows.pages import article_from_html, articles_from_items
from pipeline.stages.extract import extract_batch, extract_page


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
        help='batch: JSON Lines of {"url", "html"} in, one line out per line in, same order',
    )
    parser.add_argument("--workers", type=int, default=None, help="processes for --jsonl (default: all cores)")
    parser.add_argument("--timeout", type=float, default=30, help="seconds per page in --jsonl mode (default 30)")
    parser.add_argument(
        "--raw", action="store_true", help="skip the cleaning layer (extraction only; no language detection either)"
    )
    return parser


def _jsonl_items(stream, bad: list[str | None]) -> Iterator[dict]:
    """Items of a JSON Lines stream; `bad` gets, per item, why its line was unusable (or None)."""
    for line_no, line in enumerate(stream, 1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
            problem = None if isinstance(item, dict) else f"line {line_no}: not a JSON object"
        except ValueError as exc:
            problem = f"line {line_no}: not JSON ({exc})"
        if problem:
            item = {"url": None, "html": ""}
        elif not isinstance(item.get("html"), str):
            problem = f'line {line_no}: "html" must be a string'
            item = {"url": item.get("url"), "html": ""}
        bad.append(problem)
        yield item


def cmd_extract(args: argparse.Namespace) -> int:
    """Handler of `extract`: exit 0 article; NotAnArticle (exit 3, reason on stderr) and UsageError (exit 2)
    propagate to the exit-code table of `pipeline.cli.main`."""
    if args.jsonl:
        bad: list[str | None] = []
        with open_input(args.file) as stream:
            items = _jsonl_items(stream, bad)
            results = (
                extract_batch(items, workers=args.workers, timeout=args.timeout)
                if args.raw
                else articles_from_items(items, workers=args.workers, timeout=args.timeout)
            )
            for index, result in enumerate(results):
                if bad[index]:
                    result = {"url": result.get("url"), "error": "bad_input", "detail": bad[index]}
                sys.stdout.write(json.dumps(result, ensure_ascii=False) + "\n")
                sys.stdout.flush()
        return 0
    if not args.url:
        raise UsageError("--url URL is required for a single page (or use --jsonl)")
    with open_input(args.file, binary=True) as stream:
        data = stream.read()
    from pipeline.text.decoding import decode_html

    html = decode_html(None, data)  # the crawl's decoding, without HTTP headers
    record = extract_page(html, args.url) if args.raw else article_from_html(html, args.url)
    sys.stdout.write(json.dumps(record, ensure_ascii=False) + "\n")
    return 0
