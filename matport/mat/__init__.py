"""Layer 1: MATLAB files (v7 and v7.3) -> Python values (see :mod:`matport.mat.values`)."""

from __future__ import annotations

import os
from typing import Any

from matport.errors import MatFileError
from matport.mat import v5
from matport.mat.format import (
    ENDIAN_OFFSET,
    HDF5_SIGNATURE,
    HEADER_BYTES,
    MCOS_TYPE_SYSTEM,
    V73_MARK,
)
from matport.mat.limits import Budget
from matport.mat.mcos import Subsystem
from matport.mat.values import MatFile


def read(path: str | os.PathLike[str], *, max_bytes: int | str | None = None) -> MatFile:
    """Read every variable of a MATLAB v7 or v7.3 file, class objects included.

    Args:
        path: a ``.mat`` file saved by MATLAB (``save``; v7 or v7.3, compressed or not).
        max_bytes: the most memory reading may take for what the file declares (bytes, or text
            such as ``"64G"``); None: the environment variable ``MATPORT_MAX_READ_BYTES``, else
            a limit proportional to the file's size (see :mod:`matport.mat.limits`).

    Returns:
        A :class:`~matport.mat.values.MatFile`: a mapping from variable name to value (numpy
        arrays, ``Struct``, ``MatObject``, ... see ``matport.mat.values``), in stored order, with
        ``format``, ``header``, ``walk()`` and ``object_counts``.

    Raises:
        MatFileError: the file cannot be read, is not a MAT-file, or is truncated, corrupt,
            hostile or beyond the memory limit; the message names the file and where.
    """
    spath = os.fspath(path)
    try:
        return _read(spath, max_bytes)
    except MemoryError:  # the machine ran out before the file's budget did
        raise MatFileError(spath, "the memory this file's contents declare could not be "
                           "allocated (the machine's memory or the process's limit ran out "
                           "before matport's own limit, max_bytes / MATPORT_MAX_READ_BYTES)"
                           ) from None


def _read(spath: str, max_bytes: int | str | None) -> MatFile:
    try:
        with open(spath, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            budget = Budget(spath, size, max_bytes)
            head = f.read(HEADER_BYTES)
            if head.startswith(V73_MARK) or head.startswith(HDF5_SIGNATURE):
                f.close()
                return _read_v73(spath, budget)
            if len(head) < HEADER_BYTES or head[ENDIAN_OFFSET:HEADER_BYTES] not in (b"IM", b"MI"):
                raise MatFileError(spath, "not a MATLAB v7/v7.3 MAT-file (no MAT-file header "
                                   "found)")
            f.seek(0)
            contents = v5.parse(f, size, spath, budget)
    except OSError as exc:
        raise MatFileError(spath, f"cannot read file ({exc.strerror or exc})") from None
    cells = None
    if contents.subsystem is not None:
        cells = _filewrapper_cells(contents.subsystem, spath)
    return _resolve(spath, "v7", contents.header, contents.variables, cells)


def _read_v73(path: str, budget: Budget) -> MatFile:
    from matport.mat import v73

    contents = v73.parse(path, budget)
    return _resolve(path, "v7.3", contents.header, contents.variables, contents.subsystem)


def _resolve(path: str, fmt: str, header: str, raw: dict[str, Any],
             cells: list[Any] | None) -> MatFile:
    """Resolve the object references in every variable through the MCOS subsystem."""
    sub = Subsystem(cells, path)
    try:
        variables = {k: sub.resolve(v) for k, v in raw.items()}
    except RecursionError:  # a safety net: the depth limits are meant to stop nesting first
        raise MatFileError(path, "values nested too deeply to read", "MCOS subsystem") from None
    return MatFile(path, fmt, header, variables, sub.object_counts())


def _filewrapper_cells(value: Any, path: str) -> list[Any] | None:
    import numpy as np

    from matport.mat.values import Struct

    if not isinstance(value, Struct):
        raise MatFileError(path, "subsystem data is not a struct", "MCOS subsystem")
    cells = value.get(MCOS_TYPE_SYSTEM)
    if cells is None:
        return None
    if not isinstance(cells, np.ndarray) or cells.dtype != object:
        raise MatFileError(path, "FileWrapper__ payload is not a cell array", "MCOS subsystem")
    return list(cells.ravel(order="F"))


__all__ = ["read", "MatFile"]
