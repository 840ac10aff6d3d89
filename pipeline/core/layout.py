"""Every bucket key and prefix the pipeline writes or reads, built in one place.

Bucket layout (a contract for consumers; `tests/test_layout.py` pins it)::

    raw/dt=YYYY-MM-DD/run=<run_id>/<source>/<source>-<attempt>-<seq:05d>.warc.gz   WARC 1.1, gzip per record
    work/dt=YYYY-MM-DD/run=<run_id>/...        intermediate stage outputs; not for consumers
        crawl/<source>.json                    crawl summary (stats counters, WARC keys, rejects key)
        crawl-failed/<source>.json             written when a crawl raised; deleted by a successful retry
        extracted/<warc stem>.jsonl.gz         extracted articles of one WARC file
        cleaned.jsonl.gz                       the run's cleaned articles
        deduped.jsonl.gz                       the run's articles with their duplicate verdicts
    rejects/dt=YYYY-MM-DD/run=<run_id>/<name>.jsonl   name: crawl-<source>, extract-<warc stem>, clean;
                                               rows: url, source, stage, reason, warc_key, warc_record_id
    articles/                                  the articles Delta table (`pipeline.dataset.delta`), read with
                                               any Delta client; a data file is visible only through the log
        _delta_log/<version:020d>.json         the commit point of a table version (a run's commit, OPTIMIZE ...)
        _delta_log/*.checkpoint.parquet        checkpoints (`_last_checkpoint` names the newest)
        dt=YYYY-MM-DD/part-*.parquet           data files of the day partition (the run's date)
        _change_data/dt=YYYY-MM-DD/*.parquet   change data feed files (rows a commit replaced)
    _manifests/run=<run_id>.json               legacy (before the Delta table): a run's commit point; read by
    _manifests/compaction/dt=YYYY-MM-DD.json   `python -m pipeline migrate` only, with its listed files under
                                               articles/dt=YYYY-MM-DD/run=<run_id>/ and run=compacted/
    state/seen/<source>.json                   stored canonical URLs: content hash, ETag, Last-Modified, run id
    state/http/<source>.json                   validators (ETag/Last-Modified) and links of feeds, sitemaps, robots
    state/{seen,refused,http}/<source>/<shard>.json   the same state sharded by key hash (the current layout)
    state/deltas/{seen,refused}/<source>/<stamp>-<run>-<rand>.json   one run's new entries, not yet folded
    state/dedupe/v1/day=YYYY-MM-DD.npz         near-duplicate index, one object per run date (old format, read only)
    state/dedupe/v2/day=YYYY-MM-DD/seq=N.seg   near-duplicate index, one immutable segment per commit
    reports/run=<run_id>.json (+ .html)        run reports
    reports/consumer/run=<run_id>.json         the consumer DAG's per-run summary

`run_id` is `YYYYMMDDTHHMMSSZ` (Airflow: the data interval end; ad hoc: now), optionally
followed by a suffix of `[A-Za-z0-9._-]`; `dt` is the run's date. A run id that passed
`check_run_id` is its own key segment (`run_segment`): it has no '/', and it always follows
`run=`, so even `..` in a suffix never makes a segment of its own. Untrusted names (sources,
rejects file names) go through `safe_segment`, which maps anything odd to a hashed name.

Imports nothing of the project but `pipeline.core.errors`: every layer, the spiders and the tests may use it.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from datetime import date, datetime, timezone

from pipeline.core.errors import BadRunId

# --------------------------------------------------------------------------- segments

_RUN_ID = re.compile(r"(\d{8}T\d{6}Z)[A-Za-z0-9._-]{0,40}", re.ASCII)  # ASCII: \d is not any Unicode digit
_UNSAFE = re.compile(r"[^A-Za-z0-9._=-]+")
_DT = re.compile(r"\d{4}-\d{2}-\d{2}", re.ASCII)

#: The areas that hold one folder per run (`<area>/dt=YYYY-MM-DD/run=<run_id>/`).
RUN_AREAS = ("raw", "work", "rejects", "articles")


def make_run_id(when: datetime) -> str:
    """Deterministic run id from a timestamp (an Airflow data interval end, or now for ad-hoc runs)."""
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return when.astimezone(timezone.utc).strftime("%Y%m%dT%H%M%SZ")


def check_run_id(run_id: str) -> str:
    """Run ids go into keys: accept only the documented shape (YYYYMMDDTHHMMSSZ, optional suffix).

    Raises `BadRunId` (a ConfigError, so a ValueError too) for anything else.
    """
    m = _RUN_ID.fullmatch(run_id) if isinstance(run_id, str) else None  # not match: `$` allows a trailing newline
    if m:
        try:  # a real instant: the date becomes a `dt=` partition that compaction must be able to name
            datetime.strptime(m.group(1), "%Y%m%dT%H%M%SZ")
        except ValueError:
            m = None
    if not m:
        raise BadRunId(f"bad run id {run_id!r}: expected YYYYMMDDTHHMMSSZ, optionally followed by [A-Za-z0-9._-]")
    return run_id


def run_date(run_id: str) -> str:
    """YYYY-MM-DD of a run id (its `dt=` partition)."""
    check_run_id(run_id)
    return f"{run_id[:4]}-{run_id[4:6]}-{run_id[6:8]}"


def check_dt(value: str | date) -> str:
    """A partition date as `YYYY-MM-DD`; anything else (e.g. `../../etc`) is refused."""
    if isinstance(value, datetime):
        value = value.date()
    if isinstance(value, date):
        return value.isoformat()
    if not isinstance(value, str) or not _DT.fullmatch(value):
        raise ValueError(f"bad partition date {value!r}: expected YYYY-MM-DD")
    date.fromisoformat(value)  # rejects 2026-13-40
    return value


def safe_segment(value: str, *, max_len: int = 80) -> str:
    """One key segment from untrusted input: no '/', no '..', ASCII, bounded length.

    Hostile values (path traversal, very long, non-ASCII) map to a stable safe
    name; a hash suffix keeps distinct inputs distinct after squashing. Safe values
    (and every output of this function) come back unchanged.
    """
    norm = unicodedata.normalize("NFKD", value).encode("ascii", "ignore").decode()
    seg = _UNSAFE.sub("_", norm).strip("._") or "x"
    if seg != value or len(seg) > max_len:
        digest = hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()[:10]
        seg = f"{seg[: max_len - 11]}-{digest}"
    return seg


def run_segment(run_id: str) -> str:
    """The key segment of a run id (after `run=`): the id itself, once `check_run_id` accepts it.

    Not `safe_segment`: that would hash ids whose legal suffix ends in '.' or '_', and every
    reader that rebuilds a key from the raw id would then miss what the writer stored.
    """
    return check_run_id(run_id)


def run_prefix(area: str, run_id: str) -> str:
    """`<area>/dt=YYYY-MM-DD/run=<run_id>/`: a run's folder in raw/, work/, rejects/ or articles/."""
    if area not in RUN_AREAS:
        raise ValueError(f"unknown run area {area!r}: expected one of {', '.join(RUN_AREAS)}")
    return f"{area}/dt={run_date(run_id)}/run={run_segment(run_id)}/"


