"""The article dataset's Parquet schema (versioned) and record -> Arrow conversion.

The schema is a consumer contract (see docs/DATASET.md). Changes that only add
nullable columns bump ``SCHEMA_VERSION``; readers fill missing columns with
nulls (`conform`), so files of older versions stay readable. Renaming or
retyping a column is a breaking change and needs a new dataset prefix.
"""

from __future__ import annotations

import operator
from collections.abc import Iterable, Sequence
from datetime import date, datetime, timezone
from typing import Any

import pyarrow as pa

#: Version of ARTICLE_SCHEMA written into every file, row and manifest.
SCHEMA_VERSION = 4

_TS = pa.timestamp("us", tz="UTC")
REMOVED_TYPE = pa.list_(pa.struct([("rule", pa.string()), ("text", pa.string())]))
WARNINGS_TYPE = pa.list_(pa.struct([("rule", pa.string()), ("message", pa.string()), ("words", pa.int32())]))

#: (name, type, nullable, meaning): the single source of the schema and of its documentation.
FIELDS: list[tuple[str, pa.DataType, bool, str]] = [
    (
        "article_id",
        pa.string(),
        False,
        "stable id of one version of one article: sha256(canonical_url, content_hash)[:24]",
    ),
    ("url", pa.string(), False, "URL as fetched, after redirects"),
    ("canonical_url", pa.string(), True, "rel=canonical when same-site, else the canonicalised URL"),
    ("source", pa.string(), True, "configured source (outlet) name"),
    ("title", pa.string(), True, "headline"),
    ("author", pa.string(), True, "the authors joined with '; ' (kept for readers of schema 1-2; use authors)"),
    ("authors", pa.list_(pa.string()), True, "the article's authors, people only, in page order (since schema 3)"),
    ("publisher", pa.string(), True, "the organisation that published the article, when the page names it (since 3)"),
    (
        "credit",
        pa.list_(pa.string()),
        True,
        "agencies and organisations named as author, e.g. a wire service (since 3)",
    ),
    ("published", _TS, True, "publication time (UTC) from the page metadata; null when unknown"),
    (
        "published_precision",
        pa.string(),
        True,
        "'second' when the page states the time, 'day' when only the day (published is then 00:00 UTC) (since 3)",
    ),
    ("published_offset_minutes", pa.int16(), True, "the page's own UTC offset of published, in minutes (since 3)"),
    ("modified", _TS, True, "last modification time (UTC) stated by the page (since 3)"),
    ("section", pa.string(), True, "the section the page files the article under (since 3)"),
    ("keywords", pa.list_(pa.string()), True, "keywords / tags the page states (since 3)"),
    ("page_type", pa.string(), True, "'article' or 'liveblog': what the page-type decision kept (since 3)"),
    ("language", pa.string(), True, "ISO 639-1 language code"),
    ("sitename", pa.string(), True, "site name from the page metadata"),
    ("image", pa.string(), True, "lead image URL"),
    ("text", pa.string(), True, "article body, paragraphs separated by newlines, boilerplate removed"),
    ("word_count", pa.int32(), True, "words in text"),
    ("content_hash", pa.string(), True, "sha256 of the normalised text (equal for exact duplicates)"),
    ("cluster_id", pa.string(), True, "duplicate cluster: same story across URLs and outlets"),
    ("duplicate_of", pa.string(), True, "article_id of the cluster's first article; null for that first one"),
    ("dup_kind", pa.string(), True, "why it is a duplicate: url, exact, near, rewrite (since 4); null if not one"),
    (
        "dup_similarity",
        pa.float32(),
        True,
        "the similarity that decided dup_kind: 1 for url/exact, shingle Jaccard for near, aligned coverage for"
        " rewrite (since 4)",
    ),
    (
        "dup_evidence",
        pa.string(),
        True,
        "JSON: for rewrite and related stories, the aligned sentences and the matching names, numbers, quotes"
        " (since 4)",
    ),
    (
        "story_id",
        pa.string(),
        True,
        "same story, not necessarily the same text: groups copies and related stories (follow-ups) (since 4)",
    ),
    ("version", pa.int32(), True, "1, 2, ... for the same canonical URL with changed text"),
    ("supersedes", pa.string(), True, "article_id of the previous version, or null"),
    (
        "warc_key",
        pa.string(),
        True,
        "bucket key of the raw WARC file holding the response; for an imported archive its URI (s3://, https://,"
        " a path) (since 4)",
    ),
    ("warc_record_id", pa.string(), True, "WARC-Record-ID of the response in that file"),
    (
        "warc_offset",
        pa.int64(),
        True,
        "imported archives: byte offset of the response record in the file (a range request from here) (since 4)",
    ),
    ("warc_length", pa.int64(), True, "imported archives: the record's length in bytes, as stored (since 4)"),
    ("extractor_version", pa.string(), True, "extractor (trafilatura + rules) version that produced text"),
    ("removed", REMOVED_TYPE, True, "boilerplate blocks removed from text, each with the rule that removed it"),
    (
        "warnings",
        WARNINGS_TYPE,
        True,
        "extraction decisions worth a look: a rule not applied or undone by the safety net (since schema 2)",
    ),
    ("run_id", pa.string(), False, "the pipeline run that stored the row (YYYYMMDDTHHMMSSZ[suffix])"),
    ("ingested_at", _TS, False, "when the run stored the row (UTC; the run's clock, deterministic per run)"),
    ("fetched_at", _TS, True, "when the page was fetched (UTC)"),
    ("schema_version", pa.int16(), False, "SCHEMA_VERSION the row was written with"),
]

