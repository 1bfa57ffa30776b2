"""BERT-base encoder (Devlin et al. 2019; Hugging Face ``bert-base-uncased``) with pooler.

12 layers, hidden 768, 12 heads of 64, FFN 3072, vocabulary 30522, 512 positions, 2 token types.
Inputs ``input_ids``, ``token_type_ids``, ``attention_mask``: [N, S] int64. Outputs
``last_hidden_state`` [N, S, 768] and ``pooler_output`` [N, 768].

- Embeddings: Gather from the word, position and token-type tables, two Adds, LayerNormalization
  (epsilon 1e-12). Position ids are a Constant [1, S] (0..S-1) when S is fixed at build time; with
  a symbolic S they are CumSum(input_ids * 0 + 1, axis 1, exclusive), which keeps [N, S] symbolic
  through shape inference.
- Attention mask: Cast to float, Unsqueeze to [N, 1, 1, S], (1 - m) * -10000, added to the scores.
- Self-attention: MatMul + Add for Q, K, V ([in, out] weights, i.e. torch's Linear weight
  transposed, as torch.onnx exports MatMul on 3-D inputs); Reshape [0, 0, 12, 64]; Transpose
  to [N, 12, S, 64] (K to [N, 12, 64, S]); MatMul; Div by sqrt(64) = 8; Add mask; Softmax;
  MatMul with V; Transpose back; Reshape [0, 0, 768]. Reshape shapes copy N and S with 0 and
  name only the head sizes, so one graph holds at any batch and sequence length.
- Output dense + residual Add + LayerNormalization; FFN dense 768->3072, exact GELU
  x * 0.5 * (1 + erf(x / sqrt(2))) as Div, Erf, Add, Mul, Mul; dense 3072->768 + residual + LN.
- Pooler: Gather token 0 on axis 1, Gemm 768x768 (transB=1, torch's [out, in] weight), Tanh.
"""

from __future__ import annotations

import math

import numpy as np
import onnx
from onnx import TensorProto

from ._graph import GraphBuilder

LAYERS = 12
HIDDEN = 768
HEADS = 12
HEAD_DIM = HIDDEN // HEADS
FFN = 3072
VOCAB = 30522
MAX_POSITIONS = 512
TYPE_VOCAB = 2
LN_EPS = 1e-12
INIT_STD = 0.02  # BERT's initializer_range


