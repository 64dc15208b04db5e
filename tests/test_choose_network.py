"""Which network a file means: the only trained one beside untrained layer arrays or graphs (the
choice logged), an error listing them when two are trained; and what ``matport inspect`` says
about each network (trained or not, whether it converts and as which family, which layers
cannot be converted and why)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import jsonschema
import numpy as np
import pytest
import torch

import matport
from matport.cli import main
from matport.mat.values import Struct
from matport.mat.writer import write
from matport.network.encode import encode_network
from matport.network.model import Layer, Network
from matport.network.summary import INSPECT_SCHEMA
from matport.synth.networks import (
    RNG,
    chain,
    fc,
    feature_input,
    simple,
    to_matlab_layout,
    to_torch_layout,
)
from tests.support.paths import corpus_file
from tests.support.reference_forward import network_outputs, reference_forward

torch.set_num_threads(1)


def _trained(out: int = 2) -> Network:
    return chain(feature_input("in", 3), fc("fc_1", 3, 4), simple("ReLULayer", "relu"),
                 fc("fc_2", 4, out), simple("RegressionOutputLayer", "out"))


def _untrained(kind: str) -> Network:
    """The trained network's layers as MATLAB holds them before training: empty weights."""
    net = _trained()
    empty = np.zeros((0, 0), dtype=np.float32)
    layers = [Layer(lay.name, lay.class_name, dict(lay.params),
                    {k: empty for k in lay.learnables}, {}, lay.normalization)
              for lay in net.layers]
    return Network(kind, layers, net.connections)


def _file(tmp_path: Path, name: str, **variables: object) -> Path:
    path = tmp_path / name
    write(path, variables, format="v7")
    return path


def test_the_trained_network_is_chosen_beside_its_untrained_layers(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    trained = _trained()
    path = _file(tmp_path, "net.mat", layers=encode_network(_untrained("LayerArray")),
                 net=encode_network(trained), lgraph=encode_network(_untrained("LayerGraph")))
    with caplog.at_level(logging.INFO, logger="matport.network.find"):
        model = matport.load(path)
    assert model.matport.variable == "net"
    (record,) = [r for r in caplog.records if "chose" in r.getMessage()]
    assert "net (SeriesNetwork)" in record.getMessage()
    assert "layers (nnet.cnn.layer.Layer, untrained)" in record.getMessage()
    raw = RNG.uniform(-1, 1, (3, 5))
    want = network_outputs(trained, reference_forward(trained, [raw]))[0]
    with torch.no_grad():
        got = model(torch.from_numpy(to_torch_layout(raw)).float()).numpy()
    np.testing.assert_allclose(to_matlab_layout(got), want, rtol=1e-5, atol=1e-6)
    with pytest.raises(matport.ConversionError, match="untrained"):
        matport.load(path, "layers")  # still reachable by name


def test_two_trained_networks_are_a_genuine_ambiguity(tmp_path: Path) -> None:
    agent = Struct({"Actor": encode_network(_trained()), "Critic": encode_network(_trained(1))})
    path = _file(tmp_path, "agent.mat", agent=agent,
                 layers=encode_network(_untrained("LayerArray")))
    with pytest.raises(matport.NetworkError) as info:
        matport.load(path)
    message = str(info.value)
    assert "holds 3 networks" in message and "choose one with variable=" in message
    assert "agent.Actor (SeriesNetwork)" in message and "agent.Critic (SeriesNetwork)" in message
    assert "layers (nnet.cnn.layer.Layer, untrained)" in message
    assert matport.load(path, "agent.Critic")(torch.ones(1, 3)).shape == (1, 1)


def test_several_untrained_and_no_trained_network_is_ambiguous(tmp_path: Path) -> None:
    path = _file(tmp_path, "graphs.mat", a=encode_network(_untrained("LayerGraph")),
                 b=encode_network(_untrained("LayerArray")))
    with pytest.raises(matport.NetworkError, match="holds 2 networks"):
        matport.load(path)


def _inspect(path: Path, capsys: pytest.CaptureFixture[str]) -> dict:
    assert main(["inspect", str(path), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    jsonschema.validate(doc, INSPECT_SCHEMA)
    return doc


def test_inspect_marks_untrained_layers_and_says_what_converts(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _file(tmp_path, "net.mat", layers=encode_network(_untrained("LayerArray")),
                 net=encode_network(_trained()))
    doc = _inspect(path, capsys)
    assert doc["chosen"] == "net"
    nets = {n["path"]: n for n in doc["networks"]}
    assert nets["net"]["trained"] and not nets["layers"]["trained"]
    assert nets["net"]["conversion"] == {"converts": True, "family": "graph", "reason": None,
                                         "problems": []}
    untrained = nets["layers"]["conversion"]
    assert not untrained["converts"] and untrained["family"] is None
    marked = {lay["name"]: lay["problem"] for lay in nets["layers"]["layers"] if lay["problem"]}
    assert set(marked) == {"fc_1", "fc_2"}
    assert all(p.startswith("untrained: empty Weights") for p in marked.values())
    assert [p["layer"] for p in untrained["problems"]] == ["fc_1", "fc_2"]
    assert main(["inspect", str(path)]) == 0
    text = capsys.readouterr().out
    assert "Network layers: LayerArray, 5 layers, 0 learnable parameters (untrained" in text
    assert "Converts: no: 2 layer(s) cannot be converted to PyTorch (marked <- below)" in text
    assert "FullyConnectedLayer  <- untrained: empty Weights" in text
    assert ("Converts: yes, family graph; matport.load takes it when no variable is named"
            in text)


def test_inspect_marks_unsupported_layers(tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    net = _trained()
    net.layers[2] = Layer("relu", "myproject.ScaledRelu", supported=False)
    doc = _inspect(_file(tmp_path, "custom.mat", net=encode_network(net)), capsys)
    (entry,) = doc["networks"]
    assert not entry["conversion"]["converts"]
    (layer,) = [lay for lay in entry["layers"] if lay["problem"]]
    assert layer["name"] == "relu" and not layer["supported"]
    assert "a class the user wrote" in layer["problem"]


def test_inspect_names_the_resnet50_family(tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    from matport.synth.resnet50 import finetuned

    path = _file(tmp_path, "resnet.mat", net=encode_network(finetuned()))
    (entry,) = _inspect(path, capsys)["networks"]
    assert entry["conversion"]["family"] == "resnet50"


def test_corpus_file_with_trained_network_and_its_layers(caplog: pytest.LogCaptureFixture) -> None:
    path = corpus_file("igreen1__digit_learning/trainedNet.mat")
    with caplog.at_level(logging.INFO, logger="matport.network.find"):
        model = matport.load(path)
    assert model.matport.variable == "trainedNet" and model.matport.num_classes == 10
    assert any("chose trainedNet (SeriesNetwork)" in r.getMessage() for r in caplog.records)
