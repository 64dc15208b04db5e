"""The floors the benchmarks measure matport against: the least work that reading a file takes."""

from __future__ import annotations

import statistics
import struct
import time
import zlib
from pathlib import Path
from typing import Any


def inflate_v7(path: str | Path) -> int:
    """Read a v7 MAT-file and inflate every compressed top-level element (no copies beyond
    the file's bytes and each inflated element). Returns the inflated size."""
    data = memoryview(Path(path).read_bytes())
    pos, total = 128, 0
    while pos + 8 <= len(data):
        kind, size = struct.unpack_from("<II", data, pos)
        if kind == 15:  # miCOMPRESSED
            total += len(zlib.decompress(data[pos + 8 : pos + 8 + size]))
        pos += 8 + size + (-size % 8 if kind != 15 else 0)
    return total


def h5_read_all(path: str | Path) -> int:
    """h5py reading every dataset of a v7.3 file. Returns the bytes read."""
    import h5py

    total = 0

    def visit(_name: str, obj: object) -> None:
        nonlocal total
        if isinstance(obj, h5py.Dataset):
            total += obj[()].nbytes

    with h5py.File(path, "r") as f:
        f.visititems(visit)
    return total


def interleaved_inference(ours: Any, stock: Any, x: Any, repeat: int) -> tuple[float, float]:
    """Median seconds of ``ours(x)`` and ``stock(x)``, one warm-up call each, then ``repeat``
    rounds alternating the two (so that machine noise hits both alike)."""
    import torch

    times: dict[str, list[float]] = {"ours": [], "stock": []}
    with torch.inference_mode():
        for m in (ours, stock):
            m(x)
        for _ in range(repeat):
            for name, m in (("ours", ours), ("stock", stock)):
                t = time.perf_counter()
                m(x)
                times[name].append(time.perf_counter() - t)
    return statistics.median(times["ours"]), statistics.median(times["stock"])
