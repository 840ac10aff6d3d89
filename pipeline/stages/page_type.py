"""Page type: is this page a news article (kept) or a section front, tag page, product, forum, docs page (refused)?

`classify_page` scores a page with a logistic regression over ~60 named features (`page_features`): schema.org
types, og:type, the URL's shape, link density, linked headings, headline/byline/date markup, the extracted
text's shape, shop/forum/docs markers and class-name vocabulary. Its weights are in `page_type_model.json`
beside this module, written by `benchmarks/train_page_type.py` (wcxb-dev; threshold from cross-validation by
site). The decision leans to keeping: refusing a real article loses data, keeping a tag page costs a record.
Around the model, a few rules a news site needs and wcxb-dev has too few pages to teach:
- a liveblog (LiveBlogPosting, or "live" in the path with many <time> entries) is kept as "liveblog";
- NewsArticle markup (and its subtypes) keeps a page whatever the model says;
- a page without article markup whose URL is a tag/section/author path, or that is mostly linked teaser
  headings, is a listing even when the model would keep it.
The `signals` of the result name what decided (a rule, then the features that pushed hardest), for the reject
detail. `score` is the model's probability of "article" (classes weighted equally in training).
"""

from __future__ import annotations

import json
import math
import re
import zlib
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from lxml import etree
from lxml.html import HtmlElement

from pipeline.text.normalise import word_count
from pipeline.text.urls import split_url

__all__ = [
    "KEPT_KINDS",
    "MODEL_PATH",
    "PageModel",
    "PageType",
    "classify_page",
    "load_model",
    "page_features",
    "teaser_cards",
    "vocab_buckets",
    "vocab_features",
]

_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")

#: The kinds a news pipeline stores; the others are refused.
KEPT_KINDS = frozenset({"article", "liveblog"})
MODEL_PATH = Path(__file__).with_name("page_type_model.json")

# schema.org types, by what they say of the page (subtypes named: pages rarely use the parent alone).
NEWS_TYPES = frozenset(
    {
        "NewsArticle",
        "ReportageNewsArticle",
        "AnalysisNewsArticle",
        "OpinionNewsArticle",
        "BackgroundNewsArticle",
        "ReviewNewsArticle",
        "AskPublicNewsArticle",
        "LiveBlogPosting",
    }
)
ARTICLE_TYPES = frozenset({"Article", "BlogPosting", "Report", "ScholarlyArticle", "SatiricalArticle", "Blog"})
DOCS_TYPES = frozenset({"TechArticle", "APIReference"})
PRODUCT_TYPES = frozenset(
    {"Product", "ProductGroup", "ProductModel", "IndividualProduct", "Offer", "AggregateOffer", "ItemPage", "Car"}
)
LISTING_TYPES = frozenset({"CollectionPage", "ItemList", "SearchResultsPage", "OfferCatalog", "ProfilePage"})
FORUM_TYPES = frozenset({"QAPage", "DiscussionForumPosting", "Question", "Answer", "SocialMediaPosting"})
SERVICE_TYPES = frozenset(
    {
        "Service",
        "SoftwareApplication",
        "WebApplication",
        "MobileApplication",
        "Course",
        "EducationalOccupationalProgram",
        "Event",
        "ContactPage",
        "AboutPage",
        "LocalBusiness",
        "ProfessionalService",
        "Store",
        "JobPosting",
        "RealEstateListing",
    }
)
GALLERY_TYPES = frozenset({"ImageGallery", "MediaGallery"})
VIDEO_TYPES = frozenset({"VideoObject", "VideoGallery"})

