"""`render: auto`'s app-shell test on literal pages (no browser)."""

from __future__ import annotations

from spiders.render import needs_render, visible_text_length

SHELL = '<html><head><script src="/app.js"></script></head><body><div id="root"></div></body></html>'
NEXT = '<html><body><div id="__next"></div><script id="__NEXT_DATA__">{"props": {}}</script></body></html>'
NOSCRIPT = "<html><body><noscript>You need to enable JavaScript to run this app.</noscript></body></html>"
ARTICLE = (
    "<html><body><div id='root'><article>"
    + "<p>A long paragraph of real text. </p>" * 40
    + "</article></div></body></html>"
)


def test_app_shells_need_rendering():
    assert needs_render(SHELL) and needs_render(NEXT) and needs_render(NOSCRIPT)


def test_server_rendered_pages_do_not():
    assert not needs_render(ARTICLE)  # a mount point, but the text is already there
    assert not needs_render("<html><body><p>short, but no sign of an app</p></body></html>")


def test_visible_text_ignores_scripts():
    html = "<html><body><script>var x = 'lots of code here';</script><p>Hi there</p><style>p{}</style></body></html>"
    assert visible_text_length(html) == len("Hi there")


def test_render_patterns_are_checked_when_the_file_loads():
    import pytest
    from pydantic import ValidationError

    from pipeline.core.config import Source

    assert Source(name="x", render="js", render_patterns=[r"/news/\d+"]).render_patterns == [r"/news/\d+"]
    with pytest.raises(ValidationError, match="render_patterns needs render: js or render: auto"):
        Source(name="x", render_patterns=["/news/"])
    with pytest.raises(ValidationError, match="render_patterns"):
        Source(name="x", render="js", render_patterns=["/news/(unclosed"])
