"""``matport.load``: a MATLAB network (file or :class:`Network`) -> a trainable ``nn.Module``."""

from __future__ import annotations

import os
from collections.abc import Mapping

from torch import nn

from matport.convert.graph import ConvertedNetwork, build_module, network_spec
from matport.convert.head import OUTPUTS, Output, split_softmax
from matport.convert.info import ModelInfo, attach_info
from matport.convert.layers import Converter, layout_of
from matport.convert.modes import eval_mode
from matport.convert.shallow import ShallowModule, load_shallow
from matport.errors import ArgumentError, ConversionError
from matport.network.model import Network, Normalization
from matport.network.shallow import ShallowNetwork
from matport.options import FAMILIES


def load(path_or_network: str | os.PathLike[str] | Network, variable: str | None = None, *,
         output: Output = "logits",
         converters: Mapping[str, Converter] | None = None) -> ConvertedNetwork | ShallowModule:
    """Convert a MATLAB SeriesNetwork, DAGNetwork, dlnetwork, LayerGraph or layer array (or a
    shallow ``network``: :func:`matport.convert.shallow.load_shallow`, which returns
    MATLAB's ``net(x)`` as it is).

    The model is in eval mode and returns logits: a softmax at the end of the MATLAB network is
    not part of the module but recorded as ``model.matport.postprocess == "softmax"``
    (``model.matport.postprocess_outputs(logits)`` gives MATLAB's probabilities), so that
    ``nn.CrossEntropyLoss`` trains it as any PyTorch classifier.

    Args:
        path_or_network: a ``.mat`` file or an already read
            :class:`~matport.network.model.Network`.
        variable: the variable path of the network when the file holds several trained ones.
        output: ``"logits"`` (default) or ``"probabilities"``: keep MATLAB's softmax in the
            module, so that it returns exactly MATLAB's outputs.
        converters: MATLAB class name -> converter, for this call only (see
            :func:`matport.convert.layers.register_converter`).

    Returns:
        A :class:`~matport.convert.graph.ConvertedNetwork` whose ``matport`` attribute is a
        :class:`~matport.convert.info.ModelInfo` (class names, input size and layout,
        normalization, ``preprocess``, ``postprocess``).

    Raises:
        ConversionError: lists every layer that cannot be converted (FunctionLayers,
            user-defined layers, unknown classes, untrained layers with empty weights, settings
            without a PyTorch equivalent).
        NetworkError: the file holds no network, or several trained ones and no ``variable``.
        ArgumentError: ``output`` is not one of ``"logits"``, ``"probabilities"``.
    """
    if output not in OUTPUTS:
        raise ArgumentError(f"unknown output {output!r}: expected one of {OUTPUTS}")
    own = not isinstance(path_or_network, Network)  # the network is read here and dropped
    if isinstance(path_or_network, Network):
        network = path_or_network
    else:
        from matport.network import read_network

        network = read_network(path_or_network, variable)
    if isinstance(network, ShallowNetwork):
        return load_shallow(network)
    postprocess = None
    if output == "logits":
        network, postprocess = split_softmax(network)
    model = build_module(network, converters, own=own)
    eval_mode(model)
    attach_info(model, model_info(network, model))
    model.matport.postprocess = postprocess
    return model


def convert_network(network: Network, family: str = "auto") -> tuple[nn.Module, str | None]:
    """Convert ``network`` as ``family`` says.

    Args:
        network: the MATLAB network.
        family: ``auto`` (the registered torchvision family it fits, else :func:`load`'s
            module), ``graph`` (:func:`load`'s module) or a family name (its torchvision model,
            or a :class:`~matport.errors.ConversionError`); see ``matport.options.FAMILIES``.

    Returns:
        The module and, when ``auto`` fell back to the graph module, why.
    """
    if family not in FAMILIES:
        raise ArgumentError(f"unknown family {family!r}: expected one of {FAMILIES}")
    if family == "graph":
        return load(network), None
    from matport.convert.families.registry import GENERIC_HINT, build_model, fit

    try:
        fam, found = fit(network, None if family == "auto" else family)
    except ConversionError as exc:
        if family != "auto":
            raise
        reason = str(exc).splitlines()[0].split(": ", 1)[-1]
        return load(network), reason.removesuffix(f"; {GENERIC_HINT}")
    return build_model(fam, found, network), None


def model_info(network: Network, model: ConvertedNetwork) -> ModelInfo:
    """The :class:`ModelInfo` of a module built from ``network`` (first input's size/layout)."""
    inputs = network.input_layers
    first = inputs[0] if inputs else None
    size = first.params.get("InputSize") if first is not None else None
    return ModelInfo(
        class_names=network.class_names,
        input_size=tuple(int(s) for s in size) if size else (),
        layout=layout_of(model.input_formats[0]) if model.input_formats else "NC",
        normalization=(first.normalization if first is not None and first.normalization
                       else Normalization()),
        source=network.source,
        variable=network.path,
        layer_map=dict(model.layer_map),
        architecture={"family": "graph", "spec": network_spec(
            network, [lay["name"] for lay in model.loss_layers])},
    )
