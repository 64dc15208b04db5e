"""Small MATLAB networks built directly as :class:`Network` objects, with random weights in MATLAB
layout (test support); the layout helpers between MATLAB and PyTorch data are re-exported from
:mod:`matport.network.layout`."""

from __future__ import annotations

from typing import Any

import numpy as np

from matport.network.layout import to_matlab_layout as to_matlab_layout
from matport.network.layout import to_torch_layout as to_torch_layout
from matport.network.model import Connection, Layer, Network, Normalization

RNG = np.random.default_rng(20261126)


def rand(*shape: int, scale: float = 0.5) -> np.ndarray:
    return (RNG.standard_normal(shape) * scale).astype(np.float32)


def layer(kind: str, name: str, learnables: dict[str, np.ndarray] | None = None,
          state: dict[str, np.ndarray] | None = None, normalization: Normalization | None = None,
          **params: Any) -> Layer:
    return Layer(name=name, class_name="nnet.cnn.layer." + kind, params=params,
                 learnables=learnables or {}, state=state or {}, normalization=normalization)


def image_input(name: str, size: tuple[int, int, int], norm: Normalization | None = None) -> Layer:
    return layer("ImageInputLayer", name, InputSize=size, normalization=norm or Normalization())


def feature_input(name: str, channels: int, norm: Normalization | None = None) -> Layer:
    return layer("FeatureInputLayer", name, InputSize=(channels,),
                 normalization=norm or Normalization())


def sequence_input(name: str, channels: int, norm: Normalization | None = None) -> Layer:
    return layer("SequenceInputLayer", name, InputSize=(channels,),
                 normalization=norm or Normalization())


def conv(name: str, k: tuple[int, int], cin: int, cout: int, **params: Any) -> Layer:
    params.setdefault("Stride", (1, 1))
    params.setdefault("DilationFactor", (1, 1))
    params.setdefault("PaddingMode", "manual")
    params.setdefault("PaddingSize", (0, 0, 0, 0))
    return layer("Convolution2DLayer", name,
                 {"Weights": rand(k[0], k[1], cin, cout), "Bias": rand(1, 1, cout)},
                 FilterSize=k, NumChannels=cin, NumFilters=cout, **params)


def grouped_conv(name: str, k: tuple[int, int], cin_per_group: int, cout_per_group: int,
                 groups: int, **params: Any) -> Layer:
    params.setdefault("PaddingSize", (0, 0, 0, 0))
    return layer("GroupedConvolution2DLayer", name,
                 {"Weights": rand(k[0], k[1], cin_per_group, cout_per_group, groups),
                  "Bias": rand(1, 1, cout_per_group, groups)},
                 FilterSize=k, NumGroups=groups, **params)


def transposed_conv(name: str, k: tuple[int, int], cin: int, cout: int, **params: Any) -> Layer:
    return layer("TransposedConvolution2DLayer", name,
                 {"Weights": rand(k[0], k[1], cout, cin), "Bias": rand(1, 1, cout)},
                 FilterSize=k, **params)


def batch_norm(name: str, c: int, image: bool = True, eps: float = 1e-3) -> Layer:
    shape = (1, 1, c) if image else (c, 1)
    return layer("BatchNormalizationLayer", name,
                 {"Offset": rand(*shape), "Scale": 1 + rand(*shape, scale=0.2)},
                 {"TrainedMean": rand(*shape),
                  "TrainedVariance": (0.5 + RNG.random(shape)).astype(np.float32)},
                 Epsilon=eps, NumChannels=c)


def layer_norm(name: str, c: int, image: bool = True, **params: Any) -> Layer:
    shape = (1, 1, c) if image else (c, 1)
    return layer("LayerNormalizationLayer", name,
                 {"Offset": rand(*shape), "Scale": 1 + rand(*shape, scale=0.2)}, Epsilon=1e-5,
                 **params)


