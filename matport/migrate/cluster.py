"""A migration's files run on a Dask distributed cluster (``migrate(..., cluster=ADDRESS)``).

The migrating process is the Dask client and keeps what is central, exactly as in a local run:
it finds the sources, hashes what an earlier run recorded, records each result in the state file
and writes the reports. Each file is one Dask task. On the worker, the task hands the file to a
converter process of its own (one per worker thread, kept between files, torch imported once),
under the local run's time and memory limits: a file over a limit fails, the Dask worker lives
on. A Dask worker killed mid-file takes its converter with it and Dask runs the file again on
another worker (nothing the killed attempt left is trusted: an artifact exists only once its
metadata is written, and the retry rewrites it); a client killed mid-run is completed by the next
run from the state file. Sources and the output folder must be paths every worker sees (a shared
file system): the run refuses to start when a worker cannot see one.

Needs Dask's ``distributed`` package (``pip install 'matport[cluster]'``), imported only here.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import select
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Sequence
from typing import IO, Any

from matport.errors import MigrationError
from matport.migrate.artifact import FileTask, migrate_file, remove_unfinished
from matport.migrate.pool import START_TIMEOUT_S, prepare_worker
from matport.migrate.report import FileResult, one_line


class ClusterExecutor:
    """Files run as tasks on a Dask cluster (an :class:`~matport.migrate.schedule.Executor`).

    Args:
        address: the Dask scheduler's address (``tcp://host:8786``).
        paths: what every worker must see (the sources and the output folder).
        timeout: seconds per file (None: no limit).
        memory_mb: address space (MB) a converter may add for one file (None: no limit).

    Raises:
        MigrationError: Dask is not installed, the scheduler cannot be reached, it has no
            workers, or a worker cannot see one of ``paths``.
    """

    def __init__(self, address: str, paths: Sequence[str], timeout: float | None,
                 memory_mb: int | None) -> None:
        try:
            from distributed import Client
        except ImportError:
            raise MigrationError("a cluster run needs Dask's distributed package: pip install "
                                 "'matport[cluster]'") from None
        try:
            self.client = Client(address, timeout="30s")
        except (OSError, TimeoutError, ValueError) as exc:
            raise MigrationError(f"cannot reach the Dask scheduler at {address}: "
                                 f"{one_line(str(exc))}") from None
        self.timeout, self.memory_mb = timeout, memory_mb
        self.futures: dict[Any, tuple[int, FileTask]] = {}
        try:
            threads = sum(self.client.nthreads().values())
            unseen = {w: m for w, m in self.client.run(_missing, list(paths)).items() if m}
        except BaseException:
            self.client.close()
            raise
        if not threads or unseen:
            self.client.close()
            if not threads:
                raise MigrationError(f"the Dask cluster at {address} has no workers")
            worker, missing = next(iter(unseen.items()))
            raise MigrationError(f"the Dask worker {worker} cannot see {missing[0]}: sources and "
                                 "the output folder must be on storage every worker sees (a "
                                 "shared file system)")
        self.capacity = 2 * threads
        self.parallel = threads

    def submit(self, index: int, task: FileTask) -> None:
        """Run ``task`` as a Dask task.

        Args:
            index: its place, given back by :meth:`collect`.
            task: the file.
        """
        future = self.client.submit(run_on_worker, task, self.timeout, self.memory_mb,
                                    pure=False, key=f"matport-migrate-{uuid.uuid4().hex}")
        self.futures[future] = (index, task)

    def outstanding(self) -> int:
        """Returns:
            The number of files submitted and not yet collected.
        """
        return len(self.futures)

    def collect(self) -> list[tuple[int, FileResult]]:
        """Wait for a task to end.

        Returns:
            ``(index, result)`` of the files whose task ended; a task Dask gave up on (its
            workers died again and again) is a failed file.
        """
        from distributed import wait

        done, _ = wait(list(self.futures), return_when="FIRST_COMPLETED")
        out = []
        for future in done:
            index, task = self.futures.pop(future)
            try:
                result = future.result()
            except Exception as exc:  # noqa: BLE001 (KilledWorker ...: the file fails, not the run)
                remove_unfinished(task.folder)
                result = task.result(reason=f"the cluster could not run it: "
                                            f"{type(exc).__name__}: {one_line(str(exc))}")
            out.append((index, result))
        return out

    def close(self) -> None:
        """Cancel the tasks still running and disconnect."""
        if self.futures:
            self.client.cancel(list(self.futures))
            for _index, task in self.futures.values():
                remove_unfinished(task.folder)
        self.futures = {}
        self.client.close()


def _missing(paths: list[str]) -> list[str]:
    """On a worker: which of ``paths`` it cannot see."""
    return [p for p in paths if not os.path.exists(p)]


# ---------------------------------------------------------------------------------------------
# on a Dask worker

_converters: dict[int, _Converter] = {}


def run_on_worker(task: FileTask, timeout: float | None, memory_mb: int | None) -> FileResult:
    """Migrate one file on this Dask worker, in this thread's converter process.

    Args:
        task: the file.
        timeout: seconds (None: no limit).
        memory_mb: address space (MB) the converter may add (None: no limit).

    Returns:
        The file's result (failed when it ran out of time or memory, or its converter died).
    """
    if not os.path.exists(task.source):
        return task.result(reason=f"the Dask worker on {socket.gethostname()} cannot see "
                                  f"{task.source} (a shared file system is needed)")
    remove_unfinished(task.folder)  # what an attempt on a killed worker left
    key = threading.get_ident()
    converter = _converters.get(key)
    if converter is None or converter.memory_mb != memory_mb or not converter.alive():
        converter = _converters[key] = _Converter(memory_mb)
    t0 = time.monotonic()
    reply, why = converter.run(task, timeout)
    if reply is None or not reply[1]:
        converter.kill()
        del _converters[key]
    if reply is None:
        remove_unfinished(task.folder)
        return task.result(reason=why, seconds=time.monotonic() - t0)
    return reply[0]


class _Converter:
    """A converter process (``python -m matport.migrate.cluster``): JSON lines in and out."""

    def __init__(self, memory_mb: int | None) -> None:
        self.memory_mb = memory_mb
        here = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        path = os.pathsep.join(p for p in (here, os.environ.get("PYTHONPATH")) if p)
        self.proc = subprocess.Popen(  # the matport this worker runs, whatever its cwd
            [sys.executable, "-m", "matport.migrate.cluster", str(os.getpid()),
             str(memory_mb or 0)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
            env={**os.environ, "PYTHONPATH": path})
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.stdin: IO[str] = self.proc.stdin
        self.stdout: IO[str] = self.proc.stdout
        if self._line(START_TIMEOUT_S) != "ready":  # None: too slow, "": ended
            self.kill()
            raise MigrationError(f"a converter process failed to start on "
                                 f"{socket.gethostname()} (exit code {self.proc.poll()})")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def run(self, task: FileTask, timeout: float | None,
            ) -> tuple[tuple[FileResult, bool] | None, str]:
        """``((result, healthy), "")``, or ``(None, why)`` when it timed out or died."""
        self.stdin.write(json.dumps(dataclasses.asdict(task)) + "\n")
        self.stdin.flush()
        line = self._line(timeout)
        if line is None:
            return None, f"timed out after {timeout:g} s"
        if line:
            data = json.loads(line)
            return (FileResult.from_dict(data["result"]), bool(data["healthy"])), ""
        code = self.proc.wait()  # its output ended: it is ending
        how = f"killed by signal {-code}" if code < 0 else f"exit code {code}"
        return None, f"the worker process died ({how}; out of memory?)"

    def _line(self, timeout: float | None) -> str | None:
        """The next line; "" when the process ended, None when ``timeout`` seconds passed."""
        ready, _, _ = select.select([self.stdout], [], [], timeout)
        return self.stdout.readline().strip() if ready else None

    def kill(self) -> None:
        with contextlib.suppress(OSError):
            self.proc.kill()
        self.proc.wait()


def _converter_main(parent: int, memory_mb: int | None) -> None:
    """The converter process: one file at a time, as :func:`run_on_worker` sends them."""
    replies = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)  # stray prints go to stderr, not into the replies
    prepare_worker(memory_mb, parent)
    replies.write("ready\n")
    replies.flush()
    for line in sys.stdin:
        fields = json.loads(line)
        if fields.get("signature") is not None:
            fields["signature"] = tuple(fields["signature"])
        result, healthy = migrate_file(FileTask(**fields), memory_mb)
        replies.write(json.dumps({"result": result.to_dict(), "healthy": healthy}) + "\n")
        replies.flush()
        if not healthy:
            return


if __name__ == "__main__":
    _converter_main(int(sys.argv[1]), int(sys.argv[2]) or None)
