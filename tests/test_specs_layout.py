"""The layer specs (one per MATLAB class, no silent default), the converter registry (double
registration refused) and the layout module, against layouts written out element by element."""

from __future__ import annotations

import numpy as np
import pytest
from torch import nn

from matport.convert.api import load
from matport.convert.layers import builtin_classes
from matport.convert.layers.registry import converts
from matport.errors import ArgumentError
from matport.network import layout
from matport.network.model import Layer
from matport.network.specs import (
    IMAGE,
    SEQUENCE,
    SPECS,
    VECTOR,
    output_format,
    output_ports,
    spec_of,
)
from matport.synth.networks import RNG, lstm, simple
from matport.synth.resnet50 import pretrained_like


def test_every_builtin_converter_has_a_spec() -> None:
    assert builtin_classes() <= set(SPECS)
    assert "nnet.cnn.layer.Convolution2DLayer" in builtin_classes()


def test_registering_a_class_twice_is_refused() -> None:
    with pytest.raises(ArgumentError, match="registered already"):
        converts("ReLULayer")(lambda layer, context: nn.ReLU())


def test_registering_a_class_without_spec_is_refused() -> None:
    with pytest.raises(ArgumentError, match="no LayerSpec"):
        converts("myproject.NoSuchLayer")(lambda layer, context: nn.ReLU())


def test_unknown_class_has_no_spec_and_keeps_its_input_format() -> None:
    user = Layer("u", "myproject.ScaleLayer")
    assert spec_of(user.class_name) is None and user.spec is None
    assert output_format(user, (SEQUENCE,)) == SEQUENCE
    assert output_ports(user) == ("out",)
    # a MathWorks short name in another package is not the MathWorks class
    assert spec_of("myproject.ReLULayer") is None


def test_spec_rules() -> None:
    assert output_format(simple("FlattenLayer", "f"), (IMAGE,)) == VECTOR
    assert output_format(lstm("l", 3, 4, mode="last"), (SEQUENCE,)) == VECTOR
    assert output_format(lstm("l", 3, 4), (SEQUENCE,)) == SEQUENCE
    assert output_ports(simple("MaxPooling2DLayer", "p", HasUnpoolingOutputs=True)) == (
        "out", "indices", "size")
    bilstm = spec_of("nnet.cnn.layer.BiLSTMLayer")
    assert bilstm is not None and bilstm.gate_order == (0, 3, 1, 2) and bilstm.directions == 2
    gru = spec_of("nnet.cnn.layer.GRULayer")
    assert gru is not None and gru.gate_order == (1, 0, 2)


def test_layer_array_is_none_when_absent_or_empty() -> None:
    lay = Layer("c", "nnet.cnn.layer.Convolution2DLayer",
                learnables={"Weights": np.ones((1, 1, 2, 3)), "Bias": np.zeros((0, 0))},
                state={"TrainedMean": np.ones(2)})
    assert lay.array("Bias") is None and lay.array("Nope") is None
    assert lay.array("Weights") is not None and lay.array("TrainedMean") is not None


def test_conv_weights() -> None:
    w = RNG.standard_normal((3, 2, 4, 5))  # H x W x Cin x Cout
    out = layout.conv_weight(w)
    for o, i, h, x in np.ndindex(5, 4, 3, 2):
        assert out[o, i, h, x] == np.float32(w[h, x, i, o])
    assert layout.conv_weight(w[:, :, :, :1][..., 0]).shape == (1, 4, 3, 2)  # dropped singleton


def test_grouped_conv_weights() -> None:
    w = RNG.standard_normal((2, 2, 3, 4, 2))  # H x W x Cg x Fg x G
    out = layout.grouped_conv_weight(w)
    for g, f, c, h, x in np.ndindex(2, 4, 3, 2, 2):
        assert out[g * 4 + f, c, h, x] == np.float32(w[h, x, c, f, g])


def test_fc_weight_after_image_follows_torch_flatten() -> None:
    h, w_, c, o = 2, 3, 4, 5
    x = RNG.standard_normal((h, w_, c))  # MATLAB image, one observation
    matlab_w = RNG.standard_normal((o, h * w_ * c))
    expected = matlab_w @ x.ravel(order="F")  # MATLAB flattens column-major
    torch_x = x.transpose(2, 0, 1).ravel()  # PyTorch flattens C x H x W row-major
    np.testing.assert_allclose(layout.fc_weight(matlab_w, (h, w_, c)) @ torch_x, expected,
                               rtol=1e-5)
    four_d = layout.matlab_reshape(matlab_w.T, (h, w_, c, o))  # the 4-D form MATLAB stores
    np.testing.assert_allclose(layout.fc_weight(four_d) @ torch_x, expected, rtol=1e-5)
    np.testing.assert_array_equal(layout.fc_matrix(four_d), matlab_w)


