"""`python -m pipeline import-warc SOURCE... --name NAME`: web archives through extract, clean, dedupe, store."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime, timezone

from pipeline.cli.common import UsageError


def _when(text: str) -> datetime:
    """`--since` / `--until`: an ISO 8601 date or time (UTC when no zone is given)."""
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 date or time: {text!r}") from None
    return when if when.tzinfo else when.replace(tzinfo=timezone.utc)


def _csv(text: str) -> list[str]:
    return [part.strip().lower() for part in text.split(",") if part.strip()]


def configure_import_warc(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Arguments of `python -m pipeline import-warc`."""
    parser.add_argument(
        "sources",
        nargs="+",
        metavar="SOURCE",
        help="WARC files: local paths or globs, s3://bucket/prefix/*.warc.gz, https:// URLs, or a warc.paths(.gz) "
        "listing (its relative paths are joined to --paths-base)",
    )
    parser.add_argument("--name", required=True, help="the import's name: the `source` of its articles")
    parser.add_argument("--anonymous", action="store_true", help="read s3:// archives unsigned (public buckets)")
    parser.add_argument("--s3-endpoint", help="S3 endpoint of the archives (default: the project's)")
    parser.add_argument("--paths-base", default=None, help="base of a listing's relative paths (Common Crawl's)")
    parser.add_argument("--allow-domains", metavar="FILE", help="import only these domains (one a line) and subdomains")
    parser.add_argument(
        "--allow-configured-sources", action="store_true", help="import only the hosts of the configured sources"
    )
    parser.add_argument("--deny-domains", metavar="FILE", help="never import these domains (one a line)")
    parser.add_argument("--mime", type=_csv, default=None, help="MIME types to extract (default text/html, xhtml)")
    parser.add_argument("--status", type=_csv, default=None, help="HTTP statuses to extract (default 200)")
    parser.add_argument("--since", type=_when, help="only records dated (WARC-Date) at or after this")
    parser.add_argument("--until", type=_when, help="only records dated before this")
    parser.add_argument("--language", type=_csv, default=None, help="keep only these languages (ISO 639-1, comma)")
    parser.add_argument("--chunk", type=int, default=None, help="pages per commit (default 1000)")
    parser.add_argument("--workers", type=int, default=None, help="extraction processes (default: all cores)")
    parser.add_argument(
        "--lease-seconds",
        type=float,
        default=None,
        help="how long a file's lease lasts unless renewed, i.e. how soon a dead importer's file is taken over "
        "(default 600)",
    )
    parser.add_argument(
        "--sources-file", default=None, help="the sources file (cleaning rules, --allow-configured-sources)"
    )
    return parser


def cmd_import_warc(args: argparse.Namespace) -> int:
    """Handler of `import-warc`: prints one JSON line per file, exit 0.

    A file's `status` is done, skipped (imported already) or busy: another importer holds the file's
    lease (it is being imported by another run, which goes on with it; stderr says so).
    """
    from pathlib import Path

    from pipeline.core.config import S3Settings, load_sources
    from pipeline.dataset.warc_sources import COMMONCRAWL_BASE, Remote, expand
    from pipeline.flows.warc_import import DEFAULT_CHUNK_RECORDS, LEASE_SECONDS, ImportOptions, import_archives
    from pipeline.stages.warc_import import (
        DEFAULT_MIME_TYPES,
        DEFAULT_STATUSES,
        ImportFilters,
        read_domains,
        source_domains,
    )

    if args.since and args.until and args.since >= args.until:
        raise UsageError("--since must be before --until")
    allow: set[str] = set()
    if args.allow_domains:
        allow |= read_domains(args.allow_domains)
    if args.allow_configured_sources:
        allow |= source_domains(load_sources(args.sources_file))
    try:
        statuses = frozenset(int(s) for s in args.status) if args.status else frozenset(DEFAULT_STATUSES)
    except ValueError:
        raise UsageError(f"--status: not HTTP status codes: {args.status}") from None
    filters = ImportFilters(
        allow_domains=frozenset(allow),
        deny_domains=read_domains(args.deny_domains) if args.deny_domains else frozenset(),
        mime_types=tuple(args.mime or DEFAULT_MIME_TYPES),
        statuses=statuses,
        since=args.since,
        until=args.until,
        languages=frozenset(args.language or ()),
    )
    s3 = S3Settings.from_env()
    if args.s3_endpoint:
        s3 = s3.model_copy(update={"endpoint_url": args.s3_endpoint})
    remote = Remote(s3=s3, anonymous=args.anonymous, paths_base=args.paths_base or COMMONCRAWL_BASE)
    archives = expand(args.sources, remote)
    opts = ImportOptions(
        name=args.name,
        filters=filters,
        remote=remote,
        sources_path=Path(args.sources_file) if args.sources_file else None,
        chunk_records=args.chunk or DEFAULT_CHUNK_RECORDS,
        workers=args.workers,
        lease_seconds=args.lease_seconds or LEASE_SECONDS,
    )
    for summary in import_archives(archives, opts, say=lambda msg: print(msg, file=sys.stderr)):
        print(json.dumps(summary, sort_keys=True))
    return 0
