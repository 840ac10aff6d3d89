"""Three runs of news_ingest at the same time on a real Airflow (scheduler, dag-processor, api-server,
LocalExecutor: tests/airflow_helpers.py) lose no seen-state entry and no dedupe-index entry, and store
no article twice.

`NEWS_INGEST_MAX_ACTIVE_RUNS=3` in the dag-processor's environment lets three runs of three consecutive
hours (a catch-up) run at once. Each run crawls two of the sample site's three outlets, so every outlet
is crawled by two runs at the same time: the runs race to store the same articles (one must win each,
the other drop its copy as a re-fetch), and each run has articles of its own to commit, so three runs
write seen-state deltas, dedupe-index segments and Delta commits concurrently. The scheduler makes no
run of its own (`use_job_schedule` off): the three triggered runs are the only ones.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
import textwrap
import urllib.parse
import uuid
from collections import Counter
from datetime import datetime, timedelta, timezone

import numpy as np
import pytest

from pipeline.core.bucket import Bucket, PreconditionFailed
from pipeline.core.context import make_run_id
from pipeline.core.layout import run_date
from pipeline.dataset.delta import run_commits, version_of_key
from pipeline.dataset.read import read_articles
from pipeline.dataset.state import open_seen
from pipeline.stages.dedupe import iter_dedupe
from pipeline.stages.dedupe_index import DedupeIndex, key64
from pipeline.text.urls import canonicalize
from tests.airflow_helpers import AWS_ENV, DAGS_FOLDER, AirflowStandalone, airflow_env, connection_json, wait_until
from tests.fixtures.s3 import drop_bucket

pytestmark = pytest.mark.slow

OUTLETS = ("the-daily-courier", "metro-herald", "valley-gazette")
#: Run i crawls outlets i and i+1: every outlet is crawled by two of the three runs.
RUN_OUTLETS = [(OUTLETS[i], OUTLETS[(i + 1) % 3]) for i in range(3)]
COLUMNS = ["article_id", "url", "canonical_url", "content_hash", "source", "run_id"]


def _when(text: str | None) -> datetime:
    assert text, "a finished run or task has start and end dates"
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _catch_up_hours() -> list[datetime]:
    """Three consecutive hours of one UTC day (yesterday 09:00-11:00): the runs share the index's day."""
    day = datetime.now(timezone.utc).replace(hour=9, minute=0, second=0, microsecond=0) - timedelta(days=1)
    return [day + timedelta(hours=h) for h in range(3)]


@pytest.fixture(scope="module")
def overlap(s3_server, sample_site, tmp_path_factory):
    root = tmp_path_factory.mktemp("overlap")
    settings = s3_server.info().settings(f"overlap-{uuid.uuid4().hex[:8]}")
    Bucket(settings).ensure()
    files = [
        sample_site.write_sources_yaml(
            root / f"sources-{i}.yaml", outlets=list(pair), download_timeout=3, max_page_bytes=8 * 2**20
        )
        for i, pair in enumerate(RUN_OUTLETS)
    ]
    conn = connection_json(
        endpoint_url=settings.endpoint_url,
        access_key_id=settings.access_key_id,
        secret_access_key=settings.secret_access_key,
        bucket=settings.bucket,
    )
    airflow = AirflowStandalone(
        root / "airflow",
        drop=AWS_ENV,
        extra_env={
            "AIRFLOW_CONN_NEWS_INGEST_S3": conn,
            "NEWS_INGEST_MAX_ACTIVE_RUNS": "3",
            "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": "False",
        },
    )
    try:
        airflow.start()
        dag = wait_until(lambda: airflow.api("GET", "/dags/news_ingest"), timeout=120, what="news_ingest parsed",
                         on_timeout=airflow.diagnostics)  # fmt: skip
        # Triggered while paused, so that all three are queued when the scheduler first looks.
        triggered = [
            airflow.trigger("news_ingest", logical_date=when.isoformat(), conf={"sources_path": str(path)})
            for when, path in zip(_catch_up_hours(), files)
        ]
        airflow.unpause("news_ingest")
        runs = [airflow.wait_for_run("news_ingest", timeout=600, run_id=t["dag_run_id"]) for t in triggered]
        tis = {r["dag_run_id"]: airflow.task_instances("news_ingest", r["dag_run_id"]) for r in runs}
        manifests = [_store_result(airflow, r["dag_run_id"]) for r in runs]
        yield {"settings": settings, "dag": dag, "runs": runs, "task_instances": tis, "manifests": manifests}
    finally:
        airflow.stop(grace=5)  # a throwaway home: what has not exited after 5 s is killed
        drop_bucket(Bucket(settings))


