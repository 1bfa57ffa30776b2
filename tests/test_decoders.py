"""Tests of the decoder-only language models with a KV cache (models/decoder.py).

Pinned counts and their sources (Hugging Face config.json of each checkpoint):
- gpt2: 124,439,808 params (GPT2LMHeadModel, tied lm_head).
- llama-3.2-1b: 1,235,814,400 params (tied embeddings).
- llama-3-8b: 8,030,261,248 params (untied lm_head).
MACs of one decode step (sequence 1) after P cached tokens, per sample, derived by hand:
    sum of every Linear's in * out (lm_head included; the embedding Gather is not a MAC)
  + layers * heads * head_dim * 2 * (P + 1)       (Q K^T and P V over the P + 1 keys)
- gpt2:          12 x (768 x 2304 + 768 x 768 + 2 x 768 x 3072) + 768 x 50257
                 = 84,934,656 + 38,597,376 = 123,532,032;  attention 18,432 per key
- llama-3.2-1b:  16 x (2048 x (2048 + 2 x 512) + 2048 x 2048 + 3 x 2048 x 8192) + 2048 x 128256
                 = 973,078,528 + 262,668,288 = 1,235,746,816;  attention 65,536 per key
- llama-3-8b:    32 x (4096 x (4096 + 2 x 1024) + 4096 x 4096 + 3 x 4096 x 14336) + 4096 x 128256
                 = 6,979,321,856 + 525,336,576 = 7,504,658,432;  attention 262,144 per key

The onnxruntime-genai forms (llama-3.2-1b-genai, llama-3-8b-genai: MatMulNBits 4 bits block 32
with float16 scales, GroupQueryAttention, float16 embedding / lm_head / norms) have the same
MACs. Their stored elements (the analyzer's params), with L the layer weights of one layer
(every projection's in x out: 60,817,408 / 218,103,808):
- packed uint8: layers x L / 2 (two 4-bit weights a byte); scales: layers x L / 32;
  norms: (2 x layers + 1) x hidden; embedding vocab x hidden (and lm_head, untied).
- llama-3-8b-genai: 3,489,660,928 + 218,103,808 + 266,240 + 2 x 525,336,576 = 4,758,704,128
  elements; bytes 3,489,660,928 + 2 x (218,103,808 + 266,240 + 1,050,673,152) = 6,027,747,328:
  0.5625 bytes per linear weight (0.5 + 2 / 32) x 6,979,321,856 = 3,925,868,544, plus
  2,101,878,784 for the float16 embedding, lm_head and norms.
- llama-3.2-1b-genai: 486,539,264 + 30,408,704 + 67,584 + 262,668,288 = 779,683,840 elements,
  1,072,828,416 bytes.
"""

from __future__ import annotations

import dataclasses
import math
import time

import numpy as np
import onnx
import pytest
from onnx import TensorProto, numpy_helper

from estimator import api
from estimator.models import BUILTINS, build
from estimator.models.decoder import (CONFIGS, DecoderConfig, build_config, dequantize_nbits, input_shapes,
                                      quantize_nbits, stored_counts)

DECODERS = ("gpt2", "llama-3.2-1b", "llama-3-8b")
GENAI = {"llama-3.2-1b-genai": "llama-3.2-1b", "llama-3-8b-genai": "llama-3-8b"}   # genai form -> plain config

PARAMS = {"gpt2": 124_439_808, "llama-3.2-1b": 1_235_814_400, "llama-3-8b": 8_030_261_248}

# name -> (linear MACs per token incl. lm_head, attention MACs per cached key = layers*heads*hd*2)
MACS = {
    "gpt2": (123_532_032, 12 * 12 * 64 * 2),
    "llama-3.2-1b": (1_235_746_816, 16 * 32 * 64 * 2),
    "llama-3-8b": (7_504_658_432, 32 * 32 * 128 * 2),
}

TINY = {
    # Llama layout: RMSNorm, SwiGLU, RoPE, grouped-query attention (2 query heads per KV head)
    "tiny-llama": DecoderConfig(name="tiny-llama", layers=2, hidden=32, heads=4, kv_heads=2, head_dim=8,
                                ffn=48, vocab=61, max_positions=64, norm="rms", mlp="swiglu",
                                positions="rope", tied_embeddings=False, bias=False, eps=1e-5,
                                rope_theta=10000.0),
    # Llama 3.2 1B layout: tied embeddings, head_dim != hidden / heads, 4 query heads per KV head
    "tiny-llama-tied": DecoderConfig(name="tiny-llama-tied", layers=2, hidden=24, heads=4, kv_heads=1,
                                     head_dim=4, ffn=40, vocab=37, max_positions=32, norm="rms",
                                     mlp="swiglu", positions="rope", tied_embeddings=True, bias=False,
                                     eps=1e-5),
    # GPT-2 layout: LayerNorm, tanh GELU, learned positions, biases, tied lm_head, fused c_attn
    "tiny-gpt2": DecoderConfig(name="tiny-gpt2", layers=2, hidden=32, heads=4, kv_heads=4, head_dim=8,
                               ffn=64, vocab=53, max_positions=64, norm="layer", mlp="gelu",
                               positions="learned", tied_embeddings=True, bias=True, eps=1e-5,
                               fused_qkv=True),
    # the same with separate Q, K, V projections
    "tiny-gpt2-unfused": DecoderConfig(name="tiny-gpt2-unfused", layers=1, hidden=16, heads=2, kv_heads=2,
                                       head_dim=8, ffn=32, vocab=29, max_positions=16, norm="layer",
                                       mlp="gelu", positions="learned", tied_embeddings=False, bias=True,
                                       eps=1e-5),
}


def _dims(vi: onnx.ValueInfoProto) -> list:
    return [d.dim_value if d.WhichOneof("value") == "dim_value" else d.dim_param
            for d in vi.type.tensor_type.shape.dim]


def _analyze(name: str, *, sequence: int = 1, past: int = 0, batch: int = 1):
    return api.analyze(name, input_shapes=input_shapes(CONFIGS[name], batch=batch, sequence=sequence,
                                                       past=past)).totals


