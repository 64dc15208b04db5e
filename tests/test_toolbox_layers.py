"""MathWorks layer classes outside nnet.cnn.layer (Reinforcement Learning Toolbox, pretrained
networks, ONNX and Keras importers), each saved to a file, read back and converted, against a
reference written in MATLAB's layout from MathWorks' documented formula; the error messages
that tell MathWorks classes from classes users wrote; user-defined output (loss) layers."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch

from matport.convert.api import load
from matport.errors import ConversionError
from matport.network import read_network
from matport.network.encode import write_network
from matport.network.layout import to_matlab_layout, to_torch_layout
from matport.network.model import Layer, Network
from matport.synth.networks import RNG, chain, fc, feature_input, graph, image_input

torch.set_num_threads(1)
H, W, C, N = 4, 5, 6, 3


def _layer(cls: str, state: dict[str, np.ndarray] | None = None, **params: object) -> Layer:
    return Layer("x", cls, params=dict(params), state=state or {})


def _run(tmp_path: Path, net: Network, x: np.ndarray) -> np.ndarray:
    """Save, read back, convert and run on MATLAB-layout data; the output in MATLAB layout."""
    write_network(tmp_path / "net.mat", net)
    model = load(read_network(tmp_path / "net.mat"))
    with torch.no_grad():
        y = model(torch.from_numpy(to_torch_layout(x)).float()).numpy()
    return to_matlab_layout(y)


def _image(layer: Layer) -> Network:
    return chain(image_input("in", (H, W, C)), layer, kind="LayerGraph")


def _features(layer: Layer, c: int = C) -> Network:
    return chain(feature_input("in", c), layer, kind="LayerGraph")


def _x(*shape: int) -> np.ndarray:
    return RNG.standard_normal(shape).astype(np.float32)


def test_rl_scaling_layer_on_features(tmp_path: Path) -> None:
    scale, bias = _x(C, 1), np.array([[0.25]], np.float32)
    x = _x(C, N)
    net = _features(_layer("rl.layer.ScalingLayer", {"Scale": scale, "Bias": bias}))
    np.testing.assert_allclose(_run(tmp_path, net, x), scale * x + bias, rtol=1e-5, atol=1e-6)


def test_rl_scaling_layer_on_images(tmp_path: Path) -> None:
    scale, bias = _x(1, 1, C), _x(H, W, C)
    x = _x(H, W, C, N)
    net = _image(_layer("rl.layer.ScalingLayer", {"Scale": scale, "Bias": bias}))
    expected = scale[..., None] * x + bias[..., None]  # implicit expansion over N
    np.testing.assert_allclose(_run(tmp_path, net, x), expected, rtol=1e-5, atol=1e-6)


def test_scaling_factor_layer(tmp_path: Path) -> None:
    net = _image(_layer("nnet.inceptionresnetv2.layer.ScalingFactorLayer",
                        {"Scale": np.array([[0.17]])}))
    x = _x(H, W, C, N)
    np.testing.assert_allclose(_run(tmp_path, net, x), 0.17 * x, rtol=1e-5)


@pytest.mark.parametrize("do_offset", [True, False])
def test_onnx_elementwise_affine(tmp_path: Path, do_offset: bool) -> None:
    scale, offset = _x(H, W, C), _x(1, 1, C)
    net = _image(_layer("nnet.onnx.layer.ElementwiseAffineLayer",
                        {"Scale": scale, "Offset": offset}, DoScale=True, DoOffset=do_offset))
    x = _x(H, W, C, N)
    expected = x * scale[..., None] + (offset[..., None] if do_offset else 0)
    np.testing.assert_allclose(_run(tmp_path, net, x), expected, rtol=1e-5, atol=1e-6)


def test_rl_softplus(tmp_path: Path) -> None:
    x = _x(C, N) * 5
    net = _features(_layer("rl.layer.SoftplusLayer"))
    np.testing.assert_allclose(_run(tmp_path, net, x), np.log1p(np.exp(x)), rtol=1e-5)


@pytest.mark.parametrize("cls", ["rl.layer.QuadraticLayer", "nnet.cnn.layer.QuadraticLayer"])
def test_quadratic_layer(tmp_path: Path, cls: str) -> None:
    x = _x(3, N)
    u1, u2, u3 = x
    expected = np.stack([u1 * u1, u1 * u2, u2 * u2, u1 * u3, u2 * u3, u3 * u3])  # the docs' order
    net = chain(feature_input("in", 3), _layer(cls), fc("fc", 6, 2), kind="LayerGraph")
    w, b = net.layers[2].learnables["Weights"], net.layers[2].learnables["Bias"]
    np.testing.assert_allclose(_run(tmp_path, net, x), w @ expected + b, rtol=1e-4, atol=1e-5)


def test_channel_shuffling(tmp_path: Path) -> None:
    g = 3
    x = _x(H, W, C, N)
    # MathWorks' predict: reshape to [h w c/g g n], swap the channel dimensions, reshape back
    z = x.reshape(H, W, C // g, g, N, order="F").transpose(0, 1, 3, 2, 4)
    expected = z.reshape(H, W, C, N, order="F")
    net = _image(_layer("nnet.shufflenet.layer.ChannelShufflingLayer", Groups=g))
    np.testing.assert_array_equal(_run(tmp_path, net, x), expected)


def test_keras_flatten_c_style(tmp_path: Path) -> None:
    x = _x(H, W, C, N)
    expected = x.transpose(2, 1, 0, 3).reshape(H * W * C, N, order="F")  # C fastest
    net = _image(_layer("nnet.keras.layer.FlattenCStyleLayer"))
    np.testing.assert_array_equal(_run(tmp_path, net, x), expected)


def test_keras_zero_padding(tmp_path: Path) -> None:
    x = _x(H, W, C, N)
    expected = np.zeros((H + 3, W + 1, C, N), np.float32)
    expected[1:1 + H, 0:W] = x
    net = _image(_layer("nnet.keras.layer.ZeroPadding2dLayer", Top=1, Bottom=2, Left=0,
                        Right=1))
    np.testing.assert_array_equal(_run(tmp_path, net, x), expected)


@pytest.mark.parametrize("cls", ["nnet.keras.layer.GlobalAveragePooling2dLayer",
                                 "nnet.onnx.layer.GlobalAveragePooling2dLayer"])
def test_importer_global_average_pooling(tmp_path: Path, cls: str) -> None:
    x = _x(H, W, C, N)
    np.testing.assert_allclose(_run(tmp_path, _image(_layer(cls)), x),
                               x.mean(axis=(0, 1), keepdims=True), rtol=1e-5, atol=1e-6)


def test_onnx_identity(tmp_path: Path) -> None:
    x = _x(H, W, C, N)
    np.testing.assert_array_equal(
        _run(tmp_path, _image(_layer("nnet.onnx.layer.IdentityLayer")), x), x)


def _reasons(net: Network) -> dict[str, str]:
    with pytest.raises(ConversionError) as info:
        load(net)
    return {name: reason for name, _, reason in info.value.layers}


def test_messages_tell_mathworks_classes_from_user_classes() -> None:
    net = chain(feature_input("in", 3), Layer("mw", "nnet.foo.layer.BarLayer"),
                Layer("mine", "myproject.BarLayer"), fc("fc", 3, 2))
    reasons = _reasons(net)
    assert "a MathWorks class matport does not convert yet" in reasons["mw"]
    assert "a class the user wrote" in reasons["mine"]


def _with_loss(kind: str) -> Network:
    loss = Layer("loss", "myproject.WeightedClassificationLayer",
                 params={"ClassWeights": (1.0, 3.0)})
    net = chain(feature_input("in", 4), fc("fc", 4, 2), loss, kind=kind)
    return net


def test_terminal_user_loss_layer_is_recorded(tmp_path: Path,
                                              caplog: pytest.LogCaptureFixture) -> None:
    write_network(tmp_path / "net.mat", _with_loss("SeriesNetwork"))
    net = read_network(tmp_path / "net.mat")
    with caplog.at_level(logging.INFO, logger="matport"):
        model = load(net)
    assert model.loss_layers == [{
        "name": "loss", "class_name": "myproject.WeightedClassificationLayer",
        "properties": {"ClassWeights": [[1.0, 3.0]]}}]
    assert "loss" in caplog.text and "WeightedClassificationLayer" in caplog.text
    x = _x(4, N)
    fc_layer = net.layers[1]
    expected = fc_layer.learnables["Weights"] @ x + fc_layer.learnables["Bias"]
    with torch.no_grad():
        y = model(torch.from_numpy(to_torch_layout(x))).numpy()
    np.testing.assert_allclose(to_matlab_layout(y), expected, rtol=1e-5, atol=1e-6)


def test_user_layers_elsewhere_still_need_a_converter() -> None:
    assert "loss" in _reasons(_with_loss("LayerGraph"))  # not assembled: not known to be a loss
    net = graph([feature_input("in", 4), Layer("mid", "myproject.ScaleLayer"), fc("fc", 4, 2)],
                ["in -> mid", "mid -> fc"])
    assert sorted(_reasons(net)) == ["mid"]


def test_quadratic_layer_on_a_vector_stored_as_an_image(tmp_path: Path) -> None:
    x = _x(3, 1, 1, N)  # imageInputLayer([3 1 1]), as older RL actors and critics take
    u1, u2, u3 = x[:, 0, 0]
    expected = np.stack([u1 * u1, u1 * u2, u2 * u2, u1 * u3, u2 * u3, u3 * u3])
    net = chain(image_input("in", (3, 1, 1)), _layer("rl.layer.QuadraticLayer"),
                kind="LayerGraph")
    np.testing.assert_allclose(_run(tmp_path, net, x), expected, rtol=1e-5)
    wide = chain(image_input("in", (3, 2, 1)), _layer("rl.layer.QuadraticLayer"))
    assert "needs a vector input" in _reasons(wide)["x"]
