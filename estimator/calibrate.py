"""Calibration: fit a profile's efficiencies and per-layer overhead to validation results.

Pure code: it receives result documents (dicts, docs/results-schema.md) already read, the
CostTable of each model, and a HardwareProfile; it never reads files, prints or touches
onnxruntime (the CLI, estimator/calibrate_cli.py, does the I/O).

The model being fitted is the roofline's (estimator/roofline.py), per layer l at batch b:

    time_l = max(C_l * x[class(l)], M_l * x_mem) + o * costed_l

where C_l is the layer's compute time at efficiency 1 (MACs / peak, plus non-MAC ops / the
vector rate), M_l its DRAM time at efficiency 1, x = 1 / efficiency (per layer class for
compute, one for memory), and o = layer_overhead_s. For a fixed choice of the active branch
of each max() the time is linear in theta = (x_classes, x_mem, o), so the fit alternates:
(1) pick each layer's active branch with the current theta, (2) solve a bounded, weighted
linear least-squares problem for theta, until the branches stop changing (at most
MAX_OUTER passes). Deterministic: no random starts.

Rows of the least-squares problem (all relative: each row is divided by its measured time,
so a 50 us layer and a 50 ms model count alike):
- per-layer rows: one per measured group (an ONNX node carrying time, plus the nodes with
  ``fused_into`` pointing to it): sum of the members' predicted times vs the group's
  measured kernel time;
- end-to-end rows: the sum over all layers vs the measured p50 latency, weighted by
  sqrt(number of per-layer rows of that configuration) so that the end-to-end figure (what
  the acceptance is about) weighs as much as the layers together.

Bounds: efficiencies in [EFF_MIN, EFF_MAX] (the profile schema allows (0, 10]), overhead in
[0, OVERHEAD_MAX_S]. The bounded problem is solved by a small projected active-set loop
(variables that leave their bounds are clamped and the rest re-solved), numpy only.
A class that has no work in the data keeps the input profile's value (and the notes say so).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np

from .analyze import CostTable
from .errors import UserError
from .hardware import HardwareProfile, with_overrides
from .ops.base import LAYER_CLASSES
from .roofline import HwArrays, LayerArrays, evaluate

EFF_MIN = 0.01
EFF_MAX = 10.0
OVERHEAD_MAX_S = 1e-3
MAX_OUTER = 30


# ----------------------------------------------------------------------------- data


@dataclass(frozen=True)
class ConfigObs:
    """One measured configuration (model, batch) of one results file."""

    file: str
    model: str
    batch: int
    precision: str
    measured_s: float                      # p50 end-to-end latency
    groups: tuple[tuple[str, float, tuple[int, ...]], ...]  # (head node, measured_s, member layer indices)
    kernel_total_s: float | None = None


@dataclass(frozen=True)
class ModelData:
    """A model's layer arrays and its measured configurations."""

    name: str
    layers: LayerArrays
    configs: tuple[ConfigObs, ...]


@dataclass(frozen=True)
class Dataset:
    models: tuple[ModelData, ...]
    precision: str
    files: tuple[str, ...]

    @property
    def model_names(self) -> list[str]:
        return [m.name for m in self.models]

    def without(self, model: str) -> "Dataset":
        return Dataset(tuple(m for m in self.models if m.name != model), self.precision, self.files)

    def only(self, model: str) -> "Dataset":
        return Dataset(tuple(m for m in self.models if m.name == model), self.precision, self.files)

    @property
    def counts(self) -> dict[str, int]:
        return {"models": len(self.models), "configurations": sum(len(m.configs) for m in self.models),
                "layer_groups": sum(len(c.groups) for m in self.models for c in m.configs)}


