"""A numpy forward pass of a MATLAB network in MATLAB's own layouts (test reference).

Written from MATLAB's layer semantics (``shared/docs/matlab-layers.md`` and the toolbox
documentation), independently of ``matport.convert``: it works on arrays exactly as MATLAB holds
them, column-major and in float64:

- images ``H x W x C x N``, features ``C x N``, sequences ``C x N x T``;
- a fully connected layer after images gives ``C x N`` (MATLAB's ``1 x 1 x C x N`` squeezed);
- input layers apply their normalization to the raw data they receive.

``reference_forward(network, inputs)`` returns every layer's output(s) by layer name (and
``"name/port"`` for extra outputs such as a max pooling layer's indices).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from matport.network.model import Layer, Network

Array = np.ndarray


def reference_forward(network: Network, inputs: Sequence[Array]) -> dict[str, Any]:
    """Outputs of every layer of ``network`` for MATLAB-layout ``inputs`` (one per input layer)."""
    values: dict[str, Any] = {}
    feeds = dict(zip([lay.name for lay in network.input_layers], inputs, strict=True))
    for layer in network.topological_order():
        if layer.name in feeds:
            values[layer.name] = _normalize(layer, np.asarray(feeds[layer.name], np.float64))
            continue
        args = []
        for con in sorted(network.predecessors(layer.name), key=lambda c: _port(c.dest_port)):
            port = con.source_port
            args.append(values[con.source if port in (None, "out") else f"{con.source}/{port}"])
        out = LAYERS[layer.type](layer, *args)
        if isinstance(out, dict):
            for port, value in out.items():
                values[layer.name if port == "out" else f"{layer.name}/{port}"] = value
        else:
            values[layer.name] = out
    return values


def network_outputs(network: Network, values: dict[str, Any]) -> list[Array]:
    """The network's outputs: ``output_names`` or the layers nothing follows."""
    names = network.output_names or [
        lay.name for lay in network.layers if not network.successors(lay.name)]
    return [values[n] for n in names]


def _port(port: str | None) -> tuple[int, str]:
    order = {"in": 0, "indices": 1, "size": 2}
    if port and port.startswith("in") and port[2:].isdigit():
        return (int(port[2:]), "")
    return (order.get(port or "in", 9), port or "")


def _f32(a: Any) -> Array:
    return np.asarray(a, dtype=np.float64)


def _p(layer: Layer, key: str, default: Any) -> Any:
    v = layer.params.get(key, default)
    return default if v is None else v


def _pair(v: Any) -> tuple[int, int]:
    vals = [int(x) for x in np.ravel(v)]
    return (vals[0], vals[0]) if len(vals) == 1 else (vals[0], vals[1])


# --- inputs -------------------------------------------------------------------------------


def _normalize(layer: Layer, x: Array) -> Array:
    norm = layer.normalization
    if norm is None or norm.type == "none":
        return x
    shape = x.shape
    image = layer.type == "ImageInputLayer"

    def stat(a: Array | None) -> Array:
        a = _f32(a)
        if image:
            return a.reshape(a.shape + (1,) * (4 - a.ndim))  # H x W x C (x 1)
        return a.reshape((-1,) + (1,) * (len(shape) - 1))  # C x 1 (x 1)

    if norm.type == "zerocenter":
        return x - stat(norm.mean)
    if norm.type == "zscore":
        return (x - stat(norm.mean)) / stat(norm.std)
    if norm.type == "rescale-zero-one":
        return (x - stat(norm.min)) / (stat(norm.max) - stat(norm.min))
    if norm.type == "rescale-symmetric":
        return 2 * (x - stat(norm.min)) / (stat(norm.max) - stat(norm.min)) - 1
    raise NotImplementedError(norm.type)


# --- convolution and pooling (images H x W x C x N) ----------------------------------------


def _same_pad(size: int, k: int, s: int, d: int) -> tuple[int, int]:
    out = int(np.ceil(size / s))
    total = max((out - 1) * s + (k - 1) * d + 1 - size, 0)
    return total // 2, total - total // 2  # MATLAB puts the extra row/column bottom/right


