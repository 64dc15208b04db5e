"""MathWorks layer classes outside ``nnet.cnn.layer``: Reinforcement Learning Toolbox layers,
layers of pretrained networks (ShuffleNet, Inception-ResNet-v2) and of the ONNX and Keras
importers. Semantics from MathWorks' documentation and published layer code:

- ``rl.layer.ScalingLayer``: ``Y = Scale .* X + Bias`` (fixed arrays, implicit expansion);
- ``nnet.inceptionresnetv2.layer.ScalingFactorLayer``: ``Y = Scale .* X``;
- ``nnet.onnx.layer.ElementwiseAffineLayer``: ``Y = X .* Scale + Offset`` (each applied only
  where ``DoScale`` / ``DoOffset``);
- ``rl.layer.SoftplusLayer``: ``Y = log(1 + exp(X))``;
- ``QuadraticLayer``: for ``U = [u1 u2 u3]``, ``Y = [u1*u1 u1*u2 u2*u2 u1*u3 u2*u3 u3*u3]``;
- ``nnet.shufflenet.layer.ChannelShufflingLayer``: ``reshape(X, [h w c/g g n])``, permute the
  two channel dimensions, reshape back (``nn.ChannelShuffle(g)`` on ``N x C x H x W``);
- ``nnet.keras.layer.FlattenCStyleLayer``: flatten ``H x W x C`` row-major (C fastest);
- ``nnet.keras.layer.ZeroPadding2dLayer``: zeros ``Top``/``Bottom`` rows, ``Left``/``Right``
  columns.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from matport.convert.layers.params import number, require_format, tensor
from matport.convert.layers.registry import ConversionContext, converts
from matport.errors import LayerNotConvertible
from matport.network import layout
from matport.network.model import Layer
from matport.network.specs import IMAGE, SEQUENCE


class ElementwiseAffine(nn.Module):
    """``x * scale + offset`` with fixed (buffer) operands that broadcast as in MATLAB."""

    scale: torch.Tensor
    offset: torch.Tensor

    def __init__(self, scale: np.ndarray, offset: np.ndarray) -> None:
        super().__init__()
        self.register_buffer("scale", tensor(scale))
        self.register_buffer("offset", tensor(offset))

    def extra_repr(self) -> str:
        return f"scale={tuple(self.scale.shape)}, offset={tuple(self.offset.shape)}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale + self.offset


class QuadraticMonomials(nn.Module):
    """``N x n`` -> the ``n (n + 1) / 2`` products ``x_i x_j`` (i <= j), ordered by ``j`` then
    ``i`` as MATLAB's QuadraticLayer orders them. A vector stored as an image (``n x 1 x 1``, as
    older Reinforcement Learning Toolbox networks input observations) is flattened first."""

    rows: torch.Tensor
    cols: torch.Tensor

    def __init__(self, n: int) -> None:
        super().__init__()
        pairs = [(i, j) for j in range(n) for i in range(j + 1)]
        self.register_buffer("rows", torch.tensor([i for i, _ in pairs]))
        self.register_buffer("cols", torch.tensor([j for _, j in pairs]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.flatten(1)
        return x[:, self.rows] * x[:, self.cols]


class FlattenRowMajor(nn.Module):
    """Keras' flatten of ``H x W x C`` (row-major: C fastest) applied to ``N x C x H x W``; a
    sequence ``N x T x C`` flattens to ``N x (T * C)``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x.permute(0, 2, 3, 1) if x.dim() == 4 else x).flatten(1)


def _operand(layer: Layer, key: str, neutral: float, context: ConversionContext) -> np.ndarray:
    a = layer.array(key)
    if a is None:
        return np.asarray(neutral, np.float32)
    if not np.issubdtype(a.dtype, np.number):
        raise LayerNotConvertible(f"{key} is not numeric")
    return layout.broadcast_operand(a, context.input_format == IMAGE)


@converts("rl.layer.ScalingLayer", "nnet.inceptionresnetv2.layer.ScalingFactorLayer",
          "nnet.onnx.layer.ElementwiseAffineLayer")
def _affine(layer: Layer, context: ConversionContext) -> nn.Module:
    offset_key = "Offset" if layer.type == "ElementwiseAffineLayer" else "Bias"
    scale = _operand(layer, "Scale", 1.0, context)
    offset = _operand(layer, offset_key, 0.0, context)
    if layer.params.get("DoScale") is False:
        scale = np.asarray(1.0, np.float32)
    if layer.params.get("DoOffset") is False:
        offset = np.asarray(0.0, np.float32)
    return ElementwiseAffine(scale, offset)


@converts("rl.layer.SoftplusLayer")
def _softplus(layer: Layer, context: ConversionContext) -> nn.Module:
    return nn.Softplus()


@converts("rl.layer.QuadraticLayer", "QuadraticLayer")
def _quadratic(layer: Layer, context: ConversionContext) -> nn.Module:
    size = context.input_sizes[0] if context.input_sizes else None
    if size is None:
        raise LayerNotConvertible("the size of its input is not known")
    if context.input_format == SEQUENCE or sum(s > 1 for s in size) > 1:
        raise LayerNotConvertible(f"needs a vector input, got {context.input_format} input of "
                                  f"size {'x'.join(map(str, size))}")
    return QuadraticMonomials(int(np.prod(size)))


@converts("nnet.shufflenet.layer.ChannelShufflingLayer")
def _channel_shuffle(layer: Layer, context: ConversionContext) -> nn.Module:
    require_format(context, IMAGE)
    return nn.ChannelShuffle(int(number(layer, "Groups", 1)))


@converts("nnet.keras.layer.FlattenCStyleLayer")
def _flatten_c_style(layer: Layer, context: ConversionContext) -> nn.Module:
    return FlattenRowMajor() if context.input_format in (IMAGE, SEQUENCE) else nn.Identity()


@converts("nnet.keras.layer.ZeroPadding2dLayer")
def _zero_padding(layer: Layer, context: ConversionContext) -> nn.Module:
    require_format(context, IMAGE)
    t, b, left, r = (int(number(layer, k, 0)) for k in ("Top", "Bottom", "Left", "Right"))
    return nn.ZeroPad2d((left, r, t, b))
