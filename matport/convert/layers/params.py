"""Reading a layer's hyper-parameters and arrays as converters need them."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

import numpy as np
import torch
from torch import nn

from matport.convert.layers.registry import ConversionContext
from matport.errors import LayerNotConvertible
from matport.network.model import Layer
from matport.network.specs import Format


def pair(value: Any, default: int = 1) -> tuple[int, int]:
    """A MATLAB size given as a scalar, [a] or [a b] -> (a, b).

    Args:
        value: the stored value (None when absent).
        default: both values when absent or empty.

    Returns:
        ``(vertical, horizontal)``.
    """
    if value is None:
        return (default, default)
    vals = [int(v) for v in np.ravel(value)]
    if not vals:
        return (default, default)
    return (vals[0], vals[0]) if len(vals) == 1 else (vals[0], vals[1])


def padding(layer: Layer, key: str = "PaddingSize") -> tuple[int, int, int, int]:
    """A padding hyper-parameter as MATLAB ``[top bottom left right]``.

    Args:
        layer: the layer.
        key: ``PaddingSize`` or ``CroppingSize`` (a scalar, ``[vertical horizontal]`` or four
            values).

    Returns:
        ``(top, bottom, left, right)``.
    """
    vals = [int(v) for v in np.ravel(layer.params.get(key, 0))] or [0]
    if len(vals) == 1:
        return (vals[0], vals[0], vals[0], vals[0])
    if len(vals) == 2:
        return (vals[0], vals[0], vals[1], vals[1])
    return (vals[0], vals[1], vals[2], vals[3])


def array(layer: Layer, key: str) -> np.ndarray:
    """A learnable or state array as float32, in MATLAB layout.

    Args:
        layer: the layer.
        key: the array's field name.

    Returns:
        The array.

    Raises:
        LayerNotConvertible: it is absent or empty.
    """
    arr = layer.array(key)
    if arr is None:
        raise LayerNotConvertible(f"missing array {key}")
    return np.asarray(arr, dtype=np.float32)


def tensor(arr: np.ndarray) -> torch.Tensor:
    """A float32 tensor holding a copy of ``arr`` in its own, exactly sized memory (never a view
    into a larger array such as the file's inflated buffer).

    The copy (and any reordering of a permuted view) is numpy's: single-threaded, whereas
    ``torch.tensor`` of a permuted array runs a parallel copy that is orders of magnitude
    slower on a busy machine.

    Args:
        arr: the array.

    Returns:
        The tensor.
    """
    return torch.from_numpy(np.array(arr, dtype=np.float32, order="C", copy=True))


M = TypeVar("M", bound=nn.Module)


def _no_reset() -> None:
    """Stands in for a module's ``reset_parameters`` while :func:`on_meta` builds it."""


def on_meta(cls: type[M], *args: Any, **kwargs: Any) -> M:
    """``cls(*args, **kwargs, device="meta")`` without running its ``reset_parameters``: no
    initialiser runs and no memory is allocated; :func:`assign` then gives every parameter and
    buffer its value.

    The torch modules matport builds (convolutions, linear, normalization and recurrent layers)
    initialise only through ``reset_parameters``, which their ``__init__`` calls; an instance
    attribute shadows that method during ``__init__`` (building on the meta device alone would
    still run the initialisers, on meta tensors, at 3/4 of the construction time).

    Args:
        cls: a ``torch.nn`` module class taking ``device``, or a subclass passing it on.
        args: its positional arguments.
        kwargs: its other keyword arguments.

    Returns:
        The module, its parameters and buffers empty tensors on the meta device.
    """
    module = cls.__new__(cls)
    object.__setattr__(module, "reset_parameters", _no_reset)
    module.__init__(*args, device="meta", **kwargs)  # type: ignore[misc]
    del module.__dict__["reset_parameters"]
    return module


def assign(module: M, values: Mapping[str, np.ndarray | torch.Tensor]) -> M:
    """Give a module built by :func:`on_meta` its values: each of its own parameters and
    buffers (by attribute name, arrays in PyTorch layout) becomes a tensor holding the value
    (arrays are copied by :func:`tensor`, tensors taken as they are); parameters keep their
    ``requires_grad``.

    Args:
        module: the module.
        values: a value for every one of its parameters and buffers.

    Returns:
        The module.

    Raises:
        ValueError: a name is not one of the module's tensors, a shape differs from the
            module's, or a tensor is left without a value.
    """
    for name, value in values.items():
        old = getattr(module, name, None)
        new = value if isinstance(value, torch.Tensor) else tensor(value)
        if not isinstance(old, torch.Tensor) or old.shape != new.shape:
            raise ValueError(f"{type(module).__name__}.{name}: no tensor of shape "
                             f"{tuple(new.shape)}")
        setattr(module, name, nn.Parameter(new, old.requires_grad)
                if isinstance(old, nn.Parameter) else new)
    left = [n for n, t in (*module.named_parameters(), *module.named_buffers()) if t.is_meta]
    if left:
        raise ValueError(f"{type(module).__name__}: no value for {', '.join(left)}")
    return module


def text(layer: Layer, key: str, default: str) -> str:
    """A text hyper-parameter.

    Args:
        layer: the layer.
        key: the parameter.
        default: the value when absent.

    Returns:
        The text.
    """
    value = layer.params.get(key, default)
    return str(value) if value is not None else default


def number(layer: Layer, key: str, default: float) -> float:
    """A numeric hyper-parameter's first value.

    Args:
        layer: the layer.
        key: the parameter.
        default: the value when absent or empty.

    Returns:
        The number.
    """
    value = layer.params.get(key, default)
    vals = np.ravel(value) if value is not None else np.zeros(0)
    return float(vals[0]) if len(vals) else default


def require_format(context: ConversionContext, fmt: Format) -> None:
    """Refuse a layer whose first input does not have the format ``fmt``.

    Args:
        context: the conversion context.
        fmt: the format the converter needs.

    Raises:
        LayerNotConvertible: the first input has another format.
    """
    if context.input_format != fmt:
        raise LayerNotConvertible(f"needs {fmt} input, got {context.input_format} input")


def refuse_flags(layer: Layer, *keys: str) -> None:
    """Refuse a layer with any of the boolean options ``keys`` set.

    Args:
        layer: the layer.
        keys: option names.

    Raises:
        LayerNotConvertible: naming the first option set.
    """
    for key in keys:
        if layer.params.get(key):
            raise LayerNotConvertible(f"{key} is not supported")
