"""Glue between Airflow's task context and the pipeline: run ids, S3 settings, sources path,
and the one function each DAG task calls.

Imported inside tasks only (never at DAG-parse time). Airflow itself is imported
lazily here too, so this module stays importable (and testable) without Airflow.

Per-source crawl outcome, readable by any worker (the bucket is the shared store):

* `work/.../crawl/<source>.json`: the crawl summary the spider writes when it closes;
* `work/.../crawl-failed/<source>.json`: written by `crawl_source()` when a crawl raises
  (deleted again when a retry succeeds). A crawl task killed outright (OOM, evicted pod)
  writes neither; it counts as failed too.
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Iterable, Mapping
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from pipeline.core.config import S3Settings
from pipeline.core.context import RunContext, make_run_id
from pipeline.core.paths import default_sources_path
from pipeline.core.bucket import safe_segment

log = logging.getLogger(__name__)

DEFAULT_CONN_ID = "news_ingest_s3"
SOURCES_VARIABLE = "news_ingest_sources_path"
ASSET_NAME = "news_articles"
#: The longest failure reason kept for the run report (the tail of the crawl log is longer).
MAX_REASON_CHARS = 1500


# --------------------------------------------------------------------------- configuration


def run_id_from_context(context: Mapping[str, Any]) -> str:
    """The run id of an Airflow run: its data interval end (deterministic on retries and re-runs).

    Manual runs in Airflow 3 may have no data interval or logical date; then
    `run_after` (fixed when the run was created) is used, still never `now()`.
    """
    when = context.get("data_interval_end") or context.get("logical_date")
    if when is None:
        dag_run = context.get("dag_run")
        when = getattr(dag_run, "run_after", None)
    if when is None:
        raise ValueError("the Airflow context has no data interval, logical date or run_after")
    return make_run_id(when)


def _mask(*values: str | None) -> None:
    """Register values with Airflow's secrets masker (task logs show *** instead); no-op outside Airflow."""
    try:
        from airflow.sdk.log import mask_secret
    except ImportError:
        return
    for value in values:
        if value:
            mask_secret(value)


def s3_settings_from_connection(conn_id: str) -> S3Settings:
    """S3 settings from an Airflow Connection (login = access key, password = secret,
    extra `endpoint_url`, `bucket`, `region_name`), falling back to the environment for what
    the Connection does not set, or entirely when it does not exist.

    The secret is registered with Airflow's masker whichever way it came, so it never
    appears in a task log.
    """
    base = S3Settings.from_env()
    try:
        from airflow.sdk import BaseHook
        from airflow.sdk.exceptions import AirflowNotFoundException
    except ImportError:  # not under Airflow at all
        return base
    try:
        conn = BaseHook.get_connection(conn_id)
    except AirflowNotFoundException:
        # The Connection is optional: a missing one means "use the environment". Any other
        # error (a secrets backend down) propagates: the task fails and is retried.
        log.info("no Airflow connection %r; S3 settings from the environment (%s)", conn_id, base)
        _mask(base.secret_access_key)
        return base
    extra = conn.extra_dejson or {}
    settings = S3Settings(
        endpoint_url=extra.get("endpoint_url") or base.endpoint_url,
        access_key_id=conn.login or base.access_key_id,
        secret_access_key=conn.password or base.secret_access_key,
        bucket=extra.get("bucket") or base.bucket,
        region=extra.get("region_name") or base.region,
    )
    _mask(settings.secret_access_key)
    log.info("S3 settings from Airflow connection %r: %s", conn_id, settings)  # str() never shows the secret
    return settings


def sources_path_from(params: Mapping[str, Any]) -> Path:
    """The sources file: the DAG param, else the Airflow Variable, else the default."""
    if params.get("sources_path"):
        return Path(params["sources_path"])
    try:
        from airflow.sdk import Variable

        value = Variable.get(SOURCES_VARIABLE, default=None)
    except Exception as exc:  # no Variable backend reachable: fall back to the default file
        log.info("Variable %s not readable (%s)", SOURCES_VARIABLE, type(exc).__name__)
        value = None
    return Path(value) if value else default_sources_path()


def settings_from_airflow(context: Mapping[str, Any]) -> S3Settings:
    """The bucket settings of a task: the `conn_id` param's Connection, else the environment."""
    params = context.get("params") or {}
    return s3_settings_from_connection(params.get("conn_id") or DEFAULT_CONN_ID)


def context_from_airflow(context: Mapping[str, Any], run_id: str | None = None) -> RunContext:
    """A RunContext for the task being run (or for `run_id`, e.g. a run being re-extracted)."""
    params = context.get("params") or {}
    return RunContext(
        run_id=run_id or run_id_from_context(context),
        s3=settings_from_airflow(context),
        sources_path=sources_path_from(params),
    )


# --------------------------------------------------------------------------- news_ingest tasks


