"""`make bench-warc`: import a CC-NEWS-shaped archive built from the extraction benchmark's pages.

    .venv/bin/python -m benchmarks.bench_warc [--e2e | --e2e-json e2e.json] [--records 2000] [--json out.json]

The 181 pages of ../shared/benchmarks/article-extraction-benchmark (read at bench time, never copied
into the repository) are written as response records (with request and metadata records, gzip per
record) mixed with non-HTML bodies (PDF, JSON, images) and non-200 responses (404, 301, 500) to about
2,000 responses. `import-warc`'s path (`pipeline.flows.warc_import.import_archives`) imports it into an
embedded SeaweedFS. Printed: records/s, articles/s; CPU seconds of the whole process tree (this process
and its extraction workers, alive or not; `benchmarks.harness.TreeCpu`), in all and per stored article,
with the S3 server's apart; peak memory of the tree (summed PSS, and summed RSS as an upper bound); the
stored texts' F1 against the ground truth next to the extractor alone on the same pages.

Then the issue's goals: CPU per stored article <= 0.6x the live crawl path's (`--e2e` runs `bench_e2e`
after the import, in the same session; `--e2e-json` reads a saved result), stored F1 equal to the
extractor alone, peak memory < 1 GiB."""

from __future__ import annotations

import argparse
import gzip
import json
import os
import random
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

from benchmarks.harness import MIB, TreeCpu, TreeMemorySampler
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
#: The issue's goal: CPU per stored article at most this times the live crawl path's (`bench_e2e`).
GOAL_CPU_RATIO = 0.6


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


def extractor_alone(pages: list[ArchivePage], truths: dict[str, str]) -> tuple[dict[str, str], float]:
    """`article_from_html` (extract, then clean) over the benchmark pages in this process, decoded as the
    import decodes them: ({url: text}, seconds)."""
    from pipeline.core.errors import NotAnArticle
    from pipeline.flows.pages import article_from_html
    from pipeline.text.decoding import decode_html

    out: dict[str, str] = {}
    t0 = time.perf_counter()
    for page in pages:
        if page.url not in truths:
            continue
        try:
            out[page.url] = article_from_html(decode_html(page.content_type, page.body), page.url)["text"]
        except NotAnArticle:
            out[page.url] = ""
    return out, time.perf_counter() - t0


def run(bench_dir: Path, total: int, workers: int | None, *, chunk_records: int | None = None) -> dict:
    """Build the archive, import it into an embedded SeaweedFS, read back and score; every number printed."""
    import pyarrow as pa

    from benchmarks.scoring import score
    from pipeline.dataset.read import iter_tables
    from pipeline.dataset.warc_sources import Remote, expand
    from pipeline.flows.warc_import import DEFAULT_CHUNK_RECORDS, ImportOptions, import_archives
    from pipeline.runtime.s3server import EmbeddedS3

    pages, truths = build_pages(bench_dir, total)
    with tempfile.TemporaryDirectory(prefix="bench-warc-") as tmp:
        tmp_path = Path(tmp)
        archive = tmp_path / "CC-NEWS-bench-00000.warc.gz"
        write_archive(archive, pages)
        archive_bytes = archive.stat().st_size
        server = EmbeddedS3(tmp_path / "s3")
        info = server.up("news")
        saved = dict(os.environ)
        try:
            settings = info.settings("news")
            os.environ.update({"NEWS_INGEST_HOME": str(tmp_path), **settings.as_env()})
            opts = ImportOptions(
                name="bench",
                s3=settings,
                remote=Remote(s3=settings),
                workers=workers,
                chunk_records=chunk_records or DEFAULT_CHUNK_RECORDS,
            )
            files = expand([str(archive)], Remote())
            with TreeMemorySampler(exclude={info.pid}, interval=0.1) as memory:
                clock = TreeCpu(apart={"s3": info.pid}).start()
                t0 = time.perf_counter()
                (summary,) = import_archives(files, opts)
                wall = time.perf_counter() - t0
                cpu = clock.stop()
            tables = list(iter_tables(source="bench", settings=settings))
            rows = pa.concat_tables(tables).to_pylist() if tables else []
        finally:
            server.down()
            os.environ.clear()
            os.environ.update(saved)
    alone, alone_seconds = extractor_alone(pages, truths)
    stored = {r["url"]: r["text"] for r in rows}
    counts = summary["counts"]
    responses = counts["responses"]
    pipeline = cpu["pipeline"] - memory.cpu_seconds  # the sampler thread runs in this process: not the import's
    return {
        "archive_bytes": archive_bytes,
        "responses": responses,
        "kept": counts["kept"],
        "stored": len(rows),
        "skipped": counts["skipped"],
        "wall_s": round(wall, 2),
        "records_per_s": round(responses / wall, 1),
        "articles_per_s": round(len(rows) / wall, 2),
        "cpu_s": round(pipeline, 2),
        "cpu_s_main": round(cpu["main"] - memory.cpu_seconds, 2),
        "cpu_s_s3": round(cpu["s3"], 2),
        "cpu_s_sampler": round(memory.cpu_seconds, 2),
        "cpu_s_per_article": round(pipeline / max(1, len(rows)), 4),
        "cpu_s_per_article_with_s3": round((pipeline + cpu["s3"]) / max(1, len(rows)), 4),
        "peak_pss_mib": round(memory.peak_pss / MIB, 1),
        "peak_rss_sum_mib": round(memory.peak / MIB, 1),
        "peak_main_rss_mib": round(memory.peak_root / MIB, 1),
        "peak_s3_rss_mib": round(memory.peak_excluded / MIB, 1),
        "peak_processes": memory.peak_processes,
        "f1_stored": round(score({u: stored.get(u, "") for u in truths}, truths)["f1"], 4),
        "f1_alone": round(score(alone, truths)["f1"], 4),
        "alone_s": round(alone_seconds, 2),
        "pages_text_differs": sum(1 for u in truths if (stored.get(u) or "") != (alone.get(u) or "")),
    }


