"""One source file's migration, in a worker process, and the artifacts it writes and reads back.

An artifact is one network: its weights, a :mod:`matport.checkpoint` (``<name>.pt``, or
``<name>.safetensors`` with ``<name>.config.json``: architecture, class names, normalization
arrays), and its metadata (``<name>.json``, small: source path and sha256, variable path, class
names, input size, layout, normalization type and array shapes, family, matport version,
verification result and report). The old metadata is removed first, the weights are written all
or nothing, the metadata last: an artifact exists once its ``.json`` does, and a ``.json``
always describes the weights beside it (:func:`remove_unfinished` clears what a killed writer
leaves)."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import re
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from matport.convert.info import ModelInfo, info_of
from matport.errors import MatportError, MigrationError
from matport.files import is_temporary, write_atomic
from matport.migrate.report import FileResult, NetworkResult, one_line

if TYPE_CHECKING:
    from torch import nn

    from matport.convert.layers import Converter
    from matport.network.find import NetworkRef
    from matport.network.model import Network
    from matport.options import FamilyChoice
    from matport.verify.onnx_run import OnnxExport

#: the weights file of an artifact
WeightsFormat = Literal["pt", "safetensors"]
FORMATS = {"pt": ".pt", "safetensors": ".safetensors"}
ARTIFACT_FORMAT = "matport.migration-artifact/2"
#: random inputs an export's check runs through both sides (``matport verify`` draws 8): the
#: weights certificate already compares every tensor with the export bit for bit, so the
#: forward pass checks the graph, which any input takes through every layer; a ResNet-50's
#: forward passes are 0.1 + 0.07 CPU s an input (torch, onnxruntime), most of a file's check
NUM_RANDOM = 2
#: written by matport 0.1.0: ModelInfo with its arrays as JSON numbers in the ``.json``
ARTIFACT_FORMAT_0_1 = "matport.migration-artifact/1"
_CONFIG = ".config.json"
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_CHUNK = 1 << 20


@dataclass
class FileTask:
    """A file to migrate, as a worker receives it (``relative``: the path its artifacts mirror;
    ``onnx``: MATLAB's export that checks it, if any, on ``num_random`` random inputs; hashes
    None: the worker computes them)."""

    source: str
    relative: str
    out: str
    size: int
    onnx: str | None
    format: WeightsFormat
    family: FamilyChoice
    sha256: str | None = None
    onnx_sha256: str | None = None
    signature: tuple[int, ...] | None = None  # source_signature() when sha256 was taken
    num_random: int = NUM_RANDOM

    @property
    def folder(self) -> Path:
        """Where this file's artifacts go: ``out/<relative without .mat>/``."""
        rel = Path(self.relative)
        return Path(self.out) / rel.parent / rel.stem

    def result(self, **fields: Any) -> FileResult:
        """A result for this file.

        Args:
            fields: :class:`FileResult` fields to set.

        Returns:
            The result with this file's paths, hashes and size.
        """
        return FileResult(source=self.source, relative=self.relative, sha256=self.sha256,
                          onnx_sha256=self.onnx_sha256, size=self.size, **fields)


def file_sha256(path: str | os.PathLike[str]) -> str:
    """The sha256 of a file's content.

    Args:
        path: the file.

    Returns:
        The hex digest.
    """
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def source_signature(path: str | os.PathLike[str]) -> tuple[int, ...]:
    """What changes when a file is rewritten (size, modification and change times, inode): a
    source whose signature is the same after its migration as when it was hashed is unchanged.

    Args:
        path: the file.

    Returns:
        The signature.
    """
    st = os.stat(path)
    return (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)


# ---------------------------------------------------------------------------------------------
# files on disk


def remove_temporary_files(folder: Path) -> None:
    """Delete the temporary files of :func:`matport.files.write_temporary` under ``folder``.

    Args:
        folder: searched at any depth.
    """
    for here, _dirs, files in os.walk(folder):
        for name in files:
            if is_temporary(name):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(os.path.join(here, name))


