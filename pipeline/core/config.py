"""Typed configuration: where the bucket is, and which sources to crawl.

Secrets never live in files in the repository: S3 credentials come from the
standard AWS environment variables, an Airflow Connection, or (for the
embedded SeaweedFS only) the git-ignored identity file that ``s3 up`` writes.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import socket
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
)

from pipeline.core.errors import ConfigError
from pipeline.core.paths import default_sources_path, var_dir

__all__ = ["ConfigError", "S3Settings", "SourcesConfig", "Source", "CrawlSettings", "CleaningRules", "load_sources"]

DEFAULT_BUCKET = "news"
#: The embedded SeaweedFS's S3 port when it is free (`pipeline.runtime.s3server` falls back to a free one).
DEFAULT_S3_PORT = 8333
BUCKET_ENV = "NEWS_INGEST_BUCKET"


class S3Settings(BaseModel):
    """How to reach the bucket. ``endpoint_url=None`` means AWS itself."""

    model_config = ConfigDict(frozen=True)

    endpoint_url: str | None = None
    access_key_id: str | None = Field(default=None, repr=False)
    secret_access_key: str | None = Field(default=None, repr=False)
    #: With temporary credentials (an assumed IAM role): their session token.
    session_token: str | None = Field(default=None, repr=False)
    bucket: str = DEFAULT_BUCKET
    region: str = "us-east-1"

    def __str__(self) -> str:  # never print the secret
        return f"s3://{self.bucket} at {self.endpoint_url or 'AWS'}"

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> S3Settings:
        """Standard AWS names plus ``NEWS_INGEST_BUCKET``; the embedded server when no endpoint is set."""
        env = dict(os.environ if env is None else env)
        endpoint = env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL")
        key = env.get("AWS_ACCESS_KEY_ID")
        secret = env.get("AWS_SECRET_ACCESS_KEY")
        if not endpoint:
            embedded = embedded_server_info()
            if embedded is not None:
                endpoint = embedded["endpoint_url"]
                key = key or embedded["access_key_id"]
                secret = secret or embedded["secret_access_key"]
            else:
                # Not started yet: point at where `s3 up` will put it, so the
                # error a user sees names the endpoint we tried.
                endpoint = f"http://127.0.0.1:{DEFAULT_S3_PORT}"
        return cls(
            endpoint_url=endpoint,
            access_key_id=key,
            secret_access_key=secret,
            session_token=env.get("AWS_SESSION_TOKEN") or None,
            bucket=env.get(BUCKET_ENV, DEFAULT_BUCKET),
            region=env.get("AWS_DEFAULT_REGION") or env.get("AWS_REGION") or "us-east-1",
        )

    def aws_env(self) -> dict[str, str]:
        """Endpoint and credentials under their `AWS_*` names, the ones set: what both boto3 (in a child
        process's environment) and deltalake's object_store (as storage options) read."""
        named = {
            "AWS_ENDPOINT_URL": self.endpoint_url,
            "AWS_ACCESS_KEY_ID": self.access_key_id,
            "AWS_SECRET_ACCESS_KEY": self.secret_access_key,
            "AWS_SESSION_TOKEN": self.session_token,
        }
        return {k: v for k, v in named.items() if v}

    def as_env(self) -> dict[str, str]:
        """The same settings as environment variables, for child processes (Scrapy)."""
        return {BUCKET_ENV: self.bucket, "AWS_DEFAULT_REGION": self.region, **self.aws_env()}


def embedded_server_info_path() -> Path:
    """Where `s3 up` records the embedded server's ports and identity (git-ignored, mode 600)."""
    return var_dir() / "s3" / "server.json"


def embedded_server_info() -> dict[str, Any] | None:
    """Endpoint and identity of the embedded SeaweedFS, if `s3 up` has run here."""
    path = embedded_server_info_path()
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


# --------------------------------------------------------------------------- sources


def _check_regexes(value: list[str]) -> list[str]:
    for pattern in value:
        try:
            re.compile(pattern)
        except re.error as exc:
            raise ValueError(f"bad regular expression {pattern!r}: {exc}") from exc
    return value


#: A list of regular expressions, each checked to compile when the file is loaded.
RegexList = Annotated[list[str], AfterValidator(_check_regexes)]


def _check_selectors(value: list[str]) -> list[str]:
    """Each CSS selector compiles the way `pipeline.stages.extract` uses it (`tree.cssselect`)."""
    from cssselect import SelectorError
    from lxml import etree
    from lxml.cssselect import CSSSelector

    for selector in value:
        try:
            CSSSelector(selector, translator="html")
        except (SelectorError, etree.XPathError, ValueError) as exc:
            raise ValueError(f"bad CSS selector {selector!r}: {exc}") from None
    return value


#: A list of CSS selectors, each checked to compile when the file is loaded.
SelectorList = Annotated[list[str], AfterValidator(_check_selectors)]


# --------------------------------------------------------------------------- addresses
#
# The crawl's SSRF guard (`spiders.netguard`) is the authority at fetch time, on resolved addresses.
# These checks only refuse up front what the file itself states: a malformed or over-broad
# `allow_private` entry, and a configured URL whose host is a private address literal (or localhost)
# that the allowlist does not cover. Host names are not resolved here.

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

#: Cloud metadata services, in every form the guard also matches (IPv4-mapped, NAT64, 6to4, AWS IPv6).
METADATA_ADDRESSES = tuple(
    ipaddress.ip_address(a)
    for a in ("169.254.169.254", "::ffff:169.254.169.254", "64:ff9b::a9fe:a9fe", "2002:a9fe:a9fe::", "fd00:ec2::254")
)
NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
#: An allowlist network shorter than this prefix is "very broad": refused without `allow_private_unsafe`.
MIN_PREFIX = {4: 8, 6: 16}
_LEGACY_V4 = re.compile(r"^(?:0x[0-9a-f]*|[0-9]+)(?:\.(?:0x[0-9a-f]*|[0-9]+)){0,3}$", re.I)
_HOST_NAME = re.compile(
    r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*\.?$", re.I
)


def ip_literal(host: str) -> IPAddress | None:
    """The address a URL host denotes when it is an IP literal in any form the resolver accepts
    (also 127.1, 0x7f000001, 2130706433, 0177.0.0.1), else None. The crawl's SSRF guard uses it too (`spiders.netguard.parse_ip_literal`)."""
    host = host.strip().lower().removeprefix("[").removesuffix("]")
    if host.endswith(".") and not host.endswith(".."):
        host = host[:-1]
    if not host:
        return None
    try:
        return ipaddress.ip_address(host.split("%", 1)[0] if ":" in host else host)
    except ValueError:
        pass
    if _LEGACY_V4.match(host):
        try:
            return ipaddress.IPv4Address(socket.inet_aton(host))
        except OSError:
            return None
    return None


def _embedded_v4(ip: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one carries (mapped, NAT64, 6to4), if any."""
    if not isinstance(ip, ipaddress.IPv6Address):
        return None
    nat64 = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF) if ip in NAT64 else None
    return ip.ipv4_mapped or nat64 or ip.sixtofour


def _is_public(ip: IPAddress) -> bool:
    """A global unicast address; an IPv6 one carrying IPv4 is judged by that IPv4 (as the guard does)."""
    ip = _embedded_v4(ip) or ip
    return ip.is_global and not ip.is_multicast


def parse_allow_entry(entry: str) -> tuple[IPNetwork | None, str | None, int | None]:
    """An `allow_private` entry as (network, host name, port): "10.1.0.0/16", "127.0.0.1" (any port),
    "127.0.0.1:8701", "[::1]:8701" or "name:8701" (a host name needs its port). ValueError if malformed."""
    entry = entry.strip()
    if "/" in entry:
        try:
            return ipaddress.ip_network(entry, strict=False), None, None
        except ValueError as exc:
            raise ValueError(f"{entry!r} is not a CIDR range ({exc})") from None
    if entry.startswith("["):
        host, sep, rest = entry[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            raise ValueError(f"{entry!r}: expected [IPv6] or [IPv6]:port")
        port_text: str | None = rest[1:] if rest else None
    elif entry.count(":") == 1:
        host, port_text = entry.split(":")
    else:
        host, port_text = entry, None
    port = None
    if port_text is not None:
        if not port_text.isdigit() or not 0 < int(port_text) < 65536:
            raise ValueError(f"{entry!r}: port must be 1-65535")
        port = int(port_text)
    ip = ip_literal(host)
    if ip is not None:
        return ipaddress.ip_network(ip), None, port
    if port is None or not _HOST_NAME.match(host):
        raise ValueError(f"{entry!r} is not an IP address, CIDR range, IP:port or host:port")
    return None, host.lower().rstrip("."), port


def _too_broad(network: IPNetwork) -> str | None:
    """Why allowing `network` would open too much, or None."""
    if network.prefixlen < MIN_PREFIX[network.version]:
        return f"/{network.prefixlen} is broader than /{MIN_PREFIX[network.version]}"
    hit = next((a for a in METADATA_ADDRESSES if a.version == network.version and a in network), None)
    return f"it covers the cloud metadata address {hit}" if hit else None


def _url_host_port(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    return (parts.hostname or ""), parts.port or (443 if parts.scheme == "https" else 80)


def _shown(url: str) -> str:
    """`url` as an error message may show it: everything from the scheme to its last '@' hidden, so no
    spelling of a password (even one holding '/' or '?') is ever echoed."""
    return re.sub(r"^([a-z][a-z0-9+.-]*://).*@", r"\1***@", url, flags=re.I | re.S)


def _check_url(url: str) -> str:
    """An http(s) URL without credentials and with a valid port; ValueError otherwise."""
    if not re.match(r"^https?://[^/\s]+", url):
        raise ValueError(f"not an http(s) URL: {_shown(url)!r}")
    try:
        parts = urlsplit(url)
        _ = parts.port  # raises ValueError for a port out of range
    except ValueError as exc:
        why = exc if "@" not in url else "bad port or host"  # the parser's message may quote a password
        raise ValueError(f"malformed URL {_shown(url)!r}: {why}") from None
    if "@" in parts.netloc:
        raise ValueError(
            f"credentials (user:password@) in URL {_shown(url)!r}: not allowed in the sources file "
            "(they would be sent to every host the crawl reaches and written to logs)"
        )
    if not parts.hostname:
        raise ValueError(f"no host in URL {_shown(url)!r}")
    return url


def _check_zone(value: str | None) -> str | None:
    """An IANA time zone name, or a ValueError naming it."""
    if value is None:
        return None
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown time zone {value!r} (an IANA name such as 'Europe/Berlin')") from exc
    return value


class CleaningRules(BaseModel):
    """Per-source extra cleaning rules, applied after the built-in ones (no code needed)."""

    model_config = ConfigDict(extra="forbid")

    #: Regular expressions; a line (paragraph) matching one is removed.
    drop_lines: RegexList = Field(default_factory=list)
    #: Regular expressions; the paragraph matching one and everything after it is removed.
    truncate_after: RegexList = Field(default_factory=list)
    #: CSS selectors removed from the HTML before extraction (checked to compile when the file is loaded).
    drop_selectors: SelectorList = Field(default_factory=list)
    #: Built-in rules turned off for this source, by the name they carry in an article's `removed`
    #: (e.g. "html:widget:paywall") or by a prefix of it ("html:widget"); also
    #: "trafilatura:favor_precision" (extract in trafilatura's balanced mode), "safety_net" and "page_type"
    #: (store every page with text, whatever its type).
    disable: list[str] = Field(default_factory=list)
    #: IANA time zone of a page time stated without an offset; filled from the source's `timezone`.
    timezone: str | None = None

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str | None) -> str | None:
        return _check_zone(value)

    def disables(self, rule: str) -> bool:
        """Is the built-in rule `rule` (or a family it belongs to) turned off?"""
        return any(rule == d or rule.startswith(d + ":") for d in self.disable)


class HealthThresholds(BaseModel):
    """When a source's run counts as `degraded` (`pipeline.report.health`); unreachable is always `failed`."""

    model_config = ConfigDict(extra="forbid")

    #: Degraded above this share of requests ending in an HTTP 5xx / 429 or a network error.
    max_error_rate: float = Field(default=0.2, ge=0, le=1)
    #: Degraded when the run kept fewer articles than this share of the source's median over recent runs.
    min_yield_ratio: float = Field(default=0.3, ge=0, le=1)
    #: How many recent runs (that kept articles) the median is taken over; fewer than `min_history`: no judgement.
    history_runs: int = Field(default=10, ge=1, le=100)
    min_history: int = Field(default=3, ge=1, le=100)


class Source(BaseModel):
    """One outlet: how to discover its articles and how politely to fetch them."""

    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$")
    feeds: list[str] = Field(default_factory=list)
    sitemaps: list[str] = Field(default_factory=list)
    #: Section / front pages, followed to `depth` with `allow` / `deny` URL regexes.
    sections: list[str] = Field(default_factory=list)
    #: Also discover the sitemaps announced in robots.txt of these hosts.
    robots_sitemaps: bool = False
    allow: RegexList = Field(default_factory=list)
    deny: RegexList = Field(default_factory=list)
    depth: int = Field(default=1, ge=0, le=5)
    #: Ignore sitemap/feed entries published longer ago than this (days); 0 = no cutoff.
    max_age_days: float = Field(default=3.0, ge=0)
    concurrency: int = Field(default=2, ge=1, le=16)
    delay: float = Field(default=1.0, ge=0)
    #: Revisit stored articles younger than this many hours (conditional GET); 0 = never.
    revisit_hours: float = Field(default=0, ge=0)
    language: str | None = None
    #: IANA time zone (e.g. "Europe/Berlin") of page times stated without an offset; without it such a
    #: time is kept as a day only, never given an invented zone.
    timezone: str | None = None
    cleaning: CleaningRules = Field(default_factory=CleaningRules)
    health: HealthThresholds = Field(default_factory=HealthThresholds)
    #: The outlet's home page: its `<link rel=alternate>` feeds and its robots.txt sitemaps are discovered
    #: at crawl time (the home page is also crawled as a section page).
    home: str | None = None
    #: "js": fetch article and section pages, then render them in headless Chromium behind the same guards;
    #: "auto": render only a page whose HTML is an app shell with too little text; "off": never.
    render: Literal["off", "js", "auto"] = "off"
    #: Regular expressions: only a page whose URL matches one (`re.search`) is rendered; empty: every page
    #: of the source. Needs `render: js` or `auto` (declared after `render`, whose value its check reads).
    render_patterns: RegexList = Field(default_factory=list)

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str | None) -> str | None:
        return _check_zone(value)

    @field_validator("feeds", "sitemaps", "sections")
    @classmethod
    def _http_urls(cls, value: list[str]) -> list[str]:
        return [_check_url(url) for url in value]

    @field_validator("home")
    @classmethod
    def _home_url(cls, value: str | None) -> str | None:
        return None if value is None else _check_url(value)

    @field_validator("render_patterns")
    @classmethod
    def _render_patterns(cls, value: list[str], info: ValidationInfo) -> list[str]:
        if value and info.data.get("render", "off") == "off":
            raise ValueError("render_patterns needs render: js or render: auto (with render: off nothing is rendered)")
        return value


class CrawlSettings(BaseModel):
    """Crawl-wide settings (per-source ones live on `Source`)."""

    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

    user_agent: str = "news-ingest/0.1 (+https://example.org/news-ingest; ops@example.org)"
    #: Let `allow_private` hold very broad ranges (shorter than /8 IPv4, /16 IPv6) or the cloud metadata
    #: address. Declared before `allow_private`, whose check reads it.
    allow_private_unsafe: bool = False
    #: IP:port, [IPv6]:port, host:port, IP or CIDR entries the SSRF guard lets through (e.g. a local
    #: sample site); a configured feed/sitemap/section URL on a private address must be covered here.
    allow_private: list[str] = Field(default_factory=list)
    download_timeout: float = Field(default=30, gt=0)
    max_page_bytes: int = Field(default=32 * 1024 * 1024, gt=0)
    max_redirects: int = Field(default=5, ge=0)
    #: Response header limit (names, values and line ends summed); a response over it is a reject.
    max_header_bytes: int = Field(default=64 * 1024, gt=0)
    #: Sitemap-index nesting followed below a configured sitemap; deeper ones are rejects.
    max_sitemap_depth: int = Field(default=3, ge=0, le=10)
    autothrottle: bool = True
    obey_robots: bool = True

    @field_validator("allow_private")
    @classmethod
    def _allow_entries(cls, value: list[str], info: ValidationInfo) -> list[str]:
        unsafe = info.data.get("allow_private_unsafe", False)
        for index, entry in enumerate(value):
            network, _, _ = parse_allow_entry(entry)  # ValueError names the entry
            why = _too_broad(network) if network is not None and not unsafe else None
            if why:
                raise ValueError(
                    f"entry {index} {entry!r} is too broad: {why} (set crawl.allow_private_unsafe: true "
                    "if you really mean it)"
                )
        return value

    def allows(self, url: str) -> bool:
        """Does `allow_private` cover the host and port of `url` (an IP literal or a host name entry)?"""
        host, port = _url_host_port(url)
        ip = ip_literal(host)
        if host.lower() == "localhost" or host.lower().endswith(".localhost"):
            ip = ipaddress.ip_address("127.0.0.1")
        candidates = [a for a in (ip, ip and _embedded_v4(ip)) if a is not None]
        for entry in self.allow_private:
            network, name, entry_port = parse_allow_entry(entry)
            if entry_port not in (None, port):
                continue
            if name is not None and name == host.lower().rstrip("."):
                return True
            if network is not None and any(a.version == network.version and a in network for a in candidates):
                return True
        return False


class SourcesConfig(BaseModel):
    """The whole sources file."""

    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

    crawl: CrawlSettings = Field(default_factory=CrawlSettings)
    sources: list[Source] = Field(min_length=1)

    @field_validator("sources")
    @classmethod
    def _unique_names(cls, value: list[Source]) -> list[Source]:
        names = [s.name for s in value]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"duplicate source names: {', '.join(dupes)}")
        return value

    @field_validator("sources")
    @classmethod
    def _private_hosts_allowed(cls, value: list[Source], info: ValidationInfo) -> list[Source]:
        """A feed, sitemap or section on a private, loopback or link-local address is refused now,
        not at crawl time, unless `crawl.allow_private` covers its host and port."""
        crawl = info.data.get("crawl")
        if crawl is None:  # crawl: itself is invalid and reported as such
            return value
        for i, src in enumerate(value):
            for kind in ("feeds", "sitemaps", "sections"):
                for j, url in enumerate(getattr(src, kind)):
                    host, port = _url_host_port(url)
                    ip = ip_literal(host)
                    local = host == "localhost" or host.endswith(".localhost")
                    if (local or (ip is not None and not _is_public(ip))) and not crawl.allows(url):
                        shown = host if ip is None else str(ip) if ip.version == 4 else f"[{ip}]"
                        raise ValueError(
                            f"sources.{i}.{kind}.{j}: {url!r} is on a non-public address ({host}): add "
                            f"'{shown}:{port}' to crawl.allow_private to crawl it"
                        )
        return value

    def source(self, name: str) -> Source:
        for src in self.sources:
            if src.name == name:
                return src
        raise ConfigError(f"no source named {name!r} (have: {', '.join(s.name for s in self.sources)})")

    def cleaning_rules(self) -> dict[str, CleaningRules | None]:
        """source name -> its cleaning rules (None: the built-in rules only), with the source's `timezone`."""
        return {
            s.name: s.cleaning.model_copy(update={"timezone": s.timezone}) if s.timezone else s.cleaning
            for s in self.sources
        }

    def languages(self) -> dict[str, str | None]:
        """source name -> its configured language (ISO 639-1), or None."""
        return {s.name: s.language for s in self.sources}


def load_sources(path: str | Path | None = None) -> SourcesConfig:
    """Read and validate a sources file; a bad file raises ConfigError naming the field."""
    path = Path(path) if path else default_sources_path()
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read sources file {path}: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping with a 'sources' list")
    try:
        return SourcesConfig.model_validate(raw)
    except ValidationError as exc:
        # Only the location and message: the input value (a URL with a password) is never echoed.
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg'].removeprefix('Value error, ')}"
            for err in exc.errors(include_input=False)
        )
        raise ConfigError(f"{path}: {problems}") from None
