"""The crawl stage: run the `news` Scrapy spider for one source in its own process.

Scrapy's Twisted reactor cannot be restarted inside a long-lived worker (Airflow, the
`run` command), so each crawl is a child `python -m scrapy crawl news ...` started in the
repository root with the bucket settings in its environment. The spider writes its WARC
files, its rejects and a summary to the bucket; this function returns that summary.

Deterministic keys: a re-run of a source for the same run id first deletes that source's
earlier raw files and summary of the run (done by the WARC pipeline when it opens).
"""

from __future__ import annotations

import argparse
import logging
import os
import subprocess
import sys
from collections import deque
from pathlib import Path

from pipeline.core.context import RunContext, make_run_id
from pipeline.core.paths import ROOT, var_dir
from pipeline.runtime.pool import FORK_LOCK
from pipeline.core.bucket import safe_segment

log = logging.getLogger(__name__)

#: A crawl that runs longer than this is killed (seconds); generous: politeness delays add up.
DEFAULT_TIMEOUT = 6 * 3600


class CrawlError(RuntimeError):
    """The crawl process failed; the message ends with the tail of its log."""


def summary_key(ctx: RunContext, source_name: str) -> str:
    return f"{ctx.prefix('work')}crawl/{safe_segment(source_name)}.json"


def crawl_log_path(ctx: RunContext, source_name: str) -> Path:
    """Where the Scrapy child of this run and source writes its log (progress displays follow it)."""
    return var_dir() / "logs" / f"crawl-{safe_segment(ctx.run_id)}-{safe_segment(source_name)}.log"


def crawl_command(ctx: RunContext, source_name: str, *, settings: dict[str, str] | None = None) -> list[str]:
    """The child command line (also handy to reproduce a crawl by hand)."""
    cmd = [sys.executable, "-m", "scrapy", "crawl", "news",
           "-a", f"source={source_name}", "-a", f"run_id={ctx.run_id}",
           "-a", f"sources={Path(ctx.sources_path).resolve()}"]
    allow = ctx.sources.crawl.allow_private
    merged = {"NEWS_ALLOW_PRIVATE": ",".join(allow)} if allow else {}
    merged.update(settings or {})
    for key, value in merged.items():
        cmd += ["-s", f"{key}={value}"]
    return cmd


def _tail(path: Path, lines: int = 40) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            return "".join(deque(fh, maxlen=lines))
    except OSError as exc:
        return f"(no log: {exc})"


def crawl_stage(ctx: RunContext, source_name: str, *, settings: dict[str, str] | None = None,
                timeout: float = DEFAULT_TIMEOUT) -> dict:
    """Crawl one source; returns `{"source", "warc_keys", "stats", "rejects_key"}`.

    Raises ConfigError for an unknown source (before starting anything) and CrawlError when
    the crawl process fails or leaves no summary.
    """
    ctx.sources.source(source_name)  # unknown source: ConfigError now, not a child traceback
    key = summary_key(ctx, source_name)
    logs = var_dir() / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    log_path = crawl_log_path(ctx, source_name)
    env = {**os.environ, **ctx.s3.as_env(), "PYTHONUNBUFFERED": "1"}
    cmd = crawl_command(ctx, source_name, settings=settings)
    log.info("crawl %s (run %s): %s; log in %s", source_name, ctx.run_id, " ".join(cmd), log_path)
    with open(log_path, "wb") as out:
        # Started under the fork lock: `pipeline run` forks extraction workers from another thread.
        with FORK_LOCK:
            proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL)
        try:
            proc.wait(timeout=timeout)
        except BaseException as exc:  # our timeout, or e.g. Airflow's: the child must not outlive its task
            proc.kill()
            proc.wait()
            if isinstance(exc, subprocess.TimeoutExpired):
                raise CrawlError(f"crawl of {source_name} timed out after {timeout:.0f}s; log tail:\n"
                                 f"{_tail(log_path)}") from None
            raise
    if proc.returncode != 0:
        raise CrawlError(f"crawl of {source_name} failed (exit {proc.returncode}); log tail:\n{_tail(log_path)}")
    if not ctx.bucket.exists(key):
        raise CrawlError(f"crawl of {source_name} wrote no summary at {key}; log tail:\n{_tail(log_path)}")
    summary = ctx.bucket.get_json(key)
    if summary.get("finish_reason") not in ("finished", None):
        raise CrawlError(f"crawl of {source_name} ended early ({summary.get('finish_reason')}); log tail:\n"
                         f"{_tail(log_path)}")
    return {"source": summary["source"], "warc_keys": summary.get("warc_keys", []),
            "stats": summary.get("stats", {}), "rejects_key": summary.get("rejects_key"),
            "bytes": summary.get("bytes", 0), "summary_key": key}


# --------------------------------------------------------------------------- CLI


def configure_crawl(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--source", required=True, help="source name from the sources file")
    parser.add_argument("--run-id", help="run id (YYYYMMDDTHHMMSSZ[suffix]); default: now")
    parser.add_argument("--sources", help="sources file (default: config/sources.yaml or $NEWS_INGEST_SOURCES)")


def cmd_crawl(args: argparse.Namespace) -> int:
    from datetime import datetime, timezone
    import json

    kwargs = {"run_id": args.run_id or make_run_id(datetime.now(timezone.utc))}
    if args.sources:
        kwargs["sources_path"] = Path(args.sources)
    try:
        ctx = RunContext(**kwargs)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        result = crawl_stage(ctx, args.source)
    except CrawlError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(result, indent=1, default=str))
    return 0
