"""Page metadata an analyst can trust: the headline without the site name, people (not publishers) as
authors, and the publication time with the zone the page states.

`extract_metadata(tree, url)` reads each field from the most explicit declaration first and stops at the
first that holds a usable value:

- authors: JSON-LD `author` of the page's article node, then `<meta>` (author, article:author, parsely,
  sailthru, Dublin Core), then byline markup (rel=author, itemprop=author, byline/author classes), then a
  "By A. Writer" line by the headline. Organisations, agencies, handles, places, URLs are refused as people;
  organisations go to `credit`, the site itself to `publisher`.
- published: JSON-LD `datePublished`, then `<meta>`, `<time itemprop=datePublished>`, a date in the URL path,
  the first `<time>` of the article; a later source only adds a time and zone to the same day. Then, as a
  day only, the date printed by the headline, and last htmldate.
- title: og:title / JSON-LD headline / <title>, the site's name cut off; the visible <h1> when it agrees.

JSON-LD is parsed once (`pipeline.text.jsonld`). The tree is only read, never copied, except by htmldate
(the last resort for a day: it copies the tree on the pages that reach it).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone, tzinfo
from email.utils import parsedate_tz
from functools import lru_cache
from html import unescape
from itertools import islice
from typing import Any
from urllib.parse import urljoin
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from lxml import etree
from lxml.html import HtmlElement

from pipeline.text.jsonld import jsonld_nodes, node_types
from pipeline.text.normalise import normalise_text
from pipeline.text.urls import split_url

__all__ = ["MIN_DATE", "PageMeta", "extract_metadata"]

#: Dates before this are refused (no news site predates it; older values are CMS defaults like 1970-01-01).
MIN_DATE = date(1995, 1, 1)
#: At most this many keywords are kept (tag clouds of hundreds are SEO, not description).
MAX_KEYWORDS = 30

ARTICLE_TYPES = frozenset(
    {
        "Article",
        "NewsArticle",
        "AnalysisNewsArticle",
        "BackgroundNewsArticle",
        "OpinionNewsArticle",
        "ReportageNewsArticle",
        "ReviewNewsArticle",
        "AskPublicNewsArticle",
        "BlogPosting",
        "LiveBlogPosting",
        "SocialMediaPosting",
        "Report",
        "TechArticle",
        "ScholarlyArticle",
        "SatiricalArticle",
        "AdvertiserContentArticle",
    }
)
PAGE_TYPES = frozenset({"WebPage", "ItemPage", "AboutPage", "ProfilePage", "MediaGallery"})
ORG_TYPES = frozenset({"Organization", "NewsMediaOrganization", "Corporation", "LocalBusiness", "WebSite", "Brand"})


@dataclass(frozen=True)
class PageMeta:
    """What a page says about itself. Every field is None / empty when the page does not state it."""

    title: str | None = None
    sitename: str | None = None
    authors: list[str] = field(default_factory=list)  # people only, in page order
    credit: list[str] = field(default_factory=list)  # organisations credited as authors (agencies, "X Staff")
    publisher: str | None = None
    published: str | None = None  # "2024-05-03T16:55:35+08:00" or "2024-05-03"
    published_precision: str | None = None  # "second" | "day"
    published_offset_minutes: int | None = None
    modified: str | None = None
    section: str | None = None
    keywords: list[str] = field(default_factory=list)
    description: str | None = None
    image: str | None = None
    canonical: str | None = None  # the declared rel=canonical href, as written
    language: str | None = None  # ISO 639-1, lower case
    og_type: str | None = None
    schema_types: list[str] = field(default_factory=list)  # every JSON-LD @type, in page order


# ------------------------------------------------------------------ text helpers

_TAGS = re.compile(r"<[^>]{0,200}>")
_KEY = re.compile(r"[\W_]+")


def _clean(value: Any, limit: int = 1000) -> str | None:
    """A metadata string as a reader would see it: entities decoded, tags out, spaces folded, mojibake fixed."""
    if isinstance(value, list):
        value = next((v for v in value if isinstance(v, str) and v.strip()), None)
    if not isinstance(value, str):
        return None
    if "&" in value:
        value = unescape(value)
    if "<" in value:
        value = _TAGS.sub(" ", value)
    value = " ".join(value.split())
    if not value or len(value) > limit:
        return None
    return normalise_text(value) or None


def _key(text: str) -> str:
    """Letters and digits only, case-folded: how two spellings of one name are compared."""
    return _KEY.sub("", unicodedata.normalize("NFKC", text).casefold())


def _fold(text: str) -> str:
    """NFKC and case-folded, punctuation kept."""
    return unicodedata.normalize("NFKC", text).casefold()


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


def _text(el: HtmlElement) -> str:
    return " ".join(" ".join(el.itertext()).split())


# ------------------------------------------------------------------ the page's declarations


class _Page:
    """The page's `<meta>` tags and JSON-LD nodes, read once, and what later steps share."""

    def __init__(self, tree: HtmlElement, url: str) -> None:
        self.tree = tree
        self.url = url
        self.meta: dict[str, list[str]] = {}  # name / property (lower case) -> contents, in page order
        self.itemprop: dict[str, list[str]] = {}  # microdata <meta itemprop content>
        for el in tree.iter("meta"):
            content = el.get("content")
            if content is None or not content.strip():
                continue
            content = content.strip()
            for attr in ("property", "name", "http-equiv"):
                name = el.get(attr)
                if name:
                    self.meta.setdefault(name.strip().lower(), []).append(content)
            prop = el.get("itemprop")
            if prop:
                self.itemprop.setdefault(prop.strip().lower(), []).append(content)
        self.cache: dict[str, Any] = {}
        self.nodes = jsonld_nodes(tree)
        self.by_id = {n["@id"]: n for n in self.nodes if isinstance(n.get("@id"), str)}
        self.types = [node_types(n) for n in self.nodes]
        self.article = self._main_node(ARTICLE_TYPES) or self._main_node(PAGE_TYPES, needs=("datePublished", "author"))

    def first(self, *names: str) -> str | None:
        for name in names:
            for value in self.meta.get(name, ()):
                return value
        return None

    def _main_node(self, types: frozenset[str], needs: tuple[str, ...] = ()) -> dict | None:
        """The page's own article node: the first of `types` (also inside a page's `mainEntity`)."""
        for node, kinds in zip(self.nodes, self.types):
            for candidate, its_types in ((node, kinds), *self._entities(node)):
                if types.intersection(its_types) and (not needs or any(k in candidate for k in needs)):
                    return candidate
        return None

    @staticmethod
    def _entities(node: dict) -> Iterator[tuple[dict, list[str]]]:
        entity = node.get("mainEntity")
        for item in entity if isinstance(entity, list) else [entity]:
            if isinstance(item, dict):
                yield item, node_types(item)

    def resolve(self, value: Any) -> Any:
        """A `{"@id": ...}` reference replaced by the node it names (Yoast's @graph links nodes this way)."""
        if isinstance(value, dict) and set(value) <= {"@id", "@type"} and value.get("@id") in self.by_id:
            return self.by_id[value["@id"]]
        return value

    def ld(self, key: str) -> Any:
        return self.article.get(key) if self.article else None

    def nodes_of(self, types: frozenset[str]) -> Iterator[dict]:
        for node, kinds in zip(self.nodes, self.types):
            if types.intersection(kinds):
                yield node


