"""MATLAB's ``inceptionv3`` (Keras InceptionV3) as ``torchvision.models.Inception3``
(``aux_logits=False``, ``transform_input=False``: the input layer's own rescaling is the
preprocessing).

Every convolution is torchvision's ``BasicConv2d`` (conv, BatchNorm, ReLU; the conv bias folds
into the BatchNorm). The stem is a chain (:data:`STEM`); each mixed block (:data:`BLOCKS`) is
matched branch by branch: from the block's input every branch is traced to the concatenation
(convolution shapes, strides, pools, and for the last two blocks the inner 1x3 / 3x1 split) and
the concatenation's inputs must come in torchvision's branch order. MATLAB's 3x3 'same' average
pools count the padding zeros, as torchvision's ``avg_pool2d(x, 3, 1, 1)`` does; torchvision's
dropout before ``fc`` takes MATLAB's probability (0 when MATLAB has none).
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
    classification_end,
    classifier_head,
    max_pool_setting,
    padding,
    size2,
)
from matport.errors import ConversionError
from matport.network.model import Layer, Network

FAMILY = "inception_v3"
# an op: (module name, (kh, kw), out channels, stride) for a BasicConv2d, "avg" / "max" for the
# branch pools, or ("split", branch, branch) for InceptionE's 1x3 / 3x1 pair
Op = Any

STEM: tuple[Op, ...] = (
    ("Conv2d_1a_3x3", (3, 3), 32, 2), ("Conv2d_2a_3x3", (3, 3), 32, 1),
    ("Conv2d_2b_3x3", (3, 3), 64, 1), "maxpool1", ("Conv2d_3b_1x1", (1, 1), 80, 1),
    ("Conv2d_4a_3x3", (3, 3), 192, 1), "maxpool2",
)
STEM_PAD = {"Conv2d_2b_3x3": 1}  # the other stem convolutions are unpadded


def _c(name: str, k: tuple[int, int], c: int, s: int = 1) -> Op:
    return (name, k, c, s)


def _a(pool: int) -> list[list[Op]]:
    return [[_c("branch1x1", (1, 1), 64)],
            [_c("branch5x5_1", (1, 1), 48), _c("branch5x5_2", (5, 5), 64)],
            [_c("branch3x3dbl_1", (1, 1), 64), _c("branch3x3dbl_2", (3, 3), 96),
             _c("branch3x3dbl_3", (3, 3), 96)],
            ["avg", _c("branch_pool", (1, 1), pool)]]


def _b() -> list[list[Op]]:
    return [[_c("branch3x3", (3, 3), 384, 2)],
            [_c("branch3x3dbl_1", (1, 1), 64), _c("branch3x3dbl_2", (3, 3), 96),
             _c("branch3x3dbl_3", (3, 3), 96, 2)],
            ["max"]]


def _cc(c7: int) -> list[list[Op]]:
    return [[_c("branch1x1", (1, 1), 192)],
            [_c("branch7x7_1", (1, 1), c7), _c("branch7x7_2", (1, 7), c7),
             _c("branch7x7_3", (7, 1), 192)],
            [_c("branch7x7dbl_1", (1, 1), c7), _c("branch7x7dbl_2", (7, 1), c7),
             _c("branch7x7dbl_3", (1, 7), c7), _c("branch7x7dbl_4", (7, 1), c7),
             _c("branch7x7dbl_5", (1, 7), 192)],
            ["avg", _c("branch_pool", (1, 1), 192)]]


def _d() -> list[list[Op]]:
    return [[_c("branch3x3_1", (1, 1), 192), _c("branch3x3_2", (3, 3), 320, 2)],
            [_c("branch7x7x3_1", (1, 1), 192), _c("branch7x7x3_2", (1, 7), 192),
             _c("branch7x7x3_3", (7, 1), 192), _c("branch7x7x3_4", (3, 3), 192, 2)],
            ["max"]]


def _e() -> list[list[Op]]:
    return [[_c("branch1x1", (1, 1), 320)],
            [_c("branch3x3_1", (1, 1), 384), ("split", [_c("branch3x3_2a", (1, 3), 384)],
                                                 [_c("branch3x3_2b", (3, 1), 384)])],
            [_c("branch3x3dbl_1", (1, 1), 448), _c("branch3x3dbl_2", (3, 3), 384),
             ("split", [_c("branch3x3dbl_3a", (1, 3), 384)],
              [_c("branch3x3dbl_3b", (3, 1), 384)])],
            ["avg", _c("branch_pool", (1, 1), 192)]]


BLOCKS: tuple[tuple[str, list[list[Op]]], ...] = (
    ("Mixed_5b", _a(32)), ("Mixed_5c", _a(64)), ("Mixed_5d", _a(64)), ("Mixed_6a", _b()),
    ("Mixed_6b", _cc(128)), ("Mixed_6c", _cc(160)), ("Mixed_6d", _cc(160)), ("Mixed_6e", _cc(192)),
    ("Mixed_7a", _d()), ("Mixed_7b", _e()), ("Mixed_7c", _e()),
)


def build(arch: dict[str, Any]) -> torchvision.models.Inception3:
    """The empty (meta device) Inception v3 an architecture dict describes (classes, BatchNorm
    epsilon, dropout before ``fc``)."""
    model = meta_copy(FAMILY, int(arch["num_classes"]), aux_logits=False, init_weights=False,
                      transform_input=False)
    assert isinstance(model, torchvision.models.Inception3)
    set_bn_eps(model, arch["bn_eps"])
    model.dropout.p = float(arch["dropout"])
    return model


class _Walk:
    def __init__(self, net: Network) -> None:
        self.g = GraphWalk(net, FAMILY)
        self.slots: list[Slot] = []
        self.layer_map: dict[str, str] = {}
        self.eps: dict[str, float] = {}

    def basic_conv(self, conv: Layer, path: str, k: tuple[int, int], cin: int, cout: int,
                   stride: int, pad: tuple[int, int]) -> Layer:
        """conv (taken), BN, ReLU as a BasicConv2d at ``path``; returns the ReLU."""
        g = self.g
        w = conv.learnables.get("Weights", np.zeros(0))
        shape = tuple(np.shape(w)) + (1,) * (4 - np.ndim(w))
        want_pad = (pad[0], pad[0], pad[1], pad[1])
        got = _conv_padding(conv)
        if shape[:4] != (*k, cin, cout) or size2(conv.params.get("Stride"), 1) != (
                stride, stride) or got != want_pad or size2(
                conv.params.get("DilationFactor"), 1) != (1, 1):
            g.fail([(conv, f"weights {shape[:4]}, stride {conv.params.get('Stride')}, padding "
                           f"{list(got)}; torchvision's {path} is {k[0]}x{k[1]}, {cin} -> "
                           f"{cout}, stride {stride}, padding {list(want_pad)}")])
        bn = g.next(conv, "BatchNormalizationLayer")
        check_bn(g, bn, cout)
        self.slots += [Slot(f"{path}.conv", "conv", conv),
                       Slot(f"{path}.bn", "bn", bn, conv_bias(conv))]
        self.eps[f"{path}.bn"] = float(bn.params.get("Epsilon", 1e-5))
        relu = g.next(bn, "ReLULayer")
        self.layer_map.update({conv.name: f"{path}.conv", bn.name: f"{path}.bn",
                               relu.name: path})
        return relu


def _conv_padding(lay: Layer, k: tuple[int, int] | None = None) -> tuple[int, ...]:
    """Padding [t b l r] of a conv or pool; 'same' at stride 1 with an odd window is symmetric."""
    if str(lay.params.get("PaddingMode", "manual")) == "same" and size2(
            lay.params.get("Stride"), 1) == (1, 1):
        kh, kw = k or size2(lay.params.get("FilterSize"), 1)
        return ((kh - 1) // 2, (kh - 1) // 2, (kw - 1) // 2, (kw - 1) // 2)
    return padding(lay, 1)


def match(net: Network) -> FamilyMatch:
    """Match ``net`` to torchvision's inception_v3 through its graph, or raise ConversionError
    naming the layers."""
    w = _Walk(net)
    g = w.g
    inp, size = g.image_input()
    x, cin = inp, 3
    for op in STEM:
        if isinstance(op, str):
            x = g.next(x, "MaxPooling2DLayer")
            if max_pool_setting(g, x, 3, 2, prefer_ceil=False) != (0, False):
                g.fail([(x, "torchvision's stem pools 3x3, stride 2, without padding")])
            w.layer_map[x.name] = op
            continue
        name, k, cout, stride = op
        pad = STEM_PAD.get(name, 0)
        x = w.basic_conv(g.next(x, "Convolution2DLayer"), name, k, cin, cout, stride,
                         (pad, pad))
        cin = cout
    for path, branches in BLOCKS:
        x, cin = _block(w, x, path, branches, cin)
        w.layer_map[x.name] = path
    gap = g.next(x, "GlobalAveragePooling2DLayer")
    after = g.successors(gap)
    dropout = 0.0
    last = gap
    if len(after) == 1 and after[0].type == "DropoutLayer":
        last = g.next(gap, "DropoutLayer")
        dropout = float(last.params.get("Probability", 0.5))
    fc, num_classes = classifier_head(g, last, cin)
    w.slots.append(Slot("fc", "fc", fc))
    w.layer_map.update({gap.name: "avgpool", fc.name: "fc"})
    class_names = classification_end(g, fc, num_classes)
    g.finish()
    arch = {"family": FAMILY, "num_classes": num_classes, "bn_eps": compact_eps(w.eps),
            "dropout": dropout}
    return FamilyMatch(FAMILY, inp, size, w.slots, w.layer_map, arch, class_names)


def _block(w: _Walk, x: Layer, path: str, branches: list[list[Op]],
           cin: int) -> tuple[Layer, int]:
    """One mixed block after ``x``; returns its concatenation and its channels. Each torchvision
    branch (in order) is filled from the first of ``x``'s successors that fits it; the
    concatenation must take the branches in torchvision's order."""
    g = w.g
    starts = g.successors(x)
    if len(starts) != len(branches):
        g.fail([(x, f"feeds {len(starts)} layers; torchvision's {path} has {len(branches)} "
                    "branches")])
    ends: list[Layer] = []
    cout = 0
    for spec in branches:
        best: tuple[int, ConversionError] | None = None
        for start in starts:
            saved = (len(w.slots), dict(w.layer_map), set(g.seen), dict(w.eps))
            try:
                end, c = _branch(w, x, start, spec, path, cin)
            except ConversionError as exc:  # keep the attempt that got furthest
                if best is None or len(w.slots) - saved[0] > best[0]:
                    best = (len(w.slots) - saved[0], exc)
                del w.slots[saved[0]:]
                w.layer_map, g.seen, w.eps = saved[1], saved[2], saved[3]
                continue
            starts = [s for s in starts if s is not start]
            ends.append(end)
            cout += c
            break
        else:
            assert best is not None
            raise best[1]
    concat = g.next(ends[0], "DepthConcatenationLayer")
    order = g.inputs_in_order(concat)
    if order != [e.name for e in ends]:
        g.fail([(concat, f"concatenates {', '.join(order)}; torchvision's {path} concatenates "
                         f"{', '.join(e.name for e in ends)}")])
    return concat, cout


