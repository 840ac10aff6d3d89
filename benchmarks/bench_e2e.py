"""End to end on real pages: the whole pipeline over the 181 pages of the extraction benchmark.

    .venv/bin/python -m benchmarks.bench_e2e [--concurrency 16] [--pages N] [--json out.json] [--html out.html]

What runs, all on 127.0.0.1 and in a temporary folder:

* `BenchmarkOutlet` serves the 181 real pages (index, RSS feed, sitemap, robots.txt) from a
  process of its own, as a real outlet would be (`OutletProcess`); with `--pages N` (memory at
  scale) it serves them under N URLs, each copy with a sentence of its own so it is stored too
  (`examples.sample_site.benchmark_outlet.vary`); F1 is scored on the 181 originals only;
* an embedded SeaweedFS (`EmbeddedS3`) is the bucket;
* `pipeline.flows.ingest.run_once` with production settings: the `news` spider in its own process
  with every guard on (SSRF guard with the outlet's port allowlisted, strict robots.txt,
  size/time/redirect limits, Retry-After) and the WARC archive, extraction and cleaning
  over the bounded process pool on all cores, dedupe, the atomic manifest commit, the report.
  For the benchmark only, politeness delays are off: per-source delay 0, AutoThrottle off,
  per-source concurrency `--concurrency` (the local outlet is ours to load).

What it prints, as one table:

* pages per second end to end (benchmark pages / wall time of `run_once`) and per stage
  (benchmark pages / the report's `stage_seconds`);
* CPU seconds of the pipeline's process tree (this process, the Scrapy child, the extraction
  workers; `benchmarks.harness.TreeCpu`), in all and per stored article, the S3 server and the outlet apart;
* peak memory of the process tree (a sampling thread sums the PSS, and the RSS as an upper bound, of
  this process and all its descendants), and of each kind of process in it (this process, the
  Scrapy child, the extraction workers), the S3 server and the outlet shown apart;
* F1 / precision / recall of the STORED text (read back with `read_articles`) against the
  ground truth, scored with `benchmarks.scoring.score`, next to `article_from_html` alone on the
  same pages (decoded the way Scrapy decodes them), so a loss between stages is visible.

Goals: >= 50 pages/s end to end, peak memory < 1 GiB, stored F1 >= extractor-alone F1.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import psutil

from benchmarks.harness import MIB, ChildServer, TreeCpu, TreeMemorySampler

__all__ = ["TreeMemorySampler", "run_benchmark", "table"]

GOAL_PAGES_PER_S = 50.0
GOAL_PEAK_BYTES = 1024**3


def _serve_outlet(conn: Any, pages: int | None = None) -> None:
    """Child process: serve the benchmark outlet (under `pages` URLs) until the parent closes the pipe."""
    from examples.sample_site.benchmark_outlet import BenchmarkOutlet

    outlet = BenchmarkOutlet(pages=pages).start()
    conn.send(outlet.port)
    try:
        conn.recv()
    except EOFError:
        pass
    outlet.stop()


class OutletProcess(ChildServer):
    """The benchmark outlet served from a process of its own.

    A real outlet is another machine; served from threads of this process, its HTTP
    handlers would take turns with the pipeline's main thread for the GIL (its CPU still
    counts: it runs on the same two cores). `outlet` is a not-started `BenchmarkOutlet` on
    the child's port, for URLs, the ground truth and the sources file.
    """

    def __init__(self, pages: int | None = None) -> None:
        self.pages = pages

    def __enter__(self) -> OutletProcess:
        from examples.sample_site.benchmark_outlet import BenchmarkOutlet

        port = self._start(_serve_outlet, self.pages, name="benchmark-outlet")
        self.outlet = BenchmarkOutlet(port=port, pages=self.pages)
        return self


def _phases_to(memory: TreeMemorySampler, reporter: Any) -> None:
    """Name the sampler's phase after the reporter's stage as the run moves on ("report" after the last)."""
    stage, close = reporter.stage, reporter.close

    def on_stage(name: str, *args: Any, **kwargs: Any) -> None:
        memory.phase = name.split(" (")[0]
        stage(name, *args, **kwargs)

    def on_close() -> None:
        memory.phase = "report"
        close()

    reporter.stage, reporter.close = on_stage, on_close


def decode_like_scrapy(url: str, body: bytes) -> str:
    """The str Scrapy's `response.text` would give for this body served as text/html."""
    from scrapy.http import HtmlResponse

    return HtmlResponse(url=url, body=body, headers={"Content-Type": "text/html"}).text


