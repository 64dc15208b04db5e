"""One converter per MATLAB layer class: a :class:`~matport.network.model.Layer` -> ``nn.Module``.

Tensor layouts on the PyTorch side (the *format* of a layer's input and output):

- ``image``: ``N x C x H x W`` (MATLAB ``H x W x C x N``);
- ``vector``: ``N x C`` (MATLAB ``C x N``);
- ``sequence``: ``N x T x C`` (batch first; MATLAB ``C x N x T``).

Standard ``torch.nn`` modules are used wherever one computes exactly what MATLAB does; the small
modules below cover the rest (asymmetric or 'same' padding, flatten in MATLAB's order, recurrent
layers with stored initial states and 'last' output mode, max unpooling, self-attention, ...).

A converter is ``fn(layer, context) -> nn.Module``. :func:`register_converter` adds or replaces
one for a MATLAB class (full name ``"nnet.cnn.layer.Convolution2DLayer"``, short name
``"Convolution2DLayer"``, or a user-defined class such as ``"myproject.ScaleLayer"``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from matport.errors import LayerNotConvertible
from matport.network.model import Layer

IMAGE, VECTOR, SEQUENCE = "image", "vector", "sequence"


@dataclass(frozen=True)
class ConversionContext:
    """What a converter knows beyond the layer: the formats of its inputs, in port order."""

    input_formats: tuple[str, ...]

    @property
    def input_format(self) -> str:
        return self.input_formats[0] if self.input_formats else VECTOR


Converter = Callable[[Layer, ConversionContext], nn.Module]


# ---------------------------------------------------------------------------------------------
# Reading a layer's parameters and arrays
# ---------------------------------------------------------------------------------------------


def _pair(value: Any, default: int = 1) -> tuple[int, int]:
    """A MATLAB size given as a scalar, [a] or [a b] -> (a, b)."""
    if value is None:
        return (default, default)
    vals = [int(v) for v in np.ravel(value)]
    if not vals:
        return (default, default)
    return (vals[0], vals[0]) if len(vals) == 1 else (vals[0], vals[1])


def _padding(layer: Layer, key: str = "PaddingSize") -> tuple[int, int, int, int]:
    """MATLAB ``[top bottom left right]`` (or a scalar / ``[vertical horizontal]``)."""
    vals = [int(v) for v in np.ravel(layer.params.get(key, 0))] or [0]
    if len(vals) == 1:
        return (vals[0], vals[0], vals[0], vals[0])
    if len(vals) == 2:
        return (vals[0], vals[0], vals[1], vals[1])
    return (vals[0], vals[1], vals[2], vals[3])


def _array(layer: Layer, key: str) -> np.ndarray:
    """A learnable or state array as float32 (raises when absent)."""
    if key in layer.learnables:
        return np.asarray(layer.learnables[key], dtype=np.float32)
    if key in layer.state:
        return np.asarray(layer.state[key], dtype=np.float32)
    raise LayerNotConvertible(f"missing array {key}")


def _optional_array(layer: Layer, key: str) -> np.ndarray | None:
    arr = layer.learnables.get(key, layer.state.get(key))
    if arr is None or np.size(arr) == 0:
        return None
    return np.asarray(arr, dtype=np.float32)


def _tensor(arr: np.ndarray) -> torch.Tensor:
    return torch.tensor(np.asarray(arr, dtype=np.float32))


def _as_4d(arr: np.ndarray) -> np.ndarray:
    return arr.reshape(arr.shape + (1,) * (4 - arr.ndim)) if arr.ndim < 4 else arr


def _str(layer: Layer, key: str, default: str) -> str:
    value = layer.params.get(key, default)
    return str(value) if value is not None else default


def _float(layer: Layer, key: str, default: float) -> float:
    value = layer.params.get(key, default)
    vals = np.ravel(value) if value is not None else np.zeros(0)
    return float(vals[0]) if len(vals) else default


def returns_sequence(layer: Layer) -> bool:
    """A recurrent layer's output mode: True for 'sequence', False for 'last'."""
    if "OutputMode" in layer.params:
        return str(layer.params["OutputMode"]) == "sequence"
    return bool(layer.params.get("ReturnSequence", True))


def _require_image(context: ConversionContext) -> None:
    if context.input_format != IMAGE:
        raise LayerNotConvertible(f"needs image input, got {context.input_format} input")


# ---------------------------------------------------------------------------------------------
# Padding shared by convolution and pooling
# ---------------------------------------------------------------------------------------------


