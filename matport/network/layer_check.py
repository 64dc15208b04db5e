"""Checking one layer: its stored arrays against the sizes its hyper-parameters and inputs imply.

A :class:`LayerCheck` binds the symbols of the layer's :class:`~matport.network.specs.ArraySpec`
dimensions (``C`` from the input's channels, ``F`` from ``NumFilters``, ...), checks every stored
array against them (binding the symbols nothing bound yet from the array itself) and collects the
reasons it finds. :mod:`matport.network.checks` drives it through the graph.
"""

from __future__ import annotations

import functools
import math
import re

import numpy as np

from matport.network import layout
from matport.network.model import Layer

Size = tuple[int, ...] | None

_DIM = re.compile(r"(\d*)([A-Za-z]+)$")


def shape_text(shape: tuple[int, ...]) -> str:
    """A shape as MATLAB prints it.

    Args:
        shape: the shape.

    Returns:
        ``"3x3x8"`` (``"scalar"`` for no dimensions).
    """
    return "x".join(str(int(s)) for s in shape) or "scalar"


class LayerCheck:
    """One layer's check: its inputs' sizes, the symbols bound so far, the reasons found."""

    def __init__(self, layer: Layer, ins: list[Size]) -> None:
        self.layer = layer
        self.ins = ins
        self.first: Size = ins[0] if ins else None
        self.values: dict[str, int] = {}
        self.origins: dict[str, str] = {}
        self.reasons: list[str] = []
        self.arrays_checked = False

    def fail(self, reason: str) -> None:
        """Record why the layer is inconsistent.

        Args:
            reason: one sentence naming the setting or array.
        """
        self.reasons.append(reason)

    def ints(self, key: str, default: tuple[int, ...] | None,
             minimum: int) -> tuple[int, ...] | None:
        """A numeric hyper-parameter as integers >= ``minimum`` (``default`` when absent; None,
        with a reason, when it is not; None without one when it is text such as 'auto')."""
        value = self.layer.params.get(key)
        if value is None:
            return default
        # what the reader stores (integers as int): the general path would give the same
        if type(value) is int and minimum <= value < 2**53:
            return (value,)
        if type(value) is tuple and all(type(v) is int and minimum <= v < 2**53 for v in value):
            return value
        if isinstance(value, str):
            return None
        vals = _floats(value)
        if vals is None:
            return None
        if not all(math.isfinite(v) and v == round(v) and v >= minimum for v in vals):
            shown = " ".join(f"{v:g}" for v in vals)
            self.fail(f"{key} [{shown}]: every value must be an integer >= {minimum}")
            return None
        return tuple(int(v) for v in vals)

    def pair(self, key: str, minimum: int = 1) -> tuple[int, int] | None:
        """A 2-D size hyper-parameter (``FilterSize``, ``Stride``) as ``(vertical, horizontal)``,
        None when absent-and-no-default or invalid (see :meth:`ints`)."""
        vals = self.ints(key, (1,), minimum)
        if not vals:
            return None
        return (vals[0], vals[0]) if len(vals) == 1 else (vals[0], vals[1])

    def bind(self, symbol: str, value: int | None, origin: str) -> None:
        """Bind ``symbol`` (a reason when it is bound to another value already)."""
        if value is None:
            return
        if symbol in self.values and self.values[symbol] != value:
            self.fail(f"{origin} is {value} but {self.origins[symbol]} is {self.values[symbol]}")
            return
        self.values.setdefault(symbol, value)
        self.origins.setdefault(symbol, origin)

    def param(self, symbol: str, key: str) -> None:
        """Bind ``symbol`` to the numeric hyper-parameter ``key`` (when it is one)."""
        vals = self.ints(key, None, 1)
        if vals:
            self.bind(symbol, math.prod(vals), key)

    def channels(self, symbol: str = "C") -> None:
        """Bind ``symbol`` to the first input's channels."""
        if self.first is not None:
            self.bind(symbol, self.first[-1], "the input's channel count")

    def check_arrays(self) -> None:
        """Check every stored array of the spec against the bound symbols (binding the rest)."""
        self.arrays_checked = True
        spec = self.layer.spec
        for aspec in spec.arrays if spec is not None else ():
            arr = self.layer.array(aspec.name)
            if arr is not None:
                if self.layer.type == "FullyConnectedLayer" and aspec.name == "Weights":
                    arr = layout.fc_matrix(arr)
                self._check_array(aspec.name, aspec.dims, arr)

    def _check_array(self, name: str, dims: tuple[str, ...], arr: np.ndarray) -> None:
        parsed = _parse(dims)
        symbols = [p for p in parsed if p[1]]
        if len(symbols) == 1:
            factor, sym = symbols[0]  # a vector: only its length counts
            self._dim(name, arr.shape, factor, sym, arr.size)
            return
        shape = arr.shape
        if len(shape) > len(dims) and all(s == 1 for s in shape[len(dims):]):
            shape = shape[:len(dims)]
        shape = shape + (1,) * (len(dims) - len(shape))
        if len(shape) != len(dims):
            self.fail(f"{name} is {shape_text(arr.shape)}, expected {' x '.join(dims)}")
            return
        for (factor, sym), size in zip(parsed, shape, strict=True):
            if not sym and size != 1:
                self.fail(f"{name} is {shape_text(arr.shape)}, expected {' x '.join(dims)}")
            if not sym and size != 1 or sym and not self._dim(name, arr.shape, factor, sym, size):
                return

    def _dim(self, name: str, shape: tuple[int, ...], factor: int, sym: str, size: int) -> bool:
        expected = self.values.get(sym)
        if expected is None and size % factor:
            self.fail(f"{name} is {shape_text(shape)}: {size} is not a multiple of {factor} "
                      f"along its {factor}{sym} dimension")
            return False
        if expected is None:
            self.bind(sym, size // factor, f"{name}'s size")
            return True
        if size == factor * expected:
            return True
        self.fail(f"{name} is {shape_text(shape)}: {factor * expected} values expected along its "
                  f"{factor if factor > 1 else ''}{sym} dimension ({sym} = {expected} from "
                  f"{self.origins.get(sym, 'the other arrays')})")
        return False


@functools.cache
def _parse(dims: tuple[str, ...]) -> tuple[tuple[int, str], ...]:
    """An :class:`~matport.network.specs.ArraySpec`'s dimensions as ``(factor, symbol)``
    (``(1, "")`` for a singleton)."""
    return tuple((1, "") if d == "1" else _split(d) for d in dims)


def _split(dim: str) -> tuple[int, str]:
    m = _DIM.match(dim)
    assert m is not None, dim
    return (int(m.group(1)) if m.group(1) else 1, m.group(2))


def _floats(value: object) -> tuple[float, ...] | None:
    """A numeric hyper-parameter's values as floats, flattened (None when it is not numeric).
    Plain numbers and tuples of them (what the reader stores) skip numpy."""
    if type(value) in (int, float, bool):
        return (float(value),)  # type: ignore[arg-type]
    if type(value) is tuple and all(type(v) in (int, float, bool) for v in value):
        return tuple(map(float, value))
    try:
        return tuple(float(v) for v in np.ravel(np.asarray(value, dtype=np.float64)))
    except (TypeError, ValueError):
        return None


