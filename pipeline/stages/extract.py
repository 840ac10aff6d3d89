"""Extraction: decoded HTML in, the article record out (text + metadata), bounded per page.

`extract_page` is a pure function: trafilatura on the decoded text, after a general
pruning pass that removes what trafilatura is known to let through on news pages
(related-link lists, share bars, newsletter and comment boxes: found by class/id
vocabulary, ARIA roles and link density, never by site), with the page's metadata
(`pipeline.stages.metadata`: title without the site name, authors as people, times with their
zone) and readability-lxml as a second opinion when trafilatura finds nothing. A safety net
against a plain trafilatura pass undoes a rule that removed an article's body.
Cleaning (`pipeline.stages.clean`) comes next; this module never imports it: a worker runs
whatever per-page step it is handed (`extract_outcomes(then=...)`).

`extract_batch` spreads pages over a bounded process pool (`pipeline.runtime.pool`): each
page is limited in time and memory, a page that hangs or blows up is killed and
reported, the batch goes on. `extract_stage` is the pipeline stage over one WARC file.
"""

from __future__ import annotations

import copy
import logging
import re
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from functools import lru_cache, partial
from urllib.parse import urljoin, urlsplit

import trafilatura
from lxml import etree
from lxml import html as lxml_html
from lxml.html import HtmlElement
from trafilatura.settings import Document
from trafilatura.utils import load_html

from pipeline.core.config import CleaningRules, ConfigError
from pipeline.core.context import RunContext
from pipeline.core.errors import NotAnArticle
from pipeline.core.layout import extract_rejects_name, extracted_key
from pipeline.dataset.rejects import reject, write_rejects
from pipeline.dataset.warc import read_warc
from pipeline.runtime.pool import TaskFailure, bounded_map
from pipeline.stages.metadata import extract_metadata
from pipeline.stages.page_type import classify_page, teaser_cards
from pipeline.text.gates import MIN_WORDS
from pipeline.text.normalise import normalise_text, word_count
from pipeline.text.urls import canonicalize

log = logging.getLogger(__name__)

#: Bump when the output for the same input changes (it is stored with every record,
#: so records can be re-extracted selectively when the extractor improves).
EXTRACTOR_VERSION = f"1.2+trafilatura-{trafilatura.__version__}"

__all__ = [
    "EXTRACTOR_VERSION",
    "NotAnArticle",
    "PageOutcome",
    "PageStep",
    "extract_page",
    "extract_outcomes",
    "extract_batch",
    "extract_stage",
    "canonical_url",
]

#: Larger inputs are rejected ("too_large"): trafilatura's own MAX_FILE_SIZE (settings.cfg).
MAX_HTML_CHARS = 20_000_000
#: Pages with more elements than this are rejected ("too_large"): about 20x the largest page of
#: the extraction benchmark (1,596 elements); extraction time grows with the element count
#: (~1 s per 1,000 paragraphs here), so this also keeps a page well inside the batch timeout.
MAX_ELEMENTS = 30_000
#: libxml2's HTML parser stops nesting at depth 256 (without XML_PARSE_HUGE, which we do not want
#: on untrusted input): a tree that reaches it lost whatever was nested deeper.
PARSER_MAX_DEPTH = 255
#: Share of control / replacement characters (in the first 8 KB) above which a "page" is binary data.
#: Real HTML has next to none; random, gzip or image bytes decoded as text have ~11% (as Latin-1) to ~55%
#: (as UTF-8, U+FFFD per bad byte), measured with w3lib on such bytes; 5% sits well between.
BINARY_SHARE = 0.05

_CONTROL = re.compile(r"[\x00-\x08\x0e-\x1f\x7f\ufffd]")
_TAGGY = re.compile(
    r"<\s*(!doctype|html|head|body|p|div|article|main|section|span|br|h[1-6]|title|meta|a|table)\b", re.IGNORECASE
)

# ------------------------------------------------------------------ pruning

