"""The order of a migration's work, whatever runs it: files are claimed, hashed and skipped in
the migrating process, handed to an :class:`Executor` (today the worker processes of
:class:`~matport.migrate.pool.ProcessPool`; a cluster engine would be another), and each result
recorded in the state file as it comes."""

from __future__ import annotations

import contextlib
import os
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from matport.migrate.artifact import FileTask, file_sha256, source_signature
from matport.migrate.report import FileResult
from matport.migrate.state import MigrationState, fingerprint


class Executor(Protocol):
    """Runs files' migrations (:func:`matport.migrate.artifact.migrate_file`) somewhere."""

    #: how many files it takes at once (more wait in the migrating process, not yet hashed)
    capacity: int
    #: how many files it converts at the same time (more than one: the largest go first)
    parallel: int

    def submit(self, index: int, task: FileTask) -> None:
        """Start migrating ``task`` (``index``: its place, given back by :meth:`collect`)."""

    def outstanding(self) -> int:
        """The number of files submitted and not yet collected."""

    def collect(self) -> list[tuple[int, FileResult]]:
        """Wait until something happens; the files finished since the last call (maybe none)."""

    def close(self) -> None:
        """Stop; a file still running is abandoned and what it left unfinished removed."""


def schedule(tasks: list[FileTask], out: Path, state: MigrationState, executor: Executor,
             finished: Callable[[FileResult], None]) -> list[FileResult]:
    """Migrate ``tasks`` on ``executor``; close it afterwards, also when this raises.

    Args:
        tasks: the files, in order.
        out: the output folder.
        state: its state file; each result is recorded there as it comes.
        executor: where the files are converted.
        finished: called with each file's result, in the order they finish.

    Returns:
        The results, in the order of ``tasks``.
    """
    results: list[FileResult | None] = [None] * len(tasks)
    claimed: dict[str, str] = {}
    earlier = [claimed.setdefault(str(t.folder), t.source) for t in tasks]  # in their order
    queue = deque(_order(tasks, executor.parallel))

    def finish(i: int, result: FileResult, record: bool = True) -> None:
        results[i] = result
        if record and result.sha256 is not None:
            for stale in state.record(result, fingerprint(result, tasks[i])):
                with contextlib.suppress(OSError):
                    (out / stale).unlink()
        finished(result)

    while queue or executor.outstanding():
        while queue and executor.outstanding() < executor.capacity:
            i = queue.popleft()
            task = tasks[i]
            if earlier[i] != task.source:
                finish(i, task.result(reason=(
                    f"its artifacts would go where those of {earlier[i]} go ({task.folder})")))
            elif (standing := _prepare(task, state)) is not None:
                finish(i, standing, record=False)
            else:
                executor.submit(i, task)
        if executor.outstanding():
            for i, result in executor.collect():
                finish(i, result)
    return [r for r in results if r is not None]


def _order(tasks: list[FileTask], parallel: int) -> list[int]:
    """The order files are handed out in: as given to one worker; to several, the largest first
    (longest processing time first: the last files to start are small ones, so that workers
    run out of work at about the same time instead of one converting a large file alone)."""
    order = list(range(len(tasks)))
    if parallel > 1:
        sizes = []
        for task in tasks:
            try:
                sizes.append(os.path.getsize(task.source))
            except OSError:  # failed by _prepare in its turn
                sizes.append(-1)
        order.sort(key=lambda i: -sizes[i])  # stable: equal sizes keep their order
    return order


def _prepare(task: FileTask, state: MigrationState) -> FileResult | None:
    """The result that stands for a file when it need not (or cannot) be converted: skipped as
    already done (hashed here only when an earlier run recorded it; else the worker hashes it:
    each source is hashed once), or failed as unreadable."""
    t0 = time.monotonic()
    try:
        task.size = os.path.getsize(task.source)
        if task.relative not in state.files:
            return None
        task.signature = source_signature(task.source)
        task.sha256 = file_sha256(task.source)
        task.onnx_sha256 = file_sha256(task.onnx) if task.onnx else None
    except OSError as exc:
        task.sha256 = task.onnx_sha256 = None  # not recorded: retried by the next run
        return task.result(reason=f"cannot read: {exc}", seconds=time.monotonic() - t0)
    earlier = state.done(task, fingerprint(task.result(), task))
    if earlier is None:
        return None
    word = earlier.outcome + (f": {earlier.reason}" if earlier.reason else "")
    return task.result(outcome="skipped", reason=f"already done ({word})",
                       seconds=time.monotonic() - t0, networks=earlier.networks)
