"""Published measurements: MLPerf summary import, end-to-end-only calibration, tile and wave
quantization, and the shipped profiles fitted to hwprofiles/published/points.json."""

from __future__ import annotations

import glob
import importlib.util
import json
import os

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from conftest import run_cli
from estimator import api, hardware
from estimator import calibrate_points as cp
from estimator.errors import UserError
from estimator.roofline import HwArrays, LayerArrays, evaluate
from estimator.validate import imported

REPO = os.path.join(os.path.dirname(__file__), "..")
PUBLISHED = os.path.join(REPO, "hwprofiles", "published")
SUMMARIES = sorted(glob.glob(os.path.join(PUBLISHED, "mlperf", "*", "*", "*", "mlperf_log_summary.txt")))

# LoadGen's summary format (loadgen/results.cc) for the two scenarios the shipped files lack
MULTISTREAM = """================================================
MLPerf Results Summary
================================================
SUT name : PySUT
Scenario : MultiStream
Mode     : PerformanceOnly
99th percentile latency (ns) : 3456789
Result is : VALID
  Min duration satisfied : Yes
  Min queries satisfied : Yes
  Early stopping satisfied: Yes
Early Stopping Result:
 * Processed at least 662 queries (270336).
 * Would discard 2574 highest latency queries.
 * Early stopping 99th percentile estimate: 3461234

================================================
Additional Stats
================================================
Per-query latency:  
Min latency (ns)                : 3001000
Max latency (ns)                : 4100000
Mean latency (ns)               : 3200000
50.00 percentile latency (ns)   : 3190000
90.00 percentile latency (ns)   : 3350000
95.00 percentile latency (ns)   : 3400000
97.00 percentile latency (ns)   : 3420000
99.00 percentile latency (ns)   : 3456789
99.90 percentile latency (ns)   : 3900000

================================================
Test Parameters Used
================================================
samples_per_query : 8
target_qps : 20
target_latency (ns): 0
max_async_queries : 1
min_duration (ms): 600000
max_duration (ms): 0
min_query_count : 662
max_query_count : 0
performance_sample_count : 64

No warnings encountered during test.

No errors encountered during test.
"""

SERVER = """================================================
MLPerf Results Summary
================================================
SUT name : PySUT
Scenario : Server
Mode     : PerformanceOnly
Scheduled samples per second : 1200.50
Result is : INVALID
  Performance constraints satisfied : NO
  Min duration satisfied : Yes
  Min queries satisfied : Yes
  Early stopping satisfied: Yes
Recommendations:
 * Reduce target QPS to improve latency.

================================================
Additional Stats
================================================
Completed samples per second    : 1198.20

Min latency (ns)                : 4000000
Max latency (ns)                : 40000000
Mean latency (ns)               : 9000000
50.00 percentile latency (ns)   : 8000000
90.00 percentile latency (ns)   : 12000000
95.00 percentile latency (ns)   : 13000000
97.00 percentile latency (ns)   : 14000000
99.00 percentile latency (ns)   : 16000000
99.90 percentile latency (ns)   : 30000000

================================================
Test Parameters Used
================================================
samples_per_query : 1
target_qps : 1200
target_latency (ns): 15000000
max_async_queries : 0
min_duration (ms): 600000
"""


# ----------------------------------------------------------------------------- parsing


def _read(path):
    with open(path) as f:
        return f.read()


def test_offline_and_singlestream_summaries_parse():
    by = {os.path.relpath(p, PUBLISHED).split(os.sep)[1]: imported.parse_mlperf_summary(_read(p), p) for p in SUMMARIES}
    assert len(by) == 5
    h = by["h100-sxm"]
    assert h["scenario"] == "Offline" and h["valid"] and h["value"] == pytest.approx(88714.3)
    assert h["units"] == "samples/s" and h["batch"] is None
    assert h["test_parameters"]["samples_per_query"] == 59400000
    o = by["jetson-agx-orin"]
    assert o["scenario"] == "SingleStream" and o["metric"] == "p90 latency" and o["batch"] == 1
    assert o["value"] == pytest.approx(640258e-9) and o["percentiles_s"]["p99"] == pytest.approx(643843e-9)
    assert o["qps_without_loadgen_overhead"] == pytest.approx(1571.40)
    assert by["2x-xeon-8380"]["value"] == pytest.approx(4223.33)