#: Path segments that name a kind of page (whole segments only: "/tag/" and "/tags/", never "/stage/").
URL_TOKENS: dict[str, frozenset[str]] = {
    "listing": frozenset(
        {
            "tag",
            "tags",
            "category",
            "categories",
            "section",
            "sections",
            "topic",
            "topics",
            "archive",
            "archives",
            "search",
            "collections",
            "collection",
            "c",
            "cat",
            "author",
            "authors",
            "page",
            "list",
            "browse",
            "shows",
            "issues",
        }
    ),
    "product": frozenset({"product", "products", "shop", "item", "items", "p", "dp", "store", "buy", "cart", "sku"}),
    "docs": frozenset(
        {"docs", "doc", "documentation", "reference", "manual", "api", "userguide", "guide", "tutorial", "learn"}
    ),
    "forum": frozenset(
        {
            "forum",
            "forums",
            "threads",
            "thread",
            "t",
            "questions",
            "community",
            "discussion",
            "viewtopic",
            "comments",
            "showtopic",
            "discuss",
            "answers",
            "bbs",
            "boards",
            "board",
        }
    ),
    "service": frozenset({"services", "service", "pricing", "contact", "about", "about-us", "contact-us", "courses"}),
    "article": frozenset({"news", "blog", "blogs", "article", "articles", "story", "stories", "post", "posts"}),
}
_DATE_IN_PATH = re.compile(r"/(?:19|20)\d\d[/-](?:0?[1-9]|1[0-2])(?:[/-]|$)|/(?:19|20)\d\d(?:0[1-9]|1[0-2])[0-3]\d/")
_LIVE_IN_PATH = re.compile(r"(?:^|[/_-])live(?:$|[/_-])")
_SEGMENT_WORDS = re.compile(r"[-_+]")
_NUMERIC_ID = re.compile(r"[a-z-]*\d{5,}[a-z-]*(?:\.html?)?")
#: Class-name vocabulary, by what it says of the page (substrings of class attributes, lower-cased).
_CLASS_VOCAB: dict[str, tuple[str, ...]] = {
    "class_product_log": (
        "price",
        "cart",
        "basket",
        "sku",
        "add-to",
        "addto",
        "product",
        "variant",
        "swatch",
        "checkout",
        "quantity",
        "qty",
        "rating",
        "review",
    ),
    "class_forum_log": (
        "reply",
        "replies",
        "message",
        "thread",
        "topic",
        "answer",
        "vote",
        "avatar",
        "signature",
        "poster",
        "username",
        "user-info",
        "userinfo",
        "post-body",
        "postbody",
        "post-content",
        "post-meta",
    ),
    "class_comment_log": ("comment",),
    "class_docs_log": (
        "toc",
        "sidebar",
        "docs",
        "highlight",
        "admonition",
        "sphinx",
        "md-nav",
        "menu__",
        "theme-doc",
        "api-",
        "method",
        "signature",
        "syntax",
    ),
    "class_listing_log": (
        "card",
        "teaser",
        "tile",
        "grid",
        "item",
        "listing",
        "river",
        "feed",
        "collection",
        "pagination",
        "pager",
        "results",
    ),
    "class_article_log": (
        "article",
        "entry",
        "story",
        "byline",
        "author",
        "dateline",
        "headline",
        "published",
        "caption",
        "share",
        "social",
    ),
}
#: Phrases of the page's visible text, by what they say of it (counted lower-cased, as substrings).
_MARKER_PHRASES: dict[str, tuple[str, ...]] = {
    "cart": (
        "add to cart",
        "add to bag",
        "add to basket",
        "add to wishlist",
        "add to trolley",
        "buy now",
        "in stock",
        "out of stock",
        "checkout",
        "free shipping",
        "size guide",
        "ajouter au panier",
        "in den warenkorb",
    ),
    "forum": (
        " replies",
        " reply",
        "quote",
        "joined",
        "members online",
        "thread starter",
        "original poster",
        "upvote",
        "likes received",
        "report post",
        "mark as solution",
        "solved",
    ),
    "docs": (
        "on this page",
        "edit this page",
        "edit on github",
        "table of contents",
        "next page",
        "previous page",
        "was this page helpful",
        "view source",
        "api reference",
    ),
}
#: A price: a currency sign then a digit, or a digit then a currency sign or code.
_PRICE = re.compile(r"[$€£¥₹]\s?\d|\d\s?(?:€|£|zł|kr\b|usd\b|eur\b|gbp\b)")
_SENTENCE_ENDS = frozenset(".!?…:;\"'”’»)。！？」")
#: First person plural and second person: a business speaking of itself to a customer ("we offer you ...").
_WE = frozenset({"we", "our", "us", "ours", "we're", "we've"})
_YOU = frozenset({"you", "your", "yours", "you're", "you'll"})

