"""Activations, softmax and dropout: the ``torch.nn`` module computing what MATLAB computes."""

from __future__ import annotations

from torch import nn

from matport.convert.layers.params import make, number, text
from matport.convert.layers.registry import ConversionContext, converts
from matport.errors import LayerNotConvertible
from matport.network.model import Layer
from matport.network.specs import IMAGE


@converts("ReLULayer")
def _relu(layer: Layer, context: ConversionContext) -> nn.Module:
    return make(nn.ReLU)


@converts("LeakyReLULayer")
def _leaky_relu(layer: Layer, context: ConversionContext) -> nn.Module:
    return make(nn.LeakyReLU, number(layer, "Scale", 0.01))


@converts("ClippedReLULayer")
def _clipped_relu(layer: Layer, context: ConversionContext) -> nn.Module:
    return make(nn.Hardtanh, 0.0, number(layer, "Ceiling", 6.0))


@converts("ELULayer")
def _elu(layer: Layer, context: ConversionContext) -> nn.Module:
    return make(nn.ELU, number(layer, "Alpha", 1.0))


@converts("TanhLayer")
def _tanh(layer: Layer, context: ConversionContext) -> nn.Module:
    return make(nn.Tanh)


@converts("SigmoidLayer")
def _sigmoid(layer: Layer, context: ConversionContext) -> nn.Module:
    return make(nn.Sigmoid)


@converts("SwishLayer")
def _swish(layer: Layer, context: ConversionContext) -> nn.Module:
    return make(nn.SiLU)


@converts("GELULayer")
def _gelu(layer: Layer, context: ConversionContext) -> nn.Module:
    approx = text(layer, "Approximation", "none")
    if approx not in ("none", "tanh"):
        raise LayerNotConvertible(f"GELU approximation '{approx}'")
    return make(nn.GELU, approximate=approx)


@converts("SoftmaxLayer")
def _softmax(layer: Layer, context: ConversionContext) -> nn.Module:
    return make(nn.Softmax, dim=1 if context.input_format == IMAGE else -1)


@converts("DropoutLayer")
def _dropout(layer: Layer, context: ConversionContext) -> nn.Module:
    return make(nn.Dropout, number(layer, "Probability", 0.5))
