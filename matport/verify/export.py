"""The other direction: a converted model written as ONNX with ``torch.onnx``, which
``verify(model, that_file)`` then checks like MATLAB's own export."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import onnx
import torch

from matport.convert.info import info_of
from matport.convert.preprocess import InputNormalization
from matport.verify import onnx_run
from matport.verify.inputs import random_raw

if TYPE_CHECKING:
    from torch import nn


def export_onnx(
    model: nn.Module,
    path: str | Path,
    *,
    include_preprocessing: bool = True,
    opset: int = 17,
) -> Path:
    """Write ``model`` as ONNX with ``torch.onnx`` (TorchScript exporter; the dynamo exporter
    needs ``onnxscript``), batch dynamic. Check the file with ``verify(model, path)``.

    Args:
        model: a model converted by matport.
        path: the ONNX file to write.
        include_preprocessing: put MATLAB's input normalization in the graph, so that the file
            takes raw data like MATLAB's own export.
        opset: the ONNX opset.

    Returns:
        ``path``.
    """
    info = info_of(model)
    net: nn.Module = model
    if include_preprocessing:
        norm = InputNormalization(info.normalization, info.input_size, info.layout)
        net = torch.nn.Sequential(norm, model)
    example = torch.from_numpy(random_raw(info, 1, np.random.default_rng(0), None)[0])
    if not include_preprocessing:
        example = info.preprocess(example)
    dynamic = {0: "batch", 1: "time"} if info.layout == "NTC" else {0: "batch"}
    path = Path(path)
    was_training = model.training
    net.eval()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                net, (example,), str(path), dynamo=False, opset_version=opset,
                input_names=["input"], output_names=["output"],
                dynamic_axes={"input": dynamic, "output": {0: "batch"}},
            )
    finally:
        model.train(was_training)
    proto = onnx.load(str(path))
    contract = "raw" if include_preprocessing else "preprocessed"
    onnx.helper.set_model_props(proto, {onnx_run.CONTRACT_KEY: contract})
    onnx.save(proto, str(path))
    return path

