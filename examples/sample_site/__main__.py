"""`python -m examples.sample_site serve|sources`: run the sample site, or write its sources file."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path

from examples.sample_site.server import DEFAULT_PORTS, SampleSite


def _ports(text: str) -> list[int]:
    try:
        ports = [int(p) for p in text.split(",") if p.strip()]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"ports must be comma-separated integers: {text!r}") from exc
    if not ports or any(not 0 < p < 65536 for p in ports):
        raise argparse.ArgumentTypeError(f"bad port list: {text!r}")
    return ports


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m examples.sample_site", description="The offline sample news site (127.0.0.1 only)."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    default = ",".join(str(p) for p in DEFAULT_PORTS)
    serve = sub.add_parser("serve", help="serve the outlets until Ctrl-C / SIGTERM")
    serve.add_argument(
        "--ports",
        type=_ports,
        default=list(DEFAULT_PORTS),
        help=f"outlet ports in order (default {default}; missing ones follow the last)",
    )
    serve.add_argument("--epoch", type=int, default=0, help="version of the updated article (0, 1, 2)")
    serve.add_argument("--slow-seconds", type=float, default=20, help="delay of the slow hostile page")
    serve.add_argument("--bulk", type=int, default=0, metavar="N", help="add a bulk-news outlet of N articles")
    src = sub.add_parser("sources", help="write a sources file for the site on these ports")
    src.add_argument("--out", type=Path, required=True)
    src.add_argument("--ports", type=_ports, default=list(DEFAULT_PORTS))
    src.add_argument("--delay", type=float, default=0.25, help="per-source download delay (seconds)")
    src.add_argument("--concurrency", type=int, default=2, help="per-source concurrency")
    args = parser.parse_args(argv)

    if args.command == "sources":
        site = SampleSite(ports=args.ports)
        path = site.write_sources_yaml(args.out, source_delay=args.delay, source_concurrency=args.concurrency)
        print(f"wrote {path}")
        return 0

    try:
        site = SampleSite(
            ports=args.ports, slow_seconds=args.slow_seconds, n_bulk_articles=args.bulk, epoch=args.epoch
        ).start()
    except ValueError as exc:
        parser.error(str(exc))
    except OSError as exc:
        print(f"cannot bind the sample site ports {args.ports}: {exc}", file=sys.stderr)
        return 1
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    for name, url in site.base_urls.items():
        print(f"{name:20s} {url}/")
    print(f"epoch {site.epoch}; Ctrl-C to stop", flush=True)
    try:
        done.wait()
    except KeyboardInterrupt:
        print("stopping")
    finally:
        site.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
