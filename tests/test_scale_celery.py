"""news_ingest on a real distributed Airflow (scripts/cluster.py): PostgreSQL, Redis, the API server,
scheduler, dag-processor and two Celery workers, each with its own home, HOME, temp and working
directory, sharing nothing but the bucket. The sources come from the bucket (`sources push`), the
bucket from the `aws` Connection. 8 sources (two sample sites, 4 outlets each).

One run, shared by the tests of this module: once crawls run on both workers, one worker is killed
with SIGKILL (every process of it); Airflow notices the lost heartbeat and retries the task on the
other worker. Then the same run on the LocalExecutor, in another bucket: the same article ids.
"""

from __future__ import annotations

import uuid
from collections import Counter

import pytest

from pipeline.airflow_tasks import crawl_pool
from pipeline.core.bucket import Bucket
from pipeline.core.config import S3Settings, load_sources
from pipeline.core.context import make_run_id
from pipeline.dataset.read import read_articles
from scripts.cluster import (
    SCENARIO_SOURCES,
    WORKERS,
    CeleryCluster,
    celery_run_with_a_kill,
    eight_sources,
    hour_ago,
    local_reference_run,
    push_sources,
    sync_pools,
)
from tests.airflow_helpers import connection_json
from tests.fixtures.s3 import drop_bucket

pytestmark = pytest.mark.slow


def _settings(s3_server, kind: str) -> S3Settings:
    info = s3_server.info()
    settings = info.settings(f"scale-{kind}-{uuid.uuid4().hex[:8]}")
    Bucket(settings).ensure()
    return settings


def _conn(s: S3Settings) -> str:
    return connection_json(
        endpoint_url=s.endpoint_url,
        access_key_id=s.access_key_id,
        secret_access_key=s.secret_access_key,
        bucket=s.bucket,
    )


@pytest.fixture(scope="module")
def scale_run(s3_server, tmp_path_factory):
    from examples.sample_site import SampleSite

    root = tmp_path_factory.mktemp("scale")
    sites = [SampleSite(slow_seconds=5, huge_bytes=8 * 2**20).start() for _ in range(2)]
    buckets = {kind: _settings(s3_server, kind) for kind in ("celery", "local")}
    cluster = None
    try:
        sources = eight_sources(sites, root / "sources.yaml", **SCENARIO_SOURCES)
        push_sources(sources, buckets["celery"].as_env())
        when = hour_ago()
        cluster = CeleryCluster(root / "cluster", conn_json=_conn(buckets["celery"]))
        cluster.start()
        sync_pools(cluster, sources)
        result = celery_run_with_a_kill(cluster, when)
        pools = {p["name"]: p["slots"] for p in cluster.api("GET", "/pools?limit=1000")["pools"]}
        cluster.stop()
        local_reference_run(root / "local", conn_json=_conn(buckets["local"]), sources=sources, logical_date=when)
        run_id = make_run_id(when)
        rows = {
            k: read_articles(settings=s, run_id=run_id, columns=["article_id", "url"]).to_pylist()
            for k, s in buckets.items()
        }
        yield {"result": result, "rows": rows, "sources": sources, "pools": pools}
    finally:
        if cluster is not None:
            cluster.stop()
        for site in sites:
            site.stop()
        for s in buckets.values():
            drop_bucket(Bucket(s))


def test_tasks_ran_on_both_workers(scale_run):
    result = scale_run["result"]
    assert result.hosts_before_kill == set(WORKERS)
    # Each worker's own AIRFLOW_HOME holds the logs of the attempts it ran: crawls on both.
    crawled = {name: [t for t in logs if t.startswith("crawl/")] for name, logs in result.task_logs.items()}
    assert set(crawled) == set(WORKERS) and all(crawled.values()), result.task_logs
    crawls = [t for t in result.task_instances if t["task_id"] == "crawl"]
    assert len(crawls) == 8
    assert {t["state"] for t in result.task_instances} == {"success"}


def test_the_killed_workers_task_is_retried_on_the_other(scale_run):
    result = scale_run["result"]
    (survivor,) = set(WORKERS) - {result.killed_worker}
    task_id, map_index = result.killed_task
    (retried,) = [t for t in result.task_instances if (t["task_id"], t["map_index"]) == (task_id, map_index)]
    assert retried["state"] == "success"
    assert retried["try_number"] >= 2
    assert retried["hostname"] == survivor


def test_same_articles_as_the_local_executor_none_lost_or_twice(scale_run):
    celery, local = scale_run["rows"]["celery"], scale_run["rows"]["local"]
    assert celery, "the Celery run committed nothing"
    twice = [k for k, n in Counter(r["article_id"] for r in celery).items() if n > 1]
    assert twice == []
    assert sorted(r["article_id"] for r in celery) == sorted(r["article_id"] for r in local)
    # Both sample sites' outlets were crawled: 8 sources contributed.
    assert len({r["url"].split("/")[2] for r in celery}) == 8


def test_each_crawl_runs_in_its_sources_pool_sized_from_its_concurrency(scale_run):
    sources = load_sources(scale_run["sources"]).sources
    concurrency = {crawl_pool(s.name): s.concurrency for s in sources}
    assert len(set(concurrency.values())) > 1  # pools of different sizes
    # The cluster's pools: one per source, slots = its concurrency.
    assert {name: scale_run["pools"][name] for name in concurrency} == concurrency
    crawls = sorted(
        (t for t in scale_run["result"].task_instances if t["task_id"] == "crawl"), key=lambda t: t["map_index"]
    )
    # Map index i crawls the i-th source; its instance (retries included) takes the whole pool.
    assert [(t["pool"], t["pool_slots"]) for t in crawls] == [(crawl_pool(s.name), s.concurrency) for s in sources]
