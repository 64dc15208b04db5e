"""Shallow networks (issue 13 item 4): the old ``network`` class converts so that ``model(x)``
equals MATLAB's ``net(x)``, processing included.

The reference below is written from MATLAB's documented formulas, one sample per column as in
MATLAB, straight from the saved properties (not from matport's description): ``mapminmax`` from
``xmin``/``xmax``/``ymin``/``ymax``, ``mapstd`` from ``xmean``/``xstd``, transfer functions
from their definitions, layers simulated in index order.
"""

from __future__ import annotations

import functools
import json
from typing import Any

import jsonschema
import numpy as np
import pytest
import torch

import matport
from matport.cli import main
from matport.errors import ConversionError, NetworkError
from matport.mat.values import MatFile, MatObject
from matport.mat.writer import write
from matport.network import find_networks, network_from_ref, read_network
from matport.network.summary import INSPECT_SCHEMA
from matport.synth.shallow import shallow_cases
from tests.support.paths import FIXTURES, corpus_file

FILES = ["shallow_v7.mat", "shallow_v73.mat"]
REFUSED = {"delays", "unsupported"}
CASES = sorted(set(shallow_cases()) - REFUSED)
DISCONTINUOUS = {"tf_hardlim", "tf_hardlims", "tf_compet"}
CORPUS_NET = "sarabsethi__TimeSeriesGenerator/trainedNet.mat"

# ---------------------------------------------------------------- reference (MATLAB's formulas)

TRANSFER = {
    "tansig": lambda n: 2 / (1 + np.exp(-2 * n)) - 1,
    "logsig": lambda n: 1 / (1 + np.exp(-n)),
    "purelin": lambda n: n,
    "poslin": lambda n: np.where(n > 0, n, 0.0),
    "satlin": lambda n: np.where(n < 0, 0.0, np.where(n > 1, 1.0, n)),
    "satlins": lambda n: np.where(n < -1, -1.0, np.where(n > 1, 1.0, n)),
    "hardlim": lambda n: np.where(n >= 0, 1.0, 0.0),
    "hardlims": lambda n: np.where(n >= 0, 1.0, -1.0),
    "radbas": lambda n: np.exp(-(n**2)),
    "radbasn": lambda n: np.exp(-(n**2)) / np.exp(-(n**2)).sum(0),
    "tribas": lambda n: np.where(np.abs(n) <= 1, 1 - np.abs(n), 0.0),
    "elliotsig": lambda n: n / (1 + np.abs(n)),
    "elliot2sig": lambda n: np.sign(n) * n**2 / (1 + n**2),
    "softmax": lambda n: np.exp(n) / np.exp(n).sum(0),
    "compet": lambda n: (n == n.max(0)).astype(float),
}


def idx(v: Any) -> list[int]:
    return [int(k) - 1 for k in np.ravel(v)]


def process(x: np.ndarray, fcn: str, s: dict[str, Any]) -> np.ndarray:
    if fcn == "mapminmax":
        return (s["ymax"] - s["ymin"]) * (x - s["xmin"]) / (s["xmax"] - s["xmin"]) + s["ymin"]
    if fcn == "mapstd":
        return (x - s["xmean"]) / s["xstd"] * s["ystd"] + s["ymean"]
    if fcn == "removeconstantrows":
        return x[idx(s["keep"])]
    if fcn == "processpca":
        return s["transform"] @ x
    assert fcn == "fixunknowns"
    rows = []
    for r in range(x.shape[0]):
        rows.append(np.where(np.isnan(x[r]), s["xmeans"][r, 0], x[r]))
        if r in idx(s["unknown"]):
            rows.append((~np.isnan(x[r])).astype(float))
    return np.array(rows)


def reverse(y: np.ndarray, fcn: str, s: dict[str, Any]) -> np.ndarray:
    if fcn == "mapminmax":
        return (s["xmax"] - s["xmin"]) * (y - s["ymin"]) / (s["ymax"] - s["ymin"]) + s["xmin"]
    if fcn == "mapstd":
        return (y - s["ymean"]) / s["ystd"] * s["xstd"] + s["xmean"]
    if fcn == "processpca":
        return s["inverseTransform"] @ y
    assert fcn == "removeconstantrows"
    x = np.zeros((int(s["xrows"].item()), y.shape[1]))
    x[idx(s["keep"])] = y
    x[idx(s["remove"])] = s["value"]
    return x


def weigh(w: np.ndarray, p: np.ndarray, fcn: str) -> np.ndarray:
    if fcn == "dist":
        return np.array([[np.linalg.norm(w[i] - p[:, q]) for q in range(p.shape[1])]
                         for i in range(w.shape[0])])
    return w @ p


