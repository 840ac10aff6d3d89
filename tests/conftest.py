"""Shared fixtures: a real SeaweedFS (tests/fixtures/s3.py) and the sample site (tests/fixtures/site.py)."""

import pytest

pytest_plugins = ["tests.fixtures.s3", "tests.fixtures.site"]


@pytest.fixture(autouse=True)
def _dedupe_key_cache(tmp_path_factory, monkeypatch):
    """Each test its own dedupe key cache (`pipeline.stages.dedupe_index.KeyCache`): none shared between
    tests, none left in ~/.cache. Services a test starts inherit it."""
    monkeypatch.setenv("NEWS_INGEST_CACHE_DIR", str(tmp_path_factory.mktemp("keycache")))
