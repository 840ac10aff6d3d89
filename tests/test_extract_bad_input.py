"""Hostile and broken pages: each gets a clear reject reason (or is extracted intact), never a crash or hang."""

from __future__ import annotations

import gzip
import os
import time
import unicodedata

import pytest
from w3lib.encoding import html_to_unicode

from pipeline.core.errors import NotAnArticle
from pipeline.flows.pages import article_from_html
from pipeline.runtime.pool import TaskFailure, bounded_map
from pipeline.stages.extract import MAX_ELEMENTS, MAX_HTML_CHARS, extract_batch

# Per test: a broken per-page timeout would otherwise hang a test until the suite's 600 s.
pytestmark = pytest.mark.timeout(120)

URL = "https://example.org/page"
PARAS = [
    f"Paragraph {n}: the harbour tram line will get four new stops by the end of next year, the council "
    f"decided on Tuesday after debate number {n} that lasted most of the afternoon."
    for n in range(6)
]
ARTICLE = "<article>" + "".join(f"<p>{p}</p>" for p in PARAS) + "</article>"


def _page(body: str) -> str:
    return f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>T</title></head><body>{body}</body></html>"


def _decode(body: bytes, content_type: str = "text/html; charset=utf-8") -> str:
    """As the extract stage decodes a stored response (w3lib, the same as Scrapy's response.text)."""
    return html_to_unicode(content_type, body)[1]


def _reason(html: str) -> str:
    with pytest.raises(NotAnArticle) as err:
        article_from_html(html, URL)
    return err.value.reason


@pytest.mark.parametrize("html", ["", "   \n\t  ", _decode(b"")])
def test_empty_body(html):
    assert _reason(html) == "empty"


def test_binary_bytes_served_as_html():
    blob = bytes(range(256)) * 64 + os.urandom(4096)
    assert _reason(_decode(blob)) == "binary"
    assert _reason(_decode(blob, "text/html; charset=iso-8859-1")) == "binary"


def test_gzip_payload_inside_an_html_response():
    body = gzip.compress(_page(ARTICLE).encode("utf-8"))
    for content_type in ("text/html; charset=utf-8", "text/html; charset=windows-1252", "text/html"):
        with pytest.raises(NotAnArticle) as err:
            article_from_html(_decode(body, content_type), URL)
        assert err.value.reason == "binary" and "gzip" in err.value.detail


def test_not_html_at_all():
    assert _reason('{"items": [1, 2, 3], "next": null}') == "not_html"


def test_page_that_is_only_navigation():
    nav = (
        "<nav>"
        + "".join(f"<a href='/s{i}'>Section {i}</a> " for i in range(60))
        + "</nav><ul>"
        + "".join(f"<li><a href='/story/{i}'>Story number {i}: a headline about the news</a></li>" for i in range(40))
        + "</ul>"
    )
    assert _reason(_page(nav)) == "navigation_only"


def test_fifty_thousand_paragraphs_rejected_quickly():
    html = _page("<article>" + "<p>Short line of text here.</p>" * 50_000 + "</article>")
    with pytest.raises(NotAnArticle) as err:
        article_from_html(html, URL)
    assert err.value.reason == "too_large" and str(MAX_ELEMENTS) in err.value.detail


def test_nesting_five_thousand_deep():
    html = _page("<div>" * 5000 + ARTICLE + "</div>" * 5000)
    assert _reason(html) == "too_deep"


def test_article_before_deep_nesting_is_still_extracted():
    html = _page(ARTICLE + "<div>" * 5000 + "x" + "</div>" * 5000)
    assert article_from_html(html, URL)["text"].split("\n") == PARAS


def test_text_node_of_twenty_megabytes():
    html = _page("<p>" + "word " * 4_000_000 + "</p>")
    assert len(html) > MAX_HTML_CHARS
    with pytest.raises(NotAnArticle) as err:
        article_from_html(html, URL)
    assert err.value.reason == "too_large"


def test_mixed_encodings_in_one_page():
    # UTF-8 page with one paragraph pasted in as cp1252 bytes and one double-encoded (mojibake)
    body = _page(
        ARTICLE.replace("</article>", "<p>Caf\u00e9 owners said the na\u00efve plan would cost \u20ac4m.</p></article>")
    ).encode("utf-8")
    body = body.replace(b"</article>", "<p>Le caf\u00e9 du port ferme.</p>".encode("cp1252") + b"</article>")
    body = body.replace(b"Paragraph 0", "Caf\u00e9 Paragraph 0".encode("utf-8").decode("latin-1").encode("utf-8"))
    rec = article_from_html(_decode(body), URL)
    assert "Caf\u00e9 owners said the na\u00efve plan would cost \u20ac4m." in rec["text"]
    assert "Caf\u00e9 Paragraph 0" in rec["text"]  # mojibake repaired by ftfy
    assert "\u00c3" not in rec["text"]
    assert "Paragraph 5" in rec["text"]
    assert "Le caf\ufffd du port ferme." in rec["text"]  # the stray cp1252 byte is replaced, nothing else is lost


