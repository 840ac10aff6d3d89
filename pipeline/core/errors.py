"""The project's exceptions, in one place, split the way callers act on them.

*Terminal* errors (bad configuration, wrong credentials, a missing bucket) will not go away on
a retry: the CLI exits 2 for configuration and 1 for storage, Airflow fails the task without
retrying. *Transient* ones (an S3 outage, a timeout) are retried. `NotAnArticle` is not a
failure at all: a page that holds no article is an expected outcome, recorded as a reject.
"""

from __future__ import annotations


class ConfigError(ValueError):
    """Bad configuration: terminal, the run does not start."""


class BadRunId(ConfigError):
    """A run id that is not `YYYYMMDDTHHMMSSZ[suffix]` (`pipeline.core.layout.check_run_id`).

    A ValueError still (through ConfigError), for callers that catch that; terminal like any ConfigError.
    """


class StorageError(RuntimeError):
    """The bucket could not be read or written. The message is safe to log (no credentials).

    `terminal` is True when retrying cannot help (wrong credentials, missing bucket).
    """

    def __init__(self, message: str, *, terminal: bool = False, code: str | None = None):
        super().__init__(message)
        self.terminal = terminal
        self.code = code


class PreconditionFailed(StorageError):
    """A conditional write lost a race (HTTP 412): re-read and try again."""


class NotAnArticle(Exception):
    """The page holds no article: an expected outcome with a short stable reason name."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


def is_terminal(exc: BaseException) -> bool:
    """True for errors that a retry cannot fix: bad configuration, wrong credentials, a missing bucket."""
    # Any error may say so itself with `terminal = True` (a crawl refused for a missing security component).
    return isinstance(exc, ConfigError) or getattr(exc, "terminal", False) is True
