"""The crawl stage: run the `news` Scrapy spider for one source in its own process.

Scrapy's Twisted reactor cannot be restarted inside a long-lived worker (Airflow, the
`run` command), so each crawl is a child `python -m scrapy crawl news ...` started in the
repository root with the bucket settings in its environment. The spider writes its WARC
files, its rejects and a summary to the bucket; this function returns that summary.

WARC keys are unique per crawl attempt and never overwritten: a re-run of a source for the same
run id (a retry, or a second run at once) writes files of its own next to the earlier ones, and
its summary, written last, names them. The child dies with this process (a parent-death signal
armed by `spiders.pipelines`), so a `kill -9` here does not leave it crawling for a dead run.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import traceback
from collections import deque
from collections.abc import Iterable
from pathlib import Path

from pipeline.core.context import RunContext
from pipeline.core.layout import crawl_failure_key, crawl_summaries_prefix, crawl_summary_key, safe_segment
from pipeline.core.paths import ROOT, var_dir
from pipeline.runtime.pool import FORK_LOCK, PARENT_PID_ENV

log = logging.getLogger(__name__)

#: A crawl that runs longer than this is killed (seconds); generous: politeness delays add up.
DEFAULT_TIMEOUT = 6 * 3600
#: How a crawl child that refuses to start says why (`spiders.settings.REFUSAL`: a security
#: component cannot be imported); not imported from there, the child's settings are its own.
REFUSAL = "refusing to crawl:"


class CrawlError(RuntimeError):
    """The crawl process failed; the message ends with the tail of its log.

    `terminal`: a retry cannot help (the crawl refused to start: a security component does not load).
    """

    def __init__(self, message: str, *, terminal: bool = False):
        super().__init__(message)
        self.terminal = terminal


def summary_key(ctx: RunContext, source_name: str) -> str:
    """`work/.../crawl/<source>.json` of this run (written by the spider when it closes)."""
    return crawl_summary_key(ctx.run_id, source_name)


def crawl_log_path(ctx: RunContext, source_name: str) -> Path:
    """Where the Scrapy child of this run and source writes its log (progress displays follow it)."""
    return var_dir() / "logs" / f"crawl-{safe_segment(ctx.run_id)}-{safe_segment(source_name)}.log"


def crawl_command(ctx: RunContext, source_name: str, *, settings: dict[str, str] | None = None) -> list[str]:
    """The child command line (also handy to reproduce a crawl by hand)."""
    cmd = [
        sys.executable,
        "-m",
        "scrapy",
        "crawl",
        "news",
        "-a",
        f"source={source_name}",
        "-a",
        f"run_id={ctx.run_id}",
        "-a",
        f"sources={Path(ctx.sources_path).resolve()}",
    ]
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


def _refusal(tail: str) -> str | None:
    """The reason a crawl child refused to start, from the tail of its log (None: it did not refuse)."""
    for line in reversed(tail.splitlines()):
        if REFUSAL in line:
            return line.split(REFUSAL, 1)[1].strip()
    return None


def crawl_stage(
    ctx: RunContext, source_name: str, *, settings: dict[str, str] | None = None, timeout: float = DEFAULT_TIMEOUT
) -> dict:
    """Crawl one source; returns `{"source", "warc_keys", "stats", "rejects_key"}`.

    Raises ConfigError for an unknown source (before starting anything) and CrawlError when
    the crawl process fails or leaves no summary, or refuses to start because a security
    component (SSRF guard, robots.txt, guarded resolver) cannot be imported.
    """
    ctx.sources.source(source_name)  # unknown source: ConfigError now, not a child traceback
    key = summary_key(ctx, source_name)
    logs = var_dir() / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    log_path = crawl_log_path(ctx, source_name)
    # PARENT_PID_ENV: the child arms a parent-death signal (spiders.pipelines), so a `kill -9` of
    # this process does not leave it crawling and writing to the bucket for a run that is gone.
    env = {**os.environ, **ctx.s3.as_env(), "PYTHONUNBUFFERED": "1", PARENT_PID_ENV: str(os.getpid())}
    cmd = crawl_command(ctx, source_name, settings=settings)
    log.info("crawl %s (run %s): %s; log in %s", source_name, ctx.run_id, " ".join(cmd), log_path)
    with open(log_path, "wb") as out:
        # Started under the fork lock: `pipeline run` forks extraction workers from another thread.
        with FORK_LOCK:
            proc = subprocess.Popen(
                cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )
        try:
            proc.wait(timeout=timeout)
        except BaseException as exc:  # our timeout, or e.g. Airflow's: the child must not outlive its task
            proc.kill()
            proc.wait()
            if isinstance(exc, subprocess.TimeoutExpired):
                raise CrawlError(
                    f"crawl of {source_name} timed out after {timeout:.0f}s; log tail:\n{_tail(log_path)}"
                ) from None
            raise
    if proc.returncode != 0:
        tail = _tail(log_path)
        refusal = _refusal(tail)
        if refusal is not None:  # fail closed: no security component, no crawl; say so first
            raise CrawlError(f"crawl of {source_name} refused to start: {refusal}; log tail:\n{tail}", terminal=True)
        raise CrawlError(f"crawl of {source_name} failed (exit {proc.returncode}); log tail:\n{tail}")
    if not ctx.bucket.exists(key):
        raise CrawlError(f"crawl of {source_name} wrote no summary at {key}; log tail:\n{_tail(log_path)}")
    summary = ctx.bucket.get_json(key)
    if summary.get("finish_reason") not in ("finished", None):
        raise CrawlError(
            f"crawl of {source_name} ended early ({summary.get('finish_reason')}); log tail:\n{_tail(log_path)}"
        )
    return {
        "source": summary["source"],
        "warc_keys": summary.get("warc_keys", []),
        "stats": summary.get("stats", {}),
        "rejects_key": summary.get("rejects_key"),
        "bytes": summary.get("bytes", 0),
        "summary_key": key,
    }


# --------------------------------------------------------------------------- outcome of a run's crawls
#
# Per-source crawl outcome, readable by any worker (the bucket is the shared store):
# `work/.../crawl/<source>.json`, the summary the spider writes when it closes, and
# `work/.../crawl-failed/<source>.json`, written by `crawl_source()` when a crawl raises (deleted
# again when a retry succeeds). A crawl killed outright (OOM, evicted pod) writes neither; it
# counts as failed too.

#: The longest failure reason kept for the run report (the tail of the crawl log is longer).
MAX_REASON_CHARS = 1500


def failure_key(ctx: RunContext, source_name: str) -> str:
    """`work/.../crawl-failed/<source>.json` of this run."""
    return crawl_failure_key(ctx.run_id, source_name)


def crawl_source(
    ctx: RunContext, source_name: str, *, try_number: int | None = None, settings: dict[str, str] | None = None
) -> dict:
    """`crawl_stage`, recording a failure in the bucket before re-raising (so the report can name it).

    Returns only what is small and safe for XCom: the source name and its WARC file count.
    """
    key = failure_key(ctx, source_name)
    try:
        summary = crawl_stage(ctx, source_name, settings=settings)
    except BaseException as exc:  # incl. AirflowTaskTimeout (a BaseException): record, then re-raise
        reason = f"{type(exc).__name__}: {exc}"
        try:
            ctx.bucket.put_json(
                key,
                {
                    "source": source_name,
                    "run_id": ctx.run_id,
                    "try_number": try_number,
                    "error": reason[-MAX_REASON_CHARS:],
                    "traceback": traceback.format_exc()[-MAX_REASON_CHARS:],
                },
            )
        except Exception as record_exc:  # the crawl's own error is the one to surface
            log.error("could not record the failure of %s: %s", source_name, record_exc)
        raise
    ctx.bucket.delete([key])  # a retry that succeeded: the earlier attempt's failure no longer holds
    return {"source": summary["source"], "warc_files": len(summary["warc_keys"])}


def crawl_summaries(ctx: RunContext) -> list[dict]:
    """The crawl summaries this run wrote to the bucket (one per source that finished)."""
    prefix = crawl_summaries_prefix(ctx.run_id)
    return [ctx.bucket.get_json(key) for key in ctx.bucket.list(prefix) if key.endswith(".json")]


def crawl_outcome(ctx: RunContext, source_names: Iterable[str]) -> tuple[list[dict], dict[str, str]]:
    """(summaries of the crawls that finished, {source: why it failed}) for this run.

    A source counts as failed when its crawl recorded a failure, ended early (finish
    reason other than `finished`), or left no summary at all (task killed, or never ran).
    """
    names = list(source_names or [])
    summaries = {s["source"]: s for s in crawl_summaries(ctx)}
    failed: dict[str, str] = {}
    for name in names:
        key = failure_key(ctx, name)
        if ctx.bucket.exists(key):
            failed[name] = ctx.bucket.get_json(key).get("error") or "crawl failed"
        elif name not in summaries:
            failed[name] = "crawl did not finish (task killed, timed out or never started; see its task log)"
        elif summaries[name].get("finish_reason") not in ("finished", None):
            failed[name] = f"crawl ended early: {summaries[name].get('finish_reason')}"
    finished = [s for name, s in summaries.items() if name in names and name not in failed]
    return finished, failed


def finished_warc_keys(ctx: RunContext, source_names: Iterable[str]) -> tuple[list[str], dict[str, str]]:
    """(every WARC file of the crawls that finished, in a stable order; {source: why it failed})."""
    finished, failed = crawl_outcome(ctx, source_names)
    for name, reason in failed.items():
        log.warning("source %s failed; its pages are left for the next run: %s", name, reason.splitlines()[0])
    keys = sorted({key for s in finished for key in s.get("warc_keys", [])})
    log.info("%d WARC file(s) from %d finished crawl(s)", len(keys), len(finished))
    return keys, failed