def build_dataset(entries: Sequence[tuple[str, Mapping, CostTable]], precision: str) -> Dataset:
    """(file, results document, CostTable of that model at batch 1 and `precision`) -> Dataset.

    Configurations of other precisions, with more than one instance, failed or without a
    p50 are left out. Per-layer groups: a node with measured time > 0 and no ``fused_into``
    is a group head; nodes with ``fused_into`` join their head's group. Nodes the analyzer
    does not know (by name) are ignored (their time still counts end to end).
    """
    by_model: dict[str, list] = {}
    tables: dict[str, CostTable] = {}
    for file, doc, table in entries:
        name = doc["model"]["name"]
        tables.setdefault(name, table)
        index = {l.name: i for i, l in enumerate(table.layers)}
        for c in doc.get("configurations", []):
            if c.get("precision") != precision or c.get("instances", 1) != 1 or c.get("status", "ok") != "ok":
                continue
            lat = c.get("latency_s") or {}
            if not lat.get("p50"):
                continue
            members: dict[str, list[int]] = {}
            heads: dict[str, float] = {}
            for l in c.get("layers", []):
                head = l.get("fused_into")
                if head is None:
                    if l.get("measured_s", 0) > 0:
                        heads[l["name"]] = float(l["measured_s"])
                    head = l["name"]
                if l["name"] in index:
                    members.setdefault(head, []).append(index[l["name"]])
            groups = tuple((h, t, tuple(members.get(h, ()))) for h, t in heads.items())
            by_model.setdefault(name, []).append(ConfigObs(
                file=file, model=name, batch=int(c["batch"]), precision=precision, measured_s=float(lat["p50"]),
                groups=groups, kernel_total_s=(c.get("layer_totals") or {}).get("kernel_total_s")))
    models = []
    for name, cfgs in by_model.items():
        la = LayerArrays.from_table(tables[name])
        # one observation per (file, batch); keep them all (repeated runs average in the fit)
        models.append(ModelData(name=name, layers=la, configs=tuple(sorted(cfgs, key=lambda c: (c.batch, c.file)))))
    if not models:
        raise UserError(f"no usable {precision} configurations in the results (need single-instance runs with a p50)")
    return Dataset(tuple(sorted(models, key=lambda m: m.name)), precision, tuple(dict.fromkeys(e[0] for e in entries)))


# ----------------------------------------------------------------------------- parameters


@dataclass(frozen=True)
class Params:
    """x = 1/efficiency per layer class (LAYER_CLASSES order), x_mem = 1/memory efficiency,
    overhead_s per costed layer."""

    x_class: np.ndarray
    x_mem: float
    overhead_s: float

    @classmethod
    def from_profile(cls, p: HardwareProfile) -> "Params":
        return cls(np.array([1.0 / p.efficiency.compute_for(c) for c in LAYER_CLASSES]),
                   1.0 / p.efficiency.memory, float(p.layer_overhead_s))

    def vector(self) -> np.ndarray:
        return np.r_[self.x_class, self.x_mem, self.overhead_s]

    @classmethod
    def from_vector(cls, v: np.ndarray) -> "Params":
        n = len(LAYER_CLASSES)
        return cls(np.array(v[:n], dtype=float), float(v[n]), float(v[n + 1]))

    def efficiencies(self) -> dict[str, float]:
        return {c: 1.0 / x for c, x in zip(LAYER_CLASSES, self.x_class)}


def apply_params(profile: HardwareProfile, params: Params, fitted_classes: Sequence[str] | None = None,
                 source: str | None = None, notes: Mapping[str, str] | None = None) -> HardwareProfile:
    """The profile with the fitted efficiencies and overhead (rounded to 4 significant digits)."""
    eff = params.efficiencies()
    by_class = {c: _r4(eff[c]) for c in LAYER_CLASSES}
    used = [by_class[c] for c in (fitted_classes or LAYER_CLASSES)]
    compute = _r4(float(np.median(used))) if used else profile.efficiency.compute
    changes = {"efficiency": {"compute": compute, "memory": _r4(1.0 / params.x_mem), "by_layer_class": by_class},
               "layer_overhead_s": float(f"{params.overhead_s:.4g}")}
    out = with_overrides(profile, **changes)
    extra = {}
    if source is not None:
        extra["source"] = source
    if notes is not None:
        merged = {k: v for k, v in out.notes.items() if k not in ("efficiency", "layer_overhead_s")}
        merged.update(notes)
        extra["notes"] = merged
    return with_overrides(out, **extra) if extra else out


def _r4(x: float) -> float:
    return float(f"{x:.4g}")


# ----------------------------------------------------------------------------- basis


@dataclass(frozen=True)
class _Basis:
    comp: np.ndarray      # (B, L) compute seconds at efficiency 1
    mem: np.ndarray       # (B, L) memory seconds at efficiency 1
    costed: np.ndarray    # (L,) bool: gets the overhead
    cls: np.ndarray       # (L,) class index


