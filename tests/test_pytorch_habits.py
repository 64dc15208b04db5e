"""A converted classifier behaves like a PyTorch one: it returns logits (MATLAB's terminal softmax
is post-processing, one option away), and its head is swapped in one call for fine-tuning.

Expected values come from the independent numpy reference (``tests/support/reference_forward``):
its value at the layer before the softmax is the logits, the network's output MATLAB's
probabilities."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import matport
from matport.checkpoint import load_checkpoint, save
from matport.convert.info import ModelInfo
from matport.errors import ArgumentError
from matport.network.encode import write_network
from matport.network.model import Network, Normalization
from matport.synth.networks import (
    RNG,
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
    to_matlab_layout,
    to_torch_layout,
)
from tests.support.reference_forward import network_outputs, reference_forward
from tests.support.training import fine_tune

torch.set_num_threads(1)

CLASSES = ["cat", "dog", "owl"]


def _cnn() -> Network:
    return chain(
        image_input("in", (6, 6, 2), Normalization("zerocenter", mean=rand(6, 6, 2))),
        conv("conv", (3, 3), 2, 4, PaddingMode="same"), batch_norm("bn", 4),
        simple("ReLULayer", "relu"), fc("fc", (6, 6, 4), 3), simple("SoftmaxLayer", "softmax"),
        simple("ClassificationOutputLayer", "classoutput", Classes=CLASSES),
        class_names=CLASSES)


def _lstm_classifier() -> Network:
    return chain(sequence_input("in", 3), lstm("lstm", 3, 8, "last"), fc("fc", 8, 3),
                 simple("SoftmaxLayer", "softmax"),
                 simple("ClassificationOutputLayer", "classoutput", Classes=CLASSES),
                 class_names=CLASSES)


def _dlnetwork() -> Network:
    """A dlnetwork: no output layer, the softmax named as the output."""
    layers = [feature_input("in", 4), fc("fc_1", 4, 5), simple("ReLULayer", "relu"),
              fc("fc_2", 5, 3), simple("SoftmaxLayer", "sm")]
    return graph(layers, ["in -> fc_1", "fc_1 -> relu", "relu -> fc_2", "fc_2 -> sm"],
                 kind="dlnetwork", output_names=["sm"])


def _raw(net: Network, batch: int) -> np.ndarray:
    """Raw MATLAB-layout data for the network's input (5 time steps for sequences)."""
    lay = net.input_layers[0]
    size = tuple(lay.params["InputSize"])
    steps = (5,) if lay.type == "SequenceInputLayer" else ()
    return RNG.uniform(-2, 2, size + (batch,) + steps)