ARTICLE_SCHEMA: pa.Schema = pa.schema(
    [pa.field(name, typ, nullable=nullable, metadata={"description": doc}) for name, typ, nullable, doc in FIELDS],
    metadata={"news_ingest.schema_version": str(SCHEMA_VERSION), "news_ingest.dataset": "articles"},
)

COLUMN_NAMES: tuple[str, ...] = tuple(ARTICLE_SCHEMA.names)
_TIMESTAMP_COLUMNS = ("published", "modified", "fetched_at")
_INT_COLUMNS = ("word_count", "version", "published_offset_minutes", "warc_offset", "warc_length")
_STRING_LIST_COLUMNS = ("authors", "credit", "keywords")


def to_utc(value: Any) -> datetime | None:
    """A timestamp from an ISO 8601 string, a datetime or a date; naive values are taken as UTC.

    Unparseable strings become None: the published date is best-effort page metadata
    and a bad one must not fail a whole run.
    """
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        dt = value
    elif isinstance(value, date):
        dt = datetime(value.year, value.month, value.day)
    elif isinstance(value, str):
        try:
            dt = datetime.fromisoformat(value.strip())
        except ValueError:
            return None
    else:
        return None
    if dt.tzinfo is None:
        return dt.replace(tzinfo=timezone.utc)
    return dt.astimezone(timezone.utc)


def _int_or_none(value: Any) -> int | None:
    if value is None or value == "":
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _removed(value: Any) -> list[dict] | None:
    if not value:
        return [] if value == [] else None
    out = []
    for item in value:
        if isinstance(item, dict):
            out.append({"rule": _str_or_none(item.get("rule")), "text": _str_or_none(item.get("text"))})
    return out


def _warnings(value: Any) -> list[dict] | None:
    if not value:
        return [] if value == [] else None
    return [
        {
            "rule": _str_or_none(w.get("rule")),
            "message": _str_or_none(w.get("message")),
            "words": _int_or_none(w.get("words")),
        }
        for w in value
        if isinstance(w, dict)
    ]


def _str_or_none(value: Any) -> str | None:
    return None if value is None else str(value)


def _column(name: str, typ: pa.DataType, values: Sequence[Any]) -> pa.Array:
    """One column from raw record values: Arrow's C++ conversion first, Python coercion if the
    values are not already of the right shape (an int where a string belongs, a naive date ...)."""
    try:
        if name in _TIMESTAMP_COLUMNS:
            # ISO 8601 text with a zone offset (what extract writes) parses in C++.
            return pa.array(values, type=pa.string()).cast(typ)
        # Arrow reads a string as a list of its characters: list columns with a string go the Python way
        if name not in _STRING_LIST_COLUMNS or not any(isinstance(v, str) for v in values):
            return pa.array(values, type=typ)
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError, OverflowError):
        pass
    fixed: list[Any]
    if name in _TIMESTAMP_COLUMNS:
        fixed = [to_utc(v) for v in values]
    elif name in _INT_COLUMNS:
        fixed = [_int_or_none(v) for v in values]
    elif name == "removed":
        fixed = [_removed(v) for v in values]
    elif name == "warnings":
        fixed = [_warnings(v) for v in values]
    elif name in _STRING_LIST_COLUMNS:
        fixed = [[str(x) for x in v if x is not None] if isinstance(v, (list, tuple)) else None for v in values]
    else:
        fixed = [_str_or_none(v) for v in values]
    return pa.array(fixed, type=typ)


#: The columns records supply (the store stamps the others).
_INPUT_COLUMNS: tuple[str, ...] = tuple(n for n in COLUMN_NAMES if n not in ("run_id", "ingested_at", "schema_version"))
_get_fields = operator.itemgetter(*_INPUT_COLUMNS)


def records_to_table(records: Sequence[dict], *, run_id: str, ingested_at: datetime) -> pa.Table:
    """Article records (the dedupe stage's JSON objects) as a table of exactly ARTICLE_SCHEMA.

    Unknown keys (``http_etag`` ...) are dropped; missing ones become null. The store
    stamps `run_id`, `ingested_at` and `schema_version`, overriding whatever a record says.

    Records whose values already have the JSON shapes (strings, ints, timestamps as ISO text)
    convert in C++ (`Table.from_pylist` with explicit types: ~2x faster than column by column
    from Python); anything else falls back to per-column conversion with Python coercion.
    """
    try:
        table = pa.Table.from_pylist(records, schema=JSON_PARSE_SCHEMA)
    except (
        pa.ArrowInvalid,
        pa.ArrowTypeError,
        pa.ArrowNotImplementedError,
        TypeError,
        ValueError,
        OverflowError,
        AttributeError,
    ):
        return _records_to_table_by_column(records, run_id=run_id, ingested_at=ingested_at)
    return table_to_articles(table, run_id=run_id, ingested_at=ingested_at)


