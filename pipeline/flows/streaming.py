"""Crawl and extract at once: how `python -m pipeline run` runs its first two stages.

The Airflow DAG crawls every source (mapped tasks), then extracts each WARC file from the
bucket (mapped tasks). A single process running the whole pipeline does not have to wait:
the crawl child keeps its WARC files in a local folder (`NEWS_WARC_LOCAL_DIR`), a
`WarcTail` reads each record as it lands, and the extraction pool works on it while the
crawl goes on. Scrapy's reactor is one thread, so the crawl leaves most of the second
core idle; this puts it to work.

The sources are crawled as the DAG crawls them, in parallel: up to `jobs` Scrapy children at
once (`--jobs`, default `default_jobs`), each followed by a line of its own on the progress
display. Politeness is per host inside each child, so two sources sharing a host (host and
port of any feed, sitemap, section or home URL) are never crawled at once (`startable`).

The output is the DAG's: one `work/.../extracted/<stem>.jsonl.gz` and one extract-rejects
file per WARC file, from the same `warc_item` / `extract_batch` / `write_extraction`.
They are written only for a crawl that finished and whose local files were read to their
end under the keys it uploaded; otherwise that source's WARC files are extracted again
from the bucket, exactly as `extract_stage` does for the DAG. A failed crawl's pages are
dropped, as in the DAG (the next run fetches them).

Memory does not grow with the run's pages: the tail hands out a few MB of records per poll (a crawl
faster than extraction leaves its backlog on disk), and until the crawls end the workers' outcomes
wait in a local spool (`SpooledOutcomes`, a gzip file per WARC file), not in lists.
"""

from __future__ import annotations

import gzip
import json
import logging
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from pipeline.core.context import RunContext
from pipeline.core.layout import raw_prefix, safe_segment
from pipeline.core.paths import var_dir
from pipeline.dataset.warc import Spool, WarcTail, remove_stale_spools
from pipeline.runtime.progress import Line, Reporter
from pipeline.stages.crawl import crawl_log_path, crawl_outcome, crawl_source

if TYPE_CHECKING:
    from pipeline.core.config import Source
    from pipeline.stages.clean import Outcome
    from pipeline.stages.extract import PageOutcome

# The extract and clean stages are imported once the first crawl has started (see crawl_and_extract).

log = logging.getLogger(__name__)

#: How often the tail looks for new records while a crawl runs (seconds).
POLL_SECONDS = 0.05
#: Crawls at once by default (`default_jobs`).
DEFAULT_JOBS = 4


class CleanedFile:
    """The (record, cleaned row) outcomes of one WARC file that the workers cleaned, read from its spool
    file each time it is iterated (`clean_stage(cleaned=...)` reads it once); `len()` counts them."""

    def __init__(self, path: Path, count: int) -> None:
        self.path, self.count = path, count

    def __iter__(self) -> Iterator[Outcome]:
        for _item, record, then in SpooledOutcomes.read(self.path):
            if then is not None:
                yield record, then

    def __len__(self) -> int:
        return self.count


