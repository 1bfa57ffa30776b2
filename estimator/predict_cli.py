"""CLI pieces that need a hardware profile: `estimate MODEL --hw P`, `compare`, `sweep`.

Documents are built by pure functions (prediction_document, compare_rows, sweep_rows) that the
tests and scripts call directly; the commands only parse options and print.
"""

from __future__ import annotations

import json
import math
import re
import sys
from typing import TYPE_CHECKING, Any, Callable, List, Optional, Sequence

import numpy as np
from rich.console import Console
from rich.table import Table

from . import api, report, roofline
from .analyze import CostTable
from .errors import UserError
from .fsutil import ordinary_mode
from .report import bytes_str, seconds_str, si

if TYPE_CHECKING:  # typer is imported where commands are registered, not on the analysis path
    import typer

# ----------------------------------------------------------------------------- documents


def _f(x: Any) -> Any:
    """numpy scalars -> plain floats/ints/bools; nan/inf -> None (JSON has no nan)."""
    if isinstance(x, (np.bool_, bool)):
        return bool(x)
    if isinstance(x, (np.integer,)):
        return int(x)
    if isinstance(x, (np.floating, float)):
        return None if not math.isfinite(float(x)) else float(x)
    return x


def hardware_dict(pred: roofline.Prediction) -> dict[str, Any]:
    p = pred.hardware
    return {
        "name": p.name, "origin": p.origin, "source": p.source, "precision": pred.precision,
        "clock_hz": p.clock_hz, "mac_units": dict(p.mac_units),
        "peak_macs_per_s": p.peak_macs_per_s(pred.precision),
        "sram_bytes": p.sram_bytes, "dram_bandwidth_bytes_per_s": p.dram_bandwidth_bytes_per_s,
        "onchip_bandwidth_bytes_per_s": p.onchip_bandwidth_bytes_per_s,
        "ridge_point_macs_per_byte": p.ridge_point(pred.precision),
        "mac_array": ({"rows": p.mac_array.rows, "cols": p.mac_array.cols} if p.mac_array else None),
        "layer_overhead_s": p.layer_overhead_s,
        "layer_overhead_by_class_s": dict(p.layer_overhead_by_class_s),
        "efficiency": {"compute": p.efficiency.compute, "memory": p.efficiency.memory,
                       "by_layer_class": dict(p.efficiency.by_layer_class)},
        "winograd": pred.winograd,
        "calibrated": calibrated(p),
    }


