"""Assembles the outlets: which URLs exist, what each serves, and what a crawl should make of it."""

from __future__ import annotations

import gzip
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from examples.sample_site import content, feeds
from examples.sample_site.reply import XML, Route, epoch_page, page, uncached
from examples.sample_site.templates import ArticleView, Outlet, render_article, render_listing, render_static

# name, display name, template, sections (the topics its articles cover)
OUTLETS = [
    ("the-daily-courier", "The Daily Courier", "wordpress", ["politics", "business", "sport", "weather"]),
    ("metro-herald", "Metro Herald", "arc", ["politics", "courts", "transport", "science"]),
    ("valley-gazette", "Valley Gazette", "drupal", ["culture", "sport", "business", "weather"]),
]
N_REGULAR = 12  # regular articles per outlet
OLD_DAYS = 400  # archive articles are this many days old: any sane age cutoff skips them


@dataclass
class Article:
    """An article-like page and what the pipeline is expected to do with it."""

    outlet: str
    path: str
    kind: str
    title: str
    story_id: str
    standfirst: str
    paragraphs: list[str]
    author: str
    section: str
    published: datetime
    modified: datetime
    related: list[tuple[str, str]] = field(default_factory=list)
    trending: list[tuple[str, str]] = field(default_factory=list)
    expected: str = "stored"
    hint: str | None = None
    extra: dict = field(default_factory=dict)


@dataclass
class OutletSite:
    """Everything one outlet serves."""

    outlet: Outlet
    routes: dict[str, Route] = field(default_factory=dict)
    articles: list[Article] = field(default_factory=list)
    #: URLs a crawl can discover that are not articles of this outlet (non-articles, hostile, ...).
    others: list[dict] = field(default_factory=list)
    feeds: list[str] = field(default_factory=list)
    sitemaps: list[str] = field(default_factory=list)
    sections: list[str] = field(default_factory=list)
    resolve: Callable[[str], Route | None] | None = None
    #: bulk outlet only: builds article i on demand
    article_factory: Callable[[int], Article] | None = None


def url(o: Outlet, path: str) -> str:
    return o.base_url + path


def article_path(template: str, section: str, slug: str, n: int) -> str:
    """URL styles differ per CMS, as they do in the wild."""
    if template == "wordpress":
        return f"/news/{slug}/"
    if template == "arc":
        return f"/story/{section}/{slug}-{n:04d}{'ABCDEFGH'[n % 8]}/"
    return f"/articles/{slug}"


def view(o: Outlet, a: Article, paragraphs: list[str] | None = None, modified: datetime | None = None) -> ArticleView:
    return ArticleView(
        url=url(o, a.path),
        title=a.title,
        standfirst=a.standfirst,
        paragraphs=paragraphs or a.paragraphs,
        author=a.author,
        section=a.section,
        published=a.published,
        modified=modified or a.modified,
        related=a.related,
        trending=a.trending,
    )


def entry(o: Outlet, a: Article, modified: datetime | None = None) -> feeds.Entry:
    return feeds.Entry(
        url=url(o, a.path),
        title=a.title,
        summary=a.standfirst,
        author=a.author,
        published=a.published,
        modified=modified or a.modified,
    )


def _unique_story(seed: str, topic: str, titles: set[str]) -> content.Story:
    """A story whose headline this outlet has not used yet (some headline templates have no slots)."""
    story = content.make_story(seed, topic)
    while story.title in titles:
        seed += "+"
        story = content.make_story(seed, topic)
    titles.add(story.title)
    return story


