"""Writing files all or nothing: a temporary file beside the target, fsynced, renamed over it.

A reader never sees a half-written file, and a failed write (a full disk, a killed process)
leaves the previous file as it was. The temporary names (``.<name>.<pid>.matport-tmp``) are
known to :func:`is_temporary`, so whoever cleans up after a killed writer can find them.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Callable
from pathlib import Path

TMP_SUFFIX = ".matport-tmp"
_TMP_NAME = re.compile(r"\..+\.\d+" + re.escape(TMP_SUFFIX) + r"\Z")

#: bytes, or a function that writes the file whose path it is given
Content = bytes | Callable[[Path], None]


def is_temporary(name: str) -> bool:
    """Whether the file name ``name`` is one :func:`write_temporary` makes.

    Args:
        name: a file name (no folder).

    Returns:
        True for ``.<name>.<pid>.matport-tmp``.
    """
    return _TMP_NAME.match(name) is not None


def write_atomic(path: Path, data: Content) -> None:
    """Write ``path`` all or nothing: :func:`write_temporary`, then rename it over ``path``.

    Args:
        path: the file to (re)place.
        data: its content, or a function writing it to the path it is given.
    """
    tmp = write_temporary(path, data)
    try:
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    fsync_folder(path.parent)


def write_temporary(path: Path, data: Content) -> Path:
    """Write ``data`` to a temporary file beside ``path``, fsynced (removed again when writing
    fails).

    Args:
        path: the file the temporary one will replace (its folder is created when missing).
        data: the content, or a function writing it to the path it is given.

    Returns:
        The temporary file's path.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}{TMP_SUFFIX}")
    try:
        if isinstance(data, bytes):
            tmp.write_bytes(data)
        else:
            data(tmp)
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except BaseException as exc:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        if isinstance(exc, OSError) and exc.filename is None:  # say which file: a full disk ...
            raise OSError(exc.errno, exc.strerror, str(path)) from None
        raise
    return tmp


def fsync_folder(folder: Path) -> None:
    """Make the renames in ``folder`` durable (best effort: some file systems refuse).

    Args:
        folder: the folder whose entries changed.
    """
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
