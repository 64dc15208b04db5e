"""Max, average and global pooling, and max unpooling."""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from matport.convert.layers.padding import pad, same_padding, static_padding, torch_pad
from matport.convert.layers.params import make, pair, require_format
from matport.convert.layers.registry import ConversionContext, converts
from matport.network.model import Layer
from matport.network.specs import IMAGE

torch.fx.wrap("same_padding")


class MaxPool2dPadded(nn.Module):
    """MATLAB max pooling: any padding (``pad`` in ``F.pad`` order; padded cells never win) or
    'same', optionally also returning the unpooling outputs ``(out, indices, size)``:
    ``indices`` index the unpadded input plane like ``nn.MaxPool2d``'s, and ``size`` is carried
    as the pooling input itself, whose shape is all that :class:`MaxUnpool2d` needs."""

    def __init__(self, kernel: tuple[int, int], stride: tuple[int, int],
                 pad: tuple[int, int, int, int] = (0, 0, 0, 0), same: bool = False,
                 return_indices: bool = False) -> None:
        super().__init__()
        self.kernel_size = kernel
        self.stride = stride
        self.pad = pad
        self.same = same
        self.return_indices = return_indices

    def extra_repr(self) -> str:
        how = "same" if self.same else f"pad={self.pad}"
        return (f"kernel_size={self.kernel_size}, stride={self.stride}, {how}, "
                f"return_indices={self.return_indices}")

    def forward(self, x: torch.Tensor) -> Any:
        same = (self.kernel_size, self.stride, (1, 1)) if self.same else None
        padded = pad(x, self.pad, same, -math.inf)
        if not self.return_indices:
            return F.max_pool2d(padded, self.kernel_size, self.stride)
        out, idx = F.max_pool2d(padded, self.kernel_size, self.stride, return_indices=True)
        if same is not None or any(self.pad):
            width, pwidth = x.shape[-1], padded.shape[-1]
            pads = same_padding(x, *same) if same is not None else self.pad
            left, top = pads[0], pads[2]
            idx = (idx // pwidth - top) * width + (idx % pwidth - left)
        return out, idx, x


class AvgPool2dPadded(nn.AvgPool2d):
    """MATLAB average pooling with asymmetric (``pad`` in ``F.pad`` order) or 'same' zero
    padding; padded cells count in the average, as in MATLAB."""

    def __init__(self, kernel: tuple[int, int], stride: tuple[int, int],
                 pad: tuple[int, int, int, int] = (0, 0, 0, 0), same: bool = False) -> None:
        super().__init__(kernel, stride)
        self.pad = pad
        self.same = same

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, " + ("same" if self.same else f"pad={self.pad}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        same = (self.kernel_size, self.stride, (1, 1)) if self.same else None
        return super().forward(pad(x, self.pad, same, 0.0))


class MaxUnpool2d(nn.Module):
    """MATLAB max unpooling: inputs ``(x, indices, reference)`` where ``indices`` and
    ``reference`` (the pooling layer's input, giving the output shape) come from a
    :class:`MaxPool2dPadded` with ``return_indices``."""

    def forward(self, x: torch.Tensor, indices: torch.Tensor,
                reference: torch.Tensor) -> torch.Tensor:
        out = torch.zeros_like(reference).flatten(2)
        out = out.scatter(2, indices.flatten(2), x.flatten(2))
        return out.view_as(reference)


def _pool_args(layer: Layer) -> dict[str, Any]:
    kernel = pair(layer.params.get("PoolSize"))
    stride = pair(layer.params.get("Stride"))
    static = static_padding(layer, kernel, (1, 1))
    if static is None:
        return {"kernel": kernel, "stride": stride, "same": True}
    t, b, left, r = static
    return {"kernel": kernel, "stride": stride, "pad": torch_pad(t, b, left, r)}


def _plain_padding(args: dict[str, Any]) -> tuple[int, int] | None:
    """The symmetric padding ``(vertical, horizontal)`` the plain ``nn`` pooling modules accept
    (at most half the kernel), or None."""
    pads = args.get("pad", (0, 0, 0, 0))
    k = args["kernel"]
    if args.get("same") or pads[0] != pads[1] or pads[2] != pads[3]:
        return None
    if 2 * pads[0] > k[1] or 2 * pads[2] > k[0]:
        return None
    return (pads[2], pads[0])


@converts("MaxPooling2DLayer")
def _max_pooling(layer: Layer, context: ConversionContext) -> nn.Module:
    require_format(context, IMAGE)
    args = _pool_args(layer)
    indices = bool(layer.params.get("HasUnpoolingOutputs", False))
    plain = _plain_padding(args)
    if not indices and plain is not None:
        return make(nn.MaxPool2d, args["kernel"], args["stride"], padding=plain)
    return make(MaxPool2dPadded, **args, return_indices=indices)


@converts("AveragePooling2DLayer")
def _average_pooling(layer: Layer, context: ConversionContext) -> nn.Module:
    require_format(context, IMAGE)
    args = _pool_args(layer)
    plain = _plain_padding(args)
    if plain is not None:
        return make(nn.AvgPool2d, args["kernel"], args["stride"], padding=plain,
                    count_include_pad=True)
    return make(AvgPool2dPadded, **args)


@converts("GlobalAveragePooling2DLayer", "nnet.onnx.layer.GlobalAveragePooling2dLayer",
          "nnet.keras.layer.GlobalAveragePooling2dLayer")
def _global_average_pooling(layer: Layer, context: ConversionContext) -> nn.Module:
    require_format(context, IMAGE)
    return make(nn.AdaptiveAvgPool2d, 1)


@converts("GlobalMaxPooling2DLayer")
def _global_max_pooling(layer: Layer, context: ConversionContext) -> nn.Module:
    require_format(context, IMAGE)
    return make(nn.AdaptiveMaxPool2d, 1)


@converts("MaxUnpooling2DLayer")
def _max_unpooling(layer: Layer, context: ConversionContext) -> nn.Module:
    return make(MaxUnpool2d)
