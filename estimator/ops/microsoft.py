"""Ops of the "com.microsoft" domain that onnxruntime's graph optimizers emit (and the
"com.microsoft.nchwc" layout ops of its CPU provider).

Each reuses the arithmetic of its default-domain counterpart; the fused parts are added as
non-MAC ops per element, with the per-element counts of elementwise.py.
"""

from __future__ import annotations

from . import data, rnn  # noqa: F401  (register the default-domain ops reused below)
from .attention import rotary_ops, sdpa_cost
from .base import (OpContext, OpCost, ShapeUnknown, attr_str, conv_output_spatial, lookup, need,
                   out_elems_broadcast, prod, register)
from .conv import BILINEAR_OPS, activation_ops, conv_cost, conv_geometry
from .elementwise import GELU_ERF_OPS, GELU_TANH_OPS, PER_ELEMENT
from .linalg import gemm_counts, matmul_macs
from .norm import (MEAN_VAR_NORM_PER_ELEM, MEAN_VAR_NORM_PER_ROW, RMS_NORM_PER_ELEM,
                   RMS_NORM_PER_ROW, SOFTMAX_PER_ELEM)
from .pool import average_pool, global_average_pool, global_max_pool, max_pool, pool_out_elems
from .quant import DYNAMIC_QUANTIZE_OPS, REQUANT_OPS
from .resize import resize

MS = "com.microsoft"
NCHWC = "com.microsoft.nchwc"


def _ew(ops: int) -> OpCost:
    return OpCost(non_mac_ops=ops, kind="elementwise", layer_class="elementwise")


# ----------------------------------------------------------------------------- contractions


@register("FusedConv", domain=MS)
@register("Conv", domain=NCHWC)
def fused_conv(ctx: OpContext) -> OpCost:
    """macs = Conv macs; non_mac_ops = out_elems * ([bias] + [Z sum input] + activation ops).

    activation: the `activation` attribute looked up in elementwise.PER_ELEMENT (Relu 1,
    LeakyRelu 2, Clip 2, Sigmoid 3, HardSigmoid 4, Tanh 1; unknown names 1). Z (input 3) is
    the residual added before the activation. The NCHWc Conv (blocked channels, same
    attributes, Sum at input 3) is costed the same way.
    """
    g = conv_geometry(ctx)
    per = (1 if ctx.has_input(2) else 0) + (1 if ctx.has_input(3) else 0) + activation_ops(ctx)
    return conv_cost(ctx, g, per)


@register("NhwcConv", domain=MS)
def nhwc_conv(ctx: OpContext) -> OpCost:
    """Conv with X and Y channels-last: macs = out_elems * (C_in / group) * prod(kernel);
    non_mac_ops = out_elems if a bias is given."""
    g = conv_geometry(ctx, channels_last=True)
    return conv_cost(ctx, g, 1 if ctx.has_input(2) else 0)


@register("FusedGemm", domain=MS)
def fused_gemm(ctx: OpContext) -> OpCost:
    """Gemm counts (macs = M*N*K; alpha, beta, C as in Gemm) + out_elems * activation ops."""
    macs, out, ops = gemm_counts(ctx)
    return OpCost(macs=macs, non_mac_ops=ops + out * activation_ops(ctx), kind="contraction",
                  layer_class="gemm")


@register("FusedMatMul", domain=MS)
@register("TransposeMatMul", domain=MS)
def fused_matmul(ctx: OpContext) -> OpCost:
    """macs = batch * M * N * K with transA/transB applied to the last two dims;
    non_mac_ops = out_elems if alpha != 1. transBatchA/transBatchB (batch-dim permutations)
    are ignored: they change the layout, not the product."""
    macs, out = matmul_macs(ctx, 0, 1, bool(ctx.attr("transA", 0)), bool(ctx.attr("transB", 0)))
    ops = out if float(ctx.attr("alpha", 1.0)) != 1.0 else 0
    return OpCost(macs=macs, non_mac_ops=ops, kind="contraction", layer_class="gemm")