def test_reorder_gates() -> None:
    a = np.repeat(np.arange(8.0), 2).reshape(8, 2)  # 2 directions x 4 gates of 1 row
    out = layout.reorder_gates(a, (0, 3, 1, 2), directions=2)
    assert out.shape == (2, 4, 2)
    assert list(out[:, :, 0].ravel()) == [0, 3, 1, 2, 4, 7, 5, 6]


def test_data_layouts_round_trip() -> None:
    for shape in ((4, 5, 3, 2), (3, 2), (3, 2, 6)):
        x = RNG.standard_normal(shape)
        np.testing.assert_array_equal(layout.to_matlab_layout(layout.to_torch_layout(x)), x)
    x = RNG.standard_normal((4, 5, 3, 2))  # H x W x C x N
    assert layout.to_torch_layout(x)[1, 2, 3, 4] == x[3, 4, 2, 1]


@pytest.mark.parametrize("shape", [(3, 3, 64, 80), (5, 7, 40, 60), (1, 1, 300, 300), (3, 3, 2, 2)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_contiguous_copies_of_convolution_weights(shape: tuple[int, ...], dtype: type) -> None:
    w = np.asfortranarray(RNG.standard_normal(shape).astype(dtype))
    view = layout.conv_weight(w)
    got = layout.contiguous(view)
    assert got.dtype == np.float32 and got.flags.c_contiguous and not np.shares_memory(got, w)
    np.testing.assert_array_equal(got, view.astype(np.float32))


@pytest.mark.parametrize("shape", [(1000, 300), (300, 257), (5, 5)])
def test_contiguous_copies_of_column_major_matrices(shape: tuple[int, int]) -> None:
    w = np.asfortranarray(RNG.standard_normal(shape).astype(np.float32))
    got = layout.contiguous(w)
    assert got.flags.c_contiguous and not np.shares_memory(got, w)
    np.testing.assert_array_equal(got, w)


@pytest.mark.parametrize("shape", [(3, 3, 64, 80), (7, 7, 3, 64), (3, 3, 300, 300), (1, 5, 4, 6),
                                   (3, 3, 8), (2, 2, 5, 7), (5, 5, 40, 70), (1, 1, 64, 32)])
def test_contiguous_in_place_reorders_square_kernels_in_their_memory(
        shape: tuple[int, ...]) -> None:
    w = np.asfortranarray(RNG.standard_normal(shape).astype(np.float32))
    want = layout.contiguous(layout.conv_weight(w))
    got = layout.contiguous_in_place(layout.conv_weight(w))
    assert got is not None and got.flags.c_contiguous and np.shares_memory(got, w)
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("shape", [(1000, 2048), (300, 257), (5, 20000), (64, 2039), (2039, 64),
                                   (300, 300), (1000, 1000), (257, 257)])
def test_contiguous_in_place_transposes_column_major_matrices_in_their_memory(
        shape: tuple[int, int]) -> None:
    w = np.asfortranarray(RNG.standard_normal(shape).astype(np.float32))
    want = np.ascontiguousarray(w)
    got = layout.contiguous_in_place(w)
    assert got is not None and got.flags.c_contiguous and np.shares_memory(got, w)
    np.testing.assert_array_equal(got, want)


def test_contiguous_in_place_leaves_what_needs_a_copy() -> None:
    w = np.asfortranarray(RNG.standard_normal((3, 5, 4, 6)).astype(np.float32))  # 3 x 5 kernels
    before = w.copy()
    assert layout.contiguous_in_place(layout.conv_weight(w)) is None
    np.testing.assert_array_equal(w, before)
    assert layout.contiguous_in_place(np.asfortranarray(RNG.standard_normal((5, 7), "f4"))) is None
    # 2039 rows in memory, prime: only single rows would be blocks, too many to permute
    assert layout.contiguous_in_place(np.asfortranarray(RNG.standard_normal((300, 2039), "f4"))
                                      ) is None
    float64 = RNG.standard_normal((3, 3, 4, 6)).transpose(3, 2, 0, 1)
    assert layout.contiguous_in_place(float64) is None


def test_fc_weight_with_a_scalar_input_size() -> None:
    w = RNG.standard_normal((3, 8))  # InputSize stored as one number (features after pooling)
    np.testing.assert_array_equal(layout.fc_weight(w, 8), w.astype(np.float32))


def test_graph_conversion_of_a_resnet50_sized_network() -> None:
    net = pretrained_like()
    model = load(net)
    assert model.fc1000.weight.shape == (1000, 2048)
