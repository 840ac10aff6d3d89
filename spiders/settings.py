"""Scrapy settings of the news-ingest project (`scrapy.cfg` points here).

Per-source values (User-Agent, robots, AutoThrottle, per-domain concurrency and delay,
timeouts, size and redirect limits, NEWS_ALLOW_PRIVATE) come from the sources file and
are applied by the `news` spider in `from_crawler`; these are the project defaults.

The SSRF guard's DNS resolver is built from the *process* settings, before any spider
exists, so `NEWS_ALLOW_PRIVATE` must reach it from here: `pipeline.stages.crawl` passes it with
`-s NEWS_ALLOW_PRIVATE=a,b`; a hand-run `scrapy crawl` can also set the environment
variable of the same name (comma-separated host:port or CIDR entries).
"""

from __future__ import annotations

import importlib
import logging
import os

log = logging.getLogger(__name__)

# Scrapy logs at DEBUG (its per-response lines feed `pipeline run`'s progress); botocore would
# then log every hook of every S3 call, about 450 of a crawl's 1,350 log lines.
for _name in ("botocore", "boto3", "s3transfer", "urllib3"):
    logging.getLogger(_name).setLevel(logging.INFO)

BOT_NAME = "news_ingest"
SPIDER_MODULES = ["spiders.spiders"]
NEWSPIDER_MODULE = "spiders.spiders"

# --- politeness (the spider overrides these from the sources file)
USER_AGENT = "news-ingest/0.1 (+https://example.org/news-ingest; ops@example.org)"
ROBOTSTXT_OBEY = True
AUTOTHROTTLE_ENABLED = True
AUTOTHROTTLE_START_DELAY = 1.0
AUTOTHROTTLE_MAX_DELAY = 30.0
AUTOTHROTTLE_TARGET_CONCURRENCY = 2.0
CONCURRENT_REQUESTS = 16
# Scrapy starts this many asyncio workers for EVERY response's output. Our spider yields
# one item or a few requests per response and the archive pipeline is synchronous, so 100
# (the default) only buys task churn: it cost about a quarter of the crawl's CPU in a profile.
CONCURRENT_ITEMS = 8
CONCURRENT_REQUESTS_PER_DOMAIN = 2
DOWNLOAD_DELAY = 1.0
COOKIES_ENABLED = False
TELNETCONSOLE_ENABLED = False
# Scrapy 2.19 also ships a token-protected HTTP "remote control" that runs Python: never on a crawler.
REMOTE_CONTROL_ENABLED = False

# --- limits and hostile input
DOWNLOAD_TIMEOUT = 30
DOWNLOAD_MAXSIZE = 32 * 1024 * 1024  # also bounds the decompressed size (HttpCompressionMiddleware)
DOWNLOAD_WARNSIZE = 16 * 1024 * 1024
REDIRECT_MAX_TIMES = 5
NEWS_MAX_HEADER_BYTES = 64 * 1024  # response headers (DOWNLOAD_MAXSIZE counts only the body)
NEWS_MAX_HEADER_COUNT = 500
NEWS_MAX_SITEMAP_DEPTH = 3  # sitemap-index levels followed below a configured sitemap
RETRY_TIMES = 1  # transient errors once more; Retry-After (429/503) is honoured by its own middleware
METAREFRESH_ENABLED = False

# --- incremental state, archive, report
NEWS_INCREMENTAL = True
NEWS_WARC_MAX_BYTES = 100 * 1024 * 1024  # rotate WARC files at ~100 MiB compressed
NEWS_ALLOW_PRIVATE = [e.strip() for e in os.environ.get("NEWS_ALLOW_PRIVATE", "").split(",") if e.strip()]

ITEM_PIPELINES = {"spiders.pipelines.WarcArchivePipeline": 300}
EXTENSIONS = {"spiders.extensions.CrawlReport": 500, "spiders.extensions.RedactedLogs": 0}

DOWNLOADER_MIDDLEWARES: dict[str, int | None] = {
    # Before robots: an article already stored is skipped without any robots.txt work.
    "spiders.extensions.IncrementalMiddleware": 50,
}
# The same IncrementalMiddleware instance, as a spider middleware: reads the state shards of a
# callback's new requests in one parallel batch (a GET per shard, not per URL at download time).
# Low order: it sees a callback's output last, after the depth and URL-length filters.
SPIDER_MIDDLEWARES: dict[str, int | None] = {"spiders.extensions.IncrementalMiddleware": 40}

