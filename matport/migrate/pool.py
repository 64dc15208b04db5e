"""The worker pool of a migration: files are hashed and skipped in the migrating process and
converted in worker processes.

Workers fork from a server that imported torch once (a worker killed at its time limit is
replaced in milliseconds), run one torch thread each, end with the migrating process even when it
is killed by SIGKILL, and convert each file under a time limit (the worker is killed) and an
address-space limit (``RLIMIT_AS``).
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import TYPE_CHECKING, Any

from matport.errors import MigrationError
from matport.migrate.artifact import (
    FileTask,
    file_sha256,
    migrate_file,
    remove_unfinished,
    source_signature,
)
from matport.migrate.state import MigrationState, fingerprint

if TYPE_CHECKING:
    from multiprocessing.process import BaseProcess

    from matport.migrate.report import FileResult

START_TIMEOUT_S = 300.0
# what a worker needs, imported once by the fork server
WORKER_IMPORTS = ("torch", "matport.checkpoint", "matport.convert.api",
                  "matport.convert.families.resnet50", "matport.migrate.artifact")


@dataclass
class _Worker:
    process: BaseProcess
    conn: Connection
    ready: bool = False
    task: FileTask | None = None
    index: int = -1
    since: float = 0.0


class WorkerPool:
    """Runs a list of files through ``jobs`` worker processes.

    Args:
        out: the output folder.
        state: its state file; each result is recorded there as it comes.
        jobs: the number of worker processes.
        timeout: seconds per file (None: no limit).
        memory_mb: address space (MB) a worker may add for one file (None: no limit).
        finished: called with each file's result, in the order they finish.
    """

    def __init__(self, out: Path, state: MigrationState, jobs: int, timeout: float | None,
                 memory_mb: int | None, finished: Callable[[FileResult], None]) -> None:
        import multiprocessing

        self.ctx = multiprocessing.get_context("forkserver")
        self.ctx.set_forkserver_preload(list(WORKER_IMPORTS))
        self.out, self.state, self.jobs = out, state, jobs
        self.timeout, self.memory_mb, self.finished = timeout, memory_mb, finished
        self.workers: list[_Worker] = []

    def run(self, tasks: list[FileTask]) -> list[FileResult]:
        """Migrate ``tasks``; call :meth:`close` afterwards, also when this raises.

        Args:
            tasks: the files, in order.

        Returns:
            Their results, in the order of ``tasks``.
        """
        results: list[FileResult | None] = [None] * len(tasks)
        queue = deque(range(len(tasks)))
        prepared: deque[int] = deque()
        claimed: dict[str, str] = {}

        def finish(i: int, result: FileResult, record: bool = True) -> None:
            results[i] = result
            if record and result.sha256 is not None:
                for stale in self.state.record(result, fingerprint(result, tasks[i])):
                    with contextlib.suppress(OSError):
                        (self.out / stale).unlink()
            self.finished(result)

        while queue or prepared or self._busy():
            while queue and len(prepared) < self.jobs:
                i = queue.popleft()
                task = tasks[i]
                earlier = claimed.setdefault(str(task.folder), task.source)
                if earlier != task.source:
                    finish(i, task.result(reason=(
                        f"its artifacts would go where those of {earlier} go ({task.folder})")))
                elif (standing := self._prepare(task)) is not None:
                    finish(i, standing, record=False)
                else:
                    prepared.append(i)
            while len(self.workers) < min(self.jobs, len(prepared) + len(self._busy())):
                self._start()
            for w in self.workers:
                if prepared and w.ready and w.task is None:
                    i = prepared.popleft()
                    self._send(w, i, tasks[i])
            if prepared or self._busy():
                for i, result in self._collect():
                    finish(i, result)
        return [r for r in results if r is not None]

    def _busy(self) -> list[_Worker]:
        return [w for w in self.workers if w.task is not None]

    def _prepare(self, task: FileTask) -> FileResult | None:
        """The result that stands for a file when it need not (or cannot) be converted: skipped
        as already done (hashed here only when an earlier run recorded it; else the worker
        hashes it: each source is hashed once), or failed as unreadable."""
        t0 = time.monotonic()
        try:
            task.size = os.path.getsize(task.source)
            if task.relative not in self.state.files:
                return None
            task.signature = source_signature(task.source)
            task.sha256 = file_sha256(task.source)
            task.onnx_sha256 = file_sha256(task.onnx) if task.onnx else None
        except OSError as exc:
            task.sha256 = task.onnx_sha256 = None  # not recorded: retried by the next run
            return task.result(reason=f"cannot read: {exc}", seconds=time.monotonic() - t0)
        earlier = self.state.done(task, fingerprint(task.result(), task))
        if earlier is None:
            return None
        word = earlier.outcome + (f": {earlier.reason}" if earlier.reason else "")
        return task.result(outcome="skipped", reason=f"already done ({word})",
                           seconds=time.monotonic() - t0, networks=earlier.networks)

    def _start(self) -> _Worker:
        ours, theirs = self.ctx.Pipe()
        process = self.ctx.Process(target=_worker_main, args=(theirs, self.memory_mb, os.getpid()),
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
        """Stop every worker (one still converting is killed and what it wrote removed)."""
        for w in self.workers:
            with contextlib.suppress(OSError):
                if w.task is None:
                    w.conn.send(None)
            if w.task is not None:
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


def _worker_main(conn: Connection, memory_mb: int | None, migrating: int) -> None:
    """A worker process: one torch thread, ends with the process ``migrating``, converts the
    files it gets."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _end_with(migrating)
    import importlib

    for name in WORKER_IMPORTS:  # before the memory limit (no-ops when the server has them)
        importlib.import_module(name)
    import torch

    torch.set_num_threads(1)
    _limit_memory(memory_mb)
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