# ------------------------------------------------------------------------------ configs, registry


def test_configs_and_registry():
    assert set(CONFIGS) == set(DECODERS) | set(GENAI)
    for name in DECODERS:
        cfg, info = CONFIGS[name], BUILTINS[name]
        assert cfg.name == name and info.kind == "sequence" and info.default_resolution is None
        assert cfg.params == PARAMS[name]
        assert cfg.decode_macs(0) == sum(MACS[name])
        assert next(f.value for f in info.figures if f.quantity == "params") == PARAMS[name]
        assert [f.value for f in info.figures if f.quantity == "macs"] == [sum(MACS[name])]
        with pytest.raises(dataclasses.FrozenInstanceError):
            cfg.layers = 1  # type: ignore[misc]
    c = CONFIGS["llama-3-8b"]
    assert (c.layers, c.hidden, c.heads, c.kv_heads, c.head_dim, c.ffn, c.vocab, c.max_positions) == (
        32, 4096, 32, 8, 128, 14336, 128256, 8192)
    assert (c.norm, c.mlp, c.positions, c.tied_embeddings, c.bias, c.eps, c.rope_theta) == (
        "rms", "swiglu", "rope", False, False, 1e-5, 500000.0)
    c = CONFIGS["llama-3.2-1b"]
    assert (c.layers, c.hidden, c.heads, c.kv_heads, c.head_dim, c.ffn, c.vocab, c.max_positions,
            c.tied_embeddings) == (16, 2048, 32, 8, 64, 8192, 128256, 131072, True)
    c = CONFIGS["gpt2"]
    assert (c.layers, c.hidden, c.heads, c.kv_heads, c.head_dim, c.ffn, c.vocab, c.max_positions,
            c.norm, c.mlp, c.positions, c.tied_embeddings, c.bias) == (
        12, 768, 12, 12, 64, 3072, 50257, 1024, "layer", "gelu", "learned", True, True)


@pytest.mark.parametrize("change, match", [
    ({"norm": "batch"}, "norm"), ({"mlp": "relu"}, "mlp"), ({"positions": "alibi"}, "positions"),
    ({"kv_heads": 3}, "multiple"), ({"head_dim": 7}, "even"), ({"layers": 0}, "layers"),
])
def test_config_validation(change, match):
    with pytest.raises(ValueError, match=match):
        dataclasses.replace(TINY["tiny-llama"], **change)


# ------------------------------------------------------------------------------ graph contract


@pytest.mark.parametrize("name", DECODERS)
def test_io_contract(name):
    cfg = CONFIGS[name]
    model = build(name, weights=False)
    kvh, hd = cfg.kv_heads, cfg.head_dim
    inputs = [("input_ids", TensorProto.INT64, ["batch_size", "sequence_length"]),
              ("attention_mask", TensorProto.INT64, ["batch_size", "total_sequence_length"]),
              ("position_ids", TensorProto.INT64, ["batch_size", "sequence_length"])]
    outputs = [("logits", TensorProto.FLOAT, ["batch_size", "sequence_length", cfg.vocab])]
    for i in range(cfg.layers):
        for kv in ("key", "value"):
            inputs.append((f"past_key_values.{i}.{kv}", TensorProto.FLOAT,
                           ["batch_size", kvh, "past_sequence_length", hd]))
            outputs.append((f"present.{i}.{kv}", TensorProto.FLOAT,
                            ["batch_size", kvh, "total_sequence_length", hd]))
    got = [(vi.name, vi.type.tensor_type.elem_type, _dims(vi)) for vi in model.graph.input]
    assert got == inputs
    got = [(vi.name, vi.type.tensor_type.elem_type, _dims(vi)) for vi in model.graph.output]
    assert got == outputs
    # one graph for every batch, sequence and past: no Reshape names a batch or sequence size
    consts = {n.output[0]: numpy_helper.to_array(n.attribute[0].t)
              for n in model.graph.node if n.op_type == "Constant"}
    for n in model.graph.node:
        if n.op_type == "Reshape" and n.input[1] in consts:
            shape = consts[n.input[1]].tolist()
            assert shape[0] in (0, -1), (n.name, shape)
    # every initializer is a weight of the published model, none a cos/sin or inv_freq table
    assert sum(math.prod(t.dims) for t in model.graph.initializer) == PARAMS[name]
    assert all(t.data_type == TensorProto.FLOAT for t in model.graph.initializer)
    assert not any("rotary" in n.name for n in model.graph.node if n.op_type == "Constant"
                   and consts[n.output[0]].size > 1)
    assert model.opset_import[0].version == 17 and model.ir_version == 8


def test_seq_len_is_ignored_and_dims_stay_symbolic():
    a = build("gpt2", weights=False)
    b = build("gpt2", seq_len=16, weights=False)
    assert a.SerializeToString() == b.SerializeToString()


def test_graph_only_llama_3_8b_is_quick():
    t = time.perf_counter()
    model = build_config(CONFIGS["llama-3-8b"])
    assert time.perf_counter() - t < 5.0
    assert all(t.data_location == TensorProto.EXTERNAL and not t.raw_data for t in model.graph.initializer)
    assert model.ByteSize() < 2_000_000   # the graph, not 32 GB of weights


def test_checker_on_graph_only(tmp_path):
    model = build("llama-3.2-1b", weights=False)
    path = tmp_path / "m.onnx"
    path.write_bytes(model.SerializeToString())
    (tmp_path / "llama-3.2-1b.weights.bin").touch()   # the checker wants the external file to exist
    onnx.checker.check_model(str(path))
    onnx.shape_inference.infer_shapes(model, strict_mode=True)


# ------------------------------------------------------------------------------ counting


@pytest.mark.parametrize("name", DECODERS)
def test_params(name):
    assert _analyze(name, past=3).params == PARAMS[name]