def predictions_list(pred: roofline.Prediction) -> list[dict[str, Any]]:
    bf = pred.bound_fraction
    energy = pred.energy_per_inference_j
    spilled = pred.spilling_layers
    out = []
    for i, b in enumerate(pred.batches):
        out.append({
            "batch": int(b), "latency_s": _f(pred.latency_s[i]), "throughput_per_s": _f(pred.throughput_per_s[i]),
            "dram_bytes": _f(pred.dram_bytes_per_inference[i]),
            "dram_bytes_per_batch": _f(pred.raw.dram_bytes[0, i].sum()),
            "dram_bandwidth_needed_bytes_per_s": _f(pred.dram_bandwidth_needed[i]),
            "mac_utilization": _f(pred.mac_utilization[i]),
            "bound_fraction": {"compute": _f(bf["compute"][i]), "memory": _f(bf["memory"][i])},
            "layers_spilling": int(spilled[i]),
            "sub_batch": int(pred.sub_batch[i]), "passes": int(-(-int(b) // int(pred.sub_batch[i]))),
            "weights_resident": bool(pred.weights_resident[i]),
            "energy_per_inference_j": _f(energy[i]) if energy is not None else None,
        })
    return out


def winograd_dict(pred: roofline.Prediction, base: roofline.Prediction | None) -> dict[str, Any]:
    if base is None:
        return {"mode": pred.winograd}
    sram = pred.hardware.sram_bytes
    return {
        "mode": pred.winograd,
        "weights": (pred.hardware.winograd.weights if pred.hardware.winograd else "transformed"),
        "candidate_layers": int(pred.layers.winograd.sum()),
        "candidate_mac_share": _f(pred.layers.macs[pred.layers.winograd].sum() / max(pred.layers.macs.sum(), 1)),
        "mac_reduction": _f(base.raw.macs[0].sum() / max(pred.raw.macs[0].sum(), 1)),
        "speedup": [_f(x) for x in base.latency_s / pred.latency_s],
        "weight_bytes_before": _f(base.weight_bytes), "weight_bytes_after": _f(pred.weight_bytes),
        "weight_bytes_growth": _f(pred.weight_bytes / base.weight_bytes) if base.weight_bytes else None,
        "weights_fit_sram_before": base.weight_bytes <= sram, "weights_fit_sram_after": pred.weight_bytes <= sram,
        "dram_bandwidth_growth": [_f(a / b) if b else None for a, b in zip(pred.dram_bandwidth_needed, base.dram_bandwidth_needed)],
        "batches": [int(b) for b in pred.batches],
    }


def prediction_document(table: CostTable, pred: roofline.Prediction, base: roofline.Prediction | None,
                        source: str = "") -> dict[str, Any]:
    """The analysis document plus hardware, predictions, winograd and per-layer predictions."""
    doc = report.analysis_document(table, source=source)
    doc["hardware"] = hardware_dict(pred)
    doc["weights_fit_sram"] = pred.weights_fit_sram
    doc["excluded_layers"] = pred.excluded_layers
    doc["predictions"] = predictions_list(pred)
    doc["winograd"] = winograd_dict(pred, base)
    raw = pred.raw
    for i, layer in enumerate(doc["layers"]):
        layer["predicted"] = {
            "time_s": [_f(x) for x in raw.time_s[0, :, i]],
            "bound": ["none" if t <= 0 else "compute" if c else "memory"
                      for c, t in zip(raw.compute_bound[0, :, i], raw.time_s[0, :, i])],
            "utilization": _f(raw.util[0, i]),
            "dram_bytes": [_f(x) for x in raw.dram_bytes[0, :, i]],
            "macs_after_winograd": _f(raw.macs[0, i]),
        }
    return doc


# ----------------------------------------------------------------------------- terminal


def render_prediction(console: Console, table: CostTable, pred: roofline.Prediction,
                      base: roofline.Prediction | None, layers: bool, top: int = 8) -> None:
    hwp = pred.hardware
    t = table.totals
    console.print(f"[bold]{table.model}[/bold] on [bold]{hwp.name}[/bold] ({pred.precision}, Winograd {pred.winograd}); "
                  f"peak {si(hwp.peak_macs_per_s(pred.precision), 'MAC/s')}, SRAM {bytes_str(hwp.sram_bytes)}, "
                  f"DRAM {si(hwp.dram_bandwidth_bytes_per_s, 'B/s')}"
                  + (f", on-chip {si(hwp.onchip_bandwidth_bytes_per_s, 'B/s')} (contraction layers' activation "
                     "traffic, part of their compute time)" if hwp.onchip_bandwidth_bytes_per_s else ""))
    warn = report.incomplete_warning(t)
    if warn:
        console.print(f"[bold red]{warn}[/bold red]", soft_wrap=True)
    console.print(f"[dim]{report.HEADER} Roofline: layers run one after another; see docs/roofline.md.[/dim]")
    for n in table.notes:
        console.print(f"[yellow]note:[/yellow] {n}")
    stored = t.weight_bytes
    wline = f"weights {bytes_str(stored)}"
    if pred.winograd != "off" and abs(pred.weight_bytes - stored) > 0.5:
        wline += f" ({bytes_str(pred.weight_bytes)} stored after Winograd {pred.winograd.upper()})"
    res = pred.weights_resident
    if not pred.weights_fit_sram:
        where = f"do not fit in the {bytes_str(hwp.sram_bytes)} SRAM: streamed from DRAM once per pass"
    elif res.all():
        where = "pinned in SRAM (read from DRAM once, amortized)"
    elif not res.any() and hwp.weight_residency == "cache":
        where = ("fit in the cache but are read from DRAM every pass: a cache does not keep them from one inference "
                 "to the next (weight_residency: cache, docs/roofline.md)")
    elif not res.any():
        where = "fit in SRAM but are streamed: pinning them would push activations to DRAM"
    else:
        where = f"pinned in SRAM at batch {', '.join(str(b) for b, r in zip(pred.batches, res) if r)}, streamed at the others (for each batch the faster of the two; docs/roofline.md)"
    console.print(f"MACs {si(t.macs)} per sample, params {si(t.params)}, {wline}, {where}; "
                  f"largest activation {bytes_str(t.max_activation_bytes)}, peak live activations {bytes_str(t.peak_activation_bytes)}",
                  soft_wrap=True)
    if not calibrated(hwp):
        console.print(f"[yellow]note:[/yellow] '{hwp.name}' is uncalibrated (efficiencies 1): these are "
                      "ideal-peak figures; real devices are slower, often several times at batch 1. "
                      "Calibrate with measurements (docs/calibration.md).", soft_wrap=True)
    elif "published point" in str(hwp.notes.get("efficiency", "")):
        console.print(f"[yellow]note:[/yellow] '{hwp.name}' is fitted to published measurements of one model "
                      "(docs/devices.md): other models and batches are estimates of the roofline.", soft_wrap=True)
    report._render_unsupported(console, t.unsupported_ops, t.uncosted_ops)
    if pred.excluded_layers:
        console.print(f"[bold red]{pred.excluded_layers} layer(s) without a cost are left out of the predicted time.[/bold red]")
    bt = Table(title="Predicted per batch (estimates from the roofline model)", title_justify="left")
    for c in ("batch", "runs as", "latency", "throughput/s", "DRAM/inference", "DRAM BW needed", "MAC util", "compute-bound",
              "memory-bound", "spilling layers"):
        bt.add_column(c, justify="right")
    bf = pred.bound_fraction
    spilled = pred.spilling_layers
    for i, b in enumerate(pred.batches):
        sb = int(pred.sub_batch[i])
        bt.add_row(str(b), f"{-(-int(b) // sb)} x {sb}", seconds_str(pred.latency_s[i]), f"{pred.throughput_per_s[i]:,.1f}",
                   bytes_str(pred.dram_bytes_per_inference[i]), si(pred.dram_bandwidth_needed[i], "B/s"),
                   f"{100 * pred.mac_utilization[i]:.0f}%", f"{100 * bf['compute'][i]:.0f}%", f"{100 * bf['memory'][i]:.0f}%",
                   str(int(spilled[i])))
    console.print(bt)
    if np.any(pred.sub_batch != pred.batches):
        console.print("[dim]runs as: passes x sub-batch; a batch whose activations spill out of SRAM runs as smaller "
                      "sub-batches when that is faster (docs/roofline.md).[/dim]", soft_wrap=True)
    e = pred.energy_per_inference_j
    if e is not None:
        console.print("Energy per inference: " + ", ".join(f"b{b}: {x * 1e3:.3g} mJ" for b, x in zip(pred.batches, e)))
    if base is not None:
        w = winograd_dict(pred, base)
        console.print(f"Winograd {pred.winograd} vs off: speedup {w['speedup'][0]:.2f}x at batch {pred.batches[0]}, "
                      f"{w['speedup'][-1]:.2f}x at batch {pred.batches[-1]}; MACs /{w['mac_reduction']:.2f}; "
                      f"weights {bytes_str(w['weight_bytes_before'])} -> {bytes_str(w['weight_bytes_after'])} "
                      f"(x{w['weight_bytes_growth'] or 0:.2f}), fit in SRAM: {'yes' if w['weights_fit_sram_before'] else 'no'} -> "
                      f"{'yes' if w['weights_fit_sram_after'] else 'no'}; DRAM bandwidth x{w['dram_bandwidth_growth'][0] or 0:.2f} "
                      f"at batch {pred.batches[0]}")
    raw = pred.raw
    b0 = 0
    names = pred.layers.names
    if layers:
        lt = Table(title=f"Layers (times at batch {pred.batches[0]} and {pred.batches[-1]})", title_justify="left")
        for c in ("#", "layer", "op", "MACs", f"time b{pred.batches[0]}", f"time b{pred.batches[-1]}", "bound", "util", f"DRAM b{pred.batches[0]}", "wino"):
            lt.add_column(c, justify="left" if c in ("layer", "op", "bound") else "right")
        for i, name in enumerate(names):
            tm = raw.time_s[0, b0, i]
            lt.add_row(str(i), name, pred.layers.op_types[i], si(raw.macs[0, i]), seconds_str(tm), seconds_str(raw.time_s[0, -1, i]),
                       _bound(raw, i, b0), _util_str(raw, i), bytes_str(raw.dram_bytes[0, b0, i]),
                       "yes" if pred.layers.winograd[i] else "")
        console.print(lt)
    else:
        t0 = raw.time_s[0, b0]
        cb = raw.compute_bound[0, b0] & (t0 > 0)
        mb = ~raw.compute_bound[0, b0] & (t0 > 0)
        console.print(f"Bound per layer at batch {pred.batches[0]}: {int(cb.sum())} compute-bound, {int(mb.sum())} memory-bound, "
                      f"{int((t0 <= 0).sum())} free (views, fused epilogues, uncosted); --layers lists every layer with its bound.",
                      soft_wrap=True)
        order = np.argsort(-raw.time_s[0, b0])[:top]
        ht = Table(title=f"Heaviest layers by predicted time at batch {pred.batches[0]} (--layers for all)", title_justify="left")
        for c in ("layer", "op", "time", "% of latency", "bound", "util", "MACs"):
            ht.add_column(c, justify="left" if c in ("layer", "op", "bound") else "right")
        lat = pred.latency_s[b0]
        for i in order:
            if raw.time_s[0, b0, i] <= 0:
                continue
            ht.add_row(names[i], pred.layers.op_types[i], seconds_str(raw.time_s[0, b0, i]),
                       f"{100 * raw.time_s[0, b0, i] / lat:.1f}", _bound(raw, i, b0), _util_str(raw, i), si(raw.macs[0, i]))
        console.print(ht)


def calibrated(p) -> bool:
    """A profile carries efficiencies other than the ideal defaults (calibration writes them);
    a per-layer overhead alone is a device property, not a calibration."""
    e = p.efficiency
    return bool(e.compute != 1.0 or e.memory != 1.0 or len(e.by_layer_class) or p.onchip_bandwidth_bytes_per_s)


def _util_str(raw: roofline.RawPrediction, i: int) -> str:
    """Utilization of the MAC array; '-' for layers that do no MACs."""
    return f"{100 * raw.util[0, i]:.0f}%" if raw.macs[0, i] > 0 else "-"


def _bound(raw: roofline.RawPrediction, i: int, b: int) -> str:
    if raw.time_s[0, b, i] <= 0:
        return "-"
    return "compute" if raw.compute_bound[0, b, i] else "memory"


def prediction_csv(doc: dict[str, Any]) -> str:
    cols = ["batch", "latency_s", "throughput_per_s", "dram_bytes", "dram_bandwidth_needed_bytes_per_s", "mac_utilization",
            "compute_bound_fraction", "memory_bound_fraction", "layers_spilling"]
    rows = [{**p, "compute_bound_fraction": p["bound_fraction"]["compute"], "memory_bound_fraction": p["bound_fraction"]["memory"]}
            for p in doc["predictions"]]
    return report.rows_to_csv(rows, cols)


def prediction_markdown(doc: dict[str, Any], with_layers: bool) -> str:
    md = report.analysis_markdown(doc, with_layers=False)
    h = doc["hardware"]
    rows = [[p["batch"], seconds_str(p["latency_s"]), f"{p['throughput_per_s']:,.1f}", bytes_str(p["dram_bytes"]),
             si(p["dram_bandwidth_needed_bytes_per_s"], "B/s"), f"{100 * p['mac_utilization']:.0f}%",
             f"{100 * p['bound_fraction']['compute']:.0f}%"] for p in doc["predictions"]]
    from tabulate import tabulate

    md += f"\n## On {h['name']} ({h['precision']}, Winograd {h['winograd']})\n\n"
    md += tabulate(rows, headers=["batch", "latency", "throughput/s", "DRAM/inference", "DRAM BW needed", "MAC util", "compute-bound"], tablefmt="github") + "\n"
    if with_layers:
        lrows = [[l["name"], l["op_type"], l["macs"], seconds_str(l["predicted"]["time_s"][0]), l["predicted"]["bound"][0],
                  f"{100 * (l['predicted']['utilization'] or 0):.0f}%"] for l in doc["layers"]]
        md += "\n" + tabulate(lrows, headers=["layer", "op", "MACs", "time (first batch)", "bound", "util"], tablefmt="github") + "\n"
    return md


# ----------------------------------------------------------------------------- plotting


def plot(path: str, pred: roofline.Prediction) -> None:
    """Roofline (layers: MACs per DRAM byte vs attained MAC/s, both roofs) and throughput vs batch."""
    if not path.lower().endswith((".png", ".svg")):
        raise UserError(f"--plot {path}: the file must end in .png or .svg")
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise UserError("--plot needs matplotlib: pip install 'estimate[plot]'") from None
    raw = pred.raw
    b0 = 0
    peak = pred.hardware.peak_macs_per_s(pred.precision)
    bw = pred.hardware.dram_bandwidth_bytes_per_s
    t = raw.time_s[0, b0]
    ok = t > 0
    macs = raw.macs[0] * pred.batches[b0]
    dram = raw.dram_bytes[0, b0]
    ai = np.where(dram > 0, macs / np.maximum(dram, 1e-30), np.nan)
    attained = np.where(ok, macs / np.where(ok, t, 1), np.nan)
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(12, 4.8))
    finite = ok & np.isfinite(ai) & (macs > 0)
    lo = max(np.nanmin(ai[finite]) / 4 if finite.any() else 0.1, 1e-3)
    hi = max(np.nanmax(ai[finite]) * 4 if finite.any() else 1e3, peak / bw * 4)
    x = np.logspace(np.log10(lo), np.log10(hi), 200)
    a1.loglog(x, np.minimum(peak, bw * x), "k-", label="roof: min(peak, AI x DRAM BW)")
    cb = raw.compute_bound[0, b0]
    a1.scatter(ai[finite & cb], attained[finite & cb], s=12, c="tab:blue", label="compute-bound layers")
    a1.scatter(ai[finite & ~cb], attained[finite & ~cb], s=12, c="tab:red", label="memory-bound layers")
    resident = (macs > 0) & ok & ~np.isfinite(ai)
    if resident.any():
        a1.scatter(np.full(resident.sum(), hi), attained[resident], s=12, marker=">", c="tab:green", label="no DRAM traffic (at right edge)")
    a1.set_xlabel("arithmetic intensity (MACs per DRAM byte)")
    a1.set_ylabel("attained MAC/s")
    a1.set_title(f"{pred.model} on {pred.hardware.name}, batch {pred.batches[b0]}")
    a1.legend(fontsize=8)
    a2.plot(pred.batches, pred.throughput_per_s, "o-")
    a2.set_xscale("log", base=2)
    a2.set_xlabel("batch")
    a2.set_ylabel("throughput (samples/s)")
    a2.set_title("throughput vs batch (estimate)")
    fig.tight_layout()
    import os
    import tempfile

    d = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=d, suffix=os.path.splitext(path)[1])
    ordinary_mode(fd)
    os.close(fd)
    try:
        fig.savefig(tmp)
        os.replace(tmp, path)
    finally:
        plt.close(fig)
        if os.path.exists(tmp):
            os.unlink(tmp)


