"""What several command handlers share: the CLI-only exceptions of the exit-code table, and input files.

Handlers raise instead of printing and returning a code; `pipeline.cli.main` turns the exception into
the one-line `error: ...` message and the exit code (see its table).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO, Any

from pipeline.core.errors import ConfigError


class UsageError(ConfigError):
    """A bad command-line argument that argparse cannot check (a date, a column, an unreadable file): exit 2."""


class NothingToDo(Exception):
    """The command had nothing to work on (no report yet, a run without WARC files): exit 3, not a failure."""


@contextmanager
def open_input(path: str | None, *, binary: bool = False) -> Iterator[IO[Any]]:
    """The file at `path`, or stdin for '-' / '' / None; closes only what it opened.

    A file that cannot be opened raises UsageError naming it (exit 2). Errors raised while the
    caller reads are not touched: only the open is a usage problem.
    """
    if path in (None, "", "-"):
        yield sys.stdin.buffer if binary else sys.stdin
        return
    try:
        fh = open(path, "rb") if binary else open(path, encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror or exc}") from None
    with fh:
        yield fh
