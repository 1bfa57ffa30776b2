"""Roofline properties, Winograd ratios and SRAM residency, on synthetic profiles whose
answers can be worked out by hand."""

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from estimator import api, roofline
from estimator.analyze import analyze
from estimator.hardware import profile_from_dict
from estimator.onnx_io import load_graph


def prof(**kv):
    base = {"schema_version": 1, "name": "t", "source": "synthetic test profile", "clock_hz": 1e9,
            "mac_units": {"fp32": 1000, "fp16": 2000, "int8": 4000}, "sram_bytes": 10 ** 12,
            "dram_bandwidth_bytes_per_s": 1e18}
    base.update(kv)
    return profile_from_dict(base, "test")


BATCHES = [1, 2, 4, 8, 16, 32, 64]


def _table(spec="resnet50", **kw):
    return api.analyze(spec, batch=1, precision=kw.pop("precision", "fp32"), **kw)


def test_compute_bound_limit_is_macs_over_peak():
    t = _table()
    p = roofline.predict(t, prof(), BATCHES, "fp32", "off")
    peak = 1000 * 1e9
    assert np.allclose(p.latency_s, np.array(BATCHES) * t.totals.macs / peak, rtol=1e-9)
    assert np.allclose(p.bound_fraction["compute"], 1.0)


def test_memory_bound_limit_is_bytes_over_bandwidth():
    # Peak so high that every layer is memory-bound; no SRAM: every tensor goes through DRAM.
    t = _table()
    p = roofline.predict(t, prof(mac_units={"fp32": 1e12}, sram_bytes=0, dram_bandwidth_bytes_per_s=1e9), BATCHES, "fp32", "off")
    total_bytes = p.raw.dram_bytes[0].sum(axis=-1)
    assert np.allclose(p.latency_s, total_bytes / 1e9, rtol=1e-9)
    assert np.allclose(p.bound_fraction["memory"], 1.0)
    # weights streamed once per batch; activations per sample: bytes per inference fall with batch
    assert np.all(np.diff(p.dram_bytes_per_inference) < 0)
    # all weights read once per batch
    w = t.totals.weight_bytes
    acts = total_bytes - w
    assert np.allclose(acts / np.array(BATCHES), acts[0], rtol=1e-9)


@pytest.mark.parametrize("sram", [0, 2 ** 20, 8 * 2 ** 20, 10 ** 12])
def test_latency_and_throughput_monotone_in_batch(sram):
    t = _table()
    p = roofline.predict(t, prof(sram_bytes=sram, dram_bandwidth_bytes_per_s=2e10, mac_units={"fp32": 4096}), BATCHES, "fp32", "off")
    assert np.all(np.diff(p.latency_s) >= 0)
    assert np.all(np.diff(p.throughput_per_s) >= -1e-9 * p.throughput_per_s[:-1])


def test_throughput_saturates_at_compute_roof():
    t = _table()
    hw = prof(sram_bytes=0, dram_bandwidth_bytes_per_s=1e11, mac_units={"fp32": 1000})
    bs = [1, 4, 16, 64, 256, 1024, 4096]
    p = roofline.predict(t, hw, bs, "fp32", "off")
    roof = 1e12 / t.totals.macs
    assert np.all(p.throughput_per_s <= roof * (1 + 1e-9))
    gains = np.diff(p.throughput_per_s) / p.throughput_per_s[:-1]
    assert gains[-1] < 0.01  # flat at the end


def test_bound_flips_at_ridge_point():
    # One MatMul layer [1,K]x[K,N]: MACs K*N, DRAM bytes = weights 4KN + input 4K + output 4N.
    K = N = 256
    w = numpy_helper.from_array(np.ones((K, N), np.float32), "w")
    g = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"], name="mm")], "mm",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, K])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], [w])
    t = analyze(load_graph(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])), precision="fp32")
    macs = K * N
    bytes_ = 4 * (K * N + K + N)
    intensity = macs / bytes_
    bw = 1e9
    ridge_peak = intensity * bw  # MAC/s at which compute time == memory time
    below = prof(sram_bytes=0, dram_bandwidth_bytes_per_s=bw, mac_units={"fp32": ridge_peak * 0.9 / 1e9})
    above = prof(sram_bytes=0, dram_bandwidth_bytes_per_s=bw, mac_units={"fp32": ridge_peak * 1.1 / 1e9})
    pb = roofline.predict(t, below, [1], "fp32", "off")
    pa = roofline.predict(t, above, [1], "fp32", "off")
    assert pb.raw.compute_bound[0, 0, 0] and not pa.raw.compute_bound[0, 0, 0]
    assert np.isclose(pa.latency_s[0], bytes_ / bw)
    assert np.isclose(pb.latency_s[0], macs / (ridge_peak * 0.9))