# ----------------------------------------------------------------------------- analyze --hw


def run(*, model: str, hw: str, batches: Optional[list[int]], input_shapes, resolution, seq_len, precision,
        winograd, layers: bool, fmt: str, plot: Optional[str], emit: Callable[[str], None], console: Console,
        past: Optional[int] = None) -> None:
    table, pred, base = api.estimate(model, hw, batches=batches, precision=precision, winograd=winograd,
                                     input_shapes=input_shapes, resolution=resolution, seq_len=seq_len, past=past)
    if plot:
        globals()["plot"](plot, pred)
    warn = report.incomplete_warning(table.totals, "in the document")
    if warn and fmt in ("json", "csv"):
        sys.stderr.write(f"estimate: {warn}\n")  # stdout stays a clean document
    if fmt == "json":
        emit(json.dumps(prediction_document(table, pred, base, source=model), indent=1))
    elif fmt == "csv":
        emit(prediction_csv(prediction_document(table, pred, base, source=model)))
    elif fmt == "markdown":
        emit(prediction_markdown(prediction_document(table, pred, base, source=model), layers))
    else:
        render_prediction(console, table, pred, base, layers)


# ----------------------------------------------------------------------------- compare


def split_model_spec(spec: str) -> tuple[str, tuple[int, int] | None]:
    """'yolov3@1088x1920' -> ('yolov3', (1088, 1920))."""
    if "@" in spec:
        name, res = spec.rsplit("@", 1)
        return name, api.parse_resolution(res, f"{spec}: the resolution after '@'")
    return spec, None


