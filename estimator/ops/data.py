"""Data movement: ops that copy, select, permute or generate elements.

They do no arithmetic (non_mac_ops = 0 unless stated) but read and write memory: their kind
is "data" and the roofline charges their input and output bytes. Index arithmetic (address
computation, index bounds checks) is not counted. A few ops here do count ops, stated per
function: scatter reductions, Col2Im accumulation, NonZero tests, Range, generators.
"""

from __future__ import annotations

import math

from .base import OpContext, OpCost, attr_str, need, prod, register

# Pure data movement, no arithmetic: name -> what it moves.
PURE_DATA_OPS = {
    "Concat": "copies every input into the output",
    "Split": "copies slices of the input into the outputs",
    "Slice": "copies a strided window",
    "Gather": "copies indexed slices",
    "GatherElements": "copies indexed elements",
    "GatherND": "copies indexed slices",
    "Pad": "copies the input and fills the border (constant, reflect, edge, wrap)",
    "Transpose": "permutes dims (a strided copy)",
    "Expand": "broadcasts the input to the output shape",
    "Tile": "repeats the input",
    "DepthToSpace": "permutes channel blocks into space",
    "SpaceToDepth": "permutes space into channel blocks",
    "Where": "selects between two inputs per element (a select is counted as movement)",
    "Compress": "copies the selected slices",
    "ReverseSequence": "copies with reversed prefixes",
    "OneHot": "writes on/off values by index",
    "Trilu": "copies with a triangular mask",
    "EyeLike": "writes an identity pattern",
    "CenterCropPad": "crops or pads (a copy)",
    "TensorScatter": "writes the update into the cache (KV-cache update)",
    "BitCast": "reinterprets bits (a copy when not done in place)",
}


def _pure(op: str, what: str):
    def cost(ctx: OpContext) -> OpCost:
        return OpCost(kind="data", layer_class="elementwise")

    cost.__name__ = f"cost_{op}"
    cost.__doc__ = f"0 ops, kind data: {what}."
    return cost


for _op, _what in PURE_DATA_OPS.items():
    register(_op)(_pure(_op, _what))


def _scatter(ctx: OpContext) -> OpCost:
    red = attr_str(ctx, "reduction", "none")
    if red == "none":
        return OpCost(kind="data", layer_class="elementwise")
    upd = need(ctx.in_shape(2), f"{ctx.node.op_type}: updates shape")
    return OpCost(non_mac_ops=prod(upd), kind="data", layer_class="elementwise")


@register("ScatterND")
def scatter_nd(ctx: OpContext) -> OpCost:
    """0 ops (kind data) with reduction "none"; else 1 op (add/mul/min/max) per update
    element."""
    return _scatter(ctx)


@register("ScatterElements")
@register("Scatter")
def scatter_elements(ctx: OpContext) -> OpCost:
    """0 ops (kind data) with reduction "none" (deprecated Scatter: always); else 1 op per
    update element."""
    return _scatter(ctx)


@register("Col2Im")
def col2im(ctx: OpContext) -> OpCost:
    """non_mac_ops = in_elems: each column entry is accumulated (1 add) into the image."""
    return OpCost(non_mac_ops=prod(need(ctx.in_shape(0), "Col2Im: input shape")), kind="data",
                  layer_class="elementwise")


@register("NonZero")
def non_zero(ctx: OpContext) -> OpCost:
    """non_mac_ops = in_elems (one test against zero per element); writing indices is data."""
    return OpCost(non_mac_ops=prod(need(ctx.in_shape(0), "NonZero: input shape")), kind="data",
                  layer_class="elementwise")


@register("Range")
def range_(ctx: OpContext) -> OpCost:
    """non_mac_ops = out_elems (one add per generated element). The output length is data
    (start, limit, delta); usually known because the inputs are constants."""
    return OpCost(non_mac_ops=prod(need(ctx.out_shape(0), "Range: output shape (data dependent)")),
                  kind="data", layer_class="elementwise")


@register("Unique")
def unique(ctx: OpContext) -> OpCost:
    """non_mac_ops = n * ceil(log2 n) compares, n = in_elems (a comparison sort; the default
    sorted=1 output)."""
    n = prod(need(ctx.in_shape(0), "Unique: input shape"))
    return OpCost(non_mac_ops=n * max(1, math.ceil(math.log2(max(n, 2)))), kind="reduce",
                  layer_class="elementwise")


@register("TopK")
def top_k(ctx: OpContext) -> OpCost:
    """non_mac_ops = in_elems * max(1, ceil(log2 k)): a size-k heap per row, each input element
    compared through the heap depth. k is read from the output shape along `axis`."""
    xs = need(ctx.in_shape(0), "TopK: input shape")
    ys = need(ctx.out_shape(0), "TopK: output shape (k is data)")
    ax = int(ctx.attr("axis", -1))
    k = ys[ax]
    return OpCost(non_mac_ops=prod(xs) * max(1, math.ceil(math.log2(max(k, 1)))), kind="reduce",
                  layer_class="elementwise")


# One IoU of two boxes: 2 areas (2 mul + 4 sub... folded: 3 ops each), intersection corners
# (4 max/min), intersection area (2 sub, 2 max with 0, 1 mul), union (2 ops), divide, compare
# with the threshold: about 17 ops.
IOU_OPS = 17


@register("NonMaxSuppression")
def non_max_suppression(ctx: OpContext) -> OpCost:
    """non_mac_ops = batches * classes * (B * ceil(log2 B) + B * (B - 1) / 2 * 17).

    Worst case: sort B boxes by score, then every pair's IoU (IOU_OPS = 17) and threshold test;
    the real count is data dependent (score threshold, max_output_boxes_per_class).
    """
    bs = need(ctx.in_shape(0), "NonMaxSuppression: boxes shape")
    ss = need(ctx.in_shape(1), "NonMaxSuppression: scores shape")
    b = bs[1]
    batches, classes = ss[0], ss[1]
    sort = b * max(1, math.ceil(math.log2(max(b, 2))))
    return OpCost(non_mac_ops=batches * classes * (sort + b * (b - 1) // 2 * IOU_OPS),
                  kind="reduce", layer_class="other")
