"""Language-model phases on a hardware profile: prefill (the prompt as one pass) and decode (one
token per step while the KV cache grows), from a decoder file or built-in (estimator/decoder.py).

- **prefill** (time to first token, TTFT): the graph at sequence = prompt, past = 0;
- **decode** (time per output token, TPOT): the graph at sequence 1, past = prompt + i for
  steps i = 0 .. generate - 2 (the prompt pass yields the first of the `generate` tokens, each
  decode step one more). The roofline of a step is evaluated at DECODE_SAMPLES context
  lengths spread over the generation (first and last included) and interpolated linearly in
  between: per-step costs are affine in the context length (attention MACs and the cache bytes
  grow with it), so the mean is exact up to a change of bound between two samples;
- tokens/s per sequence = 1 / mean TPOT, in all = batch / mean TPOT;
- KV cache: 2 (K, V) x layers x kv_heads x head_dim x bytes per value per token and sequence,
  at `kv_precision` (default: the activation precision);
- memory footprint = weights + KV cache at prompt + generate - 1 tokens for the batch + the prefill's
  peak live activations x batch, against the profile's `dram_bytes`; `max_batch` is the largest
  batch whose footprint fits.

`weights` ("int4", "int8") is weight-only quantization of the contractions' weights (MatMul,
Gemm, Conv), separate from the activation precision: their bytes become bits/8 per weight plus
one fp16 scale per WEIGHT_BLOCK weights (block-wise, as MatMulNBits stores them); MACs stay at
the activation precision.

The cost of the prediction is that of the analyses: one for prefill, DECODE_SAMPLES for
decode. Pure apart from api.analyze (which reads the model file).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from . import api
from .analyze import PRECISION_BYTES
from .decoder import DecoderIO, detect
from .errors import UserError
from .hardware import HardwareProfile
from .roofline import HwArrays, LayerArrays, evaluate

DECODE_SAMPLES = 5
WEIGHT_BLOCK = 32
WEIGHT_BITS = {"int4": 4, "int8": 8}
KV_PRECISIONS = {"fp32": 4, "fp16": 2, "bf16": 2, "fp8": 1, "int8": 1}


@dataclass(frozen=True)
class Phase:
    seconds: float            # per pass (prefill) or per step (decode)
    compute_share: float      # share of the time in compute-bound layers
    memory_share: float       # in DRAM-bound layers
    overhead_share: float     # per-kernel overhead

    @property
    def bound(self) -> str:
        k = max(("compute", self.compute_share), ("memory", self.memory_share), ("overhead", self.overhead_share),
                key=lambda kv: kv[1])[0]
        return {"compute": "compute-bound", "memory": "DRAM-bound", "overhead": "overhead-bound"}[k]


@dataclass(frozen=True)
class LLMPoint:
    batch: int
    prefill: Phase
    decode_first: Phase
    decode_last: Phase
    tpot_mean_s: float
    kv_cache_bytes: float
    memory_bytes: float
    fits: bool | None         # None: the profile has no dram_bytes

    @property
    def tokens_per_s(self) -> float:
        return 1.0 / self.tpot_mean_s

    def to_dict(self, generate: int, per_token: float) -> dict:
        return {"batch": self.batch, "ttft_s": self.prefill.seconds, "tpot_s": self.tpot_mean_s,
                "tpot_first_s": self.decode_first.seconds, "tpot_last_s": self.decode_last.seconds,
                "tokens_per_s": self.tokens_per_s, "tokens_per_s_total": self.batch * self.tokens_per_s,
                "generation_s": self.prefill.seconds + (generate - 1) * self.tpot_mean_s,
                "kv_cache_bytes_per_token": per_token, "kv_cache_bytes": self.kv_cache_bytes,
                "memory_bytes": self.memory_bytes, "fits_dram": self.fits,
                "prefill_bound": self.prefill.bound, "decode_bound": self.decode_last.bound,
                "prefill_shares": _shares(self.prefill), "decode_shares": _shares(self.decode_last)}


def _shares(p: Phase) -> dict:
    return {"compute": p.compute_share, "memory": p.memory_share, "overhead": p.overhead_share}


@dataclass(frozen=True)
class LLMPrediction:
    io: DecoderIO
    prompt: int
    generate: int
    precision: str
    kv_precision: str
    weights: str | None
    weight_bytes: float
    kv_cache_bytes_per_token: int            # one sequence
    points: tuple[LLMPoint, ...]
    max_batch: int | None
    notes: tuple[str, ...]
    weight_read_floor_s: float = 0.0         # the weights one decode step reads / datasheet DRAM bandwidth

    def to_dict(self) -> dict:
        return {"prompt": self.prompt, "generate": self.generate, "precision": self.precision,
                "kv_precision": self.kv_precision, "weights": self.weights or self.precision,
                "layers": self.io.layers, "kv_heads": self.io.kv_heads, "head_dim": self.io.head_dim,
                "weight_bytes": self.weight_bytes, "kv_cache_bytes_per_token": self.kv_cache_bytes_per_token,
                "max_batch": self.max_batch, "decode_samples": DECODE_SAMPLES,
                "weight_read_floor_s": self.weight_read_floor_s,
                "per_batch": [p.to_dict(self.generate, self.kv_cache_bytes_per_token) for p in self.points],
                "notes": list(self.notes)}


_QUANTIZED_OPS = frozenset({"MatMulNBits", "MatMulBnb4", "MatMulInteger", "QLinearMatMul", "QLinearConv", "ConvInteger",
                            "DynamicQuantizeMatMul", "MatMulIntegerToFloat", "QGemm", "QAttention"})


def _quantize_weights(la: LayerArrays, weights: str | None, precision: str) -> LayerArrays:
    """Weight-only quantization of the contractions' weights (see the module docstring)."""
    if weights is None:
        return la
    per = WEIGHT_BITS[weights] / 8 + 2.0 / WEIGHT_BLOCK      # bytes per weight, with its block scale
    # contractions on float weights only: a MatMulNBits (or any quantized op) already stores its own
    quantized = np.array([op in _QUANTIZED_OPS for op in la.op_types])
    scale = np.where((la.macs > 0) & ~quantized, per / PRECISION_BYTES[precision], 1.0)
    return dataclasses.replace(la, weight_bytes=la.weight_bytes * scale, weight_read_bytes=la.weight_read_bytes * scale,
                               kernel_bytes=la.kernel_bytes * scale if la.kernel_bytes is not None else None)