def build_regular(o: Outlet, oi: int, now: datetime, get_epoch: Callable[[], int]) -> OutletSite:
    """One of the three regular outlets with its articles, wire copies, pages, feeds and sitemaps."""
    site = OutletSite(outlet=o)
    regular: list[Article] = []
    titles: set[str] = set()
    for i in range(N_REGULAR):
        story = _unique_story(f"{o.name}-{i}", o.sections[i % len(o.sections)], titles)
        published = now - timedelta(hours=1.5 + i * 4.25 + oi * 0.7)
        regular.append(
            Article(
                o.name,
                article_path(o.template, story.topic, story.slug, 100 + i),
                "article",
                story.title,
                story.story_id,
                story.standfirst,
                story.paragraphs,
                story.author,
                story.topic,
                published,
                published + timedelta(minutes=20),
            )
        )
    for i, a in enumerate(regular):  # related lines and sidebars point at the outlet's other stories
        n_rel = 3 if len(a.paragraphs) >= 9 else 2
        others = [regular[(i + k) % N_REGULAR] for k in (1, 5, 7)][:n_rel]
        a.related = [(b.title, url(o, b.path)) for b in others]
        a.trending = [(b.title, url(o, b.path)) for b in (regular[(i + k) % N_REGULAR] for k in (2, 3, 4, 6))]

    wire = []
    for k in range(2):
        n = oi * 2 + k
        title, paras = content.wire_variant(n)
        published = now - timedelta(hours=5 + n * 0.5)
        a = Article(
            o.name,
            article_path(o.template, "business", content.slugify(title) + f"-{o.name[:5]}{k}", 200 + k),
            "syndicated",
            title,
            "wire-coastline-rail-fleet",
            "Forty new trains will replace carriages that have been in service since 1989.",
            paras,
            ["Newswire staff", "Press Association reporter"][k],
            "business",
            published,
            published,
        )
        a.related = [
            (regular[k + 3].title, url(o, regular[k + 3].path)),
            (regular[k + 8].title, url(o, regular[k + 8].path)),
        ]
        a.trending = regular[0].trending
        wire.append(a)

    old = []
    if o.template in ("wordpress", "drupal"):
        for k in range(2 if o.template == "wordpress" else 1):
            story = _unique_story(f"{o.name}-archive-{k}", o.sections[k], titles)
            published = now - timedelta(days=OLD_DAYS + 3 * k, hours=oi)
            a = Article(
                o.name,
                article_path(o.template, story.topic, story.slug, 300 + k),
                "old",
                story.title,
                story.story_id,
                story.standfirst,
                story.paragraphs,
                story.author,
                story.topic,
                published,
                published,
                expected="skipped",
                hint=f"published {OLD_DAYS}+ days ago: older than max_age_days",
            )
            a.related = regular[k].related
            a.trending = regular[k].trending
            old.append(a)

    site.articles = regular + wire + old
    for a in site.articles:
        site.routes[a.path] = page(lambda a=a: (render_article(o, view(o, a)), a.modified))

    updated = _add_updated(site, now, get_epoch) if o.template == "arc" else None
    _nonarticles(site, now)
    _listings(site, regular + wire, now, updated, get_epoch)
    return site


def _nonarticles(site: OutletSite, now: datetime) -> None:
    """About, contact and tag pages: crawled (they are in the sitemaps) but not articles."""
    o = site.outlet
    about = [
        f"{o.display} has served the towns of the valley since 1887, first as a weekly paper and now online every day.",
        "Our newsroom is independent and funded by readers and advertisers.",
    ]
    contact = ["Newsdesk: 01632 960 412.", f"Write to us at {o.display}, 14 Market Street, Alderbrook."]
    lastmod = now - timedelta(days=20)
    site.routes["/about"] = page(lambda: (render_static(o, f"About {o.display}", about), lastmod))
    site.routes["/contact"] = page(lambda: (render_static(o, "Contact us", contact, form=True), lastmod))
    site.others += [
        _other(o, "/about", "nonarticle", f"About {o.display}", "not an article: about page"),
        _other(o, "/contact", "nonarticle", "Contact us", "not an article: contact page"),
    ]
    for s in o.sections:
        items = [(a.title, url(o, a.path), a.standfirst) for a in site.articles if a.section == s and a.kind != "old"]
        site.routes[f"/tag/{s}"] = page(
            lambda s=s, items=items: (render_listing(o, f"Tag: {s}", items, "tag"), now - timedelta(hours=1))
        )
        site.others.append(_other(o, f"/tag/{s}", "nonarticle", f"Tag: {s}", "not an article: tag page"))


def _other(o: Outlet, path: str, kind: str, title: str, hint: str, expected: str = "rejected", **extra: object) -> dict:
    return {
        "url": url(o, path),
        "outlet": o.name,
        "kind": kind,
        "title": title,
        "story_id": f"{o.name}:{path}",
        "expected": expected,
        "reject_reason_hint": hint,
        "related_headlines": [],
        **extra,
    }


