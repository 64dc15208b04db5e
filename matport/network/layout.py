"""Every conversion between MATLAB's array layouts and PyTorch's, in one place (numpy only).

MATLAB stores arrays column-major and puts the batch last: images ``H x W x C x N``, features
``C x N``, sequences ``C x N x T``; convolution weights ``H x W x Cin x Cout``; a fully connected
layer after spatial input flattens ``H x W x C`` column-major (H fastest). PyTorch puts the batch
first and flattens row-major: ``N x C x H x W``, ``N x C``, ``N x T x C`` (batch first),
``Cout x Cin x H x W`` and ``C, H, W`` flatten order.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

# MATLAB data layout -> PyTorch data layout, by number of dimensions
_TO_TORCH = {4: (3, 2, 0, 1), 2: (1, 0), 3: (1, 2, 0)}
_TO_MATLAB = {4: (2, 3, 1, 0), 2: (1, 0), 3: (2, 0, 1)}


def matlab_reshape(a: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    """Reshape as MATLAB's ``reshape`` does (column-major).

    Args:
        a: the array.
        shape: the new shape.

    Returns:
        The reshaped array.
    """
    return np.reshape(a, tuple(shape), order="F")


def pad_ndim(a: np.ndarray, ndim: int) -> np.ndarray:
    """Restore the trailing singleton dimensions MATLAB drops (``3 x 3 x 8`` -> ``3 x 3 x 8 x 1``).

    Args:
        a: the array.
        ndim: the number of dimensions wanted.

    Returns:
        ``a`` with at least ``ndim`` dimensions.
    """
    return a if a.ndim >= ndim else matlab_reshape(a, a.shape + (1,) * (ndim - a.ndim))


def to_torch_layout(x: np.ndarray) -> np.ndarray:
    """MATLAB data -> PyTorch data: ``H x W x C x N`` -> ``N x C x H x W``, ``C x N`` ->
    ``N x C``, ``C x N x T`` -> ``N x T x C``.

    Args:
        x: a 2-, 3- or 4-dimensional MATLAB array.

    Returns:
        A contiguous array in the PyTorch layout.
    """
    return np.ascontiguousarray(x.transpose(_TO_TORCH[x.ndim]))


def to_matlab_layout(y: np.ndarray) -> np.ndarray:
    """The inverse of :func:`to_torch_layout`.

    Args:
        y: a 2-, 3- or 4-dimensional PyTorch array.

    Returns:
        The array in MATLAB's layout.
    """
    return y.transpose(_TO_MATLAB[y.ndim])


def channel_vector(a: np.ndarray) -> np.ndarray:
    """A per-channel array (``1 x 1 x C``, ``C x 1``, ...) as a float32 vector of C values.

    Args:
        a: the MATLAB array.

    Returns:
        A 1-D float32 array.
    """
    return np.asarray(a, dtype=np.float32).ravel(order="F")


def contiguous(a: np.ndarray) -> np.ndarray:
    """A C-contiguous float32 copy of ``a`` in its own memory, made faster than numpy's copy for
    the large views MATLAB's layouts give: numpy copies a transposed view element by element
    in the destination's order, with an inner loop as long as the last dimension.

    - a 4-D float32 view whose last two axes are swapped against memory (convolution weights
      ``Cout x Cin x H x W`` of column-major ``H x W x Cin x Cout``): one gather of the
      ``H * W`` values of every filter plane in their new order;
    - a column-major float32 matrix (fully connected weights ``O x I``): copied in square tiles
      that fit in the cache.

    Args:
        a: the array.

    Returns:
        The copy (equal values, float32).
    """
    if a.dtype == np.float32 and a.size >= _LARGE and not a.flags.c_contiguous:
        if a.ndim == 4 and a.transpose(0, 1, 3, 2).flags.c_contiguous:
            n, c, h, w = a.shape
            order = [j * h + i for i in range(h) for j in range(w)]
            planes = a.transpose(0, 1, 3, 2).reshape(n * c, w * h)
            return np.take(planes, order, axis=1).reshape(a.shape)
        if a.ndim == 2 and a.flags.f_contiguous:
            out = np.empty(a.shape, np.float32)
            rows, cols = a.shape
            for i in range(0, rows, _TILE):
                for j in range(0, cols, _TILE):
                    out[i:i + _TILE, j:j + _TILE] = a[i:i + _TILE, j:j + _TILE]
            return out
    return np.array(a, dtype=np.float32, order="C", copy=True)


_LARGE = 1 << 16  # values: below this numpy's own copy costs about as much
_TILE = 128
_CHUNK = 1 << 16  # values reordered at a time in place (the scratch memory)
_BLOCK = 1 << 18  # values of the row block a matrix transposed in place is transposed by
_MOVES = 1 << 16  # pieces a matrix transposed in place may be permuted in (Python steps)


def allocation(a: np.ndarray) -> np.ndarray:
    """The array whose memory ``a`` views (``a`` itself when it owns its memory): what
    :func:`contiguous_in_place` may reorder when ``a`` spans all of it."""
    while isinstance(a.base, np.ndarray):
        a = a.base
    return a


def contiguous_in_place(a: np.ndarray) -> np.ndarray | None:
    """What :func:`contiguous` returns, made in the memory ``a`` views (overwriting it) where
    that needs no more than a block of scratch memory: ``a`` itself when C-contiguous float32;
    a 4-D float32 view whose last two axes, of equal length, are swapped against memory (square
    convolution kernels ``Cout x Cin x k x k`` of column-major ``k x k x Cin x Cout``): every
    filter plane transposed in place; a large column-major float32 matrix (fully connected
    weights) whose rows in memory split into blocks (:func:`_transpose_in_place`). None
    otherwise.

    Args:
        a: the array (a view of memory nothing else reads any more).

    Returns:
        The C-contiguous float32 array over ``a``'s memory, or None.
    """
    if a.dtype != np.float32:
        return None
    if a.flags.c_contiguous:
        return a
    if a.ndim == 2 and a.T.flags.c_contiguous:
        return _transpose_in_place(a.T) if a.size >= _LARGE else None
    if a.ndim != 4 or a.shape[2] != a.shape[3] or not a.transpose(0, 1, 3, 2).flags.c_contiguous:
        return None
    n, c, k, _ = a.shape
    planes = a.transpose(0, 1, 3, 2).reshape(n * c, k * k)  # a view: memory order
    step = max(_CHUNK // (k * k), 1)
    if k <= 3:  # a plane's transpose is at most 3 swaps of values: 1.6x np.take's gather
        pairs = [(i * k + j, j * k + i) for i in range(k) for j in range(i + 1, k)]
        scratch = np.empty(step, np.float32)
        for i in range(0, n * c, step):
            block = planes[i:i + step]
            held = scratch[:len(block)]
            for p, q in pairs:
                np.copyto(held, block[:, p])
                block[:, p] = block[:, q]
                block[:, q] = held
        return planes.reshape(a.shape)
    order = [j * k + i for i in range(k) for j in range(k)]
    for i in range(0, n * c, step):
        block = planes[i:i + step]
        block[...] = np.take(block, order, axis=1)
    return planes.reshape(a.shape)


def _transpose_in_place(m: np.ndarray) -> np.ndarray | None:
    """The transpose of a C-contiguous ``r x c`` matrix, C-contiguous in its memory: its ``g``
    blocks of ``r / g`` rows are transposed one at a time (one block of scratch), leaving ``g x c``
    pieces of ``r / g`` values in the order (block, column), which are then permuted into the
    order (column, block) along the permutation's cycles (one piece of scratch). A square matrix
    (VGG's 4096 x 4096 fc7) has its tiles swapped with their mirror images instead (one tile of
    scratch). None when no ``g`` divides ``r`` into blocks of at most ``_BLOCK`` values and
    ``_MOVES`` pieces."""
    r, c = m.shape
    if r == c:
        scratch = np.empty((_TILE, _TILE), np.float32)
        for i in range(0, r, _TILE):
            for j in range(i, r, _TILE):
                upper, lower = m[i:i + _TILE, j:j + _TILE], m[j:j + _TILE, i:i + _TILE]
                held = scratch[:upper.shape[0], :upper.shape[1]]
                np.copyto(held, upper)
                upper[...] = lower.T
                lower[...] = held.T
        return m
    g = next((g for g in range(1, r + 1) if r % g == 0 and r // g * c <= _BLOCK), r)
    if r // g * c > _BLOCK or g * c > _MOVES:
        return None
    rows = r // g
    blocks = m.reshape(g, rows * c)
    for k in range(g):
        scratch = blocks[k].reshape(rows, c).copy()
        blocks[k].reshape(c, rows)[...] = scratch.T
    pieces = m.reshape(g * c, rows)  # piece k * c + j: column j of block k
    done = bytearray(g * c)
    for start in range(g * c):
        if done[start]:
            continue
        held = pieces[start].copy()
        q = start
        while True:  # the piece that belongs at q (column q // g of block q % g) moves there
            done[q] = 1
            p = q % g * c + q // g
            if p == start:
                pieces[q] = held
                break
            pieces[q] = pieces[p]
            q = p
    return m.reshape(c, r)


def conv_weight(w: np.ndarray) -> np.ndarray:
    """Convolution weights ``H x W x Cin x Cout`` -> ``nn.Conv2d``'s ``Cout x Cin x H x W``.

    The same permutation turns transposed-convolution weights ``H x W x Cout x Cin`` into
    ``nn.ConvTranspose2d``'s ``Cin x Cout x H x W``.

    Args:
        w: the MATLAB weights (trailing singleton dimensions may be missing).

    Returns:
        A float32 array (a view of ``w`` where it can be).
    """
    return pad_ndim(np.asarray(w, np.float32), 4).transpose(3, 2, 0, 1)


def grouped_conv_weight(w: np.ndarray) -> np.ndarray:
    """Grouped convolution weights ``H x W x Cin/G x Cout/G x G`` -> ``nn.Conv2d``'s
    ``Cout x Cin/G x H x W`` (groups one after another).

    Args:
        w: the MATLAB weights (trailing singleton dimensions may be missing).

    Returns:
        A contiguous float32 array.
    """
    w = pad_ndim(np.asarray(w, np.float32), 5)
    kh, kw, cg, fg, g = map(int, w.shape)
    return np.ascontiguousarray(w.transpose(4, 3, 2, 0, 1).reshape(g * fg, cg, kh, kw))


def fc_weight(w: np.ndarray, image_size: Sequence[int] | int | None = None) -> np.ndarray:
    """Fully connected weights -> ``nn.Linear``'s ``O x I``.

    Args:
        w: ``O x I``, or ``H x W x C x O`` as MATLAB stores them after spatial input.
        image_size: ``(H, W, C)`` when the layer follows image input and ``w`` is ``O x I``:
            the columns are then in MATLAB's column-major H, W, C order and are permuted to
            PyTorch's C, H, W flatten order. None after features or sequences.

    Returns:
        A float32 ``O x I`` array whose columns follow PyTorch's ``flatten(1)`` of
        ``N x C x H x W`` (after images) or the features as they are.
    """
    w = np.asarray(w, np.float32)
    if image_size is not None and w.ndim == 2:
        size = [int(v) for v in np.ravel(image_size)]
        if len(size) == 3 and math.prod(size) == w.shape[1] and size[:2] != [1, 1]:
            w = matlab_reshape(w.T, (*size, w.shape[0]))  # O x (H*W*C) -> H x W x C x O
    if w.ndim >= 3:
        w = pad_ndim(w, 4)
        w = w.transpose(3, 2, 0, 1).reshape(w.shape[3], -1)
    return w


def fc_matrix(w: np.ndarray) -> np.ndarray:
    """MATLAB fully connected weights ``H x W x C x O`` (or ``O x I``) -> MATLAB's ``O x I``,
    the columns in MATLAB's column-major H, W, C order.

    Args:
        w: the MATLAB weights.

    Returns:
        The ``O x I`` matrix.
    """
    if w.ndim < 3:
        return w
    w = pad_ndim(w, 4)
    return matlab_reshape(w, (-1, w.shape[3])).T


def reorder_gates(a: np.ndarray, order: Sequence[int], directions: int = 1) -> np.ndarray:
    """Recurrent weights or biases with gate blocks stacked along the first dimension, the blocks
    of every direction put in ``order`` (e.g. MATLAB's LSTM ``[i; f; g; o]`` to ONNX's
    ``(i, o, f, g)`` with ``order=(0, 3, 1, 2)``).

    Args:
        a: ``directions * len(order) * N`` rows (any further dimensions).
        order: the source block of each destination block.
        directions: how many directions the rows hold, one after another.

    Returns:
        ``directions x (len(order) * N) x ...`` with the blocks reordered.
    """
    flat = a.reshape(a.shape[0], -1) if a.ndim > 1 else a.reshape(-1, 1)
    blocks = np.split(flat, directions * len(order))
    ordered = [blocks[d * len(order) + g] for d in range(directions) for g in order]
    return np.concatenate(ordered).reshape(directions, -1, *flat.shape[1:])


def initial_state(a: np.ndarray | None, directions: int, size: int) -> np.ndarray:
    """A recurrent layer's stored state (``directions * N x 1``) as ``directions x N`` float32
    (zeros when there is none).

    Args:
        a: the stored state, or None.
        directions: 1, or 2 for a bidirectional layer.
        size: the hidden size N.

    Returns:
        The state, one row per direction.
    """
    if a is None:
        return np.zeros((directions, size), dtype=np.float32)
    return np.asarray(a, np.float32).reshape(directions, size)


def broadcast_operand(a: np.ndarray, image: bool) -> np.ndarray:
    """A per-element operand stored for one MATLAB observation (a scalar, ``1 x 1 x C``,
    ``H x W x C``; ``C x 1`` for features and sequences) as a float32 array that broadcasts
    against PyTorch's batch-first data as MATLAB's implicit expansion does.

    Args:
        a: the MATLAB array.
        image: whether the data are images (``N x C x H x W``) rather than ``N x C`` /
            ``N x T x C``.

    Returns:
        A 0-d array for a scalar, ``C' x H' x W'`` for images, ``C'`` otherwise.
    """
    a = np.asarray(a, np.float32)
    if a.size == 1:
        return a.reshape(())
    if image:
        return np.ascontiguousarray(pad_ndim(a, 3).transpose(2, 0, 1))
    return a.ravel(order="F")
