"""Full-size MATLAB ResNet-50s with random weights, in MATLAB layout (test support).

Written from MATLAB's own ``resnet50Layers`` definition (the code Deep Network Designer generates),
independently of matport's transplant and of matport.network.designer:

- :func:`pretrained_like` -- MATLAB's ``resnet50``: 177 layers, 1000 classes, per-pixel mean image;
- :func:`finetuned` -- the usual fine-tuned variant: head renamed ``fc`` with 5 classes, class
  names set, output layers renamed as MATLAB's "transfer learning" examples do;
- :func:`as_dlnetwork` -- the same network as a dlnetwork (no output layer, no class names);
- :func:`designer_struct` -- the parameters struct Deep Network Designer writes beside its code.

Weights are random (He-scaled), every convolution has a non-zero bias, BatchNorm statistics are
non-trivial, and arrays are Fortran-ordered as a .mat reader returns them.

Files: :func:`write_form` writes one form as a .mat file. The Designer struct is a plain struct
written here with scipy; the object forms (DAGNetwork v7 / v7.3, dlnetwork) use the project's
writer (``HOOK``: matport.network.encode.write_network), and tests skip them if it is missing.
"""

from __future__ import annotations

import copy
import importlib
from pathlib import Path

import numpy as np

from matport.mat.values import Struct
from matport.network.model import Connection, Layer, Network, Normalization

# (stage, block letters, bottleneck width, output channels, stride of the first block)
STAGES = (
    (2, "abc", 64, 256, 1),
    (3, "abcd", 128, 512, 2),
    (4, "abcdef", 256, 1024, 2),
    (5, "abc", 512, 2048, 2),
)
FINETUNED_CLASSES = ["daisy", "dandelion", "roses", "sunflowers", "tulips"]

# The .mat writer the object forms need: module, function ``write_network(path, network, *,
# variable, format)`` with format "v7" or "v7.3"; the Network's kind picks DAGNetwork / dlnetwork.
HOOK = ("matport.network.encode", "write_network")
FORMS = ("network", "designer-struct", "designer-v7", "dagnetwork-v7", "dagnetwork-v73",
         "dlnetwork-v7")

_P = "nnet.cnn.layer."


def pretrained_like(seed: int = 0, mean: str = "image", stages: tuple = STAGES) -> Network:
    """MATLAB's ``resnet50`` (1000 classes named ``class0000`` ...) with random weights.
    ``mean`` is ``"image"`` (224x224x3 mean image) or ``"channel"`` (1x1x3); ``stages`` changes
    the stage layout (for refusal tests)."""
    return _build(
        np.random.default_rng(seed),
        head="fc1000",
        softmax="fc1000_softmax",
        output="ClassificationLayer_fc1000",
        class_names=[f"class{i:04d}" for i in range(1000)],
        mean=mean,
        stages=stages,
    )


def finetuned(seed: int = 1) -> Network:
    """Fine-tuned to 5 classes: head ``fc``, softmax ``softmax``, output ``classoutput``."""
    return _build(
        np.random.default_rng(seed),
        head="fc",
        softmax="softmax",
        output="classoutput",
        class_names=list(FINETUNED_CLASSES),
        mean="image",
    )


def as_dlnetwork(net: Network) -> Network:
    """The same network as a dlnetwork: output layer removed, no class names."""
    out = copy.copy(net)
    dropped = {lay.name for lay in net.layers if lay.type == "ClassificationOutputLayer"}
    out.kind = "dlnetwork"
    out.layers = [lay for lay in net.layers if lay.name not in dropped]
    out.connections = [c for c in net.connections if c.dest not in dropped]
    out.class_names = None
    out.output_names = [lay.name for lay in out.layers if lay.type == "SoftmaxLayer"]
    return out


def designer_struct(net: Network) -> Struct:
    """The parameters struct Deep Network Designer exports: layer name -> struct of its arrays."""
    out = Struct()
    for lay in net.layers:
        fields = Struct({**lay.learnables, **lay.state})
        if lay.normalization is not None and lay.normalization.mean is not None:
            fields["Mean"] = lay.normalization.mean
        if fields:
            out[lay.name] = fields
    return out


def write_form(form: str, net: Network, path: Path) -> Path:
    """Write ``net`` as ``form`` (one of FORMS except the in-memory ones) to ``path``.

    Raises ``LookupError`` when the writer that form needs is not available.
    """
    if form == "designer-v7":
        import scipy.io

        scipy.io.savemat(path, {"trainingSetup": _plain(designer_struct(net))}, format="5",
                         do_compression=True)
        return path
    module, func = HOOK
    try:
        writer = getattr(importlib.import_module(module), func)
    except (ImportError, AttributeError) as exc:
        raise LookupError(f"no .mat writer for {form!r} yet ({module}.{func})") from exc
    kind, version = {"dagnetwork-v7": ("DAGNetwork", "v7"),
                     "dagnetwork-v73": ("DAGNetwork", "v7.3"),
                     "dlnetwork-v7": ("dlnetwork", "v7")}[form]
    target = as_dlnetwork(net) if kind == "dlnetwork" else net
    writer(path, target, variable="net", format=version)
    return path


def _plain(s: Struct) -> dict:
    return {k: _plain(v) if isinstance(v, Struct) else v for k, v in s.items()}


# ---------------------------------------------------------------------------------------------
# construction, following resnet50Layers.m


