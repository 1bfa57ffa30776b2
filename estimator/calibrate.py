"""Calibration: fit a profile's efficiencies and per-layer overhead to validation results.

Pure code: it receives result documents (dicts, docs/results-schema.md) already read, the
CostTable of each model, and a HardwareProfile; it never reads files, prints or touches
onnxruntime (the CLI, estimator/calibrate_cli.py, does the I/O).

The model being fitted is the roofline's (estimator/roofline.py), per layer l at batch b:

    time_l = max(C_l * x[class(l)] + A_l * s + K_l * k, M_l * x_mem) + o[class(l)] * costed_l

where C_l is the layer's compute time at efficiency 1 (MACs / peak, plus non-MAC ops / the
vector rate), A_l the activation bytes (inputs + outputs) a contraction layer (MACs > 0) moves
through on-chip memory, s = 1 / onchip_bandwidth_bytes_per_s (0: no such term), K_l the calls of
the blocked convolution kernel a grouped conv makes (kernels.grouped_calls; 0 for other layers),
k = grouped_call_s (fitted only from MIN_CALL_SAMPLES grouped kernel samples), M_l its DRAM
time at efficiency 1, x = 1 / efficiency (per layer class for
compute, one for memory), and o = the fixed time per layer, per layer class
(layer_overhead_by_class_s; a class with fewer than MIN_OVERHEAD_LAYERS layers in the data
keeps the input profile's value). For a fixed choice of the active branch
of each max() the time is linear in theta = (x_classes, x_mem, o, s), so the fit alternates:
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
[0, OVERHEAD_MAX_S]. Each linearised step is a bounded linear least-squares problem, solved by
scipy.optimize.lsq_linear (method "bvls").
A class that carries less than MIN_CLASS_SHARE (2%) of every model's compute time, or whose layers are all
DRAM-bound at the solution, keeps the input profile's value (the report and notes say so).
Memory efficiency likewise: when DRAM-bound layers carry less than MIN_CLASS_SHARE of every
configuration's predicted time at the solution, the data do not pin it (any bandwidth above
some floor fits equally well), and it keeps the input profile's value rather than drifting to
a bound (the fit is re-run with it fixed; if the kept value then makes layers DRAM-bound, the
data did set a floor and the first fit stands).
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np

from .analyze import CostTable
from .errors import UserError
from .hardware import HardwareProfile, with_overrides
from .ops.base import CLASS_PARENT, LAYER_CLASSES

_DATA = LAYER_CLASSES.index("data")
from .roofline import HwArrays, LayerArrays, evaluate

EFF_MIN = 0.01
EFF_MAX = 10.0
OVERHEAD_MAX_S = 1e-3
#: slowest on-chip bandwidth the fit may choose (bytes/s): s = 1/bandwidth is in [0, 1/ONCHIP_MIN_BPS]
ONCHIP_MIN_BPS = 1e7
#: a fitted bandwidth above this is no term at all (round-off of a zero cost, not a measurement)
ONCHIP_NONE_BPS = 1e15
MAX_OUTER = 30
MIN_CLASS_SHARE = 0.02
MIN_OVERHEAD_LAYERS = 3
#: kernel samples of grouped convs (with blocked-kernel calls) needed to fit grouped_call_s
MIN_CALL_SAMPLES = 5


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
    layer_scale: float = 1.0               # measured layer times were multiplied by this
    # runtime kernels the profile's fusion rules do not form (see unmodelled_fusion): out of the
    # fit, their measured time (scaled as the groups') and their member layers out of the e2e row
    left_out: tuple[tuple[str, str, float, tuple[int, ...]], ...] = ()   # (head, runtime kernel, measured_s, members)
    # profiler events (runtime kernels, layout conversions included) behind each group, aligned
    # with `groups`; () for kernel samples, which are timed without the profiler
    group_events: tuple[int, ...] = ()
    # a kernel sample timed in several rounds: slowest / fastest round - 1 (how much the host moved
    # while detect timed it); None for model results and for samples timed once
    round_spread: float | None = None
    events_total: int = 0                  # profiler events in kernel_total_s (every group's, left out ones too)

    def profiler_factor(self, profiler_s: float) -> float:
        """How much larger the per-layer times get when `profiler_s` per event is taken out of
        kernel_total_s before the rescale to the p50 (layer_scale = p50 / kernel_total_s)."""
        kt = self.kernel_total_s or 0.0
        if not (kt > 0 and profiler_s > 0 and self.events_total):
            return 1.0
        return kt / max(kt - profiler_s * self.events_total, 0.5 * kt)

    @property
    def left_out_s(self) -> float:
        return sum(t for _, _, t, _ in self.left_out)

    @property
    def e2e_usable(self) -> bool:
        """The end-to-end row is fitted when at least a tenth of the p50 is left after the kernels
        left out (a configuration that is almost all such kernels says nothing end to end)."""
        return self.measured_s - self.left_out_s >= 0.1 * self.measured_s

    @property
    def left_out_layers(self) -> tuple[int, ...]:
        return tuple(i for *_, ms in self.left_out for i in ms)


@dataclass(frozen=True)
class ModelData:
    """A model's layer arrays and its measured configurations."""

    name: str
    layers: LayerArrays
    configs: tuple[ConfigObs, ...]
    sample: str | None = None     # a kernel sample (its kernel class): always fitted, never a reported model


@dataclass(frozen=True)
class Dataset:
    models: tuple[ModelData, ...]
    precision: str
    files: tuple[str, ...]
    skipped: tuple[str, ...] = ()

    @property
    def model_names(self) -> list[str]:
        """The measured models (kernel samples are not models)."""
        return [m.name for m in self.models if m.sample is None]

    def without(self, model: str) -> "Dataset":
        return Dataset(tuple(m for m in self.models if m.name != model), self.precision, self.files, self.skipped)

    def only(self, model: str) -> "Dataset":
        return Dataset(tuple(m for m in self.models if m.name == model), self.precision, self.files, self.skipped)

    def measured(self) -> "Dataset":
        """The models without the kernel samples."""
        return Dataset(tuple(m for m in self.models if m.sample is None), self.precision, self.files, self.skipped)

    def samples(self) -> "Dataset":
        return Dataset(tuple(m for m in self.models if m.sample is not None), self.precision, self.files, self.skipped)

    def with_models(self, other: "Dataset") -> "Dataset":
        return Dataset(self.models + other.models, self.precision, self.files + other.files, self.skipped + other.skipped)

    @property
    def counts(self) -> dict[str, int]:
        return {"models": len(self.models), "configurations": sum(len(m.configs) for m in self.models),
                "layer_groups": sum(len(c.groups) for m in self.models for c in m.configs)}


