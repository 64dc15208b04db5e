"""Shallow networks: Deep Learning Toolbox's ``network`` class (``feedforwardnet``, ``fitnet``,
``patternnet``, ``cascadeforwardnet``, ``narxnet`` ...), read as a typed description (no torch).

MATLAB saves a ``network`` as an object of the *old* class system: a struct of properties
(``matport.read`` gives a :class:`~matport.mat.values.MatObject` with ``legacy=True``). What the
description keeps (MATLAB's indices are 1-based; the lists here are 0-based):

- ``inputs{j}``: name, raw ``size``, ``processFcns`` and their stored ``processSettings``;
- ``layers{i}``: name, ``size``, ``transferFcn``, ``netInputFcn``;
- ``IW{i,j}`` (input j -> layer i), ``LW{i,k}`` (layer k -> layer i), ``b{i}``, present where
  ``inputConnect``, ``layerConnect`` and ``biasConnect`` say so, with each weight's ``weightFcn``
  and tapped ``delays`` (from ``inputWeights`` / ``layerWeights``);
- ``outputs{i}`` for the layers ``outputConnect`` marks: name, ``processFcns`` and settings
  (MATLAB reverses them on the layer's output), ``feedbackMode``.

:class:`ShallowNetwork` is also a :class:`~matport.network.model.Network` of kind ``network``
whose ``layers`` show the inputs and layers (with ``TransferFcn``, ``OutputSize`` and the weights
as learnables ``IW{1,1}``, ``LW{2,1}``, ``b``) so that ``matport inspect`` lists it like any
other network. Reading never refuses exotic functions or delays; the converter does.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from matport.errors import NetworkError
from matport.mat.values import MatObject, Struct
from matport.network.model import Connection, Layer, Network

#: MATLAB's class name of shallow networks (old class system).
SHALLOW_CLASS = "network"
INPUT_CLASS = "network.input"
LAYER_CLASS = "network.layer"


@dataclass(eq=False)
class Processing:
    """One processing function of an input or output (``mapminmax`` ...) and its settings."""

    fcn: str
    settings: Struct


@dataclass(eq=False)
class ShallowInput:
    """``net.inputs{j}``: ``size`` is the raw row count, before processing."""

    name: str
    size: int
    processing: list[Processing]


@dataclass(eq=False)
class ShallowLayer:
    """``net.layers{i}`` with its bias ``b{i}`` (None when ``biasConnect(i)`` is false) and,
    when ``outputConnect(i)``, its output's name, raw ``size`` (before reversing the processing)
    and processing (reversed on the output by MATLAB)."""

    name: str
    size: int
    transfer_fcn: str
    net_input_fcn: str
    bias: np.ndarray | None
    is_output: bool = False
    output_name: str = ""
    output_size: int = 0
    output_processing: list[Processing] = field(default_factory=list)
    feedback_mode: str = "none"


@dataclass(eq=False)
class Weight:
    """``IW{dest,source}`` (``source_kind="input"``) or ``LW{dest,source}`` (``"layer"``);
    ``dest`` and ``source`` are 0-based, ``value`` is dest-size x source-size."""

    dest: int
    source_kind: Literal["input", "layer"]
    source: int
    value: np.ndarray
    weight_fcn: str
    delays: tuple[int, ...]

    @property
    def name(self) -> str:
        """MATLAB's name: ``IW{1,1}``, ``LW{2,1}``."""
        prefix = "IW" if self.source_kind == "input" else "LW"
        return f"{prefix}{{{self.dest + 1},{self.source + 1}}}"


@dataclass(eq=False)
class ShallowNetwork(Network):
    """A shallow ``network`` (see the module docstring); ``weights`` in MATLAB's order
    (all ``IW`` column by column, then all ``LW``). The connection matrices are kept as
    stored: ``input_connect`` (layers x inputs), ``layer_connect`` (layers x layers),
    ``bias_connect`` (layers x 1), ``output_connect`` (1 x layers)."""

    title: str = ""
    inputs: list[ShallowInput] = field(default_factory=list)
    shallow_layers: list[ShallowLayer] = field(default_factory=list)
    weights: list[Weight] = field(default_factory=list)
    input_connect: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), bool))
    layer_connect: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), bool))
    bias_connect: np.ndarray = field(default_factory=lambda: np.zeros((0, 1), bool))
    output_connect: np.ndarray = field(default_factory=lambda: np.zeros((1, 0), bool))

    @property
    def input_layers(self) -> list[Layer]:
        return [lay for lay in self.layers if lay.class_name == INPUT_CLASS]

    @property
    def output_layers(self) -> list[int]:
        """0-based indices of the layers whose outputs are network outputs, in order."""
        return [i for i, lay in enumerate(self.shallow_layers) if lay.is_output]


def is_shallow_network(value: Any) -> bool:
    """Whether ``value`` is a saved shallow ``network`` object.

    Args:
        value: any value :func:`matport.read` returns.

    Returns:
        True for a ``network`` object of the old class system.
    """
    return isinstance(value, MatObject) and value.legacy and value.class_name == SHALLOW_CLASS


