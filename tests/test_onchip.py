"""The on-chip traffic term (onchip_bandwidth_bytes_per_s), embedding lookups that read only the
rows they gather, and what calibration does with both: hand-worked numbers and synthetic round
trips."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from estimator import api, calibrate as cal
from estimator.hardware import HardwareProfile, dump_profile, load_profile, profile_from_dict
from estimator.roofline import HwArrays, LayerArrays, evaluate

from conftest import conv_model
from test_calibrate import TRUTH, _fake_doc, _profile, _synthetic


def _prof(**kv) -> HardwareProfile:
    base = {"schema_version": 1, "name": "t", "source": "synthetic test profile", "clock_hz": 1e9,
            "mac_units": {"fp32": 1000}, "sram_bytes": 10 ** 12, "dram_bandwidth_bytes_per_s": 1e18}
    base.update(kv)
    return profile_from_dict(base, "test")


def _raw(path, profile, batches):
    table = api.analyze(str(path), batch=1, precision="fp32")
    la = LayerArrays.from_table(table)
    return la, evaluate(la, HwArrays.from_profiles([profile], "fp32"), batches)


# ----------------------------------------------------------------------------- profile key


def test_onchip_key_round_trips_and_is_checked(tmp_path):
    p = _prof(onchip_bandwidth_bytes_per_s=3.5e10)
    assert p.onchip_bandwidth_bytes_per_s == 3.5e10
    q = load_profile(str(dump_profile(p, tmp_path / "p.yaml")))
    assert q.onchip_bandwidth_bytes_per_s == 3.5e10
    assert _prof().onchip_bandwidth_bytes_per_s is None
    for bad in (0, -1.0, "fast"):
        with pytest.raises(Exception, match="onchip_bandwidth_bytes_per_s"):
            _prof(onchip_bandwidth_bytes_per_s=bad)


# ----------------------------------------------------------------------------- roofline term


def test_onchip_term_is_activation_bytes_over_bandwidth_for_contractions(tmp_path):
    """conv_model: x[b,3,8,8] -> Conv(4 filters, 3x3, pad 1) -> Relu. The conv reads 3*8*8*4 =
    768 bytes and writes 4*8*8*4 = 1024 bytes per sample; at 1e6 B/s that is 1.792 ms per
    sample on top of its MAC time. The fused Relu stays free."""
    path = tmp_path / "m.onnx"
    onnx.save(conv_model(), path)
    batches = [1, 3]
    la, plain = _raw(path, _prof(), batches)
    _, with_term = _raw(path, _prof(onchip_bandwidth_bytes_per_s=1e6), batches)
    conv, relu = la.names.index("conv"), la.names.index("relu")
    for bi, b in enumerate(batches):
        extra = with_term.compute_s[0, bi] - plain.compute_s[0, bi]
        assert extra[conv] == pytest.approx(b * 1792 / 1e6, rel=1e-12)
        assert extra[relu] == 0.0 and with_term.time_s[0, bi, relu] == plain.time_s[0, bi, relu]
        # MAC time: 8*8*4*3*9 = 6912 MACs per sample at 1e12 MAC/s
        assert plain.compute_s[0, bi, conv] == pytest.approx(b * 6912 / 1e12, rel=1e-12)


def test_onchip_term_leaves_element_wise_layers_alone():
    """Element-wise layers (no MACs) are costed by the vector rate only; BERT's many element-wise
    layers do not change with the key, its GEMMs do."""
    table = api.analyze("bert-base", batch=1, precision="fp32", seq_len=16)
    la = LayerArrays.from_table(table)
    a = evaluate(la, HwArrays.from_profiles([_prof(vector_ops_per_cycle={"fp32": 64})], "fp32"), [2])
    b = evaluate(la, HwArrays.from_profiles([_prof(vector_ops_per_cycle={"fp32": 64},
                                                   onchip_bandwidth_bytes_per_s=1e10)], "fp32"), [2])
    changed = ~np.isclose(a.compute_s[0, 0], b.compute_s[0, 0], rtol=0, atol=0)
    assert changed.any()
    assert np.all(la.macs[changed] > 0)


# ----------------------------------------------------------------------------- gathers


def _embedding_model(rows=1000, dim=64, tokens=8):
    table = numpy_helper.from_array(np.zeros((rows, dim), np.float32), "table")
    node = helper.make_node("Gather", ["table", "ids"], ["emb"], name="lookup", axis=0)
    g = helper.make_graph([node], "emb", [helper.make_tensor_value_info("ids", TensorProto.INT64, ["N", tokens])],
                          [helper.make_tensor_value_info("emb", TensorProto.FLOAT, None)], [table])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    return m


def test_embedding_lookup_reads_only_the_gathered_rows(tmp_path):
    """A 1000 x 64 fp32 table (256,000 bytes), 8 ids per sample: a sample gathers 8 rows = 2,048
    bytes. With no SRAM everything goes to DRAM: ids read (8 x 8 bytes), rows written (2,048)
    and rows read from the table: 2,048 per sample, never more than the table."""
    path = tmp_path / "emb.onnx"
    onnx.save(_embedding_model(), path)
    batches = [1, 2, 200]
    la, raw = _raw(path, _prof(sram_bytes=0, dram_bandwidth_bytes_per_s=1e9), batches)
    i = la.names.index("lookup")
    for bi, b in enumerate(batches):
        assert raw.dram_bytes[0, bi, i] == pytest.approx(b * 64 + b * 2048 + min(256000, b * 2048))


# ----------------------------------------------------------------------------- calibration


@pytest.fixture(scope="module")
def onchip_truth():
    d = json.loads(json.dumps(TRUTH))
    truth = _profile(**d)
    from estimator.hardware import with_overrides

    return with_overrides(truth, onchip_bandwidth_bytes_per_s=4e9)


def test_round_trip_recovers_onchip_bandwidth(onchip_truth):
    data = _synthetic(onchip_truth, ("resnet50", "mobilenetv2", "yolov3-tiny", "bert-base"))
    fr = cal.fit(data, _profile())
    assert fr.params.onchip_bandwidth == pytest.approx(4e9, rel=0.01)
    eff = fr.params.efficiencies()
    for c in ("conv3x3", "conv1x1", "depthwise", "elementwise"):
        assert eff[c] == pytest.approx(onchip_truth.efficiency.compute_for(c), rel=0.01), c
    prof = cal.apply_params(_profile(), fr.params, fr.fitted_classes, overhead_classes=fr.overhead_classes)
    assert prof.onchip_bandwidth_bytes_per_s == pytest.approx(4e9, rel=0.01)
    stats, _ = cal.evaluate_on(data, prof)
    assert stats["e2e_median_abs_error"] < 0.01


def test_no_onchip_term_in_the_data_fits_none():
    """Data made without the term: the fit puts its cost at (nearly) zero: under 0.5% of the
    predicted time, or leaves it out."""
    truth = _profile(**json.loads(json.dumps(TRUTH)))
    data = _synthetic(truth, ("yolov3-tiny",))
    fr = cal.fit(data, _profile())
    bw = fr.params.onchip_bandwidth
    if bw is not None:
        la = data.models[0].layers
        onchip_s = float((la.ws_bytes * (la.macs > 0)).sum()) / bw
        assert onchip_s < 0.005 * data.models[0].configs[0].measured_s


def test_memory_efficiency_kept_when_nothing_is_dram_bound():
    """Everything fits in a huge SRAM: no layer is DRAM-bound, the data cannot pin memory
    efficiency, and the fit keeps the start profile's value instead of drifting to a bound."""
    d = json.loads(json.dumps(TRUTH))
    truth = _profile(sram_bytes=1 << 40, **d)
    data = _synthetic(truth, ("yolov3-tiny",))
    # classes the data cannot pin (too little work) keep the start's values: start them at the truth
    sd = json.loads(json.dumps(TRUTH))
    sd["efficiency"]["memory"] = 0.7
    sd["efficiency"]["by_layer_class"].update({"conv3x3": 1.0, "conv1x1": 1.0})
    start = _profile(sram_bytes=1 << 40, **sd)
    fr = cal.fit(data, start)
    assert fr.memory_kept
    assert 1 / fr.params.x_mem == pytest.approx(0.7)
    assert cal.params_dict(fr.params, fr)["memory_efficiency_kept"] is True
    assert fr.params.efficiencies()["conv3x3"] == pytest.approx(0.8, rel=0.01)