def remove_unfinished(folder: Path) -> None:
    """Delete what a killed writer leaves in the artifact folder ``folder`` (not in its
    subfolders): temporary files, and weights or safetensors configs without their metadata (an
    artifact is committed by its ``.json``, written last).

    Args:
        folder: the artifact folder of one source file.
    """
    try:
        names = set(os.listdir(folder))
    except (FileNotFoundError, NotADirectoryError):
        return
    weights = tuple(FORMATS.values())
    for name in names:
        stem, ext = os.path.splitext(name)
        if name.endswith(_CONFIG):
            stem, ext = name.removesuffix(_CONFIG), _CONFIG
        if is_temporary(name) or (ext in (*weights, _CONFIG) and f"{stem}.json" not in names):
            with contextlib.suppress(FileNotFoundError, IsADirectoryError):
                os.unlink(folder / name)


def artifact_names(variables: Sequence[str]) -> list[str]:
    """File names (without extension) for the networks at ``variables`` of one file.

    Args:
        variables: the networks' variable paths.

    Returns:
        Each path with other characters than letters, digits, ``._-`` replaced by ``_`` (and a
        final ``.config`` by ``_config``: ``<name>.config.json`` is a safetensors config), made
        unique with ``-2``, ``-3`` ...
    """
    names: list[str] = []
    for v in variables:
        base = _UNSAFE.sub("_", v).strip("_.") or "network"
        if base.endswith(".config"):
            base = base.removesuffix(".config") + "_config"
        name, n = base, 1
        while name in names:
            n += 1
            name = f"{base}-{n}"
        names.append(name)
    return names


# ---------------------------------------------------------------------------------------------
# migrating one file


def migrate_file(task: FileTask, memory_mb: int | None = None) -> tuple[FileResult, bool]:
    """Migrate one file in this process.

    Args:
        task: the file.
        memory_mb: the memory limit the process runs under (for the message).

    Returns:
        The result, and whether the process is still sound (False after running out of memory).
    """
    t0 = time.monotonic()
    result = task.result()
    reason, healthy = _attempt(lambda: _migrate_networks(task, result), memory_mb)
    if reason is None:
        result.outcome, result.reason = _file_outcome(result.networks)
    else:
        result.outcome, result.reason = "failed", reason
    result.seconds = time.monotonic() - t0
    return result, healthy


def _attempt(step: Callable[[], None], memory_mb: int | None) -> tuple[str | None, bool]:
    """Run ``step``: why it failed (None when it did not) and whether the process is sound."""
    try:
        step()
    except MatportError as exc:
        return str(exc), True
    except MemoryError:
        return f"out of memory (limit {memory_mb} MB per file)", False
    except OSError as exc:  # an artifact that cannot be written (a full disk ...)
        return f"{exc.filename or 'a file'}: {exc.strerror or exc}", True
    except Exception as exc:  # noqa: BLE001 (a failing file never stops the batch)
        return f"internal error: {type(exc).__name__}: {exc}", True
    return None, True


def _migrate_networks(task: FileTask, result: FileResult) -> None:
    """Fill ``result.networks``; raises what fails the whole file. A second thread meanwhile
    hashes the source and reads, hashes and loads the ONNX export (each read once), building
    its onnxruntime session while this one reads and converts the network."""
    from matport.mat import read
    from matport.network import find_networks

    hashed = background().submit(_hash_source, task)
    export = background().submit(_load_export, task) if task.onnx else None
    try:
        refs = find_networks(read(task.source))
        for ref, name in zip(refs, artifact_names([r.path for r in refs]), strict=True):
            net_result = NetworkResult(ref.path, ref.class_name)
            result.networks.append(net_result)
            step = functools.partial(_migrate_network, task, ref, name, len(refs), net_result,
                                     export)
            reason, healthy = _attempt(step, None)
            if not healthy:
                raise MemoryError
            if reason is not None:
                net_result.reason = reason
    finally:  # the next file does not start before this one's jobs end
        for job in (hashed, export):
            _wait_read(job, task)
        result.sha256, result.onnx_sha256 = task.sha256, task.onnx_sha256
    if source_signature(task.source) != task.signature:
        raise MigrationError(f"{task.source}: the file changed during the migration")


def background() -> ThreadPoolExecutor:
    """This process's second thread, for the work that overlaps a file's conversion (started
    on first use; a worker starts it before its memory limit, which a new thread's stack would
    not fit in).

    Returns:
        An executor of one thread.
    """
    global _background
    if _background is None:
        _background = ThreadPoolExecutor(1, thread_name_prefix="matport-migrate")
        _background.submit(int).result()  # the thread starts now
    return _background


