"""Batch and layer normalization."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from matport.convert.layers.params import array, assign, make, number, on_meta, text
from matport.convert.layers.registry import ConversionContext, converts
from matport.errors import LayerNotConvertible
from matport.network import layout
from matport.network.model import Layer
from matport.network.specs import IMAGE, SEQUENCE, VECTOR


class SequenceBatchNorm(nn.BatchNorm1d):
    """``nn.BatchNorm1d`` over the channels of ``N x T x C`` sequences."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.transpose(1, 2)).transpose(1, 2)


class ChannelLayerNorm(nn.LayerNorm):
    """``nn.LayerNorm`` over the channels of every pixel of ``N x C x H x W``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class SequenceGroupNorm(nn.GroupNorm):
    """``nn.GroupNorm`` over the channels and time steps of ``N x T x C`` sequences."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.transpose(1, 2)).transpose(1, 2)


def _channels(layer: Layer, key: str) -> np.ndarray:
    return layout.channel_vector(array(layer, key))


@converts("BatchNormalizationLayer")
def _batch_norm(layer: Layer, context: ConversionContext) -> nn.Module:
    mean = _channels(layer, "TrainedMean")
    cls = {IMAGE: nn.BatchNorm2d, VECTOR: nn.BatchNorm1d, SEQUENCE: SequenceBatchNorm}
    bn = on_meta(cls[context.input_format], mean.size, eps=number(layer, "Epsilon", 1e-5),
                 momentum=number(layer, "MeanDecay", 0.1))
    return assign(bn, {"weight": _channels(layer, "Scale"), "bias": _channels(layer, "Offset"),
                       "running_mean": mean, "running_var": _channels(layer, "TrainedVariance"),
                       "num_batches_tracked": torch.zeros((), dtype=torch.long,
                                                             device="cpu")})


@converts("LayerNormalizationLayer")
def _layer_norm(layer: Layer, context: ConversionContext) -> nn.Module:
    scale = _channels(layer, "Scale")
    channels = scale.size
    eps = number(layer, "Epsilon", 1e-5)
    dims = text(layer, "OperationDimension", "auto")
    fmt = context.input_format
    if dims not in ("auto", "channel-only", "spatial-channel", "batch-excluded"):
        raise LayerNotConvertible(f"OperationDimension '{dims}'")
    norm: nn.GroupNorm | nn.LayerNorm
    if fmt == IMAGE and dims != "channel-only":
        norm = on_meta(nn.GroupNorm, 1, channels, eps=eps)  # over C, H, W; affine per channel
    elif fmt == IMAGE:
        norm = on_meta(ChannelLayerNorm, channels, eps=eps)
    elif fmt == SEQUENCE and dims == "batch-excluded":
        norm = on_meta(SequenceGroupNorm, 1, channels, eps=eps)
    else:
        norm = on_meta(nn.LayerNorm, channels, eps=eps)
    return assign(norm, {"weight": scale, "bias": _channels(layer, "Offset")})


@converts("CrossChannelNormalizationLayer")
def _cross_channel_normalization(layer: Layer, context: ConversionContext) -> nn.Module:
    """MATLAB's ``y = x / (K + Alpha * ss / WindowChannelSize) ^ Beta``, ``ss`` the sum of squares
    over the window of channels centred on each one: ``nn.LocalResponseNorm`` exactly, for the
    odd window sizes where the centre is defined."""
    size = int(number(layer, "WindowChannelSize", 5))
    if size < 1 or size % 2 == 0:
        raise LayerNotConvertible(f"WindowChannelSize {size}: only odd window sizes are converted "
                                  "(the window of an even one is not centred)")
    return make(nn.LocalResponseNorm, size, alpha=number(layer, "Alpha", 1e-4),
                beta=number(layer, "Beta", 0.75), k=number(layer, "K", 2.0))