# class/id vocabulary of widgets that are not the article; matched as whole words of the
# attribute (split on space, '-', '_'), so "share-bar" matches and "shareholders" does not.
# Not "widget": page builders (Elementor's "elementor-widget-container", SiteOrigin's "so-panel widget")
# wrap the article itself in it; measured on wcxb-dev, 16 articles lost most of their text to it.
_BOILER_WORDS = {
    "share",
    "sharing",
    "sharebar",
    "social",
    "socials",
    "newsletter",
    "newsletters",
    "subscribe",
    "subscription",
    "signup",
    "related",
    "recommended",
    "recommendations",
    "recirc",
    "recirculation",
    "promo",
    "promos",
    "comments",
    "comment",
    "disqus",
    "respond",
    "replies",
    "cookie",
    "cookies",
    "consent",
    "gdpr",
    "outbrain",
    "taboola",
    "trending",
    "popular",
    "readmore",
    "breadcrumb",
    "breadcrumbs",
    "paywall",
    "bio",
    "byline",
    "tags",
    "tagcloud",
    "advert",
    "advertisement",
    "ads",
    "sponsored",
    "nativo",
    "sidebar",
    "toolbar",
    "rail",
    "teaser",
    "teasers",
}
# Pairs of words that together name a widget ("more stories", "author box", "read also").
# Not "read more": that names collapsible article bodies as often as teaser links.
_BOILER_PAIRS = {
    ("more", "stories"),
    ("more", "news"),
    ("read", "also"),
    ("also", "read"),
    ("see", "also"),
    ("author", "box"),
    ("about", "author"),
    ("author", "info"),
    ("most", "read"),
    ("most", "popular"),
    ("you", "may"),
    ("next", "article"),
    ("up", "next"),
}
# The widget vocabulary as whole words of the class/id string (separators: space, '-', '_'), in one regex.
_WIDGET_RX = re.compile(
    r"(?:^|[\s_\-])("
    + "|".join(
        sorted(
            [re.escape(w) for w in _BOILER_WORDS] + [rf"{a}[\s_\-]+{b}" for a, b in _BOILER_PAIRS],
            key=len,
            reverse=True,
        )
    )
    + r")(?=$|[\s_\-])"
)
_NOT_TEXT = {"script", "style", "noscript", "template", "svg"}
_SPLIT = re.compile(r"[\s_\-]+")
_CAMEL = re.compile(r"(?<=[a-z])(?=[A-Z])")
_ROLES = {"complementary", "contentinfo", "navigation", "banner", "dialog", "alertdialog", "search"}
_BLOCKS = (
    "div",
    "section",
    "aside",
    "ul",
    "ol",
    "nav",
    "footer",
    "header",
    "form",
    "figure",
    "table",
    "p",
    "span",
    "li",
)
#: Block elements that carry a class, id or role: the only ones _widget_name can name. (Not aria-hidden:
#: sites hide the collapsed rest of an article that way, e.g. behind a "continue reading" button.)
_CANDIDATES = etree.XPath("|".join(f".//{t}[@class or @id or @role]" for t in _BLOCKS))
_KEEP_TAGS = {"html", "body", "main", "article", "head"}
#: Inside code, class names are syntax highlighting ("token comment", "hljs-comment"), not widgets.
_IN_CODE = etree.XPath("boolean(ancestor-or-self::pre or ancestor-or-self::code)")
#: A pruned block never holds more than this share of the page's text: a wrapper that
#: happens to carry a widget-like class (e.g. "article social-affairs") is not a widget.
PRUNE_MAX_SHARE = 0.3
#: Link-dense block: at least this share of its text is link text, with at least MIN_LINKS
#: links; trafilatura's own link-density test only looks at single elements.
LINK_DENSITY = 0.7
MIN_LINKS = 3
#: Below this many words the fast extraction gets a second opinion from trafilatura's full path.
#: On the extraction benchmark, fast and full paths differ on 2 of 181 pages; on the one where
#: fast was wrong it had caught 54 words of a 309-word article; a teaser or caption is that size.
SECOND_OPINION_WORDS = 100


@lru_cache(maxsize=8192)
def _widget_of(raw: str) -> str | None:
    """The widget name in a "class id" string, or None (cached: templates repeat their classes)."""
    if not raw.islower():
        raw = _CAMEL.sub("-", raw).lower()  # "shareBar" -> "share-bar"
    match = _WIDGET_RX.search(raw)
    return "-".join(w for w in _SPLIT.split(match.group(1)) if w) if match else None


def _widget_name(el: HtmlElement) -> str | None:
    raw = f"{el.get('class', '')} {el.get('id', '')}"
    if raw != " ":
        name = _widget_of(raw)
        if name:
            return name
    role = (el.get("role") or "").lower()
    if role in _ROLES:
        return f"role={role}"
    return None


def _nwords(text: str | None) -> int:
    # characters, not words: scripts written without spaces (CJK, Thai) have no countable words
    return len(text.strip()) if text else 0


_LIST_TAGS = frozenset(("ul", "ol", "nav", "aside", "div", "section", "table", "p"))  # p: links split by <br>
_RUN_TAGS = frozenset(("p", "li", "h2", "h3", "h4", "h5", "h6", "div"))
#: A block of at most this many characters that is all link text reads as a headline link; two or
#: more in a row ("DON'T MISS" lists spliced into a body) are a related-links block. A headline
#: runs to ~70-120 characters; 200 leaves room for a teaser sentence.
RUN_MAX_CHARS = 200


