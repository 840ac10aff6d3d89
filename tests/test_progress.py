"""Progress: live bars on a (pseudo-)terminal, sparse plain lines into a pipe or a log."""

from __future__ import annotations

import io
import os
import pty
import select
import subprocess
import sys
import textwrap
import threading

from pipeline.core.paths import ROOT
from pipeline.runtime.progress import PlainReporter, RichReporter, progress_reporter, reporter_for

SCRIPT = textwrap.dedent("""
    import sys
    from pipeline.runtime.progress import progress_reporter
    rep = progress_reporter(sys.stderr, interval=3600)
    print(type(rep).__name__, file=sys.stdout, flush=True)
    rep.stage("crawl alpha", unit="responses")
    for _ in range(500):
        rep.advance()
    rep.note("crawl alpha: 500 pages fetched")
    rep.stage("extract", total=200, unit="pages")
    for _ in range(20):
        rep.advance(10)
    rep.close()
""")


def _run(stderr, env_extra: dict) -> subprocess.Popen:
    env = {**os.environ, **env_extra}
    return subprocess.Popen(
        [sys.executable, "-c", SCRIPT],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=stderr,
        stdin=subprocess.DEVNULL,
    )


def test_pipe_gets_few_plain_lines():
    proc = _run(subprocess.PIPE, {"TERM": "xterm-256color"})
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert out.decode().strip() == "PlainReporter"
    text = err.decode()
    assert "\x1b[" not in text and "\r" not in text  # no terminal control in logs
    lines = text.splitlines()
    assert lines == [
        "crawl alpha: started",
        "crawl alpha: 500 pages fetched",
        lines[2],
        "extract: started (200 pages)",
        lines[4],
    ]
    assert lines[2].startswith("crawl alpha: done, 500 responses in ")
    assert lines[4].startswith("extract: done, 200/200 pages in ")


def test_terminal_gets_live_bars():
    master, slave = pty.openpty()
    try:
        proc = _run(slave, {"TERM": "xterm-256color", "COLUMNS": "120"})
        os.close(slave)
        chunks = []
        while True:
            ready, _, _ = select.select([master], [], [], 60)
            if not ready:
                break
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not data:
                break
            chunks.append(data)
        assert proc.wait(timeout=60) == 0
    finally:
        os.close(master)
    assert proc.stdout.read().decode().strip() == "RichReporter"
    text = b"".join(chunks).decode("utf-8", "replace")
    assert "\x1b[" in text  # cursor control: a live display, redrawn in place
    assert "crawl alpha: 500 pages fetched" in text
    assert "500 responses" in text
    assert "200/200 pages" in text
    assert "━" in text  # rich's bar


def test_plain_progress_lines_rate_and_eta():
    now = [100.0]
    out = io.StringIO()
    rep = PlainReporter(out, interval=10, clock=lambda: now[0])
    rep.stage("extract", total=100, unit="pages")
    for _ in range(4):
        now[0] += 5
        rep.advance(10)  # a line every 10 s of the fake clock, not on every call
    now[0] += 5
    rep.advance(60)
    rep.close()
    rep.close()  # idempotent
    assert out.getvalue().splitlines() == [
        "extract: started (100 pages)",
        "extract: 20/100 pages, 2.0 pages/s, ETA 0:00:40",
        "extract: 40/100 pages, 2.0 pages/s, ETA 0:00:30",
        "extract: done, 100/100 pages in 25.0 s (4.0 pages/s)",
    ]


def test_reporter_is_a_say_callback_and_ignores_advance_outside_a_stage():
    out = io.StringIO()
    rep = progress_reporter(out)  # StringIO is not a terminal
    assert isinstance(rep, PlainReporter)
    rep.advance(5)
    rep("crawl beta ...")
    rep.close()
    assert out.getvalue() == "crawl beta ...\n"


def test_tty_can_be_forced():
    out = io.StringIO()
    rep = progress_reporter(out, tty=True)
    try:
        assert isinstance(rep, RichReporter)
        rep.stage("dedupe", total=3)
        rep.advance(3)
    finally:
        rep.close()
    assert "dedupe" in out.getvalue()


def test_follow_counts_matching_lines_of_a_growing_log(tmp_path):
    log = tmp_path / "crawl.log"
    log.write_text("2026 [scrapy.core.engine] DEBUG: Crawled (200) <GET http://x/old> (referer: None)\n")
    out = io.StringIO()
    rep = PlainReporter(out, interval=3600)
    rep.stage("crawl alpha", unit="responses")
    writer_done = threading.Event()

    def child() -> None:  # a crawl appending to its log, with a line split across writes
        with open(log, "a") as fh:
            for i in range(6):
                fh.write(f"2026 [scrapy.core.engine] DEBUG: Crawled (200) <GET http://x/{i}> (referer: None)\n")
                fh.write("2026 [scrapy.core.scraper] DEBUG: Scraped from <200 http://x/>\n")
                fh.flush()
            fh.write("2026 [scrapy.core.engine] DEBUG: Crawled (4")
            fh.flush()
            fh.write("04) <GET http://x/missing> (referer: None)\n")
        writer_done.set()

    with rep.follow(log, poll=0.01):
        thread = threading.Thread(target=child)
        thread.start()
        writer_done.wait(30)
        thread.join()
    assert rep.completed == 7  # six 200s and the split 404; not the line that was there before
    rep.close()
    assert "done, 7 responses" in out.getvalue()