def _listings(
    site: OutletSite,
    current: list[Article],
    now: datetime,
    updated: Article | None = None,
    get_epoch: Callable[[], int] | None = None,
) -> None:
    """Front and section pages, the outlet's feed and sitemaps, robots.txt."""
    o = site.outlet
    newest = sorted(current, key=lambda a: a.published, reverse=True)  # without the updated article
    listed = sorted(current + ([updated] if updated else []), key=lambda a: a.published, reverse=True)

    def cards(arts: list[Article]) -> list[tuple[str, str, str]]:
        return [(a.title, url(o, a.path), a.standfirst) for a in arts]

    front = cards(listed)
    if o.template == "arc":  # the Herald's front page links a robots-disallowed page
        front.append(("Newsroom rota for the holidays", url(o, "/private/newsroom-rota"), "Staff only."))
    site.routes["/"] = page(lambda: (render_listing(o, o.display, front, "front"), now))
    site.sections = [url(o, "/")]
    for s in o.sections:
        arts = [a for a in listed if a.section == s]
        site.routes[f"/section/{s}"] = page(lambda s=s, arts=arts: (render_listing(o, s.title(), cards(arts)), now))
        site.sections.append(url(o, f"/section/{s}"))

    robots_sitemaps: list[str] = []
    pages_entries = [feeds.Entry(url=url(o, p), modified=now - timedelta(days=20)) for p in ("/about", "/contact")]
    pages_entries += [feeds.Entry(url=url(o, f"/tag/{s}"), modified=now - timedelta(hours=1)) for s in o.sections]
    old = [a for a in site.articles if a.kind == "old"]

    if o.template == "wordpress":
        denied = feeds.Entry(
            url=url(o, "/private/staff-rota-changes"),
            title="Staff rota changes for December",
            summary="Internal.",
            author="Newsroom",
            published=now - timedelta(hours=2),
        )
        site.routes["/feed/"] = page(
            lambda: (feeds.rss20(o.display, o.base_url, [entry(o, a) for a in newest] + [denied], now), now),
            "application/rss+xml; charset=utf-8",
        )
        site.feeds = [url(o, "/feed/")]
        children = {
            "/post-sitemap.xml": (feeds.urlset([entry(o, a) for a in newest]), now),
            "/news-sitemap.xml": (feeds.urlset([entry(o, a) for a in newest], news_name=o.display), now),
            "/page-sitemap.xml": (feeds.urlset(pages_entries), now - timedelta(hours=1)),
            "/archive-sitemap.xml": (feeds.urlset([entry(o, a) for a in old]), old[0].published),
        }
        for path, (xml, mod) in children.items():
            site.routes[path] = page(lambda xml=xml, mod=mod: (xml, mod), XML)
        index = feeds.sitemapindex([(url(o, p), m) for p, (_x, m) in children.items()])
        site.routes["/sitemap_index.xml"] = page(lambda: (index, now), XML)
        site.sitemaps = [url(o, "/sitemap_index.xml")]
        robots_sitemaps = site.sitemaps
        site.others.append(
            _other(
                o,
                "/private/staff-rota-changes",
                "robots_denied",
                denied.title,
                "disallowed by robots.txt (/private/)",
                "skipped",
            )
        )
    elif o.template == "arc":
        assert updated is not None and get_epoch is not None  # the Herald carries the updated article

        def atom_feed(epoch: int) -> tuple[str, datetime]:
            mod = updated.extra["modified"][epoch]
            entries = [entry(o, a) for a in newest] + [entry(o, updated, mod)]  # newest excludes it
            return feeds.atom(o.display, o.base_url, entries, max(now, mod)), max(now, mod)

        def news_sitemap(epoch: int) -> tuple[str, datetime]:
            mod = updated.extra["modified"][epoch]
            entries = [entry(o, a) for a in newest] + [entry(o, updated, mod)]  # newest excludes it
            return feeds.urlset(entries, news_name=o.display), max(now, mod)

        site.routes["/feeds/atom.xml"] = epoch_page(atom_feed, get_epoch, "application/atom+xml; charset=utf-8")
        site.routes["/sitemap-news.xml"] = epoch_page(news_sitemap, get_epoch, XML)
        pages_xml = feeds.urlset(pages_entries)
        site.routes["/sitemap-pages.xml"] = page(lambda: (pages_xml, now), XML)
        site.feeds = [url(o, "/feeds/atom.xml")]
        site.sitemaps = [url(o, "/sitemap-news.xml"), url(o, "/sitemap-pages.xml")]
        robots_sitemaps = site.sitemaps
        site.others.append(
            _other(
                o,
                "/private/newsroom-rota",
                "robots_denied",
                "Newsroom rota for the holidays",
                "disallowed by robots.txt (/private/)",
                "skipped",
            )
        )
    else:
        rss = feeds.rss091(o.display, o.base_url, [entry(o, a) for a in newest])
        site.routes["/rss.xml"] = page(lambda: (rss, now), "application/rss+xml; charset=utf-8")
        gz = gzip.compress(feeds.urlset([entry(o, a) for a in newest + old] + pages_entries).encode(), mtime=0)
        site.routes["/sitemap.xml.gz"] = page(lambda: (gz, now), "application/x-gzip")
        site.feeds = [url(o, "/rss.xml")]
        site.sitemaps = [url(o, "/sitemap.xml.gz")]
        robots_sitemaps = site.sitemaps

    private_page = render_static(o, "Staff only", ["This page is for newsroom staff."])
    site.routes["/private/staff-rota-changes"] = page(lambda: (private_page, now))
    site.routes["/private/newsroom-rota"] = page(lambda: (private_page, now))
    robots = feeds.robots_txt(["/private/", "/wp-admin/" if o.template == "wordpress" else "/admin/"], robots_sitemaps)
    site.routes["/robots.txt"] = page(lambda: (robots, now - timedelta(days=30)), "text/plain; charset=utf-8")


