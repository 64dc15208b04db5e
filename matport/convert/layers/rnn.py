"""Single-layer, batch-first LSTM and GRU modules that ``torch.compile(fullgraph=True)`` traces.

Dynamo refuses ``nn.LSTM`` / ``nn.GRU`` / ``nn.RNN`` instances (a graph break unless the
experimental ``torch._dynamo.config.allow_rnn`` is set), so these subclass ``nn.RNNBase``
directly: the same parameters under the same names (``weight_ih_l0``, ``weight_hh_l0``,
``bias_ih_l0``, ``bias_hh_l0``, ``*_reverse``), the same ``state_dict``, the same attributes
(``input_size``, ``hidden_size``, ``bidirectional``, ...) and cuDNN weight flattening, and the
same call (``(output, (h_n, c_n))`` / ``(output, h_n)``).

The recurrence runs in torch's fused kernel (``torch.lstm`` / ``torch.gru``, what ``nn.LSTM``
calls, without its argument checks), in eager mode and in compiled graphs without autograd:
no per-step Python overhead at batch 1. A compiled graph that records autograd gets the cell
equations as plain tensor operations, one time step after another, instead: in torch 2.14 AOT
autograd cannot trace the backward of the fused CPU (mkldnn) LSTM; the GRU follows the same rule.
The unrolled loop specializes the graph on the sequence length.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from torch.nn import functional as F

State = tuple[torch.Tensor, ...]  # (h, c) for an LSTM, (h,) for a GRU; each N x H
Cell = Callable[[torch.Tensor, State, torch.Tensor, torch.Tensor], State]


class LSTM(nn.RNNBase):
    """``nn.LSTM(input_size, hidden_size, batch_first=True, bidirectional=...)`` as a module
    Dynamo traces (see the module docstring); input ``N x T x C``."""

    def __init__(self, input_size: int, hidden_size: int, bidirectional: bool = False,
                 device: torch.device | str | None = None) -> None:
        super().__init__("LSTM", input_size, hidden_size, batch_first=True,
                         bidirectional=bidirectional, device=device)

    def forward(self, x: torch.Tensor, hx: tuple[torch.Tensor, torch.Tensor] | None = None
                ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        h0, c0 = hx if hx is not None else (_zeros(self, x), _zeros(self, x))
        if _unrolled():
            out, (h_n, c_n) = _unroll(self, x, (h0, c0), _lstm_cell)
            return out, (h_n, c_n)
        out, h_n, c_n = torch.lstm(x, (h0, c0), _weights(self), True, 1, 0.0, self.training,
                                   self.bidirectional, True)
        return out, (h_n, c_n)


class GRU(nn.RNNBase):
    """``nn.GRU(input_size, hidden_size, batch_first=True, bidirectional=...)`` as a module
    Dynamo traces (see the module docstring); input ``N x T x C``."""

    def __init__(self, input_size: int, hidden_size: int, bidirectional: bool = False,
                 device: torch.device | str | None = None) -> None:
        super().__init__("GRU", input_size, hidden_size, batch_first=True,
                         bidirectional=bidirectional, device=device)

    def forward(self, x: torch.Tensor, hx: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
        h0 = hx if hx is not None else _zeros(self, x)
        if _unrolled():
            out, (h_n,) = _unroll(self, x, (h0,), _gru_cell)
            return out, h_n
        return torch.gru(x, h0, _weights(self), True, 1, 0.0, self.training,
                         self.bidirectional, True)


def _unrolled() -> bool:
    """Whether to run the cell equations step by step: while a graph that records autograd is
    being compiled."""
    return torch.compiler.is_compiling() and torch.is_grad_enabled()


def _weights(rnn: nn.RNNBase) -> list[torch.Tensor]:
    """The parameters in ``torch.lstm`` / ``torch.gru`` order, read by name (as they are now,
    whatever replaced them)."""
    return [getattr(rnn, name) for name in rnn._flat_weights_names]


def _zeros(rnn: nn.RNNBase, x: torch.Tensor) -> torch.Tensor:
    return x.new_zeros(2 if rnn.bidirectional else 1, x.shape[0], rnn.hidden_size)


def _unroll(rnn: nn.RNNBase, x: torch.Tensor, initial: State,
            cell: Cell) -> tuple[torch.Tensor, State]:
    """The recurrence as tensor operations: every direction from its initial state (each
    ``directions x N x H``), outputs concatenated along the features (forward first, as
    ``torch.lstm``), final states stacked along the first dimension. The input term of every
    time step is one matrix product; an LSTM's recurrent bias joins it (it adds to every gate
    alike), a GRU's stays with the recurrent term, which its reset gate scales."""
    weights = _weights(rnn)
    outputs, finals = [], []
    for d in range(2 if rnn.bidirectional else 1):
        w_ih, w_hh, b_ih, b_hh = weights[4 * d: 4 * d + 4]
        projected = F.linear(x, w_ih, b_ih + b_hh if rnn.mode == "LSTM" else b_ih)
        state = tuple(s[d] for s in initial)
        steps = range(x.shape[1] - 1, -1, -1) if d else range(x.shape[1])
        hidden = []
        for t in steps:
            state = cell(projected[:, t], state, w_hh, b_hh)
            hidden.append(state[0])
        outputs.append(torch.stack(hidden[::-1] if d else hidden, 1))
        finals.append(state)
    return torch.cat(outputs, 2), tuple(torch.stack(s) for s in zip(*finals, strict=True))


def _lstm_cell(x_term: torch.Tensor, state: State, w_hh: torch.Tensor,
               b_hh: torch.Tensor) -> State:
    """One LSTM step, gates (i, f, g, o) as in ``nn.LSTM`` and MATLAB (``b_hh`` is already in
    ``x_term``)."""
    h, c = state
    i, f, g, o = torch.addmm(x_term, h, w_hh.t()).chunk(4, 1)
    c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    return torch.sigmoid(o) * torch.tanh(c), c


def _gru_cell(x_term: torch.Tensor, state: State, w_hh: torch.Tensor,
              b_hh: torch.Tensor) -> State:
    """One GRU step, gates (r, z, n) as in ``nn.GRU`` and MATLAB's 'after-multiplication'
    reset: the reset gate scales the recurrent term including its bias."""
    (h,) = state
    x_r, x_z, x_n = x_term.chunk(3, 1)
    h_r, h_z, h_n = torch.addmm(b_hh, h, w_hh.t()).chunk(3, 1)
    r = torch.sigmoid(x_r + h_r)
    z = torch.sigmoid(x_z + h_z)
    n = torch.tanh(x_n + r * h_n)
    return (n + z * (h - n),)