def build_dataset(entries: Sequence[tuple[str, Mapping, CostTable]], precision: str, *,
                  rescale_layers: bool = True, max_other_busy_pct: float | None = None,
                  rules: Sequence | None = None, layout: tuple[str, int] | None = None) -> Dataset:
    """(file, results document, CostTable of that model at batch 1 and `precision`) -> Dataset.

    rescale_layers: per-layer times are multiplied by p50 / kernel_total_s so that they sum
    to the measured end-to-end latency. The per-layer profile is a separate, shorter pass
    (docs/validation.md): on a busy host its level is disturbed more than its shape, and the
    executor's time between kernels is not in it. The per-layer rows then fit how the time is
    split among layers; the level comes from the interleaved p50. The factor is kept
    (ConfigObs.layer_scale) and reported.

    Configurations of other precisions, with more than one instance, failed or without a
    p50 are left out; so are, with max_other_busy_pct, configurations during whose timed runs
    other processes kept the host busier than that (``load.other_busy_pct_during``: the
    measurement was disturbed). Dataset.skipped lists what was left out and why. Per-layer groups: a node with measured time > 0 and no ``fused_into``
    is a group head; nodes with ``fused_into`` join their head's group. Nodes the analyzer
    does not know (by name) are ignored (their time still counts end to end).
    """
    by_model: dict[str, list] = {}
    tables: dict[str, CostTable] = {}
    skipped: list[str] = []
    threads = sorted({c.get("threads") for _, doc, _ in entries for c in doc.get("configurations", [])
                      if c.get("precision") == precision and c.get("threads") is not None})
    if len(threads) > 1:
        raise UserError(f"the results were measured at several thread counts ({', '.join(map(str, threads))}): a "
                        "profile describes one; calibrate the results of one thread count at a time")
    for file, doc, table in entries:
        name = doc["model"]["name"]
        tables.setdefault(name, table)
        index = {l.name: i for i, l in enumerate(table.layers)}
        nodes = set(index)
        for c in doc.get("configurations", []):
            if c.get("precision") != precision or c.get("instances", 1) != 1 or c.get("status", "ok") != "ok":
                continue
            lat = c.get("latency_s") or {}
            if not lat.get("p50"):
                continue
            other = (c.get("load") or {}).get("other_busy_pct_during")
            if max_other_busy_pct is not None and other is not None and other > max_other_busy_pct:
                skipped.append(f"{name} b{c['batch']} ({os.path.basename(file)}): other processes used "
                               f"{other:.0f}% of the host during the timed runs")
                continue
            members: dict[str, list[int]] = {}
            heads: dict[str, float] = {}
            runtime: dict[str, list[str]] = {}
            for l in c.get("layers", []):
                head = l.get("fused_into")
                if head is None:
                    if l.get("measured_s", 0) > 0:
                        heads[l["name"]] = float(l["measured_s"])
                        runtime[l["name"]] = list(l.get("kernels") or ())
                    head = l["name"]
                if l["name"] in index:
                    members.setdefault(head, []).append(index[l["name"]])
            kt = (c.get("layer_totals") or {}).get("kernel_total_s") or sum(heads.values())
            scale = float(lat["p50"]) / kt if rescale_layers and kt else 1.0
            groups = tuple((h, t * scale, tuple(members.get(h, ()))) for h, t in heads.items())
            events = tuple(max(len(runtime.get(h) or ()), 1) for h in heads)   # profiler events per group
            by_model.setdefault(name, []).append((ConfigObs(
                file=file, model=name, batch=int(c["batch"]), precision=precision, measured_s=float(lat["p50"]),
                groups=groups, kernel_total_s=kt, layer_scale=scale, group_events=events,
                events_total=sum(events) + len(c.get("unmapped") or ()) if rescale_layers else 0),
                runtime, nodes))
    models = []
    for name, obs in by_model.items():
        la = LayerArrays.from_table(tables[name], rules=rules, layout=layout)
        cfgs = [_leave_out_unmodelled(c, la, runtime, nodes) for c, runtime, nodes in obs]
        # one observation per (file, batch); keep them all (repeated runs average in the fit)
        models.append(ModelData(name=name, layers=la, configs=tuple(sorted(cfgs, key=lambda c: (c.batch, c.file)))))
    if not models:
        if skipped:
            raise UserError(f"no usable {precision} configurations: all {len(skipped)} were left out as disturbed (other "
                            f"processes used more than {max_other_busy_pct:g}% of the host during their timed runs); "
                            "re-run `estimate validate` on a quieter host or raise --max-other-busy")
        raise UserError(f"no usable {precision} configurations in the results (need single-instance runs with a p50)")
    return Dataset(tuple(sorted(models, key=lambda m: m.name)), precision, tuple(dict.fromkeys(e[0] for e in entries)),
                   tuple(skipped))


def _embedded(la: LayerArrays) -> LayerArrays:
    """A sample's layers as if inside a model: detect binds the inputs and the output once and
    calls the kernel repeatedly, so they stay in the caches when they fit, like the activations
    between two layers of a model; a model's own inputs and outputs, in contrast, the roofline
    reads from and writes to DRAM. So each graph input counts as produced by its first consumer
    and no tensor is a graph output: a tensor then goes to DRAM only when it does not fit."""
    import dataclasses

    first = la.cons_pad[:, 0] if la.cons_pad.shape[1] else np.full(len(la.producer), -1)
    n_layers = len(la.names)
    prod = np.where((la.producer < 0) & (first < n_layers), first, la.producer)
    return dataclasses.replace(la, producer=prod, is_output=np.zeros_like(la.is_output))


def unmodelled_fusion(kernels: Sequence[str], members: Sequence[int], la: LayerArrays, nodes: set[str]) -> str | None:
    """The runtime kernel of a measured group when the runtime fused, into a node of its own,
    layers that the profile's fusion rules leave in two or more kernels (onnxruntime's
    SkipLayerNormalization of a bias Add, a residual Add and a LayerNormalization; BiasGelu);
    else None. The roofline cannot represent such a kernel (its cost is the fused node's, not
    the sum of the kernels the rules form: on this host a SkipLayerNormalization of 128 x 768
    takes 205 us, the Add and LayerNormalization it replaces 17 and 31 us), so fitting to it
    would bend the classes it is split into. A kernel the runtime inserts (a layout conversion
    `..._nchwc` or Reorder, a Transpose the transpose optimizer moved, a Cast, a (de)quantization
    or a copy: validate.profile_join.ADDED_OPS) is not such a kernel."""
    from .validate.profile_join import ADDED_OPS   # kernels a runtime inserts (layout, casts, copies), not fusions

    inserted = tuple(ADDED_OPS) + ("InsertedPrecisionFreeCast", "Memcpy")
    new = [k for k in kernels if k not in nodes and not k.endswith("_nchwc") and not k.startswith(inserted)]
    if not new:
        return None
    costed = la.costed & ~la.is_view
    heads = {int(la.kernel_head[i]) for i in members if costed[i]}
    return new[0] if len(heads) >= 2 else None


def _leave_out_unmodelled(c: ConfigObs, la: LayerArrays, runtime: Mapping[str, Sequence[str]], nodes: set[str]) -> ConfigObs:
    keep, events, out = [], [], []
    for (h, t, members), e in zip(c.groups, c.group_events or (1,) * len(c.groups)):
        k = unmodelled_fusion(runtime.get(h, ()), members, la, nodes)
        if k:
            out.append((h, k, t, members))
        else:
            keep.append((h, t, members))
            events.append(e)
    return dataclasses.replace(c, groups=tuple(keep), group_events=tuple(events), left_out=tuple(out)) if out else c


def sample_dataset(doc: Mapping, precision: str, *, source: str = "kernel samples",
                   rules: Sequence | None = None, layout: tuple[str, int] | None = None) -> Dataset:
    """The kernel samples `estimate hw detect` timed (estimator.kernel_samples) as a Dataset:
    one model per sample, one configuration per timed batch, one layer group holding all of the
    sample's costed layers (the sample is one kernel, or a kernel and its epilogue)."""
    from .models import kernel_samples as ks
    from .analyze import analyze
    from .onnx_io import load_graph

    if not isinstance(doc, Mapping) or doc.get("schema") != ks.SCHEMA:
        raise UserError(f"{source}: not a kernel samples file (schema {ks.SCHEMA!r})")
    if doc.get("schema_version") != ks.SCHEMA_VERSION:
        raise UserError(f"{source}: kernel samples schema_version {doc.get('schema_version')!r}; this version reads "
                        f"{ks.SCHEMA_VERSION} (re-run estimate hw detect)")
    if doc.get("precision", "fp32") != precision:
        raise UserError(f"{source}: the kernel samples are timed in {doc.get('precision', 'fp32')}, the results are "
                        f"{precision}: calibrate with --no-kernel-samples (or results in {doc.get('precision', 'fp32')})")
    samples = doc.get("samples")
    if not isinstance(samples, list):
        raise UserError(f"{source}: 'samples' must be a list of kernel samples")
    models = []
    for k, r in enumerate(samples):
        try:
            spec, times, sid = r["spec"], r["time_s"], str(r["id"])
            cls = str(spec["class"])
            timed = sorted((int(b), float(t)) for b, t in times.items())
            if any(b < 1 or not math.isfinite(t) or t < 0 for b, t in timed):
                raise ValueError("batches must be >= 1 and times finite and >= 0")
            model, _ = ks.build(spec, 1)
            table = analyze(load_graph(model), precision=precision)
        except (KeyError, TypeError, ValueError, AttributeError, UserError) as e:
            raise UserError(f"{source}: samples[{k}] is not a kernel sample this version can rebuild ({e})") from None
        bad = [l for l in table.layers if l.status != "ok"]
        if bad:  # unknown is not zero: a sample with an uncosted layer would be fitted as if it were free
            raise UserError(f"{source}: samples[{k}] ({sid}): layer '{bad[0].name}' ({bad[0].op_type}) is not costed "
                            f"({bad[0].status}); re-run estimate hw detect")
        la = _embedded(LayerArrays.from_table(table, rules=rules, layout=layout))
        members = tuple(i for i, l in enumerate(table.layers) if l.kind != "view")
        head = table.layers[members[0]].name
        if layout:   # reported under the class it is costed as (a plain grouped conv: grouped_nchw)
            from .kernels import layout_class
            cls = layout_class(table.layers[members[0]], layout[1])
        spread = _round_spread(r.get("round_times_s"))
        cfgs = tuple(ConfigObs(file=source, model=f"kernel {sid}", batch=b, precision=precision,
                               measured_s=t, groups=((head, t, members),), round_spread=spread.get(b))
                     for b, t in timed if t > 0)
        if cfgs:
            models.append(ModelData(name=f"kernel {sid}", layers=la, configs=cfgs, sample=cls))
    if not models:
        raise UserError(f"{source}: no kernel samples with a measured time")
    return Dataset(tuple(models), precision, (source,))


