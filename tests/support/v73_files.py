"""Small hand-built v7.3 files for the reader's tests: HDF5 written by h5py behind MATLAB's
header text."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import h5py


def v73_file(path: Path, build: Callable[[h5py.File], None]) -> Path:
    """Write ``path`` as a v7.3 MAT-file whose HDF5 content ``build`` makes; returns ``path``."""
    with h5py.File(path, "w", userblock_size=512) as f:
        build(f)
    with open(path, "r+b") as fh:
        fh.write(b"MATLAB 7.3 MAT-file, Platform: test".ljust(116))
    return path
