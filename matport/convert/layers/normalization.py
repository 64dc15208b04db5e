"""Batch and layer normalization."""

from __future__ import annotations

import torch
from torch import nn

from matport.convert.layers.params import array, number, tensor, text
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


def _channels(layer: Layer, key: str) -> torch.Tensor:
    return tensor(layout.channel_vector(array(layer, key)))


@converts("BatchNormalizationLayer")
def _batch_norm(layer: Layer, context: ConversionContext) -> nn.Module:
    mean = _channels(layer, "TrainedMean")
    cls = {IMAGE: nn.BatchNorm2d, VECTOR: nn.BatchNorm1d, SEQUENCE: SequenceBatchNorm}
    bn = cls[context.input_format](mean.numel(), eps=number(layer, "Epsilon", 1e-5),
                                   momentum=number(layer, "MeanDecay", 0.1))
    with torch.no_grad():
        bn.running_mean.copy_(mean)  # type: ignore[union-attr]
        bn.running_var.copy_(_channels(layer, "TrainedVariance"))  # type: ignore[union-attr]
        bn.weight.copy_(_channels(layer, "Scale"))
        bn.bias.copy_(_channels(layer, "Offset"))
    return bn


@converts("LayerNormalizationLayer")
def _layer_norm(layer: Layer, context: ConversionContext) -> nn.Module:
    scale = _channels(layer, "Scale")
    channels = scale.numel()
    eps = number(layer, "Epsilon", 1e-5)
    dims = text(layer, "OperationDimension", "auto")
    fmt = context.input_format
    if dims not in ("auto", "channel-only", "spatial-channel", "batch-excluded"):
        raise LayerNotConvertible(f"OperationDimension '{dims}'")
    norm: nn.GroupNorm | nn.LayerNorm
    if fmt == IMAGE and dims != "channel-only":
        norm = nn.GroupNorm(1, channels, eps=eps)  # over C, H, W; affine per channel
    elif fmt == IMAGE:
        norm = ChannelLayerNorm(channels, eps=eps)
    elif fmt == SEQUENCE and dims == "batch-excluded":
        norm = SequenceGroupNorm(1, channels, eps=eps)
    else:
        norm = nn.LayerNorm(channels, eps=eps)
    with torch.no_grad():
        norm.weight.copy_(scale)
        norm.bias.copy_(_channels(layer, "Offset"))
    return norm
