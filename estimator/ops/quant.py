"""Quantized ops of the default domain: integer and QLinear contractions, (de)quantization.

Contractions count the same MACs as their float forms (an int8 MAC is one MAC; the precision
is applied at prediction time). Per-element constants:
- QUANTIZE_OPS = 3: multiply by 1/scale, round-and-saturate, add the zero point.
- DEQUANTIZE_OPS = 2: subtract the zero point, multiply by the scale.
- REQUANT_OPS = 3: requantize an int32 accumulator (multiply by the combined scale,
  round-and-saturate, add the output zero point).
Input zero-point corrections of integer contractions are ignored (folded into the bias or
computed once per row/column by real kernels).
"""

from __future__ import annotations

from .base import OpContext, OpCost, need, prod, register
from .conv import conv_cost, conv_geometry
from .linalg import matmul_macs

QUANTIZE_OPS = 3
DEQUANTIZE_OPS = 2
REQUANT_OPS = 3
# DynamicQuantizeLinear per element: running min and max (2) + quantize (3).
DYNAMIC_QUANTIZE_OPS = 2 + QUANTIZE_OPS


@register("QLinearConv")
def qlinear_conv(ctx: OpContext) -> OpCost:
    """macs = Conv macs (x at input 0, w at input 3); non_mac_ops = out_elems * (3 + [bias])
    (requantize, bias add; bias is input 8)."""
    g = conv_geometry(ctx, x=0, w=3)
    return conv_cost(ctx, g, REQUANT_OPS + (1 if ctx.has_input(8) else 0))


@register("ConvInteger")
def conv_integer(ctx: OpContext) -> OpCost:
    """macs = Conv macs; no non-MAC ops (int32 output, zero points ignored)."""
    return conv_cost(ctx, conv_geometry(ctx, x=0, w=1), 0)


@register("QLinearMatMul")
def qlinear_matmul(ctx: OpContext) -> OpCost:
    """macs = MatMul macs of a (input 0) and b (input 3); non_mac_ops = out_elems * 3
    (requantize)."""
    macs, out = matmul_macs(ctx, 0, 3)
    return OpCost(macs=macs, non_mac_ops=out * REQUANT_OPS, kind="contraction", layer_class="gemm")


@register("MatMulInteger")
def matmul_integer(ctx: OpContext) -> OpCost:
    """macs = MatMul macs; no non-MAC ops (int32 output, zero points ignored)."""
    macs, _ = matmul_macs(ctx, 0, 1)
    return OpCost(macs=macs, kind="contraction", layer_class="gemm")


def _per_elem(ctx: OpContext, k: int) -> OpCost:
    n = prod(need(ctx.in_shape(0), f"{ctx.node.op_type}: input shape"))
    return OpCost(non_mac_ops=n * k, kind="quant", layer_class="elementwise")


@register("QuantizeLinear")
@register("QuantizeLinear", domain="com.microsoft")
def quantize_linear(ctx: OpContext) -> OpCost:
    """non_mac_ops = elems * 3 (x / scale, round-and-saturate, + zero point)."""
    return _per_elem(ctx, QUANTIZE_OPS)


@register("DequantizeLinear")
@register("DequantizeLinear", domain="com.microsoft")
def dequantize_linear(ctx: OpContext) -> OpCost:
    """non_mac_ops = elems * 2 ((x - zero point) * scale)."""
    return _per_elem(ctx, DEQUANTIZE_OPS)


@register("DynamicQuantizeLinear")
def dynamic_quantize_linear(ctx: OpContext) -> OpCost:
    """non_mac_ops = elems * 5 (running min and max, then quantize: 3); the scalar scale and
    zero-point computation is ignored."""
    return _per_elem(ctx, DYNAMIC_QUANTIZE_OPS)
