"""Store/read benchmark: `python -m benchmarks.bench_store [--articles N]`.

Starts its own SeaweedFS (EmbeddedS3 in a temp dir) and measures, in one process:

* write: `store_articles` (records -> Parquet -> S3 -> one Delta commit) against plain boto3
  `put_object` of the very same Parquet bytes (goal: ratio >= 0.8);
* read: `read_articles` and DuckDB `delta_scan` of the whole day back into Arrow (goal: >= 200,000 articles/s);
* `read --run X` and `read --since-version N` with 10 and 1,000 commits in the table (`--commits`);
* other codecs (`--codecs`), Arrow input, each against put_object of its own files:
  the storage trade (bytes/article) next to the speed.

CPU seconds of this process and of the SeaweedFS server are printed per row: on a small
machine they bound the ratio (the server alone keeps the cores busy during put_object).
Timings on a shared machine are noisy: compare the ratio, measured in the same run.
"""

from __future__ import annotations

import argparse
import io
import os
import random
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

from benchmarks.harness import subtree_cpu

_WORDS = [
    "the",
    "government",
    "said",
    "on",
    "tuesday",
    "that",
    "new",
    "rules",
    "for",
    "energy",
    "markets",
    "would",
    "take",
    "effect",
    "next",
    "year",
    "after",
    "months",
    "of",
    "talks",
    "between",
    "ministers",
    "regulators",
    "and",
    "industry",
    "groups",
    "critics",
    "argued",
    "prices",
    "could",
    "rise",
    "while",
    "supporters",
    "pointed",
    "to",
    "lower",
    "emissions",
    "and",
    "investment",
    "in",
    "grids",
    "storage",
    "and",
    "local",
    "production",
    "across",
    "the",
    "region",
]
SOURCES = ("daily-planet", "gazette", "wire-service", "tribune", "chronicle")


def generate_articles(n: int, *, seed: int = 0, words: int = 450, run_tag: str = "") -> list[dict]:
    """`n` dedupe-stage records with realistic field sizes (~450 words of text each)."""
    from pipeline.core.layout import make_run_id, raw_prefix, warc_file_name

    rng = random.Random(seed)
    base = datetime(2026, 11, 27, 6, 0, tzinfo=timezone.utc)
    warc_keys = {src: f"{raw_prefix(make_run_id(base), src)}{warc_file_name(src, 0)}" for src in SOURCES}
    out = []
    for i in range(n):
        src = SOURCES[i % len(SOURCES)]
        url = f"https://{src}.example/news/{seed}-{i}{run_tag}"
        paras = []
        left = words
        while left > 0:
            k = min(left, rng.randint(30, 90))
            paras.append(" ".join(rng.choice(_WORDS) for _ in range(k)).capitalize() + ".")
            left -= k
        text = "\n".join(paras)
        dup = i % 10 == 9  # one in ten is a syndicated copy of the previous article
        out.append(
            {
                "article_id": f"{seed:04x}{i:020x}"[-24:],
                "url": url,
                "canonical_url": url,
                "source": src,
                "title": f"Headline {i} about energy markets",
                "author": f"Reporter {i % 37}",
                "published": (base - timedelta(minutes=i)).isoformat(),
                "language": "en",
                "sitename": src.replace("-", " ").title(),
                "image": f"https://{src}.example/img/{i}.jpg",
                "text": text,
                "word_count": words,
                "content_hash": f"{rng.getrandbits(256):064x}",
                "cluster_id": f"c{(i - 1 if dup else i):08d}",
                "duplicate_of": f"{seed:04x}{i - 1:020x}"[-24:] if dup else None,
                "dup_kind": "near" if dup else None,
                "version": 1,
                "supersedes": None,
                "warc_key": warc_keys[src],
                "warc_record_id": f"<urn:uuid:{rng.getrandbits(128):032x}>",
                "extractor_version": "trafilatura-2.3.1+rules-1",
                "removed": [{"rule": "see-also", "text": "See also: another headline"}] if i % 3 == 0 else [],
                "fetched_at": (base + timedelta(seconds=i)).isoformat(),
                "http_etag": '"abc"',
            }
        )
    return out


class _CpuClock:
    """Wall time and CPU seconds of this process and of the SeaweedFS server (`benchmarks.harness`)."""

    def __init__(self, server_pid: int):
        self.server_pid = server_pid

    def _server(self) -> float:
        return subtree_cpu([self.server_pid])

    def time(self, fn) -> tuple[object, float, float, float]:
        """(fn(), wall seconds, CPU seconds here, CPU seconds in the server)."""
        c0, s0, t0 = time.process_time(), self._server(), time.perf_counter()
        out = fn()
        return out, time.perf_counter() - t0, time.process_time() - c0, self._server() - s0


