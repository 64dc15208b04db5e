"""MATLAB's input-layer normalization, reproduced exactly, and its torchvision-style equivalents.

MATLAB feeds a network the data as given (images: RGB pixel values, 0-255 for uint8 images,
converted to single precision, *not* rescaled to 0-1) and its input layer then normalizes them:

=====================  ==========================================
``none``               ``x``
``zerocenter``         ``x - Mean``
``zscore``             ``(x - Mean) / StandardDeviation``
``rescale-symmetric``  ``2 * (x - Min) / (Max - Min) - 1``
``rescale-zero-one``   ``(x - Min) / (Max - Min)``
=====================  ==========================================

``Mean`` etc. are a per-pixel image (H x W x C), per-channel values (1 x 1 x C) or a scalar.
matport models do not contain this step: call :func:`preprocess` (or ``model.matport.preprocess``)
on the data, or put an :class:`InputNormalization` in front of the model.

Layout rules of :func:`preprocess` / :func:`to_layout`:

- images (layout ``NCHW``): a single image HWC or CHW (HW for one channel), or a batch NHWC or
  NCHW. An array whose last axis has C entries is channels-last, one whose third axis from the end
  has C entries is channels-first; when both hold (e.g. a 3x3x3 image) a numpy array is taken as
  channels-last (the convention of image libraries) and a torch tensor as channels-first;
- features (``NC``): ``(C,)`` or ``(N, C)``; sequences (``NTC``): ``(T, C)`` or ``(N, T, C)``.

torchvision-style 0-1 inputs: MATLAB's normalization of ``255 * x`` equals
``torchvision.transforms.Normalize(mean, std)(x)`` with ``mean, std = torchvision_mean_std(norm)``
whenever the statistics are per-channel; a per-pixel mean image has no such equivalent, use
``InputNormalization(norm, input_size, input_range=1.0)`` instead.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from matport.errors import ArgumentError, ConversionError
from matport.network.model import Normalization

_SPATIAL_LAYOUT = "NCHW"
_NEEDED = {
    "none": (),
    "zerocenter": ("mean",),
    "zscore": ("mean", "std"),
    "rescale-symmetric": ("min", "max"),
    "rescale-zero-one": ("min", "max"),
}
MATLAB_PIXEL_RANGE = 255.0


def preprocess(
    x: Any, normalization: Normalization | None, input_size: tuple[int, ...], layout: str = "NCHW"
) -> torch.Tensor:
    """Bring ``x`` (numpy or torch; uint8, integer or float) into ``layout`` as float32 and apply
    MATLAB's input normalization exactly. Values are used as given (0-255 pixels, like MATLAB)."""
    t = to_layout(x, input_size, layout)
    norm = normalization or Normalization()
    return normalize(t, normalization_tensors(norm, input_size, layout, device=t.device), norm.type)


def to_layout(x: Any, input_size: tuple[int, ...], layout: str = "NCHW") -> torch.Tensor:
    """``x`` as a float32 tensor in ``layout`` with a batch axis (see the module's layout rules)."""
    channels_first = isinstance(x, torch.Tensor)
    t = x if channels_first else torch.from_numpy(np.asarray(x))
    if t.dtype != torch.float32:
        t = t.to(torch.float32)
    channels = int(input_size[-1]) if input_size else 1
    if layout == _SPATIAL_LAYOUT:
        return _image_to_nchw(t, channels, channels_first)
    single, batch = {"NC": (1, 2), "NTC": (2, 3)}.get(layout, (0, 0))
    if not single:
        raise ArgumentError(f"unknown layout {layout!r}: expected NCHW, NC or NTC")
    if t.ndim == single:
        t = t.unsqueeze(0)
    if t.ndim != batch or t.shape[-1] != channels:
        raise ArgumentError(
            f"input of shape {tuple(t.shape)} does not fit layout {layout} with {channels} channels"
        )
    return t


def _image_to_nchw(t: torch.Tensor, channels: int, channels_first: bool) -> torch.Tensor:
    if t.ndim == 2 and channels == 1:
        return t[None, None]
    if t.ndim == 3:
        t = t.unsqueeze(0)
    if t.ndim != 4:
        raise ArgumentError(f"an image input must be HWC, CHW, NHWC or NCHW, got {tuple(t.shape)}")
    last, first = t.shape[3] == channels, t.shape[1] == channels
    if not (last or first):
        raise ArgumentError(f"image of shape {tuple(t.shape)} has no axis of {channels} channels")
    if last and (not first or not channels_first):
        t = t.permute(0, 3, 1, 2)
    return t


