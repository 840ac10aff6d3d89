"""Reading the article dataset (the `articles/` Delta table): by date, source, run, or what changed.

`read_articles()` is the Python API (Arrow, pandas or an iterator of dicts); the `read` command
(`pipeline.cli.read`) streams the same rows as JSON Lines, CSV or Parquet. Both read one version
of the Delta table (`pipeline.dataset.delta`): `dt` partitions and file statistics (`run_id`,
`source`) prune files before any is fetched, so files of uncommitted or replaced attempts are
never read and `--run` costs the same however many runs the table holds.

Incremental readers ask what changed since a table version (`since_version`, from the change
data feed) or since a commit time (`committed_after`): the rows inserted after it that are still
in the table. Replaced rows are in the raw feed (`pipeline.dataset.delta.changes`) as deletes.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from datetime import date, datetime, timedelta, timezone
from typing import Any, Literal

import pyarrow as pa
import pyarrow.compute as pc

from pipeline.core.config import S3Settings
from pipeline.core.errors import StorageError
from pipeline.core.layout import check_dt, check_run_id
from pipeline.dataset import delta
from pipeline.dataset.schema import ARTICLE_SCHEMA, project

log = logging.getLogger(__name__)

DateLike = date | datetime | str | None


class DatasetChanged(StorageError):
    """Kept for callers that catch it: a Delta read is of one version, so it is no longer raised."""


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
        return value.date().isoformat() if value.tzinfo is None else _utc(value).date().isoformat(), _utc(value)
    return check_dt(value), None


def _utc(value: datetime) -> datetime:
    return (value if value.tzinfo else value.replace(tzinfo=timezone.utc)).astimezone(timezone.utc)


def _timestamp(value: str | datetime | date | None) -> datetime | None:
    """`committed_after` as given by a user (date, datetime or ISO text), in UTC."""
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.strip())
        except ValueError as exc:
            raise ValueError(f"bad timestamp {value!r}: expected ISO 8601") from exc
    if not isinstance(value, datetime):
        value = datetime(value.year, value.month, value.day)
    return _utc(value)


def _row_filter(canonical_only: bool, since_ts: datetime | None, until_ts: datetime | None) -> pc.Expression | None:
    ts_type = ARTICLE_SCHEMA.field("ingested_at").type
    conds = []
    if canonical_only:
        conds.append(pc.field("duplicate_of").is_null())
    if since_ts is not None:
        conds.append(pc.field("ingested_at") >= pa.scalar(since_ts, type=ts_type))
    if until_ts is not None:
        conds.append(pc.field("ingested_at") < pa.scalar(until_ts, type=ts_type))
    expr = None
    for c in conds:
        expr = c if expr is None else expr & c
    return expr


def _sources(source: str | Sequence[str] | None) -> list[str] | None:
    if source is None:
        return None
    return [source] if isinstance(source, str) else list(source)


def iter_tables(
    since: DateLike = None,
    until: DateLike = None,
    source: str | Sequence[str] | None = None,
    canonical_only: bool = False,
    *,
    settings: S3Settings | None = None,
    committed_after: str | datetime | None = None,
    since_version: int | None = None,
    until_version: int | None = None,
    run_id: str | None = None,
    columns: Sequence[str] | None = None,
) -> Iterator[pa.Table]:
    """The matching rows as ARTICLE_SCHEMA tables (or `columns`), one per decoded batch.

    `since`/`until`: a date bounds the `dt` partition (inclusive both ends); a datetime also
    bounds `ingested_at` (since inclusive, until exclusive). `since_version` / `committed_after`:
    only rows a commit after that table version / time inserted and that are still there.
    `until_version` (with `since_version`): only rows the versions up to it inserted (the feed's window).
    """
    settings = settings or S3Settings.from_env()
    cols = project(ARTICLE_SCHEMA, columns)
    since_dt, since_ts = _bound(since, "since")
    until_dt, until_ts = _bound(until, "until")
    sources = _sources(source)
    if run_id is not None:
        check_run_id(run_id)
    after = _timestamp(committed_after)
    if since_version is not None or after is not None:
        table = _changed(settings, since_version, after, until_version)
        mask = _mask(table, since_dt, until_dt, run_id, sources, _row_filter(canonical_only, since_ts, until_ts))
        if mask is not None:
            table = table.filter(mask)
        table = table.select(cols) if cols is not None else table
        if table.num_rows:
            yield table
        return
    for batch in delta.scan(
        settings,
        since_dt=since_dt,
        until_dt=until_dt,
        run_id=run_id,
        source=sources,
        row_filter=_row_filter(canonical_only, since_ts, until_ts),
        columns=cols,
    ):
        if batch.num_rows:
            yield _typed(pa.Table.from_batches([batch]), cols)


def _typed(table: pa.Table, cols: Sequence[str] | None) -> pa.Table:
    """A table read from Delta with exactly the schema `read_articles` promises."""
    if cols is None:
        return delta.as_articles(table).cast(ARTICLE_SCHEMA)
    schema = pa.schema([ARTICLE_SCHEMA.field(c) for c in cols], metadata=ARTICLE_SCHEMA.metadata)
    return pa.Table.from_arrays([table.column(c).cast(schema.field(c).type) for c in cols], schema=schema)


def _changed(
    settings: S3Settings, since_version: int | None, after: datetime | None, until_version: int | None = None
) -> pa.Table:
    """The rows inserted after a version or a time (up to `until_version`) and not deleted since (ARTICLE_SCHEMA)."""
    if after is not None:
        # Strictly after: the feed's timestamp bound is inclusive (commit times are in milliseconds).
        feed = delta.changes(settings, since_timestamp=after + timedelta(milliseconds=1))
    else:
        feed = delta.changes(settings, since_version=since_version, until_version=until_version)
    rows = delta.net_inserts(feed)
    return pa.Table.from_arrays([rows.column(f.name).cast(f.type) for f in ARTICLE_SCHEMA], schema=ARTICLE_SCHEMA)


def _mask(
    table: pa.Table,
    since_dt: str | None,
    until_dt: str | None,
    run_id: str | None,
    sources: list[str] | None,
    rows: pc.Expression | None,
) -> pc.Expression | None:
    """The `scan` filters, for rows of the change feed (already in memory)."""
    conds = [] if rows is None else [rows]
    # The feed has no `dt` column: a run's partition is its run id's date.
    run_day = pc.utf8_slice_codeunits(pc.field("run_id"), 0, 8)
    if since_dt is not None:
        conds.append(run_day >= since_dt.replace("-", ""))
    if until_dt is not None:
        conds.append(run_day <= until_dt.replace("-", ""))
    if run_id is not None:
        conds.append(pc.field("run_id") == run_id)
    if sources is not None:
        conds.append(pc.field("source").isin(sources))
    expr = None
    for c in conds:
        expr = c if expr is None else expr & c
    return expr


def read_articles(
    since: DateLike = None,
    until: DateLike = None,
    source: str | Sequence[str] | None = None,
    canonical_only: bool = False,
    *,
    settings: S3Settings | None = None,
    committed_after: str | datetime | None = None,
    since_version: int | None = None,
    until_version: int | None = None,
    run_id: str | None = None,
    columns: Sequence[str] | None = None,
    as_: Literal["arrow", "pandas", "records"] = "arrow",
) -> Any:
    """Committed articles as a pyarrow Table (`as_="arrow"`), a pandas DataFrame or an iterator of dicts.

    `since_version=N`: only rows committed by a table version after N and still in the table
    (remember `table_version()` after each read); with `until_version=M` too: the rows versions
    N+1..M inserted (`since_version=M-1, until_version=M`: exactly what version M committed).
    `committed_after`: the same as `since_version` by commit time.
    `canonical_only`: drop rows that are duplicates of another article (`duplicate_of` set).
    """
    if as_ not in ("arrow", "pandas", "records"):
        raise ValueError(f"as_ must be 'arrow', 'pandas' or 'records', not {as_!r}")
    if until_version is not None and since_version is None:
        raise ValueError("until_version needs since_version (the window of the change feed)")
    project(ARTICLE_SCHEMA, columns)  # a clear error for an unknown column, before any I/O
    tables = iter_tables(
        since,
        until,
        source,
        canonical_only,
        settings=settings,
        committed_after=committed_after,
        since_version=since_version,
        until_version=until_version,
        run_id=run_id,
        columns=columns,
    )
    if as_ == "records":
        return (row for t in tables for row in t.to_pylist())
    schema = (
        ARTICLE_SCHEMA
        if columns is None
        else pa.schema([ARTICLE_SCHEMA.field(c) for c in columns], metadata=ARTICLE_SCHEMA.metadata)
    )
    collected = list(tables)
    table = pa.concat_tables(collected) if collected else schema.empty_table()
    if as_ == "pandas":
        return table.to_pandas()
    return table


def table_version(settings: S3Settings | None = None) -> int | None:
    """The table's latest version (what to pass as `since_version` next time); None before the first commit."""
    table = delta.open_table(settings or S3Settings.from_env())
    return None if table is None else int(table.version())


def check_read_args(
    since: DateLike = None,
    until: DateLike = None,
    *,
    committed_after: str | datetime | None = None,
    since_version: int | None = None,
    run_id: str | None = None,
    columns: Sequence[str] | None = None,
) -> None:
    """Validate `read_articles` arguments without touching the bucket: ValueError naming the bad one.

    A bad run id raises `BadRunId` (a ValueError too).
    """
    if run_id is not None:
        check_run_id(run_id)
    if since_version is not None and since_version < 0:
        raise ValueError(f"since_version must be >= 0, not {since_version}")
    if since_version is not None and committed_after is not None:
        raise ValueError("give since_version or committed_after, not both")
    project(ARTICLE_SCHEMA, columns)
    _bound(since, "since"), _bound(until, "until"), _timestamp(committed_after)
