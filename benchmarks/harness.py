"""What the benchmarks share to measure a run: the memory and the CPU of a process tree.

* `TreeMemorySampler`: peak memory of this process and all its descendants, sampled by a thread,
  as summed RSS (an upper bound: forked workers share pages with their parent) and as summed PSS
  (each shared page split between its sharers: the tree's real footprint, where Linux has it);
* `TreeCpu`: CPU seconds of the whole tree, live descendants included (the extraction workers, a
  crawl child), with processes such as the S3 server counted apart (`ServerCpu`).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import psutil

MIB = 1024 * 1024
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def descendants(pid: int) -> list[int]:
    """The live descendants of `pid`, parents before children.

    From /proc/<pid>/task/*/children where Linux has it: psutil's `children(recursive=True)` reads
    the stat file of every process on the machine, ~20 ms a call on a busy one, which the sampler
    would pay ten times a second on the cores the pipeline runs on.
    """
    if not Path(f"/proc/{pid}/task").is_dir() or not list(Path(f"/proc/{pid}/task").glob("*/children")):
        try:
            return [c.pid for c in psutil.Process(pid).children(recursive=True)]
        except psutil.Error:
            return []
    out: list[int] = []
    todo = [pid]
    while todo:
        parent = todo.pop()
        for task in Path(f"/proc/{parent}/task").glob("*/children"):
            try:
                kids = [int(c) for c in task.read_text().split()]
            except OSError:  # the thread or process ended meanwhile
                continue
            out += kids
            todo += kids
    return out


def _subtree(pids: Iterable[int]) -> set[int]:
    """`pids` and all their live descendants."""
    out: set[int] = set()
    for pid in pids:
        if psutil.pid_exists(pid):
            out |= {pid, *descendants(pid)}
    return out


def rss_bytes(pid: int) -> int | None:
    """Resident bytes of `pid`; None when it is gone."""
    try:
        with open(f"/proc/{pid}/statm", "rb") as fh:
            return int(fh.read().split()[1]) * _PAGE
    except (OSError, ValueError, IndexError):
        try:
            return psutil.Process(pid).memory_info().rss
        except psutil.Error:
            return None


def pss_bytes(pid: int) -> int | None:
    """Proportional set size of `pid` (bytes) from /proc/<pid>/smaps_rollup; None where unavailable."""
    try:
        with open(f"/proc/{pid}/smaps_rollup", "rb") as fh:
            for line in fh:
                if line.startswith(b"Pss:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        return None
    return None


class TreeMemorySampler:
    """Peak memory of a process and all its descendants, sampled by a background thread.

    `peak` sums RSS, which double-counts pages shared between a parent and its forked children:
    an upper bound of the tree's footprint. `peak_pss` sums PSS instead (0 where /proc has no
    smaps_rollup), read every `pss_interval` seconds: what the tree really holds, the number to
    hold against a memory goal.
    Processes whose pid is in `exclude` are left out with their own descendants (e.g. the
    S3 server the benchmark started, which is infrastructure, not the pipeline).
    `peak_by_kind` keeps {kind: (peak summed PSS, peak summed RSS, most processes)} per `process_kind`
    (the main process, processes it started from another program, forked workers), and
    `peak_by_phase` {phase: (peak summed PSS, peak summed RSS)} per value of `phase`, which the
    caller sets as its work moves on (a run's stages).
    """

    def __init__(
        self,
        pid: int | None = None,
        *,
        interval: float = 0.05,
        exclude: set[int] | None = None,
        pss: bool = True,
        pss_interval: float = 0.5,
    ):
        self.root = psutil.Process(pid or os.getpid())
        self.interval = interval
        self.exclude = set(exclude or ())
        self.pss = pss and Path(f"/proc/{self.root.pid}/smaps_rollup").exists()
        # PSS walks each process's page tables (~2 ms for a 500 MB worker, more on a loaded machine):
        # read it less often than RSS, which is one small file per process.
        self.pss_interval = pss_interval
        self._pss_at = 0.0
        self.peak = 0
        self.peak_pss = 0
        self.peak_root = 0
        self.peak_excluded = 0
        self.peak_processes = 0
        self.peak_by_kind: dict[str, tuple[int, int, int]] = {}
        self._phase = ""
        self.peak_by_phase: dict[str, tuple[int, int]] = {}
        self._cmdlines: dict[int, tuple[str, ...]] = {}
        self.samples = 0
        self.cpu_seconds = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="memory-sampler", daemon=True)

    def sample(self) -> int:
        """One sample: the tree's summed RSS now (bytes); updates the peaks."""
        skip = _subtree(self.exclude)
        total = excluded = pss = n = 0
        with_pss = self.pss and time.monotonic() - self._pss_at >= self.pss_interval
        if with_pss:
            self._pss_at = time.monotonic()
        kinds: dict[str, list[int]] = {}
        for pid in [self.root.pid, *descendants(self.root.pid)]:
            rss = rss_bytes(pid)
            if rss is None:  # exited between listing and reading: it holds nothing now
                continue
            if pid in skip:
                excluded += rss
                continue
            total += rss
            n += 1
            own_pss = (pss_bytes(pid) or 0) if with_pss else 0
            pss += own_pss
            if pid == self.root.pid:
                self.peak_root = max(self.peak_root, rss)
            kind = kinds.setdefault(self.process_kind(pid), [0, 0, 0])
            kind[0] += own_pss
            kind[1] += rss
            kind[2] += 1
        for name, (kind_pss, kind_rss, count) in kinds.items():
            old = self.peak_by_kind.get(name, (0, 0, 0))
            self.peak_by_kind[name] = (max(old[0], kind_pss), max(old[1], kind_rss), max(old[2], count))
        self.peak = max(self.peak, total)
        old_phase = self.peak_by_phase.get(self._phase, (0, 0))
        self.peak_by_phase[self._phase] = (max(old_phase[0], pss), max(old_phase[1], total))
        if with_pss:
            self.peak_pss = max(self.peak_pss, pss)
        self.peak_excluded = max(self.peak_excluded, excluded)
        self.peak_processes = max(self.peak_processes, n)
        self.samples += 1
        return total

    @property
    def phase(self) -> str:
        """What the measured work is doing now (the caller's name for it): peaks are kept per phase."""
        return self._phase

    @phase.setter
    def phase(self, name: str) -> None:
        self._phase = name
        self._pss_at = 0.0  # the next sample reads PSS: a short phase gets a PSS peak too

    def process_kind(self, pid: int) -> str:
        """ "main process" for the root; "forked workers" for a process running the root's own command
        line (a fork); else "child processes" (another program, e.g. the Scrapy crawl)."""
        if pid == self.root.pid:
            return "main process"
        return "forked workers" if self._cmdline(pid) == self._cmdline(self.root.pid) else "child processes"

    def _cmdline(self, pid: int) -> tuple[str, ...]:
        if pid in self._cmdlines:
            return self._cmdlines[pid]
        try:
            cmdline = tuple(psutil.Process(pid).cmdline())
        except psutil.Error:
            return ()
        # A fork shows its parent's command line until it execs: only another program's is final.
        if pid == self.root.pid or cmdline != self._cmdline(self.root.pid):
            self._cmdlines[pid] = cmdline
        return cmdline

    def _run(self) -> None:
        start = time.thread_time()
        while not self._stop.wait(self.interval):
            self.sample()
        self.cpu_seconds = time.thread_time() - start  # the benchmark's own cost, inside the main process

    def __enter__(self) -> TreeMemorySampler:
        self.sample()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.sample()