def _round_spread(rounds: Any) -> dict[int, float]:
    """{batch: slowest / fastest round - 1} of a sample's per-round times (round_times_s, written by
    detect since 2026-12-02; absent in older files and ignored where malformed: it is a diagnostic,
    not fitted)."""
    out: dict[int, float] = {}
    if not isinstance(rounds, Mapping):
        return out
    for b, ts in rounds.items():
        if not isinstance(ts, (list, tuple)):
            continue
        try:
            v = [float(t) for t in ts]
            if len(v) >= 2 and min(v) > 0 and all(math.isfinite(t) for t in v):
                out[int(b)] = max(v) / min(v) - 1.0
        except (TypeError, ValueError):
            continue
    return out


def samples_round_spread(doc: Mapping) -> float | None:
    """The median, over a samples file's samples and batches, of slowest / fastest timing round - 1
    (_round_spread); None when no sample has two rounds (a --quick detect, an older file)."""
    samples = doc.get("samples") if isinstance(doc, Mapping) else None
    v = [x for r in (samples if isinstance(samples, list) else []) if isinstance(r, Mapping)
         for x in _round_spread(r.get("round_times_s")).values()]
    return float(np.median(v)) if v else None


# ----------------------------------------------------------------------------- parameters


@dataclass(frozen=True)
class Params:
    """x = 1/efficiency per layer class (LAYER_CLASSES order), x_mem = 1/memory efficiency,
    overhead_s = seconds per costed layer, per layer class (LAYER_CLASSES order),
    s_onchip = seconds per byte of a contraction layer's on-chip activation traffic
    (1 / onchip_bandwidth_bytes_per_s; 0 = no such term)."""

    x_class: np.ndarray
    x_mem: float
    overhead_s: np.ndarray
    s_onchip: float = 0.0
    in_graph_s: float = 0.0   # seconds per kernel of a whole graph on top of its class's (not for kernel samples)
    s_fetch: float = 0.0      # seconds per weight byte a contraction reads from DRAM, not overlapped (0 = no term)
    s_call: float = 0.0       # seconds per blocked-kernel call of a grouped conv (grouped_call_s; kernels.grouped_calls)

    @classmethod
    def from_profile(cls, p: HardwareProfile) -> "Params":
        bw = p.onchip_bandwidth_bytes_per_s
        return cls(np.array([1.0 / p.efficiency.compute_for(c) for c in LAYER_CLASSES]),
                   1.0 / p.efficiency.memory, np.array([p.overhead_for(c) for c in LAYER_CLASSES]),
                   0.0 if bw is None else 1.0 / bw, float(p.kernel_overhead_in_graph_s),
                   0.0 if p.weight_fetch_bandwidth_bytes_per_s is None else 1.0 / p.weight_fetch_bandwidth_bytes_per_s,
                   float(p.grouped_call_s))

    def vector(self) -> np.ndarray:
        return np.r_[self.x_class, self.x_mem, self.overhead_s, self.s_onchip, self.in_graph_s, self.s_fetch, self.s_call]

    @classmethod
    def from_vector(cls, v: np.ndarray) -> "Params":
        n = len(LAYER_CLASSES)
        return cls(np.array(v[:n], dtype=float), float(v[n]), np.array(v[n + 1:n + 1 + n], dtype=float),
                   float(v[2 * n + 1]), float(v[2 * n + 2]) if len(v) > 2 * n + 2 else 0.0,
                   float(v[2 * n + 3]) if len(v) > 2 * n + 3 else 0.0,
                   float(v[2 * n + 4]) if len(v) > 2 * n + 4 else 0.0)

    @property
    def fetch_bandwidth(self) -> float | None:
        """bytes/s of the weight fetch, or None when there is no such term."""
        return 1.0 / self.s_fetch if self.s_fetch * ONCHIP_NONE_BPS > 1 else None

    @property
    def onchip_bandwidth(self) -> float | None:
        """bytes/s, or None when there is no on-chip traffic term."""
        return 1.0 / self.s_onchip if self.s_onchip * ONCHIP_NONE_BPS > 1 else None

    def overheads(self) -> dict[str, float]:
        return {c: float(o) for c, o in zip(LAYER_CLASSES, self.overhead_s)}

    def efficiencies(self) -> dict[str, float]:
        return {c: 1.0 / x for c, x in zip(LAYER_CLASSES, self.x_class)}


def apply_params(profile: HardwareProfile, params: Params, fitted_classes: Sequence[str] | None = None,
                 source: str | None = None, notes: Mapping[str, str] | None = None,
                 overhead_classes: Sequence[str] | None = None) -> HardwareProfile:
    """The profile with the fitted efficiencies and overheads (rounded to 4 significant digits).

    Fitted overheads go to layer_overhead_by_class_s; a class without a fitted overhead (too
    few layers of it in the data) keeps the input profile's cost, as it keeps its efficiency
    (for a profile from `estimate hw detect` that is 0: its per-class rates are timed per
    whole call, so they already hold the call's fixed cost)."""
    eff = params.efficiencies()
    by_class = {c: _r4(eff[c]) for c in LAYER_CLASSES}
    used = [by_class[c] for c in (fitted_classes or LAYER_CLASSES)]
    compute = _r4(float(np.median(used))) if used else profile.efficiency.compute
    ov = params.overheads()
    ov_classes = list(overhead_classes) if overhead_classes is not None else list(LAYER_CLASSES)
    ov_by = {**dict(profile.layer_overhead_by_class_s), **{c: float(f"{ov[c]:.4g}") for c in ov_classes}}
    ov_default = profile.layer_overhead_s
    bw = params.onchip_bandwidth
    g = float(f"{params.in_graph_s:.4g}") if params.in_graph_s > 0 else None
    fb = params.fetch_bandwidth
    changes = {"efficiency": {"compute": compute, "memory": _r4(1.0 / params.x_mem), "by_layer_class": by_class},
               "layer_overhead_s": ov_default, "layer_overhead_by_class_s": ov_by or None,
               "onchip_bandwidth_bytes_per_s": None if bw is None else _r4(bw), "kernel_overhead_in_graph_s": g,
               "weight_fetch_bandwidth_bytes_per_s": None if fb is None else _r4(fb),
               "grouped_call_s": float(f"{params.s_call:.4g}") if params.s_call > 0 else None}
    out = with_overrides(profile, **changes)
    extra = {}
    if source is not None:
        extra["source"] = source
    if notes is not None:
        merged = {k: v for k, v in out.notes.items()
                  if k not in ("efficiency", "layer_overhead_s", "layer_overhead_by_class_s",
                               "onchip_bandwidth_bytes_per_s", "kernel_overhead_in_graph_s",
                               "weight_fetch_bandwidth_bytes_per_s", "grouped_call_s")}
        merged.update(notes)
        extra["notes"] = merged
    return with_overrides(out, **extra) if extra else out


