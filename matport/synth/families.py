"""MATLAB's pretrained families with random weights, in MATLAB layout (test and benchmark support).

Written from MathWorks' published layer definitions (``resnet18Layers.m``, ``resnet101Layers.m``,
the layers of MATLAB's ``squeezenet``, ``vgg16``/``vgg19`` and ``densenet201``), independently
of matport's families: the same layer classes, hyper-parameters, padding and connections
(ports included), with random weights, non-zero conv biases and non-trivial BatchNorm
statistics, arrays Fortran-ordered as a .mat reader returns them.

``size`` shrinks the input (the widths are torchvision's and cannot shrink): tests run reduced
inputs, slow tests full size. Every builder returns a ``DAGNetwork`` with ``classes`` outputs
named ``class0``, ``class1`` ...; :data:`BUILDERS` maps family names to builders.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from matport.network.model import Connection, Layer, Network, Normalization

_P = "nnet.cnn.layer."


class _Graph:
    """Layers and connections as MATLAB's ``layerGraph`` / ``connectLayers`` build them."""

    def __init__(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)
        self.layers: list[Layer] = []
        self.connections: list[Connection] = []

    def add(self, layer: Layer, *after: str, port: str | None = None) -> str:
        self.layers.append(layer)
        for a in after:
            self.connections.append(Connection(a, layer.name, None, port))
        return layer.name

    def chain(self, after: str, *layers: Layer) -> str:
        for lay in layers:
            after = self.add(lay, after)
        return after

    def array(self, *shape: int, scale: float = 1.0) -> np.ndarray:
        a = self.rng.standard_normal(shape, dtype=np.float32)
        a *= np.float32(scale)
        return np.asfortranarray(a)

    def conv(self, name: str, k: int, cin: int, cout: int, stride: int = 1,
             pad: tuple[int, int, int, int] = (0, 0, 0, 0), gain: float = 2.0) -> Layer:
        return Layer(name, _P + "Convolution2DLayer",
                     {"FilterSize": (k, k), "NumChannels": cin, "NumFilters": cout,
                      "Stride": (stride, stride), "DilationFactor": (1, 1),
                      "PaddingMode": "manual", "PaddingSize": pad, "PaddingValue": 0.0},
                     learnables={"Weights": self.array(k, k, cin, cout,
                                                       scale=np.sqrt(gain / (k * k * cin))),
                                 "Bias": self.array(1, 1, cout, scale=0.1)})

    def bn(self, name: str, c: int, scale: float = 1.0) -> Layer:
        u = self.rng.uniform
        return Layer(name, _P + "BatchNormalizationLayer", {"Epsilon": 1e-5, "NumChannels": c},
                     learnables={"Offset": self.array(1, 1, c, scale=0.1),
                                 "Scale": np.asfortranarray(
                                     u(0.5, 1.5, (1, 1, c)).astype(np.float32) * scale)},
                     state={"TrainedMean": self.array(1, 1, c, scale=0.3),
                            "TrainedVariance": np.asfortranarray(
                                u(0.5, 2.0, (1, 1, c)).astype(np.float32))})

    def fc(self, name: str, inputs: int | tuple[int, int, int], outputs: int) -> Layer:
        """After features: O x I weights; after an H x W x C map (``inputs`` a triple): MATLAB's
        H x W x C x O weights, applied to the map's column-major flatten."""
        n = int(np.prod(inputs))
        shape = (*inputs, outputs) if isinstance(inputs, tuple) else (outputs, inputs)
        return Layer(name, _P + "FullyConnectedLayer", {"InputSize": inputs, "OutputSize": outputs},
                     learnables={"Weights": self.array(*shape, scale=np.sqrt(2 / n)),
                                 "Bias": self.array(outputs, 1, scale=0.1)})

    def network(self, last: str, classes: int) -> Network:
        names = [f"class{i}" for i in range(classes)]
        self.chain(last, Layer("prob", _P + "SoftmaxLayer"),
                   Layer("output", _P + "ClassificationOutputLayer", {"NumClasses": classes}))
        return Network("DAGNetwork", self.layers, self.connections, class_names=names,
                       output_names=["output"], source="<synth>", path="net")


def relu(name: str) -> Layer:
    return Layer(name, _P + "ReLULayer")


def max_pool(name: str, k: int, stride: int, pad: tuple[int, int, int, int]) -> Layer:
    return Layer(name, _P + "MaxPooling2DLayer",
                 {"PoolSize": (k, k), "Stride": (stride, stride), "PaddingMode": "manual",
                  "PaddingSize": pad, "HasUnpoolingOutputs": False})


