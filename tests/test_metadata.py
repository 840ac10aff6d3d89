"""pipeline.stages.metadata: titles without the site name, people as authors, dates with their zone.

Small pages first, one behaviour each; then the sample site's three article templates against `expected()`.
"""

from __future__ import annotations

import json
import urllib.request
from datetime import date, timedelta
from typing import TYPE_CHECKING

import pytest
from lxml import html as lxml_html
from trafilatura.utils import load_html

from pipeline.stages.metadata import PageMeta, extract_metadata
from pipeline.text.decoding import decode_html

if TYPE_CHECKING:
    from examples.sample_site import SampleSite

URL = "https://news.example.com/2024/politics/some-story"


def page(head: str = "", body: str = "<p>Text.</p>", *, ld: object = None, lang: str = "en") -> str:
    script = f'<script type="application/ld+json">{json.dumps(ld)}</script>' if ld is not None else ""
    return f'<!DOCTYPE html><html lang="{lang}"><head>{head}{script}</head><body>{body}</body></html>'


def meta(html: str, url: str = URL, **kwargs: str) -> PageMeta:
    return extract_metadata(load_html(html), url, **kwargs)


def article(**fields: object) -> dict:
    return {"@context": "https://schema.org", "@type": "NewsArticle", "headline": "Headline", **fields}


# ------------------------------------------------------------------ authors


def test_several_authors_in_page_order_deduplicated() -> None:
    ld = article(
        author=[
            {"@type": "Person", "name": "Jane Doe"},
            {"@type": "Person", "name": "John Smith"},
            {"@type": "Person", "name": "jane doe"},
        ]
    )
    assert meta(page(ld=ld)).authors == ["Jane Doe", "John Smith"]


def test_organisation_author_goes_to_publisher_or_credit() -> None:
    ld = article(
        author=[{"@type": "Organization", "name": "Example News"}, {"@type": "Person", "name": "Reuters"}],
        publisher={"@type": "NewsMediaOrganization", "name": "Example News"},
    )
    m = meta(page('<meta property="og:site_name" content="Example News">', ld=ld))
    assert m.authors == []
    assert m.publisher == "Example News"
    assert m.credit == ["Reuters"]


@pytest.mark.parametrize(
    "byline",
    ["By Jane Doe and John Smith", "Jane Doe, John Smith", "Jane Doe & John Smith", "By Jane Doe; By John Smith"],
)
def test_bylines_are_split_into_people(byline: str) -> None:
    assert meta(page(f'<meta name="author" content="{byline}">')).authors == ["Jane Doe", "John Smith"]


def test_list_with_an_agency_and_staff() -> None:
    m = meta(page('<meta name="author" content="Jane Doe, Anna Berg &amp; AFP">'))
    assert m.authors == ["Jane Doe", "Anna Berg"]
    assert m.credit == ["AFP"]
    m = meta(page('<meta name="author" content="Robert Burns, AP National Security Writer">'))
    assert (m.authors, m.credit) == (["Robert Burns"], ["AP"])
    m = meta(page('<meta name="author" content="Guardian staff and agencies">'))  # one credit line, no person
    assert (m.authors, m.credit) == ([], ["Guardian staff and agencies"])
    m = meta(page('<meta name="author" content="Center for Drug Evaluation and Research">'))
    assert (m.authors, m.credit) == ([], ["Center for Drug Evaluation and Research"])


@pytest.mark.parametrize(
    "value",
    ["@janedoe", "jdoe", "https://www.facebook.com/janedoe", "jane@example.com", "Example News", "New York", "Staff"],
)
def test_handles_urls_emails_places_and_the_site_are_not_people(value: str) -> None:
    m = meta(page(f'<meta property="og:site_name" content="Example News"><meta name="author" content="{value}">'))
    assert m.authors == []


def test_site_name_as_author_is_the_publisher() -> None:
    m = meta(page('<meta property="og:site_name" content="Golem.de"><meta name="author" content="Golem.de">'))
    assert m.authors == []
    assert m.publisher == "Golem.de"


