"""Inflated elements in memory the parser gives back as it copies large arrays out.

A v7 element inflates into one buffer (:class:`Arena`); its arrays would be views of it, and one
array kept would keep the whole buffer. Where the platform can release pages of an anonymous
mapping (``madvise(MADV_DONTNEED)``: Linux, macOS), a buffer of :data:`MAPPED` bytes or more is
such a mapping and every array gets its own allocation: the element is read into the buffer
only as far as it is parsed, the values of its large arrays straight into their own memory
(:mod:`matport.mat.streamed`), so that most of the mapping is never touched, and :func:`own`
copies the others out, a chunk at a time, releasing the buffer's pages behind each chunk. The
resident part of the buffer stays small, the values own their memory, and the buffer is
unmapped once parsed. A smaller buffer (or any, elsewhere) is a plain allocation and its arrays
stay views of it: an array keeps at most :data:`MAPPED` bytes alive, and the many small values
of small files are not copied.
"""

from __future__ import annotations

import mmap

import numpy as np

CHUNK = 1 << 20  # bytes copied before the pages under them are released (a multiple of pages)
MAPPED = 1 << 20  # smaller buffers are plain allocations: their few pages are not worth a mapping
RELEASABLE = all(hasattr(mmap, name) for name in ("MADV_DONTNEED", "MAP_ANONYMOUS", "MAP_PRIVATE"))


class Arena:
    """``size`` bytes (``array``): a private anonymous mapping where pages can be released and
    :data:`MAPPED` bytes or more."""

    def __init__(self, size: int) -> None:
        self._map: mmap.mmap | None = None
        if RELEASABLE and size >= MAPPED:
            try:
                self._map = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
            except OSError:  # no address space left: what numpy's allocation would raise
                raise MemoryError(f"cannot map {size} bytes") from None
            self.array = np.frombuffer(self._map, np.uint8)
        else:
            self.array = np.empty(size, np.uint8)
        self.releasing = self._map is not None  # whether arrays leave it (:meth:`own`)
        self._start = self.array.ctypes.data

    def release(self, a: np.ndarray) -> None:
        """Give back the pages of the arena that ``a`` (a contiguous view of it, no longer read)
        fully covers; they read as zeros afterwards. Nothing for an array outside the arena."""
        if self._map is None or a.nbytes < mmap.PAGESIZE:
            return
        start = a.ctypes.data - self._start
        end = start + a.nbytes
        if start < 0 or end > self.array.size:
            return
        page = mmap.PAGESIZE
        lo, hi = -(-start // page) * page, end // page * page
        if hi > lo:
            self._map.madvise(mmap.MADV_DONTNEED, lo, hi - lo)

    def own(self, view: np.ndarray) -> np.ndarray:
        """A Fortran-contiguous view of the arena copied into its own memory, the arena's pages
        under it released chunk by chunk as they are copied (the view itself where the arena is
        no mapping: a copy would only add memory)."""
        if self._map is None:
            return view
        if view.nbytes < mmap.PAGESIZE:
            return view.copy(order="F")
        copy = np.empty(view.shape, view.dtype, order="F")
        src, dst = view.reshape(-1, order="F"), copy.reshape(-1, order="F")
        # chunk edges on chunk-aligned addresses of the arena, so that releasing a chunk frees
        # every page under it
        first = (-view.ctypes.data % CHUNK) // view.itemsize
        edges = [0, *range(first, src.size, CHUNK // view.itemsize), src.size]
        for lo, hi in zip(edges, edges[1:], strict=False):
            if hi > lo:
                dst[lo:hi] = src[lo:hi]
                self.release(src[lo:hi])
        return copy
