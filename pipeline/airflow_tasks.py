"""Glue between Airflow's task context and the pipeline: run ids, S3 settings, the sources path,
and the functions the consumer and maintenance DAGs call. The ingest DAG's tasks each call one
step of `pipeline.flows.ingest` with the `RunContext` built here.

Every task body runs inside `fail_fast()`: errors a retry cannot fix (wrong credentials, a
missing bucket, bad configuration) fail the task at once instead of using up its retries.

Imported inside tasks only (never at DAG-parse time). Airflow itself is imported
lazily here too, so this module stays importable (and testable) without Airflow.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from pipeline.core.bucket import Bucket
from pipeline.core.config import S3Settings, SourcesConfig
from pipeline.core.context import RunContext, make_run_id
from pipeline.core.errors import is_terminal
from pipeline.core.layout import consumer_report_key, run_prefix
from pipeline.core.paths import default_sources_path

log = logging.getLogger(__name__)

DEFAULT_CONN_ID = "news_ingest_s3"
SOURCES_VARIABLE = "news_ingest_sources_path"
#: The Airflow Variable holding the sources YAML itself (needs no file on any worker).
SOURCES_YAML_VARIABLE = "news_ingest_sources"
#: Under a run's work/ folder: the sources version the run pinned (`pipeline.cli.sources.pin_run_sources`).
SOURCES_PIN = "sources.json"
ASSET_NAME = "news_articles"


# --------------------------------------------------------------------------- terminal errors


@contextmanager
def fail_fast() -> Iterator[None]:
    """Around a task's body: an error a retry cannot fix fails the task at once.

    Terminal errors (a StorageError with `terminal` set: wrong credentials, a missing bucket;
    a ConfigError, a bad run id among them) are re-raised as Airflow's `AirflowFailException` with the
    same message, which fails the task without its retries. Everything else (an S3 outage, a
    lost connection, a crawl that failed) propagates unchanged, and Airflow retries it.
    """
    try:
        yield
    except Exception as exc:
        if not is_terminal(exc):
            raise
        fail = _fail_exception()
        if fail is None:
            raise
        log.error("terminal error, not retrying: %s: %s", type(exc).__name__, exc)
        raise fail(str(exc)) from exc


def _fail_exception() -> type[Exception] | None:
    """Airflow's "fail without retrying" exception; None when not under Airflow (nothing to translate to)."""
    try:
        from airflow.sdk.exceptions import AirflowFailException
    except ImportError:
        return None
    return AirflowFailException


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

    An `aws` Connection, with the amazon provider installed, is read through the provider's
    S3Hook session (`pipeline.runtime.airflow_conn`): also `role_arn`, profiles and boto3's chain.

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
    if conn.conn_type == "aws":
        from pipeline.runtime.airflow_conn import settings_from_aws_hook

        # The amazon provider's session: keys, an assumed role, a profile, the region and the endpoint.
        settings = settings_from_aws_hook(conn_id, base)
        if settings is not None:
            _mask(settings.secret_access_key, settings.session_token)
            log.info("S3 settings from the aws connection %r (amazon provider): %s", conn_id, settings)
            return settings
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


def sources_path_from(params: Mapping[str, Any], *, bucket: Bucket | None = None, pin_key: str | None = None) -> Path:
    """The sources file of a task, first found of:

    1. the `sources_path` DAG param (a file every worker has: single-machine deployments);
    2. the Airflow Variable `news_ingest_sources_path` (a file path, as 1.);
    3. the Airflow Variable `news_ingest_sources` holding the YAML itself;
    4. with `bucket`: the version `python -m pipeline sources push` made current, pinned for the
       run at `pin_key` by its first task (so every task of a run reads the same version), else
       the current version;
    5. the default file (`config/sources.yaml` or `$NEWS_INGEST_SOURCES`).

    YAML from a Variable or the bucket is written to a content-addressed file in this machine's
    temp folder, read by this task (and its crawl child) only: nothing local passes between tasks.
    """
    if params.get("sources_path"):
        return Path(params["sources_path"])
    value = _variable(SOURCES_VARIABLE)
    if value:
        return Path(value)
    text = _variable(SOURCES_YAML_VARIABLE)
    if text:
        return _materialise(text)
    if bucket is not None:
        from pipeline.cli.sources import current_sources, pin_run_sources, read_version

        if pin_key is not None:
            sha = pin_run_sources(bucket, pin_key)
        else:
            sha = (current_sources(bucket) or {}).get("sha256")
        if sha is not None:
            log.info("sources: version sha256=%s from the bucket", sha)
            return _materialise(read_version(bucket, sha))
    return default_sources_path()