def failure_key(ctx: RunContext, source_name: str) -> str:
    return f"{ctx.prefix('work')}crawl-failed/{safe_segment(source_name)}.json"


def list_run_sources(ctx: RunContext) -> list[str]:
    """First task of a run: the bucket is reachable with these credentials, and the sources file is valid."""
    from pipeline.flows.ingest import list_sources

    ctx.bucket.check()
    return list_sources(ctx)


def crawl_source(ctx: RunContext, source_name: str, *, try_number: int | None = None,
                 settings: dict[str, str] | None = None) -> dict:
    """One mapped crawl task: `crawl_stage`, recording a failure in the bucket before re-raising.

    Returns only what is small and safe for XCom: the source name and its WARC file count.
    """
    from pipeline.stages.crawl import crawl_stage

    key = failure_key(ctx, source_name)
    try:
        summary = crawl_stage(ctx, source_name, settings=settings)
    except BaseException as exc:  # incl. AirflowTaskTimeout (a BaseException): record, then re-raise
        reason = f"{type(exc).__name__}: {exc}"
        try:
            ctx.bucket.put_json(key, {"source": source_name, "run_id": ctx.run_id, "try_number": try_number,
                                      "error": reason[-MAX_REASON_CHARS:],
                                      "traceback": traceback.format_exc()[-MAX_REASON_CHARS:]})
        except Exception as record_exc:  # the crawl's own error is the one to surface
            log.error("could not record the failure of %s: %s", source_name, record_exc)
        raise
    ctx.bucket.delete([key])  # a retry that succeeded: the earlier attempt's failure no longer holds
    return {"source": summary["source"], "warc_files": len(summary["warc_keys"])}


def crawl_outcome(ctx: RunContext, source_names: Iterable[str]) -> tuple[list[dict], dict[str, str]]:
    """(summaries of the crawls that finished, {source: why it failed}) for this run.

    A source counts as failed when its crawl recorded a failure, ended early (finish
    reason other than `finished`), or left no summary at all (task killed, or never ran).
    """
    from pipeline.flows.ingest import crawl_summaries

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


def collect_warc_keys(ctx: RunContext, source_names: Iterable[str]) -> list[str]:
    """After all crawls (whatever their state): the WARC files of the crawls that finished."""
    from pipeline.flows.ingest import warc_keys_of

    finished, failed = crawl_outcome(ctx, source_names)
    for name, reason in failed.items():
        log.warning("source %s failed; its pages are left for the next run: %s", name, reason.splitlines()[0])
    keys = warc_keys_of(finished)
    log.info("%d WARC file(s) from %d finished crawl(s)", len(keys), len(finished))
    return keys


def commit_run(ctx: RunContext, deduped_key: str) -> str:
    """Store the run's articles (atomic manifest commit), then mark their URLs seen; the manifest key."""
    from pipeline.flows.ingest import remember_stored
    from pipeline.stages.store import store_stage

    manifest_key = store_stage(ctx, deduped_key)
    remember_stored(ctx, deduped_key)
    return manifest_key


def report_run(ctx: RunContext, source_names: Iterable[str] | None, deduped_key: str | None,
               manifest_key: str | None) -> dict:
    """Write the run report (failed sources named) and print its summary; return its small headline."""
    from pipeline.report.run_report import print_summary, write_report

    names = list(source_names or [])
    _, failed = crawl_outcome(ctx, names)
    rep = write_report(ctx, sources=names, timings={}, failed_sources=failed,
                       deduped_key=deduped_key, manifest_key=manifest_key)
    print_summary(rep)
    return {"run_id": rep["run_id"], "articles_stored": rep["articles_stored"], "rejects": rep["rejects"],
            "failed_sources": sorted(failed), "committed": manifest_key is not None,
            "report": f"reports/run={rep['run_id']}.json"}


def check_run(headline: Mapping[str, Any] | None) -> None:
    """Fail (so alerting sees it) when a source failed or nothing was committed; the report is written by then."""
    if not headline:
        raise RuntimeError("the run report task produced nothing")
    problems = []
    if headline.get("failed_sources"):
        problems.append(f"source(s) failed: {', '.join(headline['failed_sources'])}")
    if not headline.get("committed"):
        problems.append("no articles were committed")
    if problems:
        raise RuntimeError(f"run {headline.get('run_id')}: {'; '.join(problems)} "
                           f"(the other sources' articles are committed; see {headline.get('report')})")


# --------------------------------------------------------------------------- news_consumer


def triggering_runs(context: Mapping[str, Any]) -> list[dict]:
    """[{run_id, manifest}] of the `news_articles` events that triggered this run, in order, unique."""
    events = context.get("triggering_asset_events") or {}
    out: dict[str, dict] = {}
    for asset in events:
        if getattr(asset, "name", None) != ASSET_NAME:
            continue
        for event in events[asset]:
            extra = dict(event.extra or {})
            if extra.get("run_id"):
                out[extra["run_id"]] = {"run_id": extra["run_id"], "manifest": extra.get("manifest")}
    return list(out.values())


