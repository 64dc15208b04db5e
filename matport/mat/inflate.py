"""Inflating v7 variables: ISA-L (the ``isal`` package) where installed, zlib otherwise.

ISA-L inflates MATLAB's zlib streams in about 0.7x zlib's time, with zlib's streaming interface
(``decompress(data, max_length)``, ``unconsumed_tail``, ``eof``), so the reader's bounds hold
alike. ``isal`` (PSF-2.0, wheels for Linux, macOS and Windows on x86-64 and arm64) was measured
against ``zlib-ng`` (PSF-2.0, similar wheels): both inflate the same bytes, ISA-L was faster.
"""

from __future__ import annotations

import importlib
import zlib
from types import ModuleType
from typing import Any


def _engine() -> ModuleType:
    try:
        return importlib.import_module("isal.isal_zlib")
    except ImportError:  # the standard library's zlib is the fallback
        return zlib


_impl = _engine()
ENGINE = _impl.__name__
ERRORS: tuple[type[Exception], ...] = (zlib.error, _impl.error)


def decompressobj() -> Any:
    """A streaming inflater for one zlib stream."""
    return _impl.decompressobj()