def _codec_options(spec: str) -> dict:
    """`zstd:3`, `snappy`, `lz4`, `none` -> PARQUET_OPTIONS with that codec."""
    from pipeline.stages.store import PARQUET_OPTIONS

    name, _, level = spec.partition(":")
    options = {k: v for k, v in PARQUET_OPTIONS.items() if k not in ("compression", "compression_level")}
    options["compression"] = name
    if level:
        options["compression_level"] = int(level)
    return options


#: Articles per run in the table-size rows (`--commits`): small, so the table's size is its commit count.
HISTORY_RUN_ROWS = 20


def _added_files(bucket, commit_key: str) -> list[str]:
    """The bucket keys of the data files a Delta log entry (`articles/_delta_log/<v>.json`) added."""
    import json
    from urllib.parse import unquote

    actions = [json.loads(line) for line in bucket.get(commit_key).decode().splitlines() if line.strip()]
    return [f"articles/{unquote(a['add']['path'])}" for a in actions if "add" in a]


def _history_rows(settings, commit_counts: list[int]) -> list[tuple[int, float, float]]:
    """(commits, seconds of `read --run X`, seconds of `read --since-version N`) with the table grown to
    each count by small runs (January 2026: no partition shared with the big runs); X and N: the last
    run and the version before its commit."""
    from pipeline.core.context import RunContext
    from pipeline.dataset.read import read_articles, table_version
    from pipeline.stages.store import store_articles

    own = settings  # the benchmark's table: its big runs are in other `dt` partitions
    out = []
    done = 0
    start = datetime(2026, 1, 1, tzinfo=timezone.utc)
    for target in sorted(commit_counts):
        last = None
        while done < target:
            run = (start + timedelta(hours=done)).strftime("%Y%m%dT%H%M%SZ")
            store_articles(RunContext(run, s3=own), generate_articles(HISTORY_RUN_ROWS, seed=done, words=20))
            done += 1
            last = run
        assert last is not None
        version = table_version(own)
        assert version is not None

        def best(fn) -> float:
            times = []
            for _ in range(3):
                t0 = time.perf_counter()
                got = fn()
                times.append(time.perf_counter() - t0)
                assert got.num_rows == HISTORY_RUN_ROWS, got.num_rows
            return min(times)

        t_run = best(lambda last=last: read_articles(settings=own, run_id=last))
        t_since = best(lambda version=version: read_articles(settings=own, since_version=version - 1))
        out.append((target, t_run, t_since))
    return out


