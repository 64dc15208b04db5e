"""matport.checkpoint: one save/load pair, .pt and .safetensors (weights + JSON config), giving
identical models; custom converters; hostile files refused as CheckpointError, bounded by the
tensors they hold."""

from __future__ import annotations

import hashlib
import json
import mmap
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file
from torch import nn

import matport
from matport.checkpoint import config_path, load_checkpoint, save
from matport.convert.api import load
from matport.errors import CheckpointError
from matport.network.model import Layer, Network, Normalization
from matport.synth.networks import (
    RNG,
    batch_norm,
    chain,
    conv,
    fc,
    feature_input,
    image_input,
    simple,
)
from tests.support.paths import FIXTURES

torch.set_num_threads(1)
COMPAT = FIXTURES / "compat-0.1.0"
FORMATS = ["pt", "safetensors"]


def cnn() -> Network:
    mean = (100 + 50 * RNG.random((8, 8, 3))).astype(np.float32)
    return chain(
        image_input("in", (8, 8, 3), Normalization("zerocenter", mean=mean)),
        conv("conv", (3, 3), 3, 4, PaddingSize=(1, 1, 1, 1)), batch_norm("bn", 4),
        simple("ReLULayer", "relu"), fc("fc", (8, 8, 4), 3), simple("SoftmaxLayer", "sm"),
        simple("ClassificationOutputLayer", "out"), class_names=["a", "b", "c"])


def outputs(model: nn.Module, raw: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return model(model.matport.preprocess(torch.from_numpy(raw))).numpy()


def images(model: nn.Module, n: int = 3) -> np.ndarray:
    h, w, c = model.matport.input_size
    return RNG.uniform(0, 255, (n, c, h, w)).astype(np.float32)


@pytest.fixture(scope="module")
def models() -> dict[str, nn.Module]:
    return {"cnn": load(cnn()), "series": load(FIXTURES / "series_net_v7.mat"),
            "dag": load(FIXTURES / "dag_net_v73.mat")}


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("name", ["cnn", "series", "dag"])
def test_round_trip_gives_the_same_model(models, name: str, fmt: str, tmp_path: Path) -> None:
    model = models[name]
    path = tmp_path / f"model.{fmt}"
    written = save(model, path)
    back = load_checkpoint(path)
    assert not back.training
    raw = images(model)
    np.testing.assert_array_equal(outputs(back, raw), outputs(model, raw))
    a, b = back.matport, model.matport
    assert (a.class_names, a.input_size, a.layout, a.layer_map, a.architecture) == (
        b.class_names, b.input_size, b.layout, b.layer_map, b.architecture)
    for k in ("mean", "std", "min", "max"):
        x, y = getattr(a.normalization, k), getattr(b.normalization, k)
        assert (x is None) == (y is None)
        if x is not None:
            np.testing.assert_array_equal(x, y)
    if fmt == "pt":
        assert written == [path]
        torch.load(path, weights_only=True)  # plain tensors and values only
        return
    config = tmp_path / "model.config.json"
    assert written == [config, path] and config_path(path) == config
    tensors = load_file(str(path))  # the safetensors package itself reads it
    for key, value in model.state_dict().items():
        assert torch.equal(tensors[key], value)
    text = config.read_text()
    assert json.loads(text)["class_names"] == b.class_names
    if b.normalization.mean is not None:  # arrays in the weights file, not as JSON numbers
        np.testing.assert_array_equal(tensors["matport:normalization.mean"].numpy(),
                                      b.normalization.mean)
        assert json.loads(text)["normalization"]["mean"] == "matport:normalization.mean"
        assert f"{b.normalization.mean.flat[0]:.4f}"[:-1] not in text


def test_format_by_argument_or_extension(models, tmp_path: Path) -> None:
    model = models["cnn"]
    save(model, tmp_path / "weights.bin", format="safetensors")
    assert (tmp_path / "weights.config.json").is_file()
    load_file(str(tmp_path / "weights.bin"))
    save(model, tmp_path / "model.safetensors", format="pt")
    assert not (tmp_path / "model.config.json").exists()
    raw = images(model)
    for p in (tmp_path / "weights.bin", tmp_path / "model.safetensors"):
        np.testing.assert_array_equal(outputs(load_checkpoint(p), raw), outputs(model, raw))
    with pytest.raises(CheckpointError, match="unknown checkpoint format 'onnx'"):
        save(model, tmp_path / "x.onnx", format="onnx")


@pytest.mark.parametrize("fmt", FORMATS)
def test_digest_is_fed_the_weights_file_as_written(models, fmt: str, tmp_path: Path) -> None:
    digest = hashlib.sha256()
    path = tmp_path / f"w.{fmt}"
    save(models["dag"], path, fmt, digest)
    assert digest.hexdigest() == hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("fmt", FORMATS)
def test_loaded_tensors_hold_their_own_bytes_and_leave_the_file_alone(models, fmt: str,
                                                                      tmp_path: Path) -> None:
    # both formats map their file copy-on-write: even under torch's MAP_SHARED default, changing
    # the model never writes the checkpoint
    path = tmp_path / f"m.{fmt}"
    save(models["dag"], path)
    before = path.read_bytes()
    with torch.serialization.set_default_mmap_options(mmap.MAP_SHARED):
        back = load_checkpoint(path)
    for name, t in back.state_dict().items():
        assert t.untyped_storage().nbytes() == t.numel() * t.element_size(), name
    with torch.no_grad():
        for p in back.parameters():
            p.add_(1)
    del back
    assert path.read_bytes() == before


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("name", ["series_net_v7", "dag_net_v73"])
def test_checkpoints_of_0_1_0_resave_in_both_formats(name: str, fmt: str, tmp_path: Path) -> None:
    with np.load(COMPAT / "outputs.npz") as data:
        x, want = data["input"], data[name]
    old = load_checkpoint(COMPAT / f"{name}.pt")
    save(old, tmp_path / f"m.{fmt}")
    got = outputs(load_checkpoint(tmp_path / f"m.{fmt}"), x)
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)
    np.testing.assert_array_equal(got, outputs(old, x))


