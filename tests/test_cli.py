"""The command-line contract of DESIGN.md, exercised as a user runs it: `python -m pipeline ...`."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from examples.sample_site import BOILERPLATE_PHRASES
from pipeline.cli.main import COMMANDS
from pipeline.core.paths import ROOT


def pipeline(
    *args: str, stdin: str | None = None, timeout: float = 180, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pipeline", *args],
        cwd=ROOT,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


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
    for field in (
        "url",
        "canonical_url",
        "title",
        "author",
        "published",
        "language",
        "sitename",
        "text",
        "word_count",
        "removed",
    ):
        assert field in doc
    assert doc["title"] == entry["title"]
    assert doc["published"] and doc["published"][:4].isdigit()
    low = doc["text"].lower()
    assert not [p for p in BOILERPLATE_PHRASES if p.lower() in low]
    from pipeline.text.normalise import word_count

    assert doc["word_count"] == word_count(doc["text"]) > 100


def test_extract_non_article_exits_3_with_reason(pages):
    from pipeline.core.errors import NotAnArticle
    from pipeline.flows.pages import article_from_html

    _, (url, html, _) = pages
    with pytest.raises(NotAnArticle) as why:  # the same page, judged in this process
        article_from_html(html, url)
    out = pipeline("extract", "-", "--url", url, stdin=html)
    assert out.returncode == 3
    assert out.stdout == ""
    # exactly one line: the reason's stable name, then its detail (e.g. "too_short (36 words (minimum 40))")
    assert why.value.reason in ("too_short", "navigation_only", "no_article_text")
    assert out.stderr == f"error: not an article: {why.value.reason} ({why.value.detail})\n"


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


def test_extract_jsonl_bad_lines_lose_no_other_line(pages, tmp_path):
    """Invalid UTF-8, a blank line, no "url", not JSON: each gets its own error line (with its line
    number), every other line is still extracted, in order; the exit code is 1 once all lines are out."""
    articles, _ = pages
    (url1, html1, _), (url3, html3, _) = articles[0], articles[1]
    lines = [
        json.dumps({"url": url1, "html": html1}).encode(),
        b'{"url": "http://bad.example/2", "html": "<p>caf\xe9</p>"}',  # Latin-1 byte in UTF-8 input
        json.dumps({"url": url3, "html": html3}).encode(),
        b"   ",
        json.dumps({"html": html1}).encode(),
        json.dumps({"url": "", "html": html1}).encode(),
        b"[1, 2]",
        json.dumps({"url": url1}).encode(),  # no "html": the URL is kept to match the error to the page
    ]
    src = tmp_path / "in.jsonl"
    src.write_bytes(b"\n".join(lines))  # no newline after the last line: still a line
    out = pipeline("extract", "--jsonl", str(src), "--workers", "2")
    got = [json.loads(line) for line in out.stdout.splitlines()]
    assert len(got) == len(lines)
    assert got[0]["url"] == url1 and "text" in got[0] and "error" not in got[0]
    assert got[2]["url"] == url3 and "text" in got[2] and "error" not in got[2]
    detail = {
        2: "line 2: not UTF-8 (byte 0xe9 at column 48)",
        4: "line 4: blank line",
        5: 'line 5: "url" missing or not a non-empty string',
        6: 'line 6: "url" missing or not a non-empty string',
        7: "line 7: not a JSON object",
        8: 'line 8: "html" missing or not a string',
    }
    urls = {2: "http://bad.example/2", 8: url1}
    for n, text in detail.items():
        assert got[n - 1] == {"line": n, "url": urls.get(n), "error": "bad_input", "detail": text}
    assert out.returncode == 1
    assert out.stderr.endswith(f"error: 6 of 8 input lines unusable: {detail[2]} (and 5 more)\n"), out.stderr


@pytest.mark.parametrize(
    "option", [["--workers", "-1"], ["--workers", "0"], ["--workers", "1000000"], ["--timeout", "0"]]
)
def test_extract_jsonl_refuses_bad_worker_counts_and_timeouts(option):
    out = pipeline("extract", "--jsonl", "-", *option, stdin='{"url": "http://x.example/", "html": ""}\n', timeout=60)
    assert out.returncode == 2 and out.stdout == ""
    assert f"argument {option[0]}: must be" in out.stderr and "Traceback" not in out.stderr


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
    sources = sample_site.write_sources_yaml(
        tmp_path / "sources.yaml", download_timeout=3, max_page_bytes=8 * 2**20, outlets=["valley-gazette"]
    )
    monkeypatch.setenv("NEWS_INGEST_BUCKET", s3_settings.bucket)
    run = pipeline("run", "--sources", str(sources), "--run-id", "20261126T080000Z", timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "articles stored" in run.stdout

    jsonl = pipeline("read", "--run", "20261126T080000Z", "--format", "jsonl")
    rows = [json.loads(line) for line in jsonl.stdout.splitlines()]
    expected = {
        e["url"] for e in sample_site.expected() if e["outlet"] == "valley-gazette" and e["expected"] == "stored"
    }
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


# --------------------------------------------------------------------------- the exit-code table


@pytest.fixture(scope="module")
def no_s3(tmp_path_factory) -> dict[str, str]:
    """An environment whose S3 endpoint is a port nobody listens on (dummy keys): a command that
    reaches the bucket fails fast instead of touching the session's server."""
    from pipeline.runtime.s3server import free_port

    home = tmp_path_factory.mktemp("no-s3-home")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "NEWS_INGEST_"))}
    env.update(
        {
            "AWS_ENDPOINT_URL": f"http://127.0.0.1:{free_port()}",
            "AWS_ACCESS_KEY_ID": "dummy",
            "AWS_SECRET_ACCESS_KEY": "dummy-secret",
            "NEWS_INGEST_HOME": str(home),
        }
    )
    return env


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory) -> dict[str, str]:
    """{name: path} of a missing file, a sources file that is not YAML, an empty page and a valid sources file."""
    d = tmp_path_factory.mktemp("bad-files")
    (d / "broken.yaml").write_text("sources:\n  - name: x\n    feeds: [a\n  bad: : :\n", encoding="utf-8")
    (d / "empty.html").write_bytes(b"")
    feed = "    feeds: ['https://news.example.org/feed']\n"
    bodies = {
        "selectors": f"sources:\n  - name: x\n{feed}    cleaning:\n      drop_selectors: ['<<<>>>']\n",
        "entry": f"crawl:\n  allow_private: ['not-an-entry']\nsources:\n  - name: x\n{feed}",
        "everything": f"crawl:\n  allow_private: ['0.0.0.0/0']\nsources:\n  - name: x\n{feed}",
        "private": "sources:\n  - name: x\n    feeds: ['http://10.0.0.1/feed']\n",
        "userinfo": "sources:\n  - name: x\n    feeds: ['https://bob:hunter2@news.example.org/feed']\n",
    }
    for name, body in bodies.items():
        (d / f"{name}.yaml").write_text(body, encoding="utf-8")
    return {
        "missing": str(d / "missing.yaml"),
        "broken": str(d / "broken.yaml"),
        "empty": str(d / "empty.html"),
        "valid": str(ROOT / "config" / "sources.example.yaml"),
        **{name: str(d / f"{name}.yaml") for name in bodies},
    }


