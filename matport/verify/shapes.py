"""Matching a tensor's shape to another's: MATLAB exports declare shapes their own way (batch
fixed at 1, sequences as ``T x N x C``, FC outputs as ``N x K x 1 x 1``)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from matport.errors import VerificationError


def fit(a: np.ndarray, shape: Sequence[int | None]) -> np.ndarray | None:
    """``a`` with singleton axes dropped/added and its other axes permuted to match ``shape``.

    Args:
        a: the array (one sample).
        shape: the wanted shape; None stands for any size.

    Returns:
        The rearranged array (the stable axis order preferred), or None when impossible.
    """
    core = [s for s in a.shape if s != 1]
    want = [s for s in shape if s != 1]
    if len(core) != len(want):
        return None
    perm: list[int] = []
    for w in want:
        j = next((j for j in range(len(core)) if j not in perm and w in (None, core[j])), None)
        if j is None:
            return None
        perm.append(j)
    moved = iter(a.reshape(core).transpose(perm).shape)
    out_shape = [1 if s == 1 else next(moved) for s in shape]
    return a.reshape(core).transpose(perm).reshape(out_shape)


def aligned(t: np.ndarray, o: np.ndarray, t_name: str, o_name: str) -> np.ndarray:
    """``t`` (batch first) rearranged per sample (see `fit`) to ``o``'s shape.

    Args:
        t: the PyTorch side, batch first.
        o: the ONNX side, batch first.
        t_name: what ``t`` is, for the error message.
        o_name: what ``o`` is, for the error message.

    Returns:
        ``t`` shaped like ``o``.

    Raises:
        VerificationError: when the shapes cannot be matched.
    """
    if t.shape == o.shape:
        return t
    if len(t) == len(o):
        fitted = [fit(s, o.shape[1:]) for s in t]
        if all(f is not None for f in fitted):
            return np.stack(fitted)  # type: ignore[arg-type]
    raise VerificationError(
        f"{t_name} has shape {list(t.shape)} but the ONNX tensor {o_name} has {list(o.shape)}: "
        "they cannot be compared"
    )
