"""`make demo`: the whole pipeline once, on the embedded defaults, through Airflow.

1. starts the embedded SeaweedFS S3 server (`python -m pipeline s3 up`);
2. serves the offline sample news site on 127.0.0.1:8701-8704 (three outlets and a hostile one);
3. runs the `news_ingest` DAG once with `airflow dags test` (a throwaway
   SQLite metadata database under var/airflow), printing each task's state as it changes;
4. prints the run's summary and a few articles read back from the bucket.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

from pipeline.core.config import S3Settings
from pipeline.core.paths import ROOT, default_sources_path, var_dir
from pipeline.runtime.s3server import EmbeddedS3


def airflow_env(s3: S3Settings, sources_path: str) -> dict[str, str]:
    """Environment for the Airflow CLI: a project-local home, our DAGs, no examples."""
    home = var_dir() / "airflow"
    home.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    env.update(s3.as_env())
    env.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
            "NEWS_INGEST_SOURCES": sources_path,
            "PYTHONPATH": str(ROOT),
        }
    )
    return env


def task_states(db: Path, dag_id: str = "news_ingest") -> dict[str, str]:
    """{"crawl[0]": "running", "clean": "success", ...} of the DAG's newest run, read from Airflow's SQLite
    metadata database (read-only); {} while it does not exist yet."""
    if not db.exists():
        return {}
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1) as conn:
            row = conn.execute(
                "SELECT run_id FROM dag_run WHERE dag_id = ? ORDER BY id DESC LIMIT 1", (dag_id,)
            ).fetchone()
            if row is None:
                return {}
            rows = conn.execute(
                "SELECT task_id, map_index, state FROM task_instance WHERE dag_id = ? AND run_id = ?", (dag_id, row[0])
            ).fetchall()
    except sqlite3.Error:  # locked or mid-migration: ask again on the next poll
        return {}
    return {f"{task}[{index}]" if index >= 0 else task: state or "none" for task, index, state in rows}


def watch_states(
    proc: subprocess.Popen, db: Path, say: Callable[[str], None] = print, *, poll: float = 1.0
) -> dict[str, str]:
    """Until `proc` ends: print every task whose state changed since the last poll; returns the final states.

    A task with no state yet is not printed (every task of a new run starts so). A mapped task's
    placeholder (`crawl`, map index -1) turns into its mapped instances (`crawl[0]`, ...) when it expands,
    so the final states are those of the last poll, not everything ever seen."""
    seen: dict[str, str] = {}
    states: dict[str, str] = {}
    while True:
        done = proc.poll() is not None
        states = task_states(db) or states  # {}: the database was busy; keep the last answer
        for task, state in sorted(states.items()):
            if seen.get(task) != state and state != "none":
                say(f"[demo]   {task}: {state}")
        seen.update(states)
        if done:
            return states
        time.sleep(poll)


def main() -> int:
    from examples.sample_site import SampleSite
    from pipeline.core.bucket import Bucket
    from pipeline.core.layout import report_key
    from pipeline.dataset.read import read_articles
    from pipeline.flows.ingest import print_summary
    from pipeline.report.run_report import latest_run

    bucket_name = os.environ.get("NEWS_INGEST_BUCKET", "news")
    info = EmbeddedS3().up(bucket_name)
    print(f"[demo] S3: {info.endpoint_url} bucket {bucket_name!r}")
    s3 = S3Settings.from_env()
    sources = str(default_sources_path())

    with SampleSite(ports=[8701, 8702, 8703, 8704]) as site:
        print(f"[demo] sample site: {', '.join(site.base_urls.values())}")
        env = airflow_env(s3, sources)
        airflow = str(ROOT / ".venv" / "bin" / "airflow") if (ROOT / ".venv/bin/airflow").exists() else "airflow"
        subprocess.run([airflow, "db", "migrate"], env=env, check=True, stdout=subprocess.DEVNULL)
        logical = datetime.now(timezone.utc).replace(minute=0, second=0, microsecond=0).isoformat()
        print(f"[demo] airflow dags test news_ingest {logical} ...")
        log_path = var_dir() / "airflow" / "demo-dags-test.log"
        with open(log_path, "w") as log:
            proc = subprocess.Popen(
                [airflow, "dags", "test", "news_ingest", logical], env=env, stdout=log, stderr=subprocess.STDOUT
            )
            watch_states(proc, Path(env["AIRFLOW_HOME"]) / "airflow.db")
        if proc.returncode != 0:
            print(f"[demo] the DAG run failed; its log: {log_path}", file=sys.stderr)
            print(log_path.read_text()[-4000:], file=sys.stderr)
            return 1
        print(f"[demo] DAG run succeeded (log: {log_path})")

    bucket = Bucket(s3)
    report = bucket.get_json(report_key(latest_run(bucket)))
    print_summary(report)
    table = read_articles(settings=s3, run_id=report["run_id"], canonical_only=True)
    print(f"[demo] {table.num_rows} canonical articles read back; the first three:")
    for row in table.slice(0, 3).to_pylist():
        print(f"\n  {row['title']}  ({row['source']}, {row['published']})\n  {row['canonical_url']}")
        print(textwrap.indent(textwrap.shorten(row["text"], 300), "    "))
    print("\n[demo] the embedded S3 keeps running: `make s3-down` stops it.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
