"""A typed description of a MATLAB network, with no torch dependency.

Conventions (stable; the PyTorch side relies on them):

- ``Layer.type`` is the MATLAB class's short name (``"Convolution2DLayer"``), ``Layer.class_name``
  the full one (``"nnet.cnn.layer.Convolution2DLayer"``).
- ``Layer.params`` holds hyper-parameters under MATLAB's property names, as plain Python values:
  sizes as tuples of ints (``FilterSize=(3, 3)``, ``Stride=(2, 2)``, ``PaddingSize=(t, b, l, r)``,
  ``InputSize=(224, 224, 3)``), scalars as int/float, options as str, names as lists of str.
- ``Layer.learnables`` and ``Layer.state`` hold arrays in MATLAB layout (e.g. Weights
  H x W x Cin x Cout, Bias 1 x 1 x Cout, TrainedMean 1 x 1 x C, InputWeights 4H x D) with the
  trailing singleton dimensions that MATLAB drops restored from the layer's sizes. Learnables are
  what training updates (Weights, Bias, Offset, Scale, InputWeights, ...); state is what it does
  not (TrainedMean, TrainedVariance, HiddenState, CellState).
- An input layer's normalization is ``Layer.normalization``.
- A class the model does not know is kept with ``supported=False`` and its raw fields in ``raw``.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from matport.network.specs import LayerSpec, input_ports, output_index, spec_of, types_with_role


@dataclass(eq=False)
class Normalization:
    """An input layer's normalization. Arrays in MATLAB layout (H x W x C, 1 x 1 x C, C x 1 ...).

    ``type`` is one of ``none``, ``zerocenter``, ``zscore``, ``rescale-symmetric``,
    ``rescale-zero-one``, or ``function`` (a stored function handle, never evaluated).
    """

    type: str = "none"
    mean: np.ndarray | None = None
    std: np.ndarray | None = None
    min: np.ndarray | None = None
    max: np.ndarray | None = None
    dimension: str = "auto"


@dataclass(eq=False)
class Layer:
    """One MATLAB layer: class, name, hyper-parameters and arrays (see the module docstring)."""

    name: str
    class_name: str
    params: dict[str, Any] = field(default_factory=dict)
    learnables: dict[str, np.ndarray] = field(default_factory=dict)
    state: dict[str, np.ndarray] = field(default_factory=dict)
    normalization: Normalization | None = None
    supported: bool = True
    raw: dict[str, Any] = field(default_factory=dict)

    @property
    def type(self) -> str:
        return self.class_name.rsplit(".", 1)[-1]

    @property
    def num_parameters(self) -> int:
        return int(sum(a.size for a in self.learnables.values()))

    @property
    def spec(self) -> LayerSpec | None:
        """The :class:`~matport.network.specs.LayerSpec` of the class (None when matport has
        none: a user-defined class, or a MathWorks class it does not know)."""
        return spec_of(self.class_name)

    def array(self, name: str) -> np.ndarray | None:
        """A learnable or state array by field name.

        Args:
            name: the MATLAB field (``"Weights"``, ``"TrainedMean"``, ...).

        Returns:
            The array as stored (MATLAB layout), or None when it is absent or empty.
        """
        arr = self.learnables[name] if name in self.learnables else self.state.get(name)
        if type(arr) is np.ndarray:
            return arr if arr.size else None
        return None if arr is None or np.size(arr) == 0 else np.asarray(arr)


@dataclass(frozen=True)
class Connection:
    """An edge ``source[/source_port] -> dest[/dest_port]``. Ports are MATLAB's names
    (``out``, ``indices``, ``in1``, ``in2``, ...) or None where the table gave none."""

    source: str
    dest: str
    source_port: str | None = None
    dest_port: str | None = None

    def __str__(self) -> str:
        s = self.source + (f"/{self.source_port}" if self.source_port else "")
        d = self.dest + (f"/{self.dest_port}" if self.dest_port else "")
        return f"{s} -> {d}"


NETWORK_KINDS = ("SeriesNetwork", "DAGNetwork", "dlnetwork", "LayerGraph", "LayerArray", "network")


@dataclass(eq=False)
class Network:
    """A MATLAB network: its kind, layers in stored order and connections.

    A SeriesNetwork's (or layer array's) chain is made explicit in ``connections``.
    ``class_names`` come from the output layer, in category order (None when there is none).
    ``source`` is the file it was read from and ``path`` the variable path inside it.
    """

    kind: str
    layers: list[Layer]
    connections: list[Connection]
    class_names: list[str] | None = None
    output_names: list[str] = field(default_factory=list)
    source: str = ""
    path: str = ""

    def layer(self, name: str) -> Layer:
        for lay in self.layers:
            if lay.name == name:
                return lay
        raise KeyError(name)

    @property
    def input_layers(self) -> list[Layer]:
        return [lay for lay in self.layers if lay.type in INPUT_LAYER_TYPES]

    @property
    def num_parameters(self) -> int:
        return sum(lay.num_parameters for lay in self.layers)

    def predecessors(self, name: str) -> list[Connection]:
        """Connections into ``name``, ordered by destination port (in1, in2, ...)."""
        cons = [c for c in self.connections if c.dest == name]
        return sorted(cons, key=lambda c: _port_key(c.dest_port))

    def inputs_of(self, layer: Layer) -> list[Connection]:
        """Connections into ``layer`` in the order its converted module takes them: by the
        spec's input port names where it has them (max unpooling), else in1, in2, ...

        Args:
            layer: a layer of this network.

        Returns:
            The connections.
        """
        return _in_port_order(layer, self.predecessors(layer.name))

    def successors(self, name: str) -> list[Connection]:
        return [c for c in self.connections if c.source == name]

    def index(self) -> GraphIndex:
        """The layers and connections indexed by name, for passes over the whole graph (a
        snapshot: index again after changing the network)."""
        return GraphIndex(self)

    def topological_order(self) -> list[Layer]:
        """Layers ordered so that every layer follows its inputs (stable on stored order)."""
        return list(self.index().topological_order())


class GraphIndex:
    """A network's layers by name and connections by endpoint, each lookup O(1): what a pass over
    the whole graph uses instead of :class:`Network`'s per-call scans (same answers). The
    topological order is computed once; the lists it returns are its own: do not change them."""

    def __init__(self, network: Network) -> None:
        self.network = network
        self.layers: dict[str, Layer] = {}
        for lay in network.layers:
            self.layers.setdefault(lay.name, lay)  # the first of a name, as Network.layer
        self._into: dict[str, list[Connection]] = {}
        self._out_of: dict[str, list[Connection]] = {}
        for c in network.connections:
            self._into.setdefault(c.dest, []).append(c)
            self._out_of.setdefault(c.source, []).append(c)
        self._order: list[Layer] | None = None
        self._refs: dict[str, list[tuple[str, int]]] = {}

    def predecessors(self, name: str) -> list[Connection]:
        """:meth:`Network.predecessors`."""
        cons = self._into.get(name, [])
        if len(cons) < 2:
            return list(cons)
        return sorted(cons, key=lambda c: _port_key(c.dest_port))

    def inputs_of(self, layer: Layer) -> list[Connection]:
        """:meth:`Network.inputs_of`."""
        return _in_port_order(layer, self.predecessors(layer.name))

    def input_refs(self, layer: Layer) -> list[tuple[str, int]]:
        """``(source layer, output index)`` of each of ``layer``'s inputs, in port order."""
        refs = self._refs.get(layer.name)
        if refs is None:
            layers = self.layers
            refs = self._refs[layer.name] = [
                (c.source, output_index(layers[c.source], c.source_port))
                for c in self.inputs_of(layer)]
        return refs

    def successors(self, name: str) -> list[Connection]:
        """:meth:`Network.successors`."""
        return list(self._out_of.get(name, ()))

    def has_successors(self, name: str) -> bool:
        """Whether any connection leaves ``name``."""
        return name in self._out_of

    def topological_order(self) -> list[Layer]:
        """:meth:`Network.topological_order`: Kahn's algorithm, the ready layer stored first
        taken next."""
        if self._order is None:
            self._order = self._sort()
        return self._order

    def _sort(self) -> list[Layer]:
        layers = self.network.layers
        index = {lay.name: i for i, lay in enumerate(layers)}
        indeg = {lay.name: 0 for lay in layers}
        for c in self.network.connections:
            if c.dest in indeg and c.source in indeg:
                indeg[c.dest] += 1
        ready = [index[n] for n, d in indeg.items() if d == 0]
        heapq.heapify(ready)
        order: list[Layer] = []
        while ready:
            lay = layers[heapq.heappop(ready)]
            order.append(lay)
            for c in self._out_of.get(lay.name, ()):
                if c.dest in indeg:
                    indeg[c.dest] -= 1
                    if indeg[c.dest] == 0:
                        heapq.heappush(ready, index[c.dest])
        if len(order) != len(layers):
            stuck = sorted(set(indeg) - {lay.name for lay in order})
            raise ValueError(f"the layer graph has a cycle through: {', '.join(stuck)}")
        return order


def _in_port_order(layer: Layer, cons: list[Connection]) -> list[Connection]:
    ports = input_ports(layer)
    if ports:
        cons.sort(key=lambda c: ports.index(c.dest_port) if c.dest_port in ports
                  else len(ports))
    return cons


INPUT_LAYER_TYPES = types_with_role("input")
OUTPUT_LAYER_TYPES = types_with_role("output")


def _port_key(port: str | None) -> tuple[int, str]:
    if port and port.startswith("in") and port[2:].isdigit():
        return (int(port[2:]), port)
    return (0, port or "")
