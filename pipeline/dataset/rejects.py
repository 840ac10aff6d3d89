"""Rejects: every page a stage gives up on is recorded with its stage, reason and WARC pointer."""

from __future__ import annotations

from collections.abc import Iterable

from pipeline.core.context import RunContext
from pipeline.core.layout import rejects_key, rejects_prefix
from pipeline.text.urls import redact_secrets, redact_url


def reject(
    url: str,
    stage: str,
    reason: str,
    *,
    source: str | None = None,
    detail: str = "",
    warc_key: str | None = None,
    warc_record_id: str | None = None,
) -> dict:
    """One rejects row. `reason` is a short stable name (a counter name); `detail` is free text.

    Credentials in the URL (``user:password@``, token parameters) and in URLs quoted by `detail` are
    redacted: rejects are written to the bucket, where anyone reading the dataset sees them.
    """
    return {
        "url": redact_url(url),
        "source": source,
        "stage": stage,
        "reason": reason,
        "detail": redact_secrets(detail)[:500],
        "warc_key": warc_key,
        "warc_record_id": warc_record_id,
    }


def write_rejects(ctx: RunContext, name: str, rows: Iterable[dict]) -> str | None:
    """Write `rejects/dt=/run=/<name>.jsonl` (deterministic key: a re-run overwrites). None when empty."""
    rows = list(rows)
    key = rejects_key(ctx.run_id, name)
    if not rows:
        # Remove a stale file from an earlier attempt of this run, so re-runs converge.
        ctx.bucket.delete([key]) if ctx.bucket.exists(key) else None
        return None
    ctx.bucket.put_jsonl(key, rows)
    return key


def read_rejects(ctx: RunContext) -> list[dict]:
    """All rejects of the run."""
    out: list[dict] = []
    for key in ctx.bucket.list(rejects_prefix(ctx.run_id)):
        out.extend(ctx.bucket.iter_jsonl(key))
    return out
