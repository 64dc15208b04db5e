"""Memory: a file may not make matport allocate more than it can legitimately inflate to, in
total (one budget per file), nor through one attribute or variable-length read. Each refusal is
quick, costs little memory and says which limit refused and how to raise it."""

from __future__ import annotations

import os
import struct
import subprocess
import sys
import time
import tracemalloc
import zlib
from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np
import pytest

import matport
from matport.mat.limits import ENV_VARIABLE
from matport.mat.values import Struct
from matport.mat.writer import write
from tests.support.paths import FIXTURES
from tests.test_bad_input import element, matrix
from tests.test_bad_input import write as write_v7

ROOT = Path(__file__).resolve().parents[1]


def refused(call: Callable[[], object], match: str, max_mb: float = 20) -> str:
    """Run ``call``: it must raise MatFileError matching ``match`` within 2 s and with a Python
    allocation peak (numpy included) under ``max_mb``."""
    tracemalloc.start()
    start = time.perf_counter()
    try:
        with pytest.raises(matport.MatFileError, match=match) as info:
            call()
        peak_mb = tracemalloc.get_traced_memory()[1] / 1e6
    finally:
        tracemalloc.stop()
    assert time.perf_counter() - start < 2.0
    assert peak_mb < max_mb, peak_mb
    return str(info.value)


def test_fill_value_only_datasets_are_refused(tmp_path: Path) -> None:
    """80 datasets that store nothing but declare 36 MB each (2.9 GB in all) in a small file."""
    path = tmp_path / "fill.mat"
    with h5py.File(path, "w") as f:
        for i in range(80):
            ds = f.create_dataset(f"v{i:02d}", (4500, 1000), dtype="f8", chunks=(100, 100))
            ds.attrs["MATLAB_class"] = np.bytes_("double")
    assert path.stat().st_size < 200_000
    message = refused(lambda: matport.read(path), "declares 36000000 bytes but stores "
                      "only 0")
    assert str(path) in message and "/v00" in message


def test_the_budget_counts_every_dataset_of_the_file(tmp_path: Path) -> None:
    """Datasets that each store their data still share one budget; the message says how to
    raise it, and raising it reads the file."""
    path = tmp_path / "many.mat"
    write(path, {f"v{i}": np.zeros((256, 256)) for i in range(40)}, format="v7.3")
    message = refused(lambda: matport.read(path, max_bytes="4M"), "needs more than 4,194,304 "
                      "bytes of memory")
    assert "max_bytes" in message and ENV_VARIABLE in message
    assert len(matport.read(path, max_bytes="1G")) == 40


def test_the_environment_variable_sets_the_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_VARIABLE, "1K")
    refused(lambda: matport.read(FIXTURES / "dag_net_v7.mat"), "needs more than 1,024 bytes")
    monkeypatch.setenv(ENV_VARIABLE, "lots")
    with pytest.raises(matport.ArgumentError, match=ENV_VARIABLE):
        matport.read(FIXTURES / "dag_net_v7.mat")


def test_v7_bomb_through_type_conversion_is_refused(tmp_path: Path) -> None:
    """A double array stored as uint8 (as MATLAB does for small integers) widens 8 times: 40 MB
    of compressed-well zeros would become 320 MB of doubles, beyond the budget of the 40 kB
    file; the widening is refused before it is allocated."""
    n = 40_000_000
    inner = matrix(6, (n, 1), b"x", element(2, b"\0" * n))
    packed = zlib.compress(inner, 9)
    path = write_v7(tmp_path, struct.pack("<II", 15, len(packed)) + packed)
    del inner, packed
    message = refused(lambda: matport.read(path), "needs more than", max_mb=60)
    assert "variable at byte 128 > x" in message


def test_v7_budget_across_variables(tmp_path: Path) -> None:
    path = tmp_path / "v7.mat"
    write(path, {f"v{i}": np.ones((256, 256)) for i in range(20)})
    refused(lambda: matport.read(path, max_bytes=2_000_000), "needs more than 2,000,000")
    assert len(matport.read(path)) == 20


def _corrupt_vlen(tmp_path: Path) -> Path:
    """A struct's MATLAB_fields attribute whose first name's length says 4 GB (one changed
    byte: the length field of a variable-length element)."""
    path = tmp_path / "vlen.mat"
    write(path, {"s": Struct(abcdefg=np.ones((2, 2)), hij=np.zeros((1, 1)))}, format="v7.3")
    data = bytearray(path.read_bytes())
    heap = data.find(b"GCOL") - 512  # HDF5 addresses count from the end of the user block
    at = data.find(struct.pack("<IQI", 7, heap, 1))
    assert at > 0
    data[at + 3] = 0xFF
    path.write_bytes(bytes(data))
    return path


