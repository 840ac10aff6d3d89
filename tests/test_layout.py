"""Bucket keys: the documented layout, round trips, prefixes, bad run ids and hostile names (`pipeline.core.layout`);
and, against the real SeaweedFS, a run whose id ends in a suffix `safe_segment` used to rewrite."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

import pytest

from benchmarks.bench_store import generate_articles
from pipeline.core import layout as L
from pipeline.core.context import RunContext

RUN_IDS = ["20261127T140000Z", "20261127T140000Z_", "20261127T140000Z.retry-2"]
BAD_RUN_IDS = [
    "../x",
    "2026",
    "",
    "20261127T140000Z/x",
    "20261127T140000Z/../../x",
    "x20261127T140000Z",
    "20261340T000000Z",
    "20261127T140000Z" + "a" * 41,
    "20261127T140000Z\n",
    "20261127T140000Zé",
    "２０２６１１２７T140000Z",
]
HOSTILE = [
    "../../etc/passwd",
    "..",
    ".",
    "",
    "a/b",
    "/abs",
    "é" * 300,
    "a" * 5000,
    "x\x00y",
    "Zürich-日本語-\u202e",
    "crawl/../../_manifests/run=evil",
    "_",
    "a.",
    "con",
]
DAY = "2026-11-27"


def run_keys(run_id: str, source: str = "courier") -> dict[str, str]:
    """One key of every per-run kind."""
    warc = f"{L.raw_prefix(run_id, source)}{L.warc_file_name(L.warc_basename(source), 1)}"
    return {
        "warc": warc,
        "summary": L.crawl_summary_key(run_id, source),
        "failure": L.crawl_failure_key(run_id, source),
        "extracted": L.extracted_key(run_id, warc),
        "cleaned": L.cleaned_key(run_id),
        "deduped": L.deduped_key(run_id),
        "rejects_crawl": L.rejects_key(run_id, L.crawl_rejects_name(source)),
        "rejects_extract": L.rejects_key(run_id, L.extract_rejects_name(warc)),
        "rejects_clean": L.rejects_key(run_id, "clean"),
        "part": L.part_key(L.run_articles_prefix(run_id), "0123456789ab", 7),
        "manifest": L.run_manifest_key(run_id),
        "report": L.report_key(run_id),
        "report_html": L.report_key(run_id, "html"),
        "consumer": L.consumer_report_key(run_id),
    }


@pytest.mark.parametrize("run_id", RUN_IDS)
def test_the_documented_layout(run_id):
    """The tree in the module docstring, spelled out: consumers depend on these exact keys."""
    r = run_id
    assert L.check_run_id(r) == r and L.run_segment(r) == r and L.run_date(r) == DAY
    assert run_keys(r) == {
        "warc": f"raw/dt={DAY}/run={r}/courier/courier-00001.warc.gz",
        "summary": f"work/dt={DAY}/run={r}/crawl/courier.json",
        "failure": f"work/dt={DAY}/run={r}/crawl-failed/courier.json",
        "extracted": f"work/dt={DAY}/run={r}/extracted/courier-00001.jsonl.gz",
        "cleaned": f"work/dt={DAY}/run={r}/cleaned.jsonl.gz",
        "deduped": f"work/dt={DAY}/run={r}/deduped.jsonl.gz",
        "rejects_crawl": f"rejects/dt={DAY}/run={r}/crawl-courier.jsonl",
        "rejects_extract": f"rejects/dt={DAY}/run={r}/extract-courier-00001.jsonl",
        "rejects_clean": f"rejects/dt={DAY}/run={r}/clean.jsonl",
        "part": f"articles/dt={DAY}/run={r}/part-0123456789ab-00007.parquet",
        "manifest": f"_manifests/run={r}.json",
        "report": f"reports/run={r}.json",
        "report_html": f"reports/run={r}.html",
        "consumer": f"reports/consumer/run={r}.json",
    }
    assert L.raw_prefix(r) == f"raw/dt={DAY}/run={r}/"
    assert L.raw_day_prefix(DAY) == f"raw/dt={DAY}/"
    assert L.crawl_summaries_prefix(r) == f"work/dt={DAY}/run={r}/crawl/"
    assert L.rejects_prefix(r) == f"rejects/dt={DAY}/run={r}/"
    assert L.run_articles_prefix(r) == f"articles/dt={DAY}/run={r}/"
    assert L.extracted_prefix(r) == f"work/dt={DAY}/run={r}/extracted/"
    assert RunContext(r).prefix("work") == f"work/dt={DAY}/run={r}/"


def test_keys_that_do_not_depend_on_a_run():
    assert L.articles_day_prefix(DAY) == f"articles/dt={DAY}/"
    assert L.compacted_prefix(DAY) == f"articles/dt={DAY}/run=compacted/"
    assert L.compacted_prefix(date(2026, 11, 27)) == L.compacted_prefix(DAY)
    assert L.compaction_manifest_key(DAY) == f"_manifests/compaction/dt={DAY}.json"
    assert L.seen_key("courier") == "state/seen/courier.json"
    assert L.http_key("courier") == "state/http/courier.json"
    assert L.dedupe_shard_key(DAY) == f"state/dedupe/v1/day={DAY}.npz"
    assert L.RUN_MANIFEST_PREFIX == "_manifests/run=" and L.REPORTS_PREFIX == "reports/run="
    assert L.ARTICLES_PREFIX == "articles/"


def test_delta_commit_keys():
    assert L.DELTA_LOG_PREFIX == "articles/_delta_log/"
    assert L.delta_commit_key(7) == "articles/_delta_log/00000000000000000007.json"
    assert L.delta_commit_version(L.delta_commit_key(12345)) == 12345
    for other in (
        "articles/_delta_log/00000000000000000010.checkpoint.parquet",
        "articles/_delta_log/_last_checkpoint",
        "articles/_delta_log/7.json",
        "_manifests/run=20261127T060000Z.json",
        "articles/dt=2026-11-27/00000000000000000001.json",
    ):
        assert L.delta_commit_version(other) is None, other
    with pytest.raises(ValueError):
        L.delta_commit_key(-1)


@pytest.mark.parametrize("run_id", RUN_IDS)
def test_run_keys_round_trip_and_sit_under_their_prefixes(run_id):
    keys = run_keys(run_id)
    # What can be parsed back gives the run id (or the source segment, the day) again.
    assert L.raw_run_id(keys["warc"]) == run_id
    assert L.manifest_run_id(keys["manifest"]) == run_id
    assert L.report_run_id(keys["report"]) == run_id
    assert L.report_run_id(keys["report_html"]) is None  # the HTML page is not a second report
    assert L.warc_stem(keys["warc"]) == "courier-00001"
    assert L.extracted_key(run_id, keys["warc"]).endswith(f"/{L.warc_stem(keys['warc'])}.jsonl.gz")
    # Prefixes hold the keys listed through them.
    assert keys["warc"].startswith(L.raw_prefix(run_id, "courier"))
    assert L.raw_prefix(run_id, "courier").startswith(L.raw_prefix(run_id))
    assert L.raw_prefix(run_id).startswith(L.raw_day_prefix(L.run_date(run_id)))
    assert keys["summary"].startswith(L.crawl_summaries_prefix(run_id))
    assert not keys["failure"].startswith(L.crawl_summaries_prefix(run_id)), "failures are no summaries"
    for name in ("summary", "failure", "extracted", "cleaned", "deduped"):
        assert keys[name].startswith(L.run_prefix("work", run_id))
    for name in ("rejects_crawl", "rejects_extract", "rejects_clean"):
        assert keys[name].startswith(L.rejects_prefix(run_id))
    assert keys["extracted"].startswith(L.extracted_prefix(run_id))
    assert keys["part"].startswith(L.run_articles_prefix(run_id))
    assert L.run_articles_prefix(run_id).startswith(L.articles_day_prefix(L.run_date(run_id)))
    assert L.compacted_prefix(L.run_date(run_id)).startswith(L.articles_day_prefix(L.run_date(run_id)))
    assert L.articles_day_prefix(L.run_date(run_id)).startswith(L.ARTICLES_PREFIX)
    assert keys["manifest"].startswith(L.RUN_MANIFEST_PREFIX)
    assert not keys["manifest"].startswith(L.COMPACTION_MANIFEST_PREFIX)
    assert keys["report"].startswith(L.REPORTS_PREFIX) and keys["report_html"].startswith(L.REPORTS_PREFIX)
    assert keys["consumer"].startswith(L.CONSUMER_REPORTS_PREFIX)
    assert not keys["consumer"].startswith(L.REPORTS_PREFIX), "listing run reports must not find consumer summaries"
    # Every key is a plain relative path: no empty, '.' or '..' segment.
    for key in keys.values():
        assert not key.startswith("/") and all(seg not in ("", ".", "..") for seg in key.split("/"))


def test_runs_never_share_a_key_or_a_folder():
    per_run = {r: run_keys(r) for r in RUN_IDS}
    every = [k for keys in per_run.values() for k in keys.values()]
    assert len(every) == len(set(every))
    for r in RUN_IDS:
        for other in RUN_IDS:
            if other != r:  # one run's folder never lists another run's files (`Z/` vs `Z_/`)
                assert not any(k.startswith(L.raw_prefix(r)) for k in per_run[other].values())
                assert not any(k.startswith(L.run_articles_prefix(r)) for k in per_run[other].values())
    # The compacted folder of a day is nobody's run folder.
    assert all(L.compacted_prefix(DAY) != L.run_articles_prefix(r) for r in RUN_IDS)


def test_state_and_index_keys_round_trip():
    for source in ["courier", *HOSTILE]:
        key = L.seen_key(source)
        seg = L.seen_source(key)
        assert seg == L.safe_segment(source) and L.seen_key(seg) == key
    assert L.seen_source("state/seen/a/b.json") is None and L.seen_source("state/http/a.json") is None
    key = L.dedupe_shard_key(DAY)
    assert key.startswith(L.DEDUPE_INDEX_PREFIX) and L.dedupe_shard_day(key) == DAY
    assert L.dedupe_shard_day(L.dedupe_shard_key(DAY, "x/idx/"), "x/idx/") == DAY
    for stray in ("state/dedupe/v1/notes.txt", "state/dedupe/v1/day=2026-13-01.npz", "state/dedupe/v1/day=x.npz"):
        assert L.dedupe_shard_day(stray) is None


def test_parsers_refuse_what_they_did_not_build():
    assert L.raw_run_id("raw/x.warc.gz") is None and L.raw_run_id(f"work/dt={DAY}/run={RUN_IDS[0]}/a") is None
    with pytest.raises(ValueError):  # a folder under raw/ whose name is no run id
        L.raw_run_id(f"raw/dt={DAY}/run=evil/a/a-00001.warc.gz")
    assert L.manifest_run_id("_manifests/compaction/dt=2026-11-27.json") is None
    assert L.manifest_run_id("_manifests/run=evil.json") is None
    assert L.report_run_id(L.consumer_report_key(RUN_IDS[0])) is None
    assert L.report_run_id("reports/run=a/b.json") is None


@pytest.mark.parametrize("bad", BAD_RUN_IDS)
def test_bad_run_ids_raise(bad):
    for build in (
        L.check_run_id,
        L.run_segment,
        L.run_date,
        L.raw_prefix,
        L.deduped_key,
        L.rejects_prefix,
        L.run_manifest_key,
        L.report_key,
        L.consumer_report_key,
        L.run_articles_prefix,
        lambda r: L.crawl_summary_key(r, "a"),
        lambda r: L.run_prefix("work", r),
    ):
        with pytest.raises(ValueError):
            build(bad)
    with pytest.raises(ValueError, match="bad run id"):
        RunContext(bad)


def test_bad_areas_days_and_extensions_raise():
    for area in ("state", "reports", "../raw", ""):
        with pytest.raises(ValueError):
            L.run_prefix(area, RUN_IDS[0])
    for day in ("2026-13-40", "../x", "2026-11-27/..", "20261127", "2026-11-27\n", "２０２６-11-27"):
        for build in (L.compacted_prefix, L.compaction_manifest_key, L.dedupe_shard_key, L.raw_day_prefix):
            with pytest.raises(ValueError):
                build(day)
    with pytest.raises(ValueError):
        L.report_key(RUN_IDS[0], "json/../x")


def test_make_run_id_is_checked_and_utc():
    aware = datetime(2026, 11, 27, 15, 0, tzinfo=timezone(timedelta(hours=1)))
    assert L.make_run_id(aware) == "20261127T140000Z" == L.make_run_id(datetime(2026, 11, 27, 14, 0))
    assert L.check_run_id(L.make_run_id(datetime.now(timezone.utc)))


@pytest.mark.parametrize("hostile", HOSTILE)
def test_hostile_source_names_stay_one_safe_segment(hostile):
    run = RUN_IDS[1]
    seg = L.safe_segment(hostile)
    assert seg not in ("", ".", "..") and "/" not in seg and seg.isascii() and len(seg) <= 80
    assert L.safe_segment(seg) == seg, "an output of safe_segment is a safe value: it comes back unchanged"
    built = {
        L.raw_prefix(run): L.raw_prefix(run, hostile)[:-1],
        L.crawl_summaries_prefix(run): L.crawl_summary_key(run, hostile),
        L.run_prefix("work", run) + "crawl-failed/": L.crawl_failure_key(run, hostile),
        L.rejects_prefix(run): L.rejects_key(run, L.crawl_rejects_name(hostile)),
        "state/seen/": L.seen_key(hostile),
        "state/http/": L.http_key(hostile),
    }
    for prefix, key in built.items():
        assert key.startswith(prefix)
        rest = key[len(prefix) :]
        assert "/" not in rest and rest not in ("", ".", "..") and rest.isascii(), (prefix, key)
    # A hostile WARC key (the extract stage may be handed any key) still makes one segment.
    warc = f"raw/{hostile}.warc.gz"
    assert "/" not in L.extracted_key(run, warc)[len(L.run_prefix("work", run) + "extracted/") :]


def test_distinct_hostile_names_keep_distinct_keys():
    keys = {L.seen_key(h) for h in HOSTILE}
    assert len(keys) == len(HOSTILE)
    assert L.seen_key("a/b") != L.seen_key("a_b")


def _imports(path) -> set[str]:
    import ast

    tree = ast.parse(path.read_text())
    names = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    return names | {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}


def test_layout_imports_no_bucket_and_only_self_contained_core_modules():
    """Every layer, the spiders and the tests may build keys: no boto3, no bucket, nothing above core."""
    from pathlib import Path

    imported = _imports(Path(L.__file__))
    assert not {m for m in imported if m.startswith(("boto", "botocore", "spiders"))}
    project = {m for m in imported if m.startswith("pipeline")}
    assert all(m.startswith("pipeline.core.") and m != "pipeline.core.bucket" for m in project), project
    for module in project:  # and those import nothing of the project themselves
        path = Path(L.__file__).with_name(module.rsplit(".", 1)[-1] + ".py")
        assert not {m for m in _imports(path) if m.startswith(("pipeline", "boto", "botocore"))}, module


# --------------------------------------------------------------------------- regression, real bucket


def test_a_suffixed_run_id_is_stored_reported_and_rebuilt_under_one_name(s3_settings, bucket):
    """`20261127T140000Z_` passes check_run_id; safe_segment used to hash it (it strips trailing '._'),
    so the manifest went under a hashed name while `rebuild_report` and the DAG's report headline named the raw id."""
    from pipeline.dataset.delta import open_table, run_commits
    from pipeline.dataset.read import read_articles
    from pipeline.flows.ingest import headline, report_step
    from pipeline.report.run_report import latest_run, rebuild_report
    from pipeline.stages.store import store_stage

    run_id = "20261127T140000Z_"
    ctx = RunContext(run_id, s3=s3_settings)
    records = generate_articles(12, words=30)
    deduped = L.deduped_key(run_id)
    bucket.put_jsonl(deduped, records)

    manifest_key = store_stage(ctx, deduped)  # the commit's log entry: articles/_delta_log/<version>.json
    [version] = run_commits(s3_settings, run_id)
    assert manifest_key == L.delta_commit_key(version) and L.delta_commit_version(manifest_key) == version
    assert bucket.exists(manifest_key) and not bucket.list("_manifests/")
    table = open_table(s3_settings)
    assert all(f"/articles/dt={DAY}/" in u for u in table.file_uris())
    assert table.history(1)[0]["news_ingest.run_id"] == run_id  # the raw id, in the commit info
    assert read_articles(settings=s3_settings, run_id=run_id).num_rows == len(records)

    head = headline(report_step(ctx, [], deduped, manifest_key))
    assert head["report"] == f"reports/run={run_id}.json" and head["committed"]
    written = sorted(k for k in bucket.list("reports/"))
    assert written == [f"reports/run={run_id}.html", head["report"]], "the key returned is the key written"
    report = bucket.get_json(head["report"])
    assert report["run_id"] == run_id and report["manifest"] == manifest_key
    assert report["articles_stored"] == len(records)
    assert latest_run(bucket) == run_id

    # Rebuilt from the stage outputs alone: it finds the same commit and deduped file.
    rebuilt = rebuild_report(ctx)
    assert rebuilt["manifest"] == manifest_key and rebuilt["articles_stored"] == len(records)
    assert sorted(bucket.list("reports/")) == written
