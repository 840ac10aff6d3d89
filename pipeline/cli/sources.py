"""`python -m pipeline sources push | show`: the sources file in the bucket, versioned by its hash.

Workers of a distributed Airflow (Celery, Kubernetes) share nothing but the bucket, so the sources
file lives there too: `push` validates a local file and uploads it as
`config/sources/sha256=<hex>.yaml` (content-addressed, never overwritten), then points
`config/sources/current.json` at it. A DAG run pins the version current when its first task ran
(`pin_run_sources`), so a push during a run changes the next run, not the running one.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pipeline.core.bucket import Bucket
from pipeline.core.config import S3Settings, load_sources
from pipeline.core.errors import ConfigError, PreconditionFailed, StorageError
from pipeline.core.paths import default_sources_path

SOURCES_PREFIX = "config/sources/"
CURRENT_KEY = f"{SOURCES_PREFIX}current.json"


def version_key(sha256: str) -> str:
    """The bucket key of one version of the sources file."""
    return f"{SOURCES_PREFIX}sha256={sha256}.yaml"


def push_sources(bucket: Bucket, path: Path) -> dict:
    """Validate `path`, upload it under its hash and make it current; returns `{sha256, key, sources}`.

    A bad file raises ConfigError before anything is written.
    """
    config = load_sources(path)
    body = path.read_bytes()
    sha = hashlib.sha256(body).hexdigest()
    key = version_key(sha)
    if not bucket.exists(key):
        bucket.put(key, body, content_type="application/yaml")
    pointer = {"sha256": sha, "key": key, "sources": [s.name for s in config.sources]}
    bucket.put_json(CURRENT_KEY, pointer)
    return pointer


def current_sources(bucket: Bucket) -> dict | None:
    """The pointer `{sha256, key, sources}` of the current version; None when nothing was pushed."""
    got = bucket.get_with_etag(CURRENT_KEY)
    return json.loads(got[0]) if got else None


def read_version(bucket: Bucket, sha256: str) -> str:
    """The YAML text of one version, checked against its hash (a corrupt object is a StorageError)."""
    body = bucket.get(version_key(sha256))
    if hashlib.sha256(body).hexdigest() != sha256:
        raise StorageError(f"{version_key(sha256)} does not match its hash")
    return body.decode("utf-8")


def pin_run_sources(bucket: Bucket, pin_key: str) -> str | None:
    """The sha256 of the sources version a run uses, pinned at `pin_key` by its first task.

    The first caller writes the pin with a conditional put (if-none-match), so concurrent first
    tasks agree on one version. None when no version was ever pushed (then nothing is pinned).
    """
    got = bucket.get_with_etag(pin_key)
    if got is not None:
        return json.loads(got[0])["sha256"]
    current = current_sources(bucket)
    if current is None:
        return None
    try:
        bucket.put(pin_key, json.dumps({"sha256": current["sha256"]}).encode(), if_none_match="*")
    except PreconditionFailed:
        return json.loads(bucket.get(pin_key))["sha256"]  # another task pinned first: use its version
    return current["sha256"]


def materialise(text: str, folder: Path) -> Path:
    """Write YAML text to `<folder>/sources-<sha12>.yaml` (validated) for this process's crawls.

    Content-addressed: concurrent tasks on one machine write the same bytes to the same name.
    """
    sha = hashlib.sha256(text.encode("utf-8")).hexdigest()
    path = folder / f"sources-{sha[:16]}.yaml"
    if not path.exists():
        folder.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(path)
    load_sources(path)  # a bad Variable or object fails here, as a ConfigError naming the field
    return path


# --------------------------------------------------------------------------- the command


def configure_sources(parser: argparse.ArgumentParser) -> None:
    """Arguments of `python -m pipeline sources`."""
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    push = sub.add_parser("push", help="validate a sources file and upload it to the bucket as the current version")
    push.add_argument(
        "file", nargs="?", type=Path, default=None, help=f"sources file (default: {default_sources_path()})"
    )
    sub.add_parser("show", help="print the current version's hash and sources")


def cmd_sources(
    args: argparse.Namespace, *, settings: S3Settings | None = None, out: Callable[[str], Any] = print
) -> int:
    """`sources push [FILE]` / `sources show`; a bad file is a ConfigError (exit 2)."""
    bucket = Bucket(settings or S3Settings.from_env())
    if args.action == "push":
        path = args.file or default_sources_path()
        pointer = push_sources(bucket, path)
        out(f"pushed {path} as {pointer['key']} ({len(pointer['sources'])} sources); now current")
        return 0
    current = current_sources(bucket)
    if current is None:
        raise ConfigError(f"no sources file in the bucket ({CURRENT_KEY}): run `python -m pipeline sources push`")
    out(json.dumps(current, indent=2))
    return 0


__all__ = [
    "CURRENT_KEY",
    "cmd_sources",
    "configure_sources",
    "current_sources",
    "materialise",
    "pin_run_sources",
    "push_sources",
    "read_version",
    "version_key",
]