_CARDS = etree.XPath("//li|//article")
_TAGS = (
    "h1",
    "h2",
    "h3",
    "h4",
    "time",
    "article",
    "pre",
    "code",
    "img",
    "input",
    "select",
    "button",
    "textarea",
    "meta",
    "script",
    "style",
    "noscript",
    "table",
    "title",
    "body",
)
_LINK_TEXT = etree.XPath("//body//a[@href]//text()", smart_strings=False)
_CLASSES = etree.XPath("//@class", smart_strings=False)
_META_PUBLISHED = frozenset(
    {
        "article:published_time",
        "og:published_time",
        "datepublished",
        "pubdate",
        "publishdate",
        "parsely-pub-date",
        "sailthru.date",
        "dc.date.issued",
        "date",
    }
)
_META_AUTHOR = frozenset({"author", "article:author", "parsely-author", "sailthru.author", "dc.creator"})

#: A teaser card: a list item or <article> of at most this many words that holds a headline link (3+ words).
TEASER_MAX_WORDS = 80
#: Cards looked at (a page with thousands of list items is a listing whatever the rest says).
MAX_CARDS = 400


@dataclass(frozen=True)
class PageType:
    """What a page is: `kind` (article, liveblog, listing, gallery, video, other), `score` (the model's
    probability that it is an article), `signals` (what decided, most decisive first)."""

    kind: str
    score: float
    signals: dict[str, float | str] = field(default_factory=dict)

    @property
    def kept(self) -> bool:
        """True for the kinds a news pipeline stores."""
        return self.kind in KEPT_KINDS

    def detail(self) -> str:
        """The signals as one line for a reject record: "og:type=website; link_share=0.71; url=/tag/"."""
        return "; ".join(f"{k}={_fmt(v)}" for k, v in self.signals.items())


@dataclass(frozen=True)
class PageModel:
    """Logistic regression over named features: standardised (`mean`, `scale`), weighted, plus `bias`."""

    features: tuple[str, ...]
    mean: tuple[float, ...]
    scale: tuple[float, ...]
    weights: tuple[float, ...]
    bias: float
    threshold: float
    #: {field: VOCAB_BUCKETS log-count ratios} for `vocab_features` (empty: a model without vocabulary).
    vocabulary: Mapping[str, tuple[float, ...]] = field(default_factory=dict)

    def contributions(self, values: Mapping[str, float]) -> dict[str, float]:
        """Each feature's share of the logit (positive: towards article)."""
        return {
            name: w * (values[name] - m) / s
            for name, m, s, w in zip(self.features, self.mean, self.scale, self.weights, strict=True)
        }

    def probability(self, values: Mapping[str, float]) -> float:
        """P(article) for the feature values."""
        z = self.bias + sum(self.contributions(values).values())
        return 1.0 / (1.0 + math.exp(-max(-60.0, min(60.0, z))))

    @classmethod
    def from_dict(cls, data: Mapping) -> PageModel:
        feats = tuple(data["features"])
        return cls(
            features=feats,
            mean=tuple(float(data["mean"][f]) for f in feats),
            scale=tuple(float(data["scale"][f]) for f in feats),
            weights=tuple(float(data["weights"][f]) for f in feats),
            bias=float(data["bias"]),
            threshold=float(data["threshold"]),
            vocabulary={name: tuple(map(float, table)) for name, table in (data.get("vocabulary") or {}).items()},
        )


@lru_cache(maxsize=4)
def load_model(path: Path = MODEL_PATH) -> PageModel:
    """The committed model (read once per process)."""
    return PageModel.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))


def _fmt(value: float | str) -> str:
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else f"{value:.2f}"
    return str(value)


