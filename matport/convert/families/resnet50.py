"""A MATLAB ResNet-50 as a native ``torchvision.models.ResNet`` that computes what MATLAB computed.

Two steps, kept apart:

1. :func:`match_resnet50` walks the layer graph from the input layer (not by layer names): stem,
   16 bottleneck blocks (main branch conv/BN/ReLU x3, projection or identity shortcut, addition,
   ReLU), global pooling, the fully connected head (any name), softmax and output layer. Whatever
   does not fit torchvision's resnet50 raises :class:`ConversionError` naming the layers.
2. A declarative transplant: each matched layer fills one torchvision module through the
   parameter rules of :data:`PARAMETER_RULES` and the named tensor transforms of
   :data:`TRANSFORMS`, into a model built on the meta device (no random initialisation) with
   MATLAB's strides and BatchNorm epsilons (:func:`matlab_resnet50`).

MATLAB's ResNet-50 differs from torchvision's in what a ``state_dict`` does not hold: the stride
of stages 3-5 sits on the first 1x1 convolution (torchvision: on the 3x3) and BatchNorm epsilon is
0.001 (torchvision: 1e-5). Rebuild with :func:`matlab_resnet50` or use
:mod:`matport.checkpoint`; a stock ``torchvision.models.resnet50()`` silently differs.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import os
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, NoReturn

import numpy as np
import torch
import torchvision
from torch import nn

from matport.convert.info import ModelInfo
from matport.errors import ArgumentError, ConversionError
from matport.network.model import Layer, Network, Normalization

FAMILY = "resnet50"
STAGE_BLOCKS = (3, 4, 6, 3)
STAGE_WIDTHS = (64, 128, 256, 512)
EXPANSION = 4
FEATURES = STAGE_WIDTHS[-1] * EXPANSION
MATLAB_EPSILON = 0.001
STRIDE_ON = ("conv1", "conv2")  # MATLAB (ResNet v1) / torchvision (v1.5)


# ---------------------------------------------------------------------------------------------
# the declarative transplant


def _array(a: np.ndarray) -> np.ndarray:
    a = np.asarray(a)
    if a.dtype != np.float32 or not a.dtype.isnative or not a.flags.writeable:
        a = a.astype(np.float32)
    return a


def _tensor(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(_array(a))


def conv_hwio_to_oihw(w: np.ndarray) -> torch.Tensor:
    """MATLAB H x W x Cin x Cout -> torch Cout x Cin x H x W (a view when the array allows)."""
    return _tensor(np.ascontiguousarray(_array(w).transpose(3, 2, 0, 1)))


def channel_vector(a: np.ndarray) -> torch.Tensor:
    """1 x 1 x C (or C x 1) -> C."""
    return _tensor(_array(a).reshape(-1))


def bn_fold_conv_bias(mean: np.ndarray, bias: np.ndarray | None) -> torch.Tensor:
    """``BN(conv(x) + b)`` with running mean ``m`` equals ``BN'(conv(x))`` with ``m - b``."""
    m = _array(mean).reshape(-1)
    return torch.from_numpy(m - _array(bias).reshape(-1) if bias is not None else m)


def fc_weight(w: np.ndarray) -> torch.Tensor:
    """MATLAB O x I (or 1 x 1 x I x O after spatial input) -> torch O x I."""
    a = _array(w)
    if a.ndim == 4:
        a = a.reshape(-1, a.shape[3], order="F").T
    return _tensor(np.ascontiguousarray(a))


def zero_count() -> torch.Tensor:
    """A BatchNorm's ``num_batches_tracked``."""
    return torch.zeros((), dtype=torch.long)


TRANSFORMS: dict[str, Callable[..., torch.Tensor]] = {
    "conv_hwio_to_oihw": conv_hwio_to_oihw,
    "channel_vector": channel_vector,
    "bn_fold_conv_bias": bn_fold_conv_bias,
    "fc_weight": fc_weight,
    "zero_count": zero_count,
}