def matlab_sim(net: MatObject, inputs: list[np.ndarray]) -> list[np.ndarray]:
    """``net(x)`` for a static network: ``inputs`` are features x samples, as in MATLAB."""
    pr = net.props
    nl, ni = int(pr["numLayers"].item()), int(pr["numInputs"].item())
    p = []
    for j in range(ni):
        inp, x = pr["inputs"].ravel()[j], inputs[j]
        for fcn, s in zip(inp["processFcns"].ravel(), inp["processSettings"].ravel(), strict=True):
            x = process(x, fcn, s)
        p.append(x)
    a: list[np.ndarray] = []
    for i in range(nl):
        terms = [weigh(pr["IW"][i, j], p[j], pr["inputWeights"][i, j]["weightFcn"])
                 for j in range(ni) if pr["inputConnect"][i, j]]
        terms += [pr["LW"][i, k] @ a[k] for k in range(i) if pr["layerConnect"][i, k]]
        if pr["biasConnect"][i, 0]:
            terms.append(np.repeat(pr["b"][i, 0], terms[0].shape[1], axis=1))
        layer = pr["layers"][i, 0]
        n = np.prod(terms, axis=0) if layer["netInputFcn"] == "netprod" else np.sum(terms, axis=0)
        a.append(TRANSFER[layer["transferFcn"]](n))
    outs = []
    for i in np.flatnonzero(pr["outputConnect"][0]):
        out, y = pr["outputs"][0, i], a[i]
        for fcn, s in reversed(list(zip(out["processFcns"].ravel(),
                                        out["processSettings"].ravel(), strict=True))):
            y = reverse(y, fcn, s)
        outs.append(y)
    return outs


# ---------------------------------------------------------------- helpers


@functools.cache
def fixture(name: str) -> MatFile:
    """A fixture file, read once (the v7.3 one takes seconds)."""
    return matport.read(FIXTURES / name)


def load_case(name: str, case: str) -> torch.nn.Module:
    (ref,) = [r for r in find_networks(fixture(name)) if r.path == case]
    return matport.load(network_from_ref(ref, str(FIXTURES / name)))


def sample_inputs(net: MatObject, n: int = 7) -> list[np.ndarray]:
    """Random inputs per sample row (N x features), NaNs where the input has fixunknowns."""
    rng = np.random.default_rng(5)
    xs = []
    for inp in net.props["inputs"].ravel():
        x = rng.uniform(-4.0, 6.0, (n, int(inp["size"].item())))
        if "fixunknowns" in list(inp["processFcns"].ravel()):
            x[::2, 1] = np.nan
            x[1, 3] = np.nan
        xs.append(x)
    return xs


def run(model: torch.nn.Module, xs: list[np.ndarray], dtype: torch.dtype) -> list[np.ndarray]:
    out = model(*(torch.tensor(x, dtype=dtype) for x in xs))
    return [o.detach().double().numpy() for o in (out if isinstance(out, tuple) else (out,))]


def check(model: torch.nn.Module, net: MatObject, discontinuous: bool = False) -> None:
    xs = sample_inputs(net)
    expected = [y.T for y in matlab_sim(net, [x.T for x in xs])]
    for got, want in zip(run(model, xs, torch.float64), expected, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-10)
    if not discontinuous:
        for got, want in zip(run(model.float(), xs, torch.float32), expected, strict=True):
            assert np.abs(got - want).max() <= 1e-4 * max(1.0, np.abs(want).max())


# ---------------------------------------------------------------- tests


@pytest.mark.parametrize("name", FILES)
def test_fixture_lists_every_shallow_network(name: str) -> None:
    refs = find_networks(fixture(name))
    assert sorted(r.path for r in refs) == sorted(shallow_cases())
    assert {r.class_name for r in refs} == {"network"}


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("name", FILES)
def test_fixture_matches_matlab_formulas(name: str, case: str) -> None:
    net = fixture(name)[case]
    model = load_case(name, case)
    assert model.matport.layout == "NC" and model.matport.variable == case
    check(model, net, discontinuous=case in DISCONTINUOUS)


def test_processing_is_part_of_the_model() -> None:
    """The fitnet's constant input row is ignored and its constant target row comes back."""
    net = fixture("shallow_v7.mat")["fitnet"]
    model = matport.load(FIXTURES / "shallow_v7.mat", variable="fitnet")
    x = torch.tensor(sample_inputs(net)[0])
    y = model(x)
    assert y.shape == (7, 4)
    assert torch.all(y[:, 1] == -1.5)
    x2 = x.clone()
    x2[:, 2] = 1e6
    assert torch.equal(model(x2), y)


def test_multiple_inputs_and_outputs_keep_matlab_order() -> None:
    model = matport.load(FIXTURES / "shallow_v7.mat", variable="multi_io")
    assert model.input_names == ["Input 1", "Input 2"]
    assert model.output_names == ["Hidden", "Output"]
    out = model(torch.zeros(2, 5), torch.zeros(2, 4))
    assert [o.shape for o in out] == [(2, 6), (2, 3)]


def test_real_fitnet_converts_and_matches_the_formulas() -> None:
    path = corpus_file(CORPUS_NET)
    net = matport.read(path)["net"]
    model = matport.load(path)
    assert model.matport.input_size == (43,)
    assert sum(p.numel() for p in model.parameters()) == net.props["numWeightElements"].item()
    check(model, net)
    # its removeconstantrows settings drop inputs 10, 20, 31, 32 and 33
    x = torch.zeros(1, 43, dtype=torch.float64)
    y = model(x)
    x[0, [9, 19, 30, 31, 32]] = 7.0
    assert torch.equal(model(x), y)