def _build(rng, head, softmax, output, class_names, mean, stages=STAGES) -> Network:
    layers: list[Layer] = []
    cons: list[Connection] = []

    def chain(*new: Layer) -> None:
        for a, b in zip(new, new[1:], strict=False):
            cons.append(Connection(a.name, b.name))
        layers.extend(new)

    if mean == "image":
        mean_arr = rng.uniform(80, 170, (224, 224, 3)).astype(np.float32)
    else:
        mean_arr = np.array([123.68, 116.78, 103.94], np.float32).reshape(1, 1, 3)
    inp = Layer("input_1", _P + "ImageInputLayer", {"InputSize": (224, 224, 3)},
                normalization=Normalization("zerocenter", mean=np.asfortranarray(mean_arr)))
    stem = [
        inp,
        _conv(rng, "conv1", 7, 3, 64, 2, 3, input_scale=1 / 60),
        _bn(rng, "bn_conv1", 64),
        _relu("activation_1_relu"),
        Layer("max_pooling2d_1", _P + "MaxPooling2DLayer",
              {"PoolSize": (3, 3), "Stride": (2, 2), "PaddingMode": "manual",
               "PaddingSize": (1, 1, 1, 1), "HasUnpoolingOutputs": False}),
    ]
    chain(*stem)
    prev, cin, relu_id, add_id = "max_pooling2d_1", 64, 1, 0
    for stage, letters, width, cout, first_stride in stages:
        for i, b in enumerate(letters):
            tag = f"{stage}{b}"
            stride = first_stride if i == 0 else 1
            add_id += 1
            branch = [
                _conv(rng, f"res{tag}_branch2a", 1, cin, width, stride, 0),
                _bn(rng, f"bn{tag}_branch2a", width),
                _relu(f"activation_{relu_id + 1}_relu"),
                _conv(rng, f"res{tag}_branch2b", 3, width, width, 1, 1, same=True),
                _bn(rng, f"bn{tag}_branch2b", width),
                _relu(f"activation_{relu_id + 2}_relu"),
                _conv(rng, f"res{tag}_branch2c", 1, width, cout, 1, 0),
                _bn(rng, f"bn{tag}_branch2c", cout, residual=True),
            ]
            chain(*branch)
            cons.append(Connection(prev, branch[0].name))
            add = Layer(f"add_{add_id}", _P + "AdditionLayer", {"NumInputs": 2})
            relu = _relu(f"activation_{relu_id + 3}_relu")
            if i == 0:
                proj = [_conv(rng, f"res{tag}_branch1", 1, cin, cout, stride, 0),
                        _bn(rng, f"bn{tag}_branch1", cout)]
                chain(*proj)
                cons.append(Connection(prev, proj[0].name))
                shortcut = proj[1].name
            else:
                shortcut = prev
            chain(add, relu)
            cons.append(Connection(branch[-1].name, add.name, dest_port="in1"))
            cons.append(Connection(shortcut, add.name, dest_port="in2"))
            prev, cin, relu_id = relu.name, cout, relu_id + 3
    k = len(class_names)
    tail = [
        Layer("avg_pool", _P + "GlobalAveragePooling2DLayer"),
        Layer(head, _P + "FullyConnectedLayer", {"InputSize": 2048, "OutputSize": k},
              learnables={
                  "Weights": _f(rng.standard_normal((k, 2048)) * np.sqrt(1 / 2048)),
                  "Bias": _f(rng.normal(0, 0.1, (k, 1))),
              }),
        Layer(softmax, _P + "SoftmaxLayer"),
        Layer(output, _P + "ClassificationOutputLayer", {"NumClasses": k}),
    ]
    cons.append(Connection(prev, tail[0].name))
    chain(*tail)
    return Network("DAGNetwork", layers, cons, class_names=class_names, output_names=[output],
                   source="<fixture>", path="net")


def _f(a: np.ndarray) -> np.ndarray:
    return np.asfortranarray(a.astype(np.float32))


def _conv(rng, name, k, cin, cout, stride, pad, same=False, input_scale=1.0) -> Layer:
    w = rng.standard_normal((k, k, cin, cout)) * np.sqrt(2 / (k * k * cin)) * input_scale
    return Layer(
        name,
        _P + "Convolution2DLayer",
        {"FilterSize": (k, k), "NumChannels": cin, "NumFilters": cout, "Stride": (stride, stride),
         "DilationFactor": (1, 1), "PaddingMode": "same" if same else "manual",
         "PaddingSize": (pad,) * 4, "PaddingValue": 0.0},
        learnables={"Weights": _f(w), "Bias": _f(rng.normal(0, 0.2, (1, 1, cout)))},
    )


def _bn(rng, name, c, residual=False) -> Layer:
    scale = rng.uniform(0.5, 1.5, (1, 1, c)) * (0.2 if residual else 1.0)
    return Layer(
        name,
        _P + "BatchNormalizationLayer",
        {"Epsilon": 0.001, "NumChannels": c},
        learnables={"Offset": _f(rng.normal(0, 0.1, (1, 1, c))), "Scale": _f(scale)},
        state={"TrainedMean": _f(rng.normal(0, 0.3, (1, 1, c))),
               "TrainedVariance": _f(rng.uniform(0.5, 2.0, (1, 1, c)))},
    )


def _relu(name: str) -> Layer:
    return Layer(name, _P + "ReLULayer")
