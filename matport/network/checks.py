"""Whether a network can run: sizes propagated from the input layers (as MATLAB's
``analyzeNetwork`` does) and every layer's arrays checked against its hyper-parameters and its
inputs' sizes, without torch.

A size is that of one observation in MATLAB's order: ``(H, W, C)`` for images, ``(C,)`` for
features and sequences, or None where it is not known (a user-defined layer, a size that depends
on the data). Unknown sizes are never guessed: the checks that need them are skipped, and a layer
found inconsistent passes an unknown size on so that one defect is reported once.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from matport.errors import ConversionError
from matport.network.layer_check import LayerCheck, Size, shape_text
from matport.network.model import GraphIndex, Layer, Network
from matport.network.specs import output_ports

Problem = tuple[str, str, str]  # (layer name, MATLAB class, reason)


# ---------------------------------------------------------------------------------------------
# Size rules: the size of a layer's main output from its inputs' sizes and hyper-parameters
# ---------------------------------------------------------------------------------------------


def _input_size(ck: LayerCheck) -> Size:
    size = ck.ints("InputSize", None, 1)
    if size is None:
        return None
    if ck.layer.type == "ImageInputLayer":
        return size + (1,) if len(size) == 2 else size
    return size if len(size) == 1 else None


def _window(ck: LayerCheck, kernel: tuple[int, int] | None, dilation: tuple[int, int] | None,
            transposed: bool = False) -> Size:
    """The output of a convolution or pooling window over the first (image) input."""
    stride = ck.pair("Stride")
    same = str(ck.layer.params.get("PaddingMode", "manual")) == "same"
    pads = ck.ints("CroppingSize" if transposed else "PaddingSize", (0,), 0)
    if pads is not None and len(pads) in (1, 2):
        pads = (pads[0],) * 2 + (pads[-1],) * 2
    elif pads is not None and len(pads) != 4:
        ck.fail(f"padding [{' '.join(map(str, pads))}] is not [top bottom left right]")
        pads = None
    if transposed:
        same = str(ck.layer.params.get("CroppingMode", "manual")) == "same"
    if ck.first is None or len(ck.first) != 3 or None in (kernel, dilation, stride) or (
            pads is None and not same):
        return None
    assert kernel is not None and dilation is not None and stride is not None
    pads = pads if pads is not None else (0, 0, 0, 0)
    out = []
    for i in range(2):
        size, k, d, s = ck.first[i], kernel[i], dilation[i], stride[i]
        if transposed:
            n = size * s if same else (size - 1) * s + k - pads[2 * i] - pads[2 * i + 1]
        elif same:
            n = -(-size // s)
        else:
            n = (size + pads[2 * i] + pads[2 * i + 1] - (k - 1) * d - 1) // s + 1
        if n < 1:
            ck.fail(f"a {shape_text(ck.first[:2])} input gives an empty output")
            return None
        out.append(n)
    return (out[0], out[1], -1)


def _with_channels(size: Size, channels: int | None) -> Size:
    return None if size is None or channels is None else size[:2] + (channels,)


def _kernel(ck: LayerCheck) -> tuple[int, int] | None:
    h, w = ck.values.get("H"), ck.values.get("W")
    return (h, w) if h is not None and w is not None else None


def _convolution(ck: LayerCheck) -> Size:
    size = ck.pair("FilterSize")
    if size is not None:
        ck.bind("H", size[0], "FilterSize")
        ck.bind("W", size[1], "FilterSize")
    kind = ck.layer.type
    if kind == "GroupedConvolution2DLayer":
        ck.param("G", "NumGroups")
        ck.param("Cg", "NumChannelsPerGroup")
        ck.param("Fg", "NumFiltersPerGroup")
    else:
        ck.channels()
        ck.param("C", "NumChannels")
        ck.param("F", "NumFilters")
    ck.check_arrays()
    v = ck.values
    if kind == "GroupedConvolution2DLayer":
        if None not in (v.get("Cg"), v.get("G")) and ck.first is not None and (
                v["Cg"] * v["G"] != ck.first[-1]):
            ck.fail(f"{v['G']} groups of {v['Cg']} channels, but the input has "
                    f"{ck.first[-1]} channels")
        out = v["Fg"] * v["G"] if None not in (v.get("Fg"), v.get("G")) else None
        return _with_channels(_window(ck, _kernel(ck), ck.pair("DilationFactor")), out)
    if kind == "TransposedConvolution2DLayer":
        return _with_channels(_window(ck, _kernel(ck), (1, 1), transposed=True), v.get("F"))
    return _with_channels(_window(ck, _kernel(ck), ck.pair("DilationFactor")), v.get("F"))


def _pooling(ck: LayerCheck) -> Size:
    channels = ck.first[-1] if ck.first is not None else None
    return _with_channels(_window(ck, ck.pair("PoolSize"), (1, 1)), channels)


def _normalization(ck: LayerCheck) -> Size:
    ck.channels()
    for key in ("Epsilon",):
        value = ck.layer.params.get(key)
        if value is not None and not (isinstance(value, int | float) and value > 0
                                      and math.isfinite(value)):
            ck.fail(f"{key} {value!r} is not a positive number")
    return ck.first


def _fully_connected(ck: LayerCheck) -> Size:
    if ck.first is not None:
        ck.bind("I", math.prod(ck.first), "the input's size")
        stated = ck.ints("InputSize", None, 1)
        if stated is not None and len(stated) == 3 == len(ck.first) and stated != ck.first:
            ck.fail(f"InputSize {shape_text(stated)} but the input is {shape_text(ck.first)}")
    ck.param("O", "OutputSize")
    ck.check_arrays()
    out = ck.values.get("O")
    return (out,) if out is not None else None


def _recurrent(ck: LayerCheck) -> Size:
    ck.channels("D")
    ck.param("N", "NumHiddenUnits")
    if ck.layer.type == "GRULayer":
        n = ck.values.get("N")
        mode = ck.layer.params.get("ResetGateMode", "after-multiplication")
        if n is not None:
            ck.bind("B", (6 if mode == "recurrent-bias-after-multiplication" else 3) * n,
                    f"NumHiddenUnits with ResetGateMode '{mode}'")
    ck.check_arrays()
    n = ck.values.get("N")
    return (n * (2 if ck.layer.type == "BiLSTMLayer" else 1),) if n is not None else None


def _attention(ck: LayerCheck) -> Size:
    ck.channels()
    ck.param("K", "NumKeyChannels")
    ck.param("V", "NumValueChannels")
    ck.param("O", "OutputSize")
    ck.check_arrays()
    out = ck.values.get("O")
    return (out,) if out is not None else None


def _position_embedding(ck: LayerCheck) -> Size:
    ck.param("O", "OutputSize")
    ck.param("P", "MaxPosition")
    ck.check_arrays()
    out = ck.values.get("O")
    return (out,) if out is not None else None


def _same_inputs(ck: LayerCheck, axis: int | None) -> Size:
    """Inputs of equal sizes except along ``axis`` (summed there; None: added)."""
    if any(s is None for s in ck.ins) or not ck.ins:
        return None
    sizes = [s for s in ck.ins if s is not None]
    others = {tuple(v for i, v in enumerate(s) if i != axis) for s in sizes}
    if len(others) > 1 or len({len(s) for s in sizes}) > 1:
        ck.fail("inputs of sizes " + ", ".join(shape_text(s) for s in sizes) + " do not fit")
        return None
    if axis is None or axis >= len(sizes[0]):
        return sizes[0]
    return tuple(sum(s[i] for s in sizes) if i == axis else v for i, v in enumerate(sizes[0]))


def _concatenation(ck: LayerCheck) -> Size:
    if ck.layer.type == "DepthConcatenationLayer":
        return _same_inputs(ck, 2 if ck.first is not None and len(ck.first) == 3 else 0)
    dim = ck.ints("Dim", None, 1)
    return _same_inputs(ck, dim[0] - 1) if dim else None


def _flatten(ck: LayerCheck) -> Size:
    return (math.prod(ck.first),) if ck.first is not None else None


def _resize(ck: LayerCheck) -> Size:
    size = ck.layer.params.get("OutputSize")
    vals = [float(v) for v in np.ravel(size)] if isinstance(size, tuple) else []
    if len(vals) >= 2 and all(map(math.isfinite, vals[:2])) and ck.first is not None:
        return (int(vals[0]), int(vals[1]), ck.first[-1])
    return None


def _global_pooling(ck: LayerCheck) -> Size:
    return _with_channels((1, 1), ck.first[-1] if ck.first is not None else None)


def _quadratic(ck: LayerCheck) -> Size:
    n = math.prod(ck.first) if ck.first is not None else None
    return (n * (n + 1) // 2,) if n is not None else None


def _zero_padding(ck: LayerCheck) -> Size:
    pads = [ck.ints(k, (0,), 0) for k in ("Top", "Bottom", "Left", "Right")]
    if ck.first is None or len(ck.first) != 3 or any(p is None for p in pads):
        return None
    t, b, left, r = (p[0] for p in pads if p is not None)
    return (ck.first[0] + t + b, ck.first[1] + left + r, ck.first[2])


def _unpooling(ck: LayerCheck) -> Size:
    return ck.ins[2] if len(ck.ins) == 3 else None


_RULES: dict[str, Callable[[LayerCheck], Size]] = {
    "ImageInputLayer": _input_size, "FeatureInputLayer": _input_size,
    "SequenceInputLayer": _input_size,
    "Convolution2DLayer": _convolution, "GroupedConvolution2DLayer": _convolution,
    "TransposedConvolution2DLayer": _convolution,
    "BatchNormalizationLayer": _normalization, "LayerNormalizationLayer": _normalization,
    "MaxPooling2DLayer": _pooling, "AveragePooling2DLayer": _pooling,
    "GlobalAveragePooling2DLayer": _global_pooling, "GlobalMaxPooling2DLayer": _global_pooling,
    "MaxUnpooling2DLayer": _unpooling,
    "FullyConnectedLayer": _fully_connected,
    "AdditionLayer": lambda ck: _same_inputs(ck, None),
    "DepthConcatenationLayer": _concatenation, "ConcatenationLayer": _concatenation,
    "FlattenLayer": _flatten, "Resize2DLayer": _resize,
    "LSTMLayer": _recurrent, "LSTMProjectedLayer": _recurrent, "BiLSTMLayer": _recurrent,
    "GRULayer": _recurrent,
    "SelfAttentionLayer": _attention, "PositionEmbeddingLayer": _position_embedding,
    "Indexing1DLayer": lambda ck: ck.first,
    "QuadraticLayer": _quadratic, "FlattenCStyleLayer": _flatten,
    "ZeroPadding2dLayer": _zero_padding, "GlobalAveragePooling2dLayer": _global_pooling,
}


def _output_sizes(layer: Layer, ck: LayerCheck) -> list[Size]:
    """The sizes of every output port of ``layer``."""
    spec = layer.spec
    if spec is None:
        return [None] * len(output_ports(layer))
    rule = _RULES.get(spec.type)
    main = rule(ck) if rule is not None else ck.first if spec.keeps_size else None
    if not ck.arrays_checked:
        ck.check_arrays()
    if ck.reasons:
        return [None] * len(output_ports(layer))
    ports = spec.output_ports(layer)
    if ports == ("out",):
        return [main]
    # max pooling's unpooling outputs: the indices have the output's size, 'size' the input's
    return [{"out": main, "indices": main, "size": ck.first}.get(port) for port in ports]


def analyze(network: Network, graph: GraphIndex | None = None
            ) -> tuple[dict[tuple[str, int], Size], list[Problem]]:
    """Propagate sizes from the input layers and check every layer on the way.

    Args:
        network: the network.
        graph: its index, when the caller has one.

    Returns:
        The size of every ``(layer name, output index)`` and the problems
        (see :func:`check_network`).

    Raises:
        ValueError: the layer graph has a cycle.
    """
    sizes: dict[tuple[str, int], Size] = {}
    problems: list[Problem] = []
    graph = graph or network.index()
    for layer in graph.topological_order():
        ins = [sizes.get(ref) for ref in graph.input_refs(layer)]
        ck = LayerCheck(layer, ins)
        for i, size in enumerate(_output_sizes(layer, ck)):
            sizes[(layer.name, i)] = size
        if ck.reasons:
            problems.append((layer.name, layer.class_name, "; ".join(ck.reasons)))
    return sizes, problems


def check_network(network: Network) -> list[Problem]:
    """Every layer whose arrays contradict its hyper-parameters or its inputs' sizes.

    Sizes are propagated from the input layers in topological order; a layer whose class has no
    spec (user-defined) passes an unknown size on.

    Args:
        network: the network.

    Returns:
        ``(layer name, MATLAB class, reason)`` for every inconsistent layer, in graph order.

    Raises:
        ValueError: the layer graph has a cycle.
    """
    return analyze(network)[1]


def output_sizes(network: Network) -> dict[str, Size]:
    """The size of every layer's main output for one observation, in MATLAB's order.

    Args:
        network: the network.

    Returns:
        Layer name -> ``(H, W, C)`` for images, ``(C,)`` for features and sequences (per time
        step), None where unknown (after a user-defined layer, or an inconsistent one).

    Raises:
        ValueError: the layer graph has a cycle.
    """
    sizes = analyze(network)[0]
    return {lay.name: sizes[(lay.name, 0)] for lay in network.layers}


def warn_non_finite(network: Network) -> list[str]:
    """Warn (``RuntimeWarning``) about NaN or Inf values in any layer's arrays.

    Args:
        network: the network.

    Returns:
        ``"layer (array, ...)"`` for every layer with non-finite values (empty: no warning).
    """
    tables = [({**lay.learnables, **lay.state} if lay.learnables and lay.state
               else lay.learnables or lay.state) for lay in network.layers]
    found = []
    with np.errstate(over="ignore", invalid="ignore"):  # see _finite
        if not all(_finite(a) for a in _pooled(tables)):  # then say where
            for lay, arrays in zip(network.layers, tables, strict=True):
                bad = [k for k, a in arrays.items() if not _finite(a)]
                if bad:
                    found.append(f"{lay.name} ({', '.join(bad)})")
    if found:
        where = network.source or network.path or "network"
        warnings.warn(f"{where}: NaN or Inf values in the arrays of {len(found)} layer(s): "
                      + "; ".join(found), RuntimeWarning, stacklevel=2)
    return found


def _pooled(tables: list[dict[str, Any]]) -> Iterator[np.ndarray]:
    """The floating-point arrays of ``tables``, the small ones joined into one (checking each
    costs more than its values)."""
    small = []
    for arrays in tables:
        for a in arrays.values():
            a = a if type(a) is np.ndarray else np.asarray(a)
            if a.dtype.kind == "f":
                if a.size > _POOLED:
                    yield a
                else:
                    small.append(a.reshape(-1, order="A"))
    if small:
        yield np.concatenate(small)


_POOLED = 4096


def _finite(a: Any) -> bool:
    """Whether every value of ``a`` is finite (numpy's overflow warnings silenced by the
    caller)."""
    a = a if type(a) is np.ndarray else np.asarray(a)
    if a.dtype.kind != "f":
        return True
    flat = a.reshape(-1, order="A")
    # the values' dot product with themselves is not finite when one of them is not (or, rarely,
    # when their squares overflow): one pass without a temporary array, value by value only then
    return bool(np.isfinite(np.dot(flat, flat))) or bool(np.isfinite(a).all())


def require_consistent(network: Network, where: Any = None) -> None:
    """Raise one :class:`ConversionError` listing every inconsistent layer (see
    :func:`check_network`); warn about non-finite array values.

    Args:
        network: the network.
        where: how to name the network in the message (default: its file and variable).

    Raises:
        ConversionError: some layer's arrays contradict its settings or inputs, or the graph
            has a cycle.
    """
    where = where or (f"{network.source}:{network.path}" if network.source
                      else network.path or "network")
    try:
        problems = check_network(network)
    except ValueError as exc:
        raise ConversionError(f"{where}: {exc}") from None
    if problems:
        raise ConversionError(
            f"{where}: {len(problems)} layer(s) have arrays that contradict their settings or "
            "inputs:", problems)
    warn_non_finite(network)