def extractor_alone(outlet: Any, rules: Any) -> tuple[dict[str, str], float, dict[str, int]]:
    """`article_from_html` (extract, then clean) over the raw benchmark pages in this process: ({url: text}, seconds, reasons)."""
    from pipeline.core.errors import NotAnArticle
    from pipeline.flows.pages import article_from_html

    out: dict[str, str] = {}
    reasons: dict[str, int] = {}
    t0 = time.perf_counter()
    for page_id in outlet.ids:
        url = outlet.url_of(page_id)
        html = decode_like_scrapy(url, gzip.decompress((outlet.bench_dir / "html" / f"{page_id}.html.gz").read_bytes()))
        try:
            out[url] = article_from_html(html, url, rules=rules)["text"]
        except NotAnArticle as exc:
            reasons[exc.reason] = reasons.get(exc.reason, 0) + 1
            out[url] = ""
    return out, time.perf_counter() - t0, reasons


def trafilatura_default(outlet: Any) -> tuple[dict[str, str], float]:
    """Plain `trafilatura.extract()` on the same decoded pages: the published reference point, and a
    load gauge (benchmarks/README.md: ~55 pages/s in one process on an idle 2-core machine)."""
    import trafilatura

    out: dict[str, str] = {}
    t0 = time.perf_counter()
    for page_id in outlet.ids:
        url = outlet.url_of(page_id)
        html = decode_like_scrapy(url, gzip.decompress((outlet.bench_dir / "html" / f"{page_id}.html.gz").read_bytes()))
        out[url] = trafilatura.extract(html) or ""
    return out, time.perf_counter() - t0


