"""Security of the bucket: the embedded server refuses anonymous and wrong-key access on its S3 port
and has no other door (filer, volume and master HTTP, gRPC), its files are private, and the
credentials never end up in logs, the Delta log and its commit info, rejects, reports or any other object we write."""

from __future__ import annotations

import logging
import socket
import ssl
import stat
import urllib.error
import urllib.request

import boto3
import pytest
from botocore import UNSIGNED
from botocore.config import Config
from botocore.exceptions import ClientError

from benchmarks.bench_store import generate_articles
from pipeline.core.bucket import Bucket, PreconditionFailed, StorageError
from pipeline.core.context import RunContext
from pipeline.core.layout import report_key
from pipeline.dataset.read import read_articles
from pipeline.dataset.rejects import write_rejects
from pipeline.stages.store import checkpoint, optimize_day, store_articles


def _http(method: str, url: str, body: bytes | None = None) -> int:
    req = urllib.request.Request(url, data=body, method=method)
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status
    except urllib.error.HTTPError as exc:
        return exc.code


def test_anonymous_http_is_refused(s3_settings, bucket):
    bucket.put("articles/secret.parquet", b"data")
    base = f"{s3_settings.endpoint_url}/{s3_settings.bucket}"
    assert _http("GET", f"{base}/articles/secret.parquet") == 403
    assert _http("GET", f"{base}?list-type=2") == 403
    assert _http("GET", s3_settings.endpoint_url + "/") == 403  # list buckets
    assert _http("PUT", f"{base}/anon.txt", b"x") == 403
    assert _http("DELETE", f"{base}/articles/secret.parquet") == 403
    assert bucket.get("articles/secret.parquet") == b"data" and not bucket.exists("anon.txt")


def test_unsigned_and_wrong_key_boto3_are_refused(s3_settings, bucket):
    bucket.put("k", b"v")
    unsigned = boto3.client(
        "s3",
        endpoint_url=s3_settings.endpoint_url,
        region_name="us-east-1",
        config=Config(signature_version=UNSIGNED, s3={"addressing_style": "path"}),
    )
    for call in (
        lambda: unsigned.get_object(Bucket=s3_settings.bucket, Key="k"),
        lambda: unsigned.put_object(Bucket=s3_settings.bucket, Key="u", Body=b"x"),
        lambda: unsigned.list_objects_v2(Bucket=s3_settings.bucket),
    ):
        with pytest.raises(ClientError) as err:
            call()
        assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    wrong = Bucket(s3_settings.model_copy(update={"secret_access_key": "x" * 40}))
    with pytest.raises(StorageError, match="secret key is wrong") as err:
        wrong.get("k")
    assert "x" * 40 not in str(err.value)
    with pytest.raises(StorageError, match="access key is not known"):
        Bucket(s3_settings.model_copy(update={"access_key_id": "AKIDNOTKNOWN"})).put("w", b"x")
    assert not bucket.exists("u") and not bucket.exists("w")


def test_credentials_never_written_or_logged(s3_settings, bucket, caplog):
    caplog.set_level(logging.DEBUG)  # everything, botocore's request logging included
    # spiders.settings quiets botocore to INFO when imported in this process (another test may have).
    caplog.set_level(logging.DEBUG, logger="botocore")
    ctx = RunContext("20261127T060000Z", s3=s3_settings)
    store_articles(ctx, generate_articles(30, words=10), max_rows_per_file=10)
    store_articles(ctx, generate_articles(30, seed=1, words=10), max_rows_per_file=10)  # re-run
    store_articles(RunContext("20261127T070000Z", s3=s3_settings), generate_articles(5, seed=2, words=5))
    optimize_day(s3_settings, "2026-11-27")
    checkpoint(s3_settings)  # a checkpoint copies the table's metadata and commit info into Parquet
    write_rejects(ctx, "extract", [{"url": "u", "stage": "extract", "reason": "no-article"}])
    # What a run report says about its storage: str(settings) (endpoint and bucket only).
    bucket.put_json(report_key("20261127T060000Z"), {"storage": str(s3_settings)})
    assert read_articles(settings=s3_settings).num_rows == 35
    with pytest.raises(StorageError) as err:
        Bucket(s3_settings.model_copy(update={"bucket": "missing-bucket"})).get("x")
    logging.getLogger("test").error("%s", err.value)

    secrets = {"secret key": s3_settings.secret_access_key, "access key": s3_settings.access_key_id}
    keys = bucket.list("")
    assert any(k.startswith("articles/_delta_log/") for k in keys) and any(k.startswith("rejects/") for k in keys)
    assert any(k.endswith(".checkpoint.parquet") for k in keys)
    for key in keys:
        body = bucket.get(key)
        for name, value in secrets.items():
            assert value.encode() not in body, f"{name} found in s3://{s3_settings.bucket}/{key}"
    log_text = caplog.text
    assert "botocore" in " ".join(r.name for r in caplog.records), "debug logging of botocore was captured"
    for name, value in secrets.items():
        assert value not in log_text, f"{name} found in the log"


# --------------------------------------------------------------------------- SeaweedFS's other ports


def _local(port: int, path: str) -> str:
    return f"http://127.0.0.1:{port}{path}"


def _form(body: bytes) -> tuple[bytes, dict]:
    """A multipart/form-data upload of one file, as `curl -F file=@x` sends it."""
    data = b'--XX\r\nContent-Disposition: form-data; name="file"; filename="x"\r\n\r\n' + body + b"\r\n--XX--\r\n"
    return data, {"Content-Type": "multipart/form-data; boundary=XX"}


