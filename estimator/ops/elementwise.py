"""Elementwise arithmetic, activations, comparisons, logic and casts: one table, one loop.

Formula: non_mac_ops = out_elems * PER_ELEMENT[op]  (out_elems = elements of the OUTPUT, i.e.
after numpy broadcasting of the inputs; for variadic ops see VARIADIC).

Counting rule behind the table: every elementary operation counts 1 — an add, multiply,
divide, compare, select, min/max, bitwise or logical operation, and each call of an
elementary function (exp, log, sqrt, tanh, erf, sin, pow, ...), whatever its real
instruction count on a given machine. Composite activations are the sum of their elementary
steps, written next to each entry. Constants folded at load (1/sqrt(2), alpha*beta) are free.
Casts count one conversion per element (kind "elementwise", not "data": a conversion
instruction runs per element, and the roofline charges its bytes either way).
"""

from __future__ import annotations

from typing import Mapping

from .base import OpContext, OpCost, out_elems_broadcast, register

# Non-MAC ops per output element.
PER_ELEMENT: Mapping[str, int] = {
    # binary arithmetic (numpy broadcasting; one op per output element)
    "Add": 1, "Sub": 1, "Mul": 1, "Div": 1, "Pow": 1, "Mod": 1,
    # bitwise and logical
    "BitShift": 1, "BitwiseAnd": 1, "BitwiseOr": 1, "BitwiseXor": 1, "BitwiseNot": 1,
    "And": 1, "Or": 1, "Xor": 1, "Not": 1,
    # comparisons and tests
    "Equal": 1, "Less": 1, "Greater": 1, "LessOrEqual": 1, "GreaterOrEqual": 1,
    "IsNaN": 1, "IsInf": 1,
    # simple unary
    "Abs": 1, "Neg": 1, "Exp": 1, "Log": 1, "Sqrt": 1, "Reciprocal": 1, "Floor": 1,
    "Ceil": 1, "Round": 1, "Sign": 1, "Erf": 1, "Tanh": 1,
    "Sin": 1, "Cos": 1, "Tan": 1, "Asin": 1, "Acos": 1, "Atan": 1,
    "Sinh": 1, "Cosh": 1, "Asinh": 1, "Acosh": 1, "Atanh": 1,
    # conversions: one conversion per element
    "Cast": 1, "CastLike": 1,
    # activations
    "Relu": 1,              # max(x, 0)
    "ThresholdedRelu": 1,   # x > alpha ? x : 0  (compare-select)
    "LeakyRelu": 2,         # alpha*x, select
    "PRelu": 2,             # slope*x, select
    "Clip": 2,              # max(x, lo), min(., hi)
    "Sigmoid": 3,           # exp(-x) (negation folded), 1 + ., 1 / .
    "Softplus": 3,          # exp, 1 + ., log
    "Softsign": 3,          # abs, 1 + ., x / .
    "Shrink": 3,            # compare x < -lambd, compare x > lambd, add/sub bias (select free)
    "Elu": 4,               # exp, - 1, * alpha, select
    "HardSigmoid": 4,       # alpha*x, + beta, min(1, .), max(0, .)
    "Selu": 5,              # exp, * alpha, - alpha, select, * gamma
    "HardSwish": 5,         # HardSigmoid (4: x/6, + 0.5, min, max), * x
    "Mish": 5,              # exp, 1 + ., log (softplus), tanh, * x
    "Swish": 5,             # alpha*x, sigmoid (3), * x
    "Celu": 7,              # x/alpha, exp, - 1, * alpha, min(0, .), max(0, x), add
    "SwiGLU": 6,            # Swish(A) (5), * B
}

# Gelu: erf form 0.5*x*(1 + erf(x/sqrt(2))) = mul, erf, add, mul, mul = 5;
# tanh form 0.5*x*(1 + tanh(sqrt(2/pi)*(x + 0.044715*x^3))) = x*x, *x, *0.044715, +x,
# *sqrt(2/pi), tanh, +1, *x, *0.5 = 9.
GELU_ERF_OPS = 5
GELU_TANH_OPS = 9

# Variadic ops (n inputs, broadcast): (ops per extra input, fixed ops) per output element.
# Sum/Max/Min: n - 1 adds/compares; Mean: n - 1 adds + 1 scale by 1/n.
VARIADIC: Mapping[str, tuple[int, int]] = {
    "Sum": (1, 0), "Max": (1, 0), "Min": (1, 0), "Mean": (1, 1),
}


def per_element_ops(op_type: str, attrs: Mapping | None = None) -> int | None:
    """Non-MAC ops per element of a unary activation by ONNX name (None if not in the table).

    Used by fused ops (FusedConv, FusedGemm, ...) whose `activation` attribute names an op.
    """
    if op_type == "Gelu":
        approx = (attrs or {}).get("approximate", "none")
        return GELU_TANH_OPS if approx == "tanh" else GELU_ERF_OPS
    return PER_ELEMENT.get(op_type)


def _elementwise(ops_per_elem: int, op: str):
    def cost(ctx: OpContext) -> OpCost:
        n = out_elems_broadcast(ctx, f"{op}: output shape")
        return OpCost(non_mac_ops=n * ops_per_elem, kind="elementwise", layer_class="elementwise")

    cost.__name__ = f"cost_{op}"
    cost.__doc__ = f"non_mac_ops = out_elems * {ops_per_elem}  (see PER_ELEMENT in {__name__})."
    return cost


def _variadic(per_extra: int, fixed: int, op: str):
    def cost(ctx: OpContext) -> OpCost:
        n_in = sum(1 for i in range(len(ctx.node.inputs)) if ctx.has_input(i))
        n = out_elems_broadcast(ctx, f"{op}: output shape")
        per = per_extra * max(n_in - 1, 0) + fixed
        return OpCost(non_mac_ops=n * per, kind="elementwise", layer_class="elementwise")

    cost.__name__ = f"cost_{op}"
    cost.__doc__ = (f"non_mac_ops = out_elems * ({per_extra} * (n_inputs - 1) + {fixed})"
                    " (numpy broadcasting; one input is a copy for Sum/Max/Min).")
    return cost


for _op, _k in PER_ELEMENT.items():
    register(_op)(_elementwise(_k, _op))
for _op, (_per, _fixed) in VARIADIC.items():
    register(_op)(_variadic(_per, _fixed, _op))


@register("Gelu")
def gelu(ctx: OpContext) -> OpCost:
    """non_mac_ops = out_elems * (5 if approximate == "none" else 9).

    erf form: x/sqrt2, erf, +1, *x, *0.5 = 5; tanh form: 9 (see GELU_TANH_OPS).
    """
    n = out_elems_broadcast(ctx, "Gelu: output shape")
    return OpCost(non_mac_ops=n * per_element_ops("Gelu", ctx.node.attrs), kind="elementwise",
                  layer_class="elementwise")
