"""Running Airflow for tests: a throwaway AIRFLOW_HOME, the CLI, Airflow's own processes, the REST API.

`AirflowStandalone` starts what `airflow standalone` would (scheduler, dag-processor,
api-server; not the triggerer, and without the log servers, which bind every interface),
each in its own session, on free ports bound to 127.0.0.1. `stop()` kills every process
of those sessions, task processes and their Scrapy children included: nothing is left behind.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pipeline.core.paths import ROOT
from pipeline.runtime.s3server import free_port

AIRFLOW = str(Path(sys.executable).parent / "airflow")
DAGS_FOLDER = ROOT / "dags"
#: S3 environment that Airflow components must not inherit when they take the bucket from the Connection only.
AWS_ENV = (
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_S3",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "NEWS_INGEST_BUCKET",
)
#: Variables a child Airflow must not inherit from the test process (they would override ours).
_DROP_PREFIXES = ("AIRFLOW__", "AIRFLOW_CONN_", "AIRFLOW_VAR_")


def airflow_env(home: Path, *, extra: dict[str, str] | None = None, drop: tuple[str, ...] = ()) -> dict[str, str]:
    """Environment for an Airflow process with its own home (SQLite), our DAGs and no examples.

    `drop`: names removed from the inherited environment (e.g. the AWS_* variables, to
    prove that the tasks take their S3 settings from an Airflow Connection).
    """
    home.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(_DROP_PREFIXES) and k not in drop}
    env.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS_FOLDER),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
            "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(home / "logs"),
            "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_hex(16),
            "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
            "PYTHONUNBUFFERED": "1",
            # `airflow standalone` starts its components as plain `airflow ...`: this venv's must be first.
            "PATH": os.pathsep.join([str(Path(AIRFLOW).parent), env.get("PATH", os.defpath)]),
        }
    )
    env.update(extra or {})
    return env


def airflow_cli(
    args: list[str], env: dict[str, str], *, timeout: float = 300, check: bool = True
) -> subprocess.CompletedProcess:
    """Run `airflow <args>`; on failure raise with its output (the assertion message shows it)."""
    proc = subprocess.run(
        [AIRFLOW, *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        cwd=str(ROOT),
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"airflow {' '.join(args)} exited {proc.returncode}\n"
            f"--- stdout\n{proc.stdout[-6000:]}\n--- stderr\n{proc.stderr[-6000:]}"
        )
    return proc


def migrate(env: dict[str, str]) -> None:
    """`airflow db migrate`: the SQLite metadata database of this home."""
    airflow_cli(["db", "migrate"], env, timeout=600)


def connection_json(*, endpoint_url: str, access_key_id: str, secret_access_key: str, bucket: str) -> str:
    """An `AIRFLOW_CONN_<ID>` value (JSON form) for the news_ingest S3 Connection."""
    return json.dumps(
        {
            "conn_type": "aws",
            "login": access_key_id,
            "password": secret_access_key,
            "extra": {"endpoint_url": endpoint_url, "bucket": bucket},
        }
    )


def wait_until(
    predicate: Callable[[], Any],
    *,
    timeout: float,
    interval: float = 2.0,
    what: str = "condition",
    on_timeout: Callable[[], str] | None = None,
) -> Any:
    """Poll `predicate` until it returns something truthy; AssertionError (with diagnostics) on timeout."""
    deadline = time.monotonic() + timeout
    last_exc: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
            if value:
                return value
        except Exception as exc:  # not ready yet (connection refused, 404 while parsing ...)
            last_exc = exc
        time.sleep(interval)
    details = on_timeout() if on_timeout else ""
    raise AssertionError(
        f"timed out after {timeout:.0f}s waiting for {what}"
        f"{f' (last error: {last_exc!r})' if last_exc else ''}\n{details}"
    )


def read_logs(folder: Path, *, limit: int = 20000) -> str:
    """The tail of every log file under `folder`, each with its path (for failure messages)."""
    parts = []
    for path in sorted(folder.rglob("*.log")) + sorted(folder.rglob("*.out")):
        try:
            text = path.read_text(errors="replace")
        except OSError:
            continue
        parts.append(f"===== {path.relative_to(folder)}\n{text[-3000:]}")
    out = "\n".join(parts)
    return out[-limit:]


class AirflowStandalone:
    """Airflow's own processes (scheduler, dag-processor, api-server: what `airflow standalone` runs) with a throwaway home."""

    def __init__(self, home: Path, *, extra_env: dict[str, str] | None = None, drop: tuple[str, ...] = ()):
        self.home = home
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.username = "admin"
        self.password = secrets.token_urlsafe(12)
        passwords = home / "passwords.json"
        home.mkdir(parents=True, exist_ok=True)
        passwords.write_text(json.dumps({self.username: self.password}))
        passwords.chmod(0o600)
        self.env = airflow_env(
            home,
            drop=drop,
            extra={
                "AIRFLOW__API__HOST": "127.0.0.1",
                "AIRFLOW__API__PORT": str(self.port),
                "AIRFLOW__API__BASE_URL": self.base_url,
                "AIRFLOW__API__WORKERS": "1",
                "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.base_url}/execution/",
                "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
                "AIRFLOW__CORE__PARALLELISM": "4",
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{self.username}:admin",
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords),
                "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
                "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port()),
                "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "2",
                "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "10",
                "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "10",
                **(extra_env or {}),
            },
        )
        self.procs: dict[str, subprocess.Popen] = {}
        self.session_ids: list[int] = []
        self._token: str | None = None

    # -- lifecycle
    #: The components `airflow standalone` would start, minus the triggerer (no deferrable
    #: tasks here) and minus the log servers, which bind every interface: with one home
    #: the api-server reads task logs from the shared log folder anyway.
    COMPONENTS = {
        "scheduler": ["scheduler", "--skip-serve-logs"],
        "dag-processor": ["dag-processor"],
        "api-server": ["api-server", "--host", "127.0.0.1"],
    }

    def start(self, *, timeout: float = 240) -> AirflowStandalone:
        migrate(self.env)
        for name, args in self.COMPONENTS.items():
            with open(self.home / f"{name}.out", "wb") as out:
                self.procs[name] = subprocess.Popen(
                    [AIRFLOW, *args, "--port", str(self.port)] if name == "api-server" else [AIRFLOW, *args],
                    env=self.env,
                    cwd=str(ROOT),
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    start_new_session=True,
                )
        wait_until(
            self._healthy,
            timeout=timeout,
            what="the Airflow api-server, scheduler and dag-processor",
            on_timeout=self.diagnostics,
        )
        return self

    def _healthy(self) -> bool:
        for name, proc in self.procs.items():
            if proc.poll() is not None:
                raise AssertionError(f"airflow {name} exited with {proc.returncode}\n{self.diagnostics()}")
        with urllib.request.urlopen(f"{self.base_url}/api/v2/monitor/health", timeout=5) as resp:
            health = json.load(resp)
        return (
            health.get("metadatabase", {}).get("status") == "healthy"
            and health.get("scheduler", {}).get("status") == "healthy"
            and (health.get("dag_processor") or {}).get("status") == "healthy"
        )

    def stop(self, *, grace: float = 20) -> None:
        """SIGTERM to each component's process group, then SIGKILL to every process left in their sessions.

        Task processes put themselves in their own process groups (the supervisor's
        `setpgid`) but stay in the session `start_new_session` created: the session, not
        the group, holds everything a component started (tasks, their Scrapy children).
        """
        sids = [proc.pid for proc in self.procs.values()]
        for sid in sids:
            _signal_group(sid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and self.leftovers(sids):
            time.sleep(0.5)
        for _ in range(10):
            left = self.leftovers(sids)
            if not left:
                break
            for pid in left:
                try:
                    os.kill(pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
            time.sleep(0.5)
        for proc in self.procs.values():
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
        self.session_ids = sids
        self.procs = {}

    @staticmethod
    def leftovers(sids: list[int]) -> list[int]:
        return [pid for sid in sids for pid in session_members(sid)]

    def __enter__(self) -> AirflowStandalone:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def diagnostics(self) -> str:
        parts = []
        for name in self.COMPONENTS:
            path = self.home / f"{name}.out"
            if path.exists():
                parts.append(f"--- airflow {name} output\n{path.read_text(errors='replace')[-5000:]}")
        return "\n".join(parts) + f"\n--- task logs\n{read_logs(self.home / 'logs')}"

    # -- REST API v2 (JWT from the simple auth manager's token endpoint)
    def token(self) -> str:
        if self._token is None:
            body = json.dumps({"username": self.username, "password": self.password}).encode()
            req = urllib.request.Request(
                f"{self.base_url}/auth/token", data=body, method="POST", headers={"Content-Type": "application/json"}
            )
            with urllib.request.urlopen(req, timeout=30) as resp:
                self._token = json.load(resp)["access_token"]
        return self._token

    def api(self, method: str, path: str, body: dict | None = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(
            f"{self.base_url}/api/v2{path}",
            data=data,
            method=method,
            headers={"Authorization": f"Bearer {self.token()}", "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                raw = resp.read()
        except urllib.error.HTTPError as exc:
            raise AssertionError(f"{method} {path}: HTTP {exc.code}: {exc.read()[:2000]!r}") from None
        return json.loads(raw) if raw else None

    def unpause(self, dag_id: str) -> dict:
        return self.api("PATCH", f"/dags/{dag_id}", {"is_paused": False})

    def trigger(self, dag_id: str, *, conf: dict | None = None, logical_date: str | None = None) -> dict:
        return self.api("POST", f"/dags/{dag_id}/dagRuns", {"logical_date": logical_date, "conf": conf or {}})

    def dag_runs(self, dag_id: str) -> list[dict]:
        return self.api("GET", f"/dags/{dag_id}/dagRuns?order_by=-run_after&limit=50")["dag_runs"]

    def task_instances(self, dag_id: str, run_id: str) -> list[dict]:
        quoted = urllib.request.quote(run_id, safe="")
        return self.api("GET", f"/dags/{dag_id}/dagRuns/{quoted}/taskInstances?limit=200")["task_instances"]

    def xcom_values(self, dag_id: str, run_id: str) -> list[Any]:
        """Every XCom value of a run, de-serialised as the API shows it."""
        quoted = urllib.request.quote(run_id, safe="")
        entries = self.api("GET", f"/dags/{dag_id}/dagRuns/{quoted}/taskInstances/~/xcomEntries?limit=500")
        values = []
        for entry in entries["xcom_entries"]:
            path = (
                f"/dags/{dag_id}/dagRuns/{quoted}/taskInstances/{entry['task_id']}/xcomEntries/"
                f"{urllib.request.quote(entry['key'], safe='')}?map_index={entry.get('map_index', -1)}"
            )
            values.append(self.api("GET", path).get("value"))
        return values

    def wait_for_run(self, dag_id: str, *, timeout: float, run_id: str | None = None) -> dict:
        """The first (or the named) run of `dag_id` to finish; AssertionError with logs unless it succeeded."""

        def finished() -> dict | None:
            for run in self.dag_runs(dag_id):
                if (run_id is None or run["dag_run_id"] == run_id) and run["state"] in ("success", "failed"):
                    return run
            return None

        run = wait_until(
            finished,
            timeout=timeout,
            interval=3,
            what=f"a finished run of {dag_id}",
            on_timeout=lambda: self._run_states(dag_id) + self.diagnostics(),
        )
        if run["state"] != "success":
            raise AssertionError(
                f"{dag_id} run {run['dag_run_id']} {run['state']}\n{self._run_states(dag_id)}{self.diagnostics()}"
            )
        return run

    def _run_states(self, dag_id: str) -> str:
        try:
            lines = []
            for run in self.dag_runs(dag_id):
                lines.append(f"run {run['dag_run_id']}: {run['state']}")
                for ti in self.task_instances(dag_id, run["dag_run_id"]):
                    lines.append(f"  {ti['task_id']}[{ti.get('map_index')}]: {ti['state']}")
            return "\n".join(lines) + "\n"
        except Exception as exc:  # diagnostics only: never hide the original failure
            return f"(task states unavailable: {exc!r})\n"


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def session_members(sid: int) -> list[int]:
    """Pids of live (non-zombie) processes in session `sid`, read from /proc."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()  # state ppid pgrp session ...
        if int(fields[3]) == sid and fields[0] != "Z":
            members.append(int(entry.name))
    return members
