"""S3 failures against real SeaweedFS: server stopped mid-store, 503s, lost responses, bad credentials,
a missing bucket, hostile names. Nothing partial is ever visible; no row is lost or doubled."""

from __future__ import annotations

import http.client
import random
import re
import threading
import time
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

import pytest
from botocore.config import Config

from benchmarks.bench_store import generate_articles
from pipeline.core.bucket import RETRY_CONFIG, Bucket, StorageError, client
from pipeline.core.config import S3Settings
from pipeline.core.context import RunContext
from pipeline.core.layout import run_articles_prefix, run_manifest_key
from pipeline.dataset.manifest import committed_runs
from pipeline.dataset.read import read_articles
from pipeline.dataset.rejects import write_rejects
from pipeline.runtime.s3server import EmbeddedS3
from pipeline.stages.store import store_articles

RUN = "20261127T060000Z"


def _ids(settings: S3Settings, **kw) -> list[str]:
    return sorted(read_articles(settings=settings, columns=["article_id"], **kw).column("article_id").to_pylist())


def _want(recs) -> list[str]:
    return sorted(r["article_id"] for r in recs)


# --------------------------------------------------------------------------- server stopped mid-store


@pytest.fixture
def own_server(tmp_path):
    """A SeaweedFS of this test's own: stopping it must not disturb the session server."""
    server = EmbeddedS3(tmp_path / "s3")
    info = server.up("news")
    settings = S3Settings(
        endpoint_url=info.endpoint_url,
        access_key_id=info.access_key_id,
        secret_access_key=info.secret_access_key,
        bucket="news",
    )
    try:
        yield server, settings
    finally:
        server.down()


def test_server_stopped_mid_store_then_retry(own_server):
    server, settings = own_server
    bucket = Bucket(settings)
    old = generate_articles(60, seed=1, words=10)
    store_articles(RunContext(RUN, s3=settings), old, max_rows_per_file=25)
    new = generate_articles(200, seed=2, words=10)
    prefix = run_articles_prefix(RUN)
    before = set(bucket.list(prefix))

    def records_then_outage():
        for i, rec in enumerate(new):
            if i == 120:
                # Stop the server once the new attempt's first part file has landed.
                deadline = time.monotonic() + 30
                while not (set(bucket.list(prefix)) - before) and time.monotonic() < deadline:
                    time.sleep(0.05)
                assert set(bucket.list(prefix)) - before, "no part file written before the outage"
                server.down()
            yield rec

    with pytest.raises(StorageError) as err:
        store_articles(RunContext(RUN, s3=settings), records_then_outage(), max_rows_per_file=25)
    message = str(err.value)
    assert settings.endpoint_url in message and "'news'" in message
    assert settings.secret_access_key not in message

    server.up("news")  # same ports, identity and data; returns once a write succeeds again
    # The failed re-run is invisible: readers still get exactly the old attempt's rows.
    assert _ids(settings) == _want(old)
    assert [m["rows"] for m in committed_runs(settings)] == [60]
    # Its orphans (if any survived) are not listed by any manifest; the retry removes them.
    assert store_articles(RunContext(RUN, s3=settings), new, max_rows_per_file=25)
    assert _ids(settings) == _want(new)
    manifest = bucket.get_json(run_manifest_key(RUN))
    assert sorted(bucket.list(prefix)) == sorted(f["key"] for f in manifest["files"])
    assert manifest["rows"] == 200


def test_first_store_fails_when_server_is_down(own_server):
    server, settings = own_server
    server.down()
    with pytest.raises(StorageError, match=re.escape(settings.endpoint_url)) as err:
        store_articles(RunContext(RUN, s3=settings), generate_articles(5, words=5))
    assert "cannot connect" in str(err.value)
    server.up("news")
    assert committed_runs(settings) == [] and _ids(settings) == []


# --------------------------------------------------------------------------- a faulty proxy in front of S3


