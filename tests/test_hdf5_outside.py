"""A v7.3 file is HDF5, and HDF5 can point outside the file (external and soft links, virtual
datasets, external raw storage, plugin filters). MATLAB writes none of these: each is refused with
a MatFileError naming the dataset, and a secret file next to the MAT-file never comes out through
`matport.read`, `matport.network.read_network` or `matport inspect`."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np
import pytest

import matport
from matport.network import read_network

SECRET = b"-----BEGIN PRIVATE KEY----- s3cr3t-0123456789abcdef"
ROOT = Path(__file__).resolve().parents[1]


def _matlab(obj: h5py.HLObject, cls: str = "uint8") -> None:
    obj.attrs["MATLAB_class"] = np.bytes_(cls)


@pytest.fixture
def secret(tmp_path: Path) -> Path:
    """secret.txt (raw bytes) and secret.h5 (the same bytes as a dataset) beside the MAT-file."""
    (tmp_path / "secret.txt").write_bytes(SECRET)
    with h5py.File(tmp_path / "secret.h5", "w") as f:
        _matlab(f.create_dataset("data", data=np.frombuffer(SECRET, np.uint8)[None, :]))
    return tmp_path / "secret.txt"


def external_link(f: h5py.File, d: Path) -> str:
    f["x"] = h5py.ExternalLink(str(d / "secret.h5"), "/data")
    return "external link"


def external_link_in_struct(f: h5py.File, d: Path) -> str:
    g = f.create_group("s")
    _matlab(g, "struct")
    g["x"] = h5py.ExternalLink(str(d / "secret.h5"), "/data")
    return "external link"


def external_storage(f: h5py.File, d: Path) -> str:
    _matlab(f.create_dataset("x", shape=(1, len(SECRET)), dtype="u1",
                             external=[(str(d / "secret.txt"), 0, len(SECRET))]))
    return "external file"


def virtual_dataset(f: h5py.File, d: Path) -> str:
    layout = h5py.VirtualLayout(shape=(1, len(SECRET)), dtype="u1")
    layout[:] = h5py.VirtualSource(str(d / "secret.h5"), "data", shape=(1, len(SECRET)))
    _matlab(f.create_virtual_dataset("x", layout))
    return "virtual dataset"


def soft_link(f: h5py.File, d: Path) -> str:
    _matlab(f.create_dataset("hidden", data=np.frombuffer(SECRET, np.uint8)[None, :]))
    g = f.create_group("s")
    _matlab(g, "struct")
    g["x"] = h5py.SoftLink("/hidden")
    return "soft link"


def unknown_filter(f: h5py.File, d: Path) -> str:
    _matlab(f.create_dataset("x", data=np.arange(64, dtype="u1")[None, :], scaleoffset=0,
                             chunks=(1, 64)))
    return "HDF5 filter 6"


CASES: list[Callable[[h5py.File, Path], str]] = [
    external_link, external_link_in_struct, external_storage, virtual_dataset, soft_link,
    unknown_filter,
]


def make(tmp_path: Path, case: Callable[[h5py.File, Path], str]) -> tuple[Path, str]:
    path = tmp_path / "hostile.mat"
    with h5py.File(path, "w") as f:
        what = case(f, tmp_path)
    return path, what


def test_the_secret_is_readable_through_plain_h5py(tmp_path: Path, secret: Path) -> None:
    """The hostile files really do reach the secret (so the refusals below are real)."""
    for case in (external_link, external_storage, virtual_dataset):
        path, _ = make(tmp_path, case)
        with h5py.File(path, "r") as f:
            assert f["x"][()].tobytes() == SECRET


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.__name__)
def test_pointing_outside_is_refused_naming_the_dataset(tmp_path: Path, secret: Path,
                                                        case: Callable[[h5py.File, Path], str]
                                                        ) -> None:
    path, what = make(tmp_path, case)
    with pytest.raises(matport.MatFileError, match=what) as info:
        matport.read(path)
    message = str(info.value)
    assert str(path) in message and "x" in message and SECRET.decode() not in message
    with pytest.raises(matport.MatFileError) as info:
        read_network(path)
    assert SECRET.decode() not in str(info.value)


@pytest.mark.parametrize("case", [external_link, external_storage, virtual_dataset, soft_link],
                         ids=lambda c: c.__name__)
def test_inspect_never_prints_the_secret(tmp_path: Path, secret: Path,
                                         case: Callable[[h5py.File, Path], str]) -> None:
    path, _ = make(tmp_path, case)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for extra in ([], ["--json"]):
        done = subprocess.run([sys.executable, "-m", "matport", "inspect", str(path), *extra],
                              capture_output=True, env=env, cwd=ROOT, timeout=120)
        assert done.returncode == 2, done.stderr
        assert SECRET not in done.stdout + done.stderr
        assert len(done.stderr.decode().strip().splitlines()) == 1
        assert b"MATLAB writes" in done.stderr or b"MATLAB never" in done.stderr or \
            b"MATLAB uses" in done.stderr
