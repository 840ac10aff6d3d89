"""news-ingest: the library every pipeline stage lives in.

Importable and testable with neither Scrapy's reactor nor Airflow running.
The command line is ``python -m pipeline`` (see ``pipeline.cli.main``).
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__", "read_articles"]


def __getattr__(name: str):
    # Lazy so that `import pipeline` stays cheap (DAG parsing imports it).
    if name == "read_articles":
        from pipeline.dataset.read import read_articles

        return read_articles
    raise AttributeError(name)