def read_shallow(obj: MatObject, source: str = "", path: str = "") -> ShallowNetwork:
    """The description of a shallow ``network`` object.

    Args:
        obj: the object (``matport.read`` value, class ``network``, old class system).
        source: the file it was read from (for messages and the result's ``source``).
        path: its variable path in the file.

    Returns:
        The :class:`ShallowNetwork`.

    Raises:
        NetworkError: a property is missing or malformed (sizes that do not agree, a weight
        of the wrong shape), naming the file, the variable and the property.
    """
    r = _Reader(obj.props, f"{source}:{path}" if source else path)
    num_inputs, num_layers = r.count("numInputs"), r.count("numLayers")
    input_connect = r.connect("inputConnect", (num_layers, num_inputs))
    layer_connect = r.connect("layerConnect", (num_layers, num_layers))
    bias_connect = r.connect("biasConnect", (num_layers, 1))
    output_connect = r.connect("outputConnect", (1, num_layers))
    inputs = [r.input(j) for j in range(num_inputs)]
    layers = [r.layer(i, bool(bias_connect[i, 0])) for i in range(num_layers)]
    for i in np.flatnonzero(output_connect[0]):
        r.output(layers[i], int(i))
    weights = [r.weight(i, "input", j, layers, inputs)
               for j in range(num_inputs) for i in range(num_layers) if input_connect[i, j]]
    weights += [r.weight(i, "layer", k, layers, inputs)
                for k in range(num_layers) for i in range(num_layers) if layer_connect[i, k]]
    view_layers, connections = _view(inputs, layers, weights)
    return ShallowNetwork(
        kind="network", layers=view_layers, connections=connections, class_names=None,
        output_names=[view_layers[len(inputs) + i].name for i, lay in enumerate(layers)
                      if lay.is_output],
        source=source, path=path, title=r.text("name", ""), inputs=inputs,
        shallow_layers=layers, weights=weights, input_connect=input_connect,
        layer_connect=layer_connect, bias_connect=bias_connect, output_connect=output_connect,
    )