def _name_of(value: Any) -> str | None:
    if isinstance(value, dict):
        value = value.get("name")
    return _clean(value, 200)


# ------------------------------------------------------------------ site name, publisher


def _host_label(url: str) -> str:
    """The registrable label of the host ("theguardian" of www.theguardian.com, "golem" of golem.de)."""
    host = (split_url(url).hostname or "").lower()
    labels = [x for x in host.split(".") if x and x not in ("www", "m", "amp")]
    if len(labels) >= 3 and len(labels[-2]) <= 3:  # bbc.co.uk, abc.net.au
        return labels[-3]
    return labels[-2] if len(labels) >= 2 else (labels[0] if labels else "")


def _sitename(page: _Page) -> str | None:
    for value in (
        page.first("og:site_name"),
        _name_of(page.resolve(page.ld("publisher"))),
        *(_name_of(n) for n in page.nodes_of(frozenset({"WebSite"}))),
        page.first("application-name", "apple-mobile-web-app-title"),
    ):
        name = _clean(value, 200)
        if name and name.lstrip("@"):
            return name.lstrip("@")  # "@politifact": a Twitter handle given as the site's name
    return None


def _publisher(page: _Page) -> str | None:
    publisher = page.resolve(page.ld("publisher"))
    if isinstance(publisher, list):
        publisher = next((p for p in publisher if p), None)
    name = _name_of(page.resolve(publisher))
    if name:
        return name
    for value in (page.first("article:publisher", "publisher", "dc.publisher", "dcterms.publisher"),):
        name = _clean(value, 200)
        if name and not name.lower().startswith(("http:", "https:", "www.")):
            return name
    return None


# What may follow a host's label in a site's name as a title writes it ("Golem.de", "Move.org", "Foo Blog").
_LABEL_ENDINGS = frozenset({"", *_words("com org net de fr uk couk io co blog news online magazine mag media")})


class _Site:
    """The names a site goes by, to recognise them in titles and bylines."""

    def __init__(self, names: Iterable[str | None], url: str) -> None:
        declared = [n for n in names if n]
        self.keys = {k for k in map(_key, declared) if len(k) >= 2}
        # "The Nutrition Source - Harvard Chan School" is also "The Nutrition Source" in a title
        self.parts = {k for n in declared for k in map(_key, _TITLE_SEP.split(n)) if len(k) >= 4} - self.keys
        self.label = _host_label(url)
        self.host = (split_url(url).hostname or "").lower().removeprefix("www.")

    def equals(self, text: str) -> bool:
        """`text` is one of the site's declared names (exactly, but for case, spaces and punctuation)."""
        return _key(text) in self.keys

    def matches(self, text: str) -> bool:
        """`text` is a way of writing the site's name: declared, part of a declared one, or its host name."""
        key = _key(text)
        if not key:
            return False
        if key in self.keys or key in self.parts:
            return True
        for known in self.keys:
            # "Guardian" of "The Guardian", "The Verge" of "The Verge - Tech News": one holds the other nearly whole
            short, long_ = sorted((key, known), key=len)
            if len(short) >= 4 and short in long_ and len(short) >= 0.6 * len(long_):
                return True
        if " " not in text.strip() and "." in text and self.host.endswith(text.strip().lower().removeprefix("www.")):
            return True  # "realestate.com.au", "Golem.de": the host itself
        # "TheGuardian.com", "Move.org", "Golem Blog": the host's own label spelled out ("Apple TV" is not apple.com)
        label = self.label
        return len(label) >= 4 and key.startswith(label) and key[len(label) :] in _LABEL_ENDINGS


# ------------------------------------------------------------------ title

# A separator between a headline and the site name. Spaces around ASCII ones: "Covid-19" and "3:2" stay.
_SITE_COLON = re.compile(r"(?<=\w):\s+")  # "Site: Headline" (only cut when "Site" is the site's name)
_TITLE_SEP = re.compile(r"\s+(?:[|\-–—·•»~/⋆]|::)\s+|\s*[｜：|]\s*(?=\S)|\s+:\s+")
# Trailing words that name a kind of page, not the article ("... | Opinion", "... - Blog").
_GENERIC_TAILS = {"blog", "news", "opinion", "home", "homepage", "article", "articles", "magazine"}
#: A trailing " | " segment of at most this many words, shorter than the rest, is the site's or a section's.
PIPE_TAIL_WORDS = 4


def _cut_tail(title: str, keep: Callable[[str], bool]) -> tuple[str, str | None]:
    """`title` cut before its first segment (after the first) that `keep` refuses, and that segment."""
    for sep in _TITLE_SEP.finditer(title):
        rest = title[sep.end() :]
        segment = _TITLE_SEP.split(rest, maxsplit=1)[0].strip()
        if segment and not keep(segment):
            return title[: sep.start()].rstrip(), segment
    return title, None