def _unit_profile(profile: HardwareProfile) -> HardwareProfile:
    return with_overrides(profile, efficiency={"compute": 1.0, "memory": 1.0}, layer_overhead_s=0.0)


def _basis(m: ModelData, unit: HardwareProfile, precision: str) -> tuple[_Basis, dict[int, int]]:
    """Per-layer compute and memory seconds at efficiency 1, for the batches measured."""
    batches = sorted({c.batch for c in m.configs})
    raw = evaluate(m.layers, HwArrays.from_profiles([unit], precision), batches)
    costed = m.layers.costed & ~m.layers.is_view
    bidx = {b: i for i, b in enumerate(batches)}
    comp = raw.compute_s[0]
    mem = raw.memory_s[0]
    return _Basis(comp=comp, mem=mem, costed=costed, cls=m.layers.class_idx), bidx


def _layer_times(basis: _Basis, bi: int, p: Params) -> np.ndarray:
    c = basis.comp[bi] * p.x_class[basis.cls]
    mm = basis.mem[bi] * p.x_mem
    return np.maximum(c, mm) + p.overhead_s * basis.costed


# ----------------------------------------------------------------------------- fit


@dataclass(frozen=True)
class FitResult:
    params: Params
    fitted_classes: tuple[str, ...]     # classes with work in the data (others kept from the prior)
    iterations: int
    converged: bool
    rows_layer: int
    rows_e2e: int
    residual_rms: float                 # of the relative (weighted) residuals


def _bvls(A: np.ndarray, y: np.ndarray, lo: np.ndarray, hi: np.ndarray, free: np.ndarray,
          x0: np.ndarray) -> np.ndarray:
    """min ||A x - y|| subject to lo <= x <= hi; variables with free == False stay at x0.

    Projected active-set loop: solve for the free variables, clamp those outside their
    bounds, re-solve the rest; then release clamped variables whose gradient points inside.
    """
    x = x0.copy()
    n = len(x)
    clamped = np.zeros(n, dtype=bool)
    for _ in range(4 * n + 4):
        act = free & ~clamped
        rhs = y - A[:, ~act] @ x[~act]
        if act.any():
            sol, *_ = np.linalg.lstsq(A[:, act], rhs, rcond=None)
            x[act] = sol
        out = act & ((x < lo) | (x > hi))
        if out.any():
            x = np.clip(x, lo, hi) * free + x0 * ~free
            clamped |= out
            continue
        # release a clamped variable if moving it inward lowers the residual
        g = A.T @ (A @ x - y)
        rel = clamped & (((x <= lo) & (g < 0)) | ((x >= hi) & (g > 0)))
        if not rel.any():
            break
        clamped &= ~rel
    return np.clip(x, lo, hi) * free + x0 * ~free


