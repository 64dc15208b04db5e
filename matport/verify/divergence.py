"""Per-layer errors and the first layer that parts: every MATLAB layer with both an ONNX tensor
and a PyTorch module is compared, in topological order, on one input (the worst one), in an
instrumented onnxruntime session. This runs only when the outputs differ or when the per-layer
errors are asked for (an HTML report), since the instrumented session is the slow part."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np
import torch

from matport.network.model import INPUT_LAYER_TYPES, Network
from matport.verify import onnx_run
from matport.verify.compare import comparison
from matport.verify.inputs import onnx_input
from matport.verify.onnx_run import OnnxExport
from matport.verify.report import Divergence, LayerError, LayerErrors
from matport.verify.shapes import fit
from matport.verify.torch_run import capture

if TYPE_CHECKING:
    from torch import nn

    from matport.convert.info import ModelInfo


def layer_errors(
    model: nn.Module,
    info: ModelInfo,
    network: Network | None,
    export: OnnxExport,
    raw: np.ndarray,
    rtol: float,
) -> list[LayerError]:
    """Compare, in topological order, every MATLAB layer that has both an ONNX tensor and a
    PyTorch module (``info.layer_map``), plus the input layer against ``preprocess``, in an
    instrumented onnxruntime session. A module that runs several times (a shared ReLU) counts
    its closest call.

    Args:
        model: the converted model.
        info: its `ModelInfo`.
        network: the MATLAB network (layer order and input layers), or None: ONNX node order.
        export: the ONNX export.
        raw: one raw input, batch first.
        rtol: the relative tolerance a layer's activation must hold.

    Returns:
        The compared layers' errors, in topological order.
    """
    order = [lay.name for lay in network.topological_order()] if network else []
    input_layers = (
        {lay.name for lay in network.layers if lay.type in INPUT_LAYER_TYPES} if network else set()
    )
    names = order or list(info.layer_map)
    tensors = onnx_run.layer_tensors(export, names)
    if not order:  # no network: ONNX node order is topological
        position = {t: i for i, t in enumerate(onnx_run.node_output_names(export))}
        order = sorted(tensors, key=lambda n: position.get(tensors[n], -1))
    compared = [
        n for n in order if n in tensors and (n in info.layer_map or n in input_layers)
    ]
    wanted = [tensors[n] for n in compared if tensors[n] != export.input_name]
    x_onnx = onnx_input(export, info, raw)
    onnx_values = onnx_run.run(export, x_onnx, wanted, instrumented=True)
    with torch.no_grad():
        x_torch = info.preprocess(torch.from_numpy(raw))
    _, activations = capture(model, x_torch, {n: info.layer_map[n] for n in compared
                                              if n in info.layer_map})
    found: list[LayerError] = []
    for n in compared:
        ref = x_onnx if tensors[n] == export.input_name else onnx_values[tensors[n]]
        candidates = activations.get(n) or ([x_torch.numpy()] if n in input_layers else [])
        errors = [c for c in (_layer_error(a, ref) for a in candidates) if c is not None]
        if errors:
            max_abs, rel = min(errors, key=lambda e: e[1])
            found.append(LayerError(n, tensors[n], info.layer_map.get(n), max_abs, rel,
                                    holds=rel <= rtol))
    return found


def layer_graph(network: Network | None, compared: list[LayerError]) -> tuple[list[str],
                                                                             list[list[str]]]:
    """The layer graph to draw: the network's, or a chain of the compared layers without it.

    Args:
        network: the MATLAB network, or None.
        compared: the compared layers, in order.

    Returns:
        Every layer in topological order, and the ``[source, dest]`` edges.
    """
    if network is None:
        names = [e.layer for e in compared]
        return names, [[a, b] for a, b in zip(names, names[1:], strict=False)]
    return ([lay.name for lay in network.topological_order()],
            [[c.source, c.dest] for c in network.connections])


def find_divergence(errors: LayerErrors, network: Network | None) -> Divergence:
    """The first layer that parts.

    Args:
        errors: every compared layer's errors (see `layer_errors`).
        network: the MATLAB network, for the layers between that have no module.

    Returns:
        The first layer whose error exceeds the tolerance (``layer`` None when none does) and
        the last one before it that agrees.
    """
    last_ok: str | None = None
    mapped = {e.layer for e in errors.compared}
    n_compared = len(errors.compared)
    for e in errors.compared:
        if e.holds:
            last_ok = e.layer
            continue
        return Divergence(
            layer=e.layer, onnx_tensor=e.onnx_tensor, torch_module=e.torch_module,
            max_abs_error=e.max_abs_error, max_rel_error=e.max_rel_error, sample=errors.sample,
            last_agreeing_layer=last_ok, unmapped_between=_unmapped_between(network, e.layer,
                                                                            mapped),
            layers_compared=n_compared,
        )
    return Divergence(
        layer=None, onnx_tensor=None, torch_module=None, max_abs_error=None, max_rel_error=None,
        sample=errors.sample, last_agreeing_layer=last_ok, unmapped_between=[],
        layers_compared=n_compared,
    )


def _layer_error(t: np.ndarray, o: np.ndarray) -> tuple[float, float] | None:
    """(max abs error, max abs error / max|o|), or None when the shapes cannot be matched."""
    if t.shape != o.shape:
        fitted = fit(t[0], o.shape[1:]) if len(t) == len(o) == 1 else None
        if fitted is None:
            return None
        t = fitted[None]
    c = comparison(t.astype(np.float32), o.astype(np.float32), math.inf)
    return c.max_abs_error, c.max_rel_error


def _unmapped_between(network: Network | None, layer: str, mapped: set[str]) -> list[str]:
    """Layers feeding ``layer`` (transitively) until a compared layer: they have no module."""
    if network is None:
        return []
    found: list[str] = []
    stack = [c.source for c in network.predecessors(layer)]
    while stack:
        n = stack.pop()
        if n in mapped or n in found:
            continue
        found.append(n)
        stack.extend(c.source for c in network.predecessors(n))
    rank = {lay.name: i for i, lay in enumerate(network.topological_order())}
    return sorted(found, key=lambda n: rank.get(n, -1))

