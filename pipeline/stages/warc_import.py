"""Importing web archives: the records of a WARC file (CC-NEWS, any collection) filtered, then extracted
and cleaned by the same workers as a crawl's pages (`extract_outcomes(then=CleanStep)`).

Filters run before extraction, cheapest first: the record type, a record that could not be read
(truncated, corrupt, too large), HTTP status, MIME type, the record date (`since` / `until`), the
host (allow / deny lists). Language is decided after extraction (cleaning detects it). Every skipped
record is counted by reason (`ImportCounts.skipped`); only a bounded sample of them is kept as
rejects (`REJECT_SAMPLE` per reason and archive file, over all its chunks): an archive month has
millions of records.

Each record's item carries its provenance: the archive's URI as `warc_key`, its `WARC-Record-ID`,
its offset and length in the file (`warc_offset`, `warc_length`) and its `WARC-Date` (`fetched_at`).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import urlsplit

from pipeline.core.config import SourcesConfig
from pipeline.core.errors import ConfigError, NotAnArticle
from pipeline.dataset.rejects import reject
from pipeline.dataset.warc import ArchiveRecord
from pipeline.stages.clean import CleanStep, Outcome
from pipeline.stages.extract import extract_outcomes

log = logging.getLogger(__name__)

#: Rejected records kept per reason and archive file (the rest are only counted).
REJECT_SAMPLE = 20
#: What counts as a page to extract, by the response's Content-Type (without parameters).
DEFAULT_MIME_TYPES = ("text/html", "application/xhtml+xml")
DEFAULT_STATUSES = (200,)


@dataclass(frozen=True)
class ImportFilters:
    """Which records of an archive are extracted (see the module docstring for the order)."""

    allow_domains: frozenset[str] = frozenset()
    deny_domains: frozenset[str] = frozenset()
    mime_types: tuple[str, ...] = DEFAULT_MIME_TYPES
    statuses: frozenset[int] = frozenset(DEFAULT_STATUSES)
    since: datetime | None = None
    until: datetime | None = None
    languages: frozenset[str] = frozenset()

    def skip_reason(self, rec: ArchiveRecord) -> str | None:
        """Why a readable response record is not extracted (None: it is)."""
        resp = rec.response
        assert resp is not None
        if resp.status not in self.statuses:
            return "status"
        mime = (resp.header("Content-Type") or "").split(";", 1)[0].strip().lower()
        if mime not in self.mime_types:
            return "mime_type"
        if self.since or self.until:
            when = parse_warc_date(resp.date)
            if when is None:
                return "no_date"
            if self.since and when < self.since:
                return "before_since"
            if self.until and when >= self.until:
                return "after_until"
        host = (urlsplit(resp.url or "").hostname or "").lower().rstrip(".")
        if self.deny_domains and _in_domains(host, self.deny_domains):
            return "domain_denied"
        if self.allow_domains and not _in_domains(host, self.allow_domains):
            return "domain_not_allowed"
        return None


def _in_domains(host: str, domains: frozenset[str]) -> bool:
    """`host` is one of `domains` or a subdomain of one (`www.bbc.co.uk` is in `bbc.co.uk`)."""
    parts = host.split(".")
    return any(".".join(parts[i:]) in domains for i in range(len(parts)))


def parse_warc_date(value: str | None) -> datetime | None:
    """A WARC-Date (W3C ISO 8601, `Z`) as an aware datetime; None when missing or unreadable."""
    if not value:
        return None
    try:
        when = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    return when if when.tzinfo else when.replace(tzinfo=timezone.utc)


def read_domains(path: str | Path) -> frozenset[str]:
    """A domain list file: one domain per line, `#` comments; a leading `*.` or `.` is dropped."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read domain list {path}: {exc.strerror or exc}") from None
    out = set()
    for line in text.splitlines():
        domain = line.split("#", 1)[0].strip().lower().removeprefix("*.").strip(".")
        if domain:
            out.add(domain)
    return frozenset(out)


def source_domains(sources: SourcesConfig) -> frozenset[str]:
    """The hosts of the configured sources' feeds, sitemaps and sections (without a leading `www.`)."""
    out = set()
    for src in sources.sources:
        for url in [*src.feeds, *src.sitemaps, *src.sections]:
            host = (urlsplit(url).hostname or "").lower().rstrip(".")
            if host:
                out.add(host.removeprefix("www."))
    return frozenset(out)


