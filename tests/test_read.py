"""Reading the Delta table: filters, reads since a version, the `read` command, and the DuckDB / Polars / pandas
examples (which use no code of this project)."""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import subprocess
import sys
from datetime import datetime, timezone

import pandas as pd
import pyarrow.parquet as pq
import pytest

from benchmarks.bench_store import generate_articles
from examples import duckdb_query, pandas_read, polars_read
from pipeline.cli.read import cmd_read, configure_read
from pipeline.core.context import RunContext
from pipeline.core.paths import ROOT
from pipeline.dataset import delta
from pipeline.dataset.read import read_articles, table_version
from pipeline.dataset.schema import ARTICLE_SCHEMA
from pipeline.stages.store import optimize_day, store_articles

RUN_A = "20261126T230000Z"  # day 1
RUN_B = "20261127T060000Z"  # day 2
RUN_C = "20261127T120000Z"  # day 2, later


@pytest.fixture
def dataset(s3_settings, bucket):
    """Three committed runs over two days, plus one data file no commit lists (a store killed before its commit)."""
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
    # A half-written commit: a data file in the day's partition, but no log entry. No reader may see it.
    [uri] = [u for u in delta.open_table(s3_settings).file_uris() if "dt=2026-11-27" in u][:1]
    body = bucket.get("articles/" + uri.split("/articles/", 1)[1])
    bucket.put("articles/dt=2026-11-27/part-00000-0badbadbad00-c000.zstd.parquet", body)
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


def test_incremental_reads_by_table_version(s3_settings, dataset):
    seen = table_version(s3_settings)  # a consumer has read everything so far
    assert read_articles(since_version=seen, settings=s3_settings).num_rows == 0
    # A re-run of run A shows up for the incremental reader once, with only its new rows.
    rerun = generate_articles(4, seed=9, words=5)
    store_articles(RunContext(RUN_A, s3=s3_settings), rerun)
    new = read_articles(since_version=seen, settings=s3_settings)
    assert sorted(new.column("article_id").to_pylist()) == ids(rerun)
    assert read_articles(since_version=seen, source="gazette", settings=s3_settings).num_rows == sum(
        r["source"] == "gazette" for r in rerun
    )
    assert read_articles(since_version=seen, since="2026-11-27", settings=s3_settings).num_rows == 0
    # OPTIMIZE changes files, not rows: nothing new for the incremental reader.
    mark = table_version(s3_settings)
    assert optimize_day(s3_settings, "2026-11-27")["numFilesRemoved"] >= 2
    assert read_articles(since_version=mark, settings=s3_settings).num_rows == 0
    # By commit time: the history's timestamps (wall clock) mark the versions.
    commits = {h["version"]: h["timestamp"] for h in delta.open_table(s3_settings).history()}
    after = datetime.fromtimestamp(commits[seen] / 1000, tz=timezone.utc)
    assert sorted(read_articles(committed_after=after, settings=s3_settings).column("article_id").to_pylist()) == ids(
        rerun
    )


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
    # Rows come in file order (files are read concurrently): compare each row with its own record.
    by_id = {r["article_id"]: r for r in dataset[RUN_A]}
    assert all(json.loads(row["removed"]) == by_id[row["article_id"]]["removed"] for row in rows)
    assert any(json.loads(row["removed"]) for row in rows)  # a non-empty list made it through CSV
    pq_out = tmp_path / "a.parquet"
    assert cmd_read(_args("--canonical-only", "--format", "parquet", "--out", str(pq_out)), settings=s3_settings) == 0
    table = pq.read_table(pq_out)
    assert table.num_rows == sum(1 for rows in dataset.values() for r in rows if r["duplicate_of"] is None)


@pytest.mark.parametrize(
    "argv",
    [
        ("--run", "../../etc"),
        ("--since", "yesterday"),
        ("--columns", "x"),
        ("--committed-after", "soon"),
        ("--since-version", "-1"),
    ],
)
def test_read_command_bad_arguments(s3_settings, argv, capsys):
    from pipeline.cli.main import main

    assert main(["read", *argv]) == 2  # refused before the bucket is touched
    err = capsys.readouterr().err
    assert err.startswith("error: ") and argv[1] in err and err.count("\n") == 1


