"""ResNet-50 from the parameters struct Deep Network Designer writes beside its generated code.

Designer's "Export > Generate code with pretrained parameters" saves one struct (often named
``trainingSetup`` or ``params``) whose fields are layer names, each a struct of that layer's arrays
(``Weights``, ``Bias``, ``Offset``, ``Scale``, ``TrainedMean``, ``TrainedVariance``; the input
layer's ``Mean``, ``StandardDeviation``, ``Min``, ``Max``). The hyper-parameters and the topology
live only in the generated code, so this module supplies those of MATLAB's ``resnet50``
(``resnet50Layers``): 177 layers, BatchNorm epsilon 0.001, stride 2 on the first 1x1 convolution
of stages 3-5. The head keeps its own name (``fc1000`` or whatever FC field the struct holds).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from matport.errors import NetworkError
from matport.mat.values import Struct
from matport.network.layout import fc_matrix, matlab_reshape
from matport.network.model import Connection, Layer, Network, Normalization

RESNET50_EPSILON = 0.001
RESNET50_INPUT_SIZE = (224, 224, 3)
# (stage, block letters, bottleneck width, output channels, stride of the stage's first block)
RESNET50_STAGES = (
    (2, "abc", 64, 256, 1),
    (3, "abcd", 128, 512, 2),
    (4, "abcdef", 256, 1024, 2),
    (5, "abc", 512, 2048, 2),
)
FEATURES = 2048
_SIGNATURE = ("conv1", "bn_conv1", "res2a_branch2a", "bn2a_branch2a")
_INPUT_FIELDS = ("Mean", "StandardDeviation", "Min", "Max")
_P = "nnet.cnn.layer."


@dataclass(frozen=True)
class _Conv:
    name: str
    k: int
    cin: int
    cout: int
    stride: int


def is_designer_params(value: Any) -> bool:
    """Whether ``value`` looks like a Designer parameters struct of a ResNet-50."""
    return isinstance(value, Struct) and all(isinstance(value.get(n), Struct) for n in _SIGNATURE)


def network_from_designer_struct(struct: Struct, source: str = "", path: str = "") -> Network:
    """The DAGNetwork MATLAB's ``resnet50`` code builds from the parameters in ``struct``.

    Raises :class:`NetworkError` (naming the fields) when fields are missing, when fields that are
    no ResNet-50 layer are present, or when an array has the wrong size.
    """
    where = f"{source}:{path}" if source or path else "parameters struct"
    layer_fields = {k: v for k, v in struct.items() if isinstance(v, Struct)}
    input_name = _input_field(layer_fields, where)
    convs = list(_convolutions())
    known = {c.name for c in convs} | {_bn_name(c.name) for c in convs}
    missing = sorted(known - set(layer_fields))
    if missing:
        raise NetworkError(f"{where}: ResNet-50 layers missing: {', '.join(missing)}")
    head = _head_field(layer_fields, known | {input_name}, where)

    layers: list[Layer] = []
    cons: list[Connection] = []

    def chain(*new: Layer) -> None:
        cons.extend(Connection(a.name, b.name) for a, b in zip(new, new[1:], strict=False))
        layers.extend(new)

    fields = layer_fields.get(input_name, Struct())
    norm = _normalization(fields, where)
    input_size: tuple[int, ...] = RESNET50_INPUT_SIZE
    if norm.mean is not None and norm.mean.shape[0] * norm.mean.shape[1] > 1:
        input_size = tuple(int(s) for s in norm.mean.shape)
    conv_of = {c.name: c for c in convs}

    def conv_bn(name: str) -> tuple[Layer, Layer]:
        c = conv_of[name]
        return _conv_layer(c, layer_fields[name], where), _bn_layer(
            _bn_name(name), c.cout, layer_fields[_bn_name(name)], where
        )

    chain(
        Layer(input_name, _P + "ImageInputLayer", {"InputSize": input_size}, normalization=norm),
        *conv_bn("conv1"),
        Layer("activation_1_relu", _P + "ReLULayer"),
        Layer("max_pooling2d_1", _P + "MaxPooling2DLayer", {
            "PoolSize": (3, 3), "Stride": (2, 2), "PaddingMode": "manual",
            "PaddingSize": (1, 1, 1, 1), "HasUnpoolingOutputs": False}),
    )
    prev, relu, add = "max_pooling2d_1", 1, 0
    for stage, letters, _, _, _ in RESNET50_STAGES:
        for i, letter in enumerate(letters):
            tag, add = f"{stage}{letter}", add + 1
            main = [
                *conv_bn(f"res{tag}_branch2a"),
                Layer(f"activation_{relu + 1}_relu", _P + "ReLULayer"),
                *conv_bn(f"res{tag}_branch2b"),
                Layer(f"activation_{relu + 2}_relu", _P + "ReLULayer"),
                *conv_bn(f"res{tag}_branch2c"),
            ]
            chain(*main)
            cons.append(Connection(prev, main[0].name))
            shortcut = prev
            if i == 0:
                proj = conv_bn(f"res{tag}_branch1")
                chain(*proj)
                cons.append(Connection(prev, proj[0].name))
                shortcut = proj[1].name
            chain(Layer(f"add_{add}", _P + "AdditionLayer", {"NumInputs": 2}),
                  Layer(f"activation_{relu + 3}_relu", _P + "ReLULayer"))
            cons.append(Connection(main[-1].name, f"add_{add}", dest_port="in1"))
            cons.append(Connection(shortcut, f"add_{add}", dest_port="in2"))
            prev, relu = f"activation_{relu + 3}_relu", relu + 3
    fc = _fc_layer(head, layer_fields[head], where)
    num_classes = fc.params["OutputSize"]
    chain(
        Layer("avg_pool", _P + "GlobalAveragePooling2DLayer"),
        fc,
        Layer("fc1000_softmax", _P + "SoftmaxLayer"),
        Layer("ClassificationLayer_fc1000", _P + "ClassificationOutputLayer",
              {"NumClasses": num_classes}),
    )
    cons.append(Connection(prev, "avg_pool"))
    return Network("DAGNetwork", layers, cons, class_names=None,
                   output_names=["ClassificationLayer_fc1000"], source=source, path=path)


def _convolutions() -> Iterator[_Conv]:
    yield _Conv("conv1", 7, 3, 64, 2)
    cin = 64
    for stage, letters, width, cout, first_stride in RESNET50_STAGES:
        for i, letter in enumerate(letters):
            tag, stride = f"{stage}{letter}", first_stride if i == 0 else 1
            yield _Conv(f"res{tag}_branch2a", 1, cin, width, stride)
            yield _Conv(f"res{tag}_branch2b", 3, width, width, 1)
            yield _Conv(f"res{tag}_branch2c", 1, width, cout, 1)
            if i == 0:
                yield _Conv(f"res{tag}_branch1", 1, cin, cout, stride)
            cin = cout


def _bn_name(conv: str) -> str:
    return "bn_conv1" if conv == "conv1" else "bn" + conv[3:]


def _input_field(fields: dict[str, Struct], where: str) -> str:
    found = [k for k, v in fields.items() if any(f in v for f in _INPUT_FIELDS)]
    if len(found) > 1:
        raise NetworkError(f"{where}: several fields hold input statistics: {', '.join(found)}")
    return found[0] if found else "input_1"


def _head_field(fields: dict[str, Struct], known: set[str], where: str) -> str:
    extra = [k for k in fields if k not in known]
    heads = [k for k in extra if np.size(fields[k].get("Weights", ())) % FEATURES == 0
             and "Weights" in fields[k] and "Bias" in fields[k]]
    if len(heads) != 1 or len(extra) != 1:
        detail = f"fields that are no ResNet-50 layer: {', '.join(extra)}" if extra else "none"
        raise NetworkError(
            f"{where}: expected one fully connected head beside ResNet-50's layers; {detail}"
        )
    return heads[0]


def _array(
    fields: dict[str, Any], key: str, shape: tuple[int, ...], layer: str, where: str
) -> np.ndarray:
    a = fields.get(key)
    if a is None:
        raise NetworkError(f"{where}: layer {layer} has no {key}")
    a = a if type(a) is np.ndarray else np.asarray(a)
    if a.size != math.prod(shape):
        dims = "x".join(map(str, shape))
        raise NetworkError(f"{where}: {layer}.{key} has {a.size} values, ResNet-50 needs {dims}")
    return a if a.shape == shape else matlab_reshape(a, shape)


def _conv_layer(c: _Conv, fields: Struct, where: str) -> Layer:
    pad = (c.k - 1) // 2
    return Layer(
        c.name, _P + "Convolution2DLayer",
        {"FilterSize": (c.k, c.k), "NumChannels": c.cin, "NumFilters": c.cout,
         "Stride": (c.stride, c.stride), "DilationFactor": (1, 1),
         "PaddingMode": "same" if c.k == 3 else "manual", "PaddingSize": (pad,) * 4,
         "PaddingValue": 0.0},
        learnables={
            "Weights": _array(fields, "Weights", (c.k, c.k, c.cin, c.cout), c.name, where),
            "Bias": _array(fields, "Bias", (1, 1, c.cout), c.name, where),
        },
    )


def _bn_layer(name: str, c: int, fields: Struct, where: str) -> Layer:
    def get(key: str) -> np.ndarray:
        return _array(fields, key, (1, 1, c), name, where)

    return Layer(
        name, _P + "BatchNormalizationLayer", {"Epsilon": RESNET50_EPSILON, "NumChannels": c},
        learnables={"Offset": get("Offset"), "Scale": get("Scale")},
        state={"TrainedMean": get("TrainedMean"), "TrainedVariance": get("TrainedVariance")},
    )


def _fc_layer(name: str, fields: Struct, where: str) -> Layer:
    w = fc_matrix(np.asarray(fields["Weights"]))  # some releases store 1 x 1 x 2048 x K
    k = w.size // FEATURES
    return Layer(
        name, _P + "FullyConnectedLayer", {"InputSize": FEATURES, "OutputSize": k},
        learnables={"Weights": _array({"Weights": w}, "Weights", (k, FEATURES), name, where),
                    "Bias": _array(fields, "Bias", (k, 1), name, where)},
    )


def _normalization(fields: Struct, where: str) -> Normalization:
    present = [f for f in _INPUT_FIELDS if f in fields]
    if not present:
        return Normalization("none")

    def stat(key: str) -> np.ndarray:
        a = np.asarray(fields[key], np.float32)
        if a.ndim < 3:
            a = a.reshape((1, 1, a.size)) if a.size in (1, 3) else a.reshape(a.shape + (1,))
        return a

    if present == ["Mean"]:
        return Normalization("zerocenter", mean=stat("Mean"))
    if present == ["Mean", "StandardDeviation"]:
        return Normalization("zscore", mean=stat("Mean"), std=stat("StandardDeviation"))
    raise NetworkError(
        f"{where}: input statistics {', '.join(present)} do not say which normalization MATLAB "
        "applies ('rescale-symmetric' and 'rescale-zero-one' both store Min and Max); only "
        "'zerocenter' (Mean) and 'zscore' (Mean, StandardDeviation) are unambiguous"
    )
