"""The validation runner: measure a model with onnxruntime over a sweep of configurations.

Order of work (see docs/validation.md for the reasons):

1. resolve the model (path or built-in), fill absent external weights, make precision
   variants (cached), open one session per (precision, threads, instances, instance index);
2. warm-up runs per configuration, discarded (the first run selects kernels, allocates);
3. timed runs, interleaved: ``rounds`` passes over all configurations, each pass running a
   chunk of every configuration, so that drifting host load affects all of them alike;
   the file is re-written (atomically) after every pass, so an interruption keeps all
   samples taken so far and marks the run ``partial``;
4. a separate profiled pass per configuration (fresh session with profiling and a saved
   optimized graph; its first run is excluded), so profiling overhead does not touch the
   latency figures; kernels are joined back to the original model's nodes;
5. analyzer metadata and (with --hw) predictions, through two small adapter functions.
"""

from __future__ import annotations

import math
import os
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx

from estimator.errors import UserError

from . import host as hostmod
from . import modelprep, profile_join, results, stats

OPT_LEVELS = {"disable": "ORT_DISABLE_ALL", "basic": "ORT_ENABLE_BASIC",
              "extended": "ORT_ENABLE_EXTENDED", "all": "ORT_ENABLE_ALL"}
#: A precision variant slower than fp32 by less than this factor counts as "no speedup".
SPEEDUP_THRESHOLD = 1.05


@dataclass
class Options:
    batches: list[int] = field(default_factory=lambda: [1])
    precisions: list[str] = field(default_factory=lambda: ["fp32"])
    threads: list[int] | None = None          # None: usable cores
    instances: list[int] = field(default_factory=lambda: [1])
    iterations: int | None = None             # timed runs per configuration (per instance)
    duration_s: float | None = None           # or timed seconds per configuration
    warmup: int = 3
    rounds: int = 4
    provider: str = "CPUExecutionProvider"
    opt_level: str = "all"
    profile: bool = True
    profile_runs: int = 10
    hw: str | None = None
    resolution: tuple[int, int] | None = None
    seq_len: int | None = None
    scenario: str | None = None               # None | single-stream | offline
    min_duration_s: float = 2.0
    min_query_count: int = 64
    quiet: bool = False
    argv: list[str] | None = None
    campaign: dict | None = None              # `estimate campaign`: target, group id, node (recorded as is)


@dataclass
class Outcome:
    json_path: Path
    csv_path: Path
    doc: dict
    interrupted: bool


# ---------------------------------------------------------------------------------------------
# Adapters to the lead's analyzer API (kept in one place; tests monkeypatch them)


def _analyzer_metadata(model_path: str) -> tuple[dict | None, str | None]:
    """({macs_per_sample, params}, note) from estimator.api.analyze, or (None, why not)."""
    try:
        from estimator import api
        res = api.analyze(model_path, batch=1)
        return {"macs_per_sample": int(res.totals.macs), "params": int(res.totals.params)}, None
    except (ImportError, AttributeError) as e:
        return None, f"analyzer not available ({type(e).__name__}: {e})"
    except Exception as e:  # noqa: BLE001 - a failing analyzer must not lose measurements
        return None, f"analyzer failed: {str(e).splitlines()[0][:160] if str(e) else type(e).__name__}"


def _prediction(model_path: str, hw: str, batches: list[int], precision: str) -> tuple[dict | None, str | None]:
    """({batches, latency_s[], layer_names[], layer_latency_s[layer][batch]}, note) from
    estimator.api.predict + analyze, or (None, why not)."""
    try:
        from estimator import api
        pred = api.predict(model_path, hw, batches=list(batches), precision=precision)
        names = [l.name for l in api.analyze(model_path, batch=1).layers]
        lat = np.asarray(pred.latency_s, dtype=float)
        layer = np.asarray(getattr(pred, "layer_latency_s", np.zeros((0, len(batches)))), dtype=float)
        return {"batches": list(pred.batches), "latency_s": lat.tolist(),
                "layer_names": names, "layer_latency_s": layer.tolist()}, None
    except UserError as e:  # measurements are already taken: keep them, say why no prediction
        return None, f"no prediction: {e}"
    except (ImportError, AttributeError) as e:
        return None, f"prediction not available ({type(e).__name__}: {e})"
    except Exception as e:  # noqa: BLE001
        return None, f"prediction failed: {str(e).splitlines()[0][:160] if str(e) else type(e).__name__}"


