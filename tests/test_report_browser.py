"""The HTML run report in a real headless chromium: charts render, nothing is fetched, no console errors.

Needs Debian's chromium at /usr/bin/chromium (`scripts/install-system-packages.sh`, run by `make test`).
The browser is driven over the Chrome DevTools Protocol with a small websocket client.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from websockets.sync.client import connect

from pipeline.report.run_report import write_report
from tests.test_report import make_synthetic_run

CHROMIUM = os.environ.get("NEWS_INGEST_CHROMIUM", "/usr/bin/chromium")
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1280,2400",
    "--remote-debugging-port=0",
    "--remote-debugging-address=127.0.0.1",
]

MEASURE = """
JSON.stringify({
  charts: [...document.querySelectorAll('svg.chart')].map(svg => {
    const r = svg.getBoundingClientRect();
    return {name: svg.dataset.chart, width: r.width, height: r.height,
            bars: [...svg.querySelectorAll('rect.bar')].map(b => {
              const box = b.getBBox();
              return {w: box.width, h: box.height, tip: b.querySelector('title').textContent};
            }),
            labels: [...svg.querySelectorAll('text')].map(t => t.getBBox().width)};
  }),
  alerts: (document.getElementById('alerts') || {}).innerText || '',
  overflow: document.documentElement.scrollWidth - window.innerWidth,
  title: document.title,
})
"""


class Browser:
    """One headless chromium with a DevTools session on one page."""

    def __init__(self, profile: Path):
        if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
            pytest.fail(f"{CHROMIUM} is missing: run scripts/install-system-packages.sh (make test does)")
        self.proc = subprocess.Popen(
            [CHROMIUM, *FLAGS, f"--user-data-dir={profile}", "about:blank"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + 60
        while not (port_file.exists() and len(port_file.read_text().splitlines()) >= 2):
            if self.proc.poll() is not None:
                pytest.fail(f"chromium exited with {self.proc.returncode} before DevTools came up")
            if time.monotonic() > deadline:
                self.close()
                pytest.fail("chromium's DevTools port did not appear within 60 s")
            time.sleep(0.1)
        port, path = port_file.read_text().splitlines()[:2]
        self._stack = contextlib.ExitStack()
        self.ws = self._stack.enter_context(
            connect(f"ws://127.0.0.1:{port}{path}", max_size=64 * 1024 * 1024, open_timeout=30)
        )
        self._id = 0
        self.events: list[dict] = []
        target = self.call("Target.createTarget", url="about:blank")["targetId"]
        self.session = self.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        for domain in ("Page", "Runtime", "Log", "Network"):
            self.call(f"{domain}.enable", session=True)

    def call(self, method: str, *, session: bool = False, timeout: float = 60, **params) -> dict:
        self._id += 1
        msg = {"id": self._id, "method": method, "params": params}
        if session:
            msg["sessionId"] = self.session
        self.ws.send(json.dumps(msg))
        deadline = time.monotonic() + timeout
        while True:
            reply = json.loads(self.ws.recv(timeout=max(0.1, deadline - time.monotonic())))
            if reply.get("id") == self._id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def wait_for(self, method: str, timeout: float = 60) -> dict:
        seen = next((e for e in self.events if e.get("method") == method), None)
        deadline = time.monotonic() + timeout
        while seen is None:
            event = json.loads(self.ws.recv(timeout=max(0.1, deadline - time.monotonic())))
            self.events.append(event)
            if event.get("method") == method:
                seen = event
        return seen

    def open(self, url: str) -> dict:
        """Load a page, let it settle, and return the measurements of MEASURE."""
        self.events.clear()
        self.call("Page.navigate", session=True, url=url)
        self.wait_for("Page.loadEventFired")
        # a round trip after load so late console/log events are in self.events
        self.call("Runtime.evaluate", session=True, expression="1")
        res = self.call("Runtime.evaluate", session=True, expression=MEASURE, returnByValue=True)
        if "exceptionDetails" in res:
            raise RuntimeError(f"measuring failed: {res['exceptionDetails']}")
        return json.loads(res["result"]["value"])

    def errors(self) -> list[str]:
        """Console errors, uncaught exceptions and browser log errors (CSP, failed loads) so far."""
        out = []
        for e in self.events:
            p = e.get("params", {})
            if e.get("method") == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
                out.append("console: " + " ".join(str(a.get("value", a.get("description"))) for a in p["args"]))
            elif e.get("method") == "Runtime.exceptionThrown":
                out.append("exception: " + p["exceptionDetails"].get("text", ""))
            elif e.get("method") == "Log.entryAdded" and p["entry"]["level"] == "error":
                out.append(f"log ({p['entry'].get('source')}): {p['entry']['text']}")
        return out

    def requests(self) -> list[str]:
        """URLs the page asked for."""
        return [e["params"]["request"]["url"] for e in self.events if e.get("method") == "Network.requestWillBeSent"]

    def close(self) -> None:
        stack = getattr(self, "_stack", None)
        if stack is not None:
            stack.close()
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)  # our own session: chromium and its helpers
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=15)


@pytest.fixture(scope="module")
def browser(tmp_path_factory) -> Iterator[Browser]:
    profile = tmp_path_factory.mktemp("chromium-profile")
    b = Browser(profile)
    try:
        yield b
    finally:
        b.close()
        shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture
def report_page(s3_settings, tmp_path) -> tuple[dict, Path]:
    ctx, kwargs = make_synthetic_run(s3_settings)
    report = write_report(ctx, **kwargs)
    page = tmp_path / "report.html"
    page.write_bytes(ctx.bucket.get(report["html"]))
    return report, page


def test_charts_render_with_no_console_errors(browser, report_page):
    report, page = report_page
    seen = browser.open(page.as_uri())
    assert seen["title"] == f"news-ingest run {report['run_id']}"
    charts = {c["name"]: c for c in seen["charts"]}
    n_sources = len(report["sources"])
    with_articles = sum(1 for q in report["quality"].values() if q["articles"])
    expected_bars = {
        "pages-articles": 3 * n_sources,
        "stage-seconds": len(report["stage_seconds"]),
        "rejects": sum(len(r) for r in report["rejects_by_stage"].values()),
        "clusters": len(report["clusters"]["outlets_histogram"]),
        "metadata": 3 * with_articles,
        "body-length": with_articles,
        "removals": len(report["removed_by_rule"]),
    }
    assert {name: len(c["bars"]) for name, c in charts.items()} == expected_bars
    for name, chart in charts.items():
        assert chart["width"] > 100 and chart["height"] > 20, name
        # every bar of a non-zero value is drawn with an area; labels are laid out with a real font
        drawn = [b for b in chart["bars"] if not b["tip"].rstrip().endswith((": 0", ": 0%", ": 0.0 s"))]
        assert drawn and all(b["w"] > 0 and b["h"] > 0 for b in drawn), name
        assert chart["labels"] and all(w > 0 for w in chart["labels"] if w is not None), name
    assert "gamma: articles with a title" in seen["alerts"]
    assert seen["overflow"] <= 0  # nothing pushes the page wider than the window
    assert browser.errors() == []
    assert [u for u in browser.requests() if not u.startswith("file:")] == []


def test_the_check_catches_errors_and_external_fetches(browser, report_page, tmp_path):
    """Negative control: the same checks do see a script blocked by the page's CSP and a failed fetch."""
    _, page = report_page
    html = page.read_text(encoding="utf-8")
    broken = tmp_path / "broken.html"
    broken.write_text(
        html.replace("</main>", '<script>console.error("x")</script><img src="http://127.0.0.1:9/pixel.png"></main>'),
        encoding="utf-8",
    )
    seen = browser.open(broken.as_uri())
    assert len(seen["charts"]) == 7  # the page still renders
    errors = browser.errors()
    assert any("Content Security Policy" in e for e in errors), errors
    assert "http://127.0.0.1:9/pixel.png" in browser.requests() or any("pixel.png" in e for e in errors), errors
    no_csp = tmp_path / "no-csp.html"
    no_csp.write_text(
        '<!DOCTYPE html><html><body><script>console.error("boom")</script></body></html>', encoding="utf-8"
    )
    browser.open(no_csp.as_uri())
    assert any("boom" in e for e in browser.errors())