def _r4(x: float) -> float:
    return float(f"{x:.4g}")


# ----------------------------------------------------------------------------- basis


@dataclass(frozen=True)
class _Basis:
    """Per-layer compute and memory seconds at efficiency 1 for every sub-batch the roofline
    may run (evaluate(): powers of two and the measured batches), so that the fit picks the
    sub-batch exactly as the roofline does with the current parameters."""

    cand: np.ndarray      # (S,) candidate sub-batches
    comp: np.ndarray      # (V, S, L) compute seconds of one pass at efficiency 1; V: streamed[, pinned] weights
    mem: np.ndarray       # (V, S, L) memory seconds of one pass at efficiency 1
    costed: np.ndarray    # (L,) bool: gets the overhead
    cls: np.ndarray       # (L,) class index
    act: np.ndarray       # (S, L) on-chip activation bytes of one pass (contraction layers; else 0)
    reo: np.ndarray       # (S, L) seconds of a pass's layout conversions at efficiency 1 (data class)
    in_graph: float = 1.0  # 1 for a whole model (its kernels pay Params.in_graph_s), 0 for a kernel sample
    fetch: np.ndarray = None  # (V, S, L) weight bytes of a pass a contraction reads from DRAM (Params.s_fetch)
    split: np.ndarray = None  # (S, L) 1 for a kernel that pays Params.in_graph_s (roofline.pays_in_graph)
    calls: np.ndarray = None  # (S, L) blocked-kernel calls of a pass's grouped convs (Params.s_call)

    def terms(self, batch: int, p: "Params") -> "_Terms":
        """The terms at efficiency 1 (of one pass, and the number of passes) for what the roofline picks
        for `batch` under p: per sub-batch the faster of pinned and streamed weights
        (roofline._best_residency), then the fastest number of passes x pass time."""
        best = None
        for si, sb in enumerate(self.cand):
            if sb > batch:
                continue
            lat = [_times(self._at(v, si), self, p).sum() for v in range(self.comp.shape[0])]
            v = 1 if len(lat) > 1 and lat[1] <= lat[0] else 0
            n = math.ceil(batch / sb)
            t = n * lat[v]
            if best is None or t < best[0]:
                best = (t, v, si, n)
        _, v, si, n = best
        return self._at(v, si, float(n))

    def _at(self, v: int, si: int, n: float = 1.0) -> "_Terms":
        return _Terms(self.comp[v, si], self.mem[v, si], self.act[si], self.reo[si], self.fetch[v, si],
                      self.split[si], n, self.calls[si])


@dataclass(frozen=True)
class _Terms:
    """One pass's terms at efficiency 1 (L,), and the number of passes."""

    comp: np.ndarray
    mem: np.ndarray
    act: np.ndarray
    reo: np.ndarray
    fetch: np.ndarray
    split: np.ndarray
    n: float
    calls: np.ndarray

    def scaled(self) -> "_Terms":
        """The terms of all passes (times n; split is a 0/1 per kernel, counted per pass below)."""
        n = self.n
        return _Terms(self.comp * n, self.mem * n, self.act * n, self.reo * n, self.fetch * n, self.split, n,
                      self.calls * n)

    def compute_s(self, cls: np.ndarray, p: "Params") -> np.ndarray:
        return (self.comp * p.x_class[cls] + self.reo * p.x_class[_DATA] + self.act * p.s_onchip + self.fetch * p.s_fetch
                + self.calls * p.s_call)


def _times(t: _Terms, basis: _Basis, p: "Params") -> np.ndarray:
    """Seconds per layer of one pass."""
    return (np.maximum(t.compute_s(basis.cls, p), t.mem * p.x_mem)
            + (p.overhead_s[basis.cls] + p.in_graph_s * basis.in_graph * t.split) * basis.costed)


def _unit_profile(profile: HardwareProfile) -> HardwareProfile:
    return with_overrides(profile, efficiency={"compute": 1.0, "memory": 1.0}, layer_overhead_s=0.0,
                          onchip_bandwidth_bytes_per_s=None, kernel_overhead_in_graph_s=None,
                          weight_fetch_bandwidth_bytes_per_s=None, grouped_call_s=None)


def _basis(m: ModelData, unit: HardwareProfile, precision: str) -> _Basis:
    from .roofline import _evaluate_plain, can_pin, pays_in_graph, weight_hits  # one pass per batch, no sub-batch or residency choice

    want = sorted({c.batch for c in m.configs})
    top = max(want)
    cand = sorted(set(want) | {1 << k for k in range(top.bit_length()) if (1 << k) <= top})
    hw = HwArrays.from_profiles([unit], precision)
    variants = [_evaluate_plain(m.layers, hw, cand, pin_weights=False)]
    if can_pin(m.layers, hw, variants[0].weight_bytes_total):
        variants.append(_evaluate_plain(m.layers, hw, cand, pin_weights=True))
    costed = m.layers.costed & ~m.layers.is_view
    if m.layers.fused is not None:  # fused epilogues get no overhead (estimator.roofline)
        costed = costed & ~m.layers.fused
    # the roofline's on-chip term (estimator.roofline._evaluate_plain): activation bytes of costed
    # contraction layers, per pass
    contraction = costed & (m.layers.macs > 0)
    act = np.asarray(cand, dtype=float)[:, None] * np.where(contraction, m.layers.ws_bytes, 0.0)[None, :]
    # the layout conversions' share of the compute, timed with the data class's efficiency
    vec = float(hw.vector_ops_per_s[0])
    reo = (np.asarray(cand, dtype=float)[:, None] * m.layers.reorder[None, :] / vec
           if m.layers.reorder is not None and np.isfinite(vec) else np.zeros((len(cand), len(m.layers.names))))
    comp = np.stack([r.compute_s[0] for r in variants]) - reo[None]
    # the weights a contraction reads from DRAM per pass (roofline: (1 - share in SRAM) x its weights)
    hits = [0.0] + ([float(weight_hits(m.layers, hw, variants[0].weight_bytes_total)[0])] if len(variants) > 1 else [])
    wread = np.where(contraction, m.layers.weight_read_bytes, 0.0)
    # fitted for a CPU host only (weight_residency: cache): an accelerator's weight stream is its DRAM term
    cache = bool(hw.weight_cache is not None and hw.weight_cache[0])
    fetch = np.stack([np.broadcast_to((1.0 - h) * wread * cache, (len(cand), len(wread))) for h in hits])
    split = pays_in_graph(m.layers, hw, np.asarray(cand, dtype=float)[None, :, None])[0].astype(float)
    # a grouped conv's calls of the blocked kernel (kernels.grouped_calls), per pass
    calls = np.asarray(cand, dtype=float)[:, None] * (np.where(costed, m.layers.calls, 0.0)[None, :]
                                                      if m.layers.calls is not None else np.zeros((1, len(costed))))
    return _Basis(cand=np.array(cand), comp=np.maximum(comp, 0.0),
                  mem=np.stack([r.memory_s[0] for r in variants]), costed=costed, cls=m.layers.class_idx, act=act, reo=reo,
                  in_graph=0.0 if m.sample else 1.0, fetch=fetch, split=split, calls=calls)


def _layer_times(basis: _Basis, batch: int, p: Params) -> np.ndarray:
    t = basis.terms(batch, p)
    return t.n * _times(t, basis, p)


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
    overhead_classes: tuple[str, ...] = ()  # classes whose overhead was fitted
    memory_kept: bool = False           # too little DRAM-bound time: memory efficiency kept from the input profile
    tied: tuple[tuple[str, str], ...] = ()  # (class, parent): too little data of its own, follows its parent
    profiler_s: float = 0.0             # fitted profiler cost per kernel event of the per-layer times (not a profile key)
    calls_fitted: bool = False          # grouped_call_s fitted (MIN_CALL_SAMPLES grouped kernel samples), else kept


