"""matport.load_torchvision per family, against the independent numpy reference forward pass in
MATLAB's layouts (tests/support/reference_forward.py) and matport.load's general module, on
MATLAB-layout networks from matport.synth.families (reduced input size here, full size in the
slow tests) and on a real fine-tuned SqueezeNet from the corpus. Each family has a negative
control: the family's pitfall, put back into the loaded model, must make the comparison fail."""

from __future__ import annotations

import argparse
import copy
import gc
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch
import torchvision
from torch import nn
from torch.overrides import TorchFunctionMode

import matport
from matport.convert.collector import collector_paused
from matport.convert.families import registry
from matport.errors import ArgumentError, ConversionError
from matport.network.model import Connection, Layer, Network
from matport.options import FAMILY_NAMES
from matport.synth import families as synth
from tests.support.paths import corpus_file
from tests.support.reference_forward import fully_connected, reference_forward

RTOL = 1e-4
N_IMAGES = 32
SQUEEZENET_FILE = "georgeb20__georgeb20/squeezenet.mat"
# family -> (torchvision class, reduced input size, full input size)
CASES = {
    "resnet18": (torchvision.models.ResNet, 32, 224),
    "resnet101": (torchvision.models.ResNet, 32, 224),
    "squeezenet1_1": (torchvision.models.SqueezeNet, 52, 227),  # pool3, pool5 see even maps
    "densenet201": (torchvision.models.DenseNet, 32, 224),
    "inception_v3": (torchvision.models.Inception3, 75, 299),
}


def images(size: int, n: int = N_IMAGES, seed: int = 7) -> np.ndarray:
    """``n`` random RGB uint8 images, N x H x W x C."""
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


def reference_logits(net: Network, x: np.ndarray) -> np.ndarray:
    """The reference output of the layer before the softmax, N x classes."""
    values = reference_forward(net, [x.transpose(1, 2, 3, 0).astype(np.float64)])
    softmax = next(lay for lay in net.layers if lay.type == "SoftmaxLayer")
    (before,) = net.predecessors(softmax.name)
    y = values[before.source]
    return y.reshape(-1, y.shape[-1]).T  # C x N, or 1 x 1 x C x N after global pooling


