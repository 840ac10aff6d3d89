"""news_ingest under Airflow's own processes: scheduler, dag-processor and api-server.

Not `dag.test()`: the real scheduler creates the run, the LocalExecutor runs each task in
its own supervised process talking to the Execution API, the mapped tasks expand at run
time, the Asset event schedules the consumer DAG. One full run, against the sample site
and the session's SeaweedFS, with the bucket named only by an Airflow Connection and the
sources file only by an Airflow Variable.
"""

from __future__ import annotations

import json
import socket
import uuid
from datetime import datetime, timezone

import pytest

from pipeline.core.bucket import Bucket
from pipeline.core.config import S3Settings
from pipeline.core.context import make_run_id
from pipeline.core.layout import consumer_report_key
from pipeline.dataset.read import read_articles
from tests.airflow_helpers import AWS_ENV, AirflowStandalone, connection_json, wait_until


@pytest.fixture
def conn_settings(s3_server) -> S3Settings:
    info = s3_server.info()
    settings = info.settings(f"standalone-{uuid.uuid4().hex[:12]}")
    Bucket(settings).ensure()
    return settings


def _port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def test_scheduled_run_commits_articles_and_the_consumer_reads_that_run(
    tmp_path, conn_settings, sources_file, sample_site
):
    airflow = AirflowStandalone(
        tmp_path / "airflow",
        drop=AWS_ENV,
        extra_env={
            "AIRFLOW_CONN_NEWS_INGEST_S3": connection_json(
                endpoint_url=conn_settings.endpoint_url,
                access_key_id=conn_settings.access_key_id,
                secret_access_key=conn_settings.secret_access_key,
                bucket=conn_settings.bucket,
            ),
            "AIRFLOW_VAR_NEWS_INGEST_SOURCES_PATH": str(sources_file),
        },
    )
    try:
        airflow.start()
        wait_until(
            lambda: all(airflow.api("GET", f"/dags/{d}") for d in ("news_ingest", "news_consumer")),
            timeout=120,
            what="the DAGs to be parsed",
            on_timeout=airflow.diagnostics,
        )
        assert airflow.api("GET", "/importErrors")["total_entries"] == 0

        # Trigger the run for the latest hourly interval through the REST API, while paused:
        # unpausing (catchup=False) would make the scheduler create that same interval's run,
        # and it must see ours and not create a second one. The consumer is unpaused first,
        # so it is listening when the Asset event comes.
        hour = datetime.now(timezone.utc).replace(minute=0, second=0, microsecond=0)
        triggered = airflow.trigger("news_ingest", logical_date=hour.isoformat())
        airflow.unpause("news_consumer")
        airflow.unpause("news_ingest")
        run = airflow.wait_for_run("news_ingest", timeout=600, run_id=triggered["dag_run_id"])
        assert run["run_type"] == "manual"
        run_id = make_run_id(datetime.fromisoformat(run["data_interval_end"].replace("Z", "+00:00")))
        assert run_id == make_run_id(hour)
        same_interval = [
            r
            for r in airflow.dag_runs("news_ingest")
            if datetime.fromisoformat(r["logical_date"].replace("Z", "+00:00")) == hour
        ]
        assert len(same_interval) == 1

        # Every mapped crawl and extract ran, once per source / WARC file.
        tis = airflow.task_instances("news_ingest", run["dag_run_id"])
        states = {(t["task_id"], t["map_index"]): t["state"] for t in tis}
        assert set(states.values()) == {"success"}, states
        crawls = [k for k in states if k[0] == "crawl"]
        assert len(crawls) == len(sample_site.base_urls)

        # The articles are in the bucket the Connection named, for that run.
        rows = read_articles(settings=conn_settings, run_id=run_id).to_pylist()
        expected = {e["url"]: e["title"] for e in sample_site.expected() if e["expected"] == "stored"}
        assert rows and {r["url"]: r["title"] for r in rows} == expected

        # The Asset event scheduled the consumer, and it read exactly that run.
        consumer = airflow.wait_for_run("news_consumer", timeout=180)
        assert consumer["run_type"] == "asset_triggered"
        summary = Bucket(conn_settings).get_json(consumer_report_key(run_id))
        assert summary["run_id"] == run_id and summary["articles"] == len(rows)
        per_source: dict[str, int] = {}
        for r in rows:
            per_source[r["source"]] = per_source.get(r["source"], 0) + 1
        assert {s: c["articles"] for s, c in summary["sources"].items()} == per_source
        assert summary["titles"] == sorted(set(expected.values()))

        # The secret reached the tasks through the Connection only, and no log or XCom shows it.
        secret = conn_settings.secret_access_key
        logs = [p for p in (tmp_path / "airflow" / "logs").rglob("*") if p.is_file()]
        assert logs
        leaked = [str(p) for p in logs if secret in p.read_text(errors="replace")]
        assert leaked == []
        xcoms = airflow.xcom_values("news_ingest", run["dag_run_id"]) + airflow.xcom_values(
            "news_consumer", consumer["dag_run_id"]
        )
        assert xcoms and secret not in json.dumps(xcoms)
    finally:
        airflow.stop()

    # Nothing left behind: every process of every component's session is gone, the port is free.
    assert airflow.leftovers(airflow.session_ids) == []
    assert not _port_open(airflow.port)
