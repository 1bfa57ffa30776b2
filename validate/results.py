"""Results documents: schema constants, atomic writing, reading, CSV rows and the summary.

The schema is documented in docs/results-schema.md; bump SCHEMA_VERSION on any change that
removes or renames a key (adding optional keys keeps the major version).
"""

from __future__ import annotations

import csv
import io
import json
import os
import secrets
import tempfile
from datetime import datetime, timezone
from pathlib import Path

from estimator.errors import UserError
from estimator.fsutil import atomic_write_text

SCHEMA_VERSION = "1.0"
SCHEMA_NAME = "estimate-validation-results"

REQUIRED_TOP = ("schema_version", "model", "host", "configurations", "partial")
REQUIRED_MODEL = ("name", "sha256", "inputs")
REQUIRED_CONFIG = ("batch", "precision", "threads", "instances", "latency_s",
                   "throughput_per_s", "peak_rss_bytes", "layers")
LATENCY_KEYS = ("min", "mean", "std", "p50", "p90", "p95", "p99", "max")

CSV_COLUMNS = [
    "model", "model_sha256", "host", "cpu", "engine", "engine_version", "provider", "precision",
    "batch", "threads", "instances", "scenario", "samples", "complete",
    *[f"latency_{k}_s" for k in LATENCY_KEYS], "latency_cv", "high_variance",
    "throughput_per_s", "peak_rss_bytes", "cpu_busy_pct_during", "other_busy_pct_during",
    "layer_coverage", "predicted_latency_s", "prediction_error", "weights", "run_id", "created_utc",
    "partial",
]


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)[:80] or "model"


def check_out_dir(out_dir: Path) -> Path:
    """Create ``out_dir`` if needed and prove it is writable; UserError otherwise."""
    if out_dir.exists() and not out_dir.is_dir():
        raise UserError(f"--out {out_dir}: is a file; --out takes a directory (created if missing)")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".write-test-", dir=out_dir)
        os.close(fd)
        os.unlink(tmp)
    except OSError as e:
        raise UserError(f"--out {out_dir}: not writable ({e.strerror or e})") from None
    return out_dir


def new_run_paths(out_dir: Path, model_name: str, when: datetime) -> tuple[str, Path, Path]:
    """(run_id, json_path, csv_path): ``<model>-<UTC timestamp>-<short id>``, never existing."""
    stamp = when.strftime("%Y%m%dT%H%M%SZ")
    while True:
        short = secrets.token_hex(3)
        run_id = f"{_safe(model_name)}-{stamp}-{short}"
        j, c = out_dir / f"{run_id}.json", out_dir / f"{run_id}.csv"
        if not j.exists() and not c.exists():
            return run_id, j, c


def _atomic_write_text(path: Path, text: str) -> None:
    atomic_write_text(path, text)


def write_results(doc: dict, json_path: Path, csv_path: Path) -> None:
    """Write the JSON document and its CSV, each atomically (temp file + os.replace)."""
    _atomic_write_text(json_path, json.dumps(doc, indent=1, default=_json_default) + "\n")
    _atomic_write_text(csv_path, csv_text(doc))


def _json_default(o):
    try:
        import numpy as np
        if isinstance(o, np.generic):
            return o.item()
        if isinstance(o, np.ndarray):
            return o.tolist()
    except ImportError:  # pragma: no cover
        pass
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serializable: {type(o).__name__}")


def csv_rows(doc: dict) -> list[dict]:
    host = doc.get("host", {})
    eng = doc.get("engine", {})
    rows = []
    for c in doc.get("configurations", []):
        lat = c.get("latency_s") or {}
        pred = c.get("prediction") or {}
        load = c.get("load") or {}
        row = {
            "model": doc["model"].get("name"), "model_sha256": doc["model"].get("sha256"),
            "host": host.get("hostname"), "cpu": (host.get("cpu") or {}).get("model"),
            "engine": eng.get("name"), "engine_version": eng.get("version"),
            "provider": eng.get("provider"), "precision": c.get("precision"),
            "batch": c.get("batch"), "threads": c.get("threads"), "instances": c.get("instances"),
            "scenario": c.get("scenario"), "samples": c.get("samples"), "complete": c.get("complete"),
            "latency_cv": c.get("latency_cv"), "high_variance": c.get("high_variance"),
            "throughput_per_s": c.get("throughput_per_s"), "peak_rss_bytes": c.get("peak_rss_bytes"),
            "cpu_busy_pct_during": load.get("cpu_busy_pct_during"),
            "other_busy_pct_during": load.get("other_busy_pct_during"),
            "layer_coverage": (c.get("layer_totals") or {}).get("coverage"),
            "predicted_latency_s": pred.get("latency_s"), "prediction_error": pred.get("error"),
            "weights": doc["model"].get("weights"), "run_id": doc.get("run_id"),
            "created_utc": doc.get("created_utc"), "partial": doc.get("partial"),
        }
        for k in LATENCY_KEYS:
            row[f"latency_{k}_s"] = lat.get(k)
        rows.append(row)
    return rows


