"""Input and output layers: the input layers pass their (already normalized) input on, the
output layers (losses) do nothing at prediction time."""

from __future__ import annotations

import numpy as np
from torch import nn

from matport.convert.layers.params import make
from matport.convert.layers.registry import ConversionContext, converts
from matport.errors import LayerNotConvertible
from matport.network.model import Layer


@converts("ImageInputLayer", "FeatureInputLayer", "ClassificationOutputLayer",
          "RegressionOutputLayer", "PixelClassificationLayer", "nnet.onnx.layer.IdentityLayer",
          "nnet.onnx.layer.VerifyBatchSizeLayer")
def _identity(layer: Layer, context: ConversionContext) -> nn.Module:
    return make(nn.Identity)


@converts("SequenceInputLayer")
def _sequence_input(layer: Layer, context: ConversionContext) -> nn.Module:
    if len(np.ravel(layer.params.get("InputSize", 1))) > 1:
        raise LayerNotConvertible("sequences of images are not supported")
    return make(nn.Identity)
