"""Reading: filters, incremental reads, formats of the `read` command, and the DuckDB / pandas examples."""

from __future__ import annotations

import argparse
import csv
import io
import json
from datetime import datetime, timezone

import pandas as pd
import pyarrow.parquet as pq
import pytest

from benchmarks.bench_store import generate_articles
from examples import duckdb_query, pandas_read
from pipeline.cli.read import cmd_read, configure_read
from pipeline.core.context import RunContext
from pipeline.core.layout import part_key, run_articles_prefix
from pipeline.dataset.manifest import committed_runs
from pipeline.dataset.read import read_articles
from pipeline.dataset.schema import ARTICLE_SCHEMA
from pipeline.stages.store import compact, store_articles

RUN_A = "20261126T230000Z"  # day 1
RUN_B = "20261127T060000Z"  # day 2
RUN_C = "20261127T120000Z"  # day 2, later


@pytest.fixture
def dataset(s3_settings, bucket):
    """Three committed runs over two days, plus one uncommitted (orphan) file."""
    recs = {
        RUN_A: generate_articles(20, seed=1, words=10),
        RUN_B: generate_articles(30, seed=2, words=10),
        RUN_C: generate_articles(10, seed=3, words=10),
    }
    clock = {
        RUN_A: datetime(2026, 11, 27, 0, 5, tzinfo=timezone.utc),
        RUN_B: datetime(2026, 11, 27, 6, 5, tzinfo=timezone.utc),
        RUN_C: datetime(2026, 11, 27, 12, 5, tzinfo=timezone.utc),
    }
    for run, rows in recs.items():
        store_articles(RunContext(run, s3=s3_settings), rows, max_rows_per_file=8, now=clock[run])
    # A half-written run: a part file but no manifest. No reader may see it.
    body = bucket.get(bucket.list(run_articles_prefix(RUN_C))[0])
    bucket.put(part_key(run_articles_prefix("20261127T130000Z"), "0badbadbad00", 0), body)
    return recs


def ids(rows) -> list[str]:
    return sorted(r["article_id"] for r in rows)


def test_filters(s3_settings, dataset):
    all_ids = ids(r for rows in dataset.values() for r in rows)
    table = read_articles(settings=s3_settings)
    assert table.schema.equals(ARTICLE_SCHEMA, check_metadata=False)
    assert sorted(table.column("article_id").to_pylist()) == all_ids  # the orphan is not there
    day2 = read_articles(since="2026-11-27", until="2026-11-27", settings=s3_settings)
    assert sorted(day2.column("article_id").to_pylist()) == ids(dataset[RUN_B] + dataset[RUN_C])
    # A datetime bound also cuts on ingested_at (since inclusive, until exclusive).
    late = read_articles(since=datetime(2026, 11, 27, 12, 5, tzinfo=timezone.utc), settings=s3_settings)
    assert sorted(late.column("article_id").to_pylist()) == ids(dataset[RUN_C])
    early = read_articles(until=datetime(2026, 11, 27, 6, 5, tzinfo=timezone.utc), settings=s3_settings)
    assert sorted(early.column("article_id").to_pylist()) == ids(dataset[RUN_A])
    gaz = read_articles(source="gazette", settings=s3_settings, as_="records")
    assert ids(gaz) == ids(r for rows in dataset.values() for r in rows if r["source"] == "gazette")
    canon = read_articles(canonical_only=True, settings=s3_settings, columns=["article_id", "duplicate_of"])
    assert canon.column_names == ["article_id", "duplicate_of"]
    assert canon.num_rows == sum(1 for rows in dataset.values() for r in rows if r["duplicate_of"] is None)
    assert canon.column("duplicate_of").null_count == canon.num_rows
    only_b = read_articles(run_id=RUN_B, settings=s3_settings, as_="pandas")
    assert isinstance(only_b, pd.DataFrame) and sorted(only_b["article_id"]) == ids(dataset[RUN_B])
    assert str(only_b["published"].dt.tz) == "UTC"
    with pytest.raises(ValueError, match="unknown column"):
        read_articles(settings=s3_settings, columns=["nope"])


def test_incremental_reads_by_commit_time(s3_settings, dataset):
    runs = committed_runs(s3_settings)
    assert [m["run_id"] for m in runs] == [RUN_A, RUN_B, RUN_C]
    mark = runs[1]["committed_at"]  # a consumer has read up to run B
    new = read_articles(committed_after=mark, settings=s3_settings)
    assert sorted(new.column("article_id").to_pylist()) == ids(dataset[RUN_C])
    assert [m["run_id"] for m in committed_runs(s3_settings, committed_after=mark)] == [RUN_C]
    # A re-run of run A committed later (wall clock passed in) shows up for the incremental reader, once.
    rerun = generate_articles(4, seed=9, words=5)
    store_articles(RunContext(RUN_A, s3=s3_settings), rerun, now=datetime(2026, 11, 27, 18, tzinfo=timezone.utc))
    new = read_articles(committed_after=runs[2]["committed_at"], settings=s3_settings)
    assert sorted(new.column("article_id").to_pylist()) == ids(rerun)
    # Compaction changes files, not commits: nothing new for the incremental reader.
    mark = committed_runs(s3_settings)[-1]["committed_at"]
    assert compact(s3_settings, "2026-11-27") is not None
    assert read_articles(committed_after=mark, settings=s3_settings).num_rows == 0
    assert read_articles(committed_after=runs[1]["committed_at"], settings=s3_settings).num_rows == 14


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    configure_read(parser)
    return parser.parse_args(argv)


