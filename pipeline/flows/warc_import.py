"""`import-warc`: web archives (CC-NEWS, any WARC collection) through the same clean, dedupe and store
steps as a crawl (`pipeline.flows.ingest.finish_step`, which `run_once` and `reextract_run` use too).

An archive file is read as one stream, in chunks of `chunk_records` selected records. Each chunk is
one run (`<run stamp>-w<file hash>-<chunk>`): extracted and cleaned by the workers, then deduped and
committed. A per-file state object, `state/warc-import/<name>/<file hash>.json`, written with
conditional PUTs, records the next chunk and the offset where it starts:

* a file whose state says `done` with the same size / ETag is skipped (importing it again adds nothing);
* a file interrupted part-way (`kill -9`) restarts from the start of its first uncommitted chunk (a
  range request for gzip-per-record files); a chunk whose commit happened but whose state write did
  not is redone under the same run id, and a run's commit replaces that run's rows: no row is doubled;
* two importers of the same file: the first takes the file's lease, `<file hash>.lease.json` next to
  its state, created with a conditional PUT (`If-None-Match: *`: S3 answers 412 to the second), and
  renews it while it works; the other is told the file is being imported by another run (status
  `busy`, exit 0) and leaves it. A lease not renewed for `lease_seconds` (its importer died) is taken
  over with a PUT conditional on its ETag, so of two importers taking it over one wins. Expiry is judged
  by the clocks of the importers' machines. Behind the lease the state's ETag still guards every write.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from pipeline.core.config import S3Settings
from pipeline.core.context import RunContext
from pipeline.core.errors import PreconditionFailed, StorageError
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
#: How long a file's lease lasts unless renewed (it is renewed every third of that while the import works).
LEASE_SECONDS = 600.0


def state_key(name: str, uri: str) -> str:
    """`state/warc-import/<name>/<sha256(uri)[:32]>.json`: the import state of one archive file."""
    return f"{STATE_PREFIX}{safe_segment(name)}/{file_hash(uri)}.json"


def lease_key(name: str, uri: str) -> str:
    """`state/warc-import/<name>/<sha256(uri)[:32]>.lease.json`: who imports that file now, until when."""
    return f"{STATE_PREFIX}{safe_segment(name)}/{file_hash(uri)}.lease.json"


def file_hash(uri: str) -> str:
    return hashlib.sha256(uri.encode()).hexdigest()[:32]


class LeaseHeld(PreconditionFailed):
    """Another importer holds the file's lease and renewed it in time: the file is being imported by another run."""

    def __init__(self, uri: str, holder: dict) -> None:
        self.holder = holder
        until = datetime.fromtimestamp(float(holder.get("expires_at", 0)), timezone.utc).isoformat(timespec="seconds")
        super().__init__(f"{uri} is being imported by another run ({holder.get('owner')}, lease until {until})")


class Lease:
    """One importer's lease on one archive file (see the module docstring); `renew()` it while working."""

    def __init__(self, bucket: Any, key: str, uri: str, seconds: float) -> None:
        self.bucket, self.key, self.uri, self.seconds = bucket, key, uri, seconds
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.etag: str | None = None
        self.renewed = 0.0

    def _body(self) -> dict:
        now = time.time()
        return {"owner": self.owner, "uri": self.uri, "renewed_at": now, "expires_at": now + self.seconds}

    def acquire(self) -> Lease:
        """Take the lease: create it, or take over an expired one. LeaseHeld when another importer holds it."""
        try:
            self._put(if_none_match="*")
            return self
        except PreconditionFailed:
            pass
        got = self.bucket.get_with_etag(self.key)
        if got is None:  # released between our PUT and our GET: one more try, and whoever wins it wins
            try:
                self._put(if_none_match="*")
            except PreconditionFailed:
                raise LeaseHeld(self.uri, self._holder()) from None
            return self
        holder = json.loads(got[0])
        if float(holder.get("expires_at", 0)) > time.time():
            raise LeaseHeld(self.uri, holder)
        log.warning("%s: the lease of %s expired without being renewed: taking the file over", self.uri, holder)
        try:
            self._put(if_match=got[1])
        except PreconditionFailed:  # another importer took it over first
            raise LeaseHeld(self.uri, self._holder()) from None
        return self

    def _holder(self) -> dict:
        got = self.bucket.get_with_etag(self.key)
        return json.loads(got[0]) if got else {}

    def _put(self, **condition: str) -> None:
        self.etag = self.bucket.put_json(self.key, self._body(), **condition)
        self.renewed = time.monotonic()

    def renew(self, *, force: bool = False) -> None:
        """Extend the lease when a third of it has passed (or `force`); PreconditionFailed when it was lost
        (another importer took it over after it expired): stop, the other importer goes on."""
        if not self.etag:  # never taken: an unconditional write would steal another importer's lease
            raise PreconditionFailed(f"{self.uri}: the lease was never taken")
        if force or time.monotonic() - self.renewed >= self.seconds / 3:
            try:
                self._put(if_match=self.etag)
            except PreconditionFailed:
                raise PreconditionFailed(f"{self.uri}: lost the lease to another importer") from None

    def release(self) -> None:
        """Delete the lease if it is still ours (an importer that took it over keeps its own)."""
        try:
            got = self.bucket.get_with_etag(self.key)
            if got is not None and got[1] == self.etag:
                self.bucket.delete([self.key])
        except StorageError as exc:  # it expires anyway
            log.warning("%s: could not release the lease: %s", self.uri, exc)


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
    #: Seconds a file's lease lasts unless renewed: how long a dead importer's file waits to be taken over.
    lease_seconds: float = LEASE_SECONDS


