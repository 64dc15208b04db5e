"""Checkpoints that keep what a ``state_dict`` loses: one :func:`save` / :func:`load_checkpoint`
pair, in two formats.

A ``state_dict`` holds tensors only: not the architecture (for a MATLAB ResNet-50, the stride
placement and BatchNorm epsilons that make it differ from a stock torchvision resnet50), nor the
class names or the input normalization. A matport checkpoint holds all of it:

- ``.pt``: one ``torch.save`` zip of tensors and plain values only, read back with
  ``torch.load(weights_only=True)`` (nothing is unpickled)::

      {"format": "matport.checkpoint/1",
       "info": ModelInfo.to_dict(),    # class names, input size, layout, normalization (arrays
                                       # as tensors), source, layer map, architecture
       "state_dict": model.state_dict()}

- ``.safetensors``: the Hugging Face convention, weights plus a JSON config beside them. The
  weights file (``safetensors.torch.load_file`` reads it) holds the ``state_dict`` and, under
  keys starting with ``matport:``, the other arrays (``matport:normalization.mean`` ...); its
  config is the same name with ``.config.json`` for ``.safetensors`` (``foo.safetensors`` ->
  ``foo.config.json``, so several checkpoints can share a folder) and holds ``ModelInfo``
  without its arrays.

Loading a file (``.pt`` or ``.safetensors``, told apart by content) is bounded by what the file
holds: every tensor must be backed by its own bytes, the architecture's arrays cannot add up to
more elements than the tensors present, and the rest is plain values of bounded size; anything
else is a :class:`~matport.errors.CheckpointError`. Both formats are mapped copy-on-write, as
``safetensors.torch.load_file`` maps its files: a tensor's bytes are read when first used, each
tensor holds exactly its own bytes, and changing the model never writes the file (a ``.pt`` named
``*.safetensors`` is read whole).
"""

from __future__ import annotations

import contextlib
import json
import math
import mmap
import os
import pickle
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Protocol, cast, get_args

import torch
from torch import nn

from matport.convert.info import LAYOUTS, ModelInfo, attach_info, info_of
from matport.errors import CheckpointError, ConversionError, MatportError
from matport.files import write_atomic
from matport.options import CheckpointFormat

if TYPE_CHECKING:
    from matport.convert.layers import Converter

FORMAT = "matport.checkpoint/1"
CONFIG_FORMAT = "matport.checkpoint-config/1"
ARRAY_PREFIX = "matport:"
_NORMALIZATION_ARRAYS = ("mean", "std", "min", "max")
_MAX_VALUES = 2_000_000  # plain values (numbers, texts, list items) in a checkpoint's metadata
_MAX_DEPTH = 64
_MAX_DIMS = 32


def checkpoint_format(path: str | os.PathLike[str], format: str | None = None) -> CheckpointFormat:
    """The format to write ``path`` in.

    Args:
        path: the weights file.
        format: ``"pt"`` or ``"safetensors"``; None: from the extension (``.safetensors`` or
            else ``.pt``).

    Returns:
        The format.

    Raises:
        CheckpointError: an unknown format.
    """
    if format is None:
        return "safetensors" if Path(path).suffix.lower() == ".safetensors" else "pt"
    if format not in get_args(CheckpointFormat):
        raise CheckpointError(f"unknown checkpoint format {format!r}: expected one of "
                              f"{get_args(CheckpointFormat)}")
    return format  # type: ignore[return-value]  # checked against the Literal just above


def config_path(weights: str | os.PathLike[str]) -> Path:
    """The JSON config beside a ``.safetensors`` checkpoint.

    Args:
        weights: the weights file (``foo.safetensors``).

    Returns:
        ``foo.config.json`` in the same folder.
    """
    p = Path(weights)
    return p.with_name(f"{p.stem if p.suffix else p.name}.config.json")


