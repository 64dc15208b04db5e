"""The migration state as an append-only journal: one line per finished file, nothing
rewritten; a killed writer's unterminated line ignored and cut off; the whole-file state of
earlier versions read (never written); a journal of mostly replaced lines compacted."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from matport.migrate.artifact import FileTask
from matport.migrate.report import FileResult
from matport.migrate.state import (
    LEGACY_STATE_FILE,
    STATE_FILE,
    STATE_FORMAT,
    MigrationState,
    fingerprint,
)
from tests.support.paths import ROOT


def result(rel: str, sha: str = "1") -> FileResult:
    return FileResult(source=f"/src/{rel}", relative=rel, sha256=sha, outcome="converted")


def fprint(res: FileResult) -> dict:
    return fingerprint(res, FileTask(res.source, res.relative, "/out", 0, None, "pt", "auto"))


def record(out: Path, rel: str, sha: str = "1") -> None:
    res = result(rel, sha)
    MigrationState(out).record(res, fprint(res))


def test_each_file_appends_one_line(tmp_path: Path) -> None:
    state = MigrationState(tmp_path)
    assert state.files == {} and not (tmp_path / STATE_FILE).exists()  # reading writes nothing
    sizes = []
    for i in range(3):
        res = result(f"f{i}.mat")
        state.record(res, fprint(res))
        sizes.append((tmp_path / STATE_FILE).stat().st_size)
    data = (tmp_path / STATE_FILE).read_bytes()
    lines = data.splitlines()
    assert json.loads(lines[0]) == {"format": STATE_FORMAT} and len(lines) == 4
    assert [len(b"\n".join(lines[: i + 2])) + 1 for i in range(3)] == sizes  # only appended
    again = MigrationState(tmp_path)
    assert again.files == state.files and sorted(again.files) == ["f0.mat", "f1.mat", "f2.mat"]
    assert again.files["f1.mat"]["fingerprint"] == fprint(result("f1.mat"))


def test_a_later_line_replaces_an_earlier_one(tmp_path: Path) -> None:
    record(tmp_path, "a.mat", "old")
    record(tmp_path, "b.mat")
    record(tmp_path, "a.mat", "new")
    files = MigrationState(tmp_path).files
    assert list(files) == ["a.mat", "b.mat"] and files["a.mat"]["result"]["sha256"] == "new"


def test_an_unterminated_last_line_is_ignored_then_cut_off(tmp_path: Path) -> None:
    record(tmp_path, "a.mat")
    journal = tmp_path / STATE_FILE
    whole = journal.read_bytes()
    with open(journal, "ab") as f:
        f.write(b'{"file":"b.mat","fingerprint":{"sha2')  # a writer killed mid-line
    state = MigrationState(tmp_path)
    assert list(state.files) == ["a.mat"]
    assert journal.read_bytes().endswith(b"sha2")  # reading leaves the file alone
    res = result("c.mat")
    state.record(res, fprint(res))
    assert journal.read_bytes().startswith(whole)
    assert list(MigrationState(tmp_path).files) == ["a.mat", "c.mat"]


def test_a_journal_killed_before_its_first_line_is_empty(tmp_path: Path) -> None:
    (tmp_path / STATE_FILE).write_bytes(b'{"format": "matport.mig')
    assert MigrationState(tmp_path).files == {}
    record(tmp_path, "a.mat")
    assert list(MigrationState(tmp_path).files) == ["a.mat"]


def test_the_whole_file_state_is_read_and_left_alone(tmp_path: Path) -> None:
    res = result("a.mat", "legacy")
    legacy = {"format": "matport.migration-state/2", "files": {
        "a.mat": {"fingerprint": fprint(res), "result": res.to_dict()},
        "b.mat": {"fingerprint": fprint(result("b.mat")), "result": result("b.mat").to_dict()}}}
    text = json.dumps(legacy, indent=1)
    (tmp_path / LEGACY_STATE_FILE).write_text(text)
    assert MigrationState(tmp_path).files == legacy["files"]
    record(tmp_path, "a.mat", "new")
    files = MigrationState(tmp_path).files
    assert files["a.mat"]["result"]["sha256"] == "new"
    assert files["b.mat"] == legacy["files"]["b.mat"]
    assert (tmp_path / LEGACY_STATE_FILE).read_text() == text


def test_a_journal_of_replaced_lines_is_compacted(tmp_path: Path) -> None:
    writer = MigrationState(tmp_path)  # one run redoing a.mat again and again
    for res in [*(result("a.mat", str(i)) for i in range(7)), result("b.mat")]:
        writer.record(res, fprint(res))
    journal = tmp_path / STATE_FILE
    assert len(journal.read_text().splitlines()) == 9
    state = MigrationState(tmp_path)
    res = result("c.mat")
    state.record(res, fprint(res))
    lines = journal.read_text().splitlines()
    assert len(lines) == 4 and json.loads(lines[1])["result"]["sha256"] == "6"
    assert MigrationState(tmp_path).files == state.files


KILLED_WRITER = """
import sys
from pathlib import Path
from matport.migrate.artifact import FileTask
from matport.migrate.report import FileResult
from matport.migrate.state import MigrationState, fingerprint
state = MigrationState(Path(sys.argv[1]))
print("ready", flush=True)
for i in range(10**9):
    r = FileResult(source="/s", relative=f"f{i % 5000}.mat", sha256=str(i), reason="x" * 5000)
    state.record(r, fingerprint(r, FileTask("/s", r.relative, "/o", 0, None, "pt", "auto")))
"""


def test_a_writer_killed_at_any_point_leaves_a_readable_journal(tmp_path: Path) -> None:
    for delay in (0.05, 0.2, 0.5):
        proc = subprocess.Popen([sys.executable, "-c", KILLED_WRITER, str(tmp_path)], cwd=ROOT,
                                stdout=subprocess.PIPE, text=True)
        assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
        time.sleep(delay)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        state = MigrationState(tmp_path)
        assert state.files
        res = result("after.mat")
        state.record(res, fprint(res))
        assert MigrationState(tmp_path).files["after.mat"]["result"]["sha256"] == "1"