@register("GemmFastGelu", domain=MS)
def gemm_fast_gelu(ctx: OpContext) -> OpCost:
    """macs = MatMul macs of X and W; non_mac_ops = out_elems * ([bias] + 9) (tanh Gelu)."""
    macs, out = matmul_macs(ctx, 0, 1)
    return OpCost(macs=macs, non_mac_ops=out * ((1 if ctx.has_input(2) else 0) + GELU_TANH_OPS),
                  kind="contraction", layer_class="gemm")


@register("DynamicQuantizeMatMul", domain=MS)
def dynamic_quantize_matmul(ctx: OpContext) -> OpCost:
    """macs = MatMul macs; non_mac_ops = A_elems * 5 (dynamic quantization of A: min, max,
    quantize) + out_elems * (1 + [bias]) (dequantize the int32 result by the scale, bias)."""
    macs, out = matmul_macs(ctx, 0, 1)
    a = prod(need(ctx.in_shape(0), "DynamicQuantizeMatMul: A shape"))
    ops = a * DYNAMIC_QUANTIZE_OPS + out * (1 + (1 if ctx.has_input(4) else 0))
    return OpCost(macs=macs, non_mac_ops=ops, kind="contraction", layer_class="gemm")


@register("MatMulIntegerToFloat", domain=MS)
def matmul_integer_to_float(ctx: OpContext) -> OpCost:
    """macs = MatMul macs; non_mac_ops = out_elems * (1 + [bias]) (scale by a_scale * b_scale,
    bias at input 6)."""
    macs, out = matmul_macs(ctx, 0, 1)
    return OpCost(macs=macs, non_mac_ops=out * (1 + (1 if ctx.has_input(6) else 0)),
                  kind="contraction", layer_class="gemm")


@register("QGemm", domain=MS)
def qgemm(ctx: OpContext) -> OpCost:
    """macs = M*N*K (A input 0, B input 3, transA/transB); non_mac_ops = out_elems *
    (1 [scale by alpha*a_scale*b_scale] + [C given, input 6] + 3 * [y_scale given: requantize])."""
    sa = need(ctx.in_shape(0), "QGemm: A shape")
    sb = need(ctx.in_shape(3), "QGemm: B shape")
    m, k = (sa[1], sa[0]) if int(ctx.attr("transA", 0)) else (sa[0], sa[1])
    n = sb[0] if int(ctx.attr("transB", 0)) else sb[1]
    per = 1 + (1 if ctx.has_input(6) else 0) + (REQUANT_OPS if ctx.has_input(7) else 0)
    return OpCost(macs=m * n * k, non_mac_ops=m * n * per, kind="contraction", layer_class="gemm")


@register("MatMulNBits", domain=MS)
def matmul_nbits(ctx: OpContext) -> OpCost:
    """macs = prod(A.shape[:-1]) * N * K (attributes K, N); non_mac_ops = out_elems * [bias,
    input 5]. The weights' dequantization (- zero point, * scale) happens inside the MAC loop
    (onnxruntime's MLAS and CUDA kernels unpack each block on the fly, as TensorRT-LLM's do): it
    is part of the MACs' cost, not a separate pass. It is also once per call, not per sample,
    which a per-sample count could not say (it was charged x batch before 2026-12-01)."""
    a = need(ctx.in_shape(0), "MatMulNBits: A shape")
    k = int(ctx.attr("K", a[-1]))
    n = int(need(ctx.attr("N"), "MatMulNBits: attribute N"))
    rows = prod(a[:-1])
    ops = rows * n if ctx.has_input(5) else 0
    return OpCost(macs=rows * n * k, non_mac_ops=ops, kind="contraction", layer_class="gemm")


# -------------------------------------------------------------------------------- attention


