"""`estimate calibrate` on imported end-to-end results (published points): the I/O around
estimator.calibrate_points (which is pure)."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from .errors import UserError

POINTS_HEAD = ["result", "model", "batch", "figure", "published", "before", "after", "error before", "error after"]


def _fmt_value(metric: str, v: float) -> str:
    return f"{v * 1e3:.4g} ms" if metric == "latency" else f"{v:,.1f}/s"


def select(docs: list[tuple[str, dict]], device: str | None, profile_name: str) -> tuple[list[tuple[str, dict]], str]:
    """The imported documents of one device: `device`, else the profile's name, else the only
    device there is; UserError listing the devices otherwise."""
    devices = sorted({str(d.get("device") or d["host"].get("hostname")) for _, d in docs})
    want = device or (profile_name if profile_name in devices else (devices[0] if len(devices) == 1 else None))
    if want is None:
        raise UserError(f"the imported results are of several devices ({', '.join(devices)}) and none is the profile's "
                        f"'{profile_name}': choose one with --device")
    chosen = [(f, d) for f, d in docs if str(d.get("device") or d["host"].get("hostname")) == want]
    if not chosen:
        raise UserError(f"--device {want}: no imported results of it (they are of: {', '.join(devices)})")
    return chosen, want


def run(docs: list[tuple[str, dict]], profile, hw: str, out: Path, report: Path | None, precision: str | None,
        device: str | None, replace: bool, backups: list[Path], fmt: str) -> None:
    """Fit `profile` to the imported results of one device and write it (and the report)."""
    from . import api, hardware
    from . import calibrate_points as cp
    from .calibrate_cli import write_outputs
    from .fsutil import atomic_write_text
    from .roofline import LayerArrays

    measured = [f for f, d in docs if d.get("source") != "imported"]
    if measured:
        raise UserError(f"{measured[0]}: measured results and imported (published) ones cannot be fitted together: "
                        "calibrate them separately")
    docs, dev = select(docs, device, profile.name)
    left_out = [(f, d) for f, d in docs if (d.get("imported") or {}).get("valid") is False
                or (d.get("imported") or {}).get("scenario") == "Server"]
    docs = [(f, d) for f, d in docs if (f, d) not in left_out]
    if not docs:
        raise UserError(f"every imported {dev} result is INVALID or a Server figure: nothing to fit "
                        "(Server figures hold under a latency bound the roofline does not model)")
    points = [p for f, d in docs for p in cp.points_from_doc(f, d)]
    precs = sorted({p.precision for p in points})
    if precision is not None:
        points = [p for p in points if p.precision == precision]
        if not points:
            raise UserError(f"--precision {precision}: no imported {dev} results of it (they are {', '.join(precs)})")
    elif len(precs) > 1:
        raise UserError(f"the imported {dev} results hold several precisions ({', '.join(precs)}): choose one with --precision")
    for p in points:
        if p.precision == "unknown":
            raise UserError(f"{p.label}: precision unknown; re-import with `estimate results import ... --precision P`")
        if p.precision not in profile.mac_units:
            raise UserError(f"{p.label}: results are {p.precision} but profile {hw} has no MAC rate for it "
                            f"(it has: {', '.join(profile.precisions)})")
    layers = {}
    for p in points:
        if p.model in layers:
            continue
        if not (api.is_builtin(p.model) or Path(p.model).is_file()):
            raise UserError(f"{p.label}: model '{p.model}' is neither a built-in model (estimate models) nor a file")
        table = api.analyze(p.model, batch=1, precision=p.precision)
        layers[p.model] = LayerArrays.from_table(table, rules=profile.fusion_rules(), layout=profile.layout_spec())
    fit = cp.fit_points(points, layers, profile)
    fit.notes[:0] = [f"left out {Path(f).name}: " + ("LoadGen marked it INVALID" if (d.get("imported") or {}).get("valid")
                                                     is False else "a Server figure (holds under a latency bound)")
                     for f, d in left_out]
    cites = "; ".join(dict.fromkeys(f"{r['model']} {r['metric']} {_fmt_value(r['metric'], r['measured'])} ({r['source']})"
                                    for r in fit.rows))
    source = (f"{profile.source.strip()} | calibrated by estimate calibrate on {len(points)} published point(s) of "
              f"{dev}: {cites}; fitted: {', '.join(f'{k} {v:.4g}' for k, v in fit.parameters.items())}; written to "
              f"{out.resolve()})")
    notes = {**dict(profile.notes), **{k: f"fitted to {len(points)} published point(s) ({cites}): {v}"
                                       for k, v in cp.describe(fit, profile).items()}}
    calibrated = hardware.with_overrides(fit.profile, source=source, notes=notes)
    write_outputs(calibrated, out, replace, backups)
    doc = {"kind": "published_points", "profile_in": hw, "profile_out": str(out), "device": dev,
           "parameters": fit.parameters, "time_shares_before": fit.shares, "points": fit.rows, "notes": fit.notes,
           "report_path": str(report.resolve()) if report else None, "fitted": True}
    if report is not None:
        atomic_write_text(report, json.dumps(doc, indent=1))
    if fmt == "json":
        typer.echo(json.dumps(doc, indent=1))
        return
    rows = [[Path(r["label"]).name, r["model"], "system's" if r["batch"] is None else str(r["batch"]),
             r["metric"] + (f" per device (of {r['devices']})" if r["metric"] == "throughput" and r["devices"] > 1 else ""),
             _fmt_value(r["metric"], r["measured"]), _fmt_value(r["metric"], r["before"]),
             _fmt_value(r["metric"], r["after"]), f"{r['error_before']:+.1%}", f"{r['error_after']:+.1%}"]
            for r in fit.rows]
    fitted = ", ".join(f"{k} {v:.4g}" for k, v in fit.parameters.items())
    shares = ", ".join(f"{k} {v:.0%}" for k, v in fit.shares.items())
    if fmt == "markdown":
        from tabulate import tabulate
        typer.echo(tabulate(rows, headers=POINTS_HEAD, tablefmt="github"))
    else:
        from rich.table import Table

        from .report import console
        t = Table(title=f"Published points of {dev} ({len(points)}): predicted before and after the fit",
                  title_justify="left")
        for h in POINTS_HEAD:
            t.add_column(h, justify="left" if h in ("result", "model", "figure") else "right")
        for r in rows:
            t.add_row(*r)
        console().print(t)
    typer.echo(f"fitted {len(fit.parameters)} parameter(s) to {len(points)} point(s): {fitted} "
               f"(share of the points' predicted time before: {shares})")
    for n in fit.notes:
        typer.echo(f"note: {n}")
    worst = max(abs(r["error_after"]) for r in fit.rows)
    if worst > 0.10:
        typer.echo(f"estimate: warning: the calibrated profile misses a published point by {worst:.1%} (the fit could "
                   "not reproduce it within the profile's ceilings); check the points and the profile", err=True)
    typer.echo(f"wrote {out}" + (f" and {report}" if report else ""))
