"""Every `make bench-*` script imports and parses its arguments (benchmarks run outside the suite)."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

from pipeline.core.paths import ROOT

BENCHMARKS = [
    "bench_extract",
    "bench_meta",
    "bench_page_type",
    "bench_dedupe",
    "bench_store",
    "bench_crawl",
    "bench_e2e",
    "bench_warc",
]


@pytest.mark.parametrize("name", BENCHMARKS)
def test_benchmark_imports_and_shows_help(name):
    importlib.import_module(f"benchmarks.{name}")
    out = subprocess.run(
        [sys.executable, "-m", f"benchmarks.{name}", "--help"], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert "usage:" in out.stdout


def test_makefile_runs_every_benchmark():
    makefile = (ROOT / "Makefile").read_text()
    for name in BENCHMARKS:
        assert f"benchmarks.{name}" in makefile
