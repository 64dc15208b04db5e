"""What ``matport inspect`` reports: a JSON-able description of a file and its networks.

The dictionary layout is the documented, stable ``matport.inspect/1`` schema (see README).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from matport.errors import MatportError
from matport.mat.values import MatFile, describe
from matport.network.find import choose_network, find_networks, network_from_ref
from matport.network.model import Layer, Network, Normalization

SCHEMA_ID = "matport.inspect/1"

_SHAPE = {"type": "array", "items": {"type": "integer"}}
_NULLABLE_SHAPE = {"anyOf": [_SHAPE, {"type": "null"}]}
_NULLABLE_NUMBERS = {"anyOf": [{"type": "array", "items": {"type": "number"}}, {"type": "null"}]}
_NORMALIZATION = {
    "type": "object",
    "required": ["type", "dimension"] + [f"{k}_{s}" for k in ("mean", "std", "min", "max")
                                         for s in ("shape", "per_channel")],
    "properties": {
        "type": {"type": "string"},
        "dimension": {"type": "string"},
        **{f"{k}_shape": _NULLABLE_SHAPE for k in ("mean", "std", "min", "max")},
        **{f"{k}_per_channel": _NULLABLE_NUMBERS for k in ("mean", "std", "min", "max")},
    },
}
_CONVERSION = {
    "type": "object", "required": ["converts", "family", "reason", "problems"],
    "properties": {
        "converts": {"type": "boolean"}, "family": {"type": ["string", "null"]},
        "reason": {"type": ["string", "null"]},
        "problems": {"type": "array", "items": {
            "type": "object", "required": ["layer", "class", "reason"],
            "properties": {"layer": {"type": "string"}, "class": {"type": "string"},
                           "reason": {"type": "string"}}}}},
}
#: The JSON Schema of ``matport inspect --json`` (documented in the README).
INSPECT_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "required": ["schema", "file", "format", "header", "variables", "networks", "errors",
                 "chosen"],
    "properties": {
        "schema": {"const": SCHEMA_ID},
        "file": {"type": "string"},
        "format": {"enum": ["v7", "v7.3"]},
        "header": {"type": "string"},
        "chosen": {"type": ["string", "null"]},
        "variables": {"type": "array", "items": {
            "type": "object", "required": ["name", "description"],
            "properties": {"name": {"type": "string"}, "description": {"type": "string"}}}},
        "networks": {"type": "array", "items": {
            "type": "object",
            "required": ["path", "kind", "trained", "conversion", "num_layers", "num_parameters",
                         "inputs", "class_names", "output_names", "layers", "connections"],
            "properties": {
                "path": {"type": "string"},
                "trained": {"type": "boolean"},
                "conversion": {"anyOf": [_CONVERSION, {"type": "null"}]},
                "kind": {"enum": ["SeriesNetwork", "DAGNetwork", "dlnetwork", "LayerGraph",
                                  "LayerArray", "network"]},
                "num_layers": {"type": "integer"},
                "num_parameters": {"type": "integer"},
                "inputs": {"type": "array", "items": {
                    "type": "object",
                    "required": ["name", "class", "input_size", "normalization"],
                    "properties": {
                        "name": {"type": "string"}, "class": {"type": "string"},
                        "input_size": {"anyOf": [{"type": "array"}, {"type": "null"}]},
                        "normalization": {"anyOf": [_NORMALIZATION, {"type": "null"}]}}}},
                "class_names": {"anyOf": [{"type": "array", "items": {"type": "string"}},
                                          {"type": "null"}]},
                "output_names": {"type": "array", "items": {"type": "string"}},
                "layers": {"type": "array", "items": {
                    "type": "object",
                    "required": ["index", "name", "class", "type", "supported", "problem",
                                 "params", "learnables", "state", "num_parameters"],
                    "properties": {
                        "index": {"type": "integer"}, "name": {"type": "string"},
                        "class": {"type": "string"}, "type": {"type": "string"},
                        "supported": {"type": "boolean"},
                        "problem": {"type": ["string", "null"]}, "params": {"type": "object"},
                        "learnables": {"type": "object", "additionalProperties": _SHAPE},
                        "state": {"type": "object", "additionalProperties": _SHAPE},
                        "num_parameters": {"type": "integer"}}}},
                "connections": {"type": "array", "items": {
                    "type": "object", "required": ["source", "source_port", "dest", "dest_port"],
                    "properties": {
                        "source": {"type": "string"}, "dest": {"type": "string"},
                        "source_port": {"type": ["string", "null"]},
                        "dest_port": {"type": ["string", "null"]}}}},
            }}},
        "errors": {"type": "array", "items": {
            "type": "object", "required": ["path", "message"],
            "properties": {"path": {"type": "string"}, "message": {"type": "string"}}}},
    },
}

# Hyper-parameters shown in the layer table, in this order, when a layer has them.
KEY_PARAMS = (
    "InputSize", "FilterSize", "NumFilters", "NumChannels", "Stride", "DilationFactor",
    "PaddingSize", "PaddingMode", "PoolSize", "OutputSize", "NumHiddenUnits", "ReturnSequence",
    "OutputMode", "NumHeads", "NumKeyChannels", "Epsilon", "Probability", "Scale", "Alpha",
    "Ceiling", "NumInputs", "Dim", "NumGroups", "ResetGateMode", "MaxPosition", "TransferFcn",
)


#: Whether and how a network converts: ``{"converts": bool, "family": str | None,
#: "reason": str | None, "problems": [{"layer", "class", "reason"}]}`` (the PyTorch side's answer).
Judge = Callable[[Network], dict[str, Any]]


def describe_file(matfile: MatFile, judge: Judge | None = None) -> dict[str, Any]:
    """The ``matport.inspect/1`` description of a file: variables, then each network.

    Args:
        matfile: the file, as :func:`matport.read` returns it.
        judge: says whether and how each network converts (``conversion``, and each layer's
            ``problem``); without it both are null.

    Returns:
        The JSON-able document (schema :data:`INSPECT_SCHEMA`); ``chosen`` is the network
        ``matport.load`` takes when no variable is named (null when it would refuse).
    """
    networks, errors = [], []
    refs = find_networks(matfile)
    for ref in refs:
        try:
            net = network_from_ref(ref, matfile.path)
        except MatportError as exc:
            errors.append({"path": ref.path, "message": str(exc)})
            continue
        networks.append(describe_network(net, ref.trained, judge(net) if judge else None))
    try:
        chosen: str | None = choose_network(refs, matfile.path).path if refs else None
    except MatportError:
        chosen = None
    return {
        "schema": SCHEMA_ID,
        "file": matfile.path,
        "format": matfile.format,
        "header": matfile.header,
        "variables": [
            {"name": k, "description": describe(v)} for k, v in matfile.items()
        ],
        "networks": networks,
        "errors": errors,
        "chosen": chosen,
    }


def describe_network(net: Network, trained: bool = True,
                     conversion: dict[str, Any] | None = None) -> dict[str, Any]:
    """One network's entry of the ``matport.inspect/1`` document.

    Args:
        net: the network.
        trained: False for a LayerGraph or layer array (see ``NetworkRef.trained``).
        conversion: what a :data:`Judge` said about it (None: not judged).

    Returns:
        The JSON-able entry; each layer's ``problem`` is the reason it cannot be converted.
    """
    problems = {p["layer"]: p["reason"] for p in (conversion or {}).get("problems", [])}
    return {
        "path": net.path,
        "kind": net.kind,
        "trained": trained,
        "conversion": conversion,
        "num_layers": len(net.layers),
        "num_parameters": net.num_parameters,
        "inputs": [
            {
                "name": lay.name,
                "class": lay.class_name,
                "input_size": _json(lay.params.get("InputSize")),
                "normalization": describe_normalization(lay.normalization),
            }
            for lay in net.input_layers
        ],
        "class_names": net.class_names,
        "output_names": net.output_names,
        "layers": [describe_layer(i, lay, problems.get(lay.name))
                   for i, lay in enumerate(net.layers, 1)],
        "connections": [
            {"source": c.source, "source_port": c.source_port, "dest": c.dest,
             "dest_port": c.dest_port}
            for c in net.connections
        ],
    }


def describe_layer(index: int, lay: Layer, problem: str | None = None) -> dict[str, Any]:
    """One layer's entry: ``problem`` is why it cannot be converted (None: it can, or unknown)."""
    return {
        "index": index,
        "name": lay.name,
        "class": lay.class_name,
        "type": lay.type,
        "supported": lay.supported,
        "problem": problem,
        "params": {k: _json(v) for k, v in lay.params.items()},
        "learnables": {k: list(a.shape) for k, a in lay.learnables.items()},
        "state": {k: list(a.shape) for k, a in lay.state.items()},
        "num_parameters": lay.num_parameters,
    }