def _strip_site(title: str, site: _Site, section: str | None) -> tuple[str, str | None]:
    """The title without the site's name (a leading or trailing segment, or a tagline after it).

    Returns the title and the site name as the title wrote it, if any.
    """
    # "## Headline" (Markdown), "Headline ⋆" (a separator before an empty suffix)
    title = title.lstrip("# ").rstrip(" |-–—·•⋆:")
    section_key = _key(section) if section else None
    # "Headline | Section | Site | Tagline" -> "Headline": everything from the site's name on goes
    title, removed = _cut_tail(title, lambda seg: not site.matches(seg))
    while True:
        head, tail = _cut_tail(title, lambda seg: _key(seg) != section_key and _key(seg) not in _GENERIC_TAILS)
        if tail is None or head == title:
            break
        title = head
    first = _TITLE_SEP.search(title) or _SITE_COLON.search(title)
    if first and site.matches(title[: first.start()]):
        removed = removed or title[: first.start()].strip()
        title = title[first.end() :].lstrip()
    host = site.host
    if host and title.lower().startswith(host + " "):  # "example.com Headline"
        title = title[len(host) + 1 :].lstrip()
    return title, removed


def _pipe_tail(title: str) -> str:
    """ "Headline | Short Tail" -> "Headline": a short last segment after a pipe is a site, a place or a section."""
    while True:
        head, sep, tail = title.rpartition(" | ")
        if not sep or len(tail.split()) > PIPE_TAIL_WORDS or len(tail.split()) >= len(head.split()):
            return title
        title = head.rstrip()


def _title(page: _Page, site: _Site, section: str | None) -> tuple[str | None, str | None]:
    """(headline, the site name cut from it)."""
    tree = page.tree
    heads = [h for h in (_clean(_text(h), 500) for h in islice(tree.iter("h1"), 8)) if h]
    title_el = tree.find(".//title")
    declared = [
        _clean(page.first("og:title", "twitter:title"), 500),
        _clean(page.ld("headline"), 500),
        _clean(title_el.text_content(), 500) if title_el is not None else None,
    ]
    stripped = [_strip_site(c, site, section) for c in declared if c]
    stripped = [(t, cut) for t, cut in stripped if t]
    cut = next((removed for _t, removed in stripped if removed), None) or _affix(declared[2], declared[0])
    # The visible headline agrees with a declared one, or with its start ("Headline | Tagline"): it is the
    # title, as the reader sees it.
    head_keys = {_key(h): h for h in heads}
    for value, _cut in stripped:
        for form in (value, *(value[: m.start()] for m in _TITLE_SEP.finditer(value))):
            if _key(form) in head_keys:
                return head_keys[_key(form)], cut
    if not stripped:
        return (heads[0] if len(heads) == 1 else None), cut
    return _untruncated(_pipe_tail(stripped[0][0]), [*heads, *(t for t, _c in stripped)]), cut


def _affix(html_title: str | None, og_title: str | None) -> str | None:
    """What <title> adds to og:title ("Headline | Site" against "Headline"): the site's name as the title
    writes it, when it is one segment."""
    if not html_title or not og_title or len(html_title) <= len(og_title):
        return None
    if html_title.startswith(og_title):
        sep = _TITLE_SEP.match(html_title, len(og_title))
        rest = html_title[sep.end() :] if sep else ""
    elif html_title.endswith(og_title):
        seps = list(_TITLE_SEP.finditer(html_title[: len(html_title) - len(og_title)]))
        rest = html_title[: seps[-1].start()] if seps and seps[-1].end() == len(html_title) - len(og_title) else ""
    else:
        return None
    rest = rest.strip()
    return rest if rest and not _TITLE_SEP.search(rest) and not rest.lower().startswith("by ") else None


def _untruncated(title: str, others: list[str]) -> str:
    """A title cut short ("... laptop, and k", "Wedding Timeline…") replaced by the one that continues it."""
    short = title.rstrip(".…").rstrip()
    ellipsis = short != title
    if len(short) < 20:
        return title
    folded = _fold(short)
    for other in others:
        longer = _fold(other)
        if len(longer) > len(folded) and longer.startswith(folded) and (ellipsis or longer[len(folded)].isalnum()):
            return other
    return title


# ------------------------------------------------------------------ authors


