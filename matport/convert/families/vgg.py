"""MATLAB's ``vgg16`` and ``vgg19`` (Caffe VGG) as ``torchvision.models.VGG``.

The graph is a chain: 3x3 'same' convolutions with ReLUs and 2x2 stride-2 max pools in
torchvision's configuration (:data:`CONFIGS`), then fc6 + ReLU + dropout, fc7 + ReLU + dropout,
fc8 (any name), softmax and output. fc6 takes the last pool's 7 x 7 x 512 output, which MATLAB
flattens column-major (H, W, C) and torchvision as (C, H, W): its weights are permuted by the
named transform ``fc_hwc_to_chw``. Only inputs whose features are 7 x 7 (224-255 pixels) fit:
torchvision's adaptive 7 x 7 average pooling is then the identity.
"""

from __future__ import annotations

import functools
from typing import Any

import torchvision

from matport.convert.families.registry import Family, FamilyMatch, meta_copy, register_family
from matport.convert.families.transplant import Slot
from matport.convert.families.walk import (
    GraphWalk,
    check_bias,
    check_conv,
    classification_end,
    classifier_head,
    max_pool_setting,
)
from matport.network.model import Layer, Network

#: torchvision's ``features``: output channels of a conv (each followed by a ReLU) or "M", a pool.
CONFIGS: dict[str, tuple[int | str, ...]] = {
    "vgg16": (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M",
              512, 512, 512, "M"),
    "vgg19": (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M",
              512, 512, 512, 512, "M"),
}
POOLED = (7, 7, 512)
HIDDEN = 4096


def build(arch: dict[str, Any]) -> torchvision.models.VGG:
    """The empty (meta device) VGG an architecture dict describes (classes, dropouts)."""
    model = meta_copy(arch["family"], int(arch["num_classes"]))
    assert isinstance(model, torchvision.models.VGG)
    for index, p in zip((2, 5), arch["dropout"], strict=True):
        model.classifier[index].p = float(p)
    return model


def match(net: Network, family: str) -> FamilyMatch:
    """Match ``net`` to torchvision's ``family`` (vgg16 or vgg19) through its graph, or raise
    ConversionError naming the layers."""
    walk = GraphWalk(net, family)
    inp, size = walk.image_input()
    slots: list[Slot] = []
    layer_map: dict[str, str] = {}
    x: Layer = inp
    cin, index = 3, 0
    hw = size[:2]
    for spec in CONFIGS[family]:
        if spec == "M":
            x = walk.next(x, "MaxPooling2DLayer")
            if max_pool_setting(walk, x, 2, 2, prefer_ceil=False) != (0, False):
                walk.fail([(x, "torchvision's VGG pools 2x2, stride 2, without padding")])
            layer_map[x.name] = f"features.{index}"
            hw = (hw[0] // 2, hw[1] // 2)
            index += 1
            continue
        conv = walk.next(x, "Convolution2DLayer")
        check_conv(walk, conv, 3, cin, int(spec), {1})
        check_bias(walk, conv, int(spec))
        slots.append(Slot(f"features.{index}", "conv_bias", conv))
        x = walk.next(conv, "ReLULayer")
        layer_map.update({conv.name: f"features.{index}", x.name: f"features.{index + 1}"})
        cin, index = int(spec), index + 2
    if hw + (cin,) != POOLED:
        walk.fail([(x, f"gives {hw[0]}x{hw[1]}x{cin} features; torchvision's {family} "
                       f"classifier takes 7x7x512 (input 224 to 255 pixels)")])
    dropout = []
    features: int = 7 * 7 * 512
    for i, path in enumerate(("classifier.0", "classifier.3")):
        fc, outputs = classifier_head(walk, x, features, POOLED if i == 0 else None)
        if outputs != HIDDEN:
            walk.fail([(fc, f"{outputs} outputs; torchvision's {family} has {HIDDEN}")])
        slots.append(Slot(path, "fc_spatial", fc, spatial=POOLED) if i == 0
                     else Slot(path, "fc", fc))
        relu = walk.next(fc, "ReLULayer")
        x = walk.next(relu, "DropoutLayer")
        dropout.append(float(x.params.get("Probability", 0.5)))
        layer_map.update({fc.name: path, relu.name: f"classifier.{3 * i + 1}",
                          x.name: f"classifier.{3 * i + 2}"})
        features = HIDDEN
    fc, num_classes = classifier_head(walk, x, HIDDEN)
    slots.append(Slot("classifier.6", "fc", fc))
    layer_map[fc.name] = "classifier.6"
    class_names = classification_end(walk, fc, num_classes)
    walk.finish()
    arch = {"family": family, "num_classes": num_classes, "dropout": dropout}
    return FamilyMatch(family, inp, size, slots, layer_map, arch, class_names)


for _name in CONFIGS:
    register_family(Family(name=_name, matlab=_name, model_class=torchvision.models.VGG,
                           match=functools.partial(match, family=_name), build=build))