def save(model: nn.Module, path: str | os.PathLike[str],
         format: str | None = None, digest: Digest | None = None) -> list[Path]:
    """Write ``model`` (built by matport: it carries ``model.matport``) as a checkpoint.

    Each file is written all or nothing (:mod:`matport.files`), the config before the weights.

    Args:
        model: a module built by :func:`matport.load`, :func:`matport.load_resnet50` ...
        path: the weights file.
        format: ``"pt"`` or ``"safetensors"``; None: from the extension of ``path``.
        digest: a hash (``hashlib.sha256()``) updated with the weights file's bytes as they
            are written, so that a caller recording the file's hash need not read it back.

    Returns:
        The files written: ``[path]``, or ``[config, path]`` for safetensors.

    Raises:
        CheckpointError: ``model`` has no ModelInfo, or an unknown format.
    """
    info = info_of(model)
    target = Path(path)
    fmt = checkpoint_format(target, format)
    state = model.state_dict()
    written: list[Path] = []
    if fmt == "pt":
        data = {"format": FORMAT, "info": info.to_dict(), "state_dict": state}
        write_atomic(target, lambda tmp: _torch_save(data, tmp, digest))
    else:
        from safetensors.torch import save as safetensors_bytes

        config, arrays = _split_info(info)
        tensors = {k: v.detach().contiguous() for k, v in state.items()}
        tensors.update(arrays)
        # one key: safetensors writes its metadata map in no fixed order
        meta = {"matport": json.dumps({"format": FORMAT, "config": config_path(target).name})}
        write_atomic(config_path(target), (json.dumps(config, indent=1) + "\n").encode())
        written.append(config_path(target))
        # written by Python: safetensors' own writer reports a full disk as a SafetensorError
        content = safetensors_bytes(tensors, metadata=meta)
        if digest is not None:
            digest.update(content)
        write_atomic(target, content)
    return [*written, target]


class Digest(Protocol):
    """What :func:`save` feeds the weights file's bytes to (a ``hashlib`` hash)."""

    def update(self, data: bytes, /) -> None: ...


class _Sink:
    """A file for ``torch.save`` that keeps the OSError (a full disk ...) its writer turns
    into a RuntimeError, and feeds what it writes to ``digest`` (torch writes the zip in order,
    once)."""

    def __init__(self, file: BinaryIO, digest: Digest | None) -> None:
        self.file = file
        self.digest = digest
        self.error: OSError | None = None

    def write(self, data: bytes) -> int:
        try:
            written = self.file.write(data)
        except OSError as exc:
            self.error = exc
            raise
        if self.digest is not None:
            self.digest.update(data)
        return written

    def flush(self) -> None:
        self.file.flush()


def _torch_save(data: dict[str, Any], path: Path, digest: Digest | None) -> None:
    with open(path, "wb") as f:
        sink = _Sink(f, digest)
        try:
            torch.save(data, cast(BinaryIO, sink))
        except RuntimeError:
            if sink.error is not None:
                raise sink.error from None
            raise


def _split_info(info: ModelInfo) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """``info`` as a JSON config whose normalization arrays are named keys of the weights file,
    and those arrays."""
    d = info.to_dict()
    arrays: dict[str, torch.Tensor] = {}
    norm = dict(d["normalization"])
    for k in _NORMALIZATION_ARRAYS:
        if norm.get(k) is not None:
            key = f"{ARRAY_PREFIX}normalization.{k}"
            arrays[key] = norm[k].contiguous()
            norm[k] = key
    return {"format": CONFIG_FORMAT, **d, "normalization": norm}, arrays


def load_checkpoint(path: str | os.PathLike[str],
                    converters: Mapping[str, Converter] | None = None,
                    map_location: Any = "cpu") -> nn.Module:
    """The model :func:`save` wrote, rebuilt with its architecture.

    Args:
        path: the weights file (``.pt``, or ``.safetensors`` with its config beside it).
        converters: the custom converters the network was converted with (as given to
            :func:`matport.load`); the error names the layers whose converter is missing.
        map_location: where the tensors of a ``.pt`` go (as for ``torch.load``).

    Returns:
        The module in eval mode, with its ``matport`` :class:`ModelInfo` (class names,
        ``preprocess``).

    Raises:
        CheckpointError: not a matport checkpoint, or a malformed or inconsistent one.
    """
    p = Path(path)
    try:
        with open(p, "rb") as f:
            magic = f.read(4)
    except OSError as exc:
        raise CheckpointError(f"{p}: cannot read ({exc.strerror or exc})") from None
    if magic == b"PK\x03\x04":
        info, state = _read_pt(p, map_location)
    else:
        info, state = _read_safetensors(p)
    return build_model(info, state, converters, where=str(p))


