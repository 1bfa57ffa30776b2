"""Attention-family ops of the default domain (Attention, RotaryEmbedding, LinearAttention) and
the scaled-dot-product core shared with the com.microsoft attention ops (microsoft.py).

Scaled dot-product attention over B batches, H query heads, S queries, L keys:
    macs = B * H * S * L * (D_qk + D_v)          (Q K^T, then P V)
    non_mac_ops = B * H * S * L * (1 + 5 + mask)   (scale, softmax, mask add when masked)
Grouped-query attention (fewer K/V heads) counts the same: every query head multiplies the
shared K and V. Causal masking is costed as a full (unmasked-skipping) score matrix.
"""

from __future__ import annotations

from .base import OpContext, OpCost, attr_str, need, prod, register
from .norm import SOFTMAX_PER_ELEM

# Rotary embedding per rotated element: x * cos + rotate(x) * sin = 2 multiplies + 1 add.
ROTARY_OPS = 3
# Softcap per score: x / cap, tanh, * cap.
SOFTCAP_OPS = 3


def sdpa_cost(batch: int, heads: int, q_len: int, kv_len: int, d_qk: int, d_v: int,
              mask: bool, extra_per_score: int = 0) -> tuple[int, int]:
    """(macs, non_mac_ops) of scaled dot-product attention (see the module docstring)."""
    scores = batch * heads * q_len * kv_len
    return (scores * (d_qk + d_v),
            scores * (1 + SOFTMAX_PER_ELEM + (1 if mask else 0) + extra_per_score))


@register("Attention")
def attention(ctx: OpContext) -> OpCost:
    """Default-domain Attention (opset 23+): sdpa macs = B * Hq * S * L * (D_qk + D_v);
    non_mac_ops = B * Hq * S * L * (6 + [mask or causal] + 3 * [softcap]).

    Q is (B, Hq, S, D) or (B, S, Hq*D) (q_num_heads); K/V (B, Hkv, L, D) or 3-D (kv_num_heads).
    L = the present_key length when known, else past length + K length. Projections are
    separate MatMul nodes (not part of this op).
    """
    qs = need(ctx.in_shape(0), "Attention: Q shape")
    ks = need(ctx.in_shape(1), "Attention: K shape")
    vs = need(ctx.in_shape(2), "Attention: V shape")
    if len(qs) == 4:
        b, hq, s, d_qk = qs
    else:
        hq = int(need(ctx.attr("q_num_heads"), "Attention: q_num_heads for 3-D Q"))
        b, s, d_qk = qs[0], qs[1], qs[2] // hq
    if len(ks) == 4:
        hkv, l = ks[1], ks[2]
        d_v = vs[3]
    else:
        hkv = int(need(ctx.attr("kv_num_heads"), "Attention: kv_num_heads for 3-D K"))
        l, d_v = ks[1], vs[2] // hkv
    pk = ctx.out_shape(1)
    if pk is not None:
        l = pk[2]
    elif ctx.has_input(4):
        l += need(ctx.in_shape(4), "Attention: past_key shape")[2]
    masked = ctx.has_input(3) or bool(ctx.attr("is_causal", 0))
    extra = SOFTCAP_OPS if float(ctx.attr("softcap", 0.0)) != 0.0 else 0
    macs, ops = sdpa_cost(b, hq, s, l, d_qk, d_v, masked, extra)
    return OpCost(macs=macs, non_mac_ops=ops, kind="contraction", layer_class="gemm")


def rotary_ops(x_shape: tuple[int, ...], cos_shape: tuple[int, ...] | None,
               num_heads: int | None) -> int:
    """3 ops per rotated element; rotated = tokens * heads * rot_dim with rot_dim =
    2 * cos_cache.shape[-1] (the whole head when the cache shape is unknown)."""
    n = prod(x_shape)
    if len(x_shape) == 4:
        head = x_shape[-1]
    elif num_heads:
        head = x_shape[-1] // num_heads
    else:
        head = None
    if cos_shape is None or head is None:
        return n * ROTARY_OPS
    rot = min(2 * cos_shape[-1], head)
    return n // head * rot * ROTARY_OPS


@register("RotaryEmbedding")
def rotary_embedding(ctx: OpContext) -> OpCost:
    """non_mac_ops = 3 * rotated elements (x*cos + rot(x)*sin); the non-rotated part of each
    head (rotary_embedding_dim < head size) is a copy. cos_cache is input 1."""
    xs = need(ctx.in_shape(0), "RotaryEmbedding: input shape")
    nh = ctx.attr("num_heads")
    ops = rotary_ops(xs, ctx.in_shape(1), int(nh) if nh else None)
    return OpCost(non_mac_ops=ops, kind="elementwise", layer_class="elementwise")


@register("LinearAttention")
def linear_attention(ctx: OpContext) -> OpCost:
    """Sequential recurrence count over T tokens (chunked kernels differ), dk = Q head size,
    dv = V head size:
      macs = B*T*Hkv*dk*dv (state update k (x) v) + B*T*Hq*dk*dv (output q^T S)
             + B*T*Hkv*dk*dv for the delta rules (S^T k);
      non_mac_ops = B*T*Hq*dv (scale) + B*T*Hkv*dk*dv for gated rules (decay of S)
             + B*T*Hkv*2*dv for delta rules (v - S^T k, * beta).
    """
    qs = need(ctx.in_shape(0), "LinearAttention: query shape")
    vs = need(ctx.in_shape(2), "LinearAttention: value shape")
    hq = int(need(ctx.attr("q_num_heads"), "LinearAttention: q_num_heads"))
    hkv = int(need(ctx.attr("kv_num_heads"), "LinearAttention: kv_num_heads"))
    b, t = qs[0], qs[1]
    dk, dv = qs[2] // hq, vs[2] // hkv
    rule = attr_str(ctx, "update_rule", "gated_delta")
    state = b * t * hkv * dk * dv
    macs = state + b * t * hq * dk * dv + (state if "delta" in rule else 0)
    ops = b * t * hq * dv + (state if "gated" in rule else 0) + \
        (b * t * hkv * 2 * dv if "delta" in rule else 0)
    return OpCost(macs=macs, non_mac_ops=ops, kind="contraction", layer_class="gemm")