def _measure(root: HtmlElement, lists: list | None = None, runs: list | None = None) -> dict:
    """Text size, link text size and link count of every element, in one bottom-up pass (no quadratic
    itertext). `lists`, when given, receives the link-dense list-like blocks, in document order;
    `runs` the runs of consecutive headline-sized blocks that are nothing but a link."""
    stats: dict = {}
    for el in reversed(list(root.iter())):
        tag = el.tag
        # code and comments are not page text (a page's scripts can outweigh its article)
        own = _nwords(el.text) if isinstance(tag, str) and tag not in _NOT_TEXT else 0
        words, link_words, links = own, 0, 0
        run: list = []
        for child in el:
            cw, clw, cl = stats[child]
            tail = _nwords(child.tail)
            words += cw + tail
            link_words += clw
            links += cl
            if runs is not None:
                if child.tag in _RUN_TAGS and cl and 0 < cw <= RUN_MAX_CHARS and clw >= 0.9 * cw and not tail:
                    run.append(child)
                    continue
                if len(run) >= 2:
                    runs.append(run)
                run = []
        if runs is not None and len(run) >= 2:
            runs.append(run)
        if tag == "a" and el.get("href") is not None:
            link_words, links = words, links + 1
        elif (
            lists is not None
            and tag in _LIST_TAGS
            and links >= MIN_LINKS
            and words
            and link_words >= LINK_DENSITY * words
        ):
            lists.append(el)
        stats[el] = (words, link_words, links)
    if lists is not None:
        lists.reverse()
    return stats


def prune_boilerplate(
    tree: HtmlElement,
    drop_selectors: Iterable[str] = (),
    page: dict | None = None,
    *,
    disabled: Callable[[str], bool] | None = None,
) -> list[dict]:
    """Remove widget blocks from the tree in place; returns `removed` entries (rule, text).

    `page`, when given, receives the page's text size, link text size and link count before pruning,
    and under "dropped" the (rule, whole text) of every removed block (the safety net's evidence).
    `disabled(rule)` true turns a rule off (a source's `cleaning.disable`).
    """
    removed: list[dict] = []
    dropped: list[tuple[str, str]] = []
    if page is not None:
        page["dropped"] = dropped

    def off(rule: str) -> bool:
        return disabled is not None and disabled(rule)

    def drop(el: HtmlElement, rule: str) -> None:
        text = " ".join(" ".join(el.itertext()).split())
        if text:
            removed.append({"rule": rule, "text": text[:300]})
            dropped.append((rule, text))
        parent = el.getparent()
        if parent is not None:
            # keep the text that follows the element (its tail) in the document
            if el.tail and el.tail.strip():
                prev = el.getprevious()
                if prev is not None:
                    prev.tail = (prev.tail or "") + el.tail
                else:
                    parent.text = (parent.text or "") + el.tail
            parent.remove(el)

    for selector in drop_selectors:
        try:
            matches = tree.cssselect(selector)
        # cssselect's ExpressionError (`div::text`) is a RuntimeError; config validation refuses these first
        except (etree.XPathError, ValueError, SyntaxError, RuntimeError) as exc:
            raise ConfigError(f"cleaning.drop_selectors: bad CSS selector {selector!r}: {exc}") from exc
        for el in matches:
            if el.tag not in ("html", "body"):
                drop(el, f"source:drop_selectors:{selector}")

    body = tree.find(".//body")
    root = body if body is not None else tree
    link_lists: list = []
    link_runs: list = []
    stats = _measure(root, link_lists, link_runs)
    if page is not None:
        page["chars"], page["link_chars"], page["links"] = stats[root]
    limit = PRUNE_MAX_SHARE * max(1, stats[root][0])
    detached: set = set()

    def gone(el: HtmlElement) -> bool:
        return any(a in detached for a in el.iterancestors())

    for el in _CANDIDATES(root):
        if el.tag in _KEEP_TAGS or el is root or _IN_CODE(el):
            continue
        name = _widget_name(el)
        if name is None or stats[el][0] > limit or gone(el) or el.find(".//h1") is not None:
            continue
        if off(f"html:widget:{name}"):
            continue
        detached.add(el)
        drop(el, f"html:widget:{name}")

    for el in link_lists:
        if stats[el][0] > limit or el is root or el in detached or gone(el) or off("html:link_list"):
            continue
        detached.add(el)
        drop(el, "html:link_list")
    for run in link_runs:
        for el in run:
            if el not in detached and not gone(el) and not off("html:link_run"):
                detached.add(el)
                drop(el, "html:link_run")
    return removed


# ------------------------------------------------------------------ URLs


