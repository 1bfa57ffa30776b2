"""Language models as first-class: the decoder convention, --past, prefill/decode phases,
KV-cache bytes, and a real generation loop (estimator/decoder.py, estimator/llm.py,
validate/generate.py)."""

from __future__ import annotations

import json

import onnx
import pytest

from conftest import run_cli
from estimator import api, decoder, hardware, llm
from estimator.errors import UserError
from estimator.models.decoder import DecoderConfig, build_config

TINY = DecoderConfig(name="tiny-llama", layers=2, hidden=32, heads=4, kv_heads=2, head_dim=8, ffn=48, vocab=61,
                     max_positions=64, norm="rms", mlp="swiglu", positions="rope", tied_embeddings=False, bias=False,
                     eps=1e-5, rope_theta=10000.0)


def _fixed(model: onnx.ModelProto, seq: int, past: int) -> onnx.ModelProto:
    """The decoder exported with its dims fixed (batch 1, sequence `seq`, cache `past`)."""
    for vi in list(model.graph.input) + list(model.graph.output):
        for d in vi.type.tensor_type.shape.dim:
            if d.HasField("dim_param"):
                d.dim_value = {"batch_size": 1, "sequence_length": seq, "past_sequence_length": past,
                               "total_sequence_length": past + seq}[d.dim_param]
    return model


def test_the_convention_is_recognised_on_a_hand_built_decoder():
    m = build_config(TINY)
    ins = [(vi.name, [d.dim_value or d.dim_param for d in vi.type.tensor_type.shape.dim]) for vi in m.graph.input]
    io = decoder.detect(ins)
    assert io is not None and io.layers == 2 and io.kv_heads == 2 and io.head_dim == 8
    assert io.mask == "attention_mask" and io.positions == "position_ids" and len(io.past_inputs) == 4
    assert io.kv_values_per_token == 2 * 2 * 2 * 8
    # an encoder is not one
    assert decoder.detect([("input_ids", ["N", "S"]), ("attention_mask", ["N", "S"])]) is None


def test_past_on_a_file_exported_with_fixed_dims(tmp_path):
    """--past resizes the cache of a fixed-dim export (with a note); the MACs grow by exactly
    the attention term: layers x heads x head_dim x 2 per cached key."""
    p = tmp_path / "fixed.onnx"
    onnx.save(_fixed(build_config(TINY), seq=1, past=4), str(p))
    at4 = api.analyze(str(p))
    at20 = api.analyze(str(p), past=20)
    assert at20.totals.macs - at4.totals.macs == TINY.layers * TINY.heads * TINY.head_dim * 2 * 16
    assert any("the file fixes sequence 1 and past 4" in n for n in at20.notes)
    assert any("decoder with a KV cache" in n for n in at4.notes)
    code, so, se = run_cli(str(p), "--past", "20", "--seq-len", "3", "--format", "json")
    assert code == 0, se
    doc = json.loads(so)
    shapes = {i["name"]: i["shape"] for i in doc["model"]["inputs"]}
    assert shapes["input_ids"] == [1, 3] and shapes["attention_mask"] == [1, 23]
    assert shapes["past_key_values.1.value"] == [1, 2, 20, 8]


def test_prefill_at_past_zero_costs_the_prompt_pass():
    """past 0: zero-length cache tensors, as runtimes feed them; the prompt's attention is S x S."""
    t = api.analyze("gpt2", seq_len=8, past=0)
    lin = 123_532_032 * 8
    attn = 12 * 12 * 64 * 2 * 8 * 8
    assert t.totals.macs == lin + attn


def test_kv_cache_bytes_per_token_and_precisions():
    h100 = hardware.load_profile("h100-sxm")
    lp = llm.predict("llama-3-8b", h100, prompt=16, generate=4, batches=[1], precision="fp16")
    assert lp.kv_cache_bytes_per_token == 2 * 32 * 8 * 128 * 2 == 131_072
    i8 = llm.predict("llama-3-8b", h100, prompt=16, generate=4, batches=[1], precision="fp16", kv_precision="int8")
    assert i8.kv_cache_bytes_per_token == 65_536
    assert i8.points[0].kv_cache_bytes == 65_536 * (16 + 4 - 1)


def test_weight_only_int4_shrinks_the_weights_not_the_macs():
    h100 = hardware.load_profile("h100-sxm")
    f16 = llm.predict("llama-3-8b", h100, prompt=16, generate=4, batches=[1], precision="fp16")
    i4 = llm.predict("llama-3-8b", h100, prompt=16, generate=4, batches=[1], precision="fp16", weights="int4")
    # the MatMul weights (all but the embedding table and the norms) at 0.5 + 2/32 bytes each
    matmul = 7_504_658_432          # one decode step's MACs per token = the Linear weights
    others = 8_030_261_248 - matmul
    assert i4.weight_bytes == pytest.approx(matmul * (0.5 + 2 / 32) + others * 2, rel=1e-6)
    assert f16.weight_bytes == pytest.approx(8_030_261_248 * 2, rel=1e-6)
    assert i4.points[0].tpot_mean_s < f16.points[0].tpot_mean_s


