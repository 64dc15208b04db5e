"""Networks that cannot run are refused before conversion: sizes propagated from the input layers,
every layer's arrays checked against its settings and inputs (one test per defect class), one
ConversionError listing every inconsistent layer, a warning for NaN/Inf weights; and the
propagated sizes agree with what the converted modules compute on every layer case."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from matport.convert.api import load
from matport.errors import ConversionError
from matport.network.checks import check_network, output_sizes, require_consistent
from matport.network.model import Connection, Layer, Network
from matport.network.specs import Format, output_format
from matport.synth.layer_cases import CASES
from matport.synth.networks import (
    batch_norm,
    chain,
    conv,
    fc,
    feature_input,
    graph,
    image_input,
    lstm,
    rand,
    sequence_input,
    simple,
)

torch.set_num_threads(1)


def _matlab_size(y: torch.Tensor, fmt: Format) -> tuple[int, ...]:
    if fmt == "image":
        return (y.shape[2], y.shape[3], y.shape[1])
    return (y.shape[-1],)


@pytest.mark.parametrize("case", sorted(CASES))
def test_sizes_agree_with_the_converted_layers(case: str) -> None:
    net = CASES[case]()
    assert check_network(net) == []
    model = load(net)
    seen: dict[str, tuple[int, ...]] = {}
    formats: dict[str, Format] = {}
    for lay in net.topological_order():
        ins = tuple(formats[c.source] for c in net.inputs_of(lay))
        formats[lay.name] = output_format(lay, ins)

    def hook(name: str):  # noqa: ANN202
        def record(module: torch.nn.Module, args: object, out: object) -> None:
            y = out[0] if isinstance(out, tuple) else out
            assert isinstance(y, torch.Tensor)
            seen[name] = _matlab_size(y, formats[name])
        return record

    for matlab, attr in model.layer_map.items():
        getattr(model, attr).register_forward_hook(hook(matlab))
    inputs = []
    for lay in net.input_layers:
        size = lay.params["InputSize"]
        fmt = formats[lay.name]
        shape = ((2, size[2], size[0], size[1]) if fmt == "image" else
                 (2, size[0]) if fmt == "vector" else (2, 5, size[0]))
        inputs.append(torch.randn(shape))
    with torch.no_grad():
        model(*inputs)
    predicted = output_sizes(net)
    for name, size in seen.items():
        if predicted[name] is not None:
            assert predicted[name] == size, name
    known = sum(s is not None for s in predicted.values())
    assert known >= len(predicted) - 1  # only a resize by Scale is left unknown


def _reasons(net: Network) -> dict[str, str]:
    with pytest.raises(ConversionError) as info:
        load(net)
    return {name: reason for name, _, reason in info.value.layers}


def _rgb(*layers: Layer) -> Network:
    return chain(image_input("in", (8, 8, 3)), *layers)


def test_conv_weights_for_other_input_channels() -> None:
    reasons = _reasons(_rgb(conv("conv", (3, 3), 5, 4)))
    assert "Weights is 3x3x5x4" in reasons["conv"] and "channel" in reasons["conv"]


def test_filter_size_contradicting_weights() -> None:
    bad = conv("conv", (3, 3), 3, 4)
    bad.params["FilterSize"] = (5, 5)
    assert "FilterSize" in _reasons(_rgb(bad))["conv"]


def test_num_filters_contradicting_weights() -> None:
    bad = conv("conv", (3, 3), 3, 8)
    bad.params["NumFilters"] = 16
    assert "NumFilters" in _reasons(_rgb(bad))["conv"]


def test_fc_expecting_other_features() -> None:
    net = chain(image_input("in", (6, 6, 8)), simple("FlattenLayer", "flat"), fc("fc", 100, 4))
    reason = _reasons(net)["fc"]
    assert "288" in reason and "100" in reason


@pytest.mark.parametrize("key, value", [("Stride", (0, 1)), ("PaddingSize", (np.nan, 0, 0, 0)),
                                        ("DilationFactor", (1.5, 1))])
def test_bad_window_settings(key: str, value: tuple[float, ...]) -> None:
    bad = conv("conv", (3, 3), 3, 4)
    bad.params[key] = value
    assert key in _reasons(_rgb(bad))["conv"]


def test_nan_input_size() -> None:
    net = chain(image_input("in", (8, 8, 3)), conv("conv", (3, 3), 3, 4))
    net.layers[0].params["InputSize"] = (8, float("nan"), 3)
    assert "InputSize" in _reasons(net)["in"]


def test_one_value_bias_is_not_broadcast() -> None:
    bad = conv("conv", (3, 3), 3, 4)
    bad.learnables["Bias"] = rand(1, 1, 1)
    assert "Bias" in _reasons(_rgb(bad))["conv"]


def test_one_value_batchnorm_statistic_is_not_broadcast() -> None:
    bn = batch_norm("bn", 4)
    bn.state["TrainedVariance"] = np.ones((1, 1, 1), np.float32)
    assert "TrainedVariance" in _reasons(_rgb(conv("conv", (3, 3), 3, 4), bn))["bn"]


@pytest.mark.parametrize("epsilon", ["1e-5", float("nan"), -1.0])
def test_bad_epsilon(epsilon: object) -> None:
    bn = batch_norm("bn", 3)
    bn.params["Epsilon"] = epsilon
    assert "Epsilon" in _reasons(_rgb(bn))["bn"]


def test_recurrent_weights_for_other_features() -> None:
    net = chain(sequence_input("in", 3), lstm("lstm", 5, 4))
    assert "InputWeights" in _reasons(net)["lstm"]


def test_addition_of_different_sizes() -> None:
    net = graph([image_input("in", (8, 8, 3)), conv("a", (3, 3), 3, 4), conv("b", (1, 1), 3, 4),
                 simple("AdditionLayer", "add", NumInputs=2)],
                ["in -> a", "in -> b", "a -> add/in1", "b -> add/in2"])
    assert "6x6x4" in _reasons(net)["add"]


def test_one_error_lists_every_inconsistent_layer_once() -> None:
    first = conv("c1", (3, 3), 5, 4)  # wrong input channels
    second = conv("c2", (3, 3), 4, 4)  # consistent, but after an inconsistent layer
    third = fc("fc", 7, 2)  # 4 features come in
    net = chain(image_input("in", (8, 8, 3)), first, second,
                simple("GlobalAveragePooling2DLayer", "gap"), third)
    assert sorted(_reasons(net)) == ["c1"]  # sizes after c1 are unknown: no cascade
    first = conv("c1", (3, 3), 3, 4)
    bad_bias = conv("c2", (3, 3), 4, 4)
    bad_bias.learnables["Bias"] = rand(1, 1, 2)
    net = chain(image_input("in", (8, 8, 3)), first, bad_bias,
                simple("GlobalAveragePooling2DLayer", "gap"), simple("FlattenLayer", "f"), third)
    assert sorted(_reasons(net)) == ["c2"]
    net = chain(feature_input("in", 4), fc("a", 5, 3), fc("b", 3, 2), fc("c", 9, 2))
    with pytest.raises(ConversionError) as info:
        require_consistent(net)
    assert [n for n, _, _ in info.value.layers] == ["a", "c"]
    assert "FullyConnectedLayer" in info.value.layers[0][1]


def test_non_finite_weights_warn_and_convert() -> None:
    net = chain(feature_input("in", 4), fc("fc", 4, 2), fc("head", 2, 2))
    net.layers[1].learnables["Weights"][0, 0] = np.nan
    net.layers[2].learnables["Bias"][0] = np.inf
    with pytest.warns(RuntimeWarning, match=r"fc \(Weights\); head \(Bias\)"):
        load(net)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load(chain(feature_input("in", 4), fc("fc", 4, 2)))
        huge = chain(feature_input("in", 4), fc("fc", 4, 2))  # finite, their squares are not
        huge.layers[1].learnables["Weights"][:] = np.finfo(np.float32).max
        load(huge)


def test_user_layers_pass_an_unknown_size_on() -> None:
    user = Layer("scale", "myproject.ScaleLayer")
    net = chain(feature_input("in", 4), user, fc("fc", 9, 2))
    assert check_network(net) == []
    assert output_sizes(net) == {"in": (4,), "scale": None, "fc": (2,)}


def _reference_order(net: Network) -> list[str]:
    """Kahn's algorithm as first written: the ready layer stored first, by scanning."""
    index = {lay.name: i for i, lay in enumerate(net.layers)}
    indeg = dict.fromkeys(index, 0)
    for c in net.connections:
        if c.dest in indeg and c.source in indeg:
            indeg[c.dest] += 1
    ready, order = sorted((n for n, d in indeg.items() if d == 0), key=index.__getitem__), []
    while ready:
        n = ready.pop(0)
        order.append(n)
        for c in net.connections:
            if c.source == n and c.dest in indeg:
                indeg[c.dest] -= 1
                if indeg[c.dest] == 0:
                    ready = sorted([*ready, c.dest], key=index.__getitem__)
    return order