# module kind -> (torch tensor name, transform, MATLAB arrays it takes). "conv:" names an array of
# the convolution that feeds the BatchNorm.
PARAMETER_RULES: dict[str, tuple[tuple[str, str, tuple[str, ...]], ...]] = {
    "conv": (("weight", "conv_hwio_to_oihw", ("Weights",)),),
    "bn": (
        ("weight", "channel_vector", ("Scale",)),
        ("bias", "channel_vector", ("Offset",)),
        ("running_mean", "bn_fold_conv_bias", ("TrainedMean", "conv:Bias")),
        ("running_var", "channel_vector", ("TrainedVariance",)),
        ("num_batches_tracked", "zero_count", ()),
    ),
    "fc": (("weight", "fc_weight", ("Weights",)), ("bias", "channel_vector", ("Bias",))),
}


@dataclass
class Slot:
    """One torchvision module filled from one MATLAB layer (``conv``: the conv feeding a BN)."""

    path: str
    kind: str
    layer: Layer
    conv: Layer | None = None

    def source(self, name: str) -> np.ndarray | None:
        layer = self.layer
        if name.startswith("conv:"):
            assert self.conv is not None
            layer, name = self.conv, name[5:]
        a = layer.learnables.get(name, layer.state.get(name))
        return None if a is None or np.size(a) == 0 else a


def transplant(slots: Sequence[Slot]) -> dict[str, torch.Tensor]:
    """The torchvision ``state_dict`` the slots describe, by :data:`PARAMETER_RULES`."""
    state: dict[str, torch.Tensor] = {}
    for slot in slots:
        for name, transform, sources in PARAMETER_RULES[slot.kind]:
            state[f"{slot.path}.{name}"] = TRANSFORMS[transform](*map(slot.source, sources))
    return state


# ---------------------------------------------------------------------------------------------
# the MATLAB variant of torchvision's resnet50


def matlab_resnet50(
    num_classes: int = 1000,
    *,
    stride_on: str = "conv1",
    bn_eps: float | dict[str, float] = MATLAB_EPSILON,
    device: torch.device | str | None = None,
) -> torchvision.models.ResNet:
    """torchvision's resnet50 with MATLAB's hyper-parameters: the stride of stages 3-5 on the
    first 1x1 conv (``stride_on="conv1"``; ``"conv2"`` is torchvision's placement) and BatchNorm
    epsilon ``bn_eps`` (one value, or module path -> value). Randomly initialised like
    torchvision's unless ``device="meta"`` (then copied from a cached empty template)."""
    if stride_on not in STRIDE_ON:
        raise ArgumentError(f"stride_on must be one of {STRIDE_ON}, not {stride_on!r}")
    if device is not None and torch.device(device).type == "meta":
        model = copy.deepcopy(_meta_template(num_classes))
    else:
        with torch.device(device) if device is not None else contextlib.nullcontext():
            model = torchvision.models.resnet50(num_classes=num_classes)
    for stage in (model.layer2, model.layer3, model.layer4):
        block = stage[0]
        block.conv1.stride, block.conv2.stride = ((2, 2), (1, 1)) if stride_on == "conv1" else (
            (1, 1), (2, 2))
    for path, module in model.named_modules():
        if isinstance(module, nn.BatchNorm2d):
            module.eps = bn_eps if isinstance(bn_eps, float | int) else bn_eps[path]
    return model


@functools.lru_cache(maxsize=4)
def _meta_template(num_classes: int) -> torchvision.models.ResNet:
    with torch.device("meta"):
        return torchvision.models.resnet50(num_classes=num_classes)


def resnet50_from_architecture(
    arch: dict[str, Any], device: str | None = None
) -> torchvision.models.ResNet:
    """Rebuild the module an ``architecture`` dict (``ModelInfo.architecture``) describes."""
    if arch.get("family") != FAMILY:
        raise ConversionError(f"architecture family {arch.get('family')!r} is not {FAMILY!r}")
    eps = arch["bn_eps"]
    return matlab_resnet50(
        int(arch["num_classes"]),
        stride_on=arch["stride_on"],
        bn_eps=float(eps) if isinstance(eps, float | int) else dict(eps),
        device=device,
    )


