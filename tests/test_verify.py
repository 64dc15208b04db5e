"""matport verify: converted models against MATLAB's ONNX exports (real pairs from the corpus and
MATLAB-style exports built by matport.synth.onnx_export from MATLAB-layout arrays)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import jsonschema
import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper

from matport.cli import verify_cmd
from matport.convert.api import load
from matport.errors import VerificationError
from matport.network.model import Connection, Layer, Network, Normalization
from matport.synth import onnx_export as matlab_onnx_export
from matport.synth.layer_cases import CASES
from matport.verify import REPORT_SCHEMA, VerifyReport, onnx_run, onnx_weights, verify
from matport.verify.export import export_onnx
from tests.support.paths import corpus_file

torch.set_num_threads(1)

CCN = ("ccnmaastricht__Object_recognition/net.mat", "ccnmaastricht__Object_recognition/net.onnx")
JAUME = (
    "JaumeSanCol__Computer_Vision-RAG_for_recycling/CV__ModeloReciclarIA_Entrenado.mat",
    "JaumeSanCol__Computer_Vision-RAG_for_recycling/CV__cv_reciclaria.onnx",
)
NISITKA = ("Nisitka__AllMatLab/newNet.mat", "Nisitka__AllMatLab/net.onnx")
FACEGATE = "flatline-84__facegate/support_programs__NN_V03_01.onnx"
_P = "nnet.cnn.layer."


def validate(report: VerifyReport) -> dict:
    data = json.loads(report.to_json())
    jsonschema.validate(data, REPORT_SCHEMA)
    return data


def cli(*argv: str) -> int:
    parser = argparse.ArgumentParser()
    verify_cmd.add_arguments(parser)
    return verify_cmd.run(parser.parse_args(list(argv)))


def with_changed_weight(model: onnx.ModelProto, name: str, index: tuple, delta: float):
    changed = onnx.ModelProto()
    changed.CopyFrom(model)
    for t in changed.graph.initializer:
        if t.name == name:
            a = numpy_helper.to_array(t).copy()
            a[index] += delta
            t.CopyFrom(numpy_helper.from_array(a, name))
            return changed
    raise KeyError(name)


# --- a small DAG network in MATLAB layout ---------------------------------------------------


def small_network(seed: int = 0) -> Network:
    """input 9x9x3 (mean image) -> conv 3x3 'same' stride 2 -> bn -> relu -+-> add -> relu ->
    maxpool -> gap -> fc(4) -> softmax -> output, with a 1x1 conv shortcut into the addition."""
    rng = np.random.default_rng(seed)

    def f(*shape: int, scale: float = 1.0) -> np.ndarray:
        return np.asfortranarray((rng.standard_normal(shape) * scale).astype(np.float32))

    def conv(name: str, k: int, cin: int, cout: int, stride: int, same: bool) -> Layer:
        return Layer(name, _P + "Convolution2DLayer",
                     {"FilterSize": (k, k), "Stride": (stride, stride), "DilationFactor": (1, 1),
                      "PaddingMode": "same" if same else "manual", "PaddingSize": (0, 0, 0, 0),
                      "NumChannels": cin, "NumFilters": cout},
                     learnables={"Weights": f(k, k, cin, cout, scale=0.02),
                                 "Bias": f(1, 1, cout, scale=0.1)})

    def bn(name: str, c: int) -> Layer:
        return Layer(name, _P + "BatchNormalizationLayer", {"Epsilon": 1e-3, "NumChannels": c},
                     learnables={"Scale": f(1, 1, c, scale=0.3) + 1, "Offset": f(1, 1, c)},
                     state={"TrainedMean": f(1, 1, c),
                            "TrainedVariance": np.abs(f(1, 1, c)) + 0.5})

    mean = rng.uniform(50, 200, (9, 9, 3)).astype(np.float32)
    layers = [
        Layer("in", _P + "ImageInputLayer", {"InputSize": (9, 9, 3)},
              normalization=Normalization("zerocenter", mean=mean)),
        conv("conv_a", 3, 3, 6, 2, True), bn("bn_a", 6), Layer("relu_a", _P + "ReLULayer"),
        conv("conv_b", 1, 3, 6, 2, False),
        Layer("add", _P + "AdditionLayer", {"NumInputs": 2}), Layer("relu", _P + "ReLULayer"),
        Layer("pool", _P + "MaxPooling2DLayer", {"PoolSize": (2, 2), "Stride": (1, 1),
                                                 "PaddingMode": "manual",
                                                 "PaddingSize": (0, 1, 0, 1)}),
        Layer("gap", _P + "GlobalAveragePooling2DLayer"),
        Layer("fc", _P + "FullyConnectedLayer", {"InputSize": 6, "OutputSize": 4},
              learnables={"Weights": f(4, 6), "Bias": f(4, 1)}),
        Layer("sm", _P + "SoftmaxLayer"), Layer("out", _P + "ClassificationOutputLayer"),
    ]
    chain = ["in", "conv_a", "bn_a", "relu_a"]
    cons = [Connection(a, b) for a, b in zip(chain, chain[1:], strict=False)]
    cons += [Connection("in", "conv_b"), Connection("relu_a", "add", dest_port="in1"),
             Connection("conv_b", "add", dest_port="in2")]
    tail = ["add", "relu", "pool", "gap", "fc", "sm", "out"]
    cons += [Connection(a, b) for a, b in zip(tail, tail[1:], strict=False)]
    return Network("DAGNetwork", layers, cons, class_names=list("abcd"),
                   output_names=["out"], source="", path="net")


class SmallModel(torch.nn.Module):
    """`small_network` written by hand in PyTorch, returning logits (no softmax)."""

    def __init__(self, net: Network) -> None:
        from matport.convert.info import ModelInfo

        super().__init__()

        def t(a: np.ndarray) -> torch.Tensor:
            return torch.from_numpy(np.ascontiguousarray(a, np.float32))

        def conv(name: str, padding: int) -> torch.nn.Conv2d:
            w = net.layer(name).learnables["Weights"]
            m = torch.nn.Conv2d(w.shape[2], w.shape[3], w.shape[0], stride=2, padding=padding)
            m.weight.data = t(w.transpose(3, 2, 0, 1))
            m.bias.data = t(net.layer(name).learnables["Bias"].reshape(-1))
            return m

        self.conv_a = conv("conv_a", 1)  # 'same' on 9x9 at stride 2: 1 pixel each side
        self.conv_b = conv("conv_b", 0)
        b = net.layer("bn_a")
        self.bn_a = torch.nn.BatchNorm2d(6, eps=1e-3).eval()
        self.bn_a.weight.data = t(b.learnables["Scale"].reshape(-1))
        self.bn_a.bias.data = t(b.learnables["Offset"].reshape(-1))
        self.bn_a.running_mean = t(b.state["TrainedMean"].reshape(-1))
        self.bn_a.running_var = t(b.state["TrainedVariance"].reshape(-1))
        self.relu_a = torch.nn.ReLU()
        self.relu = torch.nn.ReLU()
        self.pool = torch.nn.Sequential(torch.nn.ZeroPad2d((0, 1, 0, 1)),
                                        torch.nn.MaxPool2d(2, stride=1))
        self.fc = torch.nn.Linear(6, 4)
        self.fc.weight.data = t(net.layer("fc").learnables["Weights"])
        self.fc.bias.data = t(net.layer("fc").learnables["Bias"].reshape(-1))
        names = ["conv_a", "bn_a", "relu_a", "conv_b", "relu", "pool", "fc"]
        self.matport = ModelInfo(
            class_names=net.class_names, input_size=(9, 9, 3), layout="NCHW",
            normalization=net.layer("in").normalization,
            layer_map={n: n for n in names}, postprocess="softmax",  # it returns logits
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.relu(self.relu_a(self.bn_a(self.conv_a(x))) + self.conv_b(x))
        return self.fc(self.pool(y).mean(dim=(2, 3)))


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> tuple[Network, Path]:
    net = small_network()
    path = tmp_path_factory.mktemp("small") / "small.onnx"
    matlab_onnx_export.export(net, path)
    return net, path


# --- onnx_run on real exports ---------------------------------------------------------------


def test_corpus_exports_are_recognised_and_run() -> None:
    ccn = onnx_run.load_export(corpus_file(CCN[1]))
    assert (ccn.release, ccn.opset, ccn.batch_fixed, ccn.input_name) == ("R2019a", 8, True,
                                                                      "imageinput")
    assert ccn.ends_in_softmax and "conv_1_W" in ccn.initializers
    jaume = onnx_run.load_export(corpus_file(JAUME[1]))
    assert (jaume.release, jaume.opset, jaume.batch_fixed) == ("R2024b", 14, False)
    x = np.random.default_rng(0).uniform(0, 255, (3, 3, 224, 224)).astype(np.float32)
    probs = onnx_run.run(jaume, x)["softmax"]
    assert probs.shape == (3, 9) and np.allclose(probs.sum(1), 1, atol=1e-5)
    # ONNX names follow MATLAB layers; R2024b's 'same'-padding helpers belong to their conv
    names = ["imageinput", "conv_1", "batchnorm_1", "fc", "softmax"]
    assert onnx_run.layer_tensors(jaume, names) == {
        "imageinput": "imageinput_Sub", "conv_1": "conv_1", "batchnorm_1": "batchnorm_1",
        "fc": "fc", "softmax": "softmax",
    }


def test_opset6_export_is_upgraded_and_runs() -> None:
    export = onnx_run.load_export(corpus_file(FACEGATE))
    assert export.opset == 6 and export.release == "R2018a" and export.notes
    x = np.random.default_rng(1).uniform(0, 255, (2, 1, 350, 350)).astype(np.float32)
    out = onnx_run.run(export, x, ["conv_1"])
    assert out["softmax"].shape[0] == 2 and np.allclose(out["softmax"].sum(1), 1, atol=1e-5)
    assert out["conv_1"].shape == (2, 8, 350, 350)


def test_owners_is_the_longest_legalized_layer_prefix() -> None:
    layers = ["conv", "conv_1", "conv_1_relu", "res2a", "res2a-branch1", "a.b", "a_b", ""]

    def brute(onnx_name: str) -> str | None:  # the rule, spelled out
        legal = {n: "".join(c if c.isalnum() or c == "_" else "_" for c in n) for n in layers}
        hits = [n for n in layers
                if onnx_name == legal[n] or onnx_name.startswith(legal[n] + "_")]
        return max(hits, key=len, default=None)  # the first of the longest

    names = ["conv", "conv_W", "conv_1", "conv_1_B", "conv_1_relu", "conv_1_relu_out", "conv2",
             "res2a_branch1_W", "res2a_branch2", "a_b", "a_b_W", "_x", "x", "conv__1", ""]
    owner_of = onnx_run.owners(layers)
    assert [owner_of(n) for n in names] == [brute(n) for n in names]
    assert [onnx_run.owner(n, layers) for n in names] == [brute(n) for n in names]
    assert owner_of("res2a_branch1_W") == "res2a-branch1" and owner_of("a_b_W") == "a.b"


def test_weights_stay_in_the_file_bytes(small, monkeypatch: pytest.MonkeyPatch) -> None:
    """An IR-3 export (every initializer listed as an input, as MATLAB writes them) is parsed
    without its weights: each initializer of at least MIN_KEPT bytes (here 64: the small
    network's largest are 972 and 648) is a view of the file's bytes, which onnxruntime takes
    as they are, and computes what the whole model run in onnxruntime computes; the smaller
    ones are in the model; one session per set of outputs; a loaded export verifies."""
    net, path = small
    monkeypatch.setattr(onnx_weights, "MIN_KEPT", 64)
    data = path.read_bytes()
    export = onnx_run.load_export(path, data)
    full = onnx.load(path)
    assert full.ir_version == 3 and export.model.ir_version >= 4
    kept = onnx_weights.in_memory(export.model)
    assert sorted(kept) == ["conv_a_W", "conv_b_W", "fc_W", "in_Mean"]
    file_bytes = np.frombuffer(data, np.uint8)
    for t in full.graph.initializer:
        value = export.initializers[t.name]
        np.testing.assert_array_equal(value, numpy_helper.to_array(t))
        assert np.shares_memory(value, file_bytes) == (t.name in kept)
    in_model = {t.name: t for t in export.model.graph.initializer}
    assert not any(in_model[k].raw_data for k in kept)
    assert all(len(in_model[t.name].raw_data) == len(t.raw_data) < 64
               for t in full.graph.initializer if t.name not in kept)
    x = np.random.default_rng(2).uniform(0, 255, (2, *export.sample_shape)).astype(np.float32)
    tensors = ["conv_a", "fc"]
    kept_out = onnx_run.run(export, x, tensors)
    assert len(export.sessions) == 1 and onnx_run.session_for(export, tensors) is next(
        iter(export.sessions.values()))
    full.graph.output.extend(onnx.helper.make_tensor_value_info(t, onnx.TensorProto.FLOAT, None)
                             for t in tensors)
    import onnxruntime as ort

    whole = ort.InferenceSession(full.SerializeToString(), providers=["CPUExecutionProvider"])
    names = [export.output_name, *tensors]
    for i in range(len(x)):
        for name, value in zip(names, whole.run(names, {export.input_name: x[i : i + 1]}),
                               strict=True):
            np.testing.assert_allclose(kept_out[name][i : i + 1], value, rtol=1e-5, atol=1e-6)
    upgraded = onnx_run.load_export(corpus_file(FACEGATE))  # opset 6: onnx reads its weights
    assert upgraded.initializers and not onnx_weights.in_memory(upgraded.model)
    report = verify(SmallModel(net), export, network=net, num_random=3)
    assert report.passed and report.onnx_path == str(path)
    assert report.to_dict() == verify(SmallModel(net), path, network=net,
                                      num_random=3).to_dict()


def test_split_weights_leaves_odd_bytes_to_onnx(small, tmp_path: Path) -> None:
    """Bytes the walk cannot follow go to onnx's parser whole: a cut file is refused as it
    was, and an initializer stored as float_data is read by onnx."""
    net, path = small
    data = path.read_bytes()
    assert onnx_weights.split_weights(data[:-7]) is None
    cut = tmp_path / "cut.onnx"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(VerificationError, match="cannot read as an ONNX file"):
        onnx_run.load_export(cut)
    model = onnx.load(path)
    first = model.graph.initializer[0]
    values = numpy_helper.to_array(first)
    first.ClearField("raw_data")
    first.float_data.extend(values.reshape(-1).tolist())
    odd = tmp_path / "float_data.onnx"
    onnx.save(model, odd)
    export = onnx_run.load_export(odd)
    assert first.name not in onnx_weights.in_memory(export.model)
    np.testing.assert_array_equal(export.initializers[first.name], values)
    assert verify(SmallModel(net), export, network=net, num_random=2).passed


@pytest.mark.parametrize("kept", [True, False], ids=["left in the bytes", "read by onnx"])
def test_initializer_whose_dims_do_not_fit_is_refused_naming_the_file(
        small, tmp_path: Path, kept: bool) -> None:
    """An initializer with dims numpy cannot shape (two -1s whose product is its size) gives a
    VerificationError, whether its data (2 KiB) stays a view of the file's bytes or onnx reads
    it (float_data)."""
    _, path = small
    model = onnx.load(path)
    values = np.arange(512, dtype=np.float32)
    bad_dims = [-1, -512]
    extra = (onnx.helper.make_tensor("extra", onnx.TensorProto.FLOAT, bad_dims,
                                     values.tobytes(), raw=True) if kept else
             onnx.helper.make_tensor("extra", onnx.TensorProto.FLOAT, bad_dims, values.tolist()))
    model.graph.initializer.append(extra)
    bad = tmp_path / "bad_dims.onnx"
    onnx.save(model, bad)
    assert (onnx_weights.split_weights(bad.read_bytes()) is not None) and (
        len(extra.raw_data) >= onnx_weights.MIN_KEPT) == kept
    with pytest.raises(VerificationError, match=r"bad_dims\.onnx: an initializer cannot be read"):
        onnx_run.load_export(bad)


def test_custom_operators_are_refused_with_the_reason() -> None:
    with pytest.raises(VerificationError, match=r"com\.mathworks:MaxUnpool.*decoder3_unpool"):
        onnx_run.load_export(corpus_file(NISITKA[1]))


def test_nisitka_gives_exit_status_2(capsys: pytest.CaptureFixture[str]) -> None:
    mat, onx = corpus_file(NISITKA[0]), corpus_file(NISITKA[1])
    assert cli(str(mat), str(onx), "--json") == 2
    data = json.loads(capsys.readouterr().out)
    jsonschema.validate(data, REPORT_SCHEMA)
    assert data["status"] == "error" and "com.mathworks:MaxUnpool" in data["reason"]


def test_the_matport_command_runs_verify() -> None:
    from matport import cli as matport_cli

    mat, onx = corpus_file(NISITKA[0]), corpus_file(NISITKA[1])
    assert matport_cli.main(["verify", str(mat), str(onx)]) == 2


# --- real pairs -----------------------------------------------------------------------------


@pytest.mark.parametrize("pair, arrays", [(CCN, 23), (JAUME, 21)])
def test_corpus_pairs_verify(pair: tuple[str, str], arrays: int) -> None:
    report = verify(corpus_file(pair[0]), corpus_file(pair[1]), num_random=4)
    data = validate(report)
    assert report.passed and data["status"] == "verified", report.summary()
    assert report.weights is not None
    assert (report.weights.checked, report.weights.identical) == (arrays, arrays)
    assert report.outputs is not None and report.outputs.logits is not None
    assert report.outputs.logits.max_rel_error < 1e-4 and report.outputs.top1_agreement == 1.0


def test_cli_exit_statuses_on_a_real_pair(tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    mat, onx = corpus_file(CCN[0]), corpus_file(CCN[1])
    assert cli(str(mat), str(onx), "--num-random", "2") == 0
    assert "VERIFIED" in capsys.readouterr().out
    bad = tmp_path / "bad.onnx"
    onnx.save(with_changed_weight(onnx.load(str(onx)), "conv_2_W", (0, 0, 0, 0), 0.25), bad)
    assert cli(str(mat), str(bad), "--num-random", "2", "--json") == 1
    data = json.loads(capsys.readouterr().out)
    jsonschema.validate(data, REPORT_SCHEMA)
    # the certificate names the model's own tensor and the initializer it should equal
    assert [(e["layer"], e["onnx_initializer"]) for e in data["weights"]["differing"]] == [
        ("conv_2", "conv_2_W")]
    assert data["divergence"]["layer"] == "conv_2"
    assert cli(str(mat), str(tmp_path / "missing.onnx")) == 2
    assert "cannot read" in capsys.readouterr().err
    # the other direction: write the conversion with torch.onnx and check that file
    out = tmp_path / "deploy.onnx"
    assert cli(str(mat), "--export-onnx", str(out), "--json") == 0
    data = json.loads(capsys.readouterr().out)
    assert data["onnx"]["producer"] == "pytorch" and data["onnx"]["input_contract"] == "raw"
    assert cli(str(mat)) == 2


def test_checks_that_cannot_run_give_exit_status_2(capsys: pytest.CaptureFixture[str]) -> None:
    ccn_onnx = str(corpus_file(CCN[1]))
    # another network's export: its input does not fit
    assert cli(str(corpus_file(JAUME[0])), ccn_onnx) == 2
    assert "declared [1, 3, 150, 150]" in capsys.readouterr().err
    # a network that does not convert (FunctionLayers): the conversion error is the reason
    functions = corpus_file("pac48__latent-control-idea/TFNet__TFNetPretrained.mat")
    assert cli(str(functions), ccn_onnx, "--json") == 2
    data = json.loads(capsys.readouterr().out)
    assert data["status"] == "error" and "FunctionLayer" in data["reason"]


# --- a small network, a hand-written model ---------------------------------------------------


def test_matlab_style_export_matches_an_independent_numpy_forward(small) -> None:
    net, path = small
    model = onnx.load(str(path))
    onnx.checker.check_model(model)
    assert model.opset_import[0].version == 8 and model.ir_version == 3
    assert [n.op_type for n in model.graph.node][:2] == ["Sub", "Conv"]
    assert "Sum" in {n.op_type for n in model.graph.node}
    x = np.random.default_rng(3).uniform(0, 255, (1, 3, 9, 9)).astype(np.float32)
    probs = onnx_run.run(onnx_run.load_export(path), x)["sm"]
    with torch.no_grad():
        logits = SmallModel(net)(torch.from_numpy(x) - torch.from_numpy(
            net.layer("in").normalization.mean.transpose(2, 0, 1)[None].copy()))
    np.testing.assert_allclose(probs, torch.softmax(logits, 1).numpy(), rtol=1e-5, atol=1e-7)


def test_hand_written_model_verifies_with_softmax_applied(small) -> None:
    net, path = small
    report = verify(SmallModel(net), path, network=net, num_random=3)
    validate(report)
    assert report.passed, report.summary()
    assert report.outputs is not None and report.outputs.softmax_applied_to_torch
    assert report.outputs.logits is not None and report.outputs.logits.holds
    assert report.weights is not None and report.weights.checked == 11
    assert report.weights.identical == 11 and report.divergence is None


def test_a_wrong_model_is_caught_at_the_layer_that_parts(small) -> None:
    net, path = small
    model = SmallModel(net)
    model.bn_a.eps = 1e-5  # MATLAB's layer says 1e-3
    report = verify(model, path, network=net, num_random=3)
    validate(report)
    assert not report.passed and report.weights is not None and not report.weights.differing
    assert report.divergence is not None
    assert report.divergence.layer == "bn_a"
    assert report.divergence.last_agreeing_layer == "conv_a"
    assert "bn_a" in (report.reason or "")


def test_instrumented_session_only_when_outputs_differ_or_asked(small, monkeypatch) -> None:
    net, path = small
    sessions: list[bool] = []
    real = onnx_run._session

    def recording(export, tensors, instrumented):
        sessions.append(instrumented)
        return real(export, tensors, instrumented)

    monkeypatch.setattr(onnx_run, "_session", recording)
    report = verify(SmallModel(net), path, network=net, num_random=3)
    assert report.passed and report.layers is None and sessions == [False]
    sessions.clear()
    report = verify(SmallModel(net), path, network=net, num_random=3, per_layer=True)
    validate(report)
    assert report.passed and sessions == [False, True] and report.layers is not None
    compared = [e.layer for e in report.layers.compared]
    assert compared == ["in", "conv_a", "bn_a", "relu_a", "conv_b", "relu", "pool", "fc"]
    assert all(e.holds for e in report.layers.compared)
    sessions.clear()
    model = SmallModel(net)
    model.bn_a.eps = 1e-5
    report = verify(model, path, network=net, num_random=3)
    assert not report.passed and sessions == [False, True] and report.layers is not None
    assert [e.layer for e in report.layers.compared if not e.holds][0] == "bn_a"


class ProbabilitiesModel(SmallModel):
    """`SmallModel` returning MATLAB's probabilities (its softmax inside the model)."""

    def __init__(self, net: Network) -> None:
        super().__init__(net)
        self.matport.postprocess = None  # nothing left to apply after the model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(super().forward(x), dim=1)


def test_logits_and_probabilities_are_both_compared(small) -> None:
    net, path = small
    report = verify(SmallModel(net), path, network=net, num_random=3)
    assert report.passed and report.outputs is not None
    assert report.outputs.model_output == "logits" and report.outputs.logits is not None
    assert report.inputs is not None and report.inputs["distribution"].startswith("uniform 0-255")
    report = verify(ProbabilitiesModel(net), path, network=net, num_random=3)
    validate(report)
    assert report.passed and report.outputs is not None, report.summary()
    assert report.outputs.model_output == "probabilities"
    assert not report.outputs.softmax_applied_to_torch
    assert report.outputs.logits is not None and report.outputs.logits.holds
    # the same shift of every logit leaves the probabilities exactly as they were: only the
    # logits can tell, whichever of the two the model returns
    for cls in (SmallModel, ProbabilitiesModel):
        model = cls(net)
        model.fc.bias.data = model.fc.bias.data + 3.0  # not in place: it shares `net`'s array
        report = verify(model, path, network=net, num_random=3)
        assert report.outputs is not None and report.outputs.probabilities.holds
        assert report.outputs.logits is not None and not report.outputs.logits.holds
        assert not report.passed and "outputs differ" in (report.reason or "")


def test_certificate_checks_the_models_own_tensors(small) -> None:
    net, path = small
    model = SmallModel(net)
    changed = model.conv_b.weight.data.clone()  # a copy: the model's arrays may share `net`'s
    changed[0, 0, 0, 0] += 1e-3  # the model, not the MATLAB network
    model.conv_b.weight.data = changed
    report = verify(model, path, network=net, num_random=2)
    validate(report)
    assert report.weights is not None and report.weights.checked == 11
    assert [(e.layer, e.tensor, e.onnx_initializer) for e in report.weights.differing] == [
        ("conv_b", "conv_b.weight", "conv_b_W")]
    assert report.weights.differing[0].max_abs_diff == pytest.approx(1e-3, rel=1e-3)
    assert not report.passed
    # the normalization the model's preprocess applies is certified too
    model = SmallModel(net)
    model.matport.normalization = Normalization(
        "zerocenter", mean=net.layer("in").normalization.mean + 1)
    report = verify(model, path, network=net, num_random=2)
    assert report.weights is not None
    assert [e.tensor for e in report.weights.differing] == ["matport.normalization.mean"]


@pytest.mark.parametrize("norm, low, high, described", [
    (Normalization("rescale-zero-one", min=np.full((1, 1, 3), -2.0), max=np.full((1, 1, 3), 3.0)),
     -2.0, 3.0, "Min and Max"),
    (Normalization("rescale-symmetric", min=np.float32(0.0), max=np.float32(1.0)), 0.0, 1.0,
     "Min and Max"),
    (Normalization("zerocenter", mean=np.full((4, 5, 3), 0.45)), 0.0, 1.0, "uniform 0-1"),
    (Normalization("zerocenter", mean=np.full((1, 1, 3), 120.0)), 0.0, 255.0, "0-255 pixels"),
    (Normalization("none"), 0.0, 1.0, "uniform 0-1"),
])
def test_random_inputs_follow_the_input_layer_statistics(norm, low, high, described) -> None:
    from matport.convert.info import ModelInfo
    from matport.verify.inputs import random_raw

    info = ModelInfo(class_names=None, input_size=(4, 5, 3), layout="NCHW", normalization=norm)
    x, how = random_raw(info, 64, np.random.default_rng(0), None)
    assert x.shape == (64, 3, 4, 5) and described in how
    assert low <= x.min() < low + 0.05 * (high - low)
    assert high - 0.05 * (high - low) < x.max() <= high


def test_zscore_inputs_have_the_layer_mean_and_deviation() -> None:
    from matport.convert.info import ModelInfo
    from matport.verify.inputs import random_raw

    mean, std = np.array([10.0, -3.0], np.float32), np.array([2.0, 0.5], np.float32)
    info = ModelInfo(class_names=None, input_size=(2,), layout="NC",
                     normalization=Normalization("zscore", mean=mean, std=std))
    x, how = random_raw(info, 20000, np.random.default_rng(1), None)
    assert "Mean and StandardDeviation" in how
    np.testing.assert_allclose(x.mean(0), mean, atol=0.05)
    np.testing.assert_allclose(x.std(0), std, rtol=0.03)


def test_given_inputs_and_a_folder_of_images(small, tmp_path: Path) -> None:
    from PIL import Image

    net, path = small
    rng = np.random.default_rng(7)
    for i, size in enumerate([(9, 9), (20, 13)]):
        pixels = rng.integers(0, 256, (*size, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(tmp_path / f"img{i}.png")
    (tmp_path / "notes.txt").write_text("not an image")
    given = rng.integers(0, 256, (3, 9, 9, 3), dtype=np.uint8)  # NHWC, as image libraries give
    report = verify(SmallModel(net), path, network=net, inputs=given, images_dir=tmp_path)
    data = validate(report)
    assert report.passed, report.summary()
    assert (data["inputs"]["random"], data["inputs"]["given"], data["inputs"]["images"]) == (
        0, 3, 2)


def test_export_onnx_round_trip(small, tmp_path: Path) -> None:
    net, _ = small
    model = SmallModel(net)
    for raw in (True, False):
        path = export_onnx(model, tmp_path / f"m{raw}.onnx", include_preprocessing=raw)
        export = onnx_run.load_export(path)
        assert export.producer == "pytorch" and not export.batch_fixed
        assert export.input_contract == ("raw" if raw else "preprocessed")
        report = verify(model, path, network=net, num_random=4)
        validate(report)
        assert report.passed and report.weights is None, report.summary()


def test_inputs_that_do_not_fit_the_export_cannot_be_checked(small, tmp_path: Path) -> None:
    net, _ = small
    other = small_network(seed=5)
    other.layers[0].params["InputSize"] = (11, 11, 3)
    other.layers[0].normalization = Normalization("none")
    path = matlab_onnx_export.export(other, tmp_path / "other.onnx")
    with pytest.raises(VerificationError, match=r"declared \[1, 3, 11, 11\]"):
        verify(SmallModel(net), path, network=net)


def test_error_report_validates() -> None:
    report = VerifyReport.error("no such file", "x.onnx", "x.mat")
    data = validate(report)
    assert data["status"] == "error" and data["outputs"] is None
    assert report.summary() == "COULD NOT VERIFY: x.mat against x.onnx\n  reason: no such file"
    jsonschema.Draft202012Validator.check_schema(REPORT_SCHEMA)


# --- feature and sequence networks (matport's graph conversion) ----------------------------


def _chain(layers: list[Layer], classes: list[str] | None = None) -> Network:
    cons = [Connection(a.name, b.name) for a, b in zip(layers, layers[1:], strict=False)]
    return Network("SeriesNetwork", layers, cons, class_names=classes,
                   output_names=[layers[-1].name], path="net")


def _arrays(seed: int):
    rng = np.random.default_rng(seed)
    return lambda *shape, scale=1.0: np.asfortranarray(
        (rng.standard_normal(shape) * scale).astype(np.float32))


def lstm_network(hidden: int = 5) -> Network:
    f = _arrays(11)
    return _chain([
        Layer("seq", _P + "SequenceInputLayer", {"InputSize": (3,)},
              normalization=Normalization("zerocenter", mean=f(3, 1))),
        Layer("lstm", _P + "LSTMLayer", {"NumHiddenUnits": hidden, "OutputMode": "last"},
              learnables={"InputWeights": f(4 * hidden, 3, scale=0.5),
                          "RecurrentWeights": f(4 * hidden, hidden, scale=0.5),
                          "Bias": f(4 * hidden, 1)},
              state={"HiddenState": f(hidden, 1, scale=0.3),
                     "CellState": f(hidden, 1, scale=0.3)}),
        Layer("fc", _P + "FullyConnectedLayer", {"OutputSize": 4},
              learnables={"Weights": f(4, hidden), "Bias": f(4, 1)}),
        Layer("sm", _P + "SoftmaxLayer"), Layer("out", _P + "ClassificationOutputLayer"),
    ], classes=list("abcd"))


def feature_network() -> Network:
    f = _arrays(12)
    return _chain([
        Layer("feat", _P + "FeatureInputLayer", {"InputSize": (6,)},
              normalization=Normalization("zerocenter", mean=f(6, 1))),
        Layer("fc1", _P + "FullyConnectedLayer", {"OutputSize": 8},
              learnables={"Weights": f(8, 6), "Bias": f(8, 1)}),
        Layer("tanh", _P + "TanhLayer"),
        Layer("drop", _P + "DropoutLayer", {"Probability": 0.3}),
        Layer("sigmoid", _P + "SigmoidLayer"),
        Layer("fc2", _P + "FullyConnectedLayer", {"OutputSize": 2},
              learnables={"Weights": f(2, 8), "Bias": f(2, 1)}),
        Layer("reg", _P + "RegressionOutputLayer"),
    ])


def test_sequence_network_with_onnx_lstm_layout(tmp_path: Path) -> None:
    net = lstm_network()
    path = matlab_onnx_export.export(net, tmp_path / "lstm.onnx", sequence_length=7)
    model = load(net)
    report = verify(model, path, network=net, num_random=3)
    data = validate(report)
    assert report.passed, report.summary()
    assert (data["onnx"]["input_shape"], data["onnx"]["batch_axis"]) == ([7, 1, 3], 1)
    # nn.LSTM's weight_ih/weight_hh/bias_ih/bias_hh match ONNX's W/R/B only with the gates in
    # MATLAB's order again and B split into [Wb, Rb]; plus initial h/c, the FC and the mean
    assert report.weights is not None and report.weights.identical == report.weights.checked == 9
    # a transplant that forgot MATLAB's single bias (bias_hh must stay zero) parts at the LSTM
    with torch.no_grad():
        model.get_submodule(model.matport.layer_map["lstm"]).rnn.bias_hh_l0.fill_(0.5)
    report = verify(model, path, network=net, num_random=3)
    assert not report.passed and report.divergence is not None
    assert (report.divergence.layer, report.divergence.last_agreeing_layer) == ("lstm", "seq")
    assert report.weights is not None
    [entry] = report.weights.differing
    assert (entry.layer, entry.max_abs_diff) == ("lstm", 0.5)
    assert entry.tensor.endswith("rnn.bias_hh_l0") and "recurrent bias" in (entry.layout or "")


@pytest.mark.parametrize("case", ["lstm_sequence", "gru_sequence", "gru_last",
                                  "gru_recurrent_bias"])
def test_recurrent_networks_match_their_matlab_style_export(case: str, tmp_path: Path) -> None:
    """GRU layers (ONNX ``GRU``, gates z, r, h) and FC layers on a sequence (``MatMul`` +
    ``Add``) in the MATLAB-style export: onnxruntime agrees with the converted model and every
    array of the export is found among its tensors."""
    net = CASES[case]()
    path = matlab_onnx_export.export(net, tmp_path / "rnn.onnx", sequence_length=6)
    ops = {n.op_type for n in onnx.load(str(path)).graph.node}
    assert ("GRU" if case.startswith("gru") else "LSTM") in ops
    report = verify(load(net), path, network=net, num_random=3)
    assert report.passed, report.summary()
    assert report.weights is not None and report.weights.identical == report.weights.checked


def test_export_onnx_of_a_sequence_model(tmp_path: Path) -> None:
    net = lstm_network()
    model = load(net)
    path = export_onnx(model, tmp_path / "lstm.onnx")
    export = onnx_run.load_export(path)
    assert export.input_shape == (None, None, 3)  # batch and time dynamic, batch first
    report = verify(model, path, network=net, num_random=3)
    assert report.passed and report.onnx is not None and report.onnx["batch_axis"] == 0


def test_feature_network_regression_outputs(tmp_path: Path) -> None:
    net = feature_network()
    path = matlab_onnx_export.export(net, tmp_path / "features.onnx")
    ops = [n.op_type for n in onnx.load(str(path)).graph.node]
    assert ops == ["Sub", "Gemm", "Tanh", "Dropout", "Sigmoid", "Gemm"]
    report = verify(load(net), path, network=net, num_random=5)
    data = validate(report)
    assert report.passed and data["outputs"]["compared"] == "outputs", report.summary()
    assert data["outputs"]["top1_agreement"] is None  # regression: no classes to agree on
    assert report.weights is not None and report.weights.identical == 5


# --- full-size ResNet-50 ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def resnet50(tmp_path_factory: pytest.TempPathFactory):
    from matport.convert.families.resnet50 import load_resnet50
    from matport.synth.resnet50 import finetuned

    net = finetuned()
    return net, load_resnet50(net), matlab_onnx_export.build(net)


@pytest.mark.slow
def test_resnet50_matlab_style_export_verifies(resnet50, tmp_path: Path) -> None:
    net, model, proto = resnet50
    assert sum(n.op_type == "Sum" for n in proto.graph.node) == 16
    path = tmp_path / "resnet50.onnx"
    onnx.save(proto, str(path))
    report = verify(model, path, network=net, num_random=2)
    validate(report)
    assert report.passed, report.summary()
    # 53 conv weights (their biases folded into the BatchNorm means), 53 x 4 BatchNorm
    # tensors, the FC's 2 and the mean image
    assert report.weights is not None and report.weights.checked == 268
    assert report.weights.identical == 268
    assert report.outputs is not None and report.outputs.top1_agreement == 1.0
    assert report.outputs.softmax_applied_to_torch  # torchvision's resnet50 returns logits


@pytest.mark.slow
def test_resnet50_with_one_weight_changed_fails_naming_the_layer(resnet50,
                                                                 tmp_path: Path) -> None:
    net, model, proto = resnet50
    path = tmp_path / "changed.onnx"
    onnx.save(with_changed_weight(proto, "res3b_branch2b_W", (3, 5, 1, 1), 0.5), str(path))
    report = verify(model, path, network=net, num_random=1)
    data = validate(report)
    assert data["status"] == "failed" and not report.passed
    assert report.weights is not None
    assert [(e.layer, e.tensor) for e in report.weights.differing] == [
        ("res3b_branch2b", "layer2.1.conv2.weight")]
    assert report.weights.differing[0].max_abs_diff == pytest.approx(0.5)
    d = report.divergence
    assert d is not None and d.layer is not None
    # the transplant folds the conv's bias into its BatchNorm, so the conv has no module of
    # its own: the first layer compared after it is its BatchNorm
    assert d.layer == "bn3b_branch2b" and d.last_agreeing_layer == "bn3b_branch2a"
    assert "res3b_branch2b" in d.unmapped_between
    assert "layer2.1.conv2.weight (res3b_branch2b)" in (report.reason or "")
