"""Files MATLAB wrote around 2014 keep a FileWrapper__ of format version 2 with only 3 cells
(metadata, the empty cell, the class defaults: no property cells). They must read, as mat-io reads
them. The fixture is built here with that layout from the writer's own encoding."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import matport
from matport.mat.mcos_writer import ObjectEncoder
from matport.mat.v5_writer import write_v7
from matport.mat.values import MatObject
from matport.mat.writer import header_text


def write_version2(path: Path, cells_kept: int = 3) -> None:
    """A v7 file holding ``o``, a ``Gain`` object whose only property equals its class default,
    with its FileWrapper__ rewritten to version 2: metadata, empty cell, defaults."""
    encoder = ObjectEncoder({"Gain": {"K": np.array([[2.5]])}})
    encoded = {"o": encoder.encode_variable(MatObject("Gain", {"K": np.array([[2.5]])}), "o")}
    cells = encoder.filewrapper_cells()
    assert cells is not None and len(cells) == 5  # version 4: meta, empty, 3 trailing cells
    meta = cells[0].copy()
    meta[:4] = np.frombuffer(np.uint32(2).tobytes(), np.uint8).reshape(4, 1)
    old = [meta, cells[1], cells[-1]][:cells_kept]
    with open(path, "wb") as out:
        write_v7(out, header_text("v7"), encoded, old, True, 1)


def test_three_cell_filewrapper_reads(tmp_path: Path) -> None:
    path = tmp_path / "old2014.mat"
    write_version2(path)
    obj = matport.read(path)["o"]
    assert isinstance(obj, MatObject) and obj.class_name == "Gain"
    np.testing.assert_array_equal(obj.props["K"], [[2.5]])


def test_too_few_cells_for_the_version_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "cut.mat"
    write_version2(path, cells_kept=2)
    with pytest.raises(matport.MatFileError, match="version 2 holds 2 cells, at least 3"):
        matport.read(path)
