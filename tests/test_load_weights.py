"""How ``matport.load`` builds a model (issue 14): no initialiser runs, every tensor owns exactly
its memory, and the module compiles as one graph. Outputs are checked against the independent
reference forward pass."""

from __future__ import annotations

import inspect

import pytest
import torch
from torch import nn

from matport.convert.api import load
from matport.convert.layers.params import assign, make, on_meta
from matport.synth.layer_cases import CASES
from matport.synth.networks import to_torch_layout
from tests.support.layer_check import _matlab_input, check_against_reference
from tests.support.paths import corpus_file

CORPUS_NETWORKS = [
    "ccnmaastricht__Object_recognition/net.mat",
    "JaumeSanCol__Computer_Vision-RAG_for_recycling/CV__ModeloReciclarIA_Entrenado.mat",
    "Nisitka__AllMatLab/newNet.mat",
    "georgeb20__georgeb20/squeezenet.mat",
    "Fuma28__speech_commands/trainedNet.mat",
    "AgoroAkorede__LSTM/net.mat",
    "AgoroAkorede__LSTM/gru_ph_model.mat",
    "matlab-deep-learning__Industrial-Machinery-Anomaly-Detection/Results__TrainedNetwork.mat",
]
INITIALISERS = [name for name, fn in inspect.getmembers(nn.init, inspect.isfunction)
                if not name.startswith("_") and name.endswith("_")]