def _padding(layer: Layer, x: Array, k: tuple[int, int], s: tuple[int, int],
             d: tuple[int, int]) -> tuple[int, int, int, int]:
    if _p(layer, "PaddingMode", "manual") == "same":
        t, b = _same_pad(x.shape[0], k[0], s[0], d[0])
        left, r = _same_pad(x.shape[1], k[1], s[1], d[1])
        return t, b, left, r
    vals = [int(v) for v in np.ravel(_p(layer, "PaddingSize", 0))]
    if len(vals) == 1:
        vals *= 4
    return tuple(vals)  # type: ignore[return-value]


def _pad(x: Array, tblr: tuple[int, int, int, int], value: Any) -> Array:
    t, b, left, r = tblr
    widths = ((t, b), (left, r), (0, 0), (0, 0))
    if value == "replicate":
        return np.pad(x, widths, mode="edge")
    if value == "symmetric-exclude-edge":
        return np.pad(x, widths, mode="reflect")
    return np.pad(x, widths, mode="constant", constant_values=float(value))


def _windows(x: Array, k: tuple[int, int], s: tuple[int, int], d: tuple[int, int]):
    """Yield (a, b, view) for every kernel offset: ``view[i, j] = x[i*s + a*d, j*s + b*d]``."""
    ho = (x.shape[0] - (k[0] - 1) * d[0] - 1) // s[0] + 1
    wo = (x.shape[1] - (k[1] - 1) * d[1] - 1) // s[1] + 1
    for a in range(k[0]):
        for b in range(k[1]):
            ra, rb = a * d[0], b * d[1]
            yield a, b, x[ra:ra + s[0] * (ho - 1) + 1:s[0], rb:rb + s[1] * (wo - 1) + 1:s[1]]


def _conv(x: Array, w: Array, bias: Array | None, s, d, groups: int) -> Array:
    """w: kh x kw x Cg x F_total (filters of group g are the g-th block)."""
    kh, kw, cg, ftot = w.shape
    fg = ftot // groups
    outs = []
    for g in range(groups):
        xs = x[:, :, g * cg:(g + 1) * cg]
        acc = 0.0
        for a, b, view in _windows(xs, (kh, kw), s, d):
            acc = acc + np.einsum("ijcn,cf->ijfn", view, w[a, b, :, g * fg:(g + 1) * fg])
        outs.append(acc)
    y = np.concatenate(outs, axis=2)
    if bias is not None:
        y = y + _f32(bias).ravel(order="F").reshape(1, 1, -1, 1)  # 1x1xFgxG: group-major
    return y


def convolution(layer: Layer, x: Array) -> Array:
    w = _f32(layer.learnables["Weights"])
    w = w.reshape(w.shape + (1,) * (4 - w.ndim))
    s, d = _pair(_p(layer, "Stride", 1)), _pair(_p(layer, "DilationFactor", 1))
    xp = _pad(x, _padding(layer, x, w.shape[:2], s, d), _p(layer, "PaddingValue", 0))
    return _conv(xp, w, layer.learnables.get("Bias"), s, d, 1)


def grouped_convolution(layer: Layer, x: Array) -> Array:
    w = _f32(layer.learnables["Weights"])  # kh x kw x Cg x Fg x G
    w = w.reshape(w.shape + (1,) * (5 - w.ndim))
    kh, kw, cg, fg, g = w.shape
    flat = w.reshape(kh, kw, cg, fg * g, order="F")  # filter f of group j -> column j*fg + f
    s, d = _pair(_p(layer, "Stride", 1)), _pair(_p(layer, "DilationFactor", 1))
    xp = _pad(x, _padding(layer, x, (kh, kw), s, d), _p(layer, "PaddingValue", 0))
    return _conv(xp, flat, layer.learnables.get("Bias"), s, d, g)


