"""A bounded process pool: results in input order, each task limited in time and memory.

`concurrent.futures` cannot kill one stuck task (a ProcessPoolExecutor worker that hangs
holds its slot forever, and a crashed one breaks the whole pool), so this pool manages
its workers itself: one task at a time per worker over a pipe; a task past its deadline
gets its worker killed and replaced; a worker allowed `max_memory_mb` of address space
on top of what it holds after start-up fails that task with MemoryError and is replaced.
Workers are forked from the caller, which has already imported the task's module, so a
replacement starts in milliseconds. (spawn and forkserver re-run the caller's main script
in every child, which breaks scripts and notebooks that call this without a main guard.)

Workers die with their parent: each sets PR_SET_PDEATHSIG (`die_with_parent`) and closes every
pipe end it inherited but its own, so neither a `kill -9` of the caller nor a crash leaves one
blocked on a pipe forever. (The death signal follows the *thread* that forked the worker: iterate
`bounded_map` from a thread that outlives it, as every caller does.)
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
import signal
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from typing import Any

log = logging.getLogger(__name__)

#: Results buffered ahead of the oldest unfinished task, per worker: bounds memory when an
#: early task is slow while later ones keep finishing.
READ_AHEAD_PER_WORKER = 8


@dataclass(frozen=True)
class TaskFailure:
    """A task that did not return: `reason` is "timeout", "memory" or "crashed"."""

    reason: str
    detail: str = ""


#: Held while a worker is forked and while `pipeline.stages.crawl` starts its Scrapy child. A worker
#: forked while another thread is inside `subprocess.Popen` inherits the write end of Popen's
#: exec-status pipe; Popen then waits for that worker to exit before it returns: a deadlock
#: when the worker is waiting for the pages of that very crawl (`pipeline.flows.streaming`).
FORK_LOCK = threading.Lock()


#: The environment variable naming the pid an exec'd child must die with (the crawl child reads it:
#: `spiders.pipelines.die_with_crawl_parent`, the same as `die_with_parent`).
PARENT_PID_ENV = "NEWS_PARENT_PID"
_PR_SET_PDEATHSIG = 1

#: The parent's ends of every live worker's pipe: a new worker closes its copies of them (fork
#: duplicates every descriptor), else a worker holds its siblings' pipes open and none of them
#: ever reads end-of-file when the parent is gone.
_PARENT_ENDS: weakref.WeakSet[Connection] = weakref.WeakSet()


def die_with_parent(parent_pid: int | None = None, sig: int = signal.SIGKILL) -> bool:
    """Have the kernel send `sig` to this process when its parent dies (Linux PR_SET_PDEATHSIG).

    `parent_pid`: the pid the parent had; if it is already gone (it died before this call), exit
    now. Returns False where prctl is not available (not Linux): the caller's other means apply.
    """
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    except (OSError, AttributeError) as exc:
        log.debug("no parent-death signal: %s", exc)
        return False
    if parent_pid is not None and os.getppid() != parent_pid:
        os._exit(1)  # the parent died before the signal was armed: nobody is left to kill us
    return True


def default_workers() -> int:
    """Cores this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def _limit_memory(max_memory_mb: int) -> None:
    """Cap the address space at what the worker holds now plus `max_memory_mb`."""
    import resource

    import psutil

    base = psutil.Process().memory_info().vms
    limit = base + max_memory_mb * 1024 * 1024
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))


def _worker_main(
    conn: Connection,
    fn: Callable[[Any], Any],
    warmup: Callable[[], None] | None,
    max_memory_mb: int,
    parent_pid: int,
) -> None:
    die_with_parent(parent_pid)
    for inherited in list(_PARENT_ENDS):  # our parent's end and our siblings': only our own end stays open
        inherited.close()
    if warmup is not None:
        warmup()  # load models before the memory cap is measured, so they are not charged to tasks
    _limit_memory(max_memory_mb)
    while True:
        try:
            msg = conn.recv()
        except EOFError:
            return
        if msg is None:
            return
        index, payload = msg
        try:
            conn.send((index, True, fn(payload)))
        except MemoryError:
            conn.send((index, False, TaskFailure("memory", "task exceeded the memory limit")))
            return  # the heap may be fragmented or half-freed: start a fresh worker
        except RecursionError as exc:
            conn.send((index, False, TaskFailure("crashed", f"RecursionError: {exc}")))