def _ratio(a: float, b: float) -> float:
    return float(a) / float(b) if b > 0 else float("nan")


def compare_rows(specs: Sequence[str], hw: str, *, precision: str | None = None, batches: Sequence[int] | None = None,
                 winograd: str | None = None) -> list[dict[str, Any]]:
    """One row of stress figures per model (columns: docs/json-schema.md, `estimate compare`)."""
    profile = api.load_profile(hw)
    if batches is not None and 1 not in batches:
        batches = sorted({1, *batches})  # the *_b1 columns are batch 1
    rows = []
    for spec in specs:
        name, res = split_model_spec(spec)
        table, pred, base = api.estimate(name, profile, batches=batches, precision=precision, winograd=winograd, resolution=res)
        if base is None:  # what F2 would give, when the run itself has no Winograd
            _, wpred, _ = api.estimate(name, profile, batches=batches, precision=precision, winograd="f2", resolution=res)
            wgain = _ratio(pred.latency_s[0], wpred.latency_s[0])
            wmode = "f2 what-if"
        else:
            wgain = _ratio(base.latency_s[0], pred.latency_s[0])
            wmode = pred.winograd
        t = table.totals
        bi = pred.best_batch_index()
        spill = pred.spilling_layers[0]
        rows.append({
            "model": spec, "inputs": ", ".join("x".join(map(str, i.shape or ())) for i in table.inputs),
            "precision": pred.precision, "macs": t.macs, "params": t.params, "weight_bytes": pred.weight_bytes,
            "max_activation_bytes": t.max_activation_bytes, "max_activation_tensor": t.max_activation_tensor,
            "peak_activation_bytes": t.peak_activation_bytes,
            "weights_fit_sram": pred.weight_bytes <= profile.sram_bytes,
            "max_activation_fits_sram": t.max_activation_bytes <= profile.sram_bytes,
            "layers_spilling_b1": int(spill), "latency_b1_s": _f(pred.latency_s[0]),
            "best_throughput_per_s": _f(pred.throughput_per_s[bi]), "best_batch": int(pred.batches[bi]),
            "batch_for_90pct": pred.batch_for_fraction(0.9),
            "dram_bandwidth_needed_bytes_per_s": _f(pred.dram_bandwidth_needed[bi]),
            "winograd": pred.winograd,  # the mode the figures above use
            "winograd_gain_mode": wmode, "winograd_gain_b1": _f(wgain),  # vs off; "f2 what-if" when the run is off
            "unsupported_ops": sum(t.unsupported_ops.values()),
        })
    return rows


