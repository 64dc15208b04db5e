"""A shallow ``network`` (:class:`~matport.network.shallow.ShallowNetwork`) -> ``nn.Module``.

``model(x)`` computes what MATLAB's ``net(x)`` does, processing included: each input's
``processFcns`` applied in order, then, layer by layer in simulation order,
``a{i} = transferFcn(netInputFcn(weightFcn(IW{i,j}, p{j}) ..., weightFcn(LW{i,k}, a{k}) ...,
b{i}))``, and on each output its ``processFcns`` reversed, last first.

**Layout.** MATLAB takes one sample per *column* (features x samples); the module takes one
sample per *row*: ``N x features`` for each input, in input order, and returns ``N x size`` per
output (a tuple when there are several). Parameters are float64, MATLAB's double precision, and
inputs are cast to the model's precision (``model.float()`` computes in float32).

Converted: transfer functions in :data:`TRANSFER_FCNS`, processing functions in
:data:`PROCESS_FCNS`, weight functions ``dotprod`` and ``dist``, net input functions ``netsum``
and ``netprod``. Tapped delays (``narxnet``, ``timedelaynet``, ``layrecnet``, ``distdelaynet``)
and closed-loop feedback raise :class:`~matport.errors.ConversionError`: their output depends
on earlier time steps, which a static module does not have.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal, get_args

import numpy as np
import torch
from torch import nn

from matport.convert.info import ModelInfo
from matport.errors import ConversionError
from matport.network.model import Normalization
from matport.network.shallow import LAYER_CLASS, Processing, ShallowNetwork

TransferFcn = Literal["tansig", "logsig", "purelin", "poslin", "satlin", "satlins", "hardlim",
                      "hardlims", "radbas", "radbasn", "tribas", "elliotsig", "elliot2sig",
                      "softmax", "compet"]
ProcessFcn = Literal["mapminmax", "mapstd", "removeconstantrows", "fixunknowns", "processpca"]
WeightFcn = Literal["dotprod", "dist"]
NetInputFcn = Literal["netsum", "netprod"]
TRANSFER_FCNS: tuple[str, ...] = get_args(TransferFcn)
PROCESS_FCNS: tuple[str, ...] = get_args(ProcessFcn)
WEIGHT_FCNS: tuple[str, ...] = get_args(WeightFcn)
NET_INPUT_FCNS: tuple[str, ...] = get_args(NetInputFcn)


def _keep_nan(a: torch.Tensor, n: torch.Tensor) -> torch.Tensor:
    return torch.where(torch.isnan(n), n, a)


def _radbasn(n: torch.Tensor) -> torch.Tensor:
    smallest = n.abs().amin(1, keepdim=True)
    a = torch.exp(smallest * smallest - n * n)
    total = a.sum(1, keepdim=True)
    return torch.where(total == 0, torch.zeros_like(a), a / total)


def _compet(n: torch.Tensor) -> torch.Tensor:
    a = torch.zeros_like(n).scatter(1, n.argmax(1, keepdim=True), 1.0)
    return torch.where(torch.isnan(n).any(1, keepdim=True), torch.full_like(n, float("nan")), a)


# MATLAB's <fcn>.apply, features along dim 1 (one sample per row).
_TRANSFER: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "tansig": torch.tanh,  # 2 / (1 + exp(-2n)) - 1
    "logsig": torch.sigmoid,
    "purelin": lambda n: n,
    "poslin": torch.relu,
    "satlin": lambda n: torch.clamp(n, 0.0, 1.0),
    "satlins": lambda n: torch.clamp(n, -1.0, 1.0),
    "hardlim": lambda n: _keep_nan((n >= 0).to(n.dtype), n),
    "hardlims": lambda n: _keep_nan((n >= 0).to(n.dtype) * 2 - 1, n),
    "radbas": lambda n: torch.exp(-n * n),
    "radbasn": _radbasn,
    "tribas": lambda n: torch.clamp(1 - n.abs(), min=0.0),
    "elliotsig": lambda n: n / (1 + n.abs()),
    "elliot2sig": lambda n: torch.sign(n) * n * n / (1 + n * n),
    "softmax": lambda n: torch.softmax(n, 1),
    "compet": _compet,
}


class Transfer(nn.Module):
    """A layer's transfer function (``tansig`` ...), applied along the feature axis."""

    def __init__(self, fcn: str) -> None:
        super().__init__()
        self.fcn = fcn

    def forward(self, n: torch.Tensor) -> torch.Tensor:
        return _TRANSFER[self.fcn](n)

    def extra_repr(self) -> str:
        return self.fcn


