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

from pipeline.core.bucket import Bucket
from pipeline.core.config import S3Settings
from pipeline.core.layout import (
    DEDUPE_INDEX_PREFIX,
    crawl_summary_key,
    dedupe_shard_key,
    delta_commit_key,
    raw_prefix,
    refused_key,
    report_key,
    seen_key,
    warc_file_name,
)
from pipeline.dataset.delta import run_commits
from pipeline.dataset.read import read_articles
from tests.airflow_helpers import DAGS_FOLDER, airflow_env, connection_json, migrate

DAG_IDS = {"news_ingest", "news_consumer", "news_maintenance", "news_warc_import"}

# Imports every DAG file the way the dag-processor does, with the network, Variables and
# the heavy libraries watched; prints what it saw as JSON.
PROBE = textwrap.dedent(r"""
    import json, socket, sys, time, warnings
    attempts = []
    def _no_network(self, *args, **kwargs):
        attempts.append(repr(args))
        raise OSError("network access at DAG parse time")
    socket.socket.connect = _no_network
    socket.socket.connect_ex = _no_network
    heavy = ("pipeline", "scrapy", "trafilatura", "boto3", "pyarrow", "pandas", "numpy.random")
    try:  # the amazon provider's s3:// Asset handler imports boto3 for Airflow itself, whatever the DAGs do
        import airflow.providers.amazon.aws.assets.s3
    except ImportError:
        pass
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
""")


@pytest.fixture(scope="module")
def probe(tmp_path_factory) -> dict:
    env = airflow_env(tmp_path_factory.mktemp("airflow-probe"))
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, str(DAGS_FOLDER)], env=env, capture_output=True, text=True, timeout=300
    )
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
    assert set(tasks) == {"sources", "crawl", "warc_files", "extract", "clean", "dedupe", "store", "report", "check"}
    # Mapped over sources and WARC files: a Celery/Kubernetes executor spreads them over workers.
    assert tasks["crawl"]["is_mapped"] and tasks["extract"]["is_mapped"]
    assert not any(tasks[t]["is_mapped"] for t in ("clean", "dedupe", "store", "report"))
    # Dedupe and commit run once per run, after every extraction.
    assert tasks["clean"]["upstream"] == ["extract"]
    assert tasks["dedupe"]["upstream"] == ["clean"]
    # The commit replaces the rows of the sources whose crawl reached them: it gets the source names.
    assert sorted(tasks["store"]["upstream"]) == ["dedupe", "sources"]
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

# Runs one DAG once with dag.test() in this child process (tasks run in-process).
# argv: dag id, logical date, run conf (JSON), sources whose crawler gets killed (JSON list), dags folder.
DAG_TEST = textwrap.dedent(r"""
    import json, sys
    from datetime import datetime
    dag_id, logical, conf, broken = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), json.loads(sys.argv[4])
    if broken:
        # The crawler process of these sources dies as the kernel's OOM killer would kill it
        # (SIGKILL, exit -9): crawl_stage itself runs for real and sees the dead child.
        import pipeline.stages.crawl as crawl
        real = crawl.crawl_command
        def crawl_command(ctx, source_name, **kwargs):
            if source_name in broken:
                return [sys.executable, "-c", "import os, signal; os.kill(os.getpid(), signal.SIGKILL)"]
            return real(ctx, source_name, **kwargs)
        crawl.crawl_command = crawl_command
    from airflow.dag_processing.dagbag import DagBag
    bag = DagBag(dag_folder=sys.argv[5])
    dag = bag.get_dag(dag_id)
    if broken:
        dag.get_task("crawl").partial_kwargs["retries"] = 0  # no 30 s retry wait in a test
    run = dag.test(logical_date=datetime.fromisoformat(logical), run_conf=conf)
    states = {f"{ti.task_id}[{ti.map_index}]": str(ti.state) for ti in run.get_task_instances()}
    tries = {f"{ti.task_id}[{ti.map_index}]": ti.try_number for ti in run.get_task_instances()}
    print("DAGTEST-RESULT " + json.dumps({"state": str(run.state), "tasks": states, "tries": tries}))
""")


