"""Regenerate docs/devices.md: each shipped profile next to the published measurements of its device.

    python3 docs/make_devices.py            # rewrite the page
    python3 docs/make_devices.py --check    # exit 1 if the page is out of date
    python3 docs/make_devices.py --fit      # re-fit the shipped profiles' efficiencies to the
                                            # published points (rewrites their `efficiency`
                                            # blocks), then rewrite the page

The points are hwprofiles/published/points.json (copied from ../shared/published, with their
sources). Each shipped profile keeps its datasheet figures (peaks, bandwidth, SRAM, tiles: the
physical ceilings); what is fitted, with `estimate calibrate`'s end-to-end fit
(estimator/calibrate_points.py), is one efficiency per point, starting from the datasheet
profile (efficiencies 1). Everything on the page is computed here; nothing is typed in by hand.
"""

from __future__ import annotations

import os
import re
import sys
from importlib import resources

import numpy as np

from estimator import api, hardware
from estimator import calibrate_points as cp
from estimator.roofline import HwArrays, LayerArrays, evaluate
from estimator.validate import imported

HERE = os.path.dirname(os.path.abspath(__file__))
PAGE = os.path.join(HERE, "devices.md")
PROFILES_DIR = os.path.join(HERE, "..", "hwprofiles")
#: what the shipped fit may set: efficiencies only (overheads stay the profiles' stated figures)
FITTED = ("compute", "memory")
BATCHES = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048)


def points_text() -> str:
    return resources.files("estimator.hwprofiles").joinpath("published/points.json").read_text()


def published() -> dict[str, list[tuple[dict, cp.Point]]]:
    """{profile name: [(results document, point)]} from hwprofiles/published/points.json."""
    docs, _ = imported.points_docs("hwprofiles/published/points.json", points_text(),
                                   profiles=hardware.shipped_profile_names())
    out: dict[str, list] = {}
    for d in docs:
        for p in cp.points_from_doc(d["imported"]["id"], d):
            out.setdefault(d["device"], []).append((d, p))
    return out


def datasheet(p: hardware.HardwareProfile) -> hardware.HardwareProfile:
    """The profile at its datasheet figures: every efficiency 1."""
    return hardware.with_overrides(p, efficiency={"compute": 1.0, "memory": 1.0})


_layers: dict = {}


def layers_for(model: str, precision: str, profile: hardware.HardwareProfile) -> LayerArrays:
    key = (model, precision, profile.name)
    if key not in _layers:
        t = api.analyze(model, batch=1, precision=precision)
        _layers[key] = LayerArrays.from_table(t, rules=profile.fusion_rules(), layout=profile.layout_spec())
    return _layers[key]


def fit(name: str, pts: list[cp.Point]) -> cp.PointsFit:
    p = hardware.load_profile(name)
    layers = {q.model: layers_for(q.model, q.precision, p) for q in pts}
    return cp.fit_points(pts, layers, datasheet(p), allowed=FITTED)


def write_efficiency(name: str, f: cp.PointsFit, docs: list[dict]) -> None:
    """Put the fitted efficiencies into hwprofiles/NAME.yaml (text edit: comments and notes stay)."""
    path = os.path.join(PROFILES_DIR, f"{name}.yaml")
    text = open(path).read()
    e = f.profile.efficiency
    block = f"efficiency:\n  compute: {e.compute:.4g}\n  memory: {e.memory:.4g}\n"
    text = re.sub(r"\nefficiency:\n(?:  .*\n)+", "\n", text)
    text = text.replace("\nnotes:\n", "\n" + block + "notes:\n", 1)
    reading = "; ".join(cp.describe(f, datasheet(hardware.load_profile(name))).values())
    note = (f"Fitted by docs/make_devices.py --fit (estimate calibrate's end-to-end fit) to the published point(s) "
            f"{', '.join(d['imported']['id'] for d in docs)} of hwprofiles/published/points.json: {reading}. The datasheet figures above are "
            "unchanged; docs/devices.md shows the points before and after.")
    text = re.sub(r"\n  efficiency: >-\n(?:    .*\n)+", "\n", text)
    # the source says so too, with the points' citations (one line, replaced on every re-fit)
    cites = "; ".join(f"{d['imported']['id']}: {d['imported']['source']}" for d in docs)
    line = f"  Efficiencies fitted to published measurements ({cites}); see notes.efficiency."
    text = re.sub(r"\n  Efficiencies fitted to published measurements .*\n", "\n", text)
    m = re.search(r"\nsource: \|\n((?:  .*\n)+)", text)
    text = text[:m.end()] + line + "\n" + text[m.end():]
    import textwrap
    text = text.rstrip("\n") + "\n  efficiency: >-\n" + "".join(f"    {ln}\n" for ln in textwrap.wrap(note, 92))
    with open(path, "w") as fh:
        fh.write(text)


def _fmt(metric: str, v: float) -> str:
    return f"{v * 1e3:.4g} ms" if metric == "latency" else f"{v:,.0f}/s"


def batch_rows(name: str, model: str, precision: str):
    """(batch, latency, throughput) of the shipped profile, and the physical checks."""
    p = hardware.load_profile(name)
    la = layers_for(model, precision, p)
    raw = evaluate(la, HwArrays.from_profiles([p], precision), list(BATCHES))
    lat = raw.latency_s[0]
    thr = np.asarray(BATCHES) / lat
    wbytes = float(raw.weight_bytes_total[0])
    off_chip = 0.0 if wbytes <= p.sram_bytes else wbytes
    floor = off_chip / p.dram_bandwidth_bytes_per_s
    return lat, thr, floor, wbytes