def test_html_byline_with_reviewer_and_role() -> None:
    body = (
        "<article><h1>Headline</h1>"
        '<div class="byline">By <a href="/author/jane">Jane Doe</a>, Senior Reporter. '
        'Reviewed by <a href="/author/max">Max Mustermann</a></div><p>Text.</p></article>'
    )
    assert meta(page(body=body)).authors == ["Jane Doe"]


def test_byline_in_comments_is_not_the_author() -> None:
    body = (
        "<article><h1>Headline</h1><p>Text.</p></article>"
        '<div id="comments"><div class="comment-author"><a rel="author">Carl Reader</a></div></div>'
    )
    assert meta(page(body=body)).authors == []


def test_printed_by_line_next_to_the_headline() -> None:
    body = "<main><div><h1>Headline</h1><p>By Jane Doe</p><p>March 3, 2024</p></div><p>Text.</p></main>"
    m = meta(page(body=body), url="https://blog.example.org/post")
    assert m.authors == ["Jane Doe"]
    assert m.published == "2024-03-03"


# ------------------------------------------------------------------ dates


@pytest.mark.parametrize(
    ("stated", "iso", "offset"),
    [
        ("2024-05-03T16:55:35+05:30", "2024-05-03T16:55:35+05:30", 330),
        ("2024-05-03T16:55:35-04:00", "2024-05-03T16:55:35-04:00", -240),
        ("2024-05-03T16:55:35Z", "2024-05-03T16:55:35+00:00", 0),
        ("2024-05-03T16:55:35.120+0800", "2024-05-03T16:55:35+08:00", 480),
    ],
)
def test_zones_are_kept(stated: str, iso: str, offset: int) -> None:
    m = meta(page(ld=article(datePublished=stated)))
    assert (m.published, m.published_precision, m.published_offset_minutes) == (iso, "second", offset)


@pytest.mark.parametrize(
    ("stated", "iso", "offset"),
    [
        ("2024-01-15T09:30:00", "2024-01-15T09:30:00-05:00", -300),
        ("2024-07-15T09:30:00", "2024-07-15T09:30:00-04:00", -240),
    ],
)
def test_naive_time_takes_the_sources_zone(stated: str, iso: str, offset: int) -> None:
    m = meta(page(f'<meta property="article:published_time" content="{stated}">'), default_tz="America/New_York")
    assert (m.published, m.published_precision, m.published_offset_minutes) == (iso, "second", offset)


def test_naive_time_without_a_zone_is_a_day() -> None:
    m = meta(page('<meta property="article:published_time" content="2024-01-15T09:30:00">'))
    assert (m.published, m.published_precision, m.published_offset_minutes) == ("2024-01-15", "day", None)


def test_day_only_date_and_a_later_source_with_the_time() -> None:
    m = meta(page(ld=article(datePublished="2024-05-03")))
    assert (m.published, m.published_precision) == ("2024-05-03", "day")
    # the same day stated with a time and zone elsewhere makes it precise
    m = meta(
        page(
            '<meta property="article:published_time" content="2024-05-03T08:00:00+02:00">',
            ld=article(datePublished="2024-05-03"),
        )
    )
    assert (m.published, m.published_precision) == ("2024-05-03T08:00:00+02:00", "second")


def test_rfc_2822_dates() -> None:
    m = meta(page('<meta name="sailthru.date" content="Fri, 03 May 2024 16:55:35 +0200">'))
    assert (m.published, m.published_offset_minutes) == ("2024-05-03T16:55:35+02:00", 120)
    m = meta(page('<meta name="sailthru.date" content="Fri, 03 May 2024 16:55:35">'))
    assert (m.published, m.published_precision) == ("2024-05-03", "day")


def test_midnight_is_a_date_field_not_a_stated_time() -> None:
    m = meta(page(ld=article(datePublished="2024-05-03T00:00:00+02:00")))
    assert (m.published, m.published_precision, m.published_offset_minutes) == ("2024-05-03", "day", None)


def test_dates_outside_the_range_are_dropped() -> None:
    future = (date.today() + timedelta(days=30)).isoformat()
    head = '<meta property="article:published_time" content="2021-02-03T10:00:00+01:00">'
    m = meta(page(head, ld=article(datePublished=f"{future}T10:00:00Z")))
    assert m.published == "2021-02-03T10:00:00+01:00"
    m = meta(page(ld=article(datePublished="1970-01-01T00:00:00Z")), url="https://example.com/story")
    assert m.published is None


