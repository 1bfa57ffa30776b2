"""Tests of the validation runner (estimator.validate) on tiny generated models."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import numpy as np
import onnx
import pytest
import typer
from onnx import TensorProto, helper, numpy_helper
from typer.testing import CliRunner

from estimator.errors import UserError
from estimator.validate import modelprep, profile_join, results, runner, stats
from estimator.validate.cli import results_command, validate_command


# ---------------------------------------------------------------------------------------------
# tiny models


def tiny_cnn(path: Path, *, ch: int = 8, hw: int = 16, batch="N") -> Path:
    """input -> Conv -> BN -> Relu -> Conv -> BN -> Add(residual) -> Relu -> GAP -> Flatten -> Gemm."""
    r = np.random.default_rng(0)
    inits = []

    def w(name, arr):
        inits.append(numpy_helper.from_array(np.asarray(arr, dtype=np.float32), name))

    def bn(prefix):
        w(f"{prefix}_s", np.ones(ch)); w(f"{prefix}_b", np.zeros(ch))
        w(f"{prefix}_m", np.zeros(ch)); w(f"{prefix}_v", np.ones(ch))
        return [f"{prefix}_{k}" for k in "sbmv"]

    w("w1", r.normal(0, 0.1, (ch, 3, 3, 3))); w("b1", np.zeros(ch))
    w("w2", r.normal(0, 0.1, (ch, ch, 3, 3)))
    w("fc_w", r.normal(0, 0.1, (10, ch))); w("fc_b", np.zeros(10))
    nodes = [
        helper.make_node("Conv", ["input", "w1", "b1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
        helper.make_node("BatchNormalization", ["c1", *bn("bn1")], ["n1"], name="bn1"),
        helper.make_node("Relu", ["n1"], ["r1"], name="relu1"),
        helper.make_node("Conv", ["r1", "w2"], ["c2"], name="conv2", pads=[1, 1, 1, 1]),
        helper.make_node("BatchNormalization", ["c2", *bn("bn2")], ["n2"], name="bn2"),
        helper.make_node("Add", ["n2", "r1"], ["a2"], name="add2"),
        helper.make_node("Relu", ["a2"], ["r2"], name="relu2"),
        helper.make_node("GlobalAveragePool", ["r2"], ["g"], name="gap"),
        helper.make_node("Flatten", ["g"], ["f"], name="flatten"),
        helper.make_node("Gemm", ["f", "fc_w", "fc_b"], ["logits"], name="fc", transB=1),
    ]
    g = helper.make_graph(nodes, "tiny", [helper.make_tensor_value_info("input", TensorProto.FLOAT, [batch, 3, hw, hw])],
                          [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [batch, 10])], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    onnx.checker.check_model(m)
    onnx.save(m, str(path))
    return path


def tiny_bert_like(path: Path) -> Path:
    """Embedding lookup (Gather) of int64 ids, masked by an int64 attention mask."""
    emb = numpy_helper.from_array(np.random.default_rng(0).normal(size=(30, 8)).astype(np.float32), "emb")
    nodes = [helper.make_node("Gather", ["emb", "input_ids"], ["e"], name="embed"),
             helper.make_node("Cast", ["attention_mask"], ["mf"], name="mask_cast", to=TensorProto.FLOAT),
             helper.make_node("Unsqueeze", ["mf", "axes"], ["mu"], name="mask_unsq"),
             helper.make_node("Mul", ["e", "mu"], ["out"], name="apply_mask")]
    axes = numpy_helper.from_array(np.array([2], dtype=np.int64), "axes")
    g = helper.make_graph(nodes, "bertish",
                          [helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["N", "seq"]),
                           helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["N", "seq"])],
                          [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["N", "seq", 8])], [emb, axes])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    onnx.save(m, str(path))
    return path


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("ESTIMATE_CACHE_DIR", str(tmp_path / "cache"))
    # keep tests independent of the analyzer's progress: no MACs/predictions unless a test asks
    monkeypatch.setattr(runner, "_analyzer_metadata", lambda path: (None, "analyzer disabled in tests"))


def fast_opts(**kw) -> runner.Options:
    base = dict(batches=[1], precisions=["fp32"], threads=[1], iterations=6, warmup=1, rounds=2,
                profile_runs=2, quiet=True)
    base.update(kw)
    return runner.Options(**base)


def make_app() -> typer.Typer:
    app = typer.Typer()
    app.command("validate")(validate_command)
    app.command("results")(results_command)
    return app


# ---------------------------------------------------------------------------------------------
# percentiles


def test_nearest_rank_percentiles_hand_computed():
    xs = list(range(10, 0, -1))  # 10..1, unsorted on purpose
    s = stats.latency_summary(xs)
    # nearest rank: x[ceil(p/100*n)-1] of the sorted list 1..10
    assert s["p50"] == 5 and s["p90"] == 9 and s["p95"] == 10 and s["p99"] == 10
    assert s["min"] == 1 and s["max"] == 10 and s["mean"] == 5.5
    assert s["std"] == pytest.approx(np.sqrt(8.25))  # population std of 1..10
    hundred = stats.latency_summary(range(1, 101))
    assert (hundred["p50"], hundred["p90"], hundred["p95"], hundred["p99"]) == (50, 90, 95, 99)
    assert stats.percentile_nearest_rank([7.0], 99) == 7.0
    assert stats.percentile_nearest_rank([1, 2, 3], 0) == 1
    assert stats.coefficient_of_variation([1, 1, 1]) == 0
    assert stats.coefficient_of_variation([1, 3]) == pytest.approx(0.5)
    assert "estimate" in stats.percentile_note(100)
    assert stats.percentile_note(662) is None


# ---------------------------------------------------------------------------------------------
# profile join


def _profile(tmp_path, model_path, level, original):
    import onnxruntime as ort
    so = runner.session_options(1, level, denormal_zero=False, profile_prefix=str(tmp_path / "p"),
                                optimized_path=str(tmp_path / f"opt-{level}.onnx"))
    sess = ort.InferenceSession(str(model_path), so, providers=["CPUExecutionProvider"])
    feeds = modelprep.generate_inputs(modelprep.input_specs(original), 1)
    for _ in range(3):
        sess.run(None, feeds)
    kt = profile_join.parse_profile(sess.end_profiling())
    assert kt.runs == 2 and kt.runs_in_profile == 3  # the cold run is excluded
    return profile_join.join(original, onnx.load(str(tmp_path / f"opt-{level}.onnx")), kt)


def test_profile_join_fused_graph_at_enable_all(tmp_path):
    path = tiny_cnn(tmp_path / "m.onnx")
    original = onnx.load(str(path))
    j = _profile(tmp_path, path, "all", original)
    assert j.unmapped == [] and j.unmapped_s == 0
    assert j.coverage == 1.0
    layers = {l["name"]: l for l in j.layers}
    assert set(layers) == {n.name for n in original.graph.node}
    assert layers["conv1"]["measured_s"] > 0 and layers["conv2"]["measured_s"] > 0
    # Conv+BN+Relu were fused: BN/Relu name the conv that absorbed them
    assert layers["bn1"]["fused_into"] == "conv1" and layers["relu1"]["fused_into"] == "conv1"
    assert layers["bn2"]["fused_into"] == "conv2"
    assert sum(l["measured_s"] for l in j.layers) + j.unmapped_s == pytest.approx(j.total_s)


def test_profile_join_unfused_graph_at_disable_all(tmp_path):
    path = tiny_cnn(tmp_path / "m.onnx")
    original = onnx.load(str(path))
    j = _profile(tmp_path, path, "disable", original)
    assert j.coverage == 1.0 and not j.unmapped
    for l in j.layers:  # every original node ran as its own kernel
        assert l["kernels"] == [l["name"]] and l["measured_s"] > 0 and "fused_into" not in l
    assert sum(l["measured_s"] for l in j.layers) == pytest.approx(j.total_s)


@pytest.mark.parametrize("precision", ["fp16", "int8"])
def test_profile_join_precision_variants_use_original_names(tmp_path, precision):
    path = tiny_cnn(tmp_path / "m.onnx")
    original = onnx.load(str(path))
    variant = modelprep.make_variant(path, precision, sha256=modelprep.sha256_file(path))
    j = _profile(tmp_path, variant, "all", original)
    assert {l["name"] for l in j.layers} == {n.name for n in original.graph.node}
    assert j.coverage >= 0.99, j.unmapped
    assert j.added_by_kind  # casts or Q/DQ nodes were attributed and totalled by kind
    layers = {l["name"]: l for l in j.layers}
    assert layers["conv1"]["measured_s"] > 0 and layers["conv2"]["measured_s"] > 0
    assert layers["bn1"].get("fused_into") == "conv1" and layers["relu1"].get("fused_into") == "conv1"
    assert layers["bn2"].get("fused_into") == "conv2"
    assert sum(l["measured_s"] for l in j.layers) + j.unmapped_s == pytest.approx(j.total_s)


def test_name_candidates_strip_ort_decorations():
    assert "r1" in profile_join.name_candidates("InsertedPrecisionFreeCast_r1_nchwc")
    assert "conv1" in profile_join.name_candidates("conv1_token_12")


# ---------------------------------------------------------------------------------------------
# runs, schema


def test_run_writes_schema_round_trip(tmp_path):
    model = tiny_cnn(tmp_path / "m.onnx")
    out = tmp_path / "out"
    oc = runner.run_validation(str(model), out, fast_opts(batches=[1, 2]))
    assert not oc.interrupted
    doc = json.loads(oc.json_path.read_text())
    assert results.schema_problems(doc) == []
    for k in results.REQUIRED_TOP:
        assert k in doc
    assert doc["partial"] is False and doc["schema_version"] == results.SCHEMA_VERSION
    assert doc["model"]["sha256"] == modelprep.sha256_file(model)
    assert doc["model"]["inputs"][0]["shape"] == ["N", 3, 16, 16]
    assert doc["host"]["cpu"]["logical_cores"] >= 1 and "simd_flags" in doc["host"]["cpu"]
    assert [c["batch"] for c in doc["configurations"]] == [1, 2]
    for c in doc["configurations"]:
        assert set(results.LATENCY_KEYS) <= set(c["latency_s"])
        lat = c["latency_s"]
        assert lat["min"] <= lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["max"]
        assert c["runs"] == 6 and c["samples"] == 6 * c["batch"]
        assert c["throughput_per_s"] > 0 and c["peak_rss_bytes"] > 0
        assert c["layer_totals"]["coverage"] == 1.0
        assert c["input_shapes"]["input"] == [c["batch"], 3, 16, 16]
    rows = list(csv.DictReader(oc.csv_path.open()))
    assert len(rows) == 2 and rows[1]["batch"] == "2"
    assert oc.json_path.name.startswith("m-") and oc.json_path.suffix == ".json"


def test_instances_and_fixed_batch_model(tmp_path):
    model = tiny_cnn(tmp_path / "fixed.onnx", batch=1)  # fixed batch 1, swept to batch 2
    oc = runner.run_validation(str(model), tmp_path / "out",
                               fast_opts(batches=[2], threads=[2], instances=[2], profile=False))
    c = oc.doc["configurations"][0]
    assert c["instances"] == 2 and c["intra_op_threads_per_instance"] == 1
    assert len(c["per_instance"]) == 2 and c["samples"] == 2 * 2 * 6
    assert any("batch-symbolic" in n for n in oc.doc["notes"])


def test_generated_weights_when_external_data_missing(tmp_path):
    path = tiny_cnn(tmp_path / "w.onnx")
    m = onnx.load(str(path))
    onnx.save(m, str(tmp_path / "graph.onnx"), save_as_external_data=True, location="graph.data",
              size_threshold=0)
    os.unlink(tmp_path / "graph.data")
    oc = runner.run_validation(str(tmp_path / "graph.onnx"), tmp_path / "out", fast_opts(profile=False))
    assert oc.doc["model"]["weights"] == "generated"
    loaded, generated = modelprep.load_with_weights(tmp_path / "graph.onnx")
    assert generated
    var = {i.name: numpy_helper.to_array(i) for i in loaded.graph.initializer}
    assert var["bn1_v"].shape == (8,) and (var["bn1_v"] > 0).all()


def test_bert_like_inputs_are_valid_ids_and_masks(tmp_path):
    path = tiny_bert_like(tmp_path / "b.onnx")
    specs = modelprep.input_specs(onnx.load(str(path)))
    feeds = modelprep.generate_inputs(specs, 3, seq_len=16)
    assert feeds["input_ids"].shape == (3, 16) and feeds["input_ids"].dtype == np.int64
    assert feeds["input_ids"].min() >= 0 and feeds["input_ids"].max() < 2
    assert (feeds["attention_mask"] == 1).all()
    oc = runner.run_validation(str(path), tmp_path / "out", fast_opts(seq_len=16))
    assert oc.doc["configurations"][0]["input_shapes"]["input_ids"] == [1, 16]


def test_predictions_and_errors_with_hw(tmp_path, monkeypatch):
    model = tiny_cnn(tmp_path / "m.onnx")

    def fake_prediction(model_path, hw, batches, precision):
        return {"batches": batches, "latency_s": [1e-3 * b for b in batches],
                "layer_names": ["conv1", "bn1", "relu1", "conv2"],
                "layer_latency_s": [[1e-4] * len(batches)] * 4}, None

    monkeypatch.setattr(runner, "_prediction", fake_prediction)
    monkeypatch.setattr(runner, "_check_hw", lambda hw: None)
    oc = runner.run_validation(str(model), tmp_path / "out", fast_opts(hw="fake.yaml"))
    c = oc.doc["configurations"][0]
    p = c["prediction"]
    assert p["latency_s"] == 1e-3
    assert p["error"] == pytest.approx(1e-3 / c["latency_s"]["p50"] - 1)
    conv1 = next(l for l in c["layers"] if l["name"] == "conv1")
    assert conv1["predicted_group_s"] == pytest.approx(3e-4)  # conv1 + fused bn1 + relu1
    assert conv1["error"] == pytest.approx(3e-4 / conv1["measured_s"] - 1)


# ---------------------------------------------------------------------------------------------
# results summary


def _doc(host, prec, rows, run_id):
    confs = []
    for batch, p50, thr in rows:
        lat = {k: p50 for k in results.LATENCY_KEYS}
        lat["p90"], lat["p99"] = p50 * 1.1, p50 * 1.2
        confs.append({"batch": batch, "precision": prec, "threads": 2, "instances": 1,
                      "latency_s": lat, "throughput_per_s": thr, "peak_rss_bytes": 1, "layers": [],
                      "prediction": {"latency_s": p50 * 1.1, "error": 0.1}})
    return {"schema_version": results.SCHEMA_VERSION, "run_id": run_id, "partial": False,
            "model": {"name": "m", "sha256": "x", "inputs": []},
            "host": {"hostname": host, "cpu": {"model": "cpu"}}, "engine": {"provider": "CPU"},
            "configurations": confs}


def test_results_summary_max_throughput_min_latency(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "r1.json").write_text(json.dumps(_doc("h1", "fp32", [(1, 0.010, 100.0), (4, 0.030, 133.0)], "r1")))
    (tmp_path / "r2.json").write_text(json.dumps(_doc("h1", "fp32", [(8, 0.050, 160.0)], "r2")))
    (tmp_path / "r3.json").write_text(json.dumps(_doc("h2", "fp32", [(1, 0.020, 50.0)], "r3")))
    (tmp_path / "junk.json").write_text(json.dumps({"hello": 1}))
    (tmp_path / "broken.json").write_text("{not json")
    docs, notes = results.load_results([str(tmp_path)])
    assert len(docs) == 3 and len(notes) == 2 and all(n.startswith("skipped") for n in notes)
    rows = {r["host"]: r for r in results.summarize(docs)}
    h1 = rows["h1"]
    assert h1["max_throughput_per_s"] == 160.0 and h1["batch_at_max"] == 8
    assert h1["min_latency_s"] == 0.010 and h1["min_latency_batch"] == 1
    assert h1["p90_batch1_s"] == pytest.approx(0.011) and h1["p99_batch1_s"] == pytest.approx(0.012)
    assert h1["prediction_error_batch1"] == 0.1 and h1["runs"] == 2 and h1["configurations"] == 3
    assert rows["h2"]["max_throughput_per_s"] == 50.0

    cli = CliRunner()
    for fmt in ("table", "csv", "json", "markdown"):
        res = cli.invoke(make_app(), ["results", str(tmp_path), "--format", fmt])
        assert res.exit_code == 0, res.output
        assert "h1" in res.stdout
    js = json.loads(cli.invoke(make_app(), ["results", str(tmp_path), "--format", "json"]).stdout)
    assert len(js["summary"]) == 2


def test_results_without_any_results_is_a_user_error(tmp_path):
    (tmp_path / "junk.json").write_text("[]")
    res = CliRunner().invoke(make_app(), ["results", str(tmp_path)])
    assert isinstance(res.exception, UserError) and "no validation results" in str(res.exception)


# ---------------------------------------------------------------------------------------------
# faults


def test_interrupt_after_first_configuration_keeps_it(tmp_path, monkeypatch):
    model = tiny_cnn(tmp_path / "m.onnx")
    out = tmp_path / "out"
    out.mkdir()
    earlier = out / "m-20200101T000000Z-abcdef.json"
    earlier.write_text('{"earlier": true}')
    real = runner.run_chunk
    calls = []

    def chunk(cfg, **kw):
        calls.append(cfg.key)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(cfg, **kw)

    monkeypatch.setattr(runner, "run_chunk", chunk)
    res = CliRunner().invoke(make_app(), ["validate", str(model), "--batch", "1,2", "--threads", "1",
                                          "--iterations", "4", "--rounds", "1", "--warmup", "1",
                                          "--out", str(out), "--quiet"])
    assert res.exit_code == 130
    assert earlier.read_text() == '{"earlier": true}'
    new = [p for p in out.glob("*.json") if p != earlier]
    assert len(new) == 1
    doc = json.loads(new[0].read_text())
    assert doc["partial"] is True and doc["interrupted"] is True
    assert [c["batch"] for c in doc["configurations"]] == [1]
    assert doc["configurations"][0]["complete"] is True and doc["configurations"][0]["runs"] == 4
    assert results.schema_problems(doc) == []
    assert not list(out.glob(".*tmp"))  # no temp files left behind


def test_unknown_provider_lists_available(tmp_path):
    model = tiny_cnn(tmp_path / "m.onnx")
    with pytest.raises(UserError, match="CPUExecutionProvider") as e:
        runner.run_validation(str(model), tmp_path / "out", fast_opts(provider="NoSuchExecutionProvider"))
    assert "available" in str(e.value)
    # a short name is accepted
    assert runner.resolve_provider("cpu") == "CPUExecutionProvider"


def test_unwritable_out_dir(tmp_path):
    model = tiny_cnn(tmp_path / "m.onnx")
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(UserError, match="not writable"):
        runner.run_validation(str(model), blocker / "sub", fast_opts())


def test_model_onnxruntime_cannot_load(tmp_path):
    node = helper.make_node("NoSuchOp", ["x"], ["y"], name="bad")
    g = helper.make_graph([node], "bad", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    onnx.save(m, str(tmp_path / "bad.onnx"))
    with pytest.raises(UserError, match="onnxruntime cannot load it") as e:
        runner.run_validation(str(tmp_path / "bad.onnx"), tmp_path / "out", fast_opts())
    assert "\n" not in str(e.value) and len(str(e.value)) < 400


def test_bad_hw_profile_fails_before_measuring(tmp_path, monkeypatch):
    model = tiny_cnn(tmp_path / "m.onnx")

    def bad(hw):
        raise UserError(f"unknown hardware profile {hw!r}")

    monkeypatch.setattr(runner, "_check_hw", bad)
    with pytest.raises(UserError, match="unknown hardware profile"):
        runner.run_validation(str(model), tmp_path / "out", fast_opts(hw="nope"))
    assert not list((tmp_path / "out").glob("*.json"))


def test_bad_precision_and_options(tmp_path):
    model = tiny_cnn(tmp_path / "m.onnx")
    with pytest.raises(UserError, match="bf16"):
        runner.run_validation(str(model), tmp_path / "out", fast_opts(precisions=["bf16"]))
    res = CliRunner().invoke(make_app(), ["validate", str(model), "--batch", "1,x", "--out", str(tmp_path / "o")])
    assert isinstance(res.exception, UserError)
    res = CliRunner().invoke(make_app(), ["validate", "no-such-model", "--out", str(tmp_path / "o")])
    assert isinstance(res.exception, UserError) and "built-in" in str(res.exception)


def test_cli_validate_end_to_end(tmp_path):
    model = tiny_cnn(tmp_path / "m.onnx")
    res = CliRunner().invoke(make_app(), ["validate", str(model), "--batch", "1", "--threads", "1",
                                          "--iterations", "3", "--warmup", "1", "--profile-runs", "2",
                                          "--out", str(tmp_path / "o")])
    assert res.exit_code == 0, res.output
    assert "results:" in res.stdout


def test_idle_wake_reads_cpuidle_and_names_a_halting_guest(tmp_path):
    from estimator.validate import host

    # nothing exposed (a container without /sys, another OS): nothing said
    assert host.idle_wake(str(tmp_path)) == {} and host.idle_wake_note({}) is None
    for rel, text in (("sys/devices/system/cpu/cpuidle/current_driver", "haltpoll\n"),
                      ("sys/devices/system/cpu/cpuidle/current_governor_ro", "haltpoll\n"),
                      ("sys/module/haltpoll/parameters/guest_halt_poll_ns", "0\n")):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    info = host.idle_wake(str(tmp_path))
    assert info == {"driver": "haltpoll", "governor": "haltpoll", "halt_poll_ns": 0}
    assert "guest_halt_poll_ns 0" in host.idle_wake_note(info)
    # a guest that polls before halting, or bare metal's intel_idle: no note
    assert host.idle_wake_note({**info, "halt_poll_ns": 200000}) is None
    assert host.idle_wake_note({"driver": "intel_idle", "governor": "menu"}) is None
    # guest_halt_poll_ns is the haltpoll governor's: with the menu governor it says nothing
    assert host.idle_wake_note({**info, "governor": "menu"}) is None
    # contents that are not a number are kept as text, and say nothing
    (tmp_path / "sys/module/haltpoll/parameters/guest_halt_poll_ns").write_text("n/a\n")
    odd = host.idle_wake(str(tmp_path))
    assert odd["halt_poll_ns"] == "n/a" and host.idle_wake_note(odd) is None
