"""Crawl throughput with every guard on, against a bare Scrapy spider, on the same local pages.

    .venv/bin/python -m benchmarks.bench_crawl [--pages 2000] [--repeat 1] [--news]
        [--render | --render-only] [--render-pages 200]

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

* ``render`` / ``prerendered`` (``--render``, starts its own SeaweedFS): ``scrapy crawl news`` through the crawl
  stage for the JavaScript outlet of ``examples.sample_site.modern`` (``--render-pages`` app-shell articles
  that a script fills in) with ``render: js``, next to a plain crawl of the same articles served pre-rendered.
  Peak memory is the tree RSS of this process and its descendants (the crawl and its Chromium; the site and
  the S3 server excluded), sampled by ``benchmarks.harness.TreeMemorySampler``. ``bypasses`` counts requests that should
  never leave the crawler and reached a server anyway (the outlet's tracked never-fetched URLs and the canary).
  Goals: >= 5 rendered pages/s on 2 cores, peak < 1.5 GiB, 0 bypasses.

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

from benchmarks.harness import ChildServer
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
            s3 = info.settings("news")
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


RENDER_GOAL_PPS = 5.0
RENDER_GOAL_PEAK_MIB = 1536.0


def _serve_modern(conn: Any, n: int, sources: str) -> None:
    """Child process: the modern sample site (``n`` JavaScript articles) until the parent says stop; then
    report what reached it that never should have."""
    from examples.sample_site.modern import SCRIPT, ModernSite

    site = ModernSite(n_js_articles=n).start()
    try:
        site.write_sources_yaml(sources, outlets=[SCRIPT], download_timeout=10)
        conn.send(site.base_urls[SCRIPT])
        while conn.recv() is not None:  # "count": what got through so far
            conn.send(sum(site.hits(u) for u in site.never_fetched()) + site.canary_connections())
    except EOFError:
        pass
    finally:
        site.stop()


class ModernSiteProcess(ChildServer):
    """The modern sample site in a process of its own (its serving threads must not share this one's GIL,
    and its memory is left out of the crawl's peak)."""

    def __init__(self, n: int, sources: Path):
        self.n = n
        self.sources = sources

    def __enter__(self) -> ModernSiteProcess:
        self.base: str = self._start(_serve_modern, self.n, str(self.sources))
        return self

    def bypasses(self) -> int:
        """Requests to never-fetched URLs and canary connections the site saw so far."""
        self.conn.send("count")
        return int(self.conn.recv())


def render_rows(n: int, concurrency: int = 16) -> list[dict[str, Any]]:
    """``render: js`` on the JavaScript outlet (n articles) and a plain crawl of the same articles pre-rendered."""
    import os
    from datetime import datetime, timezone

    import yaml

    from benchmarks.harness import TreeMemorySampler
    from examples.sample_site.modern import SCRIPT
    from pipeline.core.context import RunContext, make_run_id
    from pipeline.runtime.s3server import EmbeddedS3
    from pipeline.stages.crawl import crawl_stage

    rows = []
    with tempfile.TemporaryDirectory() as tmp, ModernSiteProcess(n, Path(tmp) / "sources.yaml") as site:
        server = EmbeddedS3(Path(tmp) / "s3", s3_port=free_port())
        saved = dict(os.environ)
        try:
            info = server.up("news")
            os.environ["NEWS_INGEST_HOME"] = tmp
            data = yaml.safe_load(site.sources.read_text())
            data["sources"][0]["concurrency"] = concurrency
            for kind, feed, render in (
                ("render", site.base + "/feed.xml", "js"),
                ("prerendered", site.base + "/prerendered/feed.xml", "off"),
            ):
                data["sources"][0].update(feeds=[feed], render=render)
                path = Path(tmp) / f"sources-{kind}.yaml"
                path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
                s3 = info.settings("news")
                ctx = RunContext(run_id=make_run_id(datetime.now(timezone.utc)), s3=s3, sources_path=path)
                before = site.bypasses()
                t0 = time.perf_counter()
                with TreeMemorySampler(exclude={info.pid, site.proc.pid}) as mem:
                    out = crawl_stage(
                        ctx,
                        SCRIPT,
                        settings={"AUTOTHROTTLE_ENABLED": "False", "DOWNLOAD_DELAY": "0", "LOG_LEVEL": "WARNING"},
                    )
                wall = time.perf_counter() - t0
                stats = out["stats"]
                pages = int(stats.get("news/archived/article", 0))
                elapsed = float(stats.get("elapsed_time_seconds") or wall)
                rows.append(
                    {
                        "kind": kind,
                        "pages": pages,
                        "rendered": int(stats.get("render/pages", 0)),
                        "failed": int(stats.get("render/failed", 0)),
                        "elapsed": elapsed,
                        "wall": wall,
                        "pps": pages / elapsed if elapsed else 0.0,
                        "peak_mib": mem.peak / 2**20,
                        "blocked": int(stats.get("render/blocked", 0)),
                        "bypasses": site.bypasses() - before,
                        "launches": int(stats.get("render/browser_launches", 0)),
                    }
                )
        finally:
            os.environ.clear()
            os.environ.update(saved)
            server.down()
    return rows


def print_render_rows(rows: list[dict[str, Any]], n: int) -> bool:
    """The rendered table and its goals; False when a guard was bypassed or a page was lost (speed and memory
    below their goals are reported, as the guarded/bare ratio is, not failed)."""
    print(f"\nrendered crawl: JavaScript outlet of examples.sample_site.modern, {n} articles, politeness off")
    print(
        f"{'config':<12} {'pages':>6} {'rendered':>9} {'failed':>7} {'elapsed s':>10} {'wall s':>8} {'pages/s':>8} "
        f"{'peak MiB':>9} {'blocked':>8} {'bypasses':>9} {'browsers':>9}"
    )
    for r in rows:
        print(
            f"{r['kind']:<12} {r['pages']:>6} {r['rendered']:>9} {r['failed']:>7} {r['elapsed']:>10.2f} "
            f"{r['wall']:>8.2f} {r['pps']:>8.2f} {r['peak_mib']:>9.0f} {r['blocked']:>8} {r['bypasses']:>9} "
            f"{r['launches']:>9}"
        )
    r = rows[0]
    fast = r["pps"] >= RENDER_GOAL_PPS and r["peak_mib"] <= RENDER_GOAL_PEAK_MIB
    sound = r["bypasses"] == 0 and r["failed"] == 0 and r["pages"] == rows[1]["pages"]  # all the plain crawl got
    print(
        f"rendered: {r['pps']:.2f} pages/s (goal >= {RENDER_GOAL_PPS}), peak {r['peak_mib']:.0f} MiB "
        f"(goal <= {RENDER_GOAL_PEAK_MIB:.0f}): {'OK' if fast else 'BELOW GOAL'}; {r['bypasses']} guard bypasses, "
        f"{r['rendered']}/{rows[1]['pages']} pages rendered: {'OK' if sound else 'FAILED'}"
    )
    return sound


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
    parser.add_argument(
        "--render",
        action="store_true",
        help="also time `render: js` on the JavaScript outlet against the same pages pre-rendered (own SeaweedFS)",
    )
    parser.add_argument("--render-pages", type=int, default=200, help="JavaScript articles for --render")
    parser.add_argument("--render-only", action="store_true", help="only the --render rows")
    args = parser.parse_args(argv)

    render_ok = True
    if args.render or args.render_only:
        render_ok = print_render_rows(render_rows(args.render_pages), args.render_pages)
        if args.render_only:
            return 0 if render_ok else 1

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
    return 0 if render_ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