def _ms_attention(ctx: OpContext, w_idx: int, bias_idx: int, mask_idxs: tuple[int, ...],
                  past_idx: int, dequant: bool) -> OpCost:
    op = ctx.node.op_type
    xs = need(ctx.in_shape(0), f"{op}: input shape")
    ws = need(ctx.in_shape(w_idx), f"{op}: weights shape")
    heads = int(need(ctx.attr("num_heads"), f"{op}: num_heads"))
    b, s, d_in = xs
    cols = ws[-1]
    sizes = ctx.attr("qkv_hidden_sizes")
    dq, dk, dv = (int(v) for v in sizes) if sizes else (cols // 3,) * 3
    l = s
    present = ctx.out_shape(1)
    if present is not None:
        l = present[3]
    elif ctx.has_input(past_idx):
        l += need(ctx.in_shape(past_idx), f"{op}: past shape")[3]
    masked = any(ctx.has_input(i) for i in mask_idxs) or bool(ctx.attr("unidirectional", 0))
    macs, ops = sdpa_cost(b, heads, s, l, dq // heads, dv // heads, masked)
    proj = b * s * d_in * cols
    ops += b * s * cols * ((1 if ctx.has_input(bias_idx) else 0) + (1 if dequant else 0))
    return OpCost(macs=macs + proj, non_mac_ops=ops, kind="contraction", layer_class="gemm")


@register("Attention", domain=MS)
def ms_attention(ctx: OpContext) -> OpCost:
    """Fused self-attention: QKV projection + Q K^T + softmax + P V (no output projection).

    input (B, S, D_in), weights (D_in, Dq + Dk + Dv) (qkv_hidden_sizes, else three equal
    parts), num_heads N, kv length L = present length (else S + past length):
      macs = B*S*D_in*(Dq+Dk+Dv) + B*N*S*L*(Dq/N + Dv/N)
      non_mac_ops = B*S*(Dq+Dk+Dv) * [bias] + B*N*S*L * (6 + [mask_index, attention_bias or
                    unidirectional])
    """
    return _ms_attention(ctx, 1, 2, (3, 5), 4, False)


@register("QAttention", domain=MS)
def q_attention(ctx: OpContext) -> OpCost:
    """Quantized Attention: the Attention counts (int8 projection MACs) + B*S*(Dq+Dk+Dv) ops to
    dequantize the projection output. Mask at input 5, past at input 8."""
    return _ms_attention(ctx, 1, 2, (5,), 8, True)


@register("MultiHeadAttention", domain=MS)
def multi_head_attention(ctx: OpContext) -> OpCost:
    """Q K^T + softmax + P V over already projected Q, K, V (this op has no weight matrices):
      macs = B*N*S*L*(Dqk + Dv)
      non_mac_ops = B*N*S*L * (6 + [key_padding_mask, attention_bias or unidirectional])
                    + bias adds (B*S*Dq + B*Lnew*(Dk + Dv)) when the bias input is given.
    query (B,S,D) or packed QKV (B,S,N,3,H); key (B,L,D), (B,N,L,H) or packed KV (B,L,N,2,H);
    L = present_key length when known, else key length + past_key length.
    """
    qs = need(ctx.in_shape(0), "MultiHeadAttention: query shape")
    heads = int(need(ctx.attr("num_heads"), "MultiHeadAttention: num_heads"))
    b, s = qs[0], qs[1]
    if len(qs) == 5:                       # packed QKV
        d_qk = d_v = qs[4]
        l_new = s
    else:
        d_qk = qs[2] // heads
        ks = need(ctx.in_shape(1), "MultiHeadAttention: key shape")
        if len(ks) == 5:                   # packed KV (B, L, N, 2, H)
            l_new, d_v = ks[1], ks[4]
        elif len(ks) == 4:                 # (B, N, L, H)
            l_new = ks[2]
            vs = ctx.in_shape(2)
            d_v = vs[3] if vs is not None and len(vs) == 4 else d_qk
        else:                              # (B, L, Dk)
            l_new = ks[1]
            vs = ctx.in_shape(2)
            d_v = vs[2] // heads if vs is not None else d_qk
    ys = ctx.out_shape(0)
    if ys is not None and len(ys) == 3:
        d_v = ys[2] // heads
    l = l_new
    pk = ctx.out_shape(1)
    if pk is not None:
        l = pk[2]
    elif ctx.has_input(6):
        l += need(ctx.in_shape(6), "MultiHeadAttention: past_key shape")[2]
    masked = ctx.has_input(4) or ctx.has_input(5) or bool(ctx.attr("unidirectional", 0))
    macs, ops = sdpa_cost(b, heads, s, l, d_qk, d_v, masked)
    if ctx.has_input(3):
        ops += b * s * heads * d_qk + b * l_new * heads * (d_qk + d_v)
    return OpCost(macs=macs, non_mac_ops=ops, kind="contraction", layer_class="gemm")


@register("GroupQueryAttention", domain=MS)
def group_query_attention(ctx: OpContext) -> OpCost:
    """macs = B*N*S*L*2H (N = num_heads query heads, H head size, L = present_key length,
    else S + past length); non_mac_ops = B*N*S*L * (6 + 1 causal mask) + rotary
    (3 per element of Q and K when do_rotary). query is (B,S,N*H) or packed
    (B,S,(N+2*Nkv)*H) when key is absent."""
    qs = need(ctx.in_shape(0), "GroupQueryAttention: query shape")
    heads = int(need(ctx.attr("num_heads"), "GroupQueryAttention: num_heads"))
    kv_heads = int(ctx.attr("kv_num_heads", heads))
    b, s = qs[0], qs[1]
    h = qs[2] // heads if ctx.has_input(1) else qs[2] // (heads + 2 * kv_heads)
    pk = ctx.out_shape(1)
    if pk is not None:
        l = pk[2]
    else:
        l = s + (need(ctx.in_shape(3), "GroupQueryAttention: past_key shape")[2]
                 if ctx.has_input(3) else 0)
    macs, ops = sdpa_cost(b, heads, s, l, h, h, True)
    if int(ctx.attr("do_rotary", 0)):
        ops += b * s * (heads + kv_heads) * h * 3
    return OpCost(macs=macs, non_mac_ops=ops, kind="contraction", layer_class="gemm")


@register("RotaryEmbedding", domain=MS)
def ms_rotary_embedding(ctx: OpContext) -> OpCost:
    """non_mac_ops = 3 * rotated elements (as the default-domain RotaryEmbedding; here the
    cos_cache is input 2)."""
    xs = need(ctx.in_shape(0), "RotaryEmbedding: input shape")
    nh = ctx.attr("num_heads")
    return _ew(rotary_ops(xs, ctx.in_shape(2), int(nh) if nh else None))


# ---------------------------------------------------------------------------- normalization


def _norm(ops: int) -> OpCost:
    return OpCost(non_mac_ops=ops, kind="norm", layer_class="elementwise")


@register("SkipLayerNormalization", domain=MS)
def skip_layer_norm(ctx: OpContext) -> OpCost:
    """non_mac_ops = elems * (1 + [bias] + 6 + [beta]) + rows * 4, rows = elems / hidden:
    skip add, bias add (input 4), then LayerNormalization (beta at input 3)."""
    s = need(ctx.in_shape(0), "SkipLayerNormalization: input shape")
    n = prod(s)
    per = (1 + (1 if ctx.has_input(4) else 0) + MEAN_VAR_NORM_PER_ELEM
           + (1 if ctx.has_input(3) else 0))
    return _norm(n * per + n // s[-1] * MEAN_VAR_NORM_PER_ROW)


@register("SkipSimplifiedLayerNormalization", domain=MS)
def skip_simplified_layer_norm(ctx: OpContext) -> OpCost:
    """non_mac_ops = elems * (1 + [bias] + 4) + rows * 3: skip add, bias (input 3), RMS norm."""
    s = need(ctx.in_shape(0), "SkipSimplifiedLayerNormalization: input shape")
    n = prod(s)
    per = 1 + (1 if ctx.has_input(3) else 0) + RMS_NORM_PER_ELEM
    return _norm(n * per + n // s[-1] * RMS_NORM_PER_ROW)


@register("EmbedLayerNormalization", domain=MS)
def embed_layer_norm(ctx: OpContext) -> OpCost:
    """non_mac_ops = out_elems * (1 + [segment] + 7) + rows * 4: word + position embedding
    add, + segment embedding (input 4), LayerNormalization with beta; the gathers are data
    movement and the mask_index reduction is ignored. Output (B, S, hidden), or input_ids
    (B, S) and word_embedding (vocab, hidden) when the output shape is unknown."""
    ys = ctx.out_shape(0)
    if ys is None:
        ids = need(ctx.in_shape(0), "EmbedLayerNormalization: input_ids shape")
        emb = need(ctx.in_shape(2), "EmbedLayerNormalization: word_embedding shape")
        ys = tuple(ids) + (emb[-1],)
    n = prod(ys)
    per = 1 + (1 if ctx.has_input(4) else 0) + MEAN_VAR_NORM_PER_ELEM + 1
    return _norm(n * per + n // ys[-1] * MEAN_VAR_NORM_PER_ROW)


# ---------------------------------------------------------------------- elementwise, fused


def _per_out(op: str, per: int, what: str):
    def cost(ctx: OpContext) -> OpCost:
        return _ew(out_elems_broadcast(ctx, f"{op}: output shape") * per)

    cost.__name__ = f"cost_ms_{op}"
    cost.__doc__ = f"non_mac_ops = out_elems * {per}: {what}."
    return cost


register("Gelu", domain=MS)(_per_out("Gelu", GELU_ERF_OPS, "erf Gelu (5)"))
register("BiasGelu", domain=MS)(_per_out("BiasGelu", 1 + GELU_ERF_OPS, "bias add, erf Gelu (5)"))
register("QuickGelu", domain=MS)(_per_out(
    "QuickGelu", PER_ELEMENT["Swish"], "x * sigmoid(alpha * x): alpha*x, sigmoid (3), * x"))
register("BiasAdd", domain=MS)(_per_out("BiasAdd", 2, "X + bias + skip"))


@register("FastGelu", domain=MS)
def fast_gelu(ctx: OpContext) -> OpCost:
    """non_mac_ops = out_elems * (9 + [bias]): tanh-approximated Gelu, optional bias add."""
    n = out_elems_broadcast(ctx, "FastGelu: output shape")
    return _ew(n * (GELU_TANH_OPS + (1 if ctx.has_input(1) else 0)))


@register("BiasSplitGelu", domain=MS)
def bias_split_gelu(ctx: OpContext) -> OpCost:
    """non_mac_ops = out_elems * 8: both halves get a bias add (2), erf Gelu on one (5), then the
    product (1). Output (N, HW, D) from input (N, HW, 2D)."""
    n = prod(need(ctx.in_shape(0), "BiasSplitGelu: input shape")) // 2
    return _ew(n * (2 + GELU_ERF_OPS + 1))


# Quantized elementwise ops: dequantize both inputs (2 + 2), the op (1), requantize (3) = 8.
QLINEAR_BINARY_OPS = 8
register("QLinearAdd", domain=MS)(_per_out(
    "QLinearAdd", QLINEAR_BINARY_OPS, "dequantize A and B (2 + 2), add, requantize (3)"))
register("QLinearMul", domain=MS)(_per_out(
    "QLinearMul", QLINEAR_BINARY_OPS, "dequantize A and B (2 + 2), multiply, requantize (3)"))
register("QLinearSigmoid", domain=MS)(_per_out(
    "QLinearSigmoid", 1, "one 256-entry lookup-table read (the table is built once)"))
register("QLinearLeakyRelu", domain=MS)(_per_out(
    "QLinearLeakyRelu", 1, "one 256-entry lookup-table read (the table is built once)"))


@register("QLinearGlobalAveragePool", domain=MS)
def qlinear_global_average_pool(ctx: OpContext) -> OpCost:
    """non_mac_ops = in_elems (accumulate) + out_elems * 3 (scale and requantize); the zero
    point correction is folded. Output elements = N * C."""
    xs = need(ctx.in_shape(0), "QLinearGlobalAveragePool: input shape")
    channels_last = int(ctx.attr("channels_last", 0))
    nc = xs[0] * (xs[-1] if channels_last else xs[1])
    return OpCost(non_mac_ops=prod(xs) + nc * REQUANT_OPS, kind="pool", layer_class="elementwise")


@register("QLinearAveragePool", domain=MS)
def qlinear_average_pool(ctx: OpContext) -> OpCost:
    """non_mac_ops = out_elems * (K + 3): AveragePool (K) then requantize (3)."""
    kernel = tuple(need(ctx.attr("kernel_shape"), "QLinearAveragePool: kernel_shape"))
    k = prod(kernel)
    if ctx.out_shape(0) is None and int(ctx.attr("channels_last", 0)):
        raise ShapeUnknown("QLinearAveragePool: output shape (channels_last)")
    n = pool_out_elems(ctx, kernel)
    return OpCost(non_mac_ops=n * (k + REQUANT_OPS), kind="pool", layer_class="elementwise")


@register("QLinearConcat", domain=MS)
def qlinear_concat(ctx: OpContext) -> OpCost:
    """non_mac_ops = out_elems * 3 (each input requantized to the output scale; inputs already
    at the output scale are plain copies, not detected here)."""
    ys = ctx.out_shape(0)
    if ys is not None:
        n = prod(ys)
    else:   # inputs: Y_scale, Y_zero_point, then (X, X_scale, X_zero_point) triples
        n = sum(prod(need(ctx.in_shape(i), "QLinearConcat: input shape"))
                for i in range(2, len(ctx.node.inputs), 3))
    return OpCost(non_mac_ops=n * REQUANT_OPS, kind="quant", layer_class="elementwise")


@register("NhwcMaxPool", domain=MS)
def nhwc_max_pool(ctx: OpContext) -> OpCost:
    """non_mac_ops = out_elems * (K - 1) compares (channels-last MaxPool; output shape from the
    context, else from the pooling rules on the (N, spatial..., C) input)."""
    kernel = tuple(int(v) for v in need(ctx.attr("kernel_shape"), "NhwcMaxPool: kernel_shape"))
    k = prod(kernel)
    ys = ctx.out_shape(0)
    if ys is not None:
        n = prod(ys)
    else:
        xs = need(ctx.in_shape(0), "NhwcMaxPool: input shape")
        r = len(kernel)
        sp = conv_output_spatial(xs[1:-1], kernel, tuple(ctx.attr("strides", (1,) * r)),
                                 tuple(ctx.attr("dilations", (1,) * r)),
                                 tuple(ctx.attr("pads", (0,) * (2 * r))),
                                 attr_str(ctx, "auto_pad", "NOTSET"),
                                 bool(ctx.attr("ceil_mode", 0)))
        n = xs[0] * xs[-1] * prod(sp)
    return OpCost(non_mac_ops=n * (k - 1), kind="pool", layer_class="elementwise")


# --------------------------------------------------------------- NCHWc layout (CPU provider)

register("MaxPool", domain=NCHWC)(max_pool)
register("AveragePool", domain=NCHWC)(average_pool)
register("GlobalAveragePool", domain=NCHWC)(global_average_pool)
register("GlobalMaxPool", domain=NCHWC)(global_max_pool)
register("Upsample", domain=NCHWC)(resize)


@register("ReorderInput", domain=NCHWC)
@register("ReorderOutput", domain=NCHWC)
def nchwc_reorder(ctx: OpContext) -> OpCost:
    """0 ops, kind data: converts between NCHW and the blocked NCHWc layout (a copy)."""
    return OpCost(kind="data", layer_class="elementwise")


# ------------------------------------------------- com.microsoft forms of other ops, and more

def _default(op: str):
    """The default-domain cost function of `op` (its module is imported above)."""
    fn = lookup(op)
    if fn is None:
        raise RuntimeError(f"{op} must be registered before microsoft.py reuses it")
    return fn


# onnxruntime's contrib versions of these take the same inputs in the same order.
for _op in ("QLinearConv", "Trilu", "Range", "Unique", "GridSample", "Pad", "GatherND"):
    register(_op, domain=MS)(_default(_op))
register("ConvTransposeWithDynamicPads", domain=MS)(_default("ConvTranspose"))
register("MaxpoolWithMask", domain=MS)(max_pool)
register("DynamicQuantizeLSTM", domain=MS)(_default("LSTM"))
register("MatMulInteger16", domain=MS)(_default("MatMulInteger"))
register("MatMulBnb4", domain=MS)(matmul_nbits)


@register("ExpandDims", domain=MS)
@register("TorchEmbedding", domain=MS)
@register("QLinearWhere", domain=MS)
def ms_data(ctx: OpContext) -> OpCost:
    """0 ops, kind data (ExpandDims: a copy of an unsqueeze; TorchEmbedding: a gather;
    QLinearWhere: a select between quantized inputs)."""
    return OpCost(kind="data", layer_class="elementwise")


@register("FusedMatMulActivation", domain=MS)
def fused_matmul_activation(ctx: OpContext) -> OpCost:
    """FusedMatMul counts + out_elems * activation ops (`activation` attribute)."""
    c = fused_matmul(ctx)
    _, out = matmul_macs(ctx, 0, 1, bool(ctx.attr("transA", 0)), bool(ctx.attr("transB", 0)))
    return OpCost(macs=c.macs, non_mac_ops=c.non_mac_ops + out * activation_ops(ctx),
                  kind="contraction", layer_class="gemm")


@register("NhwcFusedConv", domain=MS)
def nhwc_fused_conv(ctx: OpContext) -> OpCost:
    """NhwcConv counts + out_elems * ([Z sum input 3] + activation ops)."""
    g = conv_geometry(ctx, channels_last=True)
    per = (1 if ctx.has_input(2) else 0) + (1 if ctx.has_input(3) else 0) + activation_ops(ctx)
    return conv_cost(ctx, g, per)


@register("BiasSoftmax", domain=MS)
def bias_softmax(ctx: OpContext) -> OpCost:
    """non_mac_ops = elems * (1 + 5): bias add, then softmax (norm.SOFTMAX_PER_ELEM)."""
    n = prod(need(ctx.in_shape(0), "BiasSoftmax: input shape"))
    return _norm(n * (1 + SOFTMAX_PER_ELEM))


@register("BiasDropout", domain=MS)
def bias_dropout(ctx: OpContext) -> OpCost:
    """non_mac_ops = elems * (1 + [residual]): bias add and residual add (input 2); dropout is
    the identity at inference (training-mode masking ignored)."""
    n = prod(need(ctx.in_shape(0), "BiasDropout: input shape"))
    return _ew(n * (1 + (1 if ctx.has_input(2) else 0)))


def _group_norm_nhwc(ctx: OpContext, extra_per_elem: int) -> OpCost:
    xs = need(ctx.in_shape(0), f"{ctx.node.op_type}: input shape")
    n = prod(xs)
    groups = int(ctx.attr("groups", 32))
    act = PER_ELEMENT["Swish"] if int(ctx.attr("activation", 0)) else 0
    per = MEAN_VAR_NORM_PER_ELEM + 1 + act + extra_per_elem
    return _norm(n * per + xs[0] * groups * MEAN_VAR_NORM_PER_ROW)


@register("GroupNorm", domain=MS)
def ms_group_norm(ctx: OpContext) -> OpCost:
    """non_mac_ops = elems * (7 + 5 * [activation = Swish]) + N * groups * 4 (the
    GroupNormalization counts; channels-last layout does not change them)."""
    return _group_norm_nhwc(ctx, 0)


@register("SkipGroupNorm", domain=MS)
def skip_group_norm(ctx: OpContext) -> OpCost:
    """GroupNorm counts + elems * (1 skip add + [bias, input 4])."""
    return _group_norm_nhwc(ctx, 1 + (1 if ctx.has_input(4) else 0))


@register("Inverse", domain=MS)
def inverse(ctx: OpContext) -> OpCost:
    """macs = batch * n^3 for input (..., n, n) (Gauss-Jordan elimination: n^3 multiply-adds
    per matrix; the n^2 divisions by pivots are counted as non-MAC ops)."""
    s = need(ctx.in_shape(0), "Inverse: input shape")
    n = s[-1]
    batch = prod(s[:-2])
    return OpCost(macs=batch * n ** 3, non_mac_ops=batch * n * n, kind="contraction",
                  layer_class="gemm")


@register("CDist", domain=MS)
def cdist(ctx: OpContext) -> OpCost:
    """A (M, K), B (N, K): macs = M * N * K (square-accumulate of each difference);
    non_mac_ops = M * N * K subtractions + M * N square roots for metric "euclidean"."""
    a = need(ctx.in_shape(0), "CDist: A shape")
    b = need(ctx.in_shape(1), "CDist: B shape")
    m, k, n = a[0], a[1], b[0]
    sqrt = m * n if attr_str(ctx, "metric", "sqeuclidean") == "euclidean" else 0
    return OpCost(macs=m * n * k, non_mac_ops=m * n * k + sqrt, kind="contraction",
                  layer_class="gemm")


@register("ComplexMul", domain=MS)
@register("ComplexMulConj", domain=MS)
def complex_mul(ctx: OpContext) -> OpCost:
    """non_mac_ops = out_elems * 3: a complex product (4 multiplies + 2 adds) per complex pair,
    i.e. 3 per real output element (last dim 2)."""
    return _ew(out_elems_broadcast(ctx, f"{ctx.node.op_type}: output shape") * 3)


@register("MulInteger", domain=MS)
def mul_integer(ctx: OpContext) -> OpCost:
    """non_mac_ops = out_elems (one integer multiply; zero points ignored)."""
    return _ew(out_elems_broadcast(ctx, "MulInteger: output shape"))


@register("IsAllFinite", domain=MS)
def is_all_finite(ctx: OpContext) -> OpCost:
    """non_mac_ops = total input elems (one test each)."""
    n = sum(prod(need(ctx.in_shape(i), "IsAllFinite: input shape"))
            for i in range(len(ctx.node.inputs)) if ctx.has_input(i))
    return OpCost(non_mac_ops=n, kind="reduce", layer_class="elementwise")


@register("ReduceSumInteger", domain=MS)
def reduce_sum_integer(ctx: OpContext) -> OpCost:
    """non_mac_ops = in_elems (one add per input element)."""
    n = prod(need(ctx.in_shape(0), "ReduceSumInteger: input shape"))
    return OpCost(non_mac_ops=n, kind="reduce", layer_class="elementwise")


@register("QLinearReduceMean", domain=MS)
def qlinear_reduce_mean(ctx: OpContext) -> OpCost:
    """non_mac_ops = in_elems + out_elems * (1 + 3): accumulate, divide, requantize."""
    n_in = prod(need(ctx.in_shape(0), "QLinearReduceMean: input shape"))
    n_out = prod(need(ctx.out_shape(0), "QLinearReduceMean: output shape"))
    return OpCost(non_mac_ops=n_in + n_out * (1 + REQUANT_OPS), kind="reduce",
                  layer_class="elementwise")


@register("QLinearSoftmax", domain=MS)
def qlinear_softmax(ctx: OpContext) -> OpCost:
    """non_mac_ops = elems * 5: the softmax count (exp read from a lookup table, the
    requantization folded into the final scale)."""
    n = prod(need(ctx.in_shape(0), "QLinearSoftmax: input shape"))
    return _norm(n * SOFTMAX_PER_ELEM)


@register("CropAndResize", domain=MS)
def crop_and_resize(ctx: OpContext) -> OpCost:
    """non_mac_ops = out_elems * 7 (one bilinear sample per output, conv.BILINEAR_OPS) for mode
    "bilinear" (default); 0 (kind data) for "nearest". Output (num_rois, C, h, w)."""
    if attr_str(ctx, "mode", "bilinear") == "nearest":
        return OpCost(kind="data", layer_class="elementwise")
    n = prod(need(ctx.out_shape(0), "CropAndResize: output shape (crop_size is data)"))
    return _ew(n * BILINEAR_OPS)
