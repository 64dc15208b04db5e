"""Deflated, chunked v7.3 datasets inflated by matport (matport.mat.h5chunks): the values HDF5
would give, edge chunks included; chunks HDF5 must handle are left to it; a chunk that does not
inflate to exactly its size is refused."""

from __future__ import annotations

import zlib
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest

from matport.errors import MatFileError
from matport.mat import read
from tests.support.v73_files import v73_file

RNG = np.random.default_rng(7)


def _dataset(f: h5py.File, name: str, data: np.ndarray, cls: str, **options: Any) -> None:
    ds = f.create_dataset(name, data=data, **options)
    ds.attrs["MATLAB_class"] = np.bytes_(cls)


@pytest.mark.parametrize(("dtype", "cls"), [("<f4", "single"), ("<f8", "double"),
                                            ("<i2", "int16"), ("u1", "uint8")])
def test_edge_chunks_read_as_hdf5_gives_them(tmp_path: Path, dtype: str, cls: str) -> None:
    # 37 x 300 in chunks of 16 x 128: the last chunk along each axis is partly outside
    data = (RNG.standard_normal((37, 300)) * 100).astype(dtype)
    path = v73_file(tmp_path / "edges.mat", lambda f: _dataset(
        f, "w", data, cls, chunks=(16, 128), compression="gzip"))
    got = read(path)["w"]
    assert got.dtype == np.dtype(dtype) and got.shape == (300, 37)
    np.testing.assert_array_equal(got, data.T)


@pytest.mark.parametrize("options", [{"shuffle": True}, {"fletcher32": True}])
def test_other_pipelines_are_left_to_hdf5(tmp_path: Path, options: dict[str, bool]) -> None:
    data = RNG.standard_normal((64, 64))
    path = v73_file(tmp_path / "pipeline.mat", lambda f: _dataset(
        f, "w", data, "double", chunks=(32, 32), compression="gzip", **options))
    np.testing.assert_array_equal(read(path)["w"], data.T)


def test_a_chunk_never_written_reads_as_the_fill_value(tmp_path: Path) -> None:
    def build(f: h5py.File) -> None:
        ds = f.create_dataset("w", (64, 64), dtype="f8", chunks=(32, 32), compression="gzip")
        ds.attrs["MATLAB_class"] = np.bytes_("double")
        ds[:32, :] = 1.5  # the lower two chunks are never written

    got = read(v73_file(tmp_path / "sparse_chunks.mat", build))["w"]
    expected = np.zeros((64, 64))
    expected[:32, :] = 1.5
    np.testing.assert_array_equal(got, expected.T)


@pytest.mark.parametrize(("stream", "message"), [
    (b"not a deflate stream at all", r"chunk at \(0, 32\) is not a deflate stream"),
    (zlib.compress(bytes(100)), r"chunk at \(0, 32\) does not inflate to its 8192 bytes"),
    (zlib.compress(bytes(1 << 24)), r"chunk at \(0, 32\) does not inflate to its 8192 bytes"),
    (zlib.compress(bytes(8192))[:-6], r"chunk at \(0, 32\) does not inflate to its 8192 bytes"),
])
def test_a_chunk_that_does_not_inflate_to_its_size_is_refused(tmp_path: Path, stream: bytes,
                                                              message: str) -> None:
    def build(f: h5py.File) -> None:
        ds = f.create_dataset("w", (32, 64), dtype="f8", chunks=(32, 32), compression="gzip")
        ds.attrs["MATLAB_class"] = np.bytes_("double")
        ds[:, :32] = 2.0
        ds.id.write_direct_chunk((0, 32), stream)

    with pytest.raises(MatFileError, match=message) as info:
        read(v73_file(tmp_path / "bad_chunk.mat", build))
    assert info.value.where == "/w"


@pytest.mark.parametrize("unusual", ["exponent bias", "precision"])
def test_a_number_of_unusual_layout_is_refused(tmp_path: Path, unusual: str) -> None:
    """Numbers are read as stored (their bytes taken as their value), so a layout MATLAB never
    writes, which HDF5 would convert, is refused."""
    stored = h5py.h5t.IEEE_F32LE.copy() if unusual == "exponent bias" else \
        h5py.h5t.STD_I32LE.copy()
    if unusual == "exponent bias":
        stored.set_ebias(100)
    else:
        stored.set_precision(24)

    def build(f: h5py.File) -> None:
        ds = h5py.Dataset(h5py.h5d.create(f.id, b"w", stored, h5py.h5s.create_simple((4, 4))))
        ds.attrs["MATLAB_class"] = np.bytes_("single" if unusual == "exponent bias" else "int32")

    with pytest.raises(MatFileError, match="is stored as a 4-byte number of unusual layout"):
        read(v73_file(tmp_path / "unusual.mat", build))


def test_a_chunk_claiming_more_bytes_than_the_file_is_refused_before_it_is_read(
        tmp_path: Path) -> None:
    stream = zlib.compress(np.arange(1024, dtype="<f8").tobytes())
    path = v73_file(tmp_path / "huge_chunk.mat", lambda f: _dataset(
        f, "w", np.zeros((1, 1024)), "double", chunks=(1, 1024), compression="gzip"))
    with h5py.File(path, "r+") as f:
        f["w"].id.write_direct_chunk((0, 0), stream)
    # the chunk's key in HDF5's version-1 B-tree: its stored size, filter mask, offsets (0, 0, 0)
    key = np.array([len(stream), 0], "<u4").tobytes() + bytes(24)
    raw = bytearray(path.read_bytes())
    assert raw.count(key) == 1
    at = raw.index(key)
    raw[at:at + 4] = np.array([1 << 31], "<u4").tobytes()  # 2 GiB, in a file of a few KB
    path.write_bytes(bytes(raw))
    with pytest.raises(MatFileError, match=r"stores 2147483648 bytes, more than the file's"):
        read(path)
