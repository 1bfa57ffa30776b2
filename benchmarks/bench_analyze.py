"""Analysis speed against the floor measured in the same run, and against onnx-tool.

    python3 benchmarks/bench_analyze.py [--repeat 7]

Cases: (a) ResNet-50 with embedded weights (~102 MB), (b) its graph-only copy (external data
referenced, not written), (c) a generated graph of 10,000+ nodes (graph-only). For each case,
in-process, interleaved, medians of --repeat runs:

- floor: `onnx.load` of the file, plus ONNX shape inference on the graph-only copy of the same
  graph (the two things any analyzer must do at least);
- estimate: `estimator.api.analyze(path)` (parse, strip, overrides, inference, costing);
- onnx-tool: `onnx_tool.model_profile(path)` (PyPI `onnx-tool`), when it is installed.

Then, as whole processes (what a user waits for: interpreter start, imports, exit), the
generated graph again, interleaved, medians of --process-repeat runs:

- floor: `python -c` that imports onnx, loads the file and runs ONNX shape inference;
- estimate: the installed `estimate FILE` command (the terminal summary) and
  `estimate FILE --format json` (a document with all 10,000 layers).

Prints ratios against the floor. Records the host load. Wall-clock figures are noisy on a
shared machine: read the ratios, and rerun. Measure an installed copy (`pip install .`), not
an editable one, whose import hook adds its own time.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np
import onnx
from onnx import TensorProto, helper

from estimator import api, models


def big_graph(n_blocks: int) -> onnx.ModelProto:
    """A chain of n_blocks x (Conv 3x3 + BatchNormalization + Relu + Add), graph-only weights."""
    nodes, inits = [], []
    c, hw = 16, 16
    x = "input"

    def ext(name, dims):
        t = TensorProto()
        t.name, t.data_type = name, TensorProto.FLOAT
        t.dims.extend(dims)
        t.data_location = TensorProto.EXTERNAL
        for k, v in (("location", "big.weights.bin"), ("offset", "0"), ("length", str(4 * int(np.prod(dims))))):
            e = t.external_data.add()
            e.key, e.value = k, v
        inits.append(t)
        return name

    for i in range(n_blocks):
        w = ext(f"b{i}.w", [c, c, 3, 3])
        s, b, m, v = (ext(f"b{i}.bn.{k}", [c]) for k in "sbmv")
        nodes.append(helper.make_node("Conv", [x, w], [f"b{i}.c"], name=f"b{i}.conv", pads=[1, 1, 1, 1]))
        nodes.append(helper.make_node("BatchNormalization", [f"b{i}.c", s, b, m, v], [f"b{i}.bn"], name=f"b{i}.bn"))
        nodes.append(helper.make_node("Relu", [f"b{i}.bn"], [f"b{i}.r"], name=f"b{i}.relu"))
        nodes.append(helper.make_node("Add", [f"b{i}.r", x], [f"b{i}.out"], name=f"b{i}.add"))
        x = f"b{i}.out"
    g = helper.make_graph(nodes, "big", [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", c, hw, hw])],
                          [helper.make_tensor_value_info(x, TensorProto.FLOAT, None)], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


def graph_only_copy(model: onnx.ModelProto) -> onnx.ModelProto:
    m = onnx.ModelProto()
    m.CopyFrom(model)
    for t in m.graph.initializer:
        if t.data_location != TensorProto.EXTERNAL and len(t.raw_data) > 64:
            t.ClearField("raw_data")
    return m


def floor(path: str, graph_only: onnx.ModelProto) -> None:
    onnx.load(path, load_external_data=False)
    onnx.shape_inference.infer_shapes(graph_only, data_prop=True)


def onnx_tool_run(path: str) -> None:
    import onnx_tool

    with contextlib.redirect_stdout(io.StringIO()):
        onnx_tool.model_profile(path)


def load_avg() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "?"


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--blocks", type=int, default=2500, help="blocks of 4 nodes in the generated graph")
    ap.add_argument("--process-repeat", type=int, default=15, help="runs of each whole-process measurement")
    ap.add_argument("--only-process", action="store_true", help="only the whole-process measurement")
    args = ap.parse_args()
    try:
        import onnx_tool  # noqa: F401
        have_tool = True
    except ImportError:
        have_tool = False
    d = tempfile.mkdtemp()
    if args.only_process:
        big = big_graph(args.blocks)
        p_big = os.path.join(d, "big.onnx")
        with open(p_big, "wb") as f:
            f.write(big.SerializeToString())
        print(f"load average before: {load_avg()}")
        whole_process(p_big, f"(c) generated graph, {len(big.graph.node):,} nodes", args.process_repeat)
        print(f"load average after: {load_avg()}")
        return 0
    cases = []
    p_full = os.path.join(d, "resnet50.onnx")
    models.save("resnet50", p_full, weights=True)
    p_graph = os.path.join(d, "resnet50-graph.onnx")
    models.save("resnet50", p_graph, weights=False)
    go = onnx.load(p_graph, load_external_data=False)
    cases.append(("(a) ResNet-50, embedded weights", p_full, go))
    # onnx-tool rejects a symbolic batch dim: the same model with the batch fixed to 1
    fixed = onnx.load(p_full)
    fixed.graph.input[0].type.tensor_type.shape.dim[0].dim_value = 1
    p_fixed = os.path.join(d, "resnet50-b1.onnx")
    onnx.save(fixed, p_fixed)
    go_fixed = graph_only_copy(fixed)
    del fixed
    cases.append(("(a') ResNet-50, embedded weights, batch 1", p_fixed, go_fixed))
    cases.append(("(b) ResNet-50, graph-only", p_graph, go))
    big = big_graph(args.blocks)
    p_big = os.path.join(d, "big.onnx")
    with open(p_big, "wb") as f:
        f.write(big.SerializeToString())
    cases.append((f"(c) generated graph, {len(big.graph.node):,} nodes", p_big, big))
    light = os.path.join(os.path.dirname(onnx.__file__), "backend", "test", "data", "light", "light_densenet121.onnx")
    if os.path.exists(light):
        cases.append(("(d) light_densenet121 (onnx package)", light, onnx.load(light)))
    print(f"load average before: {load_avg()}; python {sys.version.split()[0]}, onnx {onnx.__version__}; "
          f"repeat {args.repeat}, medians; onnx-tool {'installed' if have_tool else 'NOT installed (pip install onnx-tool)'}")
    print(f"{'case':42} {'size':>9} {'floor':>9} {'estimate':>9} {'ratio':>6} {'onnx-tool':>10} {'ratio':>6}")
    for name, path, g in cases:
        api.analyze(path)  # warm caches and imports
        runs: dict[str, list[float]] = {"floor": [], "estimate": [], "tool": []}
        failed: dict[str, bool] = {}
        for _ in range(args.repeat):
            for key, fn in (("floor", lambda: floor(path, g)), ("estimate", lambda: api.analyze(path)),
                            ("tool", (lambda: onnx_tool_run(path)) if have_tool else None)):
                if fn is None:
                    continue
                t0 = time.perf_counter()
                try:
                    fn()
                except Exception as e:  # onnx-tool may fail on a case: say so, do not hide it
                    if key not in failed:
                        print(f"  {key} failed on {name}: {type(e).__name__}: {str(e)[:150]}")
                    failed[key] = True
                    continue
                runs[key].append(time.perf_counter() - t0)
        med = {k: statistics.median(v) if v else float("nan") for k, v in runs.items()}
        size = os.path.getsize(path) / 1e6
        tool = f"{med['tool']:9.3f}s {med['tool'] / med['floor']:6.2f}" if have_tool else f"{'-':>10} {'-':>6}"
        print(f"{name:42} {size:7.1f}MB {med['floor']:8.3f}s {med['estimate']:8.3f}s {med['estimate'] / med['floor']:6.2f} {tool}")
    whole_process(p_big, f"(c) generated graph, {len(big.graph.node):,} nodes", args.process_repeat)
    print(f"load average after: {load_avg()}")
    return 0


FLOOR_SCRIPT = ("import sys, onnx; m = onnx.load(sys.argv[1], load_external_data=False); "
                "onnx.shape_inference.infer_shapes(m, data_prop=True)")


def whole_process(path: str, label: str, repeat: int) -> None:
    """Whole-process times, interleaved: the floor script vs the `estimate` command."""
    exe = shutil.which("estimate") or os.path.join(os.path.dirname(sys.executable), "estimate")
    cmds = {"floor (python: import onnx, load, infer)": [sys.executable, "-c", FLOOR_SCRIPT, path],
            "estimate FILE": [exe, path],
            "estimate FILE --format json": [exe, path, "--format", "json"]}
    runs: dict[str, list[float]] = {k: [] for k in cmds}
    for _ in range(repeat):
        for k, cmd in cmds.items():
            t0 = time.perf_counter()
            r = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            runs[k].append(time.perf_counter() - t0)
            if r.returncode != 0:
                raise SystemExit(f"{' '.join(cmd)} failed: {r.stderr.decode()[-300:]}")
    floor_t = statistics.median(runs[next(iter(cmds))])
    print(f"\nwhole process, {label}, medians of {repeat} interleaved runs ({exe}):")
    for k, v in runs.items():
        m = statistics.median(v)
        print(f"  {k:44} {m:7.3f} s  ratio {m / floor_t:5.2f}  (min {min(v):.3f}, max {max(v):.3f})")


if __name__ == "__main__":
    sys.exit(main())
