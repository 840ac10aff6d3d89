"""A real distributed Airflow for news_ingest: PostgreSQL, Redis, the API server, scheduler,
dag-processor and two Celery workers, all on 127.0.0.1 and free ports, data under one temp folder.

Each worker has its own AIRFLOW_HOME, HOME, working directory, temp folder and NEWS_INGEST_HOME:
they share nothing but the bucket (and the code). `python scripts/cluster.py` (`make scale-demo`)
runs the scale demo (`scale_demo`): news_ingest over 8 sources of two sample sites on the cluster,
one worker killed with SIGKILL mid-crawl, then the same run on a LocalExecutor for comparison.
The test `tests/test_scale_celery.py` runs the same scenario.

PostgreSQL runs as the `postgres` user when this runs as root (initdb refuses root).
"""

from __future__ import annotations

import argparse
import glob
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as `python scripts/cluster.py`
    sys.path.insert(0, str(ROOT))

import yaml  # noqa: E402

from pipeline.runtime.s3server import free_port  # noqa: E402
from tests.airflow_helpers import (  # noqa: E402
    AIRFLOW,
    AWS_ENV,
    AirflowStandalone,
    connection_json,
    session_members,
    wait_until,
)

WORKERS = ("worker-a", "worker-b")
#: `$AIRFLOW_HOME/config/airflow_local_settings.py` of the scheduler (deployment step: the same file).
LOCAL_SETTINGS = """from pipeline.airflow_tasks import task_instance_mutation_hook

__all__ = ["task_instance_mutation_hook"]
"""
#: The scenario's sources: a small delay between requests makes each crawl last several seconds, so that one is
#: still running when tasks have landed on both workers (the one killed); slow and huge pages are cut short.
SCENARIO_SOURCES = {"source_delay": 0.3, "download_timeout": 3, "max_page_bytes": 8 * 2**20}


# --------------------------------------------------------------------------- PostgreSQL and Redis


def _pg_bin(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}")) or [shutil.which(name) or ""]
    if not found[-1]:
        raise RuntimeError(f"{name} not found: apt-get install postgresql")
    return found[-1]


