"""
### news_maintenance

Daily upkeep of the bucket, and on-demand re-extraction from the WARC archive.

* **Re-extract** (only when triggered with `reextract_from` [and `reextract_to`], dates
  `YYYY-MM-DD`): every run archived under `raw/dt=<day>/run=<id>/` in that range is
  rebuilt from its WARC files with the current extractor and cleaner, without crawling,
  and committed again (replacing its articles). One mapped task per run; each emits a
  `news_articles` Asset event, so consumers re-read the runs that changed.
  `airflow dags trigger news_maintenance -c '{"reextract_from": "2026-11-01", "reextract_to": "2026-11-07"}'`
* **Compact** the Parquet files of the last `compact_days` days (default 2: yesterday and
  the day before) into few large files (`pipeline.stages.store.compact`; readers are unaffected).
* **Prune**: dedupe index shards older than the dedupe window, seen-URL entries older than
  `seen_retention_days`, and article files no manifest lists.
* **Abort stale uploads**: multipart uploads open for more than a day (left by a store that
  died mid-way) are aborted, so their parts stop taking space. An upload's age is measured
  on the wall clock (S3 stamps its start with the server's).

All dates are relative to the run's data interval, never the wall clock, so a re-run of a
day does the same thing. Bucket and sources as in `news_ingest` (`conn_id`, `sources_path`).
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta

from airflow.sdk import Asset, Param, TriggerRule, dag, task

#: The same Asset news_ingest.py declares (identified by name + URI).
ARTICLES = Asset(name="news_articles", uri=f"s3://{os.environ.get('NEWS_INGEST_BUCKET', 'news')}/articles/")


@dag(
    dag_id="news_maintenance",
    schedule="@daily",
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    default_args={
        "owner": "news-ingest",
        "retries": 2,
        "retry_delay": timedelta(minutes=1),
        "retry_exponential_backoff": True,
        "execution_timeout": timedelta(hours=2),
    },
    params={
        "reextract_from": Param(
            None, type=["null", "string"], format="date", description="first day (YYYY-MM-DD) of runs to re-extract"
        ),
        "reextract_to": Param(
            None, type=["null", "string"], format="date", description="last day (inclusive); default: reextract_from"
        ),
        "compact_days": Param(2, type="integer", minimum=0, maximum=31, description="days to compact"),
        "seen_retention_days": Param(90, type="number", minimum=1, description="keep seen URLs this long"),
        "sources_path": Param(None, type=["null", "string"], description="sources YAML file"),
        "conn_id": Param("news_ingest_s3", type="string", description="Airflow Connection for the bucket"),
    },
    tags=["news-ingest", "maintenance"],
    doc_md=__doc__,
)
def news_maintenance():
    @task
    def runs_to_reextract(**context) -> list[str]:
        from pipeline.airflow_tasks import fail_fast, reextract_plan

        with fail_fast():
            return reextract_plan(context)

    @task(outlets=[ARTICLES], max_active_tis_per_dagrun=2)
    def reextract(archived_run: str, **context) -> dict:
        """Rebuild one archived run (`archived_run`: its pipeline run id) from its WARC files."""
        from pipeline.airflow_tasks import fail_fast, reextract_one

        with fail_fast():
            headline = reextract_one(context, archived_run)
        from pipeline.dataset.delta import version_of_key

        # `version`: the table version of the re-commit (the consumer reads exactly its rows).
        context["outlet_events"][ARTICLES].extra = {
            "run_id": archived_run,
            "manifest": headline["manifest"],
            "version": version_of_key(headline["manifest"]) if headline["manifest"] else None,
            "reextracted": True,
        }
        return headline

    @task(trigger_rule=TriggerRule.NONE_FAILED)
    def days_to_compact(**context) -> list[str]:
        from pipeline.airflow_tasks import compaction_days, fail_fast

        with fail_fast():
            return compaction_days(context)

    @task
    def compact(dt: str, **context) -> str | None:
        from pipeline.airflow_tasks import compact_one, fail_fast

        with fail_fast():
            return compact_one(context, dt)

    @task
    def prune(**context) -> dict:
        from pipeline.airflow_tasks import fail_fast, prune_state

        with fail_fast():
            return prune_state(context)

    @task
    def abort_stale_uploads(**context) -> dict:
        from pipeline.airflow_tasks import fail_fast, settings_from_airflow
        from pipeline.core.bucket import Bucket
        from pipeline.flows.maintenance import abort_stale_uploads as abort

        with fail_fast():
            return {"uploads_aborted": len(abort(Bucket(settings_from_airflow(context))))}

    rebuilt = reextract.expand(archived_run=runs_to_reextract())
    days = days_to_compact()
    rebuilt >> days  # compact after re-extraction replaced files (skipped when there was none)
    compact.expand(dt=days)
    prune()
    abort_stale_uploads()


news_maintenance_dag = news_maintenance()
