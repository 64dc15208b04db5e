"""Values MATLAB stores as integers but a hostile file stores as float NaN or Inf, arrays of more
dimensions than numpy has, a struct with an enumeration's field name, objects nested past the
limit: each is a MatFileError naming the file and the place (never OverflowError, ValueError,
TypeError or RecursionError), and `matport inspect` prints one line and exits 2."""

from __future__ import annotations

import os
import struct
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np
import pytest

import matport
from matport.mat.format import ENUMERATION_TAG, MAX_DIMS
from matport.mat.values import MatObject, Struct
from matport.mat.writer import write
from tests.test_bad_input import compressed, element
from tests.test_bad_input import write as write_v7

ROOT = Path(__file__).resolve().parents[1]
NAN, INF = float("nan"), float("inf")


def doubles(*values: float) -> bytes:
    return element(9, struct.pack(f"<{len(values)}d", *values))


def raw_matrix(flags: bytes, dims: bytes, name: bytes, *body: bytes) -> bytes:
    return element(14, flags + dims + element(1, name) + b"".join(body))


def int_flags(mclass: int) -> bytes:
    return element(6, struct.pack("<II", mclass, 0))


def int_dims(*dims: int) -> bytes:
    return element(5, struct.pack(f"<{len(dims)}i", *dims))


def flags_nan(tmp: Path) -> Path:
    return write_v7(tmp, compressed(raw_matrix(doubles(NAN, 0), int_dims(1, 1), b"x",
                                               doubles(1.0))))


def flags_inf(tmp: Path) -> Path:
    return write_v7(tmp, compressed(raw_matrix(doubles(INF, 0), int_dims(1, 1), b"x",
                                               doubles(1.0))))


def dims_nan(tmp: Path) -> Path:
    return write_v7(tmp, compressed(raw_matrix(int_flags(6), doubles(NAN, 1), b"x",
                                               doubles(1.0))))


def dims_inf(tmp: Path) -> Path:
    return write_v7(tmp, compressed(raw_matrix(int_flags(6), doubles(1, INF), b"x",
                                               doubles(1.0))))


def name_with_newline(tmp: Path) -> Path:
    return write_v7(tmp, compressed(raw_matrix(int_flags(6), int_dims(2, 2), b"x\ny",
                                               doubles(1.0))))


def too_many_dims(tmp: Path) -> Path:
    dims = int_dims(*[1] * (MAX_DIMS + 1))
    return write_v7(tmp, compressed(raw_matrix(int_flags(6), dims, b"x", doubles(1.0))))


def empty_beyond_numpy(tmp: Path) -> Path:
    """No values, but dimensions whose other extents multiply beyond what numpy can shape."""
    dims = int_dims(2**31 - 1, 2**31 - 1, 0)
    return write_v7(tmp, compressed(raw_matrix(int_flags(6), dims, b"x", element(9, b""))))


def empty_cell_beyond_numpy(tmp: Path) -> Path:
    return write_v7(tmp, compressed(raw_matrix(int_flags(1), int_dims(2**31 - 1, 2**31 - 1, 0),
                                               b"c")))


def field_name_length_nan(tmp: Path) -> Path:
    return write_v7(tmp, compressed(raw_matrix(int_flags(2), int_dims(1, 1), b"s", doubles(NAN),
                                               element(1, b"a" + b"\0" * 7))))


def field_names_nan(tmp: Path) -> Path:
    return write_v7(tmp, compressed(raw_matrix(int_flags(2), int_dims(1, 1), b"s", int_dims(8),
                                               doubles(NAN))))


def sparse_indices_nan(tmp: Path) -> Path:
    flags = element(6, struct.pack("<II", 5, 1))
    return write_v7(tmp, compressed(raw_matrix(flags, int_dims(2, 1), b"sp", doubles(0),
                                               doubles(0, NAN), doubles(1.0))))


def sparse_indices_negative(tmp: Path) -> Path:
    flags = element(6, struct.pack("<II", 5, 1))
    return write_v7(tmp, compressed(raw_matrix(flags, int_dims(2, 1), b"sp", int_dims(0),
                                               int_dims(0, -5), doubles(1.0))))


