"""Bytes of a page to text, trusting the bytes over a declaration they contradict.

Scrapy (w3lib) decodes by the BOM, then the HTTP Content-Type charset, then `<meta charset>`, and
replaces what the chosen codec cannot decode with U+FFFD. A page that declares ISO-8859-1 but is
written in UTF-8 (a common CMS misconfiguration) then loses every curly quote and dash for good:
in cp1252, which browsers and w3lib use for ISO-8859-1, the third byte of U+201D (E2 80 9D) is
undefined. Non-ASCII bytes that form valid UTF-8 are UTF-8 with near certainty (text in a legacy
8-bit code almost never happens to), so that check comes first; charset-normalizer guesses for
bytes that are neither valid UTF-8 nor cleanly decodable as declared.
"""

from __future__ import annotations

import codecs

from w3lib.encoding import html_to_unicode, read_bom

__all__ = ["decode_html"]

#: Codecs a declaration may name that are not ASCII-compatible byte streams (the BOM or w3lib handles them).
_WIDE = ("utf-16", "utf-32", "utf_16", "utf_32")


def decode_html(content_type: str | None, body: bytes) -> str:
    """The text of an HTML body: BOM first, then UTF-8 when the bytes are valid UTF-8, then the
    declared charset (w3lib, as Scrapy), then charset-normalizer when the declared one leaves U+FFFD
    that the bytes do not hold. Never raises on bad bytes."""
    bom, _ = read_bom(body)
    encoding, text = html_to_unicode(content_type, body)
    if bom or codecs.lookup(encoding).name.startswith(_WIDE):
        return text
    if not body.isascii():
        try:
            return body.decode("utf-8")
        except UnicodeDecodeError:
            pass
    # A page declared UTF-8 with a stray legacy byte keeps its UTF-8 (one U+FFFD, nothing else lost).
    if "\ufffd" in text and b"\xef\xbf\xbd" not in body and codecs.lookup(encoding).name != "utf-8":
        from charset_normalizer import from_bytes

        best = from_bytes(body).best()
        if best is not None and "\ufffd" not in str(best):
            return str(best)
    return text
