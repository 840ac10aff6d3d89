"""Extraction benchmarks (run as ``python -m benchmarks.bench_extract``)."""
