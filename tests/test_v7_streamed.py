"""Large v7 elements are inflated (or read, when stored uncompressed) as they are parsed
(matport/mat/streamed.py): every v7 fixture and corpus file, compressed and stored, reads alike
with each element streamed (``arena.MAPPED`` lowered to 1 byte; with ``v5.WHOLE`` at 0 even its
smallest parts are read where they are produced) and whole, an array's values go straight into
its own memory, and a stream that ends early, runs long, is cut or corrupt inside a large array
is refused."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest

import matport
from matport.mat import MatFile, arena, streamed, v5
from matport.mat.arena import Arena
from tests.support.paths import CORPUS, FIXTURES
from tests.support.value_compare import assert_values_equal
from tests.test_bad_input import compressed, element, matrix, write

pytestmark = pytest.mark.skipif(not arena.RELEASABLE,
                                reason="elements stream only where arena pages can be released")

V7_FILES = sorted(p for p in [*FIXTURES.glob("*.mat"), *CORPUS.glob("*/*.mat")]
                  if p.read_bytes()[:10] == b"MATLAB 5.0")
BIG = np.arange(1 << 18, dtype="<f8").reshape(512, 512, order="F") / 7  # 2 MiB: streamed as is


def read_or_error(path: Path) -> object:
    try:
        return matport.read(path)
    except matport.MatFileError as exc:
        return type(exc)


def stream_everything(monkeypatch: pytest.MonkeyPatch, whole_parts: int) -> None:
    monkeypatch.setattr(arena, "MAPPED", 1)
    monkeypatch.setattr(v5, "WHOLE", whole_parts)


def uncompressed(raw: bytes) -> bytes:
    """A little-endian v7 file with its compressed elements stored inflated (as MATLAB's
    ``-nocompression`` saves them), its subsystem offset moved with them."""
    (subsystem,) = struct.unpack_from("<Q", raw, 116)
    out, pos = [raw[:128]], 128
    moved = 0
    while pos + 8 <= len(raw):
        mtype, nbytes = struct.unpack_from("<II", raw, pos)
        element = raw[pos : pos + 8 + nbytes]
        if mtype == 15:
            element = zlib.decompressobj().decompress(element[8:])
            element += b"\0" * (-len(element) % 8)
        if pos == subsystem:
            moved = sum(map(len, out))
        out.append(element)
        pos += 8 + nbytes
    head = bytearray(out[0])
    if moved:
        head[116:124] = struct.pack("<Q", moved)
    return bytes(head) + b"".join(out[1:])


@pytest.mark.parametrize("stored", [False, True], ids=["compressed", "stored"])
@pytest.mark.parametrize("whole_parts", [0, v5.WHOLE])
@pytest.mark.parametrize("path", V7_FILES, ids=lambda p: p.name)
def test_streamed_and_whole_elements_read_alike(path: Path, whole_parts: int, stored: bool,
                                                tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    whole = read_or_error(path)
    if stored:
        raw = path.read_bytes()
        if raw[126:128] != b"IM" or isinstance(whole, type):
            pytest.skip("a little-endian file that reads")
        path = tmp_path / path.name
        path.write_bytes(uncompressed(raw))
    stream_everything(monkeypatch, whole_parts)
    got = read_or_error(path)
    if isinstance(whole, type):
        assert got is whole
        return
    assert isinstance(got, MatFile) and isinstance(whole, MatFile)
    assert list(got) == list(whole)
    for name in whole:
        assert_values_equal(got[name], whole[name], name)


def big_matrix(name: bytes = b"x") -> bytes:
    return matrix(6, BIG.shape, name, element(9, BIG.tobytes(order="F")))


def test_a_large_array_is_inflated_into_its_own_memory(tmp_path: Path) -> None:
    path = write(tmp_path, compressed(big_matrix()))
    got = matport.read(path)["x"]
    np.testing.assert_array_equal(got, BIG)
    assert got.base is None and got.flags.f_contiguous and got.flags.writeable


def test_a_stream_ending_inside_an_array_is_refused(tmp_path: Path) -> None:
    inner = big_matrix()
    packed = zlib.compress(inner[: len(inner) // 2])  # a whole zlib stream, half the element
    path = write(tmp_path, struct.pack("<II", 15, len(packed)) + packed)
    with pytest.raises(matport.MatFileError, match="compressed data ends after"):
        matport.read(path)


def test_a_stream_beyond_its_element_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, compressed(big_matrix() + b"\0" * 4096))
    with pytest.raises(matport.MatFileError, match="inflates beyond"):
        matport.read(path)


def test_a_cut_stream_is_refused(tmp_path: Path) -> None:
    packed = zlib.compress(big_matrix())[:100_000]
    path = write(tmp_path, struct.pack("<II", 15, len(packed)) + packed)
    with pytest.raises(matport.MatFileError, match="compressed data is truncated"):
        matport.read(path)


def test_a_corrupt_stream_is_refused(tmp_path: Path) -> None:
    packed = bytearray(zlib.compress(big_matrix()))
    packed[len(packed) // 2] ^= 0xFF
    path = write(tmp_path, struct.pack("<II", 15, len(packed)) + bytes(packed))
    with pytest.raises(matport.MatFileError, match="corrupt compressed data|inflates|ends"):
        matport.read(path)


def test_the_element_after_a_streamed_one_reads(tmp_path: Path) -> None:
    """A streamed element leaves the file at the next one, past bytes after its zlib stream."""
    packed = zlib.compress(big_matrix()) + b"\0" * 24  # trailing bytes inside the element
    small = matrix(6, (1, 2), b"z", element(9, np.array([1.0, 2.0]).tobytes()))
    path = write(tmp_path, struct.pack("<II", 15, len(packed)) + packed + compressed(small))
    got = matport.read(path)
    np.testing.assert_array_equal(got["x"], BIG)
    np.testing.assert_array_equal(got["z"], [[1.0, 2.0]])


def test_bytes_taken_past_the_arena_are_not_read_again() -> None:
    data = bytes(range(256)) * 64
    src = streamed.Inflated(io.BytesIO(zlib.compress(data)), len(zlib.compress(data)), "f", "v")
    src.start(lambda head: Arena(len(data)))
    out = bytearray(1000)
    src.take(5000, memoryview(out))
    assert bytes(out) == data[5000:6000]
    src.need(6000, 9000)
    with pytest.raises(matport.MatFileError, match="overlap"):
        src.need(5500, 5600)


def test_a_subsystem_stored_in_another_layout_reads_alike(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """A subsystem MATLAB would store as uint8 values stored as int8: converted, then parsed
    from memory (not where it is inflated), streamed or not."""
    raw = (FIXTURES / "dag_net_v7.mat").read_bytes()
    (offset,) = struct.unpack_from("<Q", raw, 116)
    mtype, nbytes = struct.unpack_from("<II", raw, offset)
    inner = bytearray(zlib.decompress(raw[offset + 8 : offset + 8 + nbytes]))
    assert mtype == 15 and struct.unpack_from("<II", inner, 48)[0] == 2  # uint8 values
    inner[48:52] = struct.pack("<I", 1)
    packed = zlib.compress(bytes(inner))
    path = tmp_path / "int8_subsystem.mat"
    path.write_bytes(raw[:offset] + struct.pack("<II", 15, len(packed)) + packed)
    want = matport.read(FIXTURES / "dag_net_v7.mat")
    whole = matport.read(path)
    stream_everything(monkeypatch, 0)
    got = matport.read(path)
    for name in want:
        assert_values_equal(whole[name], want[name], name)
        assert_values_equal(got[name], want[name], name)