def _url_features(url: str) -> dict[str, float]:
    parts = split_url(url)
    segments = [s for s in parts.path.lower().split("/") if s]
    labels = (parts.hostname or "").split(".")[:-1]  # "docs.", "forum.", "shop.", "readthedocs." ...
    path = "/" + "/".join(segments)
    words = [len([w for w in _SEGMENT_WORDS.split(s) if w]) for s in segments]
    out = {
        f"url_{name}": float(any(s in tokens for s in segments) or any(h in tokens for h in labels))
        for name, tokens in URL_TOKENS.items()
    }
    out.update(
        {
            "url_date": float(bool(_DATE_IN_PATH.search(path))),
            "url_slug_words": float(min(max(words, default=0), 15)),
            "url_depth": float(min(len(segments), 6)),
            "url_root": float(not segments),
            "url_query": float(bool(parts.query)),
            "url_numeric_id": float(any(_NUMERIC_ID.fullmatch(s) for s in segments)),
        }
    )
    return out


def _schema_features(schema_types: Sequence[str], og_type: str | None) -> dict[str, float]:
    types = set(schema_types)
    og = (og_type or "").strip().lower()
    return {
        "schema_news": float(bool(types & NEWS_TYPES)),
        "schema_article": float(bool(types & ARTICLE_TYPES)),
        "schema_docs": float(bool(types & DOCS_TYPES)),
        "schema_product": float(bool(types & PRODUCT_TYPES)),
        "schema_listing": float(bool(types & LISTING_TYPES)),
        "schema_forum": float(bool(types & FORUM_TYPES)),
        "schema_service": float(bool(types & SERVICE_TYPES)),
        "schema_faq": float("FAQPage" in types),
        "og_article": float(og == "article" or og.endswith(":article")),
        "og_product": float("product" in og or "ecommerce" in og or og.endswith(":item")),
        "og_website": float(og == "website"),
        "og_missing": float(not og),
    }


def _text_features(text: str) -> dict[str, float]:
    lines = [line for line in text.split("\n") if line.strip()]
    # scripts written without spaces (Han, Kana) count a word per character, as everywhere in the pipeline
    counts = [word_count(line) if _CJK.search(line) else len(line.split()) for line in lines]
    words = sum(counts)
    in_sentences = sum(n for line, n in zip(lines, counts) if n >= 6 and line.rstrip()[-1:] in _SENTENCE_ENDS)
    short = sum(1 for n in counts if n < 6)
    lower = text.lower()
    tokens = lower.split()
    return {
        "text_words_log": math.log1p(words),
        "text_lines_log": math.log1p(len(lines)),
        "text_mean_line_words": min(words / max(1, len(lines)), 80.0),
        "text_sentence_share": in_sentences / max(1, words),
        "text_short_line_share": short / max(1, len(lines)),
        "text_we_share": sum(map(_WE.__contains__, tokens)) / max(1, words),
        "text_you_share": sum(map(_YOU.__contains__, tokens)) / max(1, words),
        "text_prices_log": math.log1p(len(_PRICE.findall(lower))),
    }


def teaser_cards(tree: HtmlElement) -> list[HtmlElement]:
    """The page's teaser cards: list items and <article>s of at most TEASER_MAX_WORDS words holding a headline
    link (3+ words). A card inside another counts once (the outer one). Also the extraction safety net's test
    of "a list of teasers, not an article body"."""
    found: list[HtmlElement] = []
    for el in _CARDS(tree)[:MAX_CARDS]:
        if len(el.text_content().split()) > TEASER_MAX_WORDS or not any(
            a.get("href") and len(" ".join(a.itertext()).split()) >= 3 for a in el.iter("a")
        ):
            continue
        if not any(p in found for p in el.iterancestors("li", "article")):
            found.append(el)
    return found


def _teasers(tree: HtmlElement) -> tuple[int, int]:
    """(teaser cards, words in them)."""
    cards = teaser_cards(tree)
    return len(cards), sum(len(el.text_content().split()) for el in cards)


@dataclass
class _Scan:
    """What one pass over the page's elements of interest found."""

    tags: Counter = field(default_factory=Counter)
    linked_headings: int = 0
    h1_words: int = 0
    title_words: int = 0
    published: bool = False
    author: bool = False
    body_scripts: list[str] = field(default_factory=list)