# ---------------------------------------------------------------------------------------------
# matching through the graph


@dataclass
class ResNet50Match:
    """The result of matching: what fills which torchvision module, and what else MATLAB knew."""

    input: Layer
    input_size: tuple[int, ...]
    slots: list[Slot]
    layer_map: dict[str, str]
    stride_on: str
    num_classes: int
    class_names: list[str] | None
    eps: dict[str, float] = field(default_factory=dict)

    @property
    def architecture(self) -> dict[str, Any]:
        values = set(self.eps.values())
        bn_eps: float | dict[str, float] = values.pop() if len(values) == 1 else dict(self.eps)
        return {"family": FAMILY, "num_classes": self.num_classes, "stride_on": self.stride_on,
                "bn_eps": bn_eps}


@dataclass
class _Block:
    path: str
    main: list[Layer]  # conv a, bn a, relu, conv b, bn b, relu, conv c, bn c
    projection: list[Layer] | None  # conv, bn
    add: Layer
    relu: Layer


class _Walk:
    """Follows the layer graph of one network, remembering every layer it accepted."""

    def __init__(self, net: Network) -> None:
        self.net = net
        self.where = f"{net.source}:{net.path}" if net.source or net.path else "network"
        self.layers = {lay.name: lay for lay in net.layers}
        self.succ: dict[str, list[str]] = defaultdict(list)
        for c in net.connections:
            self.succ[c.source].append(c.dest)
        self.pred = {lay.name: [c.source for c in net.predecessors(lay.name)] for lay in net.layers}
        self.seen: set[str] = set()

    def fail(self, problems: Sequence[tuple[Layer, str]], what: str = "") -> NoReturn:
        raise ConversionError(
            f"{self.where}: not a ResNet-50 that torchvision's resnet50 can hold"
            + (f" ({what})" if what else ""),
            [(lay.name, lay.type, reason) for lay, reason in problems],
        )

    def take(self, name: str, kind: str, after: Layer | None) -> Layer:
        lay = self.layers[name]
        if lay.type != kind:
            where = f" after {after.name}" if after else ""
            self.fail([(lay, f"expected a {kind}{where}")])
        if kind != "AdditionLayer" and len(self.pred.get(name, [])) > 1:
            self.fail([(lay, f"has {len(self.pred[name])} inputs: {', '.join(self.pred[name])}")])
        self.seen.add(name)
        return lay

    def successors(self, lay: Layer) -> list[Layer]:
        names = self.succ.get(lay.name, [])
        unknown = [n for n in names if n not in self.layers]
        if unknown:
            self.fail([(lay, f"connected to {', '.join(unknown)}, which is no layer")])
        return [self.layers[n] for n in names]

    def next(self, lay: Layer, kind: str) -> Layer:
        succ = self.successors(lay)
        if len(succ) != 1:
            found = ", ".join(s.name for s in succ) or "none"
            self.fail([(lay, f"expected one successor ({kind}), found: {found}")])
        return self.take(succ[0].name, kind, lay)


def _size2(v: Any, default: int) -> tuple[int, int]:
    if v is None:
        return (default, default)
    t = tuple(int(x) for x in np.ravel(v))
    return (t[0], t[0]) if len(t) == 1 else (t[0], t[1])


