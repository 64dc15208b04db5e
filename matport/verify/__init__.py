"""Proof that a conversion computes what MATLAB computed: MATLAB's own ONNX export run in
onnxruntime, compared output by output, a certificate that the model's weights are the export's,
and the first diverging layer when outputs differ.

``check`` runs one check; ``onnx_run`` (the export in onnxruntime), ``torch_run`` (the model),
``inputs``, ``compare``, ``certificate``, ``divergence`` do its parts; ``report`` + ``schema``
hold the result, ``html`` draws it; ``export`` writes a converted model as ONNX.
Importing this package loads neither torch nor onnx; :func:`verify` does, on first call.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from matport.verify.report import DEFAULT_RTOL, REPORT_SCHEMA, VerifyReport

if TYPE_CHECKING:
    import numpy as np
    from torch import nn

    from matport.network.model import Network
    from matport.verify.onnx_run import OnnxExport


def verify(
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
    """Compare a converted model (or the network in a .mat file) with an ONNX export of it.

    Args:
        model_or_mat: a model built by matport, a :class:`~matport.network.model.Network`, or a
            ``.mat`` file.
        onnx_path: MATLAB's ``exportONNXNetwork`` output (or matport's own export), or one
            loaded already (:func:`matport.verify.check.prepare_export`).
        inputs: raw inputs (MATLAB contract: batch first, the model's layout) used instead of
            ``num_random`` random inputs.
        num_random: how many random inputs to draw, from the input layer's own statistics
            (``report.inputs["distribution"]`` says how).
        images_dir: a folder of images added to the inputs.
        rtol: relative tolerance: ``max|torch - onnx| <= rtol * max|onnx|``.
        seed: seed of the random inputs.
        variable: the network's variable when ``model_or_mat`` is a file holding several.
        network: the MATLAB network behind a given model: its layer order, names and types
            for the per-layer comparison and the certificate (by default re-read from
            ``model.matport.source``; without it the ONNX graph's order is used).
        family: how a file or Network is converted, as ``matport convert`` does.
        per_layer: compare every layer even when the outputs agree (``report.layers``, what an
            HTML report plots); by default only a plain, optimized onnxruntime session runs,
            and the instrumented per-layer comparison only when the outputs differ.

    Returns:
        A :class:`~matport.verify.report.VerifyReport` (``passed``, the inputs used, output and
        logit errors, the certificate of the model's tensors, the first diverging layer).

    Raises:
        VerificationError: (or another :class:`~matport.errors.MatportError`) when the check
            cannot run.
    """
    from matport.verify.check import run_verify

    return run_verify(model_or_mat, onnx_path, inputs=inputs, num_random=num_random,
                      images_dir=images_dir, rtol=rtol, seed=seed, variable=variable,
                      network=network, family=family, per_layer=per_layer)


__all__ = ["DEFAULT_RTOL", "REPORT_SCHEMA", "VerifyReport", "verify"]