def _conn_env(home, settings: S3Settings) -> dict[str, str]:
    """Airflow env for dag.test runs: S3 ONLY through the Connection (the AWS_* variables removed)."""
    env = airflow_env(
        home,
        drop=(
            "AWS_ENDPOINT_URL",
            "AWS_ENDPOINT_URL_S3",
            "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY",
            "NEWS_INGEST_BUCKET",
        ),
        extra={
            "AIRFLOW_CONN_NEWS_INGEST_S3": connection_json(
                endpoint_url=settings.endpoint_url,
                access_key_id=settings.access_key_id,
                secret_access_key=settings.secret_access_key,
                bucket=settings.bucket,
            )
        },
    )
    migrate(env)
    return env


def _dag_test(
    env: dict[str, str], logical: str, conf: dict, broken: list[str] = (), dag_id: str = "news_ingest"
) -> tuple[dict, str]:
    proc = subprocess.run(
        [sys.executable, "-c", DAG_TEST, dag_id, logical, json.dumps(conf), json.dumps(list(broken)), str(DAGS_FOLDER)],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    output = proc.stdout + proc.stderr
    lines = [line for line in proc.stdout.splitlines() if line.startswith("DAGTEST-RESULT ")]
    assert lines, f"dag.test crashed (exit {proc.returncode}):\n{output[-8000:]}"
    return json.loads(lines[-1].split(" ", 1)[1]), output


def _fresh_bucket(s3_server, prefix: str) -> S3Settings:
    """A fresh bucket that ONLY the Airflow Connection names (the environment points elsewhere)."""
    info = s3_server.info()
    settings = info.settings(f"{prefix}-{uuid.uuid4().hex[:12]}")
    Bucket(settings).ensure()
    return settings


@pytest.fixture
def conn_settings(s3_server) -> S3Settings:
    return _fresh_bucket(s3_server, "dagtest")


INGEST_RUN = "20261127T090000Z"


@pytest.fixture(scope="module")
def ingested(tmp_path_factory, s3_server, sample_site):
    """One dag.test() run of news_ingest (module-scoped: the maintenance test re-extracts it)."""
    tmp = tmp_path_factory.mktemp("dagtest")
    settings = _fresh_bucket(s3_server, "dagtest")
    sources = sample_site.write_sources_yaml(tmp / "sources.yaml", download_timeout=3, max_page_bytes=8 * 2**20)
    env = _conn_env(tmp / "airflow", settings)
    result, output = _dag_test(env, "2026-11-27T09:00:00+00:00", {"sources_path": str(sources)})
    return {
        "env": env,
        "settings": settings,
        "result": result,
        "output": output,
        "home": tmp / "airflow",
        "sources": sources,
    }


def test_dag_test_run_end_to_end_through_the_connection(ingested, sample_site):
    result, output, conn_settings = ingested["result"], ingested["output"], ingested["settings"]
    assert result["state"].endswith("success"), output[-8000:]
    run_id = INGEST_RUN

    table = read_articles(settings=conn_settings, run_id=run_id)
    expected = {e["url"]: e["title"] for e in sample_site.expected() if e["expected"] == "stored"}
    got = {row["url"]: row["title"] for row in table.to_pylist()}
    assert got and got == expected
    bucket = Bucket(conn_settings)
    report = bucket.get_json(report_key(run_id))
    assert report["failed_sources"] == {} and report["articles_stored"] == len(expected)
    [version] = run_commits(conn_settings, run_id)  # one table version committed the run
    assert bucket.exists(delta_commit_key(version)) and report["manifest"] == delta_commit_key(version)

    # The secret went through the Connection, and neither the task logs nor any XCom show it.
    secret = conn_settings.secret_access_key
    assert secret not in output
    db = sqlite3.connect(ingested["home"] / "airflow.db")
    xcoms = [str(v) for (v,) in db.execute("select value from xcom")]
    assert xcoms and not any(secret in v for v in xcoms)
    # The mapped tasks fanned out: one crawl per source, one extract per WARC file.
    n_sources = len(report["sources"])
    assert sum(1 for t in result["tasks"] if t.startswith("crawl[")) == n_sources
    assert sum(1 for t in result["tasks"] if t.startswith("extract[")) >= n_sources
    # The store task emitted the Asset event, carrying the run id, the commit's log key and table version.
    events = [
        json.loads(e)
        for (e,) in db.execute(
            "select e.extra from asset_event e join asset a on a.id = e.asset_id where a.name = 'news_articles'"
        )
    ]
    assert events == [{"run_id": run_id, "manifest": delta_commit_key(version), "version": version}]


def test_maintenance_reextracts_a_date_range_from_the_archive(ingested, sample_site):
    settings = ingested["settings"]
    bucket = Bucket(settings)
    before = run_commits(settings, INGEST_RUN)
    titles = {r["url"]: r["title"] for r in read_articles(settings=settings, run_id=INGEST_RUN).to_pylist()}
    result, output = _dag_test(
        ingested["env"],
        "2026-11-28T00:00:00+00:00",
        {"reextract_from": "2026-11-27", "sources_path": str(ingested["sources"])},
        dag_id="news_maintenance",
    )
    assert result["state"].endswith("success"), output[-8000:]
    assert [t for t in result["tasks"] if t.startswith("reextract[")] == ["reextract[0]"]
    # Re-committed from the WARC files (a new table version), same articles; no crawl ran.
    after = run_commits(settings, INGEST_RUN)
    assert after[: len(before)] == before and len(after) == len(before) + 1
    assert bucket.exists(delta_commit_key(after[-1]))
    assert {r["url"]: r["title"] for r in read_articles(settings=settings, run_id=INGEST_RUN).to_pylist()} == titles
    assert "crawl" not in " ".join(result["tasks"])
    db = sqlite3.connect(ingested["home"] / "airflow.db")
    extras = [json.loads(e) for (e,) in db.execute("select extra from asset_event order by id")]
    assert extras[-1]["run_id"] == INGEST_RUN and extras[-1]["reextracted"] is True
    assert extras[-1]["version"] == after[-1]


def test_a_killed_crawl_fails_only_its_source_and_the_report_names_it(
    tmp_path, conn_settings, sources_file, sample_site
):
    # No Connection this time: the tasks fall back to the environment (the session's AWS_*
    # variables, with this test's bucket).
    env = airflow_env(tmp_path / "airflow", extra={"NEWS_INGEST_BUCKET": conn_settings.bucket})
    assert "AIRFLOW_CONN_NEWS_INGEST_S3" not in env and env["AWS_SECRET_ACCESS_KEY"]
    migrate(env)
    victim = sorted(sample_site.base_urls)[0]
    result, output = _dag_test(env, "2026-11-27T10:00:00+00:00", {"sources_path": str(sources_file)}, broken=[victim])
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
    assert "no Airflow connection 'news_ingest_s3'" in output
    assert conn_settings.secret_access_key not in output

    report = Bucket(conn_settings).get_json(report_key(run_id))
    assert list(report["failed_sources"]) == [victim]
    assert "exit -9" in report["failed_sources"][victim]
    assert report["sources"][victim]["failed"]
    rows = read_articles(settings=conn_settings, run_id=run_id).to_pylist()
    stored_sources = {r["source"] for r in rows}
    expected_sources = {e["outlet"] for e in sample_site.expected() if e["expected"] == "stored"} - {victim}
    assert victim not in stored_sources
    assert stored_sources == expected_sources


def test_wrong_credentials_fail_the_run_at_once_without_retries(tmp_path, conn_settings, sources_file):
    """A terminal error (here: the Connection's secret is wrong) fails its task on the first try,
    although `sources` has 3 retries: no retry waits, no crawl, and the task log says why."""
    wrong = conn_settings.model_copy(update={"secret_access_key": "WRONG-secret-0123456789abcdefghijkl"})
    env = _conn_env(tmp_path / "airflow", wrong)
    result, output = _dag_test(env, "2026-11-27T11:00:00+00:00", {"sources_path": str(sources_file)})
    tasks, tries = result["tasks"], result["tries"]
    assert result["state"].endswith("failed"), tasks
    assert tasks["sources[-1]"].endswith("failed") and tries["sources[-1]"] == 1, (tasks, tries)
    # The tasks that run whatever came before (warc_files, report) fail as fast, on the same error;
    # the others never start.
    ran = {t: state for t, state in tasks.items() if state != "upstream_failed"}
    assert ran == {"sources[-1]": "failed", "warc_files[-1]": "failed", "report[-1]": "failed"}, tasks
    assert {t: tries[t] for t in ran} == {t: 1 for t in ran}, tries
    assert "AirflowFailException" in output
    assert "check access on bucket" in output and "failed: the secret key is wrong (SignatureDoesNotMatch)" in output
    assert wrong.secret_access_key not in output


# --------------------------------------------------------------------------- maintenance functions


def test_runs_between_finds_archived_runs_by_day(bucket):
    from pipeline.flows.maintenance import runs_between

    for run_id, source in (
        ("20261125T230000Z", "a"),
        ("20261126T100000Z", "a"),
        ("20261126T100000Z", "b"),
        ("20261127T010000Z", "a"),
        ("20261128T000000Z", "a"),
    ):
        bucket.put(f"{raw_prefix(run_id, source)}{warc_file_name(source, 0)}", b"x")
    bucket.put(f"{raw_prefix('20261127T020000Z', 'a')}notes.txt", b"x")  # no WARC file: not an archived run
    assert runs_between(bucket, "2026-11-26", "2026-11-27") == ["20261126T100000Z", "20261127T010000Z"]
    assert runs_between(bucket, "2026-11-28", "2026-11-28") == ["20261128T000000Z"]
    with pytest.raises(ValueError, match="reversed"):
        runs_between(bucket, "2026-11-27", "2026-11-26")
    with pytest.raises(ValueError, match="at most"):
        runs_between(bucket, "2026-01-01", "2026-12-31")


def test_prune_seen_state_forgets_only_old_entries(bucket):
    from pipeline.dataset.state import load_seen
    from pipeline.flows.maintenance import prune_seen_state

    bucket.put_json(
        seen_key("alpha"),
        {
            "https://a.example/old": {"url": "https://a.example/old", "stored_at": "2026-07-01T10:00:00+00:00"},
            "https://a.example/new": {"url": "https://a.example/new", "stored_at": "2026-11-20T10:00:00+00:00"},
            "https://a.example/undated": {"url": "https://a.example/undated"},
        },
    )
    bucket.put_json(seen_key("beta"), {"https://b.example/x": {"stored_at": "2026-11-01T00:00:00Z"}})
    removed = prune_seen_state(bucket, "2026-11-27", retention_days=90)
    assert removed == {"alpha": 1, "beta": 0}
    assert sorted(load_seen(bucket, "alpha")) == ["https://a.example/new", "https://a.example/undated"]
    assert prune_seen_state(bucket, "2026-11-27", retention_days=90) == {"alpha": 0, "beta": 0}


def test_prune_refused_state_forgets_old_refusals_and_keeps_seen_state(bucket):
    from pipeline.dataset.state import load_refused, load_seen
    from pipeline.flows.maintenance import prune_refused_state

    old = {"url": "https://g.example/tag/x", "reason": "not_article:listing", "refused_at": "2026-09-01T00:00:00Z"}
    new = {"url": "https://g.example/about", "reason": "not_article:other", "refused_at": "2026-11-25T00:00:00Z"}
    bucket.put_json(refused_key("gamma"), {old["url"]: old, new["url"]: new})
    seen = {"https://g.example/a": {"url": "https://g.example/a", "stored_at": "2026-09-01T00:00:00Z"}}
    bucket.put_json(seen_key("gamma"), seen)
    assert prune_refused_state(bucket, "2026-11-27", retention_days=30) == {"gamma": 1}
    assert list(load_refused(bucket, "gamma")) == [new["url"]]
    assert load_seen(bucket, "gamma") == seen  # the seen state has its own retention
    assert prune_refused_state(bucket, "2026-11-27", retention_days=30) == {"gamma": 0}


def test_prune_dedupe_index_deletes_only_expired_shards(bucket):
    from pipeline.flows.maintenance import prune_dedupe_index

    for day in ("2026-09-30", "2026-10-27", "2026-10-28", "2026-11-27"):
        bucket.put(dedupe_shard_key(day), b"shard")
    deleted = prune_dedupe_index(bucket, "2026-11-27", window_days=30)
    assert sorted(deleted) == [dedupe_shard_key("2026-09-30"), dedupe_shard_key("2026-10-27")]
    assert bucket.list(DEDUPE_INDEX_PREFIX) == [dedupe_shard_key("2026-10-28"), dedupe_shard_key("2026-11-27")]


# --------------------------------------------------------------------------- orchestration glue


def test_crawl_outcome_counts_missing_early_and_recorded_failures(s3_settings, tmp_path):
    from pipeline.core.context import RunContext
    from pipeline.stages.crawl import crawl_outcome, failure_key

    ctx = RunContext(run_id="20261127T120000Z", s3=s3_settings, sources_path=tmp_path / "unused.yaml")
    run = ctx.run_id
    ctx.bucket.put_json(
        crawl_summary_key(run, "ok"), {"source": "ok", "finish_reason": "finished", "warc_keys": ["k1"]}
    )
    ctx.bucket.put_json(
        crawl_summary_key(run, "early"),
        {"source": "early", "finish_reason": "closespider_timeout", "warc_keys": ["k2"]},
    )
    ctx.bucket.put_json(
        crawl_summary_key(run, "raised"), {"source": "raised", "finish_reason": "finished", "warc_keys": ["k3"]}
    )
    ctx.bucket.put_json(failure_key(ctx, "raised"), {"source": "raised", "error": "CrawlError: exit -9"})
    finished, failed = crawl_outcome(ctx, ["ok", "early", "raised", "killed"])
    assert [s["source"] for s in finished] == ["ok"]
    assert failed["early"] == "crawl ended early: closespider_timeout"
    assert failed["raised"] == "CrawlError: exit -9"
    assert failed["killed"].startswith("crawl did not finish")
    assert set(failed) == {"early", "raised", "killed"}


def test_triggering_runs_reads_run_ids_from_the_asset_events():
    from collections import namedtuple
    from types import SimpleNamespace

    from pipeline.airflow_tasks import triggering_runs

    asset = namedtuple("Asset", "name uri")  # the accessor is keyed by assets, events carry `extra`
    articles, other = asset("news_articles", "s3://news/articles/"), asset("something_else", "s3://x/")
    events = {
        articles: [
            SimpleNamespace(extra={"run_id": "20261127T100000Z", "manifest": "m1", "version": 1}),
            SimpleNamespace(extra={"run_id": "20261127T110000Z", "manifest": "m2", "version": 2}),
            SimpleNamespace(extra={"run_id": "20261127T100000Z", "manifest": "m3", "version": 3}),
            SimpleNamespace(extra={"run_id": "20261127T120000Z", "manifest": "m0"}),  # an event of before Delta
            SimpleNamespace(extra={}),
        ],
        other: [SimpleNamespace(extra={"run_id": "20261127T120000Z"})],
    }
    assert triggering_runs({"triggering_asset_events": events}) == [
        {"run_id": "20261127T110000Z", "manifest": "m2", "version": 2},
        {"run_id": "20261127T100000Z", "manifest": "m3", "version": 3},  # its newest commit
        {"run_id": "20261127T120000Z", "manifest": "m0", "version": None},
    ]
    assert triggering_runs({}) == []


def test_consumer_reads_exactly_the_rows_of_the_event_version(s3_settings):
    """A re-run of one source: the consumer's summary of that event counts that source's new rows only."""
    from benchmarks.bench_store import generate_articles
    from pipeline.airflow_tasks import summarise_run
    from pipeline.core.context import RunContext
    from pipeline.dataset.read import table_version
    from pipeline.stages.store import store_articles

    run = "20261127T100000Z"
    first = generate_articles(30, seed=1, words=5)
    store_articles(RunContext(run, s3=s3_settings), first)
    v1 = table_version(s3_settings)
    store_articles(RunContext("20261127T110000Z", s3=s3_settings), generate_articles(7, seed=2, words=5))
    again = [{**r, "source": "gazette"} for r in generate_articles(4, seed=3, words=5)]
    store_articles(RunContext(run, s3=s3_settings), again, sources=["gazette"])
    v3 = table_version(s3_settings)
    assert v1 is not None and v3 == v1 + 2
    assert summarise_run(s3_settings, run, v3)["articles"] == 4
    summary = Bucket(s3_settings).get_json(f"reports/consumer/run={run}.json")
    assert summary["version"] == v3 and summary["sources"] == {"gazette": {"articles": 4, "canonical": 4}}
    assert summarise_run(s3_settings, run, v1)["articles"] == 30  # what the first commit added, whatever came later
    kept = sum(r["source"] != "gazette" for r in first)
    assert summarise_run(s3_settings, run)["articles"] == kept + 4  # no version: the run's current rows


def test_run_ids_and_days_come_from_the_data_interval_not_the_clock():
    from datetime import datetime, timezone
    from types import SimpleNamespace

    from pipeline.airflow_tasks import compaction_days, run_id_from_context

    end = datetime(2026, 11, 28, 0, 0, tzinfo=timezone.utc)
    assert run_id_from_context({"data_interval_end": end, "logical_date": end}) == "20261128T000000Z"
    run_after = datetime(2026, 11, 27, 21, 41, 7, tzinfo=timezone.utc)
    assert run_id_from_context({"dag_run": SimpleNamespace(run_after=run_after)}) == "20261127T214107Z"
    assert compaction_days({"data_interval_end": end, "params": {"compact_days": 3}}) == [
        "2026-11-27",
        "2026-11-26",
        "2026-11-25",
    ]
    with pytest.raises(ValueError):
        run_id_from_context({})


def test_crawl_source_records_a_failure_and_a_successful_retry_clears_it(s3_settings, tmp_path, monkeypatch):
    import pipeline.stages.crawl
    from pipeline.core.context import RunContext
    from pipeline.stages.crawl import crawl_outcome, crawl_source, failure_key

    ctx = RunContext(run_id="20261127T130000Z", s3=s3_settings, sources_path=tmp_path / "unused.yaml")

    def dies(ctx, name, settings=None):
        raise pipeline.stages.crawl.CrawlError(f"crawl of {name} failed (exit -9); log tail:\n...")

    monkeypatch.setattr(pipeline.stages.crawl, "crawl_stage", dies)
    with pytest.raises(pipeline.stages.crawl.CrawlError):
        crawl_source(ctx, "alpha", try_number=1)
    record = ctx.bucket.get_json(failure_key(ctx, "alpha"))
    assert record["try_number"] == 1 and "exit -9" in record["error"]

    def works(ctx, name, settings=None):
        ctx.bucket.put_json(
            crawl_summary_key(ctx.run_id, name), {"source": name, "finish_reason": "finished", "warc_keys": ["a", "b"]}
        )
        return {"source": name, "warc_keys": ["a", "b"], "stats": {"secret-ish": "not returned"}}

    monkeypatch.setattr(pipeline.stages.crawl, "crawl_stage", works)
    assert crawl_source(ctx, "alpha", try_number=2) == {"source": "alpha", "warc_files": 2}
    assert not ctx.bucket.exists(failure_key(ctx, "alpha"))
    assert crawl_outcome(ctx, ["alpha"])[1] == {}


def test_abort_stale_uploads_aborts_only_uploads_older_than_a_day(bucket):
    """A multipart upload left open (a writer that died) is aborted by maintenance once it is a day old;
    a younger one, possibly a store still running, is left alone."""
    from datetime import datetime, timedelta, timezone

    from pipeline.flows.maintenance import abort_stale_uploads

    key = "articles/dt=2026-11-27/part-left-open.parquet"
    started = bucket.client.create_multipart_upload(Bucket=bucket.name, Key=key)["UploadId"]
    assert [u["UploadId"] for u in bucket.open_uploads(key)] == [started]
    now = datetime.now(timezone.utc)
    assert abort_stale_uploads(bucket, now) == []  # minutes old: a store may still be writing it
    assert [u["UploadId"] for u in bucket.open_uploads(key)] == [started]
    assert abort_stale_uploads(bucket, now + timedelta(days=1, minutes=5)) == [key]
    assert bucket.open_uploads(key) == []
    assert abort_stale_uploads(bucket, now + timedelta(days=2)) == []  # nothing left to abort


def test_prune_unused_warcs_deletes_only_attempts_a_finished_run_did_not_use(bucket):
    from pipeline.core.layout import crawl_summary_key, raw_prefix, warc_basename, warc_file_name
    from pipeline.dataset.warc import run_warc_keys
    from pipeline.flows.maintenance import prune_unused_warcs

    def warc(run_id: str, attempt: str) -> str:
        key = raw_prefix(run_id, "alpha") + warc_file_name(warc_basename("alpha", attempt), 0)
        bucket.put(key, b"x")
        return key

    old, young, legacy = "20261120T060000Z", "20261126T060000Z", "20261121T060000Z"
    dead, used = warc(old, "a1"), warc(old, "a2")  # the first attempt died, the retry's summary names a2
    bucket.put_json(crawl_summary_key(old, "alpha"), {"source": "alpha", "warc_keys": [used]})
    live, named = warc(young, "b1"), warc(young, "b2")  # too young: b1 may be a crawl still retrying
    bucket.put_json(crawl_summary_key(young, "alpha"), {"source": "alpha", "warc_keys": [named]})
    kept = warc(legacy, "c1")  # no summaries: every file of the run counts

    assert prune_unused_warcs(bucket, "2026-11-27") == [dead]
    assert run_warc_keys(bucket, old) == [used]
    assert bucket.exists(live) and bucket.exists(named) and bucket.exists(kept)
    assert prune_unused_warcs(bucket, "2026-11-27") == []  # idempotent
    assert prune_unused_warcs(bucket, "2026-11-29") == [live]  # once the young run is past the grace period
