"""matport migrate with outputs it cannot write: an --out that is a file, a read-only folder, a
corrupt state file, an output another run holds (one line on stderr, exit 2), and a full disk
(the artifacts written before stay valid, the state file intact, and the next run completes)."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from matport.cli import main
from matport.convert.api import load
from matport.errors import MigrationError
from matport.migrate import state as state_module
from matport.migrate.artifact import load_artifact
from matport.migrate.runner import LOCK_FILE, migrate
from matport.migrate.state import LEGACY_STATE_FILE, STATE_FILE, MigrationState
from matport.network.encode import write_network
from matport.network.model import Network
from matport.synth.networks import RNG, chain, conv, fc, image_input, simple

torch.set_num_threads(1)


def cnn(size: int = 8, channels: int = 4) -> Network:
    return chain(image_input("in", (size, size, 3)),
                 conv("conv", (3, 3), 3, channels, PaddingSize=(1, 1, 1, 1)),
                 simple("ReLULayer", "relu"), fc("fc", (size, size, channels), 3),
                 simple("SoftmaxLayer", "sm"), simple("ClassificationOutputLayer", "out"),
                 class_names=["a", "b", "c"])


@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory) -> Path:
    src = tmp_path_factory.mktemp("src")
    for i in range(4):
        write_network(src / f"m{i}.mat", cnn())
    return src


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    code = main(["migrate", *args])
    return code, capsys.readouterr().err


def assert_one_line_error(code: int, err: str, *words: str) -> None:
    assert code == 2, err
    errors = [line for line in err.splitlines() if line.startswith("matport migrate: error: ")]
    progress = [line for line in err.splitlines() if line not in errors]
    assert len(errors) == 1 and all(w in errors[0] for w in words), err
    assert all(line.split(" ")[2].endswith("/4") for line in progress), err  # one per file


def assert_artifacts_valid(out: Path, src: Path) -> list[str]:
    """Every file the state records is there and computes what its source computes; returns
    the recorded files."""
    files = MigrationState(out).files
    for rel, entry in files.items():
        for net in entry["result"]["networks"]:
            if net["metadata"] is None:  # failed
                continue
            migrated, direct = load_artifact(out / net["metadata"]), load(src / rel)
            h, w, c = direct.matport.input_size
            raw = torch.from_numpy(RNG.uniform(0, 255, (2, c, h, w)).astype(np.float32))
            with torch.no_grad():
                np.testing.assert_array_equal(migrated(raw).numpy(), direct(raw).numpy())
    return sorted(files)


def test_unusable_outputs_are_one_line_errors(sources: Path, tmp_path: Path, capsys) -> None:
    afile = tmp_path / "afile"
    afile.write_text("mine")
    assert_one_line_error(*run_cli(capsys, str(sources), "-o", str(afile)),
                          "must be a folder")
    assert_one_line_error(*run_cli(capsys, str(sources), "-o", str(afile / "below")),
                          "Not a directory")
    assert afile.read_text() == "mine"

    out = tmp_path / "out"
    out.mkdir()
    legacy = out / LEGACY_STATE_FILE  # the whole-file state of earlier versions
    legacy.write_text('{"format": "matport.migration-state/2", "files": {"a": 1')
    assert_one_line_error(*run_cli(capsys, str(sources), "-o", str(out)),
                          LEGACY_STATE_FILE, "not a readable migration state")
    legacy.write_text('{"format": "matport.migration-state/2", "files": [1]}')
    assert_one_line_error(*run_cli(capsys, str(sources), "-o", str(out)), "not a readable")
    legacy.write_text('{"format": "matport.migration-state/9", "files": {}}')
    assert_one_line_error(*run_cli(capsys, str(sources), "-o", str(out)), "newer matport")
    legacy.unlink()
    journal = out / STATE_FILE
    journal.write_text('{"format": "matport.migration-state/3"}\n{"file": "a"}\n{"file"')
    assert_one_line_error(*run_cli(capsys, str(sources), "-o", str(out)),
                          STATE_FILE, "not a readable migration state", "line 2")
    journal.write_text('{"format": "matport.migration-state/9"}\n')
    assert_one_line_error(*run_cli(capsys, str(sources), "-o", str(out)), "newer matport")
    assert sorted(p.name for p in out.iterdir()) == [STATE_FILE]  # nothing written, no lock


@contextlib.contextmanager
def tmpfs(path: Path, options: str) -> Iterator[None]:
    """A tmpfs mounted at ``path`` (skips the test where mounting is not permitted)."""
    path.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)],
                          capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield
    finally:
        subprocess.run(["umount", "-l", str(path)], check=True)


def test_read_only_output_is_a_one_line_error(sources: Path, tmp_path: Path, capsys) -> None:
    ro = tmp_path / "ro"
    if os.geteuid() != 0:
        ro.mkdir()
        ro.chmod(0o555)
        assert_one_line_error(*run_cli(capsys, str(sources), "-o", str(ro / "out")),
                              "Permission denied")
        return
    with tmpfs(ro, "ro,size=1m"):  # root writes anywhere a mode allows: a read-only mount
        assert_one_line_error(*run_cli(capsys, str(sources), "-o", str(ro / "out")),
                              "Read-only file system")


def test_full_disk_while_writing_the_state(sources: Path, tmp_path: Path, capsys,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """The state's third line finds the disk full half-way: the run stops with one line, the
    journal holds the two files recorded before (the half line is ignored, then cut off by the
    next run), whose artifacts are valid."""
    out = tmp_path / "out"
    real, calls = state_module._append, []

    def full_on_third(path: Path, line: bytes) -> None:
        calls.append(path)
        if len(calls) == 3:
            real(path, line[: len(line) // 2].rstrip(b"\n"))
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        real(path, line)

    monkeypatch.setattr(state_module, "_append", full_on_third)
    assert_one_line_error(*run_cli(capsys, str(sources), "-o", str(out)),
                          "No space left on device", STATE_FILE)
    assert not (out / STATE_FILE).read_bytes().endswith(b"\n")
    assert assert_artifacts_valid(out, sources) == ["m0.mat", "m1.mat"]
    assert not (out / LOCK_FILE).exists()
    assert not [p for p in out.rglob("*") if p.name.endswith(".matport-tmp")]

    monkeypatch.setattr(state_module, "_append", real)
    report = migrate(sources, out, progress=False)
    assert [f.outcome for f in report.files] == ["skipped", "skipped", "converted", "converted"]
    assert assert_artifacts_valid(out, sources) == [f"m{i}.mat" for i in range(4)]
    lines = (out / STATE_FILE).read_text().splitlines()
    assert len(lines) == 5 and all(json.loads(line) for line in lines)  # header + 4 files


def test_full_disk_while_writing_an_artifact(tmp_path: Path) -> None:
    """A real full disk (a small tmpfs): the large network's artifact does not fit; it fails
    with the reason, the artifacts written before stay valid, the state file is intact, and the
    next run, with room, completes."""
    src = tmp_path / "src"
    src.mkdir()
    write_network(src / "a.mat", cnn())
    write_network(src / "b_large.mat", cnn(size=32, channels=128))  # 1.6 MB of weights
    write_network(src / "c.mat", cnn())
    disk = tmp_path / "disk"
    with tmpfs(disk, "size=1m"):
        report = migrate(src, disk / "out", progress=False)
        assert [f.outcome for f in report.files] == ["converted", "failed", "converted"]
        assert report.files[1].reason == (
            f"net: {disk / 'out' / 'b_large' / 'net.pt'}: No space left on device")
        assert assert_artifacts_valid(disk / "out", src) == ["a.mat", "b_large.mat", "c.mat"]
        assert not list((disk / "out" / "b_large").glob("*"))
        subprocess.run(["mount", "-o", "remount,size=16m", str(disk)], check=True)
        again = migrate(src, disk / "out", progress=False)
        assert [f.outcome for f in again.files] == ["skipped", "converted", "skipped"]
        assert_artifacts_valid(disk / "out", src)


def test_migration_error_for_missing_sources(tmp_path: Path) -> None:
    with pytest.raises(MigrationError, match="no such file or folder"):
        migrate(tmp_path / "missing", tmp_path / "out")


def test_one_run_at_a_time_and_the_lock_goes(sources: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "out"
    out.mkdir()
    with open(out / LOCK_FILE, "a") as held:  # another run holds the lock
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        assert_one_line_error(*run_cli(capsys, str(sources), "-o", str(out)),
                              "another migration is writing there")
        assert sorted(p.name for p in out.iterdir()) == [LOCK_FILE]  # not theirs to remove
    report = migrate(sources, out, progress=False)
    assert report.ok and not (out / LOCK_FILE).exists()
