"""The command line, through typer's CliRunner and through main() (exit codes)."""

import csv
import io
import json
import os
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from estimator.cli import app

from conftest import LIGHT_DIR, run_cli, run_json

GOLDEN = os.path.join(os.path.dirname(__file__), "golden")
UPDATE = os.environ.get("ESTIMATE_UPDATE_GOLDEN") == "1"
runner = CliRunner()


def test_clirunner_analyze_json():
    r = runner.invoke(app, ["analyze", "mobilenetv2", "--format", "json"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.output)
    assert doc["schema_version"] == 1
    assert doc["totals"]["macs"] == 300_774_272
    for key in ("macs", "non_mac_ops", "params", "weight_bytes", "max_activation_elems", "max_activation_bytes",
                "peak_activation_bytes", "macs_by_op_type"):
        assert key in doc["totals"]
    assert doc["unsupported_ops"] == {}
    assert doc["model"]["inputs"] == [{"name": "input", "shape": [1, 3, 224, 224], "dtype": "float32"}]
    layer = doc["layers"][0]
    for key in ("name", "op_type", "macs", "params", "weight_bytes", "output_shape", "winograd_candidate"):
        assert key in layer


def test_clirunner_models_and_profiles():
    r = runner.invoke(app, ["models", "--format", "json"])
    assert r.exit_code == 0
    names = [m["name"] for m in json.loads(r.output)]
    assert names == ["resnet50", "resnet50-v1", "yolov3", "yolov3-tiny", "mobilenetv2", "bert-base",
                     "gpt2", "llama-3.2-1b", "llama-3-8b", "llama-3.2-1b-genai", "llama-3-8b-genai"]
    r = runner.invoke(app, ["profiles", "--format", "json"])
    assert r.exit_code == 0
    profs = {p["name"]: p for p in json.loads(r.output)}
    assert {"h100-sxm", "jetson-agx-orin", "edge-tpu", "xeon-8380", "rpi4", "edge-npu"} <= set(profs)
    assert all(p["source"] for p in profs.values())


def test_default_command_routes_to_analyze():
    code, out, err = run_cli("resnet50")
    assert code == 0, err
    assert "4.09 G" in out and "1 MAC = 1 multiply-accumulate" in out and "Unsupported ops: none" in out


def test_summary_lists_unsupported_ops(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    g = helper.make_graph([helper.make_node("Relu", ["x"], ["a"], name="r"),
                           helper.make_node("MyCustomOp", ["a"], ["y"], name="custom", domain="com.example")],
                          "c", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.example", 1)])
    p = tmp_path / "custom.onnx"
    onnx.save(m, str(p))
    code, out, _ = run_cli(str(p))
    assert code == 0 and "com.example.MyCustomOp x1" in out and "NOT zero" in out
    doc = run_json(str(p))
    assert doc["unsupported_ops"] == {"com.example.MyCustomOp": 1}
    assert [l["status"] for l in doc["layers"]] == ["ok", "unsupported"]


def test_layers_csv_and_markdown():
    code, out, _ = run_cli("resnet50", "--format", "csv")
    assert code == 0
    rows = list(csv.DictReader(io.StringIO(out)))
    assert sum(int(r["macs"]) for r in rows) == 4_089_184_256
    code, out, _ = run_cli("resnet50", "--format", "markdown", "--layers")
    assert code == 0 and "| name" in out and "conv1" in out


def test_precision_changes_bytes_not_counts():
    a = run_json("resnet50", "--precision", "fp32")["totals"]
    b = run_json("resnet50", "--precision", "int8")["totals"]
    assert a["macs"] == b["macs"] and a["params"] == b["params"]
    assert a["weight_bytes"] == 4 * b["weight_bytes"]
    assert a["max_activation_bytes"] == 4 * b["max_activation_bytes"]


def test_hw_prediction_document():
    doc = run_json("resnet50", "--hw", "edge-npu", "--batch", "1,8", "--precision", "int8")
    assert doc["hardware"]["name"] == "edge-npu"
    preds = doc["predictions"]
    assert [p["batch"] for p in preds] == [1, 8]
    for p in preds:
        for key in ("latency_s", "throughput_per_s", "dram_bytes", "bound_fraction"):
            assert key in p
        assert abs(p["throughput_per_s"] - p["batch"] / p["latency_s"]) < 1e-6 * p["throughput_per_s"]
        assert abs(p["bound_fraction"]["compute"] + p["bound_fraction"]["memory"] - 1) < 1e-9
    assert len(doc["layers"][0]["predicted"]["time_s"]) == 2
    assert doc["winograd"]["mode"] == "f2"  # the profile's default
    assert abs(sum(l["predicted"]["time_s"][0] for l in doc["layers"]) - preds[0]["latency_s"]) < 1e-12


def test_compare_json():
    code, out, err = run_cli("compare", "resnet50", "yolov3@416x416", "--hw", "edge-npu", "--batch", "1,4", "--format", "json")
    assert code == 0, err
    rows = json.loads(out)["models"]
    assert [r["model"] for r in rows] == ["resnet50", "yolov3@416x416"]
    assert rows[1]["macs"] > rows[0]["macs"]
    for key in ("weight_bytes", "max_activation_bytes", "peak_activation_bytes", "weights_fit_sram", "latency_b1_s",
                "best_throughput_per_s", "batch_for_90pct", "dram_bandwidth_needed_bytes_per_s", "winograd_gain_b1"):
        assert key in rows[0]


def test_sweep_csv():
    code, out, err = run_cli("sweep", "resnet50", "--hw", "edge-npu", "--vary", "sram_bytes=1MiB..8MiB",
                             "--vary", "dram_bandwidth_bytes_per_s=1e10,2e10", "--format", "csv")
    assert code == 0, err
    rows = list(csv.DictReader(io.StringIO(out)))
    assert len(rows) == 4 * 2
    lat = {(float(r["sram_bytes"]), float(r["dram_bandwidth_bytes_per_s"])): float(r["latency_s"]) for r in rows}
    assert lat[(8 * 2 ** 20, 2e10)] <= lat[(2 ** 20, 1e10)]


@pytest.mark.parametrize("args, word", [
    (["resnet50", "--hw", "nosuchprofile"], "nosuchprofile"),
    (["resnet50", "--hw", "edge-tpu", "--precision", "fp32"], "int8"),
    (["resnet50", "--winograd", "f2"], "--hw"),
    (["resnet50", "--hw", "edge-npu", "--winograd", "f3"], "f3"),
    (["resnet50", "--precision", "fp8"], "fp8"),
    (["sweep", "resnet50", "--hw", "edge-npu", "--vary", "sram=1MB"], "sram"),
    (["sweep", "resnet50", "--hw", "edge-npu", "--vary", "sram_bytes=lots"], "lots"),
    (["export", "nosuch", "-o", "/tmp/x.onnx"], "nosuch"),
    (["resnet50", "--hw", "edge-npu", "--plot", "out.txt"], ".png"),
])
def test_user_errors_exit_2_one_line(args, word):
    code, out, err = run_cli(*args)
    assert code == 2, (out, err)
    assert "Traceback" not in err and word in err
    assert len(err.strip().splitlines()) == 1


def test_export_refuses_overwrite_and_writes(tmp_path):
    p = tmp_path / "m.onnx"
    p.write_text("keep me")
    code, _, err = run_cli("export", "yolov3-tiny", "-o", str(p))
    assert code == 2 and "exists" in err and p.read_text() == "keep me"
    code, _, err = run_cli("export", "yolov3-tiny", "-o", str(p), "--no-weights", "--force")
    assert code == 0, err
    doc = run_json(str(p))
    assert doc["totals"]["macs"] == 2_782_480_896


def test_installed_console_script_exit_codes(tmp_path):
    exe = os.path.join(os.path.dirname(sys.executable), "estimate")
    if not os.path.exists(exe):
        pytest.fail(f"console script not installed next to {sys.executable}")
    r = subprocess.run([exe, str(tmp_path / "missing.onnx")], capture_output=True, text=True)
    assert r.returncode == 2 and "no such file" in r.stderr and "Traceback" not in r.stderr
    r = subprocess.run([exe, "resnet50", "--format", "json"], capture_output=True, text=True, cwd=str(tmp_path))
    assert r.returncode == 0 and json.loads(r.stdout)["totals"]["macs"] == 4_089_184_256


def test_golden_markdown_report():
    """Golden output for one model and profile; regenerate with ESTIMATE_UPDATE_GOLDEN=1."""
    code, out, err = run_cli("resnet50-v1", "--hw", "edge-npu", "--precision", "int8", "--batch", "1,8,64", "--format", "markdown")
    assert code == 0, err
    path = os.path.join(GOLDEN, "resnet50-v1_edge-npu_int8.md")
    if UPDATE or not os.path.exists(path):
        if not UPDATE:
            pytest.fail(f"golden file {path} missing: run with ESTIMATE_UPDATE_GOLDEN=1 to create it")
        os.makedirs(GOLDEN, exist_ok=True)
        with open(path, "w") as f:
            f.write(out)
    with open(path) as f:
        assert out == f.read()


def test_plot_writes_png(tmp_path):
    out = tmp_path / "roof.png"
    code, _, err = run_cli("resnet50", "--hw", "edge-npu", "--batch", "1,2", "--plot", str(out))
    assert code == 0, err
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (out.stat().st_mode & 0o044) == (0o644 & ~_umask() & 0o044)  # readable like any file the user makes


def _umask():
    m = os.umask(0)
    os.umask(m)
    return m


def test_plot_without_matplotlib_is_a_clear_error(tmp_path, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def fake_import(name, *a, **k):
        if name.startswith("matplotlib"):
            raise ImportError("no matplotlib")
        return real_import(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", fake_import)
    code, _, err = run_cli("resnet50", "--hw", "edge-npu", "--plot", str(tmp_path / "x.png"))
    assert code == 2 and "pip install 'estimate[plot]'" in err


def test_seeds_comparison_page_is_current():
    """docs/seeds-comparison.md must be what docs/make_seeds_comparison.py generates now."""
    import importlib.util

    script = os.path.join(os.path.dirname(__file__), "..", "docs", "make_seeds_comparison.py")
    spec = importlib.util.spec_from_file_location("make_seeds_comparison", script)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    with open(mod.PAGE) as f:
        assert f.read() == mod.build(), "run python3 docs/make_seeds_comparison.py"


def test_reader_leaving_the_pipe_is_not_an_error():
    """`estimate resnet50 --layers | head -1`: the command exits 0, with nothing on stderr."""
    exe = os.path.join(os.path.dirname(sys.executable), "estimate")
    p = subprocess.Popen([exe, "resnet50", "--layers"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    p.stdout.readline()
    p.stdout.close()  # the reader goes away, as head does
    err = p.stderr.read().decode()
    assert p.wait(timeout=120) == 0, err
    assert "Traceback" not in err and "error" not in err


def test_fast_entry_knows_every_command_and_analysis_option():
    """estimator/entry.py parses `estimate MODEL ...` without typer: its command list and its
    analysis options must be the typer application's."""
    import typer

    from estimator import entry

    cmd = typer.main.get_command(app)
    assert set(cmd.commands) == set(entry.COMMANDS)
    analyze = cmd.commands["analyze"]
    typer_opts = {o for p in analyze.params for o in p.opts if o.startswith("-")}
    typer_dest = {o: p.name for p in analyze.params for o in p.opts}
    assert typer_opts == set(entry.ANALYZE_OPTIONS)
    for flag, (dest, kind) in entry.ANALYZE_OPTIONS.items():
        assert typer_dest[flag] == dest, flag
        param = next(p for p in analyze.params if flag in p.opts)
        assert (kind == "flag") == bool(getattr(param, "is_flag", False)), flag
        assert (kind == "list") == bool(getattr(param, "multiple", False)), flag


@pytest.mark.parametrize("args", [
    ["mobilenetv2"], ["analyze", "mobilenetv2", "--format", "json"], ["mobilenetv2", "-f", "csv", "--layers"],
    ["mobilenetv2", "--batch=2", "--precision", "int8", "--format", "markdown"],
    ["resnet50", "--hw", "edge-npu", "--batch", "1,4", "--format", "json"],
])
def test_fast_entry_and_typer_give_the_same_output(args):
    from estimator import entry

    assert entry.parse_analyze(args) is not None  # the fast path takes these
    fast = run_cli(*args)
    full = runner.invoke(app, args if args[0] == "analyze" else ["analyze", *args])
    assert fast[0] == full.exit_code == 0
    assert fast[1] == full.output


@pytest.mark.parametrize("args", [
    ["--help"], ["mobilenetv2", "--help"], ["mobilenetv2", "--bogus"], ["mobilenetv2", "--format", "yaml"],
    ["mobilenetv2", "--seq-len", "x"], ["mobilenetv2", "extra"], ["models"], ["mobilenetv2", "--hw"],
    ["mobilenetv2", "-b=2"], ["--layers", "mobilenetv2"], ["analyze", "--layers", "mobilenetv2"],
])
def test_fast_entry_leaves_the_rest_to_typer(args):
    from estimator import entry

    assert entry.parse_analyze(args) is None


def test_fast_entry_does_not_import_typer(tiny_path):
    code = ("import sys; from estimator import entry; entry.main([sys.argv[1], '--format', 'json']); "
            "print('typer' in sys.modules, 'yaml' in sys.modules)")
    r = subprocess.run([sys.executable, "-c", code, tiny_path], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().splitlines()[-1] == "False False"


def test_mistyped_command_still_suggests(tmp_path):
    code, out, err = run_cli("anlyze")
    assert code == 2 and "did you mean 'analyze'" in err
