"""Corrupt v7.3 files that make HDF5 or h5py themselves crash or hang (issue 10): stored types
MATLAB never writes are refused before h5py converts them, and global heap collections (where
variable-length field names live) are walked before HDF5 reads one. Each read runs in a child
process, so that a regression shows as a failed test, not a crashed or hung test run."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np
import pytest

from matport.mat.h5heap import SIGNATURE
from matport.mat.values import Struct
from matport.mat.writer import write

ROOT = Path(__file__).resolve().parents[1]
READ = ("import sys, matport\ntry:\n    matport.read(sys.argv[1])\n"
        "except matport.MatFileError as exc:\n    print(exc)\n    sys.exit(2)\n")


def _read_in_child(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", READ, str(path)], capture_output=True,
                          text=True, env={**os.environ, "PYTHONPATH": str(ROOT)}, cwd=ROOT,
                          timeout=120)


def _struct_file(path: Path) -> bytearray:
    """A v7.3 file holding a struct (its field names: variable-length data in a global heap)."""
    write(path, {"s": Struct(alpha=np.ones((2, 2)), beta="text", gamma=np.int8(3))},
          format="v7.3")
    return bytearray(path.read_bytes())


def _first_object(data: bytearray) -> int:
    """Where the first object of the file's (only) global heap collection starts."""
    at = data.find(SIGNATURE)
    assert at > 0 and data.find(SIGNATURE, at + 1) < 0
    return at + 16  # signature, version, reserved, 8-byte collection size


def test_the_corrupt_fuzz_file_is_refused_not_a_crash() -> None:
    """Found by scripts/fuzz.py (seed 13, case 18870): a MATLAB_fields attribute whose
    variable-length elements are region references made h5py's converter segfault."""
    done = _read_in_child(ROOT / "fixtures" / "crashes" / "corrupt_vlen_heap_v73.mat")
    assert done.returncode == 2, done.stderr
    assert "attribute MATLAB_fields is stored as variable-length data of something other " \
        "than characters" in done.stdout
    assert "/#refs#/c" in done.stdout


def test_an_empty_heap_object_is_refused_not_a_hang(tmp_path: Path) -> None:
    """An object of size 0 at index 0 makes HDF5 walk the collection forever (fuzz seed 13,
    case 40288)."""
    path = tmp_path / "empty_object.mat"
    data = _struct_file(path)
    obj = _first_object(data)
    data[obj:obj + 2] = b"\0\0"  # index 0 (free space), size 0
    data[obj + 8:obj + 16] = bytes(8)
    path.write_bytes(data)
    done = _read_in_child(path)
    assert done.returncode == 2, done.stderr
    assert f"global heap collection at byte {obj - 16} holds an empty object 0" in done.stdout


def test_a_heap_object_past_its_collection_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "long_object.mat"
    data = _struct_file(path)
    obj = _first_object(data)
    data[obj + 8:obj + 16] = (1 << 40).to_bytes(8, "little")
    path.write_bytes(data)
    done = _read_in_child(path)
    assert done.returncode == 2, done.stderr
    assert "of 1099511627776 bytes" in done.stdout and "past the collection's end" in done.stdout


def test_a_collection_longer_than_the_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "long_collection.mat"
    data = _struct_file(path)
    at = _first_object(data) - 16
    data[at + 8:at + 16] = (len(data) * 2).to_bytes(8, "little")
    path.write_bytes(data)
    done = _read_in_child(path)
    assert done.returncode == 2, done.stderr
    assert f"global heap collection at byte {at} declares {len(data) * 2} bytes" in done.stdout


def test_heap_lookalike_bytes_inside_data_are_data(tmp_path: Path) -> None:
    """A collection's signature inside an array's stored data is not a heap: the file reads."""
    import matport

    lookalike = np.frombuffer((SIGNATURE + bytes(3) + (1 << 50).to_bytes(8, "little")) * 4,
                              np.uint8).reshape(1, -1)
    path = tmp_path / "lookalike.mat"
    write(path, {"s": Struct(raw=lookalike, other=1.0), "plain": lookalike.copy()}, format="v7.3",
          compress=False)
    assert path.read_bytes().count(SIGNATURE) == 9  # 8 lookalikes and the real collection
    values = matport.read(path)
    np.testing.assert_array_equal(values["plain"], lookalike)
    np.testing.assert_array_equal(values["s"]["raw"], lookalike)


def _region_references(f: h5py.File) -> None:
    f.create_dataset("x", shape=(1, 1), dtype=h5py.regionref_dtype)


def _vlen_of_int32(f: h5py.File) -> None:
    g = f.create_group("x")
    g.attrs["MATLAB_class"] = np.bytes_("struct")
    names = np.empty(1, dtype=h5py.vlen_dtype(np.int32))
    names[0] = np.arange(3, dtype=np.int32)
    g.attrs["MATLAB_fields"] = names


def _compound_of_three(f: h5py.File) -> None:
    dtype = np.dtype([("real", "<f8"), ("imag", "<f8"), ("other", "<f8")])
    f.create_dataset("x", data=np.zeros((1, 1), dtype))


def _variable_length_text(f: h5py.File) -> None:
    f.create_dataset("x", data=np.array([["a"]], dtype=h5py.string_dtype()))


@pytest.mark.parametrize("make, problem", [
    (_region_references, "a region or new-style reference"),
    (_vlen_of_int32, "variable-length data of something other than characters"),
    (_compound_of_three, "a compound of 3 members"),
    (_variable_length_text, "variable-length text"),
], ids=["region-reference", "vlen-int32", "compound-3", "vlen-text"])
def test_stored_types_matlab_never_writes_are_refused(
        tmp_path: Path, make: Callable[[h5py.File], None], problem: str) -> None:
    path = tmp_path / "odd_type.mat"
    with h5py.File(path, "w") as f:
        make(f)
        if isinstance(f["x"], h5py.Dataset):
            f["x"].attrs["MATLAB_class"] = np.bytes_("double")
    done = _read_in_child(path)
    assert done.returncode == 2, done.stderr
    assert f"is stored as {problem}" in done.stdout and "MATLAB writes no such data" in done.stdout
    assert "/x" in done.stdout
