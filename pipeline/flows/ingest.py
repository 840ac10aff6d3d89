"""THE stage order: crawl, extract, clean, dedupe, store (commit), report, check.

Each stage has one step function here, taking the run's `RunContext` and bucket keys and
returning keys (small enough for XCom). Every entry point calls these steps:

* the Airflow DAG `news_ingest`, one task per step (`dags/news_ingest.py`);
* `run_once()`, what `python -m pipeline run` does in one process: with `streaming=True` (the
  default) the first two steps run at once (`pipeline.flows.streaming`), the rest in order;
* `reextract_run()`, which rebuilds a run's articles from its WARC files alone;
* maintenance (`pipeline.flows.maintenance`), which calls `reextract_run`.

Adding a stage means a module in `pipeline/stages/`, a step here called from `finish_step`
(or before it), and a task in the DAG that calls the step.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from pipeline.core.context import RunContext
from pipeline.core.layout import report_key
from pipeline.runtime.progress import Reporter, reporter_for
from pipeline.stages.crawl import crawl_outcome, crawl_source, crawl_summaries, finished_warc_keys

if TYPE_CHECKING:
    from pipeline.stages.clean import Outcome

# The other stages (extract, clean, dedupe, store: ~1 s of imports with trafilatura, pyarrow and
# numpy) are imported inside their steps, not for a cycle: so that `python -m pipeline run` starts
# its first Scrapy child (~1.5 s to its first request) before loading them, and the two overlap.

log = logging.getLogger(__name__)


class RunFailed(RuntimeError):
    """The run finished, but a source failed or nothing was committed (the report names why)."""


# --------------------------------------------------------------------------- the steps, in order


def sources_step(ctx: RunContext, only: Iterable[str] | None = None) -> list[str]:
    """First step: the bucket is reachable with these credentials and the sources file is valid;
    the names of the sources to crawl (unknown names in `only` raise ConfigError)."""
    ctx.bucket.check()  # wrong credentials or a missing bucket: fail before crawling anything
    names = [s.name for s in ctx.sources.sources]
    if only:
        wanted = list(only)
        for name in wanted:
            ctx.sources.source(name)  # raises ConfigError naming the bad source
        names = [n for n in names if n in wanted]
    return names


def crawl_step(
    ctx: RunContext, source: str, *, try_number: int | None = None, settings: dict[str, str] | None = None
) -> dict:
    """Crawl one source into the run's WARC archive; a failure is recorded for the report, then raised."""
    return crawl_source(ctx, source, try_number=try_number, settings=settings)


def warc_files_step(ctx: RunContext, sources: Iterable[str]) -> list[str]:
    """After every crawl, whatever its state: the WARC files of the crawls that finished.

    None when no source was reached (`reached_sources`): then nothing is extracted and nothing committed.
    """
    names = list(sources or [])
    keys, failed = finished_warc_keys(ctx, names)
    if names and not reached_sources(ctx, names, failed):
        log.error("no source was reached in run %s: nothing to extract or commit", ctx.run_id)
        return []
    return keys


def reached_sources(ctx: RunContext, sources: Iterable[str], failed: Mapping[str, str]) -> list[str]:
    """The sources whose crawl reached them (`pipeline.report.health.crawl_failure` found nothing wrong)."""
    from pipeline.report.health import crawl_failure

    summaries = {s["source"]: s for s in crawl_summaries(ctx)}
    return [
        name
        for name in sources
        if not crawl_failure(summaries[name].get("stats", {}) if name in summaries else None, failed.get(name))
    ]


def extract_step(ctx: RunContext, warc_key: str) -> str:
    """Extract one WARC file's articles; the key of the extracted file."""
    from pipeline.stages.extract import extract_stage

    return extract_stage(ctx, warc_key)


def clean_step(
    ctx: RunContext, extracted_keys: list[str], *, cleaned: Mapping[str, Iterable[Outcome]] | None = None
) -> str:
    """Clean every extracted record; the key of the cleaned file (`cleaned`: outcomes already computed)."""
    from pipeline.stages.clean import clean_stage

    return clean_stage(ctx, list(extracted_keys), cleaned=cleaned)


def dedupe_step(ctx: RunContext, cleaned_key: str) -> str:
    """Mark url / exact / near duplicates against the run and the index; the key of the deduped file."""
    from pipeline.stages.dedupe import dedupe_stage

    return dedupe_stage(ctx, cleaned_key)


