"""The whole pipeline on real parts: the sample site over HTTP, Scrapy, trafilatura, SeaweedFS.

One full run (module-scoped, it is the expensive part), then checks of what a
consumer reads back, then a re-run of the same run id and a second run.
"""

from __future__ import annotations

import subprocess
import sys
from collections import Counter

import pytest

from examples.sample_site import BOILERPLATE_PHRASES
from pipeline.core.config import S3Settings
from pipeline.core.context import RunContext
from pipeline.core.paths import ROOT
from pipeline.dataset.read import read_articles
from pipeline.dataset.rejects import read_rejects
from pipeline.dataset.state import is_refusal
from pipeline.flows.ingest import run_once

# Per test: the module's first test runs the whole pipeline (about a minute).
pytestmark = pytest.mark.timeout(480)


RUN_1 = "20261127T100000Z"
RUN_2 = "20261127T110000Z"


@pytest.fixture(scope="module")
def settings(s3_server) -> S3Settings:
    info = s3_server.info()
    settings = info.settings("e2e-pipeline")
    from pipeline.core.bucket import Bucket

    Bucket(settings).ensure()
    return settings


@pytest.fixture(scope="module")
def sources(sample_site, tmp_path_factory):
    path = tmp_path_factory.mktemp("e2e") / "sources.yaml"
    return sample_site.write_sources_yaml(path, download_timeout=3, max_page_bytes=8 * 2**20)


@pytest.fixture(scope="module")
def first_run(settings, sources, sample_site):
    sample_site.set_epoch(0)
    sample_site.reset_hits()
    ctx = RunContext(run_id=RUN_1, s3=settings, sources_path=sources)
    report = run_once(ctx)
    return ctx, report


def _expected(sample_site, *kinds):
    return [e for e in sample_site.expected() if e["kind"] in kinds]


def test_run_stores_exactly_the_expected_articles(first_run, sample_site, settings):
    ctx, report = first_run
    table = read_articles(settings=settings, run_id=RUN_1)
    rows = table.to_pylist()
    expected = [e for e in sample_site.expected() if e["expected"] == "stored"]
    assert sorted(r["url"] for r in rows) == sorted(e["url"] for e in expected)
    titles = {r["url"]: r["title"] for r in rows}
    for e in expected:
        assert titles[e["url"]] == e["title"], e["url"]
    assert report["articles_stored"] == len(expected)
    assert not report["failed_sources"]


def test_no_boilerplate_survives(first_run, settings, sample_site):
    rows = read_articles(settings=settings, run_id=RUN_1).to_pylist()
    assert rows
    related = {e["url"]: e.get("related_headlines") or [] for e in sample_site.expected()}
    for row in rows:
        low = row["text"].lower()
        for phrase in BOILERPLATE_PHRASES:
            assert phrase.lower() not in low, (row["url"], phrase)
        for headline in related.get(row["url"], []):
            assert headline not in row["text"], (row["url"], headline)
        assert row["word_count"] > 100


def test_stored_text_survives_a_misdeclared_charset(first_run, settings, sample_site):
    # the sample site serves UTF-8 bytes as ISO-8859-1; its curly quotes are what Scrapy's decoding destroys
    rows = {r["url"]: r for r in read_articles(settings=settings, run_id=RUN_1).to_pylist()}
    checked = [e for e in sample_site.expected() if e.get("must_contain") and e["expected"] == "stored"]
    assert checked
    for e in checked:
        stored = rows[e["url"]]["title"] + "\n" + rows[e["url"]]["text"]
        for word in e["must_contain"]:
            assert word in stored, (e["url"], word)
    assert not [url for url, r in rows.items() if "\ufffd" in r["text"] + (r["title"] or "")]


def test_syndicated_copies_point_at_one_article(first_run, settings, sample_site):
    rows = {r["url"]: r for r in read_articles(settings=settings, run_id=RUN_1).to_pylist()}
    copies = _expected(sample_site, "syndicated")
    assert len(copies) >= 5
    stored = [rows[c["url"]] for c in copies if c["url"] in rows]
    assert len(stored) == len(copies)
    canon = [r for r in stored if r["duplicate_of"] is None]
    assert len(canon) == 1, [r["url"] for r in canon]
    for r in stored:
        assert r["cluster_id"] == canon[0]["cluster_id"]
        if r is not canon[0]:
            assert r["duplicate_of"] == canon[0]["article_id"]
            assert r["dup_kind"] in ("exact", "near")
    # Canonical-only readers see the story once.
    canonical = read_articles(settings=settings, run_id=RUN_1, canonical_only=True).to_pylist()
    assert sum(1 for r in canonical if r["cluster_id"] == canon[0]["cluster_id"]) == 1