# Organisation words: a byline holding one names a company, a desk or a team, not a person.
_ORG_WORDS = _words(
    """staff newsroom desk agency agencies team editors editorial redaktion rédaction redaccion redacción
    redazione redactie inc ltd llc gmbh plc corp corporation co media news press wire wires service services
    magazine group company foundation university institute association network times journal herald gazette
    tribune daily weekly courier contributors partners studio studios bureau reports publishing publications
    productions forum blog community podcast society club lab labs store shop hub academy school college center
    centre clinic hospital solutions consulting marketing software systems technologies department ministry
    council committee office government"""
)
# News agencies: credited, never authors. Acronyms count in capitals only ("AP", not "ap").
_AGENCIES = _words(
    """reuters dpa ansa efe xinhua upi bloomberg kyodo yonhap tass interfax belga ritzau anadolu bernama antara
    jiji lusa"""
)
_AGENCY_ACRONYMS = _words("AP AFP DPA PA TT CP SID KNA APA SDA EPD ANP NTB STT CTK PAP MTI IANS PTI ANI AAP UPI")
_AGENCY_PHRASES = (
    "associated press",
    "agence france",
    "deutsche presse",
    "press association",
    "pa media",
    "canadian press",
    "europa press",
    "ria novosti",
    "news agency",
    "nachrichtenagentur",
    "wire services",
)
# Words of a role or a credential, not of a name ("Senior Reporter", "Head Winemaker", "MD").
_ROLE_WORDS = _words(
    """reporter reporters editor editors correspondent correspondents writer writers contributor columnist
    journalist journalists producer photographer photographers author authors senior chief contributing
    managing associate deputy executive political staff freelance special founder co-founder cofounder ceo cto
    cfo coo president vice director manager head lead expert consultant specialist coordinator reviewer
    reviewers educator officer analyst strategist developer engineer designer scientist researcher professor
    nutritionist dietitian advisor adviser attorney lawyer teacher coach trainer certified licensed master
    registered marketing content community development sales communications operations product growth intern
    fellow owner partner principal actuary tech gardener winemaker chef doctor nurse pharmacist therapist
    psychologist physician instructor former"""
)
# Letters after a name ("MD", "PhD", "CFP"); "II", "III", "IV" and "Jr." are part of the name.
_CREDENTIAL = re.compile(r"^(?!(?:I{2,3}|IV|VI{0,3})$)(?:[A-Z]{2,5}|Ph\.?D\.?|M\.?D\.?|MSc|BSc|MBA|Esq\.?)$")
# Words never in a name but common around one in a byline.
_NOT_NAME = _words(
    """the of our your my more read share follow email mail comments comment login subscribe view all posts
    profile about home updated published posted last min minutes ago hours today yesterday print save
    photo photos video image images by paid free menu search bio full for in on at to with from is was this
    that we admin administrator webmaster guest anonymous unknown official digital security public affairs
    privacy journalism health finance money technology science business sports politics travel food lifestyle
    entertainment culture world local national international personal"""
)
# Words of a sentence around an organisation's name, never in it ("our team delivers", "read more about").
_ORG_CHATTER = _words(
    "our your my more read share follow email comments comment login subscribe view posts profile about updated "
    "published posted by is was this that we delivers"
)
_PARTICLES = _words("van von de der den del della di da du dos das le la ter ten bin binti al el ibn st y e")
_SPLIT_AUTHORS = re.compile(r"\s*(?:[;,&|/·∙•、]|\s[-–—]\s|\s(?:and|und|et|y|e|og|och|en|i)\s)\s*")
_BY = re.compile(
    r"^(?:.{0,40}?\b(?:written|words|posted|reported|text|story|article|recipe|compiled)\s+by|"
    r"by|von|par|por|door|di|av|af|przez|autor(?:in)?|author|text|texte)\s*[:\-]?\s+",
    re.I,
)
# Credits that are not authorship: everything after them in a byline is someone else.
_OTHER_ROLE = re.compile(
    r"\b(?:(?:medically\s+|fact[-\s]?)?(?:reviewed|checked|edited|verified)|photos?|photographs?|photography|"
    r"pictures?|images?|illustrations?|illustrated|video|graphics?|produced|translated|sponsored|presented)\s+by\b.*$",
    re.I,
)
_OTHER_ROLE_END = re.compile(
    r"\b(?:reviewed|checked|edited|verified|photos?|photographs?|pictures?|images?|illustrations?|illustrated|"
    r"video|graphics?|produced|translated|sponsored|presented)\s+by\s*:?\s*$",
    re.I,
)
_LIST_SEP = re.compile(r"[;,|/·∙•、]")
# Places that read like names in a byline ("John Smith, New York"); one-word places are refused as one word.
_PLACES = _words(
    """newyork losangeles sanfrancisco sandiego sanjose lasvegas neworleans washingtondc hongkong newdelhi telaviv
    buenosaires kualalumpur abudhabi mexicocity capetown riodejaneiro saopaulo unitedstates unitedkingdom
    southafrica newzealand saudiarabia southkorea northkorea srilanka costarica puertorico elsalvador
    westbank gazastrip"""
)
_TAIL = re.compile(r"\s+(?:in|at|for|from|via|with|on behalf of|für|aus|pour|para)(?:\s+(.+))?$", re.I)
_CUT = re.compile(r"\s+(?:updated|published|posted|last updated|\d).*$", re.I)
_PAREN = re.compile(r"\s*\(([^)]*)\)\s*")
_EMAIL_OR_URL = re.compile(r"@|https?:|www\.|\.(?:com|org|net|de|fr|uk)\b", re.I)
_CJK_NAME = re.compile(r"^[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af·・]{2,5}$")
_CJK_ORG = re.compile(r"新聞|新闻|社|部|局|网|網|報|报|通信|ニュース|編集|编辑|電視|电视")
_BAD_CHARS = re.compile(r"[0-9:!?#*=+<>{}\[\]\"“”@]")


def _agency_name(text: str) -> str | None:
    """The news agency `text` names ("AP" of "AP National Security Writer"), as written, or None."""
    low = text.casefold()
    for phrase in _AGENCY_PHRASES:
        at = low.find(phrase)
        if at >= 0:
            return text[at : at + len(phrase)]
    return next((w for w in re.findall(r"[\w-]+", text) if w in _AGENCY_ACRONYMS or w.casefold() in _AGENCIES), None)


def _agency(text: str) -> bool:
    return _agency_name(text) is not None


def _is_organisation(text: str) -> bool:
    return _agency(text) or any(w.casefold().strip(".,") in _ORG_WORDS for w in text.split())


def _plausible_org(text: str) -> bool:
    """An organisation name, not a phrase that happens to hold an organisation word ("our team delivers")."""
    words = text.split()
    if not 1 <= len(words) <= 6 or _BAD_CHARS.search(text.replace("@", "")):
        return False
    folded = [w.casefold() for w in words]
    return (words[0][0].isupper() or words[0][0].isdigit() or folded[0] == "the") and not any(
        w in _ORG_CHATTER for w in folded[1:]
    )


def _strip_roles(words: list[str]) -> list[str]:
    """ "Celeste Longacre Gardener" -> "Celeste Longacre"; "Jane Doe MD" -> "Jane Doe"."""
    while len(words) > 2 and (words[-1].casefold().strip(".,") in _ROLE_WORDS or _CREDENTIAL.match(words[-1])):
        words = words[:-1]
    return words


def _person_name(text: str, *, capitalised: bool) -> str | None:
    """`text` as a person's name, or None: 2 to 5 words, no digits, no role, no byline chatter."""
    if _CJK_NAME.match(text):
        return None if _CJK_ORG.search(text) else text
    if _BAD_CHARS.search(text) or len(text) > 60:
        return None
    words = _strip_roles([w for w in text.split() if any(c.isalpha() for c in w)])
    if not 2 <= len(words) <= 5:
        return None  # one word is a handle or a first name; six or more, a sentence
    folded = [w.casefold().strip(".,") for w in words]
    if any(w in _NOT_NAME or w in _ROLE_WORDS for w in folded) or _key(" ".join(words)) in _PLACES:
        return None
    # Names are capitalised (particles aside); a lower-case run is a phrase, not a byline.
    if capitalised and not all(w[0].isupper() or not w[0].isalpha() or f in _PARTICLES for w, f in zip(words, folded)):
        return None
    return " ".join(words)


