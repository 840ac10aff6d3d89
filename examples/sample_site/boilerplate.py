"""The boilerplate the sample site injects around (and inside) article bodies.

`BOILERPLATE_PHRASES` lists every fixed phrase injected here, so downstream
tests can assert that none of them survives in stored article text.
"""

from __future__ import annotations

from html import escape

COOKIE_TEXT = "We use cookies to improve your experience on our site and to show you relevant advertising."
COOKIE_MORE = "By continuing to browse you agree to our use of cookies."
NEWSLETTER_TITLE = "Sign up for our newsletter"
NEWSLETTER_TEXT = "Get the day’s top stories delivered to your inbox every morning."
LIKE_TEXT = "Like this story"  # not a bare "Like": prose says "anything like it"
SUBSCRIBE_TEXT = "Click here to subscribe"
SUBSCRIBE_TAIL = "for unlimited access to local journalism."
BIO_MIDDLE = "is a reporter covering"
BIO_TAIL = "Got a story? Email the newsdesk."
COMMENT_TEXTS = [
    "Great to see this reported properly at last, thanks for covering it.",
    "I walked past there yesterday and had no idea this was going on.",
    "Does anyone know whether the meeting will be streamed online?",
]

#: Every fixed phrase the site injects as boilerplate. None occurs in any article text, even case-insensitively.
BOILERPLATE_PHRASES: list[str] = [
    # inline related-headline prefixes inside article bodies
    "See also",
    "Read also",
    "ALSO READ",
    "Related:",
    # WordPress and Drupal comment forms, and the readers' comments themselves
    "Leave a Reply",
    "Your email address will not be published",
    "Required fields are marked",
    "Post Comment",
    "Cancel reply",
    "Add new comment",
    "Save comment",
    *COMMENT_TEXTS,
    # newsletter, subscription and cookie boxes
    NEWSLETTER_TITLE,
    NEWSLETTER_TEXT,
    SUBSCRIBE_TEXT,
    SUBSCRIBE_TAIL,
    COOKIE_TEXT,
    COOKIE_MORE,
    "Accept all cookies",
    # share and like bars
    "Share on Facebook",
    "Share on WhatsApp",
    "Tweet",
    LIKE_TEXT,
    "Copy link",
    # sidebars and widgets
    "Trending",
    "Most read",
    "Advertisement",
    # author boxes
    BIO_MIDDLE,
    BIO_TAIL,
    "More from this author",
]

RELATED_STYLES = {
    # template -> the inline related-link markups it uses between paragraphs, in turn
    "wordpress": [
        '<p><strong>See also</strong> <a href="{url}">{title}</a></p>',
        '<p>Read also: <a href="{url}">{title}</a></p>',
    ],
    "arc": [
        '<div class="related-inline" data-type="interstitial_link"><p>ALSO READ: <a href="{url}" '
        'data-link-type="story">{title}</a></p></div>',
        '<p class="c-paragraph interstitial" data-type="text">Related: <a href="{url}">{title}</a></p>',
    ],
    "drupal": [
        '<p><em>Read also:</em> <a href="{url}" hreflang="en">{title}</a></p>',
        '<div class="inline-related"><strong>See also</strong> <a href="{url}">{title}</a></div>',
    ],
}


def inline_related(template: str, i: int, title: str, url: str) -> str:
    """The i-th inline related-headline line of `template`, as its CMS would splice it into a body."""
    styles = RELATED_STYLES[template]
    return styles[i % len(styles)].format(url=escape(url), title=escape(title))


def cookie_banner(variant: int) -> str:
    """A cookie consent banner; markup varies so it is not one CSS class."""
    if variant == 0:
        return (
            f'<div id="cookie-notice" role="dialog"><p>{COOKIE_TEXT} {COOKIE_MORE}</p>'
            '<button id="cn-accept-cookie">Accept all cookies</button></div>'
        )
    return (
        f'<section class="consent-banner" data-consent="pending"><span>{COOKIE_TEXT}</span> '
        f'<span>{COOKIE_MORE}</span> <a class="btn" href="#consent">Accept all cookies</a></section>'
    )


def newsletter_box(variant: int) -> str:
    if variant == 0:
        return (
            f'<div class="newsletter-signup widget"><h3>{NEWSLETTER_TITLE}</h3><p>{NEWSLETTER_TEXT}</p>'
            '<form action="#newsletter"><input type="email" placeholder="Email address"/>'
            "<button>Subscribe</button></form></div>"
        )
    return (
        f'<aside data-module="newsletter" class="nl-promo"><strong>{NEWSLETTER_TITLE}</strong> '
        f"<span>{NEWSLETTER_TEXT}</span></aside>"
    )


