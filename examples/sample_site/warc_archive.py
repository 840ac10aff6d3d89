"""CC-NEWS-shaped WARC files for tests and the WARC import benchmark.

Common Crawl's CC-NEWS files hold, per fetched page, a `request`, a `response` and a `metadata`
record after one `warcinfo` record, each record its own gzip member. `write_archive` writes that
shape (or whole-file gzip, or no compression), optionally cutting the last record short as an
interrupted crawler leaves it; `cc_news_pages` makes a mixed set of pages: articles from several
hosts, a non-UTF-8 page, non-HTML bodies, redirects and errors.
"""

from __future__ import annotations

import gzip
import io
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

from warcio.statusandheaders import StatusAndHeaders
from warcio.warcwriter import WARCWriter

from examples.sample_site.content import make_story
from examples.sample_site.templates import ArticleView, Outlet, render_article

#: When the generated pages were "fetched": fixed, so archives are the same on every build.
FETCHED = datetime(2026, 11, 2, 8, 0, tzinfo=timezone.utc)


@dataclass
class ArchivePage:
    """One fetched page of an archive: what its response record holds."""

    url: str
    body: bytes
    status: int = 200
    content_type: str = "text/html; charset=utf-8"
    fetched: datetime = FETCHED
    kind: str = "article"  # what the page is (for tests' expectations): article, other, binary, error
    headers: list[tuple[str, str]] = field(default_factory=list)


@dataclass
class WrittenRecord:
    """Where a response record landed in the written file (compressed offsets for gzip per record)."""

    url: str
    record_id: str
    offset: int
    length: int
    kind: str


_OUTLETS = [
    Outlet("courier", "The Daily Courier", "wordpress", "https://www.courier.example"),
    Outlet("ledger", "The Ledger", "arc", "https://news.ledger.example"),
    Outlet("gazette", "Gazette", "drupal", "https://gazette.example"),
]


def article_html(outlet: Outlet, n: int, *, charset: str = "utf-8") -> tuple[str, str]:
    """(url, html) of the n-th generated article of an outlet."""
    story = make_story(f"{outlet.name}-{n}")
    url = f"{outlet.base_url}/2026/11/{story.slug}-{n}"
    view = ArticleView(
        url=url,
        title=story.title,
        standfirst=story.standfirst,
        paragraphs=story.paragraphs,
        author=story.author,
        section=story.topic,
        published=FETCHED - timedelta(hours=n + 1),
        modified=FETCHED - timedelta(hours=n),
        charset=charset,
    )
    return url, render_article(outlet, view)


def cc_news_pages(articles_per_host: int = 3) -> list[ArchivePage]:
    """A CC-NEWS-like mix: articles of three hosts (one day apart per host), one page in ISO-8859-1 with
    accented text, a PDF, a JSON feed, a 404, a 301 and a 500."""
    pages: list[ArchivePage] = []
    for h, outlet in enumerate(_OUTLETS):
        for n in range(articles_per_host):
            url, html = article_html(outlet, n)
            fetched = FETCHED - timedelta(days=h, minutes=n)
            pages.append(ArchivePage(url, html.encode("utf-8"), fetched=fetched))
    url, html = article_html(_OUTLETS[2], 99, charset="iso-8859-1")
    html = html.replace("<p>", "<p>Señora Müller déclare à Zürich: « ça coûte très cher ». ", 3)
    pages.append(ArchivePage(url, html.encode("iso-8859-1", "replace"), content_type="text/html; charset=iso-8859-1"))
    base = _OUTLETS[0].base_url
    pages += [
        ArchivePage(
            f"{base}/report.pdf", b"%PDF-1.4\n" + bytes(range(256)) * 8, content_type="application/pdf", kind="binary"
        ),
        ArchivePage(f"{base}/feed.json", b'{"items": []}', content_type="application/json", kind="other"),
        ArchivePage(f"{base}/gone", b"<html><body>Not found</body></html>", status=404, kind="error"),
        ArchivePage(f"{base}/old", b"", status=301, headers=[("Location", f"{base}/new")], kind="error"),
        ArchivePage(f"{base}/broken", b"<html><body>Server error</body></html>", status=500, kind="error"),
    ]
    return pages


def _records(writer: WARCWriter, page: ArchivePage, filename: str) -> list:
    date = page.fetched.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    http = StatusAndHeaders(
        f"{page.status} X",
        [("Content-Type", page.content_type), ("Content-Length", str(len(page.body))), *page.headers],
        protocol="HTTP/1.1",
    )
    response = writer.create_warc_record(
        page.url,
        "response",
        payload=io.BytesIO(page.body),
        length=len(page.body),
        http_headers=http,
        warc_headers_dict={
            "WARC-Date": date,
            "WARC-Warcinfo-ID": f"<urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, filename)}>",
        },
    )
    rid = response.rec_headers.get_header("WARC-Record-ID")
    path = page.url.split("/", 3)[3] if page.url.count("/") >= 3 else ""
    request = writer.create_warc_record(
        page.url,
        "request",
        payload=io.BytesIO(b""),
        length=0,
        http_headers=StatusAndHeaders(f"GET /{path} HTTP/1.1", [("User-Agent", "CCBot/2.0")], is_http_request=True),
        warc_headers_dict={"WARC-Date": date, "WARC-Concurrent-To": rid},
    )
    meta = b"fetchTimeMs: 120\r\ncharset-detected: UTF-8\r\n"
    metadata = writer.create_warc_record(
        page.url,
        "metadata",
        payload=io.BytesIO(meta),
        length=len(meta),
        warc_content_type="application/warc-fields",
        warc_headers_dict={"WARC-Date": date, "WARC-Concurrent-To": rid},
    )
    return [request, response, metadata]


def write_archive(
    path: str | Path,
    pages: Iterable[ArchivePage],
    *,
    compression: str = "record",
    truncate_last: bool = False,
) -> list[WrittenRecord]:
    """Write `pages` as a CC-NEWS-shaped WARC file; the response records written, with their offsets.

    `compression`: "record" (one gzip member per record, CC-NEWS's layout), "file" (one gzip stream
    for the whole file) or "none". `truncate_last` cuts the file inside the last page's response
    record (its request is complete, the response lacks its second half and no metadata follows).
    """
    if compression not in ("record", "file", "none"):
        raise ValueError(f"compression must be record, file or none, not {compression!r}")
    path = Path(path)
    pages = list(pages)
    buf = io.BytesIO()
    writer = WARCWriter(buf, gzip=compression == "record", warc_version="1.1")
    writer.write_record(writer.create_warcinfo_record(path.name, {"software": "news-ingest test archive"}))
    written: list[WrittenRecord] = []
    cut = 0
    for i, page in enumerate(pages):
        request, response, metadata = _records(writer, page, path.name)
        writer.write_record(request)
        start = buf.tell()
        writer.write_record(response)
        end = buf.tell()
        if truncate_last and i == len(pages) - 1:
            cut = start + (end - start) // 2
            break
        writer.write_record(metadata)
        rid = response.rec_headers.get_header("WARC-Record-ID")
        written.append(WrittenRecord(page.url, rid, start, end - start, page.kind))
    data = buf.getvalue()[:cut] if cut else buf.getvalue()
    if compression == "file":
        data = gzip.compress(data, compresslevel=3, mtime=0)
    path.write_bytes(data)
    return written
