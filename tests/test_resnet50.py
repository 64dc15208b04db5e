"""matport.load_resnet50 against an independent reference forward pass (tests/reference_resnet50.py)
on full-size MATLAB-layout ResNet-50s with random weights (tests/resnet50_fixture.py)."""

from __future__ import annotations

import argparse
import copy
import random

import numpy as np
import pytest
import torch
import torchvision

from matport.checkpoint import load_checkpoint, save
from matport.convert.families.resnet50 import load_resnet50, matlab_resnet50
from matport.errors import ArgumentError, CheckpointError, ConversionError, NetworkError
from matport.network.designer import is_designer_params, network_from_designer_struct
from matport.network.model import Connection, Layer, Network
from matport.synth import resnet50 as fixture
from tests.support import reference_resnet50 as reference

RTOL = 1e-4
N_IMAGES = 32


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """One thread: on a shared machine, OpenMP workers waiting on a busy core cost 10-100x."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def pretrained() -> Network:
    return fixture.pretrained_like()


@pytest.fixture(scope="module")
def finetuned() -> Network:
    return fixture.finetuned()


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    """32 random RGB uint8 images, N x H x W x C as MATLAB takes them."""
    return np.random.default_rng(7).integers(0, 256, (N_IMAGES, 224, 224, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def expected(pretrained, finetuned, images) -> dict[str, np.ndarray]:
    """Reference logits (the FC layer's output) of both networks on the 32 images."""
    return {
        "pretrained": reference.forward(pretrained, images, ("fc1000",))["fc1000"],
        "finetuned": reference.forward(finetuned, images, ("fc",))["fc"],
    }


@pytest.fixture(scope="module")
def designer_file(finetuned, tmp_path_factory):
    path = tmp_path_factory.mktemp("designer") / "params.mat"
    return fixture.write_form("designer-v7", finetuned, path)


def logits(model: torch.nn.Module, images: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return model(model.matport.preprocess(images)).numpy()


def assert_matches(got: np.ndarray, want: np.ndarray) -> None:
    rel = np.abs(got - want).max() / np.abs(want).max()
    assert rel < RTOL, f"max relative difference {rel:.2e}"
    np.testing.assert_array_equal(got.argmax(1), want.argmax(1))


def assert_same_model(model: torch.nn.Module, other: torch.nn.Module) -> None:
    """Same architecture and bit-identical tensors: the same function."""
    assert model.matport.architecture == other.matport.architecture
    a, b = model.state_dict(), other.state_dict()
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


# --- numerical agreement ------------------------------------------------------------------------


@pytest.mark.slow
def test_pretrained_matches_reference(pretrained, images, expected):
    model = load_resnet50(pretrained)
    assert isinstance(model, torchvision.models.ResNet) and not model.training
    assert_matches(logits(model, images), expected["pretrained"])
    info = model.matport
    assert info.class_names == pretrained.class_names
    assert info.input_size == (224, 224, 3) and info.layout == "NCHW"
    assert info.architecture == {"family": "resnet50", "num_classes": 1000,
                                 "stride_on": "conv1", "bn_eps": 0.001, "maxpool": [1, False]}


@pytest.mark.slow
def test_finetuned_matches_reference(finetuned, images, expected):
    model = load_resnet50(finetuned)
    assert model.fc.out_features == 5
    assert model.matport.class_names == fixture.FINETUNED_CLASSES
    assert_matches(logits(model, images), expected["finetuned"])
    probs = torch.softmax(torch.from_numpy(logits(model, images[:2])), 1)
    np.testing.assert_allclose(probs.sum(1).numpy(), 1, rtol=1e-6)


@pytest.mark.slow
def test_dlnetwork_form(finetuned, images, expected):
    dl = fixture.as_dlnetwork(finetuned)
    model = load_resnet50(dl)
    assert model.matport.class_names is None
    assert_same_model(model, load_resnet50(finetuned))
    assert_matches(logits(model, images), expected["finetuned"])


@pytest.mark.slow
def test_designer_struct_form(finetuned, images, expected):
    struct = fixture.designer_struct(finetuned)
    assert is_designer_params(struct)
    net = network_from_designer_struct(struct, source="x.mat", path="trainingSetup")
    assert len(net.layers) == 177 and net.layer("fc").params["OutputSize"] == 5
    model = load_resnet50(net)
    assert model.matport.class_names is None  # a parameters struct carries no class names
    assert_same_model(model, load_resnet50(finetuned))
    assert_matches(logits(model, images), expected["finetuned"])


def test_designer_template_equals_matlab_definition(pretrained):
    """designer.py's topology and hyper-parameters equal the fixture's (written separately from
    MATLAB's resnet50Layers)."""
    net = network_from_designer_struct(fixture.designer_struct(pretrained))
    assert [lay.name for lay in net.layers] == [lay.name for lay in pretrained.layers]
    assert set(map(str, net.connections)) == set(map(str, pretrained.connections))
    for lay in pretrained.layers:
        got = net.layer(lay.name)
        assert got.class_name == lay.class_name
        assert {k: got.params.get(k) for k in lay.params} == lay.params, lay.name


def test_designer_struct_refusals(pretrained):
    struct = fixture.designer_struct(pretrained)
    missing = copy.copy(struct)
    del missing["res4c_branch2b"]
    with pytest.raises(NetworkError, match="res4c_branch2b"):
        network_from_designer_struct(missing)
    extra = copy.copy(struct)
    extra["fc_extra"] = copy.copy(struct["fc1000"])
    with pytest.raises(NetworkError, match="fc_extra"):
        network_from_designer_struct(extra)
    ambiguous = copy.copy(struct)
    ambiguous["input_1"] = type(struct)(Min=np.zeros((1, 1, 3)), Max=np.ones((1, 1, 3)))
    with pytest.raises(NetworkError, match="Min, Max"):
        network_from_designer_struct(ambiguous)


@pytest.mark.slow
@pytest.mark.parametrize("form", ["designer-v7", "dagnetwork-v7", "dagnetwork-v73", "dlnetwork-v7"])
def test_file_forms(form, finetuned, images, expected, designer_file, tmp_path):
    if form == "designer-v7":
        path = designer_file
    else:
        try:
            path = fixture.write_form(form, finetuned, tmp_path / f"{form}.mat")
        except LookupError as exc:
            pytest.skip(str(exc))
    model = load_resnet50(path)
    assert model.matport.source == str(path)
    want_names = fixture.FINETUNED_CLASSES if form.startswith("dagnetwork") else None
    assert model.matport.class_names == want_names
    assert_same_model(model, load_resnet50(finetuned))
    assert_matches(logits(model, images), expected["finetuned"])


def test_structure_is_matched_through_the_graph_not_names():
    net = fixture.pretrained_like(mean="channel")
    renamed = copy.deepcopy(net)
    names = {lay.name: f"L{i:03d}" for i, lay in enumerate(net.layers)}
    for lay in renamed.layers:
        lay.name = names[lay.name]
    renamed.connections = [Connection(names[c.source], names[c.dest], c.source_port, c.dest_port)
                           for c in renamed.connections]
    random.Random(0).shuffle(renamed.layers)
    a, b = load_resnet50(net), load_resnet50(renamed)
    assert_same_model(a, b)
    assert b.matport.layer_map["L002"] == "bn1"


def test_layer_map_and_per_layer_settings():
    """Each layer_map entry's module output equals the reference activation of that MATLAB layer;
    a torchvision-style (v1.5) stride placement and a layer's own epsilon are honoured."""
    net = fixture.pretrained_like(mean="channel")
    for lay in net.layers:
        if lay.name in ("res3a_branch2a", "res4a_branch2a", "res5a_branch2a"):
            lay.params["Stride"] = (1, 1)
        if lay.name in ("res3a_branch2b", "res4a_branch2b", "res5a_branch2b"):
            lay.params["Stride"] = (2, 2)
    net.layer("bn3b_branch2b").params["Epsilon"] = 1e-5
    model = load_resnet50(net)
    arch = model.matport.architecture
    assert arch["stride_on"] == "conv2"
    assert arch["bn_eps"]["layer2.1.bn2"] == 1e-5 and arch["bn_eps"]["layer2.0.bn2"] == 0.001
    x = np.random.default_rng(3).integers(0, 256, (2, 64, 64, 3)).astype(np.float32)
    names = tuple(model.matport.layer_map)
    want = reference.forward(net, x, names)
    got: dict[str, torch.Tensor] = {}
    modules = dict(model.named_modules())
    for name, path in model.matport.layer_map.items():
        # clone: torchvision's ReLUs work in place on the BatchNorm outputs
        modules[path].register_forward_hook(
            lambda m, i, o, name=name: got.__setitem__(name, o.clone()))
    with torch.no_grad():
        model(model.matport.preprocess(x))
    assert set(got) == set(names)
    for name in names:
        g, w = got[name].numpy().reshape(want[name].shape), want[name]
        assert np.abs(g - w).max() <= RTOL * np.abs(w).max(), name


def test_transplant_shares_what_needs_no_copy():
    net = fixture.pretrained_like(mean="channel")
    model = load_resnet50(net)
    conv = net.layer("res3a_branch2a").learnables["Weights"]  # 1x1: the transpose is contiguous
    scale = net.layer("bn3a_branch2a").learnables["Scale"]
    assert np.shares_memory(model.layer2[0].conv1.weight.detach().numpy(), conv)
    assert np.shares_memory(model.layer2[0].bn1.weight.detach().numpy(), scale)
    assert model.layer2[0].conv2.weight.is_contiguous()  # 3x3: copied to torch's layout


# --- refusals -------------------------------------------------------------------------------------


@pytest.fixture
def editable(pretrained) -> Network:
    return copy.deepcopy(pretrained)


def _insert_after(net: Network, name: str, new: Layer) -> None:
    net.layers.append(new)
    net.connections = [Connection(new.name, c.dest, None, c.dest_port) if c.source == name else c
                       for c in net.connections] + [Connection(name, new.name)]


def _refused(net: Network, *names: str) -> ConversionError:
    with pytest.raises(ConversionError) as info:
        load_resnet50(net)
    message = str(info.value)
    for n in names:
        assert n in message
    assert {lay for lay, _, _ in info.value.layers} >= set(names)
    return info.value


def test_refuses_regression_head(editable):
    net = editable
    net.layers = [lay for lay in net.layers if lay.type not in ("SoftmaxLayer",
                                                                "ClassificationOutputLayer")]
    net.layers.append(Layer("routput", "nnet.cnn.layer.RegressionOutputLayer"))
    net.connections = [c for c in net.connections
                       if c.dest not in ("fc1000_softmax", "ClassificationLayer_fc1000")]
    net.connections.append(Connection("fc1000", "routput"))
    net.class_names = None
    err = _refused(net, "routput")
    assert "regression" in str(err)


def test_refuses_extra_layer(editable):
    _insert_after(editable, "avg_pool", Layer("dropout", "nnet.cnn.layer.DropoutLayer"))
    _refused(editable, "dropout")


def test_refuses_extra_fc_after_head(editable):
    _insert_after(editable, "fc1000", Layer("relu_extra", "nnet.cnn.layer.ReLULayer"))
    _refused(editable, "relu_extra")


def test_refuses_dangling_extra_branch(editable):
    editable.layers.append(Layer("aux_pool", "nnet.cnn.layer.GlobalAveragePooling2DLayer"))
    editable.connections.append(Connection("activation_22_relu", "aux_pool"))
    _refused(editable, "activation_22_relu")


def test_refuses_disconnected_layer(editable):
    editable.layers.append(Layer("leftover", "nnet.cnn.layer.ReLULayer"))
    err = _refused(editable, "leftover")
    assert "not on resnet50's path" in str(err)


def test_refuses_missing_block(editable):
    net = editable
    block = {"add_13", "activation_38_relu", "activation_39_relu", "activation_40_relu"}
    block |= {lay.name for lay in net.layers if "4f_branch" in lay.name}
    net.layers = [lay for lay in net.layers if lay.name not in block]
    net.connections = [
        Connection("activation_37_relu", c.dest, None, c.dest_port)
        if c.source == "activation_40_relu" else c
        for c in net.connections if c.dest not in block
    ]
    err = _refused(net, "add_8", "add_12")
    assert "(3, 4, 5, 3)" in str(err)


def test_refuses_different_stage_layout():
    stages = ((2, "ab", 64, 256, 1), (3, "abcde", 128, 512, 2), (4, "abcdef", 256, 1024, 2),
              (5, "abc", 512, 2048, 2))
    err = _refused(fixture.pretrained_like(mean="channel", stages=stages), "add_1", "add_3")
    assert "(2, 5, 6, 3)" in str(err)


def test_refuses_one_channel_input(editable):
    inp, conv = editable.layer("input_1"), editable.layer("conv1")
    inp.params["InputSize"] = (224, 224, 1)
    inp.normalization.mean = inp.normalization.mean[:, :, :1]
    conv.learnables["Weights"] = conv.learnables["Weights"][:, :, :1, :]
    conv.params["NumChannels"] = 1
    _refused(editable, "input_1")


def test_refuses_wrong_sizes(editable):
    conv = editable.layer("res3b_branch2b")
    conv.params["PaddingSize"] = (0, 1, 0, 1)
    _refused(editable, "res3b_branch2b")


def test_refuses_stride_on_both_convolutions(editable):
    editable.layer("res4a_branch2b").params["Stride"] = (2, 2)  # the branches no longer add up
    with pytest.raises(ConversionError, match=r"add_8 .*inputs of sizes 7x7x1024, 14x14x1024"):
        load_resnet50(editable)


# --- training, compile, export ------------------------------------------------------------------


@pytest.mark.slow
def test_fine_tuning_lowers_the_loss():
    model = load_resnet50(fixture.finetuned(seed=11))
    params = list(model.parameters())
    assert params and all(p.requires_grad for p in params)
    model.train()
    x = torch.randn(4, 3, 32, 32) * 50
    y = torch.tensor([0, 1, 2, 3])
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    before_mean = model.bn1.running_mean.clone()
    losses = []
    for _ in range(3):
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]
    assert not torch.equal(model.bn1.running_mean, before_mean)  # train-mode BN updates stats


@pytest.mark.slow
def test_torch_export_and_compile():
    model = load_resnet50(fixture.finetuned(seed=12))
    x = torch.randn(2, 3, 32, 32) * 50
    with torch.no_grad():
        want = model(x)
        exported = torch.export.export(model, (x,))
        torch.testing.assert_close(exported.module()(x), want)
        compiled = torch.compile(model, backend="aot_eager", fullgraph=True)
        torch.testing.assert_close(compiled(x), want)


# --- the way back: checkpoint, constructor, and the state_dict pitfall --------------------------


@pytest.fixture(scope="module")
def small() -> torch.nn.Module:
    return load_resnet50(fixture.finetuned(seed=13))


def test_checkpoint_round_trip(small, tmp_path):
    path = tmp_path / "model.pt"
    save(small, path)
    torch.load(path, weights_only=True)  # plain tensors and values only
    back = load_checkpoint(path)
    assert not back.training and type(back) is torchvision.models.ResNet
    assert_same_model(back, small)
    info, orig = back.matport, small.matport
    assert info.class_names == fixture.FINETUNED_CLASSES
    assert (info.input_size, info.layout, info.source, info.variable, info.layer_map) == (
        orig.input_size, orig.layout, orig.source, orig.variable, orig.layer_map)
    assert info.normalization.type == "zerocenter"
    np.testing.assert_array_equal(info.normalization.mean, orig.normalization.mean)
    x = torch.randn(2, 3, 64, 64) * 50
    with torch.no_grad():
        torch.testing.assert_close(back(x), small(x), rtol=0, atol=0)


def test_checkpoint_refuses_other_files(tmp_path):
    bad = tmp_path / "bad.pt"
    torch.save({"state_dict": {}}, bad)
    with pytest.raises(CheckpointError, match="not a matport checkpoint"):
        load_checkpoint(bad)
    with pytest.raises(ArgumentError, match="not built by matport"):
        save(torchvision.models.resnet18(), tmp_path / "x.pt")


def test_state_dict_pitfall_and_the_way_back(small):
    """A stock torchvision resnet50 accepts the state_dict but computes something else;
    matlab_resnet50 (MATLAB's strides and epsilons) computes the same."""
    x = torch.randn(2, 3, 64, 64) * 50
    sd = small.state_dict()
    stock = torchvision.models.resnet50(num_classes=5).eval()
    stock.load_state_dict(sd)
    variant = matlab_resnet50(num_classes=5).eval()
    variant.load_state_dict(sd)
    with torch.no_grad():
        want, wrong, right = small(x), stock(x), variant(x)
    assert (wrong - want).abs().max() > 0.05 * want.abs().max()
    torch.testing.assert_close(right, want, rtol=0, atol=0)
    stock_like = matlab_resnet50(num_classes=5, stride_on="conv2", bn_eps=1e-5).eval()
    stock_like.load_state_dict(sd)
    with torch.no_grad():
        torch.testing.assert_close(stock_like(x), wrong, rtol=0, atol=0)


# --- command line -------------------------------------------------------------------------------


@pytest.mark.slow
def test_convert_command(designer_file, tmp_path, capsys):
    from matport.cli import convert_cmd

    parser = argparse.ArgumentParser()
    convert_cmd.add_arguments(parser)
    out = tmp_path / "model.pt"
    assert convert_cmd.run(parser.parse_args([str(designer_file), "-o", str(out)])) == 0
    report = capsys.readouterr().out
    assert "torchvision resnet50" in report and "224x224x3" in report and "zerocenter" in report
    assert "23,518,277" in report  # ResNet-50 with a 5-class head
    stamp = out.stat().st_mtime_ns
    assert convert_cmd.run(parser.parse_args([str(designer_file), "-o", str(out)])) == 2
    assert "exists" in capsys.readouterr().err and out.stat().st_mtime_ns == stamp
    assert convert_cmd.run(parser.parse_args([str(designer_file), "-o", str(out), "--force"])) == 0
    assert [p.name for p in tmp_path.iterdir()] == ["model.pt"]  # no temporary left behind
    assert_same_model(load_checkpoint(out), load_resnet50(designer_file))


def _small_classifier() -> Network:
    from matport.network.model import Normalization
    from matport.synth.networks import chain, fc, feature_input, simple

    norm = Normalization("zscore", mean=np.arange(4.0).reshape(4, 1),
                         std=np.array([1.0, 2.0, 3.0, 4.0]).reshape(4, 1))
    return chain(feature_input("in", 4, norm), fc("fc", 4, 3), simple("SoftmaxLayer", "sm"),
                 simple("ClassificationOutputLayer", "out"), class_names=["a", "b", "c"])


def test_checkpoint_of_a_general_network(tmp_path):
    from matport.convert.api import load

    model = load(_small_classifier())
    save(model, tmp_path / "small.pt")
    back = load_checkpoint(tmp_path / "small.pt")
    assert back.matport.architecture["family"] == "graph"
    assert back.matport.class_names == ["a", "b", "c"]
    x = back.matport.preprocess(np.random.default_rng(0).normal(size=(5, 4)))
    with torch.no_grad():
        torch.testing.assert_close(back(x), model(x), rtol=0, atol=0)


def test_convert_command_falls_back_to_the_general_module(tmp_path, capsys):
    from matport.cli import convert_cmd
    from matport.network.encode import write_network

    source = tmp_path / "small.mat"
    write_network(source, _small_classifier())
    parser = argparse.ArgumentParser()
    convert_cmd.add_arguments(parser)
    out = tmp_path / "small.pt"
    assert convert_cmd.run(parser.parse_args([str(source), "-o", str(out)])) == 0
    report = capsys.readouterr().out
    assert "matport graph module (no registered torchvision family fits" in report
    assert "3 (a, b, c)" in report
    assert load_checkpoint(out).matport.class_names == ["a", "b", "c"]
    with pytest.raises(ConversionError, match="image input"):
        convert_cmd.run(parser.parse_args([str(source), "-o", str(out), "--force",
                                           "--family", "resnet50"]))