def logits(model: nn.Module, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return model(model.matport.preprocess(x)).numpy()


def assert_matches(got: np.ndarray, want: np.ndarray) -> None:
    rel = np.abs(got - want).max() / np.abs(want).max()
    assert rel < RTOL, f"max relative difference {rel:.2e}"
    np.testing.assert_array_equal(got.argmax(1), want.argmax(1))


def assert_same_as_generic(model: nn.Module, net: Network, x: np.ndarray) -> None:
    """The torchvision model's logits equal matport.load's module's, and both leave MATLAB's
    softmax to post-processing."""
    generic = matport.load(net)
    assert model.matport.postprocess == generic.matport.postprocess == "softmax"
    with torch.no_grad():
        want = generic(generic.matport.preprocess(x)).reshape(len(x), -1)
        got = model(model.matport.preprocess(x))
    scale = float(want.abs().max())
    torch.testing.assert_close(got, want, rtol=RTOL, atol=RTOL * scale)


def check_family(family: str, net: Network, x: np.ndarray) -> nn.Module:
    model = matport.load_torchvision(net)
    cls = CASES[family][0] if family in CASES else torchvision.models.VGG
    assert type(model) is cls and not model.training
    assert gc.isenabled()  # paused while the model was built only
    assert model.matport.architecture["family"] == family
    assert model.matport.class_names == net.class_names
    assert_matches(logits(model, x), reference_logits(net, x))
    assert_same_as_generic(model, net, x)
    return model


@pytest.fixture(scope="module")
def reduced() -> dict[str, Network]:
    return {f: synth.build(f, size=size, classes=10) for f, (_, size, _) in CASES.items()}


@pytest.mark.parametrize("family", sorted(CASES))
def test_reduced_size_matches_reference(family, reduced):
    check_family(family, reduced[family], images(CASES[family][1]))


@pytest.mark.full_size
@pytest.mark.parametrize("family", sorted(CASES))
def test_full_size_matches_reference(family):
    size = CASES[family][2]
    check_family(family, synth.build(family, size=size), images(size))


# --- negative controls: each family's pitfall must make the comparison fail ------------------


def _stride_on_3x3(model: nn.Module, net: Network) -> None:
    for stage in (model.layer2, model.layer3, model.layer4):
        stage[0].conv1.stride, stage[0].conv2.stride = (1, 1), (2, 2)


def _symmetric_pool1(model: nn.Module, net: Network) -> None:
    model.maxpool.padding, model.maxpool.ceil_mode = 1, False


def _unfolded_conv_bias(model: nn.Module, net: Network) -> None:
    """What a transplant into bias-free torchvision convs does without folding: drop the bias."""
    bias = net.layer("conv1").learnables["Bias"].reshape(-1)
    model.bn1.running_mean += torch.from_numpy(bias)


def _floor_pools(model: nn.Module, net: Network | None = None) -> None:
    """MATLAB's [0 1 0 1] max pools taken as unpadded (symmetric) ones."""
    for m in model.features:
        if isinstance(m, nn.MaxPool2d):
            m.ceil_mode = False


def _biases_not_carried(model: nn.Module, net: Network) -> None:
    """Conv biases folded only into the BatchNorm right after the conv, not carried through the
    concatenations to every BatchNorm that sees those channels."""
    modules = dict(model.named_modules())
    for name, path in model.matport.layer_map.items():
        if path.endswith(("norm1", ".norm", "norm5")):
            mean = net.layer(name).state["TrainedMean"].reshape(-1)
            modules[path].running_mean.copy_(torch.from_numpy(mean))


def _torchvision_input_transform(model: nn.Module, net: Network) -> None:
    """torchvision's pretrained inception_v3 re-normalizes its input (transform_input=True)."""
    model.transform_input = True


PITFALLS: dict[str, list[Callable[[nn.Module, Network], None]]] = {
    "resnet18": [_unfolded_conv_bias],
    "resnet101": [_stride_on_3x3, _symmetric_pool1],
    "squeezenet1_1": [_floor_pools],
    "densenet201": [_biases_not_carried],
    "inception_v3": [_torchvision_input_transform],
}


@pytest.mark.parametrize(("family", "pitfall"),
                         [(f, p) for f, ps in PITFALLS.items() for p in ps],
                         ids=lambda v: getattr(v, "__name__", v))
def test_negative_control(family, pitfall, reduced):
    net = reduced[family]
    x = images(CASES[family][1], 8)
    model = matport.load_torchvision(net)
    pitfall(model, net)
    with pytest.raises(AssertionError):
        assert_matches(logits(model, x), reference_logits(net, x))


# --- the real fine-tuned SqueezeNet ------------------------------------------------------------


@pytest.fixture(scope="module")
def squeezenet_file():
    return corpus_file(SQUEEZENET_FILE)


def test_corpus_squeezenet(squeezenet_file):
    from matport.network import read_network

    net = read_network(squeezenet_file)
    model = check_family("squeezenet1_1", net, images(227))
    assert model.classifier[1].out_channels == 2 and model.matport.input_size == (227, 227, 3)
    arch = model.matport.architecture
    assert arch["maxpool"] == [[0, False], [0, True], [0, True]]  # pool1 on 113: either; 3, 5 ceil
    _floor_pools(model)
    with pytest.raises(AssertionError):
        assert_matches(logits(model, images(227, 8)), reference_logits(net, images(227, 8)))


def test_convert_command_picks_the_family(squeezenet_file, tmp_path, capsys):
    from matport.cli import convert_cmd

    parser = argparse.ArgumentParser()
    convert_cmd.add_arguments(parser)
    out = tmp_path / "model.pt"
    assert convert_cmd.run(parser.parse_args([str(squeezenet_file), "-o", str(out)])) == 0
    assert "torchvision squeezenet1_1" in capsys.readouterr().out
    assert torch.load(out, weights_only=True)["info"]["architecture"]["family"] == "squeezenet1_1"
    with pytest.raises(ConversionError, match="resnet18"):
        convert_cmd.run(parser.parse_args([str(squeezenet_file), "-o", str(out), "--force",
                                           "--family", "resnet18"]))
    assert convert_cmd.run(parser.parse_args([str(squeezenet_file), "-o", str(out), "--force",
                                              "--family", "graph"])) == 0
    assert "matport graph module" in capsys.readouterr().out


def test_checkpoint_rebuilds_the_family(reduced, tmp_path):
    from matport.checkpoint import load_checkpoint, save

    model = matport.load_torchvision(reduced["squeezenet1_1"])
    save(model, tmp_path / "m.pt")
    back = load_checkpoint(tmp_path / "m.pt")
    assert type(back) is torchvision.models.SqueezeNet
    assert back.features[2].ceil_mode is False and back.features[5].ceil_mode is True
    x = torch.randn(2, 3, 52, 52) * 50
    with torch.no_grad():
        torch.testing.assert_close(back(x), model(x), rtol=0, atol=0)


# --- VGG: fc6 over MATLAB's column-major flatten -------------------------------------------------


@pytest.fixture(scope="module")
def vgg16() -> Network:
    return synth.vgg("vgg16", classes=10)


def _fc6_matches(model: nn.Module, net: Network) -> None:
    """classifier.0 on 32 random 7 x 7 x 512 maps equals MATLAB's fc6 on the same maps."""
    maps = np.random.default_rng(3).standard_normal((N_IMAGES, 512, 7, 7)).astype(np.float32)
    with torch.no_grad():
        got = model.classifier[0](torch.flatten(torch.from_numpy(maps), 1)).numpy()
    want = fully_connected(net.layer("fc6"), maps.transpose(2, 3, 1, 0).astype(np.float64)).T
    assert_matches(got, want)


def test_vgg16_fc6_flatten_order(vgg16):
    model = matport.load_torchvision(vgg16)
    assert type(model) is torchvision.models.VGG and model.matport.architecture["family"] == "vgg16"
    _fc6_matches(model, vgg16)
    # negative control: fc6 taken over in MATLAB's H x W x C order, without the permutation
    w = vgg16.layer("fc6").learnables["Weights"]  # 7 x 7 x 512 x 4096
    unpermuted = np.ascontiguousarray(w.reshape(-1, w.shape[3], order="F").T)
    model.classifier[0].weight.data = torch.from_numpy(unpermuted)
    with pytest.raises(AssertionError):
        _fc6_matches(model, vgg16)


def test_vgg_refuses_other_input_sizes():
    net = synth.vgg("vgg16", size=192, classes=10)
    with pytest.raises(ConversionError, match="7x7x512") as err:
        matport.load_torchvision(net, family="vgg16")
    assert err.value.layers[0][0] == "pool5"


@pytest.mark.full_size
@pytest.mark.parametrize("family", ["vgg16", "vgg19"])
def test_vgg_full_size(family):
    """The numpy reference takes minutes per 224 x 224 VGG image: 2 images against it, 32 against
    matport.load's module (itself checked against the reference layer by layer)."""
    net = synth.vgg(family, classes=10)
    model = matport.load_torchvision(net)
    assert type(model) is torchvision.models.VGG
    assert len(model.features) == {"vgg16": 31, "vgg19": 37}[family]
    x = images(224, 2)
    assert_matches(logits(model, x), reference_logits(net, x))
    assert_same_as_generic(model, net, images(224))
    _fc6_matches(model, net)


# --- recognition and refusals -------------------------------------------------------------------


def test_registry_names_are_the_options():
    assert tuple(registry.families()) == FAMILY_NAMES
    with pytest.raises(ArgumentError, match="already registered"):
        registry.register_family(registry.families()["resnet18"])


def test_each_family_is_matched_by_graph_not_names(reduced):
    for family, net in reduced.items():
        renamed = copy.deepcopy(net)
        names = {lay.name: f"L{i:03d}" for i, lay in enumerate(net.layers)}
        for lay in renamed.layers:
            lay.name = names[lay.name]
        renamed.connections = [Connection(names[c.source], names[c.dest], c.source_port,
                                          c.dest_port) for c in renamed.connections]
        renamed.layers.reverse()
        model = matport.load_torchvision(renamed)
        assert model.matport.architecture["family"] == family
        x = images(CASES[family][1], 4)
        np.testing.assert_array_equal(logits(model, x), logits(matport.load_torchvision(net), x))


def test_squeezenet_refuses_swapped_concatenation(reduced):
    net = copy.deepcopy(reduced["squeezenet1_1"])
    net.connections = [Connection(c.source, c.dest, c.source_port,
                                  {"in1": "in2", "in2": "in1"}[c.dest_port])
                       if c.dest == "fire4-concat" else c for c in net.connections]
    with pytest.raises(ConversionError) as err:
        matport.load_torchvision(net, family="squeezenet1_1")
    assert err.value.layers[0][0] == "fire4-concat"


def test_inception_refuses_branches_out_of_order(reduced):
    net = copy.deepcopy(reduced["inception_v3"])
    net.connections = [Connection(c.source, c.dest, c.source_port,
                                  {"in1": "in2", "in2": "in1"}.get(c.dest_port or "", c.dest_port))
                       if c.dest == "mixed9_0" else c for c in net.connections]
    with pytest.raises(ConversionError) as err:
        matport.load_torchvision(net, family="inception_v3")
    assert err.value.layers[0][0] == "mixed9_0"


def test_resnet101_refuses_a_partial_final_pool():
    net = synth.resnet101(size=64, classes=10)
    net.layer("pool5").params["PoolSize"] = (1, 1)
    with pytest.raises(ConversionError) as err:
        matport.load_torchvision(net, family="resnet101")
    assert err.value.layers[0][0] == "pool5"


def test_no_family_fits_lists_why_each_did_not(reduced):
    net = copy.deepcopy(reduced["resnet18"])  # a tanh where torchvision has a ReLU: runs, fits none
    net.layer("res3a_branch2a_relu").class_name = "nnet.cnn.layer.TanhLayer"
    with pytest.raises(ConversionError, match="matport.load") as err:
        matport.load_torchvision(net)
    assert [name for name, _, _ in err.value.layers] == list(FAMILY_NAMES)
    assert err.value.layers[0][1].startswith("res3a_branch2a")  # where the walk stopped


def test_a_network_that_cannot_run_is_refused_before_matching(reduced):
    net = copy.deepcopy(reduced["resnet18"])
    net.layer("res3a_branch2b").params["PaddingSize"] = (0, 1, 0, 1)
    with pytest.raises(ConversionError, match="res3a .*inputs of sizes 3x3x128, 4x4x128"):
        matport.load_torchvision(net)


def test_refused_family_is_named():
    from matport.synth.networks import chain, conv, image_input, simple

    shuffle = Layer("shuffle", "nnet.shufflenet.layer.ChannelShufflingLayer")
    net = chain(image_input("in", (8, 8, 3)), conv("c", (1, 1), 3, 4), shuffle,
                simple("SoftmaxLayer", "sm"), kind="DAGNetwork")
    with pytest.raises(ConversionError, match="shufflenet.*matport.load"):
        matport.load_torchvision(net)
    with pytest.raises(ConversionError, match="googlenet.*matport.load"):
        matport.load_torchvision(net, family="googlenet")


def _tiny(*middle: Layer, edges: list[str]) -> Network:
    from matport.synth.networks import graph, image_input, simple

    layers = [image_input("in", (16, 16, 3)), *middle, simple("SoftmaxLayer", "sm")]
    return graph(layers, edges)


def test_refusals_are_recognised_from_the_graph():
    from matport.synth.networks import conv, grouped_conv, simple

    lrn = simple("CrossChannelNormalizationLayer", "lrn", WindowChannelSize=5)
    branches = [conv(f"b{i}", (1, 1), 3, 2) for i in range(4)]
    concat = simple("DepthConcatenationLayer", "cat", NumInputs=4)
    googlenet = _tiny(lrn, *branches, concat, edges=["in -> lrn"] + [
        f"lrn -> b{i}" for i in range(4)] + [f"b{i} -> cat/in{i + 1}" for i in range(4)]
        + ["cat -> sm"])
    dw = grouped_conv("dw", (3, 3), 1, 1, 3, PaddingSize=(1, 1, 1, 1))
    clip = simple("ClippedReLULayer", "clip", Ceiling=6)
    add = simple("AdditionLayer", "add", NumInputs=2)
    mobilenet = _tiny(dw, clip, add, edges=["in -> dw", "dw -> clip", "clip -> add/in1",
                                            "in -> add/in2", "add -> sm"])
    for net, name in ((googlenet, "googlenet"), (mobilenet, "mobilenetv2")):
        with pytest.raises(ConversionError, match=f"a MATLAB {name}, .*matport.load"):
            matport.load_torchvision(net)
    matport.load(mobilenet)  # what the message points to


def test_load_torchvision_reads_files(reduced, tmp_path):
    from matport.network.encode import write_network

    path = tmp_path / "r18.mat"
    write_network(path, reduced["resnet18"], variable="trained", format="v7.3")
    model = matport.load_torchvision(path, variable="trained")
    assert type(model) is torchvision.models.ResNet
    assert (model.matport.source, model.matport.variable) == (str(path), "trained")
    x = images(32, 4)
    np.testing.assert_array_equal(logits(model, x),
                                  logits(matport.load_torchvision(reduced["resnet18"]), x))


# --- training and export -------------------------------------------------------------------------


@pytest.mark.slow
def test_fine_tuning_and_export(reduced):
    model = matport.load_torchvision(reduced["squeezenet1_1"]).train()
    x = model.matport.preprocess(images(52, 8))
    y = torch.arange(8) % 10
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(5):
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]
    model.eval()
    exported = torch.export.export(model, (x[:2],))
    torch.testing.assert_close(exported.module()(x[:2]), model(x[:2]))