@pytest.mark.parametrize("name", FILES)
def test_delays_are_refused(name: str) -> None:
    with pytest.raises(ConversionError) as err:
        load_case(name, "delays")
    msg = str(err.value)
    assert name in msg and ":delays" in msg
    assert "tapped delays (LW{1,1} [1, 2], LW{2,1} [1, 2], LW{2,2} [1, 2])" in msg
    assert "narxnet" in msg


def test_unknown_functions_are_listed() -> None:
    with pytest.raises(ConversionError) as err:
        matport.load(FIXTURES / "shallow_v7.mat", variable="unsupported")
    msg = str(err.value)
    assert "transfer function 'netinv'" in msg and "processing function 'lvqoutputs'" in msg


def test_malformed_weight_names_file_variable_and_weight(tmp_path: Any) -> None:
    net = shallow_cases()["fitnet"]
    net.props["IW"][0, 0] = net.props["IW"][0, 0][:, :2]
    path = tmp_path / "bad.mat"
    write(path, {"mynet": net})
    with pytest.raises(NetworkError) as err:
        read_network(path)
    msg = str(err.value)
    assert str(path) in msg and "mynet" in msg and "IW{1,1} is 10x2, expected a 10x5" in msg


@pytest.mark.parametrize("name", FILES)
def test_inspect_shows_shallow_networks(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["inspect", str(FIXTURES / name), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    jsonschema.validate(doc, INSPECT_SCHEMA)
    assert not doc["errors"]
    nets = {n["path"]: n for n in doc["networks"]}
    cascade = nets["cascadeforwardnet"]
    assert cascade["kind"] == "network"
    assert [lay["params"].get("TransferFcn") for lay in cascade["layers"]] == [
        None, "logsig", "tansig", "purelin"]
    assert cascade["layers"][3]["learnables"] == {
        "IW{3,1}": [2, 4], "LW{3,1}": [2, 7], "LW{3,2}": [2, 5], "b": [2, 1]}
    assert cascade["num_parameters"] == 7 * 4 + 7 + 5 * 4 + 5 * 7 + 5 + 2 * 4 + 2 * 7 + 2 * 5 + 2
    assert main(["inspect", str(FIXTURES / name)]) == 0
    text = capsys.readouterr().out
    assert "Network patternnet: network, 3 layers" in text
    assert "TransferFcn=softmax" in text and "No network" not in text


def test_inspect_shows_the_real_shallow_network(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["inspect", str(corpus_file(CORPUS_NET))]) == 0
    text = capsys.readouterr().out
    assert "Network net: network, 4 layers, 29,150 learnable parameters" in text
    assert "OutputSize=150 TransferFcn=purelin" in text


def test_checkpoint_rebuilds_the_module(tmp_path: Any) -> None:
    from matport.checkpoint import load_checkpoint, save

    model = load_case("shallow_v7.mat", "multi_io")
    save(model, tmp_path / "m.pt")
    again = load_checkpoint(tmp_path / "m.pt")
    xs = [torch.tensor(x) for x in sample_inputs(fixture("shallow_v7.mat")["multi_io"])]
    for a, b in zip(model(*xs), again(*xs), strict=True):
        assert torch.equal(a, b)
    assert again.matport.architecture["family"] == "shallow"


def test_processing_that_does_not_fit_is_refused(tmp_path: Any) -> None:
    net = shallow_cases()["fitnet"]
    net.props["inputs"][0, 0]["size"] = np.array([[7.0]])
    net.props["outputs"][0, 1]["processSettings"][0, 1]["yrows"] = np.array([[4.0]])
    write(tmp_path / "bad.mat", {"net": net})
    with pytest.raises(ConversionError) as err:
        matport.load(tmp_path / "bad.mat")
    msg = str(err.value)
    assert "inputs{1}: removeconstantrows was set up for 6 rows, it gets 7" in msg
    assert "outputs{2}: its processing gives 4 rows, the layer has 3" in msg


def test_fx_and_export_keep_the_result() -> None:
    model = load_case("shallow_v7.mat", "multi_io")
    xs = [torch.tensor(x) for x in sample_inputs(fixture("shallow_v7.mat")["multi_io"])]
    traced = torch.fx.symbolic_trace(model)
    for a, b in zip(traced(*xs), model(*xs), strict=True):
        assert torch.equal(a, b)
    fitnet = load_case("shallow_v7.mat", "fitnet")
    batch = torch.export.Dim("batch")
    exported = torch.export.export(fitnet, (torch.zeros(4, 6, dtype=torch.float64),),
                                   dynamic_shapes=({0: batch},)).module()
    x = torch.tensor(sample_inputs(fixture("shallow_v7.mat")["fitnet"])[0])
    assert torch.allclose(exported(x), fitnet(x), rtol=1e-12, atol=0)
