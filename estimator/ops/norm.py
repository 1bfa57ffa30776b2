"""Normalizations and softmax: non-MAC ops per element plus per normalized group ("row").

Per-element counts (see each function): an accumulation into a mean or a variance is 1 op per
element, a subtraction, square, multiply or add is 1; per-row scalar work (dividing a sum by
the count, adding epsilon, the (reciprocal) square root) is counted once per row.
Training-mode statistics updates are ignored (inference only).
"""

from __future__ import annotations

from .base import OpContext, OpCost, need, norm_axis, prod, register

# LayerNorm-style normalization per element: mean accumulate, subtract mean, square, variance
# accumulate, multiply by 1/std, scale = 6; shift (bias) +1. Per row: mean = sum/D,
# var = sum/D, + eps, rsqrt = 4.
MEAN_VAR_NORM_PER_ELEM = 6
MEAN_VAR_NORM_PER_ROW = 4
# RMS-style: square, accumulate, multiply by 1/rms, scale = 4 per element; per row:
# mean = sum/D, + eps, rsqrt = 3.
RMS_NORM_PER_ELEM = 4
RMS_NORM_PER_ROW = 3
# Softmax per element: running max, x - max, exp, sum, divide (or multiply by 1/sum) = 5.
SOFTMAX_PER_ELEM = 5


def _norm(ops: int) -> OpCost:
    return OpCost(non_mac_ops=ops, kind="norm", layer_class="elementwise")


def layer_norm_ops(shape: tuple[int, ...], axis: int, bias: bool) -> int:
    """elems * (6 + bias) + rows * 4, rows = prod(shape[:axis])."""
    rows = prod(shape[:norm_axis(axis, len(shape))])
    return prod(shape) * (MEAN_VAR_NORM_PER_ELEM + int(bias)) + rows * MEAN_VAR_NORM_PER_ROW


def rms_norm_ops(shape: tuple[int, ...], axis: int) -> int:
    """elems * 4 + rows * 3, rows = prod(shape[:axis])."""
    rows = prod(shape[:norm_axis(axis, len(shape))])
    return prod(shape) * RMS_NORM_PER_ELEM + rows * RMS_NORM_PER_ROW


@register("BatchNormalization")
def batch_norm(ctx: OpContext) -> OpCost:
    """non_mac_ops = 2 * elems (inference: y = x * s + t with per-channel s, t folded from
    scale, mean, var, epsilon; the O(C) folding and training-mode statistics are ignored)."""
    return _norm(2 * prod(need(ctx.in_shape(0), "BatchNormalization: input shape")))


@register("LayerNormalization")
def layer_norm(ctx: OpContext) -> OpCost:
    """non_mac_ops = elems * (6 + [B given]) + rows * 4, rows = prod(X.shape[:axis]).

    Per element: mean accumulate, subtract, square, variance accumulate, * 1/std, * scale
    (+ bias); per row: sum/D twice, + epsilon, rsqrt. axis default -1.
    """
    s = need(ctx.in_shape(0), "LayerNormalization: input shape")
    return _norm(layer_norm_ops(s, int(ctx.attr("axis", -1)), ctx.has_input(2)))


@register("InstanceNormalization")
def instance_norm(ctx: OpContext) -> OpCost:
    """non_mac_ops = elems * 7 + (N * C) * 4 (LayerNorm counts over each (n, c) plane,
    scale and bias always given)."""
    s = need(ctx.in_shape(0), "InstanceNormalization: input shape")
    return _norm(layer_norm_ops(s, 2, True))


@register("GroupNormalization")
def group_norm(ctx: OpContext) -> OpCost:
    """non_mac_ops = elems * 7 + (N * num_groups) * 4 (LayerNorm counts over each group,
    per-channel scale and bias always given)."""
    s = need(ctx.in_shape(0), "GroupNormalization: input shape")
    groups = int(ctx.attr("num_groups", 1))
    return _norm(prod(s) * (MEAN_VAR_NORM_PER_ELEM + 1) + s[0] * groups * MEAN_VAR_NORM_PER_ROW)


@register("RMSNormalization")
@register("SimplifiedLayerNormalization")   # onnxruntime registers it in the default domain
def rms_norm(ctx: OpContext) -> OpCost:
    """non_mac_ops = elems * 4 + rows * 3, rows = prod(X.shape[:axis]).

    Per element: square, accumulate, * 1/rms, * scale; per row: sum/D, + epsilon, rsqrt.
    (onnxruntime's SimplifiedLayerNormalization is the same computation.)
    """
    s = need(ctx.in_shape(0), f"{ctx.node.op_type}: input shape")
    return _norm(rms_norm_ops(s, int(ctx.attr("axis", -1))))


@register("LpNormalization")
def lp_norm(ctx: OpContext) -> OpCost:
    """non_mac_ops = elems * 3 + rows: |x| or x^2, accumulate, divide per element; the root
    (p = 2) once per row (rows = elems / shape[axis]; axis default -1)."""
    s = need(ctx.in_shape(0), "LpNormalization: input shape")
    ax = norm_axis(int(ctx.attr("axis", -1)), len(s))
    n = prod(s)
    return _norm(3 * n + n // max(s[ax], 1))


@register("MeanVarianceNormalization")
def mvn(ctx: OpContext) -> OpCost:
    """non_mac_ops = elems * 5 + groups * 4: mean accumulate, subtract, square, variance
    accumulate, divide by std per element; per group (product of the dims NOT in `axes`,
    default axes [0, 2, 3]): two divisions by the count, + epsilon, sqrt."""
    s = need(ctx.in_shape(0), "MeanVarianceNormalization: input shape")
    axes = {norm_axis(int(a), len(s)) for a in ctx.attr("axes", (0, 2, 3))}
    groups = prod(d for i, d in enumerate(s) if i not in axes)
    return _norm(prod(s) * 5 + groups * 4)


@register("LRN")
def lrn(ctx: OpContext) -> OpCost:
    """non_mac_ops = elems * (size + 5): square (once per element), window sum over `size`
    channels, * alpha/size, + bias, pow beta, x / . (direct window sum, no running sum)."""
    s = need(ctx.in_shape(0), "LRN: input shape")
    return _norm(prod(s) * (int(ctx.attr("size", 1)) + 5))


@register("Softmax")
def softmax(ctx: OpContext) -> OpCost:
    """non_mac_ops = 5 * elems: running max, subtract max, exp, sum, divide (numerically
    stable softmax; the per-row reciprocal is folded into the divide)."""
    return _norm(SOFTMAX_PER_ELEM * prod(need(ctx.in_shape(0), "Softmax: input shape")))


@register("LogSoftmax")
def log_softmax(ctx: OpContext) -> OpCost:
    """non_mac_ops = 5 * elems + rows: max, subtract, exp, sum, subtract log-sum per element;
    one log per row (rows = elems / shape[axis], opset-13 semantics, axis default -1)."""
    s = need(ctx.in_shape(0), "LogSoftmax: input shape")
    ax = norm_axis(int(ctx.attr("axis", -1)), len(s))
    n = prod(s)
    return _norm(SOFTMAX_PER_ELEM * n + n // max(s[ax], 1))


@register("Hardmax")
def hardmax(ctx: OpContext) -> OpCost:
    """non_mac_ops = elems (one compare per element to find the row max; writing the one-hot
    output is data movement)."""
    return _norm(prod(need(ctx.in_shape(0), "Hardmax: input shape")))