def e2e_numbers(r: dict) -> dict:
    """The numbers of a `bench_e2e` result the goals compare with: CPU per stored article, pipeline and S3."""
    from benchmarks.bench_e2e import pipeline_cpu

    n = max(1, r["articles_stored"])
    cpu = pipeline_cpu(r)
    return {
        "articles_stored": r["articles_stored"],
        "cpu_s": round(cpu, 2),
        "cpu_s_s3": round(r["cpu_seconds"].get("s3", 0.0), 2),
        "cpu_s_per_article": round(cpu / n, 4),
        "cpu_s_per_article_with_s3": round((cpu + r["cpu_seconds"].get("s3", 0.0)) / n, 4),
    }


def goals(r: dict, e2e: dict | None) -> list[tuple[str, str, bool | None]]:
    """The issue's goals: (goal, measured, met?); met is None when there is nothing to compare with."""
    out: list[tuple[str, str, bool | None]] = []
    if e2e is not None:
        ratio = r["cpu_s_per_article"] / e2e["cpu_s_per_article"]
        with_s3 = r["cpu_s_per_article_with_s3"] / e2e["cpu_s_per_article_with_s3"]
        out.append(
            (
                f"CPU per stored article <= {GOAL_CPU_RATIO}x the live crawl path's",
                f"{r['cpu_s_per_article']:.4f} s vs {e2e['cpu_s_per_article']:.4f} s = {ratio:.2f}x "
                f"(with the S3 server's CPU: {with_s3:.2f}x)",
                ratio <= GOAL_CPU_RATIO,
            )
        )
    else:
        out.append((f"CPU per stored article <= {GOAL_CPU_RATIO}x the live crawl path's", "no bench_e2e run", None))
    out.append(
        (
            "stored F1 equal to the extractor alone",
            f"{r['f1_stored']:.4f} vs {r['f1_alone']:.4f} ({r['pages_text_differs']} pages differ)",
            abs(r["f1_stored"] - r["f1_alone"]) < 1e-9,
        )
    )
    out.append(
        (
            "peak memory < 1 GiB (pipeline tree, PSS)",
            f"{r['peak_pss_mib']:.0f} MiB (summed RSS {r['peak_rss_sum_mib']:.0f} MiB)",
            (r["peak_pss_mib"] or r["peak_rss_sum_mib"]) < 1024,
        )
    )
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bench-dir", type=Path, default=DEFAULT_BENCH_DIR)
    parser.add_argument("--records", type=int, default=2000, help="responses in the archive (default 2000)")
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--chunk-records", type=int, default=None, help="selected records per commit")
    parser.add_argument("--e2e", action="store_true", help="then run bench_e2e in this session to compare CPU")
    parser.add_argument("--e2e-json", type=Path, default=None, help="compare with this saved `bench_e2e --json`")
    parser.add_argument("--json", type=Path, default=None, help="also write the numbers as JSON here")
    parser.add_argument("--check", action="store_true", help="exit 1 when a goal is missed")
    args = parser.parse_args(argv)
    started = datetime.now(timezone.utc)
    result = run(args.bench_dir, args.records, args.workers, chunk_records=args.chunk_records)
    e2e = None
    if args.e2e_json:
        e2e = e2e_numbers(json.loads(args.e2e_json.read_text()))
    elif args.e2e:
        from benchmarks.bench_e2e import run_benchmark

        e2e = e2e_numbers(run_benchmark())
    out = {"started": started.isoformat(timespec="seconds"), **result, "e2e": e2e}
    print(json.dumps(out, indent=1))
    checked = goals(result, e2e)
    for goal, measured, met in checked:
        print(f"{goal:<52} {measured}   {'-' if met is None else 'ok' if met else 'MISSED'}")
    if args.json:
        args.json.write_text(json.dumps({**out, "goals": checked}, indent=1))
    return 1 if args.check and any(met is False for _, _, met in checked) else 0


if __name__ == "__main__":
    sys.exit(main())