def main(argv: list[str] | None = None) -> int:
    import pyarrow as pa  # imported here: the module import stays cheap for tests
    import pyarrow.parquet as pq

    from examples import duckdb_query
    from pipeline.core.bucket import Bucket
    from pipeline.core.context import RunContext
    from pipeline.dataset.read import read_articles
    from pipeline.dataset.schema import table_to_articles
    from pipeline.runtime.s3server import EmbeddedS3
    from pipeline.stages.store import PARQUET_OPTIONS, ROW_GROUP_ROWS, store_articles

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--articles", type=int, default=100_000)
    parser.add_argument("--rows-per-file", type=int, default=100_000)
    parser.add_argument(
        "--codecs",
        default="zstd:1,snappy,lz4",
        help="other codecs to compare (Arrow input), comma-separated; '' for none",
    )
    parser.add_argument(
        "--commits",
        default="10,1000",
        help="table sizes (commits) at which to time `read --run` and `read --since-version`; '' for none",
    )
    args = parser.parse_args(argv)
    commit_counts = [int(c) for c in args.commits.split(",") if c]
    codecs = [c for c in args.codecs.split(",") if c]
    default_codec = f"{PARQUET_OPTIONS['compression']}:{PARQUET_OPTIONS.get('compression_level', '')}".rstrip(":")

    print(f"generating {args.articles:,} articles ...", flush=True)
    records = generate_articles(args.articles)
    # The same articles already in Arrow (what store_stage gets from pyarrow.json).
    arrow_input = pa.Table.from_pylist(records)
    with tempfile.TemporaryDirectory(prefix="bench-store-") as tmp:
        server = EmbeddedS3(Path(tmp) / "s3")
        info = server.up("bench")
        try:
            settings = info.settings("bench")
            bucket = Bucket(settings)
            clock = _CpuClock(info.pid)
            # Warm-up (connection pool, volume allocation) so neither side pays it.
            store_articles(RunContext("20261126T000000Z", s3=settings), records[:2000])

            def put_same_bytes(mkey: str, tag: str):
                """Plain boto3 put_object, one after the other, of exactly the data files the commit added."""
                bodies = [bucket.get(key) for key in _added_files(bucket, mkey)]

                def put():
                    for i, body in enumerate(bodies):
                        bucket.client.put_object(Bucket="bench", Key=f"baseline/{tag}/part-{i:05d}.parquet", Body=body)

                return (len(bodies), sum(len(b) for b in bodies)), *clock.time(put)[1:]

            mkey, t_store, c_store, s_store = clock.time(
                lambda: store_articles(
                    RunContext("20261127T060000Z", s3=settings), records, max_rows_per_file=args.rows_per_file
                )
            )
            mkey_arrow, t_arrow, c_arrow, s_arrow = clock.time(
                lambda: store_articles(
                    RunContext("20261128T060000Z", s3=settings), arrow_input, max_rows_per_file=args.rows_per_file
                )
            )

            # Context: the naive way from the same Arrow input (encode all in memory, then one PUT).
            def naive():
                sink = io.BytesIO()
                pq.write_table(
                    table_to_articles(arrow_input, run_id="20261129T060000Z", ingested_at=datetime.now(timezone.utc)),
                    sink,
                    row_group_size=ROW_GROUP_ROWS,
                    **PARQUET_OPTIONS,
                )
                bucket.client.put_object(Bucket="bench", Key="naive/part-00000.parquet", Body=sink.getvalue())

            _, t_naive, c_naive, s_naive = clock.time(naive)
            (nfiles, nbytes), t_put, c_put, s_put = put_same_bytes(mkey, "dict")
            (_, nbytes_arrow), t_put_arrow, c_put_arrow, s_put_arrow = put_same_bytes(mkey_arrow, "arrow")

            # Read back with the writers' Arrow memory released (as in a reading process; also how
            # this row was measured before the codec comparison existed), then rebuild it.
            del arrow_input
            t0 = time.perf_counter()
            table = read_articles(since="2026-11-27", until="2026-11-27", settings=settings)
            t_read = time.perf_counter() - t0
            assert table.num_rows == args.articles, (table.num_rows, args.articles)
            del table
            t0 = time.perf_counter()
            got = duckdb_query.query(
                "SELECT * FROM articles WHERE dt = '2026-11-27'",
                "bench",
                endpoint_url=settings.endpoint_url,
                key_id=settings.access_key_id,
                secret=settings.secret_access_key,
            )
            t_duck = time.perf_counter() - t0
            assert got.num_rows == args.articles, (got.num_rows, args.articles)
            del got
            history = _history_rows(settings, commit_counts)
            arrow_input = pa.Table.from_pylist(records) if codecs else None

            # The storage trade: other codecs, Arrow input, each against put_object of its own files.
            sweep = []
            for day, codec in enumerate(codecs, start=1):
                run = f"202612{day:02d}T060000Z"
                mk, t_c, c_c, s_c = clock.time(
                    lambda run=run, codec=codec: store_articles(
                        RunContext(run, s3=settings),
                        arrow_input,
                        max_rows_per_file=args.rows_per_file,
                        parquet_options=_codec_options(codec),
                    )
                )
                (_, nb), t_p, c_p, s_p = put_same_bytes(mk, codec)
                sweep.append((codec, nb, t_c, c_c, s_c, t_p, c_p, s_p))

        finally:
            server.down()

    n = args.articles
    mb = nbytes / 1e6
    rows = [
        ("store_articles (dict records -> S3, committed)", t_store, c_store, s_store),
        ("store_articles (Arrow table -> S3, committed)", t_arrow, c_arrow, s_arrow),
        ("naive: write_table in memory + put_object", t_naive, c_naive, s_naive),
        ("boto3 put_object (same Parquet bytes)", t_put, c_put, s_put),
    ]
    cpus = os.cpu_count() or 1
    print(
        f"\n{n:,} articles, {nfiles} files, {mb:.1f} MB Parquet ({default_codec}, {nbytes / n:,.0f} bytes/article), "
        f"Delta writer, {cpus} CPUs, load average {os.getloadavg()[0]:.2f}\n"
    )
    print(
        f"| {'operation':<46} | {'seconds':>7} | {'MB/s':>6} | {'articles/s':>10} | {'CPU-s here':>10} | {'CPU-s S3':>8} |"
    )
    print(f"|{'-' * 48}|{'-' * 9}|{'-' * 8}|{'-' * 12}|{'-' * 12}|{'-' * 10}|")
    for name, secs, cpu, cpu_s3 in rows:
        print(f"| {name:<46} | {secs:7.2f} | {mb / secs:6.1f} | {n / secs:10,.0f} | {cpu:10.2f} | {cpu_s3:8.2f} |")
    print(
        f"| {'read_articles (one day -> Arrow)':<46} | {t_read:7.2f} | {mb / t_read:6.1f} | {n / t_read:10,.0f} |"
        f" {'':>10} | {'':>8} |"
    )
    print(
        f"\nwrite ratio store/put_object: {t_put / t_store:.2f} from dict records, "
        f"{t_put_arrow / t_arrow:.2f} from Arrow (goal >= 0.8); "
        f"streaming store vs naive encode-then-put (Arrow input): {t_naive / t_arrow:.2f}"
    )
    # The CPU floor: on a small machine SeaweedFS alone keeps the cores busy during put_object,
    # so each CPU-second the store adds (encoding, here) adds wall time; the CPU ratio is then
    # the ceiling of the wall ratio, and it does not depend on other load.
    store_cpu, put_cpu = c_arrow + s_arrow, c_put_arrow + s_put_arrow
    print(
        f"CPU (Arrow input): store {c_arrow:.2f} here + {s_arrow:.2f} in SeaweedFS = {store_cpu:.2f} CPU-s; "
        f"put_object {c_put_arrow:.2f} + {s_put_arrow:.2f} = {put_cpu:.2f} CPU-s "
        f"(SeaweedFS used {s_put_arrow / t_put_arrow:.1f} of {cpus} CPUs during it): "
        f"CPU ratio {put_cpu / store_cpu:.2f}, the ceiling of the write ratio when the CPUs are the limit"
    )
    print(
        f"| {'DuckDB delta_scan (one day -> Arrow)':<46} | {t_duck:7.2f} | {mb / t_duck:6.1f} | {n / t_duck:10,.0f} |"
        f" {'':>10} | {'':>8} |"
    )
    print(f"read: {n / t_read:,.0f} articles/s through read_articles (goal >= 200,000), {n / t_duck:,.0f} via DuckDB")
    print(
        f"\n`read` of one small run, by the number of commits in the table (each commit: one run of "
        f"{HISTORY_RUN_ROWS} articles; seconds, best of 3, in this process):\n"
    )
    print(f"| {'commits':>7} | {'read --run X':>12} | {'read --since-version N':>22} |")
    print(f"|{'-' * 9}|{'-' * 14}|{'-' * 24}|")
    for commits, t_run, t_since in history:
        print(f"| {commits:>7,} | {t_run:12.3f} | {t_since:22.3f} |")
    if sweep:
        print(
            "\nCodecs (Arrow input; each against put_object of its own files; a bigger file slows the "
            "baseline too, so compare articles/s as well):\n"
        )
        print(
            f"| {'codec':<8} | {'MB':>6} | {'bytes/article':>13} | {'store s':>7} | {'articles/s':>10} |"
            f" {'put s':>6} | {'ratio':>5} | {'CPU-s store':>11} | {'CPU-s put':>9} | {'CPU ratio':>9} |"
        )
        print(
            f"|{'-' * 10}|{'-' * 8}|{'-' * 15}|{'-' * 9}|{'-' * 12}|{'-' * 8}|{'-' * 7}|{'-' * 13}|{'-' * 11}|{'-' * 11}|"
        )
        for codec, nb, t_c, c_c, s_c, t_p, c_p, s_p in [
            (default_codec, nbytes_arrow, t_arrow, c_arrow, s_arrow, t_put_arrow, c_put_arrow, s_put_arrow),
            *sweep,
        ]:
            print(
                f"| {codec:<8} | {nb / 1e6:6.1f} | {nb / n:13,.0f} | {t_c:7.2f} | {n / t_c:10,.0f} |"
                f" {t_p:6.2f} | {t_p / t_c:5.2f} | {c_c + s_c:11.2f} | {c_p + s_p:9.2f} |"
                f" {(c_p + s_p) / (c_c + s_c):9.2f} |"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
