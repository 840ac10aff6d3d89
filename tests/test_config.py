"""Sources files are validated at start; bad files name the field; S3 settings follow the AWS names."""

from __future__ import annotations

import pytest

from pipeline.core.config import ConfigError, S3Settings, load_sources
from pipeline.core.context import RunContext
from pipeline.core.layout import check_run_id, make_run_id, run_date, safe_segment

GOOD = """
crawl:
  user_agent: "news-ingest-test (+mailto:ops@example.org)"
  allow_private: ["127.0.0.1:8701"]
sources:
  - name: courier
    feeds: ["http://127.0.0.1:8701/feed.xml"]
    cleaning:
      drop_lines: ["^Advertisement$"]
"""


def test_good_file_loads(tmp_path):
    path = tmp_path / "sources.yaml"
    path.write_text(GOOD)
    cfg = load_sources(path)
    assert cfg.source("courier").feeds == ["http://127.0.0.1:8701/feed.xml"]
    assert cfg.source("courier").delay == 1.0  # conservative default
    assert cfg.crawl.max_page_bytes == 32 * 1024 * 1024


@pytest.mark.parametrize(
    "body, field",
    [
        ("sources:\n  - name: Bad Name\n    feeds: []\n", "sources.0.name"),
        ("sources:\n  - name: ok\n    feeds: ['ftp://x/']\n", "sources.0.feeds"),
        ("sources:\n  - name: ok\n    deny: ['([']\n", "sources.0.deny"),
        ("sources:\n  - name: ok\n    concurrency: 0\n", "sources.0.concurrency"),
        ("sources:\n  - name: ok\n    colour: red\n", "sources.0.colour"),
        ("sources:\n  - name: a\n  - name: a\n", "sources"),
        ("sources: []\n", "sources"),
        ("crawl:\n  download_timeout: -1\nsources:\n  - name: a\n", "crawl.download_timeout"),
    ],
)
def test_bad_file_names_the_field(tmp_path, body, field):
    path = tmp_path / "sources.yaml"
    path.write_text(body)
    with pytest.raises(ConfigError) as err:
        load_sources(path)
    assert field in str(err.value)
    assert str(path) in str(err.value)


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        load_sources(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("sources: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_sources(bad)


def test_unknown_source_is_a_config_error(tmp_path):
    path = tmp_path / "sources.yaml"
    path.write_text(GOOD)
    with pytest.raises(ConfigError, match="no source named 'other'"):
        load_sources(path).source("other")


def test_s3_settings_from_standard_env_names():
    s = S3Settings.from_env(
        {
            "AWS_ENDPOINT_URL": "http://127.0.0.1:9999",
            "AWS_ACCESS_KEY_ID": "k",
            "AWS_SECRET_ACCESS_KEY": "sekrit",
            "NEWS_INGEST_BUCKET": "b",
        }
    )
    assert (s.endpoint_url, s.access_key_id, s.bucket) == ("http://127.0.0.1:9999", "k", "b")
    assert "sekrit" not in repr(s) and "sekrit" not in str(s)
    assert s.as_env()["AWS_SECRET_ACCESS_KEY"] == "sekrit"


def test_child_env_and_delta_options_carry_the_same_credentials_and_only_those_set():
    from pipeline.dataset.delta import storage_options

    plain = S3Settings(endpoint_url="http://127.0.0.1:9999", access_key_id="k", secret_access_key="s", bucket="b")
    role = S3Settings(access_key_id="k", secret_access_key="s", session_token="t", region="eu-west-1")
    for s in (plain, role):
        env, opts = s.as_env(), storage_options(s)
        aws = {k: v for k, v in env.items() if k not in ("NEWS_INGEST_BUCKET", "AWS_DEFAULT_REGION")}
        assert aws == s.aws_env() and {k: opts[k] for k in aws} == aws
        assert opts["AWS_REGION"] == env["AWS_DEFAULT_REGION"] == s.region and opts["conditional_put"] == "etag"
    assert "AWS_SESSION_TOKEN" not in plain.as_env() and role.as_env()["AWS_SESSION_TOKEN"] == "t"
    assert storage_options(plain)["AWS_ALLOW_HTTP"] == "true"  # the embedded server speaks plain HTTP
    assert "AWS_ALLOW_HTTP" not in storage_options(role) and "AWS_ENDPOINT_URL" not in storage_options(role)


def test_embedded_server_is_the_default_endpoint(tmp_path, monkeypatch):
    monkeypatch.setenv("NEWS_INGEST_HOME", str(tmp_path))
    s = S3Settings.from_env({})
    assert s.endpoint_url.startswith("http://127.0.0.1:")


def test_run_ids_and_key_segments():
    from datetime import datetime, timezone

    rid = make_run_id(datetime(2026, 11, 27, 21, 0, tzinfo=timezone.utc))
    assert rid == "20261127T210000Z" and run_date(rid) == "2026-11-27"
    assert check_run_id(rid + "-retry1")
    for bad in ("../etc", "2026-11-27", "20261127T210000Z/../../x"):
        with pytest.raises(ValueError):
            RunContext(run_id=bad)
    for hostile in ("../../etc/passwd", "é" * 300, "a/b", ".."):
        seg = safe_segment(hostile)
        assert "/" not in seg and ".." not in seg and len(seg) <= 80 and seg.isascii()
    assert safe_segment("a/b") != safe_segment("a_b")


@pytest.mark.parametrize("name", ["sources.yaml", "sources.example.yaml"])
def test_committed_sources_files_are_valid(name):
    from pipeline.core.paths import ROOT

    cfg = load_sources(ROOT / "config" / name)
    assert cfg.sources and all(s.feeds or s.sitemaps or s.sections for s in cfg.sources)


# --------------------------------------------------------------------------- refused up front (#16 item 4)

FEED = "https://news.example.org/feed"


def _file(tmp_path, crawl: dict | None = None, **source) -> str:
    """A sources file of one source (a public feed unless `source` says otherwise)."""
    import yaml

    data = {"sources": [{"name": "outlet", "feeds": [FEED], **source}]}
    if crawl is not None:
        data["crawl"] = crawl
    path = tmp_path / "sources.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def _refused(path) -> str:
    with pytest.raises(ConfigError) as err:
        load_sources(path)
    return str(err.value)


@pytest.mark.parametrize("selector", ["<<<>>>", "div >", "div::text", "a:nth-child(x)", ""])
def test_drop_selectors_must_compile(tmp_path, selector):
    message = _refused(_file(tmp_path, cleaning={"drop_selectors": [".ok", selector]}))
    assert "sources.0.cleaning.drop_selectors" in message and f"bad CSS selector {selector!r}" in message


def test_compiling_drop_selectors_load_and_are_what_extraction_runs(tmp_path):
    from lxml import html as lxml_html

    from pipeline.stages.extract import prune_boilerplate

    cfg = load_sources(_file(tmp_path, cleaning={"drop_selectors": [".partner-box", "aside > ul", "p:contains('Ad')"]}))
    tree = lxml_html.fromstring("<html><body><div class='partner-box'>x</div><p>Ad here</p><p>kept</p></body></html>")
    prune_boilerplate(tree, cfg.source("outlet").cleaning.drop_selectors)
    assert tree.text_content() == "kept"


@pytest.mark.parametrize(
    "entry", ["not-an-entry", "127.0.0.1:99999", "127.0.0.1:0", "10.0.0.0/33", "[::1", "1.2.3.4:abc", "bad_name:80", ""]
)
def test_malformed_allow_private_entries_are_refused(tmp_path, entry):
    message = _refused(_file(tmp_path, crawl={"allow_private": ["127.0.0.1:8701", entry]}))
    assert "crawl.allow_private" in message and repr(entry.strip()) in message


@pytest.mark.parametrize(
    "entry, why",
    [
        ("0.0.0.0/0", "/0 is broader than /8"),
        ("10.0.0.0/7", "/7 is broader than /8"),
        ("::/0", "/0 is broader than /16"),
        ("169.254.0.0/16", "cloud metadata address 169.254.169.254"),
        ("169.254.169.254", "cloud metadata address 169.254.169.254"),
        ("169.254.169.254:80", "cloud metadata address 169.254.169.254"),
        ("::ffff:0:0/96", "cloud metadata address ::ffff:a9fe:a9fe"),  # IPv4-mapped form
        ("64:ff9b::/96", "cloud metadata address 64:ff9b::a9fe:a9fe"),  # NAT64 form
        ("[fd00:ec2::254]:80", "cloud metadata address fd00:ec2::254"),  # AWS over IPv6
    ],
)
def test_very_broad_allow_private_ranges_need_the_unsafe_switch(tmp_path, entry, why):
    message = _refused(_file(tmp_path, crawl={"allow_private": [entry]}))
    assert "crawl.allow_private" in message and why in message and "allow_private_unsafe: true" in message
    cfg = load_sources(_file(tmp_path, crawl={"allow_private": [entry], "allow_private_unsafe": True}))
    assert cfg.crawl.allow_private == [entry]


@pytest.mark.parametrize(
    "entry", ["10.0.0.0/8", "192.168.1.0/24", "127.0.0.1", "[::1]:8701", "fd12::/16", "intranet:80"]
)
def test_ordinary_allow_private_entries_load(tmp_path, entry):
    assert load_sources(_file(tmp_path, crawl={"allow_private": [entry]})).crawl.allow_private == [entry]


def test_config_and_the_crawl_guard_agree_on_allow_private_entries(tmp_path):
    """What the file accepts, the crawl child's SSRF guard parses too (it used to crash the child)."""
    from spiders.netguard import Allowlist

    accepted = ["10.0.0.0/8", "127.0.0.1", "127.0.0.1:8701", "[::1]:8701", "::1", "0x7f000001:80", "intranet:80"]
    for entry in accepted:
        load_sources(_file(tmp_path, crawl={"allow_private": [entry]}))
    Allowlist.parse(accepted, lookup=lambda host: ["10.9.8.7"])  # raises on an entry it cannot read


@pytest.mark.parametrize(
    "kind, url, shown",
    [
        ("feeds", "http://10.0.0.1/feed.xml", "10.0.0.1:80"),
        ("sitemaps", "https://192.168.1.10/sitemap.xml", "192.168.1.10:443"),
        ("sections", "http://169.254.169.254/latest/meta-data/", "169.254.169.254:80"),
        ("feeds", "http://127.0.0.1:8702/feed/", "127.0.0.1:8702"),  # loopback, port not listed
        ("feeds", "http://0x7f000001:8701/feed/", "127.0.0.1:8701"),  # a legacy spelling of 127.0.0.1
        ("feeds", "http://2130706433:8701/feed/", "127.0.0.1:8701"),
        ("sitemaps", "http://[::1]:8701/s.xml", "[::1]:8701"),
        ("sitemaps", "http://[::ffff:10.0.0.1]/s.xml", "[::ffff:a00:1]:80"),  # IPv4-mapped private address
        ("sections", "http://localhost:8701/", "localhost:8701"),
    ],
)
def test_private_feed_sitemap_and_section_hosts_need_allow_private(tmp_path, kind, url, shown):
    message = _refused(_file(tmp_path, crawl={"allow_private": ["127.0.0.1:8799"]}, **{kind: [FEED, url]}))
    assert f"sources.0.{kind}.1" in message and "crawl.allow_private" in message and f"'{shown}'" in message
    # ... and the entry the message suggests is enough (the metadata address also needs the unsafe switch)
    crawl = {"allow_private": [shown], "allow_private_unsafe": "169.254.169.254" in shown}
    allowed = load_sources(_file(tmp_path, crawl=crawl, **{kind: [FEED, url]}))
    assert getattr(allowed.source("outlet"), kind) == [FEED, url]


def test_private_hosts_covered_by_a_range_or_a_bare_address_load(tmp_path):
    urls = ["http://10.1.2.3:8080/feed", "http://127.0.0.1:9999/feed", "http://[::ffff:10.1.0.1]/feed"]
    cfg = load_sources(_file(tmp_path, crawl={"allow_private": ["10.0.0.0/8", "127.0.0.1"]}, feeds=urls))
    assert cfg.source("outlet").feeds == urls


@pytest.mark.parametrize(
    "url",
    [
        "https://bob:hunter2@news.example.org/feed",
        "https://bob@news.example.org/feed",
        "https://bob:hun%40ter2@news.example.org/feed",
        "http://bob:hunter2@127.0.0.1:8701/feed",
        "https://bob:hun/ter2@news.example.org/feed",  # a '/' in the password: still never echoed
        "https://bob:hunter2@news.example.org:99999/feed",
    ],
)
def test_urls_with_credentials_are_refused_without_echoing_them(tmp_path, url):
    message = _refused(_file(tmp_path, crawl={"allow_private": ["127.0.0.1:8701"]}, sitemaps=[url]))
    assert "sources.0.sitemaps" in message
    assert "hunter2" not in message and "hun" not in message.replace("https://***@", "")
    assert "bob" not in message


def test_validation_errors_never_carry_the_input():
    """Whoever catches the pydantic error itself (not `load_sources`) cannot print the password either."""
    from pydantic import ValidationError

    from pipeline.core.config import SourcesConfig

    with pytest.raises(ValidationError) as err:
        SourcesConfig.model_validate({"sources": [{"name": "a", "feeds": ["https://bob:hunter2@h.example/"]}]})
    assert "hunter2" not in str(err.value) and "hunter2" not in repr(err.value.errors(include_input=False))


def test_committed_sample_config_lists_every_private_port_it_uses():
    """The sample site's file runs on 127.0.0.1: each configured URL's host:port is in allow_private."""
    from pipeline.core.paths import ROOT

    cfg = load_sources(ROOT / "config" / "sources.yaml")
    urls = [u for s in cfg.sources for u in s.feeds + s.sitemaps + s.sections]
    assert urls and all(cfg.crawl.allows(u) for u in urls)
    assert not cfg.crawl.allows("http://127.0.0.1:1/") and not cfg.crawl.allows("http://169.254.169.254/")


# --------------------------------------------------------------------------- secrets in URLs, wherever written


@pytest.mark.parametrize(
    "url, redacted",
    [
        ("https://bob:hunter2@news.example.org/a?id=1", "https://***@news.example.org/a?id=1"),
        ("http://bob@h.example:8080/", "http://***@h.example:8080/"),
        ("http://a@b:c@h.example/", "http://***@h.example/"),
        ("https://h.example/f?token=abc&page=2&api_key=k1", "https://h.example/f?token=***&page=2&api_key=***"),
        ("https://b.s3.example/k?X-Amz-Credential=AKIA%2F1&X-Amz-Signature=ff", None),
        ("https://news.example.org/2026/11/story?utm_source=x", "https://news.example.org/2026/11/story?utm_source=x"),
        ("https://medium.example/@writer/post", "https://medium.example/@writer/post"),  # '@' in the path: kept
        ("not a url", "not a url"),
    ],
)
def test_redact_url(url, redacted):
    from pipeline.text.urls import redact_url

    out = redact_url(url)
    if redacted is None:
        assert "AKIA" not in out and "=ff" not in out and out.startswith("https://b.s3.example/k?X-Amz-Credential=***")
    else:
        assert out == redacted


def test_rejects_rows_never_carry_a_password():
    from pipeline.dataset.rejects import reject

    row = reject(
        "https://bob:hunter2@news.example.org/a",
        "crawl",
        "http_error",
        detail="GET https://bob:hunter2@news.example.org/a -> redirect to http://eve:s3cret@x.example/?token=t0k",
    )
    assert row["url"] == "https://***@news.example.org/a"
    assert "hunter2" not in str(row) and "s3cret" not in str(row) and "t0k" not in str(row)
    assert "x.example" in row["detail"]  # only the secret goes


def test_log_lines_are_redacted():
    import io
    import logging

    from pipeline.text.urls import RedactSecretsFilter

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RedactSecretsFilter())
    logger = logging.getLogger("tests.redaction")
    logger.addHandler(handler)
    try:
        logger.warning("fetching %s failed", "http://bob:hunter2@h.example/feed")
    finally:
        logger.removeHandler(handler)
    assert stream.getvalue() == "fetching http://***@h.example/feed failed\n"