class _Worker:
    def __init__(self, ctx, fn, warmup, max_memory_mb: int):
        self.conn, child = ctx.Pipe()
        _PARENT_ENDS.add(self.conn)
        args = (child, fn, warmup, max_memory_mb, os.getpid())
        self.proc = ctx.Process(target=_worker_main, args=args, daemon=True)
        with FORK_LOCK:
            self.proc.start()
        child.close()
        self.task: int | None = None
        self.deadline = 0.0

    def kill(self) -> None:
        if self.proc.is_alive():
            self.proc.kill()
        self.proc.join(5)
        self.conn.close()
        _PARENT_ENDS.discard(self.conn)

    def stop(self) -> None:
        try:
            self.conn.send(None)
        except OSError as exc:  # BrokenPipeError included: the worker is already gone
            log.debug("worker %s gone before stop: %s", self.proc.pid, exc)
        self.proc.join(2)
        self.kill()


def bounded_map(
    fn: Callable[[Any], Any],
    items: Iterable[Any],
    *,
    workers: int | None = None,
    timeout: float = 30,
    max_memory_mb: int = 1024,
    warmup: Callable[[], None] | None = None,
) -> Iterator[Any]:
    """Yield fn(item) for each item, in input order, or a TaskFailure for a task that timed out,
    ran out of memory or crashed its worker. `fn` and `warmup` must be importable module-level functions.
    """
    workers = workers or default_workers()
    ctx = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
    if warmup is not None:
        warmup()  # once here: forked workers inherit what it loaded (copy-on-write)
    pool = [_Worker(ctx, fn, warmup, max_memory_mb) for _ in range(workers)]
    source = enumerate(items)
    pending: dict[int, Any] = {}  # index -> payload, not yet dispatched
    results: dict[int, Any] = {}
    next_out = 0
    next_in = 0
    exhausted = False
    window = READ_AHEAD_PER_WORKER * workers
    try:
        while True:
            # dispatch to idle workers while the read-ahead window allows
            for i, worker in enumerate(pool):
                if worker.task is not None:
                    continue
                if not pending and not exhausted and next_in - next_out < window:
                    try:
                        index, item = next(source)
                        pending[index] = item
                        next_in = index + 1
                    except StopIteration:
                        exhausted = True
                if not pending:
                    break
                index = min(pending)
                try:
                    worker.conn.send((index, pending[index]))
                except (OSError, BrokenPipeError):
                    worker.kill()
                    pool[i] = worker = _Worker(ctx, fn, warmup, max_memory_mb)
                    worker.conn.send((index, pending[index]))
                del pending[index]
                worker.task = index
                worker.deadline = time.monotonic() + timeout
            while next_out in results:
                yield results.pop(next_out)
                next_out += 1
            busy = [w for w in pool if w.task is not None]
            if not busy:
                if exhausted and not pending:
                    return
                continue
            wait_for = max(0.0, min(w.deadline for w in busy) - time.monotonic())
            ready = wait([w.conn for w in busy], timeout=wait_for)
            now = time.monotonic()
            for i, worker in enumerate(pool):
                task = worker.task
                if task is None:
                    continue
                failure: TaskFailure | None = None
                if worker.conn in ready:
                    try:
                        index, ok, value = worker.conn.recv()
                        results[index] = value
                        worker.task = None
                        if ok or worker.proc.is_alive() and value.reason != "memory":
                            continue
                        worker.kill()  # the worker ends itself after a MemoryError
                        pool[i] = _Worker(ctx, fn, warmup, max_memory_mb)
                        continue
                    except (EOFError, OSError):
                        worker.proc.join(1)
                        code = worker.proc.exitcode
                        # killed by the kernel for memory (SIGKILL) or a hard crash in C code
                        failure = TaskFailure("memory" if code == -9 else "crashed", f"worker exit code {code}")
                elif now >= worker.deadline:
                    failure = TaskFailure("timeout", f"no result after {timeout:g}s")
                if failure is not None:
                    log.warning("task %s: %s (%s)", task, failure.reason, failure.detail)
                    results[task] = failure
                    worker.kill()
                    pool[i] = _Worker(ctx, fn, warmup, max_memory_mb)
    finally:
        for worker in pool:
            worker.stop()