_background: ThreadPoolExecutor | None = None


def _hash_source(task: FileTask) -> None:
    """Hash the source unless the migrating process did (its signature first)."""
    if task.sha256 is None:
        task.signature = source_signature(task.source)
        task.sha256 = file_sha256(task.source)


def _load_export(task: FileTask) -> OnnxExport | str:
    """Read the ONNX export once: hash it (unless the migrating process did), load it and build
    the session its check runs first; why it cannot be checked instead of the export."""
    from matport.verify.check import prepare_export

    assert task.onnx is not None
    with open(task.onnx, "rb") as f:
        data = f.read()
    if task.onnx_sha256 is None:
        task.onnx_sha256 = hashlib.sha256(data).hexdigest()
    try:
        return prepare_export(task.onnx, data)
    except Exception as exc:  # noqa: BLE001 (a check that cannot run is recorded, not fatal)
        return one_line(str(exc))


def _wait_read(job: Future[Any] | None, task: FileTask) -> None:
    """Wait for a background job; a source or export it could not read fails the file."""
    if job is None:
        return
    try:
        job.result()
    except OSError as exc:
        raise MigrationError(f"{task.source}: cannot read: {exc}") from None


def _file_outcome(networks: list[NetworkResult]) -> tuple[str, str | None]:
    if not networks:
        return "skipped", "no network"
    failed = [n for n in networks if n.outcome == "failed"]
    if failed:
        return "failed", "; ".join(f"{n.variable}: {n.reason}" for n in failed)
    if all(n.outcome == "verified" for n in networks):
        return "verified", None
    return "converted", None


def _migrate_network(task: FileTask, ref: NetworkRef, name: str, count: int,
                     result: NetworkResult, export: Future[OnnxExport | str] | None) -> None:
    """Convert, verify and write one network, filling ``result``. The old metadata goes first,
    then the weights (and a safetensors config) are written all or nothing, the metadata last: a
    ``.json`` always describes the weights beside it."""
    from matport.checkpoint import config_path, save
    from matport.convert.api import convert_network
    from matport.network import network_from_ref

    net = network_from_ref(ref, task.source)
    model, note = convert_network(net, task.family)
    result.family = info_of(model).architecture.get("family")
    result.parameters = sum(p.numel() for p in model.parameters())
    result.verification, full_report = _verify(model, net, task, export, count)
    weights = task.folder / f"{name}{FORMATS[task.format]}"
    metadata = task.folder / f"{name}.json"
    weights.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileNotFoundError):
        metadata.unlink()
    digest = hashlib.sha256()  # of the bytes as they are written: the file is not read back
    written = save(model, weights, task.format, digest)
    meta = _metadata(model, net, task, result, weights, digest.hexdigest(), note, full_report)
    write_atomic(metadata, (json.dumps(meta, indent=2) + "\n").encode())
    out = Path(task.out)
    result.weights = weights.relative_to(out).as_posix()
    result.metadata = metadata.relative_to(out).as_posix()
    result.weights_size, result.metadata_size = weights.stat().st_size, metadata.stat().st_size
    if config_path(weights) in written:
        result.config = config_path(weights).relative_to(out).as_posix()
        result.config_size = config_path(weights).stat().st_size
    status = result.verification["status"]
    result.outcome = {"verified": "verified", "failed": "failed"}.get(status, "converted")
    if status == "failed":
        result.reason = f"the ONNX check failed: {result.verification['reason']}"


def _verify(model: nn.Module, net: Network, task: FileTask,
            export: Future[OnnxExport | str] | None,
            count: int) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """The check against MATLAB's export ``task.onnx`` (loaded by ``export``) of the file's
    ``count`` networks: ``{status, reason, onnx}`` (status verified / failed / error, or none
    without an export) and the full report."""
    onnx = task.onnx
    if onnx is None or export is None:
        return {"status": "none", "reason": None, "onnx": None}, None
    if count != 1:
        return {"status": "error", "onnx": onnx,
                "reason": f"the file holds {count} networks; {Path(onnx).name} cannot be "
                          "matched to one of them"}, None
    from matport.verify import verify

    try:
        loaded = export.result()
        if isinstance(loaded, str):
            return {"status": "error", "onnx": onnx, "reason": loaded}, None
        report = verify(model, loaded, network=net, num_random=task.num_random)
    except Exception as exc:  # noqa: BLE001 (a check that cannot run is recorded, not fatal)
        return {"status": "error", "onnx": onnx, "reason": one_line(str(exc))}, None
    return {"status": report.status, "onnx": onnx, "reason": report.reason}, report.to_dict()


