"""The store stage: articles -> Parquet in the bucket, committed atomically per run.

Protocol (see docs/DATASET.md):

1. write ``articles/dt=<run date>/run=<run_id>/part-<attempt>-<n>.parquet`` (new,
   random attempt id per call, so an earlier attempt's files are never overwritten);
2. commit by writing ``_manifests/run=<run_id>.json`` (conditional PUT: a concurrent
   writer of the same run loses with `PreconditionFailed` instead of silently
   clobbering); readers only see files a manifest lists;
3. delete every other file under the run's prefix (the replaced attempt, and any
   orphans of attempts that died before their commit).

A failure before step 2 leaves nothing visible; a failure in step 3 leaves orphans
that the next attempt of the run (or `cleanup_orphans`) removes.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import logging
import uuid
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import datetime, timezone
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pj
import pyarrow.parquet as pq
from botocore.exceptions import BotoCoreError, ClientError

import pipeline
from pipeline.core.bucket import Bucket, PreconditionFailed, StorageError, describe_error
from pipeline.core.config import S3Settings
from pipeline.core.context import RunContext
from pipeline.core.layout import (
    ARTICLES_PREFIX,
    check_dt,
    compacted_prefix,
    compaction_manifest_key,
    part_key,
    run_articles_prefix,
    run_date,
    run_manifest_key,
)
from pipeline.dataset.manifest import MANIFEST_VERSION, iso_utc, load_compaction, load_run_manifests, referenced_keys
from pipeline.dataset.schema import (
    ARTICLE_SCHEMA,
    JSON_PARSE_SCHEMA,
    SCHEMA_VERSION,
    conform,
    records_to_table,
    table_to_articles,
)

log = logging.getLogger(__name__)

#: ~128 MB files: big enough for efficient scans, small enough to rewrite and to hold in memory.
MAX_FILE_BYTES = 128 * 1024 * 1024
#: Rows per row group: ~20k articles (~20-60 MB uncompressed) keeps per-group
#: statistics useful for filter pushdown while bounding the writer's memory.
ROW_GROUP_ROWS = 20_000
#: zstd level 3. Measured per 100,000 articles (`make bench-store`, 2 CPUs, Arrow input),
#: CPU-s of the whole store, SeaweedFS receiving the bytes included (~0.011 CPU-s per MB):
#:   zstd-3 1.5 + 0.8 (710 bytes/article) | zstd-1 1.4 + 0.8 (739) | snappy 1.0 + 1.2 (1,085)
#:   | lz4 1.1 + 1.4 (1,313).
#: The faster codecs save encoding CPU but the server spends it back on the extra bytes: the
#: store's total CPU per article stays within ~10%, while files (and every later read) grow
#: 50-85%. zstd-1 saves ~5%, within the noise of this box: level 3 stays.
PARQUET_OPTIONS: dict[str, Any] = {
    "compression": "zstd",
    "compression_level": 3,
    "use_dictionary": ["source", "language", "sitename", "dup_kind", "run_id", "extractor_version"],
    # Statistics (min/max per page and row group) for the columns readers filter on; none for
    # the long free text, where they are useless and cost ~1% of the file.
    "write_statistics": [n for n in ARTICLE_SCHEMA.names if n not in ("text", "removed", "warnings")],
}


def run_time(run_id: str) -> datetime:
    """The timestamp a run id encodes (`20261127T210000Z...`): the run's deterministic clock."""
    return datetime.strptime(run_id[:16], "%Y%m%dT%H%M%SZ").replace(tzinfo=timezone.utc)


#: Multipart part size. Smaller than a row group's compressed size, so parts go out while
#: the next row group is still being encoded (S3's minimum, except for the last part, is 5 MiB).
PART_BYTES = 8 * 1024 * 1024
#: Parts in flight per file being written: bounds memory at about (2 + 1) x PART_BYTES each.
MAX_PARTS_IN_FLIGHT = 2
#: Part files a run encodes at the same time, each on its own thread (Parquet encoding and
#: compression release the GIL). Encoding, not the upload, is the store's bottleneck.
ENCODERS = 2