# ----------------------------------------------------------------------------- hw detect's prior


def _detection(rate_wide, rate_narrow, gemm=1e11):
    from estimator.validate import detect as det

    d = det.Detection(hostname="h", cpu_model="c", cores=2, threads=2, simd_bits=512, fma=True, fma_units_assumed=2,
                      nominal_clock_hz=2e9, caches=[], llc_bytes=32 << 20, memory_bytes=1 << 34, flags=[])
    d.conv_shapes = {"conv1x1_fp32": (256, 64, 56, 1, 1), "conv1x1_narrow_fp32": (16, 96, 112, 1, 1)}
    for k, v in (("conv1x1_fp32", rate_wide), ("conv1x1_narrow_fp32", rate_narrow), ("gemm_fp32", gemm)):
        d.measurements[k] = det.Measurement(k, v, "MAC/s", 5, (v, v))
    return d


def test_detect_splits_1x1_time_into_macs_and_onchip_traffic():
    """Times made from known values (1.2e11 MAC/s for the MACs, 3e10 B/s for the activations)
    come back out of the two 1x1 measurements."""
    from estimator.validate import detect as det

    def rate(cin, cout, hw):
        macs = cin * cout * hw * hw
        return macs / (macs / 1.2e11 + (cin + cout) * hw * hw * 4 / 3e10)

    d = _detection(rate(256, 64, 56), rate(16, 96, 112))
    mac_rate, bw, why = det.onchip_split(d)
    assert mac_rate == pytest.approx(1.2e11, rel=1e-9) and bw == pytest.approx(3e10, rel=1e-9)
    assert "narrow" in why
    # a narrow conv as fast per MAC as the wide one: no physical split, no on-chip term
    assert det.onchip_split(_detection(1e11, 1e11)) is None
    assert det.onchip_split(_detection(1e11, 2e11)) is None