def _bounded_lsq(A: np.ndarray, y: np.ndarray, lo: np.ndarray, hi: np.ndarray, free: np.ndarray,
                 x0: np.ndarray) -> np.ndarray:
    """min ||A x - y|| subject to lo <= x <= hi; variables with free == False stay at x0.

    scipy.optimize.lsq_linear (method "bvls", exact for these small dense problems) on the free
    columns, with the fixed ones moved to the right-hand side."""
    from scipy.optimize import lsq_linear

    x = np.clip(x0, lo, hi).astype(float)
    if not free.any():
        return x
    rhs = y - A[:, ~free] @ x[~free]
    sol = lsq_linear(A[:, free], rhs, bounds=(lo[free], hi[free]), method="bvls")
    x[free] = np.clip(sol.x, lo[free], hi[free])
    return x


#: Deterministic starting points (efficiency for every compute class, memory efficiency) tried
#: besides the input profile's values; the alternation can settle on a self-consistent but
#: wrong choice of branches, so the start with the lowest true (max-based) residual wins.
STARTS = ((1.0, 1.0), (0.5, 0.5), (0.25, 1.0), (1.0, 0.25), (0.1, 0.1))


def fit(data: Dataset, profile: HardwareProfile, *, use_layers: bool = True, use_e2e: bool = True,
        prior: Params | None = None) -> FitResult:
    """Fit Params to the dataset (see the module docstring for the model and the rows)."""
    unit = _unit_profile(profile)
    prior = prior or Params.from_profile(profile)
    bases = [_basis(m, unit, data.precision) for m in data.models]
    nC = len(LAYER_CLASSES)
    starts = [prior] + [Params(np.full(nC, 1.0 / e), 1.0 / mm, prior.overhead_s.copy(), prior.s_onchip) for e, mm in STARTS]
    best = None
    for st in starts:
        r = _fit_from(data, bases, st, prior, use_layers, use_e2e)
        if best is None or r.residual_rms < best.residual_rms - 1e-12:
            best = r
    return best


def _fit_from(data: Dataset, bases, start: Params, prior: Params, use_layers: bool, use_e2e: bool) -> FitResult:
    nC = len(LAYER_CLASSES)
    nP = 2 * nC + 6
    S_COL = 2 * nC + 1
    G_COL = 2 * nC + 2   # the in-graph fixed cost per kernel
    F_COL = 2 * nC + 3   # the weight fetch, seconds per byte
    C_COL = 2 * nC + 4   # a grouped conv's cost per call of the blocked kernel
    P_COL = 2 * nC + 5   # the profiler's cost per kernel event, in the per-layer times only (a nuisance, not in Params)
    # which classes have work in the data
    work = np.zeros(nC)
    major = np.zeros(nC, dtype=bool)   # carries >= MIN_CLASS_SHARE of some model's compute time
    for b in bases:
        wm = np.zeros(nC)
        np.add.at(wm, b.cls, b.comp[0].sum(axis=0))
        work += wm
        major |= (wm > 0) & (wm >= MIN_CLASS_SHARE * wm.sum())
    # a class is fitted only if it carries at least MIN_CLASS_SHARE of some model's compute time: a
    # class seen only in a few small layers (the classifier GEMM of a CNN) would otherwise be
    # set by them and then mispredict models where it dominates (a transformer's GEMMs)
    # a class's overhead is fitted when the data has at least MIN_OVERHEAD_LAYERS layers of it
    n_layers = np.zeros(nC)
    for b in bases:
        np.add.at(n_layers, b.cls[b.costed], 1)
    ov_free = n_layers >= MIN_OVERHEAD_LAYERS
    has_act = any(b.act.any() for b in bases)
    # a finer class with too little data of its own follows its parent (ops.base.CLASS_PARENT):
    # its layers share the parent's column, so the parent's fitted figure, not the input
    # profile's, applies to them
    eff_col, ov_col = np.arange(nC), np.arange(nC)
    tied: dict[str, str] = {}
    for child in CLASS_PARENT:
        ci = LAYER_CLASSES.index(child)
        # the nearest ancestor with data of its own (grouped_nchw -> grouped -> conv_other)
        for has, col in ((major, eff_col), (ov_free, ov_col)):
            parent = CLASS_PARENT[child]
            while parent is not None and not has[LAYER_CLASSES.index(parent)]:
                parent = CLASS_PARENT.get(parent)
            if not has[ci] and parent is not None:
                col[ci] = LAYER_CLASSES.index(parent)
                tied[child] = parent
    # the in-graph cost per kernel is told apart from the classes' own fixed costs only by kernel
    # samples (timed alone: without it) next to whole models (with it)
    has_samples = any(b.in_graph == 0.0 for b in bases)
    has_models = any(b.in_graph > 0.0 for b in bases)
    # the profiler's cost per event is told apart from the in-graph cost by the end-to-end rows
    # (timed without the profiler) next to the per-layer ones
    has_profile = use_layers and use_e2e and any(c.group_events for m in data.models for c in m.configs)
    # the weight fetch: a whole model's contraction kernels read weights from DRAM, the samples' (in the
    # cache) do not
    has_fetch = has_samples and any(b.fetch.any() for b in bases if b.in_graph > 0.0)
    # the cost per call of a grouped conv's blocked kernel is told apart from the class's rate and fixed
    # cost only by grouped convs of different call counts per MAC: MIN_CALL_SAMPLES kernel samples of them
    has_calls = sum(1 for b in bases if b.in_graph == 0.0 and b.calls.any()) >= MIN_CALL_SAMPLES
    free = np.r_[major, True, ov_free, has_act, has_samples and has_models, has_fetch, has_calls, has_profile]

    def untie(th: np.ndarray) -> np.ndarray:
        th = th.copy()
        th[:nC] = th[eff_col]
        th[nC + 1:2 * nC + 1] = th[nC + 1 + ov_col]
        return th

    lo = np.r_[np.full(nC, 1.0 / EFF_MAX), 1.0 / EFF_MAX, np.zeros(nC), 0.0, 0.0, 0.0, 0.0, 0.0]
    hi = np.r_[np.full(nC, 1.0 / EFF_MIN), 1.0 / EFF_MIN, np.full(nC, OVERHEAD_MAX_S), 1.0 / ONCHIP_MIN_BPS,
               OVERHEAD_MAX_S, 1.0 / ONCHIP_MIN_BPS, OVERHEAD_MAX_S, OVERHEAD_MAX_S]
    theta = np.clip(np.where(free, np.r_[start.vector(), 0.0], np.r_[prior.vector(), 0.0]), lo, hi)
    it = 0
    converged = False
    rows_l = rows_e = 0
    mem_kept = False
    for attempt in range(2):
        prev_branch = None
        prof_prev = theta[P_COL]
        recent: list[np.ndarray] = []
        for it in range(1, MAX_OUTER + 1):
            p = Params.from_vector(theta)
            A_rows, y_rows, branch_all = [], [], []
            rows_l = rows_e = 0
            for b, m in zip(bases, data.models):
                for c in m.configs:
                    tm = b.terms(c.batch, p)
                    npass = tm.n
                    tm = tm.scaled()
                    comp0, mem0, act0, reo0 = tm.comp, tm.mem, tm.act, tm.reo
                    is_comp = tm.compute_s(b.cls, p) >= mem0 * p.x_mem
                    branch_all.append(is_comp)
                    # per-layer design rows (L, nP)
                    R = np.zeros((len(b.cls), nP))
                    idx = np.arange(len(b.cls))
                    R[idx[is_comp], eff_col[b.cls[is_comp]]] = comp0[is_comp]
                    R[idx[is_comp], S_COL] = act0[is_comp]
                    R[idx[is_comp], F_COL] = tm.fetch[is_comp]
                    R[idx[is_comp], C_COL] = tm.calls[is_comp]
                    # layout conversions next to a layer: data movement, the data class's column
                    R[idx[is_comp], eff_col[_DATA]] += reo0[is_comp]
                    R[idx[~is_comp], nC] = mem0[~is_comp]
                    R[idx, nC + 1 + ov_col[b.cls]] = b.costed * npass
                    R[idx, G_COL] = b.costed * npass * b.in_graph * tm.split
                    n_groups = 0
                    if use_layers:
                        # the profiler's cost per event (previous iteration's) out of the rescale
                        f = c.profiler_factor(theta[P_COL])
                        for (_, t, members), ev in zip(c.groups, c.group_events or (0,) * len(c.groups)):
                            if not members or t <= 0:
                                continue
                            row = R[list(members)].sum(axis=0)
                            if not row.any():
                                continue
                            row[P_COL] = ev * c.layer_scale * f
                            A_rows.append(row / (t * f))
                            y_rows.append(1.0)
                            n_groups += 1
                    rows_l += n_groups
                    if use_e2e and c.e2e_usable:
                        w = math.sqrt(max(n_groups, 1))
                        e2e = R.sum(axis=0) - (R[list(c.left_out_layers)].sum(axis=0) if c.left_out else 0.0)
                        A_rows.append(w * e2e / (c.measured_s - c.left_out_s))
                        y_rows.append(w)
                        rows_e += 1
            if not A_rows:
                raise UserError("nothing to fit: the results have no per-layer or end-to-end times for these models")
            A = np.array(A_rows)
            y = np.array(y_rows)
            # column scaling for conditioning
            scale = np.where(np.abs(A).max(axis=0) > 0, np.abs(A).max(axis=0), 1.0)
            As = A / scale
            sol = _bounded_lsq(As, y, lo * scale, hi * scale, free, theta * scale)
            theta = untie(sol / scale)
            branch = np.concatenate(branch_all) if branch_all else np.zeros(0, dtype=bool)
            settled = abs(theta[P_COL] - prof_prev) <= 1e-3 * max(theta[P_COL], 1e-9)
            prof_prev = theta[P_COL]
            if prev_branch is not None and np.array_equal(branch, prev_branch) and settled:
                converged = True
                break
            prev_branch = branch
            recent = (recent + [theta.copy()])[-6:]
        if not converged and recent:
            # the branches cycle: take the best of the last solutions by the true (max-based) objective
            theta = min(recent, key=lambda th: _true_rms(data, bases, Params.from_vector(th), use_layers, use_e2e,
                                                         th[P_COL]))
        # memory efficiency is identified only by DRAM-bound layers: when they carry less than
        # MIN_CLASS_SHARE of every configuration's time at the solution, keep the input profile's
        # value and fit the rest again; if that value then makes layers DRAM-bound (the input's
        # bandwidth is lower than the data allow), the data did pin a floor: the first fit stands
        dram_bound = _dram_bound(data, bases, Params.from_vector(theta))
        if attempt == 0:
            if dram_bound or not free[nC]:
                break
            first = (theta.copy(), converged, it)
            free[nC] = False
            theta[nC] = np.clip(prior.x_mem, lo[nC], hi[nC])
            mem_kept = True
            converged = False
        elif dram_bound:
            theta, converged, it = first
            free[nC] = True
            mem_kept = False
    if theta[S_COL] * ONCHIP_NONE_BPS <= 1:   # round-off of a zero cost: no on-chip term
        theta[S_COL] = 0.0
    if theta[F_COL] * ONCHIP_NONE_BPS <= 1:   # the same for the weight fetch
        theta[F_COL] = 0.0
    if theta[C_COL] < 1e-12:   # the same for the cost per call (under a picosecond: no term)
        theta[C_COL] = 0.0
    # a class whose layers are all memory-bound at the solution is not identified by the data:
    # it keeps the input profile's value
    bound = np.zeros(nC, dtype=bool)
    p = Params.from_vector(theta)
    for b, m in zip(bases, data.models):
        for c in m.configs:
            tm = b.terms(c.batch, p)
            is_comp = (tm.compute_s(b.cls, p) >= tm.mem * p.x_mem) & (tm.comp > 0)
            bound[np.unique(b.cls[is_comp])] = True
    keep = free[:nC] & bound
    theta[:nC] = np.where(keep, theta[:nC], np.clip(prior.x_class, lo[:nC], hi[:nC]))
    keep = keep | keep[eff_col]        # tied children follow what their parent kept
    theta = untie(theta)
    rms = _true_rms(data, bases, Params.from_vector(theta), use_layers, use_e2e, theta[P_COL])
    fitted = tuple(c for c, k in zip(LAYER_CLASSES, keep) if k)
    ov_fitted = tuple(c for c, k in zip(LAYER_CLASSES, ov_free[ov_col]) if k)
    return FitResult(Params.from_vector(theta), fitted, it, converged, rows_l, rows_e, rms, ov_fitted,
                     memory_kept=mem_kept, tied=tuple(sorted(tied.items())), profiler_s=float(theta[P_COL]),
                     calls_fitted=bool(has_calls))