def transposed_convolution(layer: Layer, x: Array) -> Array:
    w = _f32(layer.learnables["Weights"])  # kh x kw x F x C
    w = w.reshape(w.shape + (1,) * (4 - w.ndim))
    kh, kw, f, _ = w.shape
    s = _pair(_p(layer, "Stride", 1))
    h, wd, _, n = x.shape
    y = np.zeros(((h - 1) * s[0] + kh, (wd - 1) * s[1] + kw, f, n))
    for a in range(kh):
        for b in range(kw):
            y[a:a + s[0] * (h - 1) + 1:s[0], b:b + s[1] * (wd - 1) + 1:s[1]] += np.einsum(
                "ijcn,fc->ijfn", x, w[a, b])
    if _p(layer, "CroppingMode", "manual") == "same":
        th, tw = kh - s[0], kw - s[1]
        t, bt, left, r = th // 2, th - th // 2, tw // 2, tw - tw // 2
    else:
        vals = [int(v) for v in np.ravel(_p(layer, "CroppingSize", 0))]
        t, bt, left, r = vals * 4 if len(vals) == 1 else vals
    y = y[t:y.shape[0] - bt, left:y.shape[1] - r]
    if "Bias" in layer.learnables:
        y = y + _f32(layer.learnables["Bias"]).reshape(1, 1, -1, 1)
    return y


def max_pooling(layer: Layer, x: Array) -> Any:
    k, s = _pair(_p(layer, "PoolSize", 1)), _pair(_p(layer, "Stride", 1))
    tblr = _padding(layer, x, k, s, (1, 1))
    xp = _pad(x, tblr, -np.inf)
    best = None
    where = None
    for a, b, view in _windows(xp, k, s, (1, 1)):
        if best is None:
            best, where = view.copy(), np.zeros(view.shape + (2,), dtype=int)
            where[..., 0], where[..., 1] = a, b
            continue
        better = view > best
        best = np.where(better, view, best)
        where[..., 0] = np.where(better, a, where[..., 0])
        where[..., 1] = np.where(better, b, where[..., 1])
    if not layer.params.get("HasUnpoolingOutputs"):
        return best
    ho, wo = best.shape[:2]
    rows = np.arange(ho).reshape(-1, 1, 1, 1) * s[0] + where[..., 0] - tblr[0]
    cols = np.arange(wo).reshape(1, -1, 1, 1) * s[1] + where[..., 1] - tblr[2]
    return {"out": best, "indices": (rows, cols), "size": x.shape}


def max_unpooling(layer: Layer, x: Array, indices: tuple[Array, Array], size: tuple) -> Array:
    y = np.zeros(size)
    rows, cols = indices
    _, _, c, n = np.indices(x.shape)
    y[rows, cols, c, n] = x
    return y


def average_pooling(layer: Layer, x: Array) -> Array:
    k, s = _pair(_p(layer, "PoolSize", 1)), _pair(_p(layer, "Stride", 1))
    xp = _pad(x, _padding(layer, x, k, s, (1, 1)), 0.0)
    return sum(view for _, _, view in _windows(xp, k, s, (1, 1))) / (k[0] * k[1])


# --- normalization -------------------------------------------------------------------------


def _channel_shape(x: Array) -> tuple[int, ...]:
    return (1, 1, -1, 1) if x.ndim == 4 else (-1,) + (1,) * (x.ndim - 1)


def batch_norm(layer: Layer, x: Array) -> Array:
    def get(k: str) -> Array:
        return _f32(layer.learnables.get(k, layer.state.get(k))).reshape(_channel_shape(x))

    eps = float(_p(layer, "Epsilon", 1e-5))
    return (x - get("TrainedMean")) / np.sqrt(get("TrainedVariance") + eps) * get("Scale") + get(
        "Offset")


def layer_norm(layer: Layer, x: Array) -> Array:
    dims = _p(layer, "OperationDimension", "auto")
    if x.ndim == 4:  # H x W x C x N
        axes: tuple[int, ...] = (2,) if dims == "channel-only" else (0, 1, 2)
    else:  # C x N (x T)
        axes = (0, 2) if dims == "batch-excluded" and x.ndim == 3 else (0,)
    mu = x.mean(axis=axes, keepdims=True)
    var = x.var(axis=axes, keepdims=True)
    shape = _channel_shape(x)
    eps = float(_p(layer, "Epsilon", 1e-5))
    return ((x - mu) / np.sqrt(var + eps) * _f32(layer.learnables["Scale"]).reshape(shape)
            + _f32(layer.learnables["Offset"]).reshape(shape))