def test_winograd_factors():
    assert roofline.winograd_factors(2) == pytest.approx((2.25, 16 / 9))
    assert roofline.winograd_factors(4) == pytest.approx((4.0, 4.0))
    assert roofline.winograd_factors(0) == (1.0, 1.0)


@pytest.mark.parametrize("mode, mfac, wfac", [("f2", 2.25, 16 / 9), ("f4", 4.0, 4.0)])
def test_winograd_per_layer_ratios(mode, mfac, wfac):
    t = _table("resnet50-v1")
    off = roofline.predict(t, prof(), [1], "fp32", "off")
    on = roofline.predict(t, prof(), [1], "fp32", mode)
    cand = off.layers.winograd
    assert cand.sum() == 16  # the 3x3 stride-1 convs of v1's 16 bottleneck blocks
    assert np.allclose(off.raw.macs[0, cand] / on.raw.macs[0, cand], mfac)
    assert np.array_equal(off.raw.macs[0, ~cand], on.raw.macs[0, ~cand])  # non-candidates unchanged
    w_off = off.layers.weight_bytes
    grown = on.raw.weight_bytes_total[0] - off.raw.weight_bytes_total[0]
    assert np.isclose(grown, (wfac - 1) * w_off[cand].sum())


def test_winograd_whole_model_speedups_match_seeds():
    # Seed 004: about 1.4x for ResNet-50 (v1) and 1.7x for YOLOv3, compute-bound.
    def speedup(spec, **kw):
        t = _table(spec, **kw)
        return roofline.predict(t, prof(), [1], "fp32", "off").latency_s[0] / roofline.predict(t, prof(), [1], "fp32", "f2").latency_s[0]

    assert 1.30 <= speedup("resnet50-v1") <= 1.45
    assert 1.65 <= speedup("yolov3", resolution=(416, 416)) <= 1.85
    assert speedup("resnet50") < speedup("resnet50-v1")  # v1.5's stride-2 3x3 convs are not candidates


def test_winograd_expand_on_load_keeps_dram_weights():
    t = _table("resnet50-v1")
    hw_t = prof(sram_bytes=0, winograd={"tile": 2, "weights": "transformed"})
    hw_e = prof(sram_bytes=0, winograd={"tile": 2, "weights": "expand_on_load"})
    off = roofline.predict(t, prof(sram_bytes=0), [1], "fp32", "off")
    pt = roofline.predict(t, hw_t, [1], "fp32")
    pe = roofline.predict(t, hw_e, [1], "fp32")
    assert pt.winograd == pe.winograd == "f2"
    assert pt.raw.dram_bytes.sum() > off.raw.dram_bytes.sum()
    assert np.isclose(pe.raw.dram_bytes.sum(), off.raw.dram_bytes.sum())


def test_sram_residency_cases():
    t = _table()
    w = t.totals.weight_bytes
    # weights fit: no weight traffic in steady state
    fits = roofline.predict(t, prof(sram_bytes=int(w * 2), dram_bandwidth_bytes_per_s=1e9), [1], "fp32", "off")
    assert fits.weights_resident.all()
    # weights do not fit: read once per batch
    spill = roofline.predict(t, prof(sram_bytes=int(w * 0.5), dram_bandwidth_bytes_per_s=1e9), [1, 8], "fp32", "off")
    assert not spill.weights_resident.any()
    assert spill.raw.dram_bytes[0].sum(axis=-1)[0] >= w
    # no SRAM: every activation goes through DRAM; more SRAM never adds traffic
    sizes = [0, 2 ** 16, 2 ** 20, 2 ** 24, int(w * 2)]
    dram = [roofline.predict(t, prof(sram_bytes=s, dram_bandwidth_bytes_per_s=1e9), [4], "fp32", "off").raw.dram_bytes.sum() for s in sizes]
    assert all(a >= b for a, b in zip(dram, dram[1:]))
    assert dram[-1] < dram[0]