class SpooledOutcomes:
    """The workers' outcomes, one gzip JSON Lines file per WARC file in a local folder (a `Spool`, so a
    killed run's folder is removed by the next one), each line `[item, record, then]` in arrival order.

    Holds no page in memory: at 5,000 pages the records and cleaned rows held in lists until the crawls
    ended were most of the main process's growth with run size."""

    def __init__(self, run_id: str) -> None:
        self._spool = Spool(var_dir(), f"warc-{safe_segment(run_id)}-outcomes-")
        self._files: dict[str, gzip.GzipFile] = {}
        self._paths: dict[str, Path] = {}
        self._counts: dict[str, int] = {}  # per WARC key: outcomes with a cleaning result

    def add(self, item: dict, outcome: PageOutcome) -> None:
        key = item["warc_key"]
        out = self._files.get(key)
        if out is None:
            self._paths[key] = self._spool.path / f"{len(self._paths):05d}.jsonl.gz"
            out = self._files[key] = gzip.open(self._paths[key], "wb", compresslevel=1)
            self._counts[key] = 0
        out.write(json.dumps([item, outcome.record, outcome.then], ensure_ascii=False, default=str).encode())
        out.write(b"\n")
        self._counts[key] += outcome.then is not None

    def pairs(self, warc_key: str) -> Iterator[tuple[dict, dict]]:
        """(item, extracted record or failure) of `warc_key`, in arrival order (none if it had no page)."""
        for item, record, _then in self._read_key(warc_key):
            yield item, record

    def cleaned(self, warc_key: str) -> CleanedFile | None:
        """The cleaning outcomes of `warc_key` (None if it had no page)."""
        self._finish(warc_key)
        path = self._paths.get(warc_key)
        return CleanedFile(path, self._counts[warc_key]) if path is not None else None

    def _read_key(self, warc_key: str) -> Iterator[list]:
        self._finish(warc_key)
        if warc_key in self._paths:
            yield from self.read(self._paths[warc_key])

    def _finish(self, warc_key: str) -> None:
        out = self._files.pop(warc_key, None)
        if out is not None:
            out.close()

    @staticmethod
    def read(path: Path) -> Iterator[list]:
        with gzip.open(path, "rb") as fh:
            for line in fh:
                yield json.loads(line)

    def close(self) -> None:
        """Remove the spool folder (after the clean step has read it)."""
        for key in list(self._files):
            self._finish(key)
        self._spool.release()


@dataclass(frozen=True)
class StreamedCrawl:
    """What `crawl_and_extract` hands to the clean step; `close()` it once the clean step is done."""

    #: The extracted keys, one per WARC file of the crawls that finished.
    extracted_keys: list[str]
    #: {"crawl": seconds until the last crawl ended, "extract": seconds of extraction after it}.
    timings: dict[str, float]
    #: {source: why its crawl failed}.
    failed_sources: dict[str, str]
    #: The cleaning outcomes of the extracted keys whose pages the workers cleaned, for `clean_stage(cleaned=...)`:
    #: each read from the local spool when iterated.
    cleaned: dict[str, Iterable[Outcome]]
    #: The local spool `cleaned` is read from.
    spool: SpooledOutcomes | None = None

    def close(self) -> None:
        """Remove the local spool of the workers' outcomes."""
        if self.spool is not None:
            self.spool.close()

    def __enter__(self) -> StreamedCrawl:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass
class _Crawl:
    """One source's crawl, running in a thread (the Scrapy child is its own process)."""

    name: str
    tail: WarcTail
    line: Line
    follow: ExitStack = field(default_factory=ExitStack)  # the progress line following the crawl's log
    done: threading.Event = field(default_factory=threading.Event)
    error: BaseException | None = None
    thread: threading.Thread | None = None
    ended: float = 0.0  # perf_counter() when the crawl process was done
    collected: bool = False  # its last records were read and its line ended

    def start(self, ctx: RunContext) -> _Crawl:
        self.thread = threading.Thread(target=self._run, args=(ctx,), name=f"crawl-{self.name}", daemon=True)
        self.thread.start()
        return self

    def _run(self, ctx: RunContext) -> None:
        try:  # crawl_source records a failure in the bucket, like the DAG's task
            crawl_source(ctx, self.name, settings={"NEWS_WARC_LOCAL_DIR": str(self.tail.folder)})
        except BaseException as exc:
            self.error = exc
        finally:
            self.ended = time.perf_counter()
            self.done.set()


# --------------------------------------------------------------------------- which crawls may run at once


def host_of(url: str) -> str:
    """The `host:port` of a URL (default port filled in): the unit of politeness, as robots.txt scopes it."""
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return f"{(parts.hostname or '').lower()}:{port}"


def source_hosts(source: Source) -> frozenset[str]:
    """The hosts a source's crawl starts from (feeds, sitemaps, sections, home page)."""
    urls = [*source.feeds, *source.sitemaps, *source.sections, *([source.home] if source.home else [])]
    return frozenset(host_of(url) for url in urls)