@pytest.mark.parametrize(
    "lang, paragraphs",
    [
        (
            "he",
            [
                "\u05de\u05d5\u05e2\u05e6\u05ea \u05d4\u05e2\u05d9\u05e8 \u05d4\u05d7\u05dc\u05d9\u05d8\u05d4 \u05d1\u05d9\u05d5\u05dd \u05e9\u05dc\u05d9\u05e9\u05d9 \u05dc\u05d4\u05d0\u05e8\u05d9\u05da \u05d0\u05ea \u05e7\u05d5 \u05d4\u05e8\u05db\u05d1\u05ea \u05d4\u05e7\u05dc\u05d4 \u05d1\u05d0\u05e8\u05d1\u05e2 \u05ea\u05d7\u05e0\u05d5\u05ea \u05d7\u05d3\u05e9\u05d5\u05ea \u05e2\u05d3 \u05e1\u05d5\u05e3 \u05d4\u05e9\u05e0\u05d4 \u05d4\u05d1\u05d0\u05d4.",
                "\u05e8\u05d0\u05e9 \u05d4\u05e2\u05d9\u05e8 \u05d0\u05de\u05e8 \u05db\u05d9 \u05d4\u05e4\u05e8\u05d5\u05d9\u05e7\u05d8 \u05d9\u05e2\u05dc\u05d4 \u05db\u05ea\u05e9\u05e2\u05d9\u05dd \u05de\u05d9\u05dc\u05d9\u05d5\u05df \u05e9\u05e7\u05dc\u05d9\u05dd \u05d5\u05d9\u05e1\u05ea\u05d9\u05d9\u05dd \u05d1\u05e2\u05d5\u05d3 \u05e9\u05dc\u05d5\u05e9 \u05e9\u05e0\u05d9\u05dd, \u05d5\u05e9\u05d4\u05e2\u05d1\u05d5\u05d3\u05d5\u05ea \u05d9\u05ea\u05d7\u05d9\u05dc\u05d5 \u05d1\u05d0\u05d1\u05d9\u05d1.",
                "\u05ea\u05d5\u05e9\u05d1\u05d9 \u05d4\u05e9\u05db\u05d5\u05e0\u05d5\u05ea \u05e9\u05dc\u05d9\u05d3 \u05d4\u05e0\u05de\u05dc \u05d0\u05de\u05e8\u05d5 \u05e9\u05d4\u05dd \u05de\u05d7\u05db\u05d9\u05dd \u05dc\u05e7\u05d5 \u05d4\u05d7\u05d3\u05e9 \u05db\u05d1\u05e8 \u05e9\u05e0\u05d9\u05dd \u05e8\u05d1\u05d5\u05ea, \u05d5\u05e7\u05d9\u05d5\u05d5 \u05e9\u05d4\u05e0\u05e1\u05d9\u05e2\u05d4 \u05dc\u05de\u05e8\u05db\u05d6 \u05d4\u05e2\u05d9\u05e8 \u05ea\u05d4\u05d9\u05d4 \u05e7\u05e6\u05e8\u05d4 \u05d9\u05d5\u05ea\u05e8.",
            ],
        ),
        (
            "zh",
            [
                "\u5e02\u8bae\u4f1a\u5468\u4e8c\u51b3\u5b9a\u5728\u660e\u5e74\u5e74\u5e95\u524d\u4e3a\u6e2f\u53e3\u6709\u8f68\u7535\u8f66\u7ebf\u8def\u589e\u8bbe\u56db\u4e2a\u65b0\u8f66\u7ad9\uff0c\u8fd9\u9879\u8ba1\u5212\u5df2\u7ecf\u8ba8\u8bba\u4e86\u5341\u591a\u5e74\u3002",
                "\u5e02\u957f\u8868\u793a\uff0c\u5de5\u7a0b\u9884\u8ba1\u8017\u8d44\u7ea6\u4e5d\u4ebf\u5143\uff0c\u5c06\u4e8e\u660e\u5e74\u6625\u5929\u52a8\u5de5\uff0c\u5de5\u671f\u7ea6\u4e3a\u4e09\u5e74\uff0c\u671f\u95f4\u90e8\u5206\u9053\u8def\u5c06\u5b9e\u884c\u4ea4\u901a\u7ba1\u5236\u3002",
                "\u6cbf\u7ebf\u5c45\u6c11\u8868\u793a\u4ed6\u4eec\u5df2\u7ecf\u7b49\u5f85\u65b0\u7ebf\u8def\u591a\u5e74\uff0c\u5e0c\u671b\u524d\u5f80\u5e02\u4e2d\u5fc3\u7684\u65f6\u95f4\u80fd\u591f\u5927\u5927\u7f29\u77ed\uff0c\u4e5f\u5e0c\u671b\u5546\u5e97\u7684\u751f\u610f\u80fd\u591f\u56e0\u6b64\u597d\u8f6c\u3002",
            ],
        ),
        (
            "ar",
            [
                "\u0627\u0641\u062a\u062a\u062d\u062a \u0627\u0644\u0628\u0644\u062f\u064a\u0629 \u064a\u0648\u0645 \u0627\u0644\u062b\u0644\u0627\u062b\u0627\u0621 \u0645\u0643\u062a\u0628\u0629 \u0639\u0627\u0645\u0629 \u062c\u062f\u064a\u062f\u0629 \u0641\u064a \u0648\u0633\u0637 \u0627\u0644\u0645\u062f\u064a\u0646\u0629\u060c \u062a\u0636\u0645 \u0623\u0643\u062b\u0631 \u0645\u0646 \u062e\u0645\u0633\u064a\u0646 \u0623\u0644\u0641 \u0643\u062a\u0627\u0628 \u0648\u0642\u0627\u0639\u0629 \u0644\u0644\u0642\u0631\u0627\u0621\u0629.",
                "\u0648\u0642\u0627\u0644 \u0631\u0626\u064a\u0633 \u0627\u0644\u0628\u0644\u062f\u064a\u0629 \u0625\u0646 \u0627\u0644\u0645\u0634\u0631\u0648\u0639 \u0627\u0633\u062a\u063a\u0631\u0642 \u062b\u0644\u0627\u062b \u0633\u0646\u0648\u0627\u062a\u060c \u0648\u0625\u0646 \u0627\u0644\u0645\u0643\u062a\u0628\u0629 \u0633\u062a\u0646\u0638\u0645 \u0648\u0631\u0634\u0627\u062a \u0644\u0644\u0623\u0637\u0641\u0627\u0644 \u0648\u0627\u0644\u0637\u0644\u0627\u0628 \u0641\u064a \u0641\u0635\u0644 \u0627\u0644\u0635\u064a\u0641.",
                "\u0648\u0623\u0636\u0627\u0641 \u0623\u0646 \u062a\u0643\u0644\u0641\u0629 \u0627\u0644\u0628\u0646\u0627\u0621 \u0628\u0644\u063a\u062a \u0646\u062d\u0648 \u0623\u0631\u0628\u0639\u0629 \u0645\u0644\u0627\u064a\u064a\u0646 \u062f\u064a\u0646\u0627\u0631\u060c \u0648\u0623\u0646 \u062c\u0632\u0621\u0627\u064b \u0645\u0646\u0647\u0627 \u062c\u0627\u0621 \u0645\u0646 \u062a\u0628\u0631\u0639\u0627\u062a \u0627\u0644\u0633\u0643\u0627\u0646.",
            ],
        ),
    ],
)
def test_right_to_left_and_cjk_text_kept_intact(lang, paragraphs):
    direction = " dir='rtl'" if lang in ("he", "ar") else ""
    html = (
        f"<!DOCTYPE html><html lang='{lang}'{direction}><head><meta charset='utf-8'><title>x</title></head>"
        "<body><article>" + "".join(f"<p>{p}</p>" for p in paragraphs) + "</article></body></html>"
    )
    rec = article_from_html(_decode(html.encode("utf-8")), URL)
    assert rec["text"].split("\n") == [unicodedata.normalize("NFC", p) for p in paragraphs]
    assert rec["language"] == lang


