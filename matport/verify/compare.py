"""Outputs compared like with like: probabilities with probabilities, logits with the ONNX
``Softmax``'s input; the error measures and the class agreement of a compared pair."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from matport.network.model import Network
from matport.verify import onnx_run
from matport.verify.onnx_run import OnnxExport
from matport.verify.report import Comparison, ModelOutput, OutputCheck
from matport.verify.shapes import aligned

if TYPE_CHECKING:
    from matport.convert.info import ModelInfo

_TOPK = 5


def softmax_input(export: OnnxExport) -> str | None:
    """The input tensor of the export's last Softmax (its logits), or None.

    Args:
        export: the export.

    Returns:
        The tensor name.
    """
    graph = export.model.graph
    softmax = [n for n in graph.node if n.op_type == "Softmax"]
    return softmax[-1].input[0] if softmax else None


def layer_feeding(
    export: OnnxExport, info: ModelInfo, network: Network | None, tensor: str
) -> str | None:
    """The MATLAB layer with a PyTorch module whose output reaches ``tensor`` through
    shape-only operators (Flatten, Transpose, ...).

    Args:
        export: the export.
        info: the model's `ModelInfo` (``layer_map``).
        network: the MATLAB network (its layer names), or None.
        tensor: the ONNX tensor.

    Returns:
        The layer, or None.
    """
    names = [lay.name for lay in network.layers] if network else list(info.layer_map)
    layer_of = {t: n for n, t in onnx_run.layer_tensors(export, names).items()}
    producers = {o: node for node in export.model.graph.node for o in node.output}
    while tensor not in layer_of or layer_of[tensor] not in info.layer_map:
        node = producers.get(tensor)
        if node is None or node.op_type not in onnx_run.SHAPE_ONLY_OPS:
            return None
        tensor = node.input[0]
    return layer_of[tensor]


def compare_outputs(
    torch_out: np.ndarray,
    torch_logits: np.ndarray | None,
    onnx_out: np.ndarray,
    onnx_logits: np.ndarray | None,
    export: OnnxExport,
    class_axis: int,
    rtol: float,
    classes: bool,
    returns_logits: bool,
) -> tuple[OutputCheck, np.ndarray]:
    """Outputs like with like. When the export ends in Softmax, a model that returns logits
    (its ``ModelInfo.postprocess`` is ``"softmax"``) has its output compared with the
    Softmax's input and, through a softmax, with the export's output; a model that returns
    probabilities is compared with the output, and ``torch_logits`` (captured from the module
    feeding its softmax) with the Softmax's input.

    Args:
        torch_out: the model's output, batch first.
        torch_logits: the logits captured inside the model, or None.
        onnx_out: the export's output.
        onnx_logits: the export's Softmax input, or None.
        export: the export.
        class_axis: the class axis of the outputs.
        rtol: the relative tolerance.
        classes: whether the outputs are class scores (top-k agreement is reported).
        returns_logits: whether the model leaves MATLAB's final softmax to post-processing.

    Returns:
        The comparison and each input's largest error (to pick the input to trace).
    """
    softmax_applied = export.ends_in_softmax and returns_logits
    model_output: ModelOutput = "outputs"
    if export.ends_in_softmax:
        model_output = "logits" if softmax_applied else "probabilities"
    if softmax_applied:
        torch_logits = torch_out
        torch_out = _softmax(torch_out, class_axis)
    t = aligned(torch_out, onnx_out, "the model's output", export.output_name)
    logits = t_logits = None
    if torch_logits is not None and onnx_logits is not None:
        t_logits = aligned(torch_logits, onnx_logits, "the model's logits", "softmax input")
        logits = comparison(t_logits, onnx_logits, rtol)
    probs = comparison(t, onnx_out, rtol)
    scores = (t, onnx_out)
    if t_logits is not None and onnx_logits is not None:
        scores = (t_logits, onnx_logits)
    top1, top5 = _topk_agreement(*scores) if classes else (None, None)
    check = OutputCheck(
        compared="probabilities" if export.ends_in_softmax else "outputs",
        model_output=model_output,
        softmax_applied_to_torch=softmax_applied,
        probabilities=probs,
        logits=logits,
        top1_agreement=top1,
        top5_agreement=top5,
        holds=probs.holds and (logits is None or logits.holds),
    )
    worst = scores if logits is not None and not logits.holds else (t, onnx_out)
    return check, _sample_errors(*worst)


def class_axis(layout: str) -> int:
    """The class (channel) axis of a model output.

    Args:
        layout: the model's layout.

    Returns:
        -1 (last) for sequences, else 1.
    """
    return -1 if layout == "NTC" else 1


def _softmax(t: np.ndarray, axis: int) -> np.ndarray:
    e = np.exp(t - t.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def comparison(t: np.ndarray, o: np.ndarray, rtol: float) -> Comparison:
    """The errors of ``t`` against ``o`` (same shapes, batch first).

    Args:
        t: the PyTorch side.
        o: the ONNX side.
        rtol: the relative tolerance ``holds`` is judged by.

    Returns:
        Max absolute and relative error, lowest cosine similarity over the inputs, and whether
        all values are finite and ``max|t - o| <= rtol * max|o|``.
    """
    t64, o64 = t.astype(np.float64), o.astype(np.float64)
    max_abs = float(np.max(np.abs(t64 - o64))) if t.size else 0.0
    scale = float(np.max(np.abs(o64))) if o.size else 0.0
    rel = max_abs / scale if scale > 0 else (0.0 if max_abs == 0 else math.inf)
    a, b = t64.reshape(len(t), -1), o64.reshape(len(o), -1)
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    dots = np.sum(a * b, axis=1)
    cos = np.where(norms > 0, dots / np.where(norms > 0, norms, 1), np.where(dots == 0, 1.0, 0.0))
    finite = bool(np.isfinite(t64).all() and np.isfinite(o64).all())
    return Comparison(
        max_abs_error=max_abs,
        max_rel_error=rel,
        min_cosine_similarity=float(cos.min()) if len(cos) else 1.0,
        holds=finite and rel <= rtol,
    )


def _topk_agreement(t: np.ndarray, o: np.ndarray) -> tuple[float | None, float | None]:
    """Top-1 and top-5 agreement for class scores (one axis of K >= 2 per input); None for
    other outputs (regression, segmentation)."""
    if sum(s != 1 for s in o.shape[1:]) != 1:
        return None, None
    t2, o2 = t.reshape(len(t), -1), o.reshape(len(o), -1)
    k = min(_TOPK, o2.shape[1])
    top1 = float(np.mean(t2.argmax(1) == o2.argmax(1)))
    sets_t = np.sort(np.argsort(-t2, axis=1)[:, :k], axis=1)
    sets_o = np.sort(np.argsort(-o2, axis=1)[:, :k], axis=1)
    return top1, float(np.mean(np.all(sets_t == sets_o, axis=1)))


def _sample_errors(t: np.ndarray, o: np.ndarray) -> np.ndarray:
    """The largest absolute difference of each input (NaN counts as infinite)."""
    diff = np.abs(t.astype(np.float64) - o.astype(np.float64)).reshape(len(t), -1)
    return np.nan_to_num(diff.max(axis=1, initial=0), nan=np.inf)