def test_multistream_and_server_summaries_parse():
    m = imported.parse_mlperf_summary(MULTISTREAM, "ms.txt")
    assert m["scenario"] == "MultiStream" and m["metric"] == "p99 latency per query"
    assert m["value"] == pytest.approx(3456789e-9) and m["batch"] == 8 and m["valid"]
    s = imported.parse_mlperf_summary(SERVER, "server.txt")
    assert s["scenario"] == "Server" and s["value"] == pytest.approx(1200.50) and s["valid"] is False
    assert s["completed_samples_per_s"] == pytest.approx(1198.20) and s["latency_bound_s"] == pytest.approx(0.015)


@pytest.mark.parametrize("text, match", [
    ("hello", "not an MLPerf LoadGen log summary"),
    ("MLPerf Results Summary\nScenario : Sideways\n", "scenario 'Sideways'"),
    ("MLPerf Results Summary\nScenario : Offline\nResult is : VALID\n", "incomplete LoadGen summary"),
    ("MLPerf Results Summary\nScenario : Offline\nResult is : VALID\nTest Parameters Used\n", "without its headline"),
    ("MLPerf Results Summary\nScenario : Offline\nMode : AccuracyOnly\nSamples per second: 5\n", "AccuracyOnly run"),
])
def test_malformed_summaries_are_user_errors(text, match):
    with pytest.raises(UserError, match=match):
        imported.parse_mlperf_summary(text, "x.txt")


def test_devices_precision_and_device_from_system_names():
    assert imported._devices_from_name("2x-xeon-8380") == 2
    assert imported._devices_from_name("DGX-H100_H100-SXM-80GBx8_TRT") == 8
    assert imported._devices_from_name("1-node-2S-ICX-OpenVINO-INT8") == 2
    assert imported._devices_from_name("jetson-agx-orin") is None
    assert imported._devices_from_name("RTX4090_TRT") is None and imported._devices_from_name("jetson-tx2") is None
    assert imported._devices_from_name("1xRTX4090") == 1 and imported._devices_from_name("8xH100") == 8
    assert imported._precision_from("1-node-2S-SPR-PyTorch-INT8") == "int8"
    assert imported._device_from("2x-xeon-8380", hardware.shipped_profile_names()) == "xeon-8380"


# ----------------------------------------------------------------------------- import command


def test_import_then_results_shows_the_five_systems(tmp_path):
    out = tmp_path / "pub"
    code, so, se = run_cli("results", "import", *SUMMARIES, "--out", str(out))
    assert code == 0, se
    assert "5 written" in so and "precision not stated" in se
    docs = [json.loads(p.read_text()) for p in out.glob("*.json")]
    assert len(docs) == 5 and all(d["source"] == "imported" and d["configurations"][0]["layers"] == [] for d in docs)
    dev = {d["host"]["hostname"]: d for d in docs}
    assert dev["2x-xeon-8480"]["devices_in_system"] == 2 and dev["2x-xeon-8480"]["device"] == "xeon-8480"
    assert dev["h100-sxm"]["configurations"][0]["throughput_per_s"] == pytest.approx(88714.3)
    code, so, se = run_cli("results", str(out), "--format", "json")
    assert code == 0, se
    rows = {r["host"]: r for r in json.loads(so)["summary"]}
    assert set(rows) == {"2x-xeon-8380", "2x-xeon-8480", "h100-sxm", "jetson-agx-orin", "jetson-agx-xavier"}
    assert rows["jetson-agx-orin"]["p90_batch1_s"] == pytest.approx(640258e-9)
    assert "88714.3 samples/s" in rows["h100-sxm"]["published_figure"]
    code, so, se = run_cli("results", str(out))   # the table renders the same rows
    assert code == 0 and "2x-xeon-8480" in so and "published figure" in so
    # importing again writes nothing new and overwrites nothing
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    code, so, _ = run_cli("results", "import", *SUMMARIES, "--out", str(out))
    assert code == 0 and "0 written, 5 already there" in so
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == before


