"""The declarative transplant every family shares: a matched MATLAB layer fills one torchvision
module (a :class:`Slot`) through the rules of :data:`PARAMETER_RULES`, each tensor made by a named
transform of :data:`TRANSFORMS` from MATLAB-layout arrays."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from matport.network import layout
from matport.network.model import Layer

#: What a slot fills: a bias-free conv, a conv with its bias, a BatchNorm (folding the bias of the
#: conv that feeds it), a Linear, or a Linear after a spatial input (MATLAB's H x W x C flatten).
SlotKind = Literal["conv", "conv_bias", "bn", "fc", "fc_spatial"]


def _tensor(a: np.ndarray) -> torch.Tensor:
    """``a`` as a float32 tensor, sharing its memory when it is C-contiguous float32 already."""
    if a.dtype == np.float32 and a.flags.c_contiguous:
        return torch.from_numpy(a if a.flags.writeable else a.copy())
    return torch.from_numpy(layout.contiguous(a))


def conv_hwio_to_oihw(w: np.ndarray) -> torch.Tensor:
    """MATLAB H x W x Cin x Cout -> torch Cout x Cin x H x W (:func:`layout.conv_weight`)."""
    return _tensor(layout.conv_weight(w))


def channel_vector(a: np.ndarray) -> torch.Tensor:
    """1 x 1 x C (or C x 1) -> C (:func:`layout.channel_vector`)."""
    return _tensor(layout.channel_vector(a))


def bn_fold_conv_bias(mean: np.ndarray, bias: np.ndarray | None) -> torch.Tensor:
    """``BN(conv(x) + b)`` with running mean ``m`` equals ``BN'(conv(x))`` with ``m - b``."""
    m = layout.channel_vector(mean)
    return _tensor(m - layout.channel_vector(bias) if bias is not None else m)


def fc_weight(w: np.ndarray) -> torch.Tensor:
    """MATLAB O x I (or 1 x 1 x I x O after global pooling) -> torch O x I."""
    return _tensor(layout.fc_weight(w))


def fc_hwc_to_chw(w: np.ndarray, spatial: np.ndarray) -> torch.Tensor:
    """MATLAB weights over a column-major H x W x C flatten (O x H*W*C, or H x W x C x O) -> torch
    O x C*H*W, the order of ``torch.flatten`` on N x C x H x W. ``spatial`` is ``(H, W, C)``."""
    return _tensor(layout.fc_weight(w, tuple(int(v) for v in np.ravel(spatial))))


def zero_count() -> torch.Tensor:
    """A BatchNorm's ``num_batches_tracked``."""
    return torch.zeros((), dtype=torch.long)


TRANSFORMS: dict[str, Callable[..., torch.Tensor]] = {
    "conv_hwio_to_oihw": conv_hwio_to_oihw,
    "channel_vector": channel_vector,
    "bn_fold_conv_bias": bn_fold_conv_bias,
    "fc_weight": fc_weight,
    "fc_hwc_to_chw": fc_hwc_to_chw,
    "zero_count": zero_count,
}

# slot kind -> (torch tensor name, transform, MATLAB arrays it takes). "input_bias" is the constant
# the convolutions feeding a BatchNorm add (their biases); "spatial" is the slot's input H x W x C.
PARAMETER_RULES: dict[SlotKind, tuple[tuple[str, str, tuple[str, ...]], ...]] = {
    "conv": (("weight", "conv_hwio_to_oihw", ("Weights",)),),
    "conv_bias": (("weight", "conv_hwio_to_oihw", ("Weights",)),
                  ("bias", "channel_vector", ("Bias",))),
    "bn": (
        ("weight", "channel_vector", ("Scale",)),
        ("bias", "channel_vector", ("Offset",)),
        ("running_mean", "bn_fold_conv_bias", ("TrainedMean", "input_bias")),
        ("running_var", "channel_vector", ("TrainedVariance",)),
        ("num_batches_tracked", "zero_count", ()),
    ),
    "fc": (("weight", "fc_weight", ("Weights",)), ("bias", "channel_vector", ("Bias",))),
    "fc_spatial": (("weight", "fc_hwc_to_chw", ("Weights", "spatial")),
                   ("bias", "channel_vector", ("Bias",))),
}


@dataclass
class Slot:
    """One torchvision module filled from one MATLAB layer (``input_bias``: what the convolutions
    feeding a BatchNorm add to its input, folded into its mean; ``spatial``: the H x W x C input
    of a ``fc_spatial`` slot)."""

    path: str
    kind: SlotKind
    layer: Layer
    input_bias: np.ndarray | None = None
    spatial: tuple[int, int, int] | None = None

    def source(self, name: str) -> np.ndarray | None:
        """The MATLAB array ``name`` (see :data:`PARAMETER_RULES`), None when absent or empty."""
        if name == "spatial":
            return None if self.spatial is None else np.array(self.spatial)
        a = self.input_bias if name == "input_bias" else self.layer.learnables.get(
            name, self.layer.state.get(name))
        return None if a is None or np.size(a) == 0 else a


def conv_bias(conv: Layer) -> np.ndarray | None:
    """A convolution's bias (None when it has none)."""
    b = conv.learnables.get("Bias")
    return None if b is None or np.size(b) == 0 else b


def transplant(slots: Sequence[Slot]) -> dict[str, torch.Tensor]:
    """The torchvision ``state_dict`` the slots describe, by :data:`PARAMETER_RULES`.

    Args:
        slots: the matched layers and the module paths they fill.

    Returns:
        module path + tensor name -> tensor, ready for ``load_state_dict(assign=True)``.
    """
    state: dict[str, torch.Tensor] = {}
    for slot in slots:
        for name, transform, sources in PARAMETER_RULES[slot.kind]:
            state[f"{slot.path}.{name}"] = TRANSFORMS[transform](*map(slot.source, sources))
    return state
