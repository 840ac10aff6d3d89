"""Three CMS-like HTML templates: WordPress-like, Arc/newsroom-like and Drupal-like.

Each renders article pages (with the boilerplate of `boilerplate.py` around
and inside the body), listing pages (front, section, tag) and static pages.
"""

from __future__ import annotations

import json
import zlib
from dataclasses import dataclass, field
from datetime import datetime
from html import escape

from examples.sample_site import boilerplate as bp

TEMPLATES = ("wordpress", "arc", "drupal")


@dataclass
class Outlet:
    """One news outlet of the sample site."""

    name: str
    display: str
    template: str
    base_url: str = ""
    sections: list[str] = field(default_factory=list)


@dataclass
class ArticleView:
    """Everything a template needs to render one article page."""

    url: str
    title: str
    standfirst: str
    paragraphs: list[str]
    author: str
    section: str
    published: datetime
    modified: datetime
    related: list[tuple[str, str]] = field(default_factory=list)
    trending: list[tuple[str, str]] = field(default_factory=list)
    og_type: str = "article"
    charset: str = "utf-8"


def iso(dt: datetime) -> str:
    return dt.isoformat(timespec="seconds")


def human(dt: datetime) -> str:
    return dt.strftime("%d %B %Y, %H:%M")


def _nav(outlet: Outlet) -> str:
    links = "".join(f'<li><a href="/section/{s}">{s.title()}</a></li>' for s in outlet.sections)
    return f'<nav class="main-navigation" aria-label="Primary"><ul><li><a href="/">Home</a></li>{links}</ul></nav>'


def _footer(outlet: Outlet) -> str:
    return (
        f'<footer class="site-footer"><ul class="footer-links"><li><a href="/about">About us</a></li>'
        f'<li><a href="/contact">Contact</a></li></ul>'
        f'<p class="copyright">© {escape(outlet.display)}. All rights reserved.</p></footer>'
    )


def _head(outlet: Outlet, title: str, extra: str = "", charset: str = "utf-8") -> str:
    return (
        f'<!DOCTYPE html><html lang="en-GB"><head><meta charset="{charset}"/>'
        f"<title>{escape(title)} – {escape(outlet.display)}</title>"
        f'<meta name="viewport" content="width=device-width, initial-scale=1"/>'
        f'<meta property="og:site_name" content="{escape(outlet.display)}"/>{extra}</head>'
    )


def _meta(outlet: Outlet, a: ArticleView) -> str:
    return (
        f'<link rel="canonical" href="{escape(a.url)}"/>'
        f'<meta name="description" content="{escape(a.standfirst)}"/>'
        f'<meta property="og:type" content="{a.og_type}"/>'
        f'<meta property="og:title" content="{escape(a.title)}"/>'
        f'<meta property="og:url" content="{escape(a.url)}"/>'
        f'<meta property="og:description" content="{escape(a.standfirst)}"/>'
        f'<meta property="og:image" content="{outlet.base_url}/media/{zlib.crc32(a.title.encode()) % 997}.jpg"/>'
        f'<meta property="article:published_time" content="{iso(a.published)}"/>'
        f'<meta property="article:modified_time" content="{iso(a.modified)}"/>'
        f'<meta property="article:section" content="{escape(a.section.title())}"/>'
        f'<meta name="author" content="{escape(a.author)}"/>'
    )


def _json_ld(outlet: Outlet, a: ArticleView) -> str:
    data = {
        "@context": "https://schema.org",
        "@type": "NewsArticle",
        "headline": a.title,
        "datePublished": iso(a.published),
        "dateModified": iso(a.modified),
        "author": [{"@type": "Person", "name": a.author}],
        "publisher": {"@type": "Organization", "name": outlet.display},
        "mainEntityOfPage": {"@type": "WebPage", "@id": a.url},
        "articleSection": a.section.title(),
        "description": a.standfirst,
        "inLanguage": "en-GB",
    }
    return f'<script type="application/ld+json">{json.dumps(data, ensure_ascii=False)}</script>'


