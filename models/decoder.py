"""Decoder-only language models with a KV cache (GPT-2, Llama 3), as optimum / torch.onnx export them,
and the Llamas in onnxruntime-genai's int4 form (MatMulNBits, GroupQueryAttention).

One generic builder, `build_config(cfg)`, driven by a frozen `DecoderConfig`; `CONFIGS` holds the
built-ins. Sources of the configurations (Hugging Face ``config.json`` of each checkpoint):

- ``gpt2`` (openai-community/gpt2; Radford et al. 2019): 12 layers, hidden 768, 12 heads of 64,
  FFN 3072, vocabulary 50257, 1024 learned positions, LayerNorm eps 1e-5, biases on every
  Linear, lm_head tied to the token embedding: 124,439,808 params.
- ``llama-3.2-1b`` (meta-llama/Llama-3.2-1B): 16 layers, hidden 2048, 32 query / 8 KV heads of
  64, FFN 8192, vocabulary 128256, RMSNorm eps 1e-5, rope_theta 500000, 131072 positions, tied
  embeddings: 1,235,814,400 params.
- ``llama-3-8b`` (meta-llama/Meta-Llama-3-8B; Meta 2024): 32 layers, hidden 4096, 32 query / 8
  KV heads of 128, FFN 14336, vocabulary 128256, untied lm_head, RMSNorm eps 1e-5, rope_theta
  500000, 8192 positions: 8,030,261,248 params.

I/O (the names and symbolic dims optimum's ``text-generation-with-past`` export uses)::

    input_ids       int64   [batch_size, sequence_length]
    attention_mask  int64   [batch_size, total_sequence_length]
    position_ids    int64   [batch_size, sequence_length]
    past_key_values.{i}.key / .value   float32 [batch_size, kv_heads, past_sequence_length, head_dim]
    logits          float32 [batch_size, sequence_length, vocab]
    present.{i}.key / .value           float32 [batch_size, kv_heads, total_sequence_length, head_dim]

Every dim except the head sizes stays symbolic: Reshape shapes use 0 (copy) and -1, so one graph
runs at any batch, sequence and past length (total = past + sequence; a past of length 0 is a
prefill). `input_shapes(cfg, ...)` gives the shapes of every input for one step.

Graph (plain ONNX, opset 17, no com.microsoft fusions):

- Embedding: Gather from the token table [vocab, hidden]; GPT-2 adds a Gather from its learned
  position table [max_positions, hidden] by position_ids.
- Mask, built once: attention_mask -> Cast -> Unsqueeze [B, 1, 1, T], times a causal mask over
  the new tokens (query i at cache position past + i sees keys 0..past + i: Range, LessOrEqual
  and Cast from the Shape of input_ids and attention_mask, [S, T]) -> (1 - m) * float32 min,
  [B, 1, S, T], added to every layer's scores.
- RoPE (positions "rope"), built once, at run time from position_ids as transformers'
  LlamaRotaryEmbedding does: inv_freq = 1 / theta^(Range(0, hd, 2) / hd), freqs =
  Cast(position_ids)[..., None] * inv_freq (an element-wise Mul where transformers has a
  [hd/2, 1] x [1, S] MatMul), emb = Concat(freqs, freqs), Cos and Sin, Unsqueeze to
  [B, 1, S, hd]. head_dim is read from the Shape of past_key_values.0.key, so inv_freq is
  computed from shapes, not stored: the graph has no cos/sin table and no inv_freq constant,
  which the analyzer would count as parameters (it counts every float tensor stored in, or
  computed from constants alone by, the graph). Hence max_positions sizes nothing for RoPE
  models. Llama 3.1/3.2's "llama3" frequency rescaling of inv_freq is not applied (it changes
  values, not costs). Applied to Q and K as q * cos + rotate_half(q) * sin, rotate_half(x) =
  Concat(-x[..., hd/2:], x[..., :hd/2]) (Slice, Neg, Concat).
- Each layer (pre-norm): norm -> Q, K, V projections (MatMul with [in, out] weights, + Add for
  biases; GPT-2's fused c_attn is one MatMul [hidden, 3 * hidden] + Split) -> Reshape
  [0, 0, heads, hd] -> Transpose to [B, heads, S, hd] -> RoPE -> present = Concat(past, new,
  axis 2) -> grouped-query attention repeats K and V kv_heads -> heads as transformers'
  repeat_kv exports (Unsqueeze axis 2, Expand [1, 1, heads / kv_heads, 1, 1], Reshape
  [0, heads, -1, hd]; skipped when kv_heads == heads) -> scores = MatMul(Q, Transpose(K)) /
  sqrt(hd) + mask -> Softmax -> MatMul with V -> Transpose, Reshape [0, 0, heads * hd] ->
  output projection -> residual Add. Then norm -> MLP -> residual Add.
- Norms: "rms" is RMSNorm in plain ops, x / Sqrt(ReduceMean(x * x, -1) + eps) * weight;
  "layer" is LayerNormalization (opset 17) with weight and bias.
- MLPs: "swiglu" is down(silu(gate(x)) * up(x)), silu(g) = g * Sigmoid(g); "gelu" is GPT-2's
  gelu_new, the tanh approximation 0.5 x (1 + tanh(sqrt(2 / pi) (x + 0.044715 x^3))) as Mul, Mul,
  Mul, Add, Mul, Tanh, Add, Mul, Mul.
- Final norm, then lm_head: MatMul to vocab. Tied embeddings: a Gemm (transB=1) on the
  embedding initializer itself, between Reshapes to [B * S, hidden] and back to [B, S, vocab]
  (the matrix is one initializer read by two nodes: counted once).

Costs per decode step (sequence 1, past P, per sample): MACs = every Linear's in * out (lm_head
included, the embedding Gathers are not MACs) + layers * heads * head_dim * 2 * (P + 1) (Q K^T and
P V over the P + 1 keys). The causal mask costs a few element-wise ops, no MACs.

Weights: ``weights=False`` (default; graph-only) writes no data, as `_graph.GraphBuilder`
documents: llama-3-8b builds in well under a second. ``weights=True`` draws N(0, 0.02) for
matrices and tables (both families' initializer_range), 1 for norm weights and 0 for biases: use
it for small configurations only (llama-3-8b would be 32 GB).

The onnxruntime-genai form (``build_config(cfg, form="genai")``; built-ins llama-3.2-1b-genai and
llama-3-8b-genai) is the graph onnxruntime-genai's model builder writes for a Llama-style model
with ``-p int4`` (src/python/py/models/builder.py, builders/base.py), with the com.microsoft ops of
onnxruntime's docs/ContribOperators.md; opset 17 + com.microsoft 1:

- I/O as above (same names and dim strings, so estimator/decoder.py detects it), except that
  there is no position_ids (GroupQueryAttention rotates Q and K itself, at the cache positions
  seqlens_k gives, as genai's graphs with rotary fused in attention), and every float tensor is
  at `dtype`: float16 by default (genai's int4 models for CUDA, DirectML, WebGPU), or float32
  (its CPU int4 models). Both run on onnxruntime's CPU provider (checked with 1.32).
- Embedding: float Gather from the token table (genai's default recipe quantizes MatMuls only;
  a GatherBlockQuantized table only when asked). lm_head: float MatMul [hidden, vocab] (tied:
  the Gemm on the table, as above); genai's default recipe also quantizes lm_head (a MatMul),
  kept float here.
- Mask inputs of GroupQueryAttention, once (genai's attn_mask_reformat): seqlens_k =
  Cast(ReduceSum(attention_mask, axis 1) - 1) to int32 [B]; total_sequence_length =
  Cast(Shape(attention_mask)[1]) to int32, a scalar. They describe caches whose valid tokens
  start at position 0 (no left padding), as GroupQueryAttention reads them.
- cos_cache / sin_cache [total_sequence_length, head_dim / 2]: computed from shapes (inv_freq as
  above, times Range(total)), where genai stores [max_positions, head_dim / 2] initializers
  (1,048,576 values for llama-3-8b, 8,388,608 for llama-3.2-1b): here every initializer stays a
  weight. The cost is a few transcendental ops per position and step, no MACs.
- Each layer: input norm (layer 0: SimplifiedLayerNormalization, default domain, as onnxruntime
  registers it; later layers: com.microsoft SkipSimplifiedLayerNormalization of the residual
  stream and the previous MLP output, whose output 3 is the new residual stream) -> qkv_proj,
  one MatMulNBits [hidden -> (heads + 2 kv_heads) * head_dim] (genai packs Q, K and V) ->
  GroupQueryAttention (packed query, key and value inputs empty, past_key/past_value =
  past_key_values.N.*, seqlens_k, total_sequence_length, cos_cache, sin_cache; num_heads,
  kv_num_heads, do_rotary=1, non-interleaved; outputs present.N.key/value) -> o_proj
  MatMulNBits -> SkipSimplifiedLayerNormalization (post-attention) -> gate_proj, up_proj
  MatMulNBits, gate * Sigmoid(gate) * up -> down_proj MatMulNBits. Final norm: a
  SkipSimplifiedLayerNormalization (residual + last MLP output).
- MatMulNBits: bits 4, block_size 32, attributes K and N; B uint8 [N, ceil(K / 32), 16] (two
  4-bit codes a byte, the first in the low nibble), scales [N * ceil(K / 32)] at `dtype`, and
  with ``zero_points=True`` packed uint8 zero points [N * ceil(ceil(K / 32) / 2)] (the layout
  onnxruntime's MatMulNBitsQuantizer writes; ContribOperators.md gives scales as
  (N, k_blocks), the same elements). Default symmetric, as genai: no zero points (zero point 8).
  ``weights=True`` draws each [K, N] matrix N(0, 0.02) and quantizes it (`quantize_nbits`,
  round to nearest; `dequantize_nbits` is the inverse layout).
- Shapes: ONNX's inference does not know the com.microsoft ops nor
  SimplifiedLayerNormalization, so every output of theirs is declared in value_info with the
  symbolic dims, which the loader binds from the inputs. onnx.checker refuses the graph (an op
  of the default domain it has no schema for), as it refuses genai's own files.

Counting the genai form: MACs are the plain form's (each MatMulNBits is rows x N x K, the
MatMul it replaces; GroupQueryAttention the Q K^T and P V term), `decode_macs`. Parameters are
not: the analyzer counts stored elements, and a packed uint8 element holds two 4-bit weights, so
the linear layers count half their logical weights plus one scale per 32 (`stored_counts`):
llama-3-8b-genai stores 4,758,704,128 elements for 8,030,261,248 logical parameters, in
6,027,747,328 bytes (0.5625 bytes per linear weight, plus the float16 embedding, lm_head and
norms). cfg.params stays the logical count.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
import onnx
from onnx import TensorProto, helper

from ._graph import GraphBuilder

INIT_STD = 0.02  # initializer_range of GPT-2 and Llama
MASK_MIN = float(np.finfo(np.float32).min)  # transformers fills masked scores with finfo.min

BATCH, SEQ, TOTAL, PAST = "batch_size", "sequence_length", "total_sequence_length", "past_sequence_length"


FORMS = ("plain", "genai")
MS_DOMAIN = "com.microsoft"
GENAI_BITS = 4          # MatMulNBits bits (onnxruntime-genai's int4 recipe)
GENAI_BLOCK = 32        # MatMulNBits block_size along K (genai's default block size)
GENAI_DTYPES = {"float16": TensorProto.FLOAT16, "float32": TensorProto.FLOAT}
_NP_TYPES = {TensorProto.FLOAT: np.float32, TensorProto.FLOAT16: np.float16, TensorProto.UINT8: np.uint8}


@dataclass(frozen=True)
class DecoderConfig:
    """A decoder-only transformer. norm: "rms" (Llama) or "layer" (GPT-2); mlp: "swiglu"
    (Llama) or "gelu" (GPT-2's tanh approximation); positions: "rope" or "learned" (a
    [max_positions, hidden] table); bias: biases on every Linear (GPT-2); fused_qkv: one
    [hidden, (heads + 2 kv_heads) * head_dim] projection split into Q, K, V (GPT-2's c_attn).
    form: the graph `build_config` writes unless told otherwise, "plain" (plain ONNX, float32)
    or "genai" (onnxruntime-genai's int4 form: Llama-style configs only, see `check_genai`)."""

    name: str
    layers: int
    hidden: int
    heads: int
    kv_heads: int
    head_dim: int
    ffn: int
    vocab: int
    max_positions: int
    norm: str
    mlp: str
    positions: str
    tied_embeddings: bool
    bias: bool
    eps: float
    rope_theta: float = 500000.0
    fused_qkv: bool = False
    form: str = "plain"

    def __post_init__(self) -> None:
        for field, allowed in (("norm", ("rms", "layer")), ("mlp", ("swiglu", "gelu")),
                               ("positions", ("rope", "learned")), ("form", FORMS)):
            if getattr(self, field) not in allowed:
                raise ValueError(f"{self.name}: {field} {getattr(self, field)!r} is not one of {allowed}")
        for field in ("layers", "hidden", "heads", "kv_heads", "head_dim", "ffn", "vocab", "max_positions"):
            v = getattr(self, field)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{self.name}: {field} must be a positive integer, got {v!r}")
        if self.heads % self.kv_heads:
            raise ValueError(f"{self.name}: heads {self.heads} is not a multiple of kv_heads {self.kv_heads}")
        if self.positions == "rope" and self.head_dim % 2:
            raise ValueError(f"{self.name}: rotary embeddings need an even head_dim, got {self.head_dim}")
        if self.form == "genai":
            check_genai(self)

    @property
    def params(self) -> int:
        """Trainable parameters, from the configuration alone: what the plain graph stores, and
        the logical weights of the genai graph (which stores fewer elements:
        `stored_counts`)."""
        h, q, kv = self.hidden, self.heads * self.head_dim, self.kv_heads * self.head_dim
        norm = h * (2 if self.norm == "layer" else 1)
        attn = h * (q + 2 * kv) + q * h + ((q + 2 * kv) + h if self.bias else 0)
        mats = 3 if self.mlp == "swiglu" else 2
        mlp = mats * h * self.ffn + ((self.ffn + h) if self.bias else 0)
        emb = self.vocab * h + (self.max_positions * h if self.positions == "learned" else 0)
        head = 0 if self.tied_embeddings else h * self.vocab
        return emb + self.layers * (2 * norm + attn + mlp) + norm + head

    def decode_macs(self, past: int, sequence: int = 1) -> int:
        """MACs per sample of one step of `sequence` new tokens after `past` cached ones:
        sequence * (every Linear's in * out, lm_head included) + the attention's Q K^T and
        P V, layers * heads * head_dim * 2 * sequence * (past + sequence). The same in both
        forms (a MatMulNBits is rows x N x K MACs, like the MatMul it replaces)."""
        h, q, kv = self.hidden, self.heads * self.head_dim, self.kv_heads * self.head_dim
        mats = 3 if self.mlp == "swiglu" else 2
        linear = self.layers * (h * (q + 2 * kv) + q * h + mats * h * self.ffn) + h * self.vocab
        attn = self.layers * self.heads * self.head_dim * 2 * sequence * (past + sequence)
        return sequence * linear + attn

    def linears(self) -> list[tuple[str, int, int]]:
        """(name, in, out) of every projection of one layer as the genai form writes them (Q, K
        and V packed into one qkv_proj, as onnxruntime-genai does)."""
        h, q, kv = self.hidden, self.heads * self.head_dim, self.kv_heads * self.head_dim
        return [("self_attn.qkv_proj", h, q + 2 * kv), ("self_attn.o_proj", q, h),
                ("mlp.gate_proj", h, self.ffn), ("mlp.up_proj", h, self.ffn), ("mlp.down_proj", self.ffn, h)]


def check_genai(cfg: DecoderConfig) -> None:
    """The genai form is written for Llama-style configs, with onnxruntime's constraints:
    RMSNorm, SwiGLU, RoPE, no biases; head_dim a multiple of 16 (GroupQueryAttention's fused
    rotary kernel: head_size % 16 == 0 and cos_cache dim 1 = head_size / 2 a multiple of 8)."""
    wrong = [f"{f} {getattr(cfg, f)!r} (needs {v!r})" for f, v in
             (("norm", "rms"), ("mlp", "swiglu"), ("positions", "rope"), ("bias", False)) if getattr(cfg, f) != v]
    if wrong:
        raise ValueError(f"{cfg.name}: the genai form is written for Llama-style decoders: {', '.join(wrong)}")
    if cfg.head_dim % 16:
        raise ValueError(f"{cfg.name}: the genai form needs head_dim a multiple of 16 (onnxruntime "
                         f"GroupQueryAttention with do_rotary), got {cfg.head_dim}")


_LLAMA_1B = DecoderConfig(name="llama-3.2-1b", layers=16, hidden=2048, heads=32, kv_heads=8, head_dim=64,
                          ffn=8192, vocab=128256, max_positions=131072, norm="rms", mlp="swiglu",
                          positions="rope", tied_embeddings=True, bias=False, eps=1e-5, rope_theta=500000.0)
_LLAMA_8B = DecoderConfig(name="llama-3-8b", layers=32, hidden=4096, heads=32, kv_heads=8, head_dim=128,
                          ffn=14336, vocab=128256, max_positions=8192, norm="rms", mlp="swiglu",
                          positions="rope", tied_embeddings=False, bias=False, eps=1e-5, rope_theta=500000.0)

CONFIGS: dict[str, DecoderConfig] = {c.name: c for c in (
    DecoderConfig(name="gpt2", layers=12, hidden=768, heads=12, kv_heads=12, head_dim=64, ffn=3072,
                  vocab=50257, max_positions=1024, norm="layer", mlp="gelu", positions="learned",
                  tied_embeddings=True, bias=True, eps=1e-5, fused_qkv=True),
    _LLAMA_1B,
    _LLAMA_8B,
    # the same configurations in onnxruntime-genai's int4 form
    replace(_LLAMA_1B, name="llama-3.2-1b-genai", form="genai"),
    replace(_LLAMA_8B, name="llama-3-8b-genai", form="genai"),
)}


def input_shapes(cfg: DecoderConfig, *, batch: int = 1, sequence: int = 1, past: int = 0,
                 form: str | None = None) -> dict[str, tuple[int, ...]]:
    """The shape of every input for one step: `sequence` new tokens after `past` cached ones
    (what `estimator.api.analyze(..., input_shapes=...)` needs to bind every dim). form
    (default cfg.form): the genai graph has no position_ids input."""
    form = _form(cfg, form)
    shapes: dict[str, tuple[int, ...]] = {
        "input_ids": (batch, sequence), "attention_mask": (batch, past + sequence)}
    if form == "plain":
        shapes["position_ids"] = (batch, sequence)
    for i in range(cfg.layers):
        for kv in ("key", "value"):
            shapes[f"past_key_values.{i}.{kv}"] = (batch, cfg.kv_heads, past, cfg.head_dim)
    return shapes


def stored_counts(cfg: DecoderConfig, *, form: str | None = None, dtype: str | None = None,
                  zero_points: bool = False) -> tuple[int, int]:
    """(elements, bytes) of every initializer `build_config` writes for `cfg` (what the analyzer
    reports as params and weight bytes). Plain: (cfg.params, 4 * cfg.params). Genai, per
    projection of N outputs and K inputs, k_blocks = ceil(K / 32): N * k_blocks * 16 packed
    uint8 (two 4-bit weights a byte), N * k_blocks scales at `dtype`, N * ceil(k_blocks / 2)
    packed uint8 zero points if asked; norms, embedding and lm_head at `dtype`."""
    form = _form(cfg, form)
    if form == "plain":
        return cfg.params, 4 * cfg.params
    check_genai(cfg)
    item = np.dtype(_NP_TYPES[GENAI_DTYPES[_genai_dtype(dtype)]]).itemsize
    packed = floats = 0
    for _, k, n in cfg.linears():
        kb = -(-k // GENAI_BLOCK)
        packed += n * kb * (GENAI_BLOCK * GENAI_BITS // 8) + (n * -(-kb // 2) if zero_points else 0)
        floats += n * kb
    h = cfg.hidden
    floats = cfg.layers * (floats + 2 * h) + h + cfg.vocab * h * (1 if cfg.tied_embeddings else 2)
    packed *= cfg.layers
    return packed + floats, packed + item * floats


def build(name: str, seq_len=None, *, weights: bool, config: str | None = None) -> onnx.ModelProto:
    """The registry's entry point (estimator.models.build): the built-in `config` (default
    `name`), in its config's form. seq_len is accepted and ignored: every sequence dim stays
    symbolic, bound when the graph is loaded (input_shapes)."""
    return build_config(CONFIGS[config or name], weights=weights)


def build_config(cfg: DecoderConfig, *, weights: bool = False, seed: int = 0, form: str | None = None,
                 dtype: str | None = None, zero_points: bool = False) -> onnx.ModelProto:
    """Build `cfg` as an onnx.ModelProto; graph-only unless weights=True.

    form (default cfg.form): "plain" (plain ONNX opset 17, float32; dtype and zero_points do
    not apply) or "genai" (onnxruntime-genai's int4 form, opset 17 + com.microsoft 1; see the
    module docstring). dtype (genai only): "float16" (default; genai's int4 models for CUDA,
    DirectML and WebGPU) or "float32" (genai's CPU int4 models) for activations, KV cache,
    scales, norms, embedding and lm_head. zero_points (genai only): asymmetric quantization
    with packed uint8 zero points (genai's default is symmetric: none, zero point 8)."""
    form = _form(cfg, form)
    if form == "plain":
        if dtype not in (None, "float32") or zero_points:
            raise ValueError(f"{cfg.name}: the plain form is float32 and unquantized "
                             "(dtype and zero_points apply to form='genai')")
        return _build_plain(cfg, weights=weights, seed=seed)
    check_genai(cfg)
    return _build_genai(cfg, weights=weights, seed=seed, elem=GENAI_DTYPES[_genai_dtype(dtype)],
                        zero_points=bool(zero_points))


def _form(cfg: DecoderConfig, form: str | None) -> str:
    form = cfg.form if form is None else form
    if form not in FORMS:
        raise ValueError(f"{cfg.name}: form {form!r} is not one of {FORMS}")
    return form


def _genai_dtype(dtype: str | None) -> str:
    dtype = "float16" if dtype is None else dtype
    if dtype not in GENAI_DTYPES:
        raise ValueError(f"genai form: dtype {dtype!r} is not one of {tuple(GENAI_DTYPES)}")
    return dtype


# ------------------------------------------------------------------------------ 4-bit blocks


def quantize_nbits(w: np.ndarray, *, zero_points: bool = False, block: int = GENAI_BLOCK
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Round-to-nearest 4-bit block quantization of a [K, N] weight (y = x @ w) in
    MatMulNBits's layout, as onnxruntime's MatMulNBitsQuantizer writes it: blocks of `block`
    along K for each output column; B uint8 [N, k_blocks, block / 2] (the first weight of a
    pair in the low nibble), scales [N * k_blocks], and with zero_points packed uint8
    [N * ceil(k_blocks / 2)] (else the implied zero point is 8, symmetric). K is zero-padded
    to a multiple of `block`."""
    k, n = w.shape
    kb = -(-k // block)
    wt = np.zeros((n, kb * block), np.float32)
    wt[:, :k] = w.T
    wt = wt.reshape(n, kb, block)
    if zero_points:
        lo = np.minimum(wt.min(-1), 0.0)
        hi = np.maximum(wt.max(-1), 0.0)
        scale = (hi - lo) / 15.0
        scale[scale == 0] = 1.0
        zp = np.clip(np.rint(-lo / scale), 0, 15)
    else:
        scale = np.abs(wt).max(-1) / 7.0
        scale[scale == 0] = 1.0
        zp = np.full(scale.shape, 8.0, np.float32)
    q = np.clip(np.rint(wt / scale[..., None]) + zp[..., None], 0, 15).astype(np.uint8)
    packed = (q[..., 0::2] | (q[..., 1::2] << 4)).astype(np.uint8)
    zps = None
    if zero_points:
        z = np.zeros((n, 2 * -(-kb // 2)), np.uint8)
        z[:, :kb] = zp.astype(np.uint8)
        zps = (z[:, 0::2] | (z[:, 1::2] << 4)).reshape(-1)
    return packed, scale.reshape(-1).astype(np.float32), zps


def dequantize_nbits(packed: np.ndarray, scales: np.ndarray, k: int, zero_points: np.ndarray | None = None
                     ) -> np.ndarray:
    """The [K, N] float32 weight MatMulNBits computes with (the inverse layout of
    `quantize_nbits`): (code - zero point) * scale, block by block."""
    n, kb, half = packed.shape
    q = np.empty((n, kb, 2 * half), np.float32)
    q[..., 0::2] = packed & 0x0F
    q[..., 1::2] = packed >> 4
    if zero_points is None:
        zp = np.full((n, kb), 8.0, np.float32)
    else:
        z = zero_points.reshape(n, -1)
        zp = np.stack([z & 0x0F, z >> 4], -1).reshape(n, -1)[:, :kb].astype(np.float32)
    w = (q - zp[..., None]) * scales.astype(np.float32).reshape(n, kb)[..., None]
    return w.reshape(n, kb * 2 * half)[:, :k].T.copy()


def _build_plain(cfg: DecoderConfig, *, weights: bool, seed: int) -> onnx.ModelProto:
    """The plain-ONNX form (opset 17, float32), as optimum / torch.onnx export it."""
    g = GraphBuilder(cfg.name, weights=weights, seed=seed)
    H, nh, nkv, hd = cfg.hidden, cfg.heads, cfg.kv_heads, cfg.head_dim
    q_dim, kv_dim, n_rep = nh * hd, nkv * hd, nh // nkv

    ids = g.input("input_ids", TensorProto.INT64, [BATCH, SEQ])
    mask = g.input("attention_mask", TensorProto.INT64, [BATCH, TOTAL])
    pos = g.input("position_ids", TensorProto.INT64, [BATCH, SEQ])
    past = [[g.input(f"past_key_values.{i}.{kv}", TensorProto.FLOAT, [BATCH, nkv, PAST, hd])
             for kv in ("key", "value")] for i in range(cfg.layers)]

    one = g.const_f32("const.one", 1.0)
    i64 = {v: g.const(f"const.i64_{v}", np.array(v, np.int64)) for v in (0, 1)}

    def linear(x: str, p: str, cin: int, cout: int) -> str:
        """MatMul with an [in, out] weight (torch's Linear weight transposed), + bias."""
        w = g.weight(f"{p}.weight", (cin, cout), std=INIT_STD)
        if not cfg.bias:
            return g.node("MatMul", [x, w], p)
        y = g.node("MatMul", [x, w], f"{p}.matmul")
        return g.node("Add", [y, g.weight(f"{p}.bias", (cout,), "const", value=0.0)], p)

    def norm(x: str, p: str) -> str:
        w = g.weight(f"{p}.weight", (H,), "const", value=1.0)
        if cfg.norm == "layer":
            b = g.weight(f"{p}.bias", (H,), "const", value=0.0)
            return g.node("LayerNormalization", [x, w, b], p, axis=-1, epsilon=cfg.eps)
        sq = g.node("Mul", [x, x], f"{p}.square")
        ms = g.node("ReduceMean", [sq], f"{p}.mean", axes=[-1], keepdims=1)
        ms = g.node("Add", [ms, g.const_f32(f"{p}.eps", cfg.eps)], f"{p}.add_eps")
        rms = g.node("Sqrt", [ms], f"{p}.sqrt")
        y = g.node("Div", [x, rms], f"{p}.normalize")
        return g.node("Mul", [y, w], p)

    # ---- embeddings
    emb = g.weight("model.embed_tokens.weight", (cfg.vocab, H), std=INIT_STD)
    x = g.node("Gather", [emb, ids], "model.embed_tokens", axis=0)
    if cfg.positions == "learned":
        wpe = g.weight("model.embed_positions.weight", (cfg.max_positions, H), std=INIT_STD)
        pe = g.node("Gather", [wpe, pos], "model.embed_positions", axis=0)
        x = g.node("Add", [x, pe], "model.embed_add_positions")

    # ---- additive mask [B, 1, S, T]: padding (attention_mask) times causal (cache positions)
    p = "model.mask"
    seq = g.node("Gather", [g.node("Shape", [ids], f"{p}.ids_shape"), i64[1]], f"{p}.sequence_length", axis=0)
    total = g.node("Gather", [g.node("Shape", [mask], f"{p}.mask_shape"), i64[1]], f"{p}.total_sequence_length",
                   axis=0)
    start = g.node("Sub", [total, seq], f"{p}.past_sequence_length")
    q_pos = g.node("Range", [start, total, i64[1]], f"{p}.query_positions")
    k_pos = g.node("Range", [i64[0], total, i64[1]], f"{p}.key_positions")
    q_pos = g.node("Unsqueeze", [q_pos, g.const_i64("const.axes_1", [1])], f"{p}.query_positions.column")
    k_pos = g.node("Unsqueeze", [k_pos, g.const_i64("const.axes_0", [0])], f"{p}.key_positions.row")
    causal = g.node("LessOrEqual", [k_pos, q_pos], f"{p}.causal")
    causal = g.node("Cast", [causal], f"{p}.causal.float", to=TensorProto.FLOAT)
    m = g.node("Cast", [mask], f"{p}.padding.float", to=TensorProto.FLOAT)
    m = g.node("Unsqueeze", [m, g.const_i64("const.axes_1_2", [1, 2])], f"{p}.padding.unsqueeze")
    m = g.node("Mul", [m, causal], f"{p}.keep")
    m = g.node("Sub", [one, m], f"{p}.invert")
    add_mask = g.node("Mul", [m, g.const_f32(f"{p}.min_value", MASK_MIN)], p)

    # ---- rotary embeddings cos/sin [B, 1, S, hd], computed from position_ids
    if cfg.positions == "rope":
        p = "model.rotary_emb"
        three, two = (g.const(f"const.i64_{v}", np.array(v, np.int64)) for v in (3, 2))
        dim = g.node("Gather", [g.node("Shape", [past[0][0]], f"{p}.cache_shape"), three], f"{p}.head_dim", axis=0)
        e = g.node("Range", [i64[0], dim, two], f"{p}.even_indices")
        e = g.node("Cast", [e], f"{p}.even_indices.float", to=TensorProto.FLOAT)
        e = g.node("Div", [e, g.node("Cast", [dim], f"{p}.head_dim.float", to=TensorProto.FLOAT)], f"{p}.exponent")
        inv = g.node("Pow", [g.const_f32(f"{p}.theta", cfg.rope_theta), e], f"{p}.theta_pow")
        inv = g.node("Reciprocal", [inv], f"{p}.inv_freq")
        t = g.node("Cast", [pos], f"{p}.positions.float", to=TensorProto.FLOAT)
        t = g.node("Unsqueeze", [t, g.const_i64("const.axes_neg1", [-1])], f"{p}.positions.unsqueeze")
        freqs = g.node("Mul", [t, inv], f"{p}.freqs")
        freqs = g.node("Concat", [freqs, freqs], f"{p}.emb", axis=-1)
        heads_axis = g.const_i64("const.axes_1", [1])
        cos = g.node("Unsqueeze", [g.node("Cos", [freqs], f"{p}.cos_raw"), heads_axis], f"{p}.cos")
        sin = g.node("Unsqueeze", [g.node("Sin", [freqs], f"{p}.sin_raw"), heads_axis], f"{p}.sin")
        half_lo = g.const_i64("const.rope_half_starts", [0])
        half_mid = g.const_i64("const.rope_half", [hd // 2])
        half_end = g.const_i64("const.rope_end", [hd])
        last_axis = g.const_i64("const.axes_3", [3])

    def rope(x: str, p: str) -> str:
        x1 = g.node("Slice", [x, half_lo, half_mid, last_axis], f"{p}.x1")
        x2 = g.node("Slice", [x, half_mid, half_end, last_axis], f"{p}.x2")
        rot = g.node("Concat", [g.node("Neg", [x2], f"{p}.neg_x2"), x1], f"{p}.rotate_half", axis=-1)
        a = g.node("Mul", [x, cos], f"{p}.mul_cos")
        b = g.node("Mul", [rot, sin], f"{p}.mul_sin")
        return g.node("Add", [a, b], p)

    split_q = g.const_i64("attention.split_q_shape", [0, 0, nh, hd])
    split_kv = g.const_i64("attention.split_kv_shape", [0, 0, nkv, hd])
    merge = g.const_i64("attention.merge_heads_shape", [0, 0, q_dim])
    if n_rep > 1:
        expand = g.const_i64("attention.repeat_kv.expand_shape", [1, 1, n_rep, 1, 1])
        repeat = g.const_i64("attention.repeat_kv.shape", [0, nh, -1, hd])
        axes2 = g.const_i64("const.axes_2", [2])
    scale = g.const_f32("attention.sqrt_head_dim", math.sqrt(hd))
    if cfg.mlp == "gelu":
        gelu_c = g.const_f32("gelu.coeff", 0.044715)
        gelu_s = g.const_f32("gelu.sqrt_2_over_pi", math.sqrt(2.0 / math.pi))
        half = g.const_f32("gelu.half", 0.5)

    # ---- layers
    for i in range(cfg.layers):
        p = f"model.layers.{i}"
        a = f"{p}.self_attn"
        y = norm(x, f"{p}.input_layernorm")
        if cfg.fused_qkv:
            qkv = linear(y, f"{a}.qkv_proj", H, q_dim + 2 * kv_dim)
            sizes = g.const_i64(f"{a}.qkv_split", [q_dim, kv_dim, kv_dim])
            q, k, v = (f"{a}.{n}_proj" for n in "qkv")
            g.node("Split", [qkv, sizes], f"{a}.qkv_split.node", outputs=[q, k, v], axis=-1)
        else:
            q = linear(y, f"{a}.q_proj", H, q_dim)
            k = linear(y, f"{a}.k_proj", H, kv_dim)
            v = linear(y, f"{a}.v_proj", H, kv_dim)
        q = g.node("Transpose", [g.node("Reshape", [q, split_q], f"{a}.q.split_heads")], f"{a}.q.transpose",
                   perm=[0, 2, 1, 3])
        k = g.node("Transpose", [g.node("Reshape", [k, split_kv], f"{a}.k.split_heads")], f"{a}.k.transpose",
                   perm=[0, 2, 1, 3])
        v = g.node("Transpose", [g.node("Reshape", [v, split_kv], f"{a}.v.split_heads")], f"{a}.v.transpose",
                   perm=[0, 2, 1, 3])
        if cfg.positions == "rope":
            q = rope(q, f"{a}.q.rotary")
            k = rope(k, f"{a}.k.rotary")
        k = g.node("Concat", [past[i][0], k], f"{a}.cache_key", outputs=[f"present.{i}.key"], axis=2)
        v = g.node("Concat", [past[i][1], v], f"{a}.cache_value", outputs=[f"present.{i}.value"], axis=2)
        if n_rep > 1:
            k, v = (g.node("Reshape", [g.node("Expand", [
                g.node("Unsqueeze", [t, axes2], f"{a}.repeat_kv.{n}.unsqueeze"), expand],
                f"{a}.repeat_kv.{n}.expand"), repeat], f"{a}.repeat_kv.{n}") for n, t in (("key", k), ("value", v)))
        kt = g.node("Transpose", [k], f"{a}.key.transpose", perm=[0, 1, 3, 2])
        s = g.node("MatMul", [q, kt], f"{a}.scores")
        s = g.node("Div", [s, scale], f"{a}.scores.scale")
        s = g.node("Add", [s, add_mask], f"{a}.scores.mask")
        s = g.node("Softmax", [s], f"{a}.probs", axis=-1)
        c = g.node("MatMul", [s, v], f"{a}.context")
        c = g.node("Transpose", [c], f"{a}.context.transpose", perm=[0, 2, 1, 3])
        c = g.node("Reshape", [c, merge], f"{a}.context.merge_heads")
        y = linear(c, f"{a}.o_proj", q_dim, H)
        x = g.node("Add", [x, y], f"{p}.attn_residual")

        f = f"{p}.mlp"
        y = norm(x, f"{p}.post_attention_layernorm")
        if cfg.mlp == "swiglu":
            gate = linear(y, f"{f}.gate_proj", H, cfg.ffn)
            up = linear(y, f"{f}.up_proj", H, cfg.ffn)
            act = g.node("Mul", [gate, g.node("Sigmoid", [gate], f"{f}.act.sigmoid")], f"{f}.act")
            y = g.node("Mul", [act, up], f"{f}.act_up")
            y = linear(y, f"{f}.down_proj", cfg.ffn, H)
        else:
            u = linear(y, f"{f}.up_proj", H, cfg.ffn)
            t = g.node("Mul", [u, u], f"{f}.gelu.square")
            t = g.node("Mul", [t, u], f"{f}.gelu.cube")
            t = g.node("Mul", [t, gelu_c], f"{f}.gelu.cube_coeff")
            t = g.node("Add", [u, t], f"{f}.gelu.inner")
            t = g.node("Mul", [t, gelu_s], f"{f}.gelu.scale")
            t = g.node("Tanh", [t], f"{f}.gelu.tanh")
            t = g.node("Add", [t, one], f"{f}.gelu.add_one")
            t = g.node("Mul", [u, t], f"{f}.gelu.mul")
            y = g.node("Mul", [t, half], f"{f}.gelu")
            y = linear(y, f"{f}.down_proj", cfg.ffn, H)
        x = g.node("Add", [x, y], f"{p}.mlp_residual")

    # ---- final norm and lm_head
    x = norm(x, "model.norm")
    _lm_head(g, cfg, x, ids, emb, lambda: g.weight("lm_head.weight", (H, cfg.vocab), std=INIT_STD))

    g.output("logits", TensorProto.FLOAT, [BATCH, SEQ, cfg.vocab])
    for i in range(cfg.layers):
        for kv in ("key", "value"):
            g.output(f"present.{i}.{kv}", TensorProto.FLOAT, [BATCH, nkv, TOTAL, hd])
    doc = (f"{cfg.name}: decoder-only transformer with KV cache, {cfg.layers} layers, hidden {H}, "
           f"{nh} query / {nkv} KV heads of {hd}, FFN {cfg.ffn}, vocabulary {cfg.vocab}")
    return g.model(doc, {"estimate.builtin": cfg.name, "estimate.seq_len": "symbolic",
                         "estimate.weights": "random" if weights else "none (graph-only)"})


def _lm_head(g, cfg: DecoderConfig, x: str, ids: str, emb: str, untied_weight) -> None:
    """logits: tied, a Gemm on the embedding table itself (transB; no Transpose, so the table is one
    weight) between Reshapes; untied, a MatMul on its own [hidden, vocab] weight."""
    if cfg.tied_embeddings:
        flat = g.node("Reshape", [x, g.const_i64("lm_head.flatten_shape", [-1, cfg.hidden])], "lm_head.flatten")
        y = g.node("Gemm", [flat, emb], "lm_head", transB=1)
        shape = g.node("Concat", [g.node("Shape", [ids], "lm_head.batch_seq"),
                                  g.const_i64("lm_head.vocab", [cfg.vocab])], "lm_head.logits_shape", axis=0)
        g.node("Reshape", [y, shape], "lm_head.unflatten", outputs=["logits"])
    else:
        g.node("MatMul", [x, untied_weight()], "lm_head", outputs=["logits"])


# ------------------------------------------------------------------------------ genai form


class _GenaiGraphBuilder(GraphBuilder):
    """GraphBuilder with initializers of any element type (packed uint8, float16), optional
    outputs left empty (""), and value_info declarations for the outputs of ops ONNX's shape
    inference does not know (com.microsoft, SimplifiedLayerNormalization)."""

    def tensor(self, name: str, shape, elem_type: int, make) -> str:
        """An initializer of `elem_type`; `make()` gives its values (called only with
        weights, so that graph-only builds draw nothing)."""
        self._claim_tensor(name)
        shape = [int(d) for d in shape]
        np_type = np.dtype(_NP_TYPES[elem_type]).newbyteorder("<")
        t = self.graph.initializer.add()
        t.name = name
        t.data_type = elem_type
        t.dims.extend(shape)
        if self.weights:
            t.raw_data = np.asarray(make()).astype(np_type, copy=False).reshape(shape).tobytes()
        else:
            self._external(t, np_type.itemsize * math.prod(shape))
        return name

    def node(self, op_type, inputs, name, outputs=None, **attrs) -> str:
        outs = list(outputs) if outputs is not None else [name]
        for o in outs:
            if o:
                self._claim_tensor(o)
        self._add_node(helper.make_node(op_type, list(inputs), outs, name=name, **attrs))
        return outs[0]

    def declare(self, name: str, elem_type: int, shape) -> str:
        self.graph.value_info.append(helper.make_tensor_value_info(name, elem_type, list(shape)))
        return name


def _build_genai(cfg: DecoderConfig, *, weights: bool, seed: int, elem: int, zero_points: bool) -> onnx.ModelProto:
    """onnxruntime-genai's int4 form of a Llama-style decoder (see the module docstring)."""
    g = _GenaiGraphBuilder(cfg.name, weights=weights, seed=seed)
    H, nh, nkv, hd = cfg.hidden, cfg.heads, cfg.kv_heads, cfg.head_dim
    q_dim = nh * hd
    rng = g.rng

    ids = g.input("input_ids", TensorProto.INT64, [BATCH, SEQ])
    mask = g.input("attention_mask", TensorProto.INT64, [BATCH, TOTAL])
    past = [[g.input(f"past_key_values.{i}.{kv}", elem, [BATCH, nkv, PAST, hd])
             for kv in ("key", "value")] for i in range(cfg.layers)]
    i64 = {v: g.const(f"const.i64_{v}", np.array(v, np.int64)) for v in (0, 1, 2, 3)}

    def normal(*shape: int):
        return lambda: rng.standard_normal(math.prod(shape), dtype=np.float32) * np.float32(INIT_STD)

    def ones(n: int):
        return lambda: np.ones(n, np.float32)

    def matmul_nbits(x: str, p: str, k: int, n: int) -> str:
        """MatMulNBits (bits 4, block 32) of x [B, S, k] with the [k, n] weight of `p`,
        drawn N(0, 0.02) and quantized with quantize_nbits (weights=True only)."""
        kb = -(-k // GENAI_BLOCK)
        q: list = []

        def quantized():
            if not q:
                q.extend(quantize_nbits(normal(k, n)().reshape(k, n), zero_points=zero_points))
            return q

        ins = [x, g.tensor(f"{p}.weight_Q4", (n, kb, GENAI_BLOCK * GENAI_BITS // 8), TensorProto.UINT8,
                           lambda: quantized()[0]),
               g.tensor(f"{p}.weight_scales", (n * kb,), elem, lambda: quantized()[1])]
        if zero_points:
            ins.append(g.tensor(f"{p}.weight_zero_points", (n * -(-kb // 2),), TensorProto.UINT8,
                                lambda: quantized()[2]))
        y = g.node("MatMulNBits", ins, p, domain=MS_DOMAIN, K=k, N=n, bits=GENAI_BITS, block_size=GENAI_BLOCK)
        return g.declare(y, elem, [BATCH, SEQ, n])

    def norm(x: str, p: str) -> str:
        """The first layer's input norm: SimplifiedLayerNormalization (default domain)."""
        w = g.tensor(f"{p}.weight", (H,), elem, ones(H))
        y = g.node("SimplifiedLayerNormalization", [x, w], p, axis=-1, epsilon=cfg.eps, stash_type=1)
        return g.declare(y, elem, [BATCH, SEQ, H])

    def skip_norm(residual: str, x: str, p: str, last: bool = False) -> tuple[str, str | None]:
        """residual + x (the new residual stream, output 3), then RMSNorm (output 0)."""
        w = g.tensor(f"{p}.weight", (H,), elem, ones(H))
        outs = [p] if last else [p, "", "", f"{p}.residual"]
        g.node("SkipSimplifiedLayerNormalization", [residual, x, w], p, outputs=outs, domain=MS_DOMAIN,
               epsilon=cfg.eps)
        for o in outs:
            if o:
                g.declare(o, elem, [BATCH, SEQ, H])
        return p, (None if last else outs[3])

    # ---- embedding (float Gather; genai quantizes it only with tied, quantized embeddings)
    emb = g.tensor("model.embed_tokens.weight", (cfg.vocab, H), elem, normal(cfg.vocab, H))
    x = g.node("Gather", [emb, ids], "model.embed_tokens", axis=0)

    # ---- GroupQueryAttention's mask inputs, as genai's attn_mask_reformat subgraph
    p = "model.attn_mask"
    seqlens = g.node("ReduceSum", [mask, g.const_i64("const.axes_1", [1])], f"{p}.reduce_sum", keepdims=0)
    seqlens = g.node("Sub", [seqlens, i64[1]], f"{p}.sub")
    seqlens_k = g.node("Cast", [seqlens], f"{p}.seqlens_k", to=TensorProto.INT32)
    total = g.node("Gather", [g.node("Shape", [mask], f"{p}.shape"), i64[1]], f"{p}.total_sequence_length.int64",
                   axis=0)
    total_len = g.node("Cast", [total], f"{p}.total_sequence_length", to=TensorProto.INT32)

    # ---- cos/sin caches [total_sequence_length, hd/2], computed (not stored) from shapes
    p = "model.rotary_emb"
    dim = g.node("Gather", [g.node("Shape", [past[0][0]], f"{p}.cache_shape"), i64[3]], f"{p}.head_dim", axis=0)
    e = g.node("Range", [i64[0], dim, i64[2]], f"{p}.even_indices")
    e = g.node("Cast", [e], f"{p}.even_indices.float", to=TensorProto.FLOAT)
    e = g.node("Div", [e, g.node("Cast", [dim], f"{p}.head_dim.float", to=TensorProto.FLOAT)], f"{p}.exponent")
    inv = g.node("Pow", [g.const_f32(f"{p}.theta", cfg.rope_theta), e], f"{p}.theta_pow")
    inv = g.node("Reciprocal", [inv], f"{p}.inv_freq")
    t = g.node("Cast", [g.node("Range", [i64[0], total, i64[1]], f"{p}.positions")], f"{p}.positions.float",
               to=TensorProto.FLOAT)
    t = g.node("Unsqueeze", [t, g.const_i64("const.axes_neg1", [-1])], f"{p}.positions.column")
    freqs = g.node("Mul", [t, inv], f"{p}.freqs")
    cos = g.node("Cos", [freqs], f"{p}.cos_cache" if elem == TensorProto.FLOAT else f"{p}.cos_cache.float")
    sin = g.node("Sin", [freqs], f"{p}.sin_cache" if elem == TensorProto.FLOAT else f"{p}.sin_cache.float")
    if elem != TensorProto.FLOAT:
        cos = g.node("Cast", [cos], f"{p}.cos_cache", to=elem)
        sin = g.node("Cast", [sin], f"{p}.sin_cache", to=elem)

    # ---- layers
    residual = x
    y = None
    for i in range(cfg.layers):
        p = f"model.layers.{i}"
        a = f"{p}.self_attn"
        if i == 0:
            y = norm(x, f"{p}.input_layernorm")
        else:
            y, residual = skip_norm(residual, y, f"{p}.input_layernorm")
        qkv = matmul_nbits(y, f"{a}.qkv_proj", H, q_dim + 2 * nkv * hd)
        att = g.node("GroupQueryAttention", [qkv, "", "", past[i][0], past[i][1], seqlens_k, total_len, cos, sin],
                     f"{a}.attn", outputs=[f"{a}.attn", f"present.{i}.key", f"present.{i}.value"],
                     domain=MS_DOMAIN, num_heads=nh, kv_num_heads=nkv, do_rotary=1)
        g.declare(att, elem, [BATCH, SEQ, q_dim])
        y = matmul_nbits(att, f"{a}.o_proj", q_dim, H)
        y, residual = skip_norm(residual, y, f"{p}.post_attention_layernorm")
        f = f"{p}.mlp"
        gate = matmul_nbits(y, f"{f}.gate_proj", H, cfg.ffn)
        up = matmul_nbits(y, f"{f}.up_proj", H, cfg.ffn)
        act = g.node("Mul", [gate, g.node("Sigmoid", [gate], f"{f}.act.sigmoid")], f"{f}.act")
        y = matmul_nbits(g.node("Mul", [act, up], f"{f}.act_up"), f"{f}.down_proj", cfg.ffn, H)

    # ---- final norm (residual + last MLP) and lm_head (float, not quantized)
    x, _ = skip_norm(residual, y, "model.norm", last=True)
    _lm_head(g, cfg, x, ids, emb, lambda: g.tensor("lm_head.weight", (H, cfg.vocab), elem, normal(H, cfg.vocab)))

    g.output("logits", elem, [BATCH, SEQ, cfg.vocab])
    for i in range(cfg.layers):
        for kv in ("key", "value"):
            g.output(f"present.{i}.{kv}", elem, [BATCH, nkv, TOTAL, hd])
    dtype = "float16" if elem == TensorProto.FLOAT16 else "float32"
    doc = (f"{cfg.name}: decoder-only transformer with KV cache in onnxruntime-genai's int4 form "
           f"(MatMulNBits bits {GENAI_BITS} block {GENAI_BLOCK}, GroupQueryAttention with fused rotary, "
           f"{dtype}), {cfg.layers} layers, hidden {H}, {nh} query / {nkv} KV heads of {hd}, FFN {cfg.ffn}, "
           f"vocabulary {cfg.vocab}")
    quant = (f"int{GENAI_BITS} block {GENAI_BLOCK} {'asymmetric (zero points)' if zero_points else 'symmetric'}"
             ", MatMulNBits; embedding and lm_head " + dtype)
    m = g.model(doc, {"estimate.builtin": cfg.name, "estimate.seq_len": "symbolic",
                      "estimate.weights": "random" if weights else "none (graph-only)",
                      "estimate.form": "genai", "estimate.quantization": quant})
    m.opset_import.append(helper.make_opsetid(MS_DOMAIN, 1))
    return m
