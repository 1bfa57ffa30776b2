#!/usr/bin/env python3
"""Predictions for ../shared/corpus against what this host measured: the tables of
docs/calibration.md, "Real exports the fit never saw".

Usage: benchmarks/corpus_fidelity.py WORKDIR [--corpus DIR] [--family-cv] [--update-docs]

WORKDIR is the folder ../shared/acceptance/fidelity.sh fills (pass it as the script's argument
to accumulate runs): host.yaml (+ host.kernels.json) from `estimate hw detect`, train/ with the
built-in models' validation results, corpus_<name>/ with each corpus file's results. Nothing
is measured here; the script re-runs the documented fit (`estimate calibrate train/ --hw
host.yaml`, kernel samples included) and predicts every corpus file at batch 1 and 4 with the
calibrated and with the detected profile, against the median of the runs in the folder.

--family-cv: also `estimate calibrate` on train/ plus every corpus result, whose report holds
leave-one-family-out errors (each family predicted by a fit on the built-ins, the kernel
samples and the other families). Slower (one fit per model and per family).
--update-docs: replace the block between <!-- corpus:begin --> and <!-- corpus:end --> in
docs/calibration.md with the tables.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import statistics
import subprocess
import sys
from datetime import datetime, timezone

HERE = os.path.dirname(os.path.abspath(__file__))
ESTIMATE = os.environ.get("ESTIMATE", "estimate")


def run(*args: str) -> str:
    r = subprocess.run([ESTIMATE, *args], capture_output=True, text=True)
    if r.returncode:
        sys.exit(f"estimate {' '.join(args[:3])} ...: {(r.stderr or r.stdout).strip()[-400:]}")
    return r.stdout


def measured(folder: str) -> dict[int, list[float]]:
    meas: dict[int, list[float]] = {}
    for j in glob.glob(os.path.join(folder, "**", "*.json"), recursive=True):
        for c in json.load(open(j)).get("configurations", []):
            if c.get("status", "ok") == "ok" and (c.get("latency_s") or {}).get("p50"):
                meas.setdefault(int(c["batch"]), []).append(float(c["latency_s"]["p50"]))
    return meas


def pct(x: float | None) -> str:
    return "-" if x is None else f"{x * 100:+.1f}%"


def summary(errs: list[float], what: str) -> str:
    a = [abs(e) for e in errs]
    return (f"{what}: {sum(x <= 0.10 for x in a)} of {len(a)} points within +-10%, {sum(x <= 0.25 for x in a)} within "
            f"+-25%, median |error| {statistics.median(a) * 100:.1f}%, worst {max(a) * 100:.1f}%")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("work")
    ap.add_argument("--corpus", default=os.path.join(HERE, "..", "..", "shared", "corpus"))
    ap.add_argument("--family-cv", action="store_true")
    ap.add_argument("--update-docs", action="store_true")
    a = ap.parse_args()
    w, corpus = os.path.abspath(a.work), os.path.abspath(a.corpus)
    gt = json.load(open(os.path.join(corpus, "ground_truth.json")))["models"]
    train = sorted(glob.glob(os.path.join(w, "train", "**", "*.json"), recursive=True))
    if not train:
        sys.exit(f"{w}/train: no validation results (run ../shared/acceptance/fidelity.sh {w} first)")
    host, cal = os.path.join(w, "host.yaml"), os.path.join(w, "host.corpus-fidelity.cal.yaml")
    corpus_dirs = [os.path.join(w, f"corpus_{name}") for name in gt if glob.glob(os.path.join(w, f"corpus_{name}", "**",
                                                                                              "*.json"), recursive=True)]
    rep_path = os.path.join(w, "report-corpus-test.json")
    # the corpus results as the test set (never fitted): the report splits their error by kernel class
    run("calibrate", *train, "--hw", host, "-o", cal, "--force", "--no-cv", "--report", rep_path, "--format", "json",
        *(x for d in corpus_dirs for x in ("--test", d)))
    by_class = ((json.load(open(rep_path)).get("test") or {}).get("calibrated") or {}).get("by_class") or {}
    sys.path.insert(0, os.path.join(HERE, ".."))
    from estimator.calibrate import family_of, repeatability, repeatability_line

    rows, cal_e, unc_e, runs, points = [], [], [], [], []
    for name, g in gt.items():
        f = os.path.join(corpus, g["file"])
        meas = measured(os.path.join(w, f"corpus_{name}"))
        if not meas:
            continue
        errs = {}
        for prof, tag in ((cal, "cal"), (host, "unc")):
            doc = json.loads(run(f, "--hw", prof, "--batch", "1,4", "--format", "json"))
            for p in doc["predictions"]:
                b = int(p["batch"])
                if b in meas:
                    errs[(tag, b)] = p["latency_s"] / statistics.median(meas[b]) - 1
        runs += [len(v) for v in meas.values()]
        points += [{"model": name, "batch": b, "measured_s": t} for b, v in meas.items() for t in v]
        cal_e += [errs[k] for k in errs if k[0] == "cal"]
        unc_e += [errs[k] for k in errs if k[0] == "unc"]
        rows.append((name, family_of(name), *(statistics.median(meas[b]) * 1e3 if b in meas else None for b in (1, 4)),
                     *(errs.get(k) for k in (("cal", 1), ("cal", 4), ("unc", 1), ("unc", 4)))))
    if not rows:
        sys.exit(f"{w}: no corpus results (corpus_<name>/ folders; run ../shared/acceptance/fidelity.sh {w})")
    out = [f"Generated by `benchmarks/corpus_fidelity.py` on {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC from "
           f"{len(train)} built-in result files and {min(runs) if min(runs) == max(runs) else f'{min(runs)}-{max(runs)}'} "
           "runs per corpus point (the median is "
           "the reference). Calibrated: `estimate calibrate` on the built-in models' results and the kernel samples "
           "only; uncalibrated: the profile `estimate hw detect` wrote. Errors are predicted / measured - 1.", "",
           "| corpus file | family | measured b1 ms | measured b4 ms | b1 calibrated | b4 calibrated | b1 uncalibrated "
           "| b4 uncalibrated |", "|---|---|---|---|---|---|---|---|"]
    if not rows:
        sys.exit(f"{w}: no corpus results (corpus_<name>/ folders; run ../shared/acceptance/fidelity.sh {w})")
    ms = lambda x: "-" if x is None else f"{x:.2f}"  # noqa: E731
    for name, fam, m1, m4, c1, c4, u1, u4 in rows:
        out.append(f"| {name} | {fam} | {ms(m1)} | {ms(m4)} | {pct(c1)} | {pct(c4)} | {pct(u1)} | {pct(u4)} |")
    out += ["", f"- {summary(cal_e, 'Calibrated')}.", f"- {summary(unc_e, 'Uncalibrated')}."]
    rep_line = repeatability_line(repeatability(points))
    if rep_line:   # how far single runs are from each other: the scale of any error against one run
        out.append(f"- Corpus points' {rep_line}.")
    if a.family_cv:
        results = train + sorted(glob.glob(os.path.join(w, "corpus_*", "**", "*.json"), recursive=True))
        rep = os.path.join(w, "report-corpus-cv.json")
        run("calibrate", *results, "--hw", host, "-o", os.path.join(w, "host.corpus-cv.cal.yaml"), "--force",
            "--report", rep, "--format", "json")
        doc = json.load(open(rep))
        fam = [p for p in doc["cross_validation_family"]["points_runs_median"]]
        corpus_names = set(gt)
        fam_c = [p["error"] for p in fam if p["model"] in corpus_names]
        lomo = [p["error"] for p in doc["cross_validation"]["points_runs_median"] if p["model"] in corpus_names]
        out += [f"- Leave-one-family-out (fitted on the built-ins, the kernel samples and the corpus families but the "
                f"held-out one; median of runs): {summary(fam_c, 'corpus points')}.",
                f"- Leave-one-model-out, same data: {summary(lomo, 'corpus points')}."]
    if by_class:   # where the calibrated error comes from (estimator.calibrate.class_contributions)
        out += ["", "Calibrated error by kernel class, every corpus run at batch 1 and 4 (per run, predicted - measured "
                "time of the class / measured end to end, averaged; measured: the profiled kernels less the fitted "
                "profiler cost per event, rescaled to the p50):", "",
                "| kernel class | measured kernels | predicted s | measured s | contribution to the mean error |",
                "|---|---|---|---|---|"]
        out += [f"| {c} | {r['layers']} | {r['predicted_s']:.4g} | {r['measured_s']:.4g} | {r['contribution'] * 100:+.1f} pp |"
                for c, r in by_class.items() if abs(r["contribution"]) >= 0.0005 or r["layers"]]
    text = "\n".join(out) + "\n"
    print(text)
    if a.update_docs:
        doc_path = os.path.join(HERE, "..", "docs", "calibration.md")
        body = open(doc_path).read()
        b0, b1 = "<!-- corpus:begin -->", "<!-- corpus:end -->"
        i, j = body.index(b0) + len(b0), body.index(b1)
        open(doc_path + ".tmp", "w").write(body[:i] + "\n" + text + body[j:])
        os.replace(doc_path + ".tmp", doc_path)
        print("updated", doc_path)


if __name__ == "__main__":
    main()