class Postgres:
    """A throwaway PostgreSQL cluster on 127.0.0.1:<port>; as `postgres` when run as root."""

    def __init__(self) -> None:
        # Its own folder in the system temp dir: pytest's tmp_path is 0700 root, closed to `postgres`.
        self.dir = Path(tempfile.mkdtemp(prefix="news-ingest-pg-"))
        self.data = self.dir / "data"
        self.port = free_port()
        self.user, self.password, self.database = "airflow", secrets.token_urlsafe(16), "airflow"
        self._as_postgres = os.geteuid() == 0

    @property
    def url(self) -> str:
        return f"postgresql+psycopg2://{self.user}:{self.password}@127.0.0.1:{self.port}/{self.database}"

    def _run(self, args: list[str], **kwargs: Any) -> None:
        cmd = ["runuser", "-u", "postgres", "--", *args] if self._as_postgres else args
        subprocess.run(cmd, check=True, capture_output=True, stdin=subprocess.DEVNULL, timeout=120, **kwargs)

    def start(self) -> Postgres:
        self.dir.chmod(0o755)
        pwfile = self.dir / "pw"
        pwfile.write_text(self.password)
        if self._as_postgres:
            shutil.chown(self.dir, "postgres")
            shutil.chown(pwfile, "postgres")
        pwfile.chmod(0o600)
        self._run([_pg_bin("initdb"), "-D", str(self.data), "-U", self.user, "--auth=scram-sha-256",
                   f"--pwfile={pwfile}", "-E", "UTF8"])  # fmt: skip
        opts = f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.dir}"
        self._run([_pg_bin("pg_ctl"), "-D", str(self.data), "-o", opts, "-l", str(self.dir / "pg.log"), "-w", "start"])
        env = {**os.environ, "PGPASSWORD": self.password}
        self._run([_pg_bin("createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U", self.user, self.database],
                  env=env)  # fmt: skip
        return self

    def stop(self) -> None:
        if self.data.exists():
            try:
                self._run([_pg_bin("pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop"])
            except subprocess.CalledProcessError:
                pass
        shutil.rmtree(self.dir, ignore_errors=True)


class Redis:
    """redis-server on 127.0.0.1:<port>, nothing persisted; the Celery broker."""

    def __init__(self, folder: Path) -> None:
        self.dir = folder
        self.port = free_port()
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> Redis:
        self.dir.mkdir(parents=True, exist_ok=True)
        binary = shutil.which("redis-server") or "/usr/bin/redis-server"
        args = ["--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        with open(self.dir / "redis.out", "wb") as out:
            self.proc = subprocess.Popen(
                [binary, *args, "--dir", str(self.dir)],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        wait_until(lambda: _port_open(self.port), timeout=30, interval=0.2, what="redis-server")
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)


def _port_open(port: int) -> bool:
    import socket

    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex(("127.0.0.1", port)) == 0


# --------------------------------------------------------------------------- Airflow on Celery


@dataclass
class Worker:
    name: str
    home: Path
    proc: subprocess.Popen | None = None
    env: dict[str, str] = field(default_factory=dict)

    @property
    def task_logs(self) -> list[str]:
        """`<task_id>[/map_index=<i>]/attempt=<n>` of every task attempt this worker started (its own AIRFLOW_HOME):
        the supervisor writes the log as the task starts, so a killed worker's attempts are there too."""
        logs = self.home / "airflow" / "logs"
        return sorted(str(p.relative_to(logs)).split("task_id=", 1)[-1] for p in logs.rglob("attempt=*.log"))


class CeleryCluster(AirflowStandalone):
    """`AirflowStandalone` on PostgreSQL with the CeleryExecutor, plus Redis and two Celery workers.

    `conn_json`: the `news_ingest_s3` Connection (an `aws` Connection, JSON form) given to every
    component; nothing else tells a task where the bucket is.
    """

    def __init__(self, root: Path, *, conn_json: str, worker_concurrency: int = 2, extra_env: dict | None = None):
        self.root = root
        self.postgres = Postgres()
        self.redis = Redis(root / "redis")
        celery = {
            "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
            # No more tasks queued than the two workers have slots: a queued task waits for a slot, not on a timeout.
            "AIRFLOW__CORE__PARALLELISM": str(2 * worker_concurrency),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": self.postgres.url,
            "AIRFLOW__CELERY__BROKER_URL": self.redis.url,
            "AIRFLOW__CELERY__RESULT_BACKEND": "db+" + self.postgres.url,
            "AIRFLOW__CELERY__WORKER_CONCURRENCY": str(worker_concurrency),
            # One task reserved at a time per process: a free worker takes the next one, not a busy one.
            "AIRFLOW__CELERY__WORKER_PREFETCH_MULTIPLIER": "1",
            "AIRFLOW__CORE__HOSTNAME_CALLABLE": "pipeline.airflow_tasks.worker_hostname",
            # A killed worker's task is noticed within ~30 s (the default is 5 minutes).
            "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "30",
            "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "5",
            # A task the killed worker had received but not yet started stays `queued` (its Celery message is
            # unacknowledged until Redis's visibility timeout, a day): the scheduler requeues it after this
            # (default 10 minutes), without using up a try.
            "AIRFLOW__SCHEDULER__TASK_QUEUED_TIMEOUT": "120",
            "AIRFLOW__SCHEDULER__TASK_QUEUED_TIMEOUT_CHECK_INTERVAL": "10",
            "AIRFLOW_CONN_NEWS_INGEST_S3": conn_json,
            **(extra_env or {}),
        }
        super().__init__(root / "control", extra_env=celery, drop=AWS_ENV)
        self.workers = {name: Worker(name, root / name) for name in WORKERS}
        # The scheduler's cluster policy: each crawl into its source's pool (`airflow_tasks.task_instance_mutation_hook`).
        (self.home / "config").mkdir(parents=True, exist_ok=True)
        (self.home / "config" / "airflow_local_settings.py").write_text(LOCAL_SETTINGS)

    def start(self, *, timeout: float = 240) -> CeleryCluster:
        try:
            self.postgres.start()
            self.redis.start()
            super().start(timeout=timeout)
            for worker in self.workers.values():
                self.start_worker(worker)
            wait_until(
                self._workers_ready, timeout=120, interval=1, what="both Celery workers", on_timeout=self.diagnostics
            )
        except BaseException:
            self.stop()  # nothing left running: postgres, redis and every component started so far
            raise
        return self

    def worker_env(self, worker: Worker) -> dict[str, str]:
        """The control plane's settings with a home, HOME, temp dir and working dir of the worker's own."""
        for sub in ("airflow", "home", "tmp", "ingest", "cwd"):
            (worker.home / sub).mkdir(parents=True, exist_ok=True)
        return {
            **self.env,
            "AIRFLOW_HOME": str(worker.home / "airflow"),
            "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(worker.home / "airflow" / "logs"),
            "HOME": str(worker.home / "home"),
            "TMPDIR": str(worker.home / "tmp"),
            "NEWS_INGEST_HOME": str(worker.home / "ingest"),
            "NEWS_INGEST_WORKER_NAME": worker.name,
            # The dedupe key cache is per machine: each worker its own, as on separate hosts.
            "NEWS_INGEST_CACHE_DIR": str(worker.home / "cache"),
        }

    def start_worker(self, worker: Worker) -> None:
        worker.env = self.worker_env(worker)
        with open(worker.home / "worker.out", "wb") as out:
            worker.proc = subprocess.Popen(
                [AIRFLOW, "celery", "worker", "--celery-hostname", f"{worker.name}@%h", "--skip-serve-logs",
                 "--without-mingle", "--without-gossip"],
                env=worker.env,
                cwd=str(worker.home / "cwd"),
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )  # fmt: skip
        self.procs[worker.name] = worker.proc

    def _workers_ready(self) -> bool:
        for worker in self.workers.values():
            if worker.proc is None or worker.proc.poll() is not None:
                raise AssertionError(f"celery worker {worker.name} exited\n{self.diagnostics()}")
        return all(b"ready." in (w.home / "worker.out").read_bytes() for w in self.workers.values())

    def kill_worker(self, name: str) -> list[int]:
        """SIGKILL to every process of the worker's session (Celery, its pool, task supervisors, tasks, crawls)."""
        worker = self.workers[name]
        assert worker.proc is not None
        pids = session_members(worker.proc.pid)
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        worker.proc.wait(timeout=30)
        return pids

    def stop(self, *, grace: float = 20) -> None:
        try:
            super().stop(grace=grace)
        finally:
            self.redis.stop()
            self.postgres.stop()

    def diagnostics(self) -> str:
        parts = [super().diagnostics()]
        for worker in self.workers.values():
            out = worker.home / "worker.out"
            if out.exists():
                parts.append(f"--- {worker.name}\n{out.read_text(errors='replace')[-4000:]}")
            logs = worker.home / "airflow" / "logs"
            if logs.exists():
                from tests.airflow_helpers import read_logs

                parts.append(f"--- {worker.name} task logs\n{read_logs(logs, limit=6000)}")
        return "\n".join(parts)


# --------------------------------------------------------------------------- the scenario


def eight_sources(sites: list, path: Path, **overrides: Any) -> Path:
    """One sources file over several sample sites (4 outlets each): `<outlet>` for the first, `<outlet>-<n>` after."""
    crawl: dict[str, Any] = {"allow_private": []}
    sources: list[dict] = []
    for n, site in enumerate(sites):
        one = yaml.safe_load(site.write_sources_yaml(path, **overrides).read_text())
        crawl = {**one["crawl"], "allow_private": crawl["allow_private"] + one["crawl"]["allow_private"]}
        for src in one["sources"]:
            # Concurrency 1, 2, 3, 1, ...: pools of different sizes.
            name = src["name"] if n == 0 else f"{src['name']}-{n + 1}"
            sources.append({**src, "name": name, "concurrency": 1 + len(sources) % 3})
    path.write_text(yaml.safe_dump({"crawl": crawl, "sources": sources}, sort_keys=False))
    return path


def sync_pools(airflow: AirflowStandalone, sources: Path) -> dict[str, int]:
    """One Airflow pool per source, its slots = the source's `concurrency` (created or updated over the REST API)."""
    from pipeline.airflow_tasks import crawl_pools
    from pipeline.core.config import load_sources

    pools = crawl_pools(load_sources(sources))
    existing = {p["name"] for p in airflow.api("GET", "/pools?limit=1000")["pools"]}
    for name, slots in pools.items():
        body = {
            "name": name,
            "slots": slots,
            "description": "news_ingest crawls of one outlet",
            "include_deferred": False,
        }
        if name in existing:
            airflow.api("PATCH", f"/pools/{name}", body)
        else:
            airflow.api("POST", "/pools", body)
    return pools


def push_sources(path: Path, s3_env: dict[str, str]) -> str:
    """`python -m pipeline sources push FILE` (the deploy step), with the bucket's settings in its environment."""
    proc = subprocess.run(
        [sys.executable, "-m", "pipeline", "sources", "push", str(path)],
        env={**os.environ, **s3_env},
        cwd=str(ROOT),
        capture_output=True,
        text=True,
        timeout=120,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"sources push failed: {proc.stderr}")
    return proc.stdout.strip()


def hour_ago() -> datetime:
    """The latest whole hour: the logical date whose run the scheduler would create on unpause (catchup=False),
    so it sees ours and creates no second run of the same interval (run id = this hour)."""
    return datetime.now(timezone.utc).replace(minute=0, second=0, microsecond=0)


@dataclass
class CeleryRun:
    run: dict
    task_instances: list[dict]
    hosts_before_kill: set[str]
    killed_worker: str
    killed_task: tuple[str, int]
    task_logs: dict[str, list[str]]


def celery_run_with_a_kill(cluster: CeleryCluster, logical_date: datetime, *, timeout: float = 600) -> CeleryRun:
    """Trigger news_ingest; once crawls run on both workers, kill -9 the worker of one; wait for the run."""
    wait_until(lambda: cluster.api("GET", "/dags/news_ingest"), timeout=120, what="news_ingest parsed",
               on_timeout=cluster.diagnostics)  # fmt: skip
    run_id = cluster.trigger("news_ingest", logical_date=logical_date.isoformat())["dag_run_id"]
    cluster.unpause("news_ingest")

    def crawls_on_both() -> tuple[set[str], dict] | None:
        # Tasks seen on both workers so far (finished ones keep their hostname), and a crawl running now.
        tis = cluster.task_instances("news_ingest", run_id)
        seen.update(t["hostname"] for t in tis if t.get("hostname"))
        running = [t for t in tis if t["task_id"] == "crawl" and t["state"] == "running" and t.get("hostname")]
        if seen >= set(WORKERS) and running:
            return set(seen), running[0]
        return None

    seen: set[str] = set()

    hosts, victim = wait_until(crawls_on_both, timeout=300, interval=1, what="crawls running on both workers",
                               on_timeout=cluster.diagnostics)  # fmt: skip
    cluster.kill_worker(victim["hostname"])
    run = cluster.wait_for_run("news_ingest", timeout=timeout, run_id=run_id)
    return CeleryRun(
        run=run,
        task_instances=cluster.task_instances("news_ingest", run_id),
        hosts_before_kill=hosts,
        killed_worker=victim["hostname"],
        killed_task=(victim["task_id"], victim["map_index"]),
        task_logs={w.name: w.task_logs for w in cluster.workers.values()},
    )


def local_reference_run(home: Path, *, conn_json: str, sources: Path, logical_date: datetime) -> dict:
    """The same run on the LocalExecutor (SQLite): the reference the Celery run must equal."""
    airflow = AirflowStandalone(
        home,
        drop=AWS_ENV,
        extra_env={"AIRFLOW_CONN_NEWS_INGEST_S3": conn_json, "AIRFLOW_VAR_NEWS_INGEST_SOURCES_PATH": str(sources)},
    )
    try:
        airflow.start()
        wait_until(lambda: airflow.api("GET", "/dags/news_ingest"), timeout=120, what="news_ingest parsed")
        run_id = airflow.trigger("news_ingest", logical_date=logical_date.isoformat())["dag_run_id"]
        airflow.unpause("news_ingest")
        return airflow.wait_for_run("news_ingest", timeout=600, run_id=run_id)
    finally:
        airflow.stop()


def scale_demo(root: Path) -> int:
    """`make scale-demo`: the scenario with its own SeaweedFS and sample sites; prints what it checked."""
    from examples.sample_site import SampleSite
    from pipeline.core.bucket import Bucket
    from pipeline.core.context import make_run_id
    from pipeline.dataset.read import read_articles
    from pipeline.runtime.s3server import EmbeddedS3

    s3 = EmbeddedS3(root / "s3", s3_port=free_port())
    info = s3.up("news")
    sites = [SampleSite(slow_seconds=5, huge_bytes=8 * 2**20).start() for _ in range(2)]
    cluster = None
    try:
        buckets = {}
        for kind in ("celery", "local"):
            settings = info.settings(f"{kind}-{uuid.uuid4().hex[:8]}")
            Bucket(settings).ensure()
            buckets[kind] = settings
        sources = eight_sources(sites, root / "sources.yaml", **SCENARIO_SOURCES)
        conns = {k: connection_json(endpoint_url=s.endpoint_url, access_key_id=s.access_key_id,
                                    secret_access_key=s.secret_access_key, bucket=s.bucket) for k, s in buckets.items()}  # fmt: skip
        print(push_sources(sources, buckets["celery"].as_env()))
        when = hour_ago()
        t0 = time.monotonic()
        cluster = CeleryCluster(root / "cluster", conn_json=conns["celery"])
        cluster.start()
        pools = sync_pools(cluster, sources)
        print(f"cluster up in {time.monotonic() - t0:.0f}s: postgres :{cluster.postgres.port}, "
              f"redis :{cluster.redis.port}, api {cluster.base_url}, workers {', '.join(WORKERS)}")  # fmt: skip
        t0 = time.monotonic()
        result = celery_run_with_a_kill(cluster, when)
        print(f"celery run {result.run['state']} in {time.monotonic() - t0:.0f}s; killed {result.killed_worker} "
              f"during {result.killed_task}; workers seen before the kill: {sorted(result.hosts_before_kill)}")  # fmt: skip
        for ti in result.task_instances:
            print(f"  {ti['task_id']}[{ti['map_index']}] try {ti['try_number']} on {ti['hostname']}: {ti['state']}"
                  f" (pool {ti['pool']}, {ti['pool_slots']} slot(s))")  # fmt: skip
        print(f"pools: {pools}")
        cluster.stop()
        cluster = None
        t0 = time.monotonic()
        local_reference_run(root / "local", conn_json=conns["local"], sources=sources, logical_date=when)
        print(f"local executor run in {time.monotonic() - t0:.0f}s")
        run_id = make_run_id(when)
        ids = {k: sorted(read_articles(settings=s, run_id=run_id, columns=["article_id"]).column(0).to_pylist())
               for k, s in buckets.items()}  # fmt: skip
        same = ids["celery"] == ids["local"] and len(set(ids["celery"])) == len(ids["celery"])
        print(f"articles: celery {len(ids['celery'])}, local {len(ids['local'])}; same ids, none twice: {same}")
        return 0 if same and result.run["state"] == "success" else 1
    finally:
        if cluster is not None:
            cluster.stop()
        for site in sites:
            site.stop()
        s3.down()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", action="store_true", help="keep the temp folder (logs) afterwards")
    args = parser.parse_args(argv)
    root = Path(tempfile.mkdtemp(prefix="news-ingest-scale-"))
    try:
        return scale_demo(root)
    finally:
        if args.keep:
            print(f"logs kept in {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
