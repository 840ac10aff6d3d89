"""Stage timings of a DAG run, from its task instances (Airflow's record, not the tasks' own clocks).

The DAG's report task has no timings of its own to pass (each stage ran in another task, maybe on
another worker): `stage_seconds_from_airflow()` asks Airflow for the run's task instances and sums
each task's duration over its mapped instances (crawl and extract run one instance per source / file).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any

log = logging.getLogger(__name__)

#: Tasks that are bookkeeping, not a stage of the pipeline.
SKIP_TASKS = frozenset({"report", "check"})


def stage_seconds(breadcrumbs: Iterable[Mapping[str, Any]]) -> dict[str, float]:
    """{task id: seconds summed over its instances} from Airflow's task breadcrumbs (in task order)."""
    out: dict[str, float] = {}
    for crumb in breadcrumbs:
        task = str(crumb.get("task_id") or "")
        duration = crumb.get("duration")
        if not task or task in SKIP_TASKS or duration is None:
            continue
        out[task] = round(out.get(task, 0.0) + float(duration), 3)
    return out


def stage_seconds_from_airflow() -> dict[str, float]:
    """The current DAG run's stage timings; {} outside a running Airflow task or when Airflow cannot say."""
    try:
        from airflow.sdk import get_current_context
    except ImportError:
        return {}
    try:
        context = get_current_context()
        ti = context["ti"]
        crumbs = ti.get_task_breadcrumbs(ti.dag_id, ti.run_id)  # type: ignore[attr-defined]  # Airflow 3.3 API
    except Exception as exc:  # not in a task, or an Airflow without breadcrumbs: the report goes on without
        log.info("no stage timings from Airflow: %s", exc)
        return {}
    return stage_seconds(crumbs)
