"""Contractions on matrices: Gemm, MatMul, Einsum, Det; and the MatMul geometry shared by the
quantized and fused forms (quant.py, microsoft.py).

One MAC = one multiply-accumulate; adds of biases and scalings are non-MAC ops per output
element.
"""

from __future__ import annotations

import string

from .base import (OpContext, matmul_class, OpCost, ShapeUnknown, attr_str, broadcast_shapes, need, prod,
                   register)


def matmul_dims(a: tuple[int, ...], b: tuple[int, ...], trans_a: bool = False,
                trans_b: bool = False) -> tuple[int, int, int, int]:
    """(batch, M, N, K) of numpy matmul(A, B), with optional transposes of the last two dims.

    1-D operands follow numpy: A of shape (K,) is treated as (1, K), B of shape (K,) as (K, 1)
    (the added dim is removed from the output, which does not change the count).
    batch = product of the numpy broadcast of the batch dims (all but the last two).
    """
    a = list(a)
    b = list(b)
    if len(a) == 1:
        a = [1] + a
    elif trans_a:
        a[-1], a[-2] = a[-2], a[-1]
    if len(b) == 1:
        b = b + [1]
    elif trans_b:
        b[-1], b[-2] = b[-2], b[-1]
    m, k = a[-2], a[-1]
    n = b[-1]
    try:
        batch = prod(broadcast_shapes(tuple(a[:-2]), tuple(b[:-2])))
    except ValueError as exc:
        raise ShapeUnknown(f"MatMul batch dims: {exc}") from None
    return batch, m, n, k


def matmul_macs(ctx: OpContext, a: int = 0, b: int = 1, trans_a: bool = False,
                trans_b: bool = False) -> tuple[int, int]:
    """(macs, out_elems) of a MatMul-like node with operands at inputs `a` and `b`."""
    op = ctx.node.op_type
    sa = need(ctx.in_shape(a), f"{op}: shape of input A")
    sb = need(ctx.in_shape(b), f"{op}: shape of input B")
    batch, m, n, k = matmul_dims(sa, sb, trans_a, trans_b)
    return batch * m * n * k, batch * m * n


@register("MatMul")
def matmul(ctx: OpContext) -> OpCost:
    """macs = prod(broadcast batch dims) * M * N * K; no non-MAC ops.

    A (..., M, K) @ B (..., K, N), numpy broadcasting of the batch dims; 1-D operands per numpy
    (a vector A is (1, K), a vector B is (K, 1)).
    """
    sa = need(ctx.in_shape(0), "MatMul: shape of input A")
    sb = need(ctx.in_shape(1), "MatMul: shape of input B")
    batch, m, n, k = matmul_dims(sa, sb, False, False)
    cls = matmul_class(m, ctx.const_inputs[1] or ctx.const_inputs[0])
    return OpCost(macs=batch * m * n * k, kind="contraction", layer_class=cls)


def gemm_counts(ctx: OpContext, c_index: int = 2) -> tuple[int, int, int]:
    """(macs, out_elems, non_mac_ops) of Gemm: Y = alpha * A' B' + beta * C.

    macs = M * N * K; non-MAC per output element: 1 if alpha != 1 (scale), 1 for the C add if
    C is given, 1 more if C is given and beta != 1 (scale of C counted per output element).
    """
    sa = need(ctx.in_shape(0), "Gemm: shape of A")
    sb = need(ctx.in_shape(1), "Gemm: shape of B")
    ta, tb = int(ctx.attr("transA", 0)), int(ctx.attr("transB", 0))
    m, k = (sa[1], sa[0]) if ta else (sa[0], sa[1])
    n = sb[0] if tb else sb[1]
    out = m * n
    per = 1 if float(ctx.attr("alpha", 1.0)) != 1.0 else 0
    if ctx.has_input(c_index):
        per += 1 + (1 if float(ctx.attr("beta", 1.0)) != 1.0 else 0)
    return m * n * k, out, out * per


@register("Gemm")
def gemm(ctx: OpContext) -> OpCost:
    """macs = M * N * K (A is (M,K), or (K,M) with transA; B is (K,N), or (N,K) with transB);
    non_mac_ops = M*N * ([alpha != 1] + [C given] + [C given and beta != 1])."""
    macs, _, ops = gemm_counts(ctx)
    sa = ctx.in_shape(0)
    m_rows = sa[1] if int(ctx.attr("transA", 0)) else sa[0]
    cls = matmul_class(m_rows, True)   # a Gemm's B is a weight in every exporter's output
    return OpCost(macs=macs, non_mac_ops=ops, kind="contraction", layer_class=cls)