# ------------------------------------------------------------------ the pool's limits


def _sleepy(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


def _hog(megabytes: int) -> int:
    return len(bytearray(megabytes * 1024 * 1024))


def _die(code: int) -> None:
    os._exit(code)


def test_hanging_task_is_killed_by_a_tiny_timeout_and_the_batch_goes_on():
    out = list(bounded_map(_sleepy, [0.0, 3600.0, 0.0, 0.01], workers=2, timeout=0.5))
    assert out[0] == 0.0 and out[2] == 0.0 and out[3] == 0.01
    assert isinstance(out[1], TaskFailure) and out[1].reason == "timeout"


def test_task_over_the_memory_limit_fails_alone():
    out = list(bounded_map(_hog, [1, 2048, 1], workers=1, timeout=30, max_memory_mb=256))
    assert out[0] == out[2] == 1024 * 1024
    assert isinstance(out[1], TaskFailure) and out[1].reason == "memory"


def test_crashing_worker_is_replaced():
    out = list(bounded_map(_die, [3], workers=1, timeout=30))
    assert isinstance(out[0], TaskFailure) and out[0].reason == "crashed"


def test_extract_batch_tiny_timeout_yields_timeout_errors_in_order():
    # a page that takes seconds to extract (~1 s per 1,000 paragraphs), so that no scheduling delay of the
    # parent on a busy machine can let its result arrive before the parent notices the 1 ms deadline
    html = _page(
        "<article>" + "<p>A line of the article text, long enough to count as prose here.</p>" * 3000 + "</article>"
    )
    out = list(extract_batch([{"url": f"{URL}/{i}", "html": html} for i in range(3)], workers=2, timeout=0.001))
    assert [o["url"] for o in out] == [f"{URL}/{i}" for i in range(3)]
    assert {o["error"] for o in out} == {"timeout"}


@pytest.mark.parametrize("url", ["", "not a url", "https://[broken-ipv6/x", "ftp://files.example.org/a"])
def test_odd_urls_do_not_break_extraction(url):
    rec = article_from_html(_page(ARTICLE), url)
    assert rec["url"] == url and rec["canonical_url"] == url
    assert rec["text"].split("\n") == PARAS