def test_import_points_json_and_csv(tmp_path):
    code, so, se = run_cli("results", "import", os.path.join(PUBLISHED, "points.json"), "--out", str(tmp_path / "a"))
    assert code == 0 and "7 written" in so, se
    csv_file = tmp_path / "p.csv"
    csv_file.write_text("id,profile,model,scenario,batch,precision,metric,value,units,devices_in_system\n"
                        "x1,rpi4,resnet50,SingleStream,1,fp32,avg latency,335.34,ms,1\n"
                        "x2,xeon-8380,resnet50,Offline,not read,int8,throughput,4223.33,samples/s,2\n")
    code, so, se = run_cli("results", "import", str(csv_file), "--out", str(tmp_path / "b"))
    assert code == 0, se
    docs = sorted((json.loads(p.read_text()) for p in (tmp_path / "b").glob("*.json")), key=lambda d: d["imported"]["id"])
    assert docs[0]["configurations"][0]["latency_s"]["mean"] == pytest.approx(0.33534)
    assert docs[1]["configurations"][0]["batch"] is None
    assert docs[1]["configurations"][0]["throughput_per_device_per_s"] == pytest.approx(4223.33 / 2)


@pytest.mark.parametrize("content, match", [
    ('{"points": [{"model": "resnet50", "metric": "throughput", "units": "samples/s"}]}', "point 0: missing value"),
    ('{"points": [{"model": "resnet50", "metric": "throughput", "value": 5, "units": "furlongs"}]}', "units 'furlongs'"),
    ('{"points": [{"model": "resnet50", "metric": "weird", "value": 5, "units": "ms"}]}', "must say p50, p90"),
    ('{"points": [{"model": "r", "metric": "throughput", "value": 5, "units": "samples/s", "batch": "x"}]}', "batch (or 'not read') 'x' is not a whole number"),
    ('{"points": 3}', "expected a list of points"),
    ('{"points": [{"model": "r", "metric": "throughput", "value": 5, "units": "samples/s", "batch": -4}]}', "batch"),
    ('{"points": [{"model": "r", "metric": "throughput", "value": 5, "units": "samples/s", "batch": 0}]}', "batch"),
    ('{"points": [{"model": "r", "metric": "throughput", "value": Infinity, "units": "samples/s"}]}', "finite"),
    ('{"points": [{"model": "r", "metric": "throughput", "value": 5, "units": "samples/s", "devices_in_system": "two"}]}',
     "devices_in_system 'two'"),
    ('{"points": [{"model": "r", "metric": "p99.9 latency", "value": 5, "units": "ms"}]}', "must say p50"),
    ('{"points": [{"model": "r", "metric": "p90 latency", "value": 5, "units": "samples/s"}]}', "is a latency but"),
    ("model,metric,value,units\nresnet50,p90 latency,1.5,ms,extra,cols\n", "more fields than the header"),
    ("", "empty file"),
    ("a,b\n1,2\n", "neither an MLPerf summary"),
])
def test_bad_import_files_exit_2_with_one_line(tmp_path, content, match):
    f = tmp_path / "bad.json"
    f.write_text(content)
    code, so, se = run_cli("results", "import", str(f), "--out", str(tmp_path / "o"))
    assert code == 2 and match in se and len(se.strip().splitlines()) == 1 and "Traceback" not in se


