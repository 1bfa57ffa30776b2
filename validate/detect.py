"""`estimate hw detect`: measure this host's ceilings and describe it as a hardware profile.

What is read (no measurement): cores, SIMD width and FMA flags from /proc/cpuinfo, caches
from /sys/devices/system/cpu/cpu0/cache (validate.host; py-cpuinfo reports wrong sizes on
some virtual machines), the nominal clock from /proc/cpuinfo's "cpu MHz".

What is measured (validate/ is the only code that touches onnxruntime):
- MAC rate per precision with onnxruntime's own kernels at the thread count validation uses
  (all usable cores): fp32 MatMul of (M x K) x (K x N), int8 MatMulInteger (uint8 x int8),
  single-thread figures for the notes; the same for a 3x3 Conv, a 1x1 Conv and a depthwise
  3x3 Conv, whose rates relative to the GEMM become the profile's per-class efficiencies;
- a second, narrow 1x1 Conv (16 -> 96 channels at 112 x 112: few MACs per activation byte):
  with the wide one it splits a 1x1 convolution's time into MAC time and activation traffic
  (two equations, two unknowns), which gives the 1x1 efficiency and the on-chip bandwidth
  (onchip_bandwidth_bytes_per_s, docs/roofline.md);
- the element-wise rate (Add of two in-cache fp32 tensors) for vector_ops_per_cycle;
- DRAM bandwidth with a STREAM-like copy and triad in numpy over arrays 4x the last-level
  cache (STREAM's counting: copy moves 2 x N x 8 bytes, triad 3 x N x 8).

Every figure is work / the 25th percentile of repeated timed runs (perf_counter), after
warm-up: robust to bursts of other work on a shared host without being one lucky run. The host
load before and after is recorded in the notes.
"""

from __future__ import annotations

import math
import os
import socket
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone

import numpy as np

from . import host as hostmod
from .stats import percentile_nearest_rank


@dataclass
class Measurement:
    name: str
    value: float           # rate (MAC/s, ops/s or bytes/s)
    unit: str
    runs: int
    spread: tuple[float, float]   # min, max of per-run rates
    detail: str = ""


@dataclass
class Detection:
    hostname: str
    cpu_model: str
    cores: int
    threads: int
    simd_bits: int
    fma: bool
    fma_units_assumed: int
    nominal_clock_hz: float | None
    caches: list[dict]
    llc_bytes: int
    memory_bytes: int | None
    flags: list[str]
    measurements: dict[str, Measurement] = field(default_factory=dict)
    load_before: list | None = None
    load_after: list | None = None
    busy_before_pct: float | None = None
    date: str = ""
    quick: bool = False
    ort_version: str = ""
    conv_shapes: dict = field(default_factory=dict)   # measurement -> (cin, cout, hw, k, group)
    idle_wake: dict = field(default_factory=dict)     # host.idle_wake(): how an idle CPU waits


def _run_times(fn, *, min_runs: int, seconds: float, warmup: int = 2) -> list[float]:
    """Run fn() repeatedly (after `warmup` calls) for at least `min_runs` runs and `seconds`, at
    most 2000 runs; the run times in seconds, sorted."""
    for _ in range(warmup):
        fn()
    times = []
    t_end = time.perf_counter() + seconds
    while len(times) < min_runs or time.perf_counter() < t_end:
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
        if len(times) >= 2000:
            break
    times.sort()
    return times


def _q25(times: list[float]) -> float:
    """The 25th percentile (nearest rank) of sorted run times: on a shared host short bursts of
    other work slow some runs; the median would carry them into a ceiling, the minimum would be
    one lucky run."""
    return percentile_nearest_rank(times, 25)


def _rate(fn, work: float, *, min_runs: int, seconds: float, warmup: int = 2) -> tuple[float, int, tuple[float, float]]:
    """Run fn() repeatedly; rate = work / (25th percentile of the run times). Returns (rate, runs,
    (min, max rate))."""
    times = _run_times(fn, min_runs=min_runs, seconds=seconds, warmup=warmup)
    return work / _q25(times), len(times), (work / times[-1], work / times[0])


def run_statistics(times: list[float]) -> dict[str, float]:
    """Statistics of one timing round's sorted run times: the 25th percentile, the median (what a
    kernel sample's time_s is built from: a model's latency is measured as a median, and a kernel
    whose times are skewed by thread wake-ups costs inside it more than its 25th percentile), the
    mean, and the mean of the runs between the 10th and 90th percentiles."""
    n, cut = len(times), len(times) // 10   # fewer than 10 runs: nothing trimmed
    return {"p25": _q25(times), "p50": percentile_nearest_rank(times, 50), "mean": sum(times) / n,
            "trimmed_mean": sum(times[cut:n - cut]) / (n - 2 * cut)}