USAGE = "usage:"  # argparse's own message (it exits 2 itself)
BAD_RUN = "bad run id 'yesterday'"

#: (argv with {placeholders} from `bad_files`, exit code, what stderr must say). Every command; none crawls.
BAD_INVOCATIONS = [
    (["extract", "--bogus"], 2, USAGE),
    (["extract", "{missing}", "--url", "http://x.example/"], 2, "error: cannot read"),
    (["extract", "{empty}"], 2, "error: --url URL is required"),
    (["extract", "{empty}", "--url", "http://x.example/"], 3, "error: not an article: empty"),
    (["dedupe", "--bogus"], 2, USAGE),
    (["dedupe", "{missing}"], 2, "error: cannot read"),
    (["dedupe", "--threshold", "1.5", "-"], 2, "error: bad option: threshold"),
    (["run", "--bogus"], 2, USAGE),
    (["run", "--run-id", "yesterday"], 2, BAD_RUN),
    (["run", "--sources", "{missing}"], 2, "error: cannot read sources file"),
    (["run", "--sources", "{broken}"], 2, "not valid YAML"),
    (["run", "--run-id", "../../etc"], 2, "error: bad run id '../../etc'"),
    (["run", "--run-id", ""], 2, "error: bad run id ''"),
    (["run", "--sources", "{selectors}"], 2, "sources.0.cleaning.drop_selectors: bad CSS selector '<<<>>>'"),
    (["run", "--sources", "{entry}"], 2, "crawl.allow_private: 'not-an-entry' is not an IP address"),
    (["run", "--sources", "{everything}"], 2, "crawl.allow_private: entry 0 '0.0.0.0/0' is too broad"),
    (["run", "--sources", "{private}"], 2, "sources.0.feeds.0: 'http://10.0.0.1/feed' is on a non-public address"),
    (["run", "--sources", "{userinfo}"], 2, "sources.0.feeds: credentials (user:password@) in URL"),
    (["crawl"], 2, USAGE),
    (["crawl", "--source", "example-news", "--run-id", "yesterday"], 2, BAD_RUN),
    (["crawl", "--source", "example-news", "--sources", "{missing}"], 2, "error: cannot read sources file"),
    (["crawl", "--source", "example-news", "--sources", "{broken}"], 2, "not valid YAML"),
    (["crawl", "--source", "no-such-source", "--sources", "{valid}"], 2, "error: no source named 'no-such-source'"),
    (["crawl", "--source", "x", "--sources", "{private}"], 2, "sources.0.feeds.0: 'http://10.0.0.1/feed'"),
    (["reextract"], 2, USAGE),
    (["reextract", "--run-id", "yesterday"], 2, BAD_RUN),
    (["reextract", "--run-id", "../../etc"], 2, "error: bad run id '../../etc'"),
    (["reextract", "--run-id", "20261126T080000Z", "--sources", "{broken}"], 2, "not valid YAML"),
    (["import-warc", "--bogus"], 2, USAGE),
    (["read", "--format", "xml"], 2, USAGE),
    (["read", "--run", "yesterday"], 2, BAD_RUN),
    (["read", "--since", "last week"], 2, "error: bad since 'last week'"),
    (["read", "--columns", "no_such_column"], 2, "error: unknown column(s) no_such_column"),
    (["read", "--format", "parquet"], 2, "error: --format parquet is binary: give --out FILE"),
    (["compact"], 2, USAGE),
    (["compact", "--dt", "../../etc"], 2, "error: bad partition date '../../etc'"),
    (["report", "--bogus"], 2, USAGE),
    (["report", "yesterday"], 2, BAD_RUN),
    (["s3", "sideways"], 2, USAGE),
    (["s3", "up", "--port", "eighty"], 2, USAGE),
    (["migrate", "--bogus"], 2, USAGE),
    (["discover"], 2, USAGE),
    (["discover", "ftp://outlet.example/"], 2, "error:"),
    (["sources", "sideways"], 2, USAGE),
    (["sources", "push", "{broken}"], 2, "not valid YAML"),
]