def commit_step(ctx: RunContext, deduped_key: str, sources: Iterable[str] | None = None) -> str:
    """Store the run's articles (one Delta commit replacing this run's rows of `sources` and of the
    records' sources), then mark their URLs seen and remember the pages refused as not articles;
    the commit's key (`articles/_delta_log/<version>.json`)."""
    from pipeline.dataset.rejects import read_rejects
    from pipeline.dataset.state import SEEN_FIELDS, record_refused, record_stored
    from pipeline.stages.store import store_stage

    manifest_key = store_stage(ctx, deduped_key, sources=sources)
    # After the commit only: a URL marked seen is never fetched again, so it must be stored first.
    # Only the fields the seen state keeps: the texts of a whole run need not sit in memory for it.
    rows = [
        {**{k: row.get(k) for k in SEEN_FIELDS if k in row}, "run_id": ctx.run_id}
        for row in ctx.bucket.iter_jsonl(deduped_key)
    ]
    record_stored(ctx.bucket, rows)
    record_refused(ctx.bucket, read_rejects(ctx), ctx.run_id)
    return manifest_key


def report_step(
    ctx: RunContext,
    sources: Iterable[str] | None,
    deduped_key: str | None,
    manifest_key: str | None,
    *,
    timings: Mapping[str, float] | None = None,
    failed: Mapping[str, str] | None = None,
) -> dict:
    """Write the run report (JSON + HTML) naming every failed source; returns the report.

    `failed` defaults to what the crawls recorded in the bucket (the DAG's case).
    """
    from pipeline.report.run_report import write_report

    names = list(sources or [])
    if failed is None:
        _, failed = crawl_outcome(ctx, names)
    return write_report(
        ctx,
        sources=names,
        timings=dict(timings or {}),
        failed_sources=dict(failed),
        deduped_key=deduped_key,
        manifest_key=manifest_key,
    )


def headline(report: Mapping[str, Any]) -> dict:
    """The small part of a report that goes through XCom to the check step."""
    from pipeline.report.health import unhealthy

    return {
        "run_id": report["run_id"],
        "articles_stored": report["articles_stored"],
        "rejects": report["rejects"],
        "failed_sources": sorted(report["failed_sources"]),
        # {source: reasons} of every source whose status is `failed` (unreachable, or its crawl failed)
        "unhealthy": unhealthy(report),
        "status_counts": dict(report.get("status_counts") or {}),
        "committed": report.get("manifest") is not None,
        "report": report_key(report["run_id"]),
    }


def run_problems(head: Mapping[str, Any]) -> list[str]:
    """Why a run counts as failed: each failed source with its reasons, and a run that committed nothing."""
    failed = {name: list(reasons) for name, reasons in (head.get("unhealthy") or {}).items()}
    for name in head.get("failed_sources") or []:
        failed.setdefault(name, ["crawl failed"])
    problems = [f"source {name} failed: {'; '.join(reasons)}" for name, reasons in sorted(failed.items())]
    if not head.get("committed"):
        problems.append("no articles were committed")
    return problems


def check_step(head: Mapping[str, Any] | None) -> None:
    """Raise RunFailed when a source failed or nothing was committed (after the report is written)."""
    if not head:
        raise RunFailed("the run report step produced nothing")
    problems = run_problems(head)
    if problems:
        note = "the other sources' articles are committed" if head.get("committed") else "nothing was committed"
        raise RunFailed(f"run {head.get('run_id')}: {'; '.join(problems)} ({note}; see {head.get('report')})")


# --------------------------------------------------------------------------- whole runs


def run_once(
    ctx: RunContext,
    *,
    only_sources: list[str] | None = None,
    say: Callable[[str], None] | None = None,
    streaming: bool = True,
    jobs: int | None = None,
) -> dict:
    """Every step in order for the configured sources, in this process; returns the report.

    A source whose crawl fails is named in the report; the others go on. With `streaming`, pages
    are extracted (and cleaned) while the crawls run; without it, crawl then extract, as the DAG does.
    """
    rep = reporter_for(say)
    sources = sources_step(ctx, only_sources)
    if streaming:
        from pipeline.flows.streaming import crawl_and_extract

        # `jobs` crawls at once; the workers' cleaning outcomes wait in a local spool until the clean step
        with crawl_and_extract(ctx, sources, rep=rep, jobs=jobs) as streamed:
            return finish_step(
                ctx,
                sources,
                streamed.extracted_keys,
                timings=dict(streamed.timings),
                failed=streamed.failed_sources,
                cleaned=streamed.cleaned,
                rep=rep,
            )
    else:
        t0 = time.perf_counter()
        for name in sources:
            rep.stage(f"crawl {name}")
            try:
                crawl_step(ctx, name)
            except Exception as exc:  # recorded in the bucket by crawl_source; the other sources go on
                log.error("crawl of %s failed: %s", name, exc)
        warc_keys, failed = finished_warc_keys(ctx, sources)
        timings = {"crawl": round(time.perf_counter() - t0, 3)}
        extracted = _extract_all(ctx, warc_keys, timings=timings, rep=rep)
        cleaned = None
    return finish_step(ctx, sources, extracted, timings=timings, failed=failed, cleaned=cleaned, rep=rep)