def _cpu(p: psutil.Process) -> float:
    """User + system seconds of `p` and of its children it has waited for."""
    t = p.cpu_times()
    return t.user + t.system + t.children_user + t.children_system


def subtree_cpu(pids: Iterable[int]) -> float:
    """CPU seconds so far of `pids` and their live descendants (each one's waited-for children included)."""
    total = 0.0
    for pid in _subtree(pids):
        try:
            total += _cpu(psutil.Process(pid))
        except psutil.Error:
            continue
    return total


class TreeCpu:
    """CPU seconds of a process tree between `start()` and `stop()`, split into the pipeline and `apart`.

    A process's CPU reaches its parent's `children_*` times only once it has exited and been waited
    for; a worker still alive at the end would be missed by `getrusage(RUSAGE_CHILDREN)`. So each
    reading adds the live descendants' own times (and their waited-for children's) to the root's.
    `apart` names pids (e.g. the S3 server, an outlet process) counted, with their descendants, on
    their own line rather than the pipeline's, whether or not they descend from the root.
    """

    def __init__(self, pid: int | None = None, *, apart: dict[str, int] | None = None):
        self.root = psutil.Process(pid or os.getpid())
        self.apart = dict(apart or {})
        self._start: dict[str, float] = {}
        self.seconds: dict[str, float] = {}

    def read(self) -> dict[str, float]:
        """CPU seconds so far: {"pipeline": the tree, "main": the root alone, <each apart name>: ...}."""
        aside = {name: _subtree([pid]) for name, pid in self.apart.items()}
        skip = set().union(*aside.values()) if aside else set()
        own = self.root.cpu_times()
        pipeline = _cpu(self.root)
        for pid in descendants(self.root.pid):
            if pid in skip:
                continue
            try:
                pipeline += _cpu(psutil.Process(pid))
            except psutil.Error:
                continue
        parts = {name: subtree_cpu(pids) for name, pids in aside.items()}
        return {"pipeline": pipeline, "main": own.user + own.system, **parts}

    def start(self) -> TreeCpu:
        self._start = self.read()
        return self

    def stop(self) -> dict[str, float]:
        """The seconds since `start()` by part; also kept as `self.seconds`."""
        now = self.read()
        self.seconds = {k: now[k] - self._start.get(k, 0.0) for k in now}
        return self.seconds

    def __enter__(self) -> TreeCpu:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class ChildServer:
    """A server in a spawned process of its own, driven over a pipe: its first message is what the
    parent needs (a port, a base URL), a `None` sent to it stops it (killed if it does not end in 10 s).

    Served from threads of the benchmark's process, its handlers would take turns with the measured code
    for the GIL, and its memory would count in the measured tree."""

    def _start(self, target: Callable[..., None], *args: Any, name: str | None = None) -> Any:
        import multiprocessing as mp

        ctx = mp.get_context("spawn")  # a fresh interpreter: no threads or descriptors of this one
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=target, args=(child, *args), name=name, daemon=True)
        self.proc.start()
        child.close()
        return self.conn.recv()

    def __exit__(self, *exc: object) -> None:
        try:
            self.conn.send(None)
        except OSError:
            pass
        self.proc.join(10)
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join()