def _http_h(method: str, url: str, body: bytes | None = None, headers: dict | None = None) -> int:
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status
    except urllib.error.HTTPError as exc:
        return exc.code


@pytest.fixture
def ports(s3_server, bucket) -> dict[str, int]:
    bucket.put("doc.txt", b"original")
    return s3_server.info().ports


def test_filer_http_refuses_anonymous_read_write_delete(s3_settings, bucket, ports):
    base = _local(ports["filer"], f"/buckets/{s3_settings.bucket}/")
    form, headers = _form(b"evil")
    answers = {
        "list": _http_h("GET", base, headers={"Accept": "application/json"}),
        "read": _http_h("GET", base + "doc.txt"),
        "write": _http_h("POST", base + "evil.txt", form, headers),
        "put": _http_h("PUT", base + "evil2.txt", b"evil"),
        "delete": _http_h("DELETE", base + "doc.txt"),
    }
    assert all(code >= 400 for code in answers.values()), answers
    assert bucket.get("doc.txt") == b"original"
    assert not bucket.exists("evil.txt") and not bucket.exists("evil2.txt")


def test_volume_http_refuses_unsigned_needles(ports):
    form, headers = _form(b"evil")
    volume = ports["volume"]
    answers = {
        "write": _http_h("POST", _local(volume, "/1,01637037d6"), form, headers),
        "read": _http_h("GET", _local(volume, "/1,01637037d6")),
        "delete": _http_h("DELETE", _local(volume, "/1,01637037d6")),
        "ui": _http_h("GET", _local(volume, "/ui/index.html")),
    }
    assert answers == {"write": 401, "read": 401, "delete": 401, "ui": 401}


def test_master_http_hands_out_nothing(ports):
    master = ports["master"]
    form, headers = _form(b"evil")
    answers = {
        # /dir/assign would hand a signed write token to anyone; /submit writes through the master.
        path: _http_h(
            "POST" if path == "/submit" else "GET",
            _local(master, path),
            *((form, headers) if path == "/submit" else ()),
        )
        for path in (
            "/dir/assign",
            "/submit",
            "/vol/grow?count=1",
            "/dir/lookup?volumeId=1",
            "/dir/status",
            "/col/delete?collection=x",
        )
    }
    assert all(code >= 400 for code in answers.values()), answers


def _tls_client(port: int, context: ssl.SSLContext) -> bytes:
    """Open TLS to a gRPC port and read; what the server sent (b"" when it hung up)."""
    raw = socket.create_connection(("127.0.0.1", port), timeout=10)
    with raw, context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
        # An HTTP/2 preface: an accepting gRPC server answers with a SETTINGS frame.
        tls.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00")
        return tls.recv(64)


@pytest.mark.parametrize("part", ["master_grpc", "volume_grpc", "filer_grpc", "s3_grpc"])
def test_grpc_ports_require_the_install_certificate(s3_server, part):
    port = s3_server.info().ports[part]
    tls_dir = s3_server.state_dir / "tls"
    stranger = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    stranger.check_hostname, stranger.verify_mode = False, ssl.CERT_NONE
    stranger.set_alpn_protocols(["h2"])
    with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
        if not _tls_client(port, stranger):  # TLS 1.3 reports a refused client certificate on read
            raise ConnectionError("closed")
    # Plain gRPC (no TLS), as `weed shell` without this install's security.toml speaks it, gets no HTTP/2.
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        raw.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00")
        try:
            answer = raw.recv(64)
        except ConnectionError:
            answer = b""
    assert not answer.startswith(b"\x00\x00"), "a plaintext HTTP/2 SETTINGS frame came back"
    # With the install's own certificate the same handshake succeeds: the refusals above are the check.
    member = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    member.check_hostname = False
    member.load_verify_locations(tls_dir / "ca.crt")
    member.load_cert_chain(tls_dir / "node.crt", tls_dir / "node.key")
    member.set_alpn_protocols(["h2"])
    assert _tls_client(port, member)


def test_s3_keeps_working_with_conditional_writes(bucket):
    etag = bucket.put("cond", b"1", if_none_match="*")
    with pytest.raises(PreconditionFailed):
        bucket.put("cond", b"2", if_none_match="*")
    with pytest.raises(PreconditionFailed):
        bucket.put("cond", b"2", if_match='"0123456789abcdef0123456789abcdef"')
    bucket.put("cond", b"3", if_match=etag)
    assert bucket.get("cond") == b"3"


def test_server_files_are_private(s3_server, bucket):
    bucket.put("private.txt", b"x")  # something on disk
    state = s3_server.state_dir
    for path in [state, *state.rglob("*")]:
        mode = path.lstat().st_mode
        if stat.S_ISSOCK(mode) or stat.S_ISLNK(mode):
            continue
        if path.is_dir():
            assert stat.S_IMODE(mode) == 0o700, path
        # weed writes its small volume-info files (.vif: collection and version, no object data) 644
        # whatever the umask; they sit in 700 folders, so no other user can reach them.
        elif path.suffix != ".vif":
            assert stat.S_IMODE(mode) == 0o600, path
    for name in ("security.toml", "server.json", "identities.json", "tls/node.key"):
        assert stat.S_IMODE((state / name).stat().st_mode) == 0o600
