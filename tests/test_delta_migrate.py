"""`python -m pipeline migrate` on a bucket written by the manifest store (tests/data/legacy_bucket, made by
its make.py with the code before the Delta table): every committed row once, no uncommitted attempt."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks.bench_store import generate_articles
from pipeline.cli.main import main
from pipeline.core.context import RunContext
from pipeline.core.errors import StorageError
from pipeline.dataset import delta
from pipeline.dataset.read import read_articles, table_version
from pipeline.stages.store import store_articles, vacuum

LEGACY = Path(__file__).parent / "data" / "legacy_bucket"


@pytest.fixture
def legacy(s3_settings, bucket, monkeypatch):
    for path in sorted((LEGACY / "bucket").rglob("*")):
        if path.is_file():
            bucket.put(path.relative_to(LEGACY / "bucket").as_posix(), path.read_bytes())
    monkeypatch.setenv("NEWS_INGEST_BUCKET", s3_settings.bucket)  # the env names the session server already
    return json.loads((LEGACY / "expected.json").read_text())


def _ids(settings) -> list[str]:
    return sorted(read_articles(settings=settings, columns=["article_id"]).column("article_id").to_pylist())


def test_migrate_commits_every_committed_row_once(s3_settings, bucket, legacy, capsys):
    # The bucket has superseded attempts, a compacted day, and a file of an attempt that died.
    assert any("deadattempt" in k for k in bucket.list("articles/"))
    with pytest.raises(StorageError, match="migrate"):
        vacuum(s3_settings)  # VACUUM would delete the old files: refused until migrated
    assert main(["migrate"]) == 0
    out = capsys.readouterr().out
    assert "migrated 3 runs, 31 rows; skipped 0" in out
    got = _ids(s3_settings)
    assert got == legacy and len(set(got)) == len(got)
    runs = read_articles(settings=s3_settings, columns=["run_id"]).column("run_id").to_pylist()
    assert {r: runs.count(r) for r in set(runs)} == {
        "20261126T230000Z": 10,
        "20261127T060000Z": 15,
        "20261127T120000Z": 6,
    }
    # Again: nothing changes. A run stored after the switch keeps its newer rows.
    version = table_version(s3_settings)
    assert main(["migrate"]) == 0 and "skipped 3" in capsys.readouterr().out
    assert table_version(s3_settings) == version and _ids(s3_settings) == legacy
    fresh = generate_articles(3, seed=7, words=5)
    store_articles(RunContext("20261127T060000Z", s3=s3_settings), fresh)
    before = (table_version(s3_settings), _ids(s3_settings))
    assert {r["article_id"] for r in fresh} <= set(before[1])
    assert main(["migrate"]) == 0
    assert (table_version(s3_settings), _ids(s3_settings)) == before  # the manifest's older rows did not come back
    assert len(delta.run_commits(s3_settings, "20261127T060000Z")) == 2


def test_vacuum_after_migration_drops_the_old_files_not_the_rows(s3_settings, bucket, legacy, monkeypatch):
    from datetime import timedelta

    assert main(["migrate"]) == 0
    monkeypatch.setattr(delta, "MIN_RETENTION", timedelta(0))
    vacuum(s3_settings, retention=timedelta(0))  # the test cannot wait 7 days
    assert not [k for k in bucket.list("articles/") if "/run=" in k]  # the manifest store's files are gone
    assert _ids(s3_settings) == legacy
