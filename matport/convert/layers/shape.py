"""Layers that combine, reshape or select: addition, concatenation, flatten, resize, indexing."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from matport.convert.layers.params import make, number, require_format, text
from matport.convert.layers.registry import ConversionContext, converts
from matport.errors import LayerNotConvertible
from matport.network.model import Layer
from matport.network.specs import IMAGE, SEQUENCE, VECTOR


class FlattenMatlabOrder(nn.Module):
    """MATLAB's flatten of ``H x W x C`` (column-major: H fastest, then W, then C) applied to
    ``N x C x H x W``: the same feature order as MATLAB, so following weights need no change."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.transpose(2, 3).flatten(1)


class Add(nn.Module):
    """Element-wise sum of all inputs (AdditionLayer)."""

    def forward(self, *xs: torch.Tensor) -> torch.Tensor:
        out = xs[0]
        for x in xs[1:]:
            out = out + x
        return out


class Concat(nn.Module):
    """Concatenation of all inputs along ``dim`` (of the PyTorch layout)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dim = dim

    def extra_repr(self) -> str:
        return f"dim={self.dim}"

    def forward(self, *xs: torch.Tensor) -> torch.Tensor:
        return torch.cat(xs, dim=self.dim)


class SelectTimeStep(nn.Module):
    """Indexing1DLayer on sequences: ``N x T x C`` -> ``N x C`` at one time step."""

    def __init__(self, index: int) -> None:
        super().__init__()
        self.index = index

    def extra_repr(self) -> str:
        return f"index={self.index}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, self.index]


class Resize2d(nn.Module):
    """MATLAB Resize2DLayer through ``F.interpolate`` (fixed output size or scale)."""

    def __init__(self, mode: str, size: tuple[int, int] | None,
                 scale: tuple[float, float] | None) -> None:
        super().__init__()
        self.mode = mode
        self.size = size
        self.scale = scale

    def extra_repr(self) -> str:
        return f"mode={self.mode}, size={self.size}, scale={self.scale}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        align = False if self.mode == "bilinear" else None
        return F.interpolate(x, size=self.size, scale_factor=self.scale, mode=self.mode,
                             align_corners=align)


@converts("AdditionLayer")
def _addition(layer: Layer, context: ConversionContext) -> nn.Module:
    return make(Add)


@converts("FlattenLayer")
def _flatten(layer: Layer, context: ConversionContext) -> nn.Module:
    if context.input_format == IMAGE:
        return make(FlattenMatlabOrder)
    if context.input_format == VECTOR:
        return make(nn.Identity)
    raise LayerNotConvertible("flattening sequences is not supported")


# MATLAB concatenation dimension -> PyTorch dim, by input format
_CONCAT_DIMS = {IMAGE: {1: 2, 2: 3, 3: 1, 4: 0}, VECTOR: {1: 1, 2: 0},
                SEQUENCE: {1: 2, 2: 0, 3: 1}}


@converts("ConcatenationLayer")
def _concatenation(layer: Layer, context: ConversionContext) -> nn.Module:
    dim = int(number(layer, "Dim", 3 if context.input_format == IMAGE else 1))
    try:
        return make(Concat, _CONCAT_DIMS[context.input_format][dim])
    except KeyError:
        raise LayerNotConvertible(f"concatenation along dimension {dim}") from None


@converts("DepthConcatenationLayer")
def _depth_concatenation(layer: Layer, context: ConversionContext) -> nn.Module:
    return make(Concat, 1 if context.input_format != SEQUENCE else 2)


@converts("Resize2DLayer")
def _resize(layer: Layer, context: ConversionContext) -> nn.Module:
    require_format(context, IMAGE)
    if layer.params.get("EnableReferenceInput"):
        raise LayerNotConvertible("resizing to a reference input is not supported")
    method = text(layer, "Method", "nearest")
    transform = text(layer, "GeometricTransformMode", "half-pixel")
    rounding = text(layer, "NearestRoundingMode", "round")
    modes = {("nearest", "half-pixel", "round"): "nearest-exact",
             ("nearest", "asymmetric", "floor"): "nearest"}
    if method == "bilinear" and transform == "half-pixel":
        mode = "bilinear"
    elif (method, transform, rounding) in modes:
        mode = modes[(method, transform, rounding)]
    else:
        raise LayerNotConvertible(
            f"Method '{method}' with GeometricTransformMode '{transform}' and "
            f"NearestRoundingMode '{rounding}' has no F.interpolate equivalent")
    size = [v for v in np.ravel(layer.params.get("OutputSize", ())) if np.isfinite(v)]
    if len(size) >= 2:
        return Resize2d(mode, (int(size[0]), int(size[1])), None)
    scale = [float(v) for v in np.ravel(layer.params.get("Scale", ()))]
    if not scale:
        raise LayerNotConvertible("neither Scale nor OutputSize is set")
    return Resize2d(mode, None, (scale[0], scale[-1]))


@converts("Indexing1DLayer")
def _indexing_1d(layer: Layer, context: ConversionContext) -> nn.Module:
    require_format(context, SEQUENCE)
    index = layer.params.get("Index", "last")
    if isinstance(index, str):
        if index not in ("first", "last"):
            raise LayerNotConvertible(f"Index '{index}'")
        return SelectTimeStep(0 if index == "first" else -1)
    return SelectTimeStep(int(np.ravel(index)[0]) - 1)
