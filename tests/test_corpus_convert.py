"""``matport.load`` on the real networks of ``../shared/corpus`` (skipped when it is absent).

References, all independent of the converter: onnxruntime on MATLAB's own ONNX export
(ccnmaastricht, JaumeSanCol), the predictions MATLAB stored beside the network
(Giraud-Pierre's Burgers PINN), and the numpy reference forward pass for the rest.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from matport.convert.api import load
from matport.errors import ConversionError
from matport.network.model import Network, Normalization
from matport.synth.networks import to_matlab_layout, to_torch_layout
from tests.support.paths import corpus_file
from tests.support.reference_forward import LAYERS, network_outputs, reference_forward

torch.set_num_threads(1)
read_network = pytest.importorskip("matport.network").read_network

RNG = np.random.default_rng(7)

# file, variable, spatial size to feed instead of InputSize (fully convolutional networks)
CONVERTIBLE = [
    ("AgoroAkorede__LSTM/gru_ph_model.mat", None, None),
    ("AgoroAkorede__LSTM/lstm_ph_model.mat", None, None),
    ("AgoroAkorede__LSTM/net.mat", None, None),
    ("DigBigPigForU__NeREF_pipeline/NeREF.mat", None, None),
    ("Fuma28__speech_commands/trainedNet.mat", None, None),
    ("Giraud-Pierre__PINN_for_SEDMES/"
     "results__AdsorptionExercise__AnalyticalSolutions__AnalyticalSolutionCgCsInOneModel.mat",
     None, None),
    ("Giraud-Pierre__PINN_for_SEDMES/results__BurgersEquation__BurgersPINN.mat", None, None),
    ("HarkiratG__Neural-Net-Face-Recognition/convnet.mat", None, None),
    ("KantikaAscendas__Workshop-EmbeddedAI-with-MBD/"
     "Part_1_AI_modeling__models__DLmodel_ref_stackedLSTM_Projected.mat", None, None),
    ("Nisitka__AllMatLab/newNet.mat", None, (48, 64)),
    ("TomBennett2202__NeuroOrganoidAnalysis/trainedNetwork.mat", None, None),
    ("ccnmaastricht__Object_recognition/net.mat", None, None),
    ("igreen1__digit_learning/trainedNet.mat", "trainedNet", None),
    ("matlab-deep-learning__Industrial-Machinery-Anomaly-Detection/Results__TrainedNetwork.mat",
     None, None),
    ("matlab-deep-learning__transformer-networks-for-time-series-prediction/"
     "transformer_demo.mat", None, None),
    ("spectrum-sensing__cnn-spectrum-sensing/trainedNet.mat", None, None),
]


def _raw_inputs(network: Network, spatial: tuple[int, int] | None, batch: int = 2):
    """Random raw data in MATLAB layout for every input layer (0-255 for images)."""
    raws = []
    for lay in network.input_layers:
        size = tuple(int(s) for s in lay.params["InputSize"])
        if lay.type == "ImageInputLayer":
            shape = (spatial or size[:2]) + size[2:]
            raws.append(RNG.uniform(0, 255, shape + (batch,)))
        elif lay.type == "FeatureInputLayer":
            raws.append(RNG.uniform(-1, 1, size + (batch,)))
        else:
            raws.append(RNG.uniform(-1, 1, size + (batch, 6)))
    return raws


def _compare(got: np.ndarray, want: np.ndarray, classifier: bool) -> None:
    assert got.shape == want.shape
    scale = float(np.abs(want).max()) or 1.0
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * scale)
    if classifier:
        axis = 2 if want.ndim == 4 else 0
        np.testing.assert_array_equal(got.argmax(axis=axis), want.argmax(axis=axis))


@pytest.mark.parametrize("relative, variable, spatial", CONVERTIBLE,
                         ids=[c[0].split("/")[0] + "/" + c[0].split("__")[-1]
                              for c in CONVERTIBLE])
def test_corpus_network_matches_numpy_reference(relative, variable, spatial) -> None:
    network = read_network(corpus_file(relative), variable)
    if spatial is not None:  # the per-channel mean applies to any image size
        assert network.input_layers[0].normalization.mean.shape[:2] == (1, 1)
    raws = _raw_inputs(network, spatial)
    expected = network_outputs(network, reference_forward(network, raws))
    model = load(network, output="probabilities")  # MATLAB's outputs
    info = model.matport
    with torch.no_grad():
        out = model(*(info.preprocess(torch.from_numpy(to_torch_layout(r)).float())
                      for r in raws))
    outs = out if isinstance(out, tuple) else (out,)
    for got, want in zip(outs, expected, strict=True):
        got_m = to_matlab_layout(got.numpy())
        want = np.squeeze(want, axis=(0, 1)) if want.ndim == 4 and got_m.ndim == 2 else want
        _compare(got_m, want, classifier=info.class_names is not None)


def test_burgers_pinn_reproduces_matlab_predictions() -> None:
    from matport.mat import read

    path = corpus_file("Giraud-Pierre__PINN_for_SEDMES/results__BurgersEquation__BurgersPINN.mat")
    data = read(path)
    model = load(path)
    x = torch.from_numpy(np.concatenate([data["X"], data["T"]]).T.astype(np.float32))
    with torch.no_grad():
        got = model(model.matport.preprocess(x)).numpy().ravel()
    want = np.asarray(data["Upredict"], dtype=np.float32).ravel()
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * np.abs(want).max())


@pytest.mark.parametrize("relative, onnx_name", [
    ("ccnmaastricht__Object_recognition/net.mat", "ccnmaastricht__Object_recognition/net.onnx"),
    ("JaumeSanCol__Computer_Vision-RAG_for_recycling/CV__ModeloReciclarIA_Entrenado.mat",
     "JaumeSanCol__Computer_Vision-RAG_for_recycling/CV__cv_reciclaria.onnx"),
])
def test_corpus_network_matches_matlab_onnx_export(relative: str, onnx_name: str) -> None:
    ort = pytest.importorskip("onnxruntime")
    model = load(corpus_file(relative), output="probabilities")
    session = ort.InferenceSession(str(corpus_file(onnx_name)), providers=["CPUExecutionProvider"])
    h, w, c = model.matport.input_size
    raw = RNG.uniform(0, 255, (1, c, h, w)).astype(np.float32)  # MATLAB's raw pixels, NCHW
    want = session.run(None, {session.get_inputs()[0].name: raw})[0].reshape(1, -1)
    with torch.no_grad():
        got = model(model.matport.preprocess(torch.from_numpy(raw))).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * np.abs(want).max())
    assert got.argmax() == want.argmax()
    assert len(model.matport.class_names) == want.shape[1]


def test_function_layers_are_listed() -> None:
    path = corpus_file("pac48__latent-control-idea/TFNet__TFNetPretrained.mat")
    with pytest.raises(ConversionError) as info:
        load(path)
    kinds = {cls for _, cls, _ in info.value.layers}
    assert kinds == {"nnet.cnn.layer.FunctionLayer"} and len(info.value.layers) == 6


@pytest.mark.parametrize("variable", ["lgraph", "lgraph_1", "mygraph"])
def test_untrained_layer_graph_is_listed(variable: str) -> None:
    path = corpus_file("korniarp__ML_DQN/lgraph.mat")
    network = read_network(path, variable)
    with pytest.raises(ConversionError) as info:
        load(network)
    listed = {name for name, _, reason in info.value.layers if "untrained" in reason}
    expected = {lay.name for lay in network.layers
                if lay.type in ("FullyConnectedLayer", "Convolution2DLayer")}
    assert listed == expected and expected


def test_user_defined_layers_listed_then_registered(monkeypatch: pytest.MonkeyPatch) -> None:
    path = corpus_file(
        "matlab-deep-learning__Abnormal-EEG-Signal-Classification-Using-CNNs/eegNet.mat")
    network = read_network(path)
    with pytest.raises(ConversionError) as info:
        load(network)
    assert {cls for _, cls, _ in info.value.layers} == {"identityLayer"}
    assert len(info.value.layers) == 4
    model = load(network, output="probabilities",
                 converters={"identityLayer": lambda layer, ctx: torch.nn.Identity()})
    monkeypatch.setitem(LAYERS, "identityLayer", lambda layer, x: x)
    network.input_layers[0].normalization = Normalization()
    raw = RNG.uniform(-1, 1, (21, 6000, 1, 2))
    want = network_outputs(network, reference_forward(network, [raw]))[0]
    with torch.no_grad():
        got = to_matlab_layout(model(torch.from_numpy(to_torch_layout(raw)).float()).numpy())
    _compare(got, want, classifier=True)