def test_a_truncated_summary_is_refused(tmp_path):
    """Cut in the middle of its headline line, a summary would import 6.4 us instead of 640 us."""
    f = tmp_path / "mlperf_log_summary.txt"
    f.write_text(_read(next(p for p in SUMMARIES if "orin" in p))[:230])
    code, _, se = run_cli("results", "import", str(f), "--out", str(tmp_path / "o"), "--system", "x", "--model", "resnet50")
    assert code == 2 and "incomplete LoadGen summary" in se and not (tmp_path / "o").exists()


def test_old_format_multistream_reads_samples_per_query():
    old = MULTISTREAM.replace("99th percentile latency (ns) : 3456789\n", "Samples per query : 24\n")
    m = imported.parse_mlperf_summary(old, "old.txt")
    assert m["metric"] == "samples per query" and m["value"] == 24 and m["batch"] == 24


def test_a_results_tree_skips_accuracy_and_compliance_runs(tmp_path):
    tree = tmp_path / "closed" / "Vendor" / "results"
    src = _read(next(p for p in SUMMARIES if "orin" in p))
    for sub in ("performance/run_1", "accuracy"):
        d = tree / "orin-x1" / "resnet50" / "SingleStream" / sub
        d.mkdir(parents=True)
        (d / "mlperf_log_summary.txt").write_text(src)
    c = tmp_path / "closed" / "Vendor" / "compliance" / "orin-x1" / "resnet50" / "SingleStream" / "TEST04" / "performance" / "run_1"
    c.mkdir(parents=True)
    (c / "mlperf_log_summary.txt").write_text(src)
    code, so, se = run_cli("results", "import", str(tmp_path / "closed"), "--out", str(tmp_path / "o"), "--precision", "int8")
    assert code == 0 and "1 written" in so and "left out 2 accuracy or compliance" in se, se
    d = json.loads(next((tmp_path / "o").glob("*.json")).read_text())
    assert d["host"]["hostname"] == "orin-x1" and d["devices_in_system"] == 1


def test_import_missing_file_and_bad_devices(tmp_path):
    code, _, se = run_cli("results", "import", str(tmp_path / "nope.txt"), "--out", str(tmp_path / "o"))
    assert code == 2 and "no such file" in se
    code, _, se = run_cli("results", "import", SUMMARIES[0], "--out", str(tmp_path / "o"), "--devices", "0")
    assert code == 2 and "--devices 0" in se


# ----------------------------------------------------------------------------- tiles and waves


def _matmul_model(m: int, k: int, n: int) -> onnx.ModelProto:
    w = numpy_helper.from_array(np.zeros((k, n), np.float32), "w")
    g = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"], name="mm")], "mm",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, m, k])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], [w])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


def _tile_profile(units=4, tile=(128, 128)):
    return hardware.profile_from_dict({
        "schema_version": 1, "name": "tiles", "source": "synthetic: tile and wave quantization", "clock_hz": 1e9,
        "mac_units": {"fp32": 1000}, "sram_bytes": 1 << 40, "dram_bandwidth_bytes_per_s": 1e18,
        "parallel": {"units": units, "tile_m": tile[0], "tile_n": tile[1]}}, "tiles")


def _compute_s(model, profile, batch=1):
    t = api.analyze(model, batch=1)
    la = LayerArrays.from_table(t, rules=profile.fusion_rules())
    raw = evaluate(la, HwArrays.from_profiles([profile], "fp32"), [batch])
    i = la.op_types.index("MatMul")
    return float(raw.compute_s[0, 0, i]), float(la.macs[i])


