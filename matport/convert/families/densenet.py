"""MATLAB's ``densenet201`` (Keras DenseNet-201) as ``torchvision.models.DenseNet``.

The graph is walked from the input layer: stem (7x7 stride-2 conv, BN, ReLU, 3x3 stride-2 max
pooling), dense blocks of :data:`BLOCKS` layers -- BN, ReLU, 1x1 conv to 128, BN, ReLU, 3x3 conv
to 32, concatenated after the layer's input (``in1`` the input, ``in2`` the new features) --,
transitions (BN, ReLU, 1x1 conv halving the channels, 2x2 average pooling) between blocks, the
final BN and ReLU, global average pooling, the fully connected head, softmax and output.

torchvision's convolutions have no bias, MATLAB's do. Every output channel of a convolution here
reaches only BatchNorms (through concatenations and average pools, which carry a constant
unchanged), so each conv's bias folds into the running mean of every BatchNorm its channels reach:
the walk keeps, per channel of the running concatenation, the constant it carries.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torchvision

from matport.convert.families.registry import (
    Family,
    FamilyMatch,
    compact_eps,
    meta_copy,
    register_family,
    set_bn_eps,
)
from matport.convert.families.transplant import Slot, conv_bias
from matport.convert.families.walk import (
    GraphWalk,
    check_bn,
    check_conv,
    classification_end,
    classifier_head,
    max_pool_setting,
    padding,
    size2,
)
from matport.network.model import Layer, Network

FAMILY = "densenet201"
BLOCKS = (6, 12, 48, 32)
GROWTH = 32
BOTTLENECK = 128
STEM = 64


def build(arch: dict[str, Any]) -> torchvision.models.DenseNet:
    """The empty (meta device) DenseNet-201 an architecture dict describes (classes, BatchNorm
    epsilon: one value or module path -> value)."""
    model = meta_copy(FAMILY, int(arch["num_classes"]))
    assert isinstance(model, torchvision.models.DenseNet)
    set_bn_eps(model, arch["bn_eps"])
    return model


class _Walk:
    """The DenseNet walk: slots, layer map, epsilons and the constants each channel carries."""

    def __init__(self, net: Network) -> None:
        self.g = GraphWalk(net, FAMILY)
        self.slots: list[Slot] = []
        self.layer_map: dict[str, str] = {}
        self.eps: dict[str, float] = {}

    def bn_relu(self, x: Layer, path: str, norm: str, relu: str, carried: np.ndarray,
                bn: Layer | None = None) -> Layer:
        """BN (of ``len(carried)`` channels, folding ``carried``) and ReLU after ``x``."""
        bn = bn or self.g.next(x, "BatchNormalizationLayer")
        check_bn(self.g, bn, len(carried))
        self.slots.append(Slot(f"{path}.{norm}", "bn", bn, carried))
        self.eps[f"{path}.{norm}"] = float(bn.params.get("Epsilon", 1e-5))
        r = self.g.next(bn, "ReLULayer")
        self.layer_map.update({bn.name: f"{path}.{norm}", r.name: f"{path}.{relu}"})
        return r

    def conv(self, x: Layer, path: str, k: int, cin: int, cout: int, stride: int = 1) -> tuple[
            Layer, np.ndarray]:
        """A bias-free torchvision conv after ``x``; returns it and the constant it adds."""
        c = self.g.next(x, "Convolution2DLayer")
        check_conv(self.g, c, k, cin, cout, {stride})
        self.slots.append(Slot(path, "conv", c))
        self.layer_map[c.name] = path
        b = conv_bias(c)
        return c, np.zeros(cout, np.float32) if b is None else np.ravel(b).astype(np.float32)


def match(net: Network) -> FamilyMatch:
    """Match ``net`` to torchvision's densenet201 through its graph, or raise ConversionError
    naming the layers."""
    w = _Walk(net)
    g = w.g
    inp, size = g.image_input()
    conv0, carried = w.conv(inp, "features.conv0", 7, 3, STEM, 2)
    x = w.bn_relu(conv0, "features", "norm0", "relu0", carried)
    pool = g.next(x, "MaxPooling2DLayer")
    maxpool = max_pool_setting(g, pool, 3, 2, prefer_ceil=False)
    if maxpool != (1, False):
        g.fail([(pool, "torchvision's pool0 pads 1 all round")])
    w.layer_map[pool.name] = "features.pool0"
    x, carried = pool, np.zeros(STEM, np.float32)
    for b, layers in enumerate(BLOCKS, start=1):
        for i in range(1, layers + 1):
            x, carried = _dense_layer(w, x, f"features.denseblock{b}.denselayer{i}", carried)
        w.layer_map[x.name] = f"features.denseblock{b}"
        if b == len(BLOCKS):
            break
        path, c = f"features.transition{b}", len(carried)
        r = w.bn_relu(x, path, "norm", "relu", carried)
        tc, carried = w.conv(r, f"{path}.conv", 1, c, c // 2)
        x = g.next(tc, "AveragePooling2DLayer")
        if (size2(x.params.get("PoolSize"), 0), size2(x.params.get("Stride"), 1),
                padding(x, 0)) != ((2, 2), (2, 2), (0, 0, 0, 0)):
            g.fail([(x, "torchvision's transition pools 2x2, stride 2, without padding")])
        w.layer_map[x.name] = f"{path}.pool"
    bn5 = g.next(x, "BatchNormalizationLayer")
    check_bn(g, bn5, len(carried))
    w.slots.append(Slot("features.norm5", "bn", bn5, carried))
    w.eps["features.norm5"] = float(bn5.params.get("Epsilon", 1e-5))
    relu = g.next(bn5, "ReLULayer")
    w.layer_map[bn5.name] = "features.norm5"
    gap = g.next(relu, "GlobalAveragePooling2DLayer")
    fc, num_classes = classifier_head(g, gap, len(carried))
    w.slots.append(Slot("classifier", "fc", fc))
    w.layer_map[fc.name] = "classifier"
    class_names = classification_end(g, fc, num_classes)
    g.finish()
    arch = {"family": FAMILY, "num_classes": num_classes, "bn_eps": compact_eps(w.eps)}
    return FamilyMatch(FAMILY, inp, size, w.slots, w.layer_map, arch, class_names)


def _dense_layer(w: _Walk, x: Layer, path: str, carried: np.ndarray) -> tuple[Layer, np.ndarray]:
    """One dense layer after ``x`` (which also feeds its concatenation); returns the
    concatenation and the constants its channels carry."""
    g = w.g
    succ = g.successors(x)
    bns = [s for s in succ if s.type == "BatchNormalizationLayer"]
    if len(succ) != 2 or len(bns) != 1 or not any(
            s.type == "DepthConcatenationLayer" for s in succ):
        found = ", ".join(f"{s.name} ({s.type})" for s in succ) or "none"
        g.fail([(x, f"a dense layer's input feeds its BatchNorm and its concatenation; found: "
                    f"{found}")])
    g.take(bns[0].name, "BatchNormalizationLayer", x)
    r = w.bn_relu(x, path, "norm1", "relu1", carried, bns[0])
    c1, bias1 = w.conv(r, f"{path}.conv1", 1, len(carried), BOTTLENECK)
    r = w.bn_relu(c1, path, "norm2", "relu2", bias1)
    c2, bias2 = w.conv(r, f"{path}.conv2", 3, BOTTLENECK, GROWTH)
    concat = g.next(c2, "DepthConcatenationLayer")
    order = g.inputs_in_order(concat)
    if order != [x.name, c2.name]:
        g.fail([(concat, f"concatenates {', '.join(order)}; torchvision's dense layer "
                         f"concatenates {x.name} then {c2.name}")])
    return concat, np.concatenate([carried, bias2])


register_family(Family(name=FAMILY, matlab="densenet201",
                       model_class=torchvision.models.DenseNet, match=match, build=build))
