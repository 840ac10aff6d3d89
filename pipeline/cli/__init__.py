"""Layer 6: ``python -m pipeline``, the command line."""

from pipeline.cli.main import main

__all__ = ["main"]
