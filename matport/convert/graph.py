"""A MATLAB layer graph as one plain ``torch.nn.Module``, and its JSON architecture spec.

:class:`ConvertedNetwork` holds one submodule per MATLAB layer (named after the layer, made a
valid identifier) and runs them in topological order along the MATLAB connections. Inputs are
taken in the order of the network's input layers, already normalized (see
``ModelInfo.preprocess``); images are ``N x C x H x W``, features ``N x C``, sequences
``N x T x C``. A recurrent layer in MATLAB's 'last' output mode returns ``N x C`` (its last time
step). One output is returned as a tensor, several as a tuple in the network's output order.
"""

from __future__ import annotations

import functools
import keyword
import logging
import re
from collections.abc import Callable, Collection, Mapping
from typing import Any, cast

import numpy as np
import torch
from torch import nn
from torch.nn.modules import module as _module_hooks

from matport.convert.info import ModelInfo
from matport.convert.layers import (
    ConversionContext,
    Converter,
    LayerNotConvertible,
    find_converter,
)
from matport.convert.layers.params import adoptable, adopting
from matport.errors import ConversionError
from matport.network.build import SKIP_PROPS
from matport.network.checks import analyze, warn_non_finite
from matport.network.model import INPUT_LAYER_TYPES, Connection, GraphIndex, Layer, Network
from matport.network.specs import (
    VECTOR,
    Format,
    is_mathworks_class,
    output_format,
    output_index,
    output_ports,
)

logger = logging.getLogger(__name__)

Ref = tuple[str, int]  # (submodule name, output index)
Step = tuple[str, tuple[Ref, ...], int]  # (submodule name, inputs, number of outputs)

SPEC_FORMAT = "matport.graph/1"


class ConvertedNetwork(nn.Module):
    """A converted MATLAB network: one submodule per layer, called in topological order.

    ``input_names``/``output_names`` are the MATLAB names of the input layers and of the layers
    whose outputs are returned; ``layer_map`` maps every MATLAB layer name to its submodule.
    """

    matport: ModelInfo  # set by matport.load
    layer_map: dict[str, str]
    input_names: list[str]
    output_names: list[str]
    _source: str
    _run: Callable[..., Any]

    def __init__(self, modules: Mapping[str, nn.Module], inputs: list[str], steps: list[Step],
                 outputs: list[Ref], layer_map: dict[str, str], output_names: list[str]) -> None:
        super().__init__()
        if _module_hooks._global_module_registration_hooks or not all(
                isinstance(m, nn.Module) and _NAME.fullmatch(n) and n not in self.__dict__
                and not hasattr(type(self), n) for n, m in modules.items()):
            for name, module in modules.items():
                self.add_module(name, module)  # its checks and errors, and the hooks
        else:  # what add_module stores for names such as module_name makes
            self._modules.update(modules)
        source = _forward_source(tuple(inputs), tuple(steps), tuple(outputs))
        matlab_names = {t: m for m, t in layer_map.items()}
        # plain values, no names of submodules: what nn.Module.__setattr__ would store, stored
        self.__dict__.update(_source=source, _run=_compile(source), layer_map=layer_map,
                             input_names=[matlab_names[t] for t in inputs],
                             output_names=output_names)
        self.input_formats: list[Format] = []
        self.loss_layers: list[dict[str, Any]] = []

    def forward(self, x: torch.Tensor, *more: torch.Tensor) -> Any:
        """Run the network on its input(s), in the order of ``input_names``."""
        return self._run(self, x, more)  # more as one tuple: torch.fx cannot unpack it

    def __getstate__(self) -> dict[str, Any]:
        """Pickled without the generated function (rebuilt from its source on loading)."""
        state = self.__dict__.copy()
        del state["_run"]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        self._run = _compile(self._source)


