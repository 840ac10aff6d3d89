"""S3 settings from an Airflow Connection of the amazon provider's `aws` type.

The provider's `S3Hook` resolves what an `aws` Connection can say: keys (login / password), an IAM role to
assume (`role_arn`), a profile, the region (`region_name`), and the endpoint (`endpoint_url`, or
`service_config.s3.endpoint_url`); with no keys, boto3's own chain (environment, instance or pod role).
The bucket is this project's extra field `bucket`.

Imported only under Airflow; without the amazon provider, `settings_from_aws_hook` returns None and the
caller reads the Connection's fields itself.
"""

from __future__ import annotations

from typing import Any

from pipeline.core.config import S3Settings

#: The extra field naming the bucket (not an AWS setting, so the provider ignores it).
BUCKET_EXTRA = "bucket"


def amazon_provider_available() -> bool:
    """True when `apache-airflow-providers-amazon` is installed (its hooks import)."""
    try:
        from airflow.providers.amazon.aws.hooks.s3 import S3Hook  # noqa: F401
    except ImportError:
        return False
    return True


def settings_from_aws_hook(conn_id: str, base: S3Settings) -> S3Settings | None:
    """S3 settings through the provider's `S3Hook` session for the `aws` Connection `conn_id`.

    `base` fills what neither the Connection nor boto3's chain gives (the endpoint of a local
    SeaweedFS, the default bucket). None when the provider is not installed. Temporary
    credentials (an assumed role) are frozen at call time: a task gets fresh ones when it starts.
    """
    try:
        from airflow.providers.amazon.aws.hooks.s3 import S3Hook
    except ImportError:
        return None
    hook = S3Hook(aws_conn_id=conn_id)
    config = hook.conn_config
    session = hook.get_session()
    credentials = session.get_credentials()
    frozen = credentials.get_frozen_credentials() if credentials is not None else None
    extra: dict[str, Any] = config.extra_config or {}
    settings = S3Settings(
        endpoint_url=config.get_service_endpoint_url("s3") or base.endpoint_url,
        access_key_id=frozen.access_key if frozen else base.access_key_id,
        secret_access_key=frozen.secret_key if frozen else base.secret_access_key,
        session_token=frozen.token if frozen else base.session_token,
        bucket=extra.get(BUCKET_EXTRA) or base.bucket,
        region=config.region_name or session.region_name or base.region,
    )
    return settings