# ----------------------------------------------------------------------------- repeated runs


def test_median_of_runs_and_report_tables():
    """Three runs of one (model, batch) measured 9, 12 and 20 ms against a 11 ms prediction:
    the error against the median (12 ms) is -8.3%; the markdown report shows the median tables
    (with the runs' range) instead of one row per run."""
    from estimator.calibrate_cli import report_markdown

    pts = [{"model": "m", "batch": 1, "file": f"f{i}", "measured_s": t, "predicted_s": 0.011, "error": 0.011 / t - 1,
            "layers": []} for i, t in enumerate((0.009, 0.012, 0.020))]
    med = cal.median_of_runs(pts)
    assert len(med) == 1 and med[0]["runs"] == 3
    assert med[0]["measured_s"] == pytest.approx(0.012) and med[0]["error"] == pytest.approx(0.011 / 0.012 - 1)
    assert (med[0]["measured_min_s"], med[0]["measured_max_s"]) == (0.009, 0.020)
    st = cal.error_stats(pts)
    assert st["e2e_within_10pct"] == pytest.approx(1 / 3)          # per run: only the 12 ms run
    assert st["runs_median"]["e2e_within_10pct"] == 1.0 and st["runs_median"]["max_runs"] == 3
    rows = cal._per_point(pts)
    summ = {"summary": st, "points": rows}
    doc = {"params": {"efficiency_by_class": {}, "memory_efficiency": 1.0, "onchip_bandwidth_bytes_per_s": 4.7e10,
                      "layer_overhead_s": 0.0},
           "uncalibrated": summ, "fitted": summ, "cross_validation": summ,
           "test": {"calibrated": summ, "uncalibrated": summ}}
    md = report_markdown(doc)
    assert "fitted, median of runs" in md and "range of runs" in md and "9.00-20.00" in md
    assert "on-chip bandwidth 47 GB/s" in md
    assert "- fit set measurement repeatability" in md and "- test set measurement repeatability" in md