class _StreamingUpload:
    """A write-only file object that streams one S3 object: multipart once it outgrows a part,
    a single PUT otherwise. Parts upload on a thread pool while the caller keeps writing."""

    def __init__(self, bucket: Bucket, key: str, pool: ThreadPoolExecutor, part_bytes: int):
        self.bucket, self.key, self.pool, self.part_bytes = bucket, key, pool, part_bytes
        self.closed = False
        self.size = 0
        self._sha = hashlib.sha256()
        # What pyarrow wrote since the last part, as it wrote it: joined once per part (one copy).
        self._chunks: list[bytes] = []
        self._buffered = 0
        self._upload_id: str | None = None
        self._started = False  # a multipart upload was asked for (its answer may have been lost)
        self._parts: list[tuple[int, Future]] = []
        self._single: Future | None = None

    # -- the file-object protocol pyarrow needs
    def write(self, data) -> int:
        chunk = data if isinstance(data, bytes) else bytes(data)  # keep only immutable data
        self._chunks.append(chunk)
        self._sha.update(chunk)
        n = len(chunk)
        self.size += n
        self._buffered += n
        if self._buffered >= self.part_bytes:
            self._submit_part()
        return n

    def tell(self) -> int:
        return self.size

    def flush(self) -> None:
        pass

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def close(self) -> None:
        # pyarrow may close the sink with the writer; the upload is finished by `finish`.
        self.closed = True

    # -- uploading
    @property
    def sha256(self) -> str:
        return self._sha.hexdigest()

    def _submit_part(self) -> None:
        if self._upload_id is None:
            self._started = True
            resp = self.bucket._call(
                f"start upload {self.key}",
                self.bucket.client.create_multipart_upload,
                Key=self.key,
                ContentType="application/vnd.apache.parquet",
            )
            self._upload_id = resp["UploadId"]
        in_flight = [f for _, f in self._parts if not f.done()]
        if len(in_flight) >= MAX_PARTS_IN_FLIGHT:
            in_flight[0].result()
        body = self._take()
        number = len(self._parts) + 1
        self._parts.append((number, self.pool.submit(self._upload_part, number, body)))

    def _take(self) -> bytes:
        body = b"".join(self._chunks)
        self._chunks, self._buffered = [], 0
        return body

    def _upload_part(self, number: int, body: bytes) -> str:
        resp = self.bucket._call(
            f"upload part {number} of {self.key}",
            self.bucket.client.upload_part,
            Key=self.key,
            PartNumber=number,
            UploadId=self._upload_id,
            Body=body,
        )
        return resp["ETag"]

    def finish(self) -> None:
        """Send what is buffered (last part, or the whole object as one PUT); returns at once."""
        if self._upload_id is None:
            body = self._take()
            self._single = self.pool.submit(
                self.bucket.put, self.key, body, content_type="application/vnd.apache.parquet"
            )
        elif self._chunks:
            self._submit_part()

    def complete(self) -> None:
        """Wait for the upload; complete the multipart upload. Raises StorageError on failure."""
        if self._single is not None:
            self._single.result()
            return
        parts = [{"PartNumber": n, "ETag": f.result()} for n, f in self._parts]
        self.bucket._call(
            f"complete upload {self.key}",
            self.bucket.client.complete_multipart_upload,
            Key=self.key,
            UploadId=self._upload_id,
            MultipartUpload={"Parts": parts},
        )

    def abort(self) -> None:
        """Best effort after a failure: wait for in-flight work, abort a multipart upload."""
        for fut in [f for _, f in self._parts] + ([self._single] if self._single else []):
            try:
                fut.result()
            except Exception as exc:  # the failure being handled already; this one adds nothing
                log.debug("upload of %s failed during abort: %s", self.key, exc)
        if not self._started:
            return
        try:
            # Every upload of this key, not only ours: when the answer to a start was lost (and retried),
            # the server holds an upload whose id we never learnt. The key is unique to this attempt.
            uploads = {u["UploadId"] for u in self.bucket.open_uploads(self.key) if u["Key"] == self.key}
            for upload_id in uploads | ({self._upload_id} if self._upload_id else set()):
                self.bucket.abort_upload(self.key, upload_id)
        except StorageError as exc:
            # The maintenance DAG aborts uploads left open for more than a day.
            log.warning("could not abort the multipart upload of %s: %s", self.key, exc)


