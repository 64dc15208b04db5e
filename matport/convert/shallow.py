"""A shallow ``network`` (:class:`~matport.network.shallow.ShallowNetwork`) -> ``nn.Module``.

``model(x)`` computes what MATLAB's ``net(x)`` does, processing included: each input's
``processFcns`` applied in order, then, layer by layer in simulation order,
``a{i} = transferFcn(netInputFcn(weightFcn(IW{i,j}, p{j}) ..., weightFcn(LW{i,k}, a{k}) ...,
b{i}))``, and on each output its ``processFcns`` reversed, last first.

**Layout.** MATLAB takes one sample per *column* (features x samples); the module takes one
sample per *row*: ``N x features`` for each input, in input order, and returns ``N x size`` per
output (a tuple when there are several). Parameters are float64, MATLAB's double precision, and
inputs are cast to the model's precision (``model.float()`` computes in float32).

Converted (:mod:`matport.convert.shallow_ops`): the transfer functions in ``TRANSFER_FCNS``,
the processing functions in ``PROCESS_FCNS`` (``fixunknowns`` on inputs only), the weight
functions ``dotprod`` and ``dist``, the net input functions ``netsum`` and ``netprod``.
Tapped delays (``narxnet``, ``timedelaynet``, ``layrecnet``, ``distdelaynet``) and
closed-loop feedback raise :class:`~matport.errors.ConversionError`: their output depends
on earlier time steps, which a static module does not have.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from matport.convert.info import ModelInfo, attach_info
from matport.convert.shallow_ops import (
    NET_INPUT_FCNS,
    PROCESS_FCNS,
    TRANSFER_FCNS,
    WEIGHT_FCNS,
    Step,
    Transfer,
    processing_module,
    step_from_spec,
    step_spec,
    weigh,
)
from matport.errors import ConversionError
from matport.network.model import Normalization
from matport.network.shallow import LAYER_CLASS, Processing, ShallowNetwork


class ShallowModule(nn.Module):
    """The converted network (see the module docstring), built from a JSON-able ``spec`` (see
    :func:`load_shallow`) and its processing steps. Parameters: ``IW["i_j"]``, ``LW["i_k"]``,
    ``b["i"]`` with MATLAB's 1-based indices and shapes (a weight is dest x source, like an
    ``nn.Linear`` weight); they start at zero, the converter then copies MATLAB's values."""

    matport: ModelInfo  # set by load_shallow
    _like: torch.Tensor

    def __init__(self, spec: dict[str, Any], input_processing: list[list[Step]],
                 output_processing: list[list[Step]]) -> None:
        super().__init__()
        # follows .float() / .double(): the precision inputs are cast to
        self.register_buffer("_like", torch.zeros(0, dtype=torch.float64), persistent=False)
        self.input_processing = nn.ModuleList(nn.Sequential(*m) for m in input_processing)
        self.output_processing = nn.ModuleList(nn.Sequential(*m) for m in output_processing)
        self.IW, self.LW, self.b = nn.ParameterDict(), nn.ParameterDict(), nn.ParameterDict()
        # (layer, [(kind, source, key, weight fcn)], has bias, net input fcn), simulation order
        self._plan: list[tuple[int, list[tuple[str, int, str, str]], bool, str]] = []
        for lay in spec["layers"]:
            i, incoming = lay["index"], []
            for kind, source, shape, fcn in lay["weights"]:
                key = f"{i + 1}_{source + 1}"
                table = self.IW if kind == "input" else self.LW
                table[key] = nn.Parameter(torch.zeros(shape, dtype=torch.float64))
                incoming.append((kind, source, key, fcn))
            if lay["bias"]:
                self.b[str(i + 1)] = nn.Parameter(torch.zeros(lay["bias"], dtype=torch.float64))
            self._plan.append((i, incoming, bool(lay["bias"]), lay["net_input"]))
        self.transfer = nn.ModuleDict(
            {str(lay["index"] + 1): Transfer(lay["transfer"]) for lay in spec["layers"]})
        self._outputs: list[int] = list(spec["outputs"])
        self.input_names: list[str] = list(spec["input_names"])
        self.output_names: list[str] = list(spec["output_names"])

    def forward(self, x: torch.Tensor, *more: torch.Tensor) -> Any:
        """Run the network on its inputs (``N x features`` each, in input order)."""
        # indexing, not unpacking: torch.fx traces *more
        raw = [x] + [more[j] for j in range(len(self.input_processing) - 1)]
        raw = [t.to(self._like.dtype) for t in raw]
        p = [proc(raw[j]) for j, proc in enumerate(self.input_processing)]
        a: dict[int, torch.Tensor] = {}
        for i, incoming, has_bias, net_input in self._plan:
            z = [weigh(self.IW[key] if kind == "input" else self.LW[key],
                       p[src] if kind == "input" else a[src], fcn)
                 for kind, src, key, fcn in incoming]
            if has_bias:
                z.append(self.b[str(i + 1)].expand(raw[0].shape[0], -1))
            n = z[0]
            for term in z[1:]:
                n = n * term if net_input == "netprod" else n + term
            a[i] = self.transfer[str(i + 1)](n)
        outs = [proc(a[i]) for i, proc in zip(self._outputs, self.output_processing,
                                               strict=True)]
        return outs[0] if len(outs) == 1 else tuple(outs)


