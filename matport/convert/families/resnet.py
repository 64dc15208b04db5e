"""MATLAB's ResNets (``resnet18``, ``resnet50``, ``resnet101``) as ``torchvision.models.ResNet``.

The graph is walked from the input layer: stem (7x7 conv, BN, ReLU, 3x3 max pooling), residual
blocks -- basic (two 3x3 convs) or bottleneck (1x1, 3x3, 1x1) main branch, identity or projection
shortcut, addition, ReLU --, global average pooling, the fully connected head (any name), softmax
and output. The blocks found (kind and stage layout) pick the family in :data:`LAYOUTS`.

What a ``state_dict`` does not hold is kept in the architecture and set on the modules: where
the stride of a bottleneck stage sits (MATLAB's ResNet v1: the first 1x1 conv; torchvision's v1.5:
the 3x3), each BatchNorm's epsilon (MATLAB: 0.001 or 1e-5) and the stem's max pooling (MATLAB's
resnet101 pads ``[0 1 0 1]``, which is ``padding=0, ceil_mode=True``). Conv biases fold into the
BatchNorm that follows.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, Literal

import torch
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
    global_average_pool,
    max_pool_setting,
    size2,
    torch_pool_count,
)
from matport.errors import ArgumentError
from matport.network.model import Layer, Network

BlockKind = Literal["basic", "bottleneck"]
StrideOn = Literal["conv1", "conv2"]

#: family -> (block kind, blocks per stage)
LAYOUTS: dict[str, tuple[BlockKind, tuple[int, ...]]] = {
    "resnet18": ("basic", (2, 2, 2, 2)),
    "resnet50": ("bottleneck", (3, 4, 6, 3)),
    "resnet101": ("bottleneck", (3, 4, 23, 3)),
}
STAGE_WIDTHS = (64, 128, 256, 512)
EXPANSION: dict[BlockKind, int] = {"basic": 1, "bottleneck": 4}
STRIDE_ON: tuple[StrideOn, ...] = ("conv1", "conv2")  # MATLAB (ResNet v1) / torchvision (v1.5)
TORCHVISION_MAXPOOL = (1, False)  # padding, ceil_mode
POOLS = ("GlobalAveragePooling2DLayer", "AveragePooling2DLayer")


# ---------------------------------------------------------------------------------------------
# building


def matlab_resnet(
    family: str,
    num_classes: int = 1000,
    *,
    stride_on: StrideOn = "conv1",
    bn_eps: float | dict[str, float] = 0.001,
    maxpool: tuple[int, bool] = TORCHVISION_MAXPOOL,
    device: torch.device | str = "meta",
) -> torchvision.models.ResNet:
    """torchvision's ``family`` on the meta device with MATLAB's hyper-parameters.

    Args:
        family: ``resnet18``, ``resnet50`` or ``resnet101``.
        num_classes: outputs of ``fc``.
        stride_on: in bottleneck families, the conv of a stage's first block that strides
            (``"conv1"``: MATLAB's 1x1; ``"conv2"``: torchvision's 3x3).
        bn_eps: BatchNorm epsilon, one value or module path -> value.
        maxpool: the stem's max pooling ``(padding, ceil_mode)``.
        device: ``"meta"`` (default: no memory, no initialisation) or where to initialise
            randomly as torchvision does.

    Returns:
        A ``torchvision.models.ResNet``; on the meta device, load a state_dict with
        ``assign=True``.
    """
    if stride_on not in STRIDE_ON:
        raise ArgumentError(f"stride_on must be one of {STRIDE_ON}, not {stride_on!r}")
    if torch.device(device).type == "meta":
        model = meta_copy(family, num_classes)
        assert isinstance(model, torchvision.models.ResNet)
    else:
        with torch.device(device):
            model = getattr(torchvision.models, family)(num_classes=num_classes)
    if LAYOUTS[family][0] == "bottleneck":
        for stage in (model.layer2, model.layer3, model.layer4):
            block = stage[0]
            block.conv1.stride, block.conv2.stride = ((2, 2), (1, 1)) if stride_on == "conv1" \
                else ((1, 1), (2, 2))
    set_bn_eps(model, bn_eps)
    model.maxpool.padding, model.maxpool.ceil_mode = int(maxpool[0]), bool(maxpool[1])
    return model


def build(arch: dict[str, Any]) -> torchvision.models.ResNet:
    """The empty module an ``architecture`` dict describes (older resnet50 architectures have
    no ``maxpool``: torchvision's)."""
    eps = arch["bn_eps"]
    return matlab_resnet(
        arch["family"], int(arch["num_classes"]),
        stride_on=arch.get("stride_on", "conv1"),
        bn_eps=float(eps) if isinstance(eps, float | int) else dict(eps),
        maxpool=tuple(arch.get("maxpool", TORCHVISION_MAXPOOL)),
    )


# ---------------------------------------------------------------------------------------------
# matching


@dataclass
class _Block:
    path: str
    main: list[Layer]  # conv, bn, relu, conv, bn (, relu, conv, bn)
    projection: list[Layer] | None  # conv, bn
    add: Layer
    relu: Layer

    @property
    def convs(self) -> list[Layer]:
        return self.main[0::3]


def match(net: Network, family: str) -> FamilyMatch:
    """Match ``net`` to torchvision's ``family`` through its graph, or raise ConversionError."""
    kind, layout = LAYOUTS[family]
    expansion = EXPANSION[kind]
    walk = GraphWalk(net, family)
    inp, size = walk.image_input()
    slots: list[Slot] = []
    layer_map: dict[str, str] = {}
    eps: dict[str, float] = {}

    def conv_bn(conv: Layer, bn: Layer, conv_path: str, bn_path: str, c: int) -> None:
        check_bn(walk, bn, c)
        slots.extend([Slot(conv_path, "conv", conv), Slot(bn_path, "bn", bn, conv_bias(conv))])
        eps[bn_path] = float(bn.params.get("Epsilon", 1e-5))
        layer_map[bn.name] = bn_path

    conv1 = walk.next(inp, "Convolution2DLayer")
    check_conv(walk, conv1, 7, 3, 64, {2})
    bn1 = walk.next(conv1, "BatchNormalizationLayer")
    conv_bn(conv1, bn1, "conv1", "bn1", 64)
    relu = walk.next(bn1, "ReLULayer")
    pool = walk.next(relu, "MaxPooling2DLayer")
    maxpool = max_pool_setting(walk, pool, 3, 2, prefer_ceil=False)
    hw = _feature_size(size[:2], maxpool)
    layer_map.update({relu.name: "relu", pool.name: "maxpool"})

    blocks = _blocks(walk, pool)
    _assign_stages(walk, blocks, kind, layout)
    stride_on = _stride_placement(walk, blocks) if kind == "bottleneck" else "conv1"
    cin = 64
    for b in blocks:
        stage, index = (int(x) for x in b.path[5:].split("."))
        width = STAGE_WIDTHS[stage - 1]
        first = index == 0 and stage > 1
        widths = [width] * (len(b.convs) - 1) + [width * expansion]
        ks = (3, 3) if kind == "basic" else (1, 3, 1)
        stride = 1
        for n, (conv, k, cout) in enumerate(zip(b.convs, ks, widths, strict=True)):
            allowed = ({2} if kind == "basic" and n == 0 else {1, 2} if kind == "bottleneck"
                       and n < 2 else {1}) if first else {1}
            stride = max(stride, check_conv(walk, conv, k, cin if n == 0 else width, cout,
                                            allowed))
            conv_bn(conv, b.main[3 * n + 1], f"{b.path}.conv{n + 1}", f"{b.path}.bn{n + 1}", cout)
        if b.projection is not None:
            pc, pb = b.projection
            check_conv(walk, pc, 1, cin, width * expansion, {stride})
            conv_bn(pc, pb, f"{b.path}.downsample.0", f"{b.path}.downsample.1", width * expansion)
        layer_map[b.relu.name] = b.path
        cin = width * expansion

    gap = global_average_pool(walk, blocks[-1].relu, hw)
    fc, num_classes = classifier_head(walk, gap, cin)
    class_names = classification_end(walk, fc, num_classes)
    slots.append(Slot("fc", "fc", fc))
    layer_map.update({gap.name: "avgpool", fc.name: "fc"})
    walk.finish()

    arch: dict[str, Any] = {"family": family, "num_classes": num_classes}
    if kind == "bottleneck":
        arch["stride_on"] = stride_on
    arch.update({"bn_eps": compact_eps(eps), "maxpool": list(maxpool)})
    return FamilyMatch(family, inp, size, slots, layer_map, arch, class_names)


def _feature_size(hw: tuple[int, ...], maxpool: tuple[int, bool]) -> tuple[int, int]:
    """The last stage's H x W for an ``hw`` input: the 7x7 stride-2 stem conv, the max pooling
    (as torchvision computes it, which the matcher made equal to MATLAB's) and three stride-2
    stages."""
    out = []
    for n in hw:
        n = torch_pool_count((n - 1) // 2 + 1, 3, 2, *maxpool)
        for _ in range(3):
            n = (n - 1) // 2 + 1
        out.append(n)
    return out[0], out[1]


def _blocks(walk: GraphWalk, start: Layer) -> list[_Block]:
    """Follow residual blocks from ``start`` until the global pooling layer."""
    blocks: list[_Block] = []
    x = start
    while True:
        succ = walk.successors(x)
        if len(succ) == 1 and succ[0].type in POOLS and blocks:
            return blocks
        if len(succ) != 2:
            found = ", ".join(f"{s.name} ({s.type})" for s in succ) or "none"
            walk.fail([(x, f"expected a residual block (two branches) after it, found: {found}")])
        main: list[Layer] | None = None
        projection: list[Layer] | None = None
        shortcut_end = x
        for s in succ:
            if s.type == "AdditionLayer":
                continue
            conv = walk.take(s.name, "Convolution2DLayer", x)
            bn = walk.next(conv, "BatchNormalizationLayer")
            after = walk.successors(bn)
            if len(after) == 1 and after[0].type == "ReLULayer" and main is None:
                main = [conv, bn]
            elif len(after) == 1 and after[0].type == "AdditionLayer" and projection is None:
                projection = [conv, bn]
                shortcut_end = bn
            else:
                walk.fail([(conv, "neither the main branch nor the projection of a block")])
        if main is None:
            walk.fail([(s, f"branch of the block after {x.name}") for s in succ],
                      "a residual block without its main branch")
        while len(main) < 8 and [a.type for a in walk.successors(main[-1])] == ["ReLULayer"]:
            main += [walk.next(main[-1], "ReLULayer")]
            main += [walk.next(main[-1], "Convolution2DLayer")]
            main += [walk.next(main[-1], "BatchNormalizationLayer")]
        add = walk.next(main[-1], "AdditionLayer")
        if sorted(walk.pred.get(add.name, [])) != sorted([main[-1].name, shortcut_end.name]):
            walk.fail([(add, f"adds {', '.join(walk.pred.get(add.name, []))}; a residual block "
                             f"adds {main[-1].name} and {shortcut_end.name}")])
        relu = walk.next(add, "ReLULayer")
        blocks.append(_Block("", main, projection, add, relu))
        x = relu


def _assign_stages(walk: GraphWalk, blocks: list[_Block], kind: BlockKind,
                   layout: tuple[int, ...]) -> None:
    """Check block kinds and the stage layout; give each block its torchvision path."""
    convs = 2 if kind == "basic" else 3
    wrong = [b for b in blocks if len(b.convs) != convs]
    if wrong:
        walk.fail([(b.add, f"a block of {len(b.convs)} convolutions, torchvision's "
                           f"{walk.family} has {kind} blocks of {convs}") for b in wrong])
    stages: list[list[_Block]] = []
    for i, b in enumerate(blocks):
        # a stage starts at each projection; a basic network's first block has none
        if b.projection is not None or i == 0:
            stages.append([])
        stages[-1].append(b)
    found = tuple(len(s) for s in stages)
    if found != layout:
        problems = []
        for i, stage in enumerate(stages):
            want = layout[i] if i < len(layout) else 0
            if len(stage) != want:
                problems += [(b.add, f"block {j + 1} of {len(stage)} in stage {i + 1} "
                                     f"(torchvision's {walk.family} has {want})")
                             for j, b in enumerate(stage)]
        walk.fail(problems, f"stage layout {found}, torchvision's {walk.family} has {layout}")
    if (blocks[0].projection is None) != (kind == "basic"):
        walk.fail([(blocks[0].add, "torchvision's first block has a projection shortcut exactly "
                                   "when it widens the channels (bottleneck blocks)")])
    for i, stage in enumerate(stages):
        for j, b in enumerate(stage):
            b.path = f"layer{i + 1}.{j}"


def _stride_placement(walk: GraphWalk, blocks: list[_Block]) -> StrideOn:
    """Where the stride of stages 2-4 sits in a bottleneck network (the same in every stage)."""
    firsts = [b for b in blocks if b.path.endswith(".0") and b.path != "layer1.0"]
    where: dict[tuple[int, int], StrideOn] = {(2, 1): "conv1", (1, 2): "conv2"}  # 1x1, 3x3
    placements = {where.get((_stride(b.convs[0]), _stride(b.convs[1]))) for b in firsts}
    if len(placements) != 1 or None in placements:
        walk.fail([(c, "stride 2 must sit on exactly one of the first block's 1x1 and 3x3 "
                       "convolutions, the same one in every stage")
                   for b in firsts for c in b.convs[:2]])
    found = placements.pop()
    assert found is not None
    return found


def _stride(conv: Layer) -> int:
    return size2(conv.params.get("Stride"), 1)[0]


def _register(name: str, matlab: str) -> None:
    register_family(Family(
        name=name,
        matlab=matlab,
        model_class=torchvision.models.ResNet,
        match=functools.partial(match, family=name),
        build=build,
    ))


for _name in LAYOUTS:
    _register(_name, _name)
