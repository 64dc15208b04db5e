"""A compressed v7 element inflated in order, as far as the parser has read it.

The element's bytes go into its :class:`~matport.mat.arena.Arena` up to what the parser reads
(:meth:`Inflated.need`), or, for an array's values, straight into the array's own memory
(:meth:`Inflated.take`): the arena's pages under them are never touched, so a large element costs
its arrays' memory once and one copy of each inflated piece, not a whole inflated buffer and a
second copy out of it. Inflation is capped at the arena's size (what the element declares).
"""

from __future__ import annotations

import io
from collections.abc import Callable

import numpy as np

from matport.errors import MatFileError
from matport.mat import inflate
from matport.mat.arena import Arena

IN_CHUNK = 1 << 16  # compressed bytes read at a time
OUT_CHUNK = 1 << 15  # inflated bytes per call at most: one output block of the inflater (no join)


class Inflated:
    """The compressed element of ``nbytes`` at the position of ``f``, the variable ``where`` in
    the file ``path`` (for errors); :meth:`start` sizes its arena."""

    def __init__(self, f: io.BufferedIOBase, nbytes: int, path: str, where: str) -> None:
        self._d = inflate.decompressobj()
        self._f = f
        self._remaining = nbytes  # compressed bytes not yet read
        self._data = b""  # compressed bytes read and not yet inflated
        self._path = path
        self._where = where
        self.arena: Arena | None = None
        self._out = memoryview(b"")  # the arena's bytes
        self.filled = 0  # bytes of the element inflated (into the arena or taken)
        self._taken = 0  # end of the last bytes taken: the parser reads nothing before it again

    def start(self, arena_for: Callable[[bytes], Arena]) -> Arena:
        """Inflate the element's first tag and put the element in ``arena_for(first bytes)``."""
        head = b""
        while len(head) < 8:
            piece = self._piece(OUT_CHUNK)
            if not piece:
                raise self._fail("compressed element is empty")
            head += piece
        self.arena = arena_for(head)
        self._out = self.arena.array.data
        self._write(head)
        return self.arena

    def need(self, lo: int, hi: int) -> None:
        """Make bytes ``lo`` to ``hi`` of the element readable in the arena."""
        if lo < self._taken:
            raise self._fail("data elements overlap")
        while self.filled < hi:
            piece = self._piece(OUT_CHUNK)
            if not piece:
                raise self._short(hi)
            self._write(piece)

    def take(self, lo: int, dst: memoryview) -> None:
        """Fill ``dst`` (bytes) with the element's bytes from ``lo``: those already in the arena
        are copied and their pages released, the rest inflated straight into ``dst``."""
        self.need(lo, lo)
        n = len(dst)
        k = min(max(self.filled - lo, 0), n)
        if k:
            dst[:k] = self._out[lo : lo + k]
            if self.arena is not None:
                self.arena.release(self.arena.array[lo : lo + k])
        while k < n:
            piece = self._piece(min(OUT_CHUNK, n - k))
            if not piece:
                raise self._short(lo + n)
            dst[k : k + len(piece)] = piece
            k += len(piece)
        self.filled = max(self.filled, lo + n)
        self._taken = lo + n

    def finish(self) -> int:
        """Inflate the rest of the stream into the arena and skip what follows it in the file;
        the number of bytes the element inflated to."""
        while piece := self._piece(OUT_CHUNK):
            self._write(piece)
        if self._remaining:  # bytes after the zlib stream
            self._f.seek(self._remaining, io.SEEK_CUR)
        return self.filled

    def _write(self, piece: bytes) -> None:
        filled = self.filled
        if filled + len(piece) > len(self._out):
            raise self._fail("compressed data inflates beyond the element it declares")
        self._out[filled : filled + len(piece)] = piece
        self.filled = filled + len(piece)

    def _fail(self, message: str) -> MatFileError:
        return MatFileError(self._path, message, self._where)

    def _short(self, hi: int) -> MatFileError:
        return self._fail(f"compressed data ends after {self.filled} bytes, within the "
                          f"{hi} bytes its element declares")

    def _piece(self, limit: int) -> bytes:
        """The next inflated bytes, at most ``limit``; empty at the end of the stream."""
        d = self._d
        try:
            while not d.eof:
                if not self._data and self._remaining:
                    self._read()
                piece = d.decompress(self._data, limit)  # no input: what the inflater holds
                self._data = d.unconsumed_tail
                if piece:
                    return piece
                if not (self._data or self._remaining or d.eof):
                    raise self._fail("compressed data is truncated")
            return b""
        except inflate.ERRORS as exc:
            raise self._fail(f"corrupt compressed data ({exc})") from None

    def _read(self) -> None:
        data = self._f.read(min(IN_CHUNK, self._remaining))
        if not data:
            raise self._fail("compressed data is truncated")
        self._remaining -= len(data)
        self._data = data


def flat_bytes(a: np.ndarray) -> memoryview:
    """The bytes of a contiguous array, in memory order, writable."""
    return a.reshape(-1, order="A").view(np.uint8).data