def summarise_run(settings: S3Settings, run_id: str) -> dict:
    """Per-source article counts of ONE committed run, written to `reports/consumer/run=<id>.json`."""
    from pipeline.dataset.read import read_articles
    from pipeline.core.bucket import Bucket

    table = read_articles(settings=settings, run_id=run_id, columns=["source", "duplicate_of", "title"])
    rows = table.to_pylist()
    per_source: dict[str, dict[str, int]] = {}
    for row in rows:
        entry = per_source.setdefault(row["source"], {"articles": 0, "canonical": 0})
        entry["articles"] += 1
        entry["canonical"] += row["duplicate_of"] is None
    summary = {"run_id": run_id, "articles": len(rows), "sources": dict(sorted(per_source.items())),
               "titles": sorted({row["title"] for row in rows if row["title"]})}
    key = f"reports/consumer/run={run_id}.json"
    Bucket(settings).put_json(key, summary)
    log.info("consumer: run %s has %d articles: %s", run_id, len(rows),
             ", ".join(f"{s} {c['articles']}" for s, c in summary["sources"].items()))
    return {"run_id": run_id, "articles": len(rows), "key": key}


def summarise_triggering_runs(context: Mapping[str, Any]) -> list[dict]:
    """The consumer task: summarise exactly the runs whose Asset events triggered this DAG run."""
    runs = triggering_runs(context)
    if not runs:
        log.info("no news_articles event with a run id triggered this run; nothing to read")
        return []
    settings = settings_from_airflow(context)
    return [summarise_run(settings, r["run_id"]) for r in runs]


# --------------------------------------------------------------------------- dates


def interval_day(context: Mapping[str, Any]) -> date:
    """The day a daily maintenance run is about: the day before its data interval end (or run_after)."""
    when = context.get("data_interval_end") or context.get("logical_date")
    if when is None:
        when = getattr(context.get("dag_run"), "run_after", None)
    if when is None:
        raise ValueError("the Airflow context has no data interval, logical date or run_after")
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return (when.astimezone(timezone.utc) - timedelta(days=1)).date()


def as_datetime(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=timezone.utc)


# --------------------------------------------------------------------------- news_maintenance


def compaction_days(context: Mapping[str, Any]) -> list[str]:
    """The days to compact: the day before the run's data interval end and `compact_days - 1` before it."""
    params = context.get("params") or {}
    last = interval_day(context)
    n = max(0, int(params.get("compact_days", 2)))
    return [(last - timedelta(days=i)).isoformat() for i in range(n)]


def reextract_plan(context: Mapping[str, Any]) -> list[str]:
    """Run ids to re-extract: those archived between the `reextract_from` and `reextract_to` params
    (inclusive; `reextract_to` defaults to `reextract_from`). No params: nothing."""
    from pipeline.flows.maintenance import runs_between
    from pipeline.core.bucket import Bucket

    params = context.get("params") or {}
    start = params.get("reextract_from")
    if not start:
        return []
    runs = runs_between(Bucket(settings_from_airflow(context)), start, params.get("reextract_to") or start)
    log.info("re-extracting %d run(s) archived %s..%s", len(runs), start, params.get("reextract_to") or start)
    return runs


def reextract_one(context: Mapping[str, Any], run_id: str) -> dict:
    """Re-extract one archived run (the mapped maintenance task)."""
    from pipeline.flows.maintenance import reextract

    params = context.get("params") or {}
    return reextract(settings_from_airflow(context), run_id, sources_path_from(params))


def compact_one(context: Mapping[str, Any], dt: str) -> str | None:
    from pipeline.flows.maintenance import compact_day

    return compact_day(settings_from_airflow(context), dt)


def prune_state(context: Mapping[str, Any]) -> dict:
    """Prune the dedupe index (older than its window) and the seen-URL state (older than the retention),
    both relative to the run's data interval, never the wall clock; and remove orphaned article files."""
    from pipeline.flows.maintenance import cleanup_orphans, prune_dedupe_index, prune_seen_state
    from pipeline.core.bucket import Bucket

    params = context.get("params") or {}
    settings = settings_from_airflow(context)
    bucket = Bucket(settings)
    day = interval_day(context) + timedelta(days=1)  # the data interval end's day
    as_of = as_datetime(day)
    shards = prune_dedupe_index(bucket, day)
    seen = prune_seen_state(bucket, as_of, retention_days=float(params.get("seen_retention_days", 90)))
    orphans = cleanup_orphans(settings, as_of)
    return {"dedupe_shards_deleted": len(shards), "seen_entries_removed": sum(seen.values()),
            "orphans_deleted": orphans}