class RowAffine(nn.Module):
    """``mapminmax`` / ``mapstd``: ``y = (x - xoffset) .* gain + yoffset`` per row (feature),
    or its reverse ``x = (y - yoffset) ./ gain + xoffset`` on outputs."""

    gain: torch.Tensor
    xoffset: torch.Tensor
    yoffset: torch.Tensor

    def __init__(self, gain: np.ndarray, xoffset: np.ndarray, yoffset: np.ndarray,
                 reverse: bool) -> None:
        super().__init__()
        self.reverse = reverse
        for name, v in (("gain", gain), ("xoffset", xoffset), ("yoffset", yoffset)):
            self.register_buffer(name, torch.tensor(np.ravel(v), dtype=torch.float64))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.reverse:
            return (x - self.yoffset) / self.gain + self.xoffset
        return (x - self.xoffset) * self.gain + self.yoffset


class RemoveConstantRows(nn.Module):
    """``removeconstantrows``: keeps the ``keep`` features; reversed, puts the stored constants
    back at the ``remove`` positions (``xrows`` features in all)."""

    keep: torch.Tensor
    remove: torch.Tensor
    constants: torch.Tensor

    def __init__(self, keep: np.ndarray, remove: np.ndarray, constants: np.ndarray, xrows: int,
                 reverse: bool) -> None:
        super().__init__()
        self.reverse, self.xrows = reverse, xrows
        self.register_buffer("keep", torch.tensor(keep, dtype=torch.long))
        self.register_buffer("remove", torch.tensor(remove, dtype=torch.long))
        self.register_buffer("constants", torch.tensor(constants, dtype=torch.float64))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.reverse:
            return x[:, self.keep]
        out = x.new_empty(x.shape[0], self.xrows)
        out[:, self.keep] = x
        out[:, self.remove] = self.constants
        return out


class FixUnknowns(nn.Module):
    """``fixunknowns`` (inputs only): NaNs become the row's stored mean, and after each row that
    had unknowns in training comes a row flagging which values were known (1) or not (0)."""

    xmeans: torch.Tensor
    shifted: torch.Tensor
    unknown: torch.Tensor

    def __init__(self, xmeans: np.ndarray, shifted: np.ndarray, unknown: np.ndarray,
                 yrows: int) -> None:
        super().__init__()
        self.yrows = yrows
        self.register_buffer("xmeans", torch.tensor(xmeans, dtype=torch.float64))
        self.register_buffer("shifted", torch.tensor(shifted, dtype=torch.long))
        self.register_buffer("unknown", torch.tensor(unknown, dtype=torch.long))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        nan = torch.isnan(x)
        out = x.new_empty(x.shape[0], self.yrows)
        out[:, self.shifted] = torch.where(nan, self.xmeans, x)
        out[:, self.shifted[self.unknown] + 1] = (~nan[:, self.unknown]).to(x.dtype)
        return out


class ProcessPCA(nn.Module):
    """``processpca``: ``y = transform * x``; reversed, ``x = inverseTransform * y`` (the
    matrix given is the one for the direction)."""

    matrix: torch.Tensor

    def __init__(self, matrix: np.ndarray) -> None:
        super().__init__()
        self.register_buffer("matrix", torch.tensor(matrix, dtype=torch.float64))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x @ self.matrix.T