def subscribe_line() -> str:
    return f'<p class="paywall-cta"><a href="#subscribe">{SUBSCRIBE_TEXT}</a> {SUBSCRIBE_TAIL}</p>'


def share_bar(variant: int) -> str:
    items = ["Share on Facebook", "Tweet", "Share on WhatsApp", "Copy link", LIKE_TEXT]
    if variant == 0:
        return (
            '<div class="sharedaddy sd-sharing-enabled"><ul>'
            + "".join(f'<li><a class="share-link" href="#share">{i}</a></li>' for i in items)
            + "</ul></div>"
        )
    if variant == 1:
        return (
            '<div class="c-share" data-share-bar="top">'
            + "".join(f'<button data-network="{i.split()[-1].lower()}">{i}</button>' for i in items)
            + "</div>"
        )
    return (
        '<nav class="social-share-links">'
        + " | ".join(f'<span class="share-item">{i}</span>' for i in items)
        + "</nav>"
    )


def author_bio(author: str, topic: str, outlet: str) -> str:
    return (
        f'<div class="author-bio"><h4>{escape(author)}</h4><p>{escape(author)} {BIO_MIDDLE} {topic} for '
        f'{escape(outlet)}. {BIO_TAIL}</p><a href="#author">More from this author</a></div>'
    )


def headline_list(heading: str, items: list[tuple[str, str]], css: str) -> str:
    """A Trending / Most read sidebar of (title, url)."""
    lis = "".join(f'<li><a href="{escape(u)}">{escape(t)}</a></li>' for t, u in items)
    return f'<aside class="{css}"><h3>{heading}</h3><ol>{lis}</ol></aside>'


def advert(slot: str) -> str:
    return f'<div class="ad-slot" data-slot="{slot}"><span class="ad-label">Advertisement</span></div>'


def wp_comments(title: str) -> str:
    """WordPress comments area: two readers' comments and the standard reply form."""
    comments = "".join(
        f'<li class="comment" id="comment-{i}"><article class="comment-body"><footer class="comment-meta">'
        f'<b class="fn">reader{i}</b> says:</footer><div class="comment-content"><p>{escape(text)}</p></div>'
        f"</article></li>"
        for i, text in enumerate(COMMENT_TEXTS[:2], 1)
    )
    return (
        f'<div id="comments" class="comments-area"><h2 class="comments-title">2 thoughts on “{escape(title)}”</h2>'
        f'<ol class="comment-list">{comments}</ol>'
        '<div id="respond" class="comment-respond"><h3 id="reply-title" class="comment-reply-title">Leave a Reply '
        '<small><a rel="nofollow" id="cancel-comment-reply-link" href="#respond" style="display:none;">'
        "Cancel reply</a></small></h3>"
        '<form action="#comment" method="post" id="commentform" class="comment-form" novalidate>'
        '<p class="comment-notes"><span id="email-notes">Your email address will not be published.</span> '
        '<span class="required-field-message">Required fields are marked <span class="required">*</span></span></p>'
        '<p class="comment-form-comment"><label for="comment">Comment <span class="required">*</span></label> '
        '<textarea id="comment" name="comment" cols="45" rows="8" maxlength="65525" required></textarea></p>'
        '<p class="comment-form-author"><label for="author">Name <span class="required">*</span></label> '
        '<input id="author" name="author" type="text" value="" size="30" maxlength="245" required /></p>'
        '<p class="comment-form-email"><label for="email">Email <span class="required">*</span></label> '
        '<input id="email" name="email" type="email" value="" size="30" maxlength="100" required /></p>'
        '<p class="form-submit"><input name="submit" type="submit" id="submit" class="submit" value="Post Comment" />'
        "</p></form></div></div>"
    )


def drupal_comments() -> str:
    text = escape(COMMENT_TEXTS[2])
    return (
        '<section class="field field--name-comment field--type-comment"><h2>Comments</h2>'
        f'<article class="comment js-comment"><div class="field--name-comment-body"><p>{text}</p></div></article>'
        '<h2 class="title comment-form__title">Add new comment</h2>'
        '<form class="comment-comment-form comment-form" action="#comment">'
        '<textarea name="comment_body[0][value]"></textarea>'
        '<input type="submit" value="Save comment" class="button js-form-submit form-submit"/></form></section>'
    )
