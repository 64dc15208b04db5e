"""Reading a layer's hyper-parameters and arrays as converters need them."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from matport.convert.layers.registry import ConversionContext
from matport.errors import LayerNotConvertible
from matport.network.model import Layer
from matport.network.specs import Format


def pair(value: Any, default: int = 1) -> tuple[int, int]:
    """A MATLAB size given as a scalar, [a] or [a b] -> (a, b)."""
    if value is None:
        return (default, default)
    vals = [int(v) for v in np.ravel(value)]
    if not vals:
        return (default, default)
    return (vals[0], vals[0]) if len(vals) == 1 else (vals[0], vals[1])


def padding(layer: Layer, key: str = "PaddingSize") -> tuple[int, int, int, int]:
    """MATLAB ``[top bottom left right]`` (or a scalar / ``[vertical horizontal]``)."""
    vals = [int(v) for v in np.ravel(layer.params.get(key, 0))] or [0]
    if len(vals) == 1:
        return (vals[0], vals[0], vals[0], vals[0])
    if len(vals) == 2:
        return (vals[0], vals[0], vals[1], vals[1])
    return (vals[0], vals[1], vals[2], vals[3])


def array(layer: Layer, key: str) -> np.ndarray:
    """A learnable or state array as float32 (raises :class:`LayerNotConvertible` when absent
    or empty)."""
    arr = layer.array(key)
    if arr is None:
        raise LayerNotConvertible(f"missing array {key}")
    return arr.astype(np.float32)


def tensor(arr: np.ndarray) -> torch.Tensor:
    """A float32 tensor holding a copy of ``arr``."""
    return torch.tensor(np.asarray(arr, dtype=np.float32))


def text(layer: Layer, key: str, default: str) -> str:
    """A text hyper-parameter (``default`` when absent)."""
    value = layer.params.get(key, default)
    return str(value) if value is not None else default


def number(layer: Layer, key: str, default: float) -> float:
    """A numeric hyper-parameter's first value (``default`` when absent or empty)."""
    value = layer.params.get(key, default)
    vals = np.ravel(value) if value is not None else np.zeros(0)
    return float(vals[0]) if len(vals) else default


def require_format(context: ConversionContext, fmt: Format) -> None:
    """Refuse a layer whose first input does not have the format ``fmt``."""
    if context.input_format != fmt:
        raise LayerNotConvertible(f"needs {fmt} input, got {context.input_format} input")


def refuse_flags(layer: Layer, *keys: str) -> None:
    """Refuse a layer with any of the boolean options ``keys`` set."""
    for key in keys:
        if layer.params.get(key):
            raise LayerNotConvertible(f"{key} is not supported")
