"""``matport.migrate``: convert whole folders of MATLAB networks in one resumable, loss-free run.

Every network in every ``.mat`` file under the sources becomes an *artifact* in ``out``: weights
(a matport checkpoint, ``.pt``, or ``.safetensors``) plus a metadata ``.json`` beside them, at a
path that mirrors the source tree::

    SRC/lab/fold1.mat  (variables net, results.best)
    OUT/lab/fold1/net.pt              OUT/lab/fold1/net.json
    OUT/lab/fold1/results.best.pt     OUT/lab/fold1/results.best.json

When ``fold1.onnx`` (MATLAB's export) sits beside ``fold1.mat``, the converted network is checked
against it with :func:`matport.verify.verify` and the result recorded.

Outcomes, per network and per file: ``converted``; ``verified`` (the ONNX check holds);
``skipped`` (no network in the file, or already done by an earlier run); ``failed`` with the
reason (unreadable file, conversion error, time or memory limit, or the ONNX check fails: then
the artifact is kept and its metadata holds the check's report). A check that cannot run
(``could not verify``: unreadable export, custom operators, several networks in the file) is
recorded and does not fail the network.

Loss-free and resumable: sources are only read; each artifact file is written under a temporary
name in its folder, fsynced and renamed; ``OUT/migration-state.json`` (rewritten the same way after
every file) records each file's content sha256 and outcome, so a re-run skips what is done and
redoes what failed or changed, and a run killed at any point (even by SIGKILL) is completed by
the next one. Temporary files of a killed run are removed when the next run starts; one run at
a time writes to an output folder (``OUT/.migration.lock``).

Files are converted in ``jobs`` worker processes (forked from a server that imported torch once,
one torch thread each, killed with this process), each file under a time limit (the worker is
killed) and an address-space limit (``RLIMIT_AS``). One file's work and the artifact files are in
:mod:`matport.migrate.artifact` (:func:`~matport.migrate.artifact.load_artifact` reads one back),
the results and the report in :mod:`matport.migrate.report`.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import time
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import TYPE_CHECKING, Any

from matport.errors import ArgumentError, MigrationError
from matport.migrate.artifact import (
    FORMATS,
    FileTask,
    file_sha256,
    load_artifact,
    migrate_file,
    remove_temporary_files,
    remove_unfinished,
    write_atomic,
)
from matport.migrate.report import (
    REPORT_JSON,
    REPORT_MARKDOWN,
    FileResult,
    MigrationReport,
    NetworkResult,
)

if TYPE_CHECKING:
    from multiprocessing.process import BaseProcess

__all__ = ["migrate", "find_sources", "load_artifact", "MigrationReport", "FileResult",
           "NetworkResult", "MigrationError"]

MODES = ("auto", "resnet50")
STATE_FILE = "migration-state.json"
STATE_FORMAT = "matport.migration-state/1"
LOCK_FILE = ".migration.lock"
DEFAULT_TIMEOUT_S = 600.0
DEFAULT_MEMORY_MB = 4096
START_TIMEOUT_S = 300.0
# what a worker needs, imported once by the fork server
WORKER_IMPORTS = ("torch", "matport.checkpoint", "matport.convert.api",
                  "matport.convert.families.resnet50", "matport.migrate.artifact")


def migrate(
    sources: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    out: str | os.PathLike[str],
    *,
    jobs: int = 1,
    format: str = "pt",
    mode: str = "auto",
    progress: bool | None = None,
    timeout: float | None = DEFAULT_TIMEOUT_S,
    memory_mb: int | None = DEFAULT_MEMORY_MB,
) -> MigrationReport:
    """Migrate every network in the ``.mat`` files under ``sources`` (files or folders, searched
    recursively in sorted order) into ``out``; see the module docstring for the layout.

    ``format``: ``"pt"`` (:mod:`matport.checkpoint`) or ``"safetensors"``; ``mode``:
    ``"auto"`` (a torchvision resnet50 when the network fits, else :func:`matport.load`'s module)
    or ``"resnet50"`` (torchvision resnet50 or fail). ``jobs`` worker processes; ``timeout``
    seconds and ``memory_mb`` MB of address space (above the worker's own) per file (None: no
    limit). ``progress``: a one-line progress display on stderr (None: when stderr is a
    terminal). Writes ``migration-report.json`` / ``.md`` into ``out`` and returns the report;
    load an artifact back with :func:`load_artifact`.
    """
    if format not in FORMATS:
        raise ArgumentError(f"unknown format {format!r}: expected one of {sorted(FORMATS)}")
    if mode not in MODES:
        raise ArgumentError(f"unknown mode {mode!r}: expected one of {MODES}")
    if jobs < 1:
        raise ArgumentError(f"jobs must be at least 1 (got {jobs})")
    started = time.monotonic()
    src_list = [sources] if isinstance(sources, str | os.PathLike) else list(sources)
    out_dir = Path(out).absolute()
    found = find_sources(src_list, out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tasks = [_pending(p, rel, out_dir, format, mode) for p, rel in found]
    with _exclusive(out_dir):
        remove_temporary_files(out_dir)
        for task in tasks:
            remove_unfinished(task.folder)
        show = progress if progress is not None else sys.stderr.isatty()
        run = _Run(out_dir, _State(out_dir), jobs, timeout, memory_mb,
                   _Progress(len(found)) if show else None)
        try:
            results = run.execute(tasks)
        finally:
            run.close()
            remove_temporary_files(out_dir)
        report = MigrationReport(str(out_dir), [os.fspath(s) for s in src_list], format, mode,
                                 jobs, time.monotonic() - started, results)
        write_atomic(out_dir / REPORT_JSON, json.dumps(report.to_dict(), indent=2).encode())
        write_atomic(out_dir / REPORT_MARKDOWN, report.to_markdown().encode())
    return report


@contextlib.contextmanager
def _exclusive(out: Path) -> Iterator[None]:
    """Hold ``out/.migration.lock`` (released by the system if this process dies)."""
    import fcntl

    with open(out / LOCK_FILE, "a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise MigrationError(f"{out}: another migration is writing there") from None
        yield


def find_sources(sources: Iterable[str | os.PathLike[str]], out: Path) -> list[tuple[Path, str]]:
    """``(file, path relative to its source)`` of every ``.mat`` file under ``sources``, in
    order: sources as given, each folder's files sorted by relative path, ``out`` left out; a file
    named directly is taken whatever its extension."""
    found: list[tuple[Path, str]] = []
    seen: set[Path] = set()
    for src in sources:
        root = Path(src).absolute()
        if root.is_file():
            items = [(root, root.name)]
        elif root.is_dir():
            items = sorted(_walk(root, out), key=lambda item: item[1])
        else:
            raise MigrationError(f"{src}: no such file or folder")
        for path, rel in items:
            if path.resolve() not in seen:
                seen.add(path.resolve())
                found.append((path, rel))
    return found


def _walk(root: Path, out: Path) -> Iterable[tuple[Path, str]]:
    skip = out.resolve()
    for folder, dirs, files in os.walk(root):
        here = Path(folder)
        dirs[:] = [d for d in dirs if (here / d).resolve() != skip]
        for name in sorted(files):
            path = here / name
            if path.suffix.lower() == ".mat" and path.is_file():
                yield path, path.relative_to(root).as_posix()


def _pending(path: Path, rel: str, out: Path, fmt: str, mode: str) -> FileTask:
    onnx = path.with_suffix(".onnx")
    beside = str(onnx) if onnx.is_file() else None
    return FileTask(str(path), rel, str(out), 0, beside, fmt, mode)


class _State:
    """``out/migration-state.json``: per source (by relative path) the fingerprint its artifacts
    were made from (content sha256, ONNX sha256, format, mode) and the result."""

    def __init__(self, out: Path) -> None:
        self.path = out / STATE_FILE
        self.files: dict[str, dict[str, Any]] = {}
        with contextlib.suppress(OSError, ValueError, AttributeError):
            data = json.loads(self.path.read_text(encoding="utf-8"))
            if data.get("format") == STATE_FORMAT:
                self.files = dict(data["files"])

    def done(self, task: FileTask, fingerprint: dict[str, Any]) -> FileResult | None:
        """The earlier result when it stands: same fingerprint, not failed, artifacts intact."""
        entry = self.files.get(task.relative)
        if not entry or entry.get("fingerprint") != fingerprint:
            return None
        result = FileResult.from_dict(entry["result"])
        out = Path(task.out)
        intact = all((out / p).is_file() and (out / p).stat().st_size == s
                     for p, s in result.artifacts)
        return result if result.outcome != "failed" and intact else None

    def record(self, result: FileResult, fingerprint: dict[str, Any]) -> list[str]:
        """Store ``result``; returns the artifacts of the previous result it no longer has."""
        old = self.files.get(result.relative)
        self.files[result.relative] = {"fingerprint": fingerprint, "result": result.to_dict()}
        data = {"format": STATE_FORMAT, "files": self.files}
        write_atomic(self.path, json.dumps(data, indent=1).encode())
        if old is None:
            return []
        kept = {p for p, _ in result.artifacts}
        return [p for p, _ in FileResult.from_dict(old["result"]).artifacts if p not in kept]


def _fingerprint(result: FileResult, task: FileTask) -> dict[str, Any]:
    """What a file's artifacts were made from: a re-run redoes the file when any of it differs."""
    return {"sha256": result.sha256, "onnx_sha256": result.onnx_sha256, "format": task.format,
            "mode": task.mode}


@dataclass
class _Worker:
    process: BaseProcess
    conn: Connection
    ready: bool = False
    task: FileTask | None = None
    index: int = -1
    since: float = 0.0


class _Run:
    """The scheduler: hashes and skips in this process, converts in worker processes."""

    def __init__(self, out: Path, state: _State, jobs: int, timeout: float | None,
                 memory_mb: int | None, progress: _Progress | None) -> None:
        import multiprocessing

        # workers fork from a server that imported torch once: a worker killed at its time
        # limit is replaced in milliseconds
        self.ctx = multiprocessing.get_context("forkserver")
        self.ctx.set_forkserver_preload(list(WORKER_IMPORTS))
        self.out, self.state, self.jobs = out, state, jobs
        self.timeout, self.memory_mb, self.progress = timeout, memory_mb, progress
        self.workers: list[_Worker] = []

    def execute(self, tasks: list[FileTask]) -> list[FileResult]:
        results: list[FileResult | None] = [None] * len(tasks)
        queue = deque(range(len(tasks)))
        prepared: deque[int] = deque()
        claimed: dict[str, str] = {}

        def finish(i: int, result: FileResult, record: bool = True) -> None:
            results[i] = result
            if record and result.sha256 is not None:
                for stale in self.state.record(result, _fingerprint(result, tasks[i])):
                    with contextlib.suppress(OSError):
                        (self.out / stale).unlink()
            if self.progress:
                self.progress.update(result)

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
        hashes it), or failed as unreadable."""
        t0 = time.monotonic()
        try:
            task.size = os.path.getsize(task.source)
            if task.relative not in self.state.files:
                return None
            task.sha256 = file_sha256(task.source)
            task.onnx_sha256 = file_sha256(task.onnx) if task.onnx else None
        except OSError as exc:
            task.sha256 = task.onnx_sha256 = None  # not recorded: retried by the next run
            return task.result(reason=f"cannot read: {exc}", seconds=time.monotonic() - t0)
        earlier = self.state.done(task, _fingerprint(task.result(), task))
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


class _Progress:
    """One updating line on stderr: files done/total, failures, rate, ETA."""

    def __init__(self, total: int) -> None:
        self.total, self.done, self.failed, self.worked = total, 0, 0, 0
        self.start = time.monotonic()
        self.draw()

    def update(self, result: FileResult) -> None:
        self.done += 1
        self.failed += result.outcome == "failed"
        self.worked += result.outcome != "skipped"
        self.draw()

    def draw(self) -> None:
        elapsed = time.monotonic() - self.start
        rate = self.worked / elapsed if elapsed > 0 else 0.0
        eta = f"{(self.total - self.done) / rate:.0f} s" if rate > 0 else "?"
        line = (f"matport migrate: {self.done}/{self.total} files, {self.failed} failed, "
                f"{rate:.2f} files/s, ETA {eta}")
        end = "\n" if self.done == self.total else ""
        sys.stderr.write(f"\r{line}\x1b[K{end}")
        sys.stderr.flush()


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