# Components the settings above switch off for good. Scrapy 2.19 imports every key of a
# component dict and of its _BASE default, even one set to None, before the component can
# say NotConfigured; so they are left out of the _BASE dicts (Scrapy's own defaults minus
# these, so a Scrapy upgrade's new components still come in):
# - RemoteControl (REMOTE_CONTROL_ENABLED = False): its module imports aiohttp and builds
#   an SSL context, ~120 ms of every crawl's start-up;
# - TelnetConsole (TELNETCONSOLE_ENABLED = False): twisted.conch;
# - CookiesMiddleware (COOKIES_ENABLED = False): tldextract -> requests, chardet, filelock,
#   ~170 modules and ~50 ms.
# Turning one of them back on now takes its key in EXTENSIONS / DOWNLOADER_MIDDLEWARES too.
_SWITCHED_OFF = {
    "scrapy.extensions.remote_control.RemoteControl",
    "scrapy.extensions.telnet.TelnetConsole",
    "scrapy.downloadermiddlewares.cookies.CookiesMiddleware",
}


def _base_without(name: str) -> dict:
    from scrapy.settings import default_settings

    return {k: v for k, v in getattr(default_settings, name).items() if k not in _SWITCHED_OFF}


EXTENSIONS_BASE = _base_without("EXTENSIONS_BASE")
DOWNLOADER_MIDDLEWARES_BASE = _base_without("DOWNLOADER_MIDDLEWARES_BASE")

# Only http(s) and data: URLs pass the SSRF guard (NEWS_ALLOWED_SCHEMES); without handlers
# for the others their modules are not imported at start-up (twisted's FTP client alone is
# ~7 ms), and a file://, ftp:// or s3:// request could not be fetched even if a guard let it by.
DOWNLOAD_HANDLERS = {"file": None, "ftp": None, "s3": None}


#: The crawl's security controls. The settings below always name them, and a crawl whose
#: installation cannot import one refuses to start (fail closed): crawling without the SSRF
#: guard, RFC 9309 robots.txt or the guarded resolver must never be the quiet fallback.
SECURITY_COMPONENTS = (
    "spiders.middlewares.SsrfGuardMiddleware",
    "spiders.middlewares.StrictRobotsTxtMiddleware",
    "spiders.resolver.GuardedResolver",
)
#: Starts the message of a refusal; `pipeline.stages.crawl` finds the reason in the child's log by it.
REFUSAL = "refusing to crawl:"


class SecurityComponentMissing(RuntimeError):
    """A security component of the crawl cannot be imported: the crawl must not start without it."""


def require_components(paths: tuple[str, ...] = SECURITY_COMPONENTS) -> None:
    """Import each `module.Class`; raise SecurityComponentMissing naming every one that fails, and why."""
    missing = []
    for path in paths:
        module, _, name = path.rpartition(".")
        try:
            if not hasattr(importlib.import_module(module), name):
                missing.append(f"{path} ({module} has no {name})")
        except Exception as exc:  # ImportError, or whatever the module raised while importing
            missing.append(f"{path} ({type(exc).__name__}: {exc})")
    if missing:
        raise SecurityComponentMissing(f"{REFUSAL} security component(s) cannot be imported: {'; '.join(missing)}")


# Checked when Scrapy loads these settings, before it builds a crawler or sends a request: the
# traceback ends with the refusal and `scrapy crawl` exits 1.
require_components()

# First of all: a request to a forbidden address never reaches robots or the network.
DOWNLOADER_MIDDLEWARES["spiders.middlewares.SsrfGuardMiddleware"] = 40
# RFC 9309: 5xx / network error on robots.txt means disallow (Scrapy's own allows all).
DOWNLOADER_MIDDLEWARES["scrapy.downloadermiddlewares.robotstxt.RobotsTxtMiddleware"] = None
DOWNLOADER_MIDDLEWARES["spiders.middlewares.StrictRobotsTxtMiddleware"] = 100
DOWNLOADER_MIDDLEWARES["scrapy.downloadermiddlewares.retry.RetryMiddleware"] = None
DOWNLOADER_MIDDLEWARES["spiders.middlewares.RetryAfterMiddleware"] = 550
# `render: js|auto` sources only (NotConfigured otherwise): after redirects, decompression and retries,
# so the browser gets the final page; every request it makes goes back through the guards above.
DOWNLOADER_MIDDLEWARES["spiders.render.RenderMiddleware"] = 540
# Highest order: the first to see a response, before redirects and decompression act on it.
DOWNLOADER_MIDDLEWARES["spiders.middlewares.HeaderLimitMiddleware"] = 950
TWISTED_DNS_RESOLVER = "spiders.resolver.GuardedResolver"