def _variable(name: str) -> str | None:
    """An Airflow Variable, None when unset or when not under Airflow; a backend outage raises (retried)."""
    try:
        from airflow.sdk import Variable
    except ImportError:  # not under Airflow at all
        return None
    try:
        return Variable.get(name, default=None)
    except Exception as exc:
        # Not a silent fallback to another sources file: a Variable backend outage fails the
        # task (transient, so Airflow retries it).
        raise RuntimeError(
            f"cannot read the Airflow Variable {name!r} (the sources file): {type(exc).__name__}: {exc}"
        ) from exc


def _materialise(text: str) -> Path:
    from pipeline.cli.sources import materialise

    return materialise(text, Path(tempfile.gettempdir()) / "news-ingest-sources")


def settings_from_airflow(context: Mapping[str, Any]) -> S3Settings:
    """The bucket settings of a task: the `conn_id` param's Connection, else the environment."""
    params = context.get("params") or {}
    return s3_settings_from_connection(params.get("conn_id") or DEFAULT_CONN_ID)


def allow_child_processes() -> None:
    """Let this task process start worker processes (the extract stage's pool) under Celery.

    A Celery prefork worker runs each task in a daemonic pool process; Airflow's supervisor forks the
    task from it, and the fork inherits the daemon flag, with which `multiprocessing` refuses to start
    children. The task process is a fork of its own that waits for its children, so the flag is cleared.
    """
    import multiprocessing

    config = getattr(multiprocessing.current_process(), "_config", None)
    if isinstance(config, dict) and config.get("daemon"):
        config["daemon"] = False


def context_from_airflow(context: Mapping[str, Any], run_id: str | None = None) -> RunContext:
    """A RunContext for the task being run (or for `run_id`, e.g. a run being re-extracted)."""
    allow_child_processes()
    params = context.get("params") or {}
    run_id = run_id or run_id_from_context(context)
    settings = settings_from_airflow(context)
    pin_key = run_prefix("work", run_id) + SOURCES_PIN
    return RunContext(
        run_id=run_id,
        s3=settings,
        sources_path=sources_path_from(params, bucket=Bucket(settings), pin_key=pin_key),
    )


# --------------------------------------------------------------------------- pools (per-outlet politeness)

INGEST_DAG = "news_ingest"
CRAWL_TASK = "crawl"
POOL_PREFIX = "news-ingest-"


def crawl_pool(source: str) -> str:
    """The Airflow pool of one source's crawls."""
    return POOL_PREFIX + source


def crawl_pools(sources: SourcesConfig) -> dict[str, int]:
    """{pool: slots} for every source, sized from its `concurrency`.

    Each crawl takes all of its pool's slots: across overlapping DAG runs an outlet is crawled by
    one task at a time, with at most `concurrency` requests in flight.
    """
    return {crawl_pool(s.name): s.concurrency for s in sources.sources}


def task_instance_mutation_hook(task_instance: Any, dag_run: Any = None) -> None:
    """Airflow cluster policy: each mapped `news_ingest.crawl` instance into its source's pool.

    A mapped task's `pool` cannot vary per instance, so this policy (import it in the scheduler's
    `airflow_local_settings.py`) sets it when the scheduler expands `crawl`: the source of map index i
    is the i-th name the `sources` task returned. A source without a pool (`crawl_pools` not synced)
    stays in the task's own pool. Reads with the scheduler's own session and never commits.
    """
    if (task_instance.dag_id, task_instance.task_id) != (INGEST_DAG, CRAWL_TASK) or task_instance.map_index < 0:
        return
    if dag_run is None:
        return  # TaskInstance.__init__; the scheduler calls the hook again with the run
    from sqlalchemy.orm import object_session

    session = object_session(dag_run)
    if session is None:
        return
    names = _run_sources(session, task_instance.dag_id, task_instance.run_id)
    if not names or task_instance.map_index >= len(names):
        return
    from airflow.models.pool import Pool
    from sqlalchemy import select

    name = crawl_pool(names[task_instance.map_index])
    slots = session.scalar(select(Pool.slots).where(Pool.pool == name))
    if slots is None or slots < 1:
        return
    task_instance.pool = name
    task_instance.pool_slots = slots


def _run_sources(session: Any, dag_id: str, run_id: str) -> list[str] | None:
    """The names the run's `sources` task returned (its XCom), None before it has."""
    from airflow.models.xcom import XComModel

    query = XComModel.get_many(run_id=run_id, key="return_value", task_ids="sources", dag_ids=dag_id, map_indexes=-1)
    row = session.scalars(query.limit(1)).first()
    if row is None:
        return None
    value = XComModel.deserialize_value(row)
    return [str(v) for v in value] if isinstance(value, list) else None


def worker_hostname() -> str:
    """`[core] hostname_callable` for several workers on one machine: `$NEWS_INGEST_WORKER_NAME`, else the FQDN.

    Task instances record the hostname of the worker that ran them; with two Celery workers on one
    host (the scale test) the FQDN alone would not tell them apart.
    """
    import os
    import socket

    return os.environ.get("NEWS_INGEST_WORKER_NAME") or socket.getfqdn()


