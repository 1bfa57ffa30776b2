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
from estimator.models.decoder import CONFIGS, DecoderConfig, build_config, input_shapes

DECODERS = ("gpt2", "llama-3.2-1b", "llama-3-8b")

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
    assert set(CONFIGS) == set(DECODERS)
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
