"""URL canonicalisation: one spelling per article URL, for dedupe, seen-state and request fingerprints.

courlan strips the known tracking parameters (utm_*, fbclid, gclid, ...), lower-cases the
host and drops default ports; w3lib then sorts the query, normalises percent-encoding and
drops the fragment. The explicit tracker check below is a belt-and-braces guard so the
documented parameters are always removed whatever courlan's list holds.

`redact_url` / `redact_secrets` hide the credentials a URL can carry (``user:password@``, token
parameters) wherever a URL is written: rejects, logs, error messages.
"""

from __future__ import annotations

import logging
import re
from urllib.parse import SplitResult, parse_qsl, urlencode, urljoin, urlsplit, urlunsplit

from courlan import normalize_url
from w3lib.url import canonicalize_url

#: Query parameters that only track the visitor; never part of an article's identity.
TRACKING_PARAM = re.compile(r"^(utm_[a-z0-9_]*|fbclid|gclid|dclid|msclkid|mc_cid|mc_eid|_ga|igshid)$", re.I)


def split_url(url: str) -> SplitResult:
    """`urlsplit`, or an empty result for a malformed URL (a broken IPv6 literal raises in urlsplit): page
    analysis reads URL shape as one signal among many and must not fail on it."""
    try:
        return urlsplit(url)
    except ValueError:
        return SplitResult("", "", "", "", "")


def _strip_trackers(url: str) -> str:
    parts = urlsplit(url)
    if not parts.query:
        return url
    kept = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if not TRACKING_PARAM.match(k)]
    return urlunsplit(parts._replace(query=urlencode(kept)))


def canonicalize(url: str) -> str:
    """The canonical spelling of an http(s) URL: no trackers, no fragment, sorted query, lower-case host."""
    url = url.strip()
    try:
        normalised = normalize_url(url)
    except ValueError:
        normalised = url  # courlan refuses some odd-but-valid URLs; w3lib alone still normalises them
    return canonicalize_url(_strip_trackers(normalised), keep_fragments=False)


def absolute(base: str, href: str | None) -> str | None:
    """`href` resolved against `base` when it is an http(s) URL, else None."""
    if not href:
        return None
    url = urljoin(base, href.strip())
    return url if urlsplit(url).scheme in ("http", "https") else None


def same_site(a: str, b: str) -> bool:
    """Same host (port ignored, case-insensitive)."""
    return (urlsplit(a).hostname or "").lower() == (urlsplit(b).hostname or "").lower()


def robots_url(url: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "/robots.txt", "", ""))


# --------------------------------------------------------------------------- secrets in URLs

#: Query parameters whose value is a credential (presigned S3 URLs, API keys, tokens): never written out.
SECRET_PARAM = re.compile(
    r"^(password|passwd|pwd|secret|client_secret|token|access_token|auth|api_?key|"
    r"x-amz-(credential|signature|security-token))$",
    re.I,
)
#: URLs inside free text (log lines, error details): scheme, then everything up to a space or a quote.
_URL_IN_TEXT = re.compile(r"""\b[a-z][a-z0-9+.-]*://[^\s"'<>]+""", re.I)
REDACTED = "***"


def redact_url(url: str) -> str:
    """`url` with its secrets replaced by ``***``: the userinfo (``user:password@``) and the values of
    credential query parameters (`SECRET_PARAM`). Anything else, even a malformed URL, is kept as it is."""
    if not isinstance(url, str) or ("@" not in url and "=" not in url):
        return url
    try:
        parts = urlsplit(url)
    except ValueError:  # a broken IPv6 literal: still hide whatever precedes an '@' in the authority
        return re.sub(r"^([^:/]*://)[^/@]*@", rf"\1{REDACTED}@", url)
    netloc = parts.netloc
    if "@" in netloc:
        netloc = f"{REDACTED}@{netloc.rpartition('@')[2]}"
    query = parts.query
    if query:
        # Token by token, so the rest of the query keeps its exact spelling (order, encoding).
        query = "&".join(
            f"{name}={REDACTED}" if sep and SECRET_PARAM.match(name) else f"{name}{sep}{value}"
            for name, sep, value in (pair.partition("=") for pair in query.split("&"))
        )
    if netloc == parts.netloc and query == parts.query:
        return url
    return urlunsplit(parts._replace(netloc=netloc, query=query))


def redact_secrets(text: str) -> str:
    """Free text (a log line, an error message) with `redact_url` applied to every URL in it."""
    if not isinstance(text, str) or "://" not in text:
        return text
    return _URL_IN_TEXT.sub(lambda m: redact_url(m.group(0)), text)


class RedactSecretsFilter(logging.Filter):
    """A logging filter that passes every record with `redact_secrets` applied to its message.

    Attach it to a *handler* (a logger's filters do not see records propagated from its children).
    """

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a bad format string: logging reports it itself, on emit
            return True
        redacted = redact_secrets(message)
        if redacted != message:
            record.msg, record.args = redacted, ()
        return True