@pytest.mark.parametrize("name", DECODERS)
def test_decode_macs(name):
    linear, per_key = MACS[name]
    p1, p2 = 17, 1000
    t1, t2 = _analyze(name, past=p1), _analyze(name, past=p2)
    assert t1.macs == linear + per_key * (p1 + 1)
    assert t2.macs == linear + per_key * (p2 + 1)
    cfg = CONFIGS[name]
    assert t2.macs - t1.macs == cfg.layers * cfg.heads * cfg.head_dim * 2 * (p2 - p1)
    assert not t1.unsupported_ops and not t1.uncosted_ops and t1.uncosted_layers == 0
    assert dict(t1.macs_by_op_type) == ({"MatMul": t1.macs} if not cfg.tied_embeddings else
                                        {"MatMul": t1.macs - cfg.hidden * cfg.vocab, "Gemm": cfg.hidden * cfg.vocab})


def test_prefill_and_batch_macs():
    # a prompt of S tokens at past P: S x linear + per_key x S x (P + S); batch scales it
    linear, per_key = MACS["llama-3.2-1b"]
    t = _analyze("llama-3.2-1b", sequence=7, past=5)
    assert t.macs == 7 * linear + per_key * 7 * 12 == CONFIGS["llama-3.2-1b"].decode_macs(5, sequence=7)
    assert _analyze("llama-3.2-1b", sequence=7, past=5, batch=3).macs == 3 * t.macs


# ------------------------------------------------------------------------------ onnxruntime


def _randomize(model: onnx.ModelProto, seed: int) -> dict[str, np.ndarray]:
    """Random values in every initializer (norm weights and biases included, so that the
    comparison with the reference sees them); returns them by name."""
    rng = np.random.default_rng(seed)
    out = {}
    for t in model.graph.initializer:
        std = 0.3 if len(t.dims) == 1 else 0.2
        arr = rng.normal(0.0, std, tuple(t.dims)).astype(np.float32)
        if len(t.dims) == 1 and t.name.endswith("norm.weight"):
            arr += 1.0
        t.raw_data = arr.tobytes()
        out[t.name] = arr
    return out


