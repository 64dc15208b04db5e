"""A MATLAB-style ONNX export of a `Network`, built from its MATLAB-layout arrays (test support).

Follows ``shared/docs/matlab-onnx-export.md`` (what R2019a's ``exportONNXNetwork`` writes) and
is written independently of matport's transplant code:

- opset 8, IR 3 (every initializer is also listed as a graph input), producer
  "MATLAB Deep Learning Toolbox Converter for ONNX Model Format" 19.1.5;
- input NCHW named after the input layer, batch fixed at 1;
- 'zerocenter' is a leading ``Sub`` (``<input>_Sub``) with the mean as ``<input>_Mean``
  (1 x C x H x W or 1 x C x 1 x 1);
- each layer's main node and output tensor carry the layer's name; initializers are
  ``<layer>_W``/``_B`` (conv, FC), ``_scale``/``_B``/``_mean``/``_var`` (BatchNorm);
- conv weights H x W x C x F -> F x C x H x W, asymmetric pads as ONNX pads, 'same' padding
  computed from the input size (extra row/column at the bottom/right, like MATLAB);
- additions are ``Sum``, depth concatenation ``Concat`` on axis 1, the FC layer a ``Conv`` with a
  full-size kernel after spatial input, a ``Gemm`` (weights O x I) after features and a
  ``MatMul`` (weights I x O, ``<layer>_MatMul``) + ``Add`` on a sequence, the softmax a
  ``Flatten`` (``<softmax>_Flatten``) + ``Softmax``;
- feature input ``[1, C]``; sequence input ``[T, 1, C]`` with a fixed length (ONNX LSTM layout,
  as MATLAB's SequenceInputLayer converter declares it); an LSTM layer is the ONNX ``LSTM``
  with gates reordered to (i, o, f, c), ``B = [Bias, 0]``, the stored states as ``initial_h`` /
  ``initial_c``, and its 'last' output squeezed to ``[1, H]`` (``<layer>_Squeeze``); a GRU layer
  the ONNX ``GRU`` with gates reordered to (z, r, h), ``linear_before_reset`` for MATLAB's
  'after-multiplication' reset modes, ``B = [Bias, 0]`` (``[input bias, recurrent bias]`` with
  'recurrent-bias-after-multiplication'), the stored state as ``initial_h``, squeezed alike;
- output layers emit nothing.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from matport.network.model import Layer, Network
from matport.network.specs import returns_sequence

PRODUCER = "MATLAB Deep Learning Toolbox Converter for ONNX Model Format"
PRODUCER_VERSION = "19.1.5"
OPSET = 8
_OUTPUT_TYPES = {"ClassificationOutputLayer", "RegressionOutputLayer", "PixelClassificationLayer"}


def export(network: Network, path: str | Path, sequence_length: int = 10) -> Path:
    """Write ``network`` as MATLAB's R2019a exporter would; return the path."""
    path = Path(path)
    onnx.save(build(network, sequence_length), str(path))
    return path


def build(network: Network, sequence_length: int = 10) -> onnx.ModelProto:
    """The MATLAB-style ONNX model of ``network`` (see the module docstring)."""
    b = _Builder(network, sequence_length)
    for layer in network.topological_order():
        b.add(layer)
    out = b.output_tensor()
    graph = helper.make_graph(
        b.nodes,
        network.path or "net",
        [*b.inputs, *[_info(t.name, list(t.dims)) for t in b.inits]],
        [_info(out, list(b.shapes[out]))],
        initializer=b.inits,
    )
    model = helper.make_model(
        graph,
        producer_name=PRODUCER,
        producer_version=PRODUCER_VERSION,
        opset_imports=[helper.make_opsetid("", OPSET)],
    )
    model.ir_version = 3
    return model


def _info(name: str, shape: list[int]) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)