def test_corrupt_variable_length_attribute_is_refused_cheaply(tmp_path: Path) -> None:
    path = _corrupt_vlen(tmp_path)
    code = ("import resource, sys, matport\n"
            "base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
            "try:\n    matport.read(sys.argv[1])\nexcept matport.MatFileError as e:\n"
            "    print(e)\n"
            "print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) // 1024)\n")
    done = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True,
                          cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=60)
    message, grown_mb = done.stdout.strip().splitlines()
    assert str(path) in message and "/s" in message and "limit for one attribute" in message, done
    assert int(grown_mb) < 150, done.stdout


def test_values_built_from_the_file_are_bounded(tmp_path: Path) -> None:
    """Two million 8-byte empty matrices in a cell (16 MB inflated, a few kB on disk) would
    become 240 MB of Python objects; refused before they are built."""
    n = 2_000_000
    cell = matrix(1, (n, 1), b"c", struct.pack("<II", 14, 0) * n)
    packed = zlib.compress(cell, 9)
    path = write_v7(tmp_path, struct.pack("<II", 15, len(packed)) + packed)
    del cell, packed
    refused(lambda: matport.read(path), "values built from the file would take more than 8 "
            "times", max_mb=40)


def test_names_longer_than_any_matlab_writes_are_refused(tmp_path: Path) -> None:
    """A 20 MB variable name (placed in every error's location, once per nesting level)."""
    name = b"n" * 20_000_000
    packed = zlib.compress(matrix(6, (1, 1), name, element(9, b"\0" * 8)), 9)
    path = write_v7(tmp_path, struct.pack("<II", 15, len(packed)) + packed)
    refused(lambda: matport.read(path), "a name of 20000000 bytes", max_mb=60)


def test_struct_field_names_are_bounded(tmp_path: Path) -> None:
    """An empty struct array whose field-name block holds a million 2-byte names (2 MB
    inflated, 2 kB on disk) would become 150 MB of Python strings; refused before they are
    built."""
    names = element(5, struct.pack("<i", 2)) + element(1, b"ab" * 1_000_000)
    packed = zlib.compress(matrix(2, (0, 0), b"s", names), 9)
    path = write_v7(tmp_path, struct.pack("<II", 15, len(packed)) + packed)
    refused(lambda: matport.read(path), "values built from the file would take more than 8 "
            "times", max_mb=40)


def test_running_out_of_memory_within_the_budget_is_a_matfile_error(tmp_path: Path) -> None:
    """A 3 MB element claiming to inflate to 3 GiB is within its budget (zlib can inflate that
    much), but not within the process's address space: numpy's MemoryError becomes a
    MatFileError (fuzz seed 17, case 37545)."""
    claimed = 3 << 30
    head = struct.pack("<II", 14, claimed)  # a matrix element of 3 GiB...
    packed = zlib.compress(head + os.urandom(3 << 20), 1)  # ...whose stream holds 3 MB
    path = write_v7(tmp_path, struct.pack("<II", 15, len(packed)) + packed)
    code = ("import resource, sys, matport\n"
            "held = int(open('/proc/self/statm').read().split()[0]) * 4096\n"
            "resource.setrlimit(resource.RLIMIT_AS, (held + (1 << 30), resource.RLIM_INFINITY))\n"
            "try:\n    matport.read(sys.argv[1], max_bytes='8G')\n"
            "except matport.MatFileError as exc:\n    print(exc)\n    sys.exit(2)\n")
    root = Path(__file__).resolve().parents[1]
    done = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(root)}, cwd=root, timeout=120)
    assert done.returncode == 2, done.stderr
    assert str(path) in done.stdout and "could not be allocated" in done.stdout


def test_field_table_per_class_stays_bounded_and_exact() -> None:
    """The per-class table of what each field becomes lives for the process: a layer saving
    hundreds of made-up fields must not grow it without bound, and a learnable met after the
    table is full is still restored to the dimensions its class's spec gives it."""
    from matport.mat.values import MatObject
    from matport.network import build

    class_name = "nnet.cnn.layer.Convolution2DLayer"
    build._field_kinds.cache_clear()
    weights = np.ones((3, 3, 2), np.float32)  # MATLAB dropped the trailing 1 (one filter)
    for start in (0, 400):  # two files, 400 other made-up names each
        props = {f"Junk{i}": np.zeros(1) for i in range(start, start + 400)}
        layer = build.build_layer(MatObject(class_name, {**props, "Name": "conv",
                                                         "Weights": weights}), "test.mat")
        assert layer.learnables["Weights"].shape == (3, 3, 2, 1)
        assert layer.params[f"Junk{start + 399}"] == 0
    assert len(build._field_kinds(class_name)) == build._KNOWN_FIELDS
