"""The declarative transplant every family shares: a matched MATLAB layer fills one torchvision
module (a :class:`Slot`) through the rules of :data:`PARAMETER_RULES`, each tensor made by a named
transform of :data:`TRANSFORMS` from MATLAB-layout arrays."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from matport.convert.families.walk import numel
from matport.network import layout
from matport.network.model import Layer

#: What a slot fills: a bias-free conv, a conv with its bias, a BatchNorm (folding the bias of the
#: conv that feeds it), a Linear, or a Linear after a spatial input (MATLAB's H x W x C flatten).
SlotKind = Literal["conv", "conv_bias", "bn", "fc", "fc_spatial"]


class Arrays:
    """How a transplant turns MATLAB arrays into tensors. ``own``: the transplant holds the only
    references to the network (its loader read the file), so an array that is a whole allocation
    of its own (as the readers make them where they can) and that no other source shares becomes
    a tensor over that memory, reordered in place where that needs no second copy; every other
    array is copied, so that no tensor keeps a larger buffer alive. Otherwise the network is the
    caller's: its arrays are never written, and tensors share those already in torch's layout."""

    def __init__(self, own: bool, sources: Iterable[np.ndarray]) -> None:
        self.own = own
        seen: set[int] = set()
        self._shared: set[int] = set()  # allocations more than one source views (by id)
        for a in sources if own else ():
            root = id(layout.allocation(a))
            (self._shared if root in seen else seen).add(root)

    def tensor(self, a: np.ndarray) -> torch.Tensor:
        """``a`` (a view in torch's layout) as a C-contiguous float32 tensor."""
        root = self._root(a) if self.own else None
        if root is not None:
            done = layout.contiguous_in_place(a)
            if done is not None:
                return torch.from_numpy(done)
        if not self.own and a.dtype == np.float32 and a.flags.c_contiguous and a.flags.writeable:
            return torch.from_numpy(a)
        return torch.from_numpy(layout.contiguous(a))

    def _root(self, a: np.ndarray) -> np.ndarray | None:
        """The allocation ``a`` views when ``a`` spans all of it and views of no other source
        (of the network's; ``a`` may be made from one) share it."""
        root = layout.allocation(a)
        whole = root.base is None and root.flags.owndata and root.nbytes == a.nbytes
        return root if whole and a.flags.writeable and id(root) not in self._shared else None


def conv_hwio_to_oihw(arrays: Arrays, w: np.ndarray) -> torch.Tensor:
    """MATLAB H x W x Cin x Cout -> torch Cout x Cin x H x W (:func:`layout.conv_weight`)."""
    return arrays.tensor(layout.conv_weight(w))


def channel_vector(arrays: Arrays, a: np.ndarray) -> torch.Tensor:
    """1 x 1 x C (or C x 1) -> C (:func:`layout.channel_vector`)."""
    return arrays.tensor(layout.channel_vector(a))


def bn_fold_conv_bias(arrays: Arrays, mean: np.ndarray, bias: np.ndarray | None) -> torch.Tensor:
    """``BN(conv(x) + b)`` with running mean ``m`` equals ``BN'(conv(x))`` with ``m - b``."""
    m = layout.channel_vector(mean)
    return arrays.tensor(m - layout.channel_vector(bias) if bias is not None else m)


def fc_weight(arrays: Arrays, w: np.ndarray) -> torch.Tensor:
    """MATLAB O x I (or 1 x 1 x I x O after global pooling) -> torch O x I."""
    return arrays.tensor(layout.fc_weight(w))


def fc_hwc_to_chw(arrays: Arrays, w: np.ndarray, spatial: np.ndarray) -> torch.Tensor:
    """MATLAB weights over a column-major H x W x C flatten (O x H*W*C, or H x W x C x O) -> torch
    O x C*H*W, the order of ``torch.flatten`` on N x C x H x W. ``spatial`` is ``(H, W, C)``.
    H x W x C x O weights are a convolution's (:func:`conv_hwio_to_oihw`, reordered in place
    where the transplant owns them: VGG's first FC holds 411 MB), then flattened."""
    if np.ndim(w) == 4:
        t = conv_hwio_to_oihw(arrays, w)
        return t.reshape(t.shape[0], -1)
    return arrays.tensor(layout.fc_weight(w, tuple(int(v) for v in np.ravel(spatial))))


def zero_count(arrays: Arrays) -> torch.Tensor:
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
        if name == "input_bias":
            a = self.input_bias
        else:
            a = self.layer.learnables.get(name)
            a = self.layer.state.get(name) if a is None else a
        return None if a is None or numel(a) == 0 else a


def conv_bias(conv: Layer) -> np.ndarray | None:
    """A convolution's bias (None when it has none)."""
    b = conv.learnables.get("Bias")
    return None if b is None or numel(b) == 0 else b


def transplant(slots: Sequence[Slot], own: bool = False) -> dict[str, torch.Tensor]:
    """The torchvision ``state_dict`` the slots describe, by :data:`PARAMETER_RULES`.

    Args:
        slots: the matched layers and the module paths they fill.
        own: whether nothing but the slots holds their network, whose large arrays then become
            the tensors' memory (and are overwritten: see :class:`Arrays`).

    Returns:
        module path + tensor name -> tensor, ready for ``load_state_dict(assign=True)``.
    """
    rows = [(f"{slot.path}.{name}", TRANSFORMS[transform], [slot.source(s) for s in sources])
            for slot in slots for name, transform, sources in PARAMETER_RULES[slot.kind]]
    arrays = Arrays(own, (a for _, _, args in rows for a in args if isinstance(a, np.ndarray)))
    return {key: transform(arrays, *args) for key, transform, args in rows}