# ------------------------------------------------------------------------- onnxruntime kernels


def _session(model, threads: int):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    so.add_session_config_entry("session.inter_op.allow_spinning", "0")
    so.log_severity_level = 3
    return ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])


def _model(nodes, inputs, outputs, inits=()):
    import onnx
    from onnx import helper

    g = helper.make_graph(nodes, "bench", inputs, outputs, initializer=list(inits))
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    onnx.checker.check_model(m)
    return m


def _vi(name, elem, shape):
    from onnx import helper

    return helper.make_tensor_value_info(name, elem, shape)


def bench_matmul(n: int, threads: int, precision: str, seconds: float) -> tuple[float, int, tuple[float, float]]:
    """MAC/s of an n x n x n MatMul (fp32) or MatMulInteger (uint8 x int8 -> int32)."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    if precision == "fp32":
        w = numpy_helper.from_array(rng.standard_normal((n, n)).astype(np.float32), "W")
        m = _model([helper.make_node("MatMul", ["X", "W"], ["Y"])], [_vi("X", TensorProto.FLOAT, [n, n])],
                   [_vi("Y", TensorProto.FLOAT, [n, n])], [w])
        feed = {"X": rng.standard_normal((n, n)).astype(np.float32)}
    else:
        w = numpy_helper.from_array(rng.integers(-64, 64, (n, n)).astype(np.int8), "W")
        m = _model([helper.make_node("MatMulInteger", ["X", "W"], ["Y"])], [_vi("X", TensorProto.UINT8, [n, n])],
                   [_vi("Y", TensorProto.INT32, [n, n])], [w])
        feed = {"X": rng.integers(0, 255, (n, n)).astype(np.uint8)}
    s = _session(m, threads)
    return _rate(lambda: s.run(None, feed), float(n) ** 3, min_runs=5, seconds=seconds)


def bench_conv(cin: int, cout: int, hw: int, k: int, group: int, threads: int, seconds: float,
               batch: int = 1) -> tuple[float, int, tuple[float, float]]:
    """MAC/s of one fp32 Conv (stride 1, same padding)."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    w = numpy_helper.from_array((rng.standard_normal((cout, cin // group, k, k)) * 0.1).astype(np.float32), "W")
    pad = k // 2
    node = helper.make_node("Conv", ["X", "W"], ["Y"], kernel_shape=[k, k], pads=[pad] * 4, group=group)
    m = _model([node], [_vi("X", TensorProto.FLOAT, [batch, cin, hw, hw])],
               [_vi("Y", TensorProto.FLOAT, [batch, cout, hw, hw])], [w])
    feed = {"X": rng.standard_normal((batch, cin, hw, hw)).astype(np.float32)}
    s = _session(m, threads)
    macs = float(batch) * cout * hw * hw * (cin // group) * k * k
    return _rate(lambda: s.run(None, feed), macs, min_runs=5, seconds=seconds)


def bench_add(n: int, threads: int, seconds: float) -> tuple[float, int, tuple[float, float]]:
    """Element ops/s of an fp32 Add of two n-element tensors (sized to stay in the caches)."""
    from onnx import TensorProto, helper

    rng = np.random.default_rng(0)
    m = _model([helper.make_node("Add", ["A", "B"], ["Y"])],
               [_vi("A", TensorProto.FLOAT, [n]), _vi("B", TensorProto.FLOAT, [n])], [_vi("Y", TensorProto.FLOAT, [n])])
    feed = {"A": rng.standard_normal(n).astype(np.float32), "B": rng.standard_normal(n).astype(np.float32)}
    s = _session(m, threads)
    return _rate(lambda: s.run(None, feed), float(n), min_runs=5, seconds=seconds)


# ------------------------------------------------------------------------- kernel samples


def bench_null(threads: int, seconds: float) -> float:
    """Seconds of one session.run of a 1-element Relu graph: the call's own cost, which every
    sample's time is net of."""
    from onnx import TensorProto, helper

    m = _model([helper.make_node("Relu", ["A"], ["Y"])], [_vi("A", TensorProto.FLOAT, [1])],
               [_vi("Y", TensorProto.FLOAT, [1])])
    import onnxruntime as ort

    s = _session(m, threads)
    io = s.io_binding()
    io.bind_cpu_input("A", np.ones(1, np.float32))
    io.bind_ortvalue_output("Y", ort.OrtValue.ortvalue_from_shape_and_type((1,), np.float32))
    return 1.0 / _rate(lambda: s.run_with_iobinding(io), 1.0, min_runs=50, seconds=seconds)[0]


#: the work from which onnxruntime splits a kernel over threads (the profile keys split_min_macs and
#: split_min_ops; the notes say where each comes from)
SPLIT_MIN_MACS = 131072.0
SPLIT_MIN_OPS = 90000.0


#: the statistic of a timing round a kernel sample's time is (run_statistics); measured on this
#: project's host, 2026-12-02 (three detects, every corpus point against the median of three
#: fidelity runs, each statistic refitted on the same measurements): the median gave a median
#: |error| of 4.0, 4.1 and 3.6% and a worst of 22.1, 20.6 and 20.3%, the 25th percentile 5.0, 4.6
#: and 5.0% and 24.6, 23.4 and 24.2%, with 22, 22, 21 against 22, 21, 22 of 26 points within 10%
#: (docs/calibration.md)
SAMPLE_STATISTIC = "p50"


def measure_kernel_samples(threads: int, quick: bool = False, progress=None) -> dict:
    """Time every kernel sample (estimator.kernel_samples) at each of its batches: the median
    (SAMPLE_STATISTIC) of repeated session.run calls, after warm-up, in the fastest of the
    interleaved rounds, minus the null call. Returns the
    samples document (kernel_samples.SCHEMA) without the host block."""
    from ..models import kernel_samples as ks

    import onnxruntime as ort

    sec = 0.04 if quick else 0.08
    # three rounds: with two, the class rates of back-to-back detects on this project's shared host
    # moved the small CNNs' batch-1 predictions by up to 20% (docs/calibration.md, "Stability")
    rounds = 1 if quick else 3
    specs = ks.sample_specs(quick=quick)
    null = bench_null(threads, sec * 2)
    rng = np.random.default_rng(1)
    runs: dict[tuple[str, str], int] = {}
    stats: dict[tuple[str, str], dict[str, list[float]]] = {}   # each round's run statistics, in round order
    for rnd in range(rounds):   # interleaved rounds, the faster of each kept (a burst must cover all)
        for i, spec in enumerate(specs):
            for b in ks.BATCHES:
                model, feeds = ks.build(spec, b)
                s = _session(model, threads)
                feed = {n: rng.standard_normal(shape).astype(dt) for n, (shape, dt) in feeds.items()}
                # inputs and the output bound once: the output is not copied into a new numpy
                # array per call (inside a model a kernel's output stays in the arena)
                out_shape = s.run(None, feed)[0].shape
                io = s.io_binding()
                for n, a in feed.items():
                    io.bind_cpu_input(n, a)
                io.bind_ortvalue_output(s.get_outputs()[0].name,
                                        ort.OrtValue.ortvalue_from_shape_and_type(out_shape, np.float32))
                tt = _run_times(lambda: s.run_with_iobinding(io), min_runs=5, seconds=sec)
                st = run_statistics(tt)
                key = (spec["id"], str(b))
                for k, v in st.items():
                    stats.setdefault(key, {}).setdefault(k, []).append(v)
                runs[key] = runs.get(key, 0) + len(tt)
            if progress is not None:
                progress(rnd * len(specs) + i + 1, rounds * len(specs))
        null = min(null, bench_null(threads, sec * 2))
    times = {key: v[SAMPLE_STATISTIC] for key, v in stats.items()}   # one time per round
    out = [{"id": spec["id"], "spec": spec,
            "time_s": {str(b): max(min(times[(spec["id"], str(b))]) - null, 0.0) for b in ks.BATCHES},
            "round_times_s": {str(b): [max(t - null, 0.0) for t in times[(spec["id"], str(b))]] for b in ks.BATCHES},
            "round_stats_s": {str(b): {k: [max(t - null, 0.0) for t in v] for k, v in stats[(spec["id"], str(b))].items()}
                              for b in ks.BATCHES},
            "runs": {str(b): runs[(spec["id"], str(b))] for b in ks.BATCHES}} for spec in specs]
    return {"schema": ks.SCHEMA, "schema_version": ks.SCHEMA_VERSION, "threads": threads, "precision": "fp32",
            "batches": list(ks.BATCHES), "null_call_s": null, "quick": quick,
            "timing": (f"median of repeated onnxruntime run_with_iobinding calls (spinning off, {threads} "
                       "threads, ORT_ENABLE_ALL, inputs and output bound once), after 2 warm-up calls, the faster "
                       f"of {rounds} interleaved rounds, minus the null call (a 1-element Relu graph)"),
            "samples": out}


def optimized_ops(model, threads: int) -> list[str]:
    """The op types of onnxruntime's optimized graph of `model` (ORT_ENABLE_ALL, saved with
    optimized_model_filepath): what the runtime will actually run."""
    import tempfile

    import onnx
    import onnxruntime as ort

    with tempfile.TemporaryDirectory(prefix="estimate-optimized-") as tmp:
        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.optimized_model_filepath = os.path.join(tmp, "optimized.onnx")
        so.log_severity_level = 3
        ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
        return [n.op_type for n in onnx.load(so.optimized_model_filepath).graph.node]


def check_fusions(threads: int) -> dict[str, str]:
    """Which fusion rules (estimator/kernels.py) onnxruntime applies on this host: each rule's
    probe graph (models/kernel_samples.FUSION_PROBES) is optimized (optimized_ops); a rule is
    confirmed when the op types it folds into the head are gone from the optimized graph.
    Returns rule -> "confirmed" or what was left."""
    from ..models import kernel_samples as ks

    out = {}
    for rule, (spec, gone) in ks.FUSION_PROBES.items():
        try:
            ops = optimized_ops(ks.build(spec, 1)[0], threads)
        except Exception as e:  # noqa: BLE001 - an optimizer that cannot save says nothing about fusion
            out[rule] = f"not checked ({type(e).__name__})"
            continue
        left = [o for o in gone if o in ops]
        out[rule] = "confirmed" if not left else (f"not fused: {', '.join(left)} still in the optimized graph "
                                                  f"({', '.join(ops)})")
    return out


def check_layout(threads: int) -> str | None:
    """"nchwc" when onnxruntime runs convolutions in its blocked channel layout here (its
    optimized graph of a conv probe holds ReorderInput/ReorderOutput kernels), else None."""
    from ..models import kernel_samples as ks

    spec, _ = ks.FUSION_PROBES["epilogue"]   # a conv and its activation
    try:
        ops = set(optimized_ops(ks.build(spec, 1)[0], threads))
    except Exception:  # noqa: BLE001 - cannot tell: no layout term
        return None
    return "nchwc" if {"ReorderInput", "ReorderOutput"} & ops else None


# ------------------------------------------------------------------------- DRAM (numpy)


def bench_stream(n_elems: int, seconds: float) -> dict[str, tuple[float, int, tuple[float, float]]]:
    """STREAM-like copy and triad on float64 arrays of n_elems (bytes/s, STREAM counting)."""
    a = np.ones(n_elems)
    b = np.full(n_elems, 2.0)
    c = np.full(n_elems, 0.5)
    tmp = np.empty(n_elems)
    out = {}
    out["copy"] = _rate(lambda: np.copyto(c, a), 2.0 * 8 * n_elems, min_runs=5, seconds=seconds, warmup=1)

    def triad():
        np.multiply(c, 3.0, out=tmp)
        np.add(b, tmp, out=a)

    # numpy's triad makes two passes (5 x N x 8 bytes moved); STREAM counts 3 x N x 8
    out["triad"] = _rate(triad, 3.0 * 8 * n_elems, min_runs=5, seconds=seconds, warmup=1)
    return out


# ------------------------------------------------------------------------- detection


def _nominal_clock_hz() -> float | None:
    text = hostmod._read("/proc/cpuinfo") or ""
    for line in text.splitlines():
        if line.lower().startswith("cpu mhz"):
            try:
                return float(line.split(":")[1]) * 1e6
            except (IndexError, ValueError):
                return None
    v = hostmod._read("/sys/devices/system/cpu/cpu0/cpufreq/base_frequency")
    return float(v) * 1e3 if v and v.strip().isdigit() else None


def _all_flags() -> list[str]:
    text = hostmod._read("/proc/cpuinfo") or ""
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return value.split()
    return []


def nchwc_block(flags: list[str], machine: str | None = None) -> int | None:
    """The channel block of onnxruntime's blocked (NCHWc) convolutions on an x86-64 host with these
    CPU flags, as its MLAS library picks it: 16 fp32 lanes with AVX-512F, else 8 (SSE, AVX and AVX2
    alike). None on other machines (the block, if any, is not known here)."""
    import platform

    if (machine or platform.machine()).lower() not in ("x86_64", "amd64"):
        return None
    return 16 if "avx512f" in flags else 8


def detect(quick: bool = False, threads: int | None = None) -> Detection:
    """Read the host and measure its ceilings. quick: smaller problems, shorter runs (< 5 s)."""
    import onnxruntime as ort

    cpu = hostmod.cpu_info()
    caches = hostmod.cache_info()
    flags = _all_flags()
    simd = 512 if "avx512f" in flags else 256 if "avx2" in flags or "avx" in flags else 128
    fma = "fma" in flags or "asimd" in flags
    llc = max((c.get("size_bytes") or 0 for c in caches if c.get("type") in ("Unified", "Data")), default=0)
    usable = threads or cpu.get("usable_cores") or os.cpu_count() or 1
    d = Detection(hostname=socket.gethostname(), cpu_model=cpu.get("model") or "unknown",
                  cores=cpu.get("physical_cores") or cpu.get("logical_cores") or usable, threads=usable,
                  simd_bits=simd, fma=fma, fma_units_assumed=2, nominal_clock_hz=_nominal_clock_hz(),
                  caches=caches, llc_bytes=int(llc), memory_bytes=hostmod.memory_total_bytes(),
                  flags=[f for f in hostmod.SIMD_FLAGS if f in flags], quick=quick, ort_version=ort.__version__,
                  idle_wake=hostmod.idle_wake())
    d.load_before = hostmod.loadavg()
    d.busy_before_pct = hostmod.sample_busy_percent(0.2)
    d.date = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    # every ceiling is measured in ROUNDS interleaved rounds and the best round kept: a burst of
    # other work on a shared host then has to cover all rounds of a figure to lower it, and the
    # two 1x1 convolutions whose difference gives the on-chip bandwidth are timed side by side
    rounds = 1 if quick else 3
    sec = 0.15 if quick else 0.4
    n = 512 if quick else 1024
    hw_ = 28 if quick else 56
    hw_n = 2 * hw_
    add_n = (1 << 18) if quick else (1 << 20)  # 1 Mi fp32 elements: 12 MiB for A, B, Y, inside the LLC
    d.conv_shapes = {"conv3x3_fp32": (64, 64, hw_, 3, 1), "conv1x1_fp32": (256, 64, hw_, 1, 1),
                     "conv1x1_narrow_fp32": (16, 96, hw_n, 1, 1), "depthwise_fp32": (144, 144, hw_, 3, 144)}
    benches = [
        ("gemm_fp32", lambda: bench_matmul(n, usable, "fp32", sec), "MAC/s", f"onnxruntime MatMul {n}x{n}x{n} fp32, {usable} threads"),
        ("gemm_int8", lambda: bench_matmul(n, usable, "int8", sec), "MAC/s",
         f"onnxruntime MatMulInteger {n}x{n}x{n} uint8 x int8, {usable} threads"),
        ("conv3x3_fp32", lambda: bench_conv(64, 64, hw_, 3, 1, usable, sec), "MAC/s",
         f"onnxruntime Conv 3x3, 64->64 channels, {hw_}x{hw_}, fp32"),
        ("conv1x1_fp32", lambda: bench_conv(256, 64, hw_, 1, 1, usable, sec), "MAC/s",
         f"onnxruntime Conv 1x1, 256->64 channels, {hw_}x{hw_}, fp32"),
        ("conv1x1_narrow_fp32", lambda: bench_conv(16, 96, hw_n, 1, 1, usable, sec), "MAC/s",
         f"onnxruntime Conv 1x1, 16->96 channels, {hw_n}x{hw_n}, fp32"),
        ("depthwise_fp32", lambda: bench_conv(144, 144, hw_, 3, 144, usable, sec), "MAC/s",
         f"onnxruntime depthwise Conv 3x3, 144 channels, {hw_}x{hw_}, fp32"),
        ("add_fp32", lambda: bench_add(add_n, usable, sec), "ops/s",
         f"onnxruntime Add of two {add_n}-element fp32 tensors (in cache)"),
    ]
    if not quick:
        benches.append(("gemm_fp32_1t", lambda: bench_matmul(n, 1, "fp32", sec / 2), "MAC/s",
                        f"onnxruntime MatMul {n}^3 fp32, 1 thread"))
    big = max(4 * llc, 64 << 20) // 8 if not quick else max(2 * llc, 32 << 20) // 8
    mib = int(big) * 8 >> 20
    best: dict[str, list] = {}

    def keep(name, res, unit, detail):
        rate, runs, (lo, hi) = res
        if name not in best:
            best[name] = [rate, runs, lo, hi, unit, detail, [rate]]
        else:
            b = best[name]
            b[0], b[1], b[2], b[3] = max(b[0], rate), b[1] + runs, min(b[2], lo), max(b[3], hi)
            b[6].append(rate)

    for _ in range(rounds):
        for name, fn, unit, detail in benches:
            keep(name, fn(), unit, detail)
        st = bench_stream(int(big), sec * 1.5)
        keep("stream_copy", st["copy"], "B/s", f"numpy copy, {mib} MiB arrays (STREAM counting 2 x 8 B/elem)")
        keep("stream_triad", st["triad"], "B/s", f"numpy triad, {mib} MiB arrays (STREAM counting 3 x 8 B/elem)")
    for name, (rate, runs, lo, hi, unit, detail, per_round) in best.items():
        if len(per_round) > 1:
            detail += f"; best of {len(per_round)} interleaved rounds (" + ", ".join(_g(r) for r in per_round) + ")"
        d.measurements[name] = Measurement(name, rate, unit, runs, (lo, hi), detail)
    d.load_after = hostmod.loadavg()
    return d


def _block(lanes: int, units: float) -> int:
    """The SIMD channel block: the fp32 lanes, or the largest power of two the measured MACs per
    cycle allow (a profile's mac_array may not exceed its mac_units)."""
    b = max(1, lanes)
    while b > 1 and b > units:
        b //= 2
    return b


def _g(x: float) -> str:
    return f"{x:.4g}"


def disturbance_warnings(d: Detection) -> list[str]:
    """Signs that other work disturbed the measurement (printed by `estimate hw detect`)."""
    out = []
    if d.busy_before_pct is not None and d.busy_before_pct > 25:
        out.append(f"the host was busy before measuring (CPU {d.busy_before_pct:.0f}% busy): the ceilings may be "
                   "too low; re-run `estimate hw detect --force` when it is idle")
    m = d.measurements
    if "gemm_fp32_1t" in m and "gemm_fp32" in m and d.threads > 1 and m["gemm_fp32_1t"].value > m["gemm_fp32"].value:
        out.append(f"one thread measured faster than {d.threads} ({_g(m['gemm_fp32_1t'].value)} vs "
                   f"{_g(m['gemm_fp32'].value)} MAC/s): other work competed for the cores; re-run when the host is idle")
    return out


#: kernel samples whose timing rounds are further apart than this (median of slowest / fastest - 1)
#: were timed on a noisy host: detect says so (on 2026-12-02 at 05:45 this project's host gave 21-66% per class)
ROUND_SPREAD_WARN = 0.15


def round_spread_warning(spread: float | None) -> str | None:
    """The warning `estimate hw detect` prints when the kernel samples' rounds were far apart."""
    if spread is None or spread <= ROUND_SPREAD_WARN:
        return None
    return (f"the kernel samples' timing rounds were {spread:.0%} apart (median of slowest / fastest - 1): the host "
            "was noisy while they were timed, and the per-class figures fitted to them (the fastest rounds) may carry "
            "that noise; re-run `estimate hw detect` when it is quiet (with --force to replace this profile); estimate "
            "calibrate reports the spread per class")


def onchip_split(d: Detection) -> tuple[float, float, str] | None:
    """(1x1 MAC rate, on-chip bandwidth B/s, derivation) from the wide and the narrow 1x1 Conv:
    each took t = MACs / rate_mac + activation_bytes / bandwidth (docs/roofline.md), two
    equations in the two unknowns. None (and the profile keeps the plain 1x1 rate, no on-chip
    term) when a measurement is missing or the solution is not physical (a disturbed run)."""
    m = d.measurements
    keys = ("conv1x1_fp32", "conv1x1_narrow_fp32")
    if not all(k in m and k in d.conv_shapes for k in keys):
        return None
    rows = []
    for k in keys:
        cin, cout, hw, _, _ = d.conv_shapes[k]
        macs = float(cin) * cout * hw * hw
        act = float(cin + cout) * hw * hw * 4           # fp32 input + output
        rows.append((macs, act, macs / m[k].value))
    (mw, aw, tw), (mn, an, tn) = rows
    det = mw * an - mn * aw
    if det == 0:
        return None
    inv_rate = (tw * an - tn * aw) / det
    sec_per_byte = (mw * tn - mn * tw) / det
    if inv_rate <= 0 or sec_per_byte <= 0:
        return None
    rate, bw = 1.0 / inv_rate, 1.0 / sec_per_byte
    if not (1e9 <= bw <= 1e13) or rate > 10 * m["gemm_fp32"].value:
        return None
    why = (f"from the wide 1x1 Conv ({_g(mw)} MACs, {_g(aw)} activation bytes, {_g(tw * 1e6)} us) and the narrow one "
           f"({_g(mn)} MACs, {_g(an)} bytes, {_g(tn * 1e6)} us): time = MACs / {_g(rate)} MAC/s + bytes / {_g(bw)} B/s")
    return rate, bw, why


def profile_dict(d: Detection, argv_hint: str = "estimate hw detect") -> dict:
    """The detected host as a profile in the shipped schema (plain data for profile_from_dict)."""
    m = d.measurements
    clock = d.nominal_clock_hz or 1e9
    peak32 = m["gemm_fp32"].value
    peak8 = m["gemm_int8"].value
    lanes = d.simd_bits // 32
    nominal32 = d.cores * lanes * d.fma_units_assumed * clock if d.fma else None
    units32 = peak32 / clock
    units8 = peak8 / clock
    vec = m["add_fp32"].value / clock
    bw = m["stream_copy"].value
    eff = {c: min(10.0, float(f"{m[k].value / peak32:.3g}")) for c, k in
           (("conv3x3", "conv3x3_fp32"), ("conv1x1", "conv1x1_fp32"), ("depthwise", "depthwise_fp32"))}
    eff["gemm"] = 1.0
    split = onchip_split(d)
    if split is not None:
        eff["conv1x1"] = min(10.0, float(f"{split[0] / peak32:.3g}"))
    load = (f"load average before {d.load_before}, after {d.load_after}; CPU busy before "
            f"{d.busy_before_pct:.0f}%" if d.busy_before_pct is not None else f"load average {d.load_before}")
    caches = ", ".join(f"L{c.get('level')} {c.get('type')} {int(c.get('size_bytes') or 0) >> 10} KiB"
                       f" (cpus {c.get('shared_cpu_list')})" for c in d.caches)
    src = (f"measured on {d.hostname} by {argv_hint} {d.date} (onnxruntime {d.ort_version} CPU kernels at "
           f"{d.threads} threads, numpy STREAM-like copy/triad{', --quick: short runs' if d.quick else ''}); "
           f"host: {d.hostname}; cpu: {d.cpu_model}")

    def mline(k):
        x = m[k]
        return f"{x.detail}: {_g(x.value)} {x.unit} (work / 25th-percentile run time) over {x.runs} runs (range {_g(x.spread[0])}..{_g(x.spread[1])})"

    notes = {
        "name": f"host: {d.hostname}; cpu: {d.cpu_model}; {d.cores} cores, {d.threads} threads used; {load}"
                + "".join(f"; {n}" for n in [hostmod.idle_wake_note(d.idle_wake)] if n),
        "clock_hz": (f"nominal clock from /proc/cpuinfo 'cpu MHz' ({_g(clock)} Hz), used only as the unit of the "
                     "per-cycle rates: mac_units are derived from the MEASURED peak, not from SIMD width x FMA units x "
                     "clock (a virtualised or boosting host's clock says little about its rate)"
                     + (f"; here the measurement is {peak32 / nominal32:.2f} x the nominal figure" if nominal32 else "")
                     if d.nominal_clock_hz else "no nominal clock found: 1e9 Hz used as the unit of the per-cycle rates"),
        "mac_units.fp32": (f"measured peak / clock_hz: {_g(peak32)} MAC/s / {_g(clock)} Hz = {_g(units32)} MACs/cycle, so "
                           f"peak_macs_per_s = the measurement. {mline('gemm_fp32')}."
                           + (f" Single thread: {_g(m['gemm_fp32_1t'].value)} MAC/s." if "gemm_fp32_1t" in m else "")
                           + (f" Nominal from flags: {d.cores} cores x {lanes} fp32 lanes ({d.simd_bits}-bit SIMD) x "
                              f"{d.fma_units_assumed} FMA units (assumed; /proc/cpuinfo does not say) x {_g(clock)} Hz = "
                              f"{_g(nominal32)} MAC/s" if nominal32 else "")),
        "mac_units.int8": f"measured: {_g(peak8)} MAC/s / {_g(clock)} Hz = {_g(units8)}. {mline('gemm_int8')}.",
        "vector_ops_per_cycle": f"measured element-wise rate / clock_hz = {_g(vec)}. {mline('add_fp32')}.",
        "sram_bytes": (f"the last-level cache ({d.llc_bytes >> 20} MiB), read from /sys/devices/system/cpu/cpu0/cache "
                       f"({caches}); a CPU has no explicitly managed SRAM: caches stand in for it"),
        "weight_residency": ("cache: the last-level cache is not pinned memory. Inside a whole model the weights come from "
                             "DRAM on every inference: the classifier GEMVs of 19 of 20 models on the host where this was "
                             "developed read their weights at 30-58 GB/s inside the model, about the DRAM rate, even for "
                             "models with 9-22 MB of weights and a 32 MiB cache; the same GEMV called alone read cached weights "
                             "at 117-141 GB/s. A graph of one weighted kernel called back to back (a kernel sample) keeps "
                             "min(1, cache / weights) of its weights in the cache (docs/roofline.md)"),
        "split_min_macs": (f"{SPLIT_MIN_MACS:g}: onnxruntime's MLAS splits a GEMM over threads from 64 Ki "
                           "multiply-adds per thread (MLAS_SGEMM_THREAD_COMPLEXITY), so two threads from twice that. Recorded "
                           "for reference: a contraction pays no kernel_overhead_in_graph_s (measured: a convolution costs "
                           "inside a graph what it costs alone; docs/roofline.md)"),
        "split_min_ops": (f"{SPLIT_MIN_OPS:g}: measured on the host where this was developed (onnxruntime 1.32, 2 threads, "
                          "spinning off): an Add of 88 K elements ran on one thread in 12-14 us, of 100 K on two in 25 us "
                          "(12 us with spinning on). Kernels without MACs split over threads pay kernel_overhead_in_graph_s: "
                          "with spinning off (as here) a split wakes a sleeping thread (docs/roofline.md)"),
        "dram_bandwidth_bytes_per_s": f"{mline('stream_copy')}; {mline('stream_triad')} (numpy makes 2 passes for a triad)",
        "efficiency": ("measured rate of each onnxruntime kernel / the fp32 GEMM rate: "
                       + "; ".join(mline(k) for k in ("conv3x3_fp32", "conv1x1_fp32", "depthwise_fp32"))
                       + (f". conv1x1: the MAC part of the 1x1 time ({_g(split[0])} MAC/s, see "
                          "onchip_bandwidth_bytes_per_s) / the GEMM rate" if split else "")
                       + ". gemm (1 by definition), conv3x3 and depthwise are the kernels' whole standalone rates (not "
                       "split: inside a model the on-chip term comes on top, which matched MobileNetV2's depthwise layers on the "
                       "host where this was developed, docs/calibration.md). Other classes 1.0 until "
                       "`estimate calibrate` fits them"),
        "dram_bytes": "MemTotal from /proc/meminfo",
        "mac_array": (f"rows 1, cols {lanes}: the fp32 lanes of one {d.simd_bits}-bit SIMD register, the channel block of "
                      "onnxruntime's NCHWc convolution kernels: output channels are padded to a multiple of it, so a "
                      f"layer with N output channels runs at N / (ceil(N/{lanes}) x {lanes}) of its class's rate (docs/roofline.md, "
                      "'Utilization'); rows 1: the reduction is not blocked (a depthwise conv reduces over its window)"),
        "layer_overhead_s": ("0: detect times each kernel as a whole call (session overhead included), so the per-class "
                             "rates already hold the fixed cost per call; `estimate calibrate` fits per-class overheads"),
        "efficiency.compute": ("1.0: the efficiency of the layer classes not listed under by_layer_class (element-wise, "
                               "other convolutions, pooling, ...) until `estimate calibrate` fits them"),
        "efficiency.memory": "1.0: dram_bandwidth_bytes_per_s is the measured copy rate itself",
        "onchip_bandwidth_bytes_per_s": (
            f"derived {split[2]}. {mline('conv1x1_narrow_fp32')}. A rough prior: `estimate calibrate` refits it"
            if split else "not derived (the two 1x1 measurements gave no physical split, e.g. a disturbed run): "
            "no on-chip term until `estimate calibrate` fits one"),
    }
    out = {
        "schema_version": 1,
        "name": f"host-{d.hostname}"[:60],
        "kind": "cpu",
        "source": src,
        "description": (f"This host as measured by estimate hw detect: {d.cpu_model}, {d.cores} cores, "
                        f"{d.simd_bits}-bit SIMD ({', '.join(d.flags)})."),
        "clock_hz": float(clock),
        "mac_units": {"fp32": float(f"{units32:.6g}"), "int8": float(f"{units8:.6g}")},
        "vector_ops_per_cycle": {"fp32": float(f"{vec:.6g}")},
        # onnxruntime's NCHWc convolutions block output channels by one SIMD register of fp32
        "mac_array": {"rows": 1, "cols": _block(lanes, min(units32, units8))},
        "sram_bytes": int(d.llc_bytes),
        "weight_residency": "cache",
        "split_min_macs": SPLIT_MIN_MACS,
        "split_min_ops": SPLIT_MIN_OPS,
        "dram_bandwidth_bytes_per_s": float(f"{bw:.6g}"),
        **({"onchip_bandwidth_bytes_per_s": float(f"{split[1]:.4g}")} if split else {}),
        "layer_overhead_s": 0.0,
        "efficiency": {"compute": 1.0, "memory": 1.0, "by_layer_class": eff},
        "notes": notes,
    }
    if d.memory_bytes:
        out["dram_bytes"] = int(d.memory_bytes)
    return out