def test_modified_and_unknown_zone_name() -> None:
    m = meta(page(ld=article(datePublished="2024-05-03T10:00:00Z", dateModified="2024-05-04T11:00:00+01:00")))
    assert m.modified == "2024-05-04T11:00:00+01:00"
    with pytest.raises(ValueError, match="Mars/Olympus"):
        meta(page(), default_tz="Mars/Olympus")


def test_date_in_the_url_is_a_day() -> None:
    m = meta(page(), url="https://example.com/2023/11/09/some-story/")
    assert (m.published, m.published_precision) == ("2023-11-09", "day")


# ------------------------------------------------------------------ title


@pytest.mark.parametrize(
    ("title", "site"),
    [
        ("Mars rover finds water - Golem.de", "Golem.de"),
        ("Mars rover finds water | The Guardian", "The Guardian"),
        ("The Guardian | Mars rover finds water", "The Guardian"),
        ("Mars rover finds water：朝日新聞デジタル", "朝日新聞デジタル"),
        ("Mars rover finds water – Science – The Guardian", "The Guardian"),
    ],
)
def test_site_name_is_cut_from_the_title(title: str, site: str) -> None:
    head = f'<title>{title}</title><meta property="og:site_name" content="{site}">'
    m = meta(page(head + '<meta property="article:section" content="Science">'))
    assert m.title == "Mars rover finds water"
    assert m.sitename == site


def test_title_suffix_without_a_declared_site_name() -> None:
    m = meta(page("<title>Mars rover finds water - Golem.de</title>"), url="https://www.golem.de/news/x.html")
    assert m.title == "Mars rover finds water"
    assert m.sitename == "Golem.de"


def test_site_name_from_what_the_title_adds_to_og_title() -> None:
    head = '<title>Mars rover finds water | Daily Planet</title><meta property="og:title" content="Mars rover finds water">'
    m = meta(page(head))
    assert (m.title, m.sitename) == ("Mars rover finds water", "Daily Planet")


def test_separators_inside_a_headline_stay() -> None:
    title = "Covid-19: what we know - and what we don't"
    m = meta(page(f'<title>{title} | Example</title><meta property="og:site_name" content="Example">'))
    assert m.title == title


def test_visible_headline_wins_when_it_agrees() -> None:
    head = "<title>Mars rover finds water | Space | Example</title>"
    m = meta(page(head, "<h1>Mars rover finds water</h1><p>Text.</p>"))
    assert m.title == "Mars rover finds water"


# ------------------------------------------------------------------ the rest


def test_section_keywords_and_the_rest() -> None:
    head = (
        '<meta property="article:section" content="Politics">'
        '<meta name="news_keywords" content="election, Senate , election">'
        '<meta name="keywords" content="Senate, budget">'
        '<meta property="og:type" content="article"><meta property="og:description" content="A short summary.">'
        '<meta property="og:image" content="/img/a.jpg"><link rel="canonical" href="/2024/politics/some-story">'
    )
    m = meta(page(head, ld=article(keywords=["budget", "Congress"]), lang="en-GB"))
    assert m.section == "Politics"
    assert m.keywords == ["election", "Senate", "budget", "Congress"]
    assert m.og_type == "article"
    assert m.description == "A short summary."
    assert m.image == "https://news.example.com/img/a.jpg"
    assert m.canonical == "/2024/politics/some-story"  # as declared: resolving it is the caller's business
    assert m.language == "en"
    assert m.schema_types == ["NewsArticle"]


def test_keywords_capped_and_section_from_breadcrumbs() -> None:
    crumbs = {
        "@type": "BreadcrumbList",
        "itemListElement": [
            {"@type": "ListItem", "position": i, "name": n} for i, n in enumerate(["Home", "World", "Story"], 1)
        ],
    }
    words = ", ".join(f"tag{i}" for i in range(50))
    m = meta(page(f'<meta name="keywords" content="{words}">', ld=[article(), crumbs]))
    assert len(m.keywords) == 30
    assert m.section == "World"