class ShallowModule(nn.Module):
    """The converted network (see the module docstring). Parameters: ``IW["i_j"]``,
    ``LW["i_k"]``, ``b["i"]`` with MATLAB's 1-based indices and MATLAB's shapes (a weight is
    dest x source, like an ``nn.Linear`` weight)."""

    matport: ModelInfo  # set by load_shallow
    _like: torch.Tensor

    def __init__(self, net: ShallowNetwork, order: list[int]) -> None:
        super().__init__()
        # follows .float() / .double(): the precision inputs are cast to
        self.register_buffer("_like", torch.zeros(0, dtype=torch.float64), persistent=False)
        where = f"{net.source}:{net.path}"
        self.input_processing = nn.ModuleList(
            nn.Sequential(*(_processing(p, False, f"{where}: inputs{{{j + 1}}}") for p in
                            inp.processing)) for j, inp in enumerate(net.inputs))
        self.IW = nn.ParameterDict()
        self.LW = nn.ParameterDict()
        self.b = nn.ParameterDict()
        # (layer, [(kind, source, key, weight fcn)], has bias, net input fcn)
        self._plan: list[tuple[int, list[tuple[str, int, str, str]], bool, str]] = []
        for i in order:
            lay = net.shallow_layers[i]
            incoming: list[tuple[str, int, str, str]] = []
            for w in (w for w in net.weights if w.dest == i):
                key = f"{i + 1}_{w.source + 1}"
                table = self.IW if w.source_kind == "input" else self.LW
                table[key] = _parameter(w.value)
                incoming.append((w.source_kind, w.source, key, w.weight_fcn))
            if lay.bias is not None:
                self.b[str(i + 1)] = _parameter(lay.bias.ravel())
            self._plan.append((i, incoming, lay.bias is not None, lay.net_input_fcn))
        self.transfer = nn.ModuleList(Transfer(lay.transfer_fcn) for lay in net.shallow_layers)
        self._outputs = net.output_layers
        self.output_processing = nn.ModuleList(
            nn.Sequential(*(_processing(p, True, f"{where}: outputs{{{i + 1}}}")
                            for p in reversed(net.shallow_layers[i].output_processing)))
            for i in self._outputs)
        self.input_names = [inp.name for inp in net.inputs]
        self.output_names = [net.shallow_layers[i].output_name for i in self._outputs]

    def forward(self, x: torch.Tensor, *more: torch.Tensor) -> Any:
        """Run the network on its inputs (``N x features`` each, in input order)."""
        raw = [t.to(self._like.dtype) for t in (x, *more)]
        p = [proc(raw[j]) for j, proc in enumerate(self.input_processing)]
        a: dict[int, torch.Tensor] = {}
        for i, incoming, has_bias, net_input in self._plan:
            z = [_weigh(self.IW[key] if kind == "input" else self.LW[key],
                        p[src] if kind == "input" else a[src], fcn)
                 for kind, src, key, fcn in incoming]
            if has_bias:
                z.append(self.b[str(i + 1)].expand(raw[0].shape[0], -1))
            n = z[0]
            for term in z[1:]:
                n = n * term if net_input == "netprod" else n + term
            a[i] = self.transfer[i](n)
        outs = [proc(a[i]) for i, proc in zip(self._outputs, self.output_processing,
                                               strict=True)]
        return outs[0] if len(outs) == 1 else tuple(outs)


