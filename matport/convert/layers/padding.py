"""MATLAB padding shared by convolution and pooling: static ``[top bottom left right]``, 'same'
padding computed from the input size, non-zero / replicate / reflect values."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from matport.convert.layers.params import padding, pair, text
from matport.network.model import Layer


def same_padding(
    x: torch.Tensor, kernel: tuple[int, int], stride: tuple[int, int], dilation: tuple[int, int]
) -> list[int]:
    """MATLAB 'same' padding for ``x`` (the odd pixel right/bottom).

    Args:
        x: ``N x C x H x W``.
        kernel: the window size.
        stride: the stride.
        dilation: the dilation.

    Returns:
        ``[left, right, top, bottom]`` (``F.pad`` order).
    """
    pads: list[int] = []
    for size, k, s, d in zip(reversed(x.shape[-2:]), reversed(kernel), reversed(stride),
                             reversed(dilation), strict=True):
        total = max((-(-size // s) - 1) * s + (k - 1) * d + 1 - size, 0)
        pads += [total // 2, total - total // 2]
    return pads


torch.fx.wrap("same_padding")


def pad(x: torch.Tensor, static: tuple[int, int, int, int] | None, same: tuple[Any, ...] | None,
        value: float, mode: str = "constant") -> torch.Tensor:
    """``x`` padded as a MATLAB layer pads it.

    Args:
        x: ``N x C x H x W``.
        static: fixed padding in ``F.pad`` order, or None.
        same: ``(kernel, stride, dilation)`` for 'same' padding, or None.
        value: the constant padding value.
        mode: ``constant``, ``replicate`` or ``reflect``.

    Returns:
        The padded tensor.
    """
    if same is not None:
        return F.pad(x, same_padding(x, *same), mode="constant", value=value)
    if static is None or not any(static):
        return x
    if mode == "constant":
        return F.pad(x, static, mode="constant", value=value)
    return F.pad(x, static, mode=mode)


def torch_pad(t: int, b: int, left: int, r: int) -> tuple[int, int, int, int]:
    """MATLAB [top bottom left right] -> ``F.pad``'s order.

    Args:
        t: top.
        b: bottom.
        left: left.
        r: right.

    Returns:
        ``(left, right, top, bottom)``.
    """
    return (left, r, t, b)


PAD_MODES = {"replicate": "replicate", "symmetric-exclude-edge": "reflect"}


def static_padding(layer: Layer, kernel: tuple[int, int],
                   dilation: tuple[int, int]) -> tuple[int, int, int, int] | None:
    """A layer's padding when it does not depend on the input size.

    With stride 1, 'same' pads ``(k - 1) * d`` in total, the odd one bottom/right.

    Args:
        layer: a convolution or pooling layer.
        kernel: its window size.
        dilation: its dilation.

    Returns:
        MATLAB ``[top bottom left right]``, or None for 'same' padding with a stride.
    """
    if text(layer, "PaddingMode", "manual") != "same":
        return padding(layer)
    if pair(layer.params.get("Stride")) != (1, 1):
        return None
    (th, tw) = ((k - 1) * d for k, d in zip(kernel, dilation, strict=True))
    return (th // 2, th - th // 2, tw // 2, tw - tw // 2)