def canonical_url(url: str, declared: str | None = None) -> str:
    """The page's rel=canonical when it is on the same site, else `url`; spelled by `pipeline.text.urls.canonicalize`
    (tracking parameters and fragment dropped), the one spelling dedupe and the seen-URL state use too."""
    from courlan import is_external

    try:
        if urlsplit(url).scheme not in ("http", "https"):
            return url  # not a web URL (a file, a test id): nothing to canonicalise against
        chosen = url
        if declared:
            absolute = urljoin(url, declared.strip())
            # ignore_suffix=False: example.com and example.net are different sites
            if urlsplit(absolute).scheme in ("http", "https") and not is_external(absolute, url, ignore_suffix=False):
                chosen = absolute
        return canonicalize(chosen)
    except ValueError:  # malformed URL (e.g. a broken IPv6 literal): keep it as fetched
        return url


# ------------------------------------------------------------------ page


def _check_input(html: str) -> None:
    if not isinstance(html, str):
        raise TypeError(f"extract_page takes decoded text (str), not {type(html).__name__}")
    if not html.strip():
        raise NotAnArticle("empty")
    head = html[:8192]
    # gzip magic 1f 8b as Latin-1/cp1252 decoding or UTF-8 with replacement leaves it
    # (not plain .lstrip(): U+001F counts as white space in Python)
    if head.lstrip(" \t\r\n")[:2] in ("\x1f\x8b", "\x1f\u2039", "\x1f\ufffd"):
        raise NotAnArticle("binary", "gzip data served as HTML (undeclared Content-Encoding)")
    if len(_CONTROL.findall(head)) > BINARY_SHARE * len(head):
        raise NotAnArticle("binary", "control or undecodable characters")
    if len(html) > MAX_HTML_CHARS:
        raise NotAnArticle("too_large", f"{len(html)} characters (limit {MAX_HTML_CHARS})")
    if not _TAGGY.search(html[:200_000]):
        raise NotAnArticle("not_html", "no HTML markup")


_STANDFIRST_RX = re.compile(
    r"(?:^|[\s_\-])(standfirst|dek|subheadline|sub-headline|subhead|subtitle|"
    r"strapline|summary|excerpt|teaser-text|article-summary|field-summary)(?=$|[\s_\-])"
)
_FOLD_SPACE = re.compile(r"\s+")


def _fold_space(text: str) -> str:
    return _FOLD_SPACE.sub(" ", text).strip().casefold()


def _is_standfirst(tree: HtmlElement, text: str) -> bool:
    """Is `text` the text of a subheading (h2-h4) or of a block named like a standfirst?"""
    wanted = _fold_space(text)
    n = len(wanted)
    # length test in libxml2 first: text_content() of every block would be quadratic in depth
    for el in tree.xpath(
        f"//*[self::h2 or self::h3 or self::h4 or self::p or self::div or self::span]"
        f"[string-length(normalize-space()) >= {n - 2} and string-length(normalize-space()) <= {n + 2}]"
    ):
        if _fold_space(el.text_content()) != wanted:
            continue
        if el.tag in ("h2", "h3", "h4"):
            return True
        for node in (el, el.getparent()):
            if node is not None and _STANDFIRST_RX.search(f"{node.get('class', '')} {node.get('id', '')}".lower()):
                return True
    return False


def _drop_standfirst(text: str, tree: HtmlElement, description: str | None) -> tuple[str, list[dict]]:
    """Remove the standfirst (dek) from the top of the text: a line repeating the page's description.

    Two signals must agree: the line equals the meta/og description, and on the page it is a
    subheading (h2-h4) or a block named like a standfirst. A plain first paragraph that equals the
    description is kept: CMSs often derive the description from the article's own first paragraph.
    """
    if not description or len(description) < 30:
        return text, []
    lines = text.split("\n")
    wanted = _fold_space(description)
    for i, line in enumerate(lines[:3]):
        if _fold_space(line) == wanted and _is_standfirst(tree, line):
            return "\n".join(lines[:i] + lines[i + 1 :]), [{"rule": "html:standfirst", "text": line.strip()[:300]}]
    return text, []


def _trafilatura_text(tree: HtmlElement, url: str, *, fast: bool, precision: bool = True) -> str:
    """Main text by trafilatura (precision or balanced mode), comments excluded (bare_extraction copies the tree)."""
    doc = trafilatura.bare_extraction(
        tree,
        url=url,
        include_comments=False,
        favor_precision=precision,
        fast=fast,
        include_tables=True,
        with_metadata=False,
        output_format="python",
    )
    if doc is None:
        return ""
    assert isinstance(doc, Document)  # not as_dict: never the dict form
    return (doc.text or "").strip()


