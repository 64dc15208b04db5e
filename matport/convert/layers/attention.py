"""Self-attention and learned position embedding on sequences."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from matport.convert.layers.params import (
    array,
    assign,
    number,
    on_meta,
    refuse_flags,
    require_format,
    tensor,
    text,
)
from matport.convert.layers.registry import ConversionContext, converts
from matport.errors import LayerNotConvertible
from matport.network import layout
from matport.network.model import Layer
from matport.network.specs import SEQUENCE


class SelfAttention(nn.Module):
    """MATLAB SelfAttentionLayer on ``N x T x C``: linear ``query``/``key``/``value``
    projections, heads taking contiguous channel blocks, scaled dot-product attention
    (optionally causal), then the ``output`` projection."""

    def __init__(self, query: nn.Linear, key: nn.Linear, value: nn.Linear, output: nn.Linear,
                 heads: int, causal: bool, dropout: float) -> None:
        super().__init__()
        self.query = query
        self.key = key
        self.value = value
        self.output = output
        self.heads = heads
        self.causal = causal
        self.dropout = dropout

    def extra_repr(self) -> str:
        return f"heads={self.heads}, causal={self.causal}, dropout={self.dropout}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = (p(x).unflatten(-1, (self.heads, -1)).transpose(1, 2)
                   for p in (self.query, self.key, self.value))
        a = F.scaled_dot_product_attention(
            q, k, v, dropout_p=self.dropout if self.training else 0.0, is_causal=self.causal)
        return self.output(a.transpose(1, 2).flatten(2))


class PositionEmbedding(nn.Module):
    """Learned position embedding: ``N x T x C`` -> ``weight[:T]`` (``MaxPosition x
    OutputSize``) for every observation; the values of the input are not used."""

    def __init__(self, weight: torch.Tensor) -> None:
        super().__init__()
        self.weight = nn.Parameter(weight)

    def extra_repr(self) -> str:
        return f"max_position={self.weight.shape[0]}, channels={self.weight.shape[1]}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.weight[: x.shape[1]].unsqueeze(0).expand(x.shape[0], -1, -1)


@converts("SelfAttentionLayer")
def _self_attention(layer: Layer, context: ConversionContext) -> nn.Module:
    require_format(context, SEQUENCE)
    refuse_flags(layer, "HasPaddingMaskInput", "HasScoresOutput")
    mask = text(layer, "AttentionMask", "none")
    if mask not in ("none", "causal"):
        raise LayerNotConvertible(f"AttentionMask '{mask}' is not supported")
    wq, wk, wv, wo = (array(layer, k + "Weights") for k in ("Query", "Key", "Value", "Output"))
    heads = int(number(layer, "NumHeads", 1))

    def projection(name: str, w: np.ndarray) -> nn.Linear:
        b = layer.array(name + "Bias")
        bias = layout.channel_vector(b) if b is not None else np.zeros(w.shape[0], np.float32)
        return assign(on_meta(nn.Linear, w.shape[1], w.shape[0]), {"weight": w, "bias": bias})

    return SelfAttention(projection("Query", wq), projection("Key", wk), projection("Value", wv),
                         projection("Output", wo), heads, mask == "causal",
                         number(layer, "DropoutProbability", 0.0))


@converts("PositionEmbeddingLayer")
def _position_embedding(layer: Layer, context: ConversionContext) -> nn.Module:
    require_format(context, SEQUENCE)
    dim = text(layer, "PositionDimension", "auto")
    if dim not in ("auto", "temporal"):
        raise LayerNotConvertible(f"PositionDimension '{dim}' is not supported")
    return PositionEmbedding(tensor(array(layer, "Weights").T))  # MaxPosition x OutputSize