def _strip(key: str, prefix: str, suffix: str) -> str | None:
    """The middle of `key` between `prefix` and `suffix` when it is one non-empty segment, else None."""
    if not (key.startswith(prefix) and key.endswith(suffix)) or len(key) <= len(prefix) + len(suffix):
        return None
    middle = key[len(prefix) : len(key) - len(suffix)]
    return None if "/" in middle else middle


# --------------------------------------------------------------------------- raw/ (WARC archive)

RAW_PREFIX = "raw/"
WARC_SUFFIX = ".warc.gz"
_RAW_RUN = re.compile(r"raw/dt=\d{4}-\d{2}-\d{2}/run=([^/]+)/", re.ASCII)


def raw_prefix(run_id: str, source: str | None = None) -> str:
    """`raw/dt=/run=/` of a run, or `raw/dt=/run=/<source>/` where a crawl of `source` puts its WARC files."""
    prefix = run_prefix("raw", run_id)
    return prefix if source is None else f"{prefix}{safe_segment(source)}/"


def warc_basename(source: str, attempt: str | None = None) -> str:
    """The file name stem of a source's WARC files: `<source>` of `<source>-00001.warc.gz`, or
    `<source>-<attempt>` for one crawl attempt's files (unique per attempt: never overwritten)."""
    return safe_segment(source) if attempt is None else f"{safe_segment(source)}-{safe_segment(attempt)}"


def warc_file_name(basename: str, seq: int) -> str:
    """`<basename>-<seq:05d>.warc.gz`: one rotated WARC file (the same name locally and in the bucket)."""
    return f"{basename}-{seq:05d}{WARC_SUFFIX}"


def raw_day_prefix(day: str | date) -> str:
    """`raw/dt=YYYY-MM-DD/`: every run archived on that day (list it, then `raw_run_id` each key)."""
    return f"{RAW_PREFIX}dt={check_dt(day)}/"