def _body_with_related(template: str, a: ArticleView, para: str) -> str:
    """Paragraphs with the related-headline lines spliced in after the 2nd and 5th paragraph."""
    out = []
    slots = [2, 5, 8]
    related = list(a.related)
    for i, p in enumerate(a.paragraphs, 1):
        out.append(para.format(text=escape(p, quote=False)))
        if i in slots and related:
            title, url = related.pop(0)
            out.append(bp.inline_related(template, slots.index(i), title, url))
    for j, (title, url) in enumerate(related):  # a short article: the rest goes at the end
        out.append(bp.inline_related(template, j, title, url))
    return "".join(out)


def render_article(outlet: Outlet, a: ArticleView) -> str:
    """A full article page in the outlet's template."""
    return {"wordpress": _wp_article, "arc": _arc_article, "drupal": _drupal_article}[outlet.template](outlet, a)


def _wp_article(o: Outlet, a: ArticleView) -> str:
    body = _body_with_related("wordpress", a, "<p>{text}</p>")
    return (
        _head(o, a.title, _meta(o, a) + _json_ld(o, a), a.charset)
        + f'<body class="post-template-default single single-post"><div id="page" class="site">'
        f'<header id="masthead" class="site-header"><p class="site-title"><a href="/">{escape(o.display)}</a></p>'
        f"{_nav(o)}</header>{bp.cookie_banner(0)}"
        f'<div id="content" class="site-content"><main id="main" class="site-main">'
        f'<article id="post-{zlib.crc32(a.url.encode()) % 99999}" class="post type-post status-publish format-standard hentry">'
        f'<header class="entry-header"><h1 class="entry-title">{escape(a.title)}</h1>'
        f'<div class="entry-meta"><span class="byline">By <span class="author vcard"><a class="url fn n" '
        f'href="#author">{escape(a.author)}</a></span></span> <span class="posted-on"><time class="entry-date '
        f'published" datetime="{iso(a.published)}">{human(a.published)}</time><time class="updated" '
        f'datetime="{iso(a.modified)}"></time></span></div></header>'
        f"{bp.share_bar(0)}"
        f'<div class="entry-content"><p class="standfirst"><strong>{escape(a.standfirst)}</strong></p>{body}'
        f"{bp.newsletter_box(0)}</div>"
        f'<footer class="entry-footer"><span class="cat-links">Posted in <a href="/section/{a.section}" '
        f'rel="category tag">{a.section.title()}</a></span> <span class="tags-links">Tagged <a href="/tag/{a.section}"'
        f' rel="tag">{a.section}</a></span></footer>'
        f"{bp.author_bio(a.author, a.section, o.display)}</article>"
        f"{bp.wp_comments(a.title)}</main>"
        f'<aside id="secondary" class="widget-area">{bp.headline_list("Trending", a.trending, "widget trending")}'
        f"{bp.advert('sidebar')}</aside></div>{_footer(o)}</div></body></html>"
    )


def _arc_article(o: Outlet, a: ArticleView) -> str:
    paras = _body_with_related("arc", a, '<p class="c-paragraph" data-type="text">{text}</p>')
    return (
        _head(o, a.title, _meta(o, a) + _json_ld(o, a), a.charset)
        + f'<body><div id="fusion-app" data-arc-site="{o.name}">{bp.cookie_banner(1)}'
        f'<header class="c-header" data-module="masthead"><a class="c-logo" href="/">{escape(o.display)}</a>'
        f'{_nav(o)}</header><main class="c-main" role="main">'
        f'<div class="article-wrapper" data-content-type="story">'
        f'<h1 class="c-heading headline" data-testid="headline">{escape(a.title)}</h1>'
        f'<h2 class="c-subheadline" data-testid="subheadline">{escape(a.standfirst)}</h2>'
        f'<div class="c-byline" data-testid="byline">By <a href="#author" rel="author">{escape(a.author)}</a></div>'
        f'<div class="c-timestamp"><time datetime="{iso(a.published)}">Published {human(a.published)}</time> · '
        f'<time datetime="{iso(a.modified)}">Updated {human(a.modified)}</time></div>'
        f"{bp.share_bar(1)}"
        f'<div class="article-body" data-testid="article-body" data-gtm-vis="story-body">{paras}'
        f"{bp.advert('inline')}{bp.subscribe_line()}</div>"
        f"{bp.newsletter_box(1)}{bp.author_bio(a.author, a.section, o.display)}</div>"
        f'<div class="c-rail" data-module="right-rail">{bp.headline_list("Most read", a.trending, "most-read")}'
        f"</div></main>{_footer(o)}</div></body></html>"
    )