def describe_normalization(norm: Normalization | None) -> dict[str, Any] | None:
    if norm is None:
        return None
    out: dict[str, Any] = {"type": norm.type, "dimension": norm.dimension}
    for key in ("mean", "std", "min", "max"):
        arr = getattr(norm, key)
        out[key + "_shape"] = list(arr.shape) if arr is not None else None
        out[key + "_per_channel"] = (_per_channel(arr) if arr is not None else None)
    return out


def key_params(lay: Layer) -> str:
    """A short ``name=value`` summary of a layer's main hyper-parameters."""
    parts = []
    for key in KEY_PARAMS:
        v = lay.params.get(key)
        if v is None or v == "":
            continue
        if isinstance(v, tuple):
            v = "x".join(str(x) for x in v)
        parts.append(f"{key}={v}")
    return " ".join(parts)


def _per_channel(arr: np.ndarray) -> list[float]:
    """Mean over every axis but the channel axis (the last), for a readable summary."""
    a = np.asarray(arr, dtype=np.float64)
    if a.ndim >= 3:
        return [round(float(x), 6) for x in a.reshape(-1, a.shape[-1], order="F").mean(0)]
    return [round(float(x), 6) for x in a.ravel(order="F")[:16]]


def _json(v: Any) -> Any:
    if isinstance(v, tuple):
        return [_json(x) for x in v]
    if isinstance(v, float) and not np.isfinite(v):
        return str(v)
    return v