def _padding(lay: Layer, size: int) -> tuple[int, ...]:
    pad = lay.params.get("PaddingSize")
    if pad is not None and np.size(pad) == 4:
        return tuple(int(x) for x in np.ravel(pad))
    if pad is not None and np.size(pad) in (1, 2):
        p = tuple(int(x) for x in np.ravel(pad))
        return (p[0], p[0], p[-1], p[-1])
    mode = str(lay.params.get("PaddingMode", "manual"))
    return ((size - 1) // 2,) * 4 if mode == "same" else (0,) * 4


def _check_conv(walk: _Walk, lay: Layer, k: int, cin: int, cout: int, stride: set[int]) -> int:
    """Check a convolution against torchvision's; returns its stride."""
    problems = []
    w = lay.learnables.get("Weights")
    if w is None or np.size(w) == 0:
        walk.fail([(lay, "has no weights (an untrained layer graph?)")])
    filt = _size2(lay.params.get("FilterSize"), k)
    if filt != (k, k) or np.shape(w)[:2] != (k, k):
        problems.append(f"filter {filt[0]}x{filt[1]}, torchvision's is {k}x{k}")
    shape = tuple(np.shape(w)) + (1,) * (4 - np.ndim(w))
    if shape[2:4] != (cin, cout):
        problems.append(f"maps {shape[2]} -> {shape[3]} channels, torchvision's {cin} -> {cout}")
    s = _size2(lay.params.get("Stride"), 1)
    if s[0] != s[1] or s[0] not in stride:
        problems.append(f"stride {s[0]}x{s[1]}, torchvision's is one of {sorted(stride)}")
    if _size2(lay.params.get("DilationFactor"), 1) != (1, 1):
        problems.append("dilated")
    pad = _padding(lay, k)
    if pad != ((k - 1) // 2,) * 4:
        problems.append(f"padding {list(pad)} [t b l r], torchvision's is {(k - 1) // 2} all round")
    if problems:
        walk.fail([(lay, "; ".join(problems))])
    return s[0]


def _check_bn(walk: _Walk, lay: Layer, c: int) -> None:
    sizes = {k: np.size(a) for k, a in {**lay.learnables, **lay.state}.items()}
    needed = ("Offset", "Scale", "TrainedMean", "TrainedVariance")
    bad = [k for k in needed if sizes.get(k) != c]
    if bad:
        walk.fail([(lay, f"{', '.join(bad)} should hold {c} values")])


def match_resnet50(net: Network) -> ResNet50Match:
    """Match ``net`` to torchvision's resnet50 through its graph, or raise ConversionError."""
    walk = _Walk(net)
    inputs = net.input_layers
    if len(inputs) != 1 or inputs[0].type != "ImageInputLayer":
        names = ", ".join(f"{i.name} ({i.type})" for i in inputs) or "none"
        raise ConversionError(f"{walk.where}: ResNet-50 has one image input layer; found {names}",
                              [(i.name, i.type, "input layer") for i in inputs])
    inp = walk.take(inputs[0].name, "ImageInputLayer", None)
    size = tuple(int(s) for s in inp.params.get("InputSize", ()))
    if len(size) != 3 or size[2] != 3:
        walk.fail([(inp, f"input size {list(size)}: torchvision's resnet50 takes 3 channels")])
    slots: list[Slot] = []
    layer_map: dict[str, str] = {}
    eps: dict[str, float] = {}

    def conv_bn(conv: Layer, bn: Layer, conv_path: str, bn_path: str, c: int) -> None:
        _check_bn(walk, bn, c)
        slots.append(Slot(conv_path, "conv", conv))
        slots.append(Slot(bn_path, "bn", bn, conv))
        eps[bn_path] = float(bn.params.get("Epsilon", 1e-5))
        layer_map[bn.name] = bn_path

    # stem
    conv1 = walk.next(inp, "Convolution2DLayer")
    _check_conv(walk, conv1, 7, 3, 64, {2})
    bn1 = walk.next(conv1, "BatchNormalizationLayer")
    conv_bn(conv1, bn1, "conv1", "bn1", 64)
    relu = walk.next(bn1, "ReLULayer")
    pool = walk.next(relu, "MaxPooling2DLayer")
    if (_size2(pool.params.get("PoolSize"), 0), _size2(pool.params.get("Stride"), 1),
            _padding(pool, 0)) != ((3, 3), (2, 2), (1, 1, 1, 1)):
        walk.fail([(pool, "torchvision's max pooling is 3x3, stride 2, padding 1")])
    layer_map.update({relu.name: "relu", pool.name: "maxpool"})

    blocks = _blocks(walk, pool)
    stride_on = _check_layout(walk, blocks)
    cin = 64
    for b in blocks:
        stage, index = (int(x) for x in b.path[5:].split("."))
        width = STAGE_WIDTHS[stage - 1]
        first = index == 0
        strides = {1, 2} if first and stage > 1 else {1}
        ca, ba, _, cb, bb, _, cc, bc = b.main
        s_a = _check_conv(walk, ca, 1, cin, width, strides)
        s_b = _check_conv(walk, cb, 3, width, width, strides)
        _check_conv(walk, cc, 1, width, width * EXPANSION, {1})
        for conv, bn, n, c in ((ca, ba, 1, width), (cb, bb, 2, width), (cc, bc, 3, width * 4)):
            conv_bn(conv, bn, f"{b.path}.conv{n}", f"{b.path}.bn{n}", c)
        if b.projection is not None:
            pc, pb = b.projection
            _check_conv(walk, pc, 1, cin, width * EXPANSION, {max(s_a, s_b)})
            conv_bn(pc, pb, f"{b.path}.downsample.0", f"{b.path}.downsample.1", width * EXPANSION)
        layer_map[b.relu.name] = b.path
        cin = width * EXPANSION

    gap = walk.next(blocks[-1].relu, "GlobalAveragePooling2DLayer")
    fc, class_names = _head(walk, gap)
    num_classes = int(np.size(fc.learnables.get("Weights", ())) // FEATURES)
    slots.append(Slot("fc", "fc", fc))
    layer_map.update({gap.name: "avgpool", fc.name: "fc"})

    rest = [lay for lay in net.layers if lay.name not in walk.seen]
    if rest:
        walk.fail([(lay, "not on ResNet-50's path") for lay in rest], "extra layers")
    return ResNet50Match(inp, size, slots, layer_map, stride_on, num_classes, class_names, eps)


def _blocks(walk: _Walk, start: Layer) -> list[_Block]:
    """Follow bottleneck blocks from ``start`` until the global pooling layer."""
    blocks: list[_Block] = []
    x = start
    while True:
        succ = walk.successors(x)
        if len(succ) == 1 and succ[0].type == "GlobalAveragePooling2DLayer" and blocks:
            return blocks
        if len(succ) != 2:
            found = ", ".join(f"{s.name} ({s.type})" for s in succ) or "none"
            walk.fail([(x, f"expected a bottleneck block (two branches) after it, found: {found}")])
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
                main = [conv, bn, walk.next(bn, "ReLULayer")]
            elif len(after) == 1 and after[0].type == "AdditionLayer" and projection is None:
                projection = [conv, bn]
                shortcut_end = bn
            else:
                walk.fail([(conv, "neither the main branch nor the projection of a bottleneck")])
        if main is None:
            walk.fail([(s, f"branch of the block after {x.name}") for s in succ],
                      "a bottleneck block without its main branch")
        main += [walk.next(main[2], "Convolution2DLayer")]
        main += [walk.next(main[3], "BatchNormalizationLayer")]
        main += [walk.next(main[4], "ReLULayer")]
        main += [walk.next(main[5], "Convolution2DLayer")]
        main += [walk.next(main[6], "BatchNormalizationLayer")]
        add = walk.next(main[7], "AdditionLayer")
        if sorted(walk.pred.get(add.name, [])) != sorted([main[7].name, shortcut_end.name]):
            walk.fail([(add, f"adds {', '.join(walk.pred.get(add.name, []))}; a bottleneck adds "
                             f"{main[7].name} and {shortcut_end.name}")])
        relu = walk.next(add, "ReLULayer")
        blocks.append(_Block("", main, projection, add, relu))
        x = relu


def _check_layout(walk: _Walk, blocks: list[_Block]) -> str:
    """Assign torchvision paths (layerS.i) to the blocks; returns where the stride sits."""
    stages: list[list[_Block]] = []
    for b in blocks:
        if b.projection is not None or not stages:
            stages.append([])
        stages[-1].append(b)
    found = tuple(len(s) for s in stages)
    if found != STAGE_BLOCKS:
        problems = []
        for i, stage in enumerate(stages):
            want = STAGE_BLOCKS[i] if i < len(STAGE_BLOCKS) else 0
            if len(stage) != want:
                problems += [(b.add, f"block {j + 1} of {len(stage)} in stage {i + 1} "
                                     f"(torchvision's resnet50 has {want})")
                             for j, b in enumerate(stage)]
        walk.fail(problems, f"stage layout {found}, torchvision's resnet50 has {STAGE_BLOCKS}")
    placements = set()
    for i, stage in enumerate(stages):
        for j, b in enumerate(stage):
            b.path = f"layer{i + 1}.{j}"
            if i and not j:
                strides = tuple(_size2(c.params.get("Stride"), 1)[0] for c in b.main[0:4:3])
                where = {(2, 1): "conv1", (1, 2): "conv2"}  # (1x1 stride, 3x3 stride)
                placements.add(where.get((strides[0], strides[1]), str(strides)))
    if placements - set(STRIDE_ON) or len(placements) != 1:
        firsts = [c for stage in stages[1:] for c in stage[0].main[0:4:3]]
        walk.fail([(c, "stride 2 must sit on exactly one of the first block's 1x1 and 3x3 "
                       "convolutions, the same one in every stage") for c in firsts])
    return placements.pop()


def _head(walk: _Walk, gap: Layer) -> tuple[Layer, list[str] | None]:
    fc = walk.next(gap, "FullyConnectedLayer")
    w = fc.learnables.get("Weights", np.zeros(0))
    features = np.shape(w)[1] if np.ndim(w) == 2 else np.prod(np.shape(w)[:3], dtype=int)
    if np.size(w) == 0 or features != FEATURES:
        walk.fail([(fc, f"weights {np.shape(w)}: the head must map {FEATURES} features")])
    k = int(np.size(w) // FEATURES)
    if np.size(fc.learnables.get("Bias", ())) not in (0, k):
        walk.fail([(fc, f"bias should hold {k} values")])
    end = fc
    for kind in ("SoftmaxLayer", "ClassificationOutputLayer"):
        after = walk.successors(end)
        if not after:
            break
        regression = [s for s in after if s.type == "RegressionOutputLayer"]
        if regression:
            walk.fail([(s, "a regression head; torchvision's resnet50 classifies")
                       for s in regression])
        end = walk.next(end, kind)
    if walk.successors(end):
        walk.fail([(s, f"after the output layer {end.name}") for s in walk.successors(end)])
    output = end if end.type == "ClassificationOutputLayer" else None
    names = walk.net.class_names
    if names is not None and len(names) != k:
        lay = output or fc
        walk.fail([(lay, f"{len(names)} class names for {k} outputs")])
    return fc, names


# ---------------------------------------------------------------------------------------------
# the entry point


def load_resnet50(
    path_or_network: str | os.PathLike[str] | Network, variable: str | None = None
) -> torchvision.models.ResNet:
    """Load a MATLAB ResNet-50 (DAGNetwork, dlnetwork, LayerGraph or Designer parameters struct,
    v7 or v7.3) as a ``torchvision.models.ResNet`` in eval mode.

    The model takes what MATLAB's first convolution takes: 0-255 RGB images *after* the input
    layer's normalization; ``model.matport.preprocess(images)`` does that normalization
    (:class:`~matport.convert.info.ModelInfo`). Raises :class:`ConversionError` naming the layers
    when the network does not fit torchvision's resnet50.

    Weights are not copied where the layouts allow (1x1 convolutions, BatchNorm scale/offset/
    variance): given a ``Network``, the model shares those arrays with it, and training the model
    changes them (pass ``copy.deepcopy(net)`` to keep the network as it was).
    """
    if isinstance(path_or_network, Network):
        net = path_or_network
    else:
        from matport.network import read_network

        net = read_network(path_or_network, variable)
    match = match_resnet50(net)
    model = resnet50_from_architecture(match.architecture, device="meta")
    model.load_state_dict(transplant(match.slots), strict=True, assign=True)
    model.eval()
    info = ModelInfo(
        class_names=match.class_names,
        input_size=match.input_size,
        layout="NCHW",
        normalization=match.input.normalization or Normalization("none"),
        source=net.source,
        variable=net.path,
        layer_map=match.layer_map,
        architecture=match.architecture,
    )
    setattr(model, "matport", info)  # noqa: B010 (not a declared attribute of ResNet)
    return model