class _Credits:
    """People, credited organisations and the publisher found while reading bylines."""

    def __init__(self, site: _Site, personal: set[str]) -> None:
        self.site = site
        self.personal = personal  # keys of names the site declares as a Person (a personal site's owner)
        self.people: list[str] = []
        self.credit: list[str] = []
        self.publisher: str | None = None

    def add_org(self, name: str) -> None:
        name = name.strip(" .,:;-–—|")
        if not _plausible_org(name):
            return
        if self.site.equals(name):
            self.publisher = self.publisher or name
        elif _key(name) not in {_key(c) for c in self.credit}:
            self.credit.append(name)

    def add_person(self, name: str) -> None:
        key = _key(name)
        known = [_key(p) for p in self.people]
        if any(key in k for k in known):
            return
        for i, k in enumerate(known):
            if k in key:  # "John Smith" after "John Smith" written shorter: keep the fuller form
                self.people[i] = name
                return
        self.people.append(name)

    def read(self, raw: str | None, *, capitalised: bool = False, chatter: bool = False, person: bool = False) -> None:
        """One byline string: split into names, each kept as a person, credited as an organisation or dropped.

        `capitalised`: names must be capitalised (visible text, where bylines sit among phrases).
        `chatter`: cut dates and "Updated ..." that visible bylines run on into.
        `person`: declared a Person (JSON-LD): kept even when it is also the site's name (a personal site).
        """
        text = _clean(raw, 500)
        if not text:
            return
        text = _OTHER_ROLE.sub("", text)
        for inner in _PAREN.findall(text):
            if _is_organisation(inner):
                self.add_org(inner)
        text = _PAREN.sub(" ", text).strip()
        parts = _SPLIT_AUTHORS.split(text)
        # "Center for Drug Evaluation and Research" is one organisation, unless a person is named in it
        one_org = len(parts) > 1 and not _LIST_SEP.search(text) and _is_organisation(text)
        if one_org and not any(_person_name(p.strip(), capitalised=capitalised) for p in parts):
            self.add_org(text)
            return
        for part in parts:
            self._part(_CUT.sub("", part) if chatter else part, capitalised=capitalised, person=person)

    def _part(self, part: str, *, capitalised: bool, person: bool) -> None:
        part = _BY.sub("", part.strip(" .,:;-–—|•∙")).strip(" .,:;-–—|•∙")
        if not part:
            return
        tail = _TAIL.search(part)
        if tail:
            if tail[1] and _is_organisation(tail[1]):
                self.add_org(tail[1])
            part = part[: tail.start()].strip()
        if not part:
            return
        if self.site.equals(part) and not person and _key(part) not in self.personal:
            self.add_org(part)  # "Golem.de" as its own author: the publisher
            return
        if _EMAIL_OR_URL.search(part):
            return
        folded = [w.casefold().strip(".,") for w in part.split()]
        if folded and all(w in _ROLE_WORDS for w in folded):
            return  # "Staff Writer": a role without a name
        agency = _agency_name(part)
        if agency and folded[-1] in _ROLE_WORDS:
            self.add_org(agency)  # "AP National Security Writer": the agency is credited, the role is not a name
            return
        if _is_organisation(part):
            self.add_org(part)
            return
        name = _person_name(part, capitalised=capitalised)
        if name:
            self.add_person(name)


def _ld_authors(page: _Page, credits: _Credits) -> None:
    value = page.ld("author") or page.ld("creator")
    for item in value if isinstance(value, list) else [value]:
        item = page.resolve(item)
        if isinstance(item, str):
            credits.read(item)
        elif isinstance(item, dict):
            name = item.get("name")
            if not name and (item.get("givenName") or item.get("familyName")):
                name = f"{item.get('givenName') or ''} {item.get('familyName') or ''}"
            if not isinstance(name, str):
                continue
            if ORG_TYPES.intersection(node_types(item)) and "Person" not in node_types(item):
                cleaned = _clean(name, 200)
                if cleaned:
                    credits.add_org(cleaned)
            else:
                credits.read(name, person="Person" in node_types(item))


def _personal_names(page: _Page) -> set[str]:
    """Keys of the names the page declares as a Person publishing the site (a personal site's owner)."""
    publisher = page.resolve(page.ld("publisher"))
    out = set()
    for item in publisher if isinstance(publisher, list) else [publisher]:
        item = page.resolve(item)
        if isinstance(item, dict) and "Person" in node_types(item) and isinstance(item.get("name"), str):
            out.add(_key(item["name"]))
    return out


_META_AUTHORS = ("author", "article:author", "parsely-author", "sailthru.author", "dc.creator", "dcterms.creator")


def _meta_authors(page: _Page, credits: _Credits) -> None:
    for name in _META_AUTHORS:
        for value in page.meta.get(name, ()):
            credits.read(value)
    for value in page.itemprop.get("author", ()):
        credits.read(value)


# Bylines in markup: rel=author links, links to an author page, microdata, and the class names CMSs and
# themes give them ("byline", "author", "post-author", "c-byline", "author-name", "writer").
_BYLINE = etree.XPath(
    # Walking attribute nodes is faster than testing every element (~1.4 ms against ~2 ms on big pages);
    # "uthor" matches "Author" and "author". A union comes back in document order.
    "//@class[contains(., 'uthor') or contains(., 'yline') or contains(., 'riter')]/.."
    " | //@itemprop[. = 'author']/.. | //a/@rel[contains(., 'author')]/.. | //a/@href[contains(., '/author')]/.."
)
# Containers whose bylines belong to other texts: comments, teasers of other articles, page chrome.
_NOT_BYLINE = re.compile(
    r"(?:^|[\s_-])(?:comment|related|sidebar|footer|recommend|teaser|promo|more-from|read-next|popular|trending)",
    re.I,
)
_NAME_PARTS = etree.XPath(".//*[@itemprop='name' or self::a or contains(@class, 'name')]")
#: A byline element with more text than this is an author box or a whole block: only its name parts count.
BYLINE_CHARS = 300


