"""Reading a deflated, chunked HDF5 dataset chunk by chunk, inflated by :mod:`matport.mat.inflate`.

MATLAB stores large arrays in deflated chunks. HDF5 inflates them with zlib; ISA-L inflates the
same streams in about 0.6x its time, and most of the time a v7.3 network takes to read is spent
inflating. Each chunk's stored bytes are read as they are (no type conversion: the dataset's
type is already checked, and the chunks are read into an array of that very type), inflated to
at most the chunk's size, and must fill it exactly. Anything unusual (a chunk stored unfiltered,
a missing chunk, tiny chunks) is left to HDF5.
"""

from __future__ import annotations

import itertools
import math

import h5py
import numpy as np

from matport.mat import inflate
from matport.mat.h5safe import Fail

MIN_CHUNK_BYTES = 1 << 12  # smaller chunks cost more per chunk here than HDF5's loop does


def read_chunks(ds: h5py.h5d.DatasetID, chunk: tuple[int, ...], out: np.ndarray,
                fail: Fail) -> bool:
    """Fill ``out`` (the dataset's shape and checked type) from the dataset's deflated chunks
    of shape ``chunk``. False: left to HDF5 (``out`` may be partly filled)."""
    shape = out.shape
    if len(chunk) != len(shape) or math.prod(chunk) * out.itemsize < MIN_CHUNK_BYTES:
        return False
    starts = [range(0, n, c) for n, c in zip(shape, chunk, strict=True)]
    if ds.get_num_chunks() != math.prod(len(r) for r in starts):
        return False  # chunks never written read as the fill value: HDF5 knows it
    # each chunk's region of ``out``, and the part of the chunk inside it (edge chunks overhang)
    regions = [[slice(o, min(o + c, n)) for o in r]
               for r, c, n in zip(starts, chunk, shape, strict=True)]
    parts = [[slice(0, s.stop - s.start) for s in axis] for axis in regions]
    nbytes = math.prod(chunk) * out.itemsize
    for origin, region, part in zip(itertools.product(*starts), itertools.product(*regions),
                                    itertools.product(*parts), strict=True):
        mask, raw = ds.read_direct_chunk(origin)
        if mask:  # this chunk skipped its filter
            return False
        d = inflate.decompressobj()
        try:
            data = d.decompress(raw, nbytes)
        except inflate.ERRORS as exc:
            raise fail(f"chunk at {origin} is not a deflate stream ({exc})") from None
        if not d.eof and len(data) == nbytes:  # full: only the stream's end may remain
            data += d.decompress(d.unconsumed_tail, 1)
        if len(data) != nbytes or not d.eof:
            raise fail(f"chunk at {origin} does not inflate to its {nbytes} bytes")
        out[region] = np.frombuffer(data, out.dtype).reshape(chunk)[part]
    return True

