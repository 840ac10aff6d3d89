"""
### news_ingest

Hourly news ingestion: crawl every configured source (one mapped task per
source), extract each WARC file (one mapped task per file), then clean,
deduplicate and commit the articles to the bucket as one atomic Parquet run.

* **Sources**: the `sources_path` param, else the Variable `news_ingest_sources_path`,
  else `config/sources.yaml`.
* **Bucket**: the Connection `conn_id` (default `news_ingest_s3`: login = access key,
  password = secret, extra `{"endpoint_url": ..., "bucket": ...}`), else the AWS environment.
* **Output**: the `news_articles` Asset; its event carries the run id and manifest key.

Every task calls one function from `pipeline/` and passes bucket keys, never data.
The run id is the data interval end, so retries and re-runs overwrite, never duplicate.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import Asset, Param, TriggerRule, dag, task

ARTICLES = Asset(name="news_articles", uri="s3://news/articles/")

DEFAULT_ARGS = {
    "owner": "news-ingest",
    "retries": 2,
    "retry_delay": timedelta(seconds=30),
    "retry_exponential_backoff": True,
    "max_retry_delay": timedelta(minutes=10),
    "execution_timeout": timedelta(hours=1),
}


@dag(
    dag_id="news_ingest",
    schedule="@hourly",
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    params={
        "sources_path": Param(None, type=["null", "string"], description="sources YAML file"),
        "conn_id": Param("news_ingest_s3", type="string", description="Airflow Connection for the bucket"),
    },
    tags=["news-ingest"],
    doc_md=__doc__,
)
def news_ingest():
    @task
    def sources(**context) -> list[str]:
        from pipeline.orchestration import context_from_airflow
        from pipeline.run import list_sources

        ctx = context_from_airflow(context)
        ctx.bucket.check()
        return list_sources(ctx)

    @task(max_active_tis_per_dagrun=4)
    def crawl(source: str, **context) -> dict:
        from pipeline.crawl import crawl_stage
        from pipeline.orchestration import context_from_airflow

        summary = crawl_stage(context_from_airflow(context), source)
        return {"source": summary["source"], "warc_files": len(summary["warc_keys"])}

    @task(trigger_rule=TriggerRule.ALL_DONE)
    def warc_files(source_names: list[str], **context) -> list[str]:
        """Runs even when some crawls failed: the others' WARC files go on."""
        from pipeline.orchestration import context_from_airflow
        from pipeline.run import crawl_summaries, warc_keys_of

        summaries = crawl_summaries(context_from_airflow(context))
        done = {s["source"] for s in summaries}
        missing = sorted(set(source_names) - done)
        if missing:
            print(f"sources with no finished crawl (named in the run report): {', '.join(missing)}")
        return warc_keys_of(summaries)

    @task
    def extract(warc_key: str, **context) -> str:
        from pipeline.extract import extract_stage
        from pipeline.orchestration import context_from_airflow

        return extract_stage(context_from_airflow(context), warc_key)

    @task
    def clean(extracted_keys: list[str], **context) -> str:
        from pipeline.clean import clean_stage
        from pipeline.orchestration import context_from_airflow

        return clean_stage(context_from_airflow(context), list(extracted_keys))

    @task
    def dedupe(cleaned_key: str, **context) -> str:
        from pipeline.dedupe import dedupe_stage
        from pipeline.orchestration import context_from_airflow

        return dedupe_stage(context_from_airflow(context), cleaned_key)

    @task(outlets=[ARTICLES])
    def store(deduped_key: str, **context) -> str:
        from pipeline.orchestration import context_from_airflow
        from pipeline.run import remember_stored
        from pipeline.store import store_stage

        ctx = context_from_airflow(context)
        manifest_key = store_stage(ctx, deduped_key)
        remember_stored(ctx, deduped_key)
        context["outlet_events"][ARTICLES].extra = {"run_id": ctx.run_id, "manifest": manifest_key}
        return manifest_key

    @task(trigger_rule=TriggerRule.ALL_DONE)
    def report(source_names: list[str], deduped_key: str | None, manifest_key: str | None, **context) -> dict:
        from pipeline.orchestration import context_from_airflow
        from pipeline.report import print_summary, write_report
        from pipeline.run import crawl_summaries

        ctx = context_from_airflow(context)
        finished = {s["source"] for s in crawl_summaries(ctx)}
        failed = {name: "crawl task failed (see its log)" for name in source_names if name not in finished}
        rep = write_report(ctx, sources=list(source_names), timings={}, failed_sources=failed,
                           deduped_key=deduped_key, manifest_key=manifest_key)
        print_summary(rep)
        return {"run_id": rep["run_id"], "articles_stored": rep["articles_stored"], "rejects": rep["rejects"]}

    names = sources()
    crawled = crawl.expand(source=names)
    keys = warc_files(names)
    crawled >> keys
    extracted = extract.expand(warc_key=keys)
    deduped = dedupe(clean(extracted))
    manifest = store(deduped)
    report(names, deduped, manifest)


news_ingest()
