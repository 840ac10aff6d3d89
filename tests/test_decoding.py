"""Page bytes to text (`pipeline.text.decoding.decode_html`): the bytes win over a declaration they contradict."""

from __future__ import annotations

from w3lib.encoding import html_to_unicode

from pipeline.text.decoding import decode_html

QUOTED = "<html><head><meta charset='{cs}'></head><body><p>He said \u201cthe caf\u00e9 stays open\u201d \u2014 twice.</p></body></html>"


def test_utf8_bytes_declared_iso_8859_1_keep_their_curly_quotes():
    body = QUOTED.format(cs="ISO-8859-1").encode("utf-8")
    # what Scrapy's own decoding gives: cp1252 cannot decode 0x9D, the closing quote is gone for good
    assert "\ufffd" in html_to_unicode("text/html; charset=ISO-8859-1", body)[1]
    text = decode_html("text/html; charset=ISO-8859-1", body)
    assert "\u201cthe caf\u00e9 stays open\u201d \u2014 twice." in text and "\ufffd" not in text


def test_real_latin1_stays_latin1():
    body = QUOTED.format(cs="ISO-8859-1").replace("\u201c", '"').replace("\u201d", '"').replace("\u2014", "-")
    text = decode_html("text/html; charset=ISO-8859-1", body.encode("latin-1"))
    assert 'He said "the caf\u00e9 stays open" - twice.' in text


def test_cp1252_quotes_declared_cp1252():
    body = QUOTED.format(cs="windows-1252").encode("cp1252")
    assert "\u201cthe caf\u00e9 stays open\u201d \u2014 twice." in decode_html(None, body)


def test_utf8_page_with_one_stray_legacy_byte_keeps_the_rest():
    body = QUOTED.format(cs="utf-8").encode("utf-8") + "<p>Le caf\u00e9 du port.</p>".encode("cp1252")
    text = decode_html("text/html; charset=utf-8", body)
    assert "\u201cthe caf\u00e9 stays open\u201d" in text  # not re-guessed as a legacy code page
    assert "Le caf\ufffd du port." in text


def test_undeclared_legacy_page_with_undefined_bytes_is_guessed_from_the_bytes():
    # Serbian Cyrillic in windows-1251 declared as ISO-8859-1: its "ђ" is byte 0x90, undefined in cp1252
    words = "Ђорђе Ђурђевић је рекао да ће градски савет усвојити нови буџет после дуге расправе. " * 4
    body = f"<html><body><p>{words}</p></body></html>".encode("cp1251")
    assert "\ufffd" in html_to_unicode("text/html; charset=ISO-8859-1", body)[1]
    text = decode_html("text/html; charset=ISO-8859-1", body)
    assert "\ufffd" not in text and "Ђурђевић" in text


def test_byte_order_mark_wins():
    body = "\ufeff<p>caf\u00e9</p>".encode("utf-16-le")
    assert "<p>caf\u00e9</p>" in decode_html("text/html; charset=ISO-8859-1", body)