def _creds(settings) -> dict:
    """What `s3 up --env` exports, as the examples' arguments (they read the AWS environment by default)."""
    return {
        "endpoint_url": settings.endpoint_url,
        "key_id": settings.access_key_id,
        "secret": settings.secret_access_key,
    }


def test_duckdb_example_reads_the_committed_rows_only(s3_settings, dataset):
    got = duckdb_query.query("SELECT article_id FROM articles ORDER BY 1", s3_settings.bucket, **_creds(s3_settings))
    assert got.column("article_id").to_pylist() == ids(r for rows in dataset.values() for r in rows)  # no orphan
    per_source = duckdb_query.query(
        "SELECT source, count(*) AS n FROM articles WHERE dt = '2026-11-27' GROUP BY source ORDER BY source",
        s3_settings.bucket,
        **_creds(s3_settings),
    )
    counts = dict(zip(per_source.column("source").to_pylist(), per_source.column("n").to_pylist()))
    assert sum(counts.values()) == 40 and counts["gazette"] == 8


def test_duckdb_example_after_a_rerun_and_optimize(s3_settings, dataset):
    optimize_day(s3_settings, "2026-11-27")
    new = [{**r, "source": "gazette"} for r in generate_articles(2, seed=8, words=5)]
    store_articles(RunContext(RUN_B, s3=s3_settings), new, sources=["gazette"])
    got = duckdb_query.query(
        "SELECT article_id FROM articles WHERE dt >= '2026-11-27' ORDER BY 1", s3_settings.bucket, **_creds(s3_settings)
    )
    kept = [r for r in dataset[RUN_B] if r["source"] != "gazette"]
    assert got.column("article_id").to_pylist() == ids(new + kept + dataset[RUN_C])


def test_polars_and_deltalake_examples(s3_settings, dataset):
    day2 = dataset[RUN_B] + dataset[RUN_C]
    counts = polars_read.per_source("2026-11-27", s3_settings.bucket, **_creds(s3_settings))
    assert dict(counts.iter_rows()) == {s: sum(r["source"] == s for r in day2) for s in {r["source"] for r in day2}}
    assert sorted(polars_read.read_day("2026-11-27", s3_settings.bucket, **_creds(s3_settings))["article_id"]) == ids(
        day2
    )
    df = pandas_read.read_with_deltalake("2026-11-27", s3_settings.bucket, **_creds(s3_settings))
    assert sorted(df["article_id"]) == ids(day2)
    df2 = pandas_read.read_with_pipeline("2026-11-27", s3_settings, source="tribune")
    assert sorted(df2["article_id"]) == ids(r for r in day2 if r["source"] == "tribune")
    assert len(pandas_read.read_with_deltalake("2020-01-01", s3_settings.bucket, **_creds(s3_settings))) == 0


def test_cli_read_and_compact_through_python_m_pipeline(s3_settings, dataset, monkeypatch, capsys):
    from pipeline.cli.main import main

    monkeypatch.setenv("NEWS_INGEST_BUCKET", s3_settings.bucket)  # the env names the session server already
    assert main(["read", "--run", RUN_C, "--columns", "article_id,source"]) == 0
    rows = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert ids(rows) == ids(dataset[RUN_C]) and set(rows[0]) == {"article_id", "source"}
    assert main(["compact", "--dt", "2026-11-27", "--cleanup"]) == 0
    out = capsys.readouterr().out
    assert "2026-11-27: optimized" in out and "checkpoint at version" in out and "removed 0 unreferenced" in out
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


def _pipeline(*argv: str, env: dict, stdout=None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pipeline", *argv],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE if stdout is None else stdout,
        stderr=subprocess.PIPE,
        timeout=120,
    )


def _sources_yaml(path, *names: str):
    body = "".join(f"  - name: {n}\n    feeds: ['https://{n}.example/feed']\n" for n in names)
    path.write_text(f"sources:\n{body}", encoding="utf-8")
    return path


