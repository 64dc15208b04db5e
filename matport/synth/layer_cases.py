"""Small MATLAB networks, one per layer kind and option, with random weights (``CASES``).

Used by ``scripts/make_fixtures.py`` (``fixtures/layers_v7.mat`` / ``layers_v73.mat``) and by the
tests, which check each against a reference forward pass.
"""

from __future__ import annotations

from collections.abc import Callable

from matport.network.model import Network
from matport.synth.networks import (
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
    transposed_conv,
)

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
