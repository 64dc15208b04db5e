"""The floors the benchmarks measure matport against (the least work that reading a file takes),
and the timings the benchmarks share: interleaved pairs, first call in a fresh process.

``python scripts/baselines.py --first-call FUNCTION PATH [--imports MODULE ...]`` is the fresh
process :func:`first_call` runs.
"""

from __future__ import annotations

import argparse
import functools
import json
import statistics
import struct
import subprocess
import sys
import time
import zlib
from collections.abc import Callable
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


def paired(a: Callable[[], object], b: Callable[[], object], repeat: int,
           calls: int = 1) -> tuple[float, float, float]:
    """Median seconds of ``a`` and of ``b`` (``calls`` calls a round) and the median of the
    per-round ratios a / b, rounds interleaved after one warm-up call of each."""
    ta, tb = [], []
    a(), b()
    for _ in range(repeat):
        for fn, out in ((a, ta), (b, tb)):
            start = time.perf_counter()
            for _ in range(calls):
                fn()
            out.append((time.perf_counter() - start) / calls)
    return (statistics.median(ta), statistics.median(tb),
            statistics.median([x / y for x, y in zip(ta, tb, strict=True)]))


def first_call(function: str, path: str | Path, variable: str | None = None,
               imports: tuple[str, ...] = ("torch",), warm: int = 3,
               pretouch_mb: int = 0) -> dict[str, float]:
    """``matport.<function>(path, variable)`` in a fresh process: the seconds of the first call
    (with what matport imports and builds on first use) and the best of ``warm`` calls after it.

    On a virtual machine whose guest hands freed memory back to the hypervisor (virtio-balloon
    free page reporting, as on the development machines), a fresh process pays the hypervisor
    for every page it touches first: about 7 ms a MB there, against about 0.15 ms a MB for
    memory the guest still holds. A first call touching 200 MB then costs ~1.4 s more than a
    warm one whatever matport does. ``pretouch_mb`` separates the two: the process touches and
    frees that much memory before the first call (timed as ``pretouch_s``, not as the call), so
    that what remains of first - warm is the call's own first-use work.

    Args:
        function: a public function of matport (``load``, ``load_resnet50`` ...).
        path: the file.
        variable: the network's variable in the file, if it must be named.
        imports: what the caller's program imports before the first call (not timed as part
            of it; ``imports_s`` says how long they took).
        warm: the warm calls.
        pretouch_mb: memory touched and freed before the first call (0: none).

    Returns:
        ``{"first_s", "warm_s", "imports_s", "pretouch_s"}``.
    """
    _compile_matport()
    named = ["--variable", variable] if variable is not None else []
    out = subprocess.run([sys.executable, __file__, "--first-call", function, str(path), *named,
                          "--warm", str(warm), "--pretouch-mb", str(pretouch_mb),
                          "--imports", *imports],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def pretouch_mb(path: str | Path) -> int:
    """Memory to touch before a first call on ``path`` (:func:`first_call`): three times the
    file's size, at least 64 MB, above what reading and converting it keep at their peak."""
    return max(64, 3 * Path(path).stat().st_size >> 20)


@functools.cache
def _compile_matport() -> None:
    """Compile matport's modules to bytecode (``__pycache__`` beside them), as installing it
    does, so that a fresh process's first call loads them instead of compiling their source:
    where ``PYTHONDONTWRITEBYTECODE`` is set, as on the development machines, nothing else
    would, and every call measured as first paid about 0.1 s to compile the modules that it
    imports (the registry and family modules, the converters), which no installed copy does."""
    import matport

    subprocess.run([sys.executable, "-m", "compileall", "-q", str(Path(matport.__file__).parent)],
                   check=True, capture_output=True)


def against_read(function: str, path: str | Path, repeat: int) -> dict[str, float]:
    """``matport.<function>`` against ``matport.read`` of the same file, in this process,
    interleaved medians of ``repeat`` rounds: ``read_s``, ``load_s`` and their ``ratio``; the
    conversion of the network already read (``convert_s``, its ``convert_ratio`` to reading);
    ``first_minus_warm_s``: the first call in a fresh process (torch and torchvision imported
    by the caller) minus the best warm call there, ``pretouched_first_minus_warm_s`` the same in
    a process that touched memory first (:func:`first_call`; ``fresh_ms_per_mb`` is what that
    memory cost), and ``read_first_minus_warm_s`` the first difference for ``matport.read``.

    Args:
        function: ``load``, ``load_resnet50`` or ``load_torchvision``.
        path: the file.
        repeat: the rounds.

    Returns:
        The figures by name.
    """
    import matport
    from matport.network import read_network

    fn = getattr(matport, function)
    load_s, read_s, ratio = paired(lambda: fn(path), lambda: matport.read(path), repeat)
    network = read_network(path)
    convert_s, _, convert_ratio = paired(lambda: fn(network), lambda: matport.read(path), repeat)
    libraries = ("torch", "torchvision")
    first, read_first = (first_call(f, path, imports=libraries) for f in (function, "read"))
    mb = pretouch_mb(path)
    touched = first_call(function, path, imports=libraries, pretouch_mb=mb)
    return {"read_s": read_s, "load_s": load_s, "ratio": ratio, "convert_s": convert_s,
            "convert_ratio": convert_ratio,
            "first_minus_warm_s": first["first_s"] - first["warm_s"],
            "pretouched_first_minus_warm_s": touched["first_s"] - touched["warm_s"],
            "fresh_ms_per_mb": touched["pretouch_s"] * 1e3 / mb,
            "read_first_minus_warm_s": read_first["first_s"] - read_first["warm_s"]}


AGAINST_READ_HEADER = [
    "| file | `matport.read` s | load / read (<= 1.1) | conversion of the read network s "
    "| conversion / read | first call - warm call s (<= 0.2) | the same, memory touched "
    "first s | fresh memory ms / MB | first - warm for `matport.read` s |",
    "|---|---|---|---|---|---|---|---|---|",
]


def against_read_row(label: str, r: dict[str, float]) -> str:
    """One row under :data:`AGAINST_READ_HEADER`."""
    return (f"| {label} | {r['read_s']:.3f} | {r['ratio']:.2f} | {r['convert_s']:.3f} "
            f"| {r['convert_ratio']:.2f} | {r['first_minus_warm_s']:.3f} "
            f"| {r['pretouched_first_minus_warm_s']:.3f} | {r['fresh_ms_per_mb']:.2f} "
            f"| {r['read_first_minus_warm_s']:.3f} |")


def _first_call_child(function: str, path: str, variable: str | None, imports: list[str],
                      warm: int, pretouch_mb: int) -> None:
    import importlib

    import numpy as np

    start = time.perf_counter()
    for name in imports:
        importlib.import_module(name)
    import matport

    imports_s = time.perf_counter() - start
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(1)
    start = time.perf_counter()
    if pretouch_mb:
        np.ones(pretouch_mb << 20, np.uint8)  # touched, then freed at once
    pretouch_s = time.perf_counter() - start
    args = (path,) if variable is None else (path, variable)
    start = time.perf_counter()
    getattr(matport, function)(*args)  # imports matport's module for it on first use
    first_s = time.perf_counter() - start
    times = []
    for _ in range(warm):
        start = time.perf_counter()
        getattr(matport, function)(*args)
        times.append(time.perf_counter() - start)
    print(json.dumps({"first_s": first_s, "warm_s": min(times), "imports_s": imports_s,
                      "pretouch_s": pretouch_s}))


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--first-call", nargs=2, metavar=("FUNCTION", "PATH"), required=True)
    ap.add_argument("--variable")
    ap.add_argument("--imports", nargs="*", default=[])
    ap.add_argument("--warm", type=int, default=3)
    ap.add_argument("--pretouch-mb", type=int, default=0)
    cli = ap.parse_args()
    _first_call_child(*cli.first_call, cli.variable, cli.imports, cli.warm, cli.pretouch_mb)