class _Builder:
    def __init__(self, network: Network, sequence_length: int) -> None:
        self.net = network
        self.steps = sequence_length
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self.inputs: list[onnx.ValueInfoProto] = []
        self.shapes: dict[str, tuple[int, ...]] = {}  # tensor -> shape, batch 1
        self.out_of: dict[str, str] = {}  # layer name -> its output tensor

    def output_tensor(self) -> str:
        sinks = [
            lay for lay in self.net.layers
            if lay.type not in _OUTPUT_TYPES
            and not any(c.dest in self.out_of for c in self.net.successors(lay.name))
        ]
        return self.out_of[sinks[-1].name]

    def init(self, name: str, array: np.ndarray) -> str:
        self.inits.append(numpy_helper.from_array(np.ascontiguousarray(array, np.float32), name))
        return name

    def node(self, op: str, name: str, inputs: list[str], shape: tuple[int, ...], **attrs) -> str:
        self.nodes.append(helper.make_node(op, inputs, [name], name=name, **attrs))
        self.shapes[name] = shape
        return name

    def zerocenter(
        self, layer: Layer, name: str, layout: Callable[[np.ndarray], np.ndarray]
    ) -> str:
        """The input layer's 'zerocenter' as ``Sub``; ``layout`` brings MATLAB's mean to ONNX's."""
        norm = layer.normalization
        if norm is None or norm.type == "none":
            return name
        if norm.type != "zerocenter":
            raise NotImplementedError(f"{name}: normalization {norm.type}")
        self.init(f"{name}_Mean", layout(np.asarray(norm.mean, np.float32)))
        return self.node("Sub", f"{name}_Sub", [name, f"{name}_Mean"], self.shapes[name])

    def sources(self, layer: Layer) -> list[str]:
        return [self.out_of[c.source] for c in self.net.predecessors(layer.name)]

    def add(self, layer: Layer) -> None:
        kind = layer.type
        if kind in _OUTPUT_TYPES:
            return
        handler = getattr(self, "_" + kind, None)
        if handler is None:
            raise NotImplementedError(f"{layer.name}: no MATLAB-style export for {kind}")
        self.out_of[layer.name] = handler(layer, layer.name)

    # --- layers ---------------------------------------------------------------------------

    def _ImageInputLayer(self, layer: Layer, name: str) -> str:
        h, w, c = layer.params["InputSize"]
        self.inputs.append(_info(name, [1, c, h, w]))
        self.shapes[name] = (1, c, h, w)

        def image_mean(mean: np.ndarray) -> np.ndarray:  # H x W x C or 1 x 1 x C -> 1 x C x H x W
            return mean.reshape(mean.shape + (1,) * (3 - mean.ndim)).transpose(2, 0, 1)[None]

        return self.zerocenter(layer, name, image_mean)

    def _FeatureInputLayer(self, layer: Layer, name: str) -> str:
        (c,) = np.ravel(layer.params["InputSize"])
        self.inputs.append(_info(name, [1, int(c)]))
        self.shapes[name] = (1, int(c))
        return self.zerocenter(layer, name, lambda mean: mean.reshape(1, -1))

    def _SequenceInputLayer(self, layer: Layer, name: str) -> str:
        (c,) = np.ravel(layer.params["InputSize"])
        self.inputs.append(_info(name, [self.steps, 1, int(c)]))
        self.shapes[name] = (self.steps, 1, int(c))
        return self.zerocenter(layer, name, lambda mean: mean.reshape(1, 1, -1))

    def _LSTMLayer(self, layer: Layer, name: str) -> str:
        (src,) = self.sources(layer)
        w = np.asarray(layer.learnables["InputWeights"], np.float32)
        r = np.asarray(layer.learnables["RecurrentWeights"], np.float32)
        bias = np.asarray(layer.learnables["Bias"], np.float32).reshape(-1)
        hidden = r.shape[1]

        def onnx_gates(a: np.ndarray) -> np.ndarray:  # MATLAB [i; f; g; o] -> ONNX [i; o; f; c]
            i, f, g, o = np.split(a, 4)
            return np.concatenate([i, o, f, g])

        ins = [
            src,
            self.init(f"{name}_W", onnx_gates(w)[None]),
            self.init(f"{name}_R", onnx_gates(r)[None]),
            self.init(f"{name}_B", np.concatenate([onnx_gates(bias), np.zeros_like(bias)])[None]),
            "",
            self.init(f"{name}_initial_h", np.reshape(layer.state["HiddenState"], (1, 1, -1))),
            self.init(f"{name}_initial_c", np.reshape(layer.state["CellState"], (1, 1, -1))),
        ]
        outs = [f"{name}_Y", f"{name}_Y_h", f"{name}_Y_c"]
        self.nodes.append(helper.make_node("LSTM", ins, outs, name=name, hidden_size=hidden))
        return self._recurrent_output(layer, name, outs, hidden)

    def _GRULayer(self, layer: Layer, name: str) -> str:
        (src,) = self.sources(layer)
        w = np.asarray(layer.learnables["InputWeights"], np.float32)
        r = np.asarray(layer.learnables["RecurrentWeights"], np.float32)
        bias = np.asarray(layer.learnables["Bias"], np.float32).reshape(-1)
        hidden = r.shape[1]
        mode = layer.params.get("ResetGateMode", "after-multiplication")
        if mode != "recurrent-bias-after-multiplication":
            bias = np.concatenate([bias, np.zeros_like(bias)])

        def onnx_gates(a: np.ndarray) -> np.ndarray:  # MATLAB [r; z; h] -> ONNX [z; r; h]
            reset, update, candidate = np.split(a, 3)
            return np.concatenate([update, reset, candidate])

        b = np.concatenate([onnx_gates(part) for part in np.split(bias, 2)])  # [Wb, Rb]
        ins = [
            src,
            self.init(f"{name}_W", onnx_gates(w)[None]),
            self.init(f"{name}_R", onnx_gates(r)[None]),
            self.init(f"{name}_B", b[None]),
            "",
            self.init(f"{name}_initial_h", np.reshape(layer.state["HiddenState"], (1, 1, -1))),
        ]
        outs = [f"{name}_Y", f"{name}_Y_h"]
        self.nodes.append(helper.make_node(
            "GRU", ins, outs, name=name, hidden_size=hidden,
            linear_before_reset=int(mode != "before-multiplication")))
        return self._recurrent_output(layer, name, outs, hidden)

    def _recurrent_output(self, layer: Layer, name: str, outs: list[str], hidden: int) -> str:
        """The sequence ``Y`` as ``[T, 1, H]``, or in 'last' mode ``Y_h`` as ``[1, H]``."""
        if not returns_sequence(layer):
            return self.node("Squeeze", f"{name}_Squeeze", [outs[1]], (1, hidden), axes=[0])
        return self.node("Squeeze", f"{name}_Squeeze", [outs[0]], (self.steps, 1, hidden),
                         axes=[1])

    def _Convolution2DLayer(self, layer: Layer, name: str) -> str:
        (src,) = self.sources(layer)
        p = layer.params
        weights = np.asarray(layer.learnables["Weights"], np.float32)
        kh, kw, _, f = weights.shape if weights.ndim == 4 else (*weights.shape, 1)[:4]
        sh, sw = p.get("Stride", (1, 1))
        dh, dw = p.get("DilationFactor", (1, 1))
        _, _, h, w = self.shapes[src]
        if p.get("PaddingMode") == "same":
            top, bottom = _same(h, kh, sh, dh)
            left, right = _same(w, kw, sw, dw)
        else:
            top, bottom, left, right = p.get("PaddingSize", (0, 0, 0, 0))
        oh = (h + top + bottom - (dh * (kh - 1) + 1)) // sh + 1
        ow = (w + left + right - (dw * (kw - 1) + 1)) // sw + 1
        w_name = self.init(f"{name}_W", weights.reshape(kh, kw, -1, f).transpose(3, 2, 0, 1))
        b_name = self.init(f"{name}_B", np.asarray(layer.learnables["Bias"]).reshape(-1))
        return self.node(
            "Conv", name, [src, w_name, b_name], (1, f, oh, ow), group=1,
            dilations=[dh, dw], kernel_shape=[kh, kw], pads=[top, left, bottom, right],
            strides=[sh, sw],
        )

    def _BatchNormalizationLayer(self, layer: Layer, name: str) -> str:
        (src,) = self.sources(layer)
        arrays = {
            "scale": layer.learnables["Scale"], "B": layer.learnables["Offset"],
            "mean": layer.state["TrainedMean"], "var": layer.state["TrainedVariance"],
        }
        ins = [self.init(f"{name}_{k}", np.asarray(a).reshape(-1)) for k, a in arrays.items()]
        return self.node(
            "BatchNormalization", name, [src, *ins], self.shapes[src],
            epsilon=float(layer.params.get("Epsilon", 1e-5)),
        )

    def _ReLULayer(self, layer: Layer, name: str) -> str:
        (src,) = self.sources(layer)
        return self.node("Relu", name, [src], self.shapes[src])

    def _TanhLayer(self, layer: Layer, name: str) -> str:
        (src,) = self.sources(layer)
        return self.node("Tanh", name, [src], self.shapes[src])

    def _SigmoidLayer(self, layer: Layer, name: str) -> str:
        (src,) = self.sources(layer)
        return self.node("Sigmoid", name, [src], self.shapes[src])

    def _DropoutLayer(self, layer: Layer, name: str) -> str:
        (src,) = self.sources(layer)
        ratio = float(layer.params.get("Probability", 0.5))
        return self.node("Dropout", name, [src], self.shapes[src], ratio=ratio)

    def _LeakyReLULayer(self, layer: Layer, name: str) -> str:
        (src,) = self.sources(layer)
        alpha = float(layer.params.get("Scale", 0.01))
        return self.node("LeakyRelu", name, [src], self.shapes[src], alpha=alpha)

    def _MaxPooling2DLayer(self, layer: Layer, name: str) -> str:
        return self._pool("MaxPool", layer, name, {})

    def _AveragePooling2DLayer(self, layer: Layer, name: str) -> str:
        return self._pool("AveragePool", layer, name, {"count_include_pad": 1})

    def _pool(self, op: str, layer: Layer, name: str, extra: dict) -> str:
        (src,) = self.sources(layer)
        p = layer.params
        kh, kw = p["PoolSize"]
        sh, sw = p.get("Stride", (1, 1))
        n, c, h, w = self.shapes[src]
        if p.get("PaddingMode") == "same":
            top, bottom = _same(h, kh, sh, 1)
            left, right = _same(w, kw, sw, 1)
        else:
            top, bottom, left, right = p.get("PaddingSize", (0, 0, 0, 0))
        oh = (h + top + bottom - kh) // sh + 1
        ow = (w + left + right - kw) // sw + 1
        return self.node(
            op, name, [src], (n, c, oh, ow), kernel_shape=[kh, kw],
            pads=[top, left, bottom, right], strides=[sh, sw], **extra,
        )

    def _GlobalAveragePooling2DLayer(self, layer: Layer, name: str) -> str:
        (src,) = self.sources(layer)
        n, c = self.shapes[src][:2]
        return self.node("GlobalAveragePool", name, [src], (n, c, 1, 1))

    def _AdditionLayer(self, layer: Layer, name: str) -> str:
        srcs = self.sources(layer)
        return self.node("Sum", name, srcs, self.shapes[srcs[0]])

    def _DepthConcatenationLayer(self, layer: Layer, name: str) -> str:
        srcs = self.sources(layer)
        n, _, h, w = self.shapes[srcs[0]]
        c = sum(self.shapes[s][1] for s in srcs)
        return self.node("Concat", name, srcs, (n, c, h, w), axis=1)

    def _FullyConnectedLayer(self, layer: Layer, name: str) -> str:
        """A Conv whose kernel covers the whole input (R2019a onwards)."""
        (src,) = self.sources(layer)
        weights = np.asarray(layer.learnables["Weights"], np.float32)
        if len(self.shapes[src]) == 2:  # features: Gemm with O x I weights
            w_name = self.init(f"{name}_W", weights)
            b_name = self.init(f"{name}_B", np.asarray(layer.learnables["Bias"]).reshape(-1))
            return self.node("Gemm", name, [src, w_name, b_name], (1, weights.shape[0]),
                             transB=1)
        if len(self.shapes[src]) == 3:  # a sequence T x 1 x I: MatMul with I x O weights, Add
            t, n, _ = self.shapes[src]
            w_name = self.init(f"{name}_W", weights.T)
            b_name = self.init(f"{name}_B", np.asarray(layer.learnables["Bias"]).reshape(-1))
            product = self.node("MatMul", f"{name}_MatMul", [src, w_name],
                                (t, n, weights.shape[0]))
            return self.node("Add", name, [product, b_name], (t, n, weights.shape[0]))
        n, c, h, w = self.shapes[src]
        if weights.ndim == 4:  # H x W x C x O
            kernel = weights.transpose(3, 2, 0, 1)
        elif h == w == 1:  # O x C
            kernel = weights.reshape(weights.shape[0], c, 1, 1)
        else:
            raise NotImplementedError(f"{name}: 2-D weights after a {h}x{w} input")
        o = kernel.shape[0]
        w_name = self.init(f"{name}_W", kernel)
        b_name = self.init(f"{name}_B", np.asarray(layer.learnables["Bias"]).reshape(-1))
        return self.node(
            "Conv", name, [src, w_name, b_name], (n, o, 1, 1), group=1, dilations=[1, 1],
            kernel_shape=[h, w], pads=[0, 0, 0, 0], strides=[1, 1],
        )

    def _SoftmaxLayer(self, layer: Layer, name: str) -> str:
        (src,) = self.sources(layer)
        shape = self.shapes[src]
        flat = (shape[0], int(np.prod(shape[1:])))
        flattened = self.node("Flatten", f"{name}_Flatten", [src], flat, axis=1)
        return self.node("Softmax", name, [flattened], flat, axis=1)


def _same(size: int, k: int, stride: int, dilation: int) -> tuple[int, int]:
    """MATLAB 'same' padding: output ceil(size/stride), the odd pixel at the bottom/right."""
    extent = dilation * (k - 1) + 1
    total = max((math.ceil(size / stride) - 1) * stride + extent - size, 0)
    return total // 2, total - total // 2
