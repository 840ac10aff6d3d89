"""S3 failures against real SeaweedFS, for the one commit of a run on the Delta table: the server
stopped mid-commit, a store killed between its data files and its log entry, 503s, lost responses,
wrong credentials, a missing bucket, hostile names. Nothing partial is ever visible (the log entry is
the only commit point), a retry completes, VACUUM removes what a dead attempt left, and no row is
ever lost or doubled."""

from __future__ import annotations

import http.client
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

import pytest

from benchmarks.bench_store import generate_articles
from pipeline.core.bucket import Bucket, StorageError
from pipeline.core.config import S3Settings
from pipeline.core.context import RunContext
from pipeline.core.paths import ROOT
from pipeline.dataset import delta
from pipeline.dataset.read import read_articles, table_version
from pipeline.dataset.rejects import write_rejects
from pipeline.runtime.s3server import EmbeddedS3
from pipeline.stages.store import store_articles

RUN = "20261127T060000Z"
DAY = "dt=2026-11-27/"
#: The request that commits a table version: the PUT of its log entry.
COMMIT = r"^PUT .*/articles/_delta_log/\d{20}\.json"
#: The PUT of a data file of the table.
DATA = r"^PUT .*/articles/dt(=|%3D)[^/]+/part-[^?]*\.parquet"


def _ids(settings: S3Settings, **kw) -> list[str]:
    return sorted(read_articles(settings=settings, columns=["article_id"], **kw).column("article_id").to_pylist())


def _want(recs) -> list[str]:
    return sorted(r["article_id"] for r in recs)


def _parquet(bucket: Bucket) -> set[str]:
    """Every Parquet file in the table's folder (data and change-feed files), listed by a version or not."""
    return {k for k in bucket.list("articles/") if k.endswith(".parquet") and "/_delta_log/" not in k}


def _data_files(bucket: Bucket) -> set[str]:
    """The data files in the table's folder (not the change feed's `_change_data/`), listed or not."""
    return {k for k in _parquet(bucket) if not k.startswith("articles/_")}


def _listed(settings: S3Settings) -> set[str]:
    """The data files the latest version lists."""
    table = delta.open_table(settings)
    return set() if table is None else {"articles/" + u.split("/articles/", 1)[1] for u in table.file_uris()}


def _vacuum_now(settings: S3Settings, monkeypatch) -> list[str]:
    """VACUUM as the maintenance DAG runs it, with the 7-day retention shrunk to 0: the test cannot wait a week."""
    monkeypatch.setattr(delta, "MIN_RETENTION", timedelta(0))
    return delta.vacuum(settings, retention=timedelta(0))


# --------------------------------------------------------------------------- a faulty proxy in front of S3


