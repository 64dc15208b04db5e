"""A reference forward pass over a MATLAB-layout network (test support).

Written separately from matport's transplant: it walks the layer graph of a ``Network`` in
topological order and applies MATLAB's definition of each layer with functional torch directly on
the stored arrays (H x W x Cin x Cout weights, 1 x 1 x C statistics, explicit [t b l r] padding,
the conv bias added before BatchNorm, each BatchNorm's own epsilon). Images go in as MATLAB takes
them: N x H x W x C pixel values, normalized here by the input layer's stored statistics.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import torch
import torch.nn.functional as F

from matport.network.model import Layer, Network


def forward(
    net: Network, images_nhwc: np.ndarray, outputs: tuple[str, ...]
) -> dict[str, np.ndarray]:
    """Run ``net`` on ``images_nhwc``; return the activations of the layers named in ``outputs``
    (images as N x C x H x W, vectors as N x C)."""
    pending = Counter(c.source for c in net.connections)
    acts: dict[str, torch.Tensor] = {}
    result: dict[str, np.ndarray] = {}
    with torch.no_grad():
        for lay in net.topological_order():
            ins = [acts[c.source] for c in net.predecessors(lay.name)]
            y = _layer(lay, ins, images_nhwc)
            for c in net.predecessors(lay.name):
                pending[c.source] -= 1
                if pending[c.source] == 0:
                    del acts[c.source]
            if lay.name in outputs:
                result[lay.name] = y.numpy().copy()
            if pending[lay.name]:
                acts[lay.name] = y
    return result


def _t(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a, np.float32))


def _vec(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.asarray(a, np.float32).reshape(-1)).view(1, -1, 1, 1)


def _layer(lay: Layer, ins: list[torch.Tensor], images: np.ndarray) -> torch.Tensor:
    t, p = lay.type, lay.params
    if t == "ImageInputLayer":
        x = np.asarray(images, np.float32)
        norm = lay.normalization
        if norm is not None and norm.type == "zerocenter":
            x = x - np.asarray(norm.mean, np.float32)[None]  # H x W x C broadcast over N
        elif norm is not None and norm.type != "none":
            raise NotImplementedError(norm.type)
        return torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))
    (x, *rest) = ins
    if t == "Convolution2DLayer":
        w = _t(np.asarray(lay.learnables["Weights"]).transpose(3, 2, 0, 1))
        top, bottom, left, right = p["PaddingSize"]
        x = F.pad(x, (left, right, top, bottom))
        dilation = tuple(p.get("DilationFactor", (1, 1)))
        y = F.conv2d(x, w, stride=tuple(p["Stride"]), dilation=dilation)
        return y + _vec(lay.learnables["Bias"])
    if t == "BatchNormalizationLayer":
        mean, var = _vec(lay.state["TrainedMean"]), _vec(lay.state["TrainedVariance"])
        scale, offset = _vec(lay.learnables["Scale"]), _vec(lay.learnables["Offset"])
        return (x - mean) / torch.sqrt(var + float(p["Epsilon"])) * scale + offset
    if t == "ReLULayer":
        return torch.clamp(x, min=0)
    if t == "MaxPooling2DLayer":
        top, bottom, left, right = p["PaddingSize"]
        x = F.pad(x, (left, right, top, bottom), value=float("-inf"))
        return F.max_pool2d(x, tuple(p["PoolSize"]), tuple(p["Stride"]))
    if t == "AdditionLayer":
        for r in rest:
            x = x + r
        return x
    if t == "GlobalAveragePooling2DLayer":
        return x.mean(dim=(2, 3))
    if t == "FullyConnectedLayer":
        w = _t(np.asarray(lay.learnables["Weights"]).reshape(-1, x.shape[1]))
        return x @ w.T + _t(np.asarray(lay.learnables["Bias"]).reshape(1, -1))
    if t == "SoftmaxLayer":
        return torch.softmax(x, dim=1)
    if t == "ClassificationOutputLayer":
        return x
    raise NotImplementedError(f"reference: no rule for {t} ({lay.name})")