def test_read_command_formats(s3_settings, dataset, tmp_path, capsys):
    assert (
        cmd_read(_args("--since", "2026-11-27", "--source", "gazette", "--format", "jsonl"), settings=s3_settings) == 0
    )
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    want = ids(r for r in dataset[RUN_B] + dataset[RUN_C] if r["source"] == "gazette")
    assert ids(lines) == want and lines[0]["ingested_at"].endswith("Z")
    out = tmp_path / "a.csv"
    assert cmd_read(_args("--run", RUN_A, "--format", "csv", "--out", str(out)), settings=s3_settings) == 0
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    assert ids(rows) == ids(dataset[RUN_A])
    assert json.loads(rows[0]["removed"]) == dataset[RUN_A][0]["removed"]
    pq_out = tmp_path / "a.parquet"
    assert cmd_read(_args("--canonical-only", "--format", "parquet", "--out", str(pq_out)), settings=s3_settings) == 0
    table = pq.read_table(pq_out)
    assert table.num_rows == sum(1 for rows in dataset.values() for r in rows if r["duplicate_of"] is None)


@pytest.mark.parametrize(
    "argv", [("--run", "../../etc"), ("--since", "yesterday"), ("--columns", "x"), ("--committed-after", "soon")]
)
def test_read_command_bad_arguments(s3_settings, argv, capsys):
    from pipeline.cli.main import main

    assert main(["read", *argv]) == 2  # refused before the bucket is touched
    err = capsys.readouterr().err
    assert err.startswith("error: ") and argv[1] in err and err.count("\n") == 1


def test_duckdb_example_sees_committed_files_only(s3_settings, dataset):
    con = duckdb_query.connect(s3_settings)
    try:
        assert duckdb_query.register_articles(con, s3_settings) == 3 + 4 + 2
        got = con.execute("SELECT article_id FROM articles ORDER BY 1").fetchall()
        assert [g[0] for g in got] == ids(r for rows in dataset.values() for r in rows)
        # Straight to the bucket over HTTP: DuckDB itself lists the raw prefix, including the orphan.
        raw = con.execute(f"SELECT count(*) FROM read_parquet('s3://{s3_settings.bucket}/articles/*/*/*.parquet')")
        assert raw.fetchone()[0] == 60 + 8  # proves httpfs really reads the endpoint
    finally:
        con.close()
    per_source = duckdb_query.query(
        "SELECT source, count(*) AS n FROM articles GROUP BY source ORDER BY source",
        s3_settings,
        since="2026-11-27",
        until="2026-11-27",
    )
    counts = dict(zip(per_source.column("source").to_pylist(), per_source.column("n").to_pylist()))
    assert sum(counts.values()) == 40 and counts["gazette"] == 8


def test_duckdb_example_after_partial_supersede(s3_settings, dataset):
    compact(s3_settings, "2026-11-27")
    store_articles(RunContext(RUN_B, s3=s3_settings), generate_articles(2, seed=8, words=5))
    got = duckdb_query.query("SELECT article_id FROM articles ORDER BY 1", s3_settings, since="2026-11-27")
    assert got.column("article_id").to_pylist() == ids(generate_articles(2, seed=8, words=5) + dataset[RUN_C])


def test_duckdb_example_empty_bucket(s3_settings):
    assert duckdb_query.query("SELECT count(*) AS n FROM articles", s3_settings).column("n").to_pylist() == [0]


def test_pandas_examples(s3_settings, dataset):
    df = pandas_read.read_with_pyarrow_fs("2026-11-27", s3_settings)
    assert sorted(df["article_id"]) == ids(dataset[RUN_B] + dataset[RUN_C])
    df2 = pandas_read.read_with_pipeline("2026-11-27", s3_settings, source="tribune")
    assert sorted(df2["article_id"]) == ids(r for r in dataset[RUN_B] + dataset[RUN_C] if r["source"] == "tribune")
    assert len(pandas_read.read_with_pyarrow_fs("2020-01-01", s3_settings)) == 0


def test_cli_read_and_compact_through_python_m_pipeline(s3_settings, dataset, monkeypatch, capsys):
    from pipeline.cli.main import main

    monkeypatch.setenv("NEWS_INGEST_BUCKET", s3_settings.bucket)  # the env names the session server already
    assert main(["read", "--run", RUN_C, "--columns", "article_id,source"]) == 0
    rows = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert ids(rows) == ids(dataset[RUN_C]) and set(rows[0]) == {"article_id", "source"}
    assert main(["compact", "--dt", "2026-11-27"]) == 0
    assert "committed _manifests/compaction/dt=2026-11-27.json" in capsys.readouterr().out
    assert main(["compact", "--dt", "../../etc"]) == 2
    assert main(["read", "--since", "2026-11-27"]) == 0
    assert ids(json.loads(x) for x in capsys.readouterr().out.splitlines()) == ids(dataset[RUN_B] + dataset[RUN_C])


def test_read_command_exits_0_in_50_consecutive_processes(s3_settings, dataset):
    """Issue #16: `read` once aborted at exit (134, SIGABRT in pyarrow's teardown) in a few % of runs
    after complete output. Every one of 50 fresh processes must exit 0 with all rows out."""
    import os
    import subprocess
    import sys

    from pipeline.core.paths import ROOT

    env = {**os.environ, "NEWS_INGEST_BUCKET": s3_settings.bucket}  # the session server's env, this bucket
    want = len(ids(dataset[RUN_A] + dataset[RUN_B] + dataset[RUN_C]))
    codes = []
    for _ in range(50):
        proc = subprocess.run(
            [sys.executable, "-m", "pipeline", "read", "--columns", "article_id"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        codes.append(proc.returncode)
        assert len(proc.stdout.splitlines()) == want, proc.stderr
    assert codes == [0] * 50, {code: codes.count(code) for code in set(codes)}