def fit(data: Dataset, profile: HardwareProfile, *, use_layers: bool = True, use_e2e: bool = True,
        prior: Params | None = None) -> FitResult:
    """Fit Params to the dataset (see the module docstring for the model and the rows)."""
    unit = _unit_profile(profile)
    nC = len(LAYER_CLASSES)
    nP = nC + 2
    prior = prior or Params.from_profile(profile)
    bases = [_basis(m, unit, data.precision) for m in data.models]
    # which classes have work in the data
    work = np.zeros(nC)
    for (b, _), m in zip(bases, data.models):
        np.add.at(work, b.cls, b.comp.sum(axis=0))
    free = np.r_[work > 0, True, True]
    lo = np.r_[np.full(nC, 1.0 / EFF_MAX), 1.0 / EFF_MAX, 0.0]
    hi = np.r_[np.full(nC, 1.0 / EFF_MIN), 1.0 / EFF_MIN, OVERHEAD_MAX_S]
    theta = np.clip(prior.vector(), lo, hi)
    prev_branch = None
    it = 0
    converged = False
    rows_l = rows_e = 0
    rms = float("nan")
    for it in range(1, MAX_OUTER + 1):
        p = Params.from_vector(theta)
        A_rows, y_rows, branch_all = [], [], []
        rows_l = rows_e = 0
        for (b, bidx), m in zip(bases, data.models):
            for c in m.configs:
                bi = bidx[c.batch]
                comp = b.comp[bi] * p.x_class[b.cls]
                mem = b.mem[bi] * p.x_mem
                is_comp = comp >= mem
                branch_all.append(is_comp)
                # per-layer design rows (L, nP)
                R = np.zeros((len(b.cls), nP))
                idx = np.arange(len(b.cls))
                R[idx[is_comp], b.cls[is_comp]] = b.comp[bi][is_comp]
                R[idx[~is_comp], nC] = b.mem[bi][~is_comp]
                R[:, nC + 1] = b.costed
                n_groups = 0
                if use_layers:
                    for _, t, members in c.groups:
                        if not members or t <= 0:
                            continue
                        row = R[list(members)].sum(axis=0)
                        if not row.any():
                            continue
                        A_rows.append(row / t)
                        y_rows.append(1.0)
                        n_groups += 1
                rows_l += n_groups
                if use_e2e:
                    w = math.sqrt(max(n_groups, 1))
                    A_rows.append(w * R.sum(axis=0) / c.measured_s)
                    y_rows.append(w)
                    rows_e += 1
        if not A_rows:
            raise UserError("nothing to fit: the results have no per-layer or end-to-end times for these models")
        A = np.array(A_rows)
        y = np.array(y_rows)
        # column scaling for conditioning
        scale = np.where(np.abs(A).max(axis=0) > 0, np.abs(A).max(axis=0), 1.0)
        As = A / scale
        sol = _bvls(As, y, lo * scale, hi * scale, free, theta * scale)
        theta = sol / scale
        rms = float(np.sqrt(np.mean((A @ theta - y) ** 2)))
        branch = np.concatenate(branch_all) if branch_all else np.zeros(0, dtype=bool)
        if prev_branch is not None and np.array_equal(branch, prev_branch):
            converged = True
            break
        prev_branch = branch
    fitted = tuple(c for c, w in zip(LAYER_CLASSES, work) if w > 0)
    return FitResult(Params.from_vector(theta), fitted, it, converged, rows_l, rows_e, rms)


# ----------------------------------------------------------------------------- prediction and errors


def predict_dataset(data: Dataset, profile: HardwareProfile) -> list[dict]:
    """Predictions of the real roofline (estimator.roofline.evaluate, with sub-batching) for
    every configuration: [{model, batch, file, measured_s, predicted_s, error, layers: [...]}]."""
    hw = HwArrays.from_profiles([profile], data.precision)
    out = []
    for m in data.models:
        batches = sorted({c.batch for c in m.configs})
        raw = evaluate(m.layers, hw, batches)
        for c in m.configs:
            bi = batches.index(c.batch)
            t = raw.time_s[0, bi]
            pred = float(t.sum())
            layers = []
            for head, meas, members in c.groups:
                if not members:
                    continue
                pg = float(t[list(members)].sum())
                if pg <= 0:
                    continue
                layers.append({"name": head, "measured_s": meas, "predicted_s": pg, "error": pg / meas - 1})
            out.append({"model": m.name, "batch": c.batch, "file": c.file, "measured_s": c.measured_s,
                        "predicted_s": pred, "error": pred / c.measured_s - 1, "layers": layers})
    return out


def error_stats(points: list[dict], worst: int = 3) -> dict:
    """End-to-end and per-layer error summary of predict_dataset() output."""
    e = np.array([abs(p["error"]) for p in points]) if points else np.zeros(0)
    lay = [l for p in points for l in p["layers"]]
    le = np.array([abs(l["error"]) for l in lay]) if lay else np.zeros(0)
    lw = np.array([l["measured_s"] for l in lay]) if lay else np.zeros(0)

    def share(a: np.ndarray, lim: float) -> float | None:
        return float((a <= lim).mean()) if a.size else None

    ranked = sorted(points, key=lambda p: -abs(p["error"]))[:worst]
    return {
        "points": len(points),
        "e2e_median_abs_error": float(np.median(e)) if e.size else None,
        "e2e_within_10pct": share(e, 0.10),
        "e2e_within_20pct": share(e, 0.20),
        "e2e_worst": [{"model": p["model"], "batch": p["batch"], "error": p["error"]} for p in ranked],
        "layer_groups": len(lay),
        "layer_median_abs_error": float(np.median(le)) if le.size else None,
        "layer_within_10pct": share(le, 0.10),
        "layer_within_20pct": share(le, 0.20),
        # time-weighted: the share of measured layer time whose prediction is within 20%
        "layer_time_within_20pct": float(lw[le <= 0.20].sum() / lw.sum()) if lw.size and lw.sum() > 0 else None,
    }


