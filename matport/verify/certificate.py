"""The weights certificate: every floating-point tensor of the converted model (its
``state_dict`` and the input normalization its ``preprocess`` applies) checked, bit for bit,
against the ONNX initializers, up to the layout changes MATLAB's exporter makes.

A tensor is looked for among the initializers of its own MATLAB layer (the module it belongs to
through ``model.matport.layer_map``); a tensor of a module that no layer maps to (the ResNet-50
transplant's convolutions, whose outputs lack the bias folded into the next BatchNorm) is looked
for among all initializers of its size. Tensors MATLAB's export has no initializer for are
listed as missing; only a tensor whose closest initializer differs fails the check.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from matport.network import layout
from matport.network.model import Network
from matport.network.specs import LAYER_PACKAGE, spec_of
from matport.verify import onnx_run
from matport.verify.onnx_run import OnnxExport
from matport.verify.report import WeightEntry, WeightsCertificate

if TYPE_CHECKING:
    from torch import nn

    from matport.convert.info import ModelInfo

NORMALIZATION_PREFIX = "matport.normalization."


@dataclass
class _Initializer:
    name: str
    array: np.ndarray
    layer: str | None
    layer_type: str | None


def certificate(
    model: nn.Module, info: ModelInfo, network: Network | None, export: OnnxExport
) -> WeightsCertificate:
    """Check the model's own tensors against the export's initializers.

    Args:
        model: the converted model.
        info: its `ModelInfo` (``layer_map``, normalization).
        network: the MATLAB network, for its layer names and types (recurrent gate orders);
            without it the names come from ``layer_map``.
        export: MATLAB's ONNX export.

    Returns:
        The certificate: counts, and the differing and missing tensors.
    """
    names = [lay.name for lay in network.layers] if network else list(info.layer_map)
    types = {lay.name: lay.type for lay in network.layers} if network else {}
    owner_of = onnx_run.owners(names)
    inits = [
        _Initializer(k, a, layer, types.get(layer or ""))
        for k, a in {**export.initializers, **_folded_bn_means(export)}.items()
        if np.issubdtype(a.dtype, np.floating)
        for layer in [owner_of(k)]
    ]
    by_layer: dict[str, list[_Initializer]] = {}
    by_size: dict[int, list[_Initializer]] = {}
    for init in inits:
        by_layer.setdefault(init.layer or "", []).append(init)
        by_size.setdefault(init.array.size, []).append(init)
    inputs = network.input_layers if network else []
    cert = WeightsCertificate()
    for key, tensor, layer in _model_tensors(model, info, inputs[0].name if inputs else None):
        local = [i for i in by_layer.get(layer or "", []) if _sizes_fit(i, tensor.size)]
        # no initializer of its layer fits: any of its size, and the owner of the closest
        entry = _match(key, tensor, layer if local else None,
                       local or by_size.get(tensor.size, []))
        cert.checked += 1
        if entry is None:
            cert.identical += 1
        elif entry.max_abs_diff is None:
            cert.missing.append(entry)
        else:
            cert.differing.append(entry)
    return cert


def _model_tensors(
    model: nn.Module, info: ModelInfo, input_layer: str | None
) -> Iterator[tuple[str, np.ndarray, str | None]]:
    """``(state_dict key, float32 value, MATLAB layer or None)`` of every floating-point tensor,
    then the normalization statistics ``preprocess`` uses (``matport.normalization.<name>``)."""
    from matport.convert.preprocess import normalization_tensors

    by_path = {path: layer for layer, path in info.layer_map.items()}
    for key, t in model.state_dict().items():
        if t.is_floating_point():
            module = key.rpartition(".")[0]
            yield key, t.detach().cpu().float().numpy(), _mapped_layer(module, by_path)
    if info.normalization.type in ("none", "function"):
        return
    for stat, t in normalization_tensors(info.normalization, info.input_size,
                                         info.layout).items():
        if t.numel() > 1:
            yield NORMALIZATION_PREFIX + stat, t.numpy(), input_layer


def _mapped_layer(module: str, by_path: dict[str, str]) -> str | None:
    """The layer whose ``layer_map`` path is ``module`` or its closest mapped ancestor."""
    while True:
        if module in by_path:
            return by_path[module]
        if not module:
            return None
        module = module.rpartition(".")[0]


def _sizes_fit(init: _Initializer, size: int) -> bool:
    return any(a.size == size for _, a in _onnx_layouts(init.layer_type, init.array))


def _match(
    key: str, tensor: np.ndarray, layer: str | None, pool: list[_Initializer]
) -> WeightEntry | None:
    """None when some layout of an initializer in ``pool`` equals ``tensor`` bit for bit, else
    the closest one (``max_abs_diff`` set) or a missing entry."""
    flat = tensor.reshape(-1)
    for init in pool:  # fast path: most tensors hold their initializer's values as stored
        a = init.array.reshape(-1)
        if a.size == flat.size and np.array_equal(a[:8], flat[:8]) and np.array_equal(a, flat):
            return None
    best: tuple[int, float, _Initializer, str] | None = None
    for init in pool:
        for arrangement, cand in _onnx_layouts(init.layer_type, init.array):
            if cand.size != flat.size:
                continue
            delta = np.abs(cand.reshape(-1).astype(np.float32) - flat)
            unequal = int(np.count_nonzero(delta))
            if unequal == 0:
                return None
            closeness = (unequal, float(np.nanmax(delta, initial=0)))
            if best is None or closeness < best[:2]:
                best = (*closeness, init, arrangement)
    entry = WeightEntry(layer=layer, tensor=key, shape=[int(s) for s in tensor.shape])
    if best is not None:  # the closest: fewest unequal values, then the smallest difference
        _, entry.max_abs_diff, init, entry.layout = best
        entry.onnx_initializer, entry.layer = init.name, entry.layer or init.layer
    return entry


def _folded_bn_means(export: OnnxExport) -> dict[str, np.ndarray]:
    """``mean - bias`` for every BatchNormalization fed by a Conv with a bias: the running mean
    of a transplant that folds the conv's bias into the BatchNorm (named ``mean - bias``)."""
    graph, inits = export.model.graph, export.initializers
    producers = {o: n for n in graph.node for o in n.output}
    folded: dict[str, np.ndarray] = {}
    for node in graph.node:
        conv = producers.get(node.input[0]) if node.op_type == "BatchNormalization" else None
        if conv is None or conv.op_type != "Conv" or len(conv.input) < 3:
            continue
        mean, bias = node.input[3], conv.input[2]
        if mean in inits and bias in inits and inits[mean].size == inits[bias].size:
            folded[f"{mean} - {bias}"] = inits[mean].reshape(-1) - inits[bias].reshape(-1)
    return folded


