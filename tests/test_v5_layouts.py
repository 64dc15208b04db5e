"""The v7 reader takes MATLAB's usual element layout (uint32 flags, int32 dimensions, int32
field-name length packed into its tag, int8 names) in one step, and any other layout the format
allows by its general path: both read the same values, in either byte order."""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import matport
from matport.mat import v5
from matport.mat.values import Struct
from tests.test_bad_input import HEADER, compressed


def element(order: str, mtype: int, data: bytes) -> bytes:
    return struct.pack(order + "II", mtype, len(data)) + data + b"\0" * (-len(data) % 8)


def small(order: str, mtype: int, data: bytes) -> bytes:
    """A small data element: up to 4 bytes packed into the tag."""
    return struct.pack(order + "I", len(data) << 16 | mtype) + data.ljust(4, b"\0")


def header(order: str, mclass: int, dims: tuple[int, ...], name: bytes, usual: bool) -> bytes:
    if usual:
        return (element(order, 6, struct.pack(order + "II", mclass, 0))
                + element(order, 5, struct.pack(f"{order}{len(dims)}i", *dims))
                + (small(order, 1, name) if 0 < len(name) <= 4 else element(order, 1, name)))
    return (element(order, 5, struct.pack(order + "ii", mclass, 0))  # int32 flags
            + element(order, 2, bytes(dims))  # uint8 dimensions
            + element(order, 16, name))  # utf-8 name in a full tag


def variables(order: str, usual: bool) -> bytes:
    doubles = element(order, 9, struct.pack(order + "6d", *range(6)))
    x = element(order, 14, header(order, 6, (2, 3), b"x", usual) + doubles)
    small_ints = element(order, 2, bytes([1, 2]))  # a double array MATLAB stored as uint8
    field = element(order, 14, header(order, 6, (1, 2), b"", usual) + small_ints)
    if usual:
        names = small(order, 5, struct.pack(order + "i", 4)) + element(order, 1, b"ab\0\0")
    else:
        names = element(order, 6, struct.pack(order + "I", 4)) + element(order, 2, b"ab\0\0")
    s = element(order, 14, header(order, 2, (1, 1), b"struct", usual) + names + field)
    return compressed_in(order, x) + compressed_in(order, s)


def compressed_in(order: str, matrix: bytes) -> bytes:
    packed = compressed(matrix)
    return struct.pack(order + "II", *struct.unpack("<II", packed[:8])) + packed[8:]


def test_usual_and_general_layouts_read_alike(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    general: list[str] = []  # the elements read by the general path (one numpy array each)
    integers = v5._Reader.integers

    def spy(self: v5._Reader, *args: Any) -> Any:
        general.append(args[3])
        return integers(self, *args)

    monkeypatch.setattr(v5._Reader, "integers", spy)
    big_endian = HEADER[:124] + struct.pack(">H", 0x0100) + b"MI"
    expected_x = np.arange(6.0).reshape(2, 3, order="F")
    for order, head in (("<", HEADER), (">", big_endian)):
        for usual in (True, False):
            path = tmp_path / f"{'usual' if usual else 'general'}_{order == '<'}.mat"
            path.write_bytes(head + variables(order, usual))
            general.clear()
            m = matport.read(path)
            assert len(general) == (0 if usual else 8), general
            np.testing.assert_array_equal(m["x"], expected_x)
            assert m["x"].dtype == np.float64 and m["x"].flags.f_contiguous
            s = m["struct"]
            assert isinstance(s, Struct) and list(s) == ["ab"]
            np.testing.assert_array_equal(s["ab"], [[1.0, 2.0]])
            assert s["ab"].dtype == np.float64