def _readability_text(html: str, url: str) -> str:
    """Text of readability-lxml's summary, or "" when it fails or is mostly link text."""
    from readability import Document

    try:
        root = lxml_html.fromstring(Document(html).summary(html_partial=True))
    except Exception as exc:  # readability raises bare Exception subclasses on odd markup
        log.debug("readability failed on %s: %s", url, exc)
        return ""
    chars, link_chars, _ = _measure(root)[root]
    if link_chars > 0.5 * max(1, chars):
        return ""  # a hub page's list of headlines, not an article
    blocks = root.xpath("//p|//li|//h2|//h3|//h4|//blockquote|//pre")
    if not blocks:
        return " ".join(root.itertext()).strip()
    return "\n".join(" ".join(b.itertext()) for b in blocks).strip()


def _anchor_words(tree: HtmlElement) -> Counter:
    """Multiset of the words of all link texts."""
    words: Counter = Counter()
    for a in tree.iter("a"):
        words.update(" ".join(a.itertext()).casefold().split())
    return words


def _link_share(text: str, anchors: Counter) -> float:
    """Share of the text's words that are words of link texts (multiset overlap)."""
    words = Counter(text.casefold().split())
    total = sum(words.values())
    return sum((words & anchors).values()) / total if total else 0.0


def _why_no_article(html: str, text: str) -> NotAnArticle:
    """The most specific reason for a page without article text (re-parses: this is the rare path)."""
    tree = load_html(html)
    if tree is None:
        return NotAnArticle("not_html", "unparseable markup")
    depth = max((sum(1 for _ in el.iterancestors()) for el in tree.iter()), default=0)
    if depth >= PARSER_MAX_DEPTH:
        return NotAnArticle("too_deep", f"markup nested {PARSER_MAX_DEPTH}+ levels deep")
    body = tree.find(".//body")
    root = body if body is not None else tree
    chars, link_chars, links = _measure(root)[root]
    if links >= MIN_LINKS and link_chars >= LINK_DENSITY * max(1, chars):
        return NotAnArticle("navigation_only", f"{links} links; {link_chars} of {chars} characters are link text")
    if text:
        return NotAnArticle("too_short", f"{word_count(text)} words (minimum {MIN_WORDS})")
    return NotAnArticle("no_article_text")


# ------------------------------------------------------------------ safety net

#: The safety net consults a plain trafilatura pass when the extracted text holds less than this share
#: of the page's non-link text (or is too short to keep). On the two shared benchmark sets every page
#: where the plain pass keeps far more words sits below 0.5; 12-19% of article pages get the extra pass.
NET_TRIGGER = 0.5
#: ... and re-decides the page when the extracted text has fewer words than this share of the plain pass's.
NET_FLOOR = 0.6
#: A pruning rule whose removed blocks hold at least this share of the plain pass's words removed the
#: body, not a widget: it is undone for the page. Smaller removals (a share bar) stay removed.
NET_RULE_SHARE = 0.2
#: The name the safety net's own events carry (in `warnings`, prefixed to the undone rule's name).
SAFETY_NET = "safety_net"
#: Trafilatura's precision mode, named like a rule: the net undoes it as it undoes a pruning rule.
PRECISION_RULE = "trafilatura:favor_precision"
#: The page-type decision (`pipeline.stages.page_type`), named like a rule so that `cleaning.disable` turns it off.
PAGE_TYPE_RULE = "page_type"


#: A plain-pass text with at least this share of its words in teaser cards (`page_type.teaser_cards`) is a list
#: of teasers (a tag page, a section front), not an article body the rules took: the net does not bring it
#: back. A checklist article's items hold no headline link, so they are no teasers.
NET_MAX_TEASER_SHARE = 0.8


def _plain_body(tree: HtmlElement | None, url: str) -> str:
    """What a plain trafilatura pass keeps on the unpruned page `tree` (balanced mode with its own fallbacks,
    comments excluded; it works on a copy), or "" when that is not an article body either: the page's own
    link texts (navigation) or a list of teasers."""
    if tree is None:
        return ""
    text = _trafilatura_text(tree, url, fast=False, precision=False)
    total = word_count(text)
    if not total or _link_share(text, _anchor_words(tree)) >= LINK_DENSITY:
        return ""
    teasers = [_fold_space(el.text_content()) for el in teaser_cards(tree)]
    if teasers:
        in_teasers = sum(
            word_count(line)
            for line in text.split("\n")
            if (folded := _fold_space(line.lstrip("- "))) and any(folded in t for t in teasers)
        )
        if in_teasers >= NET_MAX_TEASER_SHARE * total:
            return ""
    return text