LAYOUT = """
JSON.stringify({
  overflow: document.documentElement.scrollWidth - window.innerWidth,
  // boxes whose content is wider than the box: hidden behind a scrollbar or cut off
  clipped: [...document.querySelectorAll('main *')].filter(e => e.scrollWidth > e.clientWidth + 1
           && getComputedStyle(e).overflowX !== 'visible').map(e => e.tagName + '.' + e.className),
  // boxes reaching past their section's right edge
  outside: [...document.querySelectorAll('section table, section svg, section ul, section details')].filter(e => {
      const s = e.closest('section').getBoundingClientRect();
      return e.getBoundingClientRect().right > s.right + 1; }).map(e => e.tagName + '#' + e.id),
  health: [...document.querySelectorAll('#health tr[data-status]')].map(r => r.dataset.status),
  sparks: document.querySelectorAll('svg.spark').length,
  reasons: [...document.querySelectorAll('details[data-reason]')].map(d => d.dataset.reason),
  links: [...document.querySelectorAll('a[href$=".jsonl"]')].map(a => a.getAttribute('href')),
  width: window.innerWidth,
})
"""


def _png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def test_report_with_health_trends_and_rejected_urls_fits_1280px(browser, s3_settings, tmp_path):
    """The operator's sections (health, trends, rejected URLs with long URLs) at 1280 px: no horizontal
    overflow, nothing clipped behind a scrollbar; checked on a full-page screenshot too."""
    from pipeline.dataset.rejects import reject, write_rejects

    for i, run in enumerate(("20261125T100000Z", "20261126T100000Z")):
        ctx, kwargs = make_synthetic_run(s3_settings, run_id=run)
        write_report(ctx, **{**kwargs, "failed_sources": {} if i else kwargs["failed_sources"]})
    ctx, kwargs = make_synthetic_run(s3_settings)
    long_url = "https://alpha.example/" + "very-long-path-segment-" * 12 + "?q=" + "x" * 120
    rows = [
        reject(f"{long_url}&n={n}", "crawl", "http_500", source="alpha", detail="HTTP 500 " * 30) for n in range(30)
    ]
    write_rejects(ctx, "crawl-alpha", rows)
    report = write_report(ctx, **kwargs)
    page = tmp_path / "report.html"
    page.write_bytes(ctx.bucket.get(report["html"]))

    browser.open(page.as_uri())
    res = browser.call("Runtime.evaluate", session=True, expression=LAYOUT, returnByValue=True)
    seen = json.loads(res["result"]["value"])
    assert seen["width"] == 1280
    assert seen["overflow"] <= 0 and seen["clipped"] == [] and seen["outside"] == [], seen
    assert sorted(seen["health"]) == sorted(h["status"] for h in report["health"].values())
    assert "failed" in seen["health"]
    assert seen["sparks"] >= 5 * len(report["sources"]) - 5  # a sparkline per signal (a source without data: none)
    assert seen["reasons"][0] == "crawl/http_500"  # the most common reason first
    assert any(link.startswith("../rejects/") for link in seen["links"])
    assert report["rejected"]["crawl/http_500"]["more"] == 30 - len(report["rejected"]["crawl/http_500"]["samples"])
    assert browser.errors() == []

    metrics = browser.call("Page.getLayoutMetrics", session=True)["cssContentSize"]
    shot = browser.call(
        "Page.captureScreenshot",
        session=True,
        format="png",
        captureBeyondViewport=True,
        clip={"x": 0, "y": 0, "width": metrics["width"], "height": metrics["height"], "scale": 1},
    )
    png = base64.b64decode(shot["data"])
    (tmp_path / "report-1280.png").write_bytes(png)
    if keep := os.environ.get("NEWS_INGEST_SCREENSHOT_DIR"):  # to look at it
        shutil.copy(tmp_path / "report-1280.png", Path(keep) / "report-1280.png")
    width, height = _png_size(png)
    assert width <= 1280 and height > 1000  # the whole page (less the scrollbar), no wider than the window
