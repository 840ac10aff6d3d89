"""Typed configuration: where the bucket is, and which sources to crawl.

Secrets never live in files in the repository: S3 credentials come from the
standard AWS environment variables, an Airflow Connection, or (for the
embedded SeaweedFS only) the git-ignored identity file that ``s3 up`` writes.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator

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
            bucket=env.get(BUCKET_ENV, DEFAULT_BUCKET),
            region=env.get("AWS_DEFAULT_REGION") or env.get("AWS_REGION") or "us-east-1",
        )

    def as_env(self) -> dict[str, str]:
        """The same settings as environment variables, for child processes (Scrapy)."""
        out = {BUCKET_ENV: self.bucket, "AWS_DEFAULT_REGION": self.region}
        if self.endpoint_url:
            out["AWS_ENDPOINT_URL"] = self.endpoint_url
        if self.access_key_id:
            out["AWS_ACCESS_KEY_ID"] = self.access_key_id
        if self.secret_access_key:
            out["AWS_SECRET_ACCESS_KEY"] = self.secret_access_key
        return out


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
    #: CSS selectors removed from the HTML before extraction.
    drop_selectors: list[str] = Field(default_factory=list)
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


class Source(BaseModel):
    """One outlet: how to discover its articles and how politely to fetch them."""

    model_config = ConfigDict(extra="forbid")

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

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str | None) -> str | None:
        return _check_zone(value)

    @field_validator("feeds", "sitemaps", "sections")
    @classmethod
    def _http_urls(cls, value: list[str]) -> list[str]:
        for url in value:
            if not re.match(r"^https?://[^/\s]+", url):
                raise ValueError(f"not an http(s) URL: {url!r}")
        return value


class CrawlSettings(BaseModel):
    """Crawl-wide settings (per-source ones live on `Source`)."""

    model_config = ConfigDict(extra="forbid")

    user_agent: str = "news-ingest/0.1 (+https://example.org/news-ingest; ops@example.org)"
    #: host:port or CIDR entries the SSRF guard lets through (e.g. a local sample site).
    allow_private: list[str] = Field(default_factory=list)
    download_timeout: float = Field(default=30, gt=0)
    max_page_bytes: int = Field(default=32 * 1024 * 1024, gt=0)
    max_redirects: int = Field(default=5, ge=0)
    autothrottle: bool = True
    obey_robots: bool = True


class SourcesConfig(BaseModel):
    """The whole sources file."""

    model_config = ConfigDict(extra="forbid")

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
        problems = "; ".join(f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors())
        raise ConfigError(f"{path}: {problems}") from exc