def test_read_source_known_by_the_sources_file_or_the_table(s3_settings, dataset, tmp_path):
    """`read --source`: a configured name, or one only the table knows (removed from the file since), reads;
    a name neither knows exits 2 naming the known sources, as `run --source nosuch` does."""
    env = {**os.environ, "NEWS_INGEST_BUCKET": s3_settings.bucket}
    sources = str(_sources_yaml(tmp_path / "sources.yaml", "gazette", "brand-new"))
    everything = [r for rows in dataset.values() for r in rows]

    configured = _pipeline("read", "--sources", sources, "--source", "gazette", "--columns", "article_id", env=env)
    assert configured.returncode == 0, configured.stderr
    assert ids(json.loads(x) for x in configured.stdout.splitlines()) == ids(
        r for r in everything if r["source"] == "gazette"
    )
    removed = _pipeline("read", "--sources", sources, "--source", "tribune", "--columns", "article_id", env=env)
    assert removed.returncode == 0, removed.stderr
    assert ids(json.loads(x) for x in removed.stdout.splitlines()) == ids(
        r for r in everything if r["source"] == "tribune"
    )
    # A configured source that never stored anything is not an error: it has no rows yet.
    fresh = _pipeline("read", "--sources", sources, "--source", "brand-new", env=env)
    assert fresh.returncode == 0 and fresh.stdout == b"", fresh.stderr

    bad = _pipeline("read", "--sources", sources, "--source", "gazette", "--source", "nosuch", env=env)
    assert bad.returncode == 2 and bad.stdout == b""
    err = bad.stderr.decode()
    assert err.startswith("error: no source named 'nosuch'") and err.count("\n") == 1, err
    assert f"{sources} has: gazette, brand-new" in err
    also = err.split("the table also holds at least: ", 1)[1].rstrip(")\n").split(", ")
    assert also and set(also) <= {"daily-planet", "wire-service", "tribune", "chronicle"}, err


def test_read_source_unknown_before_anything_was_stored(s3_settings, tmp_path):
    """No table yet: an unknown `--source` still exits 2 naming the configured sources."""
    env = {**os.environ, "NEWS_INGEST_BUCKET": s3_settings.bucket}
    sources = str(_sources_yaml(tmp_path / "sources.yaml", "gazette"))
    bad = _pipeline("read", "--sources", sources, "--source", "nosuch", env=env)
    assert bad.returncode == 2, bad.stderr
    assert (
        bad.stderr.decode()
        == f"error: no source named 'nosuch' in the sources file or the articles table ({sources} has: gazette)\n"
    )


def test_read_parquet_goes_to_a_file_or_a_pipe_never_a_terminal(s3_settings, dataset, tmp_path):
    """`--format parquet`: without `--out`, or with `--out -` on a terminal, exit 2 and nothing written;
    `--out -` into a pipe writes the Parquet file to stdout."""
    import pty

    env = {**os.environ, "NEWS_INGEST_BUCKET": s3_settings.bucket}
    no_out = _pipeline("read", "--format", "parquet", env=env)
    assert no_out.returncode == 2 and no_out.stdout == b""
    assert no_out.stderr.decode().startswith("error: --format parquet is binary: give --out FILE")

    leader, follower = pty.openpty()
    try:
        on_tty = _pipeline("read", "--format", "parquet", "--out", "-", env=env, stdout=follower)
        os.set_blocking(leader, False)
        try:
            written = os.read(leader, 65536)
        except (BlockingIOError, OSError):
            written = b""
    finally:
        os.close(leader)
        os.close(follower)
    assert on_tty.returncode == 2 and written == b""
    assert b"stdout is a terminal" in on_tty.stderr

    piped = _pipeline("read", "--format", "parquet", "--out", "-", "--columns", "article_id", env=env)
    assert piped.returncode == 0, piped.stderr
    table = pq.read_table(io.BytesIO(piped.stdout))
    assert sorted(table.column("article_id").to_pylist()) == ids(r for rows in dataset.values() for r in rows)
