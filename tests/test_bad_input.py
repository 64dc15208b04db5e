"""Hostile v7 files crafted byte by byte: each gives a MatFileError naming the file and the
problem, without a hang or an allocation the file does not justify."""

from __future__ import annotations

import struct
import tracemalloc
import zlib
from pathlib import Path

import numpy as np
import pytest

import matport
from matport.network import read_network
from tests.support.paths import FIXTURES

HEADER = b"MATLAB 5.0 MAT-file, Platform: GLNXA64, Created on: test".ljust(116, b" ")
HEADER += b"\0" * 8 + struct.pack("<H", 0x0100) + b"IM"


def element(mtype: int, data: bytes) -> bytes:
    return struct.pack("<II", mtype, len(data)) + data + b"\0" * (-len(data) % 8)


def matrix(mclass: int, dims: tuple[int, ...], name: bytes, *body: bytes) -> bytes:
    flags = element(6, struct.pack("<II", mclass, 0))
    dims_el = element(5, struct.pack(f"<{len(dims)}i", *dims))
    return element(14, flags + dims_el + element(1, name) + b"".join(body))


def compressed(inner: bytes) -> bytes:
    packed = zlib.compress(inner)
    return struct.pack("<II", 15, len(packed)) + packed


def write(tmp_path: Path, body: bytes) -> Path:
    path = tmp_path / "hostile.mat"
    path.write_bytes(HEADER + body)
    return path


def read_fails(path: Path, match: str) -> None:
    with pytest.raises(matport.MatFileError, match=match) as info:
        matport.read(path)
    assert str(path) in str(info.value)


def test_a_sane_crafted_file_reads(tmp_path: Path) -> None:
    """The crafting helpers themselves make valid files (so the failures below are real)."""
    data = element(9, np.arange(6, dtype="<f8").tobytes())
    path = write(tmp_path, compressed(matrix(6, (2, 3), b"x", data)))
    np.testing.assert_array_equal(matport.read(path)["x"], np.arange(6.0).reshape(2, 3, order="F"))


def test_decompression_bomb_is_refused_without_inflating_it(tmp_path: Path) -> None:
    # 200 MB of zeros declared as an 8-byte array: the stream inflates beyond what it declares
    bomb = zlib.compress(matrix(6, (1, 1), b"x", element(9, b"\0" * 8))[:8] + b"\0" * 2 * 10**8, 9)
    path = write(tmp_path, struct.pack("<II", 15, len(bomb)) + bomb)
    del bomb
    tracemalloc.start()
    try:
        read_fails(path, "inflates beyond|decompression bomb")
        peak_mb = tracemalloc.get_traced_memory()[1] / 1e6
    finally:
        tracemalloc.stop()
    assert peak_mb < 50


def test_declared_inflated_size_beyond_any_zlib_ratio(tmp_path: Path) -> None:
    inner = struct.pack("<II", 14, 0x7FFFFFF0) + b"\0" * 64  # claims a 2 GB matrix
    path = write(tmp_path, compressed(inner))
    read_fails(path, "decompression bomb|declares")


def test_element_longer_than_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, struct.pack("<II", 14, 0x7FFFFFF0) + b"\0" * 32)
    read_fails(path, "declares 2147483632 bytes but only 32 remain")


def test_dimensions_beyond_the_data(tmp_path: Path) -> None:
    data = element(9, np.zeros(4).tobytes())
    path = write(tmp_path, compressed(matrix(6, (100000, 100000), b"x", data)))
    read_fails(path, r"array of size \(100000, 100000\) holds 4 values")


def test_cell_with_more_elements_than_bytes(tmp_path: Path) -> None:
    path = write(tmp_path, compressed(matrix(1, (2**30, 2**30), b"c")))
    read_fails(path, "cannot fit")


def test_deep_nesting_is_refused(tmp_path: Path) -> None:
    inner = matrix(6, (0, 0), b"")
    for _ in range(200):
        inner = matrix(1, (1, 1), b"", inner)
    path = write(tmp_path, compressed(inner))
    read_fails(path, "nested deeper")


def test_not_a_mat_file_and_empty_file(tmp_path: Path) -> None:
    read_fails(FIXTURES / "not_a_mat_file.mat", "not a MATLAB")
    empty = tmp_path / "empty.mat"
    empty.write_bytes(b"")
    read_fails(empty, "not a MATLAB")
    with pytest.raises(matport.MatFileError, match="cannot read file"):
        matport.read(tmp_path / "missing.mat")


def test_a_file_without_networks_says_so() -> None:
    with pytest.raises(matport.NetworkError, match="holds no network.*images"):
        read_network(FIXTURES / "no_network_v7.mat")
