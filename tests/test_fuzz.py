"""Bad input: thousands of mutated real files (bit flips, truncations, oversized length fields,
also inside the compressed variables) give only matport errors, each within a second."""

from __future__ import annotations

import random
import signal
import struct
import time
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest

import matport
from tests.support.paths import CORPUS, FIXTURES

ITERATIONS = 2500
MAX_SECONDS = 1.0


def seed_files() -> list[Path]:
    files = [p for p in sorted(CORPUS.glob("*/*.mat")) + sorted(FIXTURES.glob("*.mat"))
             if p.stat().st_size < 300_000 and p.read_bytes()[126:128] == b"IM"]
    return files


def compressed_elements(data: bytes) -> Iterator[tuple[int, int]]:
    """(start, end) of each top-level miCOMPRESSED element."""
    pos = 128
    while pos + 8 <= len(data):
        mtype, nbytes = struct.unpack_from("<II", data, pos)
        end = pos + 8 + nbytes
        if mtype == 15:
            yield pos, end
        pos = end if mtype == 15 else pos + 8 + ((nbytes + 7) & ~7)


def mutate_bytes(buf: bytearray, rng: random.Random) -> None:
    kind = rng.randrange(3)
    if kind == 0:  # bit flips
        for _ in range(rng.randint(1, 8)):
            i = rng.randrange(len(buf))
            buf[i] ^= 1 << rng.randrange(8)
    elif kind == 1:  # an oversized or negative length field at a word boundary
        i = rng.randrange(0, max(1, len(buf) - 4)) & ~3
        value = rng.choice([0xFFFFFFFF, 0x7FFFFFF8, 0x10000000, rng.randrange(1 << 32)])
        buf[i : i + 4] = struct.pack("<I", value)
    else:  # a dimension or count made huge
        i = rng.randrange(0, max(1, len(buf) - 8)) & ~7
        buf[i : i + 8] = struct.pack("<II", 5, 0x7FFFFFFF)


def mutate(data: bytes, rng: random.Random) -> bytes:
    choice = rng.randrange(4)
    if choice == 0:
        return data[: rng.randrange(len(data))]
    elements = list(compressed_elements(data))
    if choice >= 2 and elements:
        # mutate inside a variable's inflated bytes, then recompress it validly
        start, end = rng.choice(elements)
        try:
            inner = bytearray(zlib.decompress(data[start + 8 : end]))
        except zlib.error:  # a seed that is corrupt already
            inner = bytearray(data[start + 8 : end])
        mutate_bytes(inner, rng)
        packed = zlib.compress(bytes(inner), 1)
        return data[:start] + struct.pack("<II", 15, len(packed)) + packed + data[end:]
    out = bytearray(data)
    mutate_bytes(out, rng)
    return bytes(out)


class _Timeout(BaseException):  # not an Exception: library code must not swallow it
    pass


def _alarm(signum: int, frame: object) -> None:
    raise _Timeout


def test_mutated_files_raise_only_matport_errors_quickly(tmp_path: Path) -> None:
    seeds = seed_files()
    if not seeds:
        pytest.skip("no seed files (corpus and fixtures absent)")
    rng = random.Random(1234)
    originals = {p: p.read_bytes() for p in seeds}
    target = tmp_path / "mutant.mat"
    outcomes = {"read": 0, "error": 0}
    old = signal.signal(signal.SIGALRM, _alarm)
    try:
        for i in range(ITERATIONS):
            seed = rng.choice(seeds)
            target.write_bytes(mutate(originals[seed], rng))
            signal.alarm(10)
            start = time.perf_counter()
            try:
                f = matport.read(target)
                repr(f)
                outcomes["read"] += 1
            except matport.MatportError as exc:
                assert str(target) in str(exc), f"error does not name the file: {exc}"
                outcomes["error"] += 1
            except _Timeout:
                pytest.fail(f"iteration {i} (from {seed.name}) hung")
            finally:
                signal.alarm(0)
            took = time.perf_counter() - start
            assert took < MAX_SECONDS, f"iteration {i} (from {seed.name}) took {took:.2f}s"
    finally:
        signal.signal(signal.SIGALRM, old)
    assert outcomes["error"] > ITERATIONS // 4, outcomes
