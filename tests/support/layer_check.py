"""Run a converted network and the reference forward pass on the same raw data and compare."""

from __future__ import annotations

import numpy as np
import torch

from matport.convert.api import load
from matport.network.model import Network
from matport.synth.layer_cases import SEQ_T
from matport.synth.networks import RNG, to_matlab_layout, to_torch_layout
from tests.support.reference_forward import network_outputs, reference_forward


def _matlab_input(in_layer, batch: int) -> np.ndarray:
    size = tuple(in_layer.params["InputSize"])
    if in_layer.type == "ImageInputLayer":
        return RNG.uniform(-2, 2, size + (batch,))
    if in_layer.type == "FeatureInputLayer":
        return RNG.uniform(-2, 2, size + (batch,))
    return RNG.uniform(-2, 2, size + (batch, SEQ_T))


def check_against_reference(network: Network, batch: int, read_back: Network | None = None) -> None:
    """Convert ``network`` (or ``read_back``, the same network after a trip through a file), run
    it and the reference on ``network`` on the same raw data, compare outputs."""
    raw = [_matlab_input(lay, batch) for lay in network.input_layers]
    expected = network_outputs(network, reference_forward(network, raw))
    model = load(read_back or network, output="probabilities")  # MATLAB's outputs
    with torch.no_grad():
        inputs = [model.matport.preprocess(torch.from_numpy(to_torch_layout(x)).float())
                  for x in raw]
        out = model(*inputs)
    outs = out if isinstance(out, tuple) else (out,)
    assert len(outs) == len(expected)
    for got, want in zip(outs, expected, strict=True):
        got_m = to_matlab_layout(got.numpy())
        want = np.squeeze(want) if want.ndim == 4 and got_m.ndim != 4 else want
        assert got_m.shape == want.shape
        scale = float(np.abs(want).max()) or 1.0
        np.testing.assert_allclose(got_m, want, rtol=1e-4, atol=1e-4 * scale)