def _check_hw(hw: str) -> None:
    """Fail early (before measuring) on a hardware profile the analyzer cannot load."""
    try:
        from estimator import api
        loader = api.load_profile
    except (ImportError, AttributeError):
        return
    loader(hw)  # raises UserError for a bad profile


# ---------------------------------------------------------------------------------------------
# onnxruntime helpers


def ort_module():
    import onnxruntime as ort
    return ort


def resolve_provider(name: str) -> str:
    ort = ort_module()
    avail = ort.get_available_providers()
    if name in avail:
        return name
    for a in avail:  # accept "cpu", "cuda", "CPU", "CPUExecutionProvider"
        if a.lower() in (name.lower(), name.lower() + "executionprovider"):
            return a
    raise UserError(f"--provider {name}: not available in onnxruntime {ort.__version__} "
                    f"(available: {', '.join(avail)})")


def short_ort_error(e: BaseException) -> str:
    text = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    import re
    text = re.sub(r"^\[ONNXRuntimeError\]\s*:\s*\d+\s*:\s*", "", text)
    return text[:220] + ("..." if len(text) > 220 else "")


def session_options(intra_threads: int, opt_level: str, *, denormal_zero: bool,
                    profile_prefix: str | None = None, optimized_path: str | None = None):
    ort = ort_module()
    so = ort.SessionOptions()
    so.intra_op_num_threads = intra_threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = getattr(ort.GraphOptimizationLevel, OPT_LEVELS[opt_level])
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    so.add_session_config_entry("session.inter_op.allow_spinning", "0")
    if denormal_zero:
        so.add_session_config_entry("session.set_denormal_as_zero", "1")
    so.log_severity_level = 3
    if profile_prefix:
        so.enable_profiling = True
        so.profile_file_prefix = profile_prefix
    if optimized_path:
        so.optimized_model_filepath = optimized_path
    return so


def open_session(path: Path, so, provider: str, what: str):
    ort = ort_module()
    providers = [provider] if provider == "CPUExecutionProvider" else [provider, "CPUExecutionProvider"]
    try:
        return ort.InferenceSession(str(path), so, providers=providers)
    except Exception as e:  # noqa: BLE001 - ORT raises its own exception types
        raise UserError(f"{what}: onnxruntime cannot load it: {short_ort_error(e)}") from None


# ---------------------------------------------------------------------------------------------
# Configuration state