def csv_text(doc: dict) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=CSV_COLUMNS, extrasaction="ignore")
    w.writeheader()
    for r in csv_rows(doc):
        w.writerow(r)
    return buf.getvalue()


# ---------------------------------------------------------------------------------------------
# Reading


def schema_problems(doc) -> list[str]:
    """Missing/invalid required keys (empty list = a valid results document)."""
    if not isinstance(doc, dict):
        return ["not a JSON object"]
    probs = [f"missing {k}" for k in REQUIRED_TOP if k not in doc]
    if probs:
        return probs
    if str(doc["schema_version"]).split(".")[0] != SCHEMA_VERSION.split(".")[0]:
        return [f"schema_version {doc['schema_version']} (this tool reads {SCHEMA_VERSION})"]
    probs += [f"missing model.{k}" for k in REQUIRED_MODEL if k not in (doc.get("model") or {})]
    if not isinstance(doc["configurations"], list):
        return probs + ["configurations is not a list"]
    for i, c in enumerate(doc["configurations"]):
        probs += [f"missing configurations[{i}].{k}" for k in REQUIRED_CONFIG if k not in c]
        lat = c.get("latency_s") or {}
        probs += [f"missing configurations[{i}].latency_s.{k}" for k in LATENCY_KEYS if k not in lat]
    return probs


def find_result_files(paths: list[str]) -> list[Path]:
    out = []
    for p in paths:
        pp = Path(p)
        if pp.is_dir():
            out += sorted(x for x in pp.rglob("*.json") if x.is_file())
        elif pp.is_file():
            out.append(pp)
        else:
            raise UserError(f"{p}: no such file or directory")
    return out


