"""Reductions, arg-reductions, scans and losses.

Formula: non_mac_ops = in_elems * PER_INPUT[op] + out_elems * PER_OUTPUT[op]: one accumulate
(add, mul, max, min) per INPUT element, plus the per-element transform before accumulating
(abs, square, exp) and the final per-output step (divide by the count, sqrt, log).
"""

from __future__ import annotations

from typing import Mapping

from .base import OpContext, OpCost, attr_str, need, prod, register
from .norm import SOFTMAX_PER_ELEM

# op: (ops per input element, ops per output element)
REDUCE_OPS: Mapping[str, tuple[int, int]] = {
    "ReduceSum": (1, 0),        # add
    "ReduceMean": (1, 1),       # add; divide by count
    "ReduceMax": (1, 0),        # compare
    "ReduceMin": (1, 0),        # compare
    "ReduceProd": (1, 0),       # multiply
    "ReduceL1": (2, 0),         # abs, add
    "ReduceL2": (2, 1),         # square, add; sqrt
    "ReduceSumSquare": (2, 0),  # square, add
    "ReduceLogSum": (1, 1),     # add; log
    "ReduceLogSumExp": (2, 1),  # exp, add; log (max-subtraction for stability ignored)
}


def _is_noop(ctx: OpContext) -> bool:
    """noop_with_empty_axes = 1 and no axes (input 1 or attribute): the op is an identity."""
    return bool(ctx.attr("noop_with_empty_axes", 0)) and not ctx.has_input(1) \
        and not ctx.attr("axes")


def _reduce(op: str, per_in: int, per_out: int):
    def cost(ctx: OpContext) -> OpCost:
        if _is_noop(ctx):
            return OpCost(kind="data", layer_class="elementwise")
        n_in = prod(need(ctx.in_shape(0), f"{op}: input shape"))
        n_out = prod(need(ctx.out_shape(0), f"{op}: output shape")) if per_out else 0
        return OpCost(non_mac_ops=n_in * per_in + n_out * per_out, kind="reduce",
                      layer_class="elementwise")

    cost.__name__ = f"cost_{op}"
    cost.__doc__ = (f"non_mac_ops = in_elems * {per_in} + out_elems * {per_out} (see REDUCE_OPS);"
                    " 0 when noop_with_empty_axes applies.")
    return cost


for _op, (_pi, _po) in REDUCE_OPS.items():
    register(_op)(_reduce(_op, _pi, _po))


@register("ArgMax")
@register("ArgMin")
def arg_reduce(ctx: OpContext) -> OpCost:
    """non_mac_ops = in_elems (one compare per input element)."""
    return OpCost(non_mac_ops=prod(need(ctx.in_shape(0), f"{ctx.node.op_type}: input shape")),
                  kind="reduce", layer_class="elementwise")


@register("CumSum")
@register("CumProd")
def cumulative(ctx: OpContext) -> OpCost:
    """non_mac_ops = elems (one add or multiply per element; exclusive/reverse change nothing)."""
    return OpCost(non_mac_ops=prod(need(ctx.in_shape(0), f"{ctx.node.op_type}: input shape")),
                  kind="reduce", layer_class="elementwise")


def _nll_ops(ctx: OpContext, target_idx: int, weight_idx: int) -> int:
    t = prod(need(ctx.in_shape(target_idx), f"{ctx.node.op_type}: target shape"))
    red = attr_str(ctx, "reduction", "mean")
    return t * (1 + (1 if ctx.has_input(weight_idx) else 0) + (0 if red == "none" else 1))


@register("NegativeLogLikelihoodLoss")
def nll_loss(ctx: OpContext) -> OpCost:
    """non_mac_ops = target_elems * (1 + [weight] + [reduction != none]): negate the picked
    log-probability, weight it, accumulate (the final mean's divide ignored)."""
    return OpCost(non_mac_ops=_nll_ops(ctx, 1, 2), kind="reduce", layer_class="elementwise")


@register("SoftmaxCrossEntropyLoss")
def softmax_ce_loss(ctx: OpContext) -> OpCost:
    """non_mac_ops = 5 * score_elems + rows + NLL ops: a log-softmax over the class axis
    (5 per element, 1 log per row, rows = score_elems / C) then NegativeLogLikelihoodLoss."""
    s = need(ctx.in_shape(0), "SoftmaxCrossEntropyLoss: scores shape")
    n = prod(s)
    return OpCost(non_mac_ops=SOFTMAX_PER_ELEM * n + n // max(s[1], 1) + _nll_ops(ctx, 1, 2),
                  kind="reduce", layer_class="elementwise")
