"""Shared fixtures: a real SeaweedFS (tests/fixtures/s3.py) and the sample site (tests/fixtures/site.py)."""

pytest_plugins = ["tests.fixtures.s3", "tests.fixtures.site"]