def test_repeatability_compares_each_run_with_the_median_of_the_others():
    """Each run against the median of its point's other runs, as the error that median would have
    as a prediction of it (others / run - 1). Point a, runs of 9, 12 and 20 ms: 16/9 - 1 = +77.8%,
    14.5/12 - 1 = +20.8%, 10.5/20 - 1 = -47.5%. Point a at batch 4 (another point): 40, 41, 39 ms
    (0.0%, -3.7%, +3.8%). Point b, four runs of 10, 11, 15 and 12 ms: the others' median of the
    10 ms run is 12 ms (+20.0%; their mean would be 12.67), of 11: 12 (+9.1%), of 15: 11 (-26.7%),
    of 12: 11 (-8.3%). Point c has two runs and is not compared. The worst list holds each point
    once, by its largest deviation; the report prints one line per data set."""
    from estimator.calibrate_cli import repeatability_lines

    def pts(model, times, batch=1):
        return [{"model": model, "batch": batch, "measured_s": t, "predicted_s": 0.01, "error": 0.01 / t - 1 if t else 0.0,
                 "layers": []} for t in times]

    points = (pts("a", (0.009, 0.012, 0.020)) + pts("a", (0.040, 0.041, 0.039), 4)
              + pts("b", (0.010, 0.011, 0.015, 0.012)) + pts("c", (0.010, 0.020)))
    r = cal.repeatability(points)
    devs = [16 / 9 - 1, 14.5 / 12 - 1, 10.5 / 20 - 1, 0.0, 39.5 / 41 - 1, 40.5 / 39 - 1,
            12 / 10 - 1, 12 / 11 - 1, 11 / 15 - 1, 11 / 12 - 1]
    a = np.abs(devs)
    assert (r["points"], r["runs"]) == (3, 10)
    assert r["within_5pct"] == pytest.approx(3 / 10) and r["within_10pct"] == pytest.approx(5 / 10)
    assert r["median_abs_deviation"] == pytest.approx(np.median(a), abs=1e-12)
    assert [(w["model"], w["batch"]) for w in r["worst"]] == [("a", 1), ("b", 1), ("a", 4)]
    assert [w["deviation"] for w in r["worst"]] == [pytest.approx(16 / 9 - 1), pytest.approx(11 / 15 - 1),
                                                     pytest.approx(40.5 / 39 - 1)]
    summ = {"summary": cal.error_stats(points), "points": cal._per_point(points)}
    assert summ["summary"]["runs_median"]["repeatability"] == r
    lines = repeatability_lines({"fitted": summ, "test": {"calibrated": summ}})
    assert len(lines) == 2 and lines[0].startswith("fit set") and lines[1].startswith("test set")
    assert "50% within 10%, 30% within 5%" in lines[0] and "a b1 +77.8%" in lines[0] and "b b1 -26.7%" in lines[0]
    assert cal.repeatability(pts("c", (0.010, 0.020))) is None
    assert cal.repeatability(pts("d", (0.010, 0.0, 0.012))) is None   # a run without a time is not a run
    assert repeatability_lines({"fitted": {"summary": cal.error_stats(pts("c", (0.010, 0.020)))}}) == []


