"""The scan for global heap collection signatures (matport.mat.h5heap): the C library's memmem
and the regular expression fallback find the same places, at the edges of the file too."""

from __future__ import annotations

import mmap
from pathlib import Path

import pytest

from matport.mat import h5heap
from matport.mat.h5heap import SIGNATURE


@pytest.mark.parametrize("engine", ["memmem", "regex"])
def test_every_signature_is_found_at_the_edges_too(tmp_path: Path, engine: str,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    if engine == "regex":
        monkeypatch.setattr(h5heap, "_MEMMEM", None)
    elif h5heap._MEMMEM is None:
        pytest.skip("no memmem in this C library")
    data = SIGNATURE + b"GCOL" + SIGNATURE + bytes(1000) + b"GCOL\x02" + SIGNATURE * 2 + \
        b"x" + SIGNATURE
    path = tmp_path / "scan.bin"
    path.write_bytes(data)
    with open(path, "rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as m:
        found = h5heap._signatures(m)
    assert found == [0, 9, 1019, 1024, 1030]
    assert [data[at:at + 5] for at in found] == [SIGNATURE] * 5
