"""Sources from the bucket: `python -m pipeline sources push` (versioned by hash), a run's pinned version,
and how a task finds its sources file with no local file shared between tasks."""

from __future__ import annotations

import argparse
import hashlib

import pytest
import yaml

from pipeline.airflow_tasks import sources_path_from
from pipeline.cli.sources import (
    CURRENT_KEY,
    cmd_sources,
    current_sources,
    pin_run_sources,
    push_sources,
    read_version,
    version_key,
)
from pipeline.core.config import load_sources
from pipeline.core.errors import ConfigError

PIN = "work/dt=2026-01-01/run=20260101T000000Z/sources.json"


def _yaml(tmp_path, names: list[str], name: str = "sources.yaml"):
    body = {"sources": [{"name": n, "feeds": [f"https://{n}.example/feed"]} for n in names]}
    path = tmp_path / name
    path.write_text(yaml.safe_dump(body))
    return path


def test_push_uploads_under_the_hash_and_makes_it_current(tmp_path, bucket):
    path = _yaml(tmp_path, ["a", "b"])
    pointer = push_sources(bucket, path)
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    assert pointer == {"sha256": sha, "key": version_key(sha), "sources": ["a", "b"]}
    assert current_sources(bucket) == pointer
    assert read_version(bucket, sha) == path.read_text()

    # A second version: the first stays, the pointer moves.
    second = push_sources(bucket, _yaml(tmp_path, ["c"], "other.yaml"))
    assert bucket.exists(version_key(sha)) and current_sources(bucket)["sha256"] == second["sha256"] != sha


def test_push_refuses_a_bad_file_before_writing(tmp_path, bucket):
    bad = tmp_path / "bad.yaml"
    bad.write_text("sources: [{name: x, feeds: [not-a-url]}]")
    with pytest.raises(ConfigError):
        push_sources(bucket, bad)
    assert bucket.list("config/") == []


def test_a_run_keeps_the_version_pinned_by_its_first_task(tmp_path, bucket):
    assert pin_run_sources(bucket, PIN) is None  # nothing pushed: nothing pinned
    first = push_sources(bucket, _yaml(tmp_path, ["a"]))
    assert pin_run_sources(bucket, PIN) == first["sha256"]
    push_sources(bucket, _yaml(tmp_path, ["b"], "b.yaml"))  # pushed mid-run
    assert pin_run_sources(bucket, PIN) == first["sha256"]
    assert pin_run_sources(bucket, PIN.replace("000000Z", "010000Z")) != first["sha256"]  # the next run


def test_a_task_reads_the_pinned_version_from_a_fresh_working_directory(tmp_path, bucket, monkeypatch):
    push_sources(bucket, _yaml(tmp_path, ["from-bucket"]))
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    monkeypatch.chdir(fresh)
    monkeypatch.setenv("TMPDIR", str(fresh))
    monkeypatch.setattr("tempfile.tempdir", None)
    path = sources_path_from({}, bucket=bucket, pin_key=PIN)
    assert path.is_relative_to(fresh)
    assert [s.name for s in load_sources(path).sources] == ["from-bucket"]
    # An explicit param still wins (single-machine deployments).
    assert sources_path_from({"sources_path": "/x/sources.yaml"}, bucket=bucket, pin_key=PIN).as_posix() == (
        "/x/sources.yaml"
    )


def test_cli_push_and_show(tmp_path, s3_settings, bucket):
    lines: list[str] = []
    path = _yaml(tmp_path, ["a"])
    assert cmd_sources(argparse.Namespace(action="push", file=path), settings=s3_settings, out=lines.append) == 0
    assert "now current" in lines[-1] and bucket.exists(CURRENT_KEY)
    assert cmd_sources(argparse.Namespace(action="show", file=None), settings=s3_settings, out=lines.append) == 0
    assert hashlib.sha256(path.read_bytes()).hexdigest() in lines[-1]