def load_results(paths: list[str]) -> tuple[list[tuple[Path, dict]], list[str]]:
    """(valid documents, one-line notes for skipped files)."""
    docs, notes = [], []
    files = find_result_files(paths)
    loadgen_logs = [f for f in files if f.name.startswith("mlperf_log_")]
    if loadgen_logs:
        notes.append(f"skipped {len(loadgen_logs)} MLPerf LoadGen log file(s) (mlperf_log_*.json)")
    for f in files:
        if f.name.startswith("mlperf_log_"):
            continue
        try:
            doc = json.loads(f.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            notes.append(f"skipped {f}: not JSON ({str(e).splitlines()[0][:80]})")
            continue
        probs = schema_problems(doc)
        if probs:
            notes.append(f"skipped {f}: not an estimate results file ({probs[0]})")
            continue
        docs.append((f, doc))
    return docs, notes


# ---------------------------------------------------------------------------------------------
# Summary (AIXPRT-style: max throughput and min latency per model, host and precision)

SUMMARY_COLUMNS = ["target", "model", "host", "cpu", "provider", "precision", "threads", "max_throughput_per_s",
                   "batch_at_max", "instances_at_max", "min_latency_s", "min_latency_batch",
                   "p90_batch1_s", "p99_batch1_s", "prediction_error_batch1",
                   "mean_abs_prediction_error", "configurations", "runs", "partial_runs", "source",
                   "devices_in_system", "published_figure"]


def summarize(docs: list[tuple[Path, dict]]) -> list[dict]:
    groups: dict[tuple, dict] = {}
    for _, doc in docs:
        host = doc.get("host", {})
        cpu = (host.get("cpu") or {}).get("model")
        prov = (doc.get("engine") or {}).get("provider")
        for c in doc["configurations"]:
            if c.get("status", "ok") != "ok" or not c.get("latency_s"):
                continue
            # one row per model, host, engine, precision and thread count: runs that differ in
            # any of these are different configurations and are never merged
            # (and per campaign target: two devices of a campaign may share a host name)
            target = (doc.get("campaign") or {}).get("target")
            key = (doc["model"]["name"], host.get("hostname"), cpu, prov, c["precision"], c.get("threads"), target)
            g = groups.setdefault(key, {"cfgs": [], "runs": set(), "partial": set(), "imported": []})
            g["cfgs"].append(c)
            if doc.get("source") == "imported":
                g["imported"].append((doc, c))
            g["runs"].add(doc.get("run_id"))
            if doc.get("partial"):
                g["partial"].add(doc.get("run_id"))
    rows = []
    for (model, hostname, cpu, prov, prec, threads, target), g in sorted(
            groups.items(), key=lambda kv: [str(x) for x in (kv[0][-1],) + kv[0][:-1]]):
        cfgs = g["cfgs"]
        best = max(cfgs, key=lambda c: c.get("throughput_per_s") or 0)
        timed = [c for c in cfgs if c["latency_s"].get("p50") is not None]  # an imported throughput has none
        b1 = [c for c in cfgs if c["batch"] == 1 and c.get("instances", 1) == 1]
        b1_timed = [c for c in b1 if c["latency_s"].get("p50") is not None]
        fastest = min(b1_timed or timed, key=lambda c: c["latency_s"]["p50"]) if timed else None
        b1_first = fastest if fastest in b1 else (b1[0] if b1 else None)   # a published p90 may come alone
        errs = [abs(c["prediction"]["error"]) for c in cfgs
                if (c.get("prediction") or {}).get("error") is not None]
        b1_pred = [c for c in b1 if (c.get("prediction") or {}).get("error") is not None]
        b1_err = min(b1_pred, key=lambda c: c["latency_s"]["p50"])["prediction"]["error"] if b1_pred else None
        rows.append({
            "target": target, "model": model, "host": hostname, "cpu": cpu, "provider": prov, "precision": prec, "threads": threads,
            "max_throughput_per_s": best.get("throughput_per_s"), "batch_at_max": best["batch"],
            "instances_at_max": best.get("instances", 1),
            "min_latency_s": fastest["latency_s"]["p50"] if fastest else None,
            "min_latency_batch": fastest["batch"] if fastest else None,
            "p90_batch1_s": b1_first["latency_s"]["p90"] if b1_first else None,
            "p99_batch1_s": b1_first["latency_s"]["p99"] if b1_first else None,
            "prediction_error_batch1": b1_err,
            "mean_abs_prediction_error": sum(errs) / len(errs) if errs else None,
            "configurations": len(cfgs), "runs": len(g["runs"]), "partial_runs": len(g["partial"]),
            "source": "imported" if g["imported"] else "measured",
            "devices_in_system": _one_or_list(sorted({d.get("devices_in_system") for d, _ in g["imported"]}, key=str)),
            "published_figure": "; ".join(dict.fromkeys(_figure_text(d, c) for d, c in g["imported"])) or None,
        })
    return rows


def _one_or_list(values: list):
    return None if not values else values[0] if len(values) == 1 else values


def _figure_text(doc: dict, c: dict) -> str:
    """An imported configuration's headline figure as published, e.g. 'Offline 88714.3 samples/s'."""
    f = c.get("figure") or {}
    v, u = f.get("value"), f.get("units")
    from estimator.report import seconds_str
    val = seconds_str(v) if u == "s" and v is not None else f"{v:g} {u}"
    valid = (doc.get("imported") or {}).get("valid")
    return " ".join(x for x in (c.get("scenario"), f.get("metric"), val, "(INVALID)" if valid is False else "") if x)


def _fmt(v, col: str) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        if col.endswith("_per_s"):
            return f"{v:.1f}"
        if col.endswith("_s"):
            return f"{v * 1e3:.3f} ms"
        if "abs" in col and "error" in col:
            return f"{v * 100:.1f}%"
        if "error" in col:
            return f"{v * 100:+.1f}%"
        return f"{v:.1f}"
    return str(v)


def render_summary(rows: list[dict], fmt: str) -> str | object:
    """Text for csv/json/markdown; a rich Table for ``table``."""
    if fmt == "json":
        return json.dumps({"schema_version": SCHEMA_VERSION, "summary": rows}, indent=1)
    if fmt == "csv":
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=SUMMARY_COLUMNS)
        w.writeheader()
        w.writerows(rows)
        return buf.getvalue()
    headers = ["model", "host", "precision", "threads", "max thr. (/s)", "batch", "min lat. (p50)",
               "at batch", "p90 b1", "p99 b1", "pred. err b1", "mean |err|", "configs"]
    keys = ["model", "host", "precision", "threads", "max_throughput_per_s", "batch_at_max", "min_latency_s",
            "min_latency_batch", "p90_batch1_s", "p99_batch1_s", "prediction_error_batch1",
            "mean_abs_prediction_error", "configurations"]
    if any(r.get("target") for r in rows):   # campaign results: which target (device) ran them
        headers.insert(0, "target")
        keys.insert(0, "target")
    if any(r.get("source") == "imported" for r in rows):   # published figures: say what was published
        headers += ["devices", "published figure"]
        keys += ["devices_in_system", "published_figure"]
    table = [[_fmt(r[k], k) for k in keys] for r in rows]
    if fmt == "markdown":
        from tabulate import tabulate
        return tabulate(table, headers=headers, tablefmt="github")
    if fmt == "table":
        from rich.table import Table
        t = Table(title="Validation results summary (latency = p50 unless stated)")
        for h in headers:
            t.add_column(h, justify="left" if h in ("target", "model", "host", "precision") else "right")
        for r in table:
            t.add_row(*r)
        return t
    raise UserError(f"--format {fmt!r}: choose table, csv, json or markdown")
