"""Content hashes and article ids, shared by the clean, dedupe and store stages."""

from __future__ import annotations

import hashlib
import re
import unicodedata

# Quote and dash variants folded before hashing, so "smart" and straight quotes hash alike.
_FOLD = str.maketrans(
    {
        "\u2018": "'",
        "\u2019": "'",
        "\u201a": "'",
        "\u201b": "'",
        "\u2032": "'",
        "\u201c": '"',
        "\u201d": '"',
        "\u201e": '"',
        "\u201f": '"',
        "\u2033": '"',
        "\u00ab": '"',
        "\u00bb": '"',
        "\u2013": "-",
        "\u2014": "-",
        "\u2212": "-",
    }
)
_NON_WORD = re.compile(r"[\W_]+", re.UNICODE)


def normalise_for_hash(text: str) -> str:
    """Case, whitespace, punctuation and quote style folded away; letters and digits kept."""
    text = unicodedata.normalize("NFKC", text).translate(_FOLD).casefold()
    return " ".join(_NON_WORD.sub(" ", text).split())


# Byte table for the ASCII fast path of normalise_for_hash: letters lower-cased, digits kept, all else a space.
_ASCII_TABLE = bytes(c + 32 if 65 <= c <= 90 else c if (48 <= c <= 57 or 97 <= c <= 122) else 32 for c in range(256))


def normalised_bytes(text: str, *, collapse: bool = True) -> bytes:
    """``pipeline.text.hashing.normalise_for_hash(text).encode()``, fast for text that is ASCII after folding.

    The regular expression in normalise_for_hash costs ~100 ns a character; for
    ASCII, one `bytes.translate` gives the same result (a test checks equality).
    With ``collapse=False`` runs of spaces are left in (enough for shingling, which
    skips empty words, and cheaper: the content hash is the only user of the exact form).
    """
    if text.isascii():  # NFKC, the quote folding and casefold change nothing that the table does not
        out = text.encode("ascii").translate(_ASCII_TABLE)
        return b" ".join(out.split()) if collapse else out
    folded = unicodedata.normalize("NFKC", text).translate(_FOLD).casefold()
    if folded.isascii():
        out = folded.encode("ascii").translate(_ASCII_TABLE)
        return b" ".join(out.split()) if collapse else out
    return " ".join(_NON_WORD.sub(" ", folded).split()).encode("utf-8")


def content_hash(text: str) -> str:
    """sha256 hex of the normalised text: equal for exact duplicates (`dup_kind='exact'`)."""
    return hashlib.sha256(normalised_bytes(text)).hexdigest()


def article_id(canonical_url: str, text_hash: str) -> str:
    """Stable id of one version of one article: the same URL and text give the same id on every run."""
    return hashlib.sha256(f"{canonical_url}\n{text_hash}".encode()).hexdigest()[:24]
