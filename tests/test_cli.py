"""The command-line contract of DESIGN.md, exercised as a user runs it: `python -m pipeline ...`."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
import urllib.request

import pytest

from examples.sample_site import BOILERPLATE_PHRASES
from pipeline.core.paths import ROOT


def pipeline(*args: str, stdin: str | None = None, timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pipeline", *args], cwd=ROOT, input=stdin,
                          capture_output=True, text=True, timeout=timeout)


def fetch(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as resp:
        return resp.read().decode("utf-8")


@pytest.fixture(scope="module")
def pages(sample_site):
    """(url, html, expected entry) of a few stored-kind articles and one non-article page."""
    entries = [e for e in sample_site.expected() if e["expected"] == "stored" and e["kind"] == "article"]
    picks = entries[:3]
    non = next(e for e in sample_site.expected() if e["kind"] == "nonarticle")
    return [(e["url"], fetch(e["url"]), e) for e in picks], (non["url"], fetch(non["url"]), non)


def test_help_lists_the_contract_commands():
    out = pipeline("--help")
    assert out.returncode == 0
    for command in ("extract", "dedupe", "run", "read", "s3", "crawl", "reextract", "report"):
        assert command in out.stdout


def test_extract_one_page(pages):
    (url, html, entry), *_ = pages[0]
    out = pipeline("extract", "-", "--url", url, stdin=html)
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    for field in ("url", "canonical_url", "title", "author", "published", "language", "sitename",
                  "text", "word_count", "removed"):
        assert field in doc
    assert doc["title"] == entry["title"]
    assert doc["published"] and doc["published"][:4].isdigit()
    low = doc["text"].lower()
    assert not [p for p in BOILERPLATE_PHRASES if p.lower() in low]
    from pipeline.text.normalise import word_count

    assert doc["word_count"] == word_count(doc["text"]) > 100


def test_extract_non_article_exits_3_with_reason(pages):
    _, (url, html, _) = pages
    out = pipeline("extract", "-", "--url", url, stdin=html)
    assert out.returncode == 3
    assert out.stdout == "" and out.stderr.strip()


def test_extract_bad_usage_exits_2(tmp_path):
    assert pipeline("extract", str(tmp_path / "missing.html"), "--url", "http://x/").returncode == 2
    assert pipeline("extract", "--bogus").returncode == 2


def test_extract_jsonl_keeps_order_one_line_per_line(pages):
    articles, (non_url, non_html, _) = pages
    lines = [{"url": u, "html": h} for u, h, _ in articles]
    lines.insert(1, {"url": non_url, "html": non_html})
    lines.append({"url": "http://example.invalid/empty", "html": ""})
    out = pipeline("extract", "--jsonl", "-", stdin="\n".join(json.dumps(x) for x in lines) + "\n")
    assert out.returncode == 0, out.stderr
    got = [json.loads(line) for line in out.stdout.splitlines()]
    assert [g["url"] for g in got] == [x["url"] for x in lines]
    assert "error" in got[1] and "error" in got[-1]
    assert all("text" in g for i, g in enumerate(got) if i not in (1, len(got) - 1))


def test_dedupe_contract(pages):
    articles, _ = pages
    url, html, _ = articles[0]
    text = json.loads(pipeline("extract", "-", "--url", url, stdin=html).stdout)["text"]
    other = json.loads(pipeline("extract", "-", "--url", articles[1][0], stdin=articles[1][1]).stdout)["text"]
    rows = [
        {"url": url, "text": text},
        {"url": "http://elsewhere.example/copy", "text": text.upper()},  # same text, other case: exact
        {"url": url, "text": text},  # the same URL again: url
        {"url": "http://third.example/other", "text": other},
    ]
    out = pipeline("dedupe", "-", stdin="\n".join(json.dumps(r) for r in rows))
    assert out.returncode == 0, out.stderr
    got = [json.loads(line) for line in out.stdout.splitlines()]
    assert [g["dup_kind"] for g in got] == [None, "exact", "url", None]
    assert got[0]["duplicate_of"] is None and got[3]["duplicate_of"] is None
    assert got[1]["duplicate_of"] == got[0]["article_id"] == got[1]["cluster_id"]
    assert got[3]["cluster_id"] != got[0]["cluster_id"]


def test_run_read_and_reextract_through_the_cli(sample_site, tmp_path, s3_settings, monkeypatch):
    """`run`, `read --format jsonl|csv|parquet`, then `reextract` from WARC without one request to the site."""
    sources = sample_site.write_sources_yaml(tmp_path / "sources.yaml", download_timeout=3,
                                             max_page_bytes=8 * 2**20, outlets=["valley-gazette"])
    monkeypatch.setenv("NEWS_INGEST_BUCKET", s3_settings.bucket)
    run = pipeline("run", "--sources", str(sources), "--run-id", "20261126T080000Z", timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "articles stored" in run.stdout

    jsonl = pipeline("read", "--run", "20261126T080000Z", "--format", "jsonl")
    rows = [json.loads(line) for line in jsonl.stdout.splitlines()]
    expected = {e["url"] for e in sample_site.expected() if e["outlet"] == "valley-gazette" and e["expected"] == "stored"}
    assert {r["url"] for r in rows} == expected
    table = list(csv.DictReader(io.StringIO(pipeline("read", "--run", "20261126T080000Z", "--format", "csv").stdout)))
    assert {r["url"] for r in table} == expected
    parquet_path = tmp_path / "out.parquet"
    assert pipeline("read", "--format", "parquet", "--out", str(parquet_path)).returncode == 0
    import pyarrow.parquet as pq

    assert pq.read_table(parquet_path).num_rows >= len(expected)

    sample_site.reset_hits()
    again = pipeline("reextract", "--sources", str(sources), "--run-id", "20261126T080000Z", timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    assert all(sample_site.hits(u) == 0 for u in expected)  # rebuilt from the archive alone
    rebuilt = [json.loads(line) for line in pipeline("read", "--run", "20261126T080000Z").stdout.splitlines()]
    assert sorted((r["url"], r["text"]) for r in rebuilt) == sorted((r["url"], r["text"]) for r in rows)