def _per_point(points: list[dict]) -> list[dict]:
    """(model, batch) rows: measured, predicted, error; per-layer median |error|."""
    rows = []
    for p in points:
        le = [abs(l["error"]) for l in p["layers"]]
        rows.append({"model": p["model"], "batch": p["batch"], "measured_s": p["measured_s"],
                     "predicted_s": p["predicted_s"], "error": p["error"],
                     "layer_median_abs_error": float(np.median(le)) if le else None})
    return rows


@dataclass
class Report:
    """Everything `estimate calibrate` prints and writes with --report."""

    fitted: dict
    before: dict
    cv: dict
    points_fitted: list[dict]
    points_before: list[dict]
    points_cv: list[dict]
    params: dict
    cv_params: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"schema": "estimate-calibration-report", "schema_version": "1.0", "params": self.params,
                "fitted": {"summary": self.fitted, "points": self.points_fitted},
                "uncalibrated": {"summary": self.before, "points": self.points_before},
                "cross_validation": {"method": "leave-one-model-out", "summary": self.cv, "points": self.points_cv,
                                     "params_by_held_out_model": self.cv_params},
                "notes": self.notes}


def params_dict(p: Params, fr: FitResult | None = None) -> dict:
    d = {"efficiency_by_class": {c: _r4(v) for c, v in p.efficiencies().items()},
         "memory_efficiency": _r4(1.0 / p.x_mem), "layer_overhead_s": float(f"{p.overhead_s:.4g}")}
    if fr is not None:
        d.update({"fitted_classes": list(fr.fitted_classes), "iterations": fr.iterations, "converged": fr.converged,
                  "rows_layer": fr.rows_layer, "rows_e2e": fr.rows_e2e, "residual_rms": fr.residual_rms})
    return d


def calibrate(data: Dataset, profile: HardwareProfile, *, cross_validate: bool = True) -> tuple[FitResult, Report]:
    """Fit on all models; report errors before, after, and under leave-one-model-out CV."""
    fr = fit(data, profile)
    fitted_profile = apply_params(profile, fr.params, fr.fitted_classes)
    pts_fit = predict_dataset(data, fitted_profile)
    pts_before = predict_dataset(data, profile)
    pts_cv: list[dict] = []
    cv_params: dict = {}
    notes: list[str] = []
    if cross_validate and len(data.models) > 1:
        for m in data.models:
            train = data.without(m.name)
            f = fit(train, profile)
            cv_params[m.name] = params_dict(f.params, f)
            missing = [c for c in LAYER_CLASSES if c not in f.fitted_classes
                       and _has_class(m, LAYER_CLASSES.index(c))]
            if missing:
                notes.append(f"cross-validation, {m.name} held out: classes {', '.join(missing)} have no work in the "
                             "other models; their efficiency stays at the input profile's value")
            pts_cv += predict_dataset(data.only(m.name), apply_params(profile, f.params, f.fitted_classes))
    elif cross_validate:
        notes.append("cross-validation needs results of at least two models")
    rep = Report(fitted=error_stats(pts_fit), before=error_stats(pts_before), cv=error_stats(pts_cv),
                 points_fitted=_per_point(pts_fit), points_before=_per_point(pts_before), points_cv=_per_point(pts_cv),
                 params=params_dict(fr.params, fr), cv_params=cv_params, notes=notes)
    if not fr.converged:
        rep.notes.append(f"the branch assignment did not settle in {fr.iterations} passes; the last solution is used")
    return fr, rep


def evaluate_on(data: Dataset, profile: HardwareProfile) -> tuple[dict, list[dict]]:
    """Error summary and per-point rows of a given profile on a dataset (no fitting)."""
    pts = predict_dataset(data, profile)
    return error_stats(pts), _per_point(pts)


def _has_class(m: ModelData, ci: int) -> bool:
    la = m.layers
    return bool(((la.class_idx == ci) & la.costed & ~la.is_view & ((la.macs > 0) | (la.non_mac > 0))).any())
