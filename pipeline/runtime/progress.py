"""Progress of a run: live bars on a terminal, sparse plain lines in logs.

`progress_reporter(stream)` picks the mode: when the stream is a terminal, one
`rich.progress` display (a bar, count and ETA only when the total is known, a
spinner otherwise; elapsed time) with every log record routed above it through
rich's logging handler, so log lines never tear the bars; otherwise plain lines,
one when a stage starts, one when it ends, and at most one every `interval`
seconds in between, so an Airflow or CI log stays readable. A rate is shown only
once it rests on a real sample (`MIN_RATE_ITEMS` items over `MIN_RATE_SECONDS`).

    rep = progress_reporter()
    rep.stage("crawl alpha", unit="responses")
    with rep.follow(log_path):      # counts Scrapy's "Crawled (200)" lines of a child process
        crawl_stage(ctx, "alpha")
    rep.stage("extract", total=len(warc_keys), unit="WARC files")
    rep.advance()
    rep.note("stored 123 articles")  # a message above the bars / a plain line
    line = rep.line("crawl beta", unit="responses")   # a line of its own, next to the stage (concurrent work)
    with rep.follow(log_path, advance=line.advance):
        ...
    line.end()                                        # or line.end(failed="connection refused")
    rep.close()

A reporter is also a `say(msg)` callable (it calls `note`), so it can be passed
wherever a progress callback is expected.
"""

from __future__ import annotations

import os
import re
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from rich.progress import TaskID

#: Scrapy logs one line per response at DEBUG ("Crawled (200) <GET https://...>"); the
#: project keeps Scrapy's default DEBUG level for crawl logs, so each line is one response.
SCRAPY_RESPONSE = re.compile(r"\bCrawled \(\d{3}\)")
#: Plain mode: seconds between two progress lines of the same stage (start/end lines always show).
DEFAULT_INTERVAL = 30.0
#: A rate says something only over a sample: "9408.4 pages/s" for 2 pages is noise.
MIN_RATE_ITEMS = 10
MIN_RATE_SECONDS = 1.0


def rate_text(completed: int, elapsed: float, unit: str) -> str:
    """ "12.3 pages/s", or "" when the sample is too small to mean anything."""
    if completed < MIN_RATE_ITEMS or elapsed < MIN_RATE_SECONDS:
        return ""
    return f"{completed / elapsed:.1f} {unit}/s"


