"""`import-warc`: web archives (CC-NEWS, any WARC collection) through the same clean, dedupe and store
steps as a crawl (`pipeline.flows.ingest._finish`, which `reextract_run` uses too).

An archive file is read as one stream, in chunks of `chunk_records` selected records. Each chunk is
one run (`<run stamp>-w<file hash>-<chunk>`): extracted and cleaned by the workers, then deduped and
committed. A per-file state object, `state/warc-import/<name>/<file hash>.json`, written with
conditional PUTs, records the next chunk and the offset where it starts:

* a file whose state says `done` with the same size / ETag is skipped (importing it again adds nothing);
* a file interrupted part-way (`kill -9`) restarts from the start of its first uncommitted chunk (a
  range request for gzip-per-record files); a chunk whose commit happened but whose state write did
  not is redone under the same run id, and a run's commit replaces that run's rows: no row is doubled;
* two importers of the same file race on the state's ETag: the loser stops (`PreconditionFailed`).
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from pipeline.core.config import S3Settings
from pipeline.core.context import RunContext
from pipeline.core.errors import PreconditionFailed
from pipeline.core.layout import extracted_key, make_run_id, safe_segment
from pipeline.dataset.rejects import write_rejects
from pipeline.dataset.warc import ArchiveRecord, iter_archive
from pipeline.dataset.warc_sources import ArchiveFile, Remote
from pipeline.runtime.progress import reporter_for
from pipeline.stages.warc_import import ImportCounts, ImportFilters, ImportStep, extract_records

log = logging.getLogger(__name__)

STATE_PREFIX = "state/warc-import/"
#: Selected records (pages handed to extraction) per chunk, i.e. per commit: bounds memory and lost work.
DEFAULT_CHUNK_RECORDS = 1000


def state_key(name: str, uri: str) -> str:
    """`state/warc-import/<name>/<sha256(uri)[:32]>.json`: the import state of one archive file."""
    return f"{STATE_PREFIX}{safe_segment(name)}/{file_hash(uri)}.json"


def file_hash(uri: str) -> str:
    return hashlib.sha256(uri.encode()).hexdigest()[:32]


@dataclass
class ImportOptions:
    """Everything an import of one file needs besides the file (picklable: a DAG task gets it)."""

    name: str
    filters: ImportFilters = field(default_factory=ImportFilters)
    remote: Remote = field(default_factory=Remote)
    sources_path: Path | None = None
    #: The project's bucket (None: from the environment).
    s3: S3Settings | None = None
    chunk_records: int = DEFAULT_CHUNK_RECORDS
    workers: int | None = None
    timeout: float = 30


class _State:
    """The state object of one file, read and written with its ETag (conditional writes)."""

    def __init__(self, ctx_bucket: Any, key: str, data: dict, etag: str | None) -> None:
        self.bucket, self.key, self.data, self.etag = ctx_bucket, key, data, etag

    @classmethod
    def load(cls, bucket: Any, key: str) -> _State | None:
        got = bucket.get_with_etag(key)
        if got is None:
            return None
        import json

        return cls(bucket, key, json.loads(got[0]), got[1])

    def save(self) -> None:
        """Write the state; PreconditionFailed when someone else wrote it since we read it."""
        self.data["updated_at"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
        if self.etag is None:
            self.etag = self.bucket.put_json(self.key, self.data, if_none_match="*")
        else:
            self.etag = self.bucket.put_json(self.key, self.data, if_match=self.etag)


def _claim(bucket: Any, archive: ArchiveFile, name: str) -> _State | None:
    """The state to import `archive` under (new, or the interrupted one to resume); None when it is done."""
    key = state_key(name, archive.uri)
    state = _State.load(bucket, key)
    identity = archive.identity()
    if state is not None and state.data.get("identity") == identity:
        if state.data.get("status") == "done":
            return None
        state.data["attempts"] = int(state.data.get("attempts", 0)) + 1
        state.save()  # take it over: a concurrent importer's next write now fails
        return state
    fresh = {
        "uri": archive.uri,
        "name": name,
        "identity": identity,
        "run_base": f"{make_run_id(datetime.now(timezone.utc))}-w{file_hash(archive.uri)[:12]}",
        "status": "running",
        "next_chunk": 0,
        "next_offset": 0,
        "seekable": None,
        "attempts": 1,
        "counts": {},
    }
    if state is None:
        state = _State(bucket, key, fresh, None)
    else:  # the file changed since it was imported (other size or ETag): import it again, under new runs
        log.warning(
            "%s changed since its import (%s -> %s): importing it again",
            archive.uri,
            state.data.get("identity"),
            identity,
        )
        state.data = fresh
    state.save()
    return state


def _merge(total: dict, counts: dict) -> dict:
    """Sum two `ImportCounts.as_dict()` results."""
    out = dict(total)
    for key, value in counts.items():
        if isinstance(value, dict):
            merged = dict(out.get(key) or {})
            for k, v in value.items():
                merged[k] = merged.get(k, 0) + v
            out[key] = merged
        else:
            out[key] = out.get(key, 0) + value
    return out


def _chunks(
    records: Iterator[ArchiveRecord], filters: ImportFilters, size: int
) -> Iterator[tuple[list[ArchiveRecord], int, bool]]:
    """The records in chunks of about `size` selected records: (chunk, offset after it, last chunk?).

    A chunk ends after a record, so the next starts on a record boundary (a gzip member for a
    `.warc.gz` of one member per record) and can be read with one range request.
    """
    chunk: list[ArchiveRecord] = []
    selected = 0
    end = None
    for rec in records:
        chunk.append(rec)
        end = rec.offset + rec.length
        if rec.problem is None and rec.response is not None:
            if filters.skip_reason(rec) is None:
                selected += 1
            else:
                rec.response.body = b""  # only counted: its bytes need not wait in memory for the chunk
        if selected >= size:
            yield chunk, end, False
            chunk, selected = [], 0
    yield chunk, end or 0, True


def import_file(archive: ArchiveFile, opts: ImportOptions, *, say: Callable[[str], None] | None = None) -> dict:
    """Import one archive file; a summary (`status`: done | skipped, counts, run ids)."""
    from pipeline.flows.ingest import _finish  # the clean, dedupe, commit and report steps of every run

    base_ctx = RunContext(make_run_id(datetime.now(timezone.utc)), **_ctx_kwargs(opts))
    bucket = base_ctx.bucket
    archive = archive if archive.size is not None else archive.stat(opts.remote)
    state = _claim(bucket, archive, opts.name)
    if state is None:
        log.info("%s: already imported, skipped", archive.uri)
        return {"uri": archive.uri, "status": "skipped"}
    offset = int(state.data["next_offset"])
    seekable = state.data.get("seekable")
    resume_at = offset if seekable else 0
    stream = archive.open(opts.remote, resume_at)
    step = ImportStep(_clean_step(base_ctx), opts.filters.languages)
    runs: list[str] = list(state.data.get("runs", []))
    t0 = time.perf_counter()
    try:
        records = iter_archive(stream, archive.uri, start=resume_at, skip_before=offset)
        for chunk, end, last in _chunks(records, opts.filters, opts.chunk_records):
            n = int(state.data["next_chunk"])
            ctx = RunContext(f"{state.data['run_base']}-{n:04d}", **_ctx_kwargs(opts))
            counts = ImportCounts()
            kept = extract_records(
                chunk, opts.filters, counts, source=opts.name, step=step, workers=opts.workers, timeout=opts.timeout
            )
            if seekable is None and chunk:
                seekable = state.data["seekable"] = all(r.compressed for r in chunk)
            write_rejects(ctx, "import", counts.samples)
            if kept:
                key = extracted_key(ctx.run_id, archive.uri)
                _finish(ctx, [], [key], timings={}, failed={}, cleaned={key: kept}, rep=reporter_for(say))
                runs.append(ctx.run_id)
            state.data.update(
                next_chunk=n + 1,
                next_offset=end,
                runs=runs,
                counts=_merge(state.data.get("counts") or {}, counts.as_dict()),
            )
            if last:
                state.data["status"] = "done"
            state.save()
            log.info("%s chunk %d: %s", archive.uri, n, counts.as_dict())
    finally:
        stream.close()
    return {
        "uri": archive.uri,
        "status": "done",
        "runs": runs,
        "counts": state.data["counts"],
        "seconds": round(time.perf_counter() - t0, 3),
    }


def _ctx_kwargs(opts: ImportOptions) -> dict:
    out: dict[str, Any] = {"s3": opts.s3 or S3Settings.from_env()}
    if opts.sources_path is not None:
        out["sources_path"] = opts.sources_path
    return out


def _clean_step(ctx: RunContext):
    """The clean stage's step with the configured sources' rules when a sources file is there."""
    from pipeline.core.config import ConfigError
    from pipeline.stages.clean import CleanStep

    try:
        return CleanStep.of(ctx)
    except ConfigError:
        return CleanStep()


def import_archives(
    archives: list[ArchiveFile], opts: ImportOptions, *, say: Callable[[str], None] | None = None
) -> list[dict]:
    """Import each file in turn; one summary per file (a file another importer holds: `status` busy)."""
    out = []
    for archive in archives:
        try:
            out.append(import_file(archive, opts, say=say))
        except PreconditionFailed:
            log.warning("%s: another importer took this file over; left to it", archive.uri)
            out.append({"uri": archive.uri, "status": "busy"})
    return out