def test_acceptance_llama_3_8b_on_h100():
    code, so, se = run_cli("llama-3-8b", "--hw", "h100-sxm", "--precision", "fp16", "--prompt", "512",
                           "--generate", "128", "--batch", "1", "--format", "json")
    assert code == 0, se
    doc = json.loads(so)
    assert doc["totals"]["params"] == 8_030_261_248
    m = doc["llm"]
    assert m["kv_cache_bytes_per_token"] == 131_072
    tpot = m["per_batch"][0]["tpot_s"]
    floor = m["weight_bytes"] / 3.35e12          # the yardstick: all weight bytes / DRAM bandwidth
    assert 1.0 * floor <= tpot <= 2.0 * floor, (tpot, floor)
    # the floor the tool prints: what a step reads (one row of the 1 GB embedding table, not all of it)
    emb = 128_256 * 4096 * 2
    assert m["weight_read_floor_s"] == pytest.approx((m["weight_bytes"] - emb + 4096 * 2) / 3.35e12, rel=1e-6)
    assert m["per_batch"][0]["ttft_s"] > tpot          # 512 tokens at once cost more than one
    assert m["max_batch"] > 32


def test_decode_cost_grows_with_the_context_and_throughput_with_the_batch():
    h100 = hardware.load_profile("h100-sxm")
    lp = llm.predict("llama-3.2-1b", h100, prompt=1024, generate=512, batches=[1, 8], precision="fp16")
    b1, b8 = lp.points
    assert b1.decode_last.seconds >= b1.decode_first.seconds
    assert b1.decode_first.seconds <= b1.tpot_mean_s <= b1.decode_last.seconds
    assert 8 * b8.tokens_per_s > b1.tokens_per_s          # batching raises the total


@pytest.mark.parametrize("args, match", [
    (["llama-3-8b", "--prompt", "8", "--generate", "4"], "need a hardware profile"),
    (["llama-3-8b", "--hw", "h100-sxm", "--prompt", "8"], "go together"),
    (["llama-3-8b", "--hw", "h100-sxm", "--prompt", "8", "--generate", "1"], "must be >= 2"),
    (["llama-3-8b", "--hw", "h100-sxm", "--prompt", "8", "--generate", "4", "--kv-precision", "fp4"], "--kv-precision"),
    (["llama-3-8b", "--hw", "h100-sxm", "--prompt", "8", "--generate", "4", "--weights", "int3"], "--weights"),
    (["resnet50", "--hw", "h100-sxm", "--prompt", "8", "--generate", "4"], "need a decoder with a KV cache"),
    (["llama-3-8b", "--hw", "h100-sxm", "--prompt", "0", "--generate", "4"], "--prompt 0"),
    (["llama-3-8b", "--hw", "h100-sxm", "--prompt", "8", "--generate", "4", "--layers"], "--layers: not available"),
    (["resnet50", "--past", "8"], "has no cache"),
    (["gpt2", "--past", "-1"], "--past -1"),
])
def test_bad_llm_options_are_one_line_errors(args, match):
    code, so, se = run_cli(*args)
    assert code == 2 and match in se and "Traceback" not in se, se


def test_a_real_generation_loop_on_a_tiny_decoder(tmp_path):
    """A few seconds: prompt pass plus decode steps in onnxruntime, TTFT and TPOT written."""
    p = tmp_path / "tiny.onnx"
    onnx.save(build_config(TINY, weights=True), str(p))
    code, so, se = run_cli("validate", str(p), "--prompt", "6", "--generate", "4", "--iterations", "3",
                           "--warmup", "1", "--out", str(tmp_path / "runs"), "--hw", "xeon-8380", "--batch", "1,2")
    assert code == 0, se
    doc = json.loads(next((tmp_path / "runs").glob("*.json")).read_text())
    assert [c["batch"] for c in doc["configurations"]] == [1, 2]
    for c in doc["configurations"]:
        m = c["llm"]
        assert m["decode_steps"] == 3 and len(m["tpot_mean_per_run_s"]) == 3
        assert m["ttft_s"]["p50"] > 0 and m["tpot_s"]["p50"] > 0
        assert c["prediction"]["tpot_s"] > 0 and "tpot_error" in c["prediction"]
    assert "TTFT p50" in so
    # the results reader and the summary take it like any other result
    code, so, se = run_cli("results", str(tmp_path / "runs"), "--format", "json")
    assert code == 0 and json.loads(so)["summary"][0]["model"] == "tiny", se


def test_validate_refuses_a_generation_loop_on_a_model_without_cache(tmp_path, tiny_path):
    code, _, se = run_cli("validate", tiny_path, "--prompt", "4", "--generate", "3", "--out", str(tmp_path / "r"))
    assert code == 2 and "need a decoder with a KV cache" in se


