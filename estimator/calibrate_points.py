"""Calibration from end-to-end points only (published figures: MLPerf, vendor tables).

A published point gives one number for a whole model, so it can set one parameter. The fit
keeps the profile's datasheet figures (peaks, bandwidths, SRAM: the physical ceilings) and
fits as many of these as the points have distinct conditions (model, precision, batch, figure):

- ``compute``: one factor on every layer class's compute efficiency (the share of the MAC
  and vector peaks compute-bound layers reach);
- ``overhead``: the fixed time per kernel (``layer_overhead_s``: launch, dispatch);
- ``memory``: the memory efficiency (the share of the DRAM bandwidth DRAM-bound layers reach).

Which ones: of the combinations of that many, the one that reproduces the points best; equal
fits (one point: any single parameter reproduces it) go to the terms carrying the larger share
of the points' predicted time with the input profile (a batch-2048 GPU point is compute- or
DRAM-bound, a batch-1 point often overhead-bound). The values minimise the log errors of the
points (scipy.optimize.least_squares, bounded: efficiencies in [EFF_MIN, EFF_MAX], overhead in
(0, OVERHEAD_MAX_S]); with as many parameters as conditions the points are reproduced exactly
when the bounds allow. INVALID LoadGen results and Server figures (which hold under a latency
bound) are refused.

What a point is compared with (the roofline's estimator.roofline.evaluate, sub-batching
included): a latency figure with the latency at its batch (1 when not stated); a throughput
figure, per device (system figure / devices in the system), with the throughput at its batch,
or, when the system chose its batch (MLPerf Offline), with the best predicted throughput over
OFFLINE_BATCHES.

Pure: documents (dicts), LayerArrays and profiles in; no files, no printing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

from .errors import UserError
from .hardware import HardwareProfile, with_overrides
from .roofline import HwArrays, LayerArrays, evaluate

EFF_MIN = 0.01
EFF_MAX = 10.0
OVERHEAD_MAX_S = 1e-2
#: batches over which the best throughput stands for a system-chosen batch (MLPerf Offline)
OFFLINE_BATCHES = tuple(1 << k for k in range(13))     # 1 .. 4096
PARAMETERS = ("compute", "overhead", "memory")


@dataclass(frozen=True)
class Point:
    label: str            # the results file (or point id)
    model: str
    precision: str
    batch: int | None     # None: chosen by the system (the best over OFFLINE_BATCHES)
    metric: str           # "latency" (seconds per query of `batch` samples) or "throughput" (samples/s, one device)
    value: float
    devices: int
    source: str           # citation of the figure


def points_from_doc(file: str, doc: Mapping) -> list[Point]:
    """The points of one imported results document (validate/imported.py); UserError naming
    the file when a figure cannot be compared."""
    imp = doc.get("imported") or {}
    out = []
    if imp.get("valid") is False:
        raise UserError(f"{file}: LoadGen marked this result {imp.get('result')}: not fitted")
    if imp.get("scenario") == "Server":
        raise UserError(f"{file}: a Server figure holds under a latency bound the roofline does not model: not fitted")
    for c in doc.get("configurations", []):
        f = c.get("figure") or {}
        devices = int(doc.get("devices_in_system") or 1)
        if f.get("units") == "s":
            metric, value = "latency", float(f["value"])
        elif f.get("units") == "samples/s":
            metric, value = "throughput", float(f["value"]) / devices
        else:
            raise UserError(f"{file}: figure {f.get('metric')!r} in {f.get('units')!r} cannot be predicted "
                            "(a latency in s or a throughput in samples/s)")
        batch = c.get("batch")
        if batch is not None and (isinstance(batch, bool) or not isinstance(batch, int) or batch < 1):
            raise UserError(f"{file}: batch {batch!r} is not a whole number >= 1 (null: chosen by the system)")
        out.append(Point(label=file, model=doc["model"]["name"], precision=c.get("precision") or "unknown",
                         batch=None if batch is None else int(batch), metric=metric, value=value, devices=devices,
                         source=str(imp.get("source") or file)))
    return out


def predict(point: Point, layers: LayerArrays, profile: HardwareProfile) -> float:
    """The roofline's figure for a point, in the point's units."""
    hw = HwArrays.from_profiles([profile], point.precision)
    if point.metric == "latency":
        raw = evaluate(layers, hw, [point.batch or 1])
        return float(raw.latency_s[0, 0])
    batches = [point.batch] if point.batch else list(OFFLINE_BATCHES)
    raw = evaluate(layers, hw, batches)
    return float(np.max(np.asarray(batches) / raw.latency_s[0]))


def _shares(point: Point, layers: LayerArrays, profile: HardwareProfile) -> dict[str, float]:
    """Share of the point's predicted time in compute-bound layers, DRAM-bound layers and
    per-kernel overhead, at the batch it is compared at."""
    hw = HwArrays.from_profiles([profile], point.precision)
    if point.metric == "latency" or point.batch:
        b = point.batch or 1
    else:
        raw = evaluate(layers, hw, list(OFFLINE_BATCHES))
        b = OFFLINE_BATCHES[int(np.argmax(np.asarray(OFFLINE_BATCHES) / raw.latency_s[0]))]
    raw = evaluate(layers, hw, [b])
    comp, mem, t = raw.compute_s[0, 0], raw.memory_s[0, 0], raw.time_s[0, 0]
    over = np.clip(t - np.maximum(comp, mem), 0.0, None)
    total = float(t.sum()) or 1.0
    return {"compute": float(np.where(comp >= mem, comp, 0.0).sum() / total),
            "memory": float(np.where(mem > comp, mem, 0.0).sum() / total),
            "overhead": float(over.sum() / total)}


def _apply(profile: HardwareProfile, names: Sequence[str], values: Sequence[float]) -> HardwareProfile:
    """The profile with the fitted parameters: compute scales every class's efficiency
    (compute and by_layer_class), memory sets the memory efficiency, overhead sets
    layer_overhead_s (and clears per-class overheads, which would override it)."""
    v = dict(zip(names, values))
    eff = profile.efficiency
    changes: dict = {}
    compute, memory, by = eff.compute, eff.memory, dict(eff.by_layer_class)
    if "compute" in v:
        k = v["compute"]
        compute = min(EFF_MAX, max(EFF_MIN, compute * k))
        by = {c: min(EFF_MAX, max(EFF_MIN, e * k)) for c, e in by.items()}
    if "memory" in v:
        memory = min(EFF_MAX, max(EFF_MIN, v["memory"]))
    changes["efficiency"] = {"compute": compute, "memory": memory, **({"by_layer_class": by} if by else {})}
    if "overhead" in v:
        changes["layer_overhead_s"] = min(OVERHEAD_MAX_S, v["overhead"])
        changes["layer_overhead_by_class_s"] = None
        changes["kernel_overhead_in_graph_s"] = None   # the fitted figure is the whole cost per kernel
    return with_overrides(profile, **changes)


@dataclass(frozen=True)
class PointsFit:
    profile: HardwareProfile
    parameters: dict[str, float]          # fitted: name -> value (compute: the factor on the efficiencies)
    shares: dict[str, float]              # each term's mean share of the points' predicted time, before
    rows: list[dict]                      # per point: label, model, batch, metric, measured, before, after, errors
    notes: list[str]


def _condition(p: Point) -> tuple:
    """What a point measures: two points of one condition (the same figure twice) add data, not
    a parameter the fit could separate."""
    return (p.model, p.precision, p.batch, p.metric)


def _solve(points, layers, profile, names):
    """Least squares of the points' log errors over the named parameters (log-space, bounded)."""
    from scipy.optimize import least_squares

    x0 = {"compute": 1.0, "memory": profile.efficiency.memory, "overhead": max(profile.layer_overhead_s, 1e-7)}
    lo = {"compute": EFF_MIN / max(profile.efficiency.compute, 1e-9), "memory": EFF_MIN, "overhead": 1e-9}
    hi = {"compute": EFF_MAX / max(profile.efficiency.compute, 1e-9), "memory": EFF_MAX, "overhead": OVERHEAD_MAX_S}

    def residuals(z: np.ndarray) -> np.ndarray:
        q = _apply(profile, names, np.exp(z))
        return np.array([math.log(predict(p, layers[p.model], q) / p.value) for p in points])

    z0 = np.log([min(max(x0[n], lo[n] * 1.001), hi[n] * 0.999) for n in names])
    sol = least_squares(residuals, z0, bounds=(np.log([lo[n] for n in names]), np.log([hi[n] for n in names])),
                        method="trf", diff_step=1e-3, xtol=1e-10, ftol=1e-12)
    values = [float(f"{v:.4g}") for v in np.exp(sol.x)]
    at_bound = [n for n, v in zip(names, values) if v <= lo[n] * 1.01 or v >= hi[n] * 0.99]
    return values, float(np.sqrt(np.mean(residuals(np.log(values)) ** 2))), at_bound


