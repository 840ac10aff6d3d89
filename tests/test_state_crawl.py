"""The real spider against sharded state: refused pages and pages in the old single-object seen state are skipped."""

from __future__ import annotations

import pytest

from pipeline.core.context import RunContext
from pipeline.core.layout import seen_key
from pipeline.dataset.rejects import reject
from pipeline.dataset.state import record_refused
from pipeline.dataset.warc import read_warc
from pipeline.stages.crawl import crawl_stage
from pipeline.text.urls import canonicalize

pytestmark = pytest.mark.timeout(240)


def _arc_outlet(site) -> str:
    """The outlet that serves updated articles (the one test_crawl's revisit tests use)."""
    return next(e["outlet"] for e in site.expected() if e["kind"] == "updated")


def test_second_crawl_skips_refused_pages_and_old_layout_seen_pages(s3_settings, sources_file, sample_site):
    outlet = _arc_outlet(sample_site)
    ctx = RunContext(run_id="20261127T120000Z", s3=s3_settings, sources_path=sources_file)
    first = crawl_stage(ctx, outlet)
    fetched = sorted(
        {
            r.url
            for key in first["warc_keys"]
            for r in read_warc(ctx.bucket, key)
            if r.kind == "article" and r.status == 200
        }
    )
    assert len(fetched) >= 4
    refused, seen_old = fetched[:2], fetched[2:4]
    record_refused(
        ctx.bucket, [reject(u, "extract", "not_article:listing", source=outlet) for u in refused], ctx.run_id
    )
    # Seen state written by an earlier version: one object per source, read without being moved.
    legacy = {canonicalize(u): {"url": u, "stored_at": "2026-11-27T12:00:00+00:00"} for u in seen_old}
    ctx.bucket.put_json(seen_key(outlet), legacy)
    sample_site.reset_hits()
    second = crawl_stage(RunContext(run_id="20261127T130000Z", s3=s3_settings, sources_path=sources_file), outlet)
    assert [u for u in refused + seen_old if sample_site.hits(u)] == []
    assert second["stats"]["news/skipped_refused"] >= len(refused)
    assert second["stats"]["news/skipped_seen"] >= len(seen_old)
    assert ctx.bucket.exists(seen_key(outlet))  # a crawl only reads state


def test_state_shards_of_discovered_urls_are_read_in_batches(s3_settings, sources_file, sample_site):
    """The article URLs a feed or section yields have their state shards read in one parallel batch
    (the spider middleware's prefetch); a request at download time then finds its shard read already."""
    outlet = _arc_outlet(sample_site)
    stats = crawl_stage(RunContext(run_id="20261127T140000Z", s3=s3_settings, sources_path=sources_file), outlet)[
        "stats"
    ]
    assert stats["news/state_shards_prefetched"] >= 2
    on_demand = stats["news/state_shards_read"] - stats["news/state_shards_prefetched"]
    assert 0 <= on_demand < stats["news/state_shards_prefetched"]