def _run(model: nn.Module, raw: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        x = model.matport.preprocess(torch.from_numpy(to_torch_layout(raw)).float())
        return model(x).numpy()


def _close(got: np.ndarray, want: np.ndarray) -> None:
    want = np.squeeze(want) if want.ndim == 4 else want  # fc after images: 1 x 1 x C x N
    np.testing.assert_allclose(to_matlab_layout(got), want, rtol=1e-4,
                               atol=1e-5 * float(np.abs(want).max()))


# --- logits by default, MATLAB's probabilities one option away ------------------------------


@pytest.mark.parametrize("make, head", [(_cnn, "fc"), (_lstm_classifier, "fc"),
                                        (_dlnetwork, "fc_2")])
def test_logits_by_default_probabilities_on_request(make, head: str) -> None:
    net = make()
    raw = _raw(net, 4)
    values = reference_forward(net, [raw])
    logits_model = matport.load(net)
    assert not logits_model.training
    assert logits_model.matport.postprocess == "softmax"
    logits = _run(logits_model, raw)
    _close(logits, values[head])  # the reference's pre-softmax values
    assert not np.allclose(logits.sum(axis=1), 1)
    matlab = matport.load(net, output="probabilities")
    assert matlab.matport.postprocess is None
    probs = _run(matlab, raw)
    _close(probs, network_outputs(net, values)[0])  # MATLAB's outputs
    applied = logits_model.matport.postprocess_outputs(torch.from_numpy(logits))
    np.testing.assert_allclose(applied.numpy(), probs, rtol=1e-5, atol=1e-7)
    assert matlab.matport.postprocess_outputs(torch.from_numpy(probs)) is not None


def test_logits_of_a_file_and_their_checkpoint(tmp_path) -> None:
    net = _cnn()
    path = tmp_path / "net.mat"
    write_network(path, net, format="v7.3")
    raw = _raw(net, 3)
    model = matport.load(path)
    _close(_run(model, raw), reference_forward(net, [raw])["fc"])
    assert "logits" in model.matport.summary()
    save(model, tmp_path / "model.pt")
    back = load_checkpoint(tmp_path / "model.pt")
    assert back.matport.postprocess == "softmax"
    np.testing.assert_array_equal(_run(back, raw), _run(model, raw))
    assert ModelInfo.from_dict(model.matport.to_dict()).postprocess == "softmax"


def test_networks_without_a_terminal_softmax_are_unchanged() -> None:
    regression = chain(feature_input("in", 3), fc("fc", 3, 2),
                       simple("RegressionOutputLayer", "out"))
    two_outputs = graph([feature_input("in", 3), fc("a", 3, 2), simple("SoftmaxLayer", "sa"),
                         fc("b", 3, 2)], ["in -> a", "a -> sa", "in -> b"])
    softmax_inside = chain(feature_input("in", 3), simple("SoftmaxLayer", "sm"), fc("fc", 3, 2))
    for net in (regression, two_outputs, softmax_inside):
        raw = _raw(net, 2)
        model = matport.load(net)
        assert model.matport.postprocess is None
        want = network_outputs(net, reference_forward(net, [raw]))
        got = model(torch.from_numpy(to_torch_layout(raw)).float())
        for g, w in zip(got if isinstance(got, tuple) else (got,), want, strict=True):
            _close(g.detach().numpy(), w)


def test_unknown_output_is_an_argument_error() -> None:
    with pytest.raises(ArgumentError, match="probabilities"):
        matport.load(_cnn(), output="softmax")  # type: ignore[arg-type]


# --- the head swap -------------------------------------------------------------------------


@pytest.mark.parametrize("make", [_cnn, _lstm_classifier])
def test_reset_classifier_then_fine_tune_lowers_the_loss(make, tmp_path) -> None:
    net = make()
    model = matport.load(net)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    torch.manual_seed(0)  # the new head's initialisation
    returned = matport.reset_classifier(model, 5, ["a", "b", "c", "d", "e"])
    assert returned is model
    assert model.matport.class_names == ["a", "b", "c", "d", "e"]
    assert model.matport.num_classes == 5
    assert model.fc.weight.shape[0] == 5 and type(model.fc) is type(matport.load(net).fc)
    kept = {k for k in before if not k.startswith("fc.")}
    assert all(torch.equal(model.state_dict()[k], before[k]) for k in kept)
    x = model.matport.preprocess(torch.from_numpy(to_torch_layout(_raw(net, 10))).float())
    target = torch.arange(10) % 5
    losses = fine_tune(model, x, target, steps=60)  # nn.CrossEntropyLoss
    assert losses[-1] < 0.5 * losses[0]
    model.eval()
    save(model, tmp_path / "tuned.pt")  # the architecture follows the new head
    back = load_checkpoint(tmp_path / "tuned.pt")
    assert back.matport.class_names == ["a", "b", "c", "d", "e"]
    with torch.no_grad():
        torch.testing.assert_close(back(x), model(x))


def test_reset_classifier_default_names_and_probability_models() -> None:
    model = matport.reset_classifier(matport.load(_dlnetwork(), output="probabilities"), 2)
    assert model.matport.class_names == ["0", "1"]
    with torch.no_grad():
        out = model(torch.randn(3, 4))
    assert out.shape == (3, 2)
    torch.testing.assert_close(out.sum(1), torch.ones(3))  # MATLAB's softmax is kept


def test_reset_classifier_refuses_what_it_cannot_do() -> None:
    model = matport.load(_cnn())
    with pytest.raises(ArgumentError, match="positive"):
        matport.reset_classifier(model, 0)
    with pytest.raises(ArgumentError, match="2 entries for 3"):
        matport.reset_classifier(model, 3, ["a", "b"])
    with pytest.raises(ArgumentError, match="not built by matport"):
        matport.reset_classifier(nn.Linear(2, 2), 3)
    conv_head = chain(image_input("in", (4, 4, 1)), conv("conv", (1, 1), 1, 2),
                      simple("SoftmaxLayer", "sm"), simple("PixelClassificationLayer", "out"))
    with pytest.raises(ArgumentError, match=r"conv \(Convolution2DLayer\)"):
        matport.reset_classifier(matport.load(conv_head), 3)


def test_reset_classifier_of_a_torchvision_resnet50(tmp_path) -> None:
    from matport.synth.resnet50 import finetuned

    model = matport.load_resnet50(finetuned())
    body = model.layer4[2].conv3.weight.clone()
    matport.reset_classifier(model, 2, ["yes", "no"])
    assert isinstance(model.fc, nn.Linear) and model.fc.out_features == 2
    assert model.matport.class_names == ["yes", "no"]
    assert torch.equal(model.layer4[2].conv3.weight, body)
    save(model, tmp_path / "resnet.pt")
    back = load_checkpoint(tmp_path / "resnet.pt")
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(back(x), model(x), rtol=0, atol=0)
    assert back.matport.class_names == ["yes", "no"]
