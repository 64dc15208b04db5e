"""matport: move neural networks trained in MATLAB into PyTorch, without MATLAB.

Public API: :func:`read`, :func:`load`, :func:`load_torchvision`, :func:`load_resnet50`,
:func:`verify`, :func:`migrate`
and the ``matport`` command. Importing matport loads no torch: the PyTorch-side functions import
it on first use, so reading a file never does.
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
    from matport.convert.api import load
    from matport.convert.families.registry import load_torchvision
    from matport.convert.families.resnet50 import load_resnet50

__version__ = "0.1.0"

_LAZY = {
    "load": "matport.convert.api",
    "load_resnet50": "matport.convert.families.resnet50",
    "load_torchvision": "matport.convert.families.registry",
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
    "load_torchvision",
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
