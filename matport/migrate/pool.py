"""The worker processes of a migration on this machine.

Workers fork from a server that imported torch and onnx once (started by
:func:`start_fork_server` as a migration with files to convert begins, so that its imports
overlap what the migrating process does before the first file; a worker killed at its time limit
is replaced in milliseconds), convert file after file, share the machine's cores out
(:func:`worker_threads`; torch and onnxruntime get one thread fewer than a worker's share, at
least one: :func:`torch_threads`, and a second thread overlaps reading and hashing, and the
export's run, with the conversion; see :func:`~matport.migrate.artifact.background`), end with
the migrating process even when it is killed by SIGKILL, and convert each file under a time
limit (the worker is killed) and an address-space limit (``RLIMIT_AS``).
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections import deque
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from typing import TYPE_CHECKING, Any

from matport.errors import MigrationError
from matport.migrate.artifact import FileTask, background, migrate_file, remove_unfinished

if TYPE_CHECKING:
    from multiprocessing.process import BaseProcess

    from matport.migrate.report import FileResult

START_TIMEOUT_S = 300.0
# what a worker needs, imported once by the fork server (the v7.3 reader too: HDF5's library
# cannot be loaded under a tight memory limit)
SERVER_IMPORTS = ("torch", "matport.checkpoint", "matport.convert.api",
                  "matport.convert.families.resnet50", "matport.migrate.artifact",
                  "matport.mat.v73", "onnx", "matport.verify.check")
# and by each worker, before its memory limit: onnxruntime starts a thread when imported, whose
# malloc arena a fork server would hand down to every worker (address space the limit counts as
# held, then lends out)
WORKER_IMPORTS = (*SERVER_IMPORTS, "onnxruntime")


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity, where the platform tells)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not Linux
        return max(1, os.cpu_count() or 1)


def worker_threads(jobs: int, cores: int | None = None) -> int:
    """The threads each of ``jobs`` workers may keep busy: the cores shared out (at least 1).

    Args:
        jobs: the number of worker processes.
        cores: the cores there are (default: :func:`usable_cores`).

    Returns:
        The threads per worker.
    """
    return max(1, (cores or usable_cores()) // max(1, jobs))


def torch_threads(threads: int) -> int:
    """torch's (and the export's onnxruntime session's) intra-op threads in a worker that may
    keep ``threads`` busy: one fewer, for the thread that overlaps reading, hashing and the
    export's run with the conversion (and at least one). On 2 cores ``--jobs 1`` thus runs one
    torch thread beside that thread: 2 intra-op threads there cost 1.3-2x the CPU time per file
    on a shared machine (spinning) for no gain in wall time."""
    return max(1, threads - 1)


def start_fork_server() -> None:
    """Start the workers' fork server now, without waiting: it imports torch and onnx (about
    3 s) while the migrating process cleans up and hashes what precedes the first file to
    convert; the first worker started waits only for what is left of those imports (else the
    server starts with the first worker)."""
    import multiprocessing
    from multiprocessing import forkserver

    multiprocessing.get_context("forkserver").set_forkserver_preload(list(SERVER_IMPORTS))
    forkserver.ensure_running()


@dataclass
class _Worker:
    process: BaseProcess
    conn: Connection
    ready: bool = False
    task: FileTask | None = None
    index: int = -1
    since: float = 0.0


class ProcessPool:
    """Worker processes on this machine (an :class:`~matport.migrate.schedule.Executor`).

    Args:
        jobs: the number of worker processes.
        timeout: seconds per file (None: no limit).
        memory_mb: address space (MB) a worker may add for one file (None: no limit).
    """

    def __init__(self, jobs: int, timeout: float | None, memory_mb: int | None) -> None:
        import multiprocessing

        self.ctx = multiprocessing.get_context("forkserver")
        self.ctx.set_forkserver_preload(list(SERVER_IMPORTS))
        self.jobs, self.timeout, self.memory_mb = jobs, timeout, memory_mb
        self.threads = worker_threads(jobs)
        self.parallel = jobs
        self.capacity = 2 * jobs  # one waiting per worker: it starts as soon as one is free
        self.workers: list[_Worker] = []
        self.queued: deque[tuple[int, FileTask]] = deque()

    def submit(self, index: int, task: FileTask) -> None:
        """Queue ``task`` for the next idle worker.

        Args:
            index: its place, given back by :meth:`collect`.
            task: the file.
        """
        self.queued.append((index, task))

    def outstanding(self) -> int:
        """Returns:
            The number of files queued or being converted.
        """
        return len(self.queued) + len(self._busy())

    def collect(self) -> list[tuple[int, FileResult]]:
        """Start workers as needed, hand queued files to idle ones, and wait for a worker to
        finish, die, become ready or run out of time.

        Returns:
            ``(index, result)`` of the files finished (maybe none).
        """
        while len(self.workers) < min(self.jobs, self.outstanding()):
            self._start()
        for w in self.workers:
            if self.queued and w.ready and w.task is None:
                self._send(w, *self.queued.popleft())
        return self._collect()

    def _busy(self) -> list[_Worker]:
        return [w for w in self.workers if w.task is not None]

    def _start(self) -> _Worker:
        ours, theirs = self.ctx.Pipe()
        process = self.ctx.Process(target=_worker_main,
                                   args=(theirs, self.memory_mb, os.getpid(), self.threads),
                                   daemon=True, name="matport-migrate-worker")
        process.start()
        theirs.close()
        worker = _Worker(process, ours, since=time.monotonic())
        self.workers.append(worker)
        return worker

    def _send(self, worker: _Worker, i: int, task: FileTask) -> None:
        worker.task, worker.index, worker.since = task, i, time.monotonic()
        worker.conn.send(task)

    def _collect(self) -> list[tuple[int, FileResult]]:
        """Wait for a worker to finish, die, become ready or run out of time."""
        deadlines = [w.since + START_TIMEOUT_S for w in self.workers if not w.ready]
        if self.timeout is not None:
            deadlines += [w.since + self.timeout for w in self._busy()]
        deadline = min(deadlines, default=None)
        waitables: list[Any] = [w.conn for w in self.workers]
        waitables += [w.process.sentinel for w in self.workers]
        wait(waitables, None if deadline is None else max(0.0, deadline - time.monotonic()))
        done: list[tuple[int, FileResult]] = []
        for w in list(self.workers):
            message = None
            with contextlib.suppress(EOFError, OSError):
                if w.conn.poll():
                    message = w.conn.recv()
            spent = time.monotonic() - w.since
            if message == "ready":
                w.ready = True
            elif isinstance(message, tuple):
                result, healthy = message
                done.append((w.index, result))
                w.task = None
                if not healthy:  # it exits: start another when needed
                    self._drop(w)
            elif not w.ready and (not w.process.is_alive() or spent > START_TIMEOUT_S):
                w.process.kill()
                self._drop(w)
                raise MigrationError(f"a worker process failed to start (exit code "
                                     f"{w.process.exitcode})")
            elif not w.process.is_alive():
                self._drop(w)
                if w.task is not None:
                    code = w.process.exitcode
                    why = (f"killed by signal {-code}" if code is not None and code < 0
                           else f"exit code {code}")
                    done.append((w.index, self._lost(
                        w.task, f"the worker process died ({why}; out of memory?)", spent)))
            elif w.task is not None and self.timeout is not None and spent > self.timeout:
                w.process.kill()
                self._drop(w)
                done.append((w.index, self._lost(w.task, f"timed out after {self.timeout:g} s",
                                                 spent)))
        return done

    def _lost(self, task: FileTask, reason: str, seconds: float) -> FileResult:
        """The result of a file whose worker was killed or died; what it left unfinished goes."""
        remove_unfinished(task.folder)
        return task.result(reason=reason, seconds=seconds)

    def _drop(self, w: _Worker) -> None:
        w.process.join(5)
        w.conn.close()
        self.workers.remove(w)

    def close(self) -> None:
        """Stop every worker (one still converting is killed and what it left unfinished
        removed, one still starting is killed)."""
        for w in self.workers:
            with contextlib.suppress(OSError):
                if w.task is None and w.ready:
                    w.conn.send(None)
            if w.task is not None or not w.ready:  # not ready: still importing, holds nothing
                w.process.kill()
        for w in list(self.workers):
            w.process.join(5)
            if w.process.is_alive():
                w.process.kill()
                w.process.join()
            w.conn.close()
            if w.task is not None:
                remove_unfinished(w.task.folder)
        self.workers = []


# ---------------------------------------------------------------------------------------------
# the worker process


def prepare_worker(memory_mb: int | None, migrating: int, threads: int = 1) -> None:
    """Make this process a worker: Ctrl-C left to the migrating process, ends with it, its
    malloc set up (:func:`worker_malloc`), what it needs imported, its torch threads
    (:func:`torch_threads`; onnxruntime takes as many), its second thread
    (:func:`~matport.migrate.artifact.background`), then the memory limit.

    Args:
        memory_mb: address space (MB) it may add for one file (None: no limit).
        migrating: the process it ends with.
        threads: the threads it may keep busy (:func:`worker_threads`).
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    worker_malloc()
    _end_with(migrating)
    import importlib

    for name in WORKER_IMPORTS:  # before the memory limit (no-ops when the server has them)
        importlib.import_module(name)
    import torch

    torch.set_num_threads(torch_threads(threads))
    background()
    _limit_memory(memory_mb)


