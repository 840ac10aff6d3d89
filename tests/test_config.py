"""Sources files are validated at start; bad files name the field; S3 settings follow the AWS names."""

from __future__ import annotations

import pytest

from pipeline.core.config import ConfigError, S3Settings, load_sources
from pipeline.core.context import RunContext
from pipeline.core.layout import check_run_id, make_run_id, run_date, safe_segment

GOOD = """
crawl:
  user_agent: "news-ingest-test (+mailto:ops@example.org)"
sources:
  - name: courier
    feeds: ["http://127.0.0.1:8701/feed.xml"]
    cleaning:
      drop_lines: ["^Advertisement$"]
"""


def test_good_file_loads(tmp_path):
    path = tmp_path / "sources.yaml"
    path.write_text(GOOD)
    cfg = load_sources(path)
    assert cfg.source("courier").feeds == ["http://127.0.0.1:8701/feed.xml"]
    assert cfg.source("courier").delay == 1.0  # conservative default
    assert cfg.crawl.max_page_bytes == 32 * 1024 * 1024


@pytest.mark.parametrize(
    "body, field",
    [
        ("sources:\n  - name: Bad Name\n    feeds: []\n", "sources.0.name"),
        ("sources:\n  - name: ok\n    feeds: ['ftp://x/']\n", "sources.0.feeds"),
        ("sources:\n  - name: ok\n    deny: ['([']\n", "sources.0.deny"),
        ("sources:\n  - name: ok\n    concurrency: 0\n", "sources.0.concurrency"),
        ("sources:\n  - name: ok\n    colour: red\n", "sources.0.colour"),
        ("sources:\n  - name: a\n  - name: a\n", "sources"),
        ("sources: []\n", "sources"),
        ("crawl:\n  download_timeout: -1\nsources:\n  - name: a\n", "crawl.download_timeout"),
    ],
)
def test_bad_file_names_the_field(tmp_path, body, field):
    path = tmp_path / "sources.yaml"
    path.write_text(body)
    with pytest.raises(ConfigError) as err:
        load_sources(path)
    assert field in str(err.value)
    assert str(path) in str(err.value)


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        load_sources(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("sources: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_sources(bad)


def test_unknown_source_is_a_config_error(tmp_path):
    path = tmp_path / "sources.yaml"
    path.write_text(GOOD)
    with pytest.raises(ConfigError, match="no source named 'other'"):
        load_sources(path).source("other")


def test_s3_settings_from_standard_env_names():
    s = S3Settings.from_env(
        {
            "AWS_ENDPOINT_URL": "http://127.0.0.1:9999",
            "AWS_ACCESS_KEY_ID": "k",
            "AWS_SECRET_ACCESS_KEY": "sekrit",
            "NEWS_INGEST_BUCKET": "b",
        }
    )
    assert (s.endpoint_url, s.access_key_id, s.bucket) == ("http://127.0.0.1:9999", "k", "b")
    assert "sekrit" not in repr(s) and "sekrit" not in str(s)
    assert s.as_env()["AWS_SECRET_ACCESS_KEY"] == "sekrit"


def test_embedded_server_is_the_default_endpoint(tmp_path, monkeypatch):
    monkeypatch.setenv("NEWS_INGEST_HOME", str(tmp_path))
    s = S3Settings.from_env({})
    assert s.endpoint_url.startswith("http://127.0.0.1:")


def test_run_ids_and_key_segments():
    from datetime import datetime, timezone

    rid = make_run_id(datetime(2026, 11, 27, 21, 0, tzinfo=timezone.utc))
    assert rid == "20261127T210000Z" and run_date(rid) == "2026-11-27"
    assert check_run_id(rid + "-retry1")
    for bad in ("../etc", "2026-11-27", "20261127T210000Z/../../x"):
        with pytest.raises(ValueError):
            RunContext(run_id=bad)
    for hostile in ("../../etc/passwd", "é" * 300, "a/b", ".."):
        seg = safe_segment(hostile)
        assert "/" not in seg and ".." not in seg and len(seg) <= 80 and seg.isascii()
    assert safe_segment("a/b") != safe_segment("a_b")


@pytest.mark.parametrize("name", ["sources.yaml", "sources.example.yaml"])
def test_committed_sources_files_are_valid(name):
    from pipeline.core.paths import ROOT

    cfg = load_sources(ROOT / "config" / name)
    assert cfg.sources and all(s.feeds or s.sitemaps or s.sections for s in cfg.sources)
