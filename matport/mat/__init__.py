"""Layer 1: MATLAB files (v7 and v7.3) -> Python values (see :mod:`matport.mat.values`)."""

from __future__ import annotations

import os
from typing import Any

from matport.errors import MatFileError
from matport.mat import v5
from matport.mat.mcos import Subsystem
from matport.mat.values import MatFile

V73_MARK = b"MATLAB 7.3 MAT-file"


def read(path: str | os.PathLike[str]) -> MatFile:
    """Read every variable of a MATLAB v7 or v7.3 file, class objects included.

    Args:
        path: a ``.mat`` file saved by MATLAB (``save``; v7 or v7.3, compressed or not).

    Returns:
        A :class:`~matport.mat.values.MatFile`: a mapping from variable name to value (numpy
        arrays, ``Struct``, ``MatObject``, ... see ``matport.mat.values``), with ``format``,
        ``header``, ``walk()`` and ``object_counts``.

    Raises:
        MatFileError: the file cannot be read, is not a MAT-file, or is truncated, corrupt or
            hostile; the message names the file and where.
    """
    spath = os.fspath(path)
    try:
        with open(spath, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            head = f.read(128)
            if head.startswith(V73_MARK) or head[:8] == b"\x89HDF\r\n\x1a\n":
                f.close()
                return _read_v73(spath)
            if len(head) < 128 or head[126:128] not in (b"IM", b"MI"):
                raise MatFileError(spath, "not a MATLAB v7/v7.3 MAT-file (no MAT-file header "
                                   "found)")
            f.seek(0)
            contents = v5.parse(f, size, spath)
    except OSError as exc:
        raise MatFileError(spath, f"cannot read file ({exc.strerror or exc})") from None
    cells = None
    if contents.subsystem is not None:
        cells = _filewrapper_cells(v5.parse_subsystem(contents.subsystem, spath), spath)
    sub = Subsystem(cells, spath)
    variables = {k: sub.resolve(v) for k, v in contents.variables.items()}
    return MatFile(spath, "v7", contents.header, variables, sub.object_counts())


def _read_v73(path: str) -> MatFile:
    from matport.mat import v73

    contents = v73.parse(path)
    sub = Subsystem(contents.subsystem, path)
    variables = {k: sub.resolve(v) for k, v in contents.variables.items()}
    return MatFile(path, "v7.3", contents.header, variables, sub.object_counts())


def _filewrapper_cells(value: Any, path: str) -> list[Any] | None:
    import numpy as np

    from matport.mat.values import Struct

    if not isinstance(value, Struct):
        raise MatFileError(path, "subsystem data is not a struct", "MCOS subsystem")
    cells = value.get("MCOS")
    if cells is None:
        return None
    if not isinstance(cells, np.ndarray) or cells.dtype != object:
        raise MatFileError(path, "FileWrapper__ payload is not a cell array", "MCOS subsystem")
    return list(cells.ravel(order="F"))


__all__ = ["read", "MatFile"]