COMPARE_COLUMNS = ["model", "macs", "params", "weight_bytes", "max_activation_bytes", "peak_activation_bytes",
                   "weights_fit_sram", "layers_spilling_b1", "latency_b1_s", "best_throughput_per_s", "best_batch",
                   "batch_for_90pct", "dram_bandwidth_needed_bytes_per_s", "winograd_gain_b1"]


def _compare_pretty(r: dict[str, Any]) -> list[str]:
    return [r["model"], si(r["macs"]), si(r["params"]), bytes_str(r["weight_bytes"]), bytes_str(r["max_activation_bytes"]),
            bytes_str(r["peak_activation_bytes"]), "yes" if r["weights_fit_sram"] else "no", str(r["layers_spilling_b1"]),
            seconds_str(r["latency_b1_s"]), f"{r['best_throughput_per_s']:,.1f}", str(r["best_batch"]),
            str(r["batch_for_90pct"]), si(r["dram_bandwidth_needed_bytes_per_s"], "B/s"), f"{r['winograd_gain_b1']:.2f}x ({r['winograd_gain_mode']})"]


def register(app: "typer.Typer") -> None:
    import typer

    @app.command("compare")
    def compare_cmd(
        models: List[str] = typer.Argument(..., help="Models to compare: paths or built-in names; NAME@HxW sets a resolution (yolov3@1088x1920)."),
        hw: str = typer.Option(..., "--hw", help="Hardware profile (path or shipped name)."),
        precision: Optional[str] = typer.Option(None, "--precision", "-p", help="fp32|fp16|bf16|int8 (default: fp32 if the profile has it)."),
        batch: Optional[str] = typer.Option(None, "--batch", "-b", help="Batch sweep, e.g. 1,2,4,8,16,32,64 (default)."),
        winograd: Optional[str] = typer.Option(None, "--winograd", help="off|f2|f4 (default: the profile's)."),
        fmt: str = typer.Option("table", "--format", "-f", help="table | json | csv | markdown."),
    ) -> None:
        """Stress table: several models side by side on one profile."""
        _check_fmt(fmt)
        rows = compare_rows(models, hw, precision=precision, batches=api.parse_batches(batch), winograd=winograd)
        if fmt == "json":
            typer.echo(json.dumps({"schema_version": report.SCHEMA_VERSION, "hardware": hw, "models": rows}, indent=1))
        elif fmt == "csv":
            typer.echo(report.rows_to_csv(rows, list(rows[0].keys())), nl=False)
        else:
            heads = ["model", "MACs", "params", "weights", "largest act.", "peak act.", "weights fit SRAM", "spilling layers b1",
                     "latency b1", "best thr./s", "at batch", "batch for 90%", "DRAM BW needed", "Winograd gain b1 (mode)"]
            if fmt == "markdown":
                from tabulate import tabulate

                typer.echo(tabulate([_compare_pretty(r) for r in rows], headers=heads, tablefmt="github"))
            else:
                t = Table(title=f"Stress comparison on {hw} (estimates; MAC = multiply-accumulate)", title_justify="left")
                for h in heads:
                    t.add_column(h, justify="left" if h == "model" else "right")
                for r in rows:
                    t.add_row(*_compare_pretty(r))
                report.console().print(t)

    @app.command("sweep")
    def sweep_cmd(
        model: str = typer.Argument(..., help="Model path or built-in name."),
        hw: str = typer.Option(..., "--hw", help="Base hardware profile (path or shipped name)."),
        vary: List[str] = typer.Option(..., "--vary", help="KEY=VALUES: a list (1MB,2MB), a doubling range (1MB..64MB) or n log-spaced points (1e9..1e11:9). Keys: sram_bytes, dram_bandwidth_bytes_per_s, onchip_bandwidth_bytes_per_s, mac_units (MACs per cycle at the chosen --precision), clock_hz, layer_overhead_s."),
        batch: Optional[str] = typer.Option("1", "--batch", "-b", help="Batch size(s)."),
        precision: Optional[str] = typer.Option(None, "--precision", "-p", help="fp32|fp16|bf16|int8."),
        winograd: Optional[str] = typer.Option(None, "--winograd", help="off|f2|f4."),
        resolution: Optional[str] = typer.Option(None, "--resolution", "-r", help="HxW of the image input."),
        fmt: str = typer.Option("table", "--format", "-f", help="table | json | csv | markdown."),
        top: int = typer.Option(20, "--top", help="Rows shown in the table format (all rows in csv/json)."),
    ) -> None:
        """Design-space sweep: one model over a grid of hardware variants (array arithmetic)."""
        _check_fmt(fmt)
        axes = dict(parse_vary(v) for v in vary)
        rows = sweep_rows(model, hw, axes, batches=api.parse_batches(batch) or [1], precision=precision,
                          winograd=winograd, resolution=api.parse_resolution(resolution))
        cols = list(rows[0].keys())
        if fmt == "json":
            typer.echo(json.dumps({"schema_version": report.SCHEMA_VERSION, "model": model, "hardware": hw, "grid": rows}, indent=1))
        elif fmt == "csv":
            typer.echo(report.rows_to_csv(rows, cols), nl=False)
        elif fmt == "markdown":
            typer.echo(report.markdown_table(rows, cols))
        else:
            shown = min(top, len(rows))
            t = Table(title=f"{model} on {hw} variants: the best {shown} of {len(rows)} by latency"
                            f"{' (--top N for more; csv/json have all)' if shown < len(rows) else ''} (estimates)",
                      title_justify="left")
            for c in cols:
                t.add_column(c, justify="right")
            for r in sorted(rows, key=lambda r: r["latency_s"])[:top]:
                t.add_row(*[_pretty_cell(c, r[c]) for c in cols])
            report.console().print(t)


