"""`make demo`'s task-state display against a real Airflow 3 metadata database.

The demo's own way of running the DAG: `airflow dags test news_ingest <date>` in a child process with a
throwaway SQLite metadata database, watched by `watch_states` while it runs. The sources are one outlet of
the session's sample site and one source on a port nobody listens on, so the run ends with real states of
both kinds: every task succeeds but `check`, which fails on the unreachable source.
"""

from __future__ import annotations

import subprocess

import pytest
import yaml

from examples.demo import task_states, watch_states
from pipeline.core.paths import ROOT
from tests.airflow_helpers import AIRFLOW, airflow_env, migrate
from tests.crawl_helpers import free_port

pytestmark = pytest.mark.timeout(900)


def test_demo_shows_the_real_task_states_of_a_dag_run(tmp_path, s3_settings, sample_site):
    dead = free_port()
    sources = sample_site.write_sources_yaml(tmp_path / "sources.yaml", outlets=["valley-gazette"], download_timeout=3)
    cfg = yaml.safe_load(sources.read_text())
    cfg["sources"].append({"name": "gone", "feeds": [f"http://127.0.0.1:{dead}/feed.xml"], "max_age_days": 0})
    cfg["crawl"]["allow_private"].append(f"127.0.0.1:{dead}")
    sources.write_text(yaml.safe_dump(cfg, sort_keys=False), encoding="utf-8")
    home = tmp_path / "airflow"
    env = airflow_env(home, extra={"NEWS_INGEST_SOURCES": str(sources), "NEWS_INGEST_BUCKET": s3_settings.bucket})
    migrate(env)
    db = home / "airflow.db"
    assert task_states(db) == {}  # a fresh database: no run yet

    lines: list[str] = []
    log = tmp_path / "dags-test.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [AIRFLOW, "dags", "test", "news_ingest", "2026-12-05T10:00:00+00:00"],
            env=env,
            cwd=str(ROOT),
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        try:
            final = watch_states(proc, db, lines.append, poll=0.2)
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
    output = log.read_text(errors="replace")[-6000:]
    assert proc.returncode == 1, output  # the `check` task failed the run

    # The real task ids (mapped ones with their index) and their real states, read from Airflow's schema.
    states = task_states(db)
    assert states == final, (states, final)
    extracts = {t for t in states if t.startswith("extract[")}
    assert extracts and all(states[t] == "success" for t in extracts), states
    assert {t: s for t, s in states.items() if t not in extracts} == {
        "sources": "success",
        "crawl[0]": "success",
        "crawl[1]": "success",
        "warc_files": "success",
        "clean": "success",
        "dedupe": "success",
        "store": "success",
        "report": "success",
        "check": "failed",
    }, output

    # watch_states printed each change once, as it saw it: a task's lines never repeat a state, and its
    # last line is its final state; the run went sources -> crawl -> ... -> check.
    printed: dict[str, list[str]] = {}
    for line in lines:
        task, state = line.removeprefix("[demo]   ").split(": ", 1)
        printed.setdefault(task, []).append(state)
    for task, seq in printed.items():
        assert all(a != b for a, b in zip(seq, seq[1:])), (task, seq)
        if task in states:
            assert seq[-1] == states[task], (task, seq)
    assert set(states) <= set(printed), lines
    assert "none" not in {s for seq in printed.values() for s in seq}
    assert lines.index("[demo]   sources: success") < lines.index("[demo]   check: failed")
