"""Crawl throughput with every guard on, against a bare Scrapy spider, on the same local pages.

    .venv/bin/python -m benchmarks.bench_crawl [--pages 2000] [--repeat 1] [--news]

The pages are the bulk outlet of the offline sample site (``SampleSite(n_bulk_articles=N)``,
article pages rendered on request) or, if that is unavailable, generated pages from
``tests.crawl_helpers.LocalServer``.  The site runs in this process; each crawl runs in its
own subprocess (``tests.crawl_helpers.run_crawl``), one after the other:

* ``bare``: a spider that fetches the URL list with Scrapy's default settings.
* ``guarded``: the same spider and URL list with SsrfGuardMiddleware, StrictRobotsTxtMiddleware,
  RetryAfterMiddleware, GuardedResolver and ROBOTSTXT_OBEY on (the site's port allowlisted).
* ``news`` (``--news``, needs the embedded S3 up: ``python -m pipeline s3 up``): the project's
  ``scrapy crawl news`` with its settings, for the bulk outlet (sitemap discovery, WARC archive
  to S3): the whole crawl stage, not only the guards.

Politeness delays are off for the benchmark (DOWNLOAD_DELAY 0, no AutoThrottle); concurrency is
Scrapy's default (16 total, 8 per domain) for every row.  Pages/s is responses received divided
by the crawl's own ``elapsed_time_seconds`` (spider open to close; interpreter start-up excluded).
Goal: guarded / bare >= 0.7.

The local site listens with a backlog of 128 (``_Server.request_queue_size``, as a real web server would;
Python's ``socketserver`` default is 5).  With 5, every crawl that opened 8 connections at once
overflowed the accept queue: Linux drops the handshake and the client retries its SYN after 1 s,
so a 6 s crawl lost 1-3 s waiting.  The guarded and ``news`` crawls always hit that (their first
requests wait together for robots.txt and then leave together; meanwhile Scrapy, its downloader
full, reads all the start requests at once), the bare one only sometimes (it reads its start
requests one per reactor turn and often stays at ~4 connections): that, not the guards, was the
0.6x.  The ``drops`` column counts connections the kernel dropped at a full listen queue during
each crawl (machine-wide, so another process's can show up); it should be 0.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from tests.crawl_helpers import (
    LISTEN_BACKLOG,
    LocalServer,
    free_port,
    guard_settings,
    page,
    run_crawl,
    tcp_listen_counters,
)

POLITENESS_OFF = {"DOWNLOAD_DELAY": 0, "AUTOTHROTTLE_ENABLED": False, "LOG_LEVEL": "WARNING"}


def start_site(n: int, generated: bool = False) -> tuple[Any, str, list[str], str]:
    """(site object with .stop(), base URL, article URLs, description)."""
    try:
        if generated:
            raise ImportError("--generated asked for")
        from examples.sample_site.build import bulk_path
        from examples.sample_site.server import SampleSite

        site = SampleSite(n_bulk_articles=n)
        site.start()  # its server listens with a backlog of 128, as LISTEN_BACKLOG
        base = site.base_urls["bulk-news"]
        urls = [base + bulk_path(i)[0] for i in range(n)]
        return site, base, urls, f"sample site bulk outlet ({n} articles, listen backlog {LISTEN_BACKLOG})"
    except ImportError as exc:
        print(f"sample site bulk outlet unavailable ({exc}); serving generated pages", file=sys.stderr)
    body = "<article><h1>Story</h1>" + "<p>Lorem ipsum dolor sit amet, consectetur adipiscing.</p>" * 40 + "</article>"
    routes = {f"/news/{i:05d}.html": page(body) for i in range(n)}
    server = LocalServer(routes).start()
    return (
        server,
        server.base,
        [server.base + p for p in routes],
        f"generated pages ({n}, listen backlog {LISTEN_BACKLOG})",
    )


def _drops(before: dict[str, int] | None) -> int | None:
    after = tcp_listen_counters()
    if before is None or after is None:
        return None
    return after["ListenOverflows"] - before["ListenOverflows"]


def one(kind: str, urls: list[str], port: int) -> dict[str, Any]:
    if kind == "bare":
        settings: dict[str, Any] = dict(POLITENESS_OFF)
    else:
        settings = guard_settings([f"127.0.0.1:{port}"], **POLITENESS_OFF)
    tcp = tcp_listen_counters()
    t0 = time.perf_counter()
    result = run_crawl(urls, settings, spider="bare", timeout=1800)
    wall = time.perf_counter() - t0
    drops = _drops(tcp)
    stats = result["stats"]
    pages = len(result["pages"])
    elapsed = float(stats.get("elapsed_time_seconds") or wall)
    return {
        "kind": kind,
        "pages": pages,
        "failures": len(result["failures"]),
        "elapsed": elapsed,
        "wall": wall,
        "pps": pages / elapsed if elapsed else 0.0,
        "robots": stats.get("robots/fetch", 0),
        "blocked": stats.get("ssrf/blocked", 0),
        "drops": drops,
    }


def news_crawl(site: Any, n: int) -> dict[str, Any]:
    """`scrapy crawl news` for the bulk outlet through the crawl stage, with a throwaway SeaweedFS."""
    import os
    from datetime import datetime, timezone

    from pipeline.core.config import S3Settings
    from pipeline.core.context import RunContext, make_run_id
    from pipeline.runtime.s3server import EmbeddedS3
    from pipeline.stages.crawl import crawl_stage

    with tempfile.TemporaryDirectory() as tmp:
        # on a free port, not the default 8333 a developer's `python -m pipeline s3 up` may want
        server = EmbeddedS3(Path(tmp) / "s3", s3_port=free_port())
        saved = dict(os.environ)
        try:
            info = server.up("news")  # inside the try: a server that started but failed its bucket is stopped too
            os.environ["NEWS_INGEST_HOME"] = tmp  # the crawl's logs and state go to the temp folder
            s3 = S3Settings(
                endpoint_url=info.endpoint_url,
                access_key_id=info.access_key_id,
                secret_access_key=info.secret_access_key,
                bucket="news",
            )
            sources = site.write_sources_yaml(
                Path(tmp) / "sources.yaml",
                outlets=["bulk-news"],
                source_delay=0.0,
                source_concurrency=8,
                max_age_days=0,
            )
            ctx = RunContext(run_id=make_run_id(datetime.now(timezone.utc)), s3=s3, sources_path=sources)
            tcp = tcp_listen_counters()
            t0 = time.perf_counter()
            out = crawl_stage(
                ctx,
                "bulk-news",
                settings={"AUTOTHROTTLE_ENABLED": "False", "DOWNLOAD_DELAY": "0", "LOG_LEVEL": "WARNING"},
            )
            wall = time.perf_counter() - t0
            drops = _drops(tcp)
        finally:
            os.environ.clear()
            os.environ.update(saved)
            server.down()
    stats = out["stats"]
    pages = int(stats.get("response_received_count", 0))
    elapsed = float(stats.get("elapsed_time_seconds") or wall)
    return {
        "kind": "news",
        "pages": pages,
        "failures": 0,
        "elapsed": elapsed,
        "wall": wall,
        "pps": pages / elapsed if elapsed else 0.0,
        "robots": stats.get("robots/fetch", 0),
        "blocked": stats.get("ssrf/blocked", 0),
        "drops": drops,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pages", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=1, help="runs per configuration; the median is reported")
    parser.add_argument(
        "--generated",
        action="store_true",
        help="serve static generated pages (cheaper to serve than the sample site's rendered ones)",
    )
    parser.add_argument(
        "--news",
        action="store_true",
        help="also time `scrapy crawl news` through the crawl stage (starts its own SeaweedFS)",
    )
    args = parser.parse_args(argv)

    site, base, urls, what = start_site(args.pages, args.generated)
    port = int(base.rsplit(":", 1)[1])
    rows: dict[str, list[dict[str, Any]]] = {"bare": [], "guarded": []}
    try:
        if args.news:
            rows["news"] = []
        for _ in range(args.repeat):
            for kind in ("bare", "guarded"):  # interleaved, so drift hits all alike
                rows[kind].append(one(kind, urls, port))
            if args.news:
                rows["news"].append(news_crawl(site, args.pages))
    finally:
        site.stop()

    print(f"\ncrawl benchmark: {what}, {len(urls)} URLs, politeness off, repeat {args.repeat}")
    print(
        f"{'config':<8} {'pages':>6} {'fail':>5} {'elapsed s':>10} {'wall s':>8} {'pages/s':>9} {'robots':>7} "
        f"{'drops':>6} {'ratio':>6}  single runs (pages/s)"
    )
    bare_pps = statistics.median(r["pps"] for r in rows["bare"])
    for kind, runs in rows.items():
        med = sorted(runs, key=lambda r: r["pps"])[len(runs) // 2]
        ratio = med["pps"] / bare_pps if bare_pps else 0.0
        drops = "?" if med.get("drops") is None else str(med["drops"])
        singles = " ".join(f"{r['pps']:.0f}" + (f"({r['drops']}d)" if r.get("drops") else "") for r in runs)
        print(
            f"{kind:<8} {med['pages']:>6} {med['failures']:>5} {med['elapsed']:>10.2f} {med['wall']:>8.2f} "
            f"{med['pps']:>9.1f} {med['robots']:>7} {drops:>6} {ratio:>6.2f}  {singles}"
        )
    if len(rows["bare"]) > 1:
        pairs = " ".join(f"{g['pps'] / b['pps']:.2f}" for b, g in zip(rows["bare"], rows["guarded"]) if b["pps"])
        print(f"guarded/bare of each round: {pairs}")
    guarded = statistics.median(r["pps"] for r in rows["guarded"]) / bare_pps if bare_pps else 0.0
    print(f"\nguarded/bare = {guarded:.2f} (goal >= 0.70): {'OK' if guarded >= 0.7 else 'BELOW GOAL'}")
    bad = [r for runs in rows.values() for r in runs if r["kind"] != "news" and r["pages"] != len(urls)]
    if bad:
        print(f"warning: some crawls did not fetch every page: {bad}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