def test_zero_onchip_cost_with_three_models_writes_no_key():
    """Review finding: with no on-chip term in the data the solver can return s of ~1e-26, a
    'bandwidth' of 4e25 B/s that the profile check rejects as absurd. Such round-off is no term."""
    d = json.loads(json.dumps(TRUTH))
    d["efficiency"]["memory"] = 10.0
    truth = _profile(sram_bytes=16 << 20, **d)
    data = _synthetic(truth, ("resnet50", "mobilenetv2", "yolov3-tiny"))
    fr = cal.fit(data, _profile(sram_bytes=16 << 20))
    assert fr.params.onchip_bandwidth is None or fr.params.onchip_bandwidth <= cal.ONCHIP_NONE_BPS
    prof = cal.apply_params(_profile(sram_bytes=16 << 20), fr.params, fr.fitted_classes,
                            overhead_classes=fr.overhead_classes)   # must not raise
    assert prof.onchip_bandwidth_bytes_per_s is None or prof.onchip_bandwidth_bytes_per_s <= 1e15


def test_kept_memory_efficiency_that_makes_layers_dram_bound_is_not_kept():
    """Review finding: the data (memory efficiency 10, 32 MiB SRAM) leave nothing DRAM-bound at
    the first solution, but the start's 0.1 would make most layers DRAM-bound: the data did set
    a floor, so the first fit stands and memory is not reported as kept."""
    d = json.loads(json.dumps(TRUTH))
    d["efficiency"]["memory"] = 10.0
    truth = _profile(sram_bytes=32 << 20, **d)
    data = _synthetic(truth, ("resnet50", "yolov3-tiny"))
    sd = json.loads(json.dumps(TRUTH))
    sd["efficiency"]["memory"] = 0.1
    fr = cal.fit(data, _profile(sram_bytes=32 << 20, **sd))
    assert not fr.memory_kept
    stats, _ = cal.evaluate_on(data, cal.apply_params(_profile(sram_bytes=32 << 20, **sd), fr.params,
                                                      fr.fitted_classes, overhead_classes=fr.overhead_classes))
    assert stats["e2e_median_abs_error"] < 0.02


def test_results_at_several_thread_counts_are_refused():
    truth = _profile(**json.loads(json.dumps(TRUTH)))
    table = api.analyze("yolov3-tiny", batch=1, precision="fp32")
    a = _fake_doc(table, truth, [1], "yolov3-tiny")
    b = json.loads(json.dumps(a))
    b["configurations"][0]["threads"] = 1
    with pytest.raises(Exception, match="several thread counts"):
        cal.build_dataset([("a.json", a, table), ("b.json", b, table)], "fp32")


def test_with_overrides_removing_an_absent_key_leaves_no_note():
    from estimator.hardware import with_overrides

    p = with_overrides(_prof(), onchip_bandwidth_bytes_per_s=None)
    assert "onchip_bandwidth_bytes_per_s" not in p.notes


# ----------------------------------------------------------------------------- new-user findings


def _tiny_runs(tmp_path):
    from test_calibrate import _file_model_results, _write_profile

    return _write_profile(tmp_path), _file_model_results(tmp_path)


def test_calibrate_test_files_never_fitted(tmp_path):
    """A run given both to fit and to --test is held out of the fit (here: nothing is left)."""
    from conftest import run_cli

    prof, runs = _tiny_runs(tmp_path)
    code, out, err = run_cli("calibrate", runs, "--test", runs, "--hw", prof, "-o", str(tmp_path / "c.yaml"))
    assert code == 2 and "also given to --test" in err
    assert not (tmp_path / "c.yaml").exists()