def startable(pending: list[str], hosts: dict[str, frozenset[str]], busy: set[str], slots: int) -> list[str]:
    """The pending sources to start now, in order: at most `slots` of them, and none that shares a host
    with a running crawl (`busy`) or with another one started now.

    Per-host politeness (delay, concurrency, AutoThrottle) lives inside each Scrapy child, which knows
    nothing of the others: two crawls of one host at once would double its request rate. So the crawls
    of one host run one after another, and only crawls of different hosts overlap."""
    chosen: list[str] = []
    taken = set(busy)
    for name in pending:
        if len(chosen) >= slots:
            break
        if hosts.get(name, frozenset()).isdisjoint(taken):
            chosen.append(name)
            taken |= hosts.get(name, frozenset())
    return chosen


def default_jobs(n_sources: int) -> int:
    """Crawls at once when `--jobs` is not given: each is a Scrapy child that mostly waits on politeness
    delays and the network, so more of them than cores is fine; `DEFAULT_JOBS` bounds the memory (and
    the extraction workers' share of the CPU)."""
    return max(1, min(n_sources, DEFAULT_JOBS))


def _drain(records: list) -> Iterator:
    """The records, each let go of (its page with it) once it has been handed on."""
    records.reverse()
    while records:
        yield records.pop()


def _warm_up_later_stages() -> None:
    """Import what dedupe and store need while the crawl child starts (a core is idle then).

    (The cleaning is the workers': `extract_batch` loads its language model before they fork.)"""
    try:
        import pyarrow as pa

        import pipeline.stages.dedupe
        import pipeline.stages.store  # noqa: F401
        from pipeline.stages.dedupe_index import DedupeConfig, lsh_params

        pa.array(["x"])  # pyarrow imports pandas (~0.35 s) on its first array from Python objects
        cfg = DedupeConfig()
        lsh_params(cfg.threshold, cfg.num_perm)
    except Exception as exc:  # only an optimisation: the stages import what they need anyway
        log.debug("warm-up of later stages failed: %s", exc)


