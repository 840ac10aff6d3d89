"""`python -m pipeline s3 up|down|status`: the embedded SeaweedFS server."""

from __future__ import annotations

import argparse
import os

from pipeline.core.config import BUCKET_ENV, DEFAULT_BUCKET
from pipeline.runtime.s3server import EmbeddedS3


def configure_s3(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=["up", "down", "status"])
    parser.add_argument(
        "--bucket",
        default=os.environ.get(BUCKET_ENV, DEFAULT_BUCKET),
        help=f"bucket created by `up` (default: ${BUCKET_ENV} or {DEFAULT_BUCKET!r})",
    )
    parser.add_argument("--port", type=int, default=None, help="S3 port for a first `up` (default 8333 if free)")
    parser.add_argument(
        "--env", action="store_true", help="after `up`, print `export` lines for the standard AWS variables"
    )


def cmd_s3(args: argparse.Namespace) -> int:
    server = EmbeddedS3(s3_port=args.port)
    if args.action == "up":
        info = server.up(args.bucket)
        print(f"S3 endpoint {info.endpoint_url} (bucket {args.bucket!r}, pid {info.pid}, data in {server.state_dir})")
        if args.env:
            # For a shell that wants to talk to the bucket with other tools; printed only on request.
            print(f"export AWS_ENDPOINT_URL={info.endpoint_url}")
            print(f"export AWS_ACCESS_KEY_ID={info.access_key_id}")
            print(f"export AWS_SECRET_ACCESS_KEY={info.secret_access_key}")
            print(f"export {BUCKET_ENV}={args.bucket}")
        return 0
    if args.action == "down":
        stopped = server.down()
        print("stopped" if stopped else "not running (nothing started by `s3 up` here)")
        return 0
    status = server.status()
    state = "answering" if status["answers"] else ("running, not answering" if status["running"] else "not running")
    print(f"endpoint {status['endpoint_url'] or '(never started)'}: {state}")
    return 0 if status["answers"] else 1