def _drupal_article(o: Outlet, a: ArticleView) -> str:
    paras = _body_with_related("drupal", a, "<p>{text}</p>")
    return (
        _head(o, a.title, _meta(o, a), a.charset)
        + f'<body class="path-node page-node-type-article"><div class="dialog-off-canvas-main-canvas">'
        f'{bp.cookie_banner(0)}<header role="banner" class="region region-header"><div class="site-branding">'
        f'<a href="/" rel="home">{escape(o.display)}</a></div>{_nav(o)}</header>'
        f'<main role="main"><div class="region region-content">'
        f'<article role="article" class="node node--type-article node--view-mode-full">'
        f'<h1 class="page-title"><span class="field field--name-title">{escape(a.title)}</span></h1>'
        f'<div class="node__meta"><span class="field field--name-uid">{escape(a.author)}</span> '
        f'<span class="field field--name-created"><time datetime="{iso(a.published)}">{human(a.published)}</time>'
        f'</span></div>{bp.share_bar(2)}<div class="node__content clearfix">'
        f'<div class="field field--name-field-summary"><p>{escape(a.standfirst)}</p></div>'
        f'<div class="clearfix text-formatted field field--name-body field--type-text-with-summary '
        f'field--label-hidden field__item">{paras}</div>'
        f'<div class="field field--name-field-tags"><div class="field__label">Tags</div>'
        f'<a href="/tag/{a.section}" hreflang="en">{a.section.title()}</a></div>'
        f"{bp.newsletter_box(0)}{bp.author_bio(a.author, a.section, o.display)}{bp.drupal_comments()}</div>"
        f'</article></div></main><aside class="layout-sidebar-second">'
        f"{bp.headline_list('Most read', a.trending, 'block-views-most-read')}"
        f"{bp.headline_list('Trending', a.trending[::-1], 'block-trending')}</aside>{_footer(o)}</div></body></html>"
    )


def render_listing(o: Outlet, heading: str, items: list[tuple[str, str, str]], kind: str = "section") -> str:
    """A front, section or tag page: headlines with their standfirsts."""
    cards = "".join(
        f'<li class="teaser"><h3><a href="{escape(u)}">{escape(t)}</a></h3><p>{escape(s)}</p></li>' for t, u, s in items
    )
    return (
        _head(o, heading, '<meta property="og:type" content="website"/>')
        + f'<body class="{kind}-page"><header>{escape(o.display)}{_nav(o)}</header>{bp.cookie_banner(1)}'
        f'<main><h1 class="archive-title">{escape(heading)}</h1><ul class="teasers">{cards}</ul>'
        f"{bp.newsletter_box(1)}</main>{_footer(o)}</body></html>"
    )


def render_static(o: Outlet, heading: str, paragraphs: list[str], form: bool = False) -> str:
    """About / contact pages: a little prose and perhaps a form, but no article."""
    text = "".join(f"<p>{escape(p)}</p>" for p in paragraphs)
    form_html = (
        '<form class="contact-form" action="#contact"><label>Your name <input name="name"/></label>'
        '<label>Message <textarea name="message"></textarea></label><button>Send</button></form>'
        if form
        else ""
    )
    return (
        _head(o, heading, '<meta property="og:type" content="website"/>')
        + f'<body class="page"><header>{escape(o.display)}{_nav(o)}</header>'
        f'<main><h1 class="page-title">{escape(heading)}</h1>{text}{form_html}</main>{_footer(o)}</body></html>'
    )


def render_nav_only(o: Outlet) -> str:
    """A page that is nothing but navigation (a broken CMS render)."""
    return (
        _head(o, "Index") + f"<body><header>{escape(o.display)}{_nav(o)}</header>"
        f'<nav class="footer-nav">{_nav(o)}</nav>{_footer(o)}</body></html>'
    )