def test_a_gemm_of_one_and_a_half_waves_costs_two(tmp_path):
    """768 x 128 outputs in 128 x 128 tiles = 6 tiles on 4 units: 1.5 waves, run as 2. Each wave
    is one tile's MACs (128 x 128 x 256) at one unit's rate (peak / 4): 2 waves = 8 x 128 x 128 x
    256 / peak, i.e. the MACs at 75% of the peak."""
    p = tmp_path / "mm.onnx"
    onnx.save(_matmul_model(768, 256, 128), str(p))
    prof = _tile_profile()
    t, macs = _compute_s(str(p), prof)
    peak = 1000 * 1e9
    assert macs == 768 * 256 * 128
    assert t == pytest.approx(2 * (128 * 128 * 256) / (peak / 4), rel=1e-9)
    assert t == pytest.approx(macs / (0.75 * peak), rel=1e-9)
    # without the key: today's behaviour (all units busy)
    flat = hardware.with_overrides(prof, parallel=None)
    assert _compute_s(str(p), flat)[0] == pytest.approx(macs / peak, rel=1e-9)


def test_partial_tiles_and_small_layers_leave_units_idle(tmp_path):
    """100 x 64 outputs: fewer rows than a tile, so one tile of 100 rows x 128 columns (64 of
    them used) on one of 4 units: 100 x 64 / (1 x 4 x 100 x 128) = 12.5% of the peak. 300 rows:
    3 tiles of 128 rows (300 of 384 used) x 1 column tile, one wave on 4 units: 300 x 64 /
    (1 x 4 x 128 x 128) = 29.3%."""
    p = tmp_path / "mm.onnx"
    onnx.save(_matmul_model(100, 32, 64), str(p))
    t, macs = _compute_s(str(p), _tile_profile())
    assert t == pytest.approx(macs / (1e12 * 0.125), rel=1e-9)
    onnx.save(_matmul_model(300, 32, 64), str(p))
    t, macs = _compute_s(str(p), _tile_profile())
    assert t == pytest.approx(macs / (1e12 * 300 * 64 / (4 * 128 * 128)), rel=1e-9)


def test_the_same_term_serves_a_cpu_with_cores_and_simd_lanes(tmp_path):
    """8 cores, one 16-lane vector per core and step: 20 x 24 outputs = 20 x 2 = 40 vectors ->
    5 rounds of 8, each vector 16 lanes wide of which 24/32 are used: 75% of the peak."""
    p = tmp_path / "mm.onnx"
    onnx.save(_matmul_model(20, 64, 24), str(p))
    t, macs = _compute_s(str(p), _tile_profile(units=8, tile=(1, 16)))
    assert t == pytest.approx(macs / (1e12 * 20 * 24 / (5 * 8 * 1 * 16)), rel=1e-9)


def test_parallel_key_is_validated():
    base = {"schema_version": 1, "name": "x", "source": "s", "clock_hz": 1e9, "mac_units": {"fp32": 1},
            "sram_bytes": 1, "dram_bandwidth_bytes_per_s": 1}
    with pytest.raises(UserError, match="parallel.units"):
        hardware.profile_from_dict({**base, "parallel": {"units": 0, "tile_m": 1, "tile_n": 1}}, "p.yaml")
    with pytest.raises(UserError, match="tile_k"):
        hardware.profile_from_dict({**base, "parallel": {"units": 2, "tile_m": 1, "tile_k": 1}}, "p.yaml")
    p = hardware.profile_from_dict({**base, "parallel": {"units": 2, "tile_m": 8, "tile_n": 4}}, "p.yaml")
    assert hardware.profile_to_dict(p)["parallel"] == {"units": 2, "tile_m": 8, "tile_n": 4}


# ----------------------------------------------------------------------------- end-to-end fits


def _point(model, metric, value, batch, precision="int8", devices=1):
    return cp.Point(label="synthetic", model=model, precision=precision, batch=batch, metric=metric, value=value,
                    devices=devices, source="synthetic")


@pytest.fixture(scope="module")
def orin_layers():
    p = hardware.load_profile("jetson-agx-orin")
    t = api.analyze("resnet50", batch=1, precision="int8")
    return p, {"resnet50": LayerArrays.from_table(t, rules=p.fusion_rules())}