# --- dense, recurrent and attention (features C x N, sequences C x N x T) ------------------


def fully_connected(layer: Layer, x: Array) -> Array:
    w = _f32(layer.learnables["Weights"])
    b = _f32(layer.learnables["Bias"]).ravel()
    if w.ndim == 4:  # H x W x C x O: MATLAB computes W(:,:)' * X(:, n), column-major
        w = w.reshape(-1, w.shape[-1], order="F").T
    if x.ndim == 4:
        return w @ x.reshape(-1, x.shape[3], order="F") + b[:, None]
    if x.ndim == 3:
        return np.einsum("oi,int->ont", w, x) + b[:, None, None]
    return w @ x + b[:, None]


def flatten(layer: Layer, x: Array) -> Array:
    return x.reshape(-1, x.shape[3], order="F") if x.ndim == 4 else x


def _sigmoid(z: Array) -> Array:
    return 1 / (1 + np.exp(-z))


def _state(layer: Layer, key: str, size: int) -> Array:
    a = layer.state.get(key)
    return np.zeros(size) if a is None or np.size(a) == 0 else _f32(a).ravel()


def _lstm_pass(x: Array, w: Array, r: Array, b: Array, h: Array, c: Array,
               project_in: Array | None = None, project_out: Array | None = None) -> Array:
    hidden = r.shape[0] // 4
    n = x.shape[1]
    h = np.repeat(h[:, None], n, axis=1)
    c = np.repeat(c[:, None], n, axis=1)
    ys = []
    for t in range(x.shape[2]):
        xt = x[:, :, t] if project_in is None else project_in.T @ x[:, :, t]
        hr = h if project_out is None else project_out.T @ h
        z = w @ xt + r @ hr + b[:, None]
        i, f = _sigmoid(z[:hidden]), _sigmoid(z[hidden:2 * hidden])
        g, o = np.tanh(z[2 * hidden:3 * hidden]), _sigmoid(z[3 * hidden:])
        c = f * c + i * g
        h = o * np.tanh(c)
        ys.append(h)
    return np.stack(ys, axis=2)


def _last(layer: Layer, y: Array) -> Array:
    if "OutputMode" in layer.params:
        seq = layer.params["OutputMode"] == "sequence"
    else:
        seq = bool(layer.params.get("ReturnSequence", True))
    return y if seq else y[:, :, -1]


def lstm(layer: Layer, x: Array) -> Array:
    w, r, b = (_f32(layer.learnables[k]) for k in ("InputWeights", "RecurrentWeights", "Bias"))
    hidden = r.shape[1]
    y = _lstm_pass(x, w, r, b.ravel(), _state(layer, "HiddenState", hidden),
                   _state(layer, "CellState", hidden))
    return _last(layer, y)


def bilstm(layer: Layer, x: Array) -> Array:
    w, r, b = (_f32(layer.learnables[k]) for k in ("InputWeights", "RecurrentWeights", "Bias"))
    b = b.ravel()
    hd = r.shape[1]
    h0, c0 = _state(layer, "HiddenState", 2 * hd), _state(layer, "CellState", 2 * hd)
    fwd = _lstm_pass(x, w[:4 * hd], r[:4 * hd], b[:4 * hd], h0[:hd], c0[:hd])
    bwd = _lstm_pass(x[:, :, ::-1], w[4 * hd:], r[4 * hd:], b[4 * hd:], h0[hd:], c0[hd:])
    if _last(layer, fwd) is not fwd:  # 'last': the final state of each direction
        return np.concatenate([fwd[:, :, -1], bwd[:, :, -1]], axis=0)
    return np.concatenate([fwd, bwd[:, :, ::-1]], axis=0)