def _scan(tree: HtmlElement) -> _Scan:
    out = _Scan()
    in_body = False
    for el in tree.iter(*_TAGS):
        tag = el.tag
        out.tags[tag] += 1
        if tag in ("h2", "h3", "h4"):
            out.linked_headings += el.find(".//a[@href]") is not None
        elif tag == "meta":
            name = (el.get("property") or el.get("name") or el.get("itemprop") or "").lower()
            out.published |= name in _META_PUBLISHED
            out.author |= name in _META_AUTHOR
        elif tag in ("script", "style", "noscript"):
            raw = el.text or ""
            if el.get("type", "").lower() == "application/ld+json":
                out.published |= '"datePublished"' in raw
                out.author |= '"author"' in raw
            if in_body and raw:
                out.body_scripts.append(raw)
        elif tag == "h1" and not out.h1_words:
            out.h1_words = len(el.text_content().split())
        elif tag == "title" and not out.title_words:
            out.title_words = len((el.text or "").split())
        elif tag == "body":
            in_body = True
    return out


def _without(text: str, pieces: list[str]) -> str:
    """`text` without `pieces`, which occur in it in this order (script and style texts in the serialised body:
    they are not the page's visible text). One forward pass: each piece is looked for after the previous one."""
    out = []
    at = 0
    for piece in pieces:
        found = text.find(piece, at)
        if found >= 0:
            out.append(text[at:found])
            at = found + len(piece)
    out.append(text[at:])
    return " ".join(out)


def _class_features(tree: HtmlElement) -> dict[str, float]:
    # Distinct class attributes only: a thousand identical list items say "listing" no louder than a few.
    classes = " ".join(set(_CLASSES(tree))).lower()
    return {group: math.log1p(sum(classes.count(t) for t in tokens)) for group, tokens in _CLASS_VOCAB.items()}


def _page_features(tree: HtmlElement, text_words: int) -> dict[str, float]:
    scan = _scan(tree)
    body = tree.find("body")
    visible = _without(
        etree.tostring(body if body is not None else tree, method="text", encoding="unicode"), scan.body_scripts
    ).lower()
    page_words = len(visible.split())
    link_words = len(" ".join(_LINK_TEXT(tree)).split())
    markers = {group: sum(visible.count(p) for p in phrases) for group, phrases in _MARKER_PHRASES.items()}
    markers["price"] = len(_PRICE.findall(visible))
    tags = scan.tags
    headings = tags["h2"] + tags["h3"] + tags["h4"]
    out = {
        "page_words_log": math.log1p(page_words),
        "link_density": min(1.0, link_words / max(1, page_words)),
        "text_share": min(1.0, text_words / max(1, page_words)),
        "heading_link_share": scan.linked_headings / max(1, headings),
        "headings_log": math.log1p(headings),
        "h1_count": float(min(tags["h1"], 3)),
        "h1_words": float(min(scan.h1_words, 25)),
        "title_words": float(min(scan.title_words, 25)),
        "time_log": math.log1p(tags["time"]),
        "article_elements_log": math.log1p(tags["article"]),
        "has_published": float(scan.published),
        "has_author": float(scan.author),
        "page_prices_log": math.log1p(markers["price"]),
        "cart_markers_log": math.log1p(markers["cart"]),
        "forum_markers_log": math.log1p(markers["forum"]),
        "docs_markers_log": math.log1p(markers["docs"]),
        "code_blocks_log": math.log1p(tags["pre"] + tags["code"]),
        "form_controls_log": math.log1p(tags["input"] + tags["select"] + tags["button"] + tags["textarea"]),
        "images_log": math.log1p(tags["img"]),
        "tables_log": math.log1p(tags["table"]),
    }
    out.update(_class_features(tree))
    return out


def page_features(
    tree: HtmlElement, url: str, text: str, *, schema_types: Sequence[str] = (), og_type: str | None = None
) -> dict[str, float]:
    """The named features the model reads (all floats; see the module docstring)."""
    features = _url_features(url)
    features.update(_schema_features(schema_types, og_type))
    features.update(_page_features(tree, len(text.split())))
    features.update(_text_features(text))
    return features