class FaultProxy:
    """HTTP proxy to SeaweedFS that injects faults for requests whose method+path match `pattern`.

    mode "status": answer `status` (S3 XML error) to the first `times` matching requests.
    mode "lose":   forward the first `times` matching requests, then stall and drop the
                   response (the write landed; the client sees a timeout).
    mode "hold":   never answer the first `times` matching requests (until the proxy closes).
    per_path: count `times` for each distinct method+path instead of overall.
    before: called with the request line of each injected request, before the fault.
    """

    def __init__(
        self,
        upstream: str,
        *,
        pattern: str,
        times: int,
        mode: str = "status",
        status: int = 503,
        stall: float = 2.5,
        per_path: bool = False,
        before: Callable[[str], None] | None = None,
    ):
        self.upstream = urlsplit(upstream)
        self.pattern, self.times, self.mode, self.status, self.stall = re.compile(pattern), times, mode, status, stall
        self.seen: list[str] = []
        self.injected = 0
        self.per_path, self.before = per_path, before
        self.released = threading.Event()
        self._per_path: dict[str, int] = {}
        self._lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep pytest output quiet
                pass

            def _handle(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                line = f"{self.command} {self.path}"
                with proxy._lock:
                    proxy.seen.append(line)
                    done = proxy._per_path.get(line, 0) if proxy.per_path else proxy.injected
                    inject = bool(proxy.pattern.search(line)) and done < proxy.times
                    if inject:
                        proxy.injected += 1
                        proxy._per_path[line] = proxy._per_path.get(line, 0) + 1
                if inject and proxy.before is not None:
                    proxy.before(line)
                if inject and proxy.mode == "hold":
                    proxy.released.wait()
                    self.close_connection = True
                    return
                if inject and proxy.mode == "status":
                    code = {503: "ServiceUnavailable", 500: "InternalError"}.get(proxy.status, "InternalError")
                    payload = f"<Error><Code>{code}</Code><Message>injected fault</Message></Error>".encode()
                    self.send_response(proxy.status)
                    self.send_header("Content-Type", "application/xml")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                    return
                conn = http.client.HTTPConnection(proxy.upstream.hostname, proxy.upstream.port, timeout=60)
                headers = {k: v for k, v in self.headers.items() if k.lower() != "connection"}
                try:
                    conn.request(self.command, self.path, body=body, headers=headers)
                    resp = conn.getresponse()
                    data = resp.read()
                except OSError:  # the server is down: the client sees the connection drop
                    self.close_connection = True
                    return
                finally:
                    conn.close()
                if inject:  # mode "lose": the server did the work; the client never hears back
                    time.sleep(proxy.stall)
                    self.close_connection = True
                    return
                self.send_response(resp.status)
                for k, v in resp.getheaders():
                    if k.lower() not in ("transfer-encoding", "connection", "content-length"):
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _handle

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> FaultProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.released.set()
        self.server.shutdown()
        self.server.server_close()

    def count(self, pattern: str) -> int:
        return sum(1 for line in self.seen if re.search(pattern, line))


def _via(proxy: FaultProxy, settings: S3Settings) -> S3Settings:
    return settings.model_copy(update={"endpoint_url": proxy.url})


# --------------------------------------------------------------------------- the server stopped mid-commit


@pytest.fixture
def own_server(tmp_path):
    """A SeaweedFS of this test's own: stopping it must not disturb the session server."""
    server = EmbeddedS3(tmp_path / "s3")
    info = server.up("news")
    settings = info.settings("news")
    try:
        yield server, settings
    finally:
        server.down()


def test_server_stopped_mid_commit_then_retry(own_server, monkeypatch):
    server, settings = own_server
    bucket = Bucket(settings)
    old = generate_articles(60, seed=1, words=10)
    store_articles(RunContext(RUN, s3=settings), old)
    version = table_version(settings)
    before = _parquet(bucket)
    new = generate_articles(200, seed=2, words=10)
    # The server stops when the re-run's data files have landed and its log entry is on its way.
    with FaultProxy(settings.endpoint_url, pattern=COMMIT, times=1, before=lambda _: server.down()) as proxy:
        with pytest.raises(StorageError) as err:
            store_articles(RunContext(RUN, s3=_via(proxy, settings)), new)
        assert proxy.count(DATA) >= 1 and proxy.injected == 1
    message = str(err.value)
    assert proxy.url in message and f"s3://{settings.bucket}/articles" in message
    assert settings.secret_access_key not in message

    server.up("news")  # same ports, identity and data
    # Nothing of the failed re-run is visible: same version, exactly the old rows; its files are orphans.
    assert table_version(settings) == version and _ids(settings) == _want(old)
    orphans = _parquet(bucket) - before
    assert orphans and not orphans & _listed(settings), "the re-run's files landed before the outage, unlisted"
    # The retry completes and replaces the run; VACUUM removes the dead attempt's files and the replaced ones.
    store_articles(RunContext(RUN, s3=settings), new)
    assert table_version(settings) == version + 1 and _ids(settings) == _want(new)
    _vacuum_now(settings, monkeypatch)
    assert not orphans & _parquet(bucket) and _data_files(bucket) == _listed(settings)
    assert _ids(settings) == _want(new)


def test_first_store_fails_when_server_is_down(own_server):
    server, settings = own_server
    server.down()
    with pytest.raises(StorageError, match=re.escape(settings.endpoint_url)):
        store_articles(RunContext(RUN, s3=settings), generate_articles(5, words=5))
    server.up("news")
    assert table_version(settings) is None and _ids(settings) == []


# --------------------------------------------------------------------------- kill -9 before the log entry

KILLED_STORE = """
import sys
from benchmarks.bench_store import generate_articles
from pipeline.core.config import S3Settings
from pipeline.core.context import RunContext
from pipeline.stages.store import store_articles

settings = S3Settings.from_env().model_copy(update={"endpoint_url": sys.argv[1], "bucket": sys.argv[2]})
store_articles(RunContext(sys.argv[3], s3=settings), generate_articles(300, seed=5, words=10))
print("committed", flush=True)
"""


def test_kill_9_between_data_files_and_log_commit(s3_settings, bucket, monkeypatch):
    old = generate_articles(40, seed=1, words=10)
    store_articles(RunContext(RUN, s3=s3_settings), old)
    version = table_version(s3_settings)
    before = _parquet(bucket)
    arrived = threading.Event()
    with FaultProxy(
        s3_settings.endpoint_url, pattern=COMMIT, times=1, mode="hold", before=lambda _: arrived.set()
    ) as proxy:
        child = subprocess.Popen(
            [sys.executable, "-c", KILLED_STORE, proxy.url, s3_settings.bucket, RUN],
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        try:
            assert arrived.wait(120), "the child never reached its commit"
            os.kill(child.pid, signal.SIGKILL)  # data files written, the log entry never sent on
        finally:
            child.wait(30)
        assert child.returncode == -signal.SIGKILL
        assert proxy.count(DATA) >= 1
    # Readers of any client see the old version; the dead attempt's files are in the bucket, unlisted.
    assert table_version(s3_settings) == version and _ids(s3_settings) == _want(old)
    orphans = _parquet(bucket) - before
    assert orphans and not orphans & _listed(s3_settings)
    _vacuum_now(s3_settings, monkeypatch)
    assert _parquet(bucket) == before and _data_files(bucket) == _listed(s3_settings)
    assert _ids(s3_settings) == _want(old)
    # The rerun (what the DAG's retry does) completes.
    store_articles(RunContext(RUN, s3=s3_settings), generate_articles(300, seed=5, words=10))
    assert _ids(s3_settings) == _want(generate_articles(300, seed=5, words=10))


# --------------------------------------------------------------------------- transient faults


def test_503s_on_data_files_and_commit_are_retried(s3_settings):
    recs = generate_articles(30, words=10)
    pattern = f"({DATA})|({COMMIT})"
    with FaultProxy(s3_settings.endpoint_url, pattern=pattern, times=2, status=503, per_path=True) as proxy:
        store_articles(RunContext(RUN, s3=_via(proxy, s3_settings)), recs)
        assert proxy.count(DATA) >= 3 and proxy.count(COMMIT) >= 3  # 2 injected 503s, then the request landed
    assert _ids(s3_settings) == _want(recs) and table_version(s3_settings) == 1


def test_503s_on_bucket_writes_are_retried(s3_settings, bucket):
    """The project's own objects (rejects, state, reports) go through boto3 with the retry policy."""
    with FaultProxy(s3_settings.endpoint_url, pattern=r"^PUT .*rejects/", times=3, status=503) as proxy:
        ctx = RunContext(RUN, s3=_via(proxy, s3_settings))
        key = write_rejects(ctx, "extract", [{"url": "u", "stage": "extract", "reason": "no-article"}])
        assert proxy.injected == 3 and proxy.count(r"^PUT .*rejects/") == 4
    assert bucket.exists(key)


def test_persistent_503_is_a_clear_storage_error(s3_settings, bucket):
    with FaultProxy(s3_settings.endpoint_url, pattern=DATA, times=10_000) as proxy:
        with pytest.raises(StorageError) as err:
            store_articles(RunContext(RUN, s3=_via(proxy, s3_settings)), generate_articles(10, words=5))
        assert proxy.count(DATA) > 1  # retried before giving up
    message = str(err.value)
    assert proxy.url in message and "commit run" in message
    assert s3_settings.secret_access_key not in message
    assert _ids(s3_settings) == [] and _data_files(bucket) == set()


def test_lost_commit_response_never_doubles_a_row(s3_settings):
    """The log entry lands but its answer is lost: whatever the retry says, the table holds the rows once."""
    old = generate_articles(10, seed=1, words=10)
    store_articles(RunContext(RUN, s3=s3_settings), old)
    recs = generate_articles(20, seed=2, words=10)
    with FaultProxy(s3_settings.endpoint_url, pattern=COMMIT, times=1, mode="lose", stall=1.0) as proxy:
        try:
            store_articles(RunContext(RUN, s3=_via(proxy, s3_settings)), recs)
        except StorageError as exc:  # a retry that finds its own entry may report a conflict: never a double
            assert exc.code == "CommitFailed", exc
        assert proxy.injected == 1
    got = _ids(s3_settings)
    assert got in (_want(recs), _want(old)) and len(got) == len(set(got))
    store_articles(RunContext(RUN, s3=s3_settings), recs)  # the task's retry
    assert _ids(s3_settings) == _want(recs)


# --------------------------------------------------------------------------- credentials and buckets


@pytest.mark.parametrize("which", ["secret", "key"])
def test_wrong_credentials(s3_settings, which):
    bad_secret = "WRONG-secret-0123456789abcdefghijkl"
    bad = s3_settings.model_copy(
        update={"secret_access_key": bad_secret} if which == "secret" else {"access_key_id": "NOSUCHKEY0000"}
    )
    with pytest.raises(StorageError) as err:
        store_articles(RunContext(RUN, s3=bad), generate_articles(3, words=5))
    message = str(err.value)
    assert err.value.terminal and s3_settings.endpoint_url in message
    assert ("secret key is wrong" if which == "secret" else "access key is not known") in message
    for secret in (bad_secret, s3_settings.secret_access_key):
        assert secret not in message and secret not in repr(err.value)
    with pytest.raises(StorageError, match=re.escape(s3_settings.endpoint_url)) as err:
        read_articles(settings=bad)
    assert err.value.terminal and bad_secret not in str(err.value)
    assert table_version(s3_settings) is None


def test_missing_bucket(s3_settings):
    missing = s3_settings.model_copy(update={"bucket": "no-such-bucket-here"})
    with pytest.raises(StorageError, match="no-such-bucket-here") as err:
        store_articles(RunContext(RUN, s3=missing), generate_articles(3, words=5))
    assert "bucket does not exist" in str(err.value) or "NoSuchBucket" in str(err.value)
    with pytest.raises(StorageError, match="no-such-bucket-here"):
        read_articles(settings=missing)


# --------------------------------------------------------------------------- hostile names


@pytest.mark.parametrize(
    "hostile", ["../../etc", "..", "/abs/path", "a" * 5000, "Zürich-日本語-\u202e", "x/../../../_delta_log/evil"]
)
def test_hostile_names_stay_inside_their_prefix(s3_settings, bucket, hostile):
    with pytest.raises(ValueError, match="bad run id"):
        RunContext(hostile, s3=s3_settings)
    ctx = RunContext(RUN + "..x", s3=s3_settings)  # a legal suffix with dots
    recs = generate_articles(4, words=5)
    for r in recs:
        r["source"] = hostile
    commit = store_articles(ctx, recs)
    rkey = write_rejects(ctx, hostile, [{"url": "u", "stage": "extract", "reason": hostile}])
    keys = bucket.list("")
    for key in keys:
        assert ".." not in key.split("/") and not key.startswith("/") and len(key) < 400
    assert rkey.startswith("rejects/dt=2026-11-27/run=") and rkey.count("/") == 3
    assert commit.startswith("articles/_delta_log/") and commit.count("/") == 2
    assert all(
        k.startswith(("articles/dt=2026-11-27/part-", "articles/_delta_log/", "rejects/dt=2026-11-27/")) for k in keys
    )
    # The hostile value is data, kept verbatim, and filters work on it.
    got = read_articles(source=hostile, settings=s3_settings, columns=["source"])
    assert got.column("source").to_pylist() == [hostile] * 4
