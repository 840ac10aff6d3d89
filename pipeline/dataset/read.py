"""Reading the article dataset: committed runs only, by date, source, run or commit time.

`read_articles()` is the Python API (Arrow, pandas or an iterator of dicts); the
`read` command (`pipeline.cli.read`) streams the same rows as JSON Lines, CSV or Parquet. Both resolve
files through the manifests (`pipeline.dataset.manifest.plan_files`), never by listing
`articles/`, so files of uncommitted or replaced attempts are never read.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import date, datetime, timezone
from typing import Any, Literal

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipeline.core.bucket import Bucket, StorageError
from pipeline.core.config import S3Settings
from pipeline.core.layout import check_dt, check_run_id
from pipeline.dataset.manifest import FileSpec, normalise_ts, plan_files
from pipeline.dataset.schema import ARTICLE_SCHEMA, conform, project

log = logging.getLogger(__name__)

DateLike = date | datetime | str | None
#: Files downloaded ahead of the one being decoded (bounded memory, overlapped I/O).
PREFETCH = 4


class DatasetChanged(StorageError):
    """A file vanished mid-read: a re-run or compaction replaced it. Reading again is consistent."""


def _bound(value: DateLike, name: str) -> tuple[str | None, datetime | None]:
    """(partition date, exact instant or None) of a since/until argument."""
    if value is None:
        return None, None
    if isinstance(value, str):
        text = value.strip()
        if len(text) == 10:
            return check_dt(text), None
        try:
            value = datetime.fromisoformat(text)
        except ValueError as exc:
            raise ValueError(f"bad {name} {text!r}: expected YYYY-MM-DD or an ISO 8601 timestamp") from exc
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=timezone.utc)
        value = value.astimezone(timezone.utc)
        return value.date().isoformat(), value
    return check_dt(value), None


def _row_filter(
    spec: FileSpec,
    source: str | Sequence[str] | None,
    canonical_only: bool,
    since_ts: datetime | None,
    until_ts: datetime | None,
) -> pc.Expression | None:
    conds = []
    if spec.runs is not None:
        conds.append(pc.field("run_id").isin(sorted(spec.runs)))
    if source is not None:
        sources = [source] if isinstance(source, str) else list(source)
        conds.append(pc.field("source").isin(sources))
    if canonical_only:
        conds.append(pc.field("duplicate_of").is_null())
    if since_ts is not None:
        conds.append(pc.field("ingested_at") >= pa.scalar(since_ts, type=ARTICLE_SCHEMA.field("ingested_at").type))
    if until_ts is not None:
        conds.append(pc.field("ingested_at") < pa.scalar(until_ts, type=ARTICLE_SCHEMA.field("ingested_at").type))
    if not conds:
        return None
    expr = conds[0]
    for c in conds[1:]:
        expr = expr & c
    return expr


def iter_tables(
    since: DateLike = None,
    until: DateLike = None,
    source: str | Sequence[str] | None = None,
    canonical_only: bool = False,
    *,
    settings: S3Settings | None = None,
    committed_after: str | datetime | None = None,
    run_id: str | None = None,
    columns: Sequence[str] | None = None,
) -> Iterator[pa.Table]:
    """The matching rows, one table per committed file, in a stable order (day, commit order).

    `since`/`until`: a date bounds the `dt` partition (inclusive both ends); a datetime
    also bounds `ingested_at` (since inclusive, until exclusive).
    """
    settings = settings or S3Settings.from_env()
    bucket = Bucket(settings)
    cols = project(ARTICLE_SCHEMA, columns)
    since_dt, since_ts = _bound(since, "since")
    until_dt, until_ts = _bound(until, "until")
    specs, _ = plan_files(
        settings,
        since_dt=since_dt,
        until_dt=until_dt,
        committed_after=normalise_ts(committed_after),
        run_id=run_id,
        bucket=bucket,
    )

    def fetch(spec: FileSpec) -> tuple[FileSpec, bytes]:
        try:
            return spec, bucket.get(spec.key)
        except StorageError as exc:
            if exc.code in ("NoSuchKey", "404"):
                raise DatasetChanged(
                    f"{spec.key} was replaced while reading (a re-run or compaction committed meanwhile); read again",
                    code=exc.code,
                ) from None
            raise

    with ThreadPoolExecutor(max_workers=PREFETCH, thread_name_prefix="read-fetch") as pool:
        pending = [pool.submit(fetch, s) for s in specs[:PREFETCH]]
        nxt = PREFETCH
        while pending:
            spec, body = pending.pop(0).result()
            if nxt < len(specs):
                pending.append(pool.submit(fetch, specs[nxt]))
                nxt += 1
            expr = _row_filter(spec, source, canonical_only, since_ts, until_ts)
            table = pq.read_table(io.BytesIO(body), filters=expr)
            table = conform(table)
            if cols is not None:
                table = table.select(cols)
            if table.num_rows:
                yield table


def read_articles(
    since: DateLike = None,
    until: DateLike = None,
    source: str | Sequence[str] | None = None,
    canonical_only: bool = False,
    *,
    settings: S3Settings | None = None,
    committed_after: str | datetime | None = None,
    run_id: str | None = None,
    columns: Sequence[str] | None = None,
    as_: Literal["arrow", "pandas", "records"] = "arrow",
) -> Any:
    """Committed articles as a pyarrow Table (`as_="arrow"`), a pandas DataFrame or an iterator of dicts.

    `committed_after`: only runs committed strictly after this time (ISO text or datetime),
    for incremental consumers; remember the largest `committed_at` of `committed_runs()`.
    `canonical_only`: drop rows that are duplicates of another article (`duplicate_of` set).
    """

    def read() -> Iterator[pa.Table]:
        return iter_tables(
            since,
            until,
            source,
            canonical_only,
            settings=settings,
            committed_after=committed_after,
            run_id=run_id,
            columns=columns,
        )

    if as_ == "records":
        return (row for t in read() for row in t.to_pylist())
    if as_ not in ("arrow", "pandas"):
        raise ValueError(f"as_ must be 'arrow', 'pandas' or 'records', not {as_!r}")
    try:
        tables = list(read())
    except DatasetChanged as exc:
        # Materialised reads restart cleanly: the new plan is consistent.
        log.info("%s; reading again", exc)
        tables = list(read())
    schema = (
        ARTICLE_SCHEMA
        if columns is None
        else pa.schema([ARTICLE_SCHEMA.field(c) for c in columns], metadata=ARTICLE_SCHEMA.metadata)
    )
    table = pa.concat_tables([t.cast(schema) for t in tables]) if tables else schema.empty_table()
    if as_ == "pandas":
        return table.to_pandas()
    return table


def check_read_args(
    since: DateLike = None,
    until: DateLike = None,
    *,
    committed_after: str | datetime | None = None,
    run_id: str | None = None,
    columns: Sequence[str] | None = None,
) -> None:
    """Validate `read_articles` arguments without touching the bucket: ValueError naming the bad one.

    A bad run id raises `BadRunId` (a ValueError too).
    """
    if run_id is not None:
        check_run_id(run_id)
    project(ARTICLE_SCHEMA, columns)
    _bound(since, "since"), _bound(until, "until"), normalise_ts(committed_after)
