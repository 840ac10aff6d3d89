"""Writes the bucket in this folder with the manifest store (the code before the Delta table, commit 4b96f71).

Run with that tree first on the path:  PYTHONPATH=<tree of 4b96f71> python tests/data/legacy_bucket/make.py
It holds what `python -m pipeline migrate` must handle: two days, a whole re-run and a one-source re-run
(superseded attempts), a compacted day, a run re-committed after its compaction, and a data file of an
attempt that died before its manifest. `expected.json`: the article ids the manifest reader returned.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

from benchmarks.bench_store import generate_articles
from pipeline.core.bucket import Bucket
from pipeline.core.context import RunContext
from pipeline.dataset.read import read_articles
from pipeline.runtime.s3server import EmbeddedS3, free_port
from pipeline.stages.store import compact, store_articles

HERE = Path(__file__).resolve().parent


def main() -> None:
    home = Path(tempfile.mkdtemp())
    server = EmbeddedS3(home / "s3", s3_port=free_port())
    info = server.up("news")
    settings = info.settings("news")
    try:
        a, b, c = "20261126T230000Z", "20261127T060000Z", "20261127T120000Z"
        store_articles(RunContext(a, s3=settings), generate_articles(12, seed=1, words=8), max_rows_per_file=5)
        store_articles(RunContext(a, s3=settings), generate_articles(10, seed=2, words=8), max_rows_per_file=5)
        store_articles(RunContext(b, s3=settings), generate_articles(15, seed=3, words=8), max_rows_per_file=6)
        store_articles(RunContext(c, s3=settings), generate_articles(8, seed=4, words=8))
        compact(settings, "2026-11-27")
        store_articles(RunContext(c, s3=settings), generate_articles(6, seed=5, words=8))  # after the compaction
        bucket = Bucket(settings)
        orphan = next(k for k in bucket.list("articles/dt=2026-11-27/") if k.endswith(".parquet"))
        bucket.put(orphan.rsplit("/", 1)[0] + "/part-deadattempt-00000.parquet", bucket.get(orphan))
        expected = sorted(read_articles(settings=settings, columns=["article_id"]).column("article_id").to_pylist())
        out = HERE / "bucket"
        shutil.rmtree(out, ignore_errors=True)
        for key in bucket.list(""):
            (out / key).parent.mkdir(parents=True, exist_ok=True)
            (out / key).write_bytes(bucket.get(key))
        (HERE / "expected.json").write_text(json.dumps(expected, indent=0) + "\n")
    finally:
        server.down()
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