def _dram_bound(data: Dataset, bases, p: Params) -> bool:
    """Some configuration spends >= MIN_CLASS_SHARE of its predicted time in DRAM-bound layers."""
    for b, m in zip(bases, data.models):
        for c in m.configs:
            tm = b.terms(c.batch, p)
            on_mem = tm.mem * p.x_mem > tm.compute_s(b.cls, p)
            t = _times(tm, b, p)
            if t[on_mem].sum() >= MIN_CLASS_SHARE * t.sum() > 0:
                return True
    return False


def _true_rms(data: Dataset, bases, p: Params, use_layers: bool, use_e2e: bool, profiler_s: float = 0.0) -> float:
    """RMS of the weighted relative residuals with the real max() (the fit's objective);
    `profiler_s`: the profiler's cost per event in the per-layer times."""
    res = []
    for b, m in zip(bases, data.models):
        for c in m.configs:
            t = _layer_times(b, c.batch, p)
            n = 0
            if use_layers:
                f = c.profiler_factor(profiler_s)
                for (_, meas, members), ev in zip(c.groups, c.group_events or (0,) * len(c.groups)):
                    if members and meas > 0:
                        pr = t[list(members)].sum()
                        if pr > 0:
                            res.append((pr + profiler_s * ev * c.layer_scale * f) / (meas * f) - 1)
                            n += 1
            if use_e2e and c.e2e_usable:
                rest = t.sum() - (t[list(c.left_out_layers)].sum() if c.left_out else 0.0)
                res.append(math.sqrt(max(n, 1)) * (rest / (c.measured_s - c.left_out_s) - 1))
    return float(np.sqrt(np.mean(np.square(res)))) if res else float("nan")


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