def _store_result(airflow: AirflowStandalone, dag_run_id: str) -> str:
    """The `store` task's XCom: the Delta commit key the run reported (its Asset event names that version)."""
    quoted = urllib.parse.quote(dag_run_id, safe="")
    path = f"/dags/news_ingest/dagRuns/{quoted}/taskInstances/store/xcomEntries/return_value"
    return airflow.api("GET", path)["value"]


def _run_ids(overlap) -> list[str]:
    return [make_run_id(_when(r["data_interval_end"])) for r in overlap["runs"]]


def _rows(overlap) -> list[dict]:
    settings = overlap["settings"]
    return [
        row
        for rid in _run_ids(overlap)
        for row in read_articles(settings=settings, run_id=rid, columns=COLUMNS).to_pylist()
    ]


#: Imports the DAG file (with $NEWS_INGEST_MAX_ACTIVE_RUNS=3) and asks its `max_active_runs` about other values.
PROBE = textwrap.dedent("""
    import json, sys
    sys.path.insert(0, sys.argv[1])
    import news_ingest as m

    def ask(value):
        try:
            return m.max_active_runs({m.MAX_ACTIVE_RUNS_ENV: value})
        except ValueError as exc:
            return str(exc)

    print(json.dumps([m.news_ingest_dag.max_active_runs, m.max_active_runs({})] + [ask(v) for v in (" 5 ", "0", "-1", "two")]))
""")


def test_max_active_runs_comes_from_the_environment(tmp_path):
    env = airflow_env(tmp_path / "airflow", extra={"NEWS_INGEST_MAX_ACTIVE_RUNS": "3"})
    out = subprocess.run([sys.executable, "-c", PROBE, str(DAGS_FOLDER)], env=env, capture_output=True, text=True,
                         timeout=120, stdin=subprocess.DEVNULL)  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    parsed, unset, five, *bad = json.loads(out.stdout.strip().splitlines()[-1])
    assert (parsed, unset, five) == (3, 1, 5)
    assert all("NEWS_INGEST_MAX_ACTIVE_RUNS must be a whole number >= 1" in str(b) for b in bad), bad


def test_the_three_runs_ran_at_the_same_time(overlap):
    assert overlap["dag"]["max_active_runs"] == 3  # the dag-processor's environment reached the scheduler
    runs = overlap["runs"]
    assert [r["state"] for r in runs] == ["success"] * 3
    assert len({r["logical_date"] for r in runs}) == 3
    # The runs' start/end dates (metadata DB, through the REST API) share an interval: all three ran at once.
    assert max(_when(r["start_date"]) for r in runs) < min(_when(r["end_date"]) for r in runs)
    # And their tasks did: some moment had task instances of at least two runs running.
    events = sorted(
        (_when(t[k]), +1 if k == "start_date" else -1, rid)
        for rid, tis in overlap["task_instances"].items()
        for t in tis
        for k in ("start_date", "end_date")
    )
    running: Counter = Counter()
    most = 0
    for _, step, rid in events:
        running[rid] += step
        most = max(most, sum(1 for n in running.values() if n > 0))
    assert most >= 2


