"""Numbers stored contiguous and unfiltered (MATLAB's small arrays) are read by matport straight
from the file (matport.mat.h5chunks.read_contiguous): the values HDF5 gives; data placed past the
file's end is refused."""

from __future__ import annotations

import struct
from pathlib import Path

import h5py
import numpy as np
import pytest

from matport.errors import MatFileError
from matport.mat import read
from tests.support.v73_files import v73_file


@pytest.mark.parametrize(("dtype", "cls"), [("<f8", "double"), ("<f4", "single"),
                                            ("<i4", "int32"), ("<u2", "uint16"),
                                            ("u1", "uint8"), ("<i8", "int64")])
def test_contiguous_numbers_read_as_hdf5_gives_them(tmp_path: Path, dtype: str,
                                                    cls: str) -> None:
    data = (np.arange(35).reshape(5, 7) * 3 - 20).astype(dtype)

    def build(f: h5py.File) -> None:
        ds = f.create_dataset("w", data=data)
        ds.attrs["MATLAB_class"] = np.bytes_(cls)
        assert ds.id.get_offset() is not None

    got = read(v73_file(tmp_path / "contiguous.mat", build))["w"]
    assert got.shape == (7, 5) and got.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(got, data.T)


def test_contiguous_data_past_the_end_of_the_file_is_refused(tmp_path: Path) -> None:
    def build(f: h5py.File) -> None:
        ds = f.create_dataset("w", data=np.arange(512, dtype="<f8")[None, :])
        ds.attrs["MATLAB_class"] = np.bytes_("double")

    path = v73_file(tmp_path / "past_end.mat", build)
    with h5py.File(path, "r") as f:
        address = f["w"].id.get_offset() - 512  # HDF5's addresses start after the user block
    raw = bytearray(path.read_bytes())
    layout = struct.pack("<QQ", address, 4096)  # the layout message: address, then size
    assert raw.count(layout) == 1
    at = raw.index(layout)
    raw[at:at + 8] = struct.pack("<Q", len(raw))
    path.write_bytes(bytes(raw))
    with pytest.raises(MatFileError, match="corrupt HDF5 data"):
        read(path)


def test_a_chunk_placed_past_the_end_of_the_file_is_refused_before_it_is_read(
        tmp_path: Path) -> None:
    def build(f: h5py.File) -> None:
        ds = f.create_dataset("w", data=np.arange(1024, dtype="<f8")[None, :], chunks=(1, 512),
                              compression="gzip")
        ds.attrs["MATLAB_class"] = np.bytes_("double")

    path = v73_file(tmp_path / "chunk_past_end.mat", build)
    with h5py.File(path, "r") as f:
        chunk = f["w"].id.get_chunk_info(1)
    assert chunk.chunk_offset == (0, 512)
    # the chunk's key in HDF5's version-1 B-tree (stored size, filter mask, offsets 0, 512, 0),
    # then the chunk's address (HDF5's addresses start after the user block)
    key = struct.pack("<II3Q", chunk.size, 0, 0, 512, 0)
    entry = key + struct.pack("<Q", chunk.byte_offset - 512)
    raw = bytearray(path.read_bytes())
    assert raw.count(entry) == 1
    at = raw.index(entry) + len(key)
    raw[at:at + 8] = struct.pack("<Q", len(raw))
    path.write_bytes(bytes(raw))
    with pytest.raises(MatFileError, match=r"chunk at \(0, 512\) lies past the file's end"):
        read(path)