def test_meta_copies_are_independent_models() -> None:
    """meta_copy copies a cached template structurally: each copy is torchvision's model, its
    modules, tensors and attributes its own."""
    a, b = registry.meta_copy("resnet18", 10), registry.meta_copy("resnet18", 10)
    with torch.device("meta"):
        stock = torchvision.models.resnet18(num_classes=10)
    assert repr(a) == repr(stock)
    assert {k: v.shape for k, v in a.state_dict().items()} == {
        k: v.shape for k, v in stock.state_dict().items()}
    a.layer2[0].conv1.stride = (3, 3)
    a.load_state_dict({k: torch.zeros(v.shape, dtype=v.dtype)
                       for k, v in stock.state_dict().items()}, assign=True)
    assert b.layer2[0].conv1.stride == (2, 2) and all(t.is_meta for t in b.state_dict().values())
    assert a.layer1 is not b.layer1 and not any(t.is_meta for t in a.state_dict().values())
    assert registry.meta_copy("resnet18", 10).layer2[0].conv1.stride == (2, 2)


class _Reached(TorchFunctionMode):
    """Records the torch functions that reach it (entered first, it sees what a mode entered
    after it passes on)."""

    def __init__(self) -> None:
        super().__init__()
        self.names: list[str] = []

    def __torch_function__(self, func: Any, types: Any, args: tuple[Any, ...] = (),
                           kwargs: dict[str, Any] | None = None) -> Any:
        self.names.append(getattr(func, "__name__", ""))
        return func(*args, **(kwargs or {}))