#: ops that move cache values without arithmetic: their outputs are cache values too (the plain
#: form's Concat append, repeat_kv's Expand, the Transpose of K)
_CACHE_MOVES = frozenset({"Concat", "Expand", "Transpose", "Reshape", "Unsqueeze", "Squeeze", "Slice", "Identity",
                          "Tile", "Flatten"})


def _cache_tensors(table, io: DecoderIO) -> set[str]:
    """The past inputs, the present outputs and every tensor moved from them without arithmetic."""
    cache = set(io.past_inputs) | {o for o in table.outputs if o.startswith("present")}
    for l in table.layers:   # topological order
        if l.op_type in _CACHE_MOVES and any(x in cache for x in l.inputs):
            cache.update(l.outputs)
    return cache


def _kv_scaled(table, la: LayerArrays, io: DecoderIO, kv_bytes: float, precision: str) -> LayerArrays:
    """The cache values (past inputs, present outputs, their copies and views) at the KV precision;
    the layers' working sets follow."""
    act = PRECISION_BYTES[precision]
    if kv_bytes == act:
        return la
    cache = _cache_tensors(table, io)
    tb = la.tensor_bytes * np.array([kv_bytes / act if n in cache else 1.0 for n in la.tensor_names])
    ws = np.zeros(len(la.names))
    np.add.at(ws, la.edge_layer, tb[la.edge_tensor])
    has = la.producer >= 0
    np.add.at(ws, la.producer[has], tb[has])
    return dataclasses.replace(la, tensor_bytes=tb, ws_bytes=ws)


