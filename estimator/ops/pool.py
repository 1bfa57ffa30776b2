"""Pooling: window reductions, global pools, ROI pools, unpooling.

With K = prod(kernel_shape) the window size: MaxPool K - 1 compares per output element,
AveragePool K - 1 adds + 1 scale = K, LpPool K powers + K - 1 adds + 1 root = 2K. Padding
taps are counted as real (count_include_pad does not change the count); ceil_mode only
changes the output shape, which comes from the context.
"""

from __future__ import annotations

from .base import (OpContext, OpCost, attr_str, conv_output_spatial, need, prod, register)
from .conv import BILINEAR_OPS


def _pool(ops: int) -> OpCost:
    return OpCost(non_mac_ops=ops, kind="pool", layer_class="elementwise")


def pool_out_elems(ctx: OpContext, kernel: tuple[int, ...], x: int = 0) -> int:
    """Output elements of a windowed pool: from the context, else the ONNX pooling rules."""
    ys = ctx.out_shape(0)
    if ys is not None:
        return prod(ys)
    op = ctx.node.op_type
    xs = need(ctx.in_shape(x), f"{op}: input shape")
    r = len(kernel)
    sp = conv_output_spatial(xs[2:], kernel, tuple(ctx.attr("strides", (1,) * r)),
                             tuple(ctx.attr("dilations", (1,) * r)),
                             tuple(ctx.attr("pads", (0,) * (2 * r))),
                             attr_str(ctx, "auto_pad", "NOTSET"), bool(ctx.attr("ceil_mode", 0)))
    return xs[0] * xs[1] * prod(sp)


def _kernel(ctx: OpContext) -> tuple[int, ...]:
    k = need(ctx.attr("kernel_shape"), f"{ctx.node.op_type}: kernel_shape attribute")
    return tuple(int(v) for v in k)


@register("MaxPool")
def max_pool(ctx: OpContext) -> OpCost:
    """non_mac_ops = out_elems * (K - 1) compares, K = prod(kernel_shape) (the Indices output
    costs nothing more)."""
    k = _kernel(ctx)
    return _pool(pool_out_elems(ctx, k) * (prod(k) - 1))


@register("AveragePool")
def average_pool(ctx: OpContext) -> OpCost:
    """non_mac_ops = out_elems * K: K - 1 adds + 1 scale per output element."""
    k = _kernel(ctx)
    return _pool(pool_out_elems(ctx, k) * prod(k))


@register("LpPool")
def lp_pool(ctx: OpContext) -> OpCost:
    """non_mac_ops = out_elems * 2K: |x|^p per window element, K - 1 adds, 1 root."""
    k = _kernel(ctx)
    return _pool(pool_out_elems(ctx, k) * 2 * prod(k))


def _global(ctx: OpContext, per_elem: int, minus: int) -> OpCost:
    xs = need(ctx.in_shape(0), f"{ctx.node.op_type}: input shape")
    nc = xs[0] * xs[1]
    hw = prod(xs[2:])
    return _pool(nc * (per_elem * hw - minus))


@register("GlobalAveragePool")
def global_average_pool(ctx: OpContext) -> OpCost:
    """non_mac_ops = N * C * HW (HW - 1 adds + 1 scale per channel), HW = prod(spatial)."""
    return _global(ctx, 1, 0)


@register("GlobalMaxPool")
def global_max_pool(ctx: OpContext) -> OpCost:
    """non_mac_ops = N * C * (HW - 1) compares."""
    return _global(ctx, 1, 1)


@register("GlobalLpPool")
def global_lp_pool(ctx: OpContext) -> OpCost:
    """non_mac_ops = N * C * 2 * HW (power per element, HW - 1 adds, 1 root)."""
    return _global(ctx, 2, 0)


@register("MaxRoiPool")
def max_roi_pool(ctx: OpContext) -> OpCost:
    """non_mac_ops = num_rois * C * H * W: upper bound assuming every ROI spans the whole
    feature map (ROI sizes are data, unknown statically); one compare per element read."""
    xs = need(ctx.in_shape(0), "MaxRoiPool: input shape")
    rois = need(ctx.in_shape(1), "MaxRoiPool: rois shape")
    return _pool(rois[0] * prod(xs[1:]))


# RoiAlign samples per bin side when sampling_ratio = 0 (adaptive: data dependent); 2 is the
# common value of detection models (e.g. Detectron's default).
ROI_ALIGN_DEFAULT_SAMPLING = 2


@register("RoiAlign")
def roi_align(ctx: OpContext) -> OpCost:
    """non_mac_ops = out_elems * s^2 * (7 + 1): s^2 bilinear samples per output bin (7 ops
    each, conv.BILINEAR_OPS) and their average or max (1 op per sample); s = sampling_ratio,
    2 when it is 0 (adaptive; see ROI_ALIGN_DEFAULT_SAMPLING). Out = (num_rois, C, oh, ow)."""
    ys = ctx.out_shape(0)
    if ys is None:
        xs = need(ctx.in_shape(0), "RoiAlign: input shape")
        rois = need(ctx.in_shape(1), "RoiAlign: rois shape")
        ys = (rois[0], xs[1], int(ctx.attr("output_height", 1)), int(ctx.attr("output_width", 1)))
    s = int(ctx.attr("sampling_ratio", 0)) or ROI_ALIGN_DEFAULT_SAMPLING
    return _pool(prod(ys) * s * s * (BILINEAR_OPS + 1))


@register("MaxUnpool")
def max_unpool(ctx: OpContext) -> OpCost:
    """No arithmetic: a scatter of the input into a zeroed output (kind data)."""
    return OpCost(kind="data", layer_class="elementwise")
