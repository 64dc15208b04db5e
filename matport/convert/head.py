"""The classifier end of a converted network.

PyTorch models return logits: :func:`split_softmax` takes MATLAB's terminal softmax out of a
network before it is converted (``model.matport.postprocess`` records it, and
``model.matport.postprocess_outputs`` applies it). :func:`reset_classifier` swaps the head for a
new number of classes in one call, like timm's ``model.reset_classifier``.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from typing import Any, Literal, cast

from torch import nn

from matport.convert.info import Postprocess, info_of
from matport.errors import ArgumentError
from matport.network.model import OUTPUT_LAYER_TYPES, Connection, Layer, Network

log = logging.getLogger(__name__)

#: What :func:`matport.load` returns: logits (PyTorch's convention, MATLAB's terminal softmax
#: recorded as post-processing) or MATLAB's own outputs (its softmax kept in the module).
Output = Literal["logits", "probabilities"]
OUTPUTS: tuple[Output, ...] = ("logits", "probabilities")

_SOFTMAX = "SoftmaxLayer"
_HEAD = "FullyConnectedLayer"


def split_softmax(network: Network) -> tuple[Network, Postprocess | None]:
    """Take a terminal softmax out of a network, so that the converted model returns logits.

    Args:
        network: a MATLAB network; it is not modified.

    Returns:
        ``(network, None)`` when the network has several outputs or its single output is not a
        softmax (an output layer after the softmax, e.g. a ClassificationOutputLayer, is looked
        through); otherwise a copy without the softmax (its input wired to what it fed, the
        output names updated) and ``"softmax"``.
    """
    softmax = _terminal_softmax(network)
    if softmax is None:
        return network, None
    (into,) = network.predecessors(softmax.name)
    source = (into.source, into.source_port)
    connections = [
        dataclasses.replace(c, source=source[0], source_port=source[1]) if c.source == softmax.name
        else c
        for c in network.connections if c.dest != softmax.name
    ]
    port = f"/{into.source_port}" if into.source_port not in (None, "out") else ""
    outputs = [into.source + port if n.partition("/")[0] == softmax.name else n
               for n in network.output_names]
    layers = [lay for lay in network.layers if lay is not softmax]
    stripped = dataclasses.replace(network, layers=layers, connections=connections,
                                   output_names=outputs)
    return stripped, "softmax"


def postprocess_of(network: Network) -> Postprocess | None:
    """``split_softmax(network)[1]``, without making the network's copy: ``"softmax"`` when the
    network ends in a softmax that a converted model leaves to post-processing."""
    return None if _terminal_softmax(network) is None else "softmax"


def _terminal_softmax(network: Network) -> Layer | None:
    """The softmax behind the network's single output (through output layers), if any."""
    layer = _last_layer(network, OUTPUT_LAYER_TYPES)
    return layer if layer is not None and layer.type == _SOFTMAX else None