def _table(tmp: Path, nrows: float) -> Path:
    data = np.empty((1, 1), dtype=object)
    data[0, 0] = np.ones((2, 1))
    names = np.empty((1, 1), dtype=object)
    names[0, 0] = "a"
    path = tmp / "table.mat"
    write(path, {"t": MatObject("table", {"data": data, "varnames": names,
                                          "nrows": np.array([[nrows]])})})
    return path


def _table_in_itself(tmp: Path, fmt: str) -> Path:
    table = MatObject("table", {})
    data = np.empty((1, 1), dtype=object)
    data[0, 0] = table
    table.props.update(data=data, varnames=np.array([["a"]], dtype=object))
    path = tmp / f"self_{fmt}.mat"
    write(path, {"t": table}, format=fmt)  # type: ignore[arg-type]
    return path


def table_in_itself_v7(tmp: Path) -> Path:
    return _table_in_itself(tmp, "v7")


def table_in_itself_v73(tmp: Path) -> Path:
    return _table_in_itself(tmp, "v7.3")


def table_rows_nan(tmp: Path) -> Path:
    return _table(tmp, NAN)


def table_rows_inf(tmp: Path) -> Path:
    return _table(tmp, INF)


def enumeration_struct(tmp: Path) -> Path:
    """An enumeration's struct (the tag is the reference marker) whose other fields are junk."""
    path = tmp / "enum.mat"
    write(path, {"s": Struct(**{ENUMERATION_TAG: np.array([[0xDD000000]], dtype=np.uint32)},
                             ClassName=Struct(a=1.0), ValueNames=np.zeros((1, 1)),
                             ValueIndices=np.zeros((1, 1)))})
    return path


def _nested_objects(tmp: Path, fmt: str) -> Path:
    obj = MatObject("Leaf", {"v": np.ones((1, 1))})
    for _ in range(170):
        obj = MatObject("Node", {"child": obj})
    path = tmp / f"nested_{fmt}.mat"
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(5000)  # the writer recurses too; it is not what is tested here
    try:
        write(path, {"o": obj}, format=fmt)  # type: ignore[arg-type]
    finally:
        sys.setrecursionlimit(limit)
    return path


def nested_objects_v7(tmp: Path) -> Path:
    return _nested_objects(tmp, "v7")


def nested_objects_v73(tmp: Path) -> Path:
    return _nested_objects(tmp, "v7.3")


def _h5(tmp: Path, build: Callable[[h5py.File], None]) -> Path:
    path = tmp / "hostile73.mat"
    with h5py.File(path, "w") as f:
        build(f)
    return path


def v73_sparse_rows_nan(tmp: Path) -> Path:
    def build(f: h5py.File) -> None:
        g = f.create_group("sp")
        g.attrs["MATLAB_class"] = np.bytes_("double")
        g.attrs["MATLAB_sparse"] = NAN
        g["jc"] = np.array([0, 1], dtype=np.uint64)
        g["ir"] = np.array([0], dtype=np.uint64)
        g["data"] = np.array([1.0])
    return _h5(tmp, build)


def v73_sparse_indices_inf(tmp: Path) -> Path:
    def build(f: h5py.File) -> None:
        g = f.create_group("sp")
        g.attrs["MATLAB_class"] = np.bytes_("double")
        g.attrs["MATLAB_sparse"] = np.uint64(2)
        g["jc"] = np.array([0, INF])
        g["ir"] = np.array([0.0])
        g["data"] = np.array([1.0])
    return _h5(tmp, build)


def v73_empty_dims_inf(tmp: Path) -> Path:
    def build(f: h5py.File) -> None:
        ds = f.create_dataset("e", data=np.array([INF, 0.0]))
        ds.attrs["MATLAB_class"] = np.bytes_("double")
        ds.attrs["MATLAB_empty"] = np.uint8(1)
    return _h5(tmp, build)


def v73_empty_beyond_numpy(tmp: Path) -> Path:
    def build(f: h5py.File) -> None:
        ds = f.create_dataset("e", data=np.array([2**31 - 1, 2**31 - 1, 0], dtype=np.uint64))
        ds.attrs["MATLAB_class"] = np.bytes_("double")
        ds.attrs["MATLAB_empty"] = np.uint8(1)
    return _h5(tmp, build)


