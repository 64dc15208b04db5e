"""Every supported layer kind, converted and checked against the numpy reference forward pass.

Each case is a small MATLAB network built as a ``Network`` with random weights; the converted
module's outputs must equal ``reference_forward`` (MATLAB layouts, float64) to 1e-4 relative,
for batch sizes 1 and 3.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from matport.network import read_network
from matport.network.model import Normalization
from matport.synth.layer_cases import CASES, IMG
from matport.synth.networks import (
    RNG,
    chain,
    conv,
    fc,
    feature_input,
    image_input,
    lstm,
    rand,
    sequence_input,
)
from tests.support.layer_check import check_against_reference

torch.set_num_threads(1)

@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("case", sorted(CASES))
def test_layer_matches_reference(case: str, batch: int) -> None:
    check_against_reference(CASES[case](), batch)


@pytest.mark.parametrize("kind", ["zerocenter", "zscore", "rescale-symmetric", "rescale-zero-one"])
def test_input_normalizations(kind: str) -> None:
    stats = {"zerocenter": {"mean": rand(*IMG)},
             "zscore": {"mean": rand(1, 1, 3), "std": (1 + RNG.random((1, 1, 3))).astype("f4")},
             "rescale-symmetric": {"min": -2 + rand(1, 1, 3, scale=0.1),
                                   "max": 2 + rand(1, 1, 3, scale=0.1)},
             "rescale-zero-one": {"min": np.full((1, 1, 3), -2, "f4"),
                                  "max": np.full((1, 1, 3), 2, "f4")}}[kind]
    net = chain(image_input("in", IMG, Normalization(kind, **stats)), conv("conv", (1, 1), 3, 2))
    check_against_reference(net, 2)


def test_feature_and_sequence_zscore() -> None:
    norm = Normalization("zscore", mean=rand(4, 1), std=(1 + RNG.random((4, 1))).astype("f4"))
    check_against_reference(chain(feature_input("in", 4, norm), fc("fc", 4, 2)), 3)
    seq_norm = Normalization("zerocenter", mean=rand(3, 1))
    check_against_reference(chain(sequence_input("in", 3, seq_norm), lstm("l", 3, 2)), 3)


@pytest.mark.parametrize("fmt", ["v7", "v7.3"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_layer_survives_a_mat_file(case: str, fmt: str, tmp_path) -> None:
    """Every case written as MATLAB writes it (v7 and v7.3), read back and converted."""
    encode = pytest.importorskip("matport.network.encode")
    network = CASES[case]()
    path = tmp_path / f"{case}.mat"
    encode.write_network(path, network, format=fmt)
    check_against_reference(network, 2, read_back=read_network(path))