def _crossed() -> Network:
    """Branches stored out of order, inputs connected in2 before in1, a doubled connection."""
    net = graph([image_input("in", (4, 4, 2)), simple("ReLULayer", "b"),
                 simple("ReLULayer", "a"), simple("AdditionLayer", "add", NumInputs=3)],
                ["in -> a", "in -> b", "a -> add/in2", "b -> add/in1", "b -> add/in3"])
    net.connections.append(net.connections[-1])
    return net


@pytest.mark.parametrize("case", [*sorted(CASES), "crossed"])
def test_graph_index_answers_as_the_network(case: str) -> None:
    net = _crossed() if case == "crossed" else CASES[case]()
    index = net.index()
    assert [lay.name for lay in index.topological_order()] == _reference_order(net)
    for lay in net.layers:
        assert index.inputs_of(lay) == net.inputs_of(lay)
        assert index.predecessors(lay.name) == net.predecessors(lay.name)
        assert index.successors(lay.name) == net.successors(lay.name)
        assert index.has_successors(lay.name) == bool(net.successors(lay.name))


def test_graph_index_finds_cycles() -> None:
    net = _crossed()
    net.connections.append(Connection("add", "in"))
    with pytest.raises(ValueError, match="cycle through: a, add, b, in"):
        net.index().topological_order()