@functools.lru_cache(maxsize=64)
def _forward_source(inputs: tuple[str, ...], steps: tuple[Step, ...],
                    outputs: tuple[Ref, ...]) -> str:
    """The source of the network's forward function: straight-line code calling the submodules
    in topological order (no per-call interpretation of the graph), each value deleted after
    its last use so that its memory is reused by the next layers."""
    names: dict[Ref, str] = {}
    for name, _, num_outputs in steps:
        for i in range(num_outputs):
            names[(name, i)] = f"v{len(names) + len(inputs)}"
    names.update({(name, 0): f"v{i}" for i, name in enumerate(inputs)})
    last_step = {names[r]: k for k, (_, refs, _) in enumerate(steps) for r in refs}
    kept = {names[r] for r in outputs}
    lines = ["def forward(self, x, more):", "    m = self._modules"]
    lines += [f"    {names[(name, 0)]} = m[{name!r}]({'x' if i == 0 else f'more[{i - 1}]'})"
              for i, name in enumerate(inputs)]
    for k, (name, refs, num_outputs) in enumerate(steps):
        call = f"m[{name!r}]({', '.join(names[r] for r in refs)})"
        if num_outputs == 1:
            lines.append(f"    {names[(name, 0)]} = {call}")
        else:
            lines.append(f"    out = {call}")
            lines += [f"    {names[(name, i)]} = out[{i}]" for i in range(num_outputs)]
        done = sorted({names[r] for r in refs if last_step[names[r]] == k} - kept)
        if done:
            lines.append(f"    del {', '.join(done)}")
    results = [names[r] for r in outputs]
    returned = results[0] if len(results) == 1 else "(" + ", ".join(results) + ",)"
    lines.append(f"    return {returned}")
    return "\n".join(lines) + "\n"


@functools.lru_cache(maxsize=64)
def _compile(source: str) -> Callable[..., Any]:
    """The forward function of ``source``; networks of one architecture share it (it keeps no
    state: the module is its argument)."""
    namespace: dict[str, Any] = {}
    exec(compile(source, "<matport.convert.graph forward>", "exec"), namespace)  # noqa: S102
    return cast(Callable[..., Any], namespace["forward"])


# what a ConvertedNetwork holds beside its submodules (nn.Module's own, matport's): a submodule
# of such a name would collide with it
_ATTRIBUTES = frozenset({"training", "layer_map", "input_names", "output_names",
                         "input_formats", "loss_layers", "matport"})
_NOT_WORD = re.compile(r"\W")
_NAME = re.compile(r"[^\W\d_]\w*")  # what module_name makes: no leading digit or underscore


def module_name(layer_name: str, taken: set[str]) -> str:
    """A valid, unused Python identifier for a MATLAB layer name (the name itself, the same
    object, when it is one: what a model pickles stays byte for byte the same)."""
    made = _identifier(layer_name)
    name = base = layer_name if made == layer_name else made
    i = 1
    while name in taken:
        name, i = f"{base}_{i}", i + 1
    taken.add(name)
    return name


@functools.lru_cache(maxsize=4096)
def _identifier(layer_name: str) -> str:
    name = _NOT_WORD.sub("_", layer_name) or "layer"
    if name[0].isdigit():
        name = "layer_" + name
    if keyword.iskeyword(name) or hasattr(nn.Module, name) or name in _ATTRIBUTES or (
            name.startswith("_")):
        name = name.lstrip("_") + "_"
        name = "layer_" + name if name == "_" or name[0].isdigit() else name
    return name


def _is_loss_layer(graph: GraphIndex, layer: Layer) -> bool:
    """A terminal user-defined layer of a SeriesNetwork or DAGNetwork is an output layer (MATLAB
    assembles these networks only with output layers at their ends): a loss, unused by
    prediction."""
    return (graph.network.kind in ("SeriesNetwork", "DAGNetwork") and layer.spec is None
            and not is_mathworks_class(layer.class_name) and not graph.has_successors(layer.name))


def _identity(layer: Layer, context: ConversionContext) -> nn.Module:
    return nn.Identity()


_LOSS_ARRAY_LIMIT = 65536  # values of a loss layer's array worth recording (class weights)


def _loss_record(layer: Layer) -> dict[str, Any]:
    """What is kept of a user-defined output layer: its class and stored properties (texts,
    numbers, text lists, numeric arrays up to a size), JSON-able."""
    props: dict[str, Any] = {}
    for key, value in layer.raw.items():
        if key in SKIP_PROPS:
            continue
        if isinstance(value, np.ndarray) and value.dtype.kind in "biuf" and (
                value.size <= _LOSS_ARRAY_LIMIT):
            props[key] = value.item() if value.size == 1 else value.tolist()
        elif isinstance(value, str) or isinstance(value, np.ndarray) and value.dtype.kind == "U":
            props[key] = value if isinstance(value, str) else "".join(value.ravel(order="F"))
        elif key in layer.params and isinstance(layer.params[key], list):
            props[key] = list(layer.params[key])
    return {"name": layer.name, "class_name": layer.class_name, "properties": props}


def _static_problem(layer: Layer, converter: Converter | None, builtin: bool) -> str | None:
    """Why a layer cannot be converted, before trying (None when it may be)."""
    if converter is None:
        if layer.type == "FunctionLayer":
            return ("FunctionLayer: its stored MATLAB function is never evaluated; "
                    "register a converter for it")
        if not is_mathworks_class(layer.class_name):
            return "a class the user wrote (user-defined layer); register a converter for it"
        return "a MathWorks class matport does not convert yet; register a converter for it"
    if builtin and not layer.supported:
        return "matport could not read this layer's fields"
    if builtin and layer.spec is not None:
        empty = [k for k in layer.spec.required_arrays if layer.array(k) is None]
        if empty:
            return f"untrained: empty {', '.join(empty)}"
    return None