def test_validate_refuses_a_decoder_too_large_for_the_host(tmp_path, monkeypatch):
    from estimator.validate import host
    monkeypatch.setattr(host, "memory_total_bytes", lambda: 8 << 30)
    code, _, se = run_cli("validate", "llama-3-8b", "--prompt", "4", "--generate", "3", "--out", str(tmp_path / "r"))
    assert code == 2 and "half of this host's" in se


def test_a_tied_lm_head_read_through_a_transpose_is_counted_once():
    """torch exports of tied models: MatMul(x, Transpose(embedding)); the table is one weight."""
    import numpy as np
    from onnx import TensorProto as T, helper as h, numpy_helper as nh

    from estimator.onnx_io import load_graph

    E = nh.from_array(np.zeros((50, 8), np.float32), "E")
    nodes = [h.make_node("Gather", ["E", "ids"], ["x"], name="embed"),
             h.make_node("Transpose", ["E"], ["Et"], perm=[1, 0], name="tie"),
             h.make_node("MatMul", ["x", "Et"], ["y"], name="lm_head")]
    g = h.make_graph(nodes, "g", [h.make_tensor_value_info("ids", T.INT64, [1, 4])],
                     [h.make_tensor_value_info("y", T.FLOAT, None)], [E])
    t = api._analyze_graph(load_graph(h.make_model(g, opset_imports=[h.make_opsetid("", 17)])))
    assert t.totals.params == 400
    lm = next(l for l in t.layers if l.name == "lm_head")
    assert lm.params == 0 and lm.weight_read_bytes_at("fp32") == 1600   # read, not owned


def test_validate_refuses_a_fixed_cache_and_out_of_range_positions(tmp_path):
    p = tmp_path / "fixed.onnx"
    onnx.save(_fixed(build_config(TINY, weights=True), seq=1, past=4), str(p))
    code, _, se = run_cli("validate", str(p), "--prompt", "4", "--generate", "3", "--out", str(tmp_path / "r"))
    assert code == 2 and "fixes the cache length" in se, se
    code, _, se = run_cli("validate", "gpt2", "--prompt", "1020", "--generate", "10", "--out", str(tmp_path / "r"))
    assert code == 2 and "beyond gpt2's 1024" in se, se


def test_present_outputs_pair_with_past_inputs_of_other_namings():
    assert decoder.cache_slot("present.3.key") == decoder.cache_slot("past_key_values.3.key") == (3, "key")
    assert decoder.cache_slot("present_value.2") == decoder.cache_slot("past_value.2") == (2, "value")
    assert decoder.cache_slot("logits") is None


def test_kv_precision_shrinks_the_copies_of_the_cache_too():
    """The plain form's Concat append, repeat_kv's Expand and K's Transpose move cache values."""
    h100 = hardware.load_profile("h100-sxm")
    t = api.analyze("llama-3-8b", seq_len=1, past=64, precision="fp16")
    io = llm.check_decoder("llama-3-8b")
    cache = llm._cache_tensors(t, io)
    movers = {l.op_type for l in t.layers if any(o in cache for o in l.outputs)}
    assert {"Concat", "Expand"} <= movers
    f16 = llm.predict("llama-3-8b", h100, prompt=512, generate=8, batches=[32], precision="fp16")
    i8 = llm.predict("llama-3-8b", h100, prompt=512, generate=8, batches=[32], precision="fp16", kv_precision="int8")
    assert i8.points[0].tpot_mean_s < 0.97 * f16.points[0].tpot_mean_s


def test_the_genai_form_is_costed_as_stored():
    """llama-3-8b-genai: fp16 activations and cache by default (what the file stores), MatMulNBits
    weights not quantized a second time by --weights, dequantization not charged per sample."""
    h100 = hardware.load_profile("h100-sxm")
    code, so, se = run_cli("llama-3-8b-genai", "--hw", "h100-sxm", "--prompt", "128", "--generate", "8",
                           "--batch", "1,32", "--format", "json")
    assert code == 0, se
    m = json.loads(so)["llm"]
    assert m["precision"] == "fp16" and m["kv_cache_bytes_per_token"] == 131_072
    b1, b32 = m["per_batch"]
    assert b32["tpot_s"] < 2 * b1["tpot_s"]          # the int4 weights are read once per step for all 32
    plain = llm.predict("llama-3-8b", h100, prompt=128, generate=8, batches=[1], precision="fp16", weights="int4")
    genai = llm.predict("llama-3-8b-genai", h100, prompt=128, generate=8, batches=[1], precision="fp16", weights="int4")
    # --weights int4 on the genai file only touches its float lm_head: the same weights as the plain form's
    assert genai.weight_bytes == pytest.approx(plain.weight_bytes, rel=0.01)
