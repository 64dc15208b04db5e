"""matport.convert.preprocess against MATLAB's normalization formulas written out in numpy."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torchvision.transforms.functional as TF

from matport.convert.info import ModelInfo
from matport.convert.preprocess import (
    ArgumentError,
    InputNormalization,
    preprocess,
    to_layout,
    torchvision_mean_std,
)
from matport.errors import ConversionError
from matport.network.model import Normalization

RNG = np.random.default_rng(0)
SIZE = (8, 6, 3)
MEAN_IMAGE = RNG.uniform(50, 200, SIZE).astype(np.float32)
PER_CHANNEL = np.array([120.5, 110.25, 100.0], np.float32).reshape(1, 1, 3)
STD = np.array([60.0, 55.0, 58.0], np.float32).reshape(1, 1, 3)
LO = np.array([0.0, 10.0, 20.0], np.float32).reshape(1, 1, 3)
HI = np.array([255.0, 200.0, 250.0], np.float32).reshape(1, 1, 3)

# (normalization, the MATLAB formula on H x W x C arrays)
CASES = {
    "none": (Normalization("none"), lambda x: x),
    "zerocenter-image": (Normalization("zerocenter", mean=MEAN_IMAGE), lambda x: x - MEAN_IMAGE),
    "zerocenter-channel": (Normalization("zerocenter", mean=PER_CHANNEL),
                           lambda x: x - PER_CHANNEL),
    "zscore": (Normalization("zscore", mean=PER_CHANNEL, std=STD),
               lambda x: (x - PER_CHANNEL) / STD),
    "rescale-symmetric": (Normalization("rescale-symmetric", min=LO, max=HI),
                          lambda x: 2 * (x - LO) / (HI - LO) - 1),
    "rescale-zero-one": (Normalization("rescale-zero-one", min=LO, max=HI),
                         lambda x: (x - LO) / (HI - LO)),
}


@pytest.fixture
def images_uint8() -> np.ndarray:
    return RNG.integers(0, 256, (4, *SIZE), dtype=np.uint8)


@pytest.mark.parametrize("case", list(CASES))
def test_images_every_type(case, images_uint8):
    norm, formula = CASES[case]
    want = formula(images_uint8.astype(np.float32)).transpose(0, 3, 1, 2)
    for x in (images_uint8, images_uint8.astype(np.float64),
              torch.from_numpy(images_uint8).permute(0, 3, 1, 2)):
        got = preprocess(x, norm, SIZE)
        assert got.dtype == torch.float32 and got.shape == (4, 3, 8, 6)
        np.testing.assert_allclose(got.numpy(), want, rtol=1e-6, atol=1e-5)


def test_single_images_and_layout_rule(images_uint8):
    norm = CASES["zerocenter-channel"][0]
    hwc = images_uint8[0]
    want = (hwc.astype(np.float32) - PER_CHANNEL).transpose(2, 0, 1)[None]
    np.testing.assert_array_equal(preprocess(hwc, norm, SIZE).numpy(), want)
    chw = torch.from_numpy(hwc).permute(2, 0, 1)
    np.testing.assert_array_equal(preprocess(chw, norm, SIZE).numpy(), want)
    # 3 x 5 x 3: both readings fit; numpy means channels-last, torch channels-first
    cube = RNG.integers(0, 256, (3, 5, 3)).astype(np.float32)
    assert to_layout(cube, SIZE).shape == (1, 3, 3, 5)
    assert to_layout(torch.from_numpy(cube), SIZE).shape == (1, 3, 5, 3)
    with pytest.raises(ArgumentError, match="no axis of 3 channels"):
        to_layout(np.zeros((2, 8, 6, 4)), SIZE)


def test_mean_image_needs_its_size():
    with pytest.raises(ArgumentError, match="8x6 mean image"):
        preprocess(np.zeros((1, 10, 6, 3), np.uint8), CASES["zerocenter-image"][0], SIZE)


def test_features_and_sequences():
    mean, std = np.array([1.0, 2.0, 3.0, 4.0]), np.array([2.0, 2.0, 4.0, 8.0])
    norm = Normalization("zscore", mean=mean.reshape(4, 1), std=std.reshape(4, 1))
    feats = RNG.normal(size=(5, 4))
    np.testing.assert_allclose(preprocess(feats, norm, (4,), "NC").numpy(),
                               (feats - mean) / std, rtol=1e-5, atol=1e-6)
    assert preprocess(feats[0], norm, (4,), "NC").shape == (1, 4)
    seq = RNG.normal(size=(2, 7, 4))
    np.testing.assert_allclose(preprocess(seq, norm, (4,), "NTC").numpy(),
                               (seq - mean) / std, rtol=1e-5, atol=1e-6)
    assert preprocess(seq[0], norm, (4,), "NTC").shape == (1, 7, 4)
    with pytest.raises(ArgumentError):
        preprocess(RNG.normal(size=(5, 3)), norm, (4,), "NC")


@pytest.mark.parametrize("case", [c for c in CASES if c != "zerocenter-image"])
def test_torchvision_mean_std(case, images_uint8):
    norm, formula = CASES[case]
    x01 = torch.from_numpy(images_uint8).permute(0, 3, 1, 2).float() / 255
    mean, std = torchvision_mean_std(norm)
    want = formula(images_uint8.astype(np.float32)).transpose(0, 3, 1, 2)
    np.testing.assert_allclose(TF.normalize(x01, mean, std).numpy(), want, rtol=1e-5, atol=1e-3)


def test_mean_image_has_no_torchvision_mean_std_but_a_module(images_uint8):
    norm, formula = CASES["zerocenter-image"]
    with pytest.raises(ArgumentError, match="per-pixel"):
        torchvision_mean_std(norm)
    x01 = torch.from_numpy(images_uint8).permute(0, 3, 1, 2).float() / 255
    module = InputNormalization(norm, SIZE, input_range=1.0)
    want = formula(images_uint8.astype(np.float32)).transpose(0, 3, 1, 2)
    np.testing.assert_allclose(module(x01).numpy(), want, rtol=1e-5, atol=1e-3)
    assert set(dict(module.named_buffers())) == {"mean"}


def test_function_normalization_is_refused():
    with pytest.raises(ConversionError, match="never evaluates"):
        preprocess(np.zeros((1, 2, 2, 3)), Normalization("function"), (2, 2, 3))


def test_model_info_round_trip():
    info = ModelInfo(["a", "b"], (8, 6, 3), "NCHW", CASES["zscore"][0], "f.mat", "net",
                     {"bn": "bn1"}, {"family": "resnet50"})
    back = ModelInfo.from_dict(info.to_dict())
    assert (back.class_names, back.input_size, back.layout, back.source, back.variable,
            back.layer_map, back.architecture) == (["a", "b"], (8, 6, 3), "NCHW", "f.mat", "net",
                                                   {"bn": "bn1"}, {"family": "resnet50"})
    np.testing.assert_array_equal(back.normalization.std, STD)
    assert back.normalization.min is None
    assert "zscore" in back.summary() and "2 (a, b)" in back.summary()
