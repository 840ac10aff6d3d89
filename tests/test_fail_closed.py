"""Security controls fail closed, and Airflow tasks tell terminal errors from transient ones.

* The crawl's security components (SSRF guard, strict robots.txt, guarded DNS resolver) are
  always in the settings; a crawl child that cannot import one refuses to start, before any
  request, and `crawl_stage` says why.
* `fail_fast()` (around every DAG task body) turns terminal errors into Airflow's
  `AirflowFailException` and lets transient ones through, for Airflow to retry.
* `sources_path_from` reads the Variable; a missing one means the default file, an unreadable
  one fails the task.

The news_ingest run with wrong credentials (one try, no retries) is in tests/test_dags.py,
next to the other `dag.test()` runs.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from pipeline.core.bucket import Bucket
from pipeline.core.config import ConfigError, load_sources
from pipeline.core.context import RunContext
from pipeline.core.errors import BadRunId, StorageError
from pipeline.core.paths import ROOT
from tests.airflow_helpers import airflow_env

RUN = "20261127T120000Z"
SECURITY = (
    "spiders.middlewares.SsrfGuardMiddleware",
    "spiders.middlewares.StrictRobotsTxtMiddleware",
    "spiders.resolver.GuardedResolver",
)

# Put first on PYTHONPATH of a crawl child, this makes `spiders.netguard` (which the SSRF guard,
# the robots middleware's module and the resolver all import) unimportable, as a broken install would.
BLOCKING_SHIM = textwrap.dedent("""
    import sys

    class _Unimportable:
        def find_spec(self, name, path=None, target=None):
            if name == "spiders.netguard":
                raise ImportError("spiders.netguard is unimportable (test shim)")
            return None

    sys.meta_path.insert(0, _Unimportable())
""")


# --------------------------------------------------------------------------- fail closed: the crawl


def test_project_settings_enable_every_security_component():
    """The settings as Scrapy loads them: both guard middlewares enabled (SSRF first), Scrapy's
    lenient robots middleware off, the guarded resolver installed."""
    from scrapy.settings import Settings
    from scrapy.utils.conf import build_component_list

    import spiders.settings as project

    settings = Settings()
    settings.setmodule("spiders.settings", priority="project")
    enabled = build_component_list(settings.getwithbase("DOWNLOADER_MIDDLEWARES"))
    ssrf, robots = (
        enabled.index(f"spiders.middlewares.{n}") for n in ("SsrfGuardMiddleware", "StrictRobotsTxtMiddleware")
    )
    assert ssrf == 0 and robots > ssrf
    assert "scrapy.downloadermiddlewares.robotstxt.RobotsTxtMiddleware" not in enabled
    assert settings["TWISTED_DNS_RESOLVER"] == "spiders.resolver.GuardedResolver"
    assert set(project.SECURITY_COMPONENTS) == set(SECURITY)


def test_require_components_names_every_missing_component_and_why():
    from spiders.settings import SecurityComponentMissing, require_components

    require_components()  # the real ones import
    with pytest.raises(SecurityComponentMissing) as err:
        require_components(
            (
                "spiders.middlewares.SsrfGuardMiddleware",
                "spiders.middlewares.NoSuchGuard",
                "spiders.no_such_module.Resolver",
            )
        )
    message = str(err.value)
    assert message.startswith("refusing to crawl: ")
    assert "spiders.middlewares.NoSuchGuard (spiders.middlewares has no NoSuchGuard)" in message
    assert "spiders.no_such_module.Resolver (ModuleNotFoundError: No module named 'spiders.no_such_module')" in message
    assert "SsrfGuardMiddleware" not in message  # it imports: not named


def test_crawl_refuses_to_start_without_a_security_module(
    s3_settings, sources_file, sample_site, tmp_path, monkeypatch
):
    from pipeline.stages.crawl import CrawlError, crawl_stage, summary_key
    from tests.test_crawl import outlets

    shim = tmp_path / "shim"
    shim.mkdir()
    (shim / "sitecustomize.py").write_text(BLOCKING_SHIM)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(shim), os.environ.get("PYTHONPATH")])))

    ctx = RunContext(run_id=RUN, s3=s3_settings, sources_path=sources_file)
    outlet = outlets(sample_site)["plain"]
    surfaces = sample_site.surfaces()[outlet]
    urls = [u for kind in ("robots", "feeds", "sitemaps", "sections") for u in surfaces[kind]]
    urls += [e["url"] for e in sample_site.expected() if e["outlet"] == outlet]
    before = {u: sample_site.hits(u) for u in urls}

    with pytest.raises(CrawlError) as err:
        crawl_stage(ctx, outlet, timeout=120)
    first_line = str(err.value).splitlines()[0]
    from pipeline.core.errors import is_terminal

    assert is_terminal(err.value)  # a broken install does not mend itself: Airflow must not retry
    assert first_line.startswith(f"crawl of {outlet} refused to start: security component(s) cannot be imported: ")
    for component in SECURITY:
        assert f"{component} (ImportError: spiders.netguard is unimportable (test shim))" in first_line
    # Refused before any request: the site saw none, and nothing reached the bucket.
    assert {u: sample_site.hits(u) for u in urls} == before
    assert not ctx.bucket.exists(summary_key(ctx, outlet))
    assert list(ctx.bucket.list(ctx.prefix("raw"))) == []


# --------------------------------------------------------------------------- terminal or transient


def test_fail_fast_fails_terminal_errors_without_retry(s3_settings, tmp_path):
    from airflow.sdk.exceptions import AirflowFailException

    from pipeline.airflow_tasks import fail_fast

    # wrong credentials, from the real server
    wrong = s3_settings.model_copy(update={"secret_access_key": "WRONG-secret-0123456789abcdefghijkl"})
    with pytest.raises(AirflowFailException) as err, fail_fast():
        Bucket(wrong).check()
    assert isinstance(err.value.__cause__, StorageError) and err.value.__cause__.terminal
    assert str(err.value) == str(err.value.__cause__) and "the secret key is wrong" in str(err.value)

    # a missing bucket
    with pytest.raises(AirflowFailException, match="the bucket does not exist"), fail_fast():
        Bucket(s3_settings.model_copy(update={"bucket": "no-such-bucket-here"})).check()

    # bad configuration
    with pytest.raises(AirflowFailException, match="cannot read sources file") as err, fail_fast():
        load_sources(tmp_path / "missing.yaml")
    assert isinstance(err.value.__cause__, ConfigError)

    # a bad run id (check_run_id's BadRunId: a ConfigError, still a ValueError)
    with pytest.raises(AirflowFailException, match="bad run id 'yesterday'") as err, fail_fast():
        RunContext(run_id="yesterday", s3=s3_settings)
    assert type(err.value.__cause__) is BadRunId and isinstance(err.value.__cause__, ValueError)


def test_fail_fast_lets_transient_errors_through_unchanged():
    from pipeline.airflow_tasks import fail_fast

    for exc in (
        StorageError("put_object on bucket 'news' failed: 503 SlowDown", code="503"),
        StorageError("check access on bucket 'news' failed: cannot connect to the S3 endpoint"),
        ConnectionResetError("connection reset by peer"),
        ValueError("not a run id problem"),
    ):
        with pytest.raises(type(exc)) as err, fail_fast():
            raise exc
        assert err.value is exc

    with fail_fast():  # and no error, no change
        result = 42
    assert result == 42


# --------------------------------------------------------------------------- the sources Variable

# Reads the sources path as a task does, in a child with its own Airflow home; prints the outcome.
SOURCES_PROBE = textwrap.dedent("""
    import json
    from pipeline.airflow_tasks import fail_fast, sources_path_from
    from pipeline.core.paths import default_sources_path
    try:
        with fail_fast():
            out = {"path": str(sources_path_from({}))}
    except Exception as exc:
        out = {"error": type(exc).__name__, "message": str(exc)}
    out["default"] = str(default_sources_path())
    print("SOURCES-RESULT " + json.dumps(out))