def _gemv_file(tmp_path, k=1000, n=1000):
    w = numpy_helper.from_array(np.ones((n, k), np.float32), "w")
    g = helper.make_graph([helper.make_node("Gemm", ["x", "w"], ["y"], transB=1)], "gemv",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", k])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", n])], [w])
    path = tmp_path / "gemv.onnx"
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), path)
    return str(path)


def test_weight_residency_cache(tmp_path):
    """weight_residency: cache (a CPU's last-level cache): a graph of one weighted kernel keeps
    min(1, cache / weights) of its weights between calls; a whole model reads all of them from
    DRAM every pass, even when they would fit; "pinned" (the default) is unchanged."""
    t = api.analyze(_gemv_file(tmp_path), batch=1, precision="fp32")
    w = t.totals.weight_bytes
    assert w == 4_000_000
    sram = w // 4
    pinned = roofline.predict(t, prof(sram_bytes=sram, dram_bandwidth_bytes_per_s=1e9), [1], "fp32", "off")
    cache = roofline.predict(t, prof(sram_bytes=sram, dram_bandwidth_bytes_per_s=1e9, weight_residency="cache"), [1],
                             "fp32", "off")
    # pinned: 4 MB do not fit in 1 MB, all of them stream; cache: a quarter of them is found in the cache
    assert pinned.raw.dram_bytes.sum() - cache.raw.dram_bytes.sum() == pytest.approx(sram, rel=1e-9)
    assert not cache.weights_resident.any()
    big = roofline.predict(t, prof(sram_bytes=2 * w, weight_residency="cache"), [1], "fp32", "off")
    assert big.weights_resident.all()
    # a whole model whose weights fit: pinned reads none of them, cache reads all of them every pass
    r = _table()
    wr = r.totals.weight_bytes
    pin = roofline.predict(r, prof(sram_bytes=int(wr * 4), dram_bandwidth_bytes_per_s=1e9), [1, 4], "fp32", "off")
    cac = roofline.predict(r, prof(sram_bytes=int(wr * 4), dram_bandwidth_bytes_per_s=1e9, weight_residency="cache"),
                           [1, 4], "fp32", "off")
    assert pin.weights_resident.all() and not cac.weights_resident.any()
    assert cac.raw.dram_bytes[0, 0].sum() - pin.raw.dram_bytes[0, 0].sum() == pytest.approx(wr, rel=1e-6)


def test_weight_residency_rejects_unknown_value():
    with pytest.raises(Exception, match="weight_residency.*did you mean 'cache'"):
        prof(weight_residency="cached")


def test_mac_array_utilization():
    # 64-channel layer on a 128-wide array uses half of each dimension; depthwise uses 1 row.
    u = roofline._util(np.array([64.0, 1.0, 300.0, 0.0]), np.array([64.0, 128.0, 128.0, 0.0]),
                       np.array([128.0]), np.array([128.0]))
    assert np.allclose(u[0], [0.25, 1 / 128, 300 / 384, 1.0])


def test_precision_missing_names_available():
    t = _table()
    from estimator.errors import UserError

    hw = prof(mac_units={"int8": 4096})
    with pytest.raises(UserError, match="int8"):
        roofline.predict(t, hw, [1], "fp32", "off")


def test_grid_equals_individual_profiles():
    t = _table()
    base = prof(sram_bytes=2 ** 20, dram_bandwidth_bytes_per_s=1e10)
    la = roofline.LayerArrays.from_table(t)
    sr = [2 ** 18, 2 ** 22, 2 ** 26]
    bw = [1e9, 1e11]
    raw = roofline.evaluate(la, roofline.HwArrays.grid(base, "fp32", "off", sram_bytes=sr, dram_bandwidth_bytes_per_s=bw), [1, 4])
    i = 0
    for s in sr:
        for b in bw:
            one = roofline.predict(t, prof(sram_bytes=s, dram_bandwidth_bytes_per_s=b), [1, 4], "fp32", "off")
            assert np.allclose(raw.latency_s[i], one.latency_s)
            i += 1