def same_padding(
    x: torch.Tensor, kernel: tuple[int, int], stride: tuple[int, int], dilation: tuple[int, int]
) -> list[int]:
    """MATLAB 'same' padding ``[left right top bottom]`` for ``x`` (extra pixel right/bottom)."""
    pads: list[int] = []
    for size, k, s, d in zip(reversed(x.shape[-2:]), reversed(kernel), reversed(stride),
                             reversed(dilation), strict=True):
        total = max((-(-size // s) - 1) * s + (k - 1) * d + 1 - size, 0)
        pads += [total // 2, total - total // 2]
    return pads


torch.fx.wrap("same_padding")


def _pad(x: torch.Tensor, pad: tuple[int, int, int, int] | None, same: tuple[Any, ...] | None,
         value: float, mode: str = "constant") -> torch.Tensor:
    if same is not None:
        pads = same_padding(x, *same)
        return F.pad(x, pads, mode="constant", value=value)
    if pad is None or not any(pad):
        return x
    if mode == "constant":
        return F.pad(x, pad, mode="constant", value=value)
    return F.pad(x, pad, mode=mode)


def _torch_pad(t: int, b: int, left: int, r: int) -> tuple[int, int, int, int]:
    """MATLAB [top bottom left right] -> ``F.pad``'s (left, right, top, bottom)."""
    return (left, r, t, b)


_PAD_MODES = {"replicate": "replicate", "symmetric-exclude-edge": "reflect"}


# ---------------------------------------------------------------------------------------------
# Modules
# ---------------------------------------------------------------------------------------------


class Conv2dPadded(nn.Conv2d):
    """``nn.Conv2d`` preceded by MATLAB padding that ``nn.Conv2d`` cannot express: asymmetric
    (``pad`` in ``F.pad`` order: left, right, top, bottom), 'same' with a stride (computed from
    the input size, the odd pixel bottom/right), or a non-zero / replicate / reflect value."""

    def __init__(self, *args: Any, pad: tuple[int, int, int, int] | None = None,
                 same: bool = False, pad_value: float = 0.0, pad_mode: str = "constant",
                 **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.pad = pad
        self.same = same
        self.pad_value = pad_value
        self.pad_mode = pad_mode

    def extra_repr(self) -> str:
        how = "same" if self.same else f"pad={self.pad}"
        extra = "" if self.pad_mode == "constant" and not self.pad_value else (
            f", pad_mode={self.pad_mode}, pad_value={self.pad_value}")
        return f"{super().extra_repr()}, {how}{extra}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        same = (self.kernel_size, self.stride, self.dilation) if self.same else None
        return super().forward(_pad(x, self.pad, same, self.pad_value, self.pad_mode))


class ConvTranspose2dCropped(nn.ConvTranspose2d):
    """``nn.ConvTranspose2d`` whose output is cropped ``[top bottom left right]`` (MATLAB
    CroppingSize), or cropped to ``stride x input size`` ('same')."""

    def __init__(self, *args: Any, crop: tuple[int, int, int, int] = (0, 0, 0, 0),
                 same: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.crop = crop
        self.same = same

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, " + ("crop=same" if self.same else f"crop={self.crop}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        y = super().forward(x)
        if self.same:
            th, tw = (k - s for k, s in zip(self.kernel_size, self.stride, strict=True))
            t, b, left, r = th // 2, th - th // 2, tw // 2, tw - tw // 2
        else:
            t, b, left, r = self.crop
        return F.pad(y, (-left, -r, -t, -b)) if (t or b or left or r) else y


class MaxPool2dPadded(nn.Module):
    """MATLAB max pooling: any padding (``pad`` in ``F.pad`` order; padded cells never win) or
    'same', optionally also returning the unpooling outputs ``(out, indices, size)``:
    ``indices`` index the unpadded input plane like ``nn.MaxPool2d``'s, and ``size`` is carried
    as the pooling input itself, whose shape is all that :class:`MaxUnpool2d` needs."""

    def __init__(self, kernel: tuple[int, int], stride: tuple[int, int],
                 pad: tuple[int, int, int, int] = (0, 0, 0, 0), same: bool = False,
                 return_indices: bool = False) -> None:
        super().__init__()
        self.kernel_size = kernel
        self.stride = stride
        self.pad = pad
        self.same = same
        self.return_indices = return_indices

    def extra_repr(self) -> str:
        how = "same" if self.same else f"pad={self.pad}"
        return (f"kernel_size={self.kernel_size}, stride={self.stride}, {how}, "
                f"return_indices={self.return_indices}")

    def forward(self, x: torch.Tensor) -> Any:
        same = (self.kernel_size, self.stride, (1, 1)) if self.same else None
        padded = _pad(x, self.pad, same, -math.inf)
        if not self.return_indices:
            return F.max_pool2d(padded, self.kernel_size, self.stride)
        out, idx = F.max_pool2d(padded, self.kernel_size, self.stride, return_indices=True)
        if same is not None or any(self.pad):
            width, pwidth = x.shape[-1], padded.shape[-1]
            pads = same_padding(x, *same) if same is not None else self.pad
            left, top = pads[0], pads[2]
            idx = (idx // pwidth - top) * width + (idx % pwidth - left)
        return out, idx, x


class AvgPool2dPadded(nn.AvgPool2d):
    """MATLAB average pooling with asymmetric (``pad`` in ``F.pad`` order) or 'same' zero
    padding; padded cells count in the average, as in MATLAB."""

    def __init__(self, kernel: tuple[int, int], stride: tuple[int, int],
                 pad: tuple[int, int, int, int] = (0, 0, 0, 0), same: bool = False) -> None:
        super().__init__(kernel, stride)
        self.pad = pad
        self.same = same

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, " + ("same" if self.same else f"pad={self.pad}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        same = (self.kernel_size, self.stride, (1, 1)) if self.same else None
        return super().forward(_pad(x, self.pad, same, 0.0))


class MaxUnpool2d(nn.Module):
    """MATLAB max unpooling: inputs ``(x, indices, reference)`` where ``indices`` and
    ``reference`` (the pooling layer's input, giving the output shape) come from a
    :class:`MaxPool2dPadded` with ``return_indices``."""

    def forward(self, x: torch.Tensor, indices: torch.Tensor,
                reference: torch.Tensor) -> torch.Tensor:
        out = torch.zeros_like(reference).flatten(2)
        out = out.scatter(2, indices.flatten(2), x.flatten(2))
        return out.view_as(reference)


class FullyConnected(nn.Linear):
    """``nn.Linear`` after image input: flattens ``N x C x H x W`` in PyTorch's C, H, W order
    (the MATLAB weights are permuted to match). After features or sequences matport uses a plain
    ``nn.Linear`` (applied to every time step of ``N x T x C``)."""

    def extra_repr(self) -> str:
        return super().extra_repr() + ", flatten=C*H*W"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.flatten(1))


class FlattenMatlabOrder(nn.Module):
    """MATLAB's flatten of ``H x W x C`` (column-major: H fastest, then W, then C) applied to
    ``N x C x H x W``: the same feature order as MATLAB, so following weights need no change."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.transpose(2, 3).flatten(1)


class Add(nn.Module):
    """Element-wise sum of all inputs (AdditionLayer)."""

    def forward(self, *xs: torch.Tensor) -> torch.Tensor:
        out = xs[0]
        for x in xs[1:]:
            out = out + x
        return out


class Concat(nn.Module):
    """Concatenation of all inputs along ``dim`` (of the PyTorch layout)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dim = dim

    def extra_repr(self) -> str:
        return f"dim={self.dim}"

    def forward(self, *xs: torch.Tensor) -> torch.Tensor:
        return torch.cat(xs, dim=self.dim)


class SequenceBatchNorm(nn.BatchNorm1d):
    """``nn.BatchNorm1d`` over the channels of ``N x T x C`` sequences."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.transpose(1, 2)).transpose(1, 2)


class ChannelLayerNorm(nn.LayerNorm):
    """``nn.LayerNorm`` over the channels of every pixel of ``N x C x H x W``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class SequenceGroupNorm(nn.GroupNorm):
    """``nn.GroupNorm`` over the channels and time steps of ``N x T x C`` sequences."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.transpose(1, 2)).transpose(1, 2)


class _Recurrent(nn.Module):
    """A batch-first ``nn.LSTM``/``nn.GRU`` (attribute ``rnn``) started from stored initial
    states (buffers ``initial_hidden`` / ``initial_cell``, one row per direction), returning
    the whole sequence (``N x T x C``) or, in MATLAB's 'last' mode, the final hidden state of
    each direction (``N x C``): the last time step's output for a forward layer; for a BiLSTM
    the forward state after step T beside the backward state after step 1 (as Keras'
    ``Bidirectional(return_sequences=False)``, to which MATLAB exports it)."""

    initial_hidden: torch.Tensor
    initial_cell: torch.Tensor | None

    def __init__(self, rnn: nn.LSTM | nn.GRU, return_sequence: bool, initial_hidden: np.ndarray,
                 initial_cell: np.ndarray | None) -> None:
        super().__init__()
        self.rnn: nn.LSTM | nn.GRU = rnn
        self.return_sequence = return_sequence
        self.register_buffer("initial_hidden", _tensor(initial_hidden)[:, None, :])
        if initial_cell is not None:
            self.register_buffer("initial_cell", _tensor(initial_cell)[:, None, :])
        else:
            self.initial_cell = None

    def extra_repr(self) -> str:
        return f"output_mode={'sequence' if self.return_sequence else 'last'}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h0 = self.initial_hidden.expand(-1, x.shape[0], -1).contiguous()
        if self.initial_cell is not None:
            c0 = self.initial_cell.expand(-1, x.shape[0], -1).contiguous()
            out, (h_n, _) = self.rnn(x, (h0, c0))
        else:
            out, h_n = self.rnn(x, h0)
        if self.return_sequence:
            return out
        return h_n.transpose(0, 1).flatten(1)  # final state of each direction: N x (dirs * H)


class LSTM(_Recurrent):
    """MATLAB LSTMLayer / BiLSTMLayer as a batch-first ``nn.LSTM`` (attribute ``rnn``; gate order
    i, f, g, o as in MATLAB; MATLAB's single bias is ``bias_ih``, ``bias_hh`` is zero).

    A MATLAB LSTMProjectedLayer becomes this too: its recurrence sees the hidden state projected
    by ``OutputProjector`` and the input projected by ``InputProjector``, which is exactly an
    LSTM with ``weight_ih = InputWeights @ InputProjector.T`` and
    ``weight_hh = RecurrentWeights @ OutputProjector.T`` (the factors are multiplied out)."""


class GRU(_Recurrent):
    """MATLAB GRULayer as a batch-first ``nn.GRU`` (attribute ``rnn``; gate order r, z, n as in
    MATLAB; ``bias_hh`` is zero, or MATLAB's recurrent bias with ResetGateMode
    'recurrent-bias-after-multiplication')."""


class SelfAttention(nn.Module):
    """MATLAB SelfAttentionLayer on ``N x T x C``: linear ``query``/``key``/``value``
    projections, heads taking contiguous channel blocks, scaled dot-product attention
    (optionally causal), then the ``output`` projection."""

    def __init__(self, channels: int, key_channels: int, value_channels: int,
                 out_channels: int, heads: int, causal: bool, dropout: float) -> None:
        super().__init__()
        self.query = nn.Linear(channels, key_channels)
        self.key = nn.Linear(channels, key_channels)
        self.value = nn.Linear(channels, value_channels)
        self.output = nn.Linear(value_channels, out_channels)
        self.heads = heads
        self.causal = causal
        self.dropout = dropout

    def extra_repr(self) -> str:
        return f"heads={self.heads}, causal={self.causal}, dropout={self.dropout}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = (p(x).unflatten(-1, (self.heads, -1)).transpose(1, 2)
                   for p in (self.query, self.key, self.value))
        a = F.scaled_dot_product_attention(
            q, k, v, dropout_p=self.dropout if self.training else 0.0, is_causal=self.causal)
        return self.output(a.transpose(1, 2).flatten(2))


class PositionEmbedding(nn.Module):
    """Learned position embedding: ``N x T x C`` -> ``weight[:T]`` (``MaxPosition x
    OutputSize``) for every observation; the values of the input are not used."""

    def __init__(self, weight: torch.Tensor) -> None:
        super().__init__()
        self.weight = nn.Parameter(weight)

    def extra_repr(self) -> str:
        return f"max_position={self.weight.shape[0]}, channels={self.weight.shape[1]}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.weight[: x.shape[1]].unsqueeze(0).expand(x.shape[0], -1, -1)


class SelectTimeStep(nn.Module):
    """Indexing1DLayer on sequences: ``N x T x C`` -> ``N x C`` at one time step."""

    def __init__(self, index: int) -> None:
        super().__init__()
        self.index = index

    def extra_repr(self) -> str:
        return f"index={self.index}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, self.index]


class Resize2d(nn.Module):
    """MATLAB Resize2DLayer through ``F.interpolate`` (fixed output size or scale)."""

    def __init__(self, mode: str, size: tuple[int, int] | None,
                 scale: tuple[float, float] | None) -> None:
        super().__init__()
        self.mode = mode
        self.size = size
        self.scale = scale

    def extra_repr(self) -> str:
        return f"mode={self.mode}, size={self.size}, scale={self.scale}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        align = False if self.mode == "bilinear" else None
        return F.interpolate(x, size=self.size, scale_factor=self.scale, mode=self.mode,
                             align_corners=align)


# ---------------------------------------------------------------------------------------------
# Converters
# ---------------------------------------------------------------------------------------------


def _identity(layer: Layer, context: ConversionContext) -> nn.Module:
    return nn.Identity()


def _sequence_input(layer: Layer, context: ConversionContext) -> nn.Module:
    if len(np.ravel(layer.params.get("InputSize", 1))) > 1:
        raise LayerNotConvertible("sequences of images are not supported")
    return nn.Identity()


def _static_padding(layer: Layer, kernel: tuple[int, int],
                    dilation: tuple[int, int]) -> tuple[int, int, int, int] | None:
    """MATLAB ``[top bottom left right]``, or None for 'same' padding that depends on the input
    size (stride > 1). With stride 1, 'same' pads ``(k - 1) * d`` in total, the odd one
    bottom/right."""
    if _str(layer, "PaddingMode", "manual") != "same":
        return _padding(layer)
    if _pair(layer.params.get("Stride")) != (1, 1):
        return None
    (th, tw) = ((k - 1) * d for k, d in zip(kernel, dilation, strict=True))
    return (th // 2, th - th // 2, tw // 2, tw - tw // 2)


def _conv_padding(layer: Layer, kernel: tuple[int, int]) -> dict[str, Any]:
    """Keyword arguments of :class:`Conv2dPadded` (or plain ``nn.Conv2d``) for the layer."""
    value = layer.params.get("PaddingValue", 0)
    if isinstance(value, str):
        if value not in _PAD_MODES:
            raise LayerNotConvertible(f"PaddingValue '{value}' has no PyTorch equivalent")
        mode, fill = _PAD_MODES[value], 0.0
    else:
        mode, fill = "constant", float(np.ravel(value)[0]) if np.size(value) else 0.0
    static = _static_padding(layer, kernel, _pair(layer.params.get("DilationFactor")))
    if static is None:
        if mode != "constant":
            raise LayerNotConvertible("'same' padding with a non-constant PaddingValue")
        return {"same": True, "pad_value": fill}
    t, b, left, r = static
    if t == b and left == r and mode == "constant" and fill == 0.0:
        return {"padding": (t, left)}
    return {"pad": _torch_pad(t, b, left, r), "pad_value": fill, "pad_mode": mode}


def _make_conv(layer: Layer, weight: torch.Tensor, groups: int) -> nn.Module:
    out_ch, in_per_group, kh, kw = weight.shape
    stride = _pair(layer.params.get("Stride"))
    dilation = _pair(layer.params.get("DilationFactor"))
    padding = _conv_padding(layer, (kh, kw))
    conv: nn.Conv2d
    if "padding" in padding:
        conv = nn.Conv2d(in_per_group * groups, out_ch, (kh, kw), stride, padding["padding"],
                         dilation, groups)
    else:
        conv = Conv2dPadded(in_per_group * groups, out_ch, (kh, kw), stride, 0, dilation, groups,
                            **padding)
    bias = _optional_array(layer, "Bias")
    with torch.no_grad():
        conv.weight.copy_(weight)
        assert conv.bias is not None
        conv.bias.copy_(_tensor(bias.ravel()) if bias is not None else torch.zeros(out_ch))
    return conv


def _convolution(layer: Layer, context: ConversionContext) -> nn.Module:
    _require_image(context)
    w = _as_4d(_array(layer, "Weights"))  # H x W x Cin x Cout
    return _make_conv(layer, _tensor(w.transpose(3, 2, 0, 1)), groups=1)


def _grouped_convolution(layer: Layer, context: ConversionContext) -> nn.Module:
    _require_image(context)
    w = _array(layer, "Weights")  # H x W x Cin/g x Cout/g x g
    w = w.reshape(w.shape + (1,) * (5 - w.ndim))
    kh, kw, cg, fg, g = map(int, w.shape)
    weight = w.transpose(4, 3, 2, 0, 1).reshape(g * fg, cg, kh, kw)
    return _make_conv(layer, _tensor(weight), groups=g)


def _transposed_convolution(layer: Layer, context: ConversionContext) -> nn.Module:
    _require_image(context)
    w = _as_4d(_array(layer, "Weights"))  # H x W x Cout x Cin
    kh, kw, out_ch, in_ch = w.shape
    mode = _str(layer, "CroppingMode", "manual")
    offset = [int(v) for v in np.ravel(layer.params.get("OutputSizeOffset", 0))]
    if any(offset):
        raise LayerNotConvertible("OutputSizeOffset is not supported")
    conv = ConvTranspose2dCropped(in_ch, out_ch, (kh, kw), stride=_pair(layer.params.get("Stride")),
                                  crop=_padding(layer, "CroppingSize"), same=mode == "same")
    bias = _optional_array(layer, "Bias")
    with torch.no_grad():
        conv.weight.copy_(_tensor(w.transpose(3, 2, 0, 1)))
        assert conv.bias is not None
        conv.bias.copy_(_tensor(bias.ravel()) if bias is not None else torch.zeros(out_ch))
    return conv


def _batch_norm(layer: Layer, context: ConversionContext) -> nn.Module:
    mean = _array(layer, "TrainedMean").ravel()
    cls = {IMAGE: nn.BatchNorm2d, VECTOR: nn.BatchNorm1d, SEQUENCE: SequenceBatchNorm}
    bn = cls[context.input_format](mean.size, eps=_float(layer, "Epsilon", 1e-5),
                                   momentum=_float(layer, "MeanDecay", 0.1))
    with torch.no_grad():
        bn.running_mean.copy_(_tensor(mean))  # type: ignore[union-attr]
        bn.running_var.copy_(_tensor(_array(layer, "TrainedVariance").ravel()))  # type: ignore[union-attr]
        bn.weight.copy_(_tensor(_array(layer, "Scale").ravel()))
        bn.bias.copy_(_tensor(_array(layer, "Offset").ravel()))
    return bn


def _layer_norm(layer: Layer, context: ConversionContext) -> nn.Module:
    scale = _array(layer, "Scale").ravel()
    eps = _float(layer, "Epsilon", 1e-5)
    dims = _str(layer, "OperationDimension", "auto")
    fmt = context.input_format
    if dims not in ("auto", "channel-only", "spatial-channel", "batch-excluded"):
        raise LayerNotConvertible(f"OperationDimension '{dims}'")
    norm: nn.GroupNorm | nn.LayerNorm
    if fmt == IMAGE and dims != "channel-only":
        norm = nn.GroupNorm(1, scale.size, eps=eps)  # over C, H, W; affine per channel
    elif fmt == IMAGE:
        norm = ChannelLayerNorm(scale.size, eps=eps)
    elif fmt == SEQUENCE and dims == "batch-excluded":
        norm = SequenceGroupNorm(1, scale.size, eps=eps)
    else:
        norm = nn.LayerNorm(scale.size, eps=eps)
    with torch.no_grad():
        norm.weight.copy_(_tensor(scale))
        norm.bias.copy_(_tensor(_array(layer, "Offset").ravel()))
    return norm


def _fully_connected(layer: Layer, context: ConversionContext) -> nn.Module:
    w = _array(layer, "Weights")
    flatten = context.input_format == IMAGE
    if flatten and w.ndim == 2:
        size = [int(v) for v in np.ravel(layer.params.get("InputSize", ()))]
        if len(size) == 3 and math.prod(size) == w.shape[1] and size[:2] != [1, 1]:
            w = w.T.reshape(*size, w.shape[0], order="F")  # O x (H*W*C) -> H x W x C x O
    if w.ndim >= 3:
        w = _as_4d(w)
        w = w.transpose(3, 2, 0, 1).reshape(w.shape[3], -1)  # O x (C*H*W), PyTorch order
    fc = FullyConnected(w.shape[1], w.shape[0]) if flatten else nn.Linear(w.shape[1], w.shape[0])
    bias = _optional_array(layer, "Bias")
    with torch.no_grad():
        fc.weight.copy_(_tensor(w))
        fc.bias.copy_(_tensor(bias.ravel()) if bias is not None else torch.zeros(w.shape[0]))
    return fc


def _softmax(layer: Layer, context: ConversionContext) -> nn.Module:
    return nn.Softmax(dim=1 if context.input_format == IMAGE else -1)


def _gelu(layer: Layer, context: ConversionContext) -> nn.Module:
    approx = _str(layer, "Approximation", "none")
    if approx not in ("none", "tanh"):
        raise LayerNotConvertible(f"GELU approximation '{approx}'")
    return nn.GELU(approximate=approx)


def _pool_args(layer: Layer) -> dict[str, Any]:
    kernel = _pair(layer.params.get("PoolSize"))
    stride = _pair(layer.params.get("Stride"))
    static = _static_padding(layer, kernel, (1, 1))
    if static is None:
        return {"kernel": kernel, "stride": stride, "same": True}
    t, b, left, r = static
    return {"kernel": kernel, "stride": stride, "pad": _torch_pad(t, b, left, r)}


def _max_pooling(layer: Layer, context: ConversionContext) -> nn.Module:
    _require_image(context)
    args = _pool_args(layer)
    indices = bool(layer.params.get("HasUnpoolingOutputs", False))
    pad = args.get("pad", (0, 0, 0, 0))
    k = args["kernel"]
    symmetric = pad[0] == pad[1] and pad[2] == pad[3]
    if not indices and not args.get("same") and symmetric and 2 * pad[0] <= k[1] and (
            2 * pad[2] <= k[0]):
        return nn.MaxPool2d(k, args["stride"], padding=(pad[2], pad[0]))
    return MaxPool2dPadded(**args, return_indices=indices)


def _average_pooling(layer: Layer, context: ConversionContext) -> nn.Module:
    _require_image(context)
    args = _pool_args(layer)
    pad = args.get("pad", (0, 0, 0, 0))
    k = args["kernel"]
    if not args.get("same") and pad[0] == pad[1] and pad[2] == pad[3] and (
            2 * pad[0] <= k[1] and 2 * pad[2] <= k[0]):
        return nn.AvgPool2d(k, args["stride"], padding=(pad[2], pad[0]), count_include_pad=True)
    return AvgPool2dPadded(**args)


def _global_pooling(pool: type[nn.Module]) -> Converter:
    def convert(layer: Layer, context: ConversionContext) -> nn.Module:
        _require_image(context)
        return pool(1)

    return convert


def _max_unpooling(layer: Layer, context: ConversionContext) -> nn.Module:
    return MaxUnpool2d()


def _flatten(layer: Layer, context: ConversionContext) -> nn.Module:
    if context.input_format == IMAGE:
        return FlattenMatlabOrder()
    if context.input_format == VECTOR:
        return nn.Identity()
    raise LayerNotConvertible("flattening sequences is not supported")


# MATLAB concatenation dimension -> PyTorch dim, by input format
_CONCAT_DIMS = {IMAGE: {1: 2, 2: 3, 3: 1, 4: 0}, VECTOR: {1: 1, 2: 0},
                SEQUENCE: {1: 2, 2: 0, 3: 1}}


def _concatenation(layer: Layer, context: ConversionContext) -> nn.Module:
    dim = int(_float(layer, "Dim", 3 if context.input_format == IMAGE else 1))
    try:
        return Concat(_CONCAT_DIMS[context.input_format][dim])
    except KeyError:
        raise LayerNotConvertible(f"concatenation along dimension {dim}") from None


def _depth_concatenation(layer: Layer, context: ConversionContext) -> nn.Module:
    return Concat(1 if context.input_format != SEQUENCE else 2)


def _resize(layer: Layer, context: ConversionContext) -> nn.Module:
    _require_image(context)
    if layer.params.get("EnableReferenceInput"):
        raise LayerNotConvertible("resizing to a reference input is not supported")
    method = _str(layer, "Method", "nearest")
    transform = _str(layer, "GeometricTransformMode", "half-pixel")
    rounding = _str(layer, "NearestRoundingMode", "round")
    modes = {("nearest", "half-pixel", "round"): "nearest-exact",
             ("nearest", "asymmetric", "floor"): "nearest"}
    if method == "bilinear" and transform == "half-pixel":
        mode = "bilinear"
    elif (method, transform, rounding) in modes:
        mode = modes[(method, transform, rounding)]
    else:
        raise LayerNotConvertible(
            f"Method '{method}' with GeometricTransformMode '{transform}' and "
            f"NearestRoundingMode '{rounding}' has no F.interpolate equivalent")
    size = [v for v in np.ravel(layer.params.get("OutputSize", ())) if np.isfinite(v)]
    if len(size) >= 2:
        return Resize2d(mode, (int(size[0]), int(size[1])), None)
    scale = [float(v) for v in np.ravel(layer.params.get("Scale", ()))]
    if not scale:
        raise LayerNotConvertible("neither Scale nor OutputSize is set")
    return Resize2d(mode, None, (scale[0], scale[-1]))


def _check_recurrent(layer: Layer, context: ConversionContext) -> None:
    if context.input_format != SEQUENCE:
        raise LayerNotConvertible(f"needs sequence input, got {context.input_format} input")
    for key, expected in (("StateActivationFunction", "tanh"),
                          ("GateActivationFunction", "sigmoid")):
        if _str(layer, key, expected) != expected:
            raise LayerNotConvertible(f"{key} '{_str(layer, key, expected)}'")
    for key in ("HasStateInputs", "HasStateOutputs"):
        if layer.params.get(key):
            raise LayerNotConvertible(f"{key} is not supported")


def _initial_state(layer: Layer, keys: Sequence[str], directions: int,
                   size: int) -> np.ndarray:
    for key in keys:
        arr = _optional_array(layer, key)
        if arr is not None:
            return arr.reshape(directions, size)
    return np.zeros((directions, size), dtype=np.float32)


def _lstm(layer: Layer, context: ConversionContext, bidirectional: bool = False) -> nn.Module:
    _check_recurrent(layer, context)
    w_in = _array(layer, "InputWeights")
    w_rec = _array(layer, "RecurrentWeights")
    bias = _array(layer, "Bias").ravel()
    if layer.type == "LSTMProjectedLayer":  # the same function as an LSTM with these weights
        w_in = w_in @ _array(layer, "InputProjector").T
        w_rec = w_rec @ _array(layer, "OutputProjector").T
    dirs = 2 if bidirectional else 1
    hidden = w_rec.shape[1]
    lstm = nn.LSTM(w_in.shape[1], hidden, batch_first=True, bidirectional=bidirectional)
    rows = 4 * hidden
    with torch.no_grad():
        for d, suffix in enumerate(["_l0", "_l0_reverse"][:dirs]):
            block = slice(d * rows, (d + 1) * rows)
            getattr(lstm, "weight_ih" + suffix).copy_(_tensor(w_in[block]))
            getattr(lstm, "weight_hh" + suffix).copy_(_tensor(w_rec[block]))
            getattr(lstm, "bias_ih" + suffix).copy_(_tensor(bias[block]))
            getattr(lstm, "bias_hh" + suffix).zero_()
    h0 = _initial_state(layer, ("HiddenState", "InitialHiddenState"), dirs, hidden)
    c0 = _initial_state(layer, ("CellState", "InitialCellState"), dirs, hidden)
    return LSTM(lstm, returns_sequence(layer), h0, c0)


def _bilstm(layer: Layer, context: ConversionContext) -> nn.Module:
    return _lstm(layer, context, bidirectional=True)


def _gru(layer: Layer, context: ConversionContext) -> nn.Module:
    _check_recurrent(layer, context)
    w_in = _array(layer, "InputWeights")
    w_rec = _array(layer, "RecurrentWeights")
    bias = _array(layer, "Bias").ravel()
    hidden = w_rec.shape[1]
    mode = _str(layer, "ResetGateMode", "after-multiplication")
    if mode == "before-multiplication":
        raise LayerNotConvertible("ResetGateMode 'before-multiplication' has no nn.GRU equivalent")
    gru = nn.GRU(w_in.shape[1], hidden, batch_first=True)
    recurrent_bias = (bias[3 * hidden:] if mode == "recurrent-bias-after-multiplication"
                      else np.zeros(3 * hidden, np.float32))
    arrays = {"weight_ih_l0": w_in, "weight_hh_l0": w_rec, "bias_ih_l0": bias[: 3 * hidden],
              "bias_hh_l0": recurrent_bias}
    with torch.no_grad():
        for name, arr in arrays.items():
            getattr(gru, name).copy_(_tensor(arr))
    h0 = _initial_state(layer, ("HiddenState", "InitialHiddenState"), 1, hidden)
    return GRU(gru, returns_sequence(layer), h0, None)


def _self_attention(layer: Layer, context: ConversionContext) -> nn.Module:
    if context.input_format != SEQUENCE:
        raise LayerNotConvertible(f"needs sequence input, got {context.input_format} input")
    for key in ("HasPaddingMaskInput", "HasScoresOutput"):
        if layer.params.get(key):
            raise LayerNotConvertible(f"{key} is not supported")
    mask = _str(layer, "AttentionMask", "none")
    if mask not in ("none", "causal"):
        raise LayerNotConvertible(f"AttentionMask '{mask}' is not supported")
    wq, wk, wv, wo = (_array(layer, k + "Weights") for k in ("Query", "Key", "Value", "Output"))
    heads = int(_float(layer, "NumHeads", 1))
    attn = SelfAttention(wq.shape[1], wq.shape[0], wv.shape[0], wo.shape[0], heads,
                         mask == "causal", _float(layer, "DropoutProbability", 0.0))
    with torch.no_grad():
        for name, w in zip(("query", "key", "value", "output"), (wq, wk, wv, wo), strict=True):
            proj = getattr(attn, name)
            proj.weight.copy_(_tensor(w))
            b = _optional_array(layer, name.capitalize() + "Bias")
            proj.bias.copy_(_tensor(b.ravel()) if b is not None else torch.zeros(w.shape[0]))
    return attn


def _position_embedding(layer: Layer, context: ConversionContext) -> nn.Module:
    if context.input_format != SEQUENCE:
        raise LayerNotConvertible(f"needs sequence input, got {context.input_format} input")
    dim = _str(layer, "PositionDimension", "auto")
    if dim not in ("auto", "temporal"):
        raise LayerNotConvertible(f"PositionDimension '{dim}' is not supported")
    return PositionEmbedding(_tensor(_array(layer, "Weights").T))  # OutputSize x MaxPosition


def _indexing_1d(layer: Layer, context: ConversionContext) -> nn.Module:
    if context.input_format != SEQUENCE:
        raise LayerNotConvertible(f"needs sequence input, got {context.input_format} input")
    index = layer.params.get("Index", "last")
    if isinstance(index, str):
        if index not in ("first", "last"):
            raise LayerNotConvertible(f"Index '{index}'")
        return SelectTimeStep(0 if index == "first" else -1)
    return SelectTimeStep(int(np.ravel(index)[0]) - 1)


def _module(factory: Callable[[], nn.Module]) -> Converter:
    return lambda layer, context: factory()


_BUILTIN: dict[str, Converter] = {
    "ImageInputLayer": _identity,
    "FeatureInputLayer": _identity,
    "SequenceInputLayer": _sequence_input,
    "Convolution2DLayer": _convolution,
    "GroupedConvolution2DLayer": _grouped_convolution,
    "TransposedConvolution2DLayer": _transposed_convolution,
    "BatchNormalizationLayer": _batch_norm,
    "LayerNormalizationLayer": _layer_norm,
    "ReLULayer": _module(nn.ReLU),
    "LeakyReLULayer": lambda layer, c: nn.LeakyReLU(_float(layer, "Scale", 0.01)),
    "ClippedReLULayer": lambda layer, c: nn.Hardtanh(0.0, _float(layer, "Ceiling", 6.0)),
    "ELULayer": lambda layer, c: nn.ELU(_float(layer, "Alpha", 1.0)),
    "TanhLayer": _module(nn.Tanh),
    "SigmoidLayer": _module(nn.Sigmoid),
    "SwishLayer": _module(nn.SiLU),
    "GELULayer": _gelu,
    "SoftmaxLayer": _softmax,
    "MaxPooling2DLayer": _max_pooling,
    "AveragePooling2DLayer": _average_pooling,
    "GlobalAveragePooling2DLayer": _global_pooling(nn.AdaptiveAvgPool2d),
    "GlobalMaxPooling2DLayer": _global_pooling(nn.AdaptiveMaxPool2d),
    "MaxUnpooling2DLayer": _max_unpooling,
    "FullyConnectedLayer": _fully_connected,
    "DropoutLayer": lambda layer, c: nn.Dropout(_float(layer, "Probability", 0.5)),
    "AdditionLayer": _module(Add),
    "DepthConcatenationLayer": _depth_concatenation,
    "ConcatenationLayer": _concatenation,
    "FlattenLayer": _flatten,
    "Resize2DLayer": _resize,
    "LSTMLayer": _lstm,
    "LSTMProjectedLayer": _lstm,
    "BiLSTMLayer": _bilstm,
    "GRULayer": _gru,
    "SelfAttentionLayer": _self_attention,
    "PositionEmbeddingLayer": _position_embedding,
    "Indexing1DLayer": _indexing_1d,
    "ClassificationOutputLayer": _identity,
    "RegressionOutputLayer": _identity,
    "PixelClassificationLayer": _identity,
}

# Arrays a built-in converter needs; absent or empty ones mean an untrained layer.
REQUIRED_ARRAYS: dict[str, tuple[str, ...]] = {
    "Convolution2DLayer": ("Weights",),
    "GroupedConvolution2DLayer": ("Weights",),
    "TransposedConvolution2DLayer": ("Weights",),
    "BatchNormalizationLayer": ("TrainedMean", "TrainedVariance", "Offset", "Scale"),
    "LayerNormalizationLayer": ("Offset", "Scale"),
    "FullyConnectedLayer": ("Weights",),
    "LSTMLayer": ("InputWeights", "RecurrentWeights", "Bias"),
    "LSTMProjectedLayer": ("InputWeights", "RecurrentWeights", "Bias", "InputProjector",
                           "OutputProjector"),
    "BiLSTMLayer": ("InputWeights", "RecurrentWeights", "Bias"),
    "GRULayer": ("InputWeights", "RecurrentWeights", "Bias"),
    "SelfAttentionLayer": ("QueryWeights", "KeyWeights", "ValueWeights", "OutputWeights"),
    "PositionEmbeddingLayer": ("Weights",),
}

# Names of a layer's output ports, for layers with more than one output.
OUTPUT_PORTS: dict[str, Callable[[Layer], tuple[str, ...]]] = {
    "MaxPooling2DLayer": lambda layer: ("out", "indices", "size")
    if layer.params.get("HasUnpoolingOutputs") else ("out",),
}

# Names of a layer's input ports, where they are not in1, in2, ...
INPUT_PORTS: dict[str, tuple[str, ...]] = {"MaxUnpooling2DLayer": ("in", "indices", "size")}

_INPUT_FORMATS = {"ImageInputLayer": IMAGE, "FeatureInputLayer": VECTOR,
                  "SequenceInputLayer": SEQUENCE}

_user_converters: dict[str, Converter] = {}


def register_converter(matlab_class: str, converter: Converter) -> None:
    """Use ``converter(layer, context) -> nn.Module`` for layers of ``matlab_class``.

    ``matlab_class`` is a full class name (``"myproject.layers.ScaleLayer"``) or a short one
    (``"ScaleLayer"``); a registered converter takes precedence over the built-in one. The
    converter reads ``layer.params`` / ``layer.learnables`` (or ``layer.raw`` for a class matport
    does not know) and ``context.input_formats``; the module it returns is called with the
    layer's inputs in port order, and its output is taken to have the first input's format.
    Raise :class:`LayerNotConvertible` to refuse a setting (it is listed with the others).
    """
    _user_converters[matlab_class] = converter


def unregister_converter(matlab_class: str) -> None:
    """Forget a converter added by :func:`register_converter` (no-op when absent)."""
    _user_converters.pop(matlab_class, None)


def find_converter(layer: Layer, extra: dict[str, Converter] | None = None,
                   ) -> tuple[Converter | None, bool]:
    """The converter for ``layer`` and whether it is a built-in one.

    Looks in ``extra`` (per call), then the registry, then the built-ins; full class names
    before short ones.
    """
    for table in (extra or {}, _user_converters):
        for key in (layer.class_name, layer.type):
            if key in table:
                return table[key], False
    if layer.class_name.startswith("nnet.") and layer.type in _BUILTIN:
        return _BUILTIN[layer.type], True
    return None, False


def output_format(layer: Layer, input_formats: Sequence[str]) -> str:
    """The format (``image``/``vector``/``sequence``) of a layer's main output."""
    kind = layer.type
    first = input_formats[0] if input_formats else VECTOR
    if kind in _INPUT_FORMATS:
        return _INPUT_FORMATS[kind]
    if kind in ("FullyConnectedLayer", "FlattenLayer") and first == IMAGE:
        return VECTOR
    if kind in ("LSTMLayer", "LSTMProjectedLayer", "BiLSTMLayer", "GRULayer"):
        return SEQUENCE if returns_sequence(layer) else VECTOR
    if kind == "Indexing1DLayer":
        return VECTOR
    return first


def layout_of(fmt: str) -> str:
    """The PyTorch layout string of a format: ``NCHW``, ``NC`` or ``NTC``."""
    return {IMAGE: "NCHW", VECTOR: "NC", SEQUENCE: "NTC"}[fmt]