def v73_decode_flag_nan(tmp: Path) -> Path:
    def build(f: h5py.File) -> None:
        ds = f.create_dataset("o", data=np.array([[1]], dtype=np.uint32))
        ds.attrs["MATLAB_class"] = np.bytes_("Thing")
        ds.attrs["MATLAB_object_decode"] = NAN
    return _h5(tmp, build)


CASES: dict[Callable[[Path], Path], str] = {
    flags_nan: "array flags stored as float64",
    flags_inf: "array flags stored as float64",
    dims_nan: "dimensions stored as float64",
    dims_inf: "dimensions stored as float64",
    too_many_dims: f"{MAX_DIMS + 1} dimensions",
    empty_beyond_numpy: r"dimensions \(2147483647, 2147483647, 0\) are beyond",
    empty_cell_beyond_numpy: r"dimensions \(2147483647, 2147483647, 0\) are beyond",
    name_with_newline: r"array of size \(2, 2\) holds 1 values \(at variable at byte 128 > x\\ny\)",
    field_name_length_nan: "field-name length stored as float64",
    field_names_nan: "struct field names stored as float64",
    sparse_indices_nan: "sparse row indices stored as float64",
    sparse_indices_negative: "sparse array index data is inconsistent",
    table_rows_nan: "malformed table",
    table_rows_inf: "malformed table",
    table_in_itself_v7: "a table value contains itself",
    table_in_itself_v73: "a table value contains itself",
    enumeration_struct: "malformed enumeration",
    nested_objects_v7: "objects nested deeper than 64 levels",
    nested_objects_v73: "objects nested deeper than 64 levels",
    v73_sparse_rows_nan: "MATLAB_sparse",
    v73_sparse_indices_inf: "sparse array indices stored as non-integers",
    v73_empty_dims_inf: "dimensions stored as float64",
    v73_empty_beyond_numpy: r"dimensions \(2147483647, 2147483647, 0\), beyond MATLAB's",
    v73_decode_flag_nan: "MATLAB_object_decode",
}


@pytest.mark.parametrize("case", list(CASES), ids=lambda c: c.__name__)
def test_is_a_matfile_error_naming_file_and_place(tmp_path: Path,
                                                  case: Callable[[Path], Path]) -> None:
    path = case(tmp_path)
    with pytest.raises(matport.MatFileError, match=CASES[case]) as info:
        matport.read(path)
    assert str(path) in str(info.value) and info.value.where


def test_a_plain_struct_with_an_enumeration_field_name_reads(tmp_path: Path) -> None:
    path = tmp_path / "s.mat"
    write(path, {"s": Struct(**{ENUMERATION_TAG: Struct(a=1.0)}, ClassName=Struct())})
    s = matport.read(path)["s"]
    assert isinstance(s, Struct) and list(s) == [ENUMERATION_TAG, "ClassName"]


def test_objects_nested_within_the_limit_read(tmp_path: Path) -> None:
    obj = MatObject("Leaf", {"v": np.ones((1, 1))})
    for _ in range(60):
        obj = MatObject("Node", {"child": obj})
    for fmt in ("v7", "v7.3"):
        path = tmp_path / f"ok_{fmt}.mat"
        write(path, {"o": obj}, format=fmt)  # type: ignore[arg-type]
        value = matport.read(path)["o"]
        for _ in range(60):
            value = value.props["child"]
        assert value.class_name == "Leaf"


@pytest.mark.parametrize("case", [flags_nan, too_many_dims, table_rows_inf, nested_objects_v7,
                                  v73_sparse_rows_nan, name_with_newline],
                         ids=lambda c: c.__name__)
def test_inspect_prints_one_line_and_exits_2(tmp_path: Path, case: Callable[[Path], Path]) -> None:
    path = case(tmp_path)
    done = subprocess.run([sys.executable, "-m", "matport", "inspect", str(path)],
                          capture_output=True, text=True, cwd=ROOT, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 2, done.stderr
    assert done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and str(path) in lines[0], done.stderr
