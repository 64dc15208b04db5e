"""v7 variables inflate alike through ISA-L (``isal``, when installed) and the standard zlib
fallback: same values, same refusals."""

from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np
import pytest

import matport
from matport.mat import inflate
from tests.support.paths import FIXTURES
from tests.support.value_compare import assert_values_equal


@pytest.fixture(params=["installed", "zlib"])
def engine(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "zlib":
        monkeypatch.setattr(inflate, "_impl", zlib)
    return str(request.param)


def test_engines_read_the_same_values(monkeypatch: pytest.MonkeyPatch) -> None:
    path = FIXTURES / "dag_net_v7.mat"
    installed = matport.read(path)
    monkeypatch.setattr(inflate, "_impl", zlib)
    fallback = matport.read(path)
    assert list(fallback) == list(installed)
    for name in installed:
        assert_values_equal(fallback[name], installed[name], name)


def test_engines_refuse_corrupt_streams(engine: str, tmp_path: Path) -> None:
    from tests.test_bad_input import element, matrix, write

    inner = matrix(6, (1, 4), b"x", element(9, np.arange(4.0).tobytes()))
    packed = bytearray(zlib.compress(inner))
    packed[len(packed) // 2] ^= 0xFF
    path = write(tmp_path, b"\x0f\0\0\0" + len(packed).to_bytes(4, "little") + bytes(packed))
    with pytest.raises(matport.MatFileError, match="corrupt compressed data|inflates|truncated"):
        matport.read(path)
