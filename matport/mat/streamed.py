"""A large top-level v7 element read in order, as far as the parser has read it.

The element's bytes go into its :class:`~matport.mat.arena.Arena` up to what the parser reads
(:meth:`Source.need`), or, for an array's values, straight into the array's own memory
(:meth:`Source.take`): the arena's pages under them are never touched, so a large element costs
its arrays' memory once, not a whole buffer and a copy out of it. A compressed element
(:class:`Inflated`) is inflated a piece at a time, capped at the arena's size (what the element
declares); an uncompressed one (:class:`Stored`) is read from the file into its destination.
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
READ_AHEAD = 1 << 16  # bytes of a stored element read into the arena at least, at a time


class Source:
    """An element of ``nbytes`` in the file ``f`` from its current position, the variable
    ``where`` of the file ``path`` (for errors); its bytes from :attr:`filled` on are still to
    be produced, by :meth:`_fill`."""

    what = "element"  # its kind, for errors

    def __init__(self, f: io.BufferedIOBase, nbytes: int, path: str, where: str) -> None:
        self._f = f
        self._remaining = nbytes  # bytes of the file's element not yet read
        self._path = path
        self._where = where
        self.arena: Arena | None = None
        self._out = memoryview(b"")  # the arena's bytes
        self.filled = 0  # bytes of the element produced (into the arena or taken)
        self._taken = 0  # end of the last bytes taken: the parser reads nothing before it again

    def need(self, lo: int, hi: int) -> None:
        """Make bytes ``lo`` to ``hi`` of the element readable in the arena."""
        if lo < self._taken:
            raise self._fail("data elements overlap")
        while self.filled < hi:
            got = self._fill(self._out[self.filled : max(hi, self.filled + READ_AHEAD)])
            if not got:
                raise self._short(hi)
            self.filled += got

    def take(self, lo: int, dst: memoryview) -> None:
        """Fill ``dst`` (bytes) with the element's bytes from ``lo``: those already in the arena
        are copied and their pages released, the rest produced straight into ``dst``."""
        self.need(lo, lo)
        n = len(dst)
        k = min(max(self.filled - lo, 0), n)
        if k:
            dst[:k] = self._out[lo : lo + k]
            if self.arena is not None:
                self.arena.release(self.arena.array[lo : lo + k])
        while k < n:
            got = self._fill(dst[k:])
            if not got:
                raise self._short(lo + n)
            k += got
        self.filled = max(self.filled, lo + n)
        self._taken = lo + n

    def _fill(self, dst: memoryview) -> int:
        """Write the next bytes of the element into ``dst`` (not empty); how many (0: none
        are left)."""
        raise NotImplementedError

    def _fail(self, message: str) -> MatFileError:
        return MatFileError(self._path, message, self._where)

    def _short(self, hi: int) -> MatFileError:
        return self._fail(f"{self.what} data ends after {self.filled} bytes, within the "
                          f"{hi} bytes its element declares")


class Stored(Source):
    """An uncompressed element whose tag (``tag``) was read, its arena ``arena`` (8 bytes and
    ``nbytes``, the data and its padding), the tag at its start."""

    what = "stored"

    def __init__(self, f: io.BufferedIOBase, nbytes: int, path: str, where: str, tag: bytes,
                 arena: Arena) -> None:
        super().__init__(f, nbytes, path, where)
        self.arena = arena
        self._out = arena.array.data
        self._out[:8] = tag
        self.filled = 8

    def _fill(self, dst: memoryview) -> int:
        got = self._f.readinto(dst[: self._remaining]) if self._remaining else 0
        self._remaining -= got
        return got

    def finish(self) -> None:
        """Skip the rest of the element in the file."""
        self._f.seek(self._remaining, io.SEEK_CUR)


class Inflated(Source):
    """A compressed element (``nbytes`` of zlib stream and maybe bytes after it); :meth:`start`
    sizes its arena."""

    what = "compressed"

    def __init__(self, f: io.BufferedIOBase, nbytes: int, path: str, where: str) -> None:
        super().__init__(f, nbytes, path, where)
        self._d = inflate.decompressobj()
        self._data = b""  # compressed bytes read and not yet inflated

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

    def finish(self) -> int:
        """Inflate the rest of the stream into the arena and skip what follows it in the file;
        the number of bytes the element inflated to."""
        while piece := self._piece(OUT_CHUNK):
            self._write(piece)
        if self._remaining:  # bytes after the zlib stream
            self._f.seek(self._remaining, io.SEEK_CUR)
        return self.filled

    def _fill(self, dst: memoryview) -> int:
        piece = self._piece(min(OUT_CHUNK, len(dst)))
        dst[: len(piece)] = piece
        return len(piece)

    def _write(self, piece: bytes) -> None:
        filled = self.filled
        if filled + len(piece) > len(self._out):
            raise self._fail("compressed data inflates beyond the element it declares")
        self._out[filled : filled + len(piece)] = piece
        self.filled = filled + len(piece)

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