def _outside_article(el: HtmlElement) -> bool:
    for anc in el.iterancestors():
        if anc.tag in ("body", "html", "main", "article"):
            return False  # the page's own classes ("has-sidebar", "comments-open") say nothing of this block
        if anc.tag in ("aside", "nav"):
            return True
        marks = f"{anc.get('class', '')} {anc.get('id', '')}"
        if marks.strip() and _NOT_BYLINE.search(marks):
            return True
    return False


def _byline_pieces(el: HtmlElement) -> list[str]:
    """The strings of a byline element that may each be a name ("By", "<a>A B</a>", " · ", "<time>...")."""
    if el.get("itemprop") == "author" and el.get("content"):
        return [el.get("content")]
    named = [n for n in _NAME_PARTS(el) if n.get("itemprop") == "name"]
    if named:
        return [n.get("content") or _text(n) for n in named]
    if el.tag != "a" and len(_text(el)) > BYLINE_CHARS:
        return [_text(n) for n in _NAME_PARTS(el)][:6]
    # Each text node alone: a name is its own link or span, apart from "By", dates, roles and bios.
    return [t.strip() for t in el.itertext() if t.strip()]


#: Byline-like elements read without finding a name before the search stops (then they are headings,
#: teasers or related links that merely carry an "author" class).
MAX_EMPTY_BYLINES = 4


def _html_authors(page: _Page, credits: _Credits) -> None:
    """The page's first byline that names someone. Bylines further down sit in author boxes, reviewer credits
    and teasers; only a twin of the first (same tag, class and parent: "<a rel=author>A</a> and <a
    rel=author>B</a>") joins it."""
    first: HtmlElement | None = None
    empty = 0
    for el in _BYLINE(page.tree):
        if el.tag in ("link", "meta", "img", "script", "style", "body", "html") or _outside_article(el):
            continue
        if first is not None:
            if first in el.iterancestors():
                continue  # inside the first byline: its text was read with it
            twin = el.getparent() is first.getparent() and (el.tag, el.get("class")) == (first.tag, first.get("class"))
            if not twin:
                break
        pieces = _byline_pieces(el)
        if not pieces:
            continue
        before = len(credits.people)
        skip_next = False
        for piece in pieces:
            if skip_next:  # the name after "Reviewed by" or "Photos by"
                skip_next = False
                continue
            skip_next = bool(_OTHER_ROLE_END.search(piece))
            credits.read(piece, capitalised=True, chatter=True)
        if len(credits.people) > before:
            first = first if first is not None else el
        else:
            empty += 1
            if empty >= MAX_EMPTY_BYLINES and first is None:
                break


_BY_LINE = re.compile(r"^(?:by|von|par|por|door|av|written by|words by)(?:\s*:?\s+(.{3,80}))?$", re.I)


def _header_authors(page: _Page, credits: _Credits) -> None:
    """ "By A. Writer" printed by the headline, in markup without byline classes."""
    block = _header_block(page)
    pieces = [" ".join(p.split()) for p in _TEXTS(block)] if block is not None else []
    for piece, after in zip(pieces, [*pieces[1:], ""]):
        match = _BY_LINE.match(piece)
        if match:
            credits.read(match[1] or after, capitalised=True, chatter=True)
            return


# ------------------------------------------------------------------ dates

_ISO = re.compile(
    r"^(\d{4})-(\d{1,2})-(\d{1,2})"
    r"(?:[T\s]+(\d{1,2}):(\d{2})(?::(\d{2})(?:[.,]\d+)?)?\s*(Z|UTC|GMT|[+-]\d{2}(?::?\d{2})?)?)?"
)
_COMPACT = re.compile(r"^(\d{4})(\d{2})(\d{2})(?:T?(\d{2})(\d{2})(\d{2})?)?(Z|[+-]\d{2}:?\d{2})?$")
_SLASHED = re.compile(r"^(\d{4})/(\d{1,2})/(\d{1,2})$")
_RFC_ZONE = re.compile(r"(?:[+-]\d{4}|\b[A-Z]{1,4})\s*$")


@dataclass(frozen=True)
class _When:
    day: date
    clock: time | None = None  # None: only a day was stated
    zone: tzinfo | None = None  # None: no zone was stated


def _zone(text: str | None) -> tzinfo | None:
    if not text:
        return None
    if text in ("Z", "UTC", "GMT"):
        return timezone.utc
    digits = text[1:].replace(":", "")
    hours, minutes = int(digits[:2]), int(digits[2:4] or 0)
    if hours > 14 or minutes > 59:
        raise ValueError(text)
    delta = timedelta(hours=hours, minutes=minutes)
    return timezone(-delta if text[0] == "-" else delta)


def _parse_when(value: Any) -> _When | None:
    """A stated date or date-time, keeping what was stated: the day, the clock time, the zone."""
    if not isinstance(value, str):
        return None
    text = value.strip()
    try:
        match = _ISO.match(text) or _COMPACT.match(text)
        if match:
            year, month, day_, hour, minute, second, zone = match.groups()
            day = date(int(year), int(month), int(day_))
            if hour is None:
                return _When(day)
            clock = time(int(hour), int(minute), int(second or 0))
            if clock == time(0, 0, 0):
                return _When(day)  # midnight: a date field serialised as a date-time, not a stated time
            return _When(day, clock, _zone(zone))
        if match := _SLASHED.match(text):
            return _When(date(int(match[1]), int(match[2]), int(match[3])))
        parts = parsedate_tz(text)  # RFC 2822, as in feeds and some meta tags: "Fri, 03 May 2024 16:55:35 +0000"
        if parts and parts[0] >= 1000:
            day = date(parts[0], parts[1], parts[2])
            clock = time(parts[3], parts[4], parts[5])
            # parsedate_tz reports offset 0 for a missing zone too: only a written one counts
            offset = parts[9]
            stated = offset is not None and _RFC_ZONE.search(text) and not text.endswith("-0000")
            zone = timezone(timedelta(seconds=offset)) if stated and offset is not None else None
            return _When(day) if clock == time(0, 0, 0) else _When(day, clock, zone)
    except (ValueError, OverflowError, TypeError):
        return None
    return None