class _Lane:
    """One encoder: a thread writing one part file at a time (Parquet encoding releases the GIL)."""

    def __init__(self, index: int):
        self.index = index
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"store-encode-{index}")
        self.pending: Future | None = None
        self.files_opened = 0
        self.sink: _StreamingUpload | None = None
        self.writer: pq.ParquetWriter | None = None
        self.rows = 0
        self.runs: set[str] = set()
        self.finishing: list[_StreamingUpload] = []

    def wait(self) -> None:
        if self.pending is not None:
            pending, self.pending = self.pending, None
            pending.result()


class _PartWriter:
    """Streams tables into part files of bounded rows/bytes, uploading while it encodes.

    `encoders` files are encoded at the same time, each on its own thread: the tables passed
    to `write` go to them in turn (round robin, so the layout does not depend on timing).
    Each file streams to S3 as it is written (`_StreamingUpload`); a finished file's upload
    completes while the lane's next file is encoded, so memory stays at a few parts per lane.
    """

    def __init__(
        self,
        bucket: Bucket,
        prefix: str,
        attempt: str,
        *,
        max_rows: int,
        max_bytes: int,
        part_bytes: int | None = None,
        encoders: int = 1,
        options: dict[str, Any] | None = None,
    ):
        self.bucket, self.prefix, self.attempt = bucket, prefix, attempt
        self.options = PARQUET_OPTIONS if options is None else options
        self.max_rows, self.max_bytes = max_rows, max_bytes
        self.part_bytes = part_bytes or PART_BYTES
        self.files: list[dict] = []
        self.written: list[str] = []  # keys that may exist (for cleanup on failure)
        self._pool = ThreadPoolExecutor(max_workers=MAX_PARTS_IN_FLIGHT * encoders, thread_name_prefix="store-upload")
        self._lanes = [_Lane(i) for i in range(max(1, encoders))]
        self._turn = 0

    def write(self, table: pa.Table) -> None:
        """Queue a table for encoding on the next lane (at most one table queued per lane: memory
        stays bounded); raises the error of that lane's earlier table, if any."""
        lane = self._lanes[self._turn % len(self._lanes)]
        self._turn += 1
        lane.wait()
        lane.pending = lane.executor.submit(self._write, lane, table)

    def _write(self, lane: _Lane, table: pa.Table) -> None:
        offset = 0
        while offset < table.num_rows:
            if lane.writer is None:
                # Lane i names its files i, i + n, i + 2n ...: unique, and independent of timing.
                number = lane.index + len(self._lanes) * lane.files_opened
                lane.files_opened += 1
                key = part_key(self.prefix, self.attempt, number)
                self.written.append(key)  # before any PUT: a timed-out PUT may still have landed
                lane.sink = _StreamingUpload(self.bucket, key, self._pool, self.part_bytes)
                lane.writer = pq.ParquetWriter(lane.sink, ARTICLE_SCHEMA, **self.options)
            assert lane.sink is not None  # opened and closed together with lane.writer
            take = min(table.num_rows - offset, self.max_rows - lane.rows)
            chunk = table.slice(offset, take)
            lane.writer.write_table(chunk, row_group_size=ROW_GROUP_ROWS)
            lane.runs.update(chunk.column("run_id").unique().to_pylist())
            lane.rows += take
            offset += take
            if lane.rows >= self.max_rows or lane.sink.size >= self.max_bytes:
                self._finish_file(lane)

    def _finish_file(self, lane: _Lane) -> None:
        if lane.writer is None:
            return
        lane.writer.close()
        sink = lane.sink
        assert sink is not None  # opened and closed together with lane.writer
        sink.finish()
        lane.finishing.append(sink)
        self.files.append(
            {"key": sink.key, "rows": lane.rows, "bytes": sink.size, "sha256": sink.sha256, "runs": sorted(lane.runs)}
        )
        lane.writer, lane.sink, lane.rows, lane.runs = None, None, 0, set()
        # Keep at most one finished file uploading behind the one being encoded.
        while len(lane.finishing) > 1:
            self._complete_oldest(lane)

    @staticmethod
    def _complete_oldest(lane: _Lane) -> None:
        sink = lane.finishing.pop(0)
        try:
            sink.complete()
        except BaseException:
            lane.finishing.insert(0, sink)  # abort() still has to clean it up
            raise
        log.debug("stored %s (%d bytes)", sink.key, sink.size)

    def close(self) -> list[dict]:
        """Flush the last files, wait for uploads; the file entries for the manifest (by key)."""
        for lane in self._lanes:
            lane.wait()
        for lane in self._lanes:
            lane.executor.shutdown(wait=True)
            self._finish_file(lane)
        for lane in self._lanes:
            while lane.finishing:
                self._complete_oldest(lane)
        self._pool.shutdown(wait=True)
        self.files.sort(key=lambda f: f["key"])
        return self.files

    def abort(self) -> None:
        """After a failure: stop, then best-effort delete what was written (orphans otherwise)."""
        for lane in self._lanes:
            try:
                lane.wait()
            except Exception as exc:  # the failure being handled already (or a consequence of it)
                log.debug("encoding failed during abort: %s", exc)
            lane.executor.shutdown(wait=True)
            for sink in lane.finishing + ([lane.sink] if lane.sink else []):
                sink.abort()
        self._pool.shutdown(wait=True)
        if self.written:
            try:
                self.bucket.delete(self.written)
            except StorageError as exc:
                log.warning(
                    "could not remove %d uncommitted files (%s); they are invisible to readers "
                    "and the next attempt removes them",
                    len(self.written),
                    exc,
                )


