"""URL canonicalisation: one spelling per article URL, for dedupe, seen-state and request fingerprints.

courlan strips the known tracking parameters (utm_*, fbclid, gclid, ...), lower-cases the
host and drops default ports; w3lib then sorts the query, normalises percent-encoding and
drops the fragment. The explicit tracker check below is a belt-and-braces guard so the
documented parameters are always removed whatever courlan's list holds.
"""

from __future__ import annotations

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
