"""The weights certificate: every learnable and state array checked, bit for bit, against the
ONNX initializers of the same layer, up to the layout changes MATLAB's exporter makes."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np

from matport.network.model import Layer, Network
from matport.verify import onnx_run
from matport.verify.onnx_run import OnnxExport
from matport.verify.report import WeightEntry, WeightsCertificate

_GATE_ORDER = {"LSTMLayer": (0, 3, 1, 2), "BiLSTMLayer": (0, 3, 1, 2), "GRULayer": (1, 0, 2)}
_BIDIRECTIONAL = frozenset({"BiLSTMLayer"})


def certificate(network: Network, export: OnnxExport) -> WeightsCertificate:
    """Compare every learnable/state array of ``network`` (and the input layer's normalization
    statistics) with the ONNX initializers of the same layer, up to MATLAB's layout changes."""
    owners = _initializer_owners(export.initializers, [lay.name for lay in network.layers])
    cert = WeightsCertificate()
    for layer in network.layers:
        mine = {k: export.initializers[k] for k in owners.get(layer.name, [])}
        for key, array in _matlab_arrays(layer):
            cert.checked += 1
            entry = _match(layer, key, np.asarray(array), mine)
            if entry is None:
                cert.identical += 1
            elif entry.max_abs_diff is None:
                cert.missing.append(entry)
            else:
                cert.differing.append(entry)
    return cert


def _matlab_arrays(layer: Layer) -> Iterator[tuple[str, np.ndarray]]:
    yield from layer.learnables.items()
    yield from layer.state.items()
    norm = layer.normalization
    if norm is not None:
        for key in ("mean", "std", "min", "max"):
            a = getattr(norm, key)
            if a is not None and np.asarray(a).size > 1:
                yield f"Normalization.{key}", np.asarray(a)


def _initializer_owners(
    inits: dict[str, np.ndarray], layers: Sequence[str]
) -> dict[str, list[str]]:
    """Layer name -> the initializers named after it (see `onnx_run.owner`)."""
    owners: dict[str, list[str]] = {}
    for name in inits:
        layer = onnx_run.owner(name, layers)
        if layer is not None:
            owners.setdefault(layer, []).append(name)
    return owners


def _match(
    layer: Layer, key: str, array: np.ndarray, inits: dict[str, np.ndarray]
) -> WeightEntry | None:
    """None when some layout of ``array`` equals an initializer bit for bit, else the closest
    size-compatible initializer (``max_abs_diff`` set) or a missing entry."""
    best: tuple[float, str, str] | None = None
    a32 = array.astype(np.float32)
    for layout, cand in _layouts(layer, a32):
        for name, init in inits.items():
            if init.size != cand.size or not np.issubdtype(init.dtype, np.floating):
                continue
            delta = cand.reshape(init.shape) - init.astype(np.float32)
            diff = float(np.max(np.abs(delta), initial=0))
            if diff == 0.0:
                return None
            if not np.isnan(diff) and (best is None or diff < best[0]):
                best = (diff, name, layout)
    entry = WeightEntry(layer=layer.name, array=key, shape=[int(s) for s in array.shape])
    if best is not None:
        entry.max_abs_diff, entry.onnx_initializer, entry.layout = best
    return entry


def _layouts(layer: Layer, a: np.ndarray) -> Iterator[tuple[str, np.ndarray]]:
    """The arrangements MATLAB's exporter writes an array in (reshaped to fit afterwards)."""
    yield "as stored", a
    if a.ndim == 4:
        yield "HxWxCxF -> FxCxHxW", a.transpose(3, 2, 0, 1)
    if a.ndim == 3:
        yield "HxWxC -> 1xCxHxW", a.transpose(2, 0, 1)
    if a.ndim == 2:
        yield "transposed (MatMul)", a.T
    gates = _GATE_ORDER.get(layer.type)
    if gates is not None:
        dirs = 2 if layer.type in _BIDIRECTIONAL else 1
        flat = a.reshape(a.shape[0], -1) if a.ndim > 1 else a.reshape(-1, 1)
        blocks = np.split(flat, dirs * len(gates))
        ordered = [
            blocks[d * len(gates) + g] for d in range(dirs) for g in gates
        ]
        reordered = np.concatenate(ordered).reshape(dirs, -1, *flat.shape[1:])
        yield "gates reordered to ONNX order", reordered
        if a.ndim == 1 or flat.shape[1] == 1:  # bias: ONNX B = [Wb, Rb] with Rb = 0
            with_rb = np.concatenate([reordered, np.zeros_like(reordered)], axis=1)
            yield "gates reordered, zero recurrent bias", with_rb