def _batches(records: Iterable[dict], size: int) -> Iterator[list[dict]]:
    batch: list[dict] = []
    for rec in records:
        batch.append(rec)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def store_articles(
    ctx: RunContext,
    records: Iterable[dict] | pa.Table | pa.RecordBatchReader,
    *,
    max_rows_per_file: int = 100_000,
    max_file_bytes: int = MAX_FILE_BYTES,
    now: datetime | None = None,
    attempt: str | None = None,
    parquet_options: dict[str, Any] | None = None,
) -> str:
    """Write a run's articles as Parquet and commit them atomically; returns the manifest key.

    `records`: article dicts (the dedupe stage's records), or Arrow data with those columns
    (the fast path: no per-value Python work).

    `now` stamps `ingested_at` and the manifest's `committed_at`; by default the run id's
    own timestamp, so re-running a task is deterministic. Pass the wall clock when
    incremental consumers must notice a re-run of an old run (they select by committed_at).
    Rows repeating an `article_id` already stored by this run are dropped (counted in the
    manifest as `repeats_dropped`). `parquet_options` replaces PARQUET_OPTIONS (the benchmark
    compares codecs with it).

    A run's rows go, in batches of ROW_GROUP_ROWS, to ENCODERS part files encoded at the same
    time (in turn), so a run of more than one batch has at least two files.
    """
    if max_rows_per_file < 1:
        raise ValueError("max_rows_per_file must be >= 1")
    bucket = ctx.bucket
    run_id = ctx.run_id
    stamp = now or run_time(run_id)
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=timezone.utc)
    attempt = attempt or uuid.uuid4().hex[:12]
    prefix = run_articles_prefix(run_id)
    manifest_key = run_manifest_key(run_id)

    previous = bucket.get_with_etag(manifest_key)
    writer = _PartWriter(
        bucket,
        prefix,
        attempt,
        max_rows=max_rows_per_file,
        max_bytes=max_file_bytes,
        encoders=ENCODERS,
        options=parquet_options,
    )
    seen: set[str | None] = set()  # None: a record without an id (records_to_table refuses it)
    repeats = 0
    batch_rows = min(ROW_GROUP_ROWS, max_rows_per_file)
    try:
        if isinstance(records, (pa.Table, pa.RecordBatchReader)):
            for rb in records.to_batches(max_chunksize=batch_rows) if isinstance(records, pa.Table) else records:
                table = table_to_articles(pa.Table.from_batches([rb]), run_id=run_id, ingested_at=stamp)
                ids = table.column("article_id").to_pylist()
                keep = []  # True at the first occurrence of each id
                for a in ids:
                    keep.append(a not in seen)
                    seen.add(a)
                if not all(keep):
                    repeats += keep.count(False)
                    table = table.filter(pa.array(keep))
                if table.num_rows:
                    writer.write(table)
        else:
            for batch in _batches(records, batch_rows):
                unique = []
                for rec in batch:
                    aid = rec.get("article_id")
                    if aid in seen:
                        repeats += 1
                        continue
                    seen.add(aid)
                    unique.append(rec)
                if unique:
                    writer.write(records_to_table(unique, run_id=run_id, ingested_at=stamp))
        files = writer.close()
        manifest = {
            "manifest_version": MANIFEST_VERSION,
            "kind": "run",
            "run_id": run_id,
            "dt": run_date(run_id),
            "attempt": attempt,
            "replaces_attempt": _json(previous).get("attempt") if previous else None,
            "schema_version": SCHEMA_VERSION,
            "code_version": pipeline.__version__,
            "committed_at": iso_utc(stamp),
            "ingested_at": iso_utc(stamp),
            "rows": sum(f["rows"] for f in files),
            "bytes": sum(f["bytes"] for f in files),
            "repeats_dropped": repeats,
            "files": files,
        }
        # The commit point: one PUT, conditional on the manifest we read (or on there being none).
        _commit(bucket, manifest_key, manifest, previous[1] if previous else None)
    except BaseException:
        writer.abort()
        raise
    log.info("committed run %s attempt %s: %d rows in %d files", run_id, attempt, manifest["rows"], len(files))
    _remove_others(bucket, prefix, keep={f["key"] for f in files})
    return manifest_key