def test_each_run_committed_and_no_article_is_stored_twice(overlap, sample_site):
    settings = overlap["settings"]
    commits = {rid: run_commits(settings, rid) for rid in _run_ids(overlap)}
    assert all(len(c) == 1 for c in commits.values()), commits  # each run's one commit is in the table
    # ... and each run's store task reported its own commit, not one another run made meanwhile.
    reported = [version_of_key(k) for k in overlap["manifests"]]
    assert reported == [c[0] for c in commits.values()]
    rows = _rows(overlap)
    assert rows
    twice = [k for k, n in Counter((r["url"], r["content_hash"]) for r in rows).items() if n > 1]
    assert twice == []
    assert len({r["article_id"] for r in rows}) == len(rows)
    # Every article of the three outlets was stored by one run or another: the races lost none.
    expected = {e["url"] for e in sample_site.expected() if e["expected"] == "stored" and e["outlet"] in OUTLETS}
    assert {r["url"] for r in rows} == expected


def test_every_committed_article_is_in_the_seen_state_and_the_dedupe_index(overlap):
    bucket = Bucket(overlap["settings"])
    rows = _rows(overlap)
    assert rows
    seen = {source: open_seen(bucket, source) for source in {r["source"] for r in rows}}
    missing_seen = []
    for r in rows:
        entry = seen[r["source"]].get(canonicalize(r["canonical_url"] or r["url"]))
        if entry is None or entry.get("article_id") != r["article_id"]:
            missing_seen.append((r["url"], entry))
    assert missing_seen == []

    days = {run_date(rid) for rid in _run_ids(overlap)}
    assert len(days) == 1
    index = DedupeIndex.open(bucket, run_date=days.pop())
    index.fetch(
        url=np.array([key64(r["canonical_url"] or canonicalize(r["url"])) for r in rows], dtype=np.uint64),
        content=np.array([key64(r["content_hash"]) for r in rows], dtype=np.uint64),
    )
    indexed = {index.get(i, "article_id") for i in range(len(index))}
    assert {r["article_id"] for r in rows} - indexed == set()


# --------------------------------------------------------------------------- races the Airflow run may not hit
# Whether two runs' dedupe (or store) steps overlap in the run above is down to timing. These two force, at
# stage level, the races that overlapping runs can hit.


def _same_story(seed: int) -> dict:
    from benchmarks.dedupe_data import Topic, render, story

    rng = random.Random(seed)
    return {"url": "https://a.example/news/story", "text": render(*story(rng, Topic(rng)))}


def test_runs_of_two_days_deduping_the_same_article_at_once_keep_one_copy(s3_settings):
    bucket = Bucket(s3_settings)
    days = ("2026-11-05", "2026-11-06")
    runs = ("20261105T230000Z", "20261106T000000Z")
    record = _same_story(1)
    # Both runs open the index before either saves: what two overlapping dedupe steps do.
    indexes = [DedupeIndex.open(bucket, run_date=d) for d in days]
    kinds = []
    for index, day, run in zip(indexes, days, runs):
        (row,) = next(iter_dedupe([dict(record)], index=index, run_date=day, run_id=run))
        kinds.append(row["dup_kind"])
    saved = 0
    for index in indexes:
        try:
            index.save(bucket)
            saved += 1
        except PreconditionFailed:  # the loser redoes against the winner's segment (`dedupe_stage`)
            pass
    # Either the second save conflicts (and its redo finds the first copy), or the second copy is marked.
    assert saved == 1 or kinds.count(None) == 1


def test_a_commit_reports_its_own_version_when_another_run_commits_right_after(s3_settings, monkeypatch):
    import deltalake

    from benchmarks.bench_store import generate_articles
    from pipeline.core.context import RunContext
    from pipeline.stages.store import store_articles

    mine, other = RunContext("20261105T100000Z", s3=s3_settings), RunContext("20261105T110000Z", s3=s3_settings)
    write = deltalake.write_deltalake
    calls = []

    def write_then_another_commit(*args, **kwargs):
        write(*args, **kwargs)
        calls.append(1)
        if len(calls) == 1:  # `mine` has just committed: `other` commits before `mine` reads the version
            store_articles(other, generate_articles(3, seed=2, words=10))

    monkeypatch.setattr(deltalake, "write_deltalake", write_then_another_commit)
    key = store_articles(mine, generate_articles(3, seed=1, words=10))
    assert version_of_key(key) == run_commits(s3_settings, mine.run_id)[-1]