# ------------------------------------------------------------------------------- Einsum


def parse_einsum(equation: str, shapes: list[tuple[int, ...]]
                 ) -> tuple[dict[str, int], list[str], list[list[str]]]:
    """Parse an einsum equation against operand shapes.

    Returns (size of each index, output indices, indices of each operand). Ellipsis dims are
    named by private indices aligned from the right and broadcast like numpy; an implicit
    output (no "->") is the ellipsis dims then the letters used exactly once, sorted.
    """
    eq = equation.replace(" ", "")
    lhs, arrow, rhs = eq.partition("->")
    terms = lhs.split(",")
    if len(terms) != len(shapes):
        raise ShapeUnknown(f"Einsum: {len(terms)} operands in {equation!r}, {len(shapes)} inputs")
    ell_rank = 0
    for t, s in zip(terms, shapes):
        if "..." in t:
            ell_rank = max(ell_rank, len(s) - (len(t) - 3))
    ell_names = [chr(0x100 + j) for j in range(ell_rank)]
    sizes: dict[str, int] = {}
    per_op: list[list[str]] = []
    for t, s in zip(terms, shapes):
        if "..." in t:
            before, after = t.split("...")
            n_ell = len(s) - len(before) - len(after)
            idx = list(before) + ell_names[ell_rank - n_ell:] + list(after)
        else:
            idx = list(t)
        if len(idx) != len(s):
            raise ShapeUnknown(f"Einsum: term {t!r} does not match shape {s}")
        for i, d in zip(idx, s):
            sizes[i] = max(sizes.get(i, 1), int(d))   # broadcast: 1 against n gives n
        per_op.append(idx)
    if arrow:
        if "..." in rhs:
            before, after = rhs.split("...")
            out = list(before) + ell_names + list(after)
        else:
            out = list(rhs)
    else:
        letters = [c for t in terms for c in t if c in string.ascii_letters]
        out = ell_names + sorted(c for c in set(letters) if letters.count(c) == 1)
    return sizes, out, per_op


@register("Einsum")
def einsum(ctx: OpContext) -> OpCost:
    """With n operands and S = product of the sizes of all distinct indices:

    - n >= 2 and at least one index summed: macs = (n - 1) * S (each term of the sum takes
      n - 1 multiplies, each accumulated once; naive evaluation, no reordering of a 3+ operand
      contraction into cheaper pairwise steps), kind contraction, class gemm.
    - n >= 2 and no index summed (outer / elementwise products): non_mac_ops = (n - 1) * S.
    - n == 1 and an index summed (reduction, trace): non_mac_ops = S adds, kind reduce.
    - n == 1 and nothing summed (transpose, diagonal): kind data, no ops.
    """
    eq = attr_str(ctx, "equation", "")
    if not eq:
        raise ShapeUnknown("Einsum: no equation attribute")
    n_ops = len(ctx.node.inputs)
    shapes = [need(ctx.in_shape(i), f"Einsum: shape of operand {i}") for i in range(n_ops)]
    sizes, out, _ = parse_einsum(eq, shapes)
    total = prod(sizes.values())
    summed = set(sizes) - set(out)
    if n_ops >= 2 and summed:
        return OpCost(macs=(n_ops - 1) * total, kind="contraction", layer_class="gemm")
    if n_ops >= 2:
        return OpCost(non_mac_ops=(n_ops - 1) * total, kind="elementwise",
                      layer_class="elementwise")
    if summed:
        return OpCost(non_mac_ops=total, kind="reduce", layer_class="elementwise")
    return OpCost(kind="data", layer_class="elementwise")


@register("Det")
def det(ctx: OpContext) -> OpCost:
    """macs = batch * n^3 // 3 for input (..., n, n) (LU factorization; the product of the
    diagonal, n multiplies per matrix, is counted as non-MAC ops)."""
    s = need(ctx.in_shape(0), "Det: input shape")
    n = s[-1]
    batch = prod(s[:-2])
    return OpCost(macs=batch * n ** 3 // 3, non_mac_ops=batch * n, kind="contraction",
                  layer_class="gemm")