@pytest.mark.parametrize("argv,code,says", BAD_INVOCATIONS, ids=[" ".join(a) for a, _, _ in BAD_INVOCATIONS])
def test_bad_invocations_exit_with_the_tables_code_and_one_clear_line(argv, code, says, no_s3, bad_files):
    out = pipeline(*[a.format(**bad_files) for a in argv], stdin="", env=no_s3, timeout=60)
    assert out.returncode == code, out.stderr
    assert says in out.stderr
    assert "Traceback" not in out.stderr
    if says != USAGE:  # our own errors: exactly one line, and nothing on stdout
        assert out.stderr.startswith("error: ") and out.stderr.count("\n") == 1, out.stderr
        assert out.stdout == ""


def test_storage_down_exits_1_fast_without_traceback(no_s3):
    started = time.monotonic()
    out = pipeline("read", env=no_s3, timeout=120)
    elapsed = time.monotonic() - started
    assert out.returncode == 1, out.stderr
    assert out.stderr.startswith("error: ") and "cannot connect to the S3 endpoint" in out.stderr
    assert no_s3["AWS_ENDPOINT_URL"] in out.stderr and "dummy-secret" not in out.stderr
    assert "Traceback" not in out.stderr and out.stderr.count("\n") == 1
    assert elapsed < 30, f"botocore retries made `read` take {elapsed:.1f}s against a dead endpoint"


