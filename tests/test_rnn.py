"""matport's ``nn.LSTM`` / ``nn.GRU`` stand-ins (:mod:`matport.convert.layers.rnn`): the same
parameters, ``state_dict`` and outputs as the stock modules (the reference), eager and compiled
as one graph, with and without autograd, for any sequence length."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from matport.convert.layers import rnn

KINDS = [(rnn.LSTM, nn.LSTM), (rnn.GRU, nn.GRU)]


def _pair(kind: tuple[type[nn.RNNBase], type[nn.RNNBase]],
          bidirectional: bool) -> tuple[nn.Module, nn.Module]:
    ours, stock = kind
    reference = stock(3, 4, batch_first=True, bidirectional=bidirectional)
    module = ours(3, 4, bidirectional=bidirectional)
    module.load_state_dict(reference.state_dict())  # strict: the same keys and shapes
    return module, reference


def _initial(module: nn.Module, batch: int) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    shape = (2 if module.bidirectional else 1, batch, module.hidden_size)
    return (torch.randn(shape), torch.randn(shape)) if module.mode == "LSTM" else torch.randn(shape)


@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("kind", KINDS, ids=["lstm", "gru"])
def test_same_state_dict_and_outputs_as_the_stock_module(kind, bidirectional: bool) -> None:
    module, reference = _pair(kind, bidirectional)
    assert list(module.state_dict()) == list(reference.state_dict())
    assert repr(module).split("(", 1)[1] == repr(reference).split("(", 1)[1]
    kind[1](3, 4, batch_first=True, bidirectional=bidirectional).load_state_dict(
        module.state_dict())  # and back into the stock module
    x = torch.randn(2, 5, 3)
    hx = _initial(module, 2)
    with torch.no_grad():
        torch.testing.assert_close(module(x, hx), reference(x, hx))
        torch.testing.assert_close(module(x), reference(x))


@pytest.mark.parametrize("grad", [False, True], ids=["inference", "autograd"])
@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("kind", KINDS, ids=["lstm", "gru"])
def test_compiles_as_one_graph_for_any_length(kind, bidirectional: bool, grad: bool) -> None:
    module, reference = _pair(kind, bidirectional)
    torch._dynamo.reset()
    compiled = torch.compile(module, fullgraph=True, backend="aot_eager")
    with torch.set_grad_enabled(grad):
        for steps in (5, 7, 1):  # a new length recompiles (the unrolled loop) or is dynamic
            x = torch.randn(2, steps, 3)
            hx = _initial(module, 2)
            torch.testing.assert_close(compiled(x, hx), reference(x, hx))