class Reporter:
    """Progress of one run, stage by stage. Thread-safe: `advance` may be called from a watcher thread."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self.current: str | None = None
        self.completed = 0
        self.total: int | None = None
        self.unit = "items"

    # -- the API run.py calls
    def stage(self, name: str, total: int | None = None, *, unit: str = "items") -> None:
        """Start a stage (ending the previous one). `total` None: count without ETA."""
        with self._lock:
            self._end_stage()
            self.current, self.completed, self.total, self.unit = name, 0, total, unit
            self._start_stage()

    def advance(self, n: int = 1) -> None:
        """`n` more items of the current stage are done."""
        with self._lock:
            if self.current is None:
                return
            self.completed += n
            self._advanced()

    def set_total(self, total: int | None) -> None:
        """The total became known (or changed) while the stage runs."""
        with self._lock:
            self.total = total
            self._advanced()

    def note(self, msg: str) -> None:
        """A one-off message (a source finished, a warning)."""
        raise NotImplementedError

    def line(self, name: str, total: int | None = None, *, unit: str = "items") -> Line:
        """A line of its own for work that runs next to the current stage (one crawl of several at once).

        Advance it with `line.advance()`, end it with `line.end()` (or `line.end(failed=why)`)."""
        with self._lock:
            line = Line(self, name, total, unit)
            self._line_started(line)
            return line

    def close(self) -> None:
        """End the current stage and the display. Idempotent."""
        with self._lock:
            self._end_stage()
            self.current = None
            self._close()

    def __call__(self, msg: str) -> None:
        self.note(msg)

    def __enter__(self) -> Reporter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @contextmanager
    def follow(
        self,
        path: str | Path,
        pattern: re.Pattern = SCRAPY_RESPONSE,
        *,
        poll: float = 0.25,
        advance: Callable[[int], None] | None = None,
    ) -> Iterator[None]:
        """While the block runs, advance once per new line of `path` matching `pattern`.

        For work done in a child process that logs to a file (the Scrapy crawl). The file
        may not exist yet; lines already in it when the block starts are not counted.
        `advance`: what to advance (default: the current stage; e.g. a `line(...)`'s `advance`).
        """
        path = Path(path)
        start = path.stat().st_size if path.exists() else 0
        stop = threading.Event()
        follower = _Follower(path, start, pattern, advance or self.advance)

        def loop() -> None:
            while not stop.wait(poll):
                follower.read()

        thread = threading.Thread(target=loop, name="progress-follow", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()
            follower.read()  # what the child wrote last

    # -- hooks for the two modes (called with the lock held)
    def _start_stage(self) -> None:
        raise NotImplementedError

    def _advanced(self) -> None:
        raise NotImplementedError

    def _end_stage(self) -> None:
        raise NotImplementedError

    def _close(self) -> None:
        raise NotImplementedError

    def _line_started(self, line: Line) -> None:
        raise NotImplementedError

    def _line_advanced(self, line: Line) -> None:
        raise NotImplementedError

    def _line_ended(self, line: Line, failed: str | None) -> None:
        raise NotImplementedError


class Line:
    """One line of a reporter's display, next to its stage: `Reporter.line(...)` makes one. Thread-safe."""

    def __init__(self, rep: Reporter, name: str, total: int | None, unit: str):
        self.rep, self.name, self.total, self.unit = rep, name, total, unit
        self.completed = 0
        self.started = self.last_line = time.monotonic()
        self.ended = False
        self.handle: Any = None  # the display's own handle (a rich task id)

    def count(self) -> str:
        of = f"/{self.total}" if self.total is not None else ""
        return f"{self.completed}{of} {self.unit}"

    def rate(self) -> str:
        return rate_text(self.completed, time.monotonic() - self.started, self.unit)

    def advance(self, n: int = 1) -> None:
        """`n` more items of this line are done (ignored once it ended)."""
        with self.rep._lock:
            if self.ended:
                return
            self.completed += n
            self.rep._line_advanced(self)

    def end(self, *, failed: str | None = None) -> None:
        """The work of this line is over (`failed`: why it failed). Idempotent."""
        with self.rep._lock:
            if self.ended:
                return
            self.ended = True
            self.rep._line_ended(self, failed)


class _Follower:
    """Reads the new complete lines of a growing file and reports the matches."""

    def __init__(self, path: Path, offset: int, pattern: re.Pattern, advance: Callable[[int], None]):
        self.path, self.offset, self.pattern, self.advance = path, offset, pattern, advance
        self.partial = b""

    def read(self) -> None:
        try:
            with open(self.path, "rb") as fh:
                if os.fstat(fh.fileno()).st_size < self.offset:  # truncated / replaced: start over
                    self.offset, self.partial = 0, b""
                fh.seek(self.offset)
                data = fh.read()
        except FileNotFoundError:
            return
        self.offset += len(data)
        *lines, self.partial = (self.partial + data).split(b"\n")
        hits = sum(1 for line in lines if self.pattern.search(line.decode("utf-8", "replace")))
        if hits:
            self.advance(hits)


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


class PlainReporter(Reporter):
    """Sparse plain lines for logs: stage start, stage end, and at most one line per `interval`."""

    def __init__(
        self,
        stream: TextIO | None = None,
        *,
        interval: float = DEFAULT_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
        emit: Callable[[str], None] | None = None,
    ):
        super().__init__()
        self.stream, self.interval, self.clock, self.emit = stream or sys.stderr, interval, clock, emit
        self.started = self.last_line = 0.0

    def _line(self, text: str) -> None:
        if self.emit is not None:
            self.emit(text)
        else:
            print(text, file=self.stream, flush=True)

    def _count(self) -> str:
        of = f"/{self.total}" if self.total is not None else ""
        return f"{self.completed}{of} {self.unit}"

    def _start_stage(self) -> None:
        self.started = self.last_line = self.clock()
        self._line(f"{self.current}: started" + (f" ({self.total} {self.unit})" if self.total is not None else ""))

    def _advanced(self) -> None:
        now = self.clock()
        if now - self.last_line < self.interval:
            return
        self.last_line = now
        elapsed = now - self.started
        rate = rate_text(self.completed, elapsed, self.unit)
        text = f"{self.current}: {self._count()}" + (f", {rate}" if rate else "")
        if self.total is not None and rate and self.completed < self.total:
            text += f", ETA {_duration((self.total - self.completed) * elapsed / self.completed)}"
        self._line(text)

    def _end_stage(self) -> None:
        if self.current is None:
            return
        elapsed = self.clock() - self.started
        if self.total is None and not self.completed:  # a stage that counts nothing: just its time
            self._line(f"{self.current}: done in {elapsed:.1f} s")
            return
        rate = rate_text(self.completed, elapsed, self.unit)
        self._line(f"{self.current}: done, {self._count()} in {elapsed:.1f} s" + (f" ({rate})" if rate else ""))

    def _close(self) -> None:
        if self.emit is None:
            self.stream.flush()

    def note(self, msg: str) -> None:
        with self._lock:
            self._line(msg)

    def _line_started(self, line: Line) -> None:
        line.started = line.last_line = self.clock()
        self._line(f"{line.name}: started" + (f" ({line.total} {line.unit})" if line.total is not None else ""))

    def _line_advanced(self, line: Line) -> None:
        now = self.clock()
        if now - line.last_line < self.interval:
            return
        line.last_line = now
        rate = rate_text(line.completed, now - line.started, line.unit)
        self._line(f"{line.name}: {line.count()}" + (f", {rate}" if rate else ""))

    def _line_ended(self, line: Line, failed: str | None) -> None:
        elapsed = self.clock() - line.started
        rate = rate_text(line.completed, elapsed, line.unit)
        outcome = f"FAILED ({failed})" if failed else "done"
        self._line(f"{line.name}: {outcome}, {line.count()} in {elapsed:.1f} s" + (f" ({rate})" if rate else ""))


class RichReporter(Reporter):
    """One live display on a terminal (rich.progress): spinner, stage, bar and ETA (known totals only),
    count, rate, elapsed. While it runs, log records print above it (rich's logging handler)."""

    def __init__(self, stream: TextIO):
        super().__init__()
        from rich.console import Console
        from rich.progress import Progress, TextColumn, TimeElapsedColumn

        self.console = Console(file=stream)
        bar, eta = _known_total_columns()
        self.progress = Progress(
            _mark_column(),
            TextColumn("[bold]{task.description}"),
            bar,
            TextColumn("{task.fields[count]}"),
            TextColumn("{task.fields[rate]}"),
            eta,
            TimeElapsedColumn(),
            console=self.console,
            transient=False,
            refresh_per_second=8,
            # stdout is the run report's channel (`run --json`): never route it through the display
            redirect_stdout=False,
            redirect_stderr=False,
        )
        self.progress.start()
        self._logs = _route_logs(self.console)
        self.task: TaskID | None = None
        self.started = time.monotonic()

    def _fields(self) -> dict:
        of = f"/{self.total}" if self.total is not None else ""
        counted = self.total is not None or self.completed
        return {
            "count": f"{self.completed}{of} {self.unit}" if counted else "",
            "rate": rate_text(self.completed, time.monotonic() - self.started, self.unit),
        }

    def _start_stage(self) -> None:
        assert self.current is not None  # stage() sets the name just before calling _start_stage
        self.started = time.monotonic()
        self.task = self.progress.add_task(self.current, total=self.total, count="", rate="")
        self.progress.update(self.task, **self._fields())

    def _advanced(self) -> None:
        if self.task is not None:
            self.progress.update(self.task, completed=self.completed, total=self.total)
            self.progress.update(self.task, **self._fields())

    def _end_stage(self) -> None:
        if self.task is None:
            return
        # An open-ended stage keeps no bar (it never had a total to fill): its spinner turns into a tick.
        if self.total is not None:
            self.progress.update(self.task, completed=self.total)
        self.progress.update(self.task, **self._fields(), mark=DONE_MARK)
        self.progress.stop_task(self.task)
        self.task = None

    def _close(self) -> None:
        self.progress.stop()
        self._logs()

    def note(self, msg: str) -> None:
        with self._lock:
            self.progress.console.print(msg, markup=False, highlight=False)

    def _line_started(self, line: Line) -> None:
        line.handle = self.progress.add_task(line.name, total=line.total, count="", rate="")

    def _line_advanced(self, line: Line) -> None:
        self.progress.update(
            line.handle, completed=line.completed, total=line.total, count=line.count(), rate=line.rate()
        )

    def _line_ended(self, line: Line, failed: str | None) -> None:
        # The reason of a failure stays on the source's line; the full one is in the log and the report.
        self.progress.update(
            line.handle,
            description=f"{line.name}: FAILED ({failed[:80]})" if failed else line.name,
            completed=line.total if line.total is not None and not failed else line.completed,
            count=line.count(),
            rate=line.rate(),
            mark=FAILED_MARK if failed else DONE_MARK,
        )
        self.progress.stop_task(line.handle)


#: What an ended stage or line shows in place of its spinner (an open-ended task never "finishes" for rich).
DONE_MARK = "[green]✓"
FAILED_MARK = "[red]✗"


def _mark_column():
    """A spinner while a task runs; its `mark` field (✓ or ✗) once it ended."""
    from rich.progress import SpinnerColumn
    from rich.text import Text

    class Mark(SpinnerColumn):
        def render(self, task):
            mark = task.fields.get("mark")
            return Text.from_markup(mark) if mark else super().render(task)

    return Mark(finished_text=DONE_MARK)


def _known_total_columns():
    """A bar and an ETA column that draw nothing for a stage without a known total (no fake full bar,
    no "ETA 0:00:05" for a crawl whose size nobody knows)."""
    from rich.progress import BarColumn, TimeRemainingColumn
    from rich.text import Text

    class Bar(BarColumn):
        def render(self, task):
            return Text("") if task.total is None else super().render(task)

    class Eta(TimeRemainingColumn):
        def render(self, task):
            if task.total is None or task.finished:
                return Text("")
            return Text.assemble("ETA ", super().render(task))

    return Bar(), Eta()


def _route_logs(console) -> Callable[[], None]:
    """Send the root logger's records through rich's handler (printed above the live display) instead of
    the stream handlers that would write through it; returns the function that puts them back."""
    import logging

    from rich.logging import RichHandler

    root = logging.getLogger()
    replaced = [
        h for h in root.handlers if isinstance(h, logging.StreamHandler) and not isinstance(h, logging.FileHandler)
    ]
    if not replaced:
        return lambda: None
    handler = RichHandler(console=console, show_path=False, markup=False, rich_tracebacks=False)
    handler.setLevel(min(h.level for h in replaced))
    for h in replaced:
        for f in h.filters:  # e.g. the CLI's redaction of credentials: kept on the new handler
            handler.addFilter(f)
        root.removeHandler(h)
    root.addHandler(handler)

    def restore() -> None:
        root.removeHandler(handler)
        for h in replaced:
            root.addHandler(h)

    return restore


def is_terminal(stream: TextIO) -> bool:
    """A live display only on a real terminal (not a pipe, a file, or TERM=dumb)."""
    try:
        return stream.isatty() and os.environ.get("TERM", "") != "dumb"
    except (AttributeError, ValueError):  # closed or file-like objects without a descriptor
        return False


def progress_reporter(
    stream: TextIO | None = None, *, tty: bool | None = None, interval: float = DEFAULT_INTERVAL
) -> Reporter:
    """A live reporter on a terminal, a plain sparse one otherwise (`tty` forces the choice)."""
    stream = stream or sys.stderr
    if tty if tty is not None else is_terminal(stream):
        return RichReporter(stream)
    return PlainReporter(stream, interval=interval)


def reporter_for(say: Callable[[str], None] | None = None, *, interval: float = DEFAULT_INTERVAL) -> Reporter:
    """A plain reporter whose lines go to an existing `say(msg)` callback (or INFO log lines):
    for callers that have no terminal of their own (the DAG tasks, the demo, tests)."""
    if isinstance(say, Reporter):
        return say
    if say is None:
        import logging

        logger = logging.getLogger("pipeline.flows.ingest")
        say = lambda msg: logger.info("%s", msg)
    return PlainReporter(interval=interval, emit=say)