def fit_points(points: Sequence[Point], layers: Mapping[str, LayerArrays], profile: HardwareProfile,
               allowed: Sequence[str] = PARAMETERS) -> PointsFit:
    """Fit as many of the `allowed` parameters as the points have distinct conditions (model,
    precision, batch, metric): of the combinations of that size, the one with the smallest
    residual, ties going to the terms with the larger share of the points' predicted time."""
    from itertools import combinations

    if not points:
        raise UserError("no published points to fit")
    unknown = set(allowed) - set(PARAMETERS)
    if unknown:
        raise UserError(f"unknown parameter(s) {', '.join(sorted(unknown))} (known: {', '.join(PARAMETERS)})")
    notes: list[str] = []
    shares = {k: 0.0 for k in PARAMETERS}
    for p in points:
        for k, s in _shares(p, layers[p.model], profile).items():
            shares[k] += s / len(points)
    ranked = [k for k in sorted(allowed, key=lambda k: (-shares[k], PARAMETERS.index(k))) if shares[k] > 0.01]
    if not ranked:
        raise UserError("the points' predicted time has no compute, memory or overhead share to fit")
    conditions = len({_condition(p) for p in points})
    k = min(conditions, len(ranked))
    if conditions < len(points):
        notes.append(f"{len(points)} points of {conditions} distinct condition(s) (model, precision, batch, figure): "
                     f"{k} parameter(s), the repeated figures averaged by least squares")
    best = None
    for names in combinations(ranked, k):     # ranked order: the first of equal fits wins
        values, rms, at_bound = _solve(points, layers, profile, list(names))
        if best is None or rms < best[1] - 1e-3:   # better by more than 0.1% (the 4-digit rounding)
            best = (list(names), rms, values, at_bound)
    names, rms, values, at_bound = best
    fitted = _apply(profile, names, values)
    for n in at_bound:
        notes.append(f"{n} is at its bound ({dict(zip(names, values))[n]:.4g}): the points are outside what the "
                     "profile's ceilings allow")
    for n, v in zip(names, values):
        eff = fitted.efficiency.compute if n == "compute" else v
        if n != "overhead" and eff > 1:
            notes.append(f"{n} efficiency {eff:.3g} > 1: above the datasheet ceiling, so the profile charges more work or "
                         "bytes than the device does (fusion rules, tiles) or its peak is too low")
    rows = []
    for p in points:
        before = predict(p, layers[p.model], profile)
        after = predict(p, layers[p.model], fitted)
        rows.append({"label": p.label, "model": p.model, "batch": p.batch, "metric": p.metric, "devices": p.devices,
                     "measured": p.value, "before": before, "after": after,
                     "error_before": _error(p, before), "error_after": _error(p, after), "source": p.source})
    worst = max(abs(r["error_after"]) for r in rows)
    if worst > 0.10:
        notes.append(f"the fitted profile misses a point by {worst:.1%}: it does not reproduce the points within 10%")
    return PointsFit(fitted, dict(zip(names, values)), shares, rows, notes)


def _error(p: Point, predicted: float) -> float:
    """predicted / published - 1, in the figure's own units (a throughput predicted too low is negative)."""
    return predicted / p.value - 1


def describe(fit: PointsFit, profile_in: HardwareProfile) -> dict[str, str]:
    """Physical readings of the fitted parameters, by the profile key they set (for its notes)."""
    out = {}
    v = fit.parameters
    e = fit.profile.efficiency
    if "compute" in v:
        out["efficiency"] = (f"compute-bound layers reach {e.compute:.1%} of the datasheet MAC and vector peaks "
                             f"(compute efficiencies x {v['compute']:.4g})"
                             + (" (by class: " + ", ".join(f"{c} {x:.3g}" for c, x in e.by_layer_class.items()) + ")"
                                if e.by_layer_class else ""))
    if "memory" in v:
        out["efficiency.memory"] = f"DRAM-bound layers reach {v['memory']:.1%} of the datasheet bandwidth"
    if "overhead" in v:
        out["layer_overhead_s"] = (f"{v['overhead'] * 1e6:.3g} us per kernel (was "
                                   f"{profile_in.layer_overhead_s * 1e6:.3g} us)")
    return out