# --------------------------------------------------------------------------- news_consumer


def triggering_runs(context: Mapping[str, Any]) -> list[dict]:
    """[{run_id, manifest, version}] of the `news_articles` events that triggered this run, in order, unique
    by run id (the last event of a run wins: its newest commit). `version` is None in older events."""
    events = context.get("triggering_asset_events") or {}
    out: dict[str, dict] = {}
    for asset in events:
        if getattr(asset, "name", None) != ASSET_NAME:
            continue
        for event in events[asset]:
            extra = dict(event.extra or {})
            if extra.get("run_id"):
                out.pop(extra["run_id"], None)
                out[extra["run_id"]] = {
                    "run_id": extra["run_id"],
                    "manifest": extra.get("manifest"),
                    "version": extra.get("version"),
                }
    return list(out.values())


def summarise_run(settings: S3Settings, run_id: str, version: int | None = None) -> dict:
    """Per-source article counts of ONE committed run, written to `reports/consumer/run=<id>.json`.

    With the event's table `version`: exactly the rows that version committed (the change feed since
    the version before it), so a re-run of one source is summarised as that source's new rows only.
    Without (an event from before the Delta table): the run's current rows.
    """
    from pipeline.dataset.read import read_articles

    columns = ["source", "duplicate_of", "title"]
    if version is None:
        table = read_articles(settings=settings, run_id=run_id, columns=columns)
    else:
        table = read_articles(
            settings=settings, run_id=run_id, since_version=version - 1, until_version=version, columns=columns
        )
    rows = table.to_pylist()
    per_source: dict[str, dict[str, int]] = {}
    for row in rows:
        entry = per_source.setdefault(row["source"], {"articles": 0, "canonical": 0})
        entry["articles"] += 1
        entry["canonical"] += row["duplicate_of"] is None
    sources = dict(sorted(per_source.items()))
    summary = {
        "run_id": run_id,
        "version": version,
        "articles": len(rows),
        "sources": sources,
        "titles": sorted({row["title"] for row in rows if row["title"]}),
    }
    key = consumer_report_key(run_id)
    Bucket(settings).put_json(key, summary)
    log.info(
        "consumer: run %s has %d articles: %s",
        run_id,
        len(rows),
        ", ".join(f"{s} {c['articles']}" for s, c in sources.items()),
    )
    return {"run_id": run_id, "version": version, "articles": len(rows), "key": key}


def summarise_triggering_runs(context: Mapping[str, Any]) -> list[dict]:
    """The consumer task: summarise exactly the runs whose Asset events triggered this DAG run."""
    runs = triggering_runs(context)
    if not runs:
        log.info("no news_articles event with a run id triggered this run; nothing to read")
        return []
    settings = settings_from_airflow(context)
    return [summarise_run(settings, r["run_id"], r.get("version")) for r in runs]


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

    allow_child_processes()
    params = context.get("params") or {}
    settings = settings_from_airflow(context)
    return reextract(settings, run_id, sources_path_from(params, bucket=Bucket(settings)))


def compact_one(context: Mapping[str, Any], dt: str) -> str | None:
    from pipeline.flows.maintenance import compact_day

    return compact_day(settings_from_airflow(context), dt)


def prune_state(context: Mapping[str, Any]) -> dict:
    """Prune the dedupe index (older than its window) and the seen-URL state (older than the retention),
    both relative to the run's data interval, never the wall clock; and remove orphaned article files."""
    from pipeline.flows.maintenance import (
        cleanup_orphans,
        compact_dedupe_window,
        prune_dedupe_index,
        prune_refused_state,
        prune_seen_state,
        prune_unused_warcs,
    )

    params = context.get("params") or {}
    settings = settings_from_airflow(context)
    bucket = Bucket(settings)
    day = interval_day(context) + timedelta(days=1)  # the data interval end's day
    as_of = as_datetime(day)
    shards = prune_dedupe_index(bucket, day)
    compacted = compact_dedupe_window(bucket, day)  # the window's earlier days: one index segment each
    seen = prune_seen_state(bucket, as_of, retention_days=float(params.get("seen_retention_days", 90)))
    refused = prune_refused_state(bucket, as_of)
    orphans = cleanup_orphans(settings, as_of)
    warcs = prune_unused_warcs(bucket, as_of)
    return {
        "unused_warcs_deleted": len(warcs),
        "dedupe_shards_deleted": len(shards),
        "dedupe_days_compacted": sum(bool(c.merged) for c in compacted),
        "seen_entries_removed": sum(seen.values()),
        "refused_entries_removed": sum(refused.values()),
        "orphans_deleted": orphans,
    }