def _redecide(
    text: str, plain: str, removed: list[dict], dropped: list[tuple[str, str]], precision: bool
) -> tuple[str, list[dict], list[dict]]:
    """The page re-decided against the plain pass: (text, removed, warnings).

    Each line of the plain text is traced to the pruned block that held it. A rule whose blocks held at
    least NET_RULE_SHARE of the plain words is undone (its blocks come back and leave `removed`); the
    other rules' lines stay out. Words the plain pass keeps that no rule removed were lost to
    trafilatura's precision mode, which is undone the same way. The plain pass is the floor.
    """
    lines = [line for line in plain.split("\n") if line.strip()]
    total = max(1, word_count(plain))
    folded_blocks = [(rule, _fold_space(block)) for rule, block in dropped]
    ours = _fold_space(text)
    owner: list[str | None] = []
    cost: Counter = Counter()
    for line in lines:
        folded = _fold_space(line)
        rule = next((r for r, block in folded_blocks if folded in block), None)
        if rule is None and folded not in ours:
            rule = PRECISION_RULE if precision else None
        owner.append(rule)
        if rule is not None:
            cost[rule] += word_count(line)
    undone = {rule for rule, words in cost.items() if words >= NET_RULE_SHARE * total}
    kept = "\n".join(line for line, rule in zip(lines, owner) if rule is None or rule in undone)
    events = [
        {
            "rule": f"{SAFETY_NET}:{rule}",
            "message": f"undone: it removed {cost[rule]} of the {total} words a plain trafilatura pass keeps",
            "words": cost[rule],
        }
        for rule in sorted(undone, key=lambda r: -cost[r])
    ]
    if word_count(kept) < MIN_WORDS:
        # Many small removals, none the culprit alone, left no article: the plain pass is the floor.
        events = [
            {
                "rule": SAFETY_NET,
                "message": f"plain trafilatura pass kept: only {word_count(kept)} of its {total} words were left",
                "words": total - word_count(kept),
            }
        ]
        kept, undone = plain, set(cost)
    elif not events:
        # Each removal alone is small (widgets, link lists): the rules stand and the text is what they left.
        return text, removed, []
    return kept, [r for r in removed if r["rule"] not in undone], events


def extract_page(html: str, url: str, *, rules: CleaningRules | None = None) -> dict:
    """The article record of one page, its text normalised but not yet cleaned (the clean stage's
    line rules come next: `pipeline.flows.pages.article_from_html` does both); raises
    NotAnArticle(reason) when the page holds no article."""
    _check_input(html)
    try:
        tree = load_html(html)
    except (ValueError, etree.ParserError) as exc:
        raise NotAnArticle("not_html", str(exc)) from None
    if tree is None:
        raise NotAnArticle("not_html", "unparseable markup")
    n_elements = int(tree.xpath("count(//*)"))
    if n_elements > MAX_ELEMENTS:
        raise NotAnArticle("too_large", f"{n_elements} elements (limit {MAX_ELEMENTS})")

    # What the page says about itself (read before pruning: bylines and dates sit in blocks the pruning removes).
    meta = extract_metadata(tree, url, default_tz=rules.timezone if rules else None)

    disabled = rules.disables if rules and rules.disable else None
    # The page-type decision reads the page as published (teaser blocks, link density): pruning edits `tree`.
    whole = None if disabled and disabled(PAGE_TYPE_RULE) else copy.deepcopy(tree)
    page: dict = {}
    removed = prune_boilerplate(tree, rules.drop_selectors if rules else (), page, disabled=disabled)
    warnings: list[dict] = []
    precision = not (disabled and disabled(PRECISION_RULE))
    text = _trafilatura_text(tree, url, fast=True, precision=precision)
    words = word_count(text)
    if words < SECOND_OPINION_WORDS:
        # Short: trafilatura's full path (its own readability/jusText comparison) sometimes finds the body
        # that the fast path missed; it costs about as much as the fast path again, so only when needed.
        full = _trafilatura_text(tree, url, fast=False, precision=precision)
        full_words = word_count(full)
        if full_words > words:
            text, words = full, full_words
    if (words < MIN_WORDS or len(text) < NET_TRIGGER * (page["chars"] - page["link_chars"])) and not (
        disabled and disabled(SAFETY_NET)
    ):
        # The safety net: pruning and precision mode must never cost an article a plain pass finds.
        # the unpruned copy kept for the page type, else a fresh parse (page type turned off)
        plain = _plain_body(whole if whole is not None else load_html(html), url)
        if words < NET_FLOOR * word_count(plain):
            text, removed, events = _redecide(text, plain, removed, page["dropped"], precision)
            words = word_count(text)
            warnings += events
            log.info("safety net on %s: %s", url, "; ".join(f"{e['rule']} ({e['words']} words)" for e in events))
    if words < MIN_WORDS:
        # Last opinion: readability-lxml scores blocks differently (on the pruned page: the widgets stay out).
        second = _readability_text(lxml_html.tostring(tree, encoding="unicode"), url)
        second_words = word_count(second)
        if second_words >= MIN_WORDS:
            text, words = second, second_words
            warnings.append(
                {
                    "rule": "fallback:readability",
                    "message": "trafilatura found no article text; readability-lxml's was used",
                }
            )
    if words < MIN_WORDS:
        raise _why_no_article(html, text)
    text, standfirst = _drop_standfirst(
        text, tree, None if disabled and disabled("html:standfirst") else meta.description
    )
    if standfirst:
        removed += standfirst
        words = word_count(text)
    if page["link_chars"] >= 0.5 * max(1, page["chars"]) and _link_share(text, _anchor_words(tree)) >= LINK_DENSITY:
        # A link-heavy page whose "article" is its own link texts: a section front or a site map.
        raise NotAnArticle("navigation_only", "the extracted text is the page's link texts")

    text = normalise_text(text)
    words = word_count(text)
    kind = "article"
    if whole is not None:
        decided = classify_page(whole, url, text, schema_types=meta.schema_types, og_type=meta.og_type)
        if not decided.kept:
            raise NotAnArticle(f"not_article:{decided.kind}", decided.detail())
        kind = decided.kind
    record = {
        "url": url,
        "canonical_url": canonical_url(url, meta.canonical),
        "title": normalise_text(meta.title) if meta.title else None,
        "author": "; ".join(meta.authors) or None,
        "authors": list(meta.authors),
        "publisher": meta.publisher,
        "credit": list(meta.credit),
        "published": meta.published,
        "published_precision": meta.published_precision,
        "published_offset_minutes": meta.published_offset_minutes,
        "modified": meta.modified,
        "section": meta.section,
        "keywords": list(meta.keywords),
        "language": None,  # detected on the final text by the clean stage
        "sitename": meta.sitename or None,
        "image": meta.image or None,
        "text": text,
        "word_count": words,
        "removed": removed,
        "warnings": warnings,
        "page_type": kind,
        "extractor_version": EXTRACTOR_VERSION,
    }
    return record


