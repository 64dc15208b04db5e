"""Every supported layer kind, converted and checked against the numpy reference forward pass.

Each case is a small MATLAB network built as a ``Network`` with random weights; the converted
module's outputs must equal ``reference_forward`` (MATLAB layouts, float64) to 1e-4 relative,
for batch sizes 1 and 3.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
import torch
from matlab_networks import (
    RNG,
    batch_norm,
    chain,
    conv,
    fc,
    feature_input,
    graph,
    grouped_conv,
    gru,
    image_input,
    layer,
    layer_norm,
    lstm,
    lstm_projected,
    rand,
    self_attention,
    sequence_input,
    simple,
    to_matlab_layout,
    to_torch_layout,
    transposed_conv,
)
from reference_forward import network_outputs, reference_forward

from matport.network import read_network
from matport.network.model import Network, Normalization
from matport.pytorch.convert import load

torch.set_num_threads(1)

IMG = (7, 6, 3)  # H x W x C
SEQ_T = 5


def _image(*rest) -> Network:
    return chain(image_input("in", IMG), *rest)


def _conv_then(*rest) -> Network:
    return _image(conv("conv", (3, 3), 3, 4, PaddingSize=(1, 1, 1, 1)), *rest)


def _features(c: int, *rest) -> Network:
    return chain(feature_input("in", c), *rest)


def _sequence(c: int, *rest) -> Network:
    return chain(sequence_input("in", c), *rest)


def _unpool_net() -> Network:
    layers = [image_input("in", (6, 8, 2)), conv("c1", (3, 3), 2, 3, PaddingSize=(1, 1, 1, 1)),
              simple("MaxPooling2DLayer", "pool", PoolSize=(2, 2), Stride=(2, 2),
                     PaddingSize=(0, 0, 0, 0), HasUnpoolingOutputs=True),
              simple("ReLULayer", "relu"), simple("MaxUnpooling2DLayer", "unpool"),
              conv("c2", (1, 1), 3, 2)]
    edges = ["in -> c1", "c1 -> pool", "pool/out -> relu", "relu -> unpool/in",
             "pool/size -> unpool/size", "pool/indices -> unpool/indices", "unpool -> c2"]
    return graph(layers, edges)


def _unpool_padded_net() -> Network:
    layers = [image_input("in", (5, 7, 2)),
              simple("MaxPooling2DLayer", "pool", PoolSize=(3, 2), Stride=(2, 2),
                     PaddingSize=(1, 0, 0, 1), HasUnpoolingOutputs=True),
              simple("MaxUnpooling2DLayer", "unpool")]
    edges = ["in -> pool", "pool/out -> unpool/in", "pool/indices -> unpool/indices",
             "pool/size -> unpool/size"]
    return graph(layers, edges)


def _residual_net() -> Network:
    layers = [image_input("in", IMG), conv("a", (3, 3), 3, 4, PaddingMode="same"),
              batch_norm("bn_a", 4), simple("ReLULayer", "relu_a"),
              conv("b", (1, 1), 3, 4), simple("AdditionLayer", "add", NumInputs=2),
              conv("c", (1, 1), 3, 2), simple("DepthConcatenationLayer", "cat", NumInputs=2),
              simple("GlobalAveragePooling2DLayer", "gap"), fc("fc", (1, 1, 6), 3),
              simple("SoftmaxLayer", "softmax"),
              simple("ClassificationOutputLayer", "classoutput", Classes=["a", "b", "c"])]
    edges = ["in -> a", "a -> bn_a", "bn_a -> relu_a", "in -> b", "relu_a -> add/in1",
             "b -> add/in2", "in -> c", "c -> cat/in2", "add -> cat/in1", "cat -> gap",
             "gap -> fc", "fc -> softmax", "softmax -> classoutput"]
    return graph(layers, edges)


def _concat_net(dim: int) -> Network:
    layers = [image_input("in", IMG), conv("a", (1, 1), 3, 2), conv("b", (1, 1), 3, 2),
              simple("ConcatenationLayer", "cat", NumInputs=2, Dim=dim)]
    return graph(layers, ["in -> a", "in -> b", "a -> cat/in1", "b -> cat/in2"])


def _feature_concat_net() -> Network:
    layers = [feature_input("in", 4), fc("a", 4, 3), fc("b", 4, 2),
              simple("ConcatenationLayer", "cat", NumInputs=2, Dim=1), fc("out", 5, 2)]
    return graph(layers, ["in -> a", "in -> b", "b -> cat/in1", "a -> cat/in2", "cat -> out"])


def _transformer_net(mask: str) -> Network:
    layers = [sequence_input("in", 3),
              layer("PositionEmbeddingLayer", "pos-emb", {"Weights": rand(3, 16)},
                    OutputSize=(3,), MaxPosition=16, PositionDimension="auto"),
              simple("AdditionLayer", "add", NumInputs=2),
              self_attention("attn_1", 3, heads=2, key=8, value=6, out=4, mask=mask),
              layer_norm("ln", 4, image=False),
              self_attention("attn_2", 4, heads=1, key=4, value=4, out=3),
              simple("Indexing1DLayer", "last", Index="last"), fc("fc", 3, 2),
              simple("RegressionOutputLayer", "regressionoutput")]
    edges = ["in -> pos-emb", "in -> add/in2", "pos-emb -> add/in1", "add -> attn_1",
             "attn_1 -> ln", "ln -> attn_2", "attn_2 -> last", "last -> fc",
             "fc -> regressionoutput"]
    return graph(layers, edges)


def _pool(kind: str, **params) -> Callable[[], Network]:
    params.setdefault("PaddingSize", (0, 0, 0, 0))
    return lambda: _conv_then(simple(kind, "pool", **params))


def _act(kind: str, **params) -> Callable[[], Network]:
    return lambda: _conv_then(simple(kind, "act", **params))


CASES: dict[str, Callable[[], Network]] = {
    # convolution
    "conv_symmetric": lambda: _image(conv("conv", (3, 3), 3, 4, PaddingSize=(1, 1, 2, 2))),
    "conv_asymmetric_stride": lambda: _image(
        conv("conv", (3, 2), 3, 4, Stride=(2, 1), PaddingSize=(0, 1, 2, 1))),
    "conv_same_stride2": lambda: _image(
        conv("conv", (3, 2), 3, 5, Stride=(2, 2), PaddingMode="same")),
    "conv_same_even_kernel": lambda: _image(conv("conv", (2, 4), 3, 2, PaddingMode="same")),
    "conv_same_dilated": lambda: _image(
        conv("conv", (3, 3), 3, 2, DilationFactor=(2, 1), PaddingMode="same")),
    "conv_dilated_asymmetric": lambda: _image(
        conv("conv", (2, 3), 3, 2, DilationFactor=(2, 2), PaddingSize=(2, 1, 0, 3))),
    "conv_pad_value": lambda: _image(
        conv("conv", (3, 3), 3, 2, PaddingSize=(1, 1, 1, 1), PaddingValue=1.5)),
    "conv_pad_replicate": lambda: _image(
        conv("conv", (3, 3), 3, 2, PaddingSize=(1, 2, 0, 1), PaddingValue="replicate")),
    "conv_pad_reflect": lambda: _image(
        conv("conv", (3, 3), 3, 2, PaddingSize=(1, 1, 2, 1),
             PaddingValue="symmetric-exclude-edge")),
    "grouped_conv": lambda: _image(
        conv("c0", (1, 1), 3, 4),
        grouped_conv("gconv", (3, 3), 2, 3, 2, Stride=(1, 2), PaddingSize=(1, 0, 1, 1))),
    "channelwise_conv": lambda: _image(
        grouped_conv("dwconv", (3, 3), 1, 2, 3, PaddingMode="same", DilationFactor=(1, 2))),
    "transposed_conv_crop": lambda: _image(
        transposed_conv("tconv", (3, 3), 3, 2, Stride=(2, 2), CroppingSize=(1, 0, 0, 1))),
    "transposed_conv_same": lambda: _image(
        transposed_conv("tconv", (4, 3), 3, 2, Stride=(2, 2), CroppingMode="same")),
    # normalization
    "batchnorm_image": lambda: _conv_then(batch_norm("bn", 4)),
    "batchnorm_features": lambda: _features(4, fc("fc", 4, 5), batch_norm("bn", 5, image=False)),
    "batchnorm_sequence": lambda: _sequence(3, batch_norm("bn", 3, image=False)),
    "layernorm_image": lambda: _conv_then(layer_norm("ln", 4)),
    "layernorm_features": lambda: _features(4, layer_norm("ln", 4, image=False)),
    "layernorm_sequence": lambda: _sequence(3, layer_norm("ln", 3, image=False)),
    "layernorm_image_channel_only": lambda: _conv_then(
        layer_norm("ln", 4, OperationDimension="channel-only")),
    "layernorm_sequence_batch_excluded": lambda: _sequence(
        3, layer_norm("ln", 3, image=False, OperationDimension="batch-excluded")),
    # activations
    "relu": _act("ReLULayer"),
    "leaky_relu": _act("LeakyReLULayer", Scale=0.1),
    "clipped_relu": _act("ClippedReLULayer", Ceiling=0.3),
    "elu": _act("ELULayer", Alpha=0.7),
    "tanh": _act("TanhLayer"),
    "sigmoid": _act("SigmoidLayer"),
    "swish": _act("SwishLayer"),
    "gelu": _act("GELULayer", Approximation="none"),
    "gelu_tanh": _act("GELULayer", Approximation="tanh"),
    "softmax_image": _act("SoftmaxLayer"),
    "dropout": _act("DropoutLayer", Probability=0.4),
    # pooling
    "maxpool_padded": _pool("MaxPooling2DLayer", PoolSize=(3, 3), Stride=(2, 2),
                            PaddingSize=(1, 1, 1, 1)),
    "maxpool_asymmetric": _pool("MaxPooling2DLayer", PoolSize=(2, 2), Stride=(2, 2),
                                PaddingSize=(0, 1, 1, 0)),
    "maxpool_same": _pool("MaxPooling2DLayer", PoolSize=(3, 2), Stride=(2, 2),
                          PaddingMode="same"),
    "maxpool_same_stride1": _pool("MaxPooling2DLayer", PoolSize=(2, 3), Stride=(1, 1),
                                  PaddingMode="same"),
    "avgpool_padded": _pool("AveragePooling2DLayer", PoolSize=(3, 3), Stride=(2, 2),
                            PaddingSize=(1, 1, 1, 1)),
    "avgpool_asymmetric": _pool("AveragePooling2DLayer", PoolSize=(2, 3), Stride=(1, 2),
                                PaddingSize=(1, 0, 2, 0)),
    "avgpool_same": _pool("AveragePooling2DLayer", PoolSize=(2, 2), Stride=(2, 2),
                          PaddingMode="same"),
    "global_avgpool": lambda: _conv_then(simple("GlobalAveragePooling2DLayer", "gap")),
    "global_maxpool": lambda: _conv_then(simple("GlobalMaxPooling2DLayer", "gmp")),
    "max_unpooling": _unpool_net,
    "max_unpooling_padded": _unpool_padded_net,
    # dense and reshaping
    "fc_after_spatial_4d_weights": lambda: _conv_then(
        fc("fc", (7, 6, 4), 5), simple("SoftmaxLayer", "softmax"),
        simple("ClassificationOutputLayer", "out", Classes=list("abcde"))),
    "fc_after_spatial_2d_weights": lambda: _image(layer(
        "FullyConnectedLayer", "fc", {"Weights": rand(4, 7 * 6 * 3, scale=0.1),
                                      "Bias": rand(4, 1)}, InputSize=IMG, OutputSize=(4,))),
    "flatten_then_fc": lambda: _conv_then(
        simple("FlattenLayer", "flatten"), fc("fc", 7 * 6 * 4, 3)),
    "fc_mlp_tanh": lambda: _features(2, fc("fc1", 2, 8), simple("TanhLayer", "t1"),
                                     fc("fc2", 8, 8), simple("TanhLayer", "t2"), fc("fc3", 8, 1)),
    "fc_on_sequence": lambda: _sequence(3, fc("fc", 3, 4), simple("SoftmaxLayer", "softmax")),
    "resize_nearest_scale": lambda: _image(simple("Resize2DLayer", "resize", Scale=(2, 2))),
    "resize_bilinear_size": lambda: _image(simple(
        "Resize2DLayer", "resize", OutputSize=(5, 11), Method="bilinear",
        GeometricTransformMode="half-pixel")),
    "resize_nearest_asymmetric": lambda: _image(simple(
        "Resize2DLayer", "resize", Scale=(1.5, 2), Method="nearest",
        GeometricTransformMode="asymmetric", NearestRoundingMode="floor")),
    # combining
    "addition_concat_gap_fc": _residual_net,
    "concat_channels": lambda: _concat_net(3),
    "concat_width": lambda: _concat_net(2),
    "concat_features": _feature_concat_net,
    # recurrent
    "lstm_sequence": lambda: _sequence(3, lstm("lstm", 3, 4), fc("fc", 4, 2)),
    "lstm_last": lambda: _sequence(3, lstm("lstm", 3, 4, "last"), fc("fc", 4, 2)),
    "lstm_stacked_zero_state": lambda: _sequence(
        2, lstm("l1", 2, 5, zero_state=True), simple("DropoutLayer", "drop", Probability=0.2),
        lstm("l2", 5, 3, "last")),
    "bilstm_sequence": lambda: _sequence(3, lstm("bilstm", 3, 4, kind="BiLSTMLayer"),
                                         simple("ReLULayer", "relu")),
    "bilstm_last": lambda: _sequence(3, lstm("bilstm", 3, 4, "last", kind="BiLSTMLayer"),
                                     fc("fc", 8, 2)),
    "gru_sequence": lambda: _sequence(3, gru("gru", 3, 4), fc("fc", 4, 1)),
    "gru_last": lambda: _sequence(3, gru("gru", 3, 4, "last")),
    "gru_recurrent_bias": lambda: _sequence(
        3, gru("gru", 3, 4, reset="recurrent-bias-after-multiplication")),
    "lstm_projected_sequence": lambda: _sequence(
        3, lstm_projected("lstmp", 3, 6, 2, 3, "sequence"), fc("fc", 6, 2)),
    "lstm_projected_last": lambda: _sequence(3, lstm_projected("lstmp", 3, 6, 2, 3, "last")),
    # attention
    "transformer_causal": lambda: _transformer_net("causal"),
    "transformer_no_mask": lambda: _transformer_net("none"),
}


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
    model = load(read_back or network)
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