def test_template_construction_makes_meta_tensors_and_skips_their_initialisers() -> None:
    """While a template is built, factories make meta tensors and no initialiser runs on them,
    also those torch.nn.init hands to a mode by keyword (kaiming_uniform_, uniform_); a tensor
    with values is still initialised."""
    reached = _Reached()
    with reached, registry._MetaConstruction():
        conv = nn.Conv2d(3, 8, 3)
        values = nn.init.constant_(torch.empty(2, device="cpu"), 3.0)
    assert conv.weight.is_meta and conv.bias is not None and conv.bias.is_meta
    assert conv.weight.shape == (8, 3, 3, 3) and conv.bias.shape == (8,)
    assert reached.names.count("empty") == 3  # weight, bias, the CPU tensor
    assert not {"kaiming_uniform_", "uniform_"} & set(reached.names)
    assert values.tolist() == [3.0, 3.0] and "constant_" in reached.names


def test_assign_state_is_load_state_dict() -> None:
    """assign_state gives what load_state_dict(strict=True, assign=True) gives, and leaves
    anything else (a missing key, a wrong shape) to it and its errors."""
    with torch.device("meta"):
        stock = torchvision.models.resnet18(num_classes=10)
    state = {k: torch.randn(v.shape).to(v.dtype) for k, v in stock.state_dict().items()}
    ours, theirs = registry.meta_copy("resnet18", 10), registry.meta_copy("resnet18", 10)
    registry.assign_state(ours, state)
    theirs.load_state_dict(state, strict=True, assign=True)
    for (name, a), (_, b) in zip(ours.named_parameters(), theirs.named_parameters(), strict=True):
        assert type(a) is type(b) and a.requires_grad == b.requires_grad and a is not b, name
        assert a.data_ptr() == b.data_ptr() == state[name].data_ptr()
    assert all(a is b for a, b in zip(ours.buffers(), theirs.buffers(), strict=True))
    del state["fc.bias"]
    with pytest.raises(RuntimeError, match='Missing key.*"fc.bias"'):
        registry.assign_state(registry.meta_copy("resnet18", 10), state)
    state["fc.bias"] = torch.zeros(3)
    with pytest.raises(RuntimeError, match="size mismatch for fc.bias"):
        registry.assign_state(registry.meta_copy("resnet18", 10), state)


def test_collector_paused_is_restored_however_the_block_ends():
    """The cyclic collector is enabled again after a block that raises; one the caller disabled
    stays disabled."""
    with pytest.raises(RuntimeError), collector_paused():
        assert not gc.isenabled()
        raise RuntimeError
    assert gc.isenabled()
    gc.disable()
    try:
        with collector_paused():
            assert not gc.isenabled()
        assert not gc.isenabled()
    finally:
        gc.enable()
