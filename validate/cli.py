"""Typer command functions for ``estimate validate`` and ``estimate results``.

The lead registers them in estimator/cli.py:
``app.command("validate")(validate_command)``, ``app.command("results")(results_command)``.
Bad input raises UserError (exit 2 in main()); Ctrl-C exits 130 after saving what finished.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import List, Optional

import typer

from estimator.errors import UserError


def _int_list(text: str, option: str) -> list[int]:
    try:
        vals = [int(x) for x in text.replace(" ", "").split(",") if x]
    except ValueError:
        raise UserError(f"{option} {text!r}: expected comma-separated integers, e.g. 1,2,4,8") from None
    if not vals or any(v < 1 for v in vals):
        raise UserError(f"{option} {text!r}: expected integers >= 1")
    return list(dict.fromkeys(vals))


def validate_command(
    model: str = typer.Argument(..., help="Path to an .onnx file, or a built-in model name (resnet50, yolov3, bert-base, ...)."),
    batch: str = typer.Option("1", "--batch", "-b", help="Batch sizes, comma-separated (e.g. 1,2,4,8)."),
    precision: str = typer.Option("fp32", "--precision", "-p", help="fp32, fp16 or int8; comma-separated for several."),
    threads: Optional[str] = typer.Option(None, "--threads", "-t", help="Intra-op threads per configuration (comma-separated); default: usable cores."),
    instances: str = typer.Option("1", "--instances", help="Concurrent sessions (threads split among them); comma-separated."),
    iterations: Optional[int] = typer.Option(None, "--iterations", "-n", help="Timed runs per configuration and instance."),
    duration: Optional[float] = typer.Option(None, "--duration", help="Timed seconds per configuration (default 2 s unless --iterations)."),
    warmup: int = typer.Option(3, "--warmup", help="Warm-up runs per configuration, discarded."),
    rounds: int = typer.Option(4, "--rounds", help="Interleaving: timed runs are split into this many round-robin passes over all configurations."),
    out: Path = typer.Option(..., "--out", "-o", help="Directory for the results (JSON + CSV); earlier files are never overwritten."),
    provider: str = typer.Option("CPUExecutionProvider", "--provider", help="onnxruntime execution provider (e.g. CPUExecutionProvider, cuda)."),
    hw: Optional[str] = typer.Option(None, "--hw", help="Hardware profile (path or name): adds predictions and their error."),
    resolution: Optional[str] = typer.Option(None, "--resolution", help="Input resolution HxW for built-in vision models (e.g. 416x416)."),
    seq_len: Optional[int] = typer.Option(None, "--seq-len", help="Sequence length for built-in language models."),
    opt_level: str = typer.Option("all", "--opt-level", help="onnxruntime graph optimization: disable, basic, extended, all."),
    profile: bool = typer.Option(True, "--profile/--no-profile", help="Profiled pass for per-layer times."),
    profile_runs: int = typer.Option(10, "--profile-runs", help="Profiled runs per configuration (after one discarded cold run)."),
    scenario: Optional[str] = typer.Option(None, "--scenario", help="Run under MLPerf LoadGen: single-stream or offline."),
    min_duration: float = typer.Option(2.0, "--min-duration", help="LoadGen minimum duration in seconds (official: 600)."),
    min_query_count: int = typer.Option(64, "--min-query-count", help="LoadGen minimum query count (p99 needs >= 662)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar and no summary on stdout."),
    prompt: Optional[int] = typer.Option(None, "--prompt", help="A decoder with a KV cache: run a generation loop of this "
                                         "many prompt tokens (TTFT) ..."),
    generate: Optional[int] = typer.Option(None, "--generate", help="... and this many generated tokens (TPOT); "
                                           "--iterations sets the timed generations (default 5)."),
) -> None:
    """Measure MODEL with onnxruntime on this host and write versioned JSON + CSV results."""
    from . import modelprep, runner
    if prompt is not None or generate is not None:
        if prompt is None or generate is None:
            raise UserError("--prompt and --generate go together (prompt tokens, tokens to generate)")
        from . import generate as gen
        th = _int_list(threads, "--threads") if threads else [None]
        if len(th) > 1 or precision.strip().lower() != "fp32" or scenario or instances != "1" or duration is not None:
            raise UserError("a generation loop runs one thread count, fp32, one instance, no --scenario or --duration "
                            "(--iterations sets the timed generations)")
        jp, cp, doc = gen.run_generation(model, out, prompt=prompt, generate=generate, batches=_int_list(batch, "--batch"),
                                         threads=th[0], runs=5 if iterations is None else iterations, warmup=max(0, warmup), hw=hw,
                                         provider=provider, quiet=quiet)
        if not quiet:
            for c in doc["configurations"]:
                m, pr = c["llm"], c.get("prediction")
                typer.echo(f"batch {c['batch']}: TTFT p50 {m['ttft_s']['p50'] * 1e3:.2f} ms, TPOT p50 "
                           f"{m['tpot_s']['p50'] * 1e3:.2f} ms (p90 {m['tpot_s']['p90'] * 1e3:.2f} ms), "
                           f"{m['tokens_per_s_total']:.1f} tokens/s"
                           + (f"; predicted TTFT {pr['ttft_s'] * 1e3:.2f} ms ({pr['ttft_error']:+.0%}), TPOT "
                              f"{pr['tpot_s'] * 1e3:.2f} ms ({pr['tpot_error']:+.0%})" if pr else ""))
            for n in doc["notes"]:
                typer.echo(f"note: {n}")
            typer.echo(f"results: {jp}  {cp}")
        return
    if iterations is not None and duration is not None:
        raise UserError("give either --iterations or --duration, not both")
    if iterations is not None and iterations < 1:
        raise UserError("--iterations must be >= 1")
    if duration is not None and duration <= 0:
        raise UserError("--duration must be > 0")
    opts = runner.Options(
        batches=_int_list(batch, "--batch"),
        precisions=list(dict.fromkeys(p.strip().lower() for p in precision.split(",") if p.strip())),
        threads=_int_list(threads, "--threads") if threads else None,
        instances=_int_list(instances, "--instances"),
        iterations=iterations, duration_s=duration, warmup=max(0, warmup), rounds=max(1, rounds),
        provider=provider, opt_level=opt_level, profile=profile, profile_runs=max(1, profile_runs),
        hw=hw, resolution=modelprep.parse_resolution(resolution), seq_len=seq_len,
        scenario=scenario, min_duration_s=min_duration, min_query_count=min_query_count,
        quiet=quiet, argv=list(sys.argv),
    )
    try:
        outcome = runner.run_validation(model, out, opts)
    except KeyboardInterrupt:  # before the results file existed (model preparation)
        typer.echo("interrupted before any measurement was saved", err=True)
        raise typer.Exit(code=130) from None
    if outcome.interrupted:
        typer.echo(f"interrupted: partial results saved to {outcome.json_path}", err=True)
        raise typer.Exit(code=130)
    if not quiet:
        _print_run(outcome)


def _print_run(outcome) -> None:
    from rich.console import Console
    from rich.table import Table
    doc = outcome.doc
    t = Table(title=f"{doc['model']['name']} on {doc['host']['cpu']['model']} "
                    f"(onnxruntime {doc['engine']['version']}, {doc['engine']['provider']})")
    predicted = any((c.get("prediction") or {}).get("latency_s") is not None for c in doc["configurations"])
    heads = ["precision", "batch", "threads", "inst.", "p50 ms", "p90 ms", "p99 ms", "CV",
             "samples/s", "peak RSS MB", "layers mapped"] + (["pred. ms"] if predicted else []) + ["pred. err"]
    for h in heads:
        t.add_column(h, justify="right")
    disturbed = []
    for c in doc["configurations"]:
        lat = c.get("latency_s") or {}
        cov = (c.get("layer_totals") or {}).get("coverage")
        pr = c.get("prediction") or {}
        err = pr.get("error")
        other = (c.get("load") or {}).get("other_busy_pct_during")
        if other is not None and other > 20:
            disturbed.append(f"batch {c['batch']} ({other:.0f}%)")
        ms = lambda k: f"{lat[k] * 1e3:.2f}" if lat.get(k) is not None else "-"  # noqa: E731
        extra = [f"{pr['latency_s'] * 1e3:.2f}" if pr.get("latency_s") is not None else "-"] if predicted else []
        t.add_row(c["precision"], str(c["batch"]), str(c["threads"]), str(c["instances"]),
                  ms("p50") + (" *" if other is not None and other > 20 else ""), ms("p90"), ms("p99"),
                  f"{c.get('latency_cv', 0):.3f}" + (" !" if c.get("high_variance") else ""),
                  f"{c['throughput_per_s']:.1f}" if c.get("throughput_per_s") else "-",
                  f"{c['peak_rss_bytes'] / 2**20:.0f}",
                  f"{cov * 100:.1f}%" if cov is not None else "-",
                  *extra,
                  f"{err * 100:+.1f}%" if err is not None else "-")
    con = _console()
    con.print(t)
    if disturbed:
        con.print("warning: '*': other processes kept the host busy during the timed runs of "
                  + ", ".join(disturbed) + " (share of the host): those timings are disturbed; `estimate calibrate` "
                  "leaves such configurations out (--max-other-busy); re-run on a quieter host", highlight=False)
    few = min((c.get("runs") or 0) for c in doc["configurations"]) if doc["configurations"] else 0
    if few and few < 662:
        con.print(f"note: p99 from as few as {few} timed runs is an estimate (MLPerf requires >= 662 queries for a p99); "
                  "'!' marks a coefficient of variation above 0.1 (noisy host).", highlight=False)
    for n in doc.get("notes", []):
        con.print(f"note: {n}", highlight=False)
    con.print(f"results: {outcome.json_path}  {outcome.csv_path}", highlight=False)


def _console():
    """A rich console on stdout; wide enough for the tables when stdout is not a terminal."""
    from estimator.report import console
    return console()


def results_command(
    paths: list[str] = typer.Argument(..., help="Result JSON files or directories (searched recursively)."),
    format: str = typer.Option("table", "--format", "-f", help="table, csv, json or markdown."),
) -> None:
    """Summarize result files from any number of hosts: max throughput, min latency, errors.
    `estimate results import FILE... --out DIR` imports published measurements (MLPerf log
    summaries, points files) as results."""
    from . import results
    if format not in ("table", "csv", "json", "markdown"):
        raise UserError(f"--format {format!r}: choose table, csv, json or markdown")
    docs, notes = results.load_results(paths)
    for n in notes:
        typer.echo(n, err=True)
    if not docs:
        raise UserError(f"no validation results found in {', '.join(paths)}")
    rows = results.summarize(docs)
    out = results.render_summary(rows, format)
    if format == "table":
        _console().print(out)
    else:
        typer.echo(out)


def import_command(
    files: list[str] = typer.Argument(..., metavar="FILE", help="MLPerf mlperf_log_summary.txt files (or folders holding them) and/or "
                                             "published points files (JSON or CSV, like hwprofiles/published/points.json)."),
    out: Path = typer.Option(..., "--out", "-o", help="Directory to write the imported results to (created if missing)."),
    system: Optional[str] = typer.Option(None, "--system", help="System name (default: from the MLCommons folder "
                                         "layout <system>/<model>/<scenario>/)."),
    model: Optional[str] = typer.Option(None, "--model", help="Model name (default: from the folder layout)."),
    devices: Optional[int] = typer.Option(None, "--devices", help="Devices (accelerators, sockets) in the measured "
                                          "system (default: from the system name, e.g. '2x-...', '...x8', '2S'; else 1)."),
    precision: Optional[str] = typer.Option(None, "--precision", "-p", help="Precision of the run (MLPerf summaries "
                                            "do not state it; default: from the system name, else 'unknown')."),
    device: Optional[str] = typer.Option(None, "--device", help="The hardware profile the system's device is "
                                         "(default: a shipped profile name found in the system name)."),
) -> None:
    """Import published measurements (MLPerf log summaries, points files) as end-to-end results."""
    from estimator import hardware

    from . import imported, results

    if devices is not None and devices < 1:
        raise UserError(f"--devices {devices}: must be >= 1")
    if precision is not None and precision not in imported.PRECISIONS:
        raise UserError(f"--precision {precision!r}: choose one of {', '.join(imported.PRECISIONS)}")
    names = hardware.shipped_profile_names()
    when = results.utc_now().isoformat(timespec="seconds")
    docs, notes = [], []
    paths: list[Path] = []
    for f in files:   # a folder (an MLCommons results tree): every LoadGen summary under it
        p = Path(f)
        if p.is_dir():
            found = sorted(p.rglob("mlperf_log_summary.txt"))
            # a submission tree also holds accuracy runs and compliance re-runs (TEST01, ...):
            # not the performance result
            skip = [x for x in found if {"accuracy", "compliance"} & set(x.parts[len(p.parts):]) or
                    any(part.startswith("TEST0") for part in x.parts[len(p.parts):])]
            found = [x for x in found if x not in skip]
            if skip:
                notes.append((f, f"left out {len(skip)} accuracy or compliance summaries under it"))
            if not found:
                raise UserError(f"{f}: a folder without any performance mlperf_log_summary.txt")
            paths += found
        elif not p.is_file():
            raise UserError(f"{f}: no such file or directory")
        else:
            paths.append(p)
    for p in paths:
        f = str(p)
        try:
            text = p.read_text()
        except UnicodeDecodeError:
            raise UserError(f"{f}: not a text file (neither an MLPerf summary nor a points JSON/CSV)") from None
        except OSError as e:
            raise UserError(f"{f}: cannot read ({e.strerror or e})") from None
        if "MLPerf Results Summary" in text:
            d, n = imported.summary_doc(str(p), text, profiles=names, system=system, model=model, devices=devices,
                                        precision=precision, device=device, created_utc=when)
            docs.append(d)
        else:
            if any(x is not None for x in (system, model, devices, precision, device)):
                notes.append((f, "--system/--model/--devices/--precision/--device apply to MLPerf summaries only: a "
                                 "points file states them per point"))
            ds, n = imported.points_docs(str(p), text, profiles=names, created_utc=when)
            docs += ds
        notes += n
    out = results.check_out_dir(out.expanduser())   # only once every input has been read
    written = kept = 0
    for d in docs:
        j, c = out / f"{d['run_id']}.json", out / f"{d['run_id']}.csv"
        if j.exists():   # the same figure imported before (the run id is a hash of the source text)
            kept += 1
            continue
        results.write_results(d, j, c)
        written += 1
    for text, where in _grouped(notes).items():
        typer.echo(f"note: {text} ({where})", err=True)
    typer.echo(f"imported {len(docs)} result(s) into {out}: {written} written"
               + (f", {kept} already there (kept)" if kept else ""))


def campaign_command(
    plan: Path = typer.Argument(..., help="Campaign plan (YAML): models, batches, settings and targets (docs/campaigns.md)."),
    out: Path = typer.Option(..., "--out", "-o", help="Results folder: DIR/<target>/*.json, DIR/campaign.yaml; a rerun "
                             "into it skips what is done."),
    ray: Optional[str] = typer.Option(None, "--ray", help="Run the targets with resources on a Ray cluster: auto (the "
                                      "cluster of this machine's `ray start`) or its ADDRESS (host:port)."),
    target: Optional[List[str]] = typer.Option(None, "--target", help="Run only this target (repeatable)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars."),
) -> None:
    """Run a plan's measurements on local and Ray targets into one results folder (resumable)."""
    from . import campaign, campaign_plan
    p = campaign_plan.load_plan(plan)
    if ray is not None and not ray.strip():
        raise UserError("--ray: give auto or a cluster ADDRESS (host:port)")
    outcome = campaign.run_campaign(p, out, ray_address=ray, targets=target, quiet=quiet)
    for line in campaign.summary_lines(outcome):
        typer.echo(line)
    typer.echo(f"state: {out / campaign.STATE_FILE}; summary: estimate results {out}")
    if outcome.interrupted:
        typer.echo("interrupted: what finished is saved; rerun the same command to run the rest", err=True)
        raise typer.Exit(code=130)
    failed = outcome.count("failed")
    if failed:
        typer.echo(f"{failed} group(s) failed (above); rerun the same command to retry them", err=True)
        raise typer.Exit(code=1)


def _grouped(notes: list[tuple[str, str]]) -> dict[str, str]:
    """{note: the files it applies to}: one line per kind of note, not one per file."""
    out: dict[str, list[str]] = {}
    for where, text in notes:
        out.setdefault(text, []).append(where)
    return {t: (ws[0] if len(ws) == 1 else f"{len(ws)} files: {ws[0]}, ...") for t, ws in out.items()}