# ------------------------------------------------------------------ the vocabulary

#: Words are hashed into this many buckets per field; the model holds one log-count ratio per bucket
#: (naive-Bayes style: log P(bucket | article) - log P(bucket | other), learned by benchmarks/train_page_type.py).
VOCAB_BUCKETS = 4096
#: The fields whose words are hashed, each with its own table: the extracted text (its first words), the URL
#: path and the <title>. "pricing", "docs", "forum", "login" lean one way; "said", "minister" the other.
VOCAB_FIELDS = ("text", "url", "title")
VOCAB_TEXT_WORDS = 600
_WORD = re.compile(r"[^\W\d_]{2,}")


def vocab_words(tree: HtmlElement, url: str, text: str) -> dict[str, dict[str, int]]:
    """{field: {distinct lower-cased word: its bucket}} for `VOCAB_FIELDS`."""
    title = tree.findtext(".//title") or ""
    words = {
        "text": _WORD.findall(text.lower())[:VOCAB_TEXT_WORDS],
        "url": _WORD.findall(split_url(url).path.lower()),
        "title": _WORD.findall(title.lower())[:40],
    }
    # the field name salts the hash so "news" in a URL and in a title are different words
    return {name: {w: zlib.crc32(f"{name}:{w}".encode()) % VOCAB_BUCKETS for w in words[name]} for name in VOCAB_FIELDS}


def vocab_buckets(tree: HtmlElement, url: str, text: str) -> dict[str, frozenset[int]]:
    """{field: the buckets of its distinct lower-cased words} for `VOCAB_FIELDS`."""
    return {name: frozenset(words.values()) for name, words in vocab_words(tree, url, text).items()}


def _telling_words(words: Mapping[str, int], table: Sequence[float], sign: float, n: int = 3) -> str:
    """The `n` words of a field that pushed hardest in the direction decided, for the signals."""
    ranked = sorted((w for w in words if sign * table[words[w]] > 0), key=lambda w: -sign * table[words[w]])
    return ",".join(ranked[:n]) or "none"


def vocab_features(buckets: Mapping[str, frozenset[int]], tables: Mapping[str, Sequence[float]]) -> dict[str, float]:
    """{"vocab_<field>": the summed log-count ratios of the field's words / sqrt(their number)}: one feature per
    field, so a long page does not outvote the structural features by length alone."""
    return {
        f"vocab_{name}": sum(tables[name][b] for b in buckets[name]) / math.sqrt(max(1, len(buckets[name])))
        for name in tables
    }


# ------------------------------------------------------------------ the decision

#: Signals named in a result (the features that pushed the decision most, besides a rule's own).
MAX_SIGNALS = 4
#: A liveblog without LiveBlogPosting markup: "live" in the URL path and at least this many <time> entries.
LIVEBLOG_MIN_TIMES = 5
#: Structure that makes a refused page a listing rather than "other": the share of its words in teaser cards,
#: of its h2-h4 headings that are links, of its words that are link text.
KIND_TEASER_SHARE = 0.3
KIND_HEADING_LINKS = 0.5
KIND_LINK_DENSITY = 0.5


def _url_token(url: str, group: str) -> str:
    """The URL part that set `url_<group>` ("/tag/", "docs."), for the signals."""
    parts = split_url(url)
    tokens = URL_TOKENS[group]
    segment = next((s for s in parts.path.lower().split("/") if s in tokens), None)
    if segment is not None:
        return f"/{segment}/"
    label = next((h for h in (parts.hostname or "").split(".")[:-1] if h in tokens), "")
    return f"{label}."


_SCHEMA_GROUPS = {
    "schema_news": NEWS_TYPES,
    "schema_article": ARTICLE_TYPES,
    "schema_docs": DOCS_TYPES,
    "schema_product": PRODUCT_TYPES,
    "schema_listing": LISTING_TYPES,
    "schema_forum": FORUM_TYPES,
    "schema_service": SERVICE_TYPES,
    "schema_faq": frozenset({"FAQPage"}),
}