def lstm_projected(layer: Layer, x: Array) -> Array:
    w, r, b, qi, qo = (_f32(layer.learnables[k]) for k in (
        "InputWeights", "RecurrentWeights", "Bias", "InputProjector", "OutputProjector"))
    hidden = qo.shape[0]
    y = _lstm_pass(x, w, r, b.ravel(), _state(layer, "HiddenState", hidden),
                   _state(layer, "CellState", hidden), qi, qo)
    return _last(layer, y)


def gru(layer: Layer, x: Array) -> Array:
    w, r, b = (_f32(layer.learnables[k]) for k in ("InputWeights", "RecurrentWeights", "Bias"))
    b = b.ravel()
    hd = r.shape[1]
    rb = b[3 * hd:] if b.size == 6 * hd else np.zeros(3 * hd)
    h = np.repeat(_state(layer, "HiddenState", hd)[:, None], x.shape[1], axis=1)
    ys = []
    for t in range(x.shape[2]):
        wx = w @ x[:, :, t] + b[:3 * hd, None]
        rh = r @ h + rb[:, None]
        reset = _sigmoid(wx[:hd] + rh[:hd])
        update = _sigmoid(wx[hd:2 * hd] + rh[hd:2 * hd])
        cand = np.tanh(wx[2 * hd:] + reset * rh[2 * hd:])
        h = (1 - update) * cand + update * h
        ys.append(h)
    return _last(layer, np.stack(ys, axis=2))


def self_attention(layer: Layer, x: Array) -> Array:
    lw = {k: _f32(layer.learnables[k]) for k in layer.learnables}
    heads = int(layer.params["NumHeads"])
    causal = _p(layer, "AttentionMask", "none") == "causal"
    c, n, t = x.shape
    out = np.zeros((lw["OutputWeights"].shape[0], n, t))
    for obs in range(n):
        xo = x[:, obs, :]  # C x T
        q = lw["QueryWeights"] @ xo + lw["QueryBias"].reshape(-1, 1)
        k = lw["KeyWeights"] @ xo + lw["KeyBias"].reshape(-1, 1)
        v = lw["ValueWeights"] @ xo + lw["ValueBias"].reshape(-1, 1)
        dk, dv = q.shape[0] // heads, v.shape[0] // heads
        parts = []
        for hh in range(heads):
            qh, kh = q[hh * dk:(hh + 1) * dk], k[hh * dk:(hh + 1) * dk]
            scores = kh.T @ qh / np.sqrt(dk)  # keys x queries
            if causal:
                scores = np.where(np.arange(t)[:, None] > np.arange(t)[None, :], -np.inf, scores)
            a = np.exp(scores - scores.max(axis=0, keepdims=True))
            a /= a.sum(axis=0, keepdims=True)
            parts.append(v[hh * dv:(hh + 1) * dv] @ a)
        out[:, obs, :] = lw["OutputWeights"] @ np.concatenate(parts) + lw["OutputBias"].reshape(
            -1, 1)
    return out


def position_embedding(layer: Layer, x: Array) -> Array:
    w = _f32(layer.learnables["Weights"])  # C x MaxPosition
    t = x.shape[2]
    return np.repeat(w[:, None, :t], x.shape[1], axis=1)


def indexing_1d(layer: Layer, x: Array) -> Array:
    index = layer.params.get("Index", "last")
    i = {"last": -1, "first": 0}[index] if isinstance(index, str) else int(index) - 1
    return x[:, :, i]


# --- element-wise, combining and reshaping -------------------------------------------------


def softmax(layer: Layer, x: Array) -> Array:
    axis = 2 if x.ndim == 4 else 0
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def concatenation(layer: Layer, *xs: Array) -> Array:
    return np.concatenate(xs, axis=int(layer.params["Dim"]) - 1)  # MATLAB dims of HWCN/CN/CNT


def depth_concatenation(layer: Layer, *xs: Array) -> Array:
    return np.concatenate(xs, axis=2 if xs[0].ndim == 4 else 0)