def run_benchmark(concurrency: int = 16, *, html_out: Path | None = None, pages: int | None = None) -> dict[str, Any]:
    """Serve (under `pages` URLs: the benchmark's 181 by default), run, read back, score; returns every
    number the table shows."""
    from benchmarks.scoring import score, tokens
    from examples.sample_site.benchmark_outlet import NAME
    from pipeline.core.context import RunContext, make_run_id
    from pipeline.dataset.read import read_articles
    from pipeline.flows.ingest import run_once
    from pipeline.runtime.progress import progress_reporter
    from pipeline.runtime.s3server import EmbeddedS3, free_port

    with tempfile.TemporaryDirectory(prefix="bench-e2e-") as tmp, OutletProcess(pages) as serving:
        tmp_path = Path(tmp)
        server = EmbeddedS3(tmp_path / "s3", s3_port=free_port())  # 8333 may be another server's
        saved = dict(os.environ)
        outlet = serving.outlet
        try:
            info = server.up("news")
            settings = info.settings("news")
            # The crawl child, state and logs use this server and folder, not the developer's var/.
            os.environ.update({"NEWS_INGEST_HOME": str(tmp_path), **settings.as_env()})
            sources = outlet.write_sources_yaml(
                tmp_path / "sources.yaml", source_delay=0.0, source_concurrency=concurrency, autothrottle=False
            )
            ctx = RunContext(run_id=make_run_id(datetime.now(timezone.utc)), s3=settings, sources_path=sources)
            truth = outlet.ground_truth()

            load_before = os.getloadavg()[0]
            reporter = progress_reporter(sys.stderr)
            # Every 0.1 s: each sample reads /proc of every process, which costs this process CPU the
            # pipeline also wants (~0.28 CPU-s a run at 0.05 s); the workers hold their memory for seconds.
            with TreeMemorySampler(exclude={info.pid, serving.proc.pid}, interval=0.1) as memory:
                _phases_to(memory, reporter)
                clock = TreeCpu(apart={"s3": info.pid, "outlet": serving.proc.pid}).start()
                t0 = time.perf_counter()
                try:
                    report = run_once(ctx, say=reporter)
                finally:
                    reporter.close()
                wall = time.perf_counter() - t0
                cpu = clock.stop()
            cpu["sampler"] = memory.cpu_seconds  # counted in "main" and "pipeline"; not the pipeline's

            stored_rows = list(
                read_articles(run_id=ctx.run_id, settings=settings, columns=["url", "text"], as_="records")
            )
            stored_urls = len({row["url"] for row in stored_rows})
            stored: dict[str, str] = {}
            for row in stored_rows:
                if row["url"] in truth:  # scored on the benchmark's pages; their copies only count as stored
                    stored.setdefault(row["url"], row["text"] or "")
            del stored_rows
            if html_out:
                html_out.write_bytes(ctx.bucket.get(report["html"]))
            rules = ctx.sources.source(NAME).cleaning
            # What `Reporter.follow()` would count live during the crawl: one line per response.
            from pipeline.runtime.progress import SCRAPY_RESPONSE

            log_lines = [
                line
                for f in (tmp_path / "logs").glob("crawl-*.log")
                for line in f.read_text(errors="replace").splitlines()
            ]
            crawl_log_responses = sum(1 for line in log_lines if SCRAPY_RESPONSE.search(line))
        finally:
            server.down()
            os.environ.clear()
            os.environ.update(saved)

    load_after_run = os.getloadavg()[0]
    alone, alone_seconds, alone_reasons = extractor_alone(outlet, rules)
    plain, plain_seconds = trafilatura_default(outlet)
    n = len(truth)
    spider_seconds = sum(
        float(s.get("crawl_stats", {}).get("elapsed_time_seconds", 0)) for s in report["sources"].values()
    )
    stored_score = score({u: stored.get(u, "") for u in truth}, truth)
    alone_score = score(alone, truth)
    differ = sum(1 for u in truth if tokens(stored.get(u, "")) != tokens(alone.get(u, "")))
    return {
        "pages": n,
        "served_pages": outlet.pages,
        "stored_urls": stored_urls,
        "run_id": report["run_id"],
        "wall_seconds": wall,
        "cpu_seconds": cpu,
        "stage_seconds": report["stage_seconds"],
        "pages_fetched": report["pages_fetched"],
        "articles_stored": report["articles_stored"],
        "stored_benchmark_pages": sum(1 for u in truth if u in stored),
        "rejects_by_reason": report["rejects_by_reason"],
        "failed_sources": report["failed_sources"],
        "duplicates": report["duplicates"],
        "peak_tree_bytes": memory.peak,
        "peak_tree_pss_bytes": memory.peak_pss,
        "peak_main_bytes": memory.peak_root,
        "peak_s3_bytes": memory.peak_excluded,
        "peak_processes": memory.peak_processes,
        "peak_by_kind": memory.peak_by_kind,
        "peak_by_phase": memory.peak_by_phase,
        "memory_samples": memory.samples,
        "stored": {k: stored_score[k] for k in ("f1", "precision", "recall", "accuracy")},
        "alone": {k: alone_score[k] for k in ("f1", "precision", "recall", "accuracy")},
        "alone_seconds": alone_seconds,
        "trafilatura": {k: v for k, v in score(plain, truth).items() if k in ("f1", "precision", "recall", "accuracy")},
        "trafilatura_seconds": plain_seconds,
        "spider_seconds": spider_seconds,
        "crawl_log_responses": crawl_log_responses,
        "load_before": load_before,
        "load_after_run": load_after_run,
        "report": report,
        "alone_not_articles": alone_reasons,
        "pages_text_differs": differ,
        "concurrency": concurrency,
        "cores": psutil.cpu_count(),
    }


def pipeline_cpu(r: dict[str, Any]) -> float:
    """CPU seconds of the pipeline's process tree during the run, the memory sampler's left out."""
    cpu = r["cpu_seconds"]
    return cpu["pipeline"] - cpu.get("sampler", 0.0)


