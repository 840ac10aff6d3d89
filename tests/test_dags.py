"""The DAG files: they import cleanly and cheaply, have the intended shape, and `dag.test()` runs them.

Airflow runs in child processes with a throwaway AIRFLOW_HOME (tests/airflow_helpers.py),
so no Airflow configuration or database leaks into the test process or the user's home.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import textwrap
import uuid

import pytest

from pipeline.config import S3Settings
from pipeline.read import read_articles
from pipeline.s3 import Bucket
from tests.airflow_helpers import DAGS_FOLDER, airflow_env, connection_json, migrate

DAG_IDS = {"news_ingest", "news_consumer", "news_maintenance"}

# Imports every DAG file the way the dag-processor does, with the network, Variables and
# the heavy libraries watched; prints what it saw as JSON.
PROBE = textwrap.dedent(r'''
    import json, socket, sys, time, warnings
    attempts = []
    def _no_network(self, *args, **kwargs):
        attempts.append(repr(args))
        raise OSError("network access at DAG parse time")
    socket.socket.connect = _no_network
    socket.socket.connect_ex = _no_network
    heavy = ("pipeline", "scrapy", "trafilatura", "boto3", "pyarrow", "pandas", "numpy.random")
    before = {m for m in sys.modules if m.split(".")[0] in {h.split(".")[0] for h in heavy}}
    from airflow.sdk import Variable
    variables = []
    def _no_variable(*args, **kwargs):
        variables.append(repr(args))
        raise RuntimeError("Variable read at DAG parse time")
    Variable.get = staticmethod(_no_variable)
    from airflow.dag_processing.dagbag import DagBag
    dags_folder = sys.argv[1]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        t0 = time.perf_counter()
        bag = DagBag(dag_folder=dags_folder)
        seconds = time.perf_counter() - t0
    loaded = sorted(m for m in sys.modules if m in heavy or any(m.startswith(h + ".") for h in heavy))
    def task_info(t):
        info = {"is_mapped": bool(getattr(t, "is_mapped", False)), "trigger_rule": getattr(t.trigger_rule, "value", str(t.trigger_rule)),
                "retries": t.retries, "upstream": sorted(t.upstream_task_ids),
                "outlets": [getattr(o, "name", None) for o in (t.outlets or [])],
                "execution_timeout": t.execution_timeout.total_seconds() if t.execution_timeout else None,
                "retry_exponential_backoff": bool(t.retry_exponential_backoff),
                "max_active_tis_per_dagrun": t.max_active_tis_per_dagrun}
        return info
    dags = {}
    for dag_id, dag in bag.dags.items():
        dags[dag_id] = {
            "schedule": str(getattr(dag.timetable, "summary", None) or getattr(dag.timetable, "expression", None)
                            or type(dag.timetable).__name__), "catchup": dag.catchup, "max_active_runs": dag.max_active_runs,
            "params": sorted(dag.params.keys()), "doc_md": dag.doc_md or "", "fileloc": dag.fileloc,
            "asset_triggers": [getattr(a, "name", str(a)) for a in
                               getattr(getattr(dag.timetable, "asset_condition", None), "objects", [])],
            "tasks": {t.task_id: task_info(t) for t in dag.tasks},
        }
    print(json.dumps({
        "import_errors": {str(k): v for k, v in bag.import_errors.items()},
        "warnings": [{"file": w.filename, "category": w.category.__name__, "message": str(w.message)}
                     for w in caught],
        "network": attempts, "variables": variables, "heavy_modules": sorted(set(loaded) - before),
        "seconds": seconds, "dags": dags,
    }))
''')


@pytest.fixture(scope="module")
def probe(tmp_path_factory) -> dict:
    env = airflow_env(tmp_path_factory.mktemp("airflow-probe"))
    proc = subprocess.run([sys.executable, "-c", PROBE, str(DAGS_FOLDER)], env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-5000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    print(f"DagBag import of dags/: {result['seconds']:.2f}s")
    return result


# --------------------------------------------------------------------------- import hygiene


def test_dag_files_import_without_errors(probe):
    assert probe["import_errors"] == {}
    assert set(probe["dags"]) == DAG_IDS


def test_no_warnings_from_the_dag_files(probe):
    ours = [w for w in probe["warnings"] if w["file"].startswith(str(DAGS_FOLDER))]
    assert ours == []


def test_parsing_touches_no_network_no_variables_no_heavy_libraries(probe):
    assert probe["network"] == []
    assert probe["variables"] == []
    # Heavy imports belong inside tasks: the dag-processor re-parses these files every few seconds.
    assert probe["heavy_modules"] == []


def test_every_dag_documents_itself(probe):
    for dag_id, dag in probe["dags"].items():
        assert dag["doc_md"].lstrip().startswith(f"### {dag_id}"), dag_id
        assert dag["fileloc"].startswith(str(DAGS_FOLDER))


# --------------------------------------------------------------------------- structure


def test_news_ingest_shape(probe):
    dag = probe["dags"]["news_ingest"]
    tasks = dag["tasks"]
    assert dag["schedule"] in ("@hourly", "0 * * * *")
    assert dag["catchup"] is False
    assert dag["max_active_runs"] == 1
    assert {"sources_path", "conn_id"} <= set(dag["params"])
    assert set(tasks) == {"sources", "crawl", "warc_files", "extract", "clean", "dedupe", "store", "report",
                          "check"}
    # Mapped over sources and WARC files: a Celery/Kubernetes executor spreads them over workers.
    assert tasks["crawl"]["is_mapped"] and tasks["extract"]["is_mapped"]
    assert not any(tasks[t]["is_mapped"] for t in ("clean", "dedupe", "store", "report"))
    # Dedupe and commit run once per run, after every extraction.
    assert tasks["clean"]["upstream"] == ["extract"]
    assert tasks["dedupe"]["upstream"] == ["clean"]
    assert tasks["store"]["upstream"] == ["dedupe"]
    # A failed crawl does not stop the others: these run whatever the crawls did.
    assert tasks["warc_files"]["trigger_rule"] == "all_done"
    assert "crawl" in tasks["warc_files"]["upstream"]
    assert tasks["report"]["trigger_rule"] == "all_done"
    assert set(tasks["report"]["upstream"]) >= {"sources", "dedupe", "store"}
    assert tasks["check"]["upstream"] == ["report"] and tasks["check"]["retries"] == 0
    assert tasks["store"]["outlets"] == ["news_articles"]
    for task_id in ("sources", "crawl", "extract", "clean", "dedupe", "store"):
        assert tasks[task_id]["retries"] >= 1, task_id
        assert tasks[task_id]["retry_exponential_backoff"], task_id
        assert tasks[task_id]["execution_timeout"], task_id
    assert tasks["crawl"]["max_active_tis_per_dagrun"]


def test_consumer_is_scheduled_on_the_articles_asset(probe):
    dag = probe["dags"]["news_consumer"]
    assert dag["asset_triggers"] == ["news_articles"]
    assert dag["max_active_runs"] == 1


def test_maintenance_shape(probe):
    dag = probe["dags"]["news_maintenance"]
    tasks = dag["tasks"]
    assert dag["schedule"] in ("@daily", "0 0 * * *")
    assert dag["catchup"] is False and dag["max_active_runs"] == 1
    assert {"reextract_from", "reextract_to", "compact_days", "seen_retention_days"} <= set(dag["params"])
    assert tasks["reextract"]["is_mapped"] and tasks["compact"]["is_mapped"]
    assert tasks["reextract"]["outlets"] == ["news_articles"]
    assert "reextract" in tasks["days_to_compact"]["upstream"]  # compaction after re-extraction


# --------------------------------------------------------------------------- dag.test() end to end

# Runs news_ingest once with dag.test() in this child process (tasks run in-process).
# argv: logical date, sources file, JSON of {source: "kill"} crawls to break.
DAG_TEST = textwrap.dedent(r'''
    import json, sys
    from datetime import datetime
    logical, sources, broken = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
    if broken:
        # The crawler process of these sources dies as the kernel's OOM killer would kill it
        # (SIGKILL, exit -9): crawl_stage itself runs for real and sees the dead child.
        import pipeline.crawl as crawl
        real = crawl.crawl_command
        def crawl_command(ctx, source_name, **kwargs):
            if source_name in broken:
                return [sys.executable, "-c", "import os, signal; os.kill(os.getpid(), signal.SIGKILL)"]
            return real(ctx, source_name, **kwargs)
        crawl.crawl_command = crawl_command
    from airflow.dag_processing.dagbag import DagBag
    bag = DagBag(dag_folder=sys.argv[4])
    dag = bag.get_dag("news_ingest")
    if broken:
        dag.get_task("crawl").partial_kwargs["retries"] = 0  # no 30 s retry wait in a test
    run = dag.test(logical_date=datetime.fromisoformat(logical), run_conf={"sources_path": sources})
    states = {f"{ti.task_id}[{ti.map_index}]": str(ti.state) for ti in run.get_task_instances()}
    print("DAGTEST-RESULT " + json.dumps({"state": str(run.state), "tasks": states}))
''')


def _conn_env(tmp_path, settings: S3Settings) -> dict[str, str]:
    """Airflow env for one dag.test: S3 ONLY through the Connection (the AWS_* variables removed)."""
    home = tmp_path / "airflow"
    env = airflow_env(home, drop=("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_ACCESS_KEY_ID",
                                  "AWS_SECRET_ACCESS_KEY", "NEWS_INGEST_BUCKET"),
                      extra={"AIRFLOW_CONN_NEWS_INGEST_S3": connection_json(
                          endpoint_url=settings.endpoint_url, access_key_id=settings.access_key_id,
                          secret_access_key=settings.secret_access_key, bucket=settings.bucket)})
    migrate(env)
    return env


def _dag_test(env: dict[str, str], logical: str, sources, broken: list[str] = ()) -> tuple[dict, str]:
    proc = subprocess.run([sys.executable, "-c", DAG_TEST, logical, str(sources), json.dumps(list(broken)),
                           str(DAGS_FOLDER)], env=env, capture_output=True, text=True, timeout=900)
    output = proc.stdout + proc.stderr
    lines = [line for line in proc.stdout.splitlines() if line.startswith("DAGTEST-RESULT ")]
    assert lines, f"dag.test crashed (exit {proc.returncode}):\n{output[-8000:]}"
    return json.loads(lines[-1].split(" ", 1)[1]), output


@pytest.fixture
def conn_settings(s3_server) -> S3Settings:
    """A fresh bucket that ONLY the Airflow Connection names (the environment points elsewhere)."""
    info = s3_server.info()
    settings = S3Settings(endpoint_url=info.endpoint_url, access_key_id=info.access_key_id,
                          secret_access_key=info.secret_access_key, bucket=f"dagtest-{uuid.uuid4().hex[:12]}")
    Bucket(settings).ensure()
    return settings


def test_dag_test_run_end_to_end_through_the_connection(tmp_path, conn_settings, sources_file, sample_site):
    env = _conn_env(tmp_path, conn_settings)
    result, output = _dag_test(env, "2026-11-27T09:00:00+00:00", sources_file)
    assert result["state"].endswith("success"), output[-8000:]
    run_id = "20261127T090000Z"

    table = read_articles(settings=conn_settings, run_id=run_id)
    expected = {e["url"]: e["title"] for e in sample_site.expected() if e["expected"] == "stored"}
    got = {row["url"]: row["title"] for row in table.to_pylist()}
    assert got and got == expected
    bucket = Bucket(conn_settings)
    report = bucket.get_json(f"reports/run={run_id}.json")
    assert report["failed_sources"] == {} and report["articles_stored"] == len(expected)
    assert bucket.exists(f"_manifests/run={run_id}.json")

    # The secret went through the Connection, and neither the task logs nor any XCom show it.
    secret = conn_settings.secret_access_key
    assert secret not in output
    db = sqlite3.connect(tmp_path / "airflow" / "airflow.db")
    xcoms = [str(v) for (v,) in db.execute("select value from xcom")]
    assert xcoms and not any(secret in v for v in xcoms)
    # The mapped tasks fanned out: one crawl per source, one extract per WARC file.
    n_sources = len(report["sources"])
    assert sum(1 for t in result["tasks"] if t.startswith("crawl[")) == n_sources
    assert sum(1 for t in result["tasks"] if t.startswith("extract[")) >= n_sources


def test_a_killed_crawl_fails_only_its_source_and_the_report_names_it(tmp_path, conn_settings, sources_file,
                                                                      sample_site):
    env = _conn_env(tmp_path, conn_settings)
    victim = sorted(sample_site.base_urls)[0]
    result, output = _dag_test(env, "2026-11-27T10:00:00+00:00", sources_file, broken=[victim])
    run_id = "20261127T100000Z"
    tasks = result["tasks"]
    # The victim's crawl failed; the other crawls, extraction and the commit went on.
    failed = [t for t, s in tasks.items() if s.endswith("failed")]
    assert sorted(failed) == sorted([t for t in failed if t.startswith("crawl[")] + ["check[-1]"]), tasks
    assert len([t for t in failed if t.startswith("crawl[")]) == 1
    for t in ("warc_files[-1]", "clean[-1]", "dedupe[-1]", "store[-1]", "report[-1]"):
        assert tasks[t].endswith("success"), (t, tasks)
    # ... and the run is marked failed so that alerting sees the broken source.
    assert result["state"].endswith("failed")

    report = Bucket(conn_settings).get_json(f"reports/run={run_id}.json")
    assert list(report["failed_sources"]) == [victim]
    assert "exit -9" in report["failed_sources"][victim]
    assert report["sources"][victim]["failed"]
    rows = read_articles(settings=conn_settings, run_id=run_id).to_pylist()
    stored_sources = {r["source"] for r in rows}
    expected_sources = {e["outlet"] for e in sample_site.expected() if e["expected"] == "stored"} - {victim}
    assert victim not in stored_sources
    assert stored_sources == expected_sources