""")

# A secrets backend whose store refuses access, the one kind of backend failure that the
# Task SDK does not hide behind "not found".
DENIED_BACKEND = textwrap.dedent("""
    from airflow.sdk.bases.secrets_backend import BaseSecretsBackend
    from airflow.sdk.exceptions import AirflowSecretsBackendAccessDenied

    class DeniedVariables(BaseSecretsBackend):
        def get_conn_value(self, conn_id):
            return None

        def get_variable(self, key):
            raise AirflowSecretsBackendAccessDenied(f"secrets store refused to read {key}")
""")


def _sources_probe(tmp_path, name: str, extra: dict[str, str]) -> dict:
    env = airflow_env(tmp_path / name, extra=extra)
    env.pop("NEWS_INGEST_SOURCES", None)
    proc = subprocess.run(
        [sys.executable, "-c", SOURCES_PROBE], env=env, cwd=str(ROOT), capture_output=True, text=True, timeout=300
    )
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("SOURCES-RESULT ")]
    assert lines, f"probe crashed (exit {proc.returncode}):\n{proc.stderr[-4000:]}"
    return json.loads(lines[-1].split(" ", 1)[1])


def test_sources_variable_missing_set_and_unreadable(tmp_path):
    # not set: the default file
    unset = _sources_probe(tmp_path, "unset", {})
    assert unset["path"] == unset["default"] == str(ROOT / "config" / "sources.yaml")

    # set (the environment is one of Airflow's Variable backends): that file
    chosen = tmp_path / "chosen.yaml"
    assert _sources_probe(tmp_path, "set", {"AIRFLOW_VAR_NEWS_INGEST_SOURCES_PATH": str(chosen)})["path"] == str(chosen)

    # unreadable: the task fails, naming the Variable, with an error Airflow retries (not a fallback)
    backend_dir = tmp_path / "backend"
    backend_dir.mkdir()
    (backend_dir / "denied_backend.py").write_text(DENIED_BACKEND)
    denied = _sources_probe(
        tmp_path,
        "denied",
        {
            "AIRFLOW__SECRETS__BACKEND": "denied_backend.DeniedVariables",
            "AIRFLOW_VAR_NEWS_INGEST_SOURCES_PATH": str(chosen),
            "PYTHONPATH": os.pathsep.join(filter(None, [str(backend_dir), str(ROOT), os.environ.get("PYTHONPATH")])),
        },
    )
    assert "path" not in denied
    assert denied["error"] == "RuntimeError"  # not AirflowFailException: a backend outage is retried
    assert "cannot read the Airflow Variable 'news_ingest_sources_path'" in denied["message"]
    assert "secrets store refused to read news_ingest_sources_path" in denied["message"]