def class_contributions(data: Dataset, profile: HardwareProfile, profiler_s: float = 0.0) -> dict[str, dict]:
    """Where a profile's end-to-end error on measured models comes from, by kernel class.

    Per configuration, each measured layer group (a runtime kernel and the nodes it absorbed,
    ConfigObs.groups) goes to the class of its head layer, with its time rescaled to the p50 as
    in the fit and `profiler_s` per profiler event taken out first (the fitted
    `profiler_s_per_event`: short kernels carry the profiler's cost the most). Returns class ->
    {"layers", "predicted_s", "measured_s", "contribution"}, summed over the configurations;
    contribution is the mean over configurations of (predicted - measured) of the class / the
    measured end-to-end time, so the classes' contributions add up to the mean error (up to
    the time of kernels no layer maps to, class "unmapped", and kernels left out of the fit).
    Layers predicted but not measured (no group) count under their class with no measured
    time."""
    hw = HwArrays.from_profiles([profile], data.precision)
    out: dict[str, dict] = {}
    n = 0

    def row(c: str) -> dict:
        return out.setdefault(c, {"layers": 0, "predicted_s": 0.0, "measured_s": 0.0, "contribution": 0.0})

    for m in data.models:
        batches = sorted({c.batch for c in m.configs})
        raw = evaluate(m.layers, hw, batches)
        index = {name: i for i, name in enumerate(m.layers.names)}
        for c in m.configs:
            t = raw.time_s[0, batches.index(c.batch)]
            f = c.profiler_factor(profiler_s)
            events = c.group_events or (1,) * len(c.groups)
            seen = set(c.left_out_layers)
            pred_c: dict[str, float] = {}
            meas_c: dict[str, float] = {}
            for (head, meas, members), ev in zip(c.groups, events):
                corrected = max(meas - profiler_s * ev * c.layer_scale, 0.0) * f
                if not members:
                    meas_c["unmapped"] = meas_c.get("unmapped", 0.0) + corrected
                    continue
                cls = LAYER_CLASSES[int(m.layers.class_idx[index.get(head, members[0])])]
                meas_c[cls] = meas_c.get(cls, 0.0) + corrected
                pred_c[cls] = pred_c.get(cls, 0.0) + float(t[list(members)].sum())
                row(cls)["layers"] += 1
                seen.update(members)
            for i in range(len(m.layers.names)):
                if i not in seen and t[i] > 0:
                    cls = LAYER_CLASSES[int(m.layers.class_idx[i])]
                    pred_c[cls] = pred_c.get(cls, 0.0) + float(t[i])
            for cls in set(pred_c) | set(meas_c):
                r = row(cls)
                p, q = pred_c.get(cls, 0.0), meas_c.get(cls, 0.0)
                r["predicted_s"] += p
                r["measured_s"] += q
                r["contribution"] += (p - q) / c.measured_s
            n += 1
    for r in out.values():
        r["contribution"] /= max(n, 1)
    return dict(sorted(out.items(), key=lambda kv: kv[1]["contribution"]))


