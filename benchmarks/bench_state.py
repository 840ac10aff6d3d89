"""State benchmark: `python -m benchmarks.bench_state [--sizes 100000,1000000] [--run 1000] [--dedupe-run 5000]`.

Starts its own SeaweedFS (EmbeddedS3 in a temp dir) and builds, per history size, a synthetic
history in it: that many seen URLs of one source (`state/seen/<source>/<shard>.json`, the
sharded layout of `pipeline.dataset.state`) and that many documents in the near-duplicate
index (`state/dedupe/v1/`, 30 day shards of random signatures and rewrite features, written
with `DedupeIndex.to_bytes`). Then it measures, each in a fresh child process (so its peak RSS
is that operation's alone, imports included; the RSS before the operation is printed too):

* crawl start: what `IncrementalMiddleware.spider_opened` does (open the lazy seen, refused and
  HTTP views), then the lookups a crawl makes for the URLs it discovers (`--run` URLs, half of
  them in the history; one at a time, as the spider asks) and the same with one `prefetch`;
* update: `record_stored` of a `--run`-article run (the commit-time state update: one delta object;
  `UPDATES` commits, the median reported);
* fold: `fold_deltas` of those runs' deltas into the shards they touch (what maintenance does daily,
  off the commit's path);
* dedupe: `dedupe_stage` of a `--dedupe-run`-article run (`benchmarks.dedupe_data.speed_corpus`)
  against the index, on a worker whose key cache (`NEWS_INGEST_CACHE_DIR`, `dedupe_index.KeyCache`)
  is cold (the first run on a fresh worker: it downloads the window's key sections), then warm (the
  next run, other articles: only segments written since are new to it; its own last one was cached
  when written). `--dedupe-off` adds a run with the cache off (ranged reads of key blocks: slow at
  1,000,000). The same run against an empty index is measured once: the stage's own work (signatures,
  rewrite features, input and output), which no index layout removes.

Goals (issue #19) at 1,000,000: crawl start <= 1 s and <= 200 MB, update <= 2 s, dedupe of
5,000 <= 5 s and <= 500 MB; the 1,000,000 figures within 1.5x of the 100,000 ones.
Timings on a shared 2-core machine are noisy; the server shares the cores.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import date, timedelta
from pathlib import Path

RUN_DAY = "2026-11-27"
SOURCE = "bench"
WINDOW = 30


def _url(i: int) -> str:
    return f"https://www.example-news.com/2026/11/{i % 28 + 1:02d}/story-about-the-economy-and-markets-{i:08d}"


def _rss_mb() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def _peak_mb() -> float:
    """VmHWM: this process image's peak RSS (ru_maxrss would carry the parent's peak over the exec)."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0


# --------------------------------------------------------------------------- building the history


def build_seen(bucket, size: int) -> None:
    """`size` seen entries of SOURCE, written straight into their shards (what years of commits leave)."""
    from pipeline.core.layout import SEEN_PREFIX, state_shard_key
    from pipeline.dataset.state import SHARDS, shard_of

    n = SHARDS[SEEN_PREFIX]
    shards: list[dict] = [{} for _ in range(n)]
    for i in range(size):
        url = _url(i)
        shards[shard_of(url, n)][url] = {
            "url": url,
            "content_hash": f"{i:064x}",
            "etag": f'W/"{i:x}-5f3a"',
            "last_modified": "Tue, 24 Nov 2026 10:00:00 GMT",
            "stored_at": "2026-11-24T10:00:00.123456+00:00",
            "article_id": f"{i:024x}",
            "run_id": "20261124T100000Z",
        }

    def put(s: int) -> None:
        body = json.dumps(shards[s], separators=(",", ":")).encode()
        bucket.put(state_shard_key(SEEN_PREFIX, SOURCE, s), body, content_type="application/json")

    _ = bucket.client
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(put, range(n)))


