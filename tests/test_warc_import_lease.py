"""Two importers of one archive file: the lease (a conditional PUT, `If-None-Match: *`) lets one import it;
the other is told the file is being imported by another run. An expired lease is taken over."""

from __future__ import annotations

import json
import os
import subprocess
import time

import pytest

from examples.sample_site.warc_archive import cc_news_pages, write_archive
from pipeline.core.bucket import Bucket
from pipeline.core.errors import PreconditionFailed
from pipeline.core.paths import ROOT
from pipeline.dataset.warc_sources import Remote, expand
from pipeline.flows.warc_import import ImportOptions, Lease, LeaseHeld, import_archives, lease_key, state_key
from tests.test_warc_import import NAME, _rows, import_command

pytestmark = pytest.mark.timeout(240)


def test_a_lease_is_taken_once_and_a_lost_one_cannot_be_renewed(s3_settings):
    bucket = Bucket(s3_settings)
    key = lease_key(NAME, "file:///a.warc.gz")
    first = Lease(bucket, key, "a", 60).acquire()
    with pytest.raises(LeaseHeld, match="being imported by another run") as held:
        Lease(bucket, key, "a", 60).acquire()  # the server answers 412 to the second create
    assert held.value.holder["owner"] == first.owner
    first.renew(force=True)  # still ours

    # Expired (not renewed in time): taken over, and the first importer's renewal then fails.
    bucket.put_json(key, {**bucket.get_json(key), "expires_at": time.time() - 1}, if_match=first.etag)
    first.etag = bucket.get_with_etag(key)[1]
    second = Lease(bucket, key, "a", 60).acquire()
    assert bucket.get_json(key)["owner"] == second.owner
    with pytest.raises(PreconditionFailed, match="lost the lease"):
        first.renew(force=True)
    first.release()  # not ours any more: left in place
    assert bucket.get_json(key)["owner"] == second.owner
    second.release()
    assert not bucket.exists(key)


def test_a_held_lease_makes_the_file_busy_and_an_expired_one_is_taken_over(s3_settings, tmp_path):
    path = tmp_path / "CC-NEWS-lease.warc.gz"
    write_archive(path, cc_news_pages(1))
    bucket = Bucket(s3_settings)
    key = lease_key(NAME, str(path))
    opts = ImportOptions(name=NAME, s3=s3_settings, remote=Remote(s3=s3_settings), workers=1)
    holder = {"owner": "elsewhere:1:dead", "uri": str(path)}

    bucket.put_json(key, {**holder, "expires_at": time.time() + 600})
    (busy,) = import_archives(expand([str(path)], Remote()), opts)
    assert busy["status"] == "busy" and busy["holder"] == "elsewhere:1:dead"
    assert _rows(s3_settings).num_rows == 0 and not bucket.exists(state_key(NAME, str(path)))

    bucket.put_json(key, {**holder, "expires_at": time.time() - 1})  # its importer died
    (done,) = import_archives(expand([str(path)], Remote()), opts)
    assert done["status"] == "done" and done["counts"]["kept"] == 4
    assert _rows(s3_settings).num_rows == 4
    assert not bucket.exists(key), "released at the end"


def test_two_importers_started_at_once_store_each_article_once(s3_settings, tmp_path):
    many = [p for p in cc_news_pages(8) if p.kind == "article"]
    path = tmp_path / "CC-NEWS-race.warc.gz"
    write_archive(path, many)
    env = {**os.environ, **s3_settings.as_env()}
    args = import_command(path, "--chunk", "5")
    procs = [
        subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    outs = [p.communicate(timeout=200) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [err[-2000:] for _, err in outs]
    summaries = [json.loads(out) for out, _ in outs]
    assert sorted(s["status"] for s in summaries) == ["busy", "done"]
    (loser_err,) = [err for (_, err), s in zip(outs, summaries, strict=True) if s["status"] == "busy"]
    assert "is being imported by another run" in loser_err
    ids = _rows(s3_settings).column("article_id").to_pylist()
    assert len(ids) == len(set(ids)) == len(many)
    bucket = Bucket(s3_settings)
    assert bucket.get_json(state_key(NAME, str(path)))["attempts"] == 1, "the loser never claimed the file"
    assert not bucket.exists(lease_key(NAME, str(path)))
