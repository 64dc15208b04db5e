"""Write Python values (see :mod:`matport.mat.values`) to MATLAB files, v7 or v7.3, laid out as
MATLAB lays them out, class objects included (MCOS subsystem). Used to generate test fixtures.

Values are written as read: ``numpy`` arrays in MATLAB's shape, ``str`` as ``char``, object arrays
as cells, :class:`Struct` / :class:`StructArray`, :class:`MatObject` / :class:`ObjectArray` (each
element with its own class; the same Python object twice is one MATLAB object), legacy objects,
:class:`Categorical`, :class:`Table`, :class:`Enumeration` (members saved without properties),
:class:`FunctionHandle`, ``scipy.sparse`` matrices. Wrap text in :class:`String` to write a MATLAB
``string`` instead of ``char``. In v7.3 files variables are kept by name; their order is a hint.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import tempfile
from collections.abc import Mapping
from typing import Any, Literal

from matport.errors import MatFileError
from matport.mat.format import HEADER_TEXT_BYTES
from matport.mat.mcos_writer import ObjectEncoder, String, WriteError
from matport.mat.v5_writer import write_v7
from matport.mat.v73_writer import write_v73

__all__ = ["write", "String", "WriteError", "header_text"]

PLATFORM = "GLNXA64"
ZLIB_LEVEL = 1
VARIABLE_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,62}\Z")


def header_text(fmt: Literal["v7", "v7.3"], created: dt.datetime | None = None) -> bytes:
    """The 116-byte descriptive text MATLAB puts at the start of a MAT-file."""
    when = (created or dt.datetime.now()).ctime()  # "Tue Jan  2 03:04:05 2024", as MATLAB
    version = "5.0" if fmt == "v7" else "7.3"
    text = f"MATLAB {version} MAT-file, Platform: {PLATFORM}, Created on: {when}"
    if fmt == "v7.3":
        text += " HDF5 schema 1.00 ."
    return text.encode("ascii").ljust(HEADER_TEXT_BYTES, b" ")


def write(
    path: str | os.PathLike[str],
    variables: Mapping[str, Any],
    *,
    format: Literal["v7", "v7.3"] = "v7",
    compress: bool = True,
    defaults: Mapping[str, Mapping[str, Any]] | None = None,
    created: dt.datetime | None = None,
) -> None:
    """Write ``variables`` (name -> value) to a MATLAB file at ``path``.

    ``format`` is ``"v7"`` (MAT 5 layout, zlib per variable) or ``"v7.3"`` (HDF5).
    ``defaults`` gives class default property values (class name -> property -> value): they are
    stored once per class and left out of every object whose property equals them, as MATLAB
    does. ``created`` fixes the header date (for reproducible files). The file appears
    atomically: it is written under a temporary name in the same folder, then renamed.
    """
    spath = os.fspath(path)
    if format not in ("v7", "v7.3"):
        raise MatFileError(spath, f"unknown MAT-file format {format!r} (use 'v7' or 'v7.3')")
    encoder = ObjectEncoder(defaults)
    try:
        encoded = {}
        for name, value in variables.items():
            if not VARIABLE_NAME.match(name):
                raise WriteError(f"{name!r} is not a valid MATLAB variable name")
            encoded[name] = encoder.encode_variable(value, name)
        filewrapper = encoder.filewrapper_cells()
    except WriteError as exc:
        raise MatFileError(spath, f"cannot write: {exc}") from None
    except RecursionError:
        raise MatFileError(spath, "cannot write: values nested too deeply") from None
    text = header_text(format, created)
    folder = os.path.dirname(os.path.abspath(spath))
    try:
        fd, tmp = tempfile.mkstemp(prefix=".matport-", suffix=".mat.tmp", dir=folder)
    except OSError as exc:
        raise MatFileError(spath, f"cannot write: {exc.strerror or exc}") from None
    try:
        if format == "v7":
            with os.fdopen(fd, "wb") as out:
                write_v7(out, text, encoded, filewrapper, compress, ZLIB_LEVEL)
        else:
            os.close(fd)
            write_v73(tmp, text, encoded, filewrapper, compress, ZLIB_LEVEL)
        os.chmod(tmp, _file_mode(spath))
        os.replace(tmp, spath)
    except (WriteError, OSError, ValueError, TypeError) as exc:
        _discard(tmp)
        raise MatFileError(spath, f"cannot write: {exc}") from None
    except RecursionError:
        _discard(tmp)
        raise MatFileError(spath, "cannot write: values nested too deeply") from None
    except BaseException:
        _discard(tmp)
        raise


def _file_mode(path: str) -> int:
    """The mode the file gets: the replaced file's, else what ``open`` would give (umask)."""
    try:
        return os.stat(path).st_mode & 0o777
    except FileNotFoundError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


def _discard(tmp: str) -> None:
    try:
        os.unlink(tmp)
    except FileNotFoundError:
        pass