def crawl_and_extract(
    ctx: RunContext,
    sources: list[str],
    *,
    rep: Reporter,
    workers: int | None = None,
    timeout: float = 30,
    jobs: int | None = None,
) -> StreamedCrawl:
    """Crawl `sources`, up to `jobs` at once (never two of one host at once), extracting (and cleaning)
    their pages as they are archived. A crawl that fails does not stop the others."""
    jobs = default_jobs(len(sources)) if jobs is None else max(1, jobs)
    hosts = {name: source_hosts(ctx.sources.source(name)) for name in sources}
    for folder in remove_stale_spools(var_dir()):  # left by a run that was killed
        log.warning("removed the stale spool folder %s", folder)
    held = Spool(var_dir(), f"warc-{safe_segment(ctx.run_id)}-")
    spool = held.path
    t0 = time.perf_counter()
    crawl_end = t0
    crawls: dict[str, _Crawl] = {}
    pending = list(sources)
    pointers: list[dict] = []  # per item, in input order, without the HTML (emptied once its outcome is in)
    extracted = 0

    def start_some() -> None:
        running = [c for c in crawls.values() if not c.collected]
        busy = {host for c in running for host in hosts[c.name]}
        for name in startable(pending, hosts, busy, jobs - len(running)):
            pending.remove(name)
            folder = spool / safe_segment(name)
            folder.mkdir()
            crawl = _Crawl(
                name, WarcTail(folder, raw_prefix(ctx.run_id, name)), rep.line(f"crawl {name}", unit="responses")
            )
            crawl.follow.enter_context(rep.follow(crawl_log_path(ctx, name), advance=crawl.line.advance))
            crawls[name] = crawl.start(ctx)

    def collect(crawl: _Crawl) -> None:
        """The crawl's process ended and its last records were read: end its line, free its hosts."""
        assert crawl.thread is not None
        crawl.thread.join()
        crawl.follow.close()
        crawl.collected = True
        if crawl.error is not None:
            log.error("crawl of %s failed: %s", crawl.name, crawl.error)
            crawl.line.end(failed=str(crawl.error).splitlines()[0][:200])
        else:
            crawl.line.end()
        rep.advance()  # one more source of the crawl stage

    def items() -> Iterator[dict]:
        nonlocal crawl_end
        # Started here, once the pool's workers are forked: a fork while this thread imports
        # would hand the workers half-imported modules.
        threading.Thread(target=_warm_up_later_stages, name="warm-up", daemon=True).start()
        while True:
            start_some()
            running = [c for c in crawls.values() if not c.collected]
            if not running:
                break
            behind = False
            for crawl in running:
                finished = crawl.done.is_set()  # before the poll: then the polls read its last records too
                records = crawl.tail.poll()  # a few MB of pages at a time: the rest wait on disk, not in memory
                behind |= crawl.tail.behind
                for rec in _drain(records):
                    item = warc_item(rec)
                    if item is not None:
                        pointers.append(item)
                        yield {**item, "html": rec.text()}
                if finished and not crawl.tail.behind:
                    collect(crawl)
            if not behind and all(not c.done.is_set() for c in crawls.values() if not c.collected):
                time.sleep(POLL_SECONDS)
        crawl_end = max(c.ended for c in crawls.values()) if crawls else time.perf_counter()
        log.info(
            "crawls ended after %.2f s; %s of %s pages extracted by %.2f s",
            crawl_end - t0,
            extracted,
            len(pointers),
            time.perf_counter() - t0,
        )
        rep.stage("extract (the pages left when the crawls ended)", total=len(pointers) - extracted, unit="pages")

    outcomes = SpooledOutcomes(ctx.run_id)
    try:
        rep.stage(f"crawl ({len(sources)} sources, up to {jobs} at once)", total=len(sources), unit="sources")
        # The first Scrapy children start now (their start-up takes a second or more); building the
        # clean step and forking the pool overlap it. The fork lock keeps the forks apart.
        start_some()
        from pipeline.stages.clean import CleanStep
        from pipeline.stages.extract import extract_outcomes, warc_item

        # Each page is cleaned by the worker that extracted it (the clean stage's step), during the
        # crawl, rather than all of them in this process after it.
        step = CleanStep.of(ctx)
        batch = extract_outcomes(
            items(),
            workers=workers,
            timeout=timeout,
            rules_for=lambda item: step.rules.get(item.get("source") or ""),
            then=step,
        )
        for index, outcome in enumerate(batch):
            item, pointers[index] = pointers[index], {}
            outcomes.add(item, outcome)
            extracted += 1
            if crawl_end > t0:
                rep.advance()
        keys, failed, cleaned = _write(ctx, sources, crawls, outcomes, workers=workers, timeout=timeout)
    except BaseException:
        outcomes.close()
        raise
    finally:
        for crawl in crawls.values():  # an exception above: do not leave a crawl thread behind
            if crawl.thread is not None:
                crawl.thread.join()
            crawl.follow.close()
        held.release()
    end = time.perf_counter()
    return StreamedCrawl(
        keys, {"crawl": round(crawl_end - t0, 3), "extract": round(end - crawl_end, 3)}, failed, cleaned, outcomes
    )


def _write(
    ctx: RunContext,
    sources: list[str],
    crawls: dict[str, _Crawl],
    outcomes: SpooledOutcomes | None,
    *,
    workers: int | None,
    timeout: float,
) -> tuple[list[str], dict[str, str], dict[str, Iterable[Outcome]]]:
    """Store the extraction of each finished crawl's WARC files; re-extract from the bucket when the
    streamed records cannot be vouched for. Returns (extracted keys, failed sources, the cleaning
    outcomes of the streamed keys)."""
    finished, failed = crawl_outcome(ctx, sources)
    for name, reason in failed.items():
        log.warning("source %s failed; its pages are left for the next run: %s", name, reason.splitlines()[0])
    keys: list[str] = []
    from pipeline.stages.extract import extract_stage, write_extraction

    cleaned: dict[str, Iterable[Outcome]] = {}
    for summary in sorted(finished, key=lambda s: s["source"]):
        crawl = crawls.get(summary["source"])
        warc_keys = sorted(summary.get("warc_keys", []))
        streamed = (
            crawl is not None and crawl.error is None and crawl.tail.fully_read() and crawl.tail.keys() == warc_keys
        )
        for key in warc_keys:
            if streamed and outcomes is not None:
                keys.append(write_extraction(ctx, key, outcomes.pairs(key)))
                cleaned[keys[-1]] = outcomes.cleaned(key) or []
            else:
                log.warning("extract %s again from the bucket: its records were not all read while crawling", key)
                keys.append(extract_stage(ctx, key, workers=workers, timeout=timeout))
    return keys, failed, cleaned
