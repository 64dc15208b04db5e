"""matport: move neural networks trained in MATLAB into PyTorch, without MATLAB.

Public API: :func:`read`, :func:`load`, :func:`load_resnet50`, :func:`verify`, :func:`migrate`
and the ``matport`` command. The PyTorch-side functions are imported on first use, so reading a
file never loads torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from matport.errors import (
    ConversionError,
    MatFileError,
    MatportError,
    NetworkError,
    VerificationError,
)
from matport.mat import read

if TYPE_CHECKING:
    from matport.pytorch.convert import load
    from matport.pytorch.migrate import migrate
    from matport.pytorch.resnet50 import load_resnet50
    from matport.pytorch.verify import verify

__version__ = "0.1.0"

_LAZY = {
    "load": "matport.pytorch.convert",
    "load_resnet50": "matport.pytorch.resnet50",
    "verify": "matport.pytorch.verify",
    "migrate": "matport.pytorch.migrate",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'matport' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


__all__ = [
    "read",
    "load",
    "load_resnet50",
    "verify",
    "migrate",
    "MatportError",
    "MatFileError",
    "NetworkError",
    "ConversionError",
    "VerificationError",
]
