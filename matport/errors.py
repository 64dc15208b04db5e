"""Exceptions raised by matport. Every failure a user can cause is a `MatportError`."""

from __future__ import annotations

from collections.abc import Sequence


class MatportError(Exception):
    """Base class of every error matport raises on purpose."""


class MatFileError(MatportError):
    """A file could not be read as a MATLAB file (truncated, corrupt, hostile, unsupported)."""

    def __init__(self, path: object, message: str, where: str | None = None) -> None:
        self.path = str(path)
        self.where = where
        self.reason = message
        loc = f" (at {where})" if where else ""
        super().__init__(f"{self.path}: {message}{loc}")


class ArgumentError(MatportError, ValueError):
    """An argument matport was given is not acceptable: an unknown option value, or input data
    that does not fit the model (shape, channels, size of a mean image)."""


class NetworkError(MatportError):
    """The file holds no network, several when one was expected, or a malformed network."""


class ConversionError(MatportError):
    """A network (or some of its layers) cannot be converted to PyTorch.

    ``layers`` lists ``(layer name, MATLAB class, reason)`` for every offending layer.
    """

    def __init__(self, message: str, layers: Sequence[tuple[str, str, str]] = ()) -> None:
        self.layers = list(layers)
        lines = [message] + [f"  - {n} ({c}): {r}" for n, c, r in self.layers]
        super().__init__("\n".join(lines))


class LayerNotConvertible(ConversionError):
    """Raised by a converter when a layer's settings have no PyTorch equivalent."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


class VerificationError(MatportError):
    """A verification could not run (custom ONNX operators, missing input, ...)."""


class CheckpointError(MatportError):
    """A file is not a matport checkpoint, or a model cannot be saved as one."""


class MigrationError(MatportError):
    """A migration cannot run (a source does not exist, ...) or an artifact cannot be read."""


class WriteError(MatportError):
    """A value cannot be written to a MATLAB file; the message names the variable path."""
