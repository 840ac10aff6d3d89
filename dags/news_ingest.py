"""
### news_ingest

Hourly news ingestion: crawl every configured source (one mapped task per
source), extract each WARC file (one mapped task per file), then clean,
deduplicate and commit the articles to the bucket as one atomic Parquet run.

* **Sources**: the `sources_path` param, else the Variable `news_ingest_sources_path`,
  else `config/sources.yaml` (or `$NEWS_INGEST_SOURCES`).
* **Bucket**: the Connection `conn_id` (default `news_ingest_s3`: login = access key,
  password = secret, extra `{"endpoint_url": ..., "bucket": ...}`), else the AWS environment.
  An `aws` Connection is read through the amazon provider's S3Hook session when it is installed,
  so `role_arn`, `region_name`, profiles and `service_config.s3.endpoint_url` work too.
* **Pools**: with `pipeline.airflow_tasks.task_instance_mutation_hook` in the scheduler's
  `airflow_local_settings.py`, each source's crawl runs in the pool `news-ingest-<source>`
  (slots = its `concurrency`; `scripts/cluster.py:sync_pools` creates them) and takes all of it.
* **Output**: the `news_articles` Asset; its event extra carries `run_id` and `manifest`.
* **Scale-out**: `crawl` and `extract` are mapped tasks, so a Celery or Kubernetes
  executor spreads them over workers; the bucket is the only shared state.
* **Overlapping runs**: `max_active_runs` is `$NEWS_INGEST_MAX_ACTIVE_RUNS` in the environment
  of the dag-processor (read when the file is parsed), default 1. Overlapping runs are safe:
  each commits its own rows, seen-state entries go to per-run delta objects and the dedupe index
  takes one conditionally created segment per commit, so no entry is lost and an article two runs
  of one day fetched is stored once (`tests/test_scale_overlap.py` runs three at once). The default stays 1
  because every run crawls each site as it is now: a second run started while one is crawling
  fetches again what the first has not committed, and only one copy is kept. Raise it (with the
  pools below, so that runs crawling one outlet still share its slots) when one slow outlet must
  not hold back the next hour of the others. `airflow backfill create --max-active-runs N`
  sets its own limit for the runs of a backfill.
* **Failures**: a failed crawl does not stop the others. `warc_files` and `report` run
  whatever the crawls did; the report (`reports/run=<id>.json`) names each failed source
  and why, and `check` then fails the run so that alerting sees it, after the other
  sources' articles are committed.

Every task calls one function from `pipeline/` and passes bucket keys, never data.
The run id is the data interval end, so retries and re-runs overwrite, never duplicate.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from datetime import datetime, timedelta

from airflow.sdk import Asset, Param, TriggerRule, dag, task

#: Also declared in news_consumer.py and news_maintenance.py (an Asset is identified by name + URI).
ARTICLES = Asset(name="news_articles", uri=f"s3://{os.environ.get('NEWS_INGEST_BUCKET', 'news')}/articles/")

#: Environment variable (of the dag-processor: read at parse time) for the DAG's `max_active_runs`.
MAX_ACTIVE_RUNS_ENV = "NEWS_INGEST_MAX_ACTIVE_RUNS"


def max_active_runs(env: Mapping[str, str] = os.environ) -> int:
    """`$NEWS_INGEST_MAX_ACTIVE_RUNS` as a positive int, 1 when unset; ValueError (an import error) otherwise."""
    raw = env.get(MAX_ACTIVE_RUNS_ENV, "").strip()
    if not raw:
        return 1
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        raise ValueError(f"{MAX_ACTIVE_RUNS_ENV} must be a whole number >= 1, got {raw!r}")
    return value


DEFAULT_ARGS = {
    "owner": "news-ingest",
    "retries": 2,
    "retry_delay": timedelta(seconds=30),
    "retry_exponential_backoff": True,
    "max_retry_delay": timedelta(minutes=10),
    "execution_timeout": timedelta(minutes=20),
}


@dag(
    dag_id="news_ingest",
    schedule="@hourly",
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=max_active_runs(),
    dagrun_timeout=timedelta(hours=3),
    default_args=DEFAULT_ARGS,
    params={
        "sources_path": Param(None, type=["null", "string"], description="sources YAML file"),
        "conn_id": Param("news_ingest_s3", type="string", description="Airflow Connection for the bucket"),
    },
    tags=["news-ingest"],
    doc_md=__doc__,
)
def news_ingest():
    # Each task calls the step of `pipeline.flows.ingest` for its stage, with the task's RunContext,
    # inside `fail_fast()`: wrong credentials or bad configuration fail the task without retries.
    @task(retries=3)
    def sources(**context) -> list[str]:
        """Check the bucket and the sources file; the names of the sources to crawl."""
        from pipeline.airflow_tasks import context_from_airflow, fail_fast
        from pipeline.flows import ingest

        with fail_fast():
            return ingest.sources_step(context_from_airflow(context))

    # A crawl is polite (delays, AutoThrottle) and so slow: it gets an hour. Several
    # sources crawl at once, spread over the workers (4 per run at most).
    @task(max_active_tis_per_dagrun=4, execution_timeout=timedelta(hours=1), retries=1)
    def crawl(source: str, **context) -> dict:
        from pipeline.airflow_tasks import context_from_airflow, fail_fast
        from pipeline.flows import ingest

        with fail_fast():
            return ingest.crawl_step(context_from_airflow(context), source, try_number=context["ti"].try_number)

    @task(trigger_rule=TriggerRule.ALL_DONE)
    def warc_files(source_names: list[str], **context) -> list[str]:
        """Runs even when some crawls failed: the WARC files of the finished ones go on."""
        from pipeline.airflow_tasks import context_from_airflow, fail_fast
        from pipeline.flows import ingest

        with fail_fast():
            return ingest.warc_files_step(context_from_airflow(context), source_names)

    @task(max_active_tis_per_dagrun=8)
    def extract(warc_key: str, **context) -> str:
        from pipeline.airflow_tasks import context_from_airflow, fail_fast
        from pipeline.flows import ingest

        with fail_fast():
            return ingest.extract_step(context_from_airflow(context), warc_key)

    @task
    def clean(extracted_keys: list[str], **context) -> str:
        from pipeline.airflow_tasks import context_from_airflow, fail_fast
        from pipeline.flows import ingest

        with fail_fast():
            return ingest.clean_step(context_from_airflow(context), list(extracted_keys))

    @task
    def dedupe(cleaned_key: str, **context) -> str:
        from pipeline.airflow_tasks import context_from_airflow, fail_fast
        from pipeline.flows import ingest

        with fail_fast():
            return ingest.dedupe_step(context_from_airflow(context), cleaned_key)

    @task(outlets=[ARTICLES])
    def store(deduped_key: str, source_names: list[str], **context) -> str:
        """Commit the run (one Delta transaction), mark its URLs seen, and emit the `news_articles` event.

        The commit replaces this run's rows of the sources whose crawl reached them (and of the sources
        in its records): a cleared and re-run run whose crawl of a source now fails keeps that source's rows.
        """
        from pipeline.airflow_tasks import context_from_airflow, fail_fast
        from pipeline.flows import ingest

        with fail_fast():
            ctx = context_from_airflow(context)
            covered = ingest.reached_sources(ctx, source_names, {})
            manifest_key = ingest.commit_step(ctx, deduped_key, covered)
        from pipeline.dataset.delta import version_of_key

        # `version`: the table version this run committed (consumers read changes since the one before).
        context["outlet_events"][ARTICLES].extra = {
            "run_id": ctx.run_id,
            "manifest": manifest_key,
            "version": version_of_key(manifest_key),
        }
        return manifest_key

    @task(trigger_rule=TriggerRule.ALL_DONE)
    def report(source_names: list[str] | None, deduped_key: str | None, manifest_key: str | None, **context) -> dict:
        """Always runs: the run report, naming every failed source."""
        from pipeline.airflow_tasks import context_from_airflow, fail_fast
        from pipeline.flows import ingest

        with fail_fast():
            return ingest.report_and_summarise(context_from_airflow(context), source_names, deduped_key, manifest_key)

    @task(retries=0)
    def check(headline: dict) -> None:
        """Fails the run when a source failed or nothing was committed (after the report is written)."""
        from pipeline.airflow_tasks import fail_fast
        from pipeline.flows import ingest

        with fail_fast():
            ingest.check_step(headline)

    names = sources()
    crawled = crawl.expand(source=names)
    keys = warc_files(names)
    crawled >> keys
    extracted = extract.expand(warc_key=keys)
    deduped = dedupe(clean(extracted))
    manifest = store(deduped, names)
    check(report(names, deduped, manifest))


news_ingest_dag = news_ingest()