class FaultProxy:
    """HTTP proxy to SeaweedFS that injects faults for requests whose method+path match `pattern`.

    mode "status": answer `status` (S3 XML error) to the first `times` matching requests.
    mode "lose":   forward the first `times` matching requests, then stall and drop the
                   response (the write landed; the client sees a timeout).
    per_path: count `times` for each distinct method+path instead of overall.
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
    ):
        self.upstream = urlsplit(upstream)
        self.pattern, self.times, self.mode, self.status, self.stall = re.compile(pattern), times, mode, status, stall
        self.seen: list[str] = []
        self.injected = 0
        self.per_path = per_path
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
                conn.request(self.command, self.path, body=body, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
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
        self.server.shutdown()
        self.server.server_close()

    def count(self, pattern: str) -> int:
        return sum(1 for line in self.seen if re.search(pattern, line))


def _ctx_via(proxy: FaultProxy, settings: S3Settings, *, read_timeout: float = 60) -> RunContext:
    via = settings.model_copy(update={"endpoint_url": proxy.url})
    ctx = RunContext(RUN, s3=via)
    # The production retry policy, with a short read timeout so a stalled request fails fast.
    ctx.bucket = Bucket(via, s3_client=client(via, config=RETRY_CONFIG.merge(Config(read_timeout=read_timeout))))
    return ctx


def test_503s_are_retried_then_succeed(s3_settings):
    recs = generate_articles(30, words=10)
    with FaultProxy(s3_settings.endpoint_url, pattern=r"^PUT .*part-", times=3, status=503, per_path=True) as proxy:
        store_articles(_ctx_via(proxy, s3_settings), recs, max_rows_per_file=10)
        parts = sorted({line for line in proxy.seen if "part-" in line})
        assert len(parts) == 3
        # botocore's standard mode retried each PUT: 3 injected 503s + 1 success.
        assert proxy.injected == 9 and all(proxy.seen.count(p) == 4 for p in parts)
    assert _ids(s3_settings) == _want(recs)


def test_500s_on_the_commit_are_retried(s3_settings):
    recs = generate_articles(10, words=10)
    with FaultProxy(s3_settings.endpoint_url, pattern=r"^PUT .*_manifests/", times=2, status=500) as proxy:
        store_articles(_ctx_via(proxy, s3_settings), recs)
        assert proxy.count(r"^PUT .*_manifests/") == 3
    assert _ids(s3_settings) == _want(recs)


def test_persistent_503_is_a_clear_storage_error(s3_settings, bucket):
    with FaultProxy(s3_settings.endpoint_url, pattern=r"^PUT .*part-", times=10_000) as proxy:
        with pytest.raises(StorageError) as err:
            store_articles(_ctx_via(proxy, s3_settings), generate_articles(10, words=5))
        # Config's `max_attempts` counts retries (botocore rewrites it in place to total_max_attempts = n + 1).
        retries = RETRY_CONFIG.retries
        total = retries.get("total_max_attempts") or retries["max_attempts"] + 1
        assert proxy.count(r"^PUT .*part-") == total == 6
    message = str(err.value)
    assert proxy.url in message and "ServiceUnavailable" in message and "put articles/" in message
    assert s3_settings.secret_access_key not in message
    assert committed_runs(s3_settings) == [] and bucket.list("articles/") == []


def test_lost_response_on_part_and_commit_is_idempotent(s3_settings, bucket, caplog):
    """Requests that land but time out: the retried part PUT overwrites the same bytes; the retried
    conditional commit gets 412 and recognises its own attempt instead of failing."""
    caplog.set_level("INFO", logger="pipeline.stages.store")
    recs = generate_articles(20, words=10)
    with FaultProxy(
        s3_settings.endpoint_url, pattern=r"^PUT .*(part-|_manifests/)", times=1, mode="lose", stall=2.5, per_path=True
    ) as proxy:
        # The first try of the part PUT and of the manifest PUT each land, then time out.
        key = store_articles(_ctx_via(proxy, s3_settings, read_timeout=1), recs, max_rows_per_file=100)
        assert proxy.injected == 2
        assert proxy.count(r"^PUT .*part-") == 2
        assert proxy.count(r"^PUT .*_manifests/") == 2  # the commit landed, its response was lost, retried
    assert "landed on an earlier try" in caplog.text  # the retry's 412 was recognised as our own commit
    assert bucket.get_json(key)["rows"] == 20
    assert _ids(s3_settings) == _want(recs)


def test_stalled_server_gives_a_clear_error(s3_settings):
    with FaultProxy(
        s3_settings.endpoint_url, pattern=r"^GET .*_manifests/", times=10_000, mode="lose", stall=1.5
    ) as proxy:
        with pytest.raises(StorageError, match="Read timeout") as err:
            store_articles(_ctx_via(proxy, s3_settings, read_timeout=0.5), generate_articles(3, words=5))
        assert proxy.url in str(err.value)
    assert committed_runs(s3_settings) == []


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
    with pytest.raises(StorageError, match=re.escape(s3_settings.endpoint_url)):
        read_articles(settings=bad)
    assert committed_runs(s3_settings) == []


def test_missing_bucket(s3_settings):
    missing = s3_settings.model_copy(update={"bucket": "no-such-bucket-here"})
    with pytest.raises(StorageError, match="bucket does not exist") as err:
        store_articles(RunContext(RUN, s3=missing), generate_articles(3, words=5))
    assert err.value.terminal and "'no-such-bucket-here'" in str(err.value)
    with pytest.raises(StorageError, match="no-such-bucket-here"):
        read_articles(settings=missing)


# --------------------------------------------------------------------------- hostile names


@pytest.mark.parametrize(
    "hostile", ["../../etc", "..", "/abs/path", "a" * 5000, "Zürich-日本語-\u202e", "x/../../../_manifests/run=evil"]
)
def test_hostile_names_stay_inside_their_prefix(s3_settings, bucket, hostile):
    with pytest.raises(ValueError, match="bad run id"):
        RunContext(hostile, s3=s3_settings)
    ctx = RunContext(RUN + "..x", s3=s3_settings)  # a legal suffix with dots
    recs = generate_articles(4, words=5)
    for r in recs:
        r["source"] = hostile
    mkey = store_articles(ctx, recs)
    rkey = write_rejects(ctx, hostile, [{"url": "u", "stage": "extract", "reason": hostile}])
    keys = bucket.list("")
    for key in keys:
        assert ".." not in key.split("/") and not key.startswith("/") and len(key) < 400
    assert rkey.startswith("rejects/dt=2026-11-27/run=") and rkey.count("/") == 3
    assert mkey.startswith("_manifests/run=") and mkey.count("/") == 1
    assert all(k.startswith(("articles/dt=2026-11-27/run=", "_manifests/run=", "rejects/dt=2026-11-27/")) for k in keys)
    # The hostile value is data, kept verbatim, and filters work on it.
    got = read_articles(source=hostile, settings=s3_settings, columns=["source"])
    assert got.column("source").to_pylist() == [hostile] * 4


# --------------------------------------------------------------------------- multipart uploads left open


def _open_uploads(bucket: Bucket) -> list[dict]:
    return bucket.client.list_multipart_uploads(Bucket=bucket.name).get("Uploads", [])


def _big_records(n: int, seed: int = 0) -> list[dict]:
    """Articles of ~12 KB of incompressible text each: a few hundred rows outgrow a 5 MiB part."""
    rng = random.Random(seed)
    recs = generate_articles(n, seed=seed, words=5)
    for r in recs:
        r["text"] = rng.randbytes(6_000).hex()
    return recs


@pytest.fixture
def small_parts(monkeypatch):
    import pipeline.stages.store as store

    monkeypatch.setattr(store, "PART_BYTES", 5 * 1024 * 1024)  # the smallest part S3 accepts
    monkeypatch.setattr(store, "ENCODERS", 1)
    monkeypatch.setattr(store, "ROW_GROUP_ROWS", 100)  # rows reach the encoder in small batches


def test_caller_failure_mid_upload_aborts_the_multipart_upload(s3_settings, bucket, small_parts):
    recs = _big_records(1200)

    def records_then_crash():
        for i, rec in enumerate(recs):
            if i == 1100:
                # Fail only once a multipart upload is open on the server: a real mid-upload failure.
                deadline = time.monotonic() + 30
                while not _open_uploads(bucket) and time.monotonic() < deadline:
                    time.sleep(0.05)
                assert _open_uploads(bucket), "no multipart upload open before the injected failure"
                raise RuntimeError("injected failure")
            yield rec

    with pytest.raises(RuntimeError, match="injected failure"):
        store_articles(RunContext(RUN, s3=s3_settings), records_then_crash(), max_rows_per_file=5000)
    assert _open_uploads(bucket) == []
    assert bucket.list("articles/") == [] and committed_runs(s3_settings) == []


def test_failed_part_upload_aborts_the_multipart_upload(s3_settings, bucket, small_parts):
    # Part 2 of the file fails every time (retries included); part 1 has landed by then.
    with FaultProxy(s3_settings.endpoint_url, pattern=r"^PUT .*partNumber=2\b", times=10_000) as proxy:
        with pytest.raises(StorageError, match="upload part 2"):
            store_articles(_ctx_via(proxy, s3_settings), _big_records(1200), max_rows_per_file=5000)
        assert proxy.count(r"^PUT .*partNumber=1\b") >= 1 and proxy.count(r"^POST .*\?uploads\b") == 1
    assert _open_uploads(bucket) == []
    assert bucket.list("articles/") == [] and committed_runs(s3_settings) == []


def test_maintenance_aborts_only_stale_uploads(s3_settings, bucket):
    from pipeline.flows.maintenance import abort_stale_uploads

    stale = bucket.client.create_multipart_upload(Bucket=bucket.name, Key="articles/stale.parquet")["UploadId"]
    bucket.client.upload_part(Bucket=bucket.name, Key="articles/stale.parquet", UploadId=stale, PartNumber=1, Body=b"x")
    started = {u["UploadId"]: u["Initiated"] for u in _open_uploads(bucket)}[stale]
    time.sleep(1.1)  # so the two uploads' start times differ (S3 reports whole seconds)
    fresh = bucket.client.create_multipart_upload(Bucket=bucket.name, Key="articles/fresh.parquet")["UploadId"]
    # "Now" is a day after the stale upload started, and less than a day after the fresh one.
    as_of = started + timedelta(days=1)
    assert abort_stale_uploads(bucket, as_of, max_age=timedelta(days=1)) == ["articles/stale.parquet"]
    assert [u["UploadId"] for u in _open_uploads(bucket)] == [fresh]
    assert abort_stale_uploads(bucket, as_of, max_age=timedelta(days=1)) == []  # idempotent
    # With the default age of a day, a run at the real time leaves the just-started upload alone.
    assert abort_stale_uploads(bucket, datetime.now(timezone.utc)) == []
    assert [u["UploadId"] for u in _open_uploads(bucket)] == [fresh]


def test_upload_whose_start_answer_was_lost_is_aborted_too(s3_settings, bucket, small_parts):
    # Two proxies in a row: the first loses the answer to the first "start upload" (the server opened
    # one; the client retries and gets a second), the second fails every part 2.
    with FaultProxy(s3_settings.endpoint_url, pattern=r"^PUT .*partNumber=2\b", times=10_000) as failing:
        with FaultProxy(failing.url, pattern=r"^POST .*\?uploads\b", times=1, mode="lose") as losing:
            ctx = _ctx_via(losing, s3_settings, read_timeout=1)
            with pytest.raises(StorageError, match="upload part 2"):
                store_articles(ctx, _big_records(1200), max_rows_per_file=5000)
        assert failing.count(r"^POST .*\?uploads\b") == 2, "the start was retried after the lost answer"
    assert _open_uploads(bucket) == []
    assert bucket.list("articles/") == [] and committed_runs(s3_settings) == []
