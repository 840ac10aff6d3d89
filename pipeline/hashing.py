"""Content hashes and article ids, shared by the clean, dedupe and store stages."""

from __future__ import annotations

import hashlib
import re
import unicodedata

# Quote and dash variants folded before hashing, so "smart" and straight quotes hash alike.
_FOLD = str.maketrans({
    "\u2018": "'", "\u2019": "'", "\u201a": "'", "\u201b": "'", "\u2032": "'",
    "\u201c": '"', "\u201d": '"', "\u201e": '"', "\u201f": '"', "\u2033": '"',
    "\u00ab": '"', "\u00bb": '"', "\u2013": "-", "\u2014": "-", "\u2212": "-",
})
_NON_WORD = re.compile(r"[\W_]+", re.UNICODE)


def normalise_for_hash(text: str) -> str:
    """Case, whitespace, punctuation and quote style folded away; letters and digits kept."""
    text = unicodedata.normalize("NFKC", text).translate(_FOLD).casefold()
    return " ".join(_NON_WORD.sub(" ", text).split())


def content_hash(text: str) -> str:
    """sha256 hex of the normalised text: equal for exact duplicates (`dup_kind='exact'`)."""
    return hashlib.sha256(normalise_for_hash(text).encode("utf-8")).hexdigest()


def article_id(canonical_url: str, text_hash: str) -> str:
    """Stable id of one version of one article: the same URL and text give the same id on every run."""
    return hashlib.sha256(f"{canonical_url}\n{text_hash}".encode("utf-8")).hexdigest()[:24]
