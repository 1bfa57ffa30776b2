"""Resampling: Resize, Upsample, GridSample, AffineGrid.

Interpolation over r resized axes reads taps = 2^r (linear) or 4^r (cubic) input values per
output element: taps multiplies by the interpolation weights and taps - 1 adds, i.e.
2 * taps - 1 non-MAC ops per output element (direct, non-separable evaluation; the weight
and coordinate computations, amortized per axis, are ignored). Nearest is pure data movement.
"""

from __future__ import annotations

from .base import OpContext, OpCost, attr_str, need, prod, register


def interp_ops_per_output(mode: str, r: int) -> int:
    """2 * taps - 1 with taps = 2^r (linear) or 4^r (cubic); 0 for nearest or r == 0."""
    if r == 0 or mode == "nearest":
        return 0
    taps = (4 ** r) if "cubic" in mode else (2 ** r)
    return 2 * taps - 1


def _mode(ctx: OpContext, default: str) -> str:
    return attr_str(ctx, "mode", default).lower()


@register("Resize")
@register("Upsample")
def resize(ctx: OpContext) -> OpCost:
    """non_mac_ops = out_elems * (2 * taps - 1), taps = 2^r (linear) or 4^r (cubic), r = number
    of axes whose size changes; nearest (the default) and unchanged shapes: kind data, 0 ops.

    antialias (opset 18) widens the filter when downscaling; ignored.
    """
    mode = _mode(ctx, "nearest")
    if mode == "nearest":
        return OpCost(kind="data", layer_class="elementwise")
    xs = need(ctx.in_shape(0), f"{ctx.node.op_type}: input shape")
    ys = need(ctx.out_shape(0), f"{ctx.node.op_type}: output shape (scales/sizes are data)")
    r = sum(1 for a, b in zip(xs, ys) if a != b)
    per = interp_ops_per_output(mode, r)
    if per == 0:
        return OpCost(kind="data", layer_class="elementwise")
    return OpCost(non_mac_ops=prod(ys) * per, kind="elementwise", layer_class="elementwise")


@register("GridSample")
def grid_sample(ctx: OpContext) -> OpCost:
    """non_mac_ops = out_elems * (2 * taps - 1) + N * prod(out_spatial) * 2r.

    taps = 2^r (linear/bilinear, the default) or 4^r (cubic/bicubic), r = spatial rank; the
    second term unnormalizes each grid coordinate (mul, add per axis, shared by channels).
    Nearest: only the coordinate term. Padding-mode clamping ignored.
    """
    xs = need(ctx.in_shape(0), "GridSample: input shape")
    ys = ctx.out_shape(0)
    if ys is None:
        gs = need(ctx.in_shape(1), "GridSample: grid shape")
        ys = (xs[0], xs[1]) + tuple(gs[1:-1])
    r = len(xs) - 2
    mode = _mode(ctx, "linear")
    per = 0 if mode == "nearest" else (2 * (4 ** r if "cubic" in mode else 2 ** r) - 1)
    coords = ys[0] * prod(ys[2:]) * 2 * r
    return OpCost(non_mac_ops=prod(ys) * per + coords, kind="elementwise",
                  layer_class="elementwise")


@register("AffineGrid")
def affine_grid(ctx: OpContext) -> OpCost:
    """non_mac_ops = out_elems * 2r: each output coordinate is one row of theta (r x (r+1))
    applied to (coords, 1): r multiplies and r adds. Output (N, *spatial, r)."""
    ys = need(ctx.out_shape(0), "AffineGrid: output shape (size is data)")
    r = ys[-1]
    return OpCost(non_mac_ops=prod(ys) * 2 * r, kind="elementwise", layer_class="elementwise")