def _read_pt(p: Path, map_location: Any) -> tuple[ModelInfo, dict[str, torch.Tensor]]:
    try:  # torch.save never compresses: a compressed member could inflate without bound
        with zipfile.ZipFile(p) as z:
            members = z.infolist()
    except (OSError, zipfile.BadZipFile) as exc:
        raise CheckpointError(f"{p}: cannot read as a matport checkpoint ({exc})") from None
    if any(m.compress_type != zipfile.ZIP_STORED for m in members) or sum(
            m.file_size for m in members) > p.stat().st_size:
        raise CheckpointError(f"{p}: not a matport checkpoint (compressed members)")
    try:
        data = _torch_load(p, map_location)
    except (OSError, pickle.UnpicklingError, RuntimeError, EOFError, ValueError) as exc:
        raise CheckpointError(f"{p}: cannot read as a matport checkpoint ({exc})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise CheckpointError(f"{p}: not a matport checkpoint (no format {FORMAT!r})")
    state = data.get("state_dict")
    if not isinstance(state, dict):
        raise CheckpointError(f"{p}: malformed checkpoint (no state_dict)")
    _check_plain(data.get("info"), p, tensors_allowed=True)
    return _info(data["info"], p), state


def _torch_load(p: Path, map_location: Any) -> Any:
    """``torch.load(weights_only=True)`` of ``p``, mapped copy-on-write as safetensors maps its
    files (no storage is read before it is used, nor written back); a name ending in
    ``.safetensors``, which torch.load hands to safetensors, is read from a file object."""
    if p.name.endswith(".safetensors"):
        with open(p, "rb") as f:
            return torch.load(f, map_location=map_location, weights_only=True)
    private = (contextlib.nullcontext() if os.name == "nt"  # always private there, not settable
               else torch.serialization.set_default_mmap_options(mmap.MAP_PRIVATE))
    with private:
        return torch.load(p, map_location=map_location, weights_only=True, mmap=True)


def _read_safetensors(p: Path) -> tuple[ModelInfo, dict[str, torch.Tensor]]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        tensors = load_file(str(p))
    except (OSError, SafetensorError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"{p}: cannot read as a .pt or .safetensors checkpoint "
                              f"({exc})") from None
    cfg_path = config_path(p)
    try:
        config = json.loads(cfg_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise CheckpointError(f"{p}: its config {cfg_path.name} cannot be read ({exc})") from None
    if not isinstance(config, dict) or config.get("format") != CONFIG_FORMAT:
        raise CheckpointError(f"{cfg_path}: not a matport checkpoint config")
    _check_plain(config, cfg_path, tensors_allowed=False)
    arrays = {k: tensors.pop(k) for k in [k for k in tensors if k.startswith(ARRAY_PREFIX)]}
    try:
        norm = dict(config["normalization"])
        for k in _NORMALIZATION_ARRAYS:
            if norm.get(k) is not None:
                norm[k] = arrays[norm[k]]
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{cfg_path}: malformed normalization ({exc!r})") from None
    return _info({**config, "normalization": norm}, cfg_path), tensors


def _info(d: Any, where: Path) -> ModelInfo:
    try:
        info = ModelInfo.from_dict(d)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise CheckpointError(f"{where}: malformed model info ({type(exc).__name__}: "
                              f"{exc})") from None
    if info.layout not in LAYOUTS:
        raise CheckpointError(f"{where}: malformed model info (layout {info.layout!r})")
    return info


def _check_plain(value: Any, where: Path, tensors_allowed: bool) -> None:
    """Refuse what is not plain values (and tensors where allowed), too many or nested too
    deep: a small pickle can reference one list from many places."""
    count = 0
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        v, depth = stack.pop()
        count += 1
        if count > _MAX_VALUES or depth > _MAX_DEPTH:
            raise CheckpointError(f"{where}: malformed checkpoint (metadata larger than "
                                  f"{_MAX_VALUES} values or nested deeper than {_MAX_DEPTH})")
        if isinstance(v, dict):
            if not all(isinstance(k, str) for k in v):
                raise CheckpointError(f"{where}: malformed checkpoint (a key is not a text)")
            stack += [(x, depth + 1) for x in v.values()]
        elif isinstance(v, list | tuple):
            stack += [(x, depth + 1) for x in v]
        elif isinstance(v, torch.Tensor) and tensors_allowed:
            _check_tensor(v, "metadata array", where)
        elif not (v is None or isinstance(v, str | int | float | bool)):
            raise CheckpointError(f"{where}: malformed checkpoint (a {type(v).__name__} value)")


def _check_tensor(t: Any, name: str, where: str | Path) -> None:
    """A tensor backed by its own bytes (no broadcast view of a few bytes posing as a large
    array)."""
    if not isinstance(t, torch.Tensor):
        raise CheckpointError(f"{where}: malformed checkpoint ({name} is a {type(t).__name__})")
    if t.numel() and t.untyped_storage().nbytes() < t.numel() * t.element_size():
        raise CheckpointError(f"{where}: malformed checkpoint ({name}: {list(t.shape)} values "
                              f"held by {t.untyped_storage().nbytes()} bytes)")


def _spec_elements(arch: Mapping[str, Any], where: str) -> int:
    """How many array elements rebuilding ``arch`` allocates before the weights are loaded."""
    if arch.get("family") != "graph":
        return 0
    total = 0
    try:
        for layer in arch["spec"]["layers"]:
            for shape in [*layer["learnables"].values(), *layer["state"].values()]:
                if (not isinstance(shape, list) or len(shape) > _MAX_DIMS
                        or not all(isinstance(n, int) and n >= 0 for n in shape)):
                    raise CheckpointError(f"{where}: malformed checkpoint (array shape {shape!r} "
                                          f"of layer {layer.get('name')!r})")
                total += math.prod(shape)
    except (KeyError, TypeError, AttributeError) as exc:
        raise CheckpointError(f"{where}: malformed architecture ({type(exc).__name__}: "
                              f"{exc})") from None
    return total


def build_model(info: ModelInfo, state: Mapping[str, Any],
                converters: Mapping[str, Converter] | None = None, where: str = "") -> nn.Module:
    """The module ``info.architecture`` describes, holding the tensors of ``state``.

    Args:
        info: the model's ModelInfo.
        state: its ``state_dict``.
        converters: custom converters for layers matport does not convert itself.
        where: the file, for messages.

    Returns:
        The module in eval mode, with ``info`` as its ``matport`` attribute.

    Raises:
        CheckpointError: ``state`` does not fit the architecture, the architecture is malformed,
            or a layer's converter is missing.
    """
    for name, t in state.items():
        _check_tensor(t, f"tensor {name!r}", where)
    # elements the file holds: a tensor stored once and named under many keys counts once
    held = {t.untyped_storage().data_ptr(): t.untyped_storage().nbytes() // t.element_size()
            for t in state.values()}
    present = sum(held.values())
    if not isinstance(info.architecture, dict):
        raise CheckpointError(f"{where}: malformed checkpoint (no architecture)")
    if _spec_elements(info.architecture, where) > present:
        raise CheckpointError(f"{where}: malformed checkpoint (the architecture declares more "
                              f"array elements than the {present} the file holds)")
    try:
        # on the meta device first: no memory for what the file does not hold
        model = _load_into(info.architecture, state, converters, meta=True)
        if any(t.is_meta for m in model.modules()
               for t in [*vars(m).values(), *m._buffers.values()]
               if isinstance(t, torch.Tensor)):  # a converter keeps tensors outside its state
            model = _load_into(info.architecture, state, converters, meta=False)
    except ConversionError as exc:
        raise CheckpointError(f"{where}: the network cannot be rebuilt; if it was converted with "
                              f"custom converters, give them to load_checkpoint: {exc}") from None
    except (MatportError, KeyError, TypeError, ValueError, AttributeError, IndexError,
            RuntimeError, OverflowError) as exc:
        raise CheckpointError(f"{where}: the checkpoint does not describe a model matport can "
                              f"rebuild ({type(exc).__name__}: {exc})") from None
    model.eval()
    attach_info(model, info)
    return model


def _load_into(arch: dict[str, Any], state: Mapping[str, Any],
               converters: Mapping[str, Converter] | None, meta: bool) -> nn.Module:
    with torch.device("meta" if meta else "cpu"):
        model = module_from_architecture(arch, converters)
    model.load_state_dict(state, strict=True, assign=True)
    return model


def module_from_architecture(arch: dict[str, Any],
                             converters: Mapping[str, Converter] | None = None) -> nn.Module:
    """An empty module for ``arch``; load a state_dict with ``assign=True`` next.

    Args:
        arch: ``ModelInfo.architecture``.
        converters: custom converters (graph family).

    Returns:
        The module, weights not loaded.

    Raises:
        CheckpointError: an unknown family.
    """
    family = arch.get("family")
    if family == "graph":
        from matport.convert.graph import module_from_spec

        return module_from_spec(arch["spec"], converters)
    if family == "shallow":
        from matport.convert.shallow import shallow_from_architecture

        return shallow_from_architecture(arch)
    from matport.convert.families.registry import families
    from matport.convert.families.registry import module_from_architecture as family_module

    if family in families():
        return family_module(arch)
    raise CheckpointError(f"unknown architecture family {family!r}")