def _metadata(model: nn.Module, net: Network, task: FileTask, result: NetworkResult,
              weights: Path, weights_sha256: str, note: str | None,
              report: dict[str, Any] | None) -> dict[str, Any]:
    """The artifact's ``.json``: small (the arrays and the architecture are in the weights)."""
    import matport

    info = info_of(model)
    norm = info.normalization
    arrays = {k: list(getattr(norm, k).shape) for k in _ARRAYS if getattr(norm, k) is not None}
    return {
        "format": ARTIFACT_FORMAT,
        "matport_version": matport.__version__,
        "source": {"path": task.source, "relative": task.relative, "sha256": task.sha256,
                   "size": task.size},
        "variable": net.path,
        "class_name": result.class_name,
        "kind": net.kind,
        "weights": {"file": weights.name, "format": task.format,
                    "size": weights.stat().st_size, "sha256": weights_sha256},
        "family": result.family,
        "conversion_note": note,
        "parameters": result.parameters,
        "verification": {**(result.verification or {}), "report": report},
        "class_names": info.class_names,
        "input_size": list(info.input_size),
        "layout": info.layout,
        "normalization": {"type": norm.type, "dimension": norm.dimension,
                          "arrays": arrays},  # shapes; the values are in the weights file
    }


# ---------------------------------------------------------------------------------------------
# reading artifacts back

_ARRAYS = ("mean", "std", "min", "max")


def load_artifact(path: str | os.PathLike[str],
                  converters: Mapping[str, Converter] | None = None) -> nn.Module:
    """A migrated network as a module.

    Args:
        path: its weights file or its metadata ``.json``.
        converters: the custom converters it was converted with, if any.

    Returns:
        The module in eval mode, with its ``matport`` :class:`~matport.convert.info.ModelInfo`.

    Raises:
        MigrationError: not a matport artifact.
        CheckpointError: its weights cannot be read.
    """
    p = Path(path)
    meta_path = p if p.suffix == ".json" else p.with_suffix(".json")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise MigrationError(f"{meta_path}: cannot read the artifact metadata ({exc})") from None
    fmt = meta.get("format") if isinstance(meta, dict) else None
    if fmt not in (ARTIFACT_FORMAT, ARTIFACT_FORMAT_0_1):
        raise MigrationError(f"{meta_path}: not a matport migration artifact")
    try:
        weights = meta_path.parent / Path(meta["weights"]["file"]).name
        legacy = fmt == ARTIFACT_FORMAT_0_1 and meta["weights"]["format"] == "safetensors"
    except (KeyError, TypeError) as exc:
        raise MigrationError(f"{meta_path}: malformed artifact metadata ({exc!r})") from None
    if legacy:
        return _load_0_1_safetensors(meta, weights, converters)
    from matport.checkpoint import load_checkpoint

    return load_checkpoint(weights, converters)


def _load_0_1_safetensors(meta: dict[str, Any], weights: Path,
                          converters: Mapping[str, Converter] | None) -> nn.Module:
    """An artifact of matport 0.1.0 in safetensors: ModelInfo in the ``.json``, arrays as
    ``{"shape", "dtype", "values"}``."""
    import numpy as np
    import torch
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from matport.checkpoint import build_model

    try:
        norm = dict(meta["normalization"])
        for k in _ARRAYS:
            if norm.get(k) is not None:
                spec = norm[k]
                a = np.array(spec["values"], dtype=spec["dtype"]).reshape(spec["shape"])
                norm[k] = torch.from_numpy(a)
        info = ModelInfo.from_dict({**meta, "source": meta["source"]["path"],
                                    "normalization": norm})
        state = load_file(str(weights))
    except (OSError, SafetensorError, KeyError, TypeError, ValueError) as exc:
        raise MigrationError(f"{weights}: cannot read the artifact ({exc})") from None
    return build_model(info, state, converters, where=str(weights))