def _phase(la: LayerArrays, hw: HwArrays, batch: int) -> Phase:
    raw = evaluate(la, hw, [batch])
    comp, mem, t = raw.compute_s[0, 0], raw.memory_s[0, 0], raw.time_s[0, 0]
    total = float(raw.latency_s[0, 0])
    busy = float(t.sum()) or 1.0
    over = np.clip(t - np.maximum(comp, mem), 0.0, None)
    return Phase(seconds=total, compute_share=float(np.where(comp >= mem, np.maximum(comp, mem), 0).sum() / busy),
                 memory_share=float(np.where(mem > comp, mem, 0).sum() / busy), overhead_share=float(over.sum() / busy))


def check_options(prompt: int, generate: int, kv_precision: str | None, weights: str | None) -> None:
    """One-line errors for the phase options, before anything is costed."""
    if prompt < 1:
        raise UserError(f"--prompt {prompt}: must be >= 1 (tokens)")
    if generate < 2:
        raise UserError(f"--generate {generate}: must be >= 2 tokens (the first comes from the prompt pass, each "
                        "further one from a decode step)")
    if kv_precision is not None and kv_precision not in KV_PRECISIONS:
        raise UserError(f"--kv-precision {kv_precision!r}: choose one of {', '.join(KV_PRECISIONS)}")
    if weights is not None and weights not in WEIGHT_BITS:
        raise UserError(f"--weights {weights!r}: choose one of {', '.join(WEIGHT_BITS)} (weight-only quantization)")