class _Reader:
    """Typed access to the properties of a ``network`` object, failing with NetworkError."""

    def __init__(self, props: dict[str, Any], where: str) -> None:
        self.props = props
        self.where = where

    def fail(self, what: str) -> NetworkError:
        return NetworkError(f"{self.where}: shallow network: {what}")

    def get(self, name: str, within: Any = None, label: str = "") -> Any:
        holder = self.props if within is None else within
        if not isinstance(holder, dict) or name not in holder:
            raise self.fail(f"{label or 'the network'} has no {name!r}")
        return holder[name]

    def count(self, name: str, within: Any = None, label: str = "") -> int:
        v = np.asarray(self.get(name, within, label))
        if v.size != 1 or v.dtype.kind not in "biuf" or v.item() < 0 or v.item() != int(v.item()):
            raise self.fail(f"{label or 'the network'}.{name} is not a count")
        return int(v.item())

    def text(self, name: str, default: str | None = None, within: Any = None,
             label: str = "") -> str:
        holder = self.props if within is None else within
        if default is not None and name not in holder:
            return default
        v = self.get(name, within, label)
        if isinstance(v, np.ndarray) and v.size == 0:
            return ""
        if not isinstance(v, str):
            raise self.fail(f"{label or 'the network'}.{name} is not text")
        return v

    def connect(self, name: str, shape: tuple[int, int]) -> np.ndarray:
        v = np.asarray(self.get(name))
        if v.size == 0 and 0 in shape:
            return np.zeros(shape, bool)
        if v.shape != shape or v.dtype.kind not in "biuf":
            raise self.fail(f"{name} is {'x'.join(map(str, v.shape))} {v.dtype}, expected a "
                            f"{'x'.join(map(str, shape))} logical matrix")
        return v.astype(bool)

    def cell(self, name: str, index: tuple[int, int]) -> Any:
        c = self.get(name)
        if not isinstance(c, np.ndarray) or c.dtype != object or c.ndim != 2 or any(
                i >= n for i, n in zip(index, c.shape, strict=True)):
            raise self.fail(f"{name} is not a cell array with an element "
                            f"{{{index[0] + 1},{index[1] + 1}}}")
        return c[index]

    def item(self, name: str, k: int, count: int) -> Any:
        """Element ``k`` of the cell vector ``name``, which must hold ``count`` elements."""
        c = self.get(name)
        if not isinstance(c, np.ndarray) or c.dtype != object or c.size != count:
            raise self.fail(f"{name} is not a cell array of {count} elements")
        return c.ravel(order="F")[k]

    def structure(self, name: str, k: int, count: int) -> Struct:
        v = self.item(name, k, count)
        if not isinstance(v, dict):
            raise self.fail(f"{name}{{{k + 1}}} is not a struct")
        return Struct(v)

    def processing(self, s: Struct, label: str) -> list[Processing]:
        fcns, settings = s.get("processFcns"), s.get("processSettings")
        if fcns is None or (isinstance(fcns, np.ndarray) and fcns.size == 0):
            return []
        if not isinstance(fcns, np.ndarray) or not isinstance(settings, np.ndarray) or (
                fcns.size != settings.size):
            raise self.fail(f"{label}.processFcns and processSettings do not match")
        steps = []
        for k, (f, st) in enumerate(zip(fcns.ravel(order="F"), settings.ravel(order="F"),
                                        strict=True)):
            if not isinstance(f, str) or not isinstance(st, dict):
                raise self.fail(f"{label}.processFcns{{{k + 1}}} is not a function name with "
                                "a settings struct")
            steps.append(Processing(f, Struct(st)))
        return steps

    def input(self, j: int) -> ShallowInput:
        label = f"inputs{{{j + 1}}}"
        s = self.structure("inputs", j, self.count("numInputs"))
        return ShallowInput(self.text("name", f"Input {j + 1}", s, label),
                            self.count("size", s, label), self.processing(s, label))

    def layer(self, i: int, has_bias: bool) -> ShallowLayer:
        label = f"layers{{{i + 1}}}"
        s = self.structure("layers", i, self.count("numLayers"))
        size = self.count("size", s, label)
        bias = None
        if has_bias:
            bias = self.array(self.item("b", i, self.count("numLayers")), (size, 1),
                              f"b{{{i + 1}}}")
        return ShallowLayer(self.text("name", f"Layer {i + 1}", s, label), size,
                            self.text("transferFcn", None, s, label),
                            self.text("netInputFcn", "netsum", s, label), bias)

    def output(self, lay: ShallowLayer, i: int) -> None:
        label = f"outputs{{{i + 1}}}"
        s = self.structure("outputs", i, self.count("numLayers"))
        lay.is_output = True
        lay.output_name = self.text("name", lay.name, s, label)
        lay.output_size = self.count("size", s, label)
        lay.output_processing = self.processing(s, label)
        lay.feedback_mode = self.text("feedbackMode", "none", s, label)

    def weight(self, i: int, kind: Literal["input", "layer"], j: int, layers: list[ShallowLayer],
               inputs: list[ShallowInput]) -> Weight:
        values, infos = ("IW", "inputWeights") if kind == "input" else ("LW", "layerWeights")
        label = f"{values}{{{i + 1},{j + 1}}}"
        info = self.cell(infos, (i, j))
        if not isinstance(info, dict):
            raise self.fail(f"{infos}{{{i + 1},{j + 1}}} is not a struct")
        delays = np.asarray(info.get("delays", 0)).ravel()
        if delays.dtype.kind not in "biuf" or np.any(delays < 0) or np.any(
                delays != np.round(delays)):
            raise self.fail(f"{infos}{{{i + 1},{j + 1}}}.delays is not a list of delays")
        rows = layers[j].size if kind == "layer" else _processed_rows(inputs[j])
        cols = rows * len(delays)
        value = self.array(self.cell(values, (i, j)), (layers[i].size, cols), label)
        return Weight(i, kind, j, value, self.text("weightFcn", "dotprod", Struct(info), infos),
                      tuple(int(d) for d in delays))

    def array(self, v: Any, shape: tuple[int, int], label: str) -> np.ndarray:
        if not isinstance(v, np.ndarray) or v.dtype.kind not in "biuf" or v.shape != shape:
            got = "x".join(map(str, v.shape)) if isinstance(v, np.ndarray) else type(v).__name__
            raise self.fail(f"{label} is {got}, expected a {'x'.join(map(str, shape))} "
                            "numeric matrix")
        return v.astype(np.float64, copy=False)


def _processed_rows(inp: ShallowInput) -> int:
    """The rows an input has after its processing (``yrows`` of the last step)."""
    for step in reversed(inp.processing):
        rows = np.asarray(step.settings.get("yrows", np.zeros(0)))
        if rows.size == 1:
            return int(rows.item())
    return inp.size


def _view(inputs: list[ShallowInput], layers: list[ShallowLayer], weights: list[Weight]
          ) -> tuple[list[Layer], list[Connection]]:
    """The inputs and layers as :class:`Layer` entries (unique names) and their connections."""
    names: list[str] = []
    for base in [inp.name for inp in inputs] + [lay.name for lay in layers]:
        name, k = base, 2
        while name in names:
            name, k = f"{base} ({k})", k + 1
        names.append(name)
    view = [Layer(names[j], INPUT_CLASS,
                  params={"InputSize": (inp.size,),
                          "ProcessFcns": [p.fcn for p in inp.processing]})
            for j, inp in enumerate(inputs)]
    for i, lay in enumerate(layers):
        learnables = {w.name: w.value for w in weights if w.dest == i}
        if lay.bias is not None:
            learnables["b"] = lay.bias
        params: dict[str, Any] = {"OutputSize": lay.size, "TransferFcn": lay.transfer_fcn,
                                  "NetInputFcn": lay.net_input_fcn}
        if lay.is_output:
            params["OutputProcessFcns"] = [p.fcn for p in lay.output_processing]
        view.append(Layer(names[len(inputs) + i], LAYER_CLASS, params=params,
                          learnables=learnables))
    connections = [
        Connection(names[w.source if w.source_kind == "input" else len(inputs) + w.source],
                   names[len(inputs) + w.dest], None, w.name)
        for w in weights
    ]
    return view, connections
