"""Progress of crawls that run at once: one display, a line of its own per source."""

from __future__ import annotations

import io

from pipeline.runtime.progress import PlainReporter, RichReporter


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_plain_lines_of_concurrent_work_each_start_and_end():
    out = io.StringIO()
    now = [0.0]
    rep = PlainReporter(out, interval=10, clock=lambda: now[0])
    rep.stage("crawl (2 sources, up to 2 at once)", total=2, unit="sources")
    alpha, beta = rep.line("crawl alpha", unit="responses"), rep.line("crawl beta", unit="responses")
    alpha.advance(5)
    beta.advance(1)
    now[0] = 11.0
    alpha.advance(20)  # past the interval: one progress line for alpha
    beta.end(failed="connection refused")
    rep.advance()
    now[0] = 12.0
    alpha.end()
    alpha.advance(3)  # after its end: ignored
    alpha.end()  # idempotent
    rep.advance()
    rep.close()
    lines = out.getvalue().splitlines()
    assert lines == [
        "crawl (2 sources, up to 2 at once): started (2 sources)",
        "crawl alpha: started",
        "crawl beta: started",
        "crawl alpha: 25 responses, 2.3 responses/s",
        "crawl beta: FAILED (connection refused), 1 responses in 11.0 s",
        "crawl (2 sources, up to 2 at once): 1/2 sources",  # the stage's own line, past its interval
        "crawl alpha: done, 25 responses in 12.0 s (2.1 responses/s)",
        "crawl (2 sources, up to 2 at once): done, 2/2 sources in 12.0 s",
    ]


def test_one_live_display_with_a_line_per_source():
    term = _Terminal()
    rep = RichReporter(term)
    rep.stage("crawl (2 sources, up to 2 at once)", total=2, unit="sources")
    alpha, beta = rep.line("crawl alpha", unit="responses"), rep.line("crawl beta", unit="responses")
    alpha.advance(12)
    beta.advance(3)
    alpha.end()
    beta.end(failed="connection refused")
    rep.close()
    tasks = {t.description: t for t in rep.progress.tasks}
    assert list(tasks) == [
        "crawl (2 sources, up to 2 at once)",
        "crawl alpha",
        "crawl beta: FAILED (connection refused)",
    ]
    assert tasks["crawl alpha"].fields["count"] == "12 responses" and tasks["crawl alpha"].fields["mark"] == "[green]✓"
    assert tasks["crawl beta: FAILED (connection refused)"].fields["mark"] == "[red]✗"
    text = term.getvalue()
    assert "12 responses" in text and "✗" in text and "✓" in text
    assert "ETA" not in text.split("crawl alpha")[-1]  # no fake total for a crawl of unknown size