def predict(spec: str, profile: HardwareProfile, *, prompt: int, generate: int, batches: Sequence[int],
            precision: str, kv_precision: str | None = None, weights: str | None = None,
            input_shapes=None) -> LLMPrediction:
    check_options(prompt, generate, kv_precision, weights)
    kv_precision = kv_precision or precision
    io = check_decoder(spec, input_shapes)
    notes: list[str] = []
    if io.kv_values_per_token is None:
        raise UserError(f"{spec}: the KV heads or head size of its cache inputs are symbolic: set them with --input")
    kv_bytes = KV_PRECISIONS[kv_precision]
    per_token = int(io.kv_values_per_token * kv_bytes)
    hw = HwArrays.from_profiles([profile], precision)
    rules, layout = profile.fusion_rules(), profile.layout_spec()

    def arrays(seq: int, past: int):
        t = api.analyze(spec, batch=1, input_shapes=input_shapes, seq_len=seq, past=past, precision=precision)
        la = LayerArrays.from_table(t, rules=rules, layout=layout)
        return t, _kv_scaled(t, _quantize_weights(la, weights, precision), io, kv_bytes, precision)

    pre_t, pre = arrays(prompt, 0)
    for t_ in (pre_t,):
        u = t_.totals
        if u.uncosted_layers or u.unsupported_ops:
            notes.append(f"the prompt pass leaves {u.uncosted_layers} layer(s) uncounted"
                         + (f" (unsupported: {', '.join(u.unsupported_ops)})" if u.unsupported_ops else "")
                         + f", at least {u.macs_missing_at_least:,} MACs: the phases are lower bounds")
    last = prompt + generate - 2            # the cache length at the last decode step
    ctx = np.unique(np.linspace(prompt, last, min(DECODE_SAMPLES, generate - 1)).round().astype(int))
    dec_t = [arrays(1, int(p)) for p in ctx]
    dec = [la for _, la in dec_t]
    bad = max((t_.totals.uncosted_layers for t_, _ in dec_t), default=0)
    if bad:
        notes.append(f"a decode step leaves {bad} layer(s) uncounted: TPOT is a lower bound (see `estimate MODEL "
                     "--seq-len 1 --past P`)")
    # the weights a decode step reads once: every weight, but only the gathered rows of a lookup table
    wread = np.minimum(dec[-1].weight_read_bytes, np.where(np.isfinite(dec[-1].gather_cap), dec[-1].gather_cap, np.inf))
    weight_read_bytes = float(wread[dec[-1].costed].sum())
    max_pos = max_positions(spec)
    if max_pos is not None and prompt + generate - 1 > max_pos:
        notes.append(f"prompt + generate = {prompt + generate} tokens is beyond {spec}'s {max_pos} positions: "
                     "the counts hold, the model would not")
    weight_bytes = float(pre.weight_bytes.sum())
    # the prompt pass's peak live activations, without its present outputs (the cache, counted apart)
    present = sum(pre_t.tensor_bytes.get(o, 0.0) for o in pre_t.outputs if o.startswith("present"))
    act_peak = max(0.0, float(pre_t.totals.peak_activation_bytes) - present)
    steps = np.arange(prompt, last + 1)     # generate - 1 decode steps
    points = []
    for b in batches:
        pf = _phase(pre, hw, b)
        ph = [_phase(la, hw, b) for la in dec]
        tpot = float(np.interp(steps, ctx, [p.seconds for p in ph]).mean())
        kv = per_token * (prompt + generate - 1) * b    # the cache after the last step
        mem = weight_bytes + kv + act_peak * b
        fits = None if profile.dram_bytes is None else mem <= profile.dram_bytes
        points.append(LLMPoint(batch=b, prefill=pf, decode_first=ph[0], decode_last=ph[-1], tpot_mean_s=tpot,
                               kv_cache_bytes=kv, memory_bytes=mem, fits=fits))
    max_batch = None
    if profile.dram_bytes is not None:
        per_seq = per_token * (prompt + generate - 1) + act_peak
        max_batch = int(max(0.0, (profile.dram_bytes - weight_bytes) // per_seq))
        if max_batch == 0:
            notes.append(f"the weights ({weight_bytes / 2**30:.1f} GiB) and one sequence's cache do not fit in the "
                         f"profile's {profile.dram_bytes / 2**30:.1f} GiB of DRAM")
    if precision != kv_precision:
        notes.append(f"KV cache at {kv_precision}: past and present tensors at {kv_bytes} byte(s) per value")
    if weights:
        notes.append(f"weights {weights}: {WEIGHT_BITS[weights] / 8 + 2.0 / WEIGHT_BLOCK:.4g} bytes per weight "
                     f"(block scales of {WEIGHT_BLOCK}), MACs at {precision}")
    return LLMPrediction(io=io, prompt=prompt, generate=generate, precision=precision, kv_precision=kv_precision,
                         weights=weights, weight_bytes=weight_bytes, kv_cache_bytes_per_token=per_token,
                         points=tuple(points), max_batch=max_batch, notes=tuple(notes),
                         weight_read_floor_s=weight_read_bytes / profile.dram_bandwidth_bytes_per_s)


def max_positions(spec: str) -> int | None:
    """A built-in decoder's context window (None for files: not in the graph)."""
    if not api.is_decoder_builtin(spec):
        return None
    from .models import decoder as dec
    return dec.CONFIGS[spec].max_positions


def check_decoder(spec: str, input_shapes=None) -> DecoderIO:
    """The model's decoder convention; UserError when it has none (before any phase is costed)."""
    return decoder_info(spec, input_shapes)[0]


def decoder_info(spec: str, input_shapes=None) -> tuple[DecoderIO, str | None]:
    """(the decoder convention, the float precision its cache is stored in: fp16 for onnxruntime-genai's
    fp16 models, the default for its phases when --precision is not given), from one load."""
    g = api.load(spec, input_shapes=input_shapes)
    io = detect([(x, g.tensors[x].shape) for x in g.inputs if x in g.tensors])
    if io is None:
        raise UserError(f"{spec}: --prompt/--generate need a decoder with a KV cache (inputs input_ids and "
                        "past_key_values.N.key/value); this model has none")
    dt = str(g.tensors[io.past_inputs[0]].dtype)
    return io, {"float16": "fp16", "bfloat16": "bf16", "float32": "fp32", "float": "fp32"}.get(dt)