def image_input(name: str, size: int, normalization: Normalization) -> Layer:
    return Layer(name, _P + "ImageInputLayer", {"InputSize": (size, size, 3)},
                 normalization=normalization)


def _channel_stats(*values: float) -> np.ndarray:
    return np.asfortranarray(np.array(values, np.float32).reshape(1, 1, 3))


# ---------------------------------------------------------------------------------------------
# ResNets


def resnet18(size: int = 224, classes: int = 1000, seed: int = 0) -> Network:
    """``resnet18Layers``: z-score input, pool1 padded [1 1 1 1], basic blocks."""
    g = _Graph(seed)
    norm = Normalization("zscore", mean=_channel_stats(123.7, 116.3, 103.5),
                         std=_channel_stats(58.4, 57.1, 57.4))
    x = _stem(g, size, norm, (1, 1, 1, 1))
    cin = 64
    for stage, width in zip((2, 3, 4, 5), (64, 128, 256, 512), strict=True):
        for b in "ab":
            tag, stride = f"res{stage}{b}", 2 if stage > 2 and b == "a" else 1
            main = g.chain(x, g.conv(f"{tag}_branch2a", 3, cin, width, stride, (1, 1, 1, 1)),
                           g.bn(f"bn{stage}{b}_branch2a", width), relu(f"{tag}_branch2a_relu"),
                           g.conv(f"{tag}_branch2b", 3, width, width, 1, (1, 1, 1, 1)),
                           g.bn(f"bn{stage}{b}_branch2b", width, scale=0.3))
            shortcut = x
            if cin != width or stride != 1:
                shortcut = g.chain(x, g.conv(f"{tag}_branch1", 1, cin, width, stride),
                                   g.bn(f"bn{stage}{b}_branch1", width))
            x = _add(g, tag, main, shortcut)
            cin = width
    x = g.add(Layer("pool5", _P + "GlobalAveragePooling2DLayer"), x)
    return g.network(g.add(g.fc("fc1000", 512, classes), x), classes)


def resnet101(size: int = 224, classes: int = 1000, seed: int = 0) -> Network:
    """``resnet101Layers``: per-pixel mean image, pool1 padded [0 1 0 1], bottleneck blocks with
    the stride on the first 1x1 conv, and pool5 a 7x7 average pooling over the last map."""
    g = _Graph(seed)
    mean = np.asfortranarray(g.rng.uniform(80, 170, (size, size, 3)).astype(np.float32))
    x = _stem(g, size, Normalization("zerocenter", mean=mean), (0, 1, 0, 1))
    cin = 64
    units = (("abc"), ("a", "b1", "b2", "b3"), ("a", *[f"b{i}" for i in range(1, 23)]), ("abc"))
    for stage, names, width in zip((2, 3, 4, 5), units, (64, 128, 256, 512), strict=True):
        for i, unit in enumerate(names):
            tag, bn, stride = f"res{stage}{unit}", f"bn{stage}{unit}", 2 if stage > 2 and i == 0 \
                else 1
            main = g.chain(x, g.conv(f"{tag}_branch2a", 1, cin, width, stride),
                           g.bn(f"{bn}_branch2a", width), relu(f"{tag}_branch2a_relu"),
                           g.conv(f"{tag}_branch2b", 3, width, width, 1, (1, 1, 1, 1)),
                           g.bn(f"{bn}_branch2b", width), relu(f"{tag}_branch2b_relu"),
                           g.conv(f"{tag}_branch2c", 1, width, 4 * width),
                           g.bn(f"{bn}_branch2c", 4 * width, scale=0.2))
            shortcut = x
            if i == 0:
                shortcut = g.chain(x, g.conv(f"{tag}_branch1", 1, cin, 4 * width, stride),
                                   g.bn(f"{bn}_branch1", 4 * width))
            x = _add(g, tag, main, shortcut)
            cin = 4 * width
    last = size
    for k, s, p in ((7, 2, 6), (3, 2, 1), (1, 2, 0), (1, 2, 0), (1, 2, 0)):
        last = (last + p - k) // s + 1
    x = g.add(Layer("pool5", _P + "AveragePooling2DLayer",
                    {"PoolSize": (last, last), "Stride": (last, last), "PaddingMode": "manual",
                     "PaddingSize": (0, 0, 0, 0)}), x)
    return g.network(g.add(g.fc("fc1000", 2048, classes), x), classes)