def fc(name: str, inputs: int | tuple[int, int, int], out: int) -> Layer:
    if isinstance(inputs, tuple):
        return layer("FullyConnectedLayer", name,
                     {"Weights": rand(*inputs, out, scale=0.2), "Bias": rand(1, 1, out)},
                     InputSize=inputs, OutputSize=(1, 1, out))
    return layer("FullyConnectedLayer", name,
                 {"Weights": rand(out, inputs), "Bias": rand(out, 1)},
                 InputSize=(inputs,), OutputSize=(out,))


def lstm(name: str, d: int, h: int, mode: str = "sequence", kind: str = "LSTMLayer",
         zero_state: bool = False) -> Layer:
    dirs = 2 if kind == "BiLSTMLayer" else 1
    state = {} if zero_state else {"HiddenState": rand(dirs * h, 1), "CellState": rand(dirs * h, 1)}
    return layer(kind, name,
                 {"InputWeights": rand(dirs * 4 * h, d), "RecurrentWeights": rand(dirs * 4 * h, h),
                  "Bias": rand(dirs * 4 * h, 1)}, state,
                 InputSize=(d,), NumHiddenUnits=h, OutputMode=mode,
                 StateActivationFunction="tanh", GateActivationFunction="sigmoid")


def lstm_projected(name: str, d: int, h: int, pin: int, pout: int, mode: str) -> Layer:
    return layer("LSTMProjectedLayer", name,
                 {"InputWeights": rand(4 * h, pin), "RecurrentWeights": rand(4 * h, pout),
                  "Bias": rand(4 * h, 1), "InputProjector": rand(d, pin),
                  "OutputProjector": rand(h, pout)},
                 {"HiddenState": rand(h, 1), "CellState": rand(h, 1)},
                 InputSize=(d,), NumHiddenUnits=h, ReturnSequence=mode == "sequence",
                 InputProjectorSize=pin, OutputProjectorSize=pout)


def gru(name: str, d: int, h: int, mode: str = "sequence",
        reset: str = "after-multiplication") -> Layer:
    bias_rows = 6 * h if reset == "recurrent-bias-after-multiplication" else 3 * h
    return layer("GRULayer", name,
                 {"InputWeights": rand(3 * h, d), "RecurrentWeights": rand(3 * h, h),
                  "Bias": rand(bias_rows, 1)}, {"HiddenState": rand(h, 1)},
                 InputSize=(d,), NumHiddenUnits=h, ReturnSequence=mode == "sequence",
                 ResetGateMode=reset)


def self_attention(name: str, c: int, heads: int, key: int, value: int, out: int,
                   mask: str = "none") -> Layer:
    return layer("SelfAttentionLayer", name,
                 {"QueryWeights": rand(key, c), "KeyWeights": rand(key, c),
                  "ValueWeights": rand(value, c), "OutputWeights": rand(out, value),
                  "QueryBias": rand(key, 1), "KeyBias": rand(key, 1),
                  "ValueBias": rand(value, 1), "OutputBias": rand(out, 1)},
                 NumHeads=heads, NumKeyChannels=key, NumValueChannels=value,
                 AttentionMask=mask, DropoutProbability=0, OutputSize=(out,))


def simple(kind: str, name: str, **params: Any) -> Layer:
    return layer(kind, name, **params)


def chain(*layers: Layer, kind: str = "SeriesNetwork",
          class_names: list[str] | None = None) -> Network:
    cons = [Connection(a.name, b.name) for a, b in zip(layers, layers[1:], strict=False)]
    return Network(kind, list(layers), cons, class_names)


def graph(layers: list[Layer], edges: list[str], kind: str = "DAGNetwork",
          output_names: list[str] | None = None) -> Network:
    """Edges as MATLAB writes them: ``"src -> dst"``, ``"pool/indices -> unpool/indices"``."""
    cons = []
    for edge in edges:
        src, dst = (s.strip() for s in edge.split("->"))
        s, _, sp = src.partition("/")
        d, _, dp = dst.partition("/")
        cons.append(Connection(s, d, sp or None, dp or None))
    return Network(kind, layers, cons, None, output_names or [])