def test_hostile_pages_are_rejected_with_reasons(first_run, sample_site):
    ctx, report = first_run
    rejects = read_rejects(ctx)
    by_url: dict[str, list[dict]] = {}
    for r in rejects:
        by_url.setdefault(r["url"], []).append(r)
    checked = 0
    for e in sample_site.expected():
        if e["expected"] != "rejected":
            continue
        got = by_url.get(e["url"], [])  # exactly the listed URL: no prefix, no neighbour's reject
        assert len(got) == 1, f"{e['url']} ({e['kind']}): {[r['reason'] for r in got]}"
        reason, stage = got[0]["reason"], got[0]["stage"]
        if "reject_reason" in e:  # the hostile outlet says which guard must refuse each page
            assert reason == e["reject_reason"], (e["url"], reason, got[0].get("detail"))
        else:  # about, contact and tag pages: refused as not articles by the extract or clean stage
            assert is_refusal(reason) and stage in ("extract", "clean"), (e["url"], reason, stage)
        # a fetch the crawl refused is a crawl reject; a page refused as not an article, extract's or clean's
        assert stage == "crawl" if not is_refusal(reason) else stage in ("extract", "clean"), (e["url"], stage)
        checked += 1
    assert checked >= 30
    assert report["rejects"] == len(rejects)
    assert report["rejects_by_reason"] == dict(Counter(f"{r['stage']}/{r['reason']}" for r in rejects))


def test_rerun_same_run_id_adds_no_rows(first_run, settings, sources):
    ctx, _ = first_run
    before = read_articles(settings=settings, run_id=RUN_1).num_rows
    again = run_once(RunContext(run_id=RUN_1, s3=settings, sources_path=sources))
    after = read_articles(settings=settings, run_id=RUN_1)
    assert after.num_rows == before
    assert len(set(after.column("article_id").to_pylist())) == before
    assert again["run_id"] == RUN_1


def test_second_run_fetches_no_stored_article_again(first_run, settings, sources, sample_site):
    sample_site.reset_hits()
    report = run_once(RunContext(run_id=RUN_2, s3=settings, sources_path=sources))
    stored = [e for e in sample_site.expected() if e["expected"] == "stored"]
    refetched = [e["url"] for e in stored if sample_site.hits(e["url"]) > 0]
    assert refetched == []
    # pages refused as not articles (about, contact, tag pages) are remembered, not fetched again ...
    refused = [e["url"] for e in sample_site.expected() if e.get("kind") == "nonarticle"]
    assert refused and [url for url in refused if sample_site.hits(url) > 0] == []
    # ... so the quiet second run raises no "article pages fetched, no article kept" CHECK
    assert not [f["message"] for f in report.get("flags", []) if "no article kept" in f.get("message", "")]
    # The whole bucket still has each article once.
    everything = read_articles(settings=settings)
    assert everything.num_rows == len(set(everything.column("article_id").to_pylist()))


def test_wrong_credentials_give_a_clear_error(settings, sources):
    env = {
        "PATH": "/usr/bin:/bin",
        "AWS_ENDPOINT_URL": settings.endpoint_url,
        "AWS_ACCESS_KEY_ID": "wrong",
        "AWS_SECRET_ACCESS_KEY": "wrong-secret",
        "NEWS_INGEST_BUCKET": settings.bucket,
    }
    proc = subprocess.run(
        [sys.executable, "-m", "pipeline", "run", "--sources", str(sources)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 1
    assert settings.endpoint_url in proc.stderr
    assert "Traceback" not in proc.stderr
    assert "wrong-secret" not in proc.stderr + proc.stdout


def test_updated_article_becomes_a_new_version(first_run, settings, sources, sample_site, tmp_path):
    """An outlet revises a story under the same URL: with revisits on, the next run stores version 2."""
    import yaml

    cfg = yaml.safe_load(sources.read_text())
    for src in cfg["sources"]:
        src["revisit_hours"] = 48
    revisiting = tmp_path / "sources-revisit.yaml"
    revisiting.write_text(yaml.safe_dump(cfg))
    updated = _expected(sample_site, "updated")
    assert updated
    url = updated[0]["url"]
    first = [r for r in read_articles(settings=settings, run_id=RUN_1).to_pylist() if r["url"] == url]
    assert len(first) == 1 and first[0]["version"] == 1
    sample_site.set_epoch(1)
    try:
        run_once(RunContext(run_id="20261127T120000Z", s3=settings, sources_path=revisiting))
    finally:
        sample_site.set_epoch(0)
    rows = [r for r in read_articles(settings=settings, run_id="20261127T120000Z").to_pylist()]
    mine = [r for r in rows if r["url"] == url]
    assert len(mine) == 1, [r["url"] for r in rows]
    assert mine[0]["version"] == 2 and mine[0]["supersedes"] == first[0]["article_id"]
    assert mine[0]["dup_kind"] is None and mine[0]["text"] != first[0]["text"]
    # Unchanged articles were revalidated (304), not stored again.
    assert all(r["url"] != url or r["version"] > 1 for r in rows)
    assert len(rows) < len(read_articles(settings=settings, run_id=RUN_1))