def test_follow_a_file_that_appears_later(tmp_path):
    log = tmp_path / "later.log"
    rep = PlainReporter(io.StringIO(), interval=3600)
    rep.stage("crawl", unit="responses")
    with rep.follow(log, poll=0.01):
        log.write_text("x DEBUG: Crawled (301) <GET http://x/>\nx DEBUG: Crawled (200) <GET http://y/>\n")
    assert rep.completed == 2


def test_reporter_for_a_say_callback():
    lines: list[str] = []
    rep = reporter_for(lines.append, interval=3600)
    rep.stage("extract", total=2, unit="pages")
    rep.advance(2)
    rep.note("hello")
    rep.close()
    assert lines[0] == "extract: started (2 pages)" and lines[1] == "hello"
    assert lines[2].startswith("extract: done, 2/2 pages in ")
    # a reporter passed where a say callback is expected is used as it is
    assert reporter_for(rep) is rep


def test_reporter_for_logs_when_no_callback(caplog):
    import logging

    with caplog.at_level(logging.INFO, logger="pipeline.flows.ingest"):
        rep = reporter_for(None)
        rep.note("crawl alpha ...")
        rep.close()
    assert "crawl alpha ..." in caplog.text


def test_a_stage_that_counts_nothing_reports_its_time_only():
    now = [0.0]
    out = io.StringIO()
    rep = PlainReporter(out, clock=lambda: now[0])
    rep.stage("dedupe")
    now[0] = 2.5
    rep.close()
    assert out.getvalue().splitlines() == ["dedupe: started", "dedupe: done in 2.5 s"]


def test_no_rate_from_a_tiny_sample():
    now = [0.0]
    out = io.StringIO()
    rep = PlainReporter(out, interval=0, clock=lambda: now[0])
    rep.stage("crawl alpha", unit="pages")
    now[0] = 0.0002
    rep.advance(2)  # "9408.4 pages/s" for 2 pages would be noise
    rep.close()
    lines = out.getvalue().splitlines()
    assert lines[1] == "crawl alpha: 2 pages" and lines[2] == "crawl alpha: done, 2 pages in 0.0 s"
    assert "/s" not in out.getvalue()


def test_live_display_routes_log_records_above_it_and_draws_no_fake_total():
    import logging

    term = io.StringIO()
    plain = io.StringIO()
    root = logging.getLogger()
    handler = logging.StreamHandler(plain)
    root.addHandler(handler)
    saved_level = root.level
    root.setLevel(logging.WARNING)
    try:
        rep = progress_reporter(term, tty=True)
        rep.stage("crawl alpha", unit="responses")  # nobody knows how many: a spinner, no bar, no ETA
        rep.advance(3)
        logging.getLogger("trafilatura.core").warning("discarding data: %s", "x")
        assert handler not in root.handlers  # replaced by rich's handler while the display runs
        rep.close()
        assert handler in root.handlers  # and put back when it ends
    finally:
        root.setLevel(saved_level)
        root.removeHandler(handler)
    text = term.getvalue()
    assert "discarding data: x" in text and plain.getvalue() == ""  # through the display, not through its bars
    assert "ETA" not in text and "━" not in text
    assert "3 responses" in text


def test_demo_prints_dag_task_states_as_they_change(tmp_path):
    """`make demo` shows the DAG's task states from Airflow's metadata database while `dags test` runs."""
    import sqlite3

    from examples.demo import task_states, watch_states

    db = tmp_path / "airflow.db"
    assert task_states(db) == {}
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE dag_run (id INTEGER PRIMARY KEY, dag_id TEXT, run_id TEXT)")
        conn.execute("CREATE TABLE task_instance (dag_id TEXT, run_id TEXT, task_id TEXT, map_index INT, state TEXT)")
        conn.execute("INSERT INTO dag_run (dag_id, run_id) VALUES ('news_ingest', 'old'), ('news_ingest', 'new')")
        conn.executemany(
            "INSERT INTO task_instance VALUES ('news_ingest', ?, ?, ?, ?)",
            [("old", "sources", -1, "failed"), ("new", "sources", -1, "success"), ("new", "crawl", 0, "running")],
        )
    assert task_states(db) == {"sources": "success", "crawl[0]": "running"}

    class Proc:  # finishes on the second poll, after the crawl did
        polls = 0

        def poll(self):
            self.polls += 1
            if self.polls == 2:
                with sqlite3.connect(db) as conn:
                    conn.execute("UPDATE task_instance SET state = 'success' WHERE task_id = 'crawl'")
                return 0
            return None

    lines: list[str] = []
    final = watch_states(Proc(), db, lines.append, poll=0)
    assert lines == ["[demo]   crawl[0]: running", "[demo]   sources: success", "[demo]   crawl[0]: success"]
    assert final["crawl[0]"] == "success"