@dataclass
class ImportCounts:
    """What an import made of an archive's records: counters by kind and reason, a sample of rejects."""

    records: Counter = field(default_factory=Counter)  # by WARC record type
    skipped: Counter = field(default_factory=Counter)  # by reason, before and after extraction
    extracted: int = 0
    kept: int = 0
    samples: list[dict] = field(default_factory=list)
    #: Records of the same archive file already skipped, by reason (its earlier chunks): the sample is
    #: per file, so a reason whose first REJECT_SAMPLE records were sampled there is only counted here.
    skipped_before: Mapping[str, int] = field(default_factory=dict)

    def skip(self, reason: str, url: str, source: str, stage: str, *, detail: str = "", **pointer: str | None) -> None:
        """Count a skipped record; keep it as a reject while its reason has fewer than REJECT_SAMPLE in the file."""
        self.skipped[reason] += 1
        if self.skipped[reason] + self.skipped_before.get(reason, 0) <= REJECT_SAMPLE:
            self.samples.append(reject(url, stage, reason, source=source, detail=detail, **pointer))

    def as_dict(self) -> dict:
        return {
            "records": dict(self.records),
            "responses": self.records.get("response", 0),
            "extracted": self.extracted,
            "kept": self.kept,
            "skipped": dict(self.skipped),
        }


def record_item(rec: ArchiveRecord, source: str) -> dict:
    """The extraction item of an archived response (without its HTML): its provenance included."""
    resp = rec.response
    assert resp is not None
    return {
        "url": resp.url,
        "source": source,
        "warc_key": resp.warc_key,
        "warc_record_id": resp.record_id,
        "warc_offset": rec.offset if rec.compressed else None,
        "warc_length": rec.length if rec.compressed else None,
        "fetched_at": resp.date,
        "http_etag": resp.header("ETag"),
        "http_last_modified": resp.header("Last-Modified"),
    }


@dataclass(frozen=True)
class ImportStep:
    """The clean stage's per-record step, then the language filter (in the extraction worker)."""

    clean: CleanStep
    languages: frozenset[str] = frozenset()

    def __call__(self, record: dict, item: Mapping | None = None) -> dict:
        row = self.clean(record, item)
        if self.languages and row.get("language") not in self.languages:
            raise NotAnArticle("language", f"text is {row.get('language')!r}, not one of {sorted(self.languages)}")
        return row

    def warmup(self) -> None:
        self.clean.warmup()


def select(
    records: Iterable[ArchiveRecord], filters: ImportFilters, counts: ImportCounts, source: str
) -> Iterator[tuple[ArchiveRecord, dict]]:
    """(record, item with its HTML) for each record that passes the filters; the others counted."""
    for rec in records:
        counts.records[rec.rec_type if rec.problem is None else "unreadable"] += 1
        warc_key = rec.response.warc_key if rec.response else None
        if rec.problem is not None:
            detail = f"offset {rec.offset}, {rec.length} bytes: {rec.detail}"
            counts.skip(rec.problem, "", source, "import", detail=detail, warc_key=warc_key)
            continue
        if rec.response is None:
            continue  # request, metadata, warcinfo ...: not pages
        reason = filters.skip_reason(rec)
        if reason is not None:
            resp = rec.response
            counts.skip(reason, resp.url, source, "import", warc_record_id=resp.record_id, warc_key=warc_key)
            continue
        item = record_item(rec, source)
        yield rec, {**item, "html": rec.response.text()}


def extract_records(
    records: Iterable[ArchiveRecord],
    filters: ImportFilters,
    counts: ImportCounts,
    *,
    source: str,
    step: ImportStep,
    workers: int | None = None,
    timeout: float = 30,
    on_record: Callable[[ArchiveRecord], None] | None = None,
) -> list[Outcome]:
    """Extract and clean the records that pass the filters; the (record, cleaned row) outcomes of the
    kept ones, in file order, ready for the clean stage (`clean_stage(cleaned=...)`).

    Extraction failures and language / quality rejects are counted (and sampled) here, so that only
    kept rows go on. `on_record(rec)` sees each selected record as it is handed to the workers.
    """
    pointers: list[dict] = []

    def items() -> Iterator[dict]:
        for rec, item in select(records, filters, counts, source):
            pointers.append({k: v for k, v in item.items() if k != "html"})
            if on_record is not None:
                on_record(rec)
            yield item

    kept: list[Outcome] = []
    for i, outcome in enumerate(extract_outcomes(items(), workers=workers, timeout=timeout, then=step)):
        item = pointers[i]
        pointers[i] = {}  # the pointer is no longer needed: memory stays bounded by the pool's window
        where = {"warc_key": item.get("warc_key"), "warc_record_id": item.get("warc_record_id")}
        if not outcome.ok:
            rec = outcome.record
            counts.skip(rec["error"], item["url"], source, "extract", detail=rec.get("detail", ""), **where)
            continue
        counts.extracted += 1
        then = outcome.then or {}
        if "error" in then:
            counts.skip(then["error"], item["url"], source, "clean", detail=then.get("detail", ""), **where)
            continue
        counts.kept += 1
        kept.append((outcome.record, then))
    return kept