# ------------------------------------------------------------------ batch


#: A per-page step run in the extraction worker right after `extract_page`: (the extracted record,
#: its item without the HTML) -> a new record; raises NotAnArticle to reject the page. It must be
#: picklable (a module-level function or a dataclass instance); an optional `warmup()` method loads
#: what it needs once, before the workers fork. `pipeline.flows` hands the clean stage's step here, so
#: a page is cleaned on the core that extracted it, and extraction never imports cleaning.
PageStep = Callable[[dict, dict], dict]


@dataclass(frozen=True)
class PageOutcome:
    """What the workers made of one page."""

    #: The extracted record (the item's fields added), or {"url", "error", "detail"}.
    record: dict
    #: What the `then` step made of it: its record, or {"error", "detail"} when it rejected the page;
    #: None without a step or when extraction failed.
    then: dict | None = None

    @property
    def ok(self) -> bool:
        return "error" not in self.record


def _failure(url: str, reason: str, detail: str) -> dict:
    return {"url": url, "error": reason, "detail": detail}


def _extract_item(payload: tuple[dict, CleaningRules | None], then: PageStep | None = None) -> PageOutcome:
    item, rules = payload
    url = item.get("url") or ""
    try:
        record = extract_page(item.get("html") or "", url, rules=rules)
    except NotAnArticle as exc:
        return PageOutcome(_failure(url, exc.reason, exc.detail))
    except RecursionError:
        return PageOutcome(_failure(url, "too_deep", "markup nested too deeply"))
    except Exception as exc:  # one bad page must not stop a batch; the reason is kept for rejects
        log.exception("extraction failed for %s", url)
        return PageOutcome(_failure(url, "extract_error", f"{type(exc).__name__}: {exc}"))
    for key, value in item.items():
        if key != "html" and key not in record:
            record[key] = value
    if then is None:
        return PageOutcome(record)
    pointer = {key: value for key, value in item.items() if key != "html"}
    try:
        return PageOutcome(record, then(record, pointer))
    except NotAnArticle as exc:  # the step's reject (e.g. the clean stage's), not an extraction failure
        return PageOutcome(record, {"error": exc.reason, "detail": exc.detail})


