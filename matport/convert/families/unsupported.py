"""MATLAB pretrained families with no exact torchvision counterpart (shared/docs/
matlab-pretrained-families.md): recognised from the classes and shapes in their layer graph, never
from layer names, and refused with a message that names the family and points to ``matport.load``
(which converts them exactly as a general graph module). Recognition only chooses the message;
nothing is ever loaded from it.
"""

from __future__ import annotations

from collections import Counter

import numpy as np

from matport.convert.families.registry import Refusal, register_family
from matport.network.model import Network


def _types(net: Network) -> Counter[str]:
    return Counter(lay.type for lay in net.layers)


def _has(net: Network, *types: str) -> bool:
    found = _types(net)
    return all(found[t] for t in types)


def _depthwise(net: Network) -> bool:
    """Grouped convolutions with one channel per group (MATLAB's depthwise convolutions)."""
    return any(lay.type == "GroupedConvolution2DLayer"
               and np.shape(lay.learnables.get("Weights", np.zeros(0)))[2:3] == (1,)
               for lay in net.layers)


def _concat_widths(net: Network) -> set[int]:
    return {len(net.predecessors(lay.name)) for lay in net.layers
            if lay.type == "DepthConcatenationLayer"}


REFUSALS = (
    Refusal("shufflenet", lambda n: _has(n, "ChannelShufflingLayer"),
            "MATLAB's shufflenet is ShuffleNet v1 (g=4, channel shuffling); torchvision has v2 "
            "only"),
    Refusal("inceptionresnetv2", lambda n: _has(n, "ScalingFactorLayer"),
            "its residual scaling layers have no torchvision model (timm's inception_resnet_v2 "
            "is the closest)"),
    Refusal("googlenet", lambda n: _has(n, "CrossChannelNormalizationLayer")
            and 4 in _concat_widths(n),
            "Caffe's GoogLeNet has LRN layers, true 5x5 branches and no BatchNorm; torchvision's "
            "googlenet is a BatchNorm variant with 3x3 branches"),
    Refusal("alexnet", lambda n: _has(n, "CrossChannelNormalizationLayer"),
            "Caffe's AlexNet (widths 96/256/384/384/256, grouped convolutions, LRN) is not "
            "torchvision's variant"),
    Refusal("mobilenetv2", lambda n: _has(n, "ClippedReLULayer", "AdditionLayer")
            and _depthwise(n),
            "Keras' MobileNetV2 pads its stride-2 convolutions TensorFlow-style (bottom/right "
            "only), which torchvision's mobilenet_v2 does not"),
    Refusal("efficientnetb0", lambda n: (_has(n, "SwishLayer") or _has(n, "MultiplicationLayer"))
            and _depthwise(n),
            "TensorFlow's EfficientNet pads asymmetrically at stride 2, which torchvision's "
            "efficientnet_b0 does not"),
    Refusal("xception", lambda n: _has(n, "AdditionLayer") and _depthwise(n),
            "Keras' Xception has no torchvision counterpart (timm's legacy_xception is the "
            "closest)"),
    Refusal("darknet", lambda n: _has(n, "LeakyReLULayer", "BatchNormalizationLayer"),
            "Darknet-19/53 have no torchvision counterpart"),
)

for _refusal in REFUSALS:
    register_family(_refusal)
