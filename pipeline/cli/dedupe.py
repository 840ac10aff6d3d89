"""`python -m pipeline dedupe`: JSON Lines of articles in, the same lines out with their duplicate verdicts."""

from __future__ import annotations

import argparse
import json
import sys

from pydantic import ValidationError

from pipeline.cli.common import UsageError, open_input
from pipeline.stages.dedupe import DedupeConfig, dedupe_records


def configure_dedupe(parser: argparse.ArgumentParser) -> None:
    """Arguments of `python -m pipeline dedupe`."""
    defaults = DedupeConfig()
    parser.add_argument("file", nargs="?", default="-", help="JSON Lines of articles (url, text); - for stdin")
    parser.add_argument(
        "--threshold",
        type=float,
        default=defaults.threshold,
        help=f"near-duplicate Jaccard threshold (default {defaults.threshold})",
    )
    parser.add_argument(
        "--shingle-size",
        type=int,
        default=defaults.shingle_size,
        help=f"words per shingle (default {defaults.shingle_size})",
    )
    parser.add_argument(
        "--num-perm", type=int, default=defaults.num_perm, help=f"MinHash permutations (default {defaults.num_perm})"
    )


def cmd_dedupe(args: argparse.Namespace) -> int:
    """JSON Lines in, the same lines out with cluster_id, duplicate_of, dup_kind (and version, supersedes).

    Bad options and bad input lines raise UsageError (exit 2) before anything is written.
    """
    try:
        config = DedupeConfig(threshold=args.threshold, shingle_size=args.shingle_size, num_perm=args.num_perm)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(x) for x in err["loc"]) or "options"
        raise UsageError(f"bad option: {where}: {err['msg']}") from None
    records = []
    with open_input(args.file) as stream:
        try:
            for n, line in enumerate(stream, 1):
                if not line.strip():
                    continue
                try:
                    rec = json.loads(line)
                except ValueError as exc:
                    raise UsageError(f"line {n}: not JSON: {exc}") from None
                if (
                    not isinstance(rec, dict)
                    or not isinstance(rec.get("text"), str)
                    or not (rec.get("url") or rec.get("canonical_url"))
                ):
                    raise UsageError(f"line {n}: need an object with url and text")
                records.append(rec)
        except UnicodeDecodeError as exc:
            raise UsageError(f"{args.file}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    out = dedupe_records(records, config=config)
    write = sys.stdout.write
    for rec in out:
        write(json.dumps(rec, ensure_ascii=False))
        write("\n")
    sys.stdout.flush()
    return 0