def build_index(bucket, size: int, prefix: str, fmt: str = "v2") -> None:
    """`size` index rows over the WINDOW days up to RUN_DAY (random signatures): one old-format day
    file (`fmt` v1) or one segment (v2) per day."""
    import numpy as np

    from pipeline.core.layout import dedupe_segment_key
    from pipeline.stages.dedupe_index import (
        REWRITE_BANDS,
        REWRITE_PERM,
        REWRITE_ROWS,
        DedupeConfig,
        DedupeIndex,
        band_keys,
        day_number,
        encode_segment,
    )

    rng = np.random.default_rng(7)
    per_day = size // WINDOW
    end = date.fromisoformat(RUN_DAY)
    for d in range(WINDOW):
        day = (end - timedelta(days=WINDOW - 1 - d)).isoformat()
        index = DedupeIndex(DedupeConfig())
        index.prefix, index.run_date = prefix, day
        for start in range(0, per_day, 5000):
            k = min(5000, per_day - start)
            sig = rng.integers(0, 1 << 16, (k, index.config.num_perm), dtype=np.uint16)
            rw_sig = rng.integers(0, 1 << 16, (k, REWRITE_PERM), dtype=np.uint16)
            n_terms = rng.integers(150, 384, k)
            terms = [rng.integers(0, 1 << 16, t, dtype=np.uint16) for t in n_terms]
            lens = [np.full(t // 20 + 1, 20, dtype=np.uint8) for t in n_terms]
            ids = [os.urandom(12).hex() for _ in range(k)]
            index.append(
                sig16=sig,
                bkeys=index.band_keys(sig),
                url_key=rng.integers(0, 1 << 63, k, dtype=np.uint64),
                content_key=rng.integers(0, 1 << 63, k, dtype=np.uint64),
                ids={"article_id": ids, "cluster_id": ids, "supersedes": [None] * k, "story_id": ids},
                version=np.ones(k, dtype=np.int32),
                day=day_number(day),
                run_id=day.replace("-", "") + "T000000Z",
                linked=np.ones(k, dtype=bool),
                rewrite=(rw_sig, band_keys(rw_sig, REWRITE_BANDS, REWRITE_ROWS), terms, lens),
            )
        if fmt == "v1":
            bucket.put(index.shard_key(prefix, day), index.to_bytes())
        else:
            bucket.put(dedupe_segment_key(day, 1), encode_segment(index, np.arange(index.n), index.runs))


# --------------------------------------------------------------------------- measured operations (children)


def op_crawl_start(bucket, size: int, run: int) -> dict:
    from pipeline.dataset.state import open_http, open_refused, open_seen

    urls = [_url(i) for i in range(size - run // 2, size + run - run // 2)]  # half seen, half new
    t0 = time.perf_counter()
    seen = open_seen(bucket, SOURCE, exclude_run="20261127T120000Z")
    refused = open_refused(bucket, SOURCE, exclude_run="20261127T120000Z")
    http = open_http(bucket, SOURCE)
    t_open = time.perf_counter() - t0
    t0 = time.perf_counter()
    hits = sum(1 for u in urls if u in seen or u in refused)
    http.get("https://www.example-news.com/sitemap.xml")
    t_lookups = time.perf_counter() - t0
    assert hits == run // 2, hits
    seen2 = open_seen(bucket, SOURCE)
    t0 = time.perf_counter()
    seen2.prefetch(urls)
    hits2 = sum(1 for u in urls if u in seen2)
    t_prefetch = time.perf_counter() - t0
    assert hits2 == run // 2
    return {"open_s": t_open, "lookups_s": t_lookups, "prefetch_s": t_prefetch, "shards_read": seen.shards_read}


#: Commits measured per history size (a shared machine is noisy: the median is reported).
UPDATES = 3


def op_update(bucket, size: int, run: int) -> dict:
    from pipeline.dataset.state import record_stored

    times = []
    for n in range(UPDATES):
        base = size + 10_000 + n * run
        rows = [
            {
                "source": SOURCE,
                "canonical_url": _url(base + i),
                "url": _url(base + i),
                "content_hash": f"{i:064x}",
                "http_etag": '"x"',
                "http_last_modified": None,
                "article_id": f"{i:024x}",
                "run_id": f"20261127T12000{n}Z",
            }
            for i in range(run)
        ]
        t0 = time.perf_counter()
        record_stored(bucket, rows)
        times.append(time.perf_counter() - t0)
    return {"update_s": sorted(times)[len(times) // 2], "update_max_s": max(times)}


def op_fold(bucket, size: int, run: int) -> dict:
    from pipeline.core.layout import SEEN_PREFIX
    from pipeline.dataset.state import fold_deltas

    t0 = time.perf_counter()
    n = fold_deltas(bucket, SEEN_PREFIX, SOURCE)
    assert n == run * UPDATES, n
    return {"fold_s": time.perf_counter() - t0}


def op_dedupe(bucket, settings, cleaned_key: str, run_id: str) -> dict:
    from pipeline.core.context import RunContext
    from pipeline.stages import dedupe_index
    from pipeline.stages.dedupe import dedupe_stage

    ctx = RunContext(run_id=run_id, s3=settings)
    t0 = time.perf_counter()
    cpu0 = time.process_time()
    dedupe_stage(ctx, cleaned_key)
    fetched, cache = dedupe_index.FETCHED, dedupe_index.CACHE_STATS
    return {
        "dedupe_s": time.perf_counter() - t0,
        "cpu_s": time.process_time() - cpu0,
        "index_mb": fetched["bytes"] / 1e6,
        "index_gets": fetched["requests"],
        "download_mb": cache["download_bytes"] / 1e6,
        "downloads": cache["downloads"],
        "cache_hits": cache["hits"],
    }


def child(args: argparse.Namespace) -> int:
    from pipeline.core.bucket import Bucket
    from pipeline.core.config import S3Settings

    settings = S3Settings.from_env()
    bucket = Bucket(settings)
    if args.op == "dedupe":
        import pipeline.stages.dedupe
    else:
        import pipeline.dataset.state  # noqa: F401
    _ = bucket.client
    base = _rss_mb()
    if args.op == "crawl_start":
        out = op_crawl_start(bucket, args.size, args.run)
    elif args.op == "update":
        out = op_update(bucket, args.size, args.run)
    elif args.op == "fold":
        out = op_fold(bucket, args.size, args.run)
    else:
        out = op_dedupe(bucket, settings, args.cleaned, args.run_id)
    out.update(base_rss_mb=base, peak_rss_mb=_peak_mb())
    print(json.dumps(out))
    return 0


def _run_child(env: dict, *argv: str) -> dict:
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.bench_state", "--child", *argv],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"child {argv} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# --------------------------------------------------------------------------- driver


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100000,1000000")
    parser.add_argument("--run", type=int, default=1000, help="URLs a crawl discovers / articles a commit records")
    parser.add_argument("--dedupe-run", type=int, default=5000)
    parser.add_argument("--skip-dedupe", action="store_true", help="measure the seen state only (no index)")
    parser.add_argument("--index-format", choices=("v1", "v2"), default="v2", help="v1: old whole day files")
    parser.add_argument("--skip-seen", action="store_true", help="measure the dedupe index only (no seen state)")
    parser.add_argument("--dedupe-off", action="store_true", help="also run dedupe with the key cache off")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--op", help=argparse.SUPPRESS)
    parser.add_argument("--size", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--cleaned", help=argparse.SUPPRESS)
    parser.add_argument("--run-id", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return child(args)

    from benchmarks.dedupe_data import speed_corpus
    from pipeline.core.bucket import Bucket
    from pipeline.core.layout import DEDUPE_INDEX_PREFIX
    from pipeline.runtime.s3server import EmbeddedS3

    sizes = [int(s) for s in args.sizes.split(",") if s]
    results: dict[int, dict] = {}
    floor: dict = {}
    with tempfile.TemporaryDirectory(prefix="bench-state-") as tmp:
        server = EmbeddedS3(Path(tmp) / "s3")
        info = server.up("warmup")

        def env_of(bucket_name: str, cache: str) -> dict:
            return {
                **os.environ,
                "AWS_ENDPOINT_URL": info.endpoint_url,
                "AWS_ACCESS_KEY_ID": info.access_key_id,
                "AWS_SECRET_ACCESS_KEY": info.secret_access_key,
                "NEWS_INGEST_BUCKET": bucket_name,
                "NEWS_INGEST_CACHE_DIR": cache,
            }

        try:
            # Two runs' articles: the cold run's, and the next run's (other articles) on the warm worker.
            runs = {
                "cold": (list(speed_corpus(args.dedupe_run, seed=23)), "T120000Z"),
                "warm": (list(speed_corpus(args.dedupe_run, seed=24)), "T130000Z"),
                "off": (list(speed_corpus(args.dedupe_run, seed=25)), "T140000Z"),
            }
            day = RUN_DAY.replace("-", "")
            if not args.skip_dedupe:  # the stage against an empty index: its own work, the floor
                bucket = Bucket(info.settings("state0"))
                bucket.ensure()
                cleaned = f"work/dt={RUN_DAY}/run=floor/cleaned.jsonl.gz"
                bucket.put_jsonl(cleaned, runs["cold"][0])
                floor = _run_child(
                    env_of("state0", "off"), "--op", "dedupe", "--cleaned", cleaned, "--run-id", f"{day}T120000Z"
                )
                print("dedupe against an empty index:", json.dumps(floor), flush=True)
            for size in sizes:
                bucket_name = f"state{size}"
                settings = info.settings(bucket_name)
                bucket = Bucket(settings)
                bucket.ensure()
                t0 = time.perf_counter()
                if not args.skip_seen:
                    build_seen(bucket, size)
                t_seen = time.perf_counter() - t0
                t0 = time.perf_counter()
                if not args.skip_dedupe:
                    build_index(bucket, size, DEDUPE_INDEX_PREFIX, args.index_format)
                t_index = time.perf_counter() - t0
                print(f"history {size:,}: seen state built in {t_seen:.1f} s, index in {t_index:.1f} s", flush=True)
                cache = str(Path(tmp) / f"cache-{size}")  # a fresh worker's cache: empty
                env = env_of(bucket_name, cache)
                common = ["--size", str(size), "--run", str(args.run)]
                results[size] = {}
                if not args.skip_seen:
                    results[size] = {
                        "crawl_start": _run_child(env, "--op", "crawl_start", *common),
                        "update": _run_child(env, "--op", "update", *common),
                        "fold": _run_child(env, "--op", "fold", *common),
                    }
                if not args.skip_dedupe:
                    for mode in ("cold", "warm", "off") if args.dedupe_off else ("cold", "warm"):
                        docs, hhmmss = runs[mode]
                        cleaned = f"work/dt={RUN_DAY}/run={mode}/cleaned.jsonl.gz"
                        bucket.put_jsonl(cleaned, docs)
                        argv = ["--op", "dedupe", "--cleaned", cleaned, "--run-id", f"{day}{hhmmss}", *common]
                        results[size][f"dedupe_{mode}"] = _run_child(
                            env if mode != "off" else env_of(bucket_name, "off"), *argv
                        )
                print(json.dumps(results[size]), flush=True)
        finally:
            server.down()
    _print_table(results, args, floor)
    return 0


def _print_table(results: dict[int, dict], args: argparse.Namespace, floor: dict | None = None) -> None:
    sizes = sorted(results)
    rows = [
        ("crawl start: open the state views (s)", "crawl_start", "open_s"),
        (f"crawl: {args.run:,} URL lookups, one by one (s)", "crawl_start", "lookups_s"),
        (f"crawl: {args.run:,} URL lookups after one prefetch (s)", "crawl_start", "prefetch_s"),
        ("crawl: seen shards read", "crawl_start", "shards_read"),
        ("crawl start: peak RSS of the process (MB)", "crawl_start", "peak_rss_mb"),
        ("crawl start: RSS after imports (MB)", "crawl_start", "base_rss_mb"),
        (f"update: record_stored of {args.run:,} articles, median of {UPDATES} (s)", "update", "update_s"),
        (f"update: the slowest of the {UPDATES} (s)", "update", "update_max_s"),
        ("update: peak RSS (MB)", "update", "peak_rss_mb"),
        (f"fold (maintenance): those {UPDATES} deltas into the shards (s)", "fold", "fold_s"),
        ("fold: peak RSS (MB)", "fold", "peak_rss_mb"),
    ]
    for mode, what in (("warm", "warm cache"), ("cold", "cold cache"), ("off", "cache off")):
        rows += [
            (f"dedupe_stage of {args.dedupe_run:,} articles, {what} (s)", f"dedupe_{mode}", "dedupe_s"),
            (f"dedupe, {what}: CPU time of the process (s)", f"dedupe_{mode}", "cpu_s"),
            (f"dedupe, {what}: peak RSS (MB)", f"dedupe_{mode}", "peak_rss_mb"),
            (f"dedupe, {what}: S3 bytes read by the index (MB)", f"dedupe_{mode}", "index_mb"),
            (f"dedupe, {what}: S3 GETs of the index", f"dedupe_{mode}", "index_gets"),
            (f"dedupe, {what}: key sections downloaded (MB)", f"dedupe_{mode}", "download_mb"),
        ]
    rows.append(("dedupe: RSS after imports (MB)", "dedupe_cold", "base_rss_mb"))
    head = f"{'':58}" + "".join(f"{s:>14,}" for s in sizes)
    if len(sizes) >= 2:
        head += f"{'last/first':>11}"
    print("\n" + head)
    for label, op, field in rows:
        if op not in results[sizes[0]]:
            continue
        vals = [results[s][op][field] for s in sizes]
        line = f"{label:58}" + "".join(f"{v:>14.3f}" if isinstance(v, float) else f"{v:>14,}" for v in vals)
        if len(sizes) >= 2 and vals[0]:
            line += f"{vals[-1] / vals[0]:>11.2f}"
        print(line)
    if floor:
        print(
            f"\ndedupe_stage of {args.dedupe_run:,} articles against an empty index (the stage's own work): "
            f"{floor['dedupe_s']:.2f} s, CPU {floor['cpu_s']:.2f} s, peak RSS {floor['peak_rss_mb']:.0f} MB"
        )


if __name__ == "__main__":
    sys.exit(main())
