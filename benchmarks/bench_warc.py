"""`make bench-warc`: import a CC-NEWS-shaped archive built from the extraction benchmark's pages.

The 181 pages of ../shared/benchmarks/article-extraction-benchmark (read at bench time, never copied
into the repository) are written as response records (with request and metadata records, gzip per
record) mixed with non-HTML bodies (PDF, JSON, images) and non-200 responses (404, 301, 500) to about
2,000 responses. `import-warc`'s path (`pipeline.flows.warc_import.import_archives`) imports it into an
embedded SeaweedFS; printed: records/s, articles/s, CPU-s per stored article (this process and its
workers), peak memory (the process tree, sampled), and the stored texts' F1 against the ground truth
next to the extractor alone on the same pages.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import random
import resource
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

from examples.sample_site.benchmark_outlet import DEFAULT_BENCH_DIR
from examples.sample_site.warc_archive import FETCHED, ArchivePage, write_archive

FILLER_KINDS = [
    ("application/pdf", 200, 40_000),
    ("application/json", 200, 2_000),
    ("image/jpeg", 200, 60_000),
    ("text/html; charset=utf-8", 404, 3_000),
    ("text/html; charset=utf-8", 301, 0),
    ("text/html; charset=utf-8", 500, 1_000),
]


def build_pages(bench_dir: Path, total: int = 2000) -> tuple[list[ArchivePage], dict[str, str]]:
    """The benchmark's pages plus filler responses to `total`, shuffled (fixed seed); and url -> true body."""
    truth = json.loads((bench_dir / "ground-truth.json").read_text(encoding="utf-8"))
    pages, truths = [], {}
    for i, page_id in enumerate(sorted(truth)):
        path = bench_dir / "html" / f"{page_id}.html.gz"
        if not path.is_file():
            continue
        url = truth[page_id].get("url") or f"https://bench.example/{page_id}.html"
        body = gzip.decompress(path.read_bytes())
        pages.append(ArchivePage(url, body, fetched=FETCHED - timedelta(minutes=i)))
        truths[url] = truth[page_id]["articleBody"]
    rng = random.Random(20)
    n = 0
    while len(pages) < total:
        mime, status, size = FILLER_KINDS[n % len(FILLER_KINDS)]
        body = rng.randbytes(size) if "html" not in mime else b"<html><body>" + b"x " * (size // 2) + b"</body></html>"
        pages.append(ArchivePage(f"https://filler{n % 37}.example/{n}", body, status=status, content_type=mime))
        n += 1
    rng.shuffle(pages)
    return pages, truths


def _cpu() -> float:
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def _rss_tree(pid: int) -> int:
    """Resident bytes of `pid` and its children (one level: the extraction workers)."""
    total = 0
    for p in [pid, *_children(pid)]:
        try:
            with open(f"/proc/{p}/statm") as fh:
                total += int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except OSError:
            pass
    return total


def _children(pid: int) -> list[int]:
    out = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            out += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            pass
    return out


def run(bench_dir: Path, total: int, workers: int | None) -> dict:
    import threading

    import pyarrow as pa

    from benchmarks.scoring import score
    from pipeline.core.config import S3Settings
    from pipeline.dataset.read import iter_tables
    from pipeline.dataset.warc_sources import Remote, expand
    from pipeline.flows.warc_import import ImportOptions, import_archives
    from pipeline.runtime.s3server import EmbeddedS3

    pages, truths = build_pages(bench_dir, total)
    with tempfile.TemporaryDirectory(prefix="bench-warc-") as tmp:
        tmp_path = Path(tmp)
        archive = tmp_path / "CC-NEWS-bench-00000.warc.gz"
        write_archive(archive, pages)
        server = EmbeddedS3(tmp_path / "s3")
        info = server.up("news")
        saved = dict(os.environ)
        try:
            settings = S3Settings(
                endpoint_url=info.endpoint_url,
                access_key_id=info.access_key_id,
                secret_access_key=info.secret_access_key,
                bucket="news",
            )
            os.environ.update({"NEWS_INGEST_HOME": str(tmp_path), **settings.as_env()})
            opts = ImportOptions(name="bench", s3=settings, remote=Remote(s3=settings), workers=workers)
            peak = [0]
            stop = threading.Event()

            def sample() -> None:
                while not stop.wait(0.1):
                    peak[0] = max(peak[0], _rss_tree(os.getpid()))

            sampler = threading.Thread(target=sample, daemon=True)
            sampler.start()
            cpu0, t0 = _cpu(), time.perf_counter()
            (summary,) = import_archives(expand([str(archive)], Remote()), opts)
            wall, cpu = time.perf_counter() - t0, _cpu() - cpu0
            stop.set()
            sampler.join()
            tables = list(iter_tables(source="bench", settings=settings))
            rows = pa.concat_tables(tables).to_pylist() if tables else []
        finally:
            server.down()
            os.environ.clear()
            os.environ.update(saved)
    stored = {r["url"]: r["text"] for r in rows}
    counts = summary["counts"]
    responses = counts["responses"]
    return {
        "archive_bytes": archive_size(pages),
        "responses": responses,
        "kept": counts["kept"],
        "stored": len(rows),
        "skipped": counts["skipped"],
        "wall_s": round(wall, 2),
        "records_per_s": round(responses / wall, 1),
        "articles_per_s": round(len(rows) / wall, 2),
        "cpu_s": round(cpu, 2),
        "cpu_s_per_article": round(cpu / max(1, len(rows)), 4),
        "peak_rss_mib": round(peak[0] / 2**20, 1),
        "f1_stored": round(score({u: stored.get(u, "") for u in truths}, truths)["f1"], 4),
    }


def archive_size(pages: list[ArchivePage]) -> int:
    return sum(len(p.body) for p in pages)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bench-dir", type=Path, default=DEFAULT_BENCH_DIR)
    parser.add_argument("--records", type=int, default=2000, help="responses in the archive (default 2000)")
    parser.add_argument("--workers", type=int, default=None)
    args = parser.parse_args(argv)
    started = datetime.now(timezone.utc)
    result = run(args.bench_dir, args.records, args.workers)
    print(json.dumps({"started": started.isoformat(timespec="seconds"), **result}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
