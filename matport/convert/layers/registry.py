"""The converter registry: one converter per MATLAB layer class.

Built-in converters register themselves with the :func:`converts` decorator, one module per layer
family; registering a class twice, or a class without a :class:`~matport.network.specs.LayerSpec`,
is refused. Users add converters with :func:`register_converter` (or per call, ``converters=``);
theirs take precedence over the built-in ones.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from torch import nn

from matport.errors import ArgumentError
from matport.network.model import Layer
from matport.network.specs import LAYER_PACKAGE, VECTOR, Format, spec_of


@dataclass(frozen=True)
class ConversionContext:
    """What a converter knows beyond the layer: the formats of its inputs and, where known, their
    sizes for one observation in MATLAB's order (``(H, W, C)``, ``(C,)``), in port order."""

    input_formats: tuple[Format, ...]
    input_sizes: tuple[tuple[int, ...] | None, ...] = ()

    @property
    def input_format(self) -> Format:
        """The first input's format (``vector`` for a layer without inputs)."""
        return self.input_formats[0] if self.input_formats else VECTOR


Converter = Callable[[Layer, ConversionContext], nn.Module]

_builtin: dict[str, Converter] = {}
_user_converters: dict[str, Converter] = {}


def converts(*classes: str) -> Callable[[Converter], Converter]:
    """Register the decorated function as the built-in converter of ``classes``.

    Args:
        classes: MATLAB class names; a short name means the class in ``nnet.cnn.layer``.

    Returns:
        The decorator (it returns the function unchanged).

    Raises:
        ArgumentError: a class is registered already, or has no spec in
            :mod:`matport.network.specs`.
    """
    def register(fn: Converter) -> Converter:
        for name in classes:
            full = name if "." in name else LAYER_PACKAGE + name
            if full in _builtin:
                raise ArgumentError(f"a built-in converter for {full} is registered already")
            if spec_of(full) is None:
                raise ArgumentError(f"{full} has no LayerSpec in matport.network.specs")
            _builtin[full] = fn
        return fn

    return register


def builtin_classes() -> frozenset[str]:
    """The full names of the classes with a built-in converter.

    Returns:
        The class names.
    """
    return frozenset(_builtin)


def register_converter(matlab_class: str, converter: Converter) -> None:
    """Use ``converter(layer, context) -> nn.Module`` for layers of ``matlab_class``.

    ``matlab_class`` is a full class name (``"myproject.layers.ScaleLayer"``) or a short one
    (``"ScaleLayer"``); a registered converter takes precedence over the built-in one (registering
    the same name again replaces it). The converter reads ``layer.params`` / ``layer.learnables``
    (or ``layer.raw`` for a class matport does not know) and ``context.input_formats``; the module
    it returns is called with the layer's inputs in port order, and its output is taken to have
    the first input's format. Raise :class:`LayerNotConvertible` to refuse a setting (it is listed
    with the others).

    Args:
        matlab_class: the class name.
        converter: the converter.
    """
    _user_converters[matlab_class] = converter


def unregister_converter(matlab_class: str) -> None:
    """Forget a converter added by :func:`register_converter` (no-op when absent).

    Args:
        matlab_class: the name it was registered under.
    """
    _user_converters.pop(matlab_class, None)


def find_converter(layer: Layer, extra: Mapping[str, Converter] | None = None,
                   ) -> tuple[Converter | None, bool]:
    """The converter for ``layer`` and whether it is a built-in one.

    Looks in ``extra`` (per call), then the user registry (full class names before short ones),
    then the built-ins.

    Args:
        layer: the layer.
        extra: converters for this call only.

    Returns:
        ``(converter, builtin)``; ``(None, False)`` when there is none.
    """
    for table in (extra or {}, _user_converters):
        for key in (layer.class_name, layer.type):
            if key in table:
                return table[key], False
    builtin = _builtin.get(layer.class_name)
    return (builtin, True) if builtin is not None else (None, False)
