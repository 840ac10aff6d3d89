"""
### news_warc_import

Import existing web archives (Common Crawl's CC-NEWS, any WARC collection) through the same
extract, clean, dedupe and store steps as a crawl. Manual: trigger it with the archives to import.

* **Params**: `sources` (local paths or globs, `s3://bucket/prefix/*.warc.gz`, `https://` URLs, or a
  `warc.paths.gz` listing), `name` (the articles' `source`), `anonymous` (unsigned S3 reads, as for
  Common Crawl's public bucket), `language`, `since` / `until` (record date), `chunk` (pages per commit).
* **Bucket**: the Connection `conn_id` (default `news_ingest_s3`), else the AWS environment; archives
  on S3 are read through the same endpoint unless `anonymous`.
* **Scale-out**: `import_file` is mapped over the files; each file keeps its own progress object
  (`state/warc-import/<name>/<hash>.json`), so a retried or re-triggered task skips a finished file and
  resumes an interrupted one from its last committed chunk, never doubling a row. A lease next to it
  (`<hash>.lease.json`) keeps two runs from importing one file at once: the second's task returns
  `busy` and leaves the file to the first; a dead task's lease is taken over after it expires (10 min).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import Param, dag, task

DEFAULT_ARGS = {
    "owner": "news-ingest",
    "retries": 2,
    "retry_delay": timedelta(minutes=1),
    "execution_timeout": timedelta(hours=6),
}


def _options(context) -> object:  # type: ignore[no-untyped-def]
    """The import options of this run's params, with the bucket of its Connection."""
    from pipeline.airflow_tasks import settings_from_airflow
    from pipeline.dataset.warc_sources import COMMONCRAWL_BASE, Remote
    from pipeline.flows.warc_import import ImportOptions
    from pipeline.stages.warc_import import ImportFilters, parse_warc_date

    params = context["params"]
    s3 = settings_from_airflow(context)
    filters = ImportFilters(
        since=parse_warc_date(params.get("since")),
        until=parse_warc_date(params.get("until")),
        languages=frozenset(params.get("language") or ()),
    )
    remote = Remote(
        s3=s3, anonymous=bool(params.get("anonymous")), paths_base=params.get("paths_base") or COMMONCRAWL_BASE
    )
    return ImportOptions(name=params["name"], filters=filters, remote=remote, s3=s3, chunk_records=int(params["chunk"]))


@dag(
    dag_id="news_warc_import",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    default_args=DEFAULT_ARGS,
    params={
        "sources": Param([], type="array", description="WARC files, globs, s3:// globs, https:// URLs, listings"),
        "name": Param("ccnews", type="string", pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$", description="articles' source"),
        "anonymous": Param(False, type="boolean", description="unsigned S3 reads (public buckets)"),
        "paths_base": Param(None, type=["null", "string"], description="base URL of a listing's relative paths"),
        "language": Param([], type="array", description="keep only these languages (ISO 639-1)"),
        "since": Param(None, type=["null", "string"], description="only records dated at or after (ISO 8601)"),
        "until": Param(None, type=["null", "string"], description="only records dated before (ISO 8601)"),
        "chunk": Param(1000, type="integer", minimum=1, description="pages per commit"),
        "conn_id": Param("news_ingest_s3", type="string", description="Airflow Connection for the bucket"),
    },
    tags=["news-ingest"],
    doc_md=__doc__,
)
def news_warc_import():
    @task(retries=3)
    def files(**context) -> list[dict]:
        """The archive files the params name (a glob or listing expanded), with their size and ETag."""
        from pipeline.airflow_tasks import fail_fast
        from pipeline.dataset.warc_sources import expand

        with fail_fast():
            opts = _options(context)
            return [vars(a) for a in expand(context["params"]["sources"], opts.remote)]  # type: ignore[attr-defined]

    @task(max_active_tis_per_dagrun=4)
    def import_file(archive: dict, **context) -> dict:
        """One file: skipped when done, resumed when interrupted, busy when another run holds its lease."""
        from pipeline.airflow_tasks import fail_fast
        from pipeline.dataset.warc_sources import ArchiveFile
        from pipeline.flows.warc_import import import_file as run_import

        with fail_fast():
            return run_import(ArchiveFile(**archive), _options(context))  # type: ignore[arg-type]

    @task
    def summary(results: list[dict]) -> dict:
        """How many files were imported or skipped, and the records' counts summed."""
        out: dict = {"files": {}, "kept": 0}
        for result in results:
            out["files"][result["status"]] = out["files"].get(result["status"], 0) + 1
            out["kept"] += int((result.get("counts") or {}).get("kept", 0))
        print(out)
        return out

    summary(import_file.expand(archive=files()))


news_warc_import_dag = news_warc_import()
