"""Signal processing: DFT, STFT and the window / mel-matrix generators.

A complex FFT of length N costs 5 * N * ceil(log2 N) real non-MAC ops (radix-2 count:
N/2 * log2 N butterflies of one complex multiply, 6 real ops, and two complex adds, 4 real
ops). Non-power-of-two lengths are charged as the next power of two's log; a naive O(N^2)
DFT, which some runtimes use for such lengths, would cost more.
"""

from __future__ import annotations

import math

from .base import OpContext, OpCost, need, norm_axis, prod, register


def fft_ops(n: int) -> int:
    """5 * n * ceil(log2 n) real ops of one complex FFT of length n (0 for n <= 1)."""
    return 0 if n <= 1 else 5 * n * math.ceil(math.log2(n))


def _other(ops: int) -> OpCost:
    return OpCost(non_mac_ops=ops, kind="elementwise", layer_class="other")


@register("DFT")
def dft(ctx: OpContext) -> OpCost:
    """non_mac_ops = transforms * 5 * N * ceil(log2 N) (see fft_ops).

    Output (..., n_out, 2); transforms = out_elems / (2 * n_out); N = n_out, or with onesided
    the input length along the axis (2 * (n_out - 1) when a dft_length is given). The axis is
    the attribute (opset 17) or -2 (opset 20 default; the axis input's value is data).
    """
    xs = need(ctx.in_shape(0), "DFT: input shape")
    ys = need(ctx.out_shape(0), "DFT: output shape")
    ax = norm_axis(int(ctx.attr("axis", -2)), len(ys))
    n_out = ys[ax]
    if int(ctx.attr("onesided", 0)):
        n = xs[ax] if not ctx.has_input(1) else 2 * (n_out - 1)
    else:
        n = n_out
    transforms = prod(ys) // max(2 * n_out, 1)
    return _other(transforms * fft_ops(n))


@register("STFT")
def stft(ctx: OpContext) -> OpCost:
    """non_mac_ops = batch * frames * (5 * N * ceil(log2 N) + N * [window given]).

    Output (batch, frames, bins, 2); N = window length if a window is given, else
    2 * (bins - 1) when onesided (default) or bins.
    """
    ys = need(ctx.out_shape(0), "STFT: output shape")
    batch, frames, bins = ys[0], ys[1], ys[2]
    ws = ctx.in_shape(2) if ctx.has_input(2) else None
    if ws is not None:
        n = ws[0]
    else:
        n = 2 * (bins - 1) if int(ctx.attr("onesided", 1)) else bins
    return _other(batch * frames * (fft_ops(n) + (n if ws is not None else 0)))


def _generator(op: str, per: int, what: str):
    def cost(ctx: OpContext) -> OpCost:
        n = prod(need(ctx.out_shape(0), f"{op}: output shape (size is data)"))
        return OpCost(non_mac_ops=n * per, kind="data", layer_class="other")

    cost.__name__ = f"cost_{op}"
    cost.__doc__ = f"non_mac_ops = out_elems * {per}: {what}."
    return cost


register("HannWindow")(_generator("HannWindow", 4, "n * 2pi/N, cos, * 0.5, 0.5 - ."))
register("HammingWindow")(_generator("HammingWindow", 4, "n * 2pi/N, cos, * a1, a0 - ."))
register("BlackmanWindow")(_generator(
    "BlackmanWindow", 8, "2 angles, 2 cos, 2 coefficient multiplies, subtract, add"))
register("MelWeightMatrix")(_generator(
    "MelWeightMatrix", 4, "triangle filter per entry: 2 subtracts, divide, min/select "
    "(the per-bin mel scale conversions are ignored)"))
