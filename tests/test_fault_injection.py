"""Fault injection on real parts (issue #16): `kill -9` of `run`, S3 stopped mid-run, two runs of
one run id at once, each at moments drawn from a fixed seed, on a SeaweedFS of this module's own
(stopping it must not disturb the session's server) and the sample site.

After each experiment (and the run that recovers from it): no row lost or doubled, every stored
row's WARC record readable, no process of any run left, no credential in any object or log.
Each experiment has a bucket of its own (the seen-URL state of one must not hide pages from another).
"""

from __future__ import annotations

import random
import time
from pathlib import Path

import pytest

from pipeline.core.bucket import Bucket
from pipeline.core.config import S3Settings
from pipeline.runtime.s3server import EmbeddedS3
from tests.test_lifecycle import (
    NEXT,
    SLOW,
    RunProcess,
    check_rows,
    expected_urls,
    outlet_hits,
    run_rows,
    s3_env,
    spool_folders,
)

SEED = 16
#: The experiments, in order; each draws its moment from the seeded generator.
EXPERIMENTS = ["kill", "stop-s3", "concurrent", "kill"]
OUTLETS = [SLOW, NEXT]

pytestmark = pytest.mark.timeout(600)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    own = EmbeddedS3(tmp_path_factory.mktemp("fault-s3") / "s3")
    info = own.up("news")
    try:
        yield own, info
    finally:
        own.down()


@pytest.fixture(scope="module")
def sources(sample_site, tmp_path_factory) -> Path:
    return sample_site.write_sources_yaml(
        tmp_path_factory.mktemp("fault-sources") / "sources.yaml",
        download_timeout=3,
        max_page_bytes=8 * 2**20,
        outlets=OUTLETS,
        source_delay=0.05,
        source_concurrency=1,
    )


def _plan() -> list[tuple[int, str, float]]:
    """(index, kind, parameter): the hits before the fault, or the second run's start delay."""
    rng = random.Random(SEED)
    plan = []
    for i, kind in enumerate(EXPERIMENTS):
        param = rng.uniform(0.0, 1.5) if kind == "concurrent" else float(rng.randint(1, 14))
        plan.append((i, kind, param))
    return plan


def _secrets_leaked(settings: S3Settings, home: Path, runs: list[RunProcess]) -> list[str]:
    """Where the S3 keys appear: bucket objects, files under the var folder, the runs' output."""
    needles = [settings.secret_access_key.encode(), settings.access_key_id.encode()]
    found = []
    bucket = Bucket(settings)
    for key in bucket.list(""):
        data = bucket.get(key)
        found += [f"object {key}" for n in needles if n in data]
    for path in [p for p in home.rglob("*") if p.is_file()] + [r.log for r in runs]:
        data = path.read_bytes()
        found += [f"file {path}" for n in needles if n in data]
    return found


@pytest.mark.parametrize(("index", "kind", "param"), _plan(), ids=[f"{i}-{k}" for i, k, _ in _plan()])
def test_fault(index, kind, param, server, sources, sample_site, tmp_path):
    own, info = server
    settings = info.settings(f"fault-{index}")
    Bucket(settings).ensure()
    home = tmp_path / "home"
    env = s3_env(settings, home)
    run_id = f"20261129T1{index}0000Z"
    args = ["--sources", str(sources), "--run-id", run_id]
    runs: list[RunProcess] = []

    def start(*extra: str) -> RunProcess:
        runs.append(RunProcess([*args, *extra], env, tmp_path / f"run-{len(runs)}.log"))
        return runs[-1]

    try:
        sample_site.reset_hits()
        first = start()
        if kind == "kill":
            first.wait_for(lambda: outlet_hits(sample_site, SLOW) >= param)
            first.kill()
        elif kind == "stop-s3":
            first.wait_for(lambda: outlet_hits(sample_site, SLOW) >= param)
            own.down()
            time.sleep(2)  # an outage the run must live through or fail cleanly from
            own.up()
            first.finish()
        else:  # concurrent: a second run of the same id, crawling one source, started `param` s later
            time.sleep(param)
            second = start("--source", SLOW)
            assert first.finish() == 0, first.output()[-3000:]
            assert second.finish() == 0, second.output()[-3000:]
        for run in runs:
            assert run.wait_gone() == [], f"{kind}: processes of a run left over"

        committed = sorted({r["source"] for r in run_rows(settings, run_id)})
        if kind != "concurrent" and (first.proc.returncode != 0 or committed != sorted(OUTLETS)):
            again = start()  # the recovery: the same run id once more, undisturbed
            assert again.finish() == 0, again.output()[-3000:]
            assert again.wait_gone() == []
            assert spool_folders(home) == []  # the killed run's spool is gone too
            committed = sorted(OUTLETS)
        assert committed in ([SLOW], sorted(OUTLETS)), committed
        check_rows(settings, run_id, expected_urls(sample_site, committed))
        assert _secrets_leaked(settings, home, runs) == []
    finally:
        for run in runs:
            run.cleanup()
        if not own.answers():
            own.up()