def raw_run_id(key: str) -> str | None:
    """The run id of a key under `raw/dt=/run=<run_id>/`; None for other keys.

    ValueError when the folder is there but its run id is not a valid one (a stray upload).
    """
    m = _RAW_RUN.match(key)
    return check_run_id(m.group(1)) if m else None


def warc_stem(warc_key: str) -> str:
    """The file name of a WARC key without `.warc.gz` / `.warc`, as one safe segment (`courier-00001`)."""
    name = warc_key.rsplit("/", 1)[-1]
    for suffix in (WARC_SUFFIX, ".warc"):
        if name.endswith(suffix):
            name = name[: -len(suffix)]
            break
    return safe_segment(name)


# --------------------------------------------------------------------------- work/ (stage outputs)


def crawl_summaries_prefix(run_id: str) -> str:
    """`work/dt=/run=/crawl/`: the crawl summaries of a run."""
    return f"{run_prefix('work', run_id)}crawl/"


def crawl_summary_key(run_id: str, source: str) -> str:
    """`work/dt=/run=/crawl/<source>.json`: written by the spider when it closes."""
    return f"{crawl_summaries_prefix(run_id)}{safe_segment(source)}.json"


def crawl_failure_key(run_id: str, source: str) -> str:
    """`work/dt=/run=/crawl-failed/<source>.json`: written when a crawl task raised."""
    return f"{run_prefix('work', run_id)}crawl-failed/{safe_segment(source)}.json"


def extracted_prefix(run_id: str) -> str:
    """`work/dt=/run=/extracted/`: the extracted articles of a run, one file per WARC file."""
    return f"{run_prefix('work', run_id)}extracted/"


def extracted_key(run_id: str, warc_key: str) -> str:
    """`work/dt=/run=/extracted/<warc stem>.jsonl.gz`: the extracted articles of one WARC file."""
    return f"{extracted_prefix(run_id)}{warc_stem(warc_key)}.jsonl.gz"


def cleaned_key(run_id: str) -> str:
    """`work/dt=/run=/cleaned.jsonl.gz`."""
    return f"{run_prefix('work', run_id)}cleaned.jsonl.gz"


def deduped_key(run_id: str) -> str:
    """`work/dt=/run=/deduped.jsonl.gz`."""
    return f"{run_prefix('work', run_id)}deduped.jsonl.gz"


# --------------------------------------------------------------------------- rejects/


def rejects_prefix(run_id: str) -> str:
    """`rejects/dt=/run=/`: every rejects file of a run."""
    return run_prefix("rejects", run_id)


def rejects_key(run_id: str, name: str) -> str:
    """`rejects/dt=/run=/<name>.jsonl` (name: `crawl_rejects_name`, `extract_rejects_name`, `clean`)."""
    return f"{rejects_prefix(run_id)}{safe_segment(name)}.jsonl"


def crawl_rejects_name(source: str) -> str:
    """`crawl-<source>`: the rejects file of one source's crawl."""
    return f"crawl-{safe_segment(source)}"


def extract_rejects_name(warc_key: str) -> str:
    """`extract-<warc stem>`: the rejects file of one WARC file's extraction."""
    return f"extract-{warc_stem(warc_key)}"


# --------------------------------------------------------------------------- articles/ (Delta) and _manifests/

ARTICLES_PREFIX = "articles/"
#: The Delta table's commit log: one `<version:020d>.json` per committed table version.
DELTA_LOG_PREFIX = f"{ARTICLES_PREFIX}_delta_log/"
RUN_MANIFEST_PREFIX = "_manifests/run="
COMPACTION_MANIFEST_PREFIX = "_manifests/compaction/"
#: The `run=` folder of a day's compacted files (never a run id: those start with a digit).
COMPACTED_RUN = "compacted"


def delta_commit_key(version: int) -> str:
    """`articles/_delta_log/<version:020d>.json`: the log entry that committed a table version."""
    if version < 0:
        raise ValueError(f"bad table version {version}")
    return f"{DELTA_LOG_PREFIX}{version:020d}.json"


def delta_commit_version(key: str) -> int | None:
    """The table version a `delta_commit_key` names; None for other keys (checkpoints, data files)."""
    stem = _strip(key, DELTA_LOG_PREFIX, ".json")
    return int(stem) if stem is not None and len(stem) == 20 and stem.isdigit() else None