def build() -> str:
    pts = published()
    L: list[str] = []
    add = L.append
    add("# Shipped device profiles against published measurements")
    add("")
    add("Generated by `python3 docs/make_devices.py`; do not edit by hand (a test fails when it is stale).")
    add("The published points are hwprofiles/published/points.json, each with its source; MLPerf figures")
    add("are copied from the log summaries under hwprofiles/published/mlperf/. Predictions are **estimates**")
    add("of the roofline model (docs/roofline.md), not measurements.")
    add("")
    add("Each profile keeps its datasheet figures (peak MAC and vector rates, DRAM bandwidth, SRAM, tiles and")
    add("parallel units): these are the physical ceilings. Fitted are efficiencies only, one per published")
    add("point, by `estimate calibrate`'s end-to-end fit (estimator/calibrate_points.py): the term that carries")
    add("most of the point's predicted time. *Datasheet* is the profile with every efficiency 1; *shipped*")
    add("is the profile as shipped, with the fitted efficiency. A system of two sockets is two devices: its")
    add("throughput is compared per device (the published figure / 2).")
    add("")
    add("## Published points, before and after fitting")
    add("")
    add("| profile | point | model, batch | figure | published | datasheet | error | shipped | error | fitted | physical reading |")
    add("|---|---|---|---|---|---|---|---|---|---|---|")
    for name in sorted(pts):
        shipped = hardware.load_profile(name)
        for d, q in pts[name]:
            la = layers_for(q.model, q.precision, shipped)
            before = cp.predict(q, la, datasheet(shipped))
            after = cp.predict(q, la, shipped)
            f = fit(name, [q])
            fitted = ", ".join(f"{k} {v:.3g}" for k, v in f.parameters.items())
            reading = _reading(shipped, q, la, after)
            fig = q.metric + (f" per device (of {q.devices})" if q.devices > 1 and q.metric == "throughput" else "")
            batch = "system's" if q.batch is None else str(q.batch)
            add(f"| {name} | {d['imported']['id']} | {q.model} {q.precision}, {batch} | {fig} | {_fmt(q.metric, q.value)} | "
                f"{_fmt(q.metric, before)} | {before / q.value - 1:+.1%} | {_fmt(q.metric, after)} | {after / q.value - 1:+.1%} | "
                f"{fitted} | {reading} |")
    add("")
    add("Sources of the points:")
    add("")
    for name in sorted(pts):
        for d, q in pts[name]:
            imp = d["imported"]
            add(f"- {imp['id']} ({name}): {imp['source']}. {imp.get('notes') or ''}".rstrip())
    add("")
    add("## Other batches, without re-fitting")
    add("")
    add("The shipped profiles at batches they were not fitted at: throughput must not fall as the batch grows")
    add("(the roofline runs a batch as sub-batches when that is faster, so it cannot), and batch-1 latency must")
    add("be at least the time to read, at the datasheet bandwidth, the weights that do not fit on chip.")
    add("")
    add("| profile | model | " + " | ".join(f"b{b}" for b in BATCHES) + " | b1 latency | weights | DRAM floor | checks |")
    add("|---|---|" + "---|" * len(BATCHES) + "---|---|---|---|")
    for name in sorted(pts):
        for model, prec in dict.fromkeys((q.model, q.precision) for _, q in pts[name]):
            lat, thr, floor, wbytes = batch_rows(name, model, prec)
            mono = bool(np.all(np.diff(thr) >= -1e-9 * thr[:-1]))
            ok = mono and lat[0] >= floor
            add(f"| {name} | {model} {prec} | " + " | ".join(f"{t:,.0f}" for t in thr) +
                f" | {lat[0] * 1e3:.3g} ms | {wbytes / 2 ** 20:.1f} MiB | {floor * 1e3:.3g} ms | "
                f"{'ok' if ok else 'FAILS'}: throughput {'non-decreasing' if mono else 'falls'}, b1 "
                f"{'>=' if lat[0] >= floor else '<'} floor |")
    add("")
    add("Throughput columns are samples/s per device. The DRAM floor is 0 when the weights fit in `sram_bytes`.")
    add("")
    return "\n".join(L)


def _reading(p: hardware.HardwareProfile, q: cp.Point, la: LayerArrays, predicted: float) -> str:
    """What the fitted figures mean physically at the point."""
    macs = float(la.macs.sum())
    rate = macs * (predicted if q.metric == "throughput" else (q.batch or 1) / predicted)
    peak = p.peak_macs_per_s(q.precision)
    e = p.efficiency
    return (f"the whole model runs at {rate / peak:.0%} of the dense {q.precision} MAC peak "
            f"({rate / 1e12:.3g} of {peak / 1e12:.3g} TMAC/s); compute efficiency {e.compute:.0%} (each layer's "
            f"tile and wave share comes on top), memory efficiency {e.memory:.0%} of the bandwidth")


def main(argv: list[str]) -> int:
    if "--fit" in argv:
        for name, pairs in sorted(published().items()):
            f = fit(name, [q for _, q in pairs])
            write_efficiency(name, f, [d for d, _ in pairs])
            print(f"{name}: " + ", ".join(f"{k} {v:.4g}" for k, v in f.parameters.items()))
        _layers.clear()
    text = build()
    if "--check" in argv:
        with open(PAGE) as fh:
            if fh.read() != text:
                print("docs/devices.md is out of date: run python3 docs/make_devices.py", file=sys.stderr)
                return 1
        return 0
    with open(PAGE, "w") as fh:
        fh.write(text)
    print(f"wrote {PAGE}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