@lru_cache(maxsize=64)
def _tz(name: str) -> tzinfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown time zone {name!r} (expected an IANA name such as 'Europe/Berlin')") from exc


@dataclass(frozen=True)
class _Stamp:
    iso: str
    precision: str
    offset: int | None
    zoned: bool  # the page stated the zone (not default_tz)


def _stamp(when: _When, default_tz: str | None) -> _Stamp:
    if when.clock is None:
        return _Stamp(when.day.isoformat(), "day", None, False)
    if when.zone is not None:
        moment = datetime.combine(when.day, when.clock, when.zone)
        zoned = True
    elif default_tz:
        moment = datetime.combine(when.day, when.clock).replace(tzinfo=_tz(default_tz))
        zoned = False
    else:
        return _Stamp(when.day.isoformat(), "day", None, False)  # never invent a zone
    offset = moment.utcoffset()
    minutes = int(offset.total_seconds() // 60) if offset is not None else None
    return _Stamp(moment.isoformat(timespec="seconds"), "second", minutes, zoned)


def _in_range(when: _When, latest: date) -> bool:
    return MIN_DATE <= when.day <= latest


_TIME_PUBLISHED = etree.XPath("//time[@itemprop='datePublished'][@datetime]/@datetime")
_TIME_MODIFIED = etree.XPath("//time[@itemprop='dateModified'][@datetime]/@datetime")
_TIME_IN_ARTICLE = etree.XPath("(//article//time[@datetime] | //main//time[@datetime])[1]/@datetime")

_URL_DATE = re.compile(r"/((?:19|20)\d\d)[/-](0?[1-9]|1[0-2])[/-](0?[1-9]|[12]\d|3[01])(?:/|[-_.]|$)")

_META_PUBLISHED = (
    "article:published_time",
    "og:article:published_time",
    "pubdate",
    "publishdate",
    "publish-date",
    "dc.date",
    "dc.date.issued",
    "dcterms.date",
    "dcterms.issued",
    "parsely-pub-date",
    "sailthru.date",
)
_META_MODIFIED = ("article:modified_time", "og:article:modified_time", "og:updated_time", "dcterms.modified")


def _published_candidates(page: _Page) -> Iterator[Any]:
    yield page.ld("datePublished")
    for name in _META_PUBLISHED[:2]:
        yield from page.meta.get(name, ())
    yield from page.itemprop.get("datepublished", ())
    for name in _META_PUBLISHED[2:]:
        yield from page.meta.get(name, ())
    yield from _TIME_PUBLISHED(page.tree)
    # A full date in the URL path (/2024/05/03/) is the publication day; a <time> in the article may be an
    # update's, or a comment's.
    match = _URL_DATE.search(split_url(page.url).path)
    if match:
        yield f"{match[1]}-{int(match[2]):02d}-{int(match[3]):02d}"
    yield from _TIME_IN_ARTICLE(page.tree)


def _modified_candidates(page: _Page) -> Iterator[Any]:
    yield page.ld("dateModified")
    for name in _META_MODIFIED:
        yield from page.meta.get(name, ())
    yield from page.itemprop.get("datemodified", ())
    yield from _TIME_MODIFIED(page.tree)


def _rank(stamp: _Stamp) -> int:
    """How much of the moment a stamp states: a day (0), a time in the source's zone (1), a time and zone (2)."""
    return 2 if stamp.zoned else (1 if stamp.precision == "second" else 0)


def _best_stamp(candidates: Iterable[Any], default_tz: str | None, latest: date) -> _Stamp | None:
    """The first valid date; a later source may only make it more precise (a time, a zone, for the same day)."""
    best: _Stamp | None = None
    best_day: date | None = None
    for value in candidates:
        when = _parse_when(value)
        if when is None or not _in_range(when, latest):
            continue
        stamp = _stamp(when, default_tz)
        if best is None:
            best, best_day = stamp, when.day
        elif when.day == best_day and _rank(stamp) > _rank(best):
            best = stamp
        if _rank(best) == 2:
            break
    return best


def _htmldate_day(page: _Page, latest: date) -> str | None:
    from htmldate import find_date  # imported on first use: only pages without structured dates need it

    try:
        return find_date(
            page.tree,
            extensive_search=False,
            original_date=True,
            outputformat="%Y-%m-%d",
            url=page.url,
            min_date=MIN_DATE.isoformat(),
            max_date=latest.isoformat(),
        )
    except (ValueError, TypeError):  # htmldate's own parsing of odd markup
        return None


_TEXTS = etree.XPath(".//text()[not(ancestor::script or ancestor::style or ancestor::h1)]")
_UPDATED = re.compile(r"updated|modified|aktualisiert|geändert|mis à jour|actualizado|aggiornato", re.I)
_AMBIGUOUS = re.compile(r"\b(0?[1-9]|1[0-2])[/.-](0?[1-9]|1[0-2])[/.-]\d{2,4}\b")  # 3/4/2026: March or April?
#: The headline's surroundings read for a printed date: at most this many characters of text.
HEADER_CHARS = 1500


def _longer_than(el: HtmlElement, limit: int) -> bool:
    """`el` holds more than `limit` characters of text (counted only as far as needed)."""
    total = 0
    for piece in el.itertext():
        total += len(piece.strip())
        if total > limit:
            return True
    return False


def _header_block(page: _Page) -> HtmlElement | None:
    """The headline's block: the first <h1> and its ancestors while they hold little text (the byline's box)."""
    if "header" not in page.cache:
        h1 = next(page.tree.iter("h1"), None)
        block = h1
        for anc in islice(h1.iterancestors(), 3) if h1 is not None else ():
            if anc.tag in ("body", "html") or _longer_than(anc, HEADER_CHARS):
                break
            block = anc
        page.cache["header"] = block
    return page.cache["header"]


def _header_day(page: _Page, latest: date) -> str | None:
    """The date printed by the headline ("By A. Writer · December 15, 2025"), read with htmldate's parser.

    Pages whose only date is in their visible text print it in the byline, next to the <h1>; the rest of
    the page (teasers, comments, footers) holds other dates, so only the headline's block is read.
    """
    from htmldate.extractors import try_date_expr

    block = _header_block(page)
    if block is None:
        return None
    earliest, last = datetime.combine(MIN_DATE, time()), datetime.combine(latest, time())
    updated = None
    for piece in _TEXTS(block):
        piece = " ".join(piece.split())
        if not 6 <= len(piece) <= 80 or _AMBIGUOUS.search(piece):
            continue
        day = try_date_expr(piece.title() if piece.isupper() else piece, "%Y-%m-%d", False, earliest, last)
        if day and _UPDATED.search(piece):
            updated = updated or day  # an update's date: only when the page prints no other
        elif day:
            return day
    return updated


# ------------------------------------------------------------------ section, keywords, language, image


def _breadcrumb_section(page: _Page) -> str | None:
    for node in page.nodes_of(frozenset({"BreadcrumbList"})):
        items = node.get("itemListElement")
        if not isinstance(items, list) or len(items) < 2:
            continue
        items = [i for i in items if isinstance(i, dict)]
        items.sort(key=lambda i: i.get("position") if isinstance(i.get("position"), int) else 0)
        if len(items) >= 2:
            item = items[-2]
            name = item.get("name") or (item.get("item") if isinstance(item.get("item"), dict) else {}).get("name")
            cleaned = _clean(name, 100)
            if cleaned and _key(cleaned) not in ("home", "startseite", "accueil", "inicio"):
                return cleaned
    return None


def _section(page: _Page) -> str | None:
    value = page.ld("articleSection")
    for section in (
        _clean(page.first("article:section"), 100),
        _clean(value[0] if isinstance(value, list) and value else value, 100),
        _breadcrumb_section(page),
    ):
        if section and not (" " not in section and "." in section):  # "gizmodo.com" is a host, not a section
            return section
    return None


def _keywords(page: _Page) -> list[str]:
    raw: list[str] = []
    for name in ("news_keywords", "keywords"):
        raw += page.meta.get(name, ())
    value = page.ld("keywords")
    raw += [v for v in (value if isinstance(value, list) else [value]) if isinstance(v, str)]
    out: dict[str, str] = {}
    for chunk in raw:
        for word in chunk.split(","):
            cleaned = _clean(word, 100)
            if cleaned and cleaned.casefold() not in out:
                out[cleaned.casefold()] = cleaned
            if len(out) >= MAX_KEYWORDS:
                return list(out.values())
    return list(out.values())


_LANG = re.compile(r"^([A-Za-z]{2})(?:$|[-_])")
_OLD_CODES = {"iw": "he", "in": "id", "ji": "yi", "jw": "jv"}


def _language(page: _Page) -> str | None:
    for value in (page.tree.get("lang"), page.first("og:locale"), page.first("content-language")):
        match = _LANG.match((value or "").strip().split(",")[0].strip())
        if match:
            code = match[1].lower()
            return _OLD_CODES.get(code, code)
    return None


def _image(page: _Page) -> str | None:
    value: Any = page.first("og:image", "og:image:url", "og:image:secure_url", "twitter:image", "twitter:image:src")
    if not value:
        value = page.ld("image")
        if isinstance(value, list):
            value = value[0] if value else None
        if isinstance(value, dict):
            value = value.get("url") or value.get("contentUrl")
    if not isinstance(value, str) or not value.strip():
        return None
    try:
        url = urljoin(page.url, value.strip())  # a relative image is useless away from the page
    except ValueError:  # a malformed page or image URL
        return None
    return url if split_url(url).scheme in ("http", "https") else None


def _canonical(tree: HtmlElement) -> str | None:
    for el in tree.iter("link"):
        if "canonical" in (el.get("rel") or "").lower().split() and (el.get("href") or "").strip():
            return el.get("href").strip()
    return None


# ------------------------------------------------------------------ entry point


def extract_metadata(tree: HtmlElement, url: str, *, default_tz: str | None = None) -> PageMeta:
    """The metadata of a parsed page (`trafilatura.utils.load_html`); `tree` is only read.

    `default_tz` (an IANA zone name from the source's config) dates a time the page states without a zone;
    without it such a time is kept as a day. Raises ValueError for an unknown zone name.
    """
    if default_tz:
        _tz(default_tz)  # a bad configuration fails on every page, not only on pages with a naive time
    page = _Page(tree, url)
    latest = datetime.now(timezone.utc).date() + timedelta(days=1)

    sitename = _sitename(page)
    publisher = _publisher(page)
    site = _Site([sitename, publisher, *(_name_of(n) for n in page.nodes_of(ORG_TYPES))], url)
    section = _section(page)
    title, cut = _title(page, site, section)

    credits = _Credits(site, _personal_names(page))
    for source in (_ld_authors, _meta_authors, _html_authors, _header_authors):
        source(page, credits)
        if credits.people:
            break

    published = _best_stamp(_published_candidates(page), default_tz, latest)
    if published is None:
        # The date printed by the headline first: where both found a day and they differed, it was the right
        # one on 9 pages of wcxb-dev and htmldate's on none (htmldate also reads teasers' and comments' dates);
        # it also spares htmldate's cost (~3 ms, a copy of the tree) on those pages.
        day = _header_day(page, latest) or _htmldate_day(page, latest)
        if day:
            published = _Stamp(day, "day", None, False)
    modified = _best_stamp(_modified_candidates(page), default_tz, latest)

    og_type = _clean(page.first("og:type"), 100)
    return PageMeta(
        title=title,
        sitename=sitename or cut,
        authors=credits.people,
        credit=[c for c in credits.credit if _key(c) not in {_key(p) for p in credits.people}],
        publisher=publisher or credits.publisher,
        published=published.iso if published else None,
        published_precision=published.precision if published else None,
        published_offset_minutes=published.offset if published else None,
        modified=modified.iso if modified else None,
        section=section,
        keywords=_keywords(page),
        description=_clean(page.first("og:description", "description", "twitter:description"))
        or _clean(page.ld("description")),
        image=_image(page),
        canonical=_canonical(tree),
        language=_language(page),
        og_type=og_type.lower() if og_type else None,
        schema_types=[t for kinds in page.types for t in kinds],
    )