def _commit(bucket: Bucket, key: str, manifest: dict, etag: str | None) -> None:
    """Conditional PUT of a manifest: replaces exactly the version read (`etag`), or creates it.

    A PUT whose response was lost (timeout) but which landed makes botocore's retry fail
    with 412; the manifest then already holds our attempt, which is success, not a conflict.
    """
    try:
        if etag:
            bucket.put_json(key, manifest, if_match=etag)
        else:
            bucket.put_json(key, manifest, if_none_match="*")
    except PreconditionFailed:
        current = bucket.get_with_etag(key)
        if current is not None and _json(current).get("attempt") == manifest["attempt"]:
            log.info("commit of %s landed on an earlier try (response lost); committed", key)
            return
        raise


def _json(got: tuple[bytes, str]) -> dict:
    return json.loads(got[0])


def _remove_others(bucket: Bucket, prefix: str, keep: set[str]) -> list[str]:
    """Delete files under a prefix the new manifest does not list (after the commit: best effort)."""
    try:
        stale = [k for k in bucket.list(prefix) if k not in keep]
        if stale:
            bucket.delete(stale)
            log.info("removed %d replaced or orphaned files under %s", len(stale), prefix)
        return stale
    except StorageError as exc:
        log.warning("committed, but could not remove replaced files under %s: %s", prefix, exc)
        return []


def store_stage(
    ctx: RunContext, deduped_key: str, *, max_rows_per_file: int = 100_000, now: datetime | None = None
) -> str:
    """Stage 5: the dedupe stage's JSONL(.gz) -> committed Parquet; returns the manifest key.

    The JSON is parsed by pyarrow (C++, straight to columns); a file pyarrow cannot parse
    against the schema (a float word count ...) takes the per-record Python path instead.
    """
    data = ctx.bucket.get(deduped_key)
    if deduped_key.endswith(".gz"):
        data = gzip.decompress(data)
    records: Iterable[dict] | pa.Table
    try:
        records = pj.read_json(
            io.BytesIO(data),
            read_options=pj.ReadOptions(block_size=16 << 20),
            parse_options=pj.ParseOptions(explicit_schema=JSON_PARSE_SCHEMA, unexpected_field_behavior="ignore"),
        )
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as exc:
        log.info("%s: not parseable as Arrow JSON (%s); converting record by record", deduped_key, exc)
        records = (json.loads(line) for line in data.splitlines() if line.strip())
    return store_articles(ctx, records, max_rows_per_file=max_rows_per_file, now=now)


# --------------------------------------------------------------------------- maintenance


