"""What a route returns, and the small helpers routes are built from."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime

HTML = "text/html; charset=utf-8"
XML = "application/xml; charset=utf-8"


@dataclass
class Request:
    """The parts of a request a route may look at."""

    path: str
    headers: dict[str, str]
    hit: int  # how many times this path has been requested, this one included


@dataclass
class Reply:
    """One HTTP response. With `last_modified` set, the server adds ETag/Last-Modified and answers 304s."""

    status: int = 200
    body: bytes | Iterable[bytes] = b""
    content_type: str | None = HTML
    headers: dict[str, str] = field(default_factory=dict)
    last_modified: datetime | None = None

    @property
    def etag(self) -> str | None:
        if self.last_modified is None or not isinstance(self.body, bytes):
            return None
        return '"' + hashlib.sha1(self.body).hexdigest()[:20] + '"'


Route = Callable[[Request], Reply]


def page(render: Callable[[], tuple[str | bytes, datetime]], content_type: str = HTML) -> Route:
    """A route whose body is rendered once, on first request (then cached), with validators."""
    lock = threading.Lock()
    cache: list[Reply] = []

    def route(_req: Request) -> Reply:
        with lock:
            if not cache:
                body, modified = render()
                cache.append(
                    Reply(
                        body=body.encode("utf-8") if isinstance(body, str) else body,
                        content_type=content_type,
                        last_modified=modified,
                    )
                )
        return cache[0]

    return route


def epoch_page(
    render: Callable[[int], tuple[str | bytes, datetime]], get_epoch: Callable[[], int], content_type: str = HTML
) -> Route:
    """Like `page`, but rendered (and cached) once per site epoch: its body changes with the epoch."""
    lock = threading.Lock()
    cache: dict[int, Reply] = {}

    def route(_req: Request) -> Reply:
        epoch = get_epoch()
        with lock:
            if epoch not in cache:
                body, modified = render(epoch)
                cache[epoch] = Reply(
                    body=body.encode("utf-8") if isinstance(body, str) else body,
                    content_type=content_type,
                    last_modified=modified,
                )
            return cache[epoch]

    return route


def uncached(render: Callable[[], tuple[str, datetime]], content_type: str = HTML) -> Route:
    """Rendered on every request (bulk pages: thousands of them, so nothing is kept in memory)."""

    def route(_req: Request) -> Reply:
        body, modified = render()
        return Reply(body=body.encode("utf-8"), content_type=content_type, last_modified=modified)

    return route