def peak_memory(r: dict[str, Any]) -> int:
    """Peak bytes of the pipeline's tree: summed PSS where measured, else summed RSS (an upper bound)."""
    return r.get("peak_tree_pss_bytes") or r["peak_tree_bytes"]


def goals_missed(r: dict[str, Any]) -> list[str]:
    """Names of the goals this result misses."""
    missed = []
    if (r.get("served_pages") or r["pages"]) / r["wall_seconds"] < GOAL_PAGES_PER_S:
        missed.append("pages/s end to end")
    if peak_memory(r) >= GOAL_PEAK_BYTES:
        missed.append("peak memory")
    if r["stored"]["f1"] < r["alone"]["f1"] - 1e-9:
        missed.append("stored F1 >= extractor alone")
    return missed


def table(r: dict[str, Any]) -> str:
    """The one table the benchmark prints."""
    n = r.get("served_pages") or r["pages"]  # pages per second count every page served
    copies = f" served under {n} URLs" if n != r["pages"] else ""
    lines = [
        f"end-to-end benchmark: {r['pages']} real pages{copies} (article-extraction-benchmark), run {r['run_id']}, "
        f"{r['cores']} cores, per-source concurrency {r['concurrency']}, politeness delays off, guards on",
        "",
        f"{'measure':<44}{'value':>14}   goal",
        "-" * 72,
    ]

    def row(name: str, value: str, goal: str = "") -> None:
        lines.append(f"{name:<44}{value:>14}   {goal}")

    rate = n / r["wall_seconds"] if r["wall_seconds"] else 0.0
    row(
        "end to end (run_once wall time)",
        f"{rate:.1f} p/s",
        f">= {GOAL_PAGES_PER_S:.0f} p/s {'ok' if rate >= GOAL_PAGES_PER_S else 'MISSED'} ({r['wall_seconds']:.1f} s)",
    )
    for stage, sec in r["stage_seconds"].items():
        note = f"{sec:.2f} s"
        if stage == "crawl" and r.get("spider_seconds"):
            note += f" (spider open to close {r['spider_seconds']:.2f} s, the rest is process start-up and exit)"
        if stage == "clean":
            note += " (writing the file: the extraction workers cleaned each page)"
        row(f"  stage {stage}", f"{n / sec:.1f} p/s" if sec else "-", note)
    cpu = r.get("cpu_seconds")
    if cpu:
        total, main = pipeline_cpu(r), cpu["main"] - cpu.get("sampler", 0.0)
        row(
            "CPU seconds of the run (pipeline tree)",
            f"{total:.2f} s",
            f"main process {main:.2f}, crawl child and extraction workers {total - main:.2f} "
            f"(the memory sampler's {cpu.get('sampler', 0):.2f} left out)",
        )
        row(
            "  per stored article",
            f"{total / max(1, r['articles_stored']):.4f} s",
            f"with the S3 server's: {(total + cpu.get('s3', 0.0)) / max(1, r['articles_stored']):.4f} s",
        )
        row("  S3 server / outlet (apart)", f"{cpu.get('s3', 0.0):.2f} s", f"outlet {cpu.get('outlet', 0.0):.2f} s")
        row(
            f"  that CPU spread over {r['cores']} cores",
            f"{total / r['cores']:.2f} s",
            f"the shortest wall time it allows; {GOAL_PAGES_PER_S:.0f} p/s needs {n / GOAL_PAGES_PER_S:.2f} s",
        )
    peak = peak_memory(r)
    row(
        "peak memory, pipeline process tree (PSS)",
        f"{peak / MIB:.0f} MiB",
        f"< 1024 MiB {'ok' if peak < GOAL_PEAK_BYTES else 'MISSED'} "
        f"({r['peak_processes']} processes at most, {r['memory_samples']} samples)",
    )
    row("  summed RSS (upper bound)", f"{r['peak_tree_bytes'] / MIB:.0f} MiB")
    row("  of which the main process", f"{r['peak_main_bytes'] / MIB:.0f} MiB")
    for kind, (pss, rss, count) in (r.get("peak_by_kind") or {}).items():
        row(f"  peak of the {kind} (PSS)", f"{pss / MIB:.0f} MiB", f"RSS {rss / MIB:.0f} MiB, {count} at most")
    for phase, (pss, rss) in (r.get("peak_by_phase") or {}).items():
        if phase:
            row(f"  peak during {phase} (PSS)", f"{pss / MIB:.0f} MiB", f"RSS {rss / MIB:.0f} MiB")
    row("  S3 server and outlet (apart)", f"{r['peak_s3_bytes'] / MIB:.0f} MiB")
    row(
        "pages fetched (incl. feed, sitemap, robots)",
        f"{r['pages_fetched']}",
        f"{r['crawl_log_responses']} responses in the crawl log",
    )
    row(
        "benchmark pages stored",
        f"{r['stored_benchmark_pages']}/{r['pages']}",
        f"{r['articles_stored']} rows, {r.get('stored_urls', '?')} URLs; rejects {sum(r['rejects_by_reason'].values())}",
    )
    s, a = r["stored"], r["alone"]
    row(
        "F1 stored (read back from the bucket)",
        f"{s['f1']:.4f}",
        f">= alone {'ok' if s['f1'] >= a['f1'] - 1e-9 else 'MISSED'}",
    )
    row(
        "F1 article_from_html alone, same pages",
        f"{a['f1']:.4f}",
        f"{r['pages'] / r['alone_seconds']:.1f} p/s in one process" if r["alone_seconds"] else "",
    )
    row("precision stored / alone", f"{s['precision']:.4f}", f"{a['precision']:.4f}")
    row("recall stored / alone", f"{s['recall']:.4f}", f"{a['recall']:.4f}")
    row("accuracy stored / alone", f"{s['accuracy']:.4f}", f"{a['accuracy']:.4f}")
    row("pages whose stored text differs from alone", f"{r['pages_text_differs']}")
    t, n = r["trafilatura"], r["pages"]  # the references ran over the benchmark's pages only
    row(
        "reference: trafilatura.extract() default",
        f"{t['f1']:.4f}",
        f"P {t['precision']:.4f} R {t['recall']:.4f}, {n / r['trafilatura_seconds']:.1f} p/s in one process",
    )
    lines.append(
        f"machine load (1-min average): {r['load_before']:.1f} before the run, {r['load_after_run']:.1f} after "
        f"it, on {r['cores']} cores; trafilatura runs ~55 p/s in one process when the machine is idle"
    )
    if r["rejects_by_reason"]:
        lines.append("rejects: " + ", ".join(f"{k} {v}" for k, v in sorted(r["rejects_by_reason"].items())))
    if r["alone_not_articles"]:
        lines.append(
            "article_from_html alone found no article: "
            + ", ".join(f"{k} {v}" for k, v in sorted(r["alone_not_articles"].items()))
        )
    if r["failed_sources"]:
        lines.append(f"FAILED sources: {', '.join(r['failed_sources'])}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_e2e", description=__doc__.splitlines()[0])
    parser.add_argument("--concurrency", type=int, default=16, help="per-source concurrency (1-16; default 16)")
    parser.add_argument(
        "--pages", type=int, default=None, help="serve the benchmark pages under this many URLs (default: 181, once)"
    )
    parser.add_argument("--json", type=Path, default=None, help="also write the numbers as JSON here")
    parser.add_argument("--html", type=Path, default=None, help="also save the run's HTML report here")
    parser.add_argument("--check", action="store_true", help="exit 1 when a goal is missed")
    args = parser.parse_args(argv)
    result = run_benchmark(args.concurrency, html_out=args.html, pages=args.pages)
    print(table(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    if result["failed_sources"] or not result["stored_benchmark_pages"]:
        return 1
    if args.check and goals_missed(result):
        print(f"goals missed: {', '.join(goals_missed(result))}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