class _State:
    """The state object of one file, read and written with its ETag (conditional writes)."""

    def __init__(self, ctx_bucket: Any, key: str, data: dict, etag: str | None) -> None:
        self.bucket, self.key, self.data, self.etag = ctx_bucket, key, data, etag

    @classmethod
    def load(cls, bucket: Any, key: str) -> _State | None:
        got = bucket.get_with_etag(key)
        if got is None:
            return None
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
    records: Iterator[ArchiveRecord], filters: ImportFilters, size: int, tick: Callable[[], None] = lambda: None
) -> Iterator[tuple[list[ArchiveRecord], int, bool]]:
    """The records in chunks of about `size` selected records: (chunk, offset after it, last chunk?).

    A chunk ends after a record, so the next starts on a record boundary (a gzip member for a
    `.warc.gz` of one member per record) and can be read with one range request. `tick()` is
    called after each record read (the lease's renewal: reading a chunk of a slow remote file is long).
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
        tick()
        if selected >= size:
            yield chunk, end, False
            chunk, selected = [], 0
    yield chunk, end or 0, True


def _is_done(bucket: Any, archive: ArchiveFile, name: str) -> bool:
    """The file's state says it was imported, as it is now (same size / ETag)."""
    got = bucket.get_with_etag(state_key(name, archive.uri))
    if got is None:
        return False
    data = json.loads(got[0])
    return data.get("status") == "done" and data.get("identity") == archive.identity()


def import_file(archive: ArchiveFile, opts: ImportOptions, *, say: Callable[[str], None] | None = None) -> dict:
    """Import one archive file; a summary (`status`: done, skipped when imported already, or busy when
    another importer holds its lease; counts, run ids). PreconditionFailed when the lease was lost on the way."""
    bucket = RunContext(make_run_id(datetime.now(timezone.utc)), **_ctx_kwargs(opts)).bucket
    archive = archive if archive.size is not None else archive.stat(opts.remote)
    skipped = {"uri": archive.uri, "status": "skipped"}
    if _is_done(bucket, archive, opts.name):  # read-only: re-importing a month takes no lease per file
        log.info("%s: already imported, skipped", archive.uri)
        return skipped
    try:
        lease = Lease(bucket, lease_key(opts.name, archive.uri), archive.uri, opts.lease_seconds).acquire()
    except LeaseHeld as exc:
        log.warning("%s: left to it", exc)
        return {"uri": archive.uri, "status": "busy", "holder": exc.holder.get("owner")}
    try:
        state = _claim(bucket, archive, opts.name)
        if state is None:  # finished by another importer between our look and our lease
            log.info("%s: already imported, skipped", archive.uri)
            return skipped
        return _import_claimed(archive, opts, state, lease, say)
    finally:
        lease.release()


def _import_claimed(
    archive: ArchiveFile, opts: ImportOptions, state: _State, lease: Lease, say: Callable[[str], None] | None
) -> dict:
    """The chunks of a file whose lease and state this importer holds, from the state's next chunk on."""
    from pipeline.flows.ingest import finish_step  # the clean, dedupe, commit and report steps of every run

    base_ctx = RunContext(make_run_id(datetime.now(timezone.utc)), **_ctx_kwargs(opts))
    offset = int(state.data["next_offset"])
    seekable = state.data.get("seekable")
    resume_at = offset if seekable else 0
    stream = archive.open(opts.remote, resume_at)
    step = ImportStep(_clean_step(base_ctx), opts.filters.languages)
    runs: list[str] = list(state.data.get("runs", []))
    t0 = time.perf_counter()
    try:
        records = iter_archive(stream, archive.uri, start=resume_at, skip_before=offset)
        for chunk, end, last in _chunks(records, opts.filters, opts.chunk_records, lease.renew):
            n = int(state.data["next_chunk"])
            ctx = RunContext(f"{state.data['run_base']}-{n:04d}", **_ctx_kwargs(opts))
            # The sample of rejects is per file: the reasons' counts of its committed chunks say how many
            # were sampled already (the first REJECT_SAMPLE of each), also after a resume.
            counts = ImportCounts(skipped_before=(state.data.get("counts") or {}).get("skipped") or {})
            kept = extract_records(
                chunk,
                opts.filters,
                counts,
                source=opts.name,
                step=step,
                workers=opts.workers,
                timeout=opts.timeout,
                on_record=lambda _rec: lease.renew(),
            )
            if seekable is None and chunk:
                seekable = state.data["seekable"] = all(r.compressed for r in chunk)
            lease.renew()  # still ours before the commit (raises when another importer took the file over)
            write_rejects(ctx, "import", counts.samples)
            if kept:
                key = extracted_key(ctx.run_id, archive.uri)
                finish_step(ctx, [], [key], timings={}, failed={}, cleaned={key: kept}, rep=reporter_for(say))
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
    """Import each file in turn; one summary per file (a file another importer holds or took over: `status` busy)."""
    out = []
    for archive in archives:
        try:
            out.append(import_file(archive, opts, say=say))
        except PreconditionFailed as exc:
            log.warning("%s: another importer took this file over (%s); left to it", archive.uri, exc)
            out.append({"uri": archive.uri, "status": "busy"})
    return out