def _output_refs(graph: GraphIndex, names: dict[str, str]) -> tuple[list[Ref], list[str]]:
    network = graph.network
    wanted = network.output_names or [
        lay.name for lay in network.layers if not graph.has_successors(lay.name)]
    refs, labels = [], []
    for entry in wanted:
        layer_name, _, port = entry.partition("/")
        if layer_name not in names:
            raise ConversionError(f"{network.source or 'network'}: output '{entry}' is not a layer")
        refs.append((names[layer_name], output_index(graph.layers[layer_name], port or None)))
        labels.append(entry)
    return refs, labels


def build_module(network: Network,
                 converters: Mapping[str, Converter] | None = None,
                 loss_layers: Collection[str] | None = None,
                 own: bool = False) -> ConvertedNetwork:
    """Convert every layer and wire them up.

    Sizes are propagated through the graph first (:func:`matport.network.checks.analyze`):
    a layer whose arrays contradict its settings or its inputs cannot be converted either.
    NaN or Inf array values give a ``RuntimeWarning`` naming the layers.

    Args:
        network: the network.
        converters: converters for this call, by MATLAB class name (before the registry's).
        loss_layers: the layers to pass through as loss layers; None: every terminal
            user-defined layer without a converter (a rebuild gives the list it recorded).
        own: whether nothing but this call holds ``network`` (its loader read the file): the
            built-in converters then make tensors over its arrays' memory where they can
            (reordered in place, so that the network's values change) instead of copies.

    Returns:
        The module.

    Raises:
        ConversionError: listing every layer that cannot be converted (name, MATLAB class,
            reason), or the graph has a cycle or no input layer.
    """
    where = f"{network.source}:{network.path}" if network.source else (network.path or "network")
    graph = network.index()
    try:
        order = graph.topological_order()
    except ValueError as exc:
        raise ConversionError(f"{where}: {exc}") from None
    extra = dict(converters or {})
    taken: set[str] = set()
    names = {lay.name: module_name(lay.name, taken) for lay in network.layers}
    formats: dict[str, Format] = {}
    modules: dict[str, nn.Module] = {}
    inputs: list[str] = []
    steps: list[Step] = []
    problems: list[tuple[str, str, str]] = []
    losses: list[dict[str, Any]] = []
    sizes, checked = analyze(network, graph)
    inconsistent = {name: reason for name, _, reason in checked}
    with adopting(adoptable(network) if own else None):  # for the built-in converters
        for layer in order:
            sources = graph.input_refs(layer)
            in_formats = tuple(formats.get(source, VECTOR) for source, _ in sources)
            formats[layer.name] = output_format(layer, in_formats)
            converter, builtin = find_converter(layer, extra)
            is_loss = (_is_loss_layer(graph, layer) if loss_layers is None
                       else layer.name in loss_layers)
            if converter is None and is_loss:
                converter = _identity
                losses.append(_loss_record(layer))
                logger.info("%s: %s (%s) is a user-defined output layer, a loss that "
                            "prediction does not use: passed through, recorded in loss_layers",
                            where, layer.name, layer.class_name)
            reason = _static_problem(layer, converter, builtin) or inconsistent.get(layer.name)
            if reason is None and not sources and layer.type not in INPUT_LAYER_TYPES:
                reason = "no input is connected to this layer"
            if reason is None and converter is not None:
                try:
                    context = ConversionContext(in_formats, tuple(sizes.get(r) for r in sources))
                    if builtin:
                        modules[names[layer.name]] = converter(layer, context)
                    else:
                        with adopting(None):
                            modules[names[layer.name]] = converter(layer, context)
                except LayerNotConvertible as exc:
                    reason = exc.reason
                except Exception as exc:  # a converter's failure is reported with the others
                    reason = f"conversion failed: {type(exc).__name__}: {exc}"
            if reason is not None:
                problems.append((layer.name, layer.class_name, reason))
                continue
            if layer.type in INPUT_LAYER_TYPES:
                inputs.append(names[layer.name])
                continue
            refs = tuple((names[source], i) for source, i in sources)
            steps.append((names[layer.name], refs, len(output_ports(layer))))
    if problems:
        raise ConversionError(
            f"{where}: {len(problems)} layer(s) cannot be converted to PyTorch:", problems)
    if not inputs:
        raise ConversionError(f"{where}: the network has no input layer")
    outputs, output_names = _output_refs(graph, names)
    module = ConvertedNetwork(modules, inputs, steps, outputs, dict(names), output_names)
    module.input_formats = [formats[lay.name] for lay in network.input_layers]
    module.loss_layers = losses
    warn_non_finite(network)
    return module