def reset_classifier(model: nn.Module, num_classes: int,
                     class_names: Sequence[str] | None = None) -> nn.Module:
    """Replace a converted classifier's head with a new, freshly initialised one (as timm's
    ``model.reset_classifier(num_classes)``), to fine-tune it on other classes.

    The head is the fully connected layer that feeds the network's output (through its output
    layer and softmax, if any); it becomes a ``nn.Linear`` of the same input size, on the same
    device and dtype. ``model.matport`` is updated: class names, number of classes and the
    architecture, so that a checkpoint of the new model reloads. Every other parameter is kept.

    Args:
        model: a model returned by :func:`matport.load` or :func:`matport.load_resnet50`.
        num_classes: the new number of classes (at least 1).
        class_names: the new classes in output order; ``"0"``, ``"1"``, ... when omitted (the
            indices a ``CrossEntropyLoss`` target uses).

    Returns:
        The same ``model``, changed in place.

    Raises:
        ArgumentError: ``num_classes`` is not a positive integer, ``class_names`` does not have
            ``num_classes`` entries, or the model has no fully connected head (several outputs,
            a convolutional head, not a matport model).
    """
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ArgumentError(f"num_classes must be a positive integer, not {num_classes!r}")
    names = [str(i) for i in range(num_classes)] if class_names is None else list(class_names)
    if len(names) != num_classes:
        raise ArgumentError(f"class_names has {len(names)} entries for {num_classes} classes")
    info = info_of(model)
    arch = info.architecture
    family = arch.get("family")
    if family == "graph":
        path = _reset_graph_head(arch["spec"], num_classes, names, info.layer_map)
    elif family == "resnet50":
        path = "fc"
        arch["num_classes"] = num_classes
    else:
        raise ArgumentError(f"reset_classifier does not know the architecture family {family!r}")
    old = model.get_submodule(path)
    if not isinstance(old, nn.Linear):
        raise ArgumentError(f"the head {path!r} is a {type(old).__name__}, not a linear layer")
    new = type(old)(old.in_features, num_classes, device=old.weight.device, dtype=old.weight.dtype)
    parent, _, name = path.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, name, new)
    info.class_names = names
    log.info("reset_classifier: head %s now has %d classes", path, num_classes)
    return model


def _last_layer(network: Network, skip: frozenset[str]) -> Layer | None:
    """The layer behind the network's single output, looking through layers of the ``skip``
    types that have one input (None when there are several outputs or no such layer)."""
    graph = network.index()
    outputs = network.output_names or [
        lay.name for lay in network.layers if not graph.has_successors(lay.name)]
    if len(outputs) != 1:
        return None
    names = {lay.name: lay for lay in network.layers}
    layer = names.get(outputs[0].partition("/")[0])
    while layer is not None and layer.type in skip:
        into = graph.predecessors(layer.name)
        layer = names.get(into[0].source) if len(into) == 1 else None
    if layer is None or len(graph.predecessors(layer.name)) != 1:
        return None
    feeds = {c.dest for c in graph.successors(layer.name)}
    return layer if all(names[d].type in skip for d in feeds if d in names) else None


def _reset_graph_head(spec: dict[str, Any], num_classes: int, names: list[str],
                      layer_map: dict[str, str]) -> str:
    """Update a graph spec for the new head; returns the head's submodule path."""
    layers = {d["name"]: d for d in spec["layers"]}
    skeleton = Network(
        kind=spec["kind"],
        layers=[Layer(name=d["name"], class_name=d["class_name"]) for d in spec["layers"]],
        connections=[Connection(source=s, dest=d, source_port=sp, dest_port=dp)
                     for s, sp, d, dp in spec["connections"]],
        output_names=list(spec.get("output_names", [])))
    head = _last_layer(skeleton, OUTPUT_LAYER_TYPES | {_SOFTMAX})
    if head is None or head.type != _HEAD:
        found = "several outputs" if head is None else f"{head.name} ({head.type})"
        raise ArgumentError(f"the network has no fully connected head to reset: {found}")
    entry = layers[head.name]
    for table in (entry["learnables"], entry["params"]):
        for key, shape in table.items():
            if key in ("Weights", "Bias", "OutputSize"):
                table[key] = _resized(shape, num_classes)
    for other in spec["layers"]:
        if "Classes" in other["params"]:
            other["params"]["Classes"] = list(names)
    spec["class_names"] = list(names)
    return layer_map[head.name]


def _resized(shape: Any, n: int) -> Any:
    """A fully connected layer's Weights/Bias shape or OutputSize with the output size ``n``:
    MATLAB keeps it first in ``O x I`` / ``O x 1`` and last in ``H x W x C x O`` / ``1 x 1 x O``."""
    if isinstance(shape, (int, float)):
        return n
    dims = list(cast(Sequence[int], shape))
    dims[0 if len(dims) == 2 else -1] = n
    return dims