def _stem(g: _Graph, size: int, norm: Normalization, pool_pad: tuple[int, int, int, int]) -> str:
    x = g.add(image_input("data", size, norm))
    return g.chain(x, g.conv("conv1", 7, 3, 64, 2, (3, 3, 3, 3), gain=2 / 60 ** 2),
                   g.bn("bn_conv1", 64), relu("conv1_relu"), max_pool("pool1", 3, 2, pool_pad))


def _add(g: _Graph, tag: str, main: str, shortcut: str) -> str:
    add = Layer(tag, _P + "AdditionLayer", {"NumInputs": 2})
    g.add(add, main, port="in1")
    g.connections.append(Connection(shortcut, tag, None, "in2"))
    return g.add(relu(f"{tag}_relu"), tag)


# ---------------------------------------------------------------------------------------------
# SqueezeNet and VGG


SQUEEZENET_FIRES = {2: (16, 64), 3: (16, 64), 4: (32, 128), 5: (32, 128), 6: (48, 192),
                    7: (48, 192), 8: (64, 256), 9: (64, 256)}


def squeezenet(size: int = 227, classes: int = 1000, seed: int = 0,
               pool_pad: tuple[int, int, int, int] = (0, 1, 0, 1)) -> Network:
    """MATLAB's ``squeezenet``: per-channel mean, pool3/pool5 padded ``pool_pad`` ([0 1 0 1]),
    fire modules concatenating expand1x1 (in1) and expand3x3 (in2)."""
    g = _Graph(seed)
    norm = Normalization("zerocenter", mean=_channel_stats(123.7, 116.8, 104.0))
    x = g.chain(g.add(image_input("data", size, norm)),
                g.conv("conv1", 3, 3, 64, 2, gain=2 / 60 ** 2), relu("relu_conv1"),
                max_pool("pool1", 3, 2, (0, 0, 0, 0)))
    cin = 64
    for fire, (squeeze, expand) in SQUEEZENET_FIRES.items():
        f = f"fire{fire}"
        s = g.chain(x, g.conv(f"{f}-squeeze1x1", 1, cin, squeeze),
                    relu(f"{f}-relu_squeeze1x1"))
        e1 = g.chain(s, g.conv(f"{f}-expand1x1", 1, squeeze, expand, gain=1.0),
                     relu(f"{f}-relu_expand1x1"))
        e3 = g.chain(s, g.conv(f"{f}-expand3x3", 3, squeeze, expand, pad=(1, 1, 1, 1), gain=1.0),
                     relu(f"{f}-relu_expand3x3"))
        x = g.add(Layer(f"{f}-concat", _P + "DepthConcatenationLayer", {"NumInputs": 2}), e1,
                  port="in1")
        g.connections.append(Connection(e3, x, None, "in2"))
        if fire in (3, 5):
            x = g.add(max_pool(f"pool{fire}", 3, 2, pool_pad), x)
        cin = 2 * expand
    x = g.chain(x, Layer("drop9", _P + "DropoutLayer", {"Probability": 0.5}),
                g.conv("conv10", 1, cin, classes), relu("relu_conv10"),
                Layer("pool10", _P + "GlobalAveragePooling2DLayer"))
    return g.network(x, classes)


VGG_STAGES = {"vgg16": (2, 2, 3, 3, 3), "vgg19": (2, 2, 4, 4, 4)}