def test_language_from_og_locale() -> None:
    m = meta(page('<meta property="og:locale" content="de_DE">').replace(' lang="en"', ""))
    assert m.language == "de"


def test_jsonld_graph_with_references() -> None:
    graph = {
        "@context": "https://schema.org",
        "@graph": [
            {"@type": "Organization", "@id": "https://ex.com/#org", "name": "Example Times"},
            {"@type": "Person", "@id": "https://ex.com/#/person/1", "name": "Jane Doe"},
            {
                "@type": ["Article", "NewsArticle"],
                "headline": "Graph headline",
                "author": {"@id": "https://ex.com/#/person/1"},
                "publisher": {"@id": "https://ex.com/#org"},
                "datePublished": "2024-02-01T07:00:00+01:00",
                "articleSection": ["Science", "Space"],
            },
        ],
    }
    m = meta(page(ld=graph))
    assert m.authors == ["Jane Doe"]
    assert m.publisher == "Example Times"
    assert m.published == "2024-02-01T07:00:00+01:00"
    assert m.section == "Science"
    assert m.title == "Graph headline"
    assert m.schema_types == ["Organization", "Person", "Article", "NewsArticle"]


def test_malformed_jsonld_does_not_raise() -> None:
    html = page(
        '<script type="application/ld+json">{"@type": "NewsArticle", "author": </script>'
        '<meta name="author" content="Jane Doe">'
    )
    m = meta(html)
    assert m.authors == ["Jane Doe"]
    assert m.schema_types == []


def test_empty_page_and_tree_left_unchanged() -> None:
    assert meta(page()) == PageMeta(language="en")
    tree = load_html(
        page("<title>A headline - Site</title>", "<h1>A headline</h1><div class='byline'>By Jane Doe</div>")
    )
    before = lxml_html.tostring(tree)
    extract_metadata(tree, URL)
    assert lxml_html.tostring(tree) == before


# ------------------------------------------------------------------ the sample site

ARTICLES_PER_OUTLET = 4


def _fetch(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as response:  # 127.0.0.1 only: the sample site
        return decode_html(response.headers.get("Content-Type"), response.read())


def test_sample_site_article_templates(sample_site: SampleSite) -> None:
    """Each outlet's template (WordPress, Arc-like, Drupal): title, author and day as the site generated them."""
    by_outlet: dict[str, list[dict]] = {}
    for entry in sample_site.expected():
        if entry["kind"] in ("article", "syndicated") and entry["expected"] == "stored" and entry.get("author"):
            by_outlet.setdefault(entry["outlet"], []).append(entry)
    assert {"the-daily-courier", "metro-herald", "valley-gazette"} <= set(by_outlet)
    for outlet, entries in by_outlet.items():
        chosen = [e for e in entries if e["kind"] == "article"][:ARTICLES_PER_OUTLET]
        chosen += [e for e in entries if e["kind"] == "syndicated"][:1]
        for entry in chosen:
            m = extract_metadata(load_html(_fetch(entry["url"])), entry["url"])
            where = f"{outlet} {entry['url']}"
            assert m.title == entry["title"], where
            assert m.published is not None and m.published[:10] == entry["published"][:10], where
            if entry["kind"] == "syndicated":  # wire copy: the agency's staff is credited, not a person
                assert m.authors == [] and m.credit == [entry["author"]], where
            else:
                assert m.authors == [entry["author"]], where


def test_malformed_page_urls_do_not_break_metadata_or_page_type():
    from pipeline.stages.page_type import classify_page

    html = (
        "<html><head><title>Harbour news - The Courier</title><meta property='og:image' content='/img/a.jpg'>"
        "<meta property='article:published_time' content='2026-11-02T10:00:00Z'></head>"
        "<body><article><h1>Harbour news</h1><p>Some text about the harbour.</p></article></body></html>"
    )
    for url in ("https://[broken-ipv6/x", "not a url", ""):
        tree = load_html(html)
        meta = extract_metadata(tree, url)
        assert meta.published == "2026-11-02T10:00:00+00:00" and meta.image is None
        assert classify_page(tree, url, "Some text about the harbour.").kind