def _branch(w: _Walk, x: Layer, start: Layer, spec: list[Op], path: str,
            cin: int) -> tuple[Layer, int]:
    """Fill one branch from ``start``; returns its last layer (which must feed a depth
    concatenation) and its channels."""
    g = w.g
    lay, prev, c = start, x, cin
    for i, op in enumerate(spec):
        if op == "avg":
            lay = g.take(lay.name, "AveragePooling2DLayer", prev)
            if (size2(lay.params.get("PoolSize"), 0), size2(lay.params.get("Stride"), 1),
                    _conv_padding(lay, (3, 3))) != ((3, 3), (1, 1), (1, 1, 1, 1)) or \
                    lay.params.get("PaddingValue", 0) not in (0, 0.0):
                g.fail([(lay, "torchvision's branch pool averages 3x3, stride 1, padding 1 "
                              "counting the zeros")])
        elif op == "max":
            lay = g.take(lay.name, "MaxPooling2DLayer", prev)
            if max_pool_setting(g, lay, 3, 2, prefer_ceil=False) != (0, False):
                g.fail([(lay, "torchvision's branch pool is 3x3, stride 2, unpadded")])
        elif isinstance(op, tuple) and op[0] == "split":
            lay, c = _split(w, prev, op[1], op[2], path, c)
        else:
            name, k, cout, stride = op
            pad = ((k[0] - 1) // 2, (k[1] - 1) // 2) if stride == 1 else (0, 0)
            conv = g.take(lay.name, "Convolution2DLayer", prev)
            lay = w.basic_conv(conv, f"{path}.{name}", k, c, cout, stride, pad)
            c = cout
        prev = lay
        if i + 1 < len(spec) and not (isinstance(spec[i + 1], tuple)
                                      and spec[i + 1][0] == "split"):
            succ = g.successors(lay)
            if len(succ) != 1:
                g.fail([(lay, f"feeds {len(succ)} layers inside a branch")])
            lay = succ[0]
    succ = g.successors(prev)
    if [s.type for s in succ] != ["DepthConcatenationLayer"]:
        g.fail([(prev, "does not end its branch in a concatenation")])
    return prev, c


def _split(w: _Walk, x: Layer, a: list[Op], b: list[Op], path: str,
           cin: int) -> tuple[Layer, int]:
    """InceptionE's pair of 1x3 and 3x1 branches after ``x``, concatenated in that order."""
    g = w.g
    succ = g.successors(x)
    if len(succ) != 2:
        g.fail([(x, f"feeds {len(succ)} layers; torchvision splits into a 1x3 and a 3x1 conv")])
    by_shape = {size2(s.params.get("FilterSize"), 0): s for s in succ}
    ends = []
    c = 0
    for spec in (a, b):
        name, k, cout, _ = spec[0]
        if k not in by_shape:
            g.fail([(x, f"no {k[0]}x{k[1]} convolution after it for {path}.{name}")])
        conv = g.take(by_shape[k].name, "Convolution2DLayer", x)
        ends.append(w.basic_conv(conv, f"{path}.{name}", k, cin, cout, 1,
                                 ((k[0] - 1) // 2, (k[1] - 1) // 2)))
        c += cout
    inner = g.next(ends[0], "DepthConcatenationLayer")
    if g.inputs_in_order(inner) != [e.name for e in ends]:
        g.fail([(inner, f"concatenates {', '.join(g.inputs_in_order(inner))}; torchvision "
                        f"concatenates the 1x3 then the 3x1 branch")])
    return inner, c


register_family(Family(name=FAMILY, matlab="inceptionv3",
                       model_class=torchvision.models.Inception3, match=match, build=build))