def _onnx_layouts(layer_type: str | None, a: np.ndarray) -> Iterator[tuple[str, np.ndarray]]:
    """The arrangements of the ONNX initializer ``a`` (of a layer of ``layer_type``) a PyTorch
    tensor may hold; they are compared flattened."""
    yield "as stored", a
    if a.ndim == 2:
        yield "transposed (MatMul)", a.T
    if a.ndim == 4:
        yield "H and W swapped (MATLAB's flatten order)", a.transpose(0, 1, 3, 2)
    spec = spec_of(f"{LAYER_PACKAGE}{layer_type}") if layer_type else None
    if spec is None or spec.gate_order is None or a.ndim < 2:
        return
    # ONNX stores the gates in spec.gate_order; PyTorch's nn.LSTM / nn.GRU keep MATLAB's order
    gates = tuple(int(g) for g in np.argsort(spec.gate_order))
    for d, block in enumerate(a):  # ONNX W, R: [dirs, G*H, ...]; B: [dirs, 2*G*H] = [Wb, Rb]
        if block.ndim == 1 and block.size % (2 * len(gates)) == 0:
            for half, part in zip(("input", "recurrent"), np.split(block, 2), strict=True):
                yield (f"direction {d}, {half} bias, gates in MATLAB order",
                       layout.reorder_gates(part, gates))
        elif block.ndim > 1 and block.shape[0] % len(gates) == 0:
            yield f"direction {d}, gates in MATLAB order", layout.reorder_gates(block, gates)