@pytest.fixture
def no_initialisers(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every ``torch.nn.init`` initialiser raises (torch's modules call them through the
    module ``torch.nn.init``)."""
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("an initialiser ran")

    for name in INITIALISERS:
        monkeypatch.setattr(nn.init, name, refuse)


@pytest.mark.parametrize("case", sorted(CASES))
def test_no_initialiser_runs_and_outputs_match(case: str, no_initialisers: None) -> None:
    rng_state = torch.random.get_rng_state()
    check_against_reference(CASES[case](), batch=2)  # loads the model: no init, same outputs
    assert torch.equal(torch.random.get_rng_state(), rng_state)  # nothing drew random numbers


def _assert_owns_exactly_its_memory(model: nn.Module) -> None:
    tensors = [*model.named_parameters(), *model.named_buffers()]
    assert tensors
    for name, t in tensors:
        assert t.untyped_storage().nbytes() == t.numel() * t.element_size(), name


@pytest.mark.parametrize("case", sorted(CASES))
def test_layer_case_tensors_own_exactly_their_memory(case: str) -> None:
    model = load(CASES[case]())
    if any(True for _ in model.parameters()) or any(True for _ in model.buffers()):
        _assert_owns_exactly_its_memory(model)


@pytest.mark.parametrize("relative", CORPUS_NETWORKS)
def test_corpus_tensors_own_exactly_their_memory(relative: str, no_initialisers: None) -> None:
    _assert_owns_exactly_its_memory(load(corpus_file(relative)))


RECURRENT = ["lstm_sequence", "lstm_last", "lstm_stacked_zero_state", "bilstm_sequence",
             "bilstm_last", "gru_sequence", "gru_last", "gru_recurrent_bias",
             "lstm_projected_last"]
COMPILED = ["conv_same_stride2", "conv_pad_reflect", "addition_concat_gap_fc",
            "fc_after_spatial_4d_weights", "batchnorm_image", "max_unpooling_padded",
            "layernorm_sequence", "transformer_causal", *RECURRENT]


def _inputs(case: str) -> tuple[nn.Module, list[torch.Tensor]]:
    network = CASES[case]()
    model = load(network)
    return model, [model.matport.preprocess(torch.from_numpy(to_torch_layout(
        _matlab_input(lay, 2))).float()) for lay in network.input_layers]


@pytest.mark.parametrize("case", COMPILED)
def test_torch_compile_fullgraph(case: str) -> None:
    model, inputs = _inputs(case)
    torch._dynamo.reset()
    # fails on a graph break; aot_eager traces through AOT autograd as inductor does
    compiled = torch.compile(model, fullgraph=True, backend="aot_eager")
    with torch.no_grad():
        torch.testing.assert_close(compiled(*inputs), model(*inputs))


@pytest.mark.parametrize("case", RECURRENT)
def test_torch_compile_fullgraph_trains(case: str) -> None:
    """With autograd recording, the compiled recurrence (the cell equations unrolled) gives the
    eager model's outputs (torch's fused kernel) and gradients."""
    model, inputs = _inputs(case)
    inputs = [x.requires_grad_() for x in inputs]
    torch._dynamo.reset()
    compiled = torch.compile(model, fullgraph=True, backend="aot_eager")
    got, want = compiled(*inputs), model(*inputs)
    torch.testing.assert_close(got, want)
    weights = torch.randn_like(want)  # a loss that weighs every output differently
    tensors = [*inputs, *model.parameters()]
    for g, w in zip(torch.autograd.grad((got * weights).sum(), tensors),
                    torch.autograd.grad((want * weights).sum(), tensors), strict=True):
        torch.testing.assert_close(g, w)


def test_module_copies_are_independent_and_equal_to_built_ones() -> None:
    """``make`` and ``on_meta`` copy a prototype built once per arguments: each copy is its own
    module (its tensors, hooks and attributes), equal to one built directly."""
    a = on_meta(nn.Conv2d, 3, 4, (3, 3), (1, 1), (1, 1), (1, 1), 1)
    b = on_meta(nn.Conv2d, 3, 4, (3, 3), (1, 1), (1, 1), (1, 1), 1)
    assert a is not b and a.__dict__.keys() == b.__dict__.keys()
    assign(a, {"weight": torch.ones(4, 3, 3, 3), "bias": torch.zeros(4)})
    assert b.weight.is_meta and b.bias.is_meta  # b's tensors are untouched
    a.register_forward_hook(lambda *args: None)
    a.stride = (2, 2)
    assert not b._forward_hooks and b.stride == (1, 1)
    direct = nn.MaxPool2d((3, 3), (2, 2), padding=(1, 1))
    copied = make(nn.MaxPool2d, (3, 3), (2, 2), padding=(1, 1))
    assert type(copied) is nn.MaxPool2d and repr(copied) == repr(direct)
    assert {k: v for k, v in copied.__dict__.items() if not isinstance(v, dict | set)} == {
        k: v for k, v in direct.__dict__.items() if not isinstance(v, dict | set)}
    x = torch.randn(1, 2, 7, 7)
    torch.testing.assert_close(copied(x), direct(x))


def test_module_prototypes_tell_apart_what_equality_does_not() -> None:
    assert type(make(nn.Dropout, 1).p) is int and type(make(nn.Dropout, 1.0).p) is float
    assert str(make(nn.Hardtanh, -0.0, 6.0).min_val) == "-0.0"
    assert str(make(nn.Hardtanh, 0.0, 6.0).min_val) == "0.0"


class _OwnBuffer(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("state", torch.zeros(2))


def test_modules_with_real_tensors_are_built_each_time() -> None:
    a, b = make(_OwnBuffer), make(_OwnBuffer)
    a.state += 1
    assert b.state.sum() == 0


def test_assign_runs_global_registration_hooks() -> None:
    """``assign`` stores tensors directly only while torch has no global parameter or buffer
    registration hook: with one, the hook sees every tensor."""
    seen: list[str] = []

    def hook(module: nn.Module, name: str, tensor: torch.Tensor) -> None:
        seen.append(name)

    bn = on_meta(nn.BatchNorm2d, 2)
    values = {"weight": torch.ones(2), "bias": torch.zeros(2), "running_mean": torch.ones(2),
              "running_var": torch.ones(2), "num_batches_tracked": torch.tensor(0)}
    handles = [nn.modules.module.register_module_parameter_registration_hook(hook),
               nn.modules.module.register_module_buffer_registration_hook(hook)]
    try:
        assign(bn, values)
    finally:
        for handle in handles:
            handle.remove()
    assert seen == list(values)
    assert bn.weight.tolist() == [1.0, 1.0] and bn.running_mean.tolist() == [1.0, 1.0]
    assert isinstance(bn.weight, nn.Parameter) and bn.weight.requires_grad


def test_loaded_model_is_in_eval_mode_throughout() -> None:
    """Every submodule of a loaded network, nested ones too (an LSTM's ``rnn``), is in eval
    mode, and ``train()`` switches them all back."""
    model = load(corpus_file("AgoroAkorede__LSTM/net.mat"))
    assert not any(m.training for m in model.modules())
    assert all(m.training for m in model.train().modules())
