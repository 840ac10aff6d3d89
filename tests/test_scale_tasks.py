"""Task-side pieces of the distributed deployment that need no cluster: child processes under a daemonic
(Celery prefork) parent, and the per-source pools."""

from __future__ import annotations

import multiprocessing as mp

import pytest

from pipeline.airflow_tasks import allow_child_processes, crawl_pool, crawl_pools
from pipeline.core.config import SourcesConfig

FORK = mp.get_context("fork")


def _start_a_child(results, allow: bool) -> None:
    if allow:
        allow_child_processes()
    try:
        child = FORK.Process(target=int)
        child.start()
        child.join(10)
        results.put(child.exitcode)
    except AssertionError as exc:
        results.put(str(exc))


@pytest.mark.parametrize("allow", [False, True])
def test_a_task_forked_from_a_daemonic_worker_may_start_children_once_allowed(allow):
    results = FORK.Queue()
    # A Celery prefork pool process is daemonic; the Airflow task forked from it inherits the flag.
    worker = FORK.Process(target=_start_a_child, args=(results, allow), daemon=True)
    worker.start()
    worker.join(30)
    outcome = results.get(timeout=10)
    assert outcome == (0 if allow else "daemonic processes are not allowed to have children")


def test_one_pool_per_source_sized_from_its_concurrency():
    sources = SourcesConfig.model_validate(
        {
            "sources": [
                {"name": "daily", "feeds": ["http://a.example/feed"], "concurrency": 3},
                {"name": "weekly", "feeds": ["http://b.example/feed"]},
            ]
        }  # fmt: skip
    )
    assert crawl_pools(sources) == {crawl_pool("daily"): 3, crawl_pool("weekly"): 2}
    assert crawl_pool("daily") != crawl_pool("weekly")