def _records_to_table_by_column(records: Sequence[dict], *, run_id: str, ingested_at: datetime) -> pa.Table:
    """`records_to_table` for values of other shapes (an int where a string belongs, a datetime
    object, a float word count ...): each column through `_column`'s Python coercion."""
    n = len(records)
    stamped = {"run_id": run_id, "ingested_at": ingested_at, "schema_version": SCHEMA_VERSION}
    # One pass over the records, then transposed: reading all fields of a dict while it is in
    # cache is ~7x faster than one pass per column (each pass misses on every dict again).
    try:
        rows = [_get_fields(r) for r in records]
    except KeyError:  # some records lack a field: slower, tolerant lookup for this batch
        rows = [tuple(map(r.get, _INPUT_COLUMNS)) for r in records]
    values = dict(zip(_INPUT_COLUMNS, zip(*rows))) if rows else {name: () for name in _INPUT_COLUMNS}
    del rows
    arrays = []
    for f in ARTICLE_SCHEMA:
        if f.name in stamped:
            arrays.append(pa.repeat(pa.scalar(stamped[f.name], type=f.type), n))
            continue
        column = _column(f.name, f.type, values.pop(f.name))
        if not f.nullable and column.null_count:
            raise ValueError(f"{column.null_count} of {n} records have no {f.name!r}: the dedupe stage must set it")
        arrays.append(column)
    return pa.Table.from_arrays(arrays, schema=ARTICLE_SCHEMA)


#: The store stamps these on every row; the input's values (if any) are ignored.
STAMPED_COLUMNS = ("run_id", "ingested_at", "schema_version")

#: How the work files' JSON is parsed by pyarrow.json: timestamps as text (converted after).
JSON_PARSE_SCHEMA: pa.Schema = pa.schema(
    [
        pa.field(f.name, pa.string() if f.name in _TIMESTAMP_COLUMNS else f.type)
        for f in ARTICLE_SCHEMA
        if f.name not in STAMPED_COLUMNS
    ]
)


def table_to_articles(table: pa.Table, *, run_id: str, ingested_at: datetime) -> pa.Table:
    """Like `records_to_table`, for input that is already Arrow (any subset of the columns,
    timestamps as text or timestamps): cast in C++, per-value Python coercion only on failure."""
    n = table.num_rows
    stamped = {"run_id": run_id, "ingested_at": ingested_at, "schema_version": SCHEMA_VERSION}
    arrays = []
    for f in ARTICLE_SCHEMA:
        if f.name in stamped:
            arrays.append(pa.repeat(pa.scalar(stamped[f.name], type=f.type), n))
            continue
        if f.name not in table.column_names:
            column = pa.nulls(n, type=f.type)
        else:
            chunks = table.column(f.name)
            # combine_chunks copies even a single chunk: 150 MB of text per 50,000 articles.
            raw = chunks.chunk(0) if chunks.num_chunks == 1 else chunks.combine_chunks()
            try:
                column = raw if raw.type == f.type else raw.cast(f.type)
            except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
                column = _column(f.name, f.type, raw.to_pylist())
        if not f.nullable and column.null_count:
            raise ValueError(f"{column.null_count} of {n} records have no {f.name!r}: the dedupe stage must set it")
        arrays.append(column)
    return pa.Table.from_arrays(arrays, schema=ARTICLE_SCHEMA)


def conform(table: pa.Table) -> pa.Table:
    """A table read from any schema version, as the current ARTICLE_SCHEMA (missing columns null)."""
    if table.schema.equals(ARTICLE_SCHEMA, check_metadata=False):
        return table.replace_schema_metadata(ARTICLE_SCHEMA.metadata)
    arrays = []
    for f in ARTICLE_SCHEMA:
        if f.name in table.column_names:
            arrays.append(table.column(f.name).cast(f.type))
        else:
            arrays.append(pa.nulls(table.num_rows, type=f.type))
    schema = pa.schema([f.with_nullable(True) for f in ARTICLE_SCHEMA], metadata=ARTICLE_SCHEMA.metadata)
    return pa.Table.from_arrays(arrays, schema=schema)


def project(schema: pa.Schema, columns: Iterable[str] | None) -> list[str] | None:
    """Validate a column selection against the schema (clear error instead of a pyarrow KeyError)."""
    if columns is None:
        return None
    cols = list(columns)
    unknown = [c for c in cols if c not in schema.names]
    if unknown:
        raise ValueError(f"unknown column(s) {', '.join(unknown)}; the dataset has: {', '.join(schema.names)}")
    return cols