def vgg(family: str = "vgg16", size: int = 224, classes: int = 1000, seed: int = 0) -> Network:
    """MATLAB's ``vgg16`` / ``vgg19``: per-channel mean, 3x3 convs padded 1, 2x2 pools, fc6 over
    the 7 x 7 x 512 map (weights 7 x 7 x 512 x 4096 over MATLAB's column-major flatten)."""
    g = _Graph(seed)
    norm = Normalization("zerocenter", mean=_channel_stats(123.7, 116.8, 104.0))
    x = g.add(image_input("input", size, norm))
    cin = 3
    for stage, (n, width) in enumerate(zip(VGG_STAGES[family], (64, 128, 256, 512, 512),
                                           strict=True), start=1):
        for i in range(1, n + 1):
            gain = 2 / 60 ** 2 if cin == 3 else 2.0
            x = g.chain(x, g.conv(f"conv{stage}_{i}", 3, cin, width, 1, (1, 1, 1, 1), gain),
                        relu(f"relu{stage}_{i}"))
            cin = width
        x = g.add(max_pool(f"pool{stage}", 2, 2, (0, 0, 0, 0)), x)
    x = g.chain(x, g.fc("fc6", (size // 32, size // 32, 512), 4096), relu("relu6"),
                Layer("drop6", _P + "DropoutLayer", {"Probability": 0.5}),
                g.fc("fc7", 4096, 4096), relu("relu7"),
                Layer("drop7", _P + "DropoutLayer", {"Probability": 0.5}),
                g.fc("fc8", 4096, classes))
    return g.network(x, classes)


def densenet201(size: int = 224, classes: int = 1000, seed: int = 0) -> Network:
    """MATLAB's ``densenet201`` (imported from Keras): z-score input, BN epsilon 1.001e-5, dense
    layers concatenating their input (in1) and 32 new channels (in2), transitions halving the
    channels with a 2x2 average pool; every conv has a (non-zero) bias."""
    g = _Graph(seed)
    norm = Normalization("zscore", mean=_channel_stats(123.7, 116.3, 103.5),
                         std=_channel_stats(58.4, 57.1, 57.4))
    x = g.chain(g.add(image_input("input_1", size, norm)),
                g.conv("conv1_conv", 7, 3, 64, 2, (3, 3, 3, 3), gain=2 / 60 ** 2),
                _keras_bn(g, "conv1_bn", 64), relu("conv1_relu"),
                max_pool("pool1", 3, 2, (1, 1, 1, 1)))
    c = 64
    for b, layers in enumerate((6, 12, 48, 32), start=2):
        for i in range(1, layers + 1):
            tag = f"conv{b}_block{i}"
            new = g.chain(x, _keras_bn(g, f"{tag}_0_bn", c), relu(f"{tag}_0_relu"),
                          g.conv(f"{tag}_1_conv", 1, c, 128), _keras_bn(g, f"{tag}_1_bn", 128),
                          relu(f"{tag}_1_relu"),
                          g.conv(f"{tag}_2_conv", 3, 128, 32, 1, (1, 1, 1, 1)))
            concat = g.add(Layer(f"{tag}_concat", _P + "DepthConcatenationLayer",
                                 {"NumInputs": 2}), x, port="in1")
            g.connections.append(Connection(new, concat, None, "in2"))
            x, c = concat, c + 32
        if b < 5:
            x = g.chain(x, _keras_bn(g, f"pool{b}_bn", c), relu(f"pool{b}_relu"),
                        g.conv(f"pool{b}_conv", 1, c, c // 2),
                        Layer(f"pool{b}_pool", _P + "AveragePooling2DLayer",
                              {"PoolSize": (2, 2), "Stride": (2, 2), "PaddingMode": "manual",
                               "PaddingSize": (0, 0, 0, 0)}))
            c //= 2
    x = g.chain(x, _keras_bn(g, "bn", c), relu("relu"),
                Layer("avg_pool", _P + "GlobalAveragePooling2DLayer"), g.fc("fc1000", c, classes))
    return g.network(x, classes)


def _keras_bn(g: _Graph, name: str, c: int) -> Layer:
    bn = g.bn(name, c)
    bn.params["Epsilon"] = 1.001e-5
    return bn


def inceptionv3(size: int = 299, classes: int = 1000, seed: int = 0) -> Network:
    """MATLAB's ``inceptionv3`` (imported from Keras' InceptionV3): input rescaled to [-1, 1]
    ('rescale-symmetric'), every conv followed by BN (epsilon 0.001) and ReLU, 'same' padding
    written as PaddingMode 'same', branch average pools 3x3 'same', the mixed blocks' branches
    concatenated in Keras' order."""
    g = _Graph(seed)
    n = [0]

    def cbr(after: str, k: tuple[int, int], cin: int, cout: int, stride: int = 1,
            same: bool = True) -> str:
        n[0] += 1
        conv = g.conv(f"conv2d_{n[0]}", 1, cin, cout, stride)
        conv.learnables["Weights"] = g.array(*k, cin, cout, scale=np.sqrt(2 / (k[0] * k[1] * cin)))
        conv.params["FilterSize"] = k
        if same:
            conv.params.update({"PaddingMode": "same", "PaddingSize": (
                (k[0] - 1) // 2, (k[0] - 1) // 2, (k[1] - 1) // 2, (k[1] - 1) // 2)})
        bn = g.bn(f"batch_normalization_{n[0]}", cout)
        bn.params["Epsilon"] = 0.001
        return g.chain(after, conv, bn, relu(f"activation_{n[0]}_relu"))

    def avg(after: str) -> str:
        n[0] += 1
        return g.add(Layer(f"average_pooling2d_{n[0]}", _P + "AveragePooling2DLayer",
                           {"PoolSize": (3, 3), "Stride": (1, 1), "PaddingMode": "same",
                            "PaddingSize": (1, 1, 1, 1), "PaddingValue": 0}), after)

    def concat(name: str, *ins: str) -> str:
        g.add(Layer(name, _P + "DepthConcatenationLayer", {"NumInputs": len(ins)}))
        for i, src in enumerate(ins, start=1):
            g.connections.append(Connection(src, name, None, f"in{i}"))
        return name

    norm = Normalization("rescale-symmetric", min=np.array(0, np.float32),
                         max=np.array(255, np.float32))
    x = g.add(image_input("input_1", size, norm))
    x = cbr(x, (3, 3), 3, 32, 2, same=False)
    x = cbr(x, (3, 3), 32, 32, same=False)
    x = cbr(x, (3, 3), 32, 64)
    x = g.add(max_pool("max_pooling2d_1", 3, 2, (0, 0, 0, 0)), x)
    x = cbr(x, (1, 1), 64, 80, same=False)
    x = cbr(x, (3, 3), 80, 192, same=False)
    x = g.add(max_pool("max_pooling2d_2", 3, 2, (0, 0, 0, 0)), x)
    c = 192
    for i, pool in enumerate((32, 64, 64)):  # mixed0-2
        b1 = cbr(x, (1, 1), c, 64)
        b5 = cbr(cbr(x, (1, 1), c, 48), (5, 5), 48, 64)
        b3 = cbr(cbr(cbr(x, (1, 1), c, 64), (3, 3), 64, 96), (3, 3), 96, 96)
        bp = cbr(avg(x), (1, 1), c, pool)
        x, c = concat(f"mixed{i}", b1, b5, b3, bp), 64 + 64 + 96 + pool
    b3 = cbr(x, (3, 3), c, 384, 2, same=False)  # mixed3
    bd = cbr(cbr(cbr(x, (1, 1), c, 64), (3, 3), 64, 96), (3, 3), 96, 96, 2, same=False)
    bp = g.add(max_pool("max_pooling2d_3", 3, 2, (0, 0, 0, 0)), x)
    x, c = concat("mixed3", b3, bd, bp), 384 + 96 + c
    for i, c7 in enumerate((128, 160, 160, 192), start=4):
        b1 = cbr(x, (1, 1), c, 192)
        b7 = cbr(cbr(cbr(x, (1, 1), c, c7), (1, 7), c7, c7), (7, 1), c7, 192)
        bd = cbr(x, (1, 1), c, c7)
        for k in ((7, 1), (1, 7), (7, 1)):
            bd = cbr(bd, k, c7, c7)
        bd = cbr(bd, (1, 7), c7, 192)
        bp = cbr(avg(x), (1, 1), c, 192)
        x, c = concat(f"mixed{i}", b1, b7, bd, bp), 768
    b3 = cbr(cbr(x, (1, 1), c, 192), (3, 3), 192, 320, 2, same=False)  # mixed8
    b7 = cbr(cbr(cbr(cbr(x, (1, 1), c, 192), (1, 7), 192, 192), (7, 1), 192, 192), (3, 3), 192,
             192, 2, same=False)
    bp = g.add(max_pool("max_pooling2d_4", 3, 2, (0, 0, 0, 0)), x)
    x, c = concat("mixed8", b3, b7, bp), 320 + 192 + c
    for i in (9, 10):
        b1 = cbr(x, (1, 1), c, 320)
        s = cbr(x, (1, 1), c, 384)
        b3 = concat(f"mixed{i}_0", cbr(s, (1, 3), 384, 384), cbr(s, (3, 1), 384, 384))
        d = cbr(cbr(x, (1, 1), c, 448), (3, 3), 448, 384)
        bd = concat(f"concatenate_{i - 8}", cbr(d, (1, 3), 384, 384), cbr(d, (3, 1), 384, 384))
        bp = cbr(avg(x), (1, 1), c, 192)
        x, c = concat(f"mixed{i}", b1, b3, bd, bp), 2048
    x = g.chain(x, Layer("avg_pool", _P + "GlobalAveragePooling2DLayer"),
                g.fc("predictions", 2048, classes))
    return g.network(x, classes)


BUILDERS: dict[str, Callable[..., Network]] = {
    "resnet18": resnet18,
    "resnet101": resnet101,
    "squeezenet1_1": squeezenet,
    "vgg16": lambda **kw: vgg("vgg16", **kw),
    "vgg19": lambda **kw: vgg("vgg19", **kw),
    "densenet201": densenet201,
    "inception_v3": inceptionv3,
}


def build(family: str, **kwargs: Any) -> Network:
    """The synthetic MATLAB network of ``family`` (see :data:`BUILDERS`)."""
    return BUILDERS[family](**kwargs)
