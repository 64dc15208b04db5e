"""A typed :class:`Network` -> the class objects MATLAB saves (the inverse of ``build``).

Used to generate MATLAB-like test fixtures with :func:`matport.mat.writer.write`: layers become
``saveobj`` structs (or property maps for the classes MATLAB saves that way), learnable arrays are
wrapped as MATLAB wraps them, class names become a ``categorical``.
"""

from __future__ import annotations

import os
from typing import Any, Literal

import numpy as np

from matport.mat.values import Categorical, MatObject, ObjectArray, Struct, Table
from matport.network.build import LEARNABLE_FIELDS, NETWORK_CLASSES
from matport.network.model import Layer, Network, Normalization

NETWORK_VERSIONS = {"SeriesNetwork": 1, "DAGNetwork": 2, "dlnetwork": 6, "LayerGraph": 1}
_CLASS_OF_KIND = {kind: cls for cls, kind in NETWORK_CLASSES.items()}
_RECURRENT_STATES = {"HiddenState", "CellState"}


def encode_network(net: Network) -> MatObject | ObjectArray:
    """The MATLAB object (or layer array) that saves ``net``."""
    layers = ObjectArray("nnet.cnn.layer.Layer", (len(net.layers), 1),
                         [encode_layer(lay, _classes_for(lay, net)) for lay in net.layers])
    if net.kind == "LayerArray":
        return layers
    connections = Table(
        columns={
            "Source": _cellstr([_end(c.source, c.source_port) for c in net.connections]),
            "Destination": _cellstr([_end(c.dest, c.dest_port) for c in net.connections]),
        },
        nrows=len(net.connections),
    )
    if net.kind == "SeriesNetwork":
        fields = Struct(Version=_num(NETWORK_VERSIONS["SeriesNetwork"]), Layers=layers)
        return MatObject("SeriesNetwork", {"any": fields}, saveobj=True)
    graph = Struct(Version=_num(1), Layers=layers, Connections=connections)
    if net.kind == "DAGNetwork":
        graph["Version"] = _num(NETWORK_VERSIONS["DAGNetwork"])
        return MatObject("DAGNetwork", {"any": graph}, saveobj=True)
    layer_graph = MatObject(_CLASS_OF_KIND["LayerGraph"], {"any": graph}, saveobj=True)
    if net.kind == "LayerGraph":
        return layer_graph
    fields = Struct(
        Version=_num(NETWORK_VERSIONS["dlnetwork"]),
        LayerGraph=layer_graph,
        Initialized=np.array([[True]]),
        OutputNames=_cellstr(net.output_names, row=True),
    )
    return MatObject("dlnetwork", {"any": fields}, saveobj=True)


def encode_layer(lay: Layer, classes: list[str] | None = None) -> MatObject:
    """The MATLAB object that saves one layer (``classes`` for a classification output layer
    whose params carry none)."""
    fields: dict[str, Any] = {"Name": lay.name}
    if classes is not None and "Classes" not in lay.params:
        fields["Categories"] = _categorical(classes)
    for key, value in lay.params.items():
        if key == "Classes":
            fields["Categories"] = _categorical(value)
        else:
            fields[key] = _value(value)
    if lay.normalization is not None:
        fields["Normalization"] = _normalization(lay.normalization, lay.params.get("InputSize"))
    for key, arr in lay.learnables.items():
        fields[key] = Struct(
            Version=_num(2), Value=arr, LearnRateFactor=_num(1),
            L2Factor=_num(0 if "Bias" in key or key == "Offset" else 1),
        ) if key in LEARNABLE_FIELDS else arr
    for key, arr in lay.state.items():
        if key in _RECURRENT_STATES:
            fields[key] = Struct(Value=arr, Remember=np.array([[True]]))
        else:
            fields[key] = arr
    spec = lay.spec
    if spec is not None and spec.plain:
        return MatObject(lay.class_name, fields)
    saved = Struct(Version=_num(spec.version if spec is not None else 1))
    saved.update(fields)
    return MatObject(lay.class_name, {"any": saved}, saveobj=True)


def _classes_for(lay: Layer, net: Network) -> list[str] | None:
    if net.class_names and lay.type in ("ClassificationOutputLayer", "PixelClassificationLayer"):
        return net.class_names
    return None


def _normalization(norm: Normalization, size: Any) -> Any:
    if norm.type == "none":
        return np.zeros((1, 0))
    s = Struct(Version=_num(2), Type=norm.type)
    if size is not None:
        s["ImageSize"] = _value(size)
    for key, arr in (("Mean", norm.mean), ("StandardDeviation", norm.std), ("Min", norm.min),
                     ("Max", norm.max)):
        if arr is not None:
            s["AverageImage" if key == "Mean" and norm.type == "zerocenter" else key] = arr
    return s


def _categorical(names: list[str]) -> Categorical:
    codes = np.arange(1, len(names) + 1, dtype=np.uint8 if len(names) < 256 else np.uint16)
    return Categorical(list(names), codes.reshape(-1, 1))


def _value(v: Any) -> Any:
    if isinstance(v, str):
        return v
    if isinstance(v, bool):
        return np.array([[v]])
    if isinstance(v, int | float):
        return _num(v)
    if isinstance(v, tuple):
        return np.array([v], dtype=np.float64).reshape(1, -1)
    if isinstance(v, list):
        return _cellstr(v)
    if v is None:
        return np.zeros((0, 0))
    return v


def _num(x: float) -> np.ndarray:
    return np.array([[float(x)]])


def _cellstr(items: list[str], row: bool = False) -> np.ndarray:
    out = np.empty((1, len(items)) if row else (len(items), 1), dtype=object)
    for i, s in enumerate(items):
        out.flat[i] = s
    return out


def _end(layer: str, port: str | None) -> str:
    return f"{layer}/{port}" if port else layer


def write_network(path: str | os.PathLike[str], net: Network, *, variable: str = "net",
                  format: Literal["v7", "v7.3"] = "v7") -> None:
    """Save ``net`` as MATLAB would (``save(path, variable)``), in a v7 or v7.3 file."""
    from matport.mat.writer import write

    write(path, {variable: encode_network(net)}, format=format)
