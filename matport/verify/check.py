"""One check from end to end: load the export, resolve the model, draw the inputs, run both
sides, compare, certify the weights and, when the outputs differ, find the layer that parts."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from matport.convert.info import info_of
from matport.network.model import Network
from matport.verify import onnx_run
from matport.verify.certificate import certificate
from matport.verify.compare import (
    class_axis,
    compare_outputs,
    layer_feeding,
    softmax_input,
)
from matport.verify.divergence import find_divergence, layer_errors, layer_graph
from matport.verify.inputs import onnx_input, raw_inputs
from matport.verify.onnx_run import OnnxExport
from matport.verify.report import (
    DEFAULT_RTOL,
    LayerErrors,
    OutputCheck,
    VerifyReport,
    failure_reason,
    tolerance,
)
from matport.verify.torch_run import capture, network_of, resolve

if TYPE_CHECKING:
    from torch import nn

    from matport.convert.info import ModelInfo


def run_verify(
    model_or_mat: nn.Module | Network | str | Path,
    onnx_path: str | Path | OnnxExport,
    *,
    inputs: np.ndarray | None = None,
    num_random: int = 8,
    images_dir: str | Path | None = None,
    rtol: float = DEFAULT_RTOL,
    seed: int = 0,
    variable: str | None = None,
    network: Network | None = None,
    family: str = "auto",
    per_layer: bool = False,
) -> VerifyReport:
    """The implementation of :func:`matport.verify.verify`: arguments, result and errors as
    documented there (one signature, one docstring to keep up to date)."""
    export = onnx_path if isinstance(onnx_path, OnnxExport) else onnx_run.load_export(onnx_path)
    model, network, mat = resolve(model_or_mat, variable, network, family)
    info = info_of(model)
    notes: list[str] = []
    if network is None:
        network = network_of(info, notes)
    mat = mat or info.source or None
    if export.is_matlab and info.layout == "NTC" and len(export.input_shape) == 3:
        export.batch_axis = 1  # MATLAB declares sequences [T, N, C], like ONNX's LSTM
    raw, described = raw_inputs(info, export, inputs, num_random, images_dir, seed)
    outputs, errors = _run_and_compare(model, info, network, export, raw, rtol)
    weights = certificate(model, info, network, export) if export.is_matlab else None
    layers = divergence = None
    if per_layer or not outputs.holds:
        sample = int(np.argmax(errors))
        compared = layer_errors(model, info, network, export, raw[sample : sample + 1], rtol)
        layers = LayerErrors(sample, compared, *layer_graph(network, compared))
        divergence = None if outputs.holds else find_divergence(layers, network)
    passed = outputs.holds and (weights is None or not weights.differing)
    return VerifyReport(
        status="verified" if passed else "failed",
        passed=passed,
        reason=None if passed else failure_reason(outputs, weights, divergence),
        onnx_path=export.path,
        tolerance=tolerance(rtol),
        mat=mat,
        model={
            "variable": info.variable,
            "layout": info.layout,
            "input_size": [int(s) for s in info.input_size],
            "architecture": info.architecture.get("family"),
        },
        onnx=_describe_export(export, notes),
        inputs=described,
        outputs=outputs,
        weights=weights,
        divergence=divergence,
        layers=layers,
    )


def _run_and_compare(
    model: nn.Module,
    info: ModelInfo,
    network: Network | None,
    export: OnnxExport,
    raw: np.ndarray,
    rtol: float,
) -> tuple[OutputCheck, np.ndarray]:
    """Run both sides on ``raw``; compare outputs and, when the export ends in Softmax, logits
    (the Softmax's input against the model's output or the module feeding its own softmax).
    With one torch thread (matport migrate's workers; onnxruntime gets as many), the export
    runs in a second thread beside the model."""
    extra = plain_outputs(export)
    logits_tensor = extra[0] if extra else None
    logits_layer = layer_feeding(export, info, network, logits_tensor) if logits_tensor else None
    hooked = {logits_layer: info.layer_map[logits_layer]} if logits_layer else {}
    x_onnx, x_torch = onnx_input(export, info, raw), info.preprocess(torch.from_numpy(raw))
    beside = torch.get_num_threads() == 1
    with ThreadPoolExecutor(1, thread_name_prefix="matport-onnx") as side:
        running = side.submit(onnx_run.run, export, x_onnx, extra) if beside else None
        torch_out, seen = capture(model, x_torch, hooked)
    ran = running.result() if running else onnx_run.run(export, x_onnx, extra)
    torch_logits = seen[logits_layer][-1] if logits_layer and seen.get(logits_layer) else None
    return compare_outputs(
        torch_out, torch_logits, ran[export.output_name], ran.get(logits_tensor or ""), export,
        class_axis(info.layout), rtol, classes=export.ends_in_softmax or bool(info.class_names),
        returns_logits=info.postprocess == "softmax",
    )


def plain_outputs(export: OnnxExport) -> list[str]:
    """What a check's plain session computes besides the output: the logits (the last
    Softmax's input) when the export ends in Softmax.

    Args:
        export: the export.

    Returns:
        The extra tensors.
    """
    logits = softmax_input(export) if export.ends_in_softmax else None
    return [logits] if logits else []


def prepare_export(path: str | Path, data: bytes | None = None) -> OnnxExport:
    """Load an export and build the plain session a check runs first: what a caller that
    converts the model meanwhile (matport migrate, in another thread) hands to `verify`.

    Args:
        path: the ONNX file.
        data: its content, when the caller has read it already.

    Returns:
        The export, its plain session built.

    Raises:
        VerificationError: the export cannot be loaded or run.
    """
    export = onnx_run.load_export(path, data)
    onnx_run.session_for(export, plain_outputs(export))
    return export


def _describe_export(export: OnnxExport, notes: list[str]) -> dict[str, Any]:
    return {
        "producer": export.producer,
        "producer_version": export.producer_version,
        "release": export.release,
        "opset": export.opset,
        "input_name": export.input_name,
        "input_shape": list(export.input_shape),
        "batch_axis": export.batch_axis,
        "batch_fixed": export.batch_fixed,
        "ends_in_softmax": export.ends_in_softmax,
        "input_contract": export.input_contract,
        "notes": [*export.notes, *notes],
    }