class Scale(nn.Module):
    """A custom layer's module holding its factor as a plain tensor (not a buffer)."""

    def __init__(self, factor: float, width: int) -> None:
        super().__init__()
        self.factor = torch.tensor(factor)
        self.bias = nn.Parameter(torch.zeros(width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.factor + self.bias


def scale_converter(layer: Layer, context: object) -> nn.Module:
    return Scale(float(layer.raw["Factor"]), 2)


@pytest.mark.parametrize("fmt", FORMATS)
def test_custom_converters_reload_when_given(fmt: str, tmp_path: Path) -> None:
    custom = Layer("mylayer", "myproject.ScaleLayer", supported=False, raw={"Factor": 3.0})
    net = chain(feature_input("in", 3), fc("fc", 3, 2), custom)
    converters = {"myproject.ScaleLayer": scale_converter}
    model = load(net, converters=converters)
    with torch.no_grad():
        model.mylayer.bias.copy_(torch.tensor([0.5, -1.0]))
    save(model, tmp_path / f"m.{fmt}")
    missing = r"(?s)custom converters.*mylayer \(myproject.ScaleLayer"
    with pytest.raises(CheckpointError, match=missing):
        load_checkpoint(tmp_path / f"m.{fmt}")
    back = load_checkpoint(tmp_path / f"m.{fmt}", converters=converters)
    x = torch.from_numpy(RNG.standard_normal((4, 3)).astype(np.float32))
    with torch.no_grad():
        torch.testing.assert_close(back(x), model(x), rtol=0, atol=0)
    assert back.mylayer.factor.item() == 3.0


# --- hostile and broken files ------------------------------------------------------------------


def pt_file(path: Path, models, **changes) -> Path:
    """The cnn's .pt checkpoint with ``changes`` applied to its top level or its info."""
    data = {"format": "matport.checkpoint/1", "info": models["cnn"].matport.to_dict(),
            "state_dict": dict(models["cnn"].state_dict())}
    for key, value in changes.items():
        target = data if key in data else data["info"]
        target[key] = value
    torch.save(data, path)
    return path


def test_architecture_bounded_by_the_tensors_present(models, tmp_path: Path) -> None:
    arch = json.loads(json.dumps(models["cnn"].matport.architecture))
    arch["spec"]["layers"][1]["learnables"]["Weights"] = [3000, 3000, 3, 4]  # 108 M zeros
    small = pt_file(tmp_path / "big.pt", models, architecture=arch)
    assert small.stat().st_size < 100_000
    with pytest.raises(CheckpointError, match="declares more array elements than the"):
        load_checkpoint(small)
    one = torch.zeros(100_000)  # stored once, named 1,000 times: 100,000 elements, not 100 M
    shared = {**models["cnn"].state_dict(), **{f"alias{i}": one for i in range(1000)}}
    arch["spec"]["layers"][1]["learnables"]["Weights"] = [1000, 1000, 3, 4]  # 12 M zeros
    aliased = pt_file(tmp_path / "aliased.pt", models, architecture=arch, state_dict=shared)
    assert aliased.stat().st_size < 1_000_000
    with pytest.raises(CheckpointError, match="declares more array elements than the 100"):
        load_checkpoint(aliased)
    arch["spec"]["layers"][1]["learnables"]["Weights"] = [3, -3]
    with pytest.raises(CheckpointError, match=r"array shape \[3, -3\] of layer 'conv'"):
        load_checkpoint(pt_file(tmp_path / "neg.pt", models, architecture=arch))


def test_broadcast_views_and_shared_references_are_refused(models, tmp_path: Path) -> None:
    huge = torch.zeros(1).expand(100_000, 100_000)  # 4 bytes posing as 40 GB
    norm = {**models["cnn"].matport.to_dict()["normalization"], "mean": huge}
    with pytest.raises(CheckpointError, match=r"\[100000, 100000\] values held by 4 bytes"):
        load_checkpoint(pt_file(tmp_path / "view.pt", models, normalization=norm))
    state = {**models["cnn"].state_dict(), "fc.weight": torch.zeros(1).expand(3, 256)}
    with pytest.raises(CheckpointError, match="tensor 'fc.weight'"):
        load_checkpoint(pt_file(tmp_path / "param.pt", models, state_dict=state))
    row = ["x"] * 2000
    block = [row] * 2000  # a pickle stores each list once: 4 M names in a few kB
    path = pt_file(tmp_path / "names.pt", models, class_names=block)
    assert path.stat().st_size < 100_000
    with pytest.raises(CheckpointError, match="metadata larger than"):
        load_checkpoint(path)


@pytest.mark.parametrize("change", [
    {"info": "not a dict"}, {"input_size": "abc"}, {"architecture": {"family": "resnet50"}},
    {"architecture": {"family": "graph", "spec": {"format": "x"}}}, {"architecture": [1]},
    {"normalization": {"type": "zerocenter"}}, {"class_names": 7}, {"layout": None},
    {"state_dict": {"fc.weight": torch.zeros(3, 256)}}, {"state_dict": [1, 2]},
    {"architecture": {"family": "nonsense"}}, {"layer_map": {"a": object.__name__, 1: "b"}},
])
def test_malformed_pt_content_is_a_checkpoint_error(models, change, tmp_path: Path) -> None:
    with pytest.raises(CheckpointError):
        load_checkpoint(pt_file(tmp_path / "bad.pt", models, **change))


def test_broken_files_are_checkpoint_errors(models, tmp_path: Path) -> None:
    good = tmp_path / "good.pt"
    save(models["cnn"], good)
    squeezed = tmp_path / "deflated.pt"
    with zipfile.ZipFile(good) as src, zipfile.ZipFile(squeezed, "w", zipfile.ZIP_DEFLATED) as dst:
        for item in src.infolist():
            dst.writestr(item.filename, src.read(item))
    with pytest.raises(CheckpointError, match="compressed"):
        load_checkpoint(squeezed)
    (tmp_path / "text.pt").write_text("hello")
    with pytest.raises(CheckpointError, match="cannot read as a .pt or .safetensors"):
        load_checkpoint(tmp_path / "text.pt")
    with pytest.raises(CheckpointError, match="cannot read"):
        load_checkpoint(tmp_path / "missing.pt")
    st = tmp_path / "m.safetensors"
    save(models["cnn"], st)
    config = config_path(st)
    text = config.read_text()
    config.write_text(text.replace('"matport:normalization.mean"', '"matport:nothing"'))
    with pytest.raises(CheckpointError, match="malformed normalization"):
        load_checkpoint(st)
    config.write_text("{")
    with pytest.raises(CheckpointError, match="m.config.json cannot be read"):
        load_checkpoint(st)
    config.unlink()
    with pytest.raises(CheckpointError, match="m.config.json cannot be read"):
        load_checkpoint(st)
    save_file({"w": torch.zeros(2)}, str(tmp_path / "plain.safetensors"))
    (tmp_path / "plain.config.json").write_text('{"format": "something"}')
    with pytest.raises(CheckpointError, match="not a matport checkpoint config"):
        load_checkpoint(tmp_path / "plain.safetensors")


def test_matport_exports_the_checkpoint_error() -> None:
    assert matport.CheckpointError is CheckpointError


def test_a_saved_model_is_the_same_bytes_whatever_was_loaded_before(tmp_path: Path) -> None:
    """A .pt checkpoint of a network is byte for byte the same after other loads in the process
    (migrate compares a cluster's artifacts with a local run's): a pickle writes a text once
    per object, so the layer and module names must not be objects a cache kept from a load
    before."""
    from matport.network import read_network
    from matport.network.encode import write_network

    write_network(tmp_path / "n.mat", cnn(), format="v7")
    saved = []
    for i in range(2):
        save(load(read_network(tmp_path / "n.mat")), tmp_path / f"{i}.pt")
        saved.append((tmp_path / f"{i}.pt").read_bytes())
    assert saved[0] == saved[1]
