"""Security of the bucket: the embedded server refuses anonymous and wrong-key access, and the
credentials never end up in logs, manifests, rejects, reports or any other object we write."""

from __future__ import annotations

import logging
import urllib.error
import urllib.request

import boto3
import pytest
from botocore import UNSIGNED
from botocore.config import Config
from botocore.exceptions import ClientError

from benchmarks.bench_store import generate_articles
from pipeline.core.bucket import Bucket, StorageError
from pipeline.core.context import RunContext
from pipeline.core.layout import report_key
from pipeline.dataset.read import read_articles
from pipeline.dataset.rejects import write_rejects
from pipeline.stages.store import compact, store_articles


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
    compact(s3_settings, "2026-11-27")
    write_rejects(ctx, "extract", [{"url": "u", "stage": "extract", "reason": "no-article"}])
    # What a run report says about its storage: str(settings) (endpoint and bucket only).
    bucket.put_json(report_key("20261127T060000Z"), {"storage": str(s3_settings)})
    assert read_articles(settings=s3_settings).num_rows == 35
    with pytest.raises(StorageError) as err:
        Bucket(s3_settings.model_copy(update={"bucket": "missing-bucket"})).get("x")
    logging.getLogger("test").error("%s", err.value)

    secrets = {"secret key": s3_settings.secret_access_key, "access key": s3_settings.access_key_id}
    keys = bucket.list("")
    assert any(k.startswith("_manifests/") for k in keys) and any(k.startswith("rejects/") for k in keys)
    for key in keys:
        body = bucket.get(key)
        for name, value in secrets.items():
            assert value.encode() not in body, f"{name} found in s3://{s3_settings.bucket}/{key}"
    log_text = caplog.text
    assert "botocore" in " ".join(r.name for r in caplog.records), "debug logging of botocore was captured"
    for name, value in secrets.items():
        assert value not in log_text, f"{name} found in the log"