def run_articles_prefix(run_id: str) -> str:
    """Legacy `articles/dt=YYYY-MM-DD/run=<run_id>/`: where the manifest store put a run's part files."""
    return run_prefix("articles", run_id)


def articles_day_prefix(dt: str | date) -> str:
    """`articles/dt=YYYY-MM-DD/`: every Parquet file of a day partition (runs' and compacted)."""
    return f"{ARTICLES_PREFIX}dt={check_dt(dt)}/"


def compacted_prefix(dt: str | date) -> str:
    """`articles/dt=YYYY-MM-DD/run=compacted/`: where compaction writes a day's merged files."""
    return f"{articles_day_prefix(dt)}run={COMPACTED_RUN}/"


def part_key(prefix: str, attempt: str, n: int) -> str:
    """`<prefix>part-<attempt>-<n:05d>.parquet`: one Parquet file of an attempt under an articles prefix."""
    return f"{prefix}part-{safe_segment(attempt)}-{n:05d}.parquet"


def run_manifest_key(run_id: str) -> str:
    """Legacy `_manifests/run=<run_id>.json` (read by `migrate`)."""
    return f"{RUN_MANIFEST_PREFIX}{run_segment(run_id)}.json"


def manifest_run_id(key: str) -> str | None:
    """The run id of a run manifest key; None for other keys (or an invalid run id)."""
    return _valid_run_id(_strip(key, RUN_MANIFEST_PREFIX, ".json"))


def compaction_manifest_key(dt: str | date) -> str:
    """`_manifests/compaction/dt=YYYY-MM-DD.json`."""
    return f"{COMPACTION_MANIFEST_PREFIX}dt={check_dt(dt)}.json"


# --------------------------------------------------------------------------- state/

SEEN_PREFIX = "state/seen/"
HTTP_PREFIX = "state/http/"
REFUSED_PREFIX = "state/refused/"
DEDUPE_INDEX_PREFIX = "state/dedupe/v1/"
DEDUPE_SEGMENT_PREFIX = "state/dedupe/v2/"
STATE_DELTA_PREFIX = "state/deltas/"


def seen_key(source: str) -> str:
    """`state/seen/<source>.json`."""
    return f"{SEEN_PREFIX}{safe_segment(source)}.json"


def seen_source(key: str) -> str | None:
    """The source segment of a `state/seen/<source>.json` key (`seen_key` of it is `key` again); else None."""
    return _strip(key, SEEN_PREFIX, ".json")


def refused_source(key: str) -> str | None:
    """The source a `state/refused/<source>.json` key belongs to (None for other keys)."""
    return _strip(key, REFUSED_PREFIX, ".json")


def refused_key(source: str) -> str:
    """`state/refused/<source>.json`: URLs fetched as articles and refused as not articles."""
    return f"{REFUSED_PREFIX}{safe_segment(source)}.json"


def http_key(source: str) -> str:
    """`state/http/<source>.json`."""
    return f"{HTTP_PREFIX}{safe_segment(source)}.json"


def state_shard_prefix(prefix: str, source: str) -> str:
    """`<prefix><source>/`: the folder of a source's sharded state (`state/seen/<source>/` ...)."""
    return f"{prefix}{safe_segment(source)}/"


def state_shard_key(prefix: str, source: str, shard: int) -> str:
    """`<prefix><source>/<shard as 4 hex digits>.json`: one shard of a source's seen, refused or HTTP state."""
    return f"{state_shard_prefix(prefix, source)}{shard:04x}.json"


def state_shard_of(key: str, prefix: str) -> tuple[str, int] | None:
    """(source segment, shard number) of a `state_shard_key` under `prefix`; None for any other key."""
    rest = key[len(prefix) :] if key.startswith(prefix) else ""
    source, _, name = rest.partition("/")
    if not source or not name.endswith(".json") or "/" in name or len(name) != 9:
        return None
    try:
        return source, int(name[:4], 16)
    except ValueError:
        return None


def state_delta_prefix(prefix: str, source: str | None = None) -> str:
    """`state/deltas/<kind>/[<source>/]`: the pending per-run deltas of a kind of state (of one source)."""
    kind = prefix[len("state/") :].strip("/")
    base = f"{STATE_DELTA_PREFIX}{kind}/"
    return base if source is None else f"{base}{safe_segment(source)}/"


def state_delta_key(prefix: str, source: str, name: str) -> str:
    """`state/deltas/<kind>/<source>/<name>.json`: one run's new entries of a source's state."""
    return f"{state_delta_prefix(prefix, source)}{safe_segment(name, max_len=120)}.json"


