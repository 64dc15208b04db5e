"""Reading a layer's hyper-parameters and arrays as converters need them."""

from __future__ import annotations

import contextlib
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from contextvars import ContextVar
from typing import Any, TypeVar

import numpy as np
import torch
from torch import nn
from torch.nn.modules import module as _module_hooks

from matport.convert.layers.registry import ConversionContext
from matport.errors import LayerNotConvertible
from matport.network import layout
from matport.network.model import Layer, Network
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
    if type(value) is tuple and len(value) == 2 and type(value[0]) is int and (
            type(value[1]) is int):  # what the reader stores for a size
        return value
    vals = [int(v) for v in _values(value)]
    if not vals:
        return (default, default)
    return (vals[0], vals[0]) if len(vals) == 1 else (vals[0], vals[1])


def _values(value: Any) -> Any:
    """A stored value's numbers, flattened (numbers and tuples of numbers as they are)."""
    kind = type(value)
    if kind is tuple and all(type(v) in _NUMBERS for v in value):
        return value
    return (value,) if kind in _NUMBERS else np.ravel(value)


_NUMBERS = frozenset({int, float, bool})


def padding(layer: Layer, key: str = "PaddingSize") -> tuple[int, int, int, int]:
    """A padding hyper-parameter as MATLAB ``[top bottom left right]``.

    Args:
        layer: the layer.
        key: ``PaddingSize`` or ``CroppingSize`` (a scalar, ``[vertical horizontal]`` or four
            values).

    Returns:
        ``(top, bottom, left, right)``.
    """
    vals = [int(v) for v in _values(layer.params.get(key, 0))] or [0]
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

    The copy (and any reordering of a permuted view) is numpy's (:func:`layout.contiguous`):
    single-threaded, whereas ``torch.tensor`` of a permuted array runs a parallel copy that is
    orders of magnitude slower on a busy machine.

    Args:
        arr: the array.

    Returns:
        The tensor.
    """
    return torch.from_numpy(layout.contiguous(arr))


# allocations the conversion may turn into tensors in place: id -> the array owning the memory
_OWNED: ContextVar[dict[int, np.ndarray] | None] = ContextVar("matport_owned", default=None)


def adoptable(network: Network) -> dict[int, np.ndarray]:
    """For a conversion of ``network`` that alone holds it (its loader read the file and drops
    it afterwards): the allocations of its learnable and state arrays that exactly one of them
    views (no input normalization's), which :func:`adopting` lets :func:`assign` make tensors
    over, reordered in place, instead of copying them.

    Args:
        network: the network being converted.

    Returns:
        id -> allocation (each taken out once adopted).
    """
    seen: dict[int, np.ndarray | None] = {}
    for lay in network.layers:
        for table in (lay.learnables, lay.state):
            for a in table.values():
                if type(a) is np.ndarray:
                    root = layout.allocation(a)
                    seen[id(root)] = None if id(root) in seen else root
        norm = lay.normalization
        for value in (norm.mean, norm.std, norm.min, norm.max) if norm is not None else ():
            if type(value) is np.ndarray:
                seen[id(layout.allocation(value))] = None
    return {k: v for k, v in seen.items() if v is not None}


@contextlib.contextmanager
def adopting(owned: dict[int, np.ndarray] | None) -> Iterator[None]:
    """:func:`assign` adopts the ``owned`` allocations (:func:`adoptable`; None: none) while a
    built-in converter, which reads each of its layer's arrays once, runs."""
    token = _OWNED.set(owned)
    try:
        yield
    finally:
        _OWNED.reset(token)


def _adopted(a: np.ndarray) -> torch.Tensor | None:
    """``a`` as a float32 tensor over its memory, reordered there, when :func:`adopting` lets it
    be and ``a`` spans the whole of an allocation nothing else views (None otherwise)."""
    owned = _OWNED.get()
    if not owned or type(a) is not np.ndarray or not a.flags.writeable:
        return None
    root = layout.allocation(a)
    if owned.get(id(root)) is not root or not root.flags.owndata or root.nbytes != a.nbytes:
        return None
    done = layout.contiguous_in_place(a)
    if done is None:
        return None
    del owned[id(root)]
    return torch.from_numpy(done)


def adopted_or_copied(a: np.ndarray) -> torch.Tensor:
    """``a`` as a C-contiguous float32 tensor: over its own memory where :func:`adopting`
    allows, else a copy (:func:`tensor`).

    Args:
        a: the array (in PyTorch layout).

    Returns:
        The tensor.
    """
    done = _adopted(a)
    return tensor(a) if done is None else done


M = TypeVar("M", bound=nn.Module)


def _no_reset() -> None:
    """Stands in for a module's ``reset_parameters`` while :func:`on_meta` builds it."""


def _build_on_meta(cls: type[M], *args: Any, **kwargs: Any) -> M:
    module = cls.__new__(cls)
    object.__setattr__(module, "reset_parameters", _no_reset)
    module.__init__(*args, device="meta", **kwargs)  # type: ignore[misc]
    del module.__dict__["reset_parameters"]
    return module


def _build(cls: type[M], *args: Any, **kwargs: Any) -> M:
    return cls(*args, **kwargs)


def on_meta(cls: type[M], *args: Any, **kwargs: Any) -> M:
    """``cls(*args, **kwargs, device="meta")`` without running its ``reset_parameters``: no
    initialiser runs and no memory is allocated; :func:`assign` then gives every parameter and
    buffer its value.

    The torch modules matport builds (convolutions, linear, normalization and recurrent layers)
    initialise only through ``reset_parameters``, which their ``__init__`` calls; an instance
    attribute shadows that method during ``__init__`` (building on the meta device alone would
    still run the initialisers, on meta tensors, at 3/4 of the construction time). Like
    :func:`make`, the module is a copy of one built before for the same arguments.

    Args:
        cls: a ``torch.nn`` module class taking ``device``, or a subclass passing it on.
        args: its positional arguments.
        kwargs: its other keyword arguments.

    Returns:
        The module, its parameters and buffers empty tensors on the meta device.
    """
    return _cached(_build_on_meta, cls, args, kwargs)


def make(cls: type[M], *args: Any, **kwargs: Any) -> M:
    """``cls(*args, **kwargs)``, copied from a module built before for the same arguments.

    Calling a module's ``__init__`` costs tens of microseconds (every attribute goes through
    ``nn.Module.__setattr__``); the copy takes a few: the prototype's attribute dict copied,
    with its containers (hooks, parameters, buffers) copied too. Only modules without
    submodules whose other attributes are immutable values (numbers, text, tuples of them) and
    whose tensors are on the meta device are copied; prototypes are keyed by the arguments'
    types and values (``1`` and ``1.0``, ``0.0`` and ``-0.0`` are different arguments).
    Anything else is built directly.

    Args:
        cls: the module class.
        args: its positional arguments.
        kwargs: its keyword arguments.

    Returns:
        The module, equal in every attribute to ``cls(*args, **kwargs)``.
    """
    return _cached(_build, cls, args, kwargs)


_Prototype = tuple[nn.Module, tuple[str, ...]]
_PROTOTYPES: dict[tuple[Any, ...], _Prototype | None] = {}  # None: not copyable
_MAX_PROTOTYPES = 4096


def _cached(build: Callable[..., M], cls: type[M], args: tuple[Any, ...],
            kwargs: dict[str, Any]) -> M:
    try:
        key = (build, cls, _key(args),
               tuple([(k, _key(v)) for k, v in sorted(kwargs.items())]) if kwargs else ())
        known = key in _PROTOTYPES
    except TypeError:  # an argument that is no key
        return build(cls, *args, **kwargs)
    if known:
        prototype = _PROTOTYPES[key]
        if prototype is None:
            return build(cls, *args, **kwargs)
    else:
        module = build(cls, *args, **kwargs)
        if len(_PROTOTYPES) >= _MAX_PROTOTYPES:
            _PROTOTYPES.clear()
        prototype = _PROTOTYPES[key] = _copyable(module)
        if prototype is None:
            return module
    original, containers = prototype
    state = original.__dict__.copy()
    for name in containers:
        state[name] = state[name].copy()
    module = cls.__new__(cls)
    module.__dict__.update(state)
    return module


def _copyable(module: nn.Module) -> _Prototype | None:
    """``(module, its containers' names)`` when a copy of its attribute dict (containers copied)
    is an equal, independent module; else None. Meta tensors are shared by the copies until
    :func:`assign` replaces them in the copy's own containers."""
    if module._modules:
        return None
    containers = []
    for name, value in module.__dict__.items():
        if type(value) in (dict, OrderedDict, set):
            if name in ("_parameters", "_buffers"):
                if not all(t is None or t.is_meta for t in value.values()):
                    return None  # real tensors: each module needs its own
            elif value:
                return None  # hooks or other registrations
            containers.append(name)
        elif not _immutable(value):
            return None
    return module, tuple(containers)


_IMMUTABLE = (int, float, str, bytes, type(None), torch.dtype, torch.device)


def _immutable(value: Any) -> bool:
    if type(value) is tuple:
        return all(_immutable(v) for v in value)
    return isinstance(value, _IMMUTABLE)


def _key(value: Any) -> Any:
    """``value`` as a key that tells apart what ``==`` does not (types, the sign of a zero):
    ints, text, None and tuples of them (nested) as they are, anything else with its type (no
    key of the first kind holds a type, so that none equals one of the second)."""
    kind = type(value)
    if kind is int or kind is str or value is None:
        return value
    if kind is float:
        return (float, value.hex())
    if kind is tuple and _plain(value):
        return value
    if kind is tuple or kind is list:
        return (kind, tuple(map(_key, value)))
    if isinstance(value, np.floating):
        return (kind, float(value).hex())
    return (kind, value)


def _plain(values: tuple[Any, ...]) -> bool:
    """Whether ``values`` holds only ints, text, None and tuples of them."""
    for v in values:
        kind = type(v)
        if not (kind is int or kind is str or v is None or kind is tuple and _plain(v)):
            return False
    return True


def assign(module: M, values: Mapping[str, np.ndarray | torch.Tensor]) -> M:
    """Give a module built by :func:`on_meta` its values: each of its own parameters and
    buffers (by attribute name, arrays in PyTorch layout) becomes a tensor holding the value
    (arrays are copied by :func:`tensor`, or made tensors in place where :func:`adopting` allows;
    tensors taken as they are); parameters keep their ``requires_grad``.

    Args:
        module: the module.
        values: a value for every one of its parameters and buffers.

    Returns:
        The module.

    Raises:
        ValueError: a name is not one of the module's tensors, a shape differs from the
            module's, or a tensor is left without a value.
    """
    params, buffers = module._parameters, module._buffers
    direct = not (_module_hooks._global_parameter_registration_hooks
                  or _module_hooks._global_buffer_registration_hooks)
    for name, value in values.items():
        old = params[name] if name in params else buffers[name] if name in buffers else getattr(
            module, name, None)
        new = value if isinstance(value, torch.Tensor) else adopted_or_copied(value)
        if not isinstance(old, torch.Tensor) or old.shape != new.shape:
            raise ValueError(f"{type(module).__name__}.{name}: no tensor of shape "
                             f"{tuple(new.shape)}")
        # what nn.Module.__setattr__ calls for a parameter or a buffer, without its dispatch;
        # the entry exists and the new tensor is a leaf, so that without global registration
        # hooks registering it is storing it in the module's dict
        if isinstance(old, nn.Parameter):
            param = nn.Parameter(new, old.requires_grad)
            if direct and name in params:
                params[name] = param
            else:
                module.register_parameter(name, param)
        elif name in buffers:
            if direct:
                buffers[name] = new
            else:
                module.register_buffer(name, new, name not in module._non_persistent_buffers_set)
        else:
            setattr(module, name, new)
    tensors = ([*module._parameters.items(), *module._buffers.items()] if not module._modules
               else [*module.named_parameters(), *module.named_buffers()])
    left = [n for n, t in tensors if t is not None and t.is_meta]
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
    vals: Any = _values(value) if value is not None else ()
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