def reextract_run(ctx: RunContext, *, say: Callable[[str], None] | None = None) -> dict:
    """Rebuild a run's articles from its WARC files alone (no network), and commit them again.

    Raises FileNotFoundError when the run has no WARC files.
    """
    from pipeline.dataset.warc import run_warc_keys

    rep = reporter_for(say)
    warc_keys = run_warc_keys(ctx.bucket, ctx.run_id)
    if not warc_keys:
        raise FileNotFoundError(f"no WARC files for run {ctx.run_id}")
    timings: dict[str, float] = {}
    extracted = _extract_all(ctx, warc_keys, timings=timings, rep=rep)
    sources = sorted({s["source"] for s in crawl_summaries(ctx)})
    return finish_step(ctx, sources, extracted, timings=timings, failed={}, cleaned=None, rep=rep)


def _extract_all(ctx: RunContext, warc_keys: list[str], *, timings: dict[str, float], rep: Reporter) -> list[str]:
    """`extract_step` over every WARC file, one after another; its seconds go to `timings["extract"]`."""
    t0 = time.perf_counter()
    rep.stage("extract", total=len(warc_keys), unit="files")
    extracted = []
    for key in warc_keys:
        extracted.append(extract_step(ctx, key))
        rep.advance()
    timings["extract"] = round(time.perf_counter() - t0, 3)
    return extracted


def finish_step(
    ctx: RunContext,
    sources: list[str],
    extracted: list[str],
    *,
    timings: dict[str, float],
    failed: Mapping[str, str],
    cleaned: Mapping[str, Iterable[Outcome]] | None,
    rep: Reporter,
) -> dict:
    """The steps after extraction, in this process: clean, dedupe, commit, report; returns the report.

    Shared by every whole run: `run_once`, `reextract_run` and each chunk of `import-warc`
    (`pipeline.flows.warc_import`). `extracted` are the extracted files' keys; `cleaned` maps some of
    them to outcomes the extraction workers already cleaned (those are not cleaned again); `timings`
    gets each step's seconds. A run that reached none of `sources` commits nothing (an outage is not
    an empty hour) and the report says why; with no `sources` (an archive import) nothing is checked.
    """
    if sources and not reached_sources(ctx, sources, failed):
        log.error("no source was reached in run %s: nothing committed", ctx.run_id)
        rep.close()
        return report_step(ctx, sources, None, None, timings=timings, failed=failed)
    t0 = time.perf_counter()
    rep.stage("clean")
    cleaned_key = clean_step(ctx, extracted, cleaned=cleaned)
    timings["clean"] = round(time.perf_counter() - t0, 3)
    t0 = time.perf_counter()
    rep.stage("dedupe")
    deduped_key = dedupe_step(ctx, cleaned_key)
    timings["dedupe"] = round(time.perf_counter() - t0, 3)
    t0 = time.perf_counter()
    rep.stage("store")
    manifest_key = commit_step(ctx, deduped_key, sources)
    timings["store"] = round(time.perf_counter() - t0, 3)
    rep.close()
    return report_step(ctx, sources, deduped_key, manifest_key, timings=timings, failed=failed)


def report_and_summarise(
    ctx: RunContext, sources: Iterable[str] | None, deduped_key: str | None, manifest_key: str | None
) -> dict:
    """The DAG's report step: write the report, print its summary to the task log, return the headline."""
    from pipeline.report.dag_timings import stage_seconds_from_airflow
    from pipeline.report.run_report import print_summary

    report = report_step(ctx, sources, deduped_key, manifest_key, timings=stage_seconds_from_airflow())
    print_summary(report)
    return headline(report)
