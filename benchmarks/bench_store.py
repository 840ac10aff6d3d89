"""Store/read benchmark: `python -m benchmarks.bench_store [--articles N]`.

Starts its own SeaweedFS (EmbeddedS3 in a temp dir) and measures, in one process:

* write: `store_articles` (records -> Parquet -> S3 -> manifest) against plain boto3
  `put_object` of the very same Parquet bytes (goal: ratio >= 0.8);
* read: `read_articles` of the whole day back into Arrow (goal: >= 50,000 articles/s).

Timings on a shared machine are noisy: compare the ratio, measured in the same run.
"""

from __future__ import annotations

import argparse
import io
import random
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

_WORDS = ("the government said on tuesday that new rules for energy markets would take effect "
          "next year after months of talks between ministers regulators and industry groups "
          "critics argued prices could rise while supporters pointed to lower emissions and "
          "investment in grids storage and local production across the region").split()
SOURCES = ("daily-planet", "gazette", "wire-service", "tribune", "chronicle")


def generate_articles(n: int, *, seed: int = 0, words: int = 450, run_tag: str = "") -> list[dict]:
    """`n` dedupe-stage records with realistic field sizes (~450 words of text each)."""
    rng = random.Random(seed)
    base = datetime(2026, 11, 27, 6, 0, tzinfo=timezone.utc)
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
        out.append({
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
            "warc_key": f"raw/dt=2026-11-27/run=x/{src}/{src}-00000.warc.gz",
            "warc_record_id": f"<urn:uuid:{rng.getrandbits(128):032x}>",
            "extractor_version": "trafilatura-2.3.1+rules-1",
            "removed": [{"rule": "see-also", "text": "See also: another headline"}] if i % 3 == 0 else [],
            "fetched_at": (base + timedelta(seconds=i)).isoformat(),
            "http_etag": '"abc"',
        })
    return out


def main(argv: list[str] | None = None) -> int:
    import pyarrow as pa  # imported here: the module import stays cheap for tests
    import pyarrow.parquet as pq

    from pipeline.schema import table_to_articles
    from pipeline.store import PARQUET_OPTIONS, ROW_GROUP_ROWS

    from pipeline.config import S3Settings
    from pipeline.context import RunContext
    from pipeline.read import read_articles
    from pipeline.s3 import Bucket
    from pipeline.s3server import EmbeddedS3
    from pipeline.store import store_articles

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--articles", type=int, default=100_000)
    parser.add_argument("--rows-per-file", type=int, default=100_000)
    args = parser.parse_args(argv)

    print(f"generating {args.articles:,} articles ...", flush=True)
    records = generate_articles(args.articles)
    with tempfile.TemporaryDirectory(prefix="bench-store-") as tmp:
        server = EmbeddedS3(Path(tmp) / "s3")
        info = server.up("bench")
        try:
            settings = S3Settings(endpoint_url=info.endpoint_url, access_key_id=info.access_key_id,
                                  secret_access_key=info.secret_access_key, bucket="bench")
            bucket = Bucket(settings)
            # Warm-up (connection pool, volume allocation) so neither side pays it.
            store_articles(RunContext("20261126T000000Z", s3=settings), records[:2000])

            ctx = RunContext("20261127T060000Z", s3=settings)
            t0 = time.perf_counter()
            mkey = store_articles(ctx, records, max_rows_per_file=args.rows_per_file)
            t_store = time.perf_counter() - t0
            # The same articles already in Arrow (what store_stage gets from pyarrow.json), another day.
            arrow_input = pa.Table.from_pylist(records)
            t0 = time.perf_counter()
            store_articles(RunContext("20261128T060000Z", s3=settings), arrow_input,
                           max_rows_per_file=args.rows_per_file)
            t_store_arrow = time.perf_counter() - t0
            # Context: the naive way from the same Arrow input (encode all in memory, then one PUT).
            t0 = time.perf_counter()
            sink = io.BytesIO()
            pq.write_table(table_to_articles(arrow_input, run_id="20261129T060000Z", ingested_at=datetime.now(timezone.utc)),
                           sink, row_group_size=ROW_GROUP_ROWS, **PARQUET_OPTIONS)
            bucket.client.put_object(Bucket="bench", Key="naive/part-00000.parquet", Body=sink.getvalue())
            t_naive = time.perf_counter() - t0
            del arrow_input, sink
            manifest = bucket.get_json(mkey)
            bodies = [bucket.get(f["key"]) for f in manifest["files"]]
            nbytes = sum(len(b) for b in bodies)

            t0 = time.perf_counter()
            for i, body in enumerate(bodies):
                bucket.client.put_object(Bucket="bench", Key=f"baseline/part-{i:05d}.parquet", Body=body)
            t_put = time.perf_counter() - t0

            t0 = time.perf_counter()
            table = read_articles(since="2026-11-27", until="2026-11-27", settings=settings)
            t_read = time.perf_counter() - t0
            assert table.num_rows == args.articles, (table.num_rows, args.articles)
        finally:
            server.down()

    mb = nbytes / 1e6
    rows = [
        ("store_articles (dict records -> S3, committed)", t_store, mb / t_store, args.articles / t_store),
        ("store_articles (Arrow table -> S3, committed)", t_store_arrow, mb / t_store_arrow,
         args.articles / t_store_arrow),
        ("naive: write_table in memory + put_object", t_naive, mb / t_naive, args.articles / t_naive),
        ("boto3 put_object (same Parquet bytes)", t_put, mb / t_put, args.articles / t_put),
        ("read_articles (one day -> Arrow)", t_read, mb / t_read, args.articles / t_read),
    ]
    print(f"\n{args.articles:,} articles, {len(bodies)} files, {mb:.1f} MB Parquet (zstd)\n")
    print(f"| {'operation':<46} | {'seconds':>8} | {'MB/s':>8} | {'articles/s':>11} |")
    print(f"|{'-' * 48}|{'-' * 10}|{'-' * 10}|{'-' * 13}|")
    for name, secs, mbs, aps in rows:
        print(f"| {name:<46} | {secs:8.2f} | {mbs:8.1f} | {aps:11,.0f} |")
    print(f"\nwrite ratio store/put_object: {t_put / t_store:.2f} from dict records, "
          f"{t_put / t_store_arrow:.2f} from Arrow (goal >= 0.8); "
          f"streaming store vs naive encode-then-put (Arrow input): {t_naive / t_store_arrow:.2f}")
    print(f"read: {args.articles / t_read:,.0f} articles/s (goal >= 50,000)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