def error_stats(points: list[dict], worst: int = 3) -> dict:
    """End-to-end and per-layer error summary of predict_dataset() output."""
    e = np.array([abs(p["error"]) for p in points]) if points else np.zeros(0)
    lay = [l for p in points for l in p["layers"]]
    le = np.array([abs(l["error"]) for l in lay]) if lay else np.zeros(0)
    lw = np.array([l["measured_s"] for l in lay]) if lay else np.zeros(0)

    def share(a: np.ndarray, lim: float) -> float | None:
        return float((a <= lim).mean()) if a.size else None

    ranked = sorted(points, key=lambda p: -abs(p["error"]))[:worst]
    med = median_of_runs(points)
    me = np.array([abs(p["error"]) for p in med]) if med else np.zeros(0)
    return {
        # the same end-to-end figures against the median of the repeated measurements of each
        # (model, batch): on a shared host one run's p50 can be off by 10% or more
        "runs_median": {"points": len(med), "e2e_median_abs_error": float(np.median(me)) if me.size else None,
                        "e2e_within_10pct": share(me, 0.10), "e2e_within_20pct": share(me, 0.20),
                        "e2e_worst": [{"model": p["model"], "batch": p["batch"], "error": p["error"]}
                                      for p in sorted(med, key=lambda p: -abs(p["error"]))[:worst]],
                        "max_runs": max((p["runs"] for p in med), default=0),
                        "repeatability": repeatability(points, worst)},
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


def _runs_by_point(points: list[dict]) -> dict[tuple[str, int], list[dict]]:
    """The rows of each (model, batch), in their order."""
    groups: dict[tuple[str, int], list[dict]] = {}
    for p in points:
        groups.setdefault((p["model"], p["batch"]), []).append(p)
    return groups


def median_of_runs(points: list[dict]) -> list[dict]:
    """One row per (model, batch): the median of its measured p50s over repeated runs (result
    files), the prediction, the error against that median, and the range of the runs."""
    out = []
    for (model, batch), ps in _runs_by_point(points).items():
        meas = [p["measured_s"] for p in ps]
        m = float(np.median(meas))
        pred = float(np.median([p["predicted_s"] for p in ps]))
        out.append({"model": model, "batch": batch, "runs": len(ps), "measured_s": m, "measured_min_s": min(meas),
                    "measured_max_s": max(meas), "predicted_s": pred, "error": pred / m - 1})
    return out


#: repeated runs of a (model, batch) needed before its runs are compared with each other: with
#: two, each run's "median of the others" is the other run, and both deviations are the same gap
MIN_REPEAT_RUNS = 3


def repeatability(points: list[dict], worst: int = 3) -> dict | None:
    """How far single runs are from each other: for each (model, batch) with at least
    MIN_REPEAT_RUNS runs (measured p50 > 0), each run against the median of its other runs, as
    the error that median would have as a prediction of that run (median of the others / run - 1,
    the convention of every error in the report). A prediction judged against single runs is
    uncertain at about this level; the medians of several runs are steadier. `worst`: that many
    points, each by its largest deviation. None when no point has that many runs."""
    devs = []   # (deviation, model, batch)
    for (model, batch), ps in _runs_by_point(points).items():
        meas = [float(p["measured_s"]) for p in ps if float(p["measured_s"]) > 0]
        if len(meas) < MIN_REPEAT_RUNS:
            continue
        for i, m in enumerate(meas):
            devs.append((float(np.median(meas[:i] + meas[i + 1:])) / m - 1, model, batch))
    if not devs:
        return None
    a = np.array([abs(d) for d, _, _ in devs])
    by_point: dict[tuple[str, int], float] = {}   # each point's largest deviation
    for d, m, b in devs:
        if (m, b) not in by_point or abs(d) > abs(by_point[(m, b)]):
            by_point[(m, b)] = d
    ranked = sorted(by_point.items(), key=lambda kv: -abs(kv[1]))[:worst]
    return {"points": len(by_point), "runs": len(devs),
            "within_5pct": float((a <= 0.05).mean()), "within_10pct": float((a <= 0.10).mean()),
            "median_abs_deviation": float(np.median(a)),
            "worst": [{"model": m, "batch": b, "deviation": d} for (m, b), d in ranked]}


def repeatability_line(r: dict | None) -> str | None:
    """One sentence of repeatability()."""
    if not r:
        return None
    worst = ", ".join(f"{w['model']} b{w['batch']} {w['deviation'] * 100:+.1f}%" for w in r["worst"])
    return (f"measurement repeatability: the median of a (model, batch)'s other runs as a prediction of each of its "
            f"runs ({r['runs']} runs of {r['points']} points with >= {MIN_REPEAT_RUNS} runs): "
            f"{r['within_10pct'] * 100:.0f}% within 10%, {r['within_5pct'] * 100:.0f}% within 5%, median "
            f"|error| {r['median_abs_deviation'] * 100:.1f}%, worst {worst}; errors against single runs are uncertain "
            "at about this level, against the median of runs less so")


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
    samples: dict = field(default_factory=dict)   # kernel class -> error of the kernel samples (sample_errors)
    family_cv: dict = field(default_factory=dict)
    points_family_cv: list[dict] = field(default_factory=list)
    families: dict = field(default_factory=dict)  # model -> family (FAMILIES)

    def to_dict(self) -> dict:
        return {"schema": "estimate-calibration-report", "schema_version": "1.0", "params": self.params,
                "fitted": {"summary": self.fitted, "points": self.points_fitted,
                           "points_runs_median": median_of_runs(self.points_fitted)},
                "uncalibrated": {"summary": self.before, "points": self.points_before,
                                 "points_runs_median": median_of_runs(self.points_before)},
                "cross_validation": {"method": "leave-one-model-out", "summary": self.cv, "points": self.points_cv,
                                     "points_runs_median": median_of_runs(self.points_cv),
                                     "params_by_held_out_model": self.cv_params},
                "cross_validation_family": {"method": "leave-one-family-out", "families": self.families,
                                            "summary": self.family_cv, "points": self.points_family_cv,
                                            "points_runs_median": median_of_runs(self.points_family_cv)},
                "kernel_samples": self.samples,
                "notes": self.notes}


def params_dict(p: Params, fr: FitResult | None = None, profile: HardwareProfile | None = None) -> dict:
    d = {"efficiency_by_class": {c: _r4(v) for c, v in p.efficiencies().items()},
         "memory_efficiency": _r4(1.0 / p.x_mem),
         "onchip_bandwidth_bytes_per_s": None if p.onchip_bandwidth is None else _r4(p.onchip_bandwidth),
         "layer_overhead_by_class_s": {c: float(f"{v:.4g}") for c, v in p.overheads().items()
                                       if fr is None or c in fr.overhead_classes}}
    # classes without a fitted overhead keep the input profile's (apply_params)
    d["layer_overhead_s"] = None if profile is None else float(profile.layer_overhead_s)
    d["kernel_overhead_in_graph_s"] = float(f"{p.in_graph_s:.4g}")
    d["weight_fetch_bandwidth_bytes_per_s"] = None if p.fetch_bandwidth is None else _r4(p.fetch_bandwidth)
    d["grouped_call_s"] = float(f"{p.s_call:.4g}")
    if fr is not None:
        d.update({"fitted_classes": list(fr.fitted_classes), "overhead_classes": list(fr.overhead_classes),
                  "memory_efficiency_kept": fr.memory_kept, "iterations": fr.iterations, "converged": fr.converged,
                  "rows_layer": fr.rows_layer, "rows_e2e": fr.rows_e2e, "residual_rms": fr.residual_rms,
                  # a property of the per-layer measurement, not a profile key
                  "profiler_s_per_event": float(f"{fr.profiler_s:.4g}")})
    return d


#: Model families for leave-one-family-out cross-validation, by the model's name (first match);
#: a model matching none is a family of its own. Networks of one family share their kernels'
#: shapes, so holding one out while its sibling stays in the fit says little about a new network.
FAMILIES: tuple[tuple[str, str], ...] = (
    ("ResNet", r"resnet|resnext|wide_resnet"), ("MobileNet", r"mobilenet|efficientnet"),
    ("ShuffleNet", r"shufflenet"), ("DenseNet", r"densenet"), ("SqueezeNet", r"squeezenet"),
    ("RegNet", r"regnet"), ("MnasNet", r"mnasnet"), ("VGG/AlexNet", r"vgg|alexnet"), ("YOLO", r"yolo"),
    ("transformers", r"bert|gpt|llama|swin|vit|deit|t5|bart|roberta|electra|whisper"),
)


def family_of(model: str) -> str:
    import re

    low = model.lower()
    return next((f for f, pat in FAMILIES if re.search(pat, low)), model)


def _held_out(data: Dataset, profile: HardwareProfile, groups: Mapping[str, Sequence[str]],
              notes: list[str], what: str) -> tuple[list[dict], dict]:
    """Fit without each group of models in turn (kernel samples always stay in) and predict
    the group: the points and the parameters fitted without it."""
    pts: list[dict] = []
    params: dict = {}
    for key, names in groups.items():
        train = data
        for n in names:
            train = train.without(n)
        f = fit(train, profile)
        params[key] = params_dict(f.params, f, profile)
        fitted_profile = apply_params(profile, f.params, f.fitted_classes, overhead_classes=f.overhead_classes)
        for n in names:
            m = data.only(n)
            missing = [c for c in LAYER_CLASSES if c not in f.fitted_classes and _has_class(m.models[0], LAYER_CLASSES.index(c))]
            if missing:
                notes.append(f"{what}, {key} held out: {', '.join(missing)} not fitted from the rest (no or too "
                             f"little work: < {MIN_CLASS_SHARE:.0%} of each model's compute time); efficiency kept at "
                             "the input profile's value")
            pts += predict_dataset(m, fitted_profile)
    return pts, params


def calibrate(data: Dataset, profile: HardwareProfile, *, cross_validate: bool = True) -> tuple[FitResult, Report]:
    """Fit on all models; report errors before, after, and under leave-one-model-out CV."""
    fr = fit(data, profile)
    fitted_profile = apply_params(profile, fr.params, fr.fitted_classes, overhead_classes=fr.overhead_classes)
    measured = data.measured()
    pts_fit = predict_dataset(measured, fitted_profile)
    pts_before = predict_dataset(measured, profile)
    pts_cv: list[dict] = []
    pts_fam: list[dict] = []
    cv_params: dict = {}
    notes: list[str] = []
    names = data.model_names
    if cross_validate and len(names) > 1:
        pts_cv, cv_params = _held_out(data, profile, {n: [n] for n in names}, notes, "leave-one-model-out")
        fams: dict[str, list[str]] = {}
        for n in names:
            fams.setdefault(family_of(n), []).append(n)
        if len(fams) > 1:
            pts_fam, _ = _held_out(data, profile, fams, notes, "leave-one-family-out")
    elif cross_validate:
        notes.append("cross-validation needs results of at least two models")
    rep = Report(fitted=error_stats(pts_fit), before=error_stats(pts_before), cv=error_stats(pts_cv),
                 points_fitted=_per_point(pts_fit), points_before=_per_point(pts_before), points_cv=_per_point(pts_cv),
                 params=params_dict(fr.params, fr, profile), cv_params=cv_params, notes=notes,
                 samples=sample_errors(data.samples(), profile, fitted_profile),
                 family_cv=error_stats(pts_fam), points_family_cv=_per_point(pts_fam),
                 families={n: family_of(n) for n in names})
    if not fr.converged:
        rep.notes.append(f"the branch assignment (or the profiler's cost per event) did not settle in {fr.iterations} passes; the last solution is used")
    return fr, rep


def sample_errors(samples: Dataset, before: HardwareProfile, after: HardwareProfile) -> dict:
    """Per kernel class: how many samples, and the median and worst |error| of their predicted
    times, with the input profile and with the fitted one (an in-sample figure: the samples are
    always fitted)."""
    if not samples.models:
        return {}
    out: dict[str, dict] = {}

    def alone(p: HardwareProfile) -> HardwareProfile:   # a sample is timed alone: no in-graph cost
        return with_overrides(p, kernel_overhead_in_graph_s=None) if p.kernel_overhead_in_graph_s else p

    errs = {"before": predict_dataset(samples, alone(before)), "fitted": predict_dataset(samples, alone(after))}
    cls = {m.name: m.sample for m in samples.models}
    spread: dict[str, list[float]] = {}
    for m in samples.models:
        spread.setdefault(m.sample, []).extend(c.round_spread for c in m.configs if c.round_spread is not None)
    for which, pts in errs.items():
        by: dict[str, list[float]] = {}
        for p in pts:
            by.setdefault(cls[p["model"]], []).append(abs(p["error"]))
        for c, e in by.items():
            d = out.setdefault(c, {"points": len(e)})
            d[f"{which}_median_abs_error"] = float(np.median(e))
            d[f"{which}_within_10pct"] = float(np.mean(np.array(e) <= 0.10))
            d[f"{which}_worst_abs_error"] = float(max(e))
    for c, v in spread.items():
        if v and c in out:
            out[c]["round_spread_median"] = float(np.median(v))
    return dict(sorted(out.items(), key=lambda kv: LAYER_CLASSES.index(kv[0]) if kv[0] in LAYER_CLASSES else 99))


def evaluate_on(data: Dataset, profile: HardwareProfile) -> tuple[dict, list[dict]]:
    """Error summary and per-point rows of a given profile on a dataset (no fitting)."""
    pts = predict_dataset(data, profile)
    return error_stats(pts), _per_point(pts)


def _has_class(m: ModelData, ci: int) -> bool:
    la = m.layers
    return bool(((la.class_idx == ci) & la.costed & ~la.is_view & ((la.macs > 0) | (la.non_mac > 0))).any())


def host_identity(profile_source: str) -> tuple[str | None, str | None]:
    """(hostname, cpu model) that `estimate hw detect` records in a profile's source
    ("...; host: NAME; cpu: MODEL"), or (None, None) for profiles not made by detect."""
    text = profile_source or ""
    if "host: " not in text:
        return None, None
    tail = text.split("host: ", 1)[1]
    hostname = tail.split(";", 1)[0].strip()
    cpu = None
    if "cpu: " in tail:
        cpu = tail.split("cpu: ", 1)[1].split(" | ", 1)[0].strip().splitlines()[0].strip()
    return hostname, cpu