def _worker_main(conn: Connection, memory_mb: int | None, migrating: int,
                 threads: int = 1) -> None:
    """A worker process: converts the files it gets."""
    prepare_worker(memory_mb, migrating, threads)
    conn.send("ready")
    while True:
        try:
            task = conn.recv()
        except (EOFError, OSError):
            return
        if task is None:
            return
        result, healthy = migrate_file(task, memory_mb)
        conn.send((result, healthy))
        if not healthy:
            return


def _end_with(pid: int) -> None:
    """End this process as soon as process ``pid`` ends, even by SIGKILL (a thread waits on it:
    the fork server, this process's parent, outlives it while workers hold its pipe)."""
    import select
    import threading

    def watch() -> None:
        try:
            fd = os.pidfd_open(pid)
        except (AttributeError, OSError):  # no pidfd (not Linux >= 5.3), or already gone
            while _alive(pid):
                time.sleep(0.2)
        else:
            select.select([fd], [], [])
        os._exit(1)

    threading.Thread(target=watch, name="end-with-migrate", daemon=True).start()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def worker_malloc() -> None:
    """Set glibc's malloc up for a worker (elsewhere: nothing to do). Every thread allocates
    from the main arena: an arena of a thread's own reserves address space (64 MB) that the
    memory limit counts as held, then lends out beyond it. And what a file frees stays with the
    process for the next file: no chunk is mapped on its own (glibc maps those of 32 MB and
    more, the inflated .mat, the export's bytes, and unmaps them when freed) and the heap is
    not trimmed, so that a file's buffers reuse pages the previous file touched instead of
    the kernel handing out (and zeroing) fresh ones: a ResNet-50 file with its ONNX check
    took 60,000 page faults and 0.3-0.7 CPU s of system time, and 23,000 and 0.15-0.19 s
    so; the address space held stays that of the largest file's peak."""
    import ctypes

    with contextlib.suppress(OSError, AttributeError):
        mallopt = ctypes.CDLL(None).mallopt
        mallopt(_M_ARENA_MAX, 1)
        mallopt(_M_MMAP_MAX, 0)
        mallopt(_M_TRIM_THRESHOLD, 2**31 - 1)


# glibc's malloc.h
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_M_ARENA_MAX = -8


def _limit_memory(memory_mb: int | None) -> None:
    """Cap the address space at what the process holds now plus ``memory_mb``."""
    if memory_mb is None or not os.path.exists("/proc/self/statm"):
        return
    import resource

    with open("/proc/self/statm") as f:
        held = int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    _soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    limit = held + memory_mb * (1 << 20)
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
