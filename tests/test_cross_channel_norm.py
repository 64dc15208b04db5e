"""crossChannelNormalizationLayer (GoogLeNet's and AlexNet's LRN) against MATLAB's documented
formula, written here in numpy on MATLAB's H x W x C x N layout, after a trip through a file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import matport
from matport.errors import ConversionError
from matport.network.encode import write_network
from matport.synth.networks import chain, conv, image_input, simple


def matlab_lrn(x: np.ndarray, size: int, alpha: float, beta: float, k: float) -> np.ndarray:
    """y = x ./ (K + Alpha * ss / WindowChannelSize) .^ Beta, ss over the centred channel window."""
    channels = x.shape[2]
    y = np.empty_like(x)
    for c in range(channels):
        lo, hi = max(0, c - size // 2), min(channels, c + size // 2 + 1)
        ss = (x[:, :, lo:hi] ** 2).sum(axis=2)
        y[:, :, c] = x[:, :, c] / (k + alpha * ss / size) ** beta
    return y


def network(size: int):
    return chain(image_input("in", (6, 5, 3)), conv("c", (3, 3), 3, 7, Padding="same"),
                 simple("CrossChannelNormalizationLayer", "lrn", WindowChannelSize=size,
                        Alpha=0.3, Beta=0.75, K=1.5), kind="DAGNetwork")


@pytest.mark.parametrize("fmt", ["v7", "v7.3"])
def test_cross_channel_normalization_matches_matlabs_formula(tmp_path: Path, fmt: str) -> None:
    net = network(5)
    path = tmp_path / "lrn.mat"
    write_network(path, net, format=fmt)
    model = matport.load(path)
    x = np.random.default_rng(0).normal(size=(2, 3, 6, 5)).astype(np.float32) * 3
    with torch.no_grad():
        features = model.c(torch.from_numpy(x))
        got = model(torch.from_numpy(x)).numpy()
    want = matlab_lrn(features.numpy().transpose(2, 3, 1, 0).astype(np.float64), 5, 0.3, 0.75,
                      1.5).transpose(3, 2, 0, 1)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_even_windows_are_refused() -> None:
    with pytest.raises(ConversionError, match="lrn .*WindowChannelSize 4"):
        matport.load(network(4))