def compact(
    settings: S3Settings,
    dt: str,
    *,
    now: datetime | None = None,
    max_rows_per_file: int = 500_000,
    max_file_bytes: int = MAX_FILE_BYTES,
    min_files: int = 2,
    bucket: Bucket | None = None,
) -> str | None:
    """Rewrite a day's committed files into few large ones, committed by one manifest PUT.

    Returns the compaction manifest key, or None when the day has fewer than `min_files`
    files (nothing worth doing). Row content and `committed_at` of runs are unchanged, so
    incremental readers do not see compacted rows again.
    """
    dt = check_dt(dt)
    bucket = bucket or Bucket(settings)
    runs = [m for m in load_run_manifests(settings, bucket=bucket) if m.get("dt") == dt]
    got = load_compaction(bucket, dt)
    comp, comp_etag = got if got else (None, None)
    covers = comp.get("covers", {}) if comp else {}
    served = {m["run_id"] for m in runs if covers.get(m["run_id"]) == m.get("attempt")}
    inputs: list[tuple[str, set[str] | None]] = []  # (key, runs to keep)
    if comp:
        for f in comp["files"]:
            file_runs = set(f.get("runs", []))
            if file_runs & served:
                inputs.append((f["key"], None if file_runs <= served else file_runs & served))
    own = [m for m in runs if m["run_id"] not in served]
    for m in own:
        inputs.extend((f["key"], None) for f in m["files"])
    if len(inputs) < min_files:
        log.info("compact %s: %d files, nothing to do", dt, len(inputs))
        return None

    stamp = now or datetime.now(timezone.utc)  # maintenance, not a run task: the wall clock is right
    attempt = uuid.uuid4().hex[:12]
    writer = _PartWriter(bucket, compacted_prefix(dt), attempt, max_rows=max_rows_per_file, max_bytes=max_file_bytes)
    try:
        for key, keep in inputs:
            table = conform(pq.read_table(io.BytesIO(bucket.get(key))))
            if keep is not None:
                table = table.filter(pc.is_in(table.column("run_id"), pa.array(sorted(keep))))
            if table.num_rows:
                writer.write(table.cast(ARTICLE_SCHEMA))
        files = writer.close()
        new_covers = {m["run_id"]: m["attempt"] for m in runs}
        manifest = {
            "manifest_version": MANIFEST_VERSION,
            "kind": "compaction",
            "dt": dt,
            "generation": (comp.get("generation", 0) if comp else 0) + 1,
            "attempt": attempt,
            "schema_version": SCHEMA_VERSION,
            "code_version": pipeline.__version__,
            "committed_at": iso_utc(stamp),
            "covers": new_covers,
            "rows": sum(f["rows"] for f in files),
            "bytes": sum(f["bytes"] for f in files),
            "files": files,
        }
        key = compaction_manifest_key(dt)
        _commit(bucket, key, manifest, comp_etag)
    except BaseException:
        writer.abort()
        raise
    replaced = [k for k, _ in inputs if k not in {f["key"] for f in files}]
    if comp:  # fully filtered-out old compacted files are replaced too
        replaced = sorted(set(replaced) | (referenced_keys([comp]) - {f["key"] for f in files}))
    try:
        bucket.delete(replaced)
    except StorageError as exc:
        log.warning("compacted %s, but could not remove %d replaced files: %s", dt, len(replaced), exc)
    log.info(
        "compacted %s: %d files -> %d (%d rows), generation %d",
        dt,
        len(inputs),
        len(files),
        manifest["rows"],
        manifest["generation"],
    )
    return key


def cleanup_orphans(
    settings: S3Settings, *, min_age_seconds: float = 3600, now: datetime | None = None, bucket: Bucket | None = None
) -> list[str]:
    """Delete files under articles/ that no manifest lists and that are older than `min_age_seconds`.

    The age guard keeps files of an attempt that is still writing (not yet committed).
    """
    bucket = bucket or Bucket(settings)
    manifests = load_run_manifests(settings, bucket=bucket)
    keep = referenced_keys(manifests)
    for dt in {m["dt"] for m in manifests}:
        got = load_compaction(bucket, dt)
        if got:
            keep |= referenced_keys([got[0]])
    now = now or datetime.now(timezone.utc)
    orphans: list[str] = []
    try:
        pages = bucket.client.get_paginator("list_objects_v2").paginate(Bucket=bucket.name, Prefix=ARTICLES_PREFIX)
        for page in pages:
            for obj in page.get("Contents", []):
                if obj["Key"] not in keep and (now - obj["LastModified"]).total_seconds() >= min_age_seconds:
                    orphans.append(obj["Key"])
    except (BotoCoreError, ClientError) as exc:
        raise describe_error(exc, settings, f"list {ARTICLES_PREFIX}") from None
    if orphans:
        bucket.delete(orphans)
        log.info("removed %d orphaned files", len(orphans))
    return orphans