@dataclass
class Config:
    batch: int
    precision: str
    threads: int
    instances: int
    model_path: Path = None
    sessions: list = field(default_factory=list)
    feeds: dict = field(default_factory=dict)
    lat: list[list[float]] = field(default_factory=list)   # per instance, seconds
    wall_s: float = 0.0
    samples: int = 0
    chunks_done: int = 0
    busy: list[float] = field(default_factory=lambda: [0.0, 0.0])   # busy, total jiffies
    own_cpu_s: float = 0.0
    peak_rss: int = 0
    loadavg_during: list | None = None
    layers: profile_join.JoinResult | None = None
    profile_note: str | None = None
    loadgen: dict | None = None
    error: str | None = None

    @property
    def key(self) -> str:
        return f"{self.precision}/b{self.batch}/t{self.threads}/i{self.instances}"

    @property
    def intra_threads(self) -> int:
        return max(1, self.threads // self.instances)


def run_chunk(cfg: Config, *, iterations: int | None, seconds: float | None) -> None:
    """One timed chunk: every instance runs ``iterations`` runs, or until ``seconds`` pass."""
    k = cfg.instances
    lats: list[list[float]] = [[] for _ in range(k)]
    errors: list[BaseException] = []
    barrier = threading.Barrier(k + 1) if k > 1 else None

    def work(idx: int, deadline_holder: list) -> None:
        sess = cfg.sessions[idx]
        out = lats[idx]
        try:
            if barrier is not None:
                barrier.wait()
            n = 0
            while True:
                t0 = time.perf_counter()
                sess.run(None, cfg.feeds)
                out.append(time.perf_counter() - t0)
                n += 1
                if iterations is not None and n >= iterations:
                    break
                if seconds is not None and time.perf_counter() >= deadline_holder[0]:
                    break
        except BaseException as e:  # noqa: BLE001 - re-raised in the caller
            errors.append(e)

    cpu0 = hostmod.cpu_times()
    own0 = hostmod.process_cpu_s()
    hostmod.reset_peak_rss()
    deadline = [math.inf]
    if k == 1:
        t_start = time.perf_counter()
        deadline[0] = t_start + (seconds or 0)
        work(0, deadline)
    else:
        threads = [threading.Thread(target=work, args=(i, deadline), daemon=True) for i in range(k)]
        for t in threads:
            t.start()
        t_start = time.perf_counter()
        deadline[0] = t_start + (seconds or 0)
        barrier.wait()
        for t in threads:
            t.join()
    wall = time.perf_counter() - t_start
    cpu1 = hostmod.cpu_times()
    if errors:
        raise errors[0]
    cfg.peak_rss = max(cfg.peak_rss, hostmod.peak_rss_bytes())
    if cpu0 and cpu1:
        cfg.busy[0] += cpu1[0] - cpu0[0]
        cfg.busy[1] += cpu1[1] - cpu0[1]
    cfg.own_cpu_s += hostmod.process_cpu_s() - own0
    cfg.wall_s += wall
    for i in range(k):
        if not cfg.lat:
            cfg.lat = [[] for _ in range(k)]
        cfg.lat[i] += lats[i]
    cfg.samples += sum(len(x) for x in lats) * cfg.batch
    cfg.chunks_done += 1
    cfg.loadavg_during = hostmod.loadavg()


# ---------------------------------------------------------------------------------------------
# Results assembly


def config_record(cfg: Config, rounds: int, specs, opts: Options, pred: dict | None,
                  pred_note: str | None) -> dict | None:
    flat = [x for inst in cfg.lat for x in inst]
    if not flat and cfg.loadgen is None:
        return None
    rec: dict = {
        "id": cfg.key, "batch": cfg.batch, "precision": cfg.precision, "threads": cfg.threads,
        "instances": cfg.instances, "intra_op_threads_per_instance": cfg.intra_threads,
        "scenario": opts.scenario or "sweep", "status": "ok" if cfg.error is None else "failed",
        "complete": cfg.chunks_done >= rounds, "rounds_done": cfg.chunks_done,
        "input_shapes": {k: list(v.shape) for k, v in cfg.feeds.items()},
        "runs": len(flat), "samples": cfg.samples, "notes": [],
    }
    if cfg.error:
        rec["error"] = cfg.error
    if flat:
        rec["latency_s"] = stats.latency_summary(flat)
        cv = stats.coefficient_of_variation(flat)
        rec["latency_cv"] = cv
        rec["high_variance"] = cv > stats.HIGH_CV
        if cv > stats.HIGH_CV:
            rec["notes"].append(f"latency CV {cv:.2f} > {stats.HIGH_CV}: noisy measurement "
                                "(check host load; repeat with more --rounds/--duration)")
        note = stats.percentile_note(len(flat))
        if note:
            rec["notes"].append(note)
        rec["throughput_per_s"] = cfg.samples / cfg.wall_s if cfg.wall_s > 0 else None
        rec["wall_s"] = cfg.wall_s
        if cfg.instances > 1:
            rec["per_instance"] = [{"runs": len(l), **({"latency_s": stats.latency_summary(l)} if l else {})}
                                   for l in cfg.lat]
    else:
        rec["latency_s"] = None
        rec["throughput_per_s"] = None
    rec["peak_rss_bytes"] = cfg.peak_rss or hostmod.peak_rss_bytes()
    busy = 100.0 * cfg.busy[0] / cfg.busy[1] if cfg.busy[1] > 0 else None
    ncpu = os.cpu_count() or 1
    own = 100.0 * cfg.own_cpu_s / (cfg.wall_s * ncpu) if cfg.wall_s > 0 else None
    rec["load"] = {"cpu_busy_pct_during": busy, "own_cpu_pct_during": own,
                   "other_busy_pct_during": (max(0.0, busy - own) if busy is not None and own is not None else None),
                   "loadavg_during": cfg.loadavg_during}
    if cfg.loadgen is not None:
        rec["loadgen"] = cfg.loadgen
        if cfg.loadgen.get("samples_per_s") and opts.scenario == "offline":
            rec["throughput_per_s"] = cfg.loadgen["samples_per_s"]
    # per-layer
    if cfg.layers is not None:
        rec["layers"] = cfg.layers.layers
        rec["layer_totals"] = cfg.layers.summary()
        rec["unmapped"] = cfg.layers.unmapped
    else:
        rec["layers"] = []
        if cfg.profile_note:
            rec["notes"].append(cfg.profile_note)
    # prediction
    if pred is not None and cfg.batch in pred["batches"] and rec["latency_s"]:
        bi = pred["batches"].index(cfg.batch)
        p = float(pred["latency_s"][bi])
        m = rec["latency_s"]["p50"]
        rec["prediction"] = {"latency_s": p, "measured_p50_s": m, "error": p / m - 1 if m > 0 else None,
                             "hw": opts.hw}
        if cfg.instances > 1:
            rec["prediction"]["note"] = "prediction is for one stream; measured latency is per instance under contention"
        names = pred["layer_names"]
        lay = pred["layer_latency_s"]
        by_name = {n: float(lay[i][bi]) for i, n in enumerate(names) if i < len(lay)}
        if by_name and rec["layers"]:
            groups: dict[str, float] = {}
            for l in rec["layers"]:
                head = l.get("fused_into", l["name"])
                groups[head] = groups.get(head, 0.0) + by_name.get(l["name"], 0.0)
            for l in rec["layers"]:
                if l["name"] in by_name:
                    l["predicted_s"] = by_name[l["name"]]
                if "fused_into" not in l and l["measured_s"] > 0 and l["name"] in groups:
                    l["predicted_group_s"] = groups[l["name"]]
                    l["error"] = groups[l["name"]] / l["measured_s"] - 1
    elif opts.hw and pred_note:
        rec["prediction"] = {"latency_s": None, "error": None, "hw": opts.hw, "note": pred_note}
    return rec


def precision_notes(records: list[dict]) -> list[str]:
    """Say when a lower precision gives no speedup over fp32 for the same batch/threads."""
    notes = []
    base = {(r["batch"], r["threads"], r["instances"]): r for r in records
            if r["precision"] == "fp32" and r.get("latency_s")}
    for r in records:
        if r["precision"] == "fp32" or not r.get("latency_s"):
            continue
        b = base.get((r["batch"], r["threads"], r["instances"]))
        if b is None:
            continue
        speedup = b["latency_s"]["p50"] / r["latency_s"]["p50"]
        r["speedup_vs_fp32"] = speedup
        if speedup < SPEEDUP_THRESHOLD:
            why = (" (x86 CPUs without native FP16 arithmetic run FP32 kernels behind Cast nodes)"
                   if r["precision"] == "fp16" else "")
            n = f"{r['precision']} gives no speedup over fp32 on this host at batch {r['batch']}: x{speedup:.2f}{why}"
            r["notes"].append(n)
            notes.append(n)
    return notes


# ---------------------------------------------------------------------------------------------
# Progress


class _Progress:
    def __init__(self, total: int, enabled: bool):
        self.p = None
        if enabled:
            from rich.console import Console
            from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
            self.p = Progress(TextColumn("{task.description}"), BarColumn(),
                              TextColumn("{task.completed}/{task.total}"), TimeElapsedColumn(),
                              console=Console(stderr=True), transient=True)
            self.task = self.p.add_task("validate", total=total)
            self.p.start()

    def step(self, desc: str) -> None:
        if self.p:
            self.p.update(self.task, advance=1, description=desc)

    def describe(self, desc: str) -> None:
        if self.p:
            self.p.update(self.task, description=desc)

    def stop(self) -> None:
        if self.p:
            self.p.stop()


def progress_enabled(quiet: bool) -> bool:
    import sys
    return not quiet and sys.stderr.isatty()


# ---------------------------------------------------------------------------------------------
# Main entry


def run_validation(model: str, out_dir: Path, opts: Options) -> Outcome:
    """Run the sweep and write ``<model>-<UTC>-<id>.json/.csv`` into ``out_dir``."""
    ort = ort_module()
    provider = resolve_provider(opts.provider)
    results.check_out_dir(out_dir)
    for p in opts.precisions:
        if p not in modelprep.PRECISIONS:
            raise UserError(f"--precision {p}: onnxruntime variants exist for {', '.join(modelprep.PRECISIONS)}")
    if opts.opt_level not in OPT_LEVELS:
        raise UserError(f"--opt-level {opts.opt_level}: choose one of {', '.join(OPT_LEVELS)}")
    if any(b < 1 for b in opts.batches):
        raise UserError("--batch: batch sizes must be >= 1")
    threads_list = opts.threads or [hostmod.cpu_info()["usable_cores"] or 1]
    if opts.scenario not in (None, "single-stream", "offline"):
        raise UserError(f"--scenario {opts.scenario}: choose single-stream or offline")
    if opts.hw:
        _check_hw(opts.hw)
    loadgen = None
    if opts.scenario:
        from . import mlperf
        loadgen = mlperf.import_loadgen()

    resolved = modelprep.resolve_model(model, resolution=opts.resolution, seq_len=opts.seq_len)
    user_sha = modelprep.sha256_file(resolved.path)
    original, generated = modelprep.load_with_weights(resolved.path)
    specs = modelprep.input_specs(original)
    doc_notes: list[str] = list(resolved.notes)
    work_path = resolved.path
    need_dynamic = any(isinstance(s.shape[0], int) and s.shape[0] > 0 and any(b != s.shape[0] for b in opts.batches)
                       for s in specs if s.shape)
    if generated or need_dynamic:
        m = modelprep.with_symbolic_batch(original) if need_dynamic else original
        tag = ("gen" if generated else "") + ("dyn" if need_dynamic else "")
        work_path = modelprep.cache_dir() / "work" / f"{user_sha[:16]}-{tag}.onnx"
        work_path.parent.mkdir(parents=True, exist_ok=True)
        if not work_path.is_file():
            modelprep._atomic_save(m, work_path)
        if generated:
            doc_notes.append("external weight data absent: ran with generated weights "
                             "(random, He-scaled; BatchNormalization variances positive; denormals flushed)")
        if need_dynamic:
            doc_notes.append("model has a fixed batch dimension: graph inputs/outputs were made "
                             "batch-symbolic for the sweep")

    started = results.utc_now()
    run_id, json_path, csv_path = results.new_run_paths(out_dir, resolved.name, started)
    meta, meta_note = _analyzer_metadata(str(resolved.path))
    if meta_note:
        doc_notes.append(meta_note)
    busy_before = hostmod.sample_busy_percent(0.3)
    load_before = hostmod.loadavg()

    scenario_batches = opts.batches
    if opts.scenario == "single-stream" and opts.batches != [1]:
        scenario_batches = [1]
        doc_notes.append("single-stream scenario: one sample per query, batch sizes other than 1 ignored")
    rounds = 1 if opts.scenario else max(1, opts.rounds)
    if opts.iterations is not None:
        rounds = min(rounds, opts.iterations)
    duration = opts.duration_s if opts.duration_s is not None else (None if opts.iterations else 2.0)

    doc = {
        "schema": results.SCHEMA_NAME, "schema_version": results.SCHEMA_VERSION,
        "run_id": run_id, "created_utc": started.isoformat(timespec="seconds"), "partial": True,
        "tool": {"name": "estimate", "version": _tool_version()},
        "command": opts.argv,
        "model": {"name": resolved.name, "path": str(resolved.path), "sha256": user_sha,
                  "size_bytes": resolved.path.stat().st_size, "builtin": resolved.builtin,
                  "task": resolved.task, "opset": max((o.version for o in original.opset_import
                                                      if o.domain in ("", "ai.onnx")), default=None),
                  "inputs": [{"name": s.name, "dtype": str(s.dtype), "shape": list(s.shape)} for s in specs],
                  "weights": "generated" if generated else "file",
                  "macs_per_sample": (meta or {}).get("macs_per_sample"),
                  "params": (meta or {}).get("params")},
        "engine": {"name": "onnxruntime", "version": ort.__version__, "provider": provider,
                   "graph_optimization_level": OPT_LEVELS[opts.opt_level],
                   "intra_op_allow_spinning": False, "execution_mode": "sequential"},
        "host": hostmod.host_info(),
        "settings": {"warmup_runs": opts.warmup, "iterations": opts.iterations,
                     "duration_s": duration, "rounds": rounds, "interleaved": rounds > 1,
                     "percentile_method": "nearest-rank",
                     "latency_definition": "wall time of one session.run() on pre-generated inputs (no pre/post-processing)",
                     "throughput_definition": "samples (batch x runs, all instances) / wall time of the timed chunks",
                     "profiling": ("separate profiled pass after the timed runs; first profiled run excluded"
                                   if opts.profile else "disabled"),
                     "scenario": opts.scenario or "sweep",
                     "resolution": list(opts.resolution) if opts.resolution else None,
                     "seq_len": opts.seq_len, "hw": opts.hw},
        "load_before": {"cpu_busy_pct": busy_before, "loadavg": load_before},
        "configurations": [], "notes": doc_notes,
    }
    if opts.campaign:
        doc["campaign"] = opts.campaign

    configs: list[Config] = []
    for prec in opts.precisions:
        for th in threads_list:
            for inst in opts.instances:
                for b in scenario_batches:
                    configs.append(Config(batch=b, precision=prec, threads=th, instances=inst))
    total_steps = len(configs) * (1 + rounds + (1 if opts.profile else 0))
    progress = _Progress(total_steps, progress_enabled(opts.quiet))
    preds: dict[str, tuple] = {}
    interrupted = False
    records: list[dict] = []

    def snapshot(final: bool) -> None:
        nonlocal records
        records = []
        for c in configs:
            pr, pn = preds.get(c.precision, (None, None))
            r = config_record(c, rounds, specs, opts, pr, pn)
            if r is not None:
                records.append(r)
        if final:
            doc["notes"] = doc_notes + precision_notes(records)
        doc["configurations"] = records
        doc["partial"] = not final or any(not r["complete"] for r in records)
        doc["host"]["peak_rss_bytes_process"] = hostmod.peak_rss_bytes()
        results.write_results(doc, json_path, csv_path)

    try:
        # 1. variants and sessions
        variant_paths = {}
        for prec in opts.precisions:
            progress.describe(f"preparing {prec}")
            variant_paths[prec] = modelprep.make_variant(work_path, prec, sha256=user_sha + ("g" if generated else ""),
                                                         resolution=opts.resolution, seq_len=opts.seq_len)
        sessions: dict[tuple, list] = {}
        for c in configs:
            c.model_path = variant_paths[c.precision]
            key = (c.precision, c.threads, c.instances)
            if key not in sessions:
                what = f"{resolved.name} ({c.precision})"
                sessions[key] = [open_session(c.model_path, session_options(c.intra_threads, opts.opt_level,
                                                                            denormal_zero=generated),
                                              provider, what) for _ in range(c.instances)]
            c.sessions = sessions[key]
            c.feeds = modelprep.generate_inputs(specs, c.batch, resolution=opts.resolution, seq_len=opts.seq_len)
        # 2. warm-up
        for c in configs:
            progress.describe(f"warm-up {c.key}")
            try:
                for s in c.sessions:
                    for _ in range(max(1, opts.warmup)):
                        s.run(None, c.feeds)
            except Exception as e:  # noqa: BLE001
                hint = (" (the model had a fixed batch dimension; it may hard-code the batch in "
                        "a Reshape: sweep only its own batch size)") if need_dynamic else ""
                raise UserError(f"{resolved.name} ({c.precision}, batch {c.batch}): onnxruntime cannot run it: "
                                f"{short_ort_error(e)}{hint}") from None
            progress.step(f"warm-up {c.key}")
        # 3. timed runs (interleaved) or LoadGen
        if opts.scenario:
            from . import mlperf
            for c in configs:
                progress.describe(f"LoadGen {opts.scenario} {c.key}")
                c.loadgen = mlperf.run_scenario(loadgen, c, opts, out_dir / f"{run_id}-loadgen" / c.key.replace("/", "-"))
                c.chunks_done = rounds
                progress.step(c.key)
                snapshot(final=False)
        else:
            per_chunk_iters = math.ceil(opts.iterations / rounds) if opts.iterations else None
            per_chunk_s = duration / rounds if duration is not None and not opts.iterations else None
            for r in range(rounds):
                for c in configs:
                    progress.describe(f"round {r + 1}/{rounds} {c.key}")
                    run_chunk(c, iterations=per_chunk_iters, seconds=per_chunk_s)
                    progress.step(c.key)
                snapshot(final=False)
        # 4. profiled pass
        if opts.profile:
            for c in configs:
                progress.describe(f"profiling {c.key}")
                try:
                    c.layers = profile_config(c, original, opts, provider, generated)
                except UserError:
                    raise
                except Exception as e:  # noqa: BLE001 - keep the timings even if the join fails
                    c.profile_note = f"per-layer profile failed: {short_ort_error(e)}"
                progress.step(c.key)
        # 5. predictions
        if opts.hw:
            for prec in opts.precisions:
                # the graph onnxruntime ran: a fixed-batch file swept over batches ran as a copy with a
                # symbolic batch, whose kernels can differ (kernels.Rule.flatten_2d)
                preds[prec] = _prediction(str(work_path if need_dynamic else resolved.path), opts.hw,
                                          sorted(set(scenario_batches)), prec)
                if preds[prec][1]:
                    doc_notes.append(preds[prec][1])
        snapshot(final=True)
    except KeyboardInterrupt:
        interrupted = True
        doc_notes.append("interrupted (Ctrl-C): only the configurations and samples finished before "
                         "the interruption are recorded")
        doc["interrupted"] = True
        snapshot(final=False)
        doc["partial"] = True
        results.write_results(doc, json_path, csv_path)
    finally:
        progress.stop()
    return Outcome(json_path, csv_path, doc, interrupted)


def profile_config(c: Config, original: onnx.ModelProto, opts: Options, provider: str,
                   generated: bool) -> profile_join.JoinResult:
    """Profiled pass for one configuration in a fresh session; returns the per-layer join."""
    with tempfile.TemporaryDirectory(prefix="estimate-prof-") as td:
        opt_path = os.path.join(td, "optimized.onnx")
        so = session_options(c.intra_threads, opts.opt_level, denormal_zero=generated,
                             profile_prefix=os.path.join(td, "profile"), optimized_path=opt_path)
        sess = open_session(c.model_path, so, provider, f"{c.model_path.name} (profiling)")
        runs = max(2, opts.profile_runs + 1)  # + the cold run, excluded by the parser
        for _ in range(runs):
            sess.run(None, c.feeds)
        prof = sess.end_profiling()
        kt = profile_join.parse_profile(prof, skip_runs=1)
        optimized = onnx.load(opt_path, load_external_data=False)
        return profile_join.join(original, optimized, kt)


def _tool_version() -> str:
    try:
        from estimator import __version__
        return __version__
    except ImportError:  # pragma: no cover
        return "unknown"