def _check_fmt(fmt: str) -> None:
    if fmt not in ("table", "json", "csv", "markdown"):
        raise UserError(f"--format: unknown '{fmt}' (use table, json, csv or markdown)")


def _pretty_cell(col: str, v: Any) -> str:
    if col.endswith("bytes_per_s") and isinstance(v, (int, float)):
        return si(v, "B/s")
    if col.endswith("_per_s") and isinstance(v, (int, float)):
        return f"{v:,.1f}/s"
    if col.endswith("_s") and isinstance(v, float):
        return seconds_str(v)
    if "bytes" in col and isinstance(v, (int, float)):
        return bytes_str(v)
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


_UNITS = {"": 1.0, "k": 1e3, "m": 1e6, "g": 1e9, "t": 1e12, "kb": 1e3, "mb": 1e6, "gb": 1e9, "tb": 1e12,
          "kib": 2.0 ** 10, "mib": 2.0 ** 20, "gib": 2.0 ** 30, "tib": 2.0 ** 40, "b": 1.0,
          "gb/s": 1e9, "mb/s": 1e6, "tb/s": 1e12, "ghz": 1e9, "mhz": 1e6}


def parse_quantity(text: str, what: str) -> float:
    if re.fullmatch(r"\s*-\s*[0-9.].*", text):
        raise UserError(f"{what}: '{text}' is negative; sizes, rates and times must be positive")
    m = re.fullmatch(r"\s*([0-9.]+(?:e[+-]?[0-9]+)?)\s*([a-zA-Z/]*)\s*", text)
    if not m or m.group(2).lower() not in _UNITS:
        raise UserError(f"{what}: '{text}' is not a number with an optional unit (k, M, G, KB, MiB, GB/s, GHz)")
    return float(m.group(1)) * _UNITS[m.group(2).lower()]


