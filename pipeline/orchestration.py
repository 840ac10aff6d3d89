"""Glue between Airflow's task context and the pipeline: run ids, S3 settings, sources path.

Imported inside tasks only (never at DAG-parse time). Airflow itself is imported
lazily here too, so this module stays importable without Airflow.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from pipeline.config import S3Settings
from pipeline.context import RunContext, make_run_id
from pipeline.paths import default_sources_path

log = logging.getLogger(__name__)

DEFAULT_CONN_ID = "news_ingest_s3"
SOURCES_VARIABLE = "news_ingest_sources_path"


def run_id_from_context(context: dict[str, Any]) -> str:
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


def s3_settings_from_connection(conn_id: str) -> S3Settings:
    """S3 settings from an Airflow Connection (login = access key, password = secret,
    extra `endpoint_url` and `bucket`), falling back to the environment when it does not exist."""
    base = S3Settings.from_env()
    try:
        from airflow.sdk import BaseHook

        conn = BaseHook.get_connection(conn_id)
    except Exception as exc:  # the Connection is optional: a missing one means "use the environment"
        log.info("no Airflow connection %r (%s); S3 settings from the environment", conn_id, type(exc).__name__)
        return base
    extra = conn.extra_dejson or {}
    return S3Settings(
        endpoint_url=extra.get("endpoint_url") or base.endpoint_url,
        access_key_id=conn.login or base.access_key_id,
        secret_access_key=conn.password or base.secret_access_key,
        bucket=extra.get("bucket") or base.bucket,
        region=extra.get("region_name") or base.region,
    )


def sources_path_from(params: dict[str, Any]) -> Path:
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


def context_from_airflow(context: dict[str, Any]) -> RunContext:
    """A RunContext for the task being run."""
    params = context.get("params") or {}
    return RunContext(
        run_id=run_id_from_context(context),
        s3=s3_settings_from_connection(params.get("conn_id") or DEFAULT_CONN_ID),
        sources_path=sources_path_from(params),
    )
