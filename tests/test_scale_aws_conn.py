"""The bucket's settings from the amazon provider's `aws` Connection (AwsBaseHook / S3Hook session)."""

from __future__ import annotations

import json

import pytest

from pipeline.airflow_tasks import s3_settings_from_connection
from pipeline.runtime.airflow_conn import amazon_provider_available

pytestmark = pytest.mark.skipif(not amazon_provider_available(), reason="apache-airflow-providers-amazon missing")


def _conn(monkeypatch, conn_id: str, **fields) -> None:
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(fields))


@pytest.fixture(autouse=True)
def _no_aws_env(monkeypatch):
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_DEFAULT_REGION", "AWS_REGION"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:1")
    monkeypatch.setenv("NEWS_INGEST_BUCKET", "from-env")


def test_keys_endpoint_region_and_bucket_come_from_the_aws_connection(monkeypatch):
    _conn(monkeypatch, "c1", conn_type="aws", login="AKIDEXAMPLE", password="secret-example",
          extra={"endpoint_url": "http://127.0.0.1:9000", "region_name": "eu-west-3", "bucket": "newsroom"})  # fmt: skip
    s = s3_settings_from_connection("c1")
    assert (s.endpoint_url, s.access_key_id, s.secret_access_key) == (
        "http://127.0.0.1:9000",
        "AKIDEXAMPLE",
        "secret-example",
    )
    assert (s.bucket, s.region, s.session_token) == ("newsroom", "eu-west-3", None)


def test_the_s3_service_endpoint_and_a_session_token_are_read_by_the_provider(monkeypatch):
    # Both are provider conventions our own field-by-field reading never knew.
    _conn(monkeypatch, "c2", conn_type="aws", login="AKIDEXAMPLE", password="secret-example",
          extra={"service_config": {"s3": {"endpoint_url": "http://s3.internal:8333"}},
                 "aws_session_token": "token-example"})  # fmt: skip
    s = s3_settings_from_connection("c2")
    assert s.endpoint_url == "http://s3.internal:8333"
    assert s.session_token == "token-example"
    assert s.as_env()["AWS_SESSION_TOKEN"] == "token-example"
    # Not named by the Connection: the environment's bucket.
    assert s.bucket == "from-env"


def test_without_keys_boto3s_chain_gives_them(monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDFROMENV")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret-from-env")
    _conn(monkeypatch, "c3", conn_type="aws", extra={"bucket": "b3"})
    s = s3_settings_from_connection("c3")
    assert (s.access_key_id, s.secret_access_key, s.bucket) == ("AKIDFROMENV", "secret-from-env", "b3")
    assert s.endpoint_url == "http://127.0.0.1:1"  # the environment's endpoint, as before


def test_a_generic_connection_is_still_read_field_by_field(monkeypatch):
    _conn(monkeypatch, "c4", conn_type="generic", login="AKIDEXAMPLE", password="secret-example",
          extra={"endpoint_url": "http://127.0.0.1:9001", "bucket": "b4"})  # fmt: skip
    s = s3_settings_from_connection("c4")
    assert (s.endpoint_url, s.access_key_id, s.bucket) == ("http://127.0.0.1:9001", "AKIDEXAMPLE", "b4")
