"""MATLAB's ``squeezenet`` (Caffe SqueezeNet v1.1) as ``torchvision.models.SqueezeNet`` 1.1.

The graph is walked from the input layer: 3x3 stride-2 conv and ReLU, then max pools and fire
modules (1x1 squeeze and ReLU, then a 1x1 and a 3x3 expand each with its ReLU, concatenated
1x1 first -- MATLAB's ``in1``, ``in2``) in torchvision's order (:data:`FEATURES`), dropout, the 1x1
classifier conv (any name) and ReLU, global average pooling, softmax and output.

MATLAB's max pools pad ``[0 1 0 1]`` (pool3, pool5), which counts the same windows as
torchvision's ``ceil_mode=True``; pool1 has no padding, which equals ``ceil_mode=True`` only for
odd input sizes, so it is built with ``ceil_mode=False`` (equal for every size). Each pool's
setting is kept in the architecture; convolutions keep their biases.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torchvision

from matport.convert.families.registry import Family, FamilyMatch, meta_copy, register_family
from matport.convert.families.transplant import Slot
from matport.convert.families.walk import (
    GraphWalk,
    check_bias,
    check_conv,
    classification_end,
    max_pool_setting,
    size2,
)
from matport.network.model import Layer, Network

FAMILY = "squeezenet1_1"
#: torchvision's ``features`` after the stem conv and ReLU: "pool" or a fire module's
#: (squeeze, expand) widths, at indices 2, 3, ...
FEATURES: tuple[str | tuple[int, int], ...] = (
    "pool", (16, 64), (16, 64), "pool", (32, 128), (32, 128), "pool",
    (48, 192), (48, 192), (64, 256), (64, 256),
)


def build(arch: dict[str, Any]) -> torchvision.models.SqueezeNet:
    """The empty (meta device) SqueezeNet 1.1 an architecture dict describes: classes, dropout
    probability and each max pool's ``(padding, ceil_mode)``."""
    model = meta_copy(FAMILY, int(arch["num_classes"]))
    assert isinstance(model, torchvision.models.SqueezeNet)
    pools = [i + 2 for i, f in enumerate(FEATURES) if f == "pool"]
    for index, (pad, ceil) in zip(pools, arch["maxpool"], strict=True):
        model.features[index].padding, model.features[index].ceil_mode = int(pad), bool(ceil)
    model.classifier[0].p = float(arch["dropout"])
    return model


def match(net: Network) -> FamilyMatch:
    """Match ``net`` to torchvision's squeezenet1_1 through its graph, or raise
    ConversionError naming the layers."""
    walk = GraphWalk(net, FAMILY)
    inp, size = walk.image_input()
    slots: list[Slot] = []
    layer_map: dict[str, str] = {}
    pools: list[list[Any]] = []

    def conv_relu(conv: Layer, path: str, relu_path: str, k: int, cin: int, cout: int,
                  stride: int = 1, pad: int | None = None) -> Layer:
        check_conv(walk, conv, k, cin, cout, {stride}, pad)
        check_bias(walk, conv, cout)
        slots.append(Slot(path, "conv_bias", conv))
        relu = walk.next(conv, "ReLULayer")
        layer_map.update({conv.name: path, relu.name: relu_path})
        return relu

    x = conv_relu(walk.next(inp, "Convolution2DLayer"), "features.0", "features.1", 3, 3, 64, 2,
                  0)
    cin = 64
    for i, spec in enumerate(FEATURES, start=2):
        if isinstance(spec, str):
            pool = walk.next(x, "MaxPooling2DLayer")
            pools.append(list(max_pool_setting(walk, pool, 3, 2, prefer_ceil=True)))
            layer_map[pool.name] = f"features.{i}"
            x = pool
            continue
        squeeze, expand = spec
        x = _fire(walk, x, f"features.{i}", cin, squeeze, expand, conv_relu)
        layer_map[x.name] = f"features.{i}"
        cin = 2 * expand
    drop = walk.next(x, "DropoutLayer")
    final = walk.next(drop, "Convolution2DLayer")
    num_classes = (np.shape(final.learnables.get("Weights", ())) + (1, 1, 1, 1))[3]
    relu = conv_relu(final, "classifier.1", "classifier.2", 1, cin, num_classes)
    gap = walk.next(relu, "GlobalAveragePooling2DLayer")
    class_names = classification_end(walk, gap, num_classes)
    layer_map.update({drop.name: "classifier.0", gap.name: "classifier.3"})
    walk.finish()
    arch = {"family": FAMILY, "num_classes": num_classes, "maxpool": pools,
            "dropout": float(drop.params.get("Probability", 0.5))}
    return FamilyMatch(FAMILY, inp, size, slots, layer_map, arch, class_names)


def _fire(walk: GraphWalk, x: Layer, path: str, cin: int, squeeze: int, expand: int,
          conv_relu: Any) -> Layer:
    """A fire module after ``x``; returns its concatenation layer."""
    s_relu = conv_relu(walk.next(x, "Convolution2DLayer"), f"{path}.squeeze",
                       f"{path}.squeeze_activation", 1, cin, squeeze)
    branches = walk.successors(s_relu)
    if len(branches) != 2:
        walk.fail([(s_relu, f"feeds {len(branches)} layers; a fire module expands in two")])
    ends: dict[int, Layer] = {}
    for conv in branches:
        walk.take(conv.name, "Convolution2DLayer", s_relu)
        k = size2(conv.params.get("FilterSize"), 0)[0]
        if k not in (1, 3) or k in ends:
            walk.fail([(conv, "a fire module expands with one 1x1 and one 3x3 convolution")])
        ends[k] = conv_relu(conv, f"{path}.expand{k}x{k}", f"{path}.expand{k}x{k}_activation",
                            k, squeeze, expand)
    concat = walk.next(ends[1], "DepthConcatenationLayer")
    order = walk.inputs_in_order(concat)
    if order != [ends[1].name, ends[3].name]:
        walk.fail([(concat, f"concatenates {', '.join(order)}; torchvision's fire module "
                            f"concatenates {ends[1].name} (1x1) then {ends[3].name} (3x3)")])
    return concat


register_family(Family(name=FAMILY, matlab="squeezenet",
                       model_class=torchvision.models.SqueezeNet, match=match, build=build))