def state_delta_source(key: str, prefix: str) -> str | None:
    """The source segment of a `state_delta_key` of `prefix`'s kind; None for any other key."""
    rest = key[len(state_delta_prefix(prefix)) :] if key.startswith(state_delta_prefix(prefix)) else ""
    source, _, name = rest.partition("/")
    return source if source and name.endswith(".json") and "/" not in name else None


def dedupe_shard_key(day: str | date, prefix: str = DEDUPE_INDEX_PREFIX) -> str:
    """`state/dedupe/v1/day=YYYY-MM-DD.npz`: the near-duplicate index rows of one run date."""
    return f"{prefix}day={check_dt(day)}.npz"


def dedupe_shard_day(key: str, prefix: str = DEDUPE_INDEX_PREFIX) -> str | None:
    """The YYYY-MM-DD of a shard key under `prefix`; None for anything else there."""
    middle = _strip(key, f"{prefix}day=", ".npz")
    try:
        return check_dt(middle) if middle is not None else None
    except ValueError:
        return None


def dedupe_segment_prefix(prefix: str = DEDUPE_INDEX_PREFIX) -> str:
    """The segment folder beside an index prefix: `state/dedupe/v1/` -> `state/dedupe/v2/`."""
    return prefix[: -len("v1/")] + "v2/" if prefix.endswith("/v1/") else f"{prefix}v2/"


def dedupe_segment_key(day: str | date, seq: int, prefix: str = DEDUPE_SEGMENT_PREFIX) -> str:
    """`state/dedupe/v2/day=YYYY-MM-DD/seq=00000001.seg`: the index rows of one commit of a run date."""
    return f"{prefix}day={check_dt(day)}/seq={seq:08d}.seg"


def dedupe_segment_of(key: str, prefix: str = DEDUPE_SEGMENT_PREFIX) -> tuple[str, int] | None:
    """(YYYY-MM-DD, seq) of a `dedupe_segment_key` under `prefix`; None for anything else there."""
    head = f"{prefix}day="
    if not (key.startswith(head) and key.endswith(".seg")):
        return None
    day, _, seq = key[len(head) : -len(".seg")].partition("/seq=")
    try:
        return (check_dt(day), int(seq)) if seq.isdigit() and len(seq) == 8 else None
    except ValueError:
        return None


def dedupe_commit_prefix(seg_prefix: str = DEDUPE_SEGMENT_PREFIX) -> str:
    """`state/dedupe/v2-commits/`: one marker per segment a run saved, numbered across all days (beside
    the segments, so that listing them lists no marker)."""
    return f"{seg_prefix.rstrip('/')}-commits/"


def dedupe_commit_key(number: int, seg_prefix: str = DEDUPE_SEGMENT_PREFIX) -> str:
    """`state/dedupe/v2-commits/000000000042`: the marker of the index's 42nd saved segment."""
    return f"{dedupe_commit_prefix(seg_prefix)}{number:012d}"


def dedupe_commit_of(key: str, seg_prefix: str = DEDUPE_SEGMENT_PREFIX) -> int | None:
    """The number of a `dedupe_commit_key` under `seg_prefix`; None for anything else there."""
    prefix = dedupe_commit_prefix(seg_prefix)
    tail = key[len(prefix) :] if key.startswith(prefix) else ""
    return int(tail) if len(tail) == 12 and tail.isdigit() else None


# --------------------------------------------------------------------------- reports/

#: What to list for every run report (`reports/run=<run_id>.json` and `.html`).
REPORTS_PREFIX = "reports/run="
CONSUMER_REPORTS_PREFIX = "reports/consumer/run="


def report_key(run_id: str, ext: str = "json") -> str:
    """`reports/run=<run_id>.<ext>` (ext: json or html)."""
    if ext not in ("json", "html"):
        raise ValueError(f"bad report extension {ext!r}: expected json or html")
    return f"{REPORTS_PREFIX}{run_segment(run_id)}.{ext}"


def report_run_id(key: str) -> str | None:
    """The run id of a JSON run report key; None for other keys (the HTML pages, stray objects)."""
    return _valid_run_id(_strip(key, REPORTS_PREFIX, ".json"))


def consumer_report_key(run_id: str) -> str:
    """`reports/consumer/run=<run_id>.json`."""
    return f"{CONSUMER_REPORTS_PREFIX}{run_segment(run_id)}.json"


def _valid_run_id(value: str | None) -> str | None:
    if value is None:
        return None
    try:
        return check_run_id(value)
    except ValueError:
        return None
