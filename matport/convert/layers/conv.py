"""Convolution, grouped and transposed convolution, fully connected layers."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from matport.convert.layers.padding import PAD_MODES, pad, static_padding, torch_pad
from matport.convert.layers.params import (
    adopted_or_copied,
    array,
    assign,
    on_meta,
    padding,
    pair,
    require_format,
    text,
)
from matport.convert.layers.registry import ConversionContext, converts
from matport.errors import LayerNotConvertible
from matport.network import layout
from matport.network.model import Layer
from matport.network.specs import IMAGE


class Conv2dPadded(nn.Conv2d):
    """``nn.Conv2d`` preceded by MATLAB padding that ``nn.Conv2d`` cannot express: asymmetric
    (``pad`` in ``F.pad`` order: left, right, top, bottom), 'same' with a stride (computed from
    the input size, the odd pixel bottom/right), or a non-zero / replicate / reflect value."""

    def __init__(self, *args: Any, pad: tuple[int, int, int, int] | None = None,
                 same: bool = False, pad_value: float = 0.0, pad_mode: str = "constant",
                 **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.pad = pad
        self.same = same
        self.pad_value = pad_value
        self.pad_mode = pad_mode

    def extra_repr(self) -> str:
        how = "same" if self.same else f"pad={self.pad}"
        extra = "" if self.pad_mode == "constant" and not self.pad_value else (
            f", pad_mode={self.pad_mode}, pad_value={self.pad_value}")
        return f"{super().extra_repr()}, {how}{extra}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        same = (self.kernel_size, self.stride, self.dilation) if self.same else None
        return super().forward(pad(x, self.pad, same, self.pad_value, self.pad_mode))


class ConvTranspose2dCropped(nn.ConvTranspose2d):
    """``nn.ConvTranspose2d`` whose output is cropped ``[top bottom left right]`` (MATLAB
    CroppingSize), or cropped to ``stride x input size`` ('same')."""

    def __init__(self, *args: Any, crop: tuple[int, int, int, int] = (0, 0, 0, 0),
                 same: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.crop = crop
        self.same = same

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, " + ("crop=same" if self.same else f"crop={self.crop}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        y = super().forward(x)
        if self.same:
            th, tw = (k - s for k, s in zip(self.kernel_size, self.stride, strict=True))
            t, b, left, r = th // 2, th - th // 2, tw // 2, tw - tw // 2
        else:
            t, b, left, r = self.crop
        return F.pad(y, (-left, -r, -t, -b)) if (t or b or left or r) else y


class FullyConnected(nn.Linear):
    """``nn.Linear`` after image input: flattens ``N x C x H x W`` in PyTorch's C, H, W order
    (the MATLAB weights are permuted to match). After features or sequences matport uses a plain
    ``nn.Linear`` (applied to every time step of ``N x T x C``)."""

    def extra_repr(self) -> str:
        return super().extra_repr() + ", flatten=C*H*W"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.flatten(1))


def _conv_padding(layer: Layer, kernel: tuple[int, int]) -> dict[str, Any]:
    """Keyword arguments of :class:`Conv2dPadded` (or plain ``nn.Conv2d``) for the layer."""
    value = layer.params.get("PaddingValue", 0)
    if isinstance(value, str):
        if value not in PAD_MODES:
            raise LayerNotConvertible(f"PaddingValue '{value}' has no PyTorch equivalent")
        mode, fill = PAD_MODES[value], 0.0
    else:
        mode = "constant"
        fill = float(value) if type(value) in (int, float) else (
            float(np.ravel(value)[0]) if np.size(value) else 0.0)
    static = static_padding(layer, kernel, pair(layer.params.get("DilationFactor")))
    if static is None:
        if mode != "constant":
            raise LayerNotConvertible("'same' padding with a non-constant PaddingValue")
        return {"same": True, "pad_value": fill}
    t, b, left, r = static
    if t == b and left == r and mode == "constant" and fill == 0.0:
        return {"padding": (t, left)}
    return {"pad": torch_pad(t, b, left, r), "pad_value": fill, "pad_mode": mode}


def _set_weights(module: nn.Conv2d | nn.ConvTranspose2d | nn.Linear,
                 weight: np.ndarray | torch.Tensor, bias: np.ndarray | None) -> None:
    """Give ``module`` (built on the meta device) ``weight`` and ``bias`` (zeros when None)."""
    assert module.bias is not None
    assign(module, {"weight": weight,
                    "bias": bias if bias is not None
                    else torch.zeros(module.bias.shape, device="cpu")})


def _make_conv(layer: Layer, weight: np.ndarray, bias: np.ndarray | None,
               groups: int) -> nn.Module:
    out_ch, in_per_group, kh, kw = weight.shape
    stride = pair(layer.params.get("Stride"))
    dilation = pair(layer.params.get("DilationFactor"))
    kwargs = _conv_padding(layer, (kh, kw))
    conv: nn.Conv2d
    if "padding" in kwargs:
        conv = on_meta(nn.Conv2d, in_per_group * groups, out_ch, (kh, kw), stride,
                       kwargs["padding"], dilation, groups)
    else:
        conv = on_meta(Conv2dPadded, in_per_group * groups, out_ch, (kh, kw), stride, 0, dilation,
                       groups, **kwargs)
    _set_weights(conv, weight, bias)
    return conv


def _bias(layer: Layer) -> np.ndarray | None:
    bias = layer.array("Bias")
    return layout.channel_vector(bias) if bias is not None else None


@converts("Convolution2DLayer")
def _convolution(layer: Layer, context: ConversionContext) -> nn.Module:
    require_format(context, IMAGE)
    return _make_conv(layer, layout.conv_weight(array(layer, "Weights")), _bias(layer), groups=1)


@converts("GroupedConvolution2DLayer")
def _grouped_convolution(layer: Layer, context: ConversionContext) -> nn.Module:
    require_format(context, IMAGE)
    weight = layout.grouped_conv_weight(array(layer, "Weights"))
    groups = int(layout.pad_ndim(array(layer, "Weights"), 5).shape[4])
    return _make_conv(layer, weight, _bias(layer), groups)


@converts("TransposedConvolution2DLayer")
def _transposed_convolution(layer: Layer, context: ConversionContext) -> nn.Module:
    require_format(context, IMAGE)
    weight = layout.conv_weight(array(layer, "Weights"))  # Cin x Cout x H x W
    in_ch, out_ch, kh, kw = weight.shape
    offset = [int(v) for v in np.ravel(layer.params.get("OutputSizeOffset", 0))]
    if any(offset):
        raise LayerNotConvertible("OutputSizeOffset is not supported")
    conv = on_meta(ConvTranspose2dCropped, in_ch, out_ch, (kh, kw),
                   stride=pair(layer.params.get("Stride")), crop=padding(layer, "CroppingSize"),
                   same=text(layer, "CroppingMode", "manual") == "same")
    _set_weights(conv, weight, _bias(layer))
    return conv


@converts("FullyConnectedLayer")
def _fully_connected(layer: Layer, context: ConversionContext) -> nn.Module:
    flatten = context.input_format == IMAGE
    image_size = layer.params.get("InputSize", ()) if flatten else None
    weights = array(layer, "Weights")
    w: np.ndarray | torch.Tensor
    if weights.ndim >= 3:  # H x W x C x O: a convolution's weights over the whole input
        w = adopted_or_copied(layout.conv_weight(weights)).flatten(1)  # = layout.fc_weight's
    else:
        w = layout.fc_weight(weights, image_size)
    fc = on_meta(FullyConnected if flatten else nn.Linear, w.shape[1], w.shape[0])
    _set_weights(fc, w, _bias(layer))
    return fc