def load_shallow(net: ShallowNetwork) -> ShallowModule:
    """Convert a shallow network.

    Args:
        net: the description (:func:`matport.network.shallow.read_shallow`).

    Returns:
        A :class:`ShallowModule` in eval mode, with ``matport`` (:class:`ModelInfo`: layout
        ``NC``, the first input's raw size, no normalization: the processing is in the model).

    Raises:
        ConversionError: delays or feedback, a function matport does not convert, stored
        settings that do not fit, or a layer that no input reaches; every problem is listed.
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
    model = ShallowModule(net, order)
    model.eval()
    model.matport = ModelInfo(
        class_names=None,
        input_size=(net.inputs[0].size,) if net.inputs else (),
        layout="NC",
        normalization=Normalization(),
        source=net.source,
        variable=net.path,
        architecture={"family": "shallow", "title": net.title},
    )
    return model


def _problems(net: ShallowNetwork) -> list[str]:
    out = []
    if not net.inputs or not net.output_layers:
        out.append("a network without inputs or outputs")
    for w in net.weights:
        if w.delays != (0,):
            out.append(f"{w.name} has tapped delays {list(w.delays)}: dynamic networks "
                       "(narxnet, timedelaynet, layrecnet) depend on earlier time steps and "
                       "are not converted")
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
    return out


def _parameter(a: np.ndarray) -> nn.Parameter:
    return nn.Parameter(torch.tensor(a, dtype=torch.float64))


def _weigh(w: torch.Tensor, x: torch.Tensor, fcn: str) -> torch.Tensor:
    """``dotprod``: ``W*p``; ``dist``: the Euclidean distance of each row of W to p."""
    if fcn == "dist":
        return ((x.unsqueeze(1) - w.unsqueeze(0)) ** 2).sum(2).sqrt()
    return x @ w.T


def _processing(step: Processing, reverse: bool, where: str) -> nn.Module:
    """The module applying (or, on outputs, reversing) one stored processing step."""
    s = _Settings(step, where)
    if step.fcn in ("mapminmax", "mapstd"):
        gain, xoffset, yoffset = s.affine()
        return RowAffine(gain, xoffset, yoffset, reverse)
    if step.fcn == "removeconstantrows":
        constants = s.array("constants" if "constants" in step.settings else "value")
        return RemoveConstantRows(s.indices("keep"), s.indices("remove"), constants.ravel(),
                                  s.rows("xrows"), reverse)
    if step.fcn == "fixunknowns":
        xrows = s.rows("xrows")
        shift = s.array("shift").ravel().astype(np.int64)
        if shift.size != xrows:
            raise s.fail(f"shift has {shift.size} entries, expected {xrows}")
        return FixUnknowns(s.array("xmeans").ravel(), np.arange(xrows) + shift,
                           s.indices("unknown"), s.rows("yrows"))
    return ProcessPCA(s.array("inverseTransform" if reverse else "transform"))


class _Settings:
    """Typed access to one step's stored settings, failing with ConversionError."""

    def __init__(self, step: Processing, where: str) -> None:
        self.step, self.where = step, where

    def fail(self, what: str) -> ConversionError:
        return ConversionError(f"{self.where}: {self.step.fcn} settings: {what}")

    def array(self, name: str) -> np.ndarray:
        v = self.step.settings.get(name)
        if not isinstance(v, np.ndarray) or v.dtype.kind not in "biuf":
            raise self.fail(f"no numeric {name!r}")
        return v.astype(np.float64)

    def rows(self, name: str) -> int:
        v = self.array(name)
        if v.size != 1:
            raise self.fail(f"{name!r} is not a count")
        return int(v.item())

    def indices(self, name: str) -> np.ndarray:
        """A 1-based MATLAB index list as 0-based indices."""
        v = self.array(name).ravel()
        if v.size and (v.min() < 1 or np.any(v != np.round(v))):
            raise self.fail(f"{name!r} is not a list of row indices")
        return v.astype(np.int64) - 1

    def affine(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``gain``, ``xoffset`` and the output offset (``ymin`` / ``ymean``); files written
        before Neural Network Toolbox 7 lack ``gain``/``xoffset``: they are derived as MATLAB
        does (rows with no range keep gain 1 and map to the output offset)."""
        minmax = self.step.fcn == "mapminmax"
        yoffset = self.array("ymin" if minmax else "ymean")
        if "gain" in self.step.settings and "xoffset" in self.step.settings:
            return self.array("gain"), self.array("xoffset"), yoffset
        xoffset, spread = self.array("xmin" if minmax else "xmean"), self.array(
            "xrange" if minmax else "xstd")
        with np.errstate(divide="ignore", invalid="ignore"):
            gain = self.array("yrange" if minmax else "ystd") / spread
            fix = (np.abs(gain) > 1e14) | ~np.isfinite(spread) | (spread == 0) | ~np.isfinite(
                xoffset)
        gain = np.where(fix, 1.0, gain)
        xoffset = np.where(fix, np.broadcast_to(yoffset, xoffset.shape), xoffset)
        return gain, xoffset, yoffset

