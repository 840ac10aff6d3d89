"""`make mutation`: break each safety guarantee on purpose and check that its tests notice.

Run it before changing a guard (SSRF, robots.txt, size limits, WARC digests, conditional writes,
commits, redaction ...)::

    .venv/bin/python scripts/mutation.py            # every mutation, a table, exit 1 if any survives
    .venv/bin/python scripts/mutation.py --list     # the curated list
    .venv/bin/python scripts/mutation.py --only robots_own_user_agent warc_digests

Each mutation is a plain text patch: one snippet of one file replaced by a broken one. The working
tree is never touched (others edit it meanwhile): the project is copied to a temporary folder
(without .venv, var, .git and caches) and each mutation is applied there, its target tests are run
with `<venv python> -m pytest -x -q` from the copy (so the copy's packages shadow the editable
install; a canary mutation checks that first), then the file is restored.

Outcomes: `caught` (the targets failed), `SURVIVED` (they passed), `CODE MOVED` (the snippet is not
in the file exactly once: update the mutation), `TARGET MISSING` (a target test does not exist).
Exit status 0 only when every mutation was caught; 2 when the copy is not what the tests import.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
#: Not copied: the environment, run data, history and caches (the copy must stay small and fast to make).
IGNORED = (".venv", "var", ".git", "__pycache__", ".pytest_cache", ".mypy_cache", ".ruff_cache", "*.pyc")
#: Per-test limit inside a mutation run: a mutant that hangs (a removed timeout) fails instead of waiting.
TEST_TIMEOUT = 240
#: Limit of one mutation's whole pytest run.
RUN_TIMEOUT = 900


@dataclass(frozen=True)
class Mutation:
    """Replace `old` (exactly one occurrence) by `new` in `path`; `targets` must then fail."""

    name: str
    guarantee: str
    path: str
    old: str
    new: str
    targets: tuple[str, ...]
    #: pytest's per-test limit for this mutant (a mutant that removes a timeout hangs until it).
    timeout: int = TEST_TIMEOUT


HOSTILE_CRAWL = "tests/test_crawl.py::test_hostile_pages_are_rejected_with_reasons"

MUTATIONS: tuple[Mutation, ...] = (
    # ------------------------------------------------------------------ SSRF
    Mutation(
        "ssrf_guard",
        "requests to non-public addresses are refused before any connection",
        "spiders/middlewares.py",
        "        reason = await self.check_url(request.url)\n        if reason is not None:\n",
        "        reason = await self.check_url(request.url)\n        if False:\n",
        ("tests/test_ssrf.py::test_middleware_refuses_with_reason_and_stats",),
    ),
    Mutation(
        "ssrf_on_redirects",
        "every redirect hop is checked by the SSRF guard",
        "spiders/middlewares.py",
        "        reason = await self.check_url(request.url)\n",
        '        reason = None if request.meta.get("redirect_times") else await self.check_url(request.url)\n',
        ("tests/test_ssrf.py::test_real_crawl_refuses_redirects_links_names_and_literals",),
    ),
    Mutation(
        "ssrf_resolver",
        "the DNS resolver drops non-public addresses of a host name",
        "spiders/resolver.py",
        '        return None if reason is None else f"{host} -> {reason}"\n',
        "        return None\n",
        ("tests/test_ssrf.py::test_resolver_drops_non_public_addresses_and_remembers_why",),
    ),
    Mutation(
        "ssrf_allowlist_port",
        "an allowlisted private host:port opens that port only",
        "spiders/netguard.py",
        "            if port is not None and (cand, port) in self.pairs:\n",
        "            if any(cand == host for host, _port in self.pairs):\n",
        ("tests/test_ssrf.py::test_allowlist_matches_ip_and_port_exactly",),
    ),
    # ------------------------------------------------------------------ robots.txt
    Mutation(
        "robots_5xx",
        "robots.txt answering 5xx disallows the whole host (RFC 9309)",
        "spiders/middlewares.py",
        "        if status == 429 or status >= 500:\n",
        "        if status == 429:\n",
        ("tests/test_robots.py::test_5xx_and_429_mean_disallow_all",),
    ),
    Mutation(
        "robots_unreachable",
        "robots.txt that cannot be fetched disallows the host",
        "spiders/middlewares.py",
        '            entry = self._entry("unreachable", None, f"could not be fetched ({type(exc).__name__}: {exc})", robots_url)\n',
        '            entry = self._entry("4xx_allow", None, f"could not be fetched ({type(exc).__name__}: {exc})", robots_url)\n',
        ("tests/test_robots.py::test_crawl_connection_refused_disallows",),
    ),
    Mutation(
        "robots_own_user_agent",
        "robots.txt rules for our own user agent are obeyed and preferred over *",
        "spiders/middlewares.py",
        "        useragent: str | bytes | None = self._robotstxt_useragent\n",
        '        useragent: str | bytes | None = "*"\n',
        (
            "tests/test_robots.py::test_our_own_group_is_obeyed_although_star_allows",
            "tests/test_robots.py::test_crawl_site_that_disallows_us_but_allows_everyone_else_is_not_crawled",
        ),
    ),
    # ------------------------------------------------------------------ hostile input and limits
    Mutation(
        "gzip_sitemap_maxsize",
        "a gzip sitemap is unpacked within DOWNLOAD_MAXSIZE (a bomb is a reject)",
        "spiders/spiders/news.py",
        'max_size=self.crawler.settings.getint("DOWNLOAD_MAXSIZE")',
        "max_size=2**62",
        (HOSTILE_CRAWL,),
    ),
    Mutation(
        "bomb_limits",
        "pages and gzip bodies are bounded by max_page_bytes (DOWNLOAD_MAXSIZE)",
        "spiders/spiders/news.py",
        '        "DOWNLOAD_MAXSIZE": crawl.max_page_bytes,\n',
        '        "DOWNLOAD_MAXSIZE": 0,\n',
        (HOSTILE_CRAWL,),
    ),
    Mutation(
        "crawl_download_timeout",
        "a page that does not answer in download_timeout is a reject",
        "spiders/spiders/news.py",
        '        "DOWNLOAD_TIMEOUT": crawl.download_timeout,\n',
        '        "DOWNLOAD_TIMEOUT": 600,\n',
        (HOSTILE_CRAWL,),
    ),
    Mutation(
        "sitemap_depth",
        "sitemap indexes are followed at most max_sitemap_depth levels deep",
        "spiders/spiders/news.py",
        "        if depth > limit:\n",
        "        if False:\n",
        (HOSTILE_CRAWL,),
    ),
    Mutation(
        "header_limits",
        "responses over max_header_bytes or the header count are refused",
        "spiders/middlewares.py",
        "        if count <= self.max_count and size <= self.max_bytes:\n",
        "        if True:\n",
        ("tests/test_crawl.py::test_response_headers_over_the_limits_are_refused",),
    ),
    Mutation(
        "xxe",
        "XML entities of feeds and sitemaps are never expanded",
        "spiders/discovery.py",
        "        resolve_entities=False,\n",
        "        resolve_entities=True,\n",
        (
            "tests/test_discovery.py::test_feed_with_external_entity_is_not_expanded",
            "tests/test_discovery.py::test_sitemap_with_external_entity_is_not_expanded",
        ),
    ),
    Mutation(
        "rejects_written",
        "every crawl refusal is written to the rejects file",
        "spiders/pipelines.py",
        '            self.rejects.append(reject(item.url, "crawl", item.reason, source=self.source, detail=item.detail))\n',
        "            pass\n",
        (HOSTILE_CRAWL,),
    ),
    Mutation(
        "per_page_timeout",
        "a page whose extraction hangs is killed at its deadline",
        "pipeline/runtime/pool.py",
        "                elif now >= worker.deadline:\n",
        "                elif False:\n",
        ("tests/test_extract_bad_input.py::test_hanging_task_is_killed_by_a_tiny_timeout_and_the_batch_goes_on",),
        timeout=60,  # the test takes about a second; its mutant waits on a task of an hour
    ),
    # ------------------------------------------------------------------ archive and state
    Mutation(
        "warc_digests",
        "WARC records carry valid WARC-Block-Digest and WARC-Payload-Digest",
        "pipeline/dataset/warc.py",
        "        super().__init__(filebuf, gzip=False, **kwargs)\n",
        "        super().__init__(filebuf, gzip=False, **kwargs)\n        self.ensure_digest = lambda *a, **k: None\n",
        ("tests/test_warc.py::test_warcio_reads_the_records_with_valid_digests",),
    ),
    Mutation(
        "state_if_match",
        "state read-modify-write detects a concurrent update (If-Match)",
        "pipeline/dataset/state.py",
        "                bucket.put_json(key, new, if_match=etag)\n",
        "                bucket.put_json(key, new)\n",
        ("tests/test_state.py::test_if_match_race_on_an_existing_object_is_detected_every_time",),
    ),
    Mutation(
        "state_conditional_create",
        "creating a state object loses no concurrent creation (If-None-Match: *)",
        "pipeline/dataset/state.py",
        '                bucket.put_json(key, new, if_none_match="*")\n',
        "                bucket.put_json(key, new)\n",
        ("tests/test_state.py::test_conditional_write_detects_a_lost_race",),
    ),
    Mutation(
        "commit_atomicity",
        "a run's commit replaces its rows in one transaction (replaceWhere), never appends to them",
        "pipeline/dataset/delta.py",
        '            mode="overwrite",\n            predicate=predicate,\n',
        '            mode="append",\n',
        (
            "tests/test_store.py::test_whole_rerun_replaces_the_run_never_doubles_and_leaves_other_runs",
            "tests/test_store.py::test_concurrent_commits_of_one_run_never_double",
        ),
    ),
    Mutation(
        "commit_scope",
        "a run's commit replaces only its own run's rows (the run id is in the replaceWhere)",
        "pipeline/dataset/delta.py",
        '    parts = [f"{PARTITION} = {_sql_text(run_date(run_id))}", f"run_id = {_sql_text(run_id)}"]\n',
        '    parts = [f"{PARTITION} = {_sql_text(run_date(run_id))}"]\n',
        ("tests/test_store.py::test_whole_rerun_replaces_the_run_never_doubles_and_leaves_other_runs",),
    ),
    Mutation(
        "commit_before_data_complete",
        "a run is committed only once all its data is written (an attempt that dies commits nothing)",
        "pipeline/dataset/delta.py",
        "    ensure_table(settings)  # so every commit is a replaceWhere: two first commits of one run never both append\n",
        # The old rows go in a commit of their own, before the new data files are written.
        "    ensure_table(settings)\n"
        "    write_deltalake(table_uri(settings), TABLE_SCHEMA.empty_table(), mode='overwrite', predicate=predicate,"
        " partition_by=[PARTITION], storage_options=storage_options(settings))\n",
        ("tests/test_s3_faults.py::test_kill_9_between_data_files_and_log_commit",),
    ),
    Mutation(
        "s3_retries",
        "transient S3 errors (5xx) are retried",
        "pipeline/core/bucket.py",
        '    retries={"max_attempts": 5, "mode": "standard"},\n',
        '    retries={"max_attempts": 0, "mode": "standard"},\n',
        ("tests/test_s3_faults.py::test_503s_on_bucket_writes_are_retried",),
    ),
    # ------------------------------------------------------------------ secrets
    Mutation(
        "credential_redaction",
        "S3 credentials never reach a log line",
        "pipeline/core/bucket.py",
        '        redacted = _CREDENTIAL.sub(r"\\1***", message)\n',
        "        redacted = message\n",
        ("tests/test_s3_security.py::test_credentials_never_written_or_logged",),
    ),
    Mutation(
        "url_secret_redaction",
        "passwords in URLs (user:password@) are redacted wherever a URL is written",
        "pipeline/text/urls.py",
        "        netloc = f\"{REDACTED}@{netloc.rpartition('@')[2]}\"\n",
        "        netloc = netloc\n",
        ("tests/test_config.py::test_redact_url",),
    ),
    # ------------------------------------------------------------------ data quality rules
    Mutation(
        "near_dup_threshold",
        "near-duplicates are found at the configured Jaccard threshold",
        "pipeline/stages/dedupe.py",
        "    need = cfg.threshold * cfg.num_perm",
        "    need = 0.95 * cfg.num_perm",
        ("tests/test_dedupe.py::test_syndicated_copy_with_light_edits_is_near_duplicate",),
    ),
    Mutation(
        "see_also_rule",
        '"See also" link paragraphs are cleaned out of article text',
        "pipeline/stages/clean.py",
        '            r"^\\s*(see|read|watch|listen) (also|more)\\b",\n',
        '            r"^\\s*(read|watch|listen) (also|more)\\b",\n',
        ("tests/test_clean.py::test_seed_article_drops_see_also_and_comment_prompts_and_keeps_the_rest",),
    ),
)

#: A mutation that must be caught when the copy is what the tests import: `parse_sitemap` stops
#: reading <loc>. Were the editable install (the working tree) imported instead, it would survive.
CANARY = Mutation(
    "canary",
    "the tests run the copy's code",
    "spiders/discovery.py",
    '            if ctag == "loc" and loc is None:\n',
    '            if ctag == "nothing" and loc is None:\n',
    ("tests/test_discovery.py::test_news_sitemap_publication_date_and_lastmod",),
)


@dataclass
class Outcome:
    mutation: Mutation
    result: str  # "caught", "SURVIVED", "CODE MOVED", "TARGET MISSING"
    seconds: float
    detail: str = ""


def copy_tree(dest: Path) -> Path:
    """The project without environment, data and caches, at `dest`."""
    shutil.copytree(ROOT, dest, ignore=shutil.ignore_patterns(*IGNORED), symlinks=True)
    return dest


def venv_python() -> str:
    candidate = ROOT / ".venv" / "bin" / "python"
    return str(candidate) if candidate.exists() else sys.executable


def child_env(tree: Path) -> dict[str, str]:
    """The environment of the test runs: the copy first on the path, no bytecode written into it."""
    env = {**os.environ, "PYTHONPATH": str(tree), "PYTHONDONTWRITEBYTECODE": "1"}
    env.pop("NEWS_INGEST_HOME", None)  # each run's S3 fixture sets its own
    return env


def check_imports(tree: Path) -> str | None:
    """None when `pipeline`, `spiders`, `examples` and `tests` import from the copy, else what does not."""
    code = "import pipeline, spiders, examples, tests; print('\\n'.join(m.__file__ for m in (pipeline, spiders, examples, tests)))"
    proc = subprocess.run(
        [venv_python(), "-c", code], cwd=tree, env=child_env(tree), capture_output=True, text=True, timeout=120
    )
    if proc.returncode != 0:
        return proc.stderr.strip()[-500:]
    outside = [f for f in proc.stdout.split() if not Path(f).resolve().is_relative_to(tree.resolve())]
    return f"imported from outside the copy: {outside}" if outside else None


def missing_targets(tree: Path, mutations: Iterable[Mutation]) -> set[str]:
    """Target test ids that pytest cannot collect in the copy."""
    targets = sorted({t for m in mutations for t in m.targets})
    proc = subprocess.run(
        [venv_python(), "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", *targets],
        cwd=tree,
        env=child_env(tree),
        capture_output=True,
        text=True,
        timeout=600,
    )
    collected = {line.split("[", 1)[0] for line in proc.stdout.splitlines() if "::" in line}
    return {t for t in targets if t not in collected}


def run_mutation(tree: Path, mutation: Mutation) -> Outcome:
    """Apply `mutation` in the copy, run its targets, restore the file."""
    path = tree / mutation.path
    start = time.monotonic()
    try:
        original = path.read_text(encoding="utf-8")
    except OSError as exc:
        return Outcome(mutation, "CODE MOVED", 0.0, f"{mutation.path}: {exc.strerror}")
    count = original.count(mutation.old)
    if count != 1:
        where = "not found" if count == 0 else f"found {count} times"
        return Outcome(mutation, "CODE MOVED", 0.0, f"snippet {where} in {mutation.path}")
    path.write_text(original.replace(mutation.old, mutation.new), encoding="utf-8")
    cmd = [
        venv_python(),
        "-m",
        "pytest",
        "-x",
        "-q",
        "-p",
        "no:cacheprovider",
        f"--timeout={mutation.timeout}",
        *mutation.targets,
    ]
    try:
        proc = subprocess.run(cmd, cwd=tree, env=child_env(tree), capture_output=True, text=True, timeout=RUN_TIMEOUT)
        code, tail = proc.returncode, (proc.stdout + proc.stderr).strip().splitlines()[-1:]
    except subprocess.TimeoutExpired:
        code, tail = -1, [f"no result after {RUN_TIMEOUT}s"]
    finally:
        path.write_text(original, encoding="utf-8")
    seconds = time.monotonic() - start
    detail = tail[0][:160] if tail else ""
    if code == 0:
        return Outcome(mutation, "SURVIVED", seconds, detail)
    if code in (4, 5):  # usage error / nothing collected: the target is gone, not the mutant caught
        return Outcome(mutation, "TARGET MISSING", seconds, detail)
    return Outcome(mutation, "caught", seconds, detail)


def table(outcomes: list[Outcome]) -> str:
    rows = [("mutation", "result", "s", "file", "guarantee")]
    rows += [(o.mutation.name, o.result, f"{o.seconds:.0f}", o.mutation.path, o.mutation.guarantee) for o in outcomes]
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = []
    for i, r in enumerate(rows):
        lines.append("  ".join(c.ljust(w) for c, w in zip(r[:4], widths)) + "  " + r[4])
        if i == 0:
            lines.append("  ".join("-" * w for w in widths) + "  " + "-" * 9)
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", nargs="+", metavar="NAME", help="run only these mutations")
    parser.add_argument("--list", action="store_true", help="list the mutations and exit")
    parser.add_argument("--keep", action="store_true", help="keep the temporary copy (its path is printed)")
    args = parser.parse_args(argv)

    if args.list:
        for m in MUTATIONS:
            print(f"{m.name:28} {m.path:30} {m.guarantee}")
        return 0
    chosen = list(MUTATIONS)
    if args.only:
        unknown = sorted(set(args.only) - {m.name for m in MUTATIONS})
        if unknown:
            parser.error(f"unknown mutation(s): {', '.join(unknown)}")
        chosen = [m for m in MUTATIONS if m.name in args.only]

    workdir = Path(tempfile.mkdtemp(prefix="news-ingest-mutation-"))
    started = time.monotonic()
    try:
        tree = copy_tree(workdir / "tree")
        print(f"copy of {ROOT} at {tree}", flush=True)
        problem = check_imports(tree)
        if problem:
            print(f"the tests would not run the copy's code: {problem}", file=sys.stderr)
            return 2
        missing = missing_targets(tree, [CANARY, *chosen])
        canary = run_mutation(tree, CANARY) if not missing & set(CANARY.targets) else None
        if canary is None or canary.result != "caught":
            print(
                f"canary mutation not caught ({canary.result if canary else 'target missing'}): "
                "the tests do not run the copy's code",
                file=sys.stderr,
            )
            return 2
        outcomes: list[Outcome] = []
        for m in chosen:
            if missing & set(m.targets):
                outcomes.append(Outcome(m, "TARGET MISSING", 0.0, ", ".join(sorted(missing & set(m.targets)))))
            else:
                outcomes.append(run_mutation(tree, m))
            o = outcomes[-1]
            print(f"{o.result:14} {m.name:28} {o.seconds:5.0f}s  {o.detail}", flush=True)
    finally:
        if args.keep:
            print(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)

    print()
    print(table(outcomes))
    bad = [o for o in outcomes if o.result != "caught"]
    caught = len(outcomes) - len(bad)
    print(f"\n{caught} of {len(outcomes)} mutations caught in {time.monotonic() - started:.0f}s", end="")
    if bad:
        print(": " + "; ".join(f"{o.mutation.name} {o.result}" for o in bad))
        for o in bad:
            if o.result == "CODE MOVED":
                print(f"  {o.mutation.name}: {o.detail} - the code moved: update the mutation in {__file__}")
            elif o.result == "SURVIVED":
                print(f"  {o.mutation.name}: no target failed - add a test that {o.mutation.guarantee}")
            else:
                print(f"  {o.mutation.name}: {o.detail}")
        return 1
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