def test_nothing_to_do_exits_3(s3_settings, bad_files):
    """A bucket without reports: exit 3, not a failure. A run id with no WARC files is a bad argument: exit 2
    (3 is "nothing to do" / "not an article", not "no such run")."""
    env = {**os.environ, "NEWS_INGEST_BUCKET": s3_settings.bucket}
    again = pipeline("reextract", "--run-id", "20200101T000000Z", "--sources", bad_files["valid"], env=env, timeout=60)
    assert again.returncode == 2, again.stderr
    assert again.stderr.startswith("error: no WARC files for run 20200101T000000Z (is --run-id a run that crawled?")
    assert again.stderr.count("\n") == 1
    report = pipeline("report", env=env, timeout=60)
    assert report.returncode == 3, report.stderr
    assert report.stderr.startswith("error: no run reports in the bucket yet")


def test_vv_adds_the_traceback_for_debugging(no_s3):
    out = pipeline("-vv", "run", "--run-id", "yesterday", env=no_s3, timeout=60)
    assert out.returncode == 2
    assert "Traceback" in out.stderr and "BadRunId" in out.stderr
    assert out.stderr.rstrip().splitlines()[-1].startswith("error: bad run id 'yesterday'")


@pytest.mark.parametrize("verbosity", [[], ["-v"], ["-vv"]])
def test_a_password_in_the_sources_file_is_never_echoed(verbosity, no_s3, bad_files):
    out = pipeline(*verbosity, "run", "--sources", bad_files["userinfo"], env=no_s3, timeout=60)
    assert out.returncode == 2
    assert "credentials (user:password@)" in out.stderr
    assert "hunter2" not in out.stderr + out.stdout and "bob" not in out.stderr


def test_error_lines_and_logs_of_the_cli_redact_urls(capsys):
    import logging

    from pipeline.cli.main import _redact_log_handlers, report_error

    assert report_error(RuntimeError("GET http://bob:hunter2@h.example/f failed")) == 1
    assert capsys.readouterr().err == "error: RuntimeError: GET http://***@h.example/f failed\n"
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        _redact_log_handlers()
        logging.getLogger("pipeline.test").error("redirect to %s", "https://h.example/?access_token=abc123")
    finally:
        root.removeHandler(handler)
    assert stream.getvalue() == "redirect to https://h.example/?access_token=***\n"


def test_exit_code_table():
    """The table itself, for errors the subprocess cases above cannot provoke cheaply."""
    from pipeline.cli.common import NothingToDo, UsageError
    from pipeline.cli.extract import BadInputLines
    from pipeline.cli.main import exit_code
    from pipeline.core.errors import BadRunId, ConfigError, NotAnArticle, StorageError
    from pipeline.flows.ingest import RunFailed
    from pipeline.stages.crawl import CrawlError

    cases = {
        KeyboardInterrupt(): 130,
        ConfigError("x"): 2,
        BadRunId("x"): 2,
        UsageError("x"): 2,
        NotAnArticle("empty"): 3,
        NothingToDo("x"): 3,
        StorageError("x"): 1,
        CrawlError("x"): 1,
        RunFailed("x"): 1,
        BadInputLines("x"): 1,
        KeyError("x"): 1,
        ValueError("x"): 1,
    }
    assert {type(e).__name__: exit_code(e) for e in cases} == {type(e).__name__: c for e, c in cases.items()}


