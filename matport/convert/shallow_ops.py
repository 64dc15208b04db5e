"""The functions of shallow networks as PyTorch pieces: transfer functions, weight functions
and the input/output processing functions, each as MATLAB's ``<fcn>.apply`` (and ``reverse``)
computes it, with features along dim 1 (one sample per row). Used by
:mod:`matport.convert.shallow`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal, get_args

import numpy as np
import torch
from torch import nn

from matport.errors import ConversionError
from matport.network.shallow import Processing

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


class Step(nn.Module):
    """A processing step. Its buffers are its constructor's array arguments and ``options`` the
    others, so that :func:`step_spec` / :func:`step_from_spec` rebuild it without the file."""

    options: dict[str, Any]


class RowAffine(Step):
    """``mapminmax`` / ``mapstd``: ``y = (x - xoffset) .* gain + yoffset`` per row (feature),
    or its reverse ``x = (y - yoffset) ./ gain + xoffset`` on outputs."""

    gain: torch.Tensor
    xoffset: torch.Tensor
    yoffset: torch.Tensor

    def __init__(self, gain: np.ndarray, xoffset: np.ndarray, yoffset: np.ndarray,
                 reverse: bool) -> None:
        super().__init__()
        self.reverse = reverse
        self.options = {"reverse": reverse}
        for name, v in (("gain", gain), ("xoffset", xoffset), ("yoffset", yoffset)):
            self.register_buffer(name, torch.tensor(np.ravel(v), dtype=torch.float64))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.reverse:
            return (x - self.yoffset) / self.gain + self.xoffset
        return (x - self.xoffset) * self.gain + self.yoffset


class RemoveConstantRows(Step):
    """``removeconstantrows``: keeps the ``keep`` features; reversed, puts the stored constants
    back at the ``remove`` positions."""

    keep: torch.Tensor
    remove: torch.Tensor
    constants: torch.Tensor

    def __init__(self, keep: np.ndarray, remove: np.ndarray, constants: np.ndarray,
                 reverse: bool) -> None:
        super().__init__()
        self.reverse = reverse
        self.options = {"reverse": reverse}
        self.register_buffer("keep", torch.tensor(keep, dtype=torch.long))
        self.register_buffer("remove", torch.tensor(remove, dtype=torch.long))
        self.register_buffer("constants", torch.tensor(constants, dtype=torch.float64))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.reverse:
            return x[:, self.keep]
        columns = torch.cat([x, self.constants.expand(x.shape[0], -1)], 1)
        return columns[:, torch.argsort(torch.cat([self.keep, self.remove]))]


class FixUnknowns(Step):
    """``fixunknowns`` (inputs only): NaNs become the row's stored mean, and after each row that
    had unknowns in training comes a row flagging which values were known (1) or not (0).
    ``shifted`` is each row's position in the output."""

    xmeans: torch.Tensor
    shifted: torch.Tensor
    unknown: torch.Tensor

    def __init__(self, xmeans: np.ndarray, shifted: np.ndarray, unknown: np.ndarray) -> None:
        super().__init__()
        self.options = {}
        self.register_buffer("xmeans", torch.tensor(xmeans, dtype=torch.float64))
        self.register_buffer("shifted", torch.tensor(shifted, dtype=torch.long))
        self.register_buffer("unknown", torch.tensor(unknown, dtype=torch.long))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        nan = torch.isnan(x)
        columns = torch.cat([torch.where(nan, self.xmeans, x),
                             (~nan[:, self.unknown]).to(x.dtype)], 1)
        position = torch.cat([self.shifted, self.shifted[self.unknown] + 1])
        return columns[:, torch.argsort(position)]


class ProcessPCA(Step):
    """``processpca``: ``y = transform * x``; reversed, ``x = inverseTransform * y`` (the
    matrix given is the one for the direction)."""

    matrix: torch.Tensor

    def __init__(self, matrix: np.ndarray) -> None:
        super().__init__()
        self.options = {}
        self.register_buffer("matrix", torch.tensor(matrix, dtype=torch.float64))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x @ self.matrix.T


def weigh(w: torch.Tensor, x: torch.Tensor, fcn: str) -> torch.Tensor:
    """A weight function on a batch.

    Args:
        w: the weight, dest x source.
        x: the weighted input, N x source.
        fcn: ``dotprod`` (``W*p``) or ``dist`` (the Euclidean distance of each row of W to p).

    Returns:
        N x dest.
    """
    if fcn == "dist":
        return ((x.unsqueeze(1) - w.unsqueeze(0)) ** 2).sum(2).sqrt()
    return x @ w.T

_STEPS: dict[str, type[Step]] = {
    cls.__name__: cls for cls in (RowAffine, RemoveConstantRows, FixUnknowns, ProcessPCA)}


def step_spec(step: Step) -> dict[str, Any]:
    """A JSON-able description of a step.

    Args:
        step: the step.

    Returns:
        Its class, buffer shapes and options.
    """
    return {"type": type(step).__name__,
            "shapes": {name: list(b.shape) for name, b in step.named_buffers()},
            "options": dict(step.options)}


def step_from_spec(spec: dict[str, Any]) -> Step:
    """An empty step (zero buffers); load its state next.

    Args:
        spec: :func:`step_spec`'s description.

    Returns:
        The step.
    """
    arrays = {name: np.zeros(shape) for name, shape in spec["shapes"].items()}
    return _STEPS[spec["type"]](**arrays, **spec["options"])


def processing_module(step: Processing, reverse: bool, where: str) -> Step:
    """The module applying (or, on outputs, reversing) one stored processing step.

    Args:
        step: the function and its stored settings.
        reverse: reverse it (outputs).
        where: file, variable and input/output, for messages.

    Returns:
        The step module.

    Raises:
        ConversionError: settings that are missing or do not fit.
    """
    s = _Settings(step, where)
    if step.fcn in ("mapminmax", "mapstd"):
        gain, xoffset, yoffset = s.affine()
        return RowAffine(gain, xoffset, yoffset, reverse)
    if step.fcn == "removeconstantrows":
        constants = s.array("constants" if "constants" in step.settings else "value").ravel()
        xrows = s.rows("xrows")
        keep, remove = s.indices("keep", xrows), s.indices("remove", xrows)
        if sorted([*keep, *remove]) != list(range(xrows)) or constants.size != remove.size:
            raise s.fail(f"keep, remove and constants do not cover the {xrows} rows")
        return RemoveConstantRows(keep, remove, constants, reverse)
    if step.fcn == "fixunknowns":
        xrows = s.rows("xrows")
        shift = s.array("shift").ravel().astype(np.int64)
        unknown = s.indices("unknown", xrows)
        if shift.size != xrows or s.rows("yrows") != xrows + unknown.size:
            raise s.fail(f"shift, unknown and yrows do not fit {xrows} rows")
        return FixUnknowns(s.array("xmeans").ravel(), np.arange(xrows) + shift, unknown)
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

    def indices(self, name: str, bound: int) -> np.ndarray:
        """A 1-based MATLAB index list (each at most ``bound``) as 0-based indices."""
        v = self.array(name).ravel()
        if v.size and (v.min() < 1 or v.max() > bound or np.any(v != np.round(v))):
            raise self.fail(f"{name!r} is not a list of row indices up to {bound}")
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