def _reference(cfg: DecoderConfig, w: dict, ids, mask, pos, past):
    """The decoder in numpy (float64), written from the transformers modeling code."""
    f = np.float64
    nh, nkv, hd = cfg.heads, cfg.kv_heads, cfg.head_dim
    B, S = ids.shape
    T = mask.shape[1]
    P = T - S

    def lin(x, p):
        y = x @ w[f"{p}.weight"].astype(f)
        return y + w[f"{p}.bias"] if cfg.bias else y

    def norm(x, p):
        if cfg.norm == "rms":
            return x / np.sqrt((x * x).mean(-1, keepdims=True) + cfg.eps) * w[f"{p}.weight"]
        mu = x.mean(-1, keepdims=True)
        var = ((x - mu) ** 2).mean(-1, keepdims=True)
        return (x - mu) / np.sqrt(var + cfg.eps) * w[f"{p}.weight"] + w[f"{p}.bias"]

    x = w["model.embed_tokens.weight"].astype(f)[ids]
    if cfg.positions == "learned":
        x = x + w["model.embed_positions.weight"][pos]
    causal = np.arange(T)[None, :] <= (P + np.arange(S))[:, None]
    allowed = (mask[:, None, None, :] > 0) & causal
    if cfg.positions == "rope":
        inv = 1.0 / cfg.rope_theta ** (np.arange(0, hd, 2) / hd)
        fr = pos[..., None].astype(f) * inv
        emb = np.concatenate([fr, fr], -1)[:, None]
        cos, sin = np.cos(emb), np.sin(emb)

        def rope(t):
            rot = np.concatenate([-t[..., hd // 2:], t[..., :hd // 2]], -1)
            return t * cos + rot * sin
    presents = []
    for i in range(cfg.layers):
        p = f"model.layers.{i}"
        a = f"{p}.self_attn"
        h = norm(x, f"{p}.input_layernorm")
        if cfg.fused_qkv:
            q, k, v = np.split(lin(h, f"{a}.qkv_proj"), [nh * hd, (nh + nkv) * hd], -1)
        else:
            q, k, v = lin(h, f"{a}.q_proj"), lin(h, f"{a}.k_proj"), lin(h, f"{a}.v_proj")
        q = q.reshape(B, S, nh, hd).transpose(0, 2, 1, 3)
        k = k.reshape(B, S, nkv, hd).transpose(0, 2, 1, 3)
        v = v.reshape(B, S, nkv, hd).transpose(0, 2, 1, 3)
        if cfg.positions == "rope":
            q, k = rope(q), rope(k)
        k = np.concatenate([past[i][0], k], 2)
        v = np.concatenate([past[i][1], v], 2)
        presents += [k, v]
        kr, vr = np.repeat(k, nh // nkv, axis=1), np.repeat(v, nh // nkv, axis=1)   # repeat_kv
        s = q @ kr.transpose(0, 1, 3, 2) / math.sqrt(hd)
        s = np.where(allowed, s, -np.inf)
        e = np.exp(s - s.max(-1, keepdims=True))
        c = (e / e.sum(-1, keepdims=True)) @ vr
        x = x + lin(c.transpose(0, 2, 1, 3).reshape(B, S, nh * hd), f"{a}.o_proj")
        h = norm(x, f"{p}.post_attention_layernorm")
        m = f"{p}.mlp"
        if cfg.mlp == "swiglu":
            g = lin(h, f"{m}.gate_proj")
            h = lin(g / (1 + np.exp(-g)) * lin(h, f"{m}.up_proj"), f"{m}.down_proj")
        else:
            u = lin(h, f"{m}.up_proj")
            h = lin(0.5 * u * (1 + np.tanh(math.sqrt(2 / math.pi) * (u + 0.044715 * u ** 3))), f"{m}.down_proj")
        x = x + h
    x = norm(x, "model.norm")
    head = w["model.embed_tokens.weight"].T if cfg.tied_embeddings else w["lm_head.weight"]
    return x @ head.astype(f), presents


def _feeds(cfg, ids, mask, pos, past):
    feeds = {"input_ids": ids, "attention_mask": mask, "position_ids": pos}
    for i, (k, v) in enumerate(past):
        feeds[f"past_key_values.{i}.key"] = k.astype(np.float32)
        feeds[f"past_key_values.{i}.value"] = v.astype(np.float32)
    return feeds


@pytest.mark.parametrize("tiny", sorted(TINY))
def test_runs_in_onnxruntime_with_cache(tiny, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    cfg = TINY[tiny]
    model = build_config(cfg, weights=True)
    onnx.checker.check_model(model, full_check=True)
    w = _randomize(model, seed=1)
    path = tmp_path / "m.onnx"
    path.write_bytes(model.SerializeToString())
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    out_names = [o.name for o in sess.get_outputs()]
    rng = np.random.default_rng(0)
    B, S, P = 2, 3, 4
    kvh, hd = cfg.kv_heads, cfg.head_dim

    # step 1: 3 new tokens after 4 cached ones; the second sequence is left-padded by 2
    ids = rng.integers(0, cfg.vocab, (B, S))
    mask = np.ones((B, P + S), np.int64)
    mask[1, :2] = 0
    pos = np.tile(np.arange(P, P + S), (B, 1))
    past = [tuple(rng.normal(0, 1, (B, kvh, P, hd)) for _ in range(2)) for _ in range(cfg.layers)]
    outs = dict(zip(out_names, sess.run(None, _feeds(cfg, ids, mask, pos, past))))
    assert outs["logits"].shape == (B, S, cfg.vocab)
    for i in range(cfg.layers):
        for kv in ("key", "value"):
            assert outs[f"present.{i}.{kv}"].shape == (B, kvh, P + S, hd)
    ref, ref_present = _reference(cfg, w, ids, mask, pos, past)
    np.testing.assert_allclose(outs["logits"], ref, rtol=1e-4, atol=1e-4)
    for i in range(cfg.layers):
        np.testing.assert_allclose(outs[f"present.{i}.key"], ref_present[2 * i], rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(outs[f"present.{i}.value"], ref_present[2 * i + 1], rtol=1e-4, atol=1e-5)

    # step 2: one token, the presents fed back as the past
    ids2 = rng.integers(0, cfg.vocab, (B, 1))
    mask2 = np.concatenate([mask, np.ones((B, 1), np.int64)], 1)
    pos2 = np.full((B, 1), P + S)
    past2 = [(outs[f"present.{i}.key"], outs[f"present.{i}.value"]) for i in range(cfg.layers)]
    outs2 = dict(zip(out_names, sess.run(None, _feeds(cfg, ids2, mask2, pos2, past2))))
    assert outs2["logits"].shape == (B, 1, cfg.vocab)
    assert all(outs2[f"present.{i}.{kv}"].shape == (B, kvh, P + S + 1, hd)
               for i in range(cfg.layers) for kv in ("key", "value"))
    np.testing.assert_allclose(outs2["logits"], _reference(cfg, w, ids2, mask2, pos2, past2)[0],
                               rtol=1e-4, atol=1e-4)
    assert all(np.isfinite(o).all() for o in outs2.values())

    # the cache is exact: a 4-token prompt (past 0) = 3 tokens, then 1 token on their cache
    empty = [(np.zeros((1, kvh, 0, hd)),) * 2 for _ in range(cfg.layers)]
    prompt = rng.integers(0, cfg.vocab, (1, 4))
    full = sess.run(["logits"], _feeds(cfg, prompt, np.ones((1, 4), np.int64), np.arange(4)[None], empty))[0]
    first = dict(zip(out_names, sess.run(None, _feeds(cfg, prompt[:, :3], np.ones((1, 3), np.int64),
                                                        np.arange(3)[None], empty))))
    cache = [(first[f"present.{i}.key"], first[f"present.{i}.value"]) for i in range(cfg.layers)]
    last = sess.run(["logits"], _feeds(cfg, prompt[:, 3:], np.ones((1, 4), np.int64), np.array([[3]]), cache))[0]
    np.testing.assert_allclose(first["logits"], full[:, :3], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(last, full[:, 3:], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("tiny", sorted(TINY))
def test_tiny_counts(tiny):
    """The analyzer's params and MACs on the tiny graphs agree with the config's formulas."""
    from estimator.analyze import analyze
    from estimator.onnx_io import load_graph

    cfg = TINY[tiny]
    for past, seq in ((1, 1), (9, 1), (4, 3)):
        t = analyze(load_graph(build_config(cfg), input_shapes=input_shapes(cfg, sequence=seq, past=past))).totals
        assert t.params == cfg.params == sum(math.prod(x.dims) for x in build_config(cfg).graph.initializer)
        assert t.macs == cfg.decode_macs(past, sequence=seq)


# ------------------------------------------------------------------------------ genai form

GENAI_PARAMS = {"llama-3.2-1b-genai": 779_683_840, "llama-3-8b-genai": 4_758_704_128}
GENAI_WEIGHT_BYTES = {"llama-3.2-1b-genai": 1_072_828_416, "llama-3-8b-genai": 6_027_747_328}

TINY_GENAI = {
    # head_dim 16: GroupQueryAttention's fused rotary needs a multiple of 16; ffn 48 is not a
    # multiple of the block size 32 (down_proj's K is zero-padded to 64)
    "tiny-llama-genai": DecoderConfig(name="tiny-llama-genai", layers=2, hidden=64, heads=4, kv_heads=2,
                                      head_dim=16, ffn=48, vocab=61, max_positions=64, norm="rms", mlp="swiglu",
                                      positions="rope", tied_embeddings=False, bias=False, eps=1e-5,
                                      rope_theta=10000.0, form="genai"),
    # tied embeddings (the Gemm on the embedding table), 2 query heads per KV head
    "tiny-llama-tied-genai": DecoderConfig(name="tiny-llama-tied-genai", layers=2, hidden=32, heads=2,
                                           kv_heads=1, head_dim=16, ffn=64, vocab=37, max_positions=32,
                                           norm="rms", mlp="swiglu", positions="rope", tied_embeddings=True,
                                           bias=False, eps=1e-5, form="genai"),
}

_ELEM_BYTES = {TensorProto.FLOAT: 4, TensorProto.FLOAT16: 2, TensorProto.UINT8: 1}


def _analyze_genai(name: str, *, sequence: int = 1, past: int = 0, batch: int = 1):
    return api.analyze(name, input_shapes=input_shapes(CONFIGS[name], batch=batch, sequence=sequence,
                                                       past=past))


def test_genai_registry():
    for name, plain in GENAI.items():
        cfg, base, info = CONFIGS[name], CONFIGS[plain], BUILTINS[name]
        assert cfg == dataclasses.replace(base, name=name, form="genai") and base.form == "plain"
        assert info.kind == "sequence" and "onnxruntime-genai" in info.citation
        assert "ContribOperators.md" in info.citation
        assert cfg.params == PARAMS[plain] and cfg.decode_macs(0) == sum(MACS[plain])
        assert next(f.value for f in info.figures if f.quantity == "params") == PARAMS[plain]
        assert [f.value for f in info.figures if f.quantity == "macs"] == [sum(MACS[plain])]
        assert f"{GENAI_PARAMS[name]:,}" in info.citation and f"{GENAI_WEIGHT_BYTES[name]:,}" in info.citation
        assert stored_counts(cfg) == (GENAI_PARAMS[name], GENAI_WEIGHT_BYTES[name])
        assert stored_counts(cfg, form="plain") == (PARAMS[plain], 4 * PARAMS[plain])
        assert api.is_decoder_builtin(name)   # the loader sets its dims (--seq-len, --past)


@pytest.mark.parametrize("change, match", [
    ({"norm": "layer"}, "Llama-style"), ({"mlp": "gelu"}, "Llama-style"), ({"positions": "learned"}, "Llama-style"),
    ({"bias": True}, "Llama-style"), ({"head_dim": 8}, "multiple of 16"), ({"form": "gguf"}, "form"),
])
def test_genai_config_validation(change, match):
    with pytest.raises(ValueError, match=match):
        dataclasses.replace(TINY_GENAI["tiny-llama-genai"], **change)


def test_genai_build_arguments():
    with pytest.raises(ValueError, match="Llama-style"):
        build_config(CONFIGS["gpt2"], form="genai")
    with pytest.raises(ValueError, match="plain form"):
        build_config(CONFIGS["llama-3.2-1b"], dtype="float16")
    with pytest.raises(ValueError, match="plain form"):
        build_config(CONFIGS["llama-3.2-1b"], zero_points=True)
    with pytest.raises(ValueError, match="dtype"):
        build_config(CONFIGS["llama-3.2-1b"], form="genai", dtype="bfloat16")
    with pytest.raises(ValueError, match="form"):
        build_config(CONFIGS["llama-3.2-1b"], form="int4")
    # form= overrides the config's: the plain config in the genai form is the genai built-in
    a = build_config(CONFIGS["llama-3.2-1b"], form="genai")
    b = build("llama-3.2-1b-genai", weights=False)
    assert [(n.op_type, n.domain, list(n.input)) for n in a.graph.node] == [
        (n.op_type, n.domain, list(n.input)) for n in b.graph.node]
    assert build_config(CONFIGS["llama-3.2-1b-genai"], form="plain").graph.node[0].op_type == "Constant"
    assert "position_ids" in input_shapes(CONFIGS["llama-3-8b"])
    assert "position_ids" not in input_shapes(CONFIGS["llama-3-8b-genai"])
    assert "position_ids" in input_shapes(CONFIGS["llama-3-8b-genai"], form="plain")


@pytest.mark.parametrize("name", sorted(GENAI))
def test_genai_io_contract_and_ops(name):
    cfg = CONFIGS[name]
    model = build(name, weights=False)
    H, kvh, hd, q = cfg.hidden, cfg.kv_heads, cfg.head_dim, cfg.heads * cfg.head_dim
    f16 = TensorProto.FLOAT16
    # the plain form's names and dim strings; no position_ids (GroupQueryAttention rotates
    # from seqlens_k, as genai's graphs with rotary fused in attention)
    inputs = [("input_ids", TensorProto.INT64, ["batch_size", "sequence_length"]),
              ("attention_mask", TensorProto.INT64, ["batch_size", "total_sequence_length"])]
    outputs = [("logits", f16, ["batch_size", "sequence_length", cfg.vocab])]
    for i in range(cfg.layers):
        for kv in ("key", "value"):
            inputs.append((f"past_key_values.{i}.{kv}", f16, ["batch_size", kvh, "past_sequence_length", hd]))
            outputs.append((f"present.{i}.{kv}", f16, ["batch_size", kvh, "total_sequence_length", hd]))
    assert [(vi.name, vi.type.tensor_type.elem_type, _dims(vi)) for vi in model.graph.input] == inputs
    assert [(vi.name, vi.type.tensor_type.elem_type, _dims(vi)) for vi in model.graph.output] == outputs
    assert [(o.domain, o.version) for o in model.opset_import] == [("", 17), ("com.microsoft", 1)]
    assert model.ir_version == 8

    nodes = list(model.graph.node)

    def count(op):
        return sum(n.op_type == op for n in nodes)

    assert count("MatMulNBits") == 5 * cfg.layers and count("GroupQueryAttention") == cfg.layers
    assert count("SimplifiedLayerNormalization") == 1 and count("SkipSimplifiedLayerNormalization") == 2 * cfg.layers
    assert count("RotaryEmbedding") == 0   # fused in GroupQueryAttention (do_rotary)
    assert {n.domain for n in nodes if n.op_type in ("MatMulNBits", "GroupQueryAttention",
                                                     "SkipSimplifiedLayerNormalization")} == {"com.microsoft"}
    assert {n.domain for n in nodes if n.op_type == "SimplifiedLayerNormalization"} == {""}
    inits = {t.name: t for t in model.graph.initializer}

    def attrs(n):
        return {a.name: onnx.helper.get_attribute_value(a) for a in n.attribute}

    sizes = {}
    for n in nodes:
        if n.op_type != "MatMulNBits":
            continue
        a = attrs(n)
        k, nn = a["K"], a["N"]
        assert (a["bits"], a["block_size"]) == (4, 32) and len(n.input) == 3   # symmetric: no zero points
        b, s = inits[n.input[1]], inits[n.input[2]]
        assert (b.data_type, list(b.dims)) == (TensorProto.UINT8, [nn, -(-k // 32), 16])
        assert (s.data_type, list(s.dims)) == (f16, [nn * -(-k // 32)])
        sizes[n.name.split(".", 3)[3]] = (k, nn)
    assert sizes == {name: (k, n) for name, k, n in cfg.linears()}   # the last layer's
    assert sizes["self_attn.qkv_proj"] == (H, q + 2 * kvh * hd)
    for n in nodes:
        if n.op_type == "GroupQueryAttention":
            a = attrs(n)
            assert (a["num_heads"], a["kv_num_heads"], a["do_rotary"]) == (cfg.heads, kvh, 1)
            assert list(n.input) == [n.input[0], "", "", n.input[3], n.input[4], "model.attn_mask.seqlens_k",
                                     "model.attn_mask.total_sequence_length", "model.rotary_emb.cos_cache",
                                     "model.rotary_emb.sin_cache"]
            i = n.name.split(".")[2]
            assert list(n.input[3:5]) == [f"past_key_values.{i}.key", f"past_key_values.{i}.value"]
            assert list(n.output) == [n.name, f"present.{i}.key", f"present.{i}.value"]
    # seqlens_k = Cast(ReduceSum(attention_mask) - 1) to int32; total = Cast(Shape(mask)[1])
    by_out = {o: n for n in nodes for o in n.output if o}

    def chain(x, k):   # the op types of the first inputs' producers, k deep
        ops = []
        for _ in range(k):
            ops.append(by_out[x].op_type)
            x = by_out[x].input[0]
        return ops

    assert chain("model.attn_mask.seqlens_k", 3) == ["Cast", "Sub", "ReduceSum"]
    assert chain("model.attn_mask.total_sequence_length", 3) == ["Cast", "Gather", "Shape"]
    assert by_out["model.attn_mask.reduce_sum"].input[0] == "attention_mask"
    assert attrs(by_out["model.attn_mask.seqlens_k"])["to"] == TensorProto.INT32
    assert attrs(by_out["model.attn_mask.total_sequence_length"])["to"] == TensorProto.INT32
    # every initializer is a weight (no cos/sin cache, no inv_freq table: computed from shapes)
    assert not any("rotary" in t for t in inits)
    assert sum(math.prod(t.dims) for t in inits.values()) == GENAI_PARAMS[name]
    assert sum(math.prod(t.dims) * _ELEM_BYTES[t.data_type] for t in inits.values()) == GENAI_WEIGHT_BYTES[name]
    assert {t.data_type for t in inits.values()} == {TensorProto.UINT8, f16}
    # every com.microsoft (or unknown to ONNX) output is declared, with symbolic dims
    declared = {vi.name for vi in model.graph.value_info}
    for n in nodes:
        if n.domain == "com.microsoft" or n.op_type == "SimplifiedLayerNormalization":
            assert all(o in declared or o.startswith("present.") for o in n.output if o), n.name


def test_genai_graph_only_llama_3_8b_is_quick(tmp_path):
    t = time.perf_counter()
    model = build_config(CONFIGS["llama-3-8b-genai"])
    assert time.perf_counter() - t < 5.0
    assert model.ByteSize() < 2_000_000
    # no data anywhere: external, back to back in <name>.weights.bin at each dtype's size
    offset = 0
    for t in model.graph.initializer:
        assert t.data_location == TensorProto.EXTERNAL and not t.raw_data
        ext = {e.key: e.value for e in t.external_data}
        assert ext["location"] == "llama-3-8b-genai.weights.bin"
        assert int(ext["offset"]) == offset and int(ext["length"]) == _ELEM_BYTES[t.data_type] * math.prod(t.dims)
        offset += int(ext["length"])
    assert offset == GENAI_WEIGHT_BYTES["llama-3-8b-genai"]
    nodes = [n.name for n in model.graph.node]
    assert all(nodes) and len(set(nodes)) == len(nodes)
    produced = [o for n in model.graph.node for o in n.output if o]
    assert len(set(produced)) == len(produced)
    # ONNX's shape inference passes over the ops it does not know
    onnx.shape_inference.infer_shapes(model)


@pytest.mark.parametrize("name", sorted(GENAI))
def test_genai_params_and_weight_bytes(name):
    """params = stored elements: a packed uint8 holds two 4-bit weights, so the linear layers
    count half their logical weights (+ 1/32 for the scales), not cfg.params."""
    cfg = CONFIGS[name]
    t = _analyze_genai(name, past=3).totals
    assert t.params == GENAI_PARAMS[name] < cfg.params
    assert t.weight_bytes == GENAI_WEIGHT_BYTES[name]
    linear = cfg.layers * sum(k * n for _, k, n in cfg.linears())
    h = cfg.hidden
    other = 2 * ((2 if not cfg.tied_embeddings else 1) * cfg.vocab * h + (2 * cfg.layers + 1) * h)
    assert (t.weight_bytes - other) / linear == 0.5625     # 4 bits + a 2-byte scale per 32 weights
    assert t.params == linear // 2 + linear // 32 + other // 2
    assert t.params == cfg.params - linear // 2 + linear // 32


@pytest.mark.parametrize("name", sorted(GENAI))
def test_genai_decode_macs(name):
    plain = GENAI[name]
    cfg = CONFIGS[name]
    linear, per_key = MACS[plain]
    lm_head = cfg.hidden * cfg.vocab
    for past in (0, 17, 1000):
        tab = _analyze_genai(name, past=past)
        t = tab.totals
        assert t.macs == linear + per_key * (past + 1) == cfg.decode_macs(past) == _analyze(plain, past=past).macs
        assert not t.unsupported_ops and not t.uncosted_ops and t.uncosted_layers == 0
        assert dict(t.macs_by_op_type) == {"com.microsoft.MatMulNBits": linear - lm_head,
                                           "Gemm" if cfg.tied_embeddings else "MatMul": lm_head,
                                           "com.microsoft.GroupQueryAttention": per_key * (past + 1)}
        # each MatMulNBits is rows x N x K (rows = batch x sequence = 1)
        nbits = [l for l in tab.layers if l.op_type == "MatMulNBits"]
        assert [l.macs for l in nbits] == [k * n for _, k, n in cfg.linears()] * cfg.layers


def test_genai_prefill_and_batch_macs():
    # a prompt of S tokens at past P: S x linear + per_key x S x (P + S); batch scales it
    linear, per_key = MACS["llama-3.2-1b"]
    t = _analyze_genai("llama-3.2-1b-genai", sequence=7, past=5).totals
    assert t.macs == 7 * linear + per_key * 7 * 12 == CONFIGS["llama-3.2-1b"].decode_macs(5, sequence=7)
    assert _analyze_genai("llama-3.2-1b-genai", sequence=7, past=5, batch=3).totals.macs == 3 * t.macs
    # the decoder convention sets the dims of the file form too (--seq-len, --past)
    assert api.analyze("llama-3.2-1b-genai", seq_len=7, past=5).totals.macs == t.macs


@pytest.mark.parametrize("zero_points", [False, True])
def test_quantize_nbits_layout_and_roundtrip(zero_points):
    rng = np.random.default_rng(3)
    k, n = 80, 5   # 3 blocks of 32, the last one zero-padded
    w = rng.normal(0, 0.02, (k, n)).astype(np.float32)
    packed, scales, zps = quantize_nbits(w, zero_points=zero_points)
    assert packed.shape == (n, 3, 16) and packed.dtype == np.uint8
    assert scales.shape == (n * 3,) and scales.dtype == np.float32
    assert (zps is not None) == zero_points and (zps is None or zps.shape == (n * 2,))
    back = dequantize_nbits(packed, scales, k, zps)
    assert back.shape == (k, n)
    step = np.repeat(scales.reshape(n, 3), 32, axis=1)[:, :k].T
    assert (np.abs(back - w) <= step / 2 + 1e-7).all()
    # the first weight of a pair is the low nibble; the code of w is round(w / scale) + zero point
    code0 = packed[0, 0, 0] & 0x0F
    zp0 = (zps[0] & 0x0F) if zero_points else 8
    assert code0 == np.clip(np.rint(w[0, 0] / scales[0]) + zp0, 0, 15)
    code1 = packed[0, 0, 0] >> 4
    assert code1 == np.clip(np.rint(w[1, 0] / scales[0]) + zp0, 0, 15)


@pytest.mark.parametrize("tiny", sorted(TINY_GENAI))
@pytest.mark.parametrize("zero_points", [False, True])
def test_genai_tiny_counts(tiny, zero_points):
    """The analyzer's params, weight bytes and MACs on the tiny genai graphs agree with the
    config's formulas."""
    from estimator.analyze import analyze
    from estimator.onnx_io import load_graph

    cfg = TINY_GENAI[tiny]
    for dtype in ("float16", "float32"):
        elems, nbytes = stored_counts(cfg, dtype=dtype, zero_points=zero_points)
        model = build_config(cfg, dtype=dtype, zero_points=zero_points)
        assert sum(math.prod(t.dims) for t in model.graph.initializer) == elems
        for past, seq in ((1, 1), (9, 1), (4, 3)):
            model = build_config(cfg, dtype=dtype, zero_points=zero_points)   # load_graph edits its proto
            t = analyze(load_graph(model, input_shapes=input_shapes(cfg, sequence=seq, past=past))).totals
            assert (t.params, t.weight_bytes) == (elems, nbytes)
            assert t.macs == cfg.decode_macs(past, sequence=seq)
            assert not t.unsupported_ops and not t.uncosted_ops


def test_genai_onnx_checker_refuses_only_the_default_domain_norm():
    """onnx.checker has no schema for SimplifiedLayerNormalization, which onnxruntime registers in
    the default domain (genai's own files fail the same way); the com.microsoft ops it skips."""
    model = build_config(TINY_GENAI["tiny-llama-genai"], weights=True)
    with pytest.raises(onnx.checker.ValidationError, match="SimplifiedLayerNormalization"):
        onnx.checker.check_model(model)
    for n in model.graph.node:
        if n.op_type == "SimplifiedLayerNormalization":   # the first layer's norm, as a Skip one
            n.op_type, n.domain = "SkipSimplifiedLayerNormalization", "com.microsoft"
            n.input.insert(1, n.input[0])
            del n.attribute[:]
    onnx.checker.check_model(model, full_check=True)


def _genai_reference_weights(cfg: DecoderConfig, model: onnx.ModelProto) -> dict[str, np.ndarray]:
    """The float weights the genai graph computes with, named as _reference reads them: the
    MatMulNBits blocks dequantized to [in, out], the packed qkv_proj split into q, k, v."""
    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    w = {k: v.astype(np.float64) for k, v in inits.items() if v.dtype != np.uint8 and "weight_" not in k}
    q, kv = cfg.heads * cfg.head_dim, cfg.kv_heads * cfg.head_dim
    for i in range(cfg.layers):
        for name, k, _ in cfg.linears():
            p = f"model.layers.{i}.{name}"
            m = dequantize_nbits(inits[f"{p}.weight_Q4"], inits[f"{p}.weight_scales"], k,
                                 inits.get(f"{p}.weight_zero_points")).astype(np.float64)
            if name == "self_attn.qkv_proj":
                a = f"model.layers.{i}.self_attn"
                w[f"{a}.q_proj.weight"], w[f"{a}.k_proj.weight"], w[f"{a}.v_proj.weight"] = np.split(
                    m, [q, q + kv], axis=1)
            else:
                w[f"{p}.weight"] = m
    return w


def _genai_session(ort, model: onnx.ModelProto, path):
    """A CPU session, or a skip naming the op this onnxruntime build has no CPU kernel for."""
    path.write_bytes(model.SerializeToString())
    try:
        return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as e:   # NOT_IMPLEMENTED: "Could not find an implementation for <Op>(<ver>) node ..."
        msg = " ".join(str(e).split())
        if "implementation" not in msg and "NOT_IMPLEMENTED" not in msg:
            raise
        ops = sorted({n.op_type for n in model.graph.node if n.op_type in msg}) or ["?"]
        pytest.skip(f"onnxruntime {ort.__version__} has no CPU kernel for {', '.join(ops)}: {msg[:200]}")


@pytest.mark.parametrize("tiny", sorted(TINY_GENAI))
@pytest.mark.parametrize("dtype, zero_points", [("float32", False), ("float32", True), ("float16", False)])
def test_genai_runs_in_onnxruntime_with_cache(tiny, dtype, zero_points, tmp_path):
    """onnxruntime CPU runs the genai graph (checked with onnxruntime 1.32: every op has a CPU
    kernel, float32 and float16) and agrees with the numpy reference on the dequantized weights.
    GroupQueryAttention takes a multi-token step after a cache only at batch 1; it reads the
    cache as right-aligned valid tokens (seqlens_k), so the masks here have no padding."""
    ort = pytest.importorskip("onnxruntime")
    cfg = TINY_GENAI[tiny]
    model = build_config(cfg, weights=True, seed=2, dtype=dtype, zero_points=zero_points)
    rng = np.random.default_rng(1)
    for t in model.graph.initializer:   # random norm weights; weights of std ~0.2, as the plain test
        arr = numpy_helper.to_array(t)
        if t.name.endswith("norm.weight"):
            arr = (1.0 + rng.normal(0, 0.3, arr.shape)).astype(arr.dtype)
        elif t.name.endswith("weight_scales"):
            arr = (arr * 10).astype(arr.dtype)
        t.raw_data = arr.tobytes()
    w = _genai_reference_weights(cfg, model)
    sess = _genai_session(ort, model, tmp_path / "m.onnx")
    out_names = [o.name for o in sess.get_outputs()]
    np_type = np.float16 if dtype == "float16" else np.float32
    tol = {"rtol": 1e-4, "atol": 1e-4} if dtype == "float32" else {"rtol": 3e-2, "atol": 3e-2}
    kvh, hd = cfg.kv_heads, cfg.head_dim

    def feeds(ids, past):
        f = {"input_ids": ids, "attention_mask": np.ones((ids.shape[0], past[0][0].shape[2] + ids.shape[1]),
                                                         np.int64)}
        for i, (k, v) in enumerate(past):
            f[f"past_key_values.{i}.key"] = k.astype(np_type)
            f[f"past_key_values.{i}.value"] = v.astype(np_type)
        return f

    def run(ids, past):
        return dict(zip(out_names, sess.run(None, feeds(ids, past))))

    def reference(ids, past):
        B, S = ids.shape
        P = past[0][0].shape[2]
        pos = np.tile(np.arange(P, P + S), (B, 1))
        return _reference(cfg, w, ids, np.ones((B, P + S), np.int64), pos,
                          [(k.astype(np.float64), v.astype(np.float64)) for k, v in past])

    def check(outs, ids, past):
        B, S = ids.shape
        T = past[0][0].shape[2] + S
        assert outs["logits"].shape == (B, S, cfg.vocab) and outs["logits"].dtype == np_type
        ref, ref_present = reference(ids, past)
        np.testing.assert_allclose(outs["logits"].astype(np.float64), ref, **tol)
        for i in range(cfg.layers):
            for j, kv in enumerate(("key", "value")):
                assert outs[f"present.{i}.{kv}"].shape == (B, kvh, T, hd)
                np.testing.assert_allclose(outs[f"present.{i}.{kv}"].astype(np.float64), ref_present[2 * i + j],
                                           **tol)

    # step 1: a 3-token prompt for 2 sequences (an empty cache)
    empty = [(np.zeros((2, kvh, 0, hd)),) * 2 for _ in range(cfg.layers)]
    ids = rng.integers(0, cfg.vocab, (2, 3))
    outs = run(ids, empty)
    check(outs, ids, empty)
    # step 2: one token each, the presents fed back as the past
    past = [(outs[f"present.{i}.key"], outs[f"present.{i}.value"]) for i in range(cfg.layers)]
    ids2 = rng.integers(0, cfg.vocab, (2, 1))
    outs2 = run(ids2, past)
    check(outs2, ids2, past)
    assert all(np.isfinite(o).all() for o in outs2.values())
    # step 3 (batch 1): 2 tokens after the 4 cached ones of the first sequence
    past3 = [(outs2[f"present.{i}.key"][:1], outs2[f"present.{i}.value"][:1]) for i in range(cfg.layers)]
    ids3 = rng.integers(0, cfg.vocab, (1, 2))
    check(run(ids3, past3), ids3, past3)

    # the cache is exact: a 4-token prompt = 3 tokens, then 1 token on their cache
    empty1 = [(np.zeros((1, kvh, 0, hd)),) * 2 for _ in range(cfg.layers)]
    prompt = rng.integers(0, cfg.vocab, (1, 4))
    full = run(prompt, empty1)["logits"]
    first = run(prompt[:, :3], empty1)
    cache = [(first[f"present.{i}.key"], first[f"present.{i}.value"]) for i in range(cfg.layers)]
    last = run(prompt[:, 3:], cache)["logits"]
    np.testing.assert_allclose(first["logits"], full[:, :3], **tol)
    np.testing.assert_allclose(last, full[:, 3:], **tol)