# ---------------------------------------------------------------------------------------------
# Architecture spec: the Network without its arrays, as JSON-able data
# ---------------------------------------------------------------------------------------------


_PLAIN = frozenset({str, bool, int, float, type(None)})


def _jsonable(value: Any) -> Any:
    kind = type(value)
    if kind in _PLAIN:
        return value
    if kind is tuple or kind is list:
        return [v if type(v) in _PLAIN else _jsonable(v) for v in value]
    if kind is dict:
        return {k if type(k) is str else str(k): v if type(v) in _PLAIN else _jsonable(v)
                for k, v in value.items()}
    if isinstance(value, (str, bool, int, float)) or value is None:
        return value
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    return str(value)


def _from_json(value: Any) -> Any:
    """Lists of numbers back to the tuples the layer model uses."""
    if isinstance(value, list):
        items = [_from_json(v) for v in value]
        numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in items)
        return tuple(items) if numeric and items else items
    if isinstance(value, dict):
        return {k: _from_json(v) for k, v in value.items()}
    return value


def _raw_scalars(raw: Mapping[str, Any]) -> dict[str, Any]:
    """The text and scalar fields of an unknown layer (what a user converter may read)."""
    out: dict[str, Any] = {}
    for key, value in raw.items():
        if isinstance(value, np.ndarray) and value.size == 1 and value.dtype.kind in "biuf":
            value = value.ravel()[0].item()
        if isinstance(value, (str, bool, int, float)):
            out[key] = value
    return out


def network_spec(network: Network, loss_layers: Collection[str] = ()) -> dict[str, Any]:
    """The network's architecture without its arrays (array shapes kept), JSON-able.

    :func:`module_from_spec` rebuilds the same module from it; load the weights afterwards
    with ``load_state_dict``. Of an unknown layer's raw fields only texts and scalars are kept;
    ``loss_layers`` (the module's, see :func:`build_module`) are passed through again.
    """
    def arrays(table: Mapping[str, np.ndarray]) -> dict[str, list[int]]:
        return {k: list(v.shape if type(v) is np.ndarray else np.shape(v))
                for k, v in table.items()}

    return {
        "format": SPEC_FORMAT,
        "kind": network.kind,
        "layers": [{"name": lay.name, "class_name": lay.class_name,
                    "params": _jsonable(lay.params), "learnables": arrays(lay.learnables),
                    "state": arrays(lay.state), "supported": lay.supported,
                    "raw": {} if lay.supported else _raw_scalars(lay.raw)}
                   for lay in network.layers],
        "connections": [[c.source, c.source_port, c.dest, c.dest_port]
                        for c in network.connections],
        "class_names": network.class_names,
        "output_names": list(network.output_names),
        "source": network.source,
        "path": network.path,
        "loss_layers": sorted(loss_layers),
    }


def network_from_spec(spec: Mapping[str, Any]) -> Network:
    """A :class:`Network` with the spec's architecture and zero-filled float32 arrays."""
    if spec.get("format") != SPEC_FORMAT:
        raise ConversionError(f"not a matport graph spec (format {spec.get('format')!r})")

    def zeros(table: Mapping[str, list[int]]) -> dict[str, np.ndarray]:
        return {k: np.zeros(shape, dtype=np.float32) for k, shape in table.items()}

    layers = [Layer(name=d["name"], class_name=d["class_name"], params=_from_json(d["params"]),
                    learnables=zeros(d["learnables"]), state=zeros(d["state"]),
                    supported=d["supported"], raw=dict(d.get("raw", {})))
              for d in spec["layers"]]
    connections = [Connection(source=s, dest=d, source_port=sp, dest_port=dp)
                   for s, sp, d, dp in spec["connections"]]
    return Network(kind=spec["kind"], layers=layers, connections=connections,
                   class_names=spec.get("class_names"),
                   output_names=list(spec.get("output_names", [])),
                   source=spec.get("source", ""), path=spec.get("path", ""))


def module_from_spec(spec: Mapping[str, Any],
                     converters: Mapping[str, Converter] | None = None) -> ConvertedNetwork:
    """Rebuild the module described by :func:`network_spec` (weights zero: load a state_dict)."""
    return build_module(network_from_spec(spec), converters, spec.get("loss_layers", ()))