def parse_vary(text: str) -> tuple[str, list[float]]:
    """'sram_bytes=1MiB..64MiB' -> ('sram_bytes', [1 MiB, 2 MiB, ..., 64 MiB])."""
    if "=" not in text:
        raise UserError(f"--vary '{text}': expected KEY=VALUES, e.g. sram_bytes=1MiB..64MiB")
    key, spec = text.split("=", 1)
    what = f"--vary {key}"
    if ".." in spec:
        lo_s, hi_s = spec.split("..", 1)
        n = None
        if ":" in hi_s:
            hi_s, n_s = hi_s.rsplit(":", 1)
            try:
                n = int(n_s)
            except ValueError:
                raise UserError(f"{what}: ':{n_s}' must be a number of points") from None
        lo, hi = parse_quantity(lo_s, what), parse_quantity(hi_s, what)
        if lo <= 0 or hi < lo:
            raise UserError(f"{what}: range {spec} must go from a positive value up")
        if n is not None:
            if not 1 <= n <= 100000:
                raise UserError(f"{what}: {n} points is out of range (1..100000)")
            vals = list(np.geomspace(lo, hi, n))
        else:
            vals = []
            v = lo
            while v <= hi * (1 + 1e-9) and len(vals) < 1000:
                vals.append(v)
                v *= 2
    else:
        vals = [parse_quantity(x, what) for x in spec.split(",") if x.strip()]
    if not vals:
        raise UserError(f"{what}: no values")
    return key.strip(), vals


def sweep_rows(model: str, hw: str, axes: dict[str, list[float]], *, batches: Sequence[int] = (1,),
               precision: str | None = None, winograd: str | None = None,
               resolution: tuple[int, int] | None = None) -> list[dict[str, Any]]:
    """Predict `model` over the full grid of `axes` around profile `hw` (one evaluate() call)."""
    grid_pred = sweep(model, hw, axes, batches=batches, precision=precision, winograd=winograd, resolution=resolution)
    summ, hwa, keys, mesh = grid_pred
    rows = []
    lat = summ.latency_s                     # (C, B)
    for c in range(hwa.count):
        for j, b in enumerate(summ.batches):
            row = {k: float(mesh[k][c]) for k in keys}
            row.update({"batch": int(b), "latency_s": float(lat[c, j]), "throughput_per_s": float(b / lat[c, j]),
                        "dram_bytes_per_inference": float(summ.dram_bytes[c, j] / b),
                        "compute_bound_fraction": float(summ.compute_bound_fraction[c, j]),
                        "weights_resident": bool(summ.weights_resident[c, j]), "sub_batch": int(summ.sub_batch[c, j])})
            rows.append(row)
    return rows


def sweep(model: str, hw: str, axes: dict[str, list[float]], *, batches: Sequence[int] = (1,),
          precision: str | None = None, winograd: str | None = None, resolution: tuple[int, int] | None = None):
    """(GridSummary over the grid, HwArrays, axis keys, flattened grid values)."""
    profile = api.load_profile(hw)
    if precision is None:
        precision = "fp32" if "fp32" in profile.mac_units else profile.precisions[0]
    profile.peak_macs_per_s(precision)
    table = api.analyze(model, batch=1, resolution=resolution, precision=precision)
    la = roofline.LayerArrays.from_table(table, rules=profile.fusion_rules(), layout=profile.layout_spec())
    hwa = roofline.HwArrays.grid(profile, precision, winograd, **axes)
    summ = roofline.evaluate_summary(la, hwa, list(batches))
    keys = list(axes)
    mesh = dict(zip(keys, (m.reshape(-1) for m in np.meshgrid(*[np.asarray(axes[k], dtype=float) for k in keys], indexing="ij"))))
    return summ, hwa, keys, mesh


# ----------------------------------------------------------------------------- language models


