"""The PyTorch side of a check: the model to verify (given, or converted from a file or a
`Network`), the MATLAB network behind it, and runs of it that record chosen modules' outputs."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from matport.errors import MatportError, VerificationError
from matport.network.model import Network
from matport.options import FAMILIES

if TYPE_CHECKING:
    from torch import nn

    from matport.convert.info import ModelInfo


def resolve(
    model_or_mat: nn.Module | Network | str | Path,
    variable: str | None,
    network: Network | None,
    family: str,
) -> tuple[nn.Module, Network | None, str | None]:
    """The model to check, the MATLAB network behind it (when known) and its file.

    Args:
        model_or_mat: a converted model, a `Network` or a ``.mat`` file.
        variable: the network's variable in the file.
        network: the MATLAB network of a given model, when the caller has it.
        family: the conversion of a file or `Network` (see `convert`).

    Returns:
        ``(model, network or None, .mat path or None)``.
    """
    if isinstance(model_or_mat, (str, Path)):
        network = _read_network(str(model_or_mat), variable)
        return convert(network, family), network, str(model_or_mat)
    if isinstance(model_or_mat, Network):
        return convert(model_or_mat, family), model_or_mat, model_or_mat.source or None
    return model_or_mat, network, None


def _read_network(path: str, variable: str | None) -> Network:
    from matport.network import read_network

    return read_network(path, variable)


def convert(network: Network, family: str = "auto") -> nn.Module:
    """The module `verify` checks (see :func:`matport.convert.api.convert_network`).

    Args:
        network: the MATLAB network.
        family: ``resnet50`` (torchvision), ``graph`` (matport's general module) or ``auto``
            (resnet50 when the network fits).

    Returns:
        The converted model.
    """
    from matport.convert.api import convert_network

    if family not in FAMILIES:
        raise VerificationError(f"unknown family {family!r}: expected one of {FAMILIES}")
    return convert_network(network, family)[0]


def network_of(info: ModelInfo, notes: list[str]) -> Network | None:
    """The MATLAB network ``info.source`` names, or None (with a note saying why).

    Args:
        info: the model's `ModelInfo`.
        notes: where to append the reason when there is no network.

    Returns:
        The network or None.
    """
    if not info.source or not Path(info.source).is_file():
        notes.append("no MATLAB network beside the model (layer order from the ONNX graph)")
        return None
    try:
        return _read_network(info.source, info.variable or None)
    except MatportError as exc:
        notes.append(f"the MATLAB network could not be re-read: {exc}")
        return None


def capture(
    model: nn.Module, x: torch.Tensor, paths: dict[str, str]
) -> tuple[np.ndarray, dict[str, list[np.ndarray]]]:
    """Run ``model`` on ``x`` in eval mode, recording the outputs of chosen modules.

    Args:
        model: the model.
        x: its (preprocessed) input.
        paths: MATLAB layer -> dotted path of the module whose outputs to record.

    Returns:
        The model's output and layer -> outputs (a module called several times, like a shared
        ReLU, records each call).
    """
    seen: dict[str, list[np.ndarray]] = {}
    handles = []
    by_path: dict[str, list[str]] = {}
    for layer, path in paths.items():
        by_path.setdefault(path, []).append(layer)
    for path, layers in by_path.items():
        try:
            module = model.get_submodule(path) if path else model
        except AttributeError as exc:
            raise VerificationError(f"layer_map names a missing submodule {path!r}") from exc

        def hook(_m: Any, _i: Any, out: Any, layers: list[str] = layers) -> None:
            # copy: a later in-place op (ReLU(inplace=True)) would change a shared buffer
            value = _first_tensor(out).detach().cpu().numpy().copy()
            for layer in layers:
                seen.setdefault(layer, []).append(value)

        handles.append(module.register_forward_hook(hook))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            out = _first_tensor(model(x)).detach().cpu().numpy().astype(np.float32)
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    return out, seen


def _first_tensor(out: Any) -> torch.Tensor:
    while isinstance(out, (tuple, list)):
        out = out[0]
    return out