def _add_updated(site: OutletSite, now: datetime, get_epoch: Callable[[], int]) -> Article:
    """The article updated in place at one URL: its text, dates and ETag follow the site epoch (0, 1, 2)."""
    o = site.outlet
    versions = content.updated_versions()
    published = now - timedelta(hours=20)
    modified = [published, now - timedelta(hours=9), now - timedelta(hours=3)]
    upd = Article(
        o.name,
        article_path(o.template, "transport", content.slugify(content.UPDATED_TITLE), 400),
        "updated",
        content.UPDATED_TITLE,
        "updated-harbour-bridge",
        "Inspectors found cracks in two of the bearings that carry the swing bridge.",
        versions[0],
        "Ines Farrant",
        "transport",
        published,
        published,
        extra={"versions": versions, "modified": modified},
    )
    upd.related = site.articles[4].related
    upd.trending = site.articles[4].trending
    site.routes[upd.path] = epoch_page(
        lambda e: (render_article(o, view(o, upd, versions[e], modified[e])), modified[e]), get_epoch
    )
    site.articles.append(upd)
    return upd


BULK_PATH = re.compile(r"^/news/(\d{5})-[a-z0-9-]*\.html$")


def bulk_path(i: int) -> tuple[str, str, str, datetime]:
    """(path, title, topic, published) of bulk article `i`, cheaply (no body generated)."""
    title, topic = content.headline(f"bulk-news-{i}")
    return f"/news/{i:05d}-{content.slugify(title)[:60]}.html", title, topic, timedelta(hours=1 + (i % 60) + i / 1000)


def build_bulk(o: Outlet, now: datetime, n: int) -> OutletSite:
    """The benchmark outlet: `n` generated articles, rendered on request, listed in a sitemap and an index."""
    site = OutletSite(outlet=o)
    index = [bulk_path(i) for i in range(n)]

    def article(i: int) -> Article:
        path, _title, topic, age = index[i]
        story = content.make_story(f"bulk-news-{i}")
        published = now - age
        a = Article(
            o.name,
            path,
            "article",
            story.title,
            story.story_id,
            story.standfirst,
            story.paragraphs,
            story.author,
            story.topic,
            published,
            published,
        )
        a.related = [(index[j][1], url(o, index[j][0])) for j in ((i + 1) % n, (i + 7) % n) if j != i]
        a.trending = a.related
        return a

    def resolve(path: str) -> Route | None:
        m = BULK_PATH.match(path)
        if not m or int(m.group(1)) >= n or index[int(m.group(1))][0] != path:
            return None
        i = int(m.group(1))
        return uncached(lambda: (lambda a: (render_article(o, view(o, a)), a.modified))(article(i)))

    site.resolve = resolve
    site.article_factory = article
    entries = [feeds.Entry(url=url(o, p), title=t, published=now - age) for p, t, _topic, age in index]
    sitemap = feeds.urlset(entries)
    listing = render_listing(o, "All stories", [(t, url(o, p), "") for p, t, _topic, _age in index], "section")
    site.routes["/sitemap.xml"] = page(lambda: (sitemap, now), XML)
    site.routes["/section/all"] = page(lambda: (listing, now))
    site.routes["/robots.txt"] = page(
        lambda: (feeds.robots_txt(["/private/"], [url(o, "/sitemap.xml")]), now), "text/plain; charset=utf-8"
    )
    site.sitemaps = [url(o, "/sitemap.xml")]
    site.sections = [url(o, "/section/all")]
    return site
