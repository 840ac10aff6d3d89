"""
### news_consumer

An example downstream consumer, scheduled on data: it runs whenever `news_ingest`
(or a re-extraction in `news_maintenance`) commits articles, i.e. on each event of the
`news_articles` Asset, and reads **exactly the rows the triggering commits added**
(`triggering_asset_events` -> event extra `run_id` and `version` (the Delta table version the
commit made) -> `read_articles(run_id=..., since_version=version - 1, until_version=version)`,
from the table's change data feed).

It writes a small summary per run to `reports/consumer/run=<run_id>.json`
(articles per source, canonical vs duplicates, titles) and logs it. Copy it as the
starting point for an NLP job: the pattern (read what one table version committed) is
idempotent and never sees half-written data.

The bucket: the Connection `conn_id` (default `news_ingest_s3`), else the AWS environment.
"""

from __future__ import annotations

import os
from datetime import datetime

from airflow.sdk import Asset, Param, dag, task

#: The same Asset news_ingest.py declares as the store task's outlet (identified by name + URI).
ARTICLES = Asset(name="news_articles", uri=f"s3://{os.environ.get('NEWS_INGEST_BUCKET', 'news')}/articles/")


@dag(
    dag_id="news_consumer",
    schedule=[ARTICLES],
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    default_args={"owner": "news-ingest", "retries": 2},
    params={"conn_id": Param("news_ingest_s3", type="string", description="Airflow Connection for the bucket")},
    tags=["news-ingest", "example"],
    doc_md=__doc__,
)
def news_consumer():
    @task
    def summarise(**context) -> list[dict]:
        """Per-source counts of each run that triggered this one."""
        from pipeline.airflow_tasks import fail_fast, summarise_triggering_runs

        with fail_fast():
            return summarise_triggering_runs(context)

    summarise()


news_consumer_dag = news_consumer()