def _resize_axis(size: int, out: int, method: str, transform: str, rounding: str):
    """(index0, index1, weight1) for every output position along one axis."""
    scale = out / size
    dst = np.arange(out)
    if transform == "half-pixel":
        src = (dst + 0.5) / scale - 0.5
    else:
        src = dst / scale
    if method == "nearest":
        idx = np.floor(src) if rounding == "floor" else np.floor(src + 0.5)
        idx = np.clip(idx, 0, size - 1).astype(int)
        return idx, idx, np.zeros(out)
    src = np.clip(src, 0, size - 1)
    i0 = np.floor(src).astype(int)
    i1 = np.minimum(i0 + 1, size - 1)
    return i0, i1, src - i0


def resize_2d(layer: Layer, x: Array) -> Array:
    method = _p(layer, "Method", "nearest")
    transform = _p(layer, "GeometricTransformMode", "half-pixel")
    rounding = _p(layer, "NearestRoundingMode", "round")
    size = layer.params.get("OutputSize")
    if size is not None and len(size) >= 2:
        out = (int(size[0]), int(size[1]))
    else:
        sc = [float(v) for v in np.ravel(layer.params["Scale"])]
        out = (int(np.floor(x.shape[0] * sc[0])), int(np.floor(x.shape[1] * sc[-1])))
    for axis in (0, 1):
        i0, i1, wt = _resize_axis(x.shape[axis], out[axis], method, transform, rounding)
        shape = [1, 1, 1, 1]
        shape[axis] = -1
        wt = wt.reshape(shape)
        x = np.take(x, i0, axis=axis) * (1 - wt) + np.take(x, i1, axis=axis) * wt
    return x


def _gelu(layer: Layer, x: Array) -> Array:
    from scipy.special import erf

    if _p(layer, "Approximation", "none") == "tanh":
        return 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x**3)))
    return 0.5 * x * (1 + erf(x / np.sqrt(2)))


LAYERS: dict[str, Callable[..., Any]] = {
    "Convolution2DLayer": convolution,
    "GroupedConvolution2DLayer": grouped_convolution,
    "TransposedConvolution2DLayer": transposed_convolution,
    "BatchNormalizationLayer": batch_norm,
    "LayerNormalizationLayer": layer_norm,
    "ReLULayer": lambda layer, x: np.maximum(x, 0),
    "LeakyReLULayer": lambda layer, x: np.where(x > 0, x, x * float(_p(layer, "Scale", 0.01))),
    "ClippedReLULayer": lambda layer, x: np.clip(x, 0, float(layer.params["Ceiling"])),
    "ELULayer": lambda layer, x: np.where(x > 0, x, float(_p(layer, "Alpha", 1.0)) * (
        np.exp(np.minimum(x, 0)) - 1)),
    "TanhLayer": lambda layer, x: np.tanh(x),
    "SigmoidLayer": lambda layer, x: _sigmoid(x),
    "SwishLayer": lambda layer, x: x * _sigmoid(x),
    "GELULayer": _gelu,
    "SoftmaxLayer": softmax,
    "MaxPooling2DLayer": max_pooling,
    "AveragePooling2DLayer": average_pooling,
    "GlobalAveragePooling2DLayer": lambda layer, x: x.mean(axis=(0, 1), keepdims=True),
    "GlobalMaxPooling2DLayer": lambda layer, x: x.max(axis=(0, 1), keepdims=True),
    "MaxUnpooling2DLayer": max_unpooling,
    "FullyConnectedLayer": fully_connected,
    "DropoutLayer": lambda layer, x: x,
    "AdditionLayer": lambda layer, *xs: sum(xs[1:], xs[0]),
    "DepthConcatenationLayer": depth_concatenation,
    "ConcatenationLayer": concatenation,
    "FlattenLayer": flatten,
    "Resize2DLayer": resize_2d,
    "LSTMLayer": lstm,
    "BiLSTMLayer": bilstm,
    "LSTMProjectedLayer": lstm_projected,
    "GRULayer": gru,
    "SelfAttentionLayer": self_attention,
    "PositionEmbeddingLayer": position_embedding,
    "Indexing1DLayer": indexing_1d,
    "ClassificationOutputLayer": lambda layer, x: x,
    "RegressionOutputLayer": lambda layer, x: x,
    "PixelClassificationLayer": lambda layer, x: x,
}