def run_llm(*, model: str, hw: str, batches: Optional[list[int]], input_shapes, precision, prompt: int, generate: int,
            kv_precision, weights, fmt: str, emit: Callable[[str], None], console: Console) -> None:
    """`estimate DECODER --hw P --prompt N --generate M`: prefill and decode (estimator/llm.py)."""
    from . import llm

    bs = list(batches or [1])
    llm.check_options(prompt, generate, kv_precision, weights)
    _, stored = llm.decoder_info(model, input_shapes)
    if precision is None:   # the precision the file stores (an fp16 genai model is costed at fp16)
        precision = stored
    table, pred, base = api.estimate(model, hw, batches=bs, precision=precision, input_shapes=input_shapes,
                                     seq_len=prompt, past=0)
    lp = llm.predict(model, pred.hardware, prompt=prompt, generate=generate, batches=bs, precision=pred.precision,
                     kv_precision=kv_precision, weights=weights, input_shapes=input_shapes)
    floor = lp.weight_read_floor_s
    warn = report.incomplete_warning(table.totals, "in the prompt pass")
    if warn and fmt != "table":
        sys.stderr.write(f"estimate: {warn}\n")
    if fmt in ("json", "csv", "markdown"):
        doc = prediction_document(table, pred, base, source=model)
        doc["llm"] = lp.to_dict()
        if fmt == "json":
            emit(json.dumps(doc, indent=1))
            return
        per = doc["llm"]["per_batch"]
        if fmt == "csv":   # raw numbers, as every CSV of the tool
            import csv
            import io
            keys = ["batch", "ttft_s", "tpot_s", "tpot_first_s", "tpot_last_s", "tokens_per_s", "tokens_per_s_total",
                    "kv_cache_bytes_per_token", "kv_cache_bytes", "memory_bytes", "fits_dram", "prefill_bound",
                    "decode_bound"]
            buf = io.StringIO()
            w = csv.DictWriter(buf, fieldnames=keys, extrasaction="ignore")
            w.writeheader()
            w.writerows(per)
            emit(buf.getvalue())
            return
        rows = [[str(p["batch"]), seconds_str(p["ttft_s"]), seconds_str(p["tpot_s"]), f"{p['tokens_per_s']:,.1f}",
                 f"{p['tokens_per_s_total']:,.1f}", bytes_str(p["kv_cache_bytes"]), bytes_str(p["memory_bytes"]),
                 p["prefill_bound"], p["decode_bound"]] for p in per]
        head = ["batch", "TTFT", "TPOT (mean)", "tokens/s per seq", "tokens/s total", "KV cache", "memory",
                "prefill", "decode"]
        if True:
            from tabulate import tabulate
            emit(tabulate(rows, headers=head, tablefmt="github"))
        return
    hwp = pred.hardware
    console.print(f"[bold]{table.model}[/bold] on [bold]{hwp.name}[/bold]: {lp.io.describe()}", soft_wrap=True)
    if warn:
        console.print(f"[bold red]{warn}[/bold red]", soft_wrap=True)
    for n in table.notes:   # what the loader had to decide (fixed dims, defaults), not its routine reports
        if "decoder with a KV cache" not in n and not n.startswith("shape inference completed"):
            console.print(f"[yellow]note:[/yellow] {n}", soft_wrap=True)
    console.print(f"prompt {prompt} tokens, generate {generate}; activations {lp.precision}, KV cache {lp.kv_precision}, "
                  f"weights {lp.weights or lp.precision} ({bytes_str(lp.weight_bytes)}); KV cache "
                  f"{bytes_str(lp.kv_cache_bytes_per_token)} per token and sequence"
                  + (f"; largest batch that fits the {bytes_str(hwp.dram_bytes)} of DRAM: {lp.max_batch}"
                     if lp.max_batch is not None else "; the profile has no dram_bytes (no capacity check)"),
                  soft_wrap=True)
    t = Table(title="Prefill (the prompt as one pass) and decode (one token per step; estimates of the roofline model)",
              title_justify="left")
    for c in ("batch", "TTFT", "TPOT mean", "TPOT first -> last", "tokens/s per sequence", "tokens/s total",
              "KV cache", "memory", "fits", "prefill", "decode"):
        t.add_column(c, justify="right")
    for p in lp.points:
        t.add_row(str(p.batch), seconds_str(p.prefill.seconds), seconds_str(p.tpot_mean_s),
                  f"{seconds_str(p.decode_first.seconds)} -> {seconds_str(p.decode_last.seconds)}",
                  f"{p.tokens_per_s:,.1f}", f"{p.batch * p.tokens_per_s:,.1f}", bytes_str(p.kv_cache_bytes),
                  bytes_str(p.memory_bytes), "-" if p.fits is None else ("yes" if p.fits else "[red]no[/red]"),
                  p.prefill.bound, p.decode_last.bound)
    console.print(t)
    console.print(f"reading the weights a decode step uses ({bytes_str(floor * hwp.dram_bandwidth_bytes_per_s)}: all but "
                  f"the lookup tables' unread rows) takes {seconds_str(floor)} at the datasheet DRAM bandwidth: a step "
                  "cannot be faster while they do not fit on chip", soft_wrap=True)
    for n in lp.notes:
        console.print(f"[yellow]note:[/yellow] {n}", soft_wrap=True)