def extract_outcomes(
    items: Iterable[dict],
    *,
    workers: int | None = None,
    timeout: float = 30,
    max_memory_mb: int = 1024,
    rules_for: Callable[[dict], CleaningRules | None] | None = None,
    then: PageStep | None = None,
) -> Iterator[PageOutcome]:
    """Extract {"url", "html", ...} items on all cores, then run `then` on each record in the same
    worker; yields a `PageOutcome` per item, in input order.

    Each page gets `timeout` seconds and `max_memory_mb` of memory (extraction and `then` together);
    past either its worker is killed and the page's record is {"url", "error": "timeout" | "memory"};
    the batch goes on. `rules_for(item)` gives the item's source's rules (its `drop_selectors`).
    """
    urls: dict[int, str] = {}
    counter = iter(range(10**18))

    def payloads() -> Iterator[tuple[dict, CleaningRules | None]]:
        for item in items:
            urls[next(counter)] = item.get("url") or ""
            yield item, (rules_for(item) if rules_for else None)

    fn = _extract_item if then is None else partial(_extract_item, then=then)  # forked, never pickled per page
    warmup = getattr(then, "warmup", None)
    for index, result in enumerate(
        bounded_map(fn, payloads(), workers=workers, timeout=timeout, max_memory_mb=max_memory_mb, warmup=warmup)
    ):
        url = urls.pop(index, "")
        if isinstance(result, TaskFailure):
            yield PageOutcome(_failure(url, result.reason, result.detail))
        else:
            yield result


def extract_batch(
    items: Iterable[dict],
    *,
    workers: int | None = None,
    timeout: float = 30,
    max_memory_mb: int = 1024,
    rules_for: Callable[[dict], CleaningRules | None] | None = None,
) -> Iterator[dict]:
    """`extract_outcomes` without a step: the extracted records (or {"url", "error", "detail"}) in input order."""
    for outcome in extract_outcomes(
        items, workers=workers, timeout=timeout, max_memory_mb=max_memory_mb, rules_for=rules_for
    ):
        yield outcome.record


# ------------------------------------------------------------------ stage


def warc_item(rec) -> dict | None:
    """The extraction item of an archived response (`pipeline.dataset.warc.WarcResponse`), without its HTML;
    None for what is not an article page (feeds, sitemaps, robots, sections, non-2xx outcomes,
    which are the crawl's to report)."""
    if rec.kind != "article" or not 200 <= rec.status < 300:
        return None
    return {
        "url": rec.url,
        "source": rec.source,
        "warc_key": rec.warc_key,
        "warc_record_id": rec.record_id,
        "fetched_at": rec.date,
        "http_etag": rec.header("ETag"),
        "http_last_modified": rec.header("Last-Modified"),
    }


def cleaning_rules_of(ctx: RunContext) -> Callable[[dict], CleaningRules | None]:
    """item -> its source's cleaning rules (None for a source without rules or not in the sources file)."""
    rules = ctx.sources.cleaning_rules()
    return lambda item: rules.get(item.get("source") or "")


def write_extraction(ctx, warc_key: str, outcomes: Iterable[tuple[dict, dict]]) -> str:
    """Store the (item, result) pairs of one WARC file: records to `work/.../extracted/<stem>.jsonl.gz`
    (streamed through a local file), failures to `rejects/.../extract-<stem>.jsonl` (stage "extract").
    Returns the records' key."""
    rejects: list[dict] = []  # a few small dicts: the failures, without their pages
    out_key = extracted_key(ctx.run_id, warc_key)
    with ctx.bucket.jsonl_upload(out_key) as out:
        for item, result in outcomes:
            if "error" in result:
                rejects.append(
                    reject(
                        item["url"],
                        "extract",
                        result["error"],
                        source=item["source"],
                        detail=result.get("detail", ""),
                        warc_key=warc_key,
                        warc_record_id=item["warc_record_id"],
                    )
                )
            else:
                out.write(result)
    write_rejects(ctx, extract_rejects_name(warc_key), rejects)
    log.info("extract %s: %s articles, %s rejected -> %s", warc_key, out.rows, len(rejects), out_key)
    return out_key


def extract_stage(ctx, warc_key: str, *, workers: int | None = None, timeout: float = 30) -> str:
    """Extract the article responses of one WARC file; returns the key of `work/.../extracted/<stem>.jsonl.gz`.

    Pages that are not articles or fail go to `rejects/.../extract-<stem>.jsonl` (stage "extract").
    """
    pointers: list[dict] = []  # per item, without the HTML: to file rejects against the WARC record

    def items() -> Iterator[dict]:
        for rec in read_warc(ctx.bucket, warc_key):
            item = warc_item(rec)
            if item is not None:
                pointers.append(item)
                yield {**item, "html": rec.text()}

    def pairs() -> Iterator[tuple[dict, dict]]:
        for i, result in enumerate(batch):
            item, pointers[i] = pointers[i], {}  # done with: memory stays bounded by the pool's window
            yield item, result

    # Text-level cleaning is the clean stage's job (clean_stage): done once, there.
    batch = extract_batch(items(), workers=workers, timeout=timeout, rules_for=cleaning_rules_of(ctx))
    return write_extraction(ctx, warc_key, pairs())