def test_calibrate_bad_report_path_and_busy_limit(tmp_path):
    from conftest import run_cli

    prof, runs = _tiny_runs(tmp_path)
    out = tmp_path / "c.yaml"
    code, _, err = run_cli("calibrate", runs, "--hw", prof, "-o", str(out), "--report", str(tmp_path / "no" / "r.json"))
    assert code == 2 and "does not exist" in err and len(err.strip().splitlines()) == 1
    (tmp_path / "adir").mkdir()
    code, _, err = run_cli("calibrate", runs, "--hw", prof, "-o", str(out), "--report", str(tmp_path / "adir"), "--force")
    assert code == 2 and "is a directory" in err
    code, _, err = run_cli("calibrate", runs, "--hw", prof, "-o", str(out), "--max-other-busy", "-3")
    assert code == 2 and "--max-other-busy" in err
    assert not out.exists()


def test_detect_warns_when_disturbed():
    from estimator.validate import detect as det

    d = _detection(8e10, 5e10, gemm=3e10)
    d.measurements["gemm_fp32_1t"] = det.Measurement("gemm_fp32_1t", 4e10, "MAC/s", 5, (4e10, 4e10))
    d.busy_before_pct = 100.0
    w = det.disturbance_warnings(d)
    assert len(w) == 2 and "busy" in w[0] and "one thread" in w[1]
    d.busy_before_pct = 3.0
    d.measurements["gemm_fp32_1t"] = det.Measurement("gemm_fp32_1t", 2e10, "MAC/s", 5, (2e10, 2e10))
    assert det.disturbance_warnings(d) == []


def test_validate_summary_shows_predicted_ms_and_disturbed_runs(capsys):
    from types import SimpleNamespace

    from estimator.validate import cli as vcli

    cfg = {"precision": "fp32", "batch": 1, "threads": 2, "instances": 1, "runs": 700,
           "latency_s": {"p50": 0.010, "p90": 0.011, "p99": 0.012}, "latency_cv": 0.01, "throughput_per_s": 100.0,
           "peak_rss_bytes": 2 ** 20, "layer_totals": {"coverage": 1.0}, "load": {"other_busy_pct_during": 55.0},
           "prediction": {"latency_s": 0.009, "measured_p50_s": 0.010, "error": -0.1}}
    doc = {"model": {"name": "m"}, "host": {"cpu": {"model": "c"}}, "engine": {"version": "1", "provider": "cpu"},
           "configurations": [cfg], "notes": []}
    vcli._print_run(SimpleNamespace(doc=doc, json_path="r.json", csv_path="r.csv"))
    out = capsys.readouterr().out
    assert "pred. ms" in out and "9.00" in out and "10.00 *" in out
    assert "warning" in out and "55%" in out


def test_detected_profile_pads_output_channels_to_the_simd_block():
    """AVX-512 (16 fp32 lanes): the detected profile has mac_array rows 1, cols 16, so a 1x1 conv
    with 24 output channels runs at 24/32 of the rate of one with 32 (same MACs per channel),
    while a depthwise conv (K = 1) keeps its whole rate."""
    from estimator.validate import detect as det
    from estimator.hardware import profile_from_dict
    from estimator.roofline import _util

    d = _detection(1e11, 5e10)
    for k, v, u in (("gemm_int8", 4e11, "MAC/s"), ("conv3x3_fp32", 9e10, "MAC/s"), ("depthwise_fp32", 1e10, "MAC/s"),
                    ("add_fp32", 1e10, "ops/s"), ("stream_copy", 4e10, "B/s"), ("stream_triad", 3e10, "B/s")):
        d.measurements[k] = det.Measurement(k, v, u, 5, (v, v))
    doc = det.profile_dict(d)
    assert doc["mac_array"] == {"rows": 1, "cols": 16}
    assert "NCHWc" in doc["notes"]["mac_array"]
    p = profile_from_dict(doc, "detected")
    rows, cols = np.array([float(p.mac_array.rows)]), np.array([float(p.mac_array.cols)])
    # (K, N): 1x1 conv 64 -> 24, 64 -> 32, depthwise (K = 1, N = 144)
    u = _util(np.array([64.0, 64.0, 1.0]), np.array([24.0, 32.0, 144.0]), rows, cols)[0]
    assert u.tolist() == [0.75, 1.0, 1.0]