def normalization_tensors(
    norm: Normalization,
    input_size: tuple[int, ...],
    layout: str = "NCHW",
    device: torch.device | str | None = None,
) -> dict[str, torch.Tensor]:
    """The statistics ``norm.type`` needs, as float32 tensors that broadcast against ``layout``
    (``1 x C x H x W`` / ``1 x C x 1 x 1`` for images, ``1 x C`` for features, ``1 x 1 x C`` for
    sequences)."""
    if norm.type not in _NEEDED:
        raise ConversionError(
            f"input normalization {norm.type!r} is a stored MATLAB function, which matport never "
            "evaluates: apply it yourself and use matport.convert.preprocess.to_layout"
            if norm.type == "function"
            else f"unknown input normalization {norm.type!r}"
        )
    out = {}
    for name in _NEEDED[norm.type]:
        a = getattr(norm, name)
        if a is None:
            raise ConversionError(f"input normalization {norm.type!r} has no stored {name}")
        out[name] = torch.from_numpy(_stat_array(np.asarray(a, np.float32), layout)).to(device)
    return out


def _stat_array(a: np.ndarray, layout: str) -> np.ndarray:
    if a.size == 1:
        return a.reshape((1,) * len(layout))
    if layout == _SPATIAL_LAYOUT:
        a = a.reshape(a.shape + (1,) * (3 - a.ndim)) if a.ndim < 3 else a
        return np.ascontiguousarray(a.transpose(2, 0, 1))[None]
    return a.reshape((1,) * (len(layout) - 1) + (-1,))


def normalize(x: torch.Tensor, stats: dict[str, torch.Tensor], kind: str) -> torch.Tensor:
    """Apply MATLAB's normalization formula ``kind`` with ``stats`` (from
    :func:`normalization_tensors`) to ``x``, already in layout."""
    for s in stats.values():
        if s.ndim == 4 and s.shape[2:] != (1, 1) and s.shape[2:] != x.shape[2:]:
            raise ArgumentError(
                f"the network subtracts a {s.shape[2]}x{s.shape[3]} mean image: images must be "
                f"{s.shape[2]}x{s.shape[3]}, got {x.shape[2]}x{x.shape[3]} (resize or crop first)"
            )
    if kind == "zerocenter":
        return x - stats["mean"]
    if kind == "zscore":
        return (x - stats["mean"]) / stats["std"]
    if kind == "rescale-symmetric":
        return 2 * (x - stats["min"]) / (stats["max"] - stats["min"]) - 1
    if kind == "rescale-zero-one":
        return (x - stats["min"]) / (stats["max"] - stats["min"])
    return x


def torchvision_mean_std(norm: Normalization) -> tuple[list[float], list[float]]:
    """Per-channel ``mean, std`` such that ``(x - mean) / std`` on torchvision-style 0-1 images
    equals MATLAB's normalization of ``255 * x``. Raises :class:`ArgumentError` for a per-pixel mean
    image (use :class:`InputNormalization` with ``input_range=1.0`` instead)."""
    stats = {k: _channel_values(norm, k) for k in _NEEDED.get(norm.type, ())}
    r = MATLAB_PIXEL_RANGE
    if norm.type == "none":
        return [0.0], [1 / r]
    if norm.type == "zerocenter":
        return [m / r for m in stats["mean"]], [1 / r] * len(stats["mean"])
    if norm.type == "zscore":
        return [m / r for m in stats["mean"]], [s / r for s in stats["std"]]
    if norm.type in ("rescale-symmetric", "rescale-zero-one"):
        lo, hi = np.array(stats["min"]), np.array(stats["max"])
        if norm.type == "rescale-symmetric":
            return ((lo + hi) / (2 * r)).tolist(), ((hi - lo) / (2 * r)).tolist()
        return (lo / r).tolist(), ((hi - lo) / r).tolist()
    normalization_tensors(norm, ())  # raises the explanatory error
    raise AssertionError(norm.type)


def _channel_values(norm: Normalization, name: str) -> list[float]:
    a = getattr(norm, name)
    if a is None:
        raise ConversionError(f"input normalization {norm.type!r} has no stored {name}")
    a = np.asarray(a, np.float64)
    if a.ndim >= 3 and a.shape[0] * a.shape[1] > 1:
        raise ArgumentError(
            f"the network's {name} is a {a.shape[0]}x{a.shape[1]} per-pixel image, which no "
            "per-channel mean/std reproduces: use InputNormalization(..., input_range=1.0)"
        )
    return [float(v) for v in a.reshape(-1)]


class InputNormalization(nn.Module):
    """MATLAB's input normalization as a module, to put in front of a model.

    ``input_range`` is the value of a full-intensity input: 255 for MATLAB-style pixels, 1.0 for
    torchvision-style 0-1 images (they are scaled by ``255 / input_range`` first). Takes and
    returns tensors in ``layout``.
    """

    def __init__(
        self,
        normalization: Normalization,
        input_size: tuple[int, ...],
        layout: str = "NCHW",
        input_range: float = MATLAB_PIXEL_RANGE,
    ) -> None:
        super().__init__()
        self.kind = normalization.type
        self.scale = MATLAB_PIXEL_RANGE / input_range
        self.names = tuple(_NEEDED.get(self.kind, ()))
        for name, t in normalization_tensors(normalization, input_size, layout).items():
            self.register_buffer(name, t)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.scale != 1.0:
            x = x * self.scale
        return normalize(x, {n: getattr(self, n) for n in self.names}, self.kind)
