"""``matport.convert.api.load`` on networks built in the tests: the module it returns (names,
state_dict, print, fx, torch.export, batch sizes, training), its metadata and architecture spec,
the listing error for non-convertible layers, and the converter registry."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch
from torch import nn

from matport.convert.api import load
from matport.convert.graph import module_from_spec, network_spec
from matport.convert.info import ModelInfo
from matport.convert.layers import (
    ConversionContext,
    LayerNotConvertible,
    register_converter,
    unregister_converter,
)
from matport.errors import ConversionError, MatportError
from matport.network.model import Layer, Network, Normalization
from matport.synth.layer_cases import CASES
from matport.synth.networks import (
    RNG,
    batch_norm,
    chain,
    conv,
    fc,
    feature_input,
    graph,
    gru,
    image_input,
    layer,
    lstm,
    rand,
    sequence_input,
    simple,
    to_torch_layout,
)
from tests.support.layer_check import check_against_reference
from tests.support.training import fine_tune

torch.set_num_threads(1)


def _small_cnn() -> Network:
    return chain(
        image_input("imageinput", (8, 8, 1), Normalization("zerocenter", mean=rand(8, 8, 1))),
        conv("conv_1", (3, 3), 1, 4, PaddingMode="same"), batch_norm("batchnorm_1", 4),
        simple("ReLULayer", "relu_1"),
        simple("MaxPooling2DLayer", "maxpool_1", PoolSize=(2, 2), Stride=(2, 2),
               PaddingSize=(0, 0, 0, 0)),
        fc("fc", (4, 4, 4), 3), simple("SoftmaxLayer", "softmax"),
        simple("ClassificationOutputLayer", "classoutput", Classes=["cat", "dog", "owl"]),
        class_names=["cat", "dog", "owl"])


def _small_lstm() -> Network:
    return chain(sequence_input("sequenceinput", 2), lstm("lstm", 2, 8, "last"),
                 fc("fc", 8, 1), simple("RegressionOutputLayer", "regressionoutput"))


# --- the module -------------------------------------------------------------------------------


def test_submodules_named_after_layers_and_readable_state_dict() -> None:
    model = load(_small_cnn())
    names = [n for n, _ in model.named_children()]
    assert names == ["imageinput", "conv_1", "batchnorm_1", "relu_1", "maxpool_1", "fc",
                     "classoutput"]  # logits: the softmax is post-processing
    keys = set(model.state_dict())
    assert {"conv_1.weight", "conv_1.bias", "batchnorm_1.running_mean", "fc.weight"} <= keys
    assert isinstance(model.batchnorm_1, nn.BatchNorm2d)
    assert model.batchnorm_1.eps == pytest.approx(1e-3)
    text = str(model)
    assert "(conv_1): Conv2d(1, 4, kernel_size=(3, 3), stride=(1, 1), padding=(1, 1))" in text
    lstm_keys = set(load(_small_lstm()).state_dict())
    assert {"lstm.rnn.weight_ih_l0", "lstm.rnn.bias_hh_l0", "lstm.initial_hidden",
            "lstm.initial_cell"} <= lstm_keys


def test_layer_names_become_valid_unique_identifiers() -> None:
    net = chain(feature_input("in put", 3), fc("1st-fc", 3, 4), simple("ReLULayer", "forward"),
                fc("1st_fc", 4, 2), simple("TanhLayer", "class"))
    model = load(net)
    assert model.layer_map == {"in put": "in_put", "1st-fc": "layer_1st_fc",
                               "forward": "forward_", "1st_fc": "layer_1st_fc_1",
                               "class": "class_"}
    assert model(torch.ones(2, 3)).shape == (2, 2)


def test_layers_named_as_the_model_attributes_get_their_own_names() -> None:
    names = ["training", "layer_map", "input_names", "output_names", "input_formats",
             "loss_layers", "matport"]
    net = chain(feature_input("in", 3), *[simple("ReLULayer", n) for n in names], fc("fc", 3, 2))
    model = load(net)  # these names raised TypeError or KeyError from nn.Module before
    assert [model.layer_map[n] for n in names] == [n + "_" for n in names]
    assert model.training is False and model.output_names == ["fc"]
    assert isinstance(model.layer_map, dict) and isinstance(model.loss_layers, list)
    assert model(torch.ones(1, 3)).shape == (1, 2)


def test_model_info() -> None:
    model = load(_small_cnn())
    info = model.matport
    assert isinstance(info, ModelInfo)
    assert info.class_names == ["cat", "dog", "owl"]
    assert info.input_size == (8, 8, 1) and info.layout == "NCHW"
    assert info.normalization.type == "zerocenter"
    assert info.layer_map["conv_1"] == "conv_1"
    assert info.architecture["family"] == "graph"
    assert load(_small_lstm()).matport.layout == "NTC"
    assert load(chain(feature_input("f", 2), fc("fc", 2, 1))).matport.layout == "NC"


def test_last_output_mode_returns_last_time_step() -> None:
    net = chain(sequence_input("in", 2), lstm("lstm", 2, 3, "sequence"))
    last = chain(sequence_input("in", 2), lstm("lstm", 2, 3, "last"))
    last.layers[1].learnables = net.layers[1].learnables
    last.layers[1].state = net.layers[1].state
    x = torch.randn(2, 6, 2)
    with torch.no_grad():
        torch.testing.assert_close(load(last)(x), load(net)(x)[:, -1])


def test_bilstm_last_mode_is_the_final_state_of_each_direction() -> None:
    seq = chain(sequence_input("in", 2), lstm("bilstm", 2, 3, "sequence", kind="BiLSTMLayer"))
    last = chain(sequence_input("in", 2), lstm("bilstm", 2, 3, "last", kind="BiLSTMLayer"))
    last.layers[1].learnables = seq.layers[1].learnables
    last.layers[1].state = seq.layers[1].state
    x = torch.randn(2, 6, 2)
    with torch.no_grad():
        full = load(seq)(x)
        torch.testing.assert_close(load(last)(x), torch.cat([full[:, -1, :3], full[:, 0, 3:]], 1))


def random_input(net: Network, batch: int, steps: int) -> torch.Tensor:
    """Standard-normal input for the network's first input layer, in PyTorch's layout
    (``steps`` time steps for sequences)."""
    size = tuple(net.input_layers[0].params["InputSize"])
    image = net.input_layers[0].type == "ImageInputLayer"
    shape = size + ((batch,) if image else (batch, steps))
    return torch.from_numpy(to_torch_layout(RNG.standard_normal(shape))).float()


@pytest.mark.parametrize("case", ["addition_concat_gap_fc", "max_unpooling", "conv_same_stride2",
                                  "lstm_last", "bilstm_sequence", "gru_sequence",
                                  "lstm_projected_last", "transformer_causal"])
def test_torch_fx_trace_and_export(case: str) -> None:
    net = CASES[case]()
    model = load(net)
    x = random_input(net, batch=3, steps=5)
    with torch.no_grad():
        expected = model(x)
        traced = torch.fx.symbolic_trace(model)
        torch.testing.assert_close(traced(x), expected)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            exported = torch.export.export(model, (x,))
        torch.testing.assert_close(exported.module()(x), expected)


def test_export_with_dynamic_batch() -> None:
    model = load(_small_cnn())
    batch = torch.export.Dim("batch", min=1, max=64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        exported = torch.export.export(model, (torch.randn(2, 1, 8, 8),),
                                       dynamic_shapes=({0: batch},))
    x = torch.randn(5, 1, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(exported.module()(x), model(x))


def test_multiple_outputs_in_output_order() -> None:
    layers = [feature_input("in", 3), fc("a", 3, 2), fc("b", 3, 4)]
    net = graph(layers, ["in -> a", "in -> b"], kind="dlnetwork", output_names=["b", "a"])
    out_b, out_a = load(net)(torch.ones(1, 3))
    assert out_b.shape == (1, 4) and out_a.shape == (1, 2)


def test_two_inputs() -> None:
    layers = [feature_input("x1", 3), feature_input("x2", 3),
              simple("AdditionLayer", "add", NumInputs=2), fc("fc", 3, 2)]
    net = graph(layers, ["x1 -> add/in1", "x2 -> add/in2", "add -> fc"])
    check_against_reference(net, 2)
    model = load(net)
    assert model.input_names == ["x1", "x2"]
    traced = torch.fx.symbolic_trace(model)
    a, b = torch.randn(2, 3), torch.randn(2, 3)
    torch.testing.assert_close(traced(a, b), model(a, b))


# --- architecture spec ----------------------------------------------------------------------


@pytest.mark.parametrize("case", ["addition_concat_gap_fc", "max_unpooling", "bilstm_last",
                                  "lstm_projected_sequence", "transformer_causal"])
def test_spec_rebuilds_module_from_json(case: str) -> None:
    net = CASES[case]()
    model = load(net, output="probabilities")  # the whole network, its softmax included
    spec = json.loads(json.dumps(network_spec(net)))
    assert spec == json.loads(json.dumps(model.matport.architecture["spec"]))
    rebuilt = module_from_spec(spec)
    rebuilt.load_state_dict(model.state_dict())
    rebuilt.eval()
    x = random_input(net, batch=2, steps=4)
    with torch.no_grad():
        torch.testing.assert_close(rebuilt(x), model(x))
    assert str(rebuilt) == str(model)


# --- what cannot be converted --------------------------------------------------------------


def _bad_network() -> Network:
    empty_fc = layer("FullyConnectedLayer", "fc_untrained",
                     {"Weights": np.zeros((0, 0), "f4"), "Bias": np.zeros((0, 0), "f4")},
                     OutputSize=(4,))
    function = Layer("scale", "nnet.cnn.layer.FunctionLayer", raw={"PredictFcn": "@(X) 2*X"})
    custom = Layer("mylayer", "myproject.ScaleLayer", supported=False, raw={"Factor": 3.0})
    gru_before = gru("gru", 3, 2)
    gru_before.params["ResetGateMode"] = "before-multiplication"
    return chain(feature_input("in", 3), fc("fc_ok", 3, 3), empty_fc, function, custom,
                 sequence_input("seq", 3), gru_before, kind="LayerGraph")


def test_listing_error_names_every_offending_layer() -> None:
    net = _bad_network()
    net.connections = [c for c in net.connections if c.dest != "seq"]
    with pytest.raises(ConversionError) as info:
        load(net)
    err = info.value
    assert isinstance(err, MatportError)
    listed = {(name, cls) for name, cls, _ in err.layers}
    assert listed == {("fc_untrained", "nnet.cnn.layer.FullyConnectedLayer"),
                      ("scale", "nnet.cnn.layer.FunctionLayer"),
                      ("mylayer", "myproject.ScaleLayer"),
                      ("gru", "nnet.cnn.layer.GRULayer")}
    text = str(err)
    for expected in ("fc_untrained", "untrained", "FunctionLayer", "never evaluated",
                     "myproject.ScaleLayer", "user-defined", "before-multiplication"):
        assert expected in text


class Scale(nn.Module):
    def __init__(self, factor: float) -> None:
        super().__init__()
        self.factor = factor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.factor


def _custom_network() -> Network:
    custom = Layer("mylayer", "myproject.ScaleLayer", supported=False, raw={"Factor": 3.0})
    # a dlnetwork: in a SeriesNetwork a terminal user-defined layer would be its loss layer
    return chain(feature_input("in", 3), fc("fc", 3, 2), custom, kind="dlnetwork")


def _scale_converter(lay: Layer, context: ConversionContext) -> nn.Module:
    assert context.input_formats == ("vector",)
    return Scale(float(lay.raw["Factor"]))


def test_registry_converts_custom_layer() -> None:
    net = _custom_network()
    with pytest.raises(ConversionError, match="mylayer"):
        load(net)
    register_converter("myproject.ScaleLayer", _scale_converter)
    try:
        model = load(net)
    finally:
        unregister_converter("myproject.ScaleLayer")
    x = torch.randn(4, 3)
    w = torch.from_numpy(net.layers[1].learnables["Weights"])
    b = torch.from_numpy(net.layers[1].learnables["Bias"]).ravel()
    with torch.no_grad():
        torch.testing.assert_close(model(x), 3.0 * (x @ w.T + b))
    assert isinstance(model.mylayer, Scale)


def test_per_call_converters_and_function_layer() -> None:
    function = Layer("double", "nnet.cnn.layer.FunctionLayer", raw={"PredictFcn": "@(X) 2*X"})
    net = chain(feature_input("in", 3), function)
    model = load(net, converters={"FunctionLayer": lambda lay, ctx: Scale(2.0)})
    torch.testing.assert_close(model(torch.ones(1, 3)), torch.full((1, 3), 2.0))
    with pytest.raises(ConversionError, match="double"):
        load(net)


def test_converter_refusing_a_setting_is_listed() -> None:
    def refuse(lay: Layer, context: ConversionContext) -> nn.Module:
        raise LayerNotConvertible("factor must be positive")

    with pytest.raises(ConversionError, match="factor must be positive"):
        load(_custom_network(), converters={"ScaleLayer": refuse})


# --- training --------------------------------------------------------------------------------


def test_fine_tuning_cnn_lowers_loss() -> None:
    model = load(_small_cnn())  # logits: MATLAB's softmax is post-processing
    x = model.matport.preprocess(torch.from_numpy(RNG.uniform(0, 255, (6, 1, 8, 8))).float())
    target = torch.tensor([0, 1, 2, 0, 1, 2])
    losses = fine_tune(model, x, target)  # nn.CrossEntropyLoss on the logits
    assert losses[-1] < 0.7 * losses[0]
    assert all(p.grad is not None for p in model.parameters())


def test_fine_tuning_lstm_lowers_loss() -> None:
    model = load(_small_lstm())
    x = torch.randn(4, 7, 2)
    target = x.sum(dim=(1, 2)).unsqueeze(1) * 0.1
    losses = fine_tune(model, x, target, nn.functional.mse_loss)
    assert losses[-1] < 0.7 * losses[0]
    assert model.lstm.rnn.weight_ih_l0.grad is not None


def test_eval_mode_and_dropout_identity() -> None:
    net = chain(feature_input("in", 3), fc("fc", 3, 3), simple("DropoutLayer", "drop",
                                                               Probability=0.9))
    model = load(net)
    assert not model.training
    x = torch.randn(2, 3)
    torch.testing.assert_close(model(x), model.fc(x))


def test_spec_of_custom_layer_keeps_its_scalar_fields() -> None:
    net = _custom_network()
    converters = {"myproject.ScaleLayer": _scale_converter}
    model = load(net, converters=converters)
    spec = json.loads(json.dumps(network_spec(net)))
    rebuilt = module_from_spec(spec, converters=converters)
    rebuilt.load_state_dict(model.state_dict())
    x = torch.randn(2, 3)
    with torch.no_grad():
        torch.testing.assert_close(rebuilt(x), model(x))


def test_network_without_input_layer_is_refused() -> None:
    net = chain(fc("fc", 3, 2))
    with pytest.raises(ConversionError):
        load(net)


@pytest.mark.parametrize("case", ["max_unpooling", "lstm_projected_last", "bilstm_last",
                                  "transformer_causal", "conv_same_stride2"])
def test_module_follows_dtype_and_copies(case: str, tmp_path) -> None:
    import copy

    net = CASES[case]()
    model = load(net)
    x = random_input(net, batch=2, steps=4)
    with torch.no_grad():
        expected = model(x)
        double = copy.deepcopy(model).double()
        torch.testing.assert_close(double(x.double()).float(), expected, rtol=1e-4, atol=1e-5)
        torch.save(model, tmp_path / "model.pt")
        reloaded = torch.load(tmp_path / "model.pt", weights_only=False)
        torch.testing.assert_close(reloaded(x), expected)
    assert reloaded.matport.layer_map == model.matport.layer_map