def load_shallow(net: ShallowNetwork) -> ShallowModule:
    """Convert a shallow network.

    Args:
        net: the description (:func:`matport.network.shallow.read_shallow`).

    Returns:
        A :class:`ShallowModule` in eval mode, with ``matport`` (:class:`ModelInfo`: layout
        ``NC``, the first input's raw size, no normalization: the processing is in the model;
        ``architecture`` ``{"family": "shallow", ...}`` rebuilds it for checkpoints).

    Raises:
        ConversionError: delays or feedback, a function matport does not convert, stored
        settings that do not fit, or a layer nothing feeds; every problem is listed.
    """
    where = f"{net.source}:{net.path}" if net.source else net.path
    problems = _problems(net)
    if problems:
        raise ConversionError(f"{where}: shallow network cannot be converted:\n  "
                              + "\n  ".join(problems))
    position = {lay.name: k - len(net.inputs) for k, lay in enumerate(net.layers)}
    try:
        order = [position[lay.name] for lay in net.topological_order()
                 if lay.class_name == LAYER_CLASS]
    except ValueError as exc:
        raise ConversionError(f"{where}: shallow network: {exc}") from None
    spec = {
        "layers": [{"index": i, "transfer": net.shallow_layers[i].transfer_fcn,
                    "net_input": net.shallow_layers[i].net_input_fcn,
                    "bias": 0 if net.shallow_layers[i].bias is None else net.shallow_layers[i].size,
                    "weights": [[w.source_kind, w.source, list(w.value.shape), w.weight_fcn]
                                for w in net.weights if w.dest == i]}
                   for i in order],
        "outputs": net.output_layers,
        "input_names": [inp.name for inp in net.inputs],
        "output_names": [net.shallow_layers[i].output_name for i in net.output_layers],
    }
    inputs = [[processing_module(p, False, f"{where}: inputs{{{j + 1}}}") for p in inp.processing]
              for j, inp in enumerate(net.inputs)]
    outputs = [[processing_module(p, True, f"{where}: outputs{{{i + 1}}}")
                for p in reversed(net.shallow_layers[i].output_processing)]
               for i in net.output_layers]
    model = ShallowModule(spec, inputs, outputs)
    with torch.no_grad():
        for w in net.weights:
            table = model.IW if w.source_kind == "input" else model.LW
            table[f"{w.dest + 1}_{w.source + 1}"].copy_(torch.from_numpy(w.value))
        for i, lay in enumerate(net.shallow_layers):
            if lay.bias is not None:
                model.b[str(i + 1)].copy_(torch.from_numpy(lay.bias.ravel()))
    model.eval()
    attach_info(model, ModelInfo(
        class_names=None,
        input_size=(net.inputs[0].size,),
        layout="NC",
        normalization=Normalization(),
        source=net.source,
        variable=net.path,
        architecture={"family": "shallow", "title": net.title, "spec": spec,
                      "inputs": [[step_spec(m) for m in steps] for steps in inputs],
                      "outputs": [[step_spec(m) for m in steps] for steps in outputs]},
    ))
    return model


