"""MATLAB class objects (layer 1 values) -> :class:`~matport.network.model.Network`.

Layers are read generically from their saved struct (``saveobj``) or property map, so every struct
``Version`` of every class reads; what differs between versions is normalised by the tables below.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

from matport.errors import NetworkError
from matport.mat.values import Categorical, MatObject, ObjectArray, Struct, Table
from matport.network.layout import pad_ndim
from matport.network.model import (
    OUTPUT_LAYER_TYPES,
    Connection,
    Layer,
    Network,
    Normalization,
)
from matport.network.specs import LAYER_PACKAGE, array_names, spec_of

NETWORK_CLASSES = {
    "SeriesNetwork": "SeriesNetwork",
    "DAGNetwork": "DAGNetwork",
    "dlnetwork": "dlnetwork",
    "nnet.cnn.LayerGraph": "LayerGraph",
}
# Arrays that training updates, and arrays that it does not (field names, as the specs list them).
LEARNABLE_FIELDS = array_names(state=False)
STATE_FIELDS = array_names(state=True)
# Parameters that are sizes: always tuples, even when MATLAB stored one number.
SIZE_PARAMS = frozenset({
    "InputSize", "OutputSize", "FilterSize", "Stride", "DilationFactor", "PaddingSize", "PoolSize",
    "CroppingSize", "ImageSize", "OutputSizeOffset",
})
# Property-map bookkeeping that is not a hyper-parameter.
SKIP_PROPS = frozenset({"Version", "Description", "Type", "Name", "PrivateNumStates"})


def build_network(obj: MatObject | ObjectArray, source: str = "", path: str = "") -> Network:
    """Build the typed model of a network object or layer array."""
    where = f"{source}: {path}" if source else path
    if isinstance(obj, ObjectArray):
        layers = _named([build_layer(e, where) for e in obj.elements])
        return Network("LayerArray", layers, _chain(layers), _class_names(layers), [], source, path)
    kind = NETWORK_CLASSES.get(obj.class_name)
    if kind is None:
        raise NetworkError(f"{where}: a {obj.class_name} is not a Deep Learning Toolbox network")
    data = _saved(obj)
    output_names: list[str] = []
    if kind == "dlnetwork":
        graph = data.get("LayerGraph")
        if not isinstance(graph, MatObject):
            raise NetworkError(f"{where}: dlnetwork without a LayerGraph")
        output_names = _texts(data.get("OutputNames"))
        data = _saved(graph)
    layers = [build_layer(e, where) for e in _elements(data.get("Layers"), where)]
    if kind == "SeriesNetwork":
        connections = _chain(layers)
    else:
        connections = _connections(data.get("Connections"), layers, where)
    return Network(kind, layers, connections, _class_names(layers), output_names, source, path)


def build_layer(obj: Any, where: str) -> Layer:
    """Build one layer record; an unknown class keeps its raw fields with ``supported=False``."""
    if not isinstance(obj, MatObject):
        raise NetworkError(f"{where}: a layer array holds a {type(obj).__name__}, not a layer")
    fields = _saved(obj)  # a copy: the layer's raw fields
    class_name = obj.class_name
    layer = Layer(name=_text(fields.get("Name", "")), class_name=class_name, raw=fields)
    kinds = _field_kinds(class_name)
    layer.supported = kinds.supported
    for key, value in fields.items():
        kind = kinds.get(key)
        if kind is None:
            kind = kinds.add(key)
        if kind is _IGNORED:
            continue
        if kind is _LEARNABLE or kind is _STATE:
            arr = _array_value(value)
            if arr is not None:
                table = layer.learnables if kind is _LEARNABLE else layer.state
                table[key] = _restore_ndim(layer, key, arr, fields, kinds.ndims.get(key))
            continue
        if kind is _CLASSES:
            classes = value.categories if isinstance(value, Categorical) else _texts(value)
            layer.params["Classes"] = list(classes)
            continue
        if kind is _NORMALIZATION:
            layer.normalization = _normalization(value, fields)
            continue
        param = _param(key, value)
        if param is not _SKIP:
            layer.params[key] = param
    _normalise_padding(layer)
    return layer


# What build_layer makes of a field, by class (see _FieldKinds)
_IGNORED, _LEARNABLE, _STATE, _CLASSES, _NORMALIZATION, _PARAM = (
    "ignored", "learnable", "state", "classes", "normalization", "param")


class _FieldKinds(dict[str, str]):
    """Field name -> what :func:`build_layer` makes of it, for one class (filled as fields are
    met), with the array dimensions its spec restores (``ndims``) and whether the class is
    supported."""

    def __init__(self, class_name: str) -> None:
        super().__init__()
        self.spec = spec_of(class_name)
        self.supported = self.spec is not None or class_name.startswith(LAYER_PACKAGE)
        self.ndims: dict[str, int | None] = {}

    def add(self, key: str) -> str:
        spec = self.spec
        array_spec = spec.array(key) if spec is not None else None
        not_learnable = spec.not_learnable if spec is not None else frozenset()
        state = key in STATE_FIELDS or array_spec is not None and array_spec.state
        if key in SKIP_PROPS or "." in key:
            kind = _IGNORED
        elif key in LEARNABLE_FIELDS and key not in not_learnable and not state:
            kind = _LEARNABLE
        elif state:
            kind = _STATE
        elif key in ("Categories", "ClassNames"):
            kind = _CLASSES
        elif key == "Normalization":
            kind = _NORMALIZATION
        else:
            kind = _PARAM
        if kind is _LEARNABLE or kind is _STATE:  # names from fixed lists and the spec
            self.ndims[key] = (len(array_spec.dims) if array_spec is not None
                               and array_spec.restore_ndim else None)
        if len(self) < _KNOWN_FIELDS:  # the table lives as long as the process: bounded
            self[key] = kind
        return kind


_KNOWN_FIELDS = 256  # field names remembered per class; MATLAB's layer classes save under 60


@functools.lru_cache(maxsize=1024)
def _field_kinds(class_name: str) -> _FieldKinds:
    return _FieldKinds(class_name)


def _named(layers: list[Layer]) -> list[Layer]:
    """Layer arrays built but not yet assembled into a network may have empty names: name them
    ``layer_<position>`` as the connections need names (the stored name stays in ``raw``)."""
    for i, lay in enumerate(layers, 1):
        if not lay.name:
            lay.name = f"layer_{i}"
    return layers


def _saved(obj: MatObject) -> dict[str, Any]:
    """The fields a class saved: its saveobj struct, or its property map."""
    payload = obj.props.get("any") if obj.saveobj else None
    if isinstance(payload, Struct):
        return dict(payload)
    return dict(obj.props)


def _elements(layers: Any, where: str) -> list[Any]:
    if isinstance(layers, ObjectArray):
        return list(layers.elements)
    if isinstance(layers, MatObject):
        return [layers]
    if isinstance(layers, np.ndarray) and layers.size == 0:
        return []
    raise NetworkError(f"{where}: the Layers field holds a {type(layers).__name__}")


def _chain(layers: list[Layer]) -> list[Connection]:
    return [Connection(a.name, b.name) for a, b in zip(layers, layers[1:], strict=False)]


def _connections(table: Any, layers: list[Layer], where: str) -> list[Connection]:
    if isinstance(table, Table):
        sources = _texts(table.columns.get("Source"))
        dests = _texts(table.columns.get("Destination"))
    elif isinstance(table, Struct):
        sources, dests = _texts(table.get("Source")), _texts(table.get("Destination"))
    elif table is None or (isinstance(table, np.ndarray) and table.size == 0):
        return []
    else:
        raise NetworkError(f"{where}: Connections is a {type(table).__name__}, not a table")
    if len(sources) != len(dests):
        raise NetworkError(f"{where}: Connections has {len(sources)} sources, {len(dests)} "
                           "destinations")
    names = {lay.name for lay in layers}
    out = []
    for s, d in zip(sources, dests, strict=True):
        src, sport = _split_port(s, names)
        dst, dport = _split_port(d, names)
        for n in (src, dst):
            if n not in names:
                raise NetworkError(f"{where}: connection {s} -> {d} names unknown layer {n!r}")
        out.append(Connection(src, dst, sport, dport))
    return out


def _split_port(text: str, names: set[str]) -> tuple[str, str | None]:
    if text in names or "/" not in text:
        return text, None
    layer, port = text.rsplit("/", 1)
    return layer, port


def _class_names(layers: list[Layer]) -> list[str] | None:
    for lay in layers:
        if lay.type in OUTPUT_LAYER_TYPES and lay.type != "RegressionOutputLayer":
            names = lay.params.get("Classes")
            if names:
                return list(names)
    return None


def _normalization(value: Any, fields: dict[str, Any]) -> Normalization:
    dim = _text(fields.get("NormalizationDimension", "auto")) or "auto"
    if isinstance(value, str):
        return Normalization(type=value or "none", dimension=dim)
    if not isinstance(value, Struct):
        return Normalization(type="none", dimension=dim)
    ntype = _text(value.get("Type", "none")) or "none"
    size = _sizes(fields.get("InputSize"))
    ndim = len(size) if size else 0

    def arr(*keys: str) -> np.ndarray | None:
        for k in keys:
            a = value.get(k)
            if isinstance(a, np.ndarray) and a.size and a.dtype != object:
                return pad_ndim(a, ndim)
        return None

    return Normalization(
        type=ntype,
        mean=arr("AverageImage", "Mean"),
        std=arr("StandardDeviation", "Std"),
        min=arr("Min"),
        max=arr("Max"),
        dimension=dim,
    )


def _restore_ndim(layer: Layer, key: str, arr: np.ndarray, fields: dict[str, Any],
                  ndim: int | None) -> np.ndarray:
    """Pad back the trailing singleton dimensions MATLAB dropped when saving (``ndim``: the
    dimensions the class's spec gives the array, when it restores them)."""
    if ndim is None:
        kind = layer.type
        if kind == "FullyConnectedLayer" and key == "Weights" and arr.ndim >= 3:
            ndim = 4
        elif kind == "FullyConnectedLayer" and key == "Bias" and arr.ndim >= 3:
            ndim = 3
        elif kind == "BatchNormalizationLayer" and _num(fields.get("ChannelDim")) == 3:
            ndim = 3
    return pad_ndim(arr, ndim or arr.ndim)


def _normalise_padding(layer: Layer) -> None:
    """Old releases stored symmetric ``Padding`` [ph pw]; newer ones ``PaddingSize`` [t b l r]."""
    pad = layer.params.pop("Padding", None)
    if pad is not None and "PaddingSize" not in layer.params:
        ph, pw = (pad + pad)[:2] if len(pad) == 1 else pad[:2]
        layer.params["PaddingSize"] = (ph, ph, pw, pw)
        layer.params.setdefault("PaddingMode", "manual")
    if layer.type in ("Convolution2DLayer", "GroupedConvolution2DLayer"):
        layer.params.setdefault("DilationFactor", (1, 1))


def _array_value(value: Any) -> np.ndarray | None:
    if isinstance(value, Struct):
        value = value.get("Value")
    if isinstance(value, np.ndarray) and value.dtype != object:
        return value
    return None


_SKIP = object()


def _param(key: str, value: Any) -> Any:
    """A field as a hyper-parameter: numbers as Python numbers (a size, or more than one, as a
    tuple; None when empty), texts as str, a cell of texts as a list; else ``_SKIP``."""
    if isinstance(value, np.ndarray):  # what the reader makes of most fields
        kind = value.dtype.kind
        if kind in _NUMERIC:
            size = value.size
            if not size:
                return None
            if size == 1 and key not in SIZE_PARAMS:
                return _scalar(value.item())
            return _scalars(value)
        if kind == "U":
            return _text(value)
        if kind == "O":
            texts = _texts(value)
            return texts if len(texts) == value.size else _SKIP
        return _SKIP
    if isinstance(value, str):
        return value
    return _SKIP


_NUMERIC = frozenset("biuf")


def _scalar(v: Any) -> Any:
    """A number as Python's bool, int (an integral value below 2**53) or float."""
    if type(v) is int and -2**53 < v < 2**53:
        return v
    if isinstance(v, np.bool_ | bool):
        return bool(v)
    f = float(v)
    return int(f) if f.is_integer() and abs(f) < 2**53 else f


def _scalars(value: np.ndarray) -> tuple[Any, ...]:
    """A numeric array's values in MATLAB's order, as :func:`_scalar` makes them (``tolist``
    gives Python bools, ints and floats: the same values, without a numpy scalar each)."""
    values = value.ravel(order="F").tolist()
    if value.dtype.kind == "b":
        return tuple(values)
    if value.dtype.kind != "f":  # integers, taken as MATLAB's doubles
        values = [float(v) for v in values]
    return tuple([int(f) if f.is_integer() and abs(f) < 2**53 else f for f in values])


def _sizes(value: Any) -> tuple[Any, ...] | None:
    if isinstance(value, str):  # 'auto' in untrained layers
        return None
    if not isinstance(value, np.ndarray) or value.size == 0 or value.dtype.kind not in "biuf":
        return None
    return _scalars(value)


def _num(value: Any) -> float | None:
    if isinstance(value, np.ndarray) and value.size == 1 and value.dtype.kind in "biuf":
        return float(value.ravel()[0])
    return None


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, np.ndarray) and value.dtype.kind == "U":
        return "".join(value.ravel(order="F"))
    return ""


def _texts(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, Categorical):
        return [str(x) for x in value.labels()]
    if isinstance(value, np.ndarray):
        if value.dtype == object:
            return [t for t in (_text(x) if not isinstance(x, str) else x
                                for x in value.ravel(order="F"))]
        if value.dtype.kind == "U":
            return ["".join(row) for row in value]
    return []
