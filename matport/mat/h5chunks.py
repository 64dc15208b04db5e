"""Reading HDF5 datasets' stored bytes directly: deflated chunks, inflated by
:mod:`matport.mat.inflate`, and unfiltered contiguous data.

MATLAB stores large arrays in deflated chunks. HDF5 inflates them with zlib; ISA-L inflates the
same streams in about 0.6x its time, and most of the time a v7.3 network takes to read is spent
inflating. HDF5 lists the chunks (where each lies in the file and how many bytes it stores) in
one pass over its index; each chunk's stored bytes are inflated from a read-only mapping of the
file (a run of chunks about a megabyte long at a time, so that the mapped pages never add up to
a large array's), with no copy and no type conversion (the dataset's type is already checked,
and the chunks are read into an array of that very type), to at most the chunk's size, and must
fill it exactly. Anything unusual (a chunk stored unfiltered, a missing or misplaced chunk, tiny
chunks) is left to HDF5. Small arrays are stored contiguous and unfiltered: their bytes are read
straight into the array, in a fifth of the time HDF5's read of them takes.
"""

from __future__ import annotations

import math
import mmap
import os
from typing import Any

import h5py
import numpy as np

from matport.mat import inflate
from matport.mat.h5safe import Fail

MIN_CHUNK_BYTES = 1 << 12  # smaller chunks cost more per chunk here than HDF5's loop does
RUN_BYTES = 1 << 20  # the file's bytes mapped at a time (ResNet-50's largest array stores 8 MB)


def read_chunks(ds: h5py.h5d.DatasetID, chunk: tuple[int, ...], out: np.ndarray,
                file: tuple[int, int], fail: Fail) -> bool:
    """Fill ``out`` (the dataset's shape and checked type) from the dataset's deflated chunks
    of shape ``chunk``, stored in ``file`` (HDF5's descriptor of it, and its size in bytes).
    False: left to HDF5."""
    shape = out.shape
    if not shape or len(chunk) != len(shape) or \
            math.prod(chunk) * out.itemsize < MIN_CHUNK_BYTES:
        return False
    places = _places(_chunks(ds), chunk, shape)
    if places is None:
        return False
    fd, file_bytes = file
    for c, _, _ in places:
        if c.byte_offset + c.size > file_bytes:
            raise fail(f"chunk at {c.chunk_offset} lies past the file's end")
    nbytes = math.prod(chunk) * out.itemsize
    for run in _runs(places):
        start = run[0][0].byte_offset // mmap.ALLOCATIONGRANULARITY * mmap.ALLOCATIONGRANULARITY
        end = max(c.byte_offset + c.size for c, _, _ in run)
        # a run's pages leave the process with its mapping: they never add up to a dataset's
        with mmap.mmap(fd, end - start, offset=start, access=mmap.ACCESS_READ) as data, \
                memoryview(data) as view:
            for c, region, part in run:
                at = c.byte_offset - start
                with view[at:at + c.size] as raw:
                    got = np.frombuffer(_inflate(raw, nbytes, c.chunk_offset, fail), out.dtype)
                out[region] = got.reshape(chunk)[part] if part else got.reshape(chunk)
    return True


def _runs(places: list[Place]) -> list[list[Place]]:
    """The chunks in file order, in runs spanning at most :data:`RUN_BYTES` of the file (or one
    chunk longer than that)."""
    ordered = sorted(places, key=lambda p: p[0].byte_offset)
    runs: list[list[Place]] = []
    for p in ordered:
        c = p[0]
        if runs and c.byte_offset + c.size - runs[-1][0][0].byte_offset <= RUN_BYTES:
            runs[-1].append(p)
        else:
            runs.append([p])
    return runs


def read_contiguous(address: int, out: np.ndarray, file: tuple[int, int]) -> bool:
    """Fill ``out`` (C-ordered, the dataset's shape and checked type) from the dataset's
    unfiltered bytes at ``address`` in ``file``. False: left to HDF5 (data past the file's
    end, or no ``preadv`` on this system)."""
    fd, file_bytes = file
    if address + out.nbytes > file_bytes or not hasattr(os, "preadv"):
        return False
    return os.preadv(fd, [out.data.cast("B")], address) == out.nbytes


def _chunks(ds: h5py.h5d.DatasetID) -> list[Any]:
    """Every stored chunk's ``StoreInfo`` (its logical offset, filter mask, file address and
    stored size): one pass over the chunk index where HDF5 has it (1.12.3 and later), else
    one lookup per chunk."""
    if hasattr(ds, "chunk_iter"):
        out: list[Any] = []
        ds.chunk_iter(out.append)
        return out
    return [ds.get_chunk_info(i) for i in range(ds.get_num_chunks())]


Place = tuple[Any, tuple[slice, ...], tuple[slice, ...] | None]


def _places(stored: list[Any], chunk: tuple[int, ...], shape: tuple[int, ...]
            ) -> list[Place] | None:
    """Each chunk with its region of the array and the part of the chunk inside it (None: all
    of it; edge chunks overhang). None unless the chunks are filtered and cover the array
    exactly, each once: chunks never written read as the fill value, and a chunk that skipped
    its filter is stored as is; HDF5 knows both."""
    # the count first: the per-axis tables are then no larger than the chunk index in the file
    if len(stored) != math.prod(-(-n // c) for c, n in zip(chunk, shape, strict=True)) or \
            len({c.chunk_offset for c in stored}) != len(stored):
        return None
    # per axis, each chunk origin's region of the array, the part of the chunk inside it, and
    # whether that part is all of the chunk along the axis
    axes = [{o: (slice(o, min(o + c, n)), slice(0, min(c, n - o)), o + c <= n)
             for o in range(0, n, c)} for c, n in zip(chunk, shape, strict=True)]
    out: list[Place] = []
    for c in stored:
        origin = c.chunk_offset
        if c.filter_mask or len(origin) != len(axes):
            return None
        try:
            region, part, full = zip(*[axis[o] for axis, o in zip(axes, origin, strict=True)],
                                     strict=True)
        except KeyError:  # not on the chunk grid
            return None
        out.append((c, region, None if all(full) else part))
    return out


def _inflate(raw: memoryview, nbytes: int, origin: tuple[int, ...], fail: Fail) -> bytes:
    """One chunk's stored bytes, inflated to exactly ``nbytes``."""
    d = inflate.decompressobj()
    try:
        data = d.decompress(raw, nbytes)
    except inflate.ERRORS as exc:
        raise fail(f"chunk at {origin} is not a deflate stream ({exc})") from None
    if not d.eof and len(data) == nbytes:  # full: only the stream's end may remain
        data += d.decompress(d.unconsumed_tail, 1)
    if len(data) != nbytes or not d.eof:
        raise fail(f"chunk at {origin} does not inflate to its {nbytes} bytes")
    return data