def test_energy_reported_when_profile_has_it():
    t = _table()
    hw = prof(sram_bytes=0, dram_bandwidth_bytes_per_s=1e9, energy={"per_mac_j": {"fp32": 1e-12}, "per_dram_byte_j": 1e-10})
    p = roofline.predict(t, hw, [1], "fp32", "off")
    want = t.totals.macs * 1e-12 + p.raw.dram_bytes.sum() * 1e-10
    assert np.isclose(p.energy_per_inference_j[0], want)
    assert roofline.predict(t, prof(), [1], "fp32", "off").energy_per_inference_j is None


def test_chunked_summary_equals_full_evaluation():
    t = _table()
    la = roofline.LayerArrays.from_table(t)
    hw = roofline.HwArrays.grid(prof(sram_bytes=2 ** 20, dram_bandwidth_bytes_per_s=1e10), "fp32", "off",
                                sram_bytes=list(np.geomspace(2 ** 16, 2 ** 28, 13)), dram_bandwidth_bytes_per_s=[1e9, 3e9, 1e11])
    full = roofline.evaluate(la, hw, [1, 3, 8])
    summ = roofline.evaluate_summary(la, hw, [1, 3, 8], chunk=5)
    assert np.allclose(summ.latency_s, full.latency_s)
    assert np.allclose(summ.dram_bytes, full.dram_bytes.sum(axis=-1))
    assert np.array_equal(summ.sub_batch, full.sub_batch)


@pytest.mark.parametrize("spec, kw", [("resnet50", {}), ("yolov3", {"resolution": (416, 416)})])
def test_more_sram_is_never_slower(spec, kw):
    # Pinned weights can crowd activations out of SRAM; the model picks the faster residency,
    # so latency is non-increasing in SRAM size (a "what if the SRAM were 2x" answer).
    t = _table(spec, precision="int8", **kw)
    la = roofline.LayerArrays.from_table(t)
    sizes = list(np.geomspace(2 ** 20, 2 ** 28, 25))
    hw = roofline.HwArrays.grid(prof(dram_bandwidth_bytes_per_s=1.7e10, mac_units={"int8": 4096}), "int8", "off", sram_bytes=sizes)
    lat = roofline.evaluate(la, hw, [1, 4, 16]).latency_s
    assert np.all(np.diff(lat, axis=0) <= 1e-12 * lat[1:])


def test_sub_batch_is_reported():
    doc_preds = None
    from conftest import run_json

    doc_preds = run_json("resnet50", "--hw", "edge-npu", "--batch", "1,8")["predictions"]
    for p in doc_preds:
        assert p["sub_batch"] * p["passes"] >= p["batch"] and p["sub_batch"] <= p["batch"]
        assert isinstance(p["weights_resident"], bool)


def test_the_summary_says_why_a_cache_hosts_weights_are_streamed(tmp_path):
    """A cache host's whole-model weights fit but come from DRAM: the summary line says so, not
    that pinning them would push activations out."""
    from conftest import run_cli

    from estimator.hardware import dump_profile

    p = prof(sram_bytes=10 ** 9, dram_bandwidth_bytes_per_s=1e10, weight_residency="cache")
    path = tmp_path / "cache.yaml"
    dump_profile(p, path)
    code, out, _ = run_cli("resnet50", "--hw", str(path))
    assert code == 0 and "read from DRAM every pass" in out and "pinning them would push" not in out


def test_a_conv_and_its_batchnorm_are_one_weighted_kernel():
    """weight_residency: cache keeps a single-kernel graph's weights in the cache; a Conv followed by
    an unfolded BatchNormalization (its epilogue) is still one kernel."""
    g = helper.make_graph(
        [helper.make_node("Conv", ["x", "w"], ["c"], kernel_shape=[1, 1]),
         helper.make_node("BatchNormalization", ["c", "s", "b", "m", "v"], ["y"])], "cbn",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8, 4, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(np.ones((8, 8, 1, 1), np.float32), "w")]
        + [numpy_helper.from_array(np.ones(8, np.float32), n) for n in "sbmv"])
    t = analyze(load_graph(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])))
    la = roofline.LayerArrays.from_table(t)
    assert roofline.weighted_kernels(la) == 1
    p = roofline.predict(t, prof(sram_bytes=1 << 20, weight_residency="cache"), [1], "fp32", "off")
    assert p.weights_resident.all()
