"""How much memory reading one file may take.

Every byte a container allocates for what a file declares (inflated elements, datasets, converted
arrays, attributes, cells and struct elements) is charged to one :class:`Budget` per file. A file
may inflate to :data:`INFLATE_RATIO` times its size (zlib cannot do more), at least
:data:`FLOOR` bytes and at most :data:`CAP` bytes (or twice its size, when larger). A file that
MATLAB would open but that needs more is refused with a message naming the limit; raise it with
``matport.read(path, max_bytes=N)`` or the environment variable ``MATPORT_MAX_READ_BYTES``.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from matport.errors import ArgumentError, MatFileError
from matport.mat.format import INFLATE_RATIO
from matport.mat.raw import one_line

ENV_VARIABLE = "MATPORT_MAX_READ_BYTES"
FLOOR = 256 << 20
CAP = 16 << 30
ELEMENT_COST = 128  # bytes charged per cell or struct element (the Python objects it becomes)
EXPANSION = 8  # values built from a file's data, at most this times what it declares (a double
EXPANSION_FLOOR = 64 << 20  # array MATLAB stored as uint8 widens 8 times), beyond this floor
VLEN_HEADROOM = 64 << 20  # address space HDF5 may add while reading variable-length data
_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def _parse(text: str, source: str) -> int:
    value = text.strip().upper().removesuffix("B")
    unit = value[-1:] if value[-1:] in _UNITS else ""
    try:
        number = float(value[: len(value) - len(unit)])
    except ValueError:
        number = -1.0
    if not number > 0 or number == float("inf"):
        raise ArgumentError(f"{source} must be a positive number of bytes (e.g. 8G), not {text!r}")
    return int(number * _UNITS[unit])


class Budget:
    """The bytes reading one file may allocate; :meth:`charge` refuses going beyond them."""

    def __init__(self, path: str, size: int, max_bytes: int | str | None = None) -> None:
        self.path = path
        self.used = 0  # bytes charged, expansions included
        self.expanded = 0  # of which built from data already counted
        env = os.environ.get(ENV_VARIABLE)
        if max_bytes is not None:
            self.limit = _parse(str(max_bytes), "max_bytes")
        elif env:
            self.limit = _parse(env, ENV_VARIABLE)
        else:
            self.limit = min(max(FLOOR, INFLATE_RATIO * size), max(CAP, 2 * size))

    def charge(self, nbytes: int, where: str | Callable[[], str]) -> None:
        """Count ``nbytes`` about to be allocated for ``where`` (a place, or a function that
        finds it: finding an HDF5 object's name is slow); MatFileError beyond the limit."""
        self.used += nbytes
        if self.used > self.limit:
            if callable(where):
                where = where()
            raise MatFileError(
                self.path,
                f"reading needs more than {self.limit:,} bytes of memory, matport's limit for "
                f"this file (a file may inflate to {INFLATE_RATIO}x its size, at least "
                f"{FLOOR >> 20} MiB and at most {CAP >> 30} GiB); for a legitimately large file "
                f"raise it with matport.read(path, max_bytes=N) or the environment variable "
                f"{ENV_VARIABLE}=N (e.g. 64G)", one_line(where))

    def expand(self, nbytes: int, where: str | Callable[[], str]) -> None:
        """Count ``nbytes`` built from data already counted (a widened array, decoded text,
        the Python objects of cells and structs): such values may take at most
        :data:`EXPANSION` times what the file declares, beyond :data:`EXPANSION_FLOOR`."""
        declared = self.used - self.expanded
        if self.expanded + nbytes > EXPANSION * declared + EXPANSION_FLOOR:
            raise MatFileError(
                self.path, f"values built from the file would take more than {EXPANSION} times "
                f"the {declared:,} bytes it declares (corrupt or hostile)",
                one_line(where() if callable(where) else where))
        self.charge(nbytes, where)
        self.expanded += nbytes

    def remaining(self) -> int:
        return max(self.limit - self.used, 0)


@contextmanager
def capped_address_space(extra: int) -> Iterator[None]:
    """Cap the process's address space at its current size plus ``extra`` for the duration.

    HDF5 allocates (and clears) what a variable-length element's stored length declares before it
    checks that length against the data: one corrupt length costs up to 4 GiB per element. Under
    the cap that allocation fails and HDF5 reports an error instead. Linux only (elsewhere the
    attribute and dataset size checks still hold)."""
    if not sys.platform.startswith("linux"):
        yield
        return
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    with open("/proc/self/statm", "rb") as f:
        current = int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    cap = current + extra
    if (soft != resource.RLIM_INFINITY and soft <= cap) or (
            hard != resource.RLIM_INFINITY and hard < cap):
        yield
        return
    resource.setrlimit(resource.RLIMIT_AS, (cap, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))