def shallow_from_architecture(arch: dict[str, Any]) -> ShallowModule:
    """An empty :class:`ShallowModule` from ``model.matport.architecture`` (``family``
    ``shallow``), to load a state_dict into (checkpoints).

    Args:
        arch: the architecture :func:`load_shallow` recorded.

    Returns:
        The module with zero parameters and buffers.
    """
    return ShallowModule(arch["spec"], [[step_from_spec(s) for s in steps] for steps in
                                        arch["inputs"]],
                         [[step_from_spec(s) for s in steps] for steps in arch["outputs"]])


def _problems(net: ShallowNetwork) -> list[str]:
    out = []
    if not net.inputs or not net.output_layers:
        out.append("a network without inputs or outputs")
    delayed = [f"{w.name} {list(w.delays)}" for w in net.weights if w.delays != (0,)]
    if delayed:
        out.append(f"tapped delays ({', '.join(delayed)}): dynamic networks (narxnet, "
                   "timedelaynet, layrecnet) depend on earlier time steps and are not converted")
    for w in net.weights:
        if w.weight_fcn not in WEIGHT_FCNS:
            out.append(f"{w.name}: weight function {w.weight_fcn!r} is not converted "
                       f"(converted: {', '.join(WEIGHT_FCNS)})")
    for i, lay in enumerate(net.shallow_layers):
        label = f"layers{{{i + 1}}} ({lay.name})"
        if lay.transfer_fcn not in TRANSFER_FCNS:
            out.append(f"{label}: transfer function {lay.transfer_fcn!r} is not converted "
                       f"(converted: {', '.join(TRANSFER_FCNS)})")
        if lay.net_input_fcn not in NET_INPUT_FCNS:
            out.append(f"{label}: net input function {lay.net_input_fcn!r} is not converted "
                       f"(converted: {', '.join(NET_INPUT_FCNS)})")
        if lay.feedback_mode not in ("none", ""):
            out.append(f"outputs{{{i + 1}}}: feedback mode {lay.feedback_mode!r} "
                       "(narxnet-style feedback) is not converted")
        if lay.bias is None and not any(w.dest == i for w in net.weights):
            out.append(f"{label}: no weight or bias feeds it")
    steps = [(f"inputs{{{j + 1}}}", p, False) for j, inp in enumerate(net.inputs)
             for p in inp.processing]
    steps += [(f"outputs{{{i + 1}}}", p, True) for i, lay in enumerate(net.shallow_layers)
              for p in lay.output_processing]
    for label, p, reverse in steps:
        if p.fcn not in PROCESS_FCNS or (reverse and p.fcn == "fixunknowns"):
            out.append(f"{label}: processing function {p.fcn!r} is not converted "
                       f"{'on outputs' if reverse else ''} (converted: {', '.join(PROCESS_FCNS)})")
    chains: list[tuple[str, int, list[Processing], int | None]] = [
        (f"inputs{{{j + 1}}}", inp.size, inp.processing, None) for j, inp in enumerate(net.inputs)]
    chains += [(f"outputs{{{i + 1}}}", lay.output_size, lay.output_processing, lay.size)
               for i, lay in enumerate(net.shallow_layers) if lay.is_output]
    return out + [m for chain in chains if (m := _chain(*chain)) is not None]


def _chain(label: str, rows: int, steps: list[Processing], end: int | None) -> str | None:
    """Why the rows of ``steps`` (``xrows`` -> ``yrows`` each) do not lead from ``rows`` to
    ``end`` (None: anywhere)."""
    for p in steps:
        xrows, yrows = (np.asarray(p.settings.get(k, np.zeros(0))) for k in ("xrows", "yrows"))
        if xrows.size == 1 and int(xrows.item()) != rows:
            return f"{label}: {p.fcn} was set up for {int(xrows.item())} rows, it gets {rows}"
        rows = int(yrows.item()) if yrows.size == 1 else rows
    if end is not None and rows != end:
        return f"{label}: its processing gives {rows} rows, the layer has {end}"
    return None

