"""`python -m pipeline s3 up|down|status` runs a real SeaweedFS that refuses strangers."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import urllib.error
import urllib.request

import boto3
import pytest
from botocore import UNSIGNED
from botocore.config import Config
from botocore.exceptions import ClientError

from pipeline.core.paths import ROOT
from pipeline.runtime.s3server import SECURITY_VERSION, EmbeddedS3


def cli(*args: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pipeline", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=180
    )


@pytest.fixture(scope="module")
def own_home(tmp_path_factory):
    """A separate NEWS_INGEST_HOME so this test's server is not the session's."""
    home = tmp_path_factory.mktemp("s3cli")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env["NEWS_INGEST_HOME"] = str(home)
    yield home, env
    EmbeddedS3(home / "s3").down()


@pytest.fixture
def running(own_home):
    """The module's server, started if no test before this one did (or one stopped it): any order works."""
    home, env = own_home
    server = EmbeddedS3(home / "s3", s3_port=_free())
    server.up("news")
    return home, env


def test_up_is_idempotent_and_status_reports(own_home):
    home, env = own_home
    first = cli("s3", "up", "--port", str(_free()), env=env)
    assert first.returncode == 0, first.stderr
    pid = EmbeddedS3(home / "s3").info().pid
    second = cli("s3", "up", env=env)
    assert second.returncode == 0, second.stderr
    assert EmbeddedS3(home / "s3").info().pid == pid  # the same server, not a second one
    status = cli("s3", "status", env=env)
    assert status.returncode == 0 and "answering" in status.stdout
    assert EmbeddedS3(home / "s3").info().endpoint_url in status.stdout
    # The data folder is project-local and the identity file is private.
    assert (home / "s3" / "data").is_dir()
    assert oct((home / "s3" / "server.json").stat().st_mode & 0o777) == "0o600"


def test_anonymous_and_wrong_keys_are_refused(running):
    home, env = running
    info = EmbeddedS3(home / "s3").info()
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(f"{info.endpoint_url}/news/_health/ready", timeout=10)
    assert err.value.code == 403
    anon = boto3.client(
        "s3", endpoint_url=info.endpoint_url, region_name="us-east-1", config=Config(signature_version=UNSIGNED)
    )
    with pytest.raises(ClientError):
        anon.list_objects_v2(Bucket="news")
    wrong = boto3.client(
        "s3",
        endpoint_url=info.endpoint_url,
        region_name="us-east-1",
        aws_access_key_id=info.access_key_id,
        aws_secret_access_key="not-the-secret",
    )
    with pytest.raises(ClientError) as err:
        wrong.put_object(Bucket="news", Key="x", Body=b"x")
    assert err.value.response["Error"]["Code"] in ("SignatureDoesNotMatch", "AccessDenied")
    right = boto3.client(
        "s3",
        endpoint_url=info.endpoint_url,
        region_name="us-east-1",
        aws_access_key_id=info.access_key_id,
        aws_secret_access_key=info.secret_access_key,
    )
    assert right.get_object(Bucket="news", Key="_health/ready")["Body"].read() == b"ok"


def test_server_binds_loopback_only(running):
    home, _ = running
    info = EmbeddedS3(home / "s3").info()
    listening = subprocess.run(["ss", "-ltnp"], capture_output=True, text=True).stdout
    ours = [line for line in listening.splitlines() if f"pid={info.pid}," in line]
    assert ours, listening
    for line in ours:
        local = line.split()[3]
        assert local.startswith("127.0.0.1:"), line


def test_down_stops_only_its_own_process(running, s3_server):
    home, env = running
    other = s3_server.info().pid
    down = cli("s3", "down", env=env)
    assert down.returncode == 0 and "stopped" in down.stdout
    assert cli("s3", "status", env=env).returncode == 1
    os.kill(other, 0)  # the session's server is untouched
    again = cli("s3", "down", env=env)
    assert "not running" in again.stdout


def test_up_upgrades_a_server_of_an_older_install(running):
    """A server started before the JWT keys (server.json without `security`, data 755/644) is restarted
    by `up` in the secure configuration, on the same ports and identity, with its data."""
    home, env = running
    server = EmbeddedS3(home / "s3")
    before = server.info()
    right = boto3.client(
        "s3",
        endpoint_url=before.endpoint_url,
        region_name="us-east-1",
        aws_access_key_id=before.access_key_id,
        aws_secret_access_key=before.secret_access_key,
    )
    right.put_object(Bucket="news", Key="kept", Body=b"old data")
    old = json.loads(server.info_path.read_text())
    del old["security"]
    server.info_path.write_text(json.dumps(old))
    os.chmod(home / "s3" / "data", 0o755)
    os.chmod(server.info_path, 0o644)
    assert server.info().security == 0

    up = cli("s3", "up", env=env)
    assert up.returncode == 0, up.stderr
    after = server.info()
    assert after.pid != before.pid and after.security == SECURITY_VERSION
    assert (after.endpoint_url, after.access_key_id, after.ports) == (
        before.endpoint_url,
        before.access_key_id,
        before.ports,
    )
    assert right.get_object(Bucket="news", Key="kept")["Body"].read() == b"old data"
    assert stat.S_IMODE((home / "s3" / "data").stat().st_mode) == 0o700
    assert stat.S_IMODE(server.info_path.stat().st_mode) == 0o600
    with pytest.raises(urllib.error.HTTPError) as err:  # the filer's HTTP door is shut after the upgrade
        urllib.request.urlopen(f"http://127.0.0.1:{after.ports['filer']}/buckets/news/kept", timeout=10)
    assert err.value.code == 404


def _free() -> int:
    from pipeline.runtime.s3server import free_port

    return free_port()