def build(name: str, seq_len: int | str, *, weights: bool, seed: int = 7) -> onnx.ModelProto:
    g = GraphBuilder(name, weights=weights, seed=seed)
    S = seq_len
    ids = g.input("input_ids", TensorProto.INT64, ["N", S])
    tts = g.input("token_type_ids", TensorProto.INT64, ["N", S])
    mask = g.input("attention_mask", TensorProto.INT64, ["N", S])

    def dense(x: str, p: str, cin: int, cout: int) -> str:
        wt = g.weight(f"{p}.weight", (cin, cout), std=INIT_STD)
        b = g.weight(f"{p}.bias", (cout,), "const", value=0.0)
        y = g.node("MatMul", [x, wt], f"{p}.matmul")
        return g.node("Add", [y, b], f"{p}.bias_add")

    def layer_norm(x: str, p: str, out: str | None = None) -> str:
        gamma = g.weight(f"{p}.weight", (HIDDEN,), "const", value=1.0)
        beta = g.weight(f"{p}.bias", (HIDDEN,), "const", value=0.0)
        return g.node("LayerNormalization", [x, gamma, beta], p,
                      outputs=[out] if out else None, axis=-1, epsilon=LN_EPS)

    # ---- embeddings
    p = "embeddings"
    word = g.weight(f"{p}.word_embeddings.weight", (VOCAB, HIDDEN), std=INIT_STD)
    pos = g.weight(f"{p}.position_embeddings.weight", (MAX_POSITIONS, HIDDEN), std=INIT_STD)
    typ = g.weight(f"{p}.token_type_embeddings.weight", (TYPE_VOCAB, HIDDEN), std=INIT_STD)
    if isinstance(S, int):
        pos_ids = g.const(f"{p}.position_ids", np.arange(S, dtype=np.int64)[None, :])
    else:
        # 0..S-1 on every row, computed elementwise from input_ids so that shape inference keeps
        # the symbolic [N, S] (a Shape -> Slice of a 512-long table would lose both dims).
        zero = g.const(f"{p}.position_ids.zero", np.array(0, np.int64))
        one_i = g.const(f"{p}.position_ids.one", np.array(1, np.int64))
        zeros = g.node("Mul", [ids, zero], f"{p}.position_ids.zeros")
        ones = g.node("Add", [zeros, one_i], f"{p}.position_ids.ones")
        pos_ids = g.node("CumSum", [ones, one_i], f"{p}.position_ids", exclusive=1)
    x = g.node("Gather", [word, ids], f"{p}.word_embeddings", axis=0)
    t = g.node("Gather", [typ, tts], f"{p}.token_type_embeddings", axis=0)
    ps = g.node("Gather", [pos, pos_ids], f"{p}.position_embeddings", axis=0)
    x = g.node("Add", [x, t], f"{p}.add_token_type")
    x = g.node("Add", [x, ps], f"{p}.add_position")
    x = layer_norm(x, f"{p}.LayerNorm")

    # ---- additive attention mask [N, 1, 1, S]
    p = "extended_attention_mask"
    m = g.node("Cast", [mask], f"{p}.cast", to=TensorProto.FLOAT)
    m = g.node("Unsqueeze", [m, g.const_i64(f"{p}.axes", [1, 2])], f"{p}.unsqueeze")
    one = g.const_f32("const.one", 1.0)
    m = g.node("Sub", [one, m], f"{p}.invert")
    add_mask = g.node("Mul", [m, g.const_f32(f"{p}.min_value", -10000.0)], f"{p}.scale")

    split_heads = g.const_i64("attention.split_heads_shape", [0, 0, HEADS, HEAD_DIM])
    merge_heads = g.const_i64("attention.merge_heads_shape", [0, 0, HIDDEN])
    scale = g.const_f32("attention.sqrt_head_dim", math.sqrt(HEAD_DIM))
    sqrt2 = g.const_f32("gelu.sqrt2", math.sqrt(2.0))
    half = g.const_f32("gelu.half", 0.5)

    # ---- encoder
    for layer in range(LAYERS):
        p = f"encoder.layer.{layer}"
        a = f"{p}.attention.self"
        heads = {}
        for proj, perm in (("query", [0, 2, 1, 3]), ("key", [0, 2, 3, 1]),
                           ("value", [0, 2, 1, 3])):
            y = dense(x, f"{a}.{proj}", HIDDEN, HIDDEN)
            y = g.node("Reshape", [y, split_heads], f"{a}.{proj}.split_heads")
            heads[proj] = g.node("Transpose", [y], f"{a}.{proj}.transpose", perm=perm)
        s = g.node("MatMul", [heads["query"], heads["key"]], f"{a}.scores")
        s = g.node("Div", [s, scale], f"{a}.scores.scale")
        s = g.node("Add", [s, add_mask], f"{a}.scores.mask")
        s = g.node("Softmax", [s], f"{a}.probs", axis=-1)
        c = g.node("MatMul", [s, heads["value"]], f"{a}.context")
        c = g.node("Transpose", [c], f"{a}.context.transpose", perm=[0, 2, 1, 3])
        c = g.node("Reshape", [c, merge_heads], f"{a}.context.merge_heads")
        y = dense(c, f"{p}.attention.output.dense", HIDDEN, HIDDEN)
        y = g.node("Add", [y, x], f"{p}.attention.output.residual")
        x = layer_norm(y, f"{p}.attention.output.LayerNorm")

        f = f"{p}.intermediate"
        y = dense(x, f"{f}.dense", HIDDEN, FFN)
        e = g.node("Div", [y, sqrt2], f"{f}.gelu.div")
        e = g.node("Erf", [e], f"{f}.gelu.erf")
        e = g.node("Add", [e, one], f"{f}.gelu.add")
        e = g.node("Mul", [y, e], f"{f}.gelu.mul")
        y = g.node("Mul", [e, half], f"{f}.gelu.half")
        y = dense(y, f"{p}.output.dense", FFN, HIDDEN)
        y = g.node("Add", [y, x], f"{p}.output.residual")
        x = layer_norm(y, f"{p}.output.LayerNorm",
                       out="last_hidden_state" if layer == LAYERS - 1 else None)

    # ---- pooler
    first = g.node("Gather", [x, g.const("pooler.first_token_index", np.array(0, np.int64))],
                   "pooler.first_token", axis=1)
    pw = g.weight("pooler.dense.weight", (HIDDEN, HIDDEN), std=INIT_STD)
    pb = g.weight("pooler.dense.bias", (HIDDEN,), "const", value=0.0)
    y = g.node("Gemm", [first, pw, pb], "pooler.dense", transB=1)
    g.node("Tanh", [y], "pooler.activation", outputs=["pooler_output"])
    g.output("last_hidden_state", TensorProto.FLOAT, ["N", S, HIDDEN])
    g.output("pooler_output", TensorProto.FLOAT, ["N", HIDDEN])
    return g.model(f"BERT-base encoder with pooler, sequence length {S}",
                   {"estimate.builtin": name, "estimate.seq_len": str(S),
                    "estimate.weights": "random" if weights else "none (graph-only)"})
