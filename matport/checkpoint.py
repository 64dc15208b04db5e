"""A checkpoint format that keeps what a ``state_dict`` loses.

A ``state_dict`` holds tensors only: not the architecture (for a MATLAB ResNet-50, the stride
placement and BatchNorm epsilons that make it differ from a stock torchvision resnet50), nor the
class names or the input normalization. :func:`save` writes all of it with ``torch.save`` using
tensors and plain values only, so :func:`load_checkpoint` reads it with
``torch.load(weights_only=True)`` (no unpickling of arbitrary objects)::

    {"format": "matport.checkpoint/1",
     "info": ModelInfo.to_dict()   # class names, input size, layout, normalization, source,
                                   # layer map, architecture {"family": "resnet50" | "graph", ...}
     "state_dict": model.state_dict()}
"""

from __future__ import annotations

import os
import pickle
from typing import Any

import torch
from torch import nn

from matport.convert.info import ModelInfo
from matport.errors import CheckpointError

FORMAT = "matport.checkpoint/1"


def save(model: nn.Module, path: str | os.PathLike[str]) -> None:
    """Write ``model`` (built by matport: it carries ``model.matport``) to ``path``."""
    info = getattr(model, "matport", None)
    if not isinstance(info, ModelInfo):
        raise CheckpointError(
            f"{type(model).__name__} has no matport ModelInfo (model.matport): only models built "
            "by matport.load_resnet50 / matport.load can be saved as matport checkpoints"
        )
    torch.save({"format": FORMAT, "info": info.to_dict(), "state_dict": model.state_dict()},
               os.fspath(path))


def load_checkpoint(path: str | os.PathLike[str], map_location: Any = "cpu") -> nn.Module:
    """The model :func:`save` wrote, rebuilt with its architecture, in eval mode, with its
    ``matport`` :class:`ModelInfo` (class names, ``preprocess``)."""
    spath = os.fspath(path)
    try:
        data = torch.load(spath, map_location=map_location, weights_only=True)
    except (OSError, pickle.UnpicklingError, RuntimeError, EOFError) as exc:
        raise CheckpointError(f"{spath}: cannot read as a matport checkpoint ({exc})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise CheckpointError(f"{spath}: not a matport checkpoint (no format {FORMAT!r})")
    info = ModelInfo.from_dict(data["info"])
    model = module_from_architecture(info.architecture)
    model.load_state_dict(data["state_dict"], strict=True, assign=True)
    model.eval()
    setattr(model, "matport", info)  # noqa: B010 (not a declared attribute of the module)
    return model


def module_from_architecture(arch: dict[str, Any]) -> nn.Module:
    """An empty module (on the meta device when it can be) for ``arch``; load a state_dict with
    ``assign=True`` next."""
    family = arch.get("family")
    if family == "resnet50":
        from matport.convert.families.resnet50 import resnet50_from_architecture

        return resnet50_from_architecture(arch, device="meta")
    if family == "graph":
        from matport.convert.graph import module_from_spec

        return module_from_spec(arch["spec"])
    if family == "shallow":
        from matport.convert.shallow import shallow_from_architecture

        return shallow_from_architecture(arch)
    raise CheckpointError(f"unknown architecture family {family!r}")
