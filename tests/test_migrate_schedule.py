"""How a migration's work is shared out: the largest files first when several workers convert
at once (source order for one), the cores shared out among the workers, the fork server started
early, and a worker still starting killed at the end instead of waited for."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from matport.migrate import pool
from matport.migrate.artifact import FileTask
from matport.migrate.report import FileResult
from matport.migrate.schedule import schedule
from matport.migrate.state import MigrationState
from tests.support.paths import ROOT


class Recording:
    """An executor that records the order files are handed to it and converts none."""

    def __init__(self, parallel: int) -> None:
        self.capacity, self.parallel = 2 * parallel, parallel
        self.submitted: list[str] = []
        self.pending: list[tuple[int, FileTask]] = []

    def submit(self, index: int, task: FileTask) -> None:
        self.submitted.append(task.relative)
        self.pending.append((index, task))

    def outstanding(self) -> int:
        return len(self.pending)

    def collect(self) -> list[tuple[int, FileResult]]:
        index, task = self.pending.pop(0)
        return [(index, task.result(outcome="converted"))]

    def close(self) -> None:
        pass


def tasks_of(tmp_path: Path, sizes: dict[str, int]) -> list[FileTask]:
    src, out = tmp_path / "src", tmp_path / "out"
    src.mkdir()
    out.mkdir(exist_ok=True)
    tasks = []
    for name, size in sizes.items():
        (src / name).write_bytes(b"x" * size)
        tasks.append(FileTask(str(src / name), name, str(out), 0, None, "pt", "auto"))
    return tasks


@pytest.mark.parametrize(("parallel", "expected"), [
    (1, ["a.mat", "b.mat", "c.mat", "d.mat", "e.mat"]),  # one worker: source order
    (2, ["c.mat", "e.mat", "a.mat", "d.mat", "b.mat"]),  # largest first, ties in source order
])
def test_the_largest_files_go_first_to_several_workers(tmp_path: Path, parallel: int,
                                                       expected: list[str]) -> None:
    tasks = tasks_of(tmp_path, {"a.mat": 20, "b.mat": 5, "c.mat": 90, "d.mat": 20, "e.mat": 40})
    executor = Recording(parallel)
    finished: list[str] = []
    results = schedule(tasks, tmp_path / "out", MigrationState(tmp_path / "out"), executor,
                       lambda r: finished.append(r.relative))
    assert executor.submitted == expected == finished
    assert [r.relative for r in results] == [t.relative for t in tasks]  # reported in order


def test_a_clash_of_artifact_folders_fails_the_later_file_in_any_order(tmp_path: Path) -> None:
    """``x.mat`` and ``x/`` ... two sources whose artifacts would share a folder: the one later
    in source order fails, whichever is converted first."""
    tasks = tasks_of(tmp_path, {"a.mat": 1, "b.mat": 50})
    tasks[1].relative = "a.mat"  # b's artifacts would go where a's go
    for parallel in (1, 2):
        executor = Recording(parallel)
        results = schedule(tasks, tmp_path / "out", MigrationState(tmp_path / "out"), executor,
                           lambda r: None)
        assert [r.outcome for r in results] == ["converted", "failed"]
        assert tasks[0].source in (results[1].reason or "")


@pytest.mark.parametrize(("jobs", "cores", "threads", "torch"), [
    (1, 2, 2, 1),  # a second thread overlaps reading, hashing and the export's run
    (2, 2, 1, 1),
    (3, 2, 1, 1),
    (1, 8, 8, 7),
    (2, 8, 4, 3),
    (8, 8, 1, 1),
])
def test_the_cores_are_shared_out(jobs: int, cores: int, threads: int, torch: int) -> None:
    assert pool.worker_threads(jobs, cores) == threads
    assert pool.torch_threads(threads) == torch


def test_a_worker_still_starting_is_killed_at_the_end(tmp_path: Path) -> None:
    pool.start_fork_server()
    pool.start_fork_server()  # once
    workers = pool.ProcessPool(1, None, None)
    try:
        worker = workers._start()
    finally:
        t0 = time.monotonic()
        workers.close()
    assert time.monotonic() - t0 < 4.0 and not worker.process.is_alive()


def test_the_fork_server_starts_early_when_a_file_needs_a_worker(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from matport.migrate import runner

    calls: list[int] = []
    monkeypatch.setattr(runner, "start_fork_server", lambda: calls.append(1))
    src = tmp_path / "src"
    src.mkdir()
    shutil.copy(ROOT / "fixtures" / "series_net_v7.mat", src / "a.mat")
    assert runner.migrate(src, tmp_path / "out", progress=False).ok
    assert calls == [1]
    assert runner.migrate(src, tmp_path / "out", progress=False).ok  # all done: no worker
    assert calls == [1]


FREED_AND_TAKEN_AGAIN = """
import resource, sys
import numpy as np
from matport.migrate import pool
if sys.argv[1] == "worker":
    pool.worker_malloc()
faults = []
for _ in range(3):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    a = np.ones(64 << 18, np.float32)  # 64 MB, touched
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
    del a
print(faults[1], faults[2])
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc")
def test_a_worker_keeps_what_a_file_freed_for_the_next() -> None:
    """64 MB freed and taken again: a worker's malloc hands back the same pages (no page
    faults), a plain process's maps fresh ones (a fault per page: at least 32, when the kernel
    hands out 2 MB pages; 16,384 pages of 4 KB)."""
    def faults(kind: str) -> list[int]:
        out = subprocess.run([sys.executable, "-c", FREED_AND_TAKEN_AGAIN, kind], check=True,
                             capture_output=True, text=True, cwd=ROOT).stdout
        return [int(n) for n in out.split()]

    assert max(faults("worker")) < 16 < 32 <= min(faults("plain"))