def test_one_point_fit_recovers_a_known_compute_efficiency():
    """On a CPU profile ResNet-50 is compute-bound: one point sets the compute efficiency."""
    p = hardware.load_profile("xeon-8380")
    layers = {"resnet50": LayerArrays.from_table(api.analyze("resnet50", batch=1, precision="int8"),
                                                 rules=p.fusion_rules())}
    truth = hardware.with_overrides(p, efficiency={"compute": 0.4, "memory": 1.0})
    start = hardware.with_overrides(p, efficiency={"compute": 1.0, "memory": 1.0})
    q = _point("resnet50", "throughput", 1.0, None, devices=2)
    q = cp.Point(**{**q.__dict__, "value": cp.predict(q, layers["resnet50"], truth)})
    f = cp.fit_points([q], layers, start)
    assert list(f.parameters) == ["compute"]
    assert f.profile.efficiency.compute == pytest.approx(0.4, rel=0.01)
    assert abs(f.rows[0]["error_after"]) < 0.01 and f.rows[0]["error_before"] > 1.0


def test_one_point_fits_the_term_that_dominates_it(orin_layers):
    """Orin at batch 256 is DRAM-bound at its datasheet figures: one point sets the memory
    efficiency, and says so."""
    p, layers = orin_layers
    start = hardware.with_overrides(p, efficiency={"compute": 1.0, "memory": 1.0})
    q = _point("resnet50", "throughput", 1.0, 256)
    q = cp.Point(**{**q.__dict__, "value": 0.8 * cp.predict(q, layers["resnet50"], start)})
    f = cp.fit_points([q], layers, start)
    assert list(f.parameters) == ["memory"] and f.shares["memory"] > 0.5
    assert abs(f.rows[0]["error_after"]) < 0.01


def test_two_points_fit_two_parameters(orin_layers):
    """Batch 1 is overhead-heavy, batch 256 compute-bound: together they pin the compute
    efficiency and the per-kernel overhead (the CLI's default candidates)."""
    p, layers = orin_layers
    truth = hardware.with_overrides(p, efficiency={"compute": 0.5, "memory": 1.0}, layer_overhead_s=20e-6)
    start = hardware.with_overrides(p, efficiency={"compute": 1.0, "memory": 1.0}, layer_overhead_s=4e-6)
    pts = []
    for metric, batch in (("latency", 1), ("throughput", 256)):
        q = _point("resnet50", metric, 1.0, batch)
        pts.append(cp.Point(**{**q.__dict__, "value": cp.predict(q, layers["resnet50"], truth)}))
    f = cp.fit_points(pts, layers, start)
    assert set(f.parameters) == {"compute", "overhead"}
    assert f.profile.efficiency.compute == pytest.approx(0.5, rel=0.01)
    assert f.profile.layer_overhead_s == pytest.approx(20e-6, rel=0.02)
    assert all(abs(r["error_after"]) < 0.01 for r in f.rows)


def test_the_same_figure_twice_is_one_condition_and_one_parameter(orin_layers):
    p, layers = orin_layers
    q = _point("resnet50", "latency", 0.9e-3, 1)
    f = cp.fit_points([q, q], layers, p)
    assert len(f.parameters) == 1 and any("distinct condition" in n for n in f.notes)


def test_a_system_chosen_batch_is_compared_with_the_best_throughput(orin_layers):
    p, layers = orin_layers
    q = _point("resnet50", "throughput", 1.0, None)
    raw = evaluate(layers["resnet50"], HwArrays.from_profiles([p], "int8"), list(cp.OFFLINE_BATCHES))
    assert cp.predict(q, layers["resnet50"], p) == pytest.approx(float(np.max(np.asarray(cp.OFFLINE_BATCHES) / raw.latency_s[0])))


