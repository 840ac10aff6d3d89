"""Run reports: what happened in a run, per source and per stage, as JSON in `reports/`.

`write_report()` assembles the report from what the stages wrote to the bucket
(crawl summaries, rejects, the deduped articles), so the CLI run, the DAG's
report task and re-extraction all report the same way.
"""

from __future__ import annotations

import argparse
import json
import sys

from pipeline.context import RunContext


def write_report(ctx: RunContext, *, sources: list[str], timings: dict[str, float],
                 failed_sources: dict[str, str], deduped_key: str | None,
                 manifest_key: str | None) -> dict:
    """Assemble the run report from what the stages wrote, store it under reports/, return it."""
    from pipeline.rejects import count_by_reason, read_rejects
    from pipeline.run import crawl_summaries

    summaries = {s["source"]: s for s in crawl_summaries(ctx)}
    rejects = read_rejects(ctx)
    articles = list(ctx.bucket.iter_jsonl(deduped_key)) if deduped_key else []
    per_source: dict[str, dict] = {}
    for name in sources:
        stats = summaries.get(name, {}).get("stats", {})
        mine = [a for a in articles if a.get("source") == name]
        per_source[name] = {
            "pages_fetched": stats.get("news/fetched", 0),
            "articles": len(mine),
            "canonical": sum(1 for a in mine if not a.get("duplicate_of")),
            "duplicates": sum(1 for a in mine if a.get("duplicate_of")),
            "rejects": sum(1 for r in rejects if r.get("source") == name),
            "crawl_stats": stats,
            "failed": failed_sources.get(name),
        }
    report = {
        "run_id": ctx.run_id,
        "sources": per_source,
        "failed_sources": failed_sources,
        "pages_fetched": sum(p["pages_fetched"] for p in per_source.values()),
        "articles_stored": len(articles),
        "canonical_articles": sum(1 for a in articles if not a.get("duplicate_of")),
        "duplicates": {kind: sum(1 for a in articles if a.get("dup_kind") == kind) for kind in ("url", "exact", "near")},
        "clusters_with_copies": _cluster_sizes(articles),
        "rejects": len(rejects),
        "rejects_by_reason": count_by_reason(rejects),
        "stage_seconds": {k: round(v, 3) for k, v in timings.items()},
        "manifest": manifest_key,
    }
    ctx.bucket.put_json(f"reports/run={ctx.run_id}.json", report)
    return report


def _cluster_sizes(articles: list[dict]) -> dict[str, int]:
    sizes: dict[str, int] = {}
    for a in articles:
        if a.get("cluster_id"):
            sizes[a["cluster_id"]] = sizes.get(a["cluster_id"], 0) + 1
    return {k: v for k, v in sorted(sizes.items(), key=lambda kv: -kv[1]) if v > 1}



def print_summary(report: dict, out=sys.stdout) -> None:
    """The human summary printed at the end of a run."""
    print(f"run {report['run_id']}: {report['pages_fetched']} pages fetched, "
          f"{report['articles_stored']} articles stored ({report['canonical_articles']} canonical, "
          f"duplicates: {', '.join(f'{k} {v}' for k, v in report['duplicates'].items())}), "
          f"{report['rejects']} rejects", file=out)
    for reason, n in sorted(report["rejects_by_reason"].items()):
        print(f"  rejected {reason}: {n}", file=out)
    for name, err in report.get("failed_sources", {}).items():
        print(f"  FAILED source {name}: {err.splitlines()[-1] if err else ''}", file=out)




def configure_report(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run", nargs="?", default=None, help="run id (default: the latest run with a report)")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")


def cmd_report(args: argparse.Namespace) -> int:
    from pipeline.config import S3Settings
    from pipeline.s3 import Bucket

    bucket = Bucket(S3Settings.from_env())
    if args.run:
        key = f"reports/run={args.run}.json"
    else:
        keys = [k for k in bucket.list("reports/run=") if k.endswith(".json")]
        if not keys:
            print("no run reports in the bucket yet", file=sys.stderr)
            return 3
        key = keys[-1]
    report = bucket.get_json(key)
    print(json.dumps(report, indent=1)) if args.json else print_summary(report)
    return 0
