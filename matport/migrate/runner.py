"""``matport.migrate``: convert whole folders of MATLAB networks in one resumable, loss-free run.

Every network in every ``.mat`` file under the sources becomes an *artifact* in ``out``: weights
(a :mod:`matport.checkpoint`, ``.pt`` or ``.safetensors``) plus a metadata ``.json`` beside them,
at a path that mirrors the source tree (:mod:`matport.migrate.sources`)::

    SRC/lab/fold1.mat  (variables net, results.best)
    OUT/lab/fold1/net.pt              OUT/lab/fold1/net.json
    OUT/lab/fold1/results.best.pt     OUT/lab/fold1/results.best.json

When MATLAB's ONNX export of a file is found (``fold1.onnx`` beside ``fold1.mat``, or as a
pattern or mapping file says), the converted network is checked against it with
:func:`matport.verify.verify` and the result recorded.

Outcomes, per network and per file: ``converted``; ``verified`` (the ONNX check holds);
``skipped`` (no network in the file, or already done by an earlier run); ``failed`` with the
reason (unreadable file, conversion error, time or memory limit, an artifact that cannot be
written, or the ONNX check fails: then the artifact is kept and its metadata holds the check's
report). A check that cannot run (``could not verify``: unreadable export, custom operators,
several networks in the file) is recorded and does not fail the network.

Loss-free and resumable: sources are only read; every output file is written all or nothing
(:mod:`matport.files`); the journal ``OUT/migration-state.jsonl`` (:mod:`matport.migrate.state`)
gets a line with each file's fingerprint and outcome as it finishes, so a re-run skips what is
done and redoes what failed or changed, and a run killed at any point (even by SIGKILL) is
completed by the next one.
Temporary files of a killed run are removed when the next run starts; one run at a time writes
to an output folder (``OUT/.migration.lock``, removed at the end). Files are converted in worker
processes (:mod:`matport.migrate.pool`), scheduled by :mod:`matport.migrate.schedule`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import get_args

from matport.errors import ArgumentError, MigrationError
from matport.files import write_atomic
from matport.migrate.artifact import (
    NUM_RANDOM,
    FileTask,
    WeightsFormat,
    remove_temporary_files,
    remove_unfinished,
)
from matport.migrate.html import REPORT_HTML, report_html
from matport.migrate.pool import ProcessPool, start_fork_server
from matport.migrate.progress import Progress
from matport.migrate.report import REPORT_JSON, REPORT_MARKDOWN, MigrationReport
from matport.migrate.schedule import Executor, schedule
from matport.migrate.sources import DEFAULT_ONNX_PATTERN, OnnxPairing, find_sources
from matport.migrate.state import MigrationState
from matport.options import FAMILIES, FamilyChoice

log = logging.getLogger("matport.migrate")

LOCK_FILE = ".migration.lock"
DEFAULT_TIMEOUT_S = 600.0
DEFAULT_MEMORY_MB = 4096


def migrate(
    sources: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    out: str | os.PathLike[str],
    *,
    jobs: int = 1,
    format: WeightsFormat = "pt",
    family: FamilyChoice = "auto",
    onnx_pattern: str = DEFAULT_ONNX_PATTERN,
    onnx_map: str | os.PathLike[str] | None = None,
    progress: bool | None = None,
    timeout: float | None = DEFAULT_TIMEOUT_S,
    memory_mb: int | None = DEFAULT_MEMORY_MB,
    cluster: str | None = None,
    num_random: int = NUM_RANDOM,
) -> MigrationReport:
    """Migrate every network in the ``.mat`` files under ``sources`` into ``out`` (see
    :mod:`matport.migrate.runner` for the layout, outcomes and guarantees).

    Args:
        sources: ``.mat`` files and folders (searched recursively, in sorted order).
        out: the output folder (created when missing).
        jobs: the number of worker processes.
        format: the weights file of each artifact: ``"pt"`` or ``"safetensors"``
            (:func:`matport.checkpoint.save`).
        family: ``"auto"`` (a torchvision resnet50 when the network fits, else matport's graph
            module), ``"resnet50"`` (torchvision resnet50 or fail) or ``"graph"``.
        onnx_pattern: where MATLAB's ONNX export of ``x.mat`` is, relative to its folder, with
            ``{stem}`` for ``x`` (default ``{stem}.onnx``).
        onnx_map: a JSON or CSV file pairing ``.mat`` files with their exports (it wins over
            the pattern).
        progress: a tqdm bar on stderr (True), or one ``logging`` line per file on the
            ``matport.migrate`` logger (False); None: the bar when stderr is a terminal.
        timeout: seconds per file (None: no limit).
        memory_mb: address space (MB) a worker may add for one file (None: no limit).
        cluster: a Dask scheduler's address: the files run on its workers
            (:mod:`matport.migrate.cluster`; ``jobs`` is then unused), with the same outcomes,
            artifacts, report and state file. Sources and ``out`` must be paths every worker
            sees.
        num_random: the random inputs each ONNX check runs through both sides (the weights
            are compared with the export's tensor by tensor whatever the number; see
            :data:`~matport.migrate.artifact.NUM_RANDOM`).

    Returns:
        The report, also written as ``migration-report.json`` / ``.md`` / ``.html`` in ``out``;
        read an artifact back with :func:`matport.migrate.artifact.load_artifact`.

    Raises:
        ArgumentError: an unknown format, family or pattern, ``jobs < 1`` or
            ``num_random < 1``.
        MigrationError: the migration cannot run or cannot write its output folder (the files
            finished before are kept, with the state file).
    """
    if format not in get_args(WeightsFormat):
        raise ArgumentError(f"unknown format {format!r}: expected one of "
                            f"{get_args(WeightsFormat)}")
    if family not in FAMILIES:
        raise ArgumentError(f"unknown family {family!r}: expected one of {FAMILIES}")
    if jobs < 1:
        raise ArgumentError(f"jobs must be at least 1 (got {jobs})")
    if num_random < 1:
        raise ArgumentError(f"num_random must be at least 1 (got {num_random})")
    started = time.monotonic()
    src_list = [sources] if isinstance(sources, str | os.PathLike) else list(sources)
    out_dir = Path(out).absolute()
    pairing = OnnxPairing(onnx_pattern, onnx_map)
    found = find_sources(src_list, out_dir)
    for mat in pairing.unused(p for p, _ in found):
        log.warning("%s: named by the ONNX mapping, but not among the sources", mat)
    try:
        return _run(src_list, out_dir, found, pairing, started, jobs=jobs, format=format,
                    family=family, progress=progress, timeout=timeout, memory_mb=memory_mb,
                    cluster=cluster, num_random=num_random)
    except OSError as exc:
        where = exc.filename or out_dir
        raise MigrationError(f"{where}: {exc.strerror or exc}") from None


def _run(src_list: list[str | os.PathLike[str]], out_dir: Path, found: list[tuple[Path, str]],
         pairing: OnnxPairing, started: float, *, jobs: int, format: WeightsFormat,
         family: FamilyChoice, progress: bool | None, timeout: float | None,
         memory_mb: int | None, cluster: str | None, num_random: int) -> MigrationReport:
    if out_dir.exists() and not out_dir.is_dir():
        raise MigrationError(f"{out_dir}: the output must be a folder, and this is a file")
    out_dir.mkdir(parents=True, exist_ok=True)
    tasks = []
    for path, rel in found:
        onnx = pairing.onnx_for(path)
        tasks.append(FileTask(str(path), rel, str(out_dir), 0, str(onnx) if onnx else None,
                              format, family, num_random=num_random))
    with _exclusive(out_dir):
        state = MigrationState(out_dir)
        if cluster is None and any(t.relative not in state.files for t in tasks):
            start_fork_server()  # a file needs a worker: its imports overlap the cleanup, hashing
        remove_temporary_files(out_dir)
        for task in tasks:
            remove_unfinished(task.folder)
        show = Progress(len(tasks), progress if progress is not None else sys.stderr.isatty())
        pool = _executor(cluster, [os.fspath(Path(s).absolute()) for s in src_list], out_dir,
                         jobs, timeout, memory_mb)
        try:
            results = schedule(tasks, out_dir, state, pool, show.update)
        finally:
            pool.close()
            show.close()
            remove_temporary_files(out_dir)
        report = MigrationReport(str(out_dir), [os.fspath(s) for s in src_list], format, family,
                                 jobs, time.monotonic() - started, results)
        write_atomic(out_dir / REPORT_JSON, json.dumps(report.to_dict(), indent=2).encode())
        write_atomic(out_dir / REPORT_MARKDOWN, report.to_markdown().encode())
        write_atomic(out_dir / REPORT_HTML, report_html(report).encode())
    return report


def _executor(cluster: str | None, sources: list[str], out: Path, jobs: int,
              timeout: float | None, memory_mb: int | None) -> Executor:
    if cluster is None:
        return ProcessPool(jobs, timeout, memory_mb)
    from matport.migrate.cluster import ClusterExecutor

    return ClusterExecutor(cluster, [*sources, os.fspath(out)], timeout, memory_mb)


@contextlib.contextmanager
def _exclusive(out: Path) -> Iterator[None]:
    """Hold ``out/.migration.lock`` (released by the system if this process dies; removed when
    the run ends)."""
    import fcntl

    path = out / LOCK_FILE
    while True:
        lock = open(path, "a")  # noqa: SIM115 (closed below, after the unlink)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.close()
            raise MigrationError(f"{out}: another migration is writing there") from None
        try:  # a run that just ended may have removed the file we locked: lock the new one
            same = os.stat(path).st_ino == os.fstat(lock.fileno()).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        lock.close()
    try:
        yield
    finally:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        lock.close()