def _signal(
    name: str, value: float, url: str, schema_types: Sequence[str], og_type: str | None
) -> tuple[str, float | str]:
    """A feature as a reader wants it in a reject detail: (name, value) with counts un-logged, URL tokens and
    schema types named."""
    if name.startswith("url_") and name[4:] in URL_TOKENS:
        return "url", _url_token(url, name[4:]) if value else f"no {name[4:]} token"
    if name in _SCHEMA_GROUPS:
        found = sorted(set(schema_types) & _SCHEMA_GROUPS[name])
        return "schema", ",".join(found) if found else f"no {name[7:]} type"
    if name.startswith("og_"):
        return "og:type", (og_type or "").strip().lower() or "none"
    if name.endswith("_log"):
        return name[: -len("_log")], float(round(math.expm1(value)))
    return name, round(value, 2)


def _explain(
    model: PageModel,
    values: Mapping[str, float],
    towards_article: bool,
    url: str,
    schema_types: Sequence[str],
    og_type: str | None,
    words: Mapping[str, Mapping[str, int]],
) -> dict[str, float | str]:
    """The MAX_SIGNALS features that pushed hardest in the direction decided; a vocabulary feature is shown as
    its field's most telling words ("title_words=pricing,plans")."""
    sign = 1.0 if towards_article else -1.0
    ranked = sorted(model.contributions(values).items(), key=lambda kv: -sign * kv[1])
    signals: dict[str, float | str] = {}
    for name, contribution in ranked:
        if sign * contribution <= 0 or len(signals) >= MAX_SIGNALS:
            break
        if name.startswith("vocab_"):
            field_name = name[len("vocab_") :]
            # the feature pushed `sign` * its weight's direction: its words count the way the weight says
            towards = sign if model.weights[model.features.index(name)] > 0 else -sign
            shown: float | str = _telling_words(words[field_name], model.vocabulary[field_name], towards)
            key = f"{field_name}_words"
        else:
            key, shown = _signal(name, values[name], url, schema_types, og_type)
        signals.setdefault(key, shown)
    return signals


def _teaser_values(tree: HtmlElement, values: Mapping[str, float]) -> tuple[int, float]:
    """(teaser cards, share of the page's words in them): only computed when a decision needs them."""
    cards, words = _teasers(tree)
    return cards, min(1.0, words / max(1.0, math.expm1(values["page_words_log"])))


def _refused_kind(
    tree: HtmlElement, values: Mapping[str, float], schema_types: Sequence[str], og_type: str | None
) -> str:
    """What a refused page is: video, gallery, listing or other (product, forum, docs, service ...)."""
    types = set(schema_types)
    og = (og_type or "").strip().lower()
    if og.startswith("video") or (types & VIDEO_TYPES and not types & (NEWS_TYPES | ARTICLE_TYPES)):
        return "video"
    if types & GALLERY_TYPES or og in ("gallery", "photo", "album"):
        return "gallery"
    if values["schema_listing"] or values["url_listing"]:
        return "listing"
    if any(values[f] for f in ("schema_product", "og_product", "url_product", "schema_forum", "url_forum", "url_docs")):
        return "other"
    structural = (
        values["url_root"]
        or values["heading_link_share"] >= KIND_HEADING_LINKS
        or values["link_density"] >= KIND_LINK_DENSITY
        or _teaser_values(tree, values)[1] >= KIND_TEASER_SHARE
    )
    return "listing" if structural else "other"


#: A tag, category, section, author or archive page: such a segment followed by at most one short segment.
LISTING_SEGMENTS = URL_TOKENS["listing"] - {
    "browse",
    "c",
    "cat",
    "collection",
    "collections",
    "issues",
    "list",
    "page",
    "shows",
}
LISTING_TAIL_WORDS = 3
#: A page of teasers (a section front): at least LISTING_MIN_HEADINGS h2-h4 headings, LISTING_HEADING_LINKS of
#: them links, and LISTING_TEASER_SHARE of the page's words in teaser cards. Strict: on wcxb-dev, looser
#: thresholds (0.5 and 0.3) also refused three article pages with long related-link lists.
LISTING_MIN_HEADINGS = 3
LISTING_HEADING_LINKS = 0.8
LISTING_TEASER_SHARE = 0.5


