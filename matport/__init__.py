"""matport: move neural networks trained in MATLAB into PyTorch, without MATLAB.

Public API (``__all__``, also what ``dir(matport)`` lists):

- :func:`read`: every variable of a ``.mat`` file;
- :func:`load`: any MATLAB network as a ``torch.nn.Module`` (logits);
- :func:`load_agent`: a Reinforcement Learning Toolbox agent's networks by role;
- :func:`load_torchvision`: a MATLAB pretrained-family network as its stock torchvision model;
- :func:`load_resnet50`: a MATLAB ResNet-50 as a ``torchvision.models.ResNet``;
- :func:`reset_classifier`: a new classifier head, to fine-tune on other classes;
- :func:`save` / :func:`load_checkpoint`: a converted model as ``.pt`` or ``.safetensors`` (with
  its architecture, class names and preprocessing) and back;
- :func:`verify`: a conversion checked against MATLAB's ONNX export;
- :func:`migrate`: folders of ``.mat`` files converted, resumably, with a report;
- the errors, all :class:`MatportError`; and the ``matport`` command.

Importing matport loads no torch: the PyTorch-side functions import it on first use, so reading
a file never does.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from matport.errors import (
    ArgumentError,
    CheckpointError,
    ConversionError,
    LayerNotConvertible,
    MatFileError,
    MatportError,
    MigrationError,
    NetworkError,
    VerificationError,
    WriteError,
)
from matport.mat import read
from matport.migrate import migrate
from matport.verify import verify

if TYPE_CHECKING:
    from matport.checkpoint import load_checkpoint, save
    from matport.convert.agent import load_agent
    from matport.convert.api import load
    from matport.convert.families.registry import load_torchvision
    from matport.convert.families.resnet50 import load_resnet50
    from matport.convert.head import reset_classifier

__version__ = "0.1.0"

_LAZY = {
    "load": "matport.convert.api",
    "save": "matport.checkpoint",
    "load_checkpoint": "matport.checkpoint",
    "load_agent": "matport.convert.agent",
    "load_resnet50": "matport.convert.families.resnet50",
    "load_torchvision": "matport.convert.families.registry",
    "reset_classifier": "matport.convert.head",
}


def __getattr__(name: str) -> Any:
    """The PyTorch-side functions, imported (with torch) on first use.

    Args:
        name: the attribute asked for.

    Returns:
        The function ``name`` of the public API.

    Raises:
        AttributeError: ``name`` is not part of the public API.
    """
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'matport' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


__all__ = [
    "read",
    "load",
    "load_agent",
    "load_resnet50",
    "load_torchvision",
    "reset_classifier",
    "save",
    "load_checkpoint",
    "verify",
    "migrate",
    "MatportError",
    "ArgumentError",
    "MatFileError",
    "NetworkError",
    "ConversionError",
    "LayerNotConvertible",
    "VerificationError",
    "CheckpointError",
    "MigrationError",
    "WriteError",
]


def __dir__() -> list[str]:
    """What ``dir(matport)`` shows: the public API.

    Returns:
        The names of ``__all__`` and ``__version__``, sorted.
    """
    return sorted([*__all__, "__version__"])
