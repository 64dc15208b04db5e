"""LSTM, projected LSTM, BiLSTM and GRU layers.

PyTorch's gate order is MATLAB's (LSTM i, f, g, o; GRU r, z, n), so the weights are copied as they
are; only ONNX reorders gates (see ``LayerSpec.gate_order``). The recurrence is :mod:`.rnn`'s
``nn.LSTM`` / ``nn.GRU`` stand-in, which ``torch.compile(fullgraph=True)`` traces.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from matport.convert.layers import rnn
from matport.convert.layers.params import (
    array,
    assign,
    on_meta,
    refuse_flags,
    require_format,
    tensor,
    text,
)
from matport.convert.layers.registry import ConversionContext, converts
from matport.errors import LayerNotConvertible
from matport.network import layout
from matport.network.model import Layer
from matport.network.specs import SEQUENCE, returns_sequence


class _Recurrent(nn.Module):
    """A batch-first LSTM / GRU (attribute ``rnn``: :class:`.rnn.LSTM` / :class:`.rnn.GRU`,
    with ``nn.LSTM``'s / ``nn.GRU``'s parameters and call) started from stored initial
    states (buffers ``initial_hidden`` / ``initial_cell``, one row per direction), returning
    the whole sequence (``N x T x C``) or, in MATLAB's 'last' mode, the final hidden state of
    each direction (``N x C``): the last time step's output for a forward layer; for a BiLSTM
    the forward state after step T beside the backward state after step 1 (as Keras'
    ``Bidirectional(return_sequences=False)``, to which MATLAB exports it)."""

    initial_hidden: torch.Tensor
    initial_cell: torch.Tensor | None

    def __init__(self, recurrence: rnn.LSTM | rnn.GRU, return_sequence: bool,
                 initial_hidden: np.ndarray, initial_cell: np.ndarray | None) -> None:
        super().__init__()
        self.rnn: rnn.LSTM | rnn.GRU = recurrence
        self.return_sequence = return_sequence
        self.register_buffer("initial_hidden", tensor(initial_hidden)[:, None, :])
        if initial_cell is not None:
            self.register_buffer("initial_cell", tensor(initial_cell)[:, None, :])
        else:
            self.initial_cell = None

    def extra_repr(self) -> str:
        return f"output_mode={'sequence' if self.return_sequence else 'last'}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h0 = self.initial_hidden.expand(-1, x.shape[0], -1).contiguous()
        if self.initial_cell is not None:
            c0 = self.initial_cell.expand(-1, x.shape[0], -1).contiguous()
            out, (h_n, _) = self.rnn(x, (h0, c0))
        else:
            out, h_n = self.rnn(x, h0)
        if self.return_sequence:
            return out
        return h_n.transpose(0, 1).flatten(1)  # final state of each direction: N x (dirs * H)


class LSTM(_Recurrent):
    """MATLAB LSTMLayer / BiLSTMLayer as a batch-first LSTM (attribute ``rnn``; gate order
    i, f, g, o as in MATLAB; MATLAB's single bias is ``bias_ih``, ``bias_hh`` is zero).

    A MATLAB LSTMProjectedLayer becomes this too: its recurrence sees the hidden state projected
    by ``OutputProjector`` and the input projected by ``InputProjector``, which is exactly an
    LSTM with ``weight_ih = InputWeights @ InputProjector.T`` and
    ``weight_hh = RecurrentWeights @ OutputProjector.T`` (the factors are multiplied out)."""


class GRU(_Recurrent):
    """MATLAB GRULayer as a batch-first GRU (attribute ``rnn``; gate order r, z, n as in
    MATLAB; ``bias_hh`` is zero, or MATLAB's recurrent bias with ResetGateMode
    'recurrent-bias-after-multiplication')."""


def _check_recurrent(layer: Layer, context: ConversionContext) -> None:
    require_format(context, SEQUENCE)
    for key, expected in (("StateActivationFunction", "tanh"),
                          ("GateActivationFunction", "sigmoid")):
        if text(layer, key, expected) != expected:
            raise LayerNotConvertible(f"{key} '{text(layer, key, expected)}'")
    refuse_flags(layer, "HasStateInputs", "HasStateOutputs")


def _initial_state(layer: Layer, keys: Sequence[str], directions: int, size: int) -> np.ndarray:
    stored = next((a for a in (layer.array(k) for k in keys) if a is not None), None)
    return layout.initial_state(stored, directions, size)


@converts("LSTMLayer", "LSTMProjectedLayer", "BiLSTMLayer")
def _lstm(layer: Layer, context: ConversionContext) -> nn.Module:
    _check_recurrent(layer, context)
    w_in = array(layer, "InputWeights")
    w_rec = array(layer, "RecurrentWeights")
    bias = layout.channel_vector(array(layer, "Bias"))
    if layer.type == "LSTMProjectedLayer":  # the same function as an LSTM with these weights
        w_in = w_in @ array(layer, "InputProjector").T
        w_rec = w_rec @ array(layer, "OutputProjector").T
    bidirectional = layer.type == "BiLSTMLayer"
    dirs = 2 if bidirectional else 1
    hidden = w_rec.shape[1]
    lstm = on_meta(rnn.LSTM, w_in.shape[1], hidden, bidirectional=bidirectional)
    rows = 4 * hidden
    values: dict[str, np.ndarray] = {}
    for d, suffix in enumerate(["_l0", "_l0_reverse"][:dirs]):
        block = slice(d * rows, (d + 1) * rows)
        values.update({"weight_ih" + suffix: w_in[block], "weight_hh" + suffix: w_rec[block],
                       "bias_ih" + suffix: bias[block],
                       "bias_hh" + suffix: np.zeros(rows, np.float32)})
    assign(lstm, values)
    h0 = _initial_state(layer, ("HiddenState", "InitialHiddenState"), dirs, hidden)
    c0 = _initial_state(layer, ("CellState", "InitialCellState"), dirs, hidden)
    return LSTM(lstm, returns_sequence(layer), h0, c0)


@converts("GRULayer")
def _gru(layer: Layer, context: ConversionContext) -> nn.Module:
    _check_recurrent(layer, context)
    w_in = array(layer, "InputWeights")
    w_rec = array(layer, "RecurrentWeights")
    bias = layout.channel_vector(array(layer, "Bias"))
    hidden = w_rec.shape[1]
    mode = text(layer, "ResetGateMode", "after-multiplication")
    if mode == "before-multiplication":
        raise LayerNotConvertible("ResetGateMode 'before-multiplication' has no nn.GRU equivalent")
    gru = on_meta(rnn.GRU, w_in.shape[1], hidden)
    recurrent_bias = (bias[3 * hidden:] if mode == "recurrent-bias-after-multiplication"
                      else np.zeros(3 * hidden, np.float32))
    assign(gru, {"weight_ih_l0": w_in, "weight_hh_l0": w_rec, "bias_ih_l0": bias[: 3 * hidden],
                 "bias_hh_l0": recurrent_bias})
    h0 = _initial_state(layer, ("HiddenState", "InitialHiddenState"), 1, hidden)
    return GRU(gru, returns_sequence(layer), h0, None)