def test_calibrate_on_imported_points(tmp_path):
    pub = tmp_path / "pub"
    code, _, se = run_cli("results", "import", *SUMMARIES, "--out", str(pub), "--precision", "int8")
    assert code == 0, se
    out = tmp_path / "xavier.cal.yaml"
    code, so, se = run_cli("calibrate", str(pub), "--hw", "jetson-agx-xavier", "-o", str(out), "--format", "json")
    assert code == 0, se
    doc = json.loads(so)
    assert doc["device"] == "jetson-agx-xavier" and list(doc["parameters"]) == ["compute"]
    assert abs(doc["points"][0]["error_after"]) < 0.01
    prof = hardware.load_profile(str(out))
    assert "published point" in prof.source and "mlperf_log_summary.txt" in prof.source
    assert "published point" in prof.notes["efficiency"]
    # several devices and none is the profile's: say so
    code, _, se = run_cli("calibrate", str(pub), "--hw", "edge-npu", "-o", str(tmp_path / "x.yaml"))
    assert code == 2 and "several devices" in se and "--device" in se
    # INVALID and Server figures are not fitted
    srv = tmp_path / "srv"
    srv.mkdir()
    (srv / "mlperf_log_summary.txt").write_text(SERVER)
    run_cli("results", "import", str(srv / "mlperf_log_summary.txt"), "--out", str(tmp_path / "s"), "--system", "xeon-8380",
            "--model", "resnet50", "--precision", "int8")
    code, _, se = run_cli("calibrate", str(tmp_path / "s"), "--hw", "xeon-8380", "-o", str(tmp_path / "z.yaml"))
    assert code == 2 and "INVALID or a Server figure" in se
    # unknown precision: re-import with --precision
    raw = tmp_path / "raw"
    run_cli("results", "import", *SUMMARIES, "--out", str(raw))
    code, _, se = run_cli("calibrate", str(raw), "--hw", "h100-sxm", "-o", str(tmp_path / "y.yaml"))
    assert code == 2 and "precision unknown" in se


# ----------------------------------------------------------------------------- shipped profiles


def _devices_module():
    spec = importlib.util.spec_from_file_location("make_devices", os.path.join(REPO, "docs", "make_devices.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def devices():
    return _devices_module()


def test_every_shipped_profile_with_a_point_reproduces_it(devices):
    pts = devices.published()
    assert {"h100-sxm", "jetson-agx-orin", "jetson-agx-xavier", "xeon-8380", "xeon-8480", "rpi4", "edge-tpu"} <= set(pts)
    for name, pairs in pts.items():
        p = hardware.load_profile(name)
        assert "published measurements" in p.source and "published point" in p.notes["efficiency"], name
        for d, q in pairs:
            got = cp.predict(q, devices.layers_for(q.model, q.precision, p), p)
            assert abs(got / q.value - 1) <= 0.10, (name, got, q.value)
        # the ceilings stay physical: no fitted efficiency above the datasheet
        assert p.efficiency.compute <= 1.0 and p.efficiency.memory <= 1.0, name
        # the shipped efficiency is what a fit from the datasheet profile gives now (not stale)
        f = devices.fit(name, [q for _, q in pairs])
        assert f.profile.efficiency.compute == pytest.approx(p.efficiency.compute, rel=5e-3), name
        assert f.profile.efficiency.memory == pytest.approx(p.efficiency.memory, rel=5e-3), name


def test_shipped_profiles_stay_physical_at_other_batches(devices):
    for name, pairs in devices.published().items():
        for model, prec in {(q.model, q.precision) for _, q in pairs}:
            lat, thr, floor, _ = devices.batch_rows(name, model, prec)
            assert np.all(np.diff(thr) >= -1e-9 * thr[:-1]), name     # throughput non-decreasing with the batch
            assert lat[0] >= floor, name                               # b1 >= DRAM time of off-chip weights


def test_devices_page_is_current(devices):
    with open(devices.PAGE) as f:
        assert f.read() == devices.build(), "run python3 docs/make_devices.py"