def test_every_command_has_a_bad_argument_case():
    covered = {argv[0] for argv, _, _ in BAD_INVOCATIONS}
    assert covered == set(COMMANDS)


#: Words in help texts that look like file names but are placeholders or patterns, not files of the repo.
HELP_PLACEHOLDERS = {"FILE", "PATH"}


@pytest.mark.parametrize("command", ["", *COMMANDS])
def test_help_names_only_files_that_exist(command):
    """`--help` of every command: each file it names (README.md, config/sources.yaml ...) is in the repo."""
    import re

    out = pipeline(*([command] if command else []), "--help", timeout=60)
    assert out.returncode == 0, out.stderr
    named = set(re.findall(r"[\w./$-]+\.(?:md|ya?ml|py|json|cfg|toml|sh)\b", out.stdout))
    for name in named - HELP_PLACEHOLDERS:
        if name.startswith("$"):
            continue
        path = Path(name) if Path(name).is_absolute() else ROOT / name
        assert path.exists(), f"`{command} --help` names {name}, which does not exist"
    assert "DESIGN.md" not in out.stdout


def test_compact_says_why_there_is_nothing_to_compact(s3_settings):
    """`compact` exits 0 when a day has nothing to rewrite, and its line names the reason: no table yet,
    no partition for the day, a single small file, or already compacted by the last OPTIMIZE (until a
    commit changes the day again)."""
    from benchmarks.bench_store import generate_articles
    from pipeline.core.context import RunContext
    from pipeline.stages.store import store_articles

    env = {**os.environ, "NEWS_INGEST_BUCKET": s3_settings.bucket}

    def compact(*days: str) -> list[str]:
        out = pipeline("compact", *[a for d in days for a in ("--dt", d)], env=env, timeout=120)
        assert out.returncode == 0, out.stderr
        return out.stdout.splitlines()

    assert compact("2026-11-26") == [
        f"2026-11-26: nothing to compact: no articles table in s3://{s3_settings.bucket}/articles yet "
        "(nothing stored, or an empty bucket)"
    ]
    for run, seed in (("20261126T080000Z", 1), ("20261126T120000Z", 4)):  # a file per run commit
        store_articles(RunContext(run, s3=s3_settings), generate_articles(10, seed=seed))
    store_articles(RunContext("20261128T080000Z", s3=s3_settings), generate_articles(5, seed=2))
    first = compact("2026-11-25", "2026-11-28", "2026-11-26")
    assert first[0] == (
        "2026-11-25: nothing to compact: no partition dt=2026-11-25: nothing was stored that day "
        "(the table has 2 day(s), 2026-11-26 to 2026-11-28)"
    )
    assert first[1].startswith("2026-11-28: nothing to compact: dt=2026-11-28 is 1 file (5 rows, ")
    assert first[1].endswith("compaction merges 2 or more files, or sorts a file of more than 20000 rows")
    assert first[2] == "2026-11-26: optimized 2 files into 1"
    assert first[3].startswith("checkpoint at version ") and len(first) == 4

    again = compact("2026-11-26")
    assert len(again) == 1 and again[0].startswith(
        "2026-11-26: nothing to compact: already compacted: the OPTIMIZE of table version "
    )
    assert "wrote its 1 file(s)" in again[0] and "no commit changed the day since" in again[0]

    store_articles(RunContext("20261126T200000Z", s3=s3_settings), generate_articles(4, seed=3))
    assert compact("2026-11-26")[0] == "2026-11-26: optimized 2 files into 1"  # a new commit: worth it again
