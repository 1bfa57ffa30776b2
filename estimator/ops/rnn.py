"""Recurrent layers: LSTM, GRU, RNN (default activations).

macs = seq_len * batch * num_directions * gates * hidden * (input + hidden): every step
multiplies the input (W, gates*hidden x input) and the previous hidden state (R,
gates*hidden x hidden) by the gate weights. Gates: LSTM 4, GRU 3, RNN 1.
non_mac_ops = seq_len * batch * num_directions * hidden * per_unit, per_unit given by each
function (element-wise gate arithmetic; sigmoid = 3 ops and tanh = 1, as in elementwise.py).
Initial states, sequence_lens masking and clip are ignored.
"""

from __future__ import annotations

from .base import OpContext, OpCost, attr_str, need, register
from .elementwise import PER_ELEMENT

SIG = PER_ELEMENT["Sigmoid"]
TANH = PER_ELEMENT["Tanh"]


def _rnn_dims(ctx: OpContext, gates: int) -> tuple[int, int, int, int, int]:
    """(seq_len, batch, num_directions, hidden, input) from X, W and the attributes."""
    op = ctx.node.op_type
    xs = need(ctx.in_shape(0), f"{op}: input X shape")
    layout = int(ctx.attr("layout", 0))
    seq, batch = (xs[1], xs[0]) if layout else (xs[0], xs[1])
    inp = xs[2]
    ws = ctx.in_shape(1)
    hidden = ctx.attr("hidden_size")
    if hidden is None:
        hidden = need(ws, f"{op}: W shape (no hidden_size)")[1] // gates
    direction = attr_str(ctx, "direction", "forward")
    dirs = 2 if direction == "bidirectional" else 1
    return seq, batch, dirs, int(hidden), inp


def _rnn_cost(ctx: OpContext, gates: int, per_unit: int) -> OpCost:
    seq, batch, dirs, h, i = _rnn_dims(ctx, gates)
    steps = seq * batch * dirs
    return OpCost(macs=steps * gates * h * (i + h), non_mac_ops=steps * h * per_unit,
                  kind="rnn", layer_class="gemm")


@register("LSTM")
def lstm(ctx: OpContext) -> OpCost:
    """gates = 4; per hidden unit and step: 4 * (1 + bias) gate sums (W x + R h, + bias),
    3 sigmoids (3 * 3) + 2 tanh (2), cell c = f*c + i*g (3), h = o * tanh(c) (1):
    23 with bias, 19 without; peepholes (input P) 6 more (3 multiplies, 3 adds)."""
    b = 1 if ctx.has_input(3) else 0
    per = 4 * (1 + b) + 3 * SIG + 2 * TANH + 3 + 1 + (6 if ctx.has_input(7) else 0)
    return _rnn_cost(ctx, 4, per)


@register("GRU")
def gru(ctx: OpContext) -> OpCost:
    """gates = 3; per hidden unit and step: 3 * (1 + bias) gate sums, r * (R h) or r * h (1),
    2 sigmoids (6) + 1 tanh (1), h = (1 - z) * h~ + z * h (4): 18 with bias, 15 without."""
    b = 1 if ctx.has_input(3) else 0
    return _rnn_cost(ctx, 3, 3 * (1 + b) + 1 + 2 * SIG + TANH + 4)


@register("RNN")
def rnn(ctx: OpContext) -> OpCost:
    """gates = 1; per hidden unit and step: W x + R h (1), + bias (1 if B), tanh (1):
    3 with bias, 2 without."""
    b = 1 if ctx.has_input(3) else 0
    return _rnn_cost(ctx, 1, 1 + b + TANH)