def _listing_url(url: str) -> str | None:
    """ "/tag/politics"-like paths (the listing segment and its one short tail), or None."""
    segments = [s for s in split_url(url).path.lower().split("/") if s]
    for i, segment in enumerate(segments):
        if segment in LISTING_SEGMENTS:
            tail = segments[i + 1 :]
            if len(tail) <= 1 and all(
                len([w for w in _SEGMENT_WORDS.split(t) if w]) <= LISTING_TAIL_WORDS for t in tail
            ):
                return "/" + "/".join(segments[i:])
            return None
    return None


def _listing_rule(tree: HtmlElement, url: str, values: Mapping[str, float]) -> dict[str, float | str] | None:
    """The signals of a page that is a listing whatever the model says (tag/section URL, or a page of linked
    teaser headings), or None. Pages with article markup (schema.org Article kin, og:type article) never are:
    the model alone decides those."""
    if values["schema_article"] or values["schema_news"] or values["og_article"]:
        return None
    path = _listing_url(url)
    if path is not None:
        return {"rule": "listing_url", "url": path}
    headings = round(math.expm1(values["headings_log"]))
    if headings < LISTING_MIN_HEADINGS or values["heading_link_share"] < LISTING_HEADING_LINKS:
        return None
    cards, share = _teaser_values(tree, values)
    if share < LISTING_TEASER_SHARE:
        return None
    return {
        "rule": "teaser_headings",
        "heading_link_share": round(values["heading_link_share"], 2),
        "teaser_blocks": float(cards),
        "teaser_share": round(share, 2),
    }


def _liveblog(url: str, schema_types: Sequence[str], values: Mapping[str, float]) -> dict[str, float | str] | None:
    """The signals that make the page a liveblog, or None."""
    if "LiveBlogPosting" in schema_types:
        return {"schema": "LiveBlogPosting"}
    times = round(math.expm1(values["time_log"]))
    if _LIVE_IN_PATH.search(split_url(url).path.lower()) and times >= LIVEBLOG_MIN_TIMES:
        return {"url": "/live/", "time": float(times)}
    return None


def classify_page(
    tree: HtmlElement,
    url: str,
    text: str,
    *,
    schema_types: Sequence[str] = (),
    og_type: str | None = None,
    model: PageModel | None = None,
) -> PageType:
    """What the page is (see `PageType`). `tree` is the parsed page (`trafilatura.utils.load_html`), `text` the
    extracted article text, `schema_types` its JSON-LD @type names, `og_type` its og:type; `model` defaults to the
    committed one. News markup (NewsArticle and its kin) keeps a page whatever the model says."""
    model = model or load_model()
    values = page_features(tree, url, text, schema_types=schema_types, og_type=og_type)
    words = vocab_words(tree, url, text) if model.vocabulary else {}
    if words:
        buckets = {name: frozenset(w.values()) for name, w in words.items()}
        values.update(vocab_features(buckets, model.vocabulary))
    score = model.probability(values)
    live = _liveblog(url, schema_types, values)
    if live is not None:
        return PageType("liveblog", score, live)
    news = sorted(set(schema_types) & NEWS_TYPES)
    if news:
        signals: dict[str, float | str] = {"schema": ",".join(news)}
        for key, shown in _explain(model, values, True, url, schema_types, og_type, words).items():
            signals.setdefault(key, shown)
        return PageType("article", score, signals)
    article = score >= model.threshold
    if article and (rule := _listing_rule(tree, url, values)) is not None:
        for key, shown in _explain(model, values, False, url, schema_types, og_type, words).items():
            rule.setdefault(key, shown)
        return PageType("listing", score, rule)
    signals = _explain(model, values, article, url, schema_types, og_type, words)
    kind = "article" if article else _refused_kind(tree, values, schema_types, og_type)
    return PageType(kind, score, signals)
