"""`estimate hw detect` and `estimate calibrate`: thin typer commands (I/O only).

The measurement lives in estimator.validate.detect (the only code touching onnxruntime), the
fit in estimator.calibrate (pure). `register(app)` adds both to the main app.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path
from typing import List, Optional

import typer

from .errors import UserError
from .fsutil import atomic_write_text

hw_app = typer.Typer(add_completion=False, no_args_is_help=True, rich_markup_mode=None,
                     help="Hardware profiles of this host: `estimate hw detect -o host.yaml`.")



_CALIBRATED_MARK = "| calibrated by estimate calibrate on "


def _left_out_kernels(data) -> str:
    """'SkipLayerNormalization x24 (bert-base)', ...: the kernels build_dataset left out of one
    configuration of each model (its first)."""
    import re
    per: dict[tuple[str, str], int] = {}
    for m in data.models:
        for _, k, _, _ in (m.configs[0].left_out if m.configs else ()):
            op = re.sub(r"(_token)?_\d+$", "", k.rstrip("/").rsplit("/", 1)[-1]) or k
            per[(op, m.name)] = per.get((op, m.name), 0) + 1
    return ", ".join(f"{op} x{n} ({name})" for (op, name), n in sorted(per.items(), key=lambda kv: -kv[1]))


def _measured_once(data) -> int:
    """How many (model, batch) configurations of the data have a single run."""
    runs: dict[tuple, int] = {}
    for m in data.models:
        for c in m.configs:
            runs[(m.name, c.batch, c.precision)] = runs.get((m.name, c.batch, c.precision), 0) + 1
    return sum(1 for n in runs.values() if n == 1)


def _written_by_calibrate(p: Path, is_profile: bool) -> bool:
    """An output an earlier `estimate calibrate` wrote to this very path (a calibrated profile
    whose source ends with "written to <this path>", or a report whose `profile_out` and `report`
    entries say so): rerunning the same command into the same folder, as accumulating runs
    does, replaces it, keeping the previous one as <name>.prev<suffix>. A copy elsewhere, or
    any other file, is never overwritten without --force."""
    from . import hardware

    where = str(p.resolve())
    try:
        if is_profile:
            src = " ".join(hardware.load_profile(str(p)).source.split())
            return _CALIBRATED_MARK in src and src.endswith(f"; written to {where})")
        doc = json.loads(p.read_text())
        return isinstance(doc, dict) and doc.get("report_path") == where and "fitted" in doc
    except (UserError, OSError, ValueError):
        return False

def _console():
    from rich.console import Console

    return Console() if sys.stdout.isatty() else Console(width=160)


@hw_app.command("detect")
def detect_command(
    output: Path = typer.Option(..., "--output", "-o", help="The profile YAML to write."),
    force: bool = typer.Option(False, "--force", help="Replace an existing file."),
    quick: bool = typer.Option(False, "--quick", help="Small problems and short runs (a few seconds; rough figures)."),
    threads: Optional[int] = typer.Option(None, "--threads", "-t", help="Threads for the kernel benchmarks (default: usable cores, as `estimate validate`)."),
    kernels: bool = typer.Option(True, "--kernels/--no-kernels", help="Also time the kernel samples (174 "
                                 "single-kernel graphs over realistic shapes, ~75 s; --quick: 68) that "
                                 "`estimate calibrate` fits every kernel class from; written next to the profile as NAME.kernels.json."),
) -> None:
    """Measure this host (onnxruntime GEMM/Conv rates, on-chip bandwidth from two 1x1 Convs,
    element-wise rate, STREAM-like DRAM bandwidth; caches and SIMD flags from /proc and /sys;
    and a sampled set of single kernels per kernel class) and write it as a hardware profile."""
    from . import hardware

    target = output.expanduser()
    samples_path = target.with_name(target.stem + ".kernels.json")
    for t in (target, samples_path) if kernels else (target,):
        if t.exists() and not force:
            raise UserError(f"{t}: already exists (not overwritten; pass --force to replace it)")
    if not target.parent.is_dir():
        raise UserError(f"{target}: directory {target.parent} does not exist")
    if threads is not None and threads < 1:
        raise UserError("--threads must be >= 1")
    try:
        from .validate import detect as det
    except ImportError as e:  # pragma: no cover - onnxruntime missing
        raise UserError(f"hw detect needs onnxruntime ({e}); pip install onnxruntime") from None
    argv = "estimate hw detect" + (" --quick" if quick else "")
    d = det.detect(quick=quick, threads=threads)
    pdict = det.profile_dict(d, argv)
    # the fusion rules onnxruntime applies here (its optimized graph of one probe per rule)
    fusions = det.check_fusions(d.threads)
    pdict["fusion"] = ["epilogue"] + [r for r, v in fusions.items() if r != "epilogue" and v == "confirmed"]
    layout = det.check_layout(d.threads)
    if layout:
        pdict["layout"] = layout
        block = det.nchwc_block(d.flags)
        if block:
            pdict["layout_block"] = block
        pdict["notes"]["layout"] = (
            "onnxruntime runs convolutions here in its blocked channel layout (NCHWc: ReorderInput/ReorderOutput kernels "
            "in its optimized graph of a conv probe): a tensor crossing between that layout and other ops is converted, "
            "each conversion costed as data movement (estimator/kernels.py, layout_reorders)"
            + (f"; layout_block {block}: MLAS's NCHWc block for these CPU flags (16 fp32 lanes with AVX-512F, else 8)"
               if block else "; its block is taken from mac_array.cols (not known for this CPU)"))
    pdict["notes"]["fusion"] = ("checked against onnxruntime's optimized graph (ORT_ENABLE_ALL, optimized_model_filepath) "
                                "of one probe graph per rule (models/kernel_samples.py FUSION_PROBES): "
                                + "; ".join(f"{r}: {v}" for r, v in fusions.items())
                                + ". epilogue (BatchNormalization folding) is always kept")
    if kernels:
        def progress(i, n):
            if sys.stderr.isatty():
                print(f"\rkernel samples {i}/{n}", end="" if i < n else "\n", file=sys.stderr, flush=True)
        samples = det.measure_kernel_samples(d.threads, quick=quick, progress=progress)
        samples["host"] = {"hostname": d.hostname, "cpu": d.cpu_model, "date": d.date, "ort_version": d.ort_version}
        pdict["kernel_samples"] = samples_path.name
        from .calibrate import samples_round_spread

        spread = samples_round_spread(samples)
        pdict["notes"]["kernel_samples"] = (
            f"{len(samples['samples'])} single-kernel graphs (models/kernel_samples.py) timed at batches "
            f"{', '.join(map(str, samples['batches']))}: {samples['timing']}"
            + (f"; the rounds were {spread:.1%} apart (median of slowest / fastest - 1)" if spread is not None else "")
            + "; `estimate calibrate` fits every kernel class from them (with any whole-model results)")
    profile = hardware.profile_from_dict(pdict, origin=str(target))
    if kernels:
        from .fsutil import atomic_write_text

        profile = _fit_samples(profile, samples, samples_path)
        atomic_write_text(samples_path, json.dumps(samples, indent=1) + "\n", overwrite=True)
    hardware.dump_profile(profile, target, overwrite=force)
    m = d.measurements
    con = _console()
    con.print(f"wrote {target}: {profile.name}", highlight=False)
    for k in ("gemm_fp32", "gemm_int8", "conv3x3_fp32", "conv1x1_fp32", "conv1x1_narrow_fp32", "depthwise_fp32",
              "add_fp32", "stream_copy", "stream_triad"):
        if k in m:
            typer.echo(f"  {k:19s} {m[k].value:10.4g} {m[k].unit:6s} ({m[k].detail})")   # plain: long lines, no wrapping
    bw = profile.onchip_bandwidth_bytes_per_s
    typer.echo(f"  on-chip bandwidth   {bw:10.4g} B/s    (derived from the two 1x1 Convs)" if bw else
               "  on-chip bandwidth   not derived (the two 1x1 Convs gave no physical split; see the notes)")
    typer.echo(f"  sram_bytes (LLC) {profile.sram_bytes}, load average before {d.load_before}")
    typer.echo(f"  fusion rules        {', '.join(pdict['fusion'])} (confirmed in onnxruntime's optimized graph)")
    if kernels:
        typer.echo(f"  kernel samples      {len(samples['samples'])} kernels x {len(samples['batches'])} batches, "
                   f"written to {samples_path}")
    warnings = det.disturbance_warnings(d)
    noisy = det.round_spread_warning(spread) if kernels else None
    for w in warnings + ([noisy] if noisy else []):
        typer.echo(f"warning: {w}", err=True)


def _fit_samples(profile, samples: dict, samples_path: Path):
    """The detected profile with every kernel class's rate and fixed cost fitted to this host's
    kernel samples alone (the per-class figures the measured ceilings cannot give: a call's fixed
    cost, a class's share of the peak); `estimate calibrate` fits them again with whole-model
    results. The ceilings (peaks, bandwidths, caches) stay as measured."""
    from . import calibrate as cal

    data = cal.sample_dataset(samples, "fp32", source=str(samples_path), rules=profile.fusion_rules(),
                              layout=profile.layout_spec())
    fr = cal.fit(data, profile)
    n = len(data.models)
    note = (f"fitted to this detect's {n} kernel samples alone ({samples_path.name}; batches "
            f"{', '.join(map(str, samples['batches']))}; scipy lsq_linear, as estimate calibrate): classes "
            f"{', '.join(fr.fitted_classes)}; estimate calibrate fits them again with whole-model results")
    notes = {"efficiency": note, "layer_overhead_by_class_s": note,
             "onchip_bandwidth_bytes_per_s": note, "layer_overhead_s": "0: every class with samples has its own",
             "grouped_call_s": ((note if fr.params.s_call > 0 else "fitted at zero cost: the key is left out")
                                if fr.calls_fitted else
                                f"not fitted: fewer than {cal.MIN_CALL_SAMPLES} grouped kernel samples in the blocked layout")}
    return cal.apply_params(profile, fr.params, fr.fitted_classes, notes=notes, overhead_classes=fr.overhead_classes)


# ----------------------------------------------------------------------------- calibrate


def write_outputs(calibrated, out: Path, replace: bool, backups: list[Path]) -> None:
    """Write the calibrated profile; earlier calibrate outputs at these paths are kept as .prev
    (only now that the fit succeeded)."""
    from . import hardware

    for p in backups:
        prev = p.with_name(f"{p.stem}.prev{p.suffix}")
        p.replace(prev)
        sys.stderr.write(f"estimate: replacing {p}, written by an earlier `estimate calibrate` (kept as {prev})\n")
    hardware.dump_profile(calibrated, out, overwrite=replace)


def _read_results(paths: List[str]) -> list[tuple[str, dict]]:
    from .validate import results as res

    files = res.find_result_files(paths)
    out = []
    for f in files:
        try:
            doc = json.loads(Path(f).read_text())
        except (OSError, ValueError) as e:
            hint = " (pass the .json results, not the .csv)" if str(f).endswith(".csv") else ""
            raise UserError(f"{f}: not a readable results JSON ({e}){hint}") from None
        if not isinstance(doc, dict) or doc.get("schema") not in (None, res.SCHEMA_NAME) or res.schema_problems(doc):
            continue
        out.append((str(f), doc))
    return out


def _builtin_base(doc: dict) -> tuple[str, tuple[int, int] | None, int | None]:
    name = doc["model"]["name"]
    st = doc.get("settings") or {}
    res = tuple(st["resolution"]) if st.get("resolution") else None
    seq = st.get("seq_len")
    base = name
    if seq and base.endswith(f"-s{seq}"):
        base = base[: -len(f"-s{seq}")]
    if res and base.endswith(f"-{res[0]}x{res[1]}"):
        base = base[: -len(f"-{res[0]}x{res[1]}")]
    return base, res, seq


def _model_table(file: str, doc: dict, precision: str, cache: dict):
    """The CostTable of the model a results file measured, after checking it is the same
    version (sha256) as the current file or the current build of the built-in."""
    from . import api
    from .validate import modelprep

    m = doc["model"]
    st = doc.get("settings") or {}
    dims = {}
    if st.get("scenario") == "generation":   # a decode step at the middle of the generation (validate/generate.py)
        dims = {"seq_len": 1, "past": int(st["prompt"]) + (int(st["generate"]) - 2) // 2}
    key = (m["name"], m["sha256"], tuple(sorted(dims.items())),
           tuple(sorted({int(c["batch"]) for c in doc.get("configurations", []) if "batch" in c})))
    if key in cache:
        return cache[key]
    if m.get("builtin") and dims:
        path = modelprep.resolve_model(m["name"]).path
        what = f"the current build of built-in '{m['name']}'"
    elif m.get("builtin"):
        base, res, seq = _builtin_base(doc)
        path = modelprep.resolve_model(base, resolution=res, seq_len=seq).path
        what = f"the current build of built-in '{base}'"
    else:
        path = Path(m.get("path") or "")
        what = str(path)
        if not path.is_file():
            raise UserError(f"{file}: the measured model file {path} no longer exists (cannot re-analyze it)")
    sha = modelprep.sha256_file(path)
    if sha != m["sha256"]:
        raise UserError(f"{file}: results are for another version of model '{m['name']}' "
                        f"(sha256 {m['sha256'][:12]}..., {what} has {sha[:12]}...); re-run estimate validate")
    table = api.analyze(str(path), batch=1, precision=precision, **dims)
    if not table.dynamic_shapes and _ran_with_symbolic_batch(path, doc):
        table = dataclasses.replace(table, dynamic_shapes=True)
    cache[key] = table
    return table


def _ran_with_symbolic_batch(path, doc: dict) -> bool:
    """A file that fixes its batch, validated at other batches, ran as a copy with a symbolic
    batch (validate.runner: modelprep.with_symbolic_batch), so onnxruntime saw dynamic shapes."""
    from .validate import modelprep

    batches = {int(c["batch"]) for c in doc.get("configurations", []) if "batch" in c}
    specs = modelprep.file_input_specs(path)
    return any(s.shape and isinstance(s.shape[0], int) and s.shape[0] > 0 and any(b != s.shape[0] for b in batches)
               for s in specs)


def _kernel_samples(profile, hw: str, precision: str, rules, layout):
    """The kernel samples file a detected profile names, as a calibration Dataset."""
    from . import calibrate as cal

    path = Path(profile.kernel_samples_path())
    try:
        doc = json.loads(path.read_text())
    except OSError as e:
        raise UserError(f"{hw}: kernel_samples: cannot read {path} ({e.strerror}); re-run estimate hw detect, or pass "
                        "--no-kernel-samples") from None
    except ValueError as e:
        raise UserError(f"{path}: not a readable kernel samples JSON ({e})") from None
    hostname, cpu = cal.host_identity(profile.source)
    h = doc.get("host") if isinstance(doc, dict) else None
    if hostname is not None and isinstance(h, dict) and h.get("hostname") not in (None, hostname):
        raise UserError(f"{path}: kernel samples timed on host '{h.get('hostname')}' but profile {hw} describes "
                        f"host '{hostname}'")
    return cal.sample_dataset(doc, precision, source=str(path), rules=rules, layout=layout), doc.get("threads")


def _check_host(profile, docs: list[tuple[str, dict]], hw: str) -> None:
    from .calibrate import host_identity

    hosts = {(d["host"].get("hostname"), (d["host"].get("cpu") or {}).get("model")) for _, d in docs}
    if len(hosts) > 1:
        raise UserError("results come from several hosts (" + ", ".join(f"{h} ({c})" for h, c in sorted(hosts, key=str))
                        + "): calibrate one host at a time")
    hostname, cpu = host_identity(profile.source)
    if hostname is None:
        return
    (rh, rc), = hosts
    if rh != hostname or (cpu and rc and rc != cpu):
        f = next(f for f, d in docs)
        raise UserError(f"{f}: measured on host '{rh}' ({rc}) but profile {hw} describes host '{hostname}' ({cpu}): "
                        "calibrate a profile detected on the host that ran the validation")


def calibrate_command(
    results: List[str] = typer.Argument(..., help="Validation result JSON files or directories (searched recursively)."),
    hw: str = typer.Option(..., "--hw", help="The profile to calibrate (path or shipped name), e.g. from `estimate hw detect`."),
    output: Path = typer.Option(..., "--output", "-o", help="The calibrated profile YAML to write."),
    report: Optional[Path] = typer.Option(None, "--report", help="Also write the error report as JSON here."),
    precision: Optional[str] = typer.Option(None, "--precision", "-p", help="Fit the configurations of this precision (default: the one in the results)."),
    force: bool = typer.Option(False, "--force", help="Replace existing output files."),
    cv: bool = typer.Option(True, "--cv/--no-cv", help="Leave-one-model-out cross-validation in the report."),
    fmt: str = typer.Option("table", "--format", "-f", help="table | json | markdown (the report on stdout)."),
    max_other_busy: float = typer.Option(20.0, "--max-other-busy", help="Leave out configurations during whose timed runs "
                                         "other processes used more than this % of the host (disturbed); 100 keeps all."),
    use_samples: bool = typer.Option(True, "--kernel-samples/--no-kernel-samples", help="Fit the kernel samples the "
                                     "profile names (key kernel_samples, written by `estimate hw detect`) with the results."),
    test: Optional[List[str]] = typer.Option(None, "--test", help="Result files or directories NOT used in the fit: "
                                              "their error with the calibrated profile is reported (repeatable)."),
    device: Optional[str] = typer.Option(None, "--device", help="Imported (published) results: fit those of this "
                                         "device (default: the profile's name, or the only device there is)."),
) -> None:
    """Fit the profile's efficiencies (per layer class, memory), on-chip bandwidth and per-layer
    overhead to measured per-layer and end-to-end times; write the calibrated profile and the
    error report."""
    from . import calibrate as cal
    from . import hardware

    if fmt not in ("table", "json", "markdown"):
        raise UserError(f"--format {fmt!r}: choose table, json or markdown")
    if not 0 <= max_other_busy <= 100:
        raise UserError(f"--max-other-busy {max_other_busy:g}: a share of the host in % (0..100; 100 keeps all)")
    out = output.expanduser()
    report = report.expanduser() if report is not None else None
    replace = force
    backups: list[Path] = []  # earlier calibrate outputs at these paths: kept as .prev when replaced
    for p in (out, report):
        if p is None:
            continue
        if p.is_dir():
            raise UserError(f"{p}: is a directory (give a file name)")
        if p.exists() and not force and not _written_by_calibrate(p, p is out):
            raise UserError(f"{p}: already exists (not overwritten; pass --force to replace it)")
        if p.exists() and not force:
            backups.append(p)
            replace = True
        if not p.parent.is_dir():
            raise UserError(f"{p}: directory {p.parent} does not exist")
    profile = hardware.load_profile(hw)
    docs = _read_results(results)
    if not docs:
        raise UserError(f"no validation results found in {', '.join(results)} (run `estimate validate MODEL --out DIR` first)")
    if any(d.get("source") == "imported" for _, d in docs):   # published end-to-end points
        from . import calibrate_points_cli
        if test:
            raise UserError("--test: not supported with imported (published) results: each point is fitted; "
                            "import the held-out points separately and compare with `estimate MODEL --hw`")
        return calibrate_points_cli.run(docs, profile, hw, out, report, precision, device, replace, backups, fmt)
    precs = sorted({c.get("precision") for _, d in docs for c in d.get("configurations", [])} - {None})
    if precision is None:
        if len(precs) > 1:
            raise UserError(f"the results hold several precisions ({', '.join(precs)}): choose one with --precision")
        precision = precs[0] if precs else "fp32"
    if precision not in profile.mac_units:
        raise UserError(f"results are {precision} but profile {hw} has no MAC rate for it "
                        f"(it has: {', '.join(profile.precisions)})")
    if precision not in precs:
        raise UserError(f"no {precision} configurations in the results (they hold: {', '.join(precs) or 'none'})")
    test_docs = _read_results(list(test)) if test else []
    if test and not test_docs:
        raise UserError(f"--test: no validation results found in {', '.join(test)}")
    # a run given both to fit and to --test is held out: it is taken out of the fit (same run_id,
    # or the same file), so a test figure is never an in-sample one
    def run_key(f, d):
        return d.get("run_id") or str(Path(f).resolve())

    test_keys = {run_key(f, d) for f, d in test_docs}
    held = [f for f, d in docs if run_key(f, d) in test_keys]
    docs = [(f, d) for f, d in docs if run_key(f, d) not in test_keys]
    if test_docs and not docs:
        raise UserError("every result file given to fit is also given to --test: nothing left to fit")
    _check_host(profile, docs + test_docs, hw)
    cache: dict = {}
    entries = [(f, d, _model_table(f, d, precision, cache)) for f, d in docs]
    rules, layout = profile.fusion_rules(), profile.layout_spec()
    data = cal.build_dataset(entries, precision, max_other_busy_pct=max_other_busy, rules=rules, layout=layout)
    test_data = None
    if test_docs:
        test_data = cal.build_dataset([(f, d, _model_table(f, d, precision, cache)) for f, d in test_docs], precision,
                                      max_other_busy_pct=max_other_busy, rules=rules, layout=layout)
    n_samples = 0
    if use_samples and profile.kernel_samples is not None:
        sdata, s_threads = _kernel_samples(profile, hw, precision, rules, layout)
        r_threads = {c.get("threads") for _, d in docs for c in d.get("configurations", [])} - {None}
        if s_threads is not None and r_threads and r_threads != {s_threads}:
            raise UserError(f"{profile.kernel_samples_path()}: kernel samples timed at {s_threads} threads, the results at "
                            f"{', '.join(map(str, sorted(r_threads)))}: re-run `estimate hw detect --threads "
                            f"{min(r_threads)}` or pass --no-kernel-samples")
        n_samples = len(sdata.models)
        data = data.with_models(sdata)
    fr, rep = cal.calibrate(data, profile, cross_validate=cv)
    if use_samples and profile.kernel_samples is None:
        rep.notes.append(f"profile {hw} names no kernel samples (key kernel_samples; `estimate hw detect` writes them): "
                         "fitted on the whole-model results alone, so classes they lack keep the input profile's figures")
    if held:
        rep.notes.append(f"{len(held)} result file(s) given both to fit and to --test were held out of the fit: "
                         + ", ".join(Path(f).name for f in held))
    if len(data.model_names) < 2:
        rep.notes.append("fitted on one model: its layers cannot separate per-layer overheads, efficiencies and the "
                         "on-chip cost well (they trade off), so predictions for other models may be worse than "
                         "uncalibrated; fit on several models (docs/calibration.md)")
    once = _measured_once(data.measured())
    if once:
        rep.notes.append(f"{once} of the fitted (model, batch) configurations were measured once: on a shared host one "
                         "run can be 10-25% off, and the per-class fixed costs then move between calibrations (on "
                         "this project's 2-core host, corpus predictions of calibrations on one run of the built-ins "
                         "moved by up to 22%, on three runs and on eight within 10%; docs/calibration.md): measure "
                         "each model 2-3 times into the same folder (runs accumulate)")
    left = _left_out_kernels(data.measured())
    if left:
        rep.notes.append("measured kernels left out of the fit (end to end too): runtime fusions the profile's rules do "
                         "not form, which the roofline splits into several kernels and cannot price (docs/roofline.md, "
                         "\"Kernels\"); predictions of models with them miss by their difference: " + left)
    if fr.profiler_s > 0:
        rep.notes.append(f"the per-layer times carry {fr.profiler_s * 1e6:.2f} us of onnxruntime's profiler per kernel "
                         "event (fitted with the rest; the end-to-end p50 is timed without the profiler): taken out of "
                         "the per-layer rows, not a figure of the profile")
    counts = dict(data.measured().counts, layer_groups=fr.rows_layer)
    result_files = [f for f, _ in docs]
    batches = {m.name: sorted({c.batch for c in m.configs}) for m in data.measured().models}
    host = docs[0][1]["host"]
    eff = cal.params_dict(fr.params, fr, profile)
    source = (f"{profile.source.strip()} {_CALIBRATED_MARK}{len(result_files)} result files "
              f"({', '.join(f'{k}: batches {v}' for k, v in batches.items())}; {precision}; host {host.get('hostname')}"
              f"; written to {out.resolve()})")
    notes = {
        "efficiency": (f"fitted (bounded least squares, relative residuals) to {counts['layer_groups']} per-layer group "
                       f"times (kernel samples included) and {counts['configurations']} end-to-end p50 latencies of "
                       f"{len(data.model_names)} "
                       f"model{'s' if len(data.model_names) != 1 else ''} "
                       + (f"and {n_samples} kernel samples ({profile.kernel_samples}; times as its timing note says) "
                          if n_samples else "") +
                       f"({', '.join(data.model_names)}); classes fitted: {', '.join(fr.fitted_classes)} (others kept from "
                       f"the input profile)"
                       + (f"; followed their parent class (too little data of their own): "
                          f"{', '.join(f'{c} -> {p}' for c, p in fr.tied)}" if fr.tied else "")
                       + f"; files: {', '.join(Path(f).name for f in result_files)}; "
                       f"fit error: end-to-end median |error| {_pct(rep.fitted['e2e_median_abs_error'])}, "
                       f"leave-one-model-out {_pct(rep.cv['e2e_median_abs_error'])}; before: "
                       f"efficiency {profile_eff(profile)}"),
        "efficiency.compute": ("the median of the fitted classes' efficiencies, a summary: every layer class is "
                               "listed under by_layer_class (fitted, or kept from the input profile)"),
        "efficiency.memory": (
            f"kept from the input profile ({eff['memory_efficiency']:.4g}): at the fitted rates DRAM-bound layers carry "
            f"less than {cal.MIN_CLASS_SHARE:.0%} of every configuration's time, so the data do not pin it"
            if eff.get("memory_efficiency_kept") else
            f"fitted: {eff['memory_efficiency']:.4g}" + (
                " (at its upper bound)" if eff["memory_efficiency"] >= cal.EFF_MAX * 0.999 else "")),
        "onchip_bandwidth_bytes_per_s": (
            "fitted with the efficiencies: the rate at which a contraction layer (MACs > 0) moves its activations "
            "(inputs + outputs) through the caches, on top of its MAC time (docs/roofline.md); "
            + (f"{_g(eff['onchip_bandwidth_bytes_per_s'])} B/s" if eff.get("onchip_bandwidth_bytes_per_s")
               else "the fit put it at zero cost, so the key is left out")
            + (f" (was {_g(profile.onchip_bandwidth_bytes_per_s)})" if profile.onchip_bandwidth_bytes_per_s else
               " (the input profile had none)")),
        "layer_overhead_s": (f"kept from the input profile ({profile.layer_overhead_s:.3g} s per costed layer): a class "
                             "without a fitted overhead (too few layers of it in the data) keeps the input profile's "
                             "cost per layer, as it keeps its efficiency"),
        "layer_overhead_by_class_s": ("fitted with the efficiencies, per layer class with at least "
                                      f"{cal.MIN_OVERHEAD_LAYERS} layers in the data: "
                                      + ", ".join(f"{k} {v * 1e6:.1f} us" for k, v in eff["layer_overhead_by_class_s"].items())),
        "kernel_overhead_in_graph_s": (f"fitted: {fr.params.in_graph_s * 1e6:.2f} us per kernel of a whole graph on top of "
                                       "its class's fixed cost (the kernel samples, timed alone, pin the classes' own "
                                       "costs; the whole-model results what a kernel costs more inside a graph)"
                                       if fr.params.in_graph_s > 0 and n_samples else
                                       f"kept from the input profile ({fr.params.in_graph_s * 1e6:.2f} us): fitted only "
                                       "with kernel samples next to whole-model results" if not n_samples else
                                       "fitted: 0 (the whole-model results show no extra cost per kernel)")
                                      + (f"; paid by the kernels without MACs (element-wise, normalization, pooling, data "
                                         f"movement) that the runtime splits over threads (at least "
                                         f"{_g(profile.split_min_ops)} element ops per pass, split_min_ops); a convolution or "
                                         "matmul costs inside a graph what it costs alone (docs/roofline.md)"
                                         if fr.params.in_graph_s > 0 and profile.split_min_ops is not None else
                                         "; paid by every kernel without MACs (a convolution or matmul costs inside a graph "
                                         "what it costs alone, docs/roofline.md)" if fr.params.in_graph_s > 0 else ""),
        "weight_fetch_bandwidth_bytes_per_s": (
            f"fitted: {_g(fr.params.fetch_bandwidth)} B/s, the rate at which a contraction kernel of a whole graph reads "
            "its weights from DRAM on top of its MAC time (weight_residency: cache; the kernel samples, whose weights "
            "stay in the cache, pin the MAC rates; docs/roofline.md)" if fr.params.fetch_bandwidth else
            "the fit put it at zero cost (or the data cannot tell it: no whole-model results), so the key is left out"),
        "grouped_call_s": (
            (f"fitted: {fr.params.s_call * 1e9:.0f} ns per call of the blocked convolution kernel a grouped conv makes "
             "(one per output row, set of 4 output blocks and input block of each group; the grouped kernel samples, "
             "of different call counts per MAC, pin it; docs/roofline.md)" if fr.params.s_call > 0 else
             "the fit put it at zero cost, so the key is left out") if fr.calls_fitted else
            (f"kept from the input profile ({fr.params.s_call * 1e9:.0f} ns per call): fitted only from at least "
             f"{cal.MIN_CALL_SAMPLES} kernel samples of grouped convs in the blocked layout")),
    }
    calibrated = cal.apply_params(profile, fr.params, fr.fitted_classes, source=source, notes=notes,
                                  overhead_classes=fr.overhead_classes)
    if calibrated.kernel_samples is not None:   # fitted in; a relative name would not hold elsewhere
        calibrated = hardware.with_overrides(calibrated, kernel_samples=None)
    write_outputs(calibrated, out, replace, backups)
    doc = rep.to_dict()
    if test_data is not None:
        s_after, p_after = cal.evaluate_on(test_data, calibrated)
        s_before, p_before = cal.evaluate_on(test_data, profile)
        doc["test"] = {"files": list(test_data.files), "models": test_data.model_names,
                       "calibrated": {"summary": s_after, "points": p_after,
                                      "points_runs_median": cal.median_of_runs(p_after),
                                      "by_class": cal.class_contributions(test_data, calibrated, fr.profiler_s)},
                       "uncalibrated": {"summary": s_before, "points": p_before,
                                        "points_runs_median": cal.median_of_runs(p_before)}}
    doc["left_out_as_disturbed"] = list(data.skipped) + (list(test_data.skipped) if test_data is not None else [])
    doc["max_other_busy_pct"] = max_other_busy
    doc.update({"profile_in": hw, "profile_out": str(out), "report_path": str(report.resolve()) if report else None,
                "precision": precision, "files": list(data.files),
                "counts": counts, "batches": batches})
    if report is not None:
        atomic_write_text(report, json.dumps(doc, indent=1))
    if fmt == "json":
        typer.echo(json.dumps(doc, indent=1))
    elif fmt == "markdown":
        typer.echo(report_markdown(doc))
    else:
        _print_report(doc)
        typer.echo(f"wrote {out}" + (f" and {report}" if report else ""))


def profile_eff(p) -> str:
    e = p.efficiency
    by = ", ".join(f"{k} {v:.3g}" for k, v in e.by_layer_class.items())
    return f"compute {e.compute:.3g}, memory {e.memory:.3g}" + (f", by class: {by}" if by else "") + \
        f", overhead {p.layer_overhead_s:.3g} s"


def _g(x) -> str:
    return f"{x:.4g}"


def _bw(x) -> str:
    return f"{x / 1e9:.3g} GB/s" if x else "none"


def _pct(x) -> str:
    return "-" if x is None else f"{x * 100:.1f}%"


def _spct(x) -> str:
    return "-" if x is None else f"{x * 100:+.1f}%"


def summary_rows(doc: dict) -> list[list[str]]:
    rows = []
    sections = [("uncalibrated (fit set)", doc["uncalibrated"]), ("fitted", doc["fitted"]),
                ("leave-one-model-out", doc["cross_validation"])]
    if doc.get("cross_validation_family"):
        sections.append(("leave-one-family-out", doc["cross_validation_family"]))
    if doc.get("test"):
        sections += [("test set, uncalibrated", doc["test"]["uncalibrated"]),
                     ("test set, calibrated", doc["test"]["calibrated"])]
    for label, sec in sections:
        s = sec["summary"]
        if not s.get("points"):
            continue
        worst = ", ".join(f"{w['model']} b{w['batch']} {_spct(w['error'])}" for w in s["e2e_worst"])
        rows.append([label, str(s["points"]), _pct(s["e2e_median_abs_error"]), _pct(s["e2e_within_10pct"]),
                     _pct(s["e2e_within_20pct"]), _pct(s["layer_median_abs_error"]), _pct(s["layer_within_20pct"]),
                     _pct(s["layer_time_within_20pct"]), worst])
        r = s.get("runs_median") or {}
        if r.get("max_runs", 0) > 1:
            worst = ", ".join(f"{w['model']} b{w['batch']} {_spct(w['error'])}" for w in r["e2e_worst"])
            rows.append([f"{label}, median of runs", str(r["points"]), _pct(r["e2e_median_abs_error"]),
                         _pct(r["e2e_within_10pct"]), _pct(r["e2e_within_20pct"]), "", "", "", worst])
    return rows


POINT_MEDIAN_HEAD = ["model", "batch", "runs", "measured ms (median)", "range of runs", "uncalibrated ms", "err",
                     "fitted ms", "err", "model held out ms", "err", "family held out ms", "err"]


def point_median_rows(doc: dict) -> list[list[str]]:
    """The fit set per (model, batch) against the median of its repeated runs."""
    from .calibrate import median_of_runs

    before = {(p["model"], p["batch"]): p for p in median_of_runs(doc["uncalibrated"]["points"])}
    cv = {(p["model"], p["batch"]): p for p in median_of_runs(doc["cross_validation"]["points"])}
    fam = {(p["model"], p["batch"]): p
           for p in median_of_runs((doc.get("cross_validation_family") or {}).get("points") or [])}
    rows = []
    for f in median_of_runs(doc["fitted"]["points"]):
        k = (f["model"], f["batch"])
        b, c, g = before[k], cv.get(k), fam.get(k)
        rows.append([f["model"], str(f["batch"]), str(f["runs"]), f"{f['measured_s'] * 1e3:.2f}",
                     f"{f['measured_min_s'] * 1e3:.2f}-{f['measured_max_s'] * 1e3:.2f}", f"{b['predicted_s'] * 1e3:.2f}",
                     _spct(b["error"]), f"{f['predicted_s'] * 1e3:.2f}", _spct(f["error"]),
                     f"{c['predicted_s'] * 1e3:.2f}" if c else "-", _spct(c["error"]) if c else "-",
                     f"{g['predicted_s'] * 1e3:.2f}" if g else "-", _spct(g["error"]) if g else "-"])
    return rows


SAMPLES_HEAD = ["kernel class", "samples x batches", "median |err| before", "median |err| fitted",
                "within 10% fitted", "worst fitted", "round spread (median)"]


def sample_rows(doc: dict) -> list[list[str]]:
    # round spread: slowest / fastest of detect's timing rounds - 1, the host's noise under the fit
    return [[c, str(d["points"]), _pct(d.get("before_median_abs_error")), _pct(d.get("fitted_median_abs_error")),
             _pct(d.get("fitted_within_10pct")), _pct(d.get("fitted_worst_abs_error")),
             _pct(d.get("round_spread_median"))]
            for c, d in (doc.get("kernel_samples") or {}).items()]


MEDIAN_HEAD = ["model (not in the fit)", "batch", "runs", "measured ms (median)", "range of runs", "uncalibrated ms",
               "err", "calibrated ms", "err"]


def median_rows(doc: dict) -> list[list[str]]:
    """The test set per (model, batch) against the median of its repeated runs."""
    from .calibrate import median_of_runs

    t = doc.get("test")
    if not t:
        return []
    before = {(p["model"], p["batch"]): p for p in median_of_runs(t["uncalibrated"]["points"])}
    rows = []
    for a in median_of_runs(t["calibrated"]["points"]):
        b = before[(a["model"], a["batch"])]
        rows.append([a["model"], str(a["batch"]), str(a["runs"]), f"{a['measured_s'] * 1e3:.2f}",
                     f"{a['measured_min_s'] * 1e3:.2f}-{a['measured_max_s'] * 1e3:.2f}", f"{b['predicted_s'] * 1e3:.2f}",
                     _spct(b["error"]), f"{a['predicted_s'] * 1e3:.2f}", _spct(a["error"])])
    return rows


SUMMARY_HEAD = ["predictions", "points", "median |err|", "within 10%", "within 20%", "layer median |err|",
                "layers within 20%", "layer time within 20%", "worst (model, batch)"]
POINT_HEAD = ["model", "batch", "measured ms", "uncalibrated ms", "err", "fitted ms", "err", "held-out ms", "err",
              "layer median |err| (held-out)"]


def point_rows(doc: dict) -> list[list[str]]:
    def index(key):
        return {(p["model"], p["batch"], i): p for i, p in enumerate(doc[key]["points"])}

    before = doc["uncalibrated"]["points"]
    fitted = doc["fitted"]["points"]
    cvp = {(p["model"], p["batch"], p["measured_s"]): p for p in doc["cross_validation"]["points"]}
    rows = []
    for b, f in zip(before, fitted):
        c = cvp.get((f["model"], f["batch"], f["measured_s"]))
        rows.append([f["model"], str(f["batch"]), f"{f['measured_s'] * 1e3:.2f}", f"{b['predicted_s'] * 1e3:.2f}",
                     _spct(b["error"]), f"{f['predicted_s'] * 1e3:.2f}", _spct(f["error"]),
                     f"{c['predicted_s'] * 1e3:.2f}" if c else "-", _spct(c["error"]) if c else "-",
                     _pct(c["layer_median_abs_error"]) if c else "-"])
    return rows


TEST_HEAD = ["model (not in the fit)", "batch", "measured ms", "uncalibrated ms", "err", "calibrated ms", "err",
             "layer median |err|"]


def test_rows(doc: dict) -> list[list[str]]:
    t = doc.get("test")
    if not t:
        return []
    rows = []
    for b, a in zip(t["uncalibrated"]["points"], t["calibrated"]["points"]):
        rows.append([a["model"], str(a["batch"]), f"{a['measured_s'] * 1e3:.2f}", f"{b['predicted_s'] * 1e3:.2f}",
                     _spct(b["error"]), f"{a['predicted_s'] * 1e3:.2f}", _spct(a["error"]),
                     _pct(a["layer_median_abs_error"])])
    return rows


def repeatability_lines(doc: dict) -> list[str]:
    """The fit set's (and the test set's) measurement repeatability, one line each."""
    from .calibrate import repeatability_line

    out = []
    for label, sec in (("fit set", doc["fitted"]), ("test set", (doc.get("test") or {}).get("calibrated"))):
        line = repeatability_line(((sec or {}).get("summary") or {}).get("runs_median", {}).get("repeatability"))
        if line:
            out.append(f"{label} {line}")
    return out


CLASS_HEAD = ["kernel class", "measured kernels", "predicted s", "measured s", "contribution to the mean error"]


def class_rows(doc: dict) -> list[list[str]]:
    """The test set's calibrated error by kernel class (calibrate.class_contributions), the
    classes that under-predict most first."""
    by = (((doc.get("test") or {}).get("calibrated") or {}).get("by_class")) or {}
    return [[c, str(r["layers"]), f"{r['predicted_s']:.4g}", f"{r['measured_s']:.4g}", f"{r['contribution'] * 100:+.1f} pp"]
            for c, r in by.items()]


CLASS_NOTE = ("per configuration, (predicted - measured) of the class / measured end to end, averaged over the test "
              "configurations; measured: the profiled kernels' times less the fitted profiler cost per event, rescaled "
              "to the p50")


def report_markdown(doc: dict) -> str:
    def table(head, rows):
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        lines += ["| " + " | ".join(r) + " |" for r in rows]
        return "\n".join(lines)

    p = doc["params"]
    eff = ", ".join(f"{k} {v:.3g}" for k, v in p["efficiency_by_class"].items() if k in p.get("fitted_classes", []))
    # with repeated runs the per-(model, batch) tables hold the median of the runs (every run is
    # in the JSON report); with one run each, the plain per-run tables
    pm = point_median_rows(doc)
    repeated = any(r[2] != "1" for r in pm)
    parts = [table(SUMMARY_HEAD, summary_rows(doc)), ""]
    rep = repeatability_lines(doc)
    parts += [f"- {line}" for line in rep] + ([""] if rep else [])
    parts += [table(POINT_MEDIAN_HEAD, pm) if repeated else table(POINT_HEAD, point_rows(doc)), ""]
    if doc.get("kernel_samples"):
        parts += ["Kernel samples (always fitted: in-sample figures):", "", table(SAMPLES_HEAD, sample_rows(doc)), ""]
    if doc.get("test"):
        med = median_rows(doc)
        parts += [table(MEDIAN_HEAD, med) if any(r[2] != "1" for r in med) else table(TEST_HEAD, test_rows(doc)), ""]
        if class_rows(doc):
            parts += [f"Test set error by kernel class ({CLASS_NOTE}):", "", table(CLASS_HEAD, class_rows(doc)), ""]
    parts += [
             f"Fitted: compute efficiency by class: {eff}; memory efficiency {p['memory_efficiency']:.3g}"
             + (" (kept from the input: too little DRAM-bound time to fit it)" if p.get("memory_efficiency_kept") else "")
             + f"; on-chip bandwidth {_bw(p.get('onchip_bandwidth_bytes_per_s'))}; "
             "per-layer overhead by class: " + (", ".join(f"{k} {v * 1e6:.1f} us" for k, v in p.get("layer_overhead_by_class_s", {}).items()) or "-")
             + f" (others: the input profile's, {(p.get('layer_overhead_s') or 0) * 1e6:.1f} us)."]
    parts += [f"- {n}" for n in doc.get("notes", [])]
    if doc.get("left_out_as_disturbed"):
        parts.append(f"- left out as disturbed (other processes > {doc['max_other_busy_pct']:.0f}% of the host): "
                     + "; ".join(doc["left_out_as_disturbed"]))
    return "\n".join(parts)


def _print_report(doc: dict) -> None:
    from rich.table import Table

    con = _console()
    t = Table(title=f"Calibration error ({doc['precision']}; end-to-end vs measured p50, per-layer vs kernel times)",
              title_justify="left")
    for h in SUMMARY_HEAD:
        t.add_column(h, justify="left" if h in ("predictions", "worst (model, batch)") else "right")
    for r in summary_rows(doc):
        t.add_row(*r)
    con.print(t)
    for line in repeatability_lines(doc):
        con.print(line, highlight=False)
    pm = point_median_rows(doc)
    repeated = any(r[2] != "1" for r in pm)
    t2 = Table(title="Per model and batch (held-out: fitted without that model)"
               + ("; median of the repeated runs (every run: --format json)" if repeated else ""), title_justify="left")
    for h in (POINT_MEDIAN_HEAD if repeated else POINT_HEAD):
        t2.add_column(h, justify="left" if h == "model" else "right")
    for r in (pm if repeated else point_rows(doc)):
        t2.add_row(*r)
    con.print(t2)
    if doc.get("kernel_samples"):
        ts = Table(title="Kernel samples (always fitted: in-sample figures)", title_justify="left")
        for h in SAMPLES_HEAD:
            ts.add_column(h, justify="left" if h == "kernel class" else "right")
        for r in sample_rows(doc):
            ts.add_row(*r)
        con.print(ts)
    if doc.get("test"):
        t3 = Table(title="Test set: models not used in the fit", title_justify="left")
        for h in TEST_HEAD:
            t3.add_column(h, justify="left" if h.startswith("model") else "right")
        for r in test_rows(doc):
            t3.add_row(*r)
        con.print(t3)
        med = median_rows(doc)
        if any(r[2] != "1" for r in med):
            t4 = Table(title="Test set against the median of repeated runs", title_justify="left")
            for h in MEDIAN_HEAD:
                t4.add_column(h, justify="left" if h.startswith("model") else "right")
            for r in med:
                t4.add_row(*r)
            con.print(t4)
        if class_rows(doc):
            t5 = Table(title=f"Test set error by kernel class ({CLASS_NOTE})", title_justify="left")
            for h in CLASS_HEAD:
                t5.add_column(h, justify="left" if h == "kernel class" else "right")
            for r in class_rows(doc):
                t5.add_row(*r)
            con.print(t5)
    p = doc["params"]
    con.print("fitted: " + ", ".join(f"{k} {v:.3g}" for k, v in p["efficiency_by_class"].items()
                                     if k in p.get("fitted_classes", []))
              + f"; memory {p['memory_efficiency']:.3g}" + (" (kept)" if p.get("memory_efficiency_kept") else "")
              + f"; on-chip {_bw(p.get('onchip_bandwidth_bytes_per_s'))}; overhead us/layer: "
              + (", ".join(f"{k} {v * 1e6:.1f}" for k, v in p.get("layer_overhead_by_class_s", {}).items()) or "-"),
              highlight=False)
    for n in doc.get("notes", []):
        con.print(f"note: {n}", highlight=False)
    for n in doc.get("left_out_as_disturbed", []):
        con.print(f"left out (disturbed): {n}", highlight=False)


def register(app: typer.Typer) -> None:
    """Add `estimate hw ...` and `estimate calibrate` to the main app."""
    app.add_typer(hw_app, name="hw")
    app.command("calibrate")(calibrate_command)
