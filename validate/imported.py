"""Published measurements as results documents: MLPerf log summaries and points files.

`estimate results import FILE... --out DIR` turns what others measured into the project's
results schema (docs/results-schema.md, "Imported results"), so that `estimate results` lists
them and `estimate calibrate` fits a profile to them like to any other result:

- an MLPerf LoadGen ``mlperf_log_summary.txt`` (SingleStream: 90th percentile latency,
  MultiStream: the per-query 99th percentile latency and samples per query, Offline: samples
  per second, Server: scheduled samples per second and the latency bound); the system, the
  model and the scenario come from the MLCommons results layout
  (``<system>/<model>/<scenario>/[performance/run_N/]mlperf_log_summary.txt``), or from options;
- a points file (JSON ``{"points": [...]}`` or a list, or CSV with the same columns; the
  layout of hwprofiles/published/points.json): one document per point.

Imported documents carry end-to-end figures only (no per-layer data), are marked
``source: imported``, and say the device (a profile name when known), how many devices the
measured system had (figures stay per system, as published; per device is figure / devices),
the scenario and the batch where known. Pure: text in, dicts out (the CLI reads and writes).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import re
from pathlib import PurePath
from typing import Any, Iterable, Mapping

from estimator.errors import UserError

from .results import LATENCY_KEYS, SCHEMA_NAME, SCHEMA_VERSION

SCENARIOS = ("SingleStream", "MultiStream", "Offline", "Server")
#: what a points file's `scenario` may say, mapped to a LoadGen scenario (free text otherwise)
_SCENARIO_ALIASES = {"singlestream": "SingleStream", "single stream": "SingleStream", "multistream": "MultiStream",
                     "multi stream": "MultiStream", "offline": "Offline", "server": "Server"}
PRECISIONS = ("fp32", "tf32", "fp16", "bf16", "fp8", "int8", "int4")
POINT_REQUIRED = ("model", "metric", "value", "units")
_LATENCY_UNITS = {"s": 1.0, "ms": 1e-3, "us": 1e-6, "ns": 1e-9}
_THROUGHPUT_UNITS = ("samples/s", "inferences/s", "images/s", "queries/s", "qps", "fps")


# ----------------------------------------------------------------------------- MLPerf summaries


def _field(text: str, label: str) -> str | None:
    m = re.search(r"^\s*" + re.escape(label) + r"\s*:\s*(.+?)\s*$", text, flags=re.M)
    return m.group(1) if m else None


def _num(text: str, label: str) -> float | None:
    v = _field(text, label)
    if v is None:
        return None
    try:
        return float(v)
    except ValueError:
        return None


def summary_fields(text: str) -> dict:
    """Every figure of a LoadGen summary that is there (seconds, samples/s); never raises:
    missing figures are None. validate/mlperf.py reads its own runs' summaries with it too."""
    result = _field(text, "Result is")
    out: dict[str, Any] = {
        "scenario": _field(text, "Scenario"), "sut": _field(text, "SUT name"), "mode": _field(text, "Mode"),
        "result": result, "valid": None if result is None else result.upper() == "VALID",
        "percentiles_s": {}, "test_parameters": {},
    }
    for pct, ns in re.findall(r"^\s*(\d+(?:\.\d+)?)(?:th)? percentile latency \(ns\)\s*:\s*(\d+)", text, flags=re.M):
        key = "p" + (pct.rstrip("0").rstrip(".") if "." in pct else pct)
        out["percentiles_s"].setdefault(key, int(ns) * 1e-9)
    for key, label in (("min_latency_s", "Min latency (ns)"), ("max_latency_s", "Max latency (ns)"),
                       ("mean_latency_s", "Mean latency (ns)")):
        v = _num(text, label)
        out[key] = None if v is None else v * 1e-9
    for key, label in (("samples_per_s", "Samples per second"),
                       ("scheduled_samples_per_s", "Scheduled samples per second"),
                       ("completed_samples_per_s", "Completed samples per second"),
                       ("qps_with_loadgen_overhead", "QPS w/ loadgen overhead"),
                       ("qps_without_loadgen_overhead", "QPS w/o loadgen overhead"),
                       ("samples_per_query_result", "Samples per query")):
        out[key] = _num(text, label)
    for pct, ns in re.findall(r"Early stopping (\d+(?:\.\d+)?)th percentile estimate\s*:\s*(\d+)", text):
        out[f"early_stopping_p{pct.rstrip('0').rstrip('.') if '.' in pct else pct}_s"] = int(ns) * 1e-9
    params = text.split("Test Parameters Used", 1)[1] if "Test Parameters Used" in text else ""
    for k, v in re.findall(r"^\s*([a-z_]+(?: \((?:ns|ms)\))?)\s*:\s*(\S+)\s*$", params, flags=re.M):
        try:
            out["test_parameters"][k] = float(v) if "." in v or "e" in v.lower() else int(v)
        except ValueError:
            out["test_parameters"][k] = v
    return out


def parse_mlperf_summary(text: str, where: str) -> dict:
    """The figures of one LoadGen summary (summary_fields) and its headline figure (metric,
    value, units, batch); UserError naming `where` when it is not one (no 'MLPerf Results
    Summary' header, no known scenario, or no headline figure)."""
    if "MLPerf Results Summary" not in text:
        raise UserError(f"{where}: not an MLPerf LoadGen log summary (no 'MLPerf Results Summary' header)")
    out = summary_fields(text)
    scenario = out["scenario"]
    if scenario not in SCENARIOS:
        raise UserError(f"{where}: scenario {scenario!r} is not one of {', '.join(SCENARIOS)}")
    if (out["mode"] or "").lower().startswith("accuracy"):
        raise UserError(f"{where}: an {out['mode']} run: no performance figure to import")
    if out["result"] is None or "Test Parameters Used" not in text:
        raise UserError(f"{where}: incomplete LoadGen summary (no 'Result is' line or no 'Test Parameters Used' "
                        "section): truncated?")
    head = text.split("Additional Stats", 1)[0]   # the result section, before the statistics
    tp = out["test_parameters"]
    spq = tp.get("samples_per_query")
    # the headline figure of each scenario (LoadGen's summary, and MLCommons' submission checker)
    if scenario == "SingleStream":
        value = out["percentiles_s"].get("p90")
        out["metric"], out["units"] = "p90 latency", "s"
        out["batch"] = 1
    elif scenario == "MultiStream":
        # since LoadGen 2.0: the 99th percentile latency of a query of samples_per_query samples
        # (8 for the closed division); before: the samples per query met at a fixed latency
        if re.search(r"^\s*Samples per query\s*:", head, flags=re.M):   # the format before LoadGen 2.0
            value, out["metric"], out["units"] = out["samples_per_query_result"], "samples per query", "samples"
            out["batch"] = int(value) if value else None
        else:
            value = out["percentiles_s"].get("p99")
            out["metric"], out["units"] = "p99 latency per query", "s"
            out["batch"] = int(spq) if isinstance(spq, (int, float)) and spq else None
    elif scenario == "Offline":
        value = out["samples_per_s"]
        out["metric"], out["units"] = "throughput", "samples/s"
        out["batch"] = None   # chosen by the system; not in the summary
    else:
        value = out["scheduled_samples_per_s"] or out["completed_samples_per_s"]
        out["metric"], out["units"] = "throughput", "samples/s"
        out["batch"] = None
        bound = tp.get("target_latency (ns)")
        out["latency_bound_s"] = bound * 1e-9 if isinstance(bound, (int, float)) and bound else None
    if value is None:
        raise UserError(f"{where}: {scenario} summary without its headline figure ({out['metric']})")
    out["value"] = float(value)
    return out


def _devices_from_name(system: str) -> int | None:
    """Devices in a system named like MLCommons does: '2x-xeon-8380', '...H100-SXM-80GBx8_TRT',
    '1-node-2S-ICX-...' (sockets). None when the name does not say."""
    s = system.lower()
    for pat in (r"^(\d+)\s*x(?=[-_ a-z])", r"gbx(\d+)(?:[-_]|$)", r"(?:^|[-_])(\d+)s(?:[-_]|$)"):
        m = re.search(pat, s)
        if m and int(m.group(1)) > 0:
            return int(m.group(1))
    return None


def _precision_from(*names: str) -> str | None:
    for n in names:
        for p in PRECISIONS:
            if re.search(rf"(?:^|[^a-z0-9]){p}(?:[^a-z0-9]|$)", (n or "").lower()):
                return p
    return None


def _device_from(system: str, profiles: Iterable[str]) -> str | None:
    """The shipped profile a system name contains (longest match), e.g. '2x-xeon-8380' -> 'xeon-8380'."""
    s = re.sub(r"[^a-z0-9]+", "-", system.lower())
    hits = [p for p in profiles if re.sub(r"[^a-z0-9]+", "-", p.lower()) in s]
    return max(hits, key=len) if hits else None


def _layout(path: str) -> tuple[str | None, str | None, str | None]:
    """(system, model, scenario) from <system>/<model>/<scenario>/[performance|accuracy/[run_N/]]file."""
    parts = list(PurePath(path).parts[:-1])
    while parts and (re.fullmatch(r"run_?\d+", parts[-1]) or parts[-1] in ("performance", "accuracy", "TEST01",
                                                                            "TEST04", "TEST05")):
        parts.pop()
    if len(parts) >= 3 and parts[-1] in SCENARIOS:
        return parts[-3], parts[-2], parts[-1]
    return None, None, None


def summary_doc(path: str, text: str, *, profiles: Iterable[str] = (), system: str | None = None,
                model: str | None = None, devices: int | None = None, precision: str | None = None,
                device: str | None = None, created_utc: str = "") -> tuple[dict, list[tuple[str, str]]]:
    """(results document, notes as (file, text)) for one LoadGen summary."""
    s = parse_mlperf_summary(text, path)
    lay_system, lay_model, lay_scenario = _layout(path)
    if lay_scenario and lay_scenario != s["scenario"]:
        raise UserError(f"{path}: the summary says scenario {s['scenario']} but the folder says {lay_scenario}")
    notes = []
    system = system or lay_system
    model = model or lay_model
    if not system:
        raise UserError(f"{path}: cannot tell the system (not in an MLCommons <system>/<model>/<scenario>/ folder): "
                        "pass --system NAME")
    if not model:
        raise UserError(f"{path}: cannot tell the model (not in an MLCommons <system>/<model>/<scenario>/ folder): "
                        "pass --model NAME")
    n_dev, dev_from = devices, "given"
    if n_dev is None:
        n_dev, dev_from = _devices_from_name(system), "from the system name"
        if n_dev is not None:
            notes.append((path, f"{n_dev} devices in the system, read from its name '{system}' (pass --devices N "
                                "if that is wrong)"))
    if n_dev is None:
        n_dev, dev_from = 1, "assumed"
        notes.append((path, "the system name does not say how many devices it has: taken as 1 (pass --devices N)"))
    prec = precision or _precision_from(system, path)
    if prec is None:
        notes.append((path, "precision not stated in the summary or the system name: imported as 'unknown' "
                            "(pass --precision; MLPerf closed-division ResNet-50 runs are usually int8)"))
    dev = device or _device_from(system, profiles)
    lat = {k: None for k in LATENCY_KEYS}
    thr = None
    if s["scenario"] in ("SingleStream", "MultiStream"):
        p = s["percentiles_s"]
        lat.update(min=s["min_latency_s"], mean=s["mean_latency_s"], max=s["max_latency_s"], p50=p.get("p50"),
                   p90=p.get("p90"), p95=p.get("p95"), p99=p.get("p99"))
        q = s["qps_without_loadgen_overhead"] or s["qps_with_loadgen_overhead"]
        if q:
            thr = q * (s["batch"] or 1)
    else:
        thr = s["value"]
    figure = {"metric": s["metric"], "value": s["value"], "units": s["units"]}
    if s.get("latency_bound_s"):
        figure["latency_bound_s"] = s["latency_bound_s"]
    imported = {"kind": "mlperf_log_summary", "file": path, "scenario": s["scenario"], "sut": s["sut"],
                "mode": s["mode"], "result": s["result"], "valid": s["valid"],
                "devices_in_system_from": dev_from, "figure": figure, "test_parameters": s["test_parameters"],
                "source": f"MLPerf LoadGen summary {path}", "notes": None}
    if s["valid"] is False:
        notes.append((path, f"LoadGen says the result is {s['result']} (imported and marked so)"))
    return _doc(system=system, model=model, device=dev, devices=n_dev, precision=prec or "unknown",
                scenario=s["scenario"], batch=s["batch"], latency=lat, throughput=thr, imported=imported,
                created_utc=created_utc, key=f"{text}|{system}|{model}|{n_dev}|{prec}|{dev}"), notes


# ----------------------------------------------------------------------------- points files


def _points(text: str, where: str) -> list[dict]:
    text = text.lstrip("\ufeff")   # a spreadsheet's byte-order mark
    stripped = text.lstrip()
    if not stripped:
        raise UserError(f"{where}: empty file")
    if stripped.startswith(("{", "[")):
        try:
            data = json.loads(text)
        except ValueError as e:
            raise UserError(f"{where}: not valid JSON ({e})") from None
        pts = data.get("points") if isinstance(data, dict) else data
        if not isinstance(pts, list):
            raise UserError(f"{where}: expected a list of points or an object with 'points' (a list)")
        return pts
    rows = list(csv.DictReader(io.StringIO(text)))
    if not rows or not set(POINT_REQUIRED) <= set(rows[0]):
        raise UserError(f"{where}: neither an MLPerf summary, a points JSON nor a points CSV with columns "
                        f"{', '.join(POINT_REQUIRED)}")
    for i, r in enumerate(rows):
        if None in r:
            raise UserError(f"{where}: CSV row {i + 2} has more fields than the header")
    return rows


def _whole(v: Any, where: str, key: str, *, allow: tuple = (None, "")) -> int | None:
    """A whole number >= 1 from a point (None for the `allow`ed blanks); UserError otherwise."""
    if v in allow:
        return None
    try:
        if isinstance(v, bool) or float(v) != int(float(v)) or int(float(v)) < 1:
            raise ValueError
        return int(float(v))
    except (TypeError, ValueError, OverflowError):
        raise UserError(f"{where}: {key} {v!r} is not a whole number >= 1") from None


def points_docs(path: str, text: str, *, profiles: Iterable[str] = (), created_utc: str = "") -> tuple[list[dict], list[tuple[str, str]]]:
    """(one results document per point, notes as (point, text)); UserError naming the point and key."""
    docs, notes = [], []
    for i, p in enumerate(_points(text, path)):
        where = f"{path}: point {i}" + (f" ({p.get('id')})" if isinstance(p, dict) and p.get("id") else "")
        if not isinstance(p, dict):
            raise UserError(f"{where}: expected an object")
        missing = [k for k in POINT_REQUIRED if p.get(k) in (None, "")]
        if missing:
            raise UserError(f"{where}: missing {', '.join(missing)}")
        try:
            value = float(p["value"])
        except (TypeError, ValueError):
            raise UserError(f"{where}: value {p['value']!r} is not a number") from None
        if not (value > 0 and math.isfinite(value)):
            raise UserError(f"{where}: value {value:g} must be a finite number > 0")
        units = str(p["units"]).strip()
        metric = str(p["metric"]).strip().lower()
        batch = _whole(p.get("batch"), where, "batch (or 'not read')", allow=(None, "", "not read"))
        n_dev = _whole(p.get("devices_in_system"), where, "devices_in_system")
        if n_dev is None:
            n_dev = 1
            notes.append((where, "devices_in_system not given: taken as 1"))
        scen = str(p.get("scenario") or "").strip()
        scenario = _SCENARIO_ALIASES.get(scen.lower(), scen or None)
        lat = {k: None for k in LATENCY_KEYS}
        thr = None
        if units.lower() in _LATENCY_UNITS:
            sec = value * _LATENCY_UNITS[units.lower()]
            m = re.match(r"p(\d+(?:\.\d+)?)\b", metric)
            key = (f"p{m.group(1)}" if m and f"p{m.group(1)}" in LATENCY_KEYS else "?") if m else (
                "mean" if any(w in metric for w in ("avg", "mean", "average", "time per inference")) else None)
            if key in (None, "?"):
                raise UserError(f"{where}: metric {p['metric']!r}: a latency metric must say p50, p90, p95, p99, "
                                "avg/mean or 'time per inference'")
            lat[key] = sec
            if key == "mean":   # a mean of a steady stream stands for its median too (stated in the figure)
                lat["p50"] = sec
            if batch is None:
                batch = 1
            figure = {"metric": metric, "value": sec, "units": "s", "published_value": value, "published_units": units}
        elif units.lower() in _THROUGHPUT_UNITS:
            if "latency" in metric or re.match(r"p\d", metric):
                raise UserError(f"{where}: metric {p['metric']!r} is a latency but the units {units!r} a throughput")
            thr = value
            figure = {"metric": "throughput", "value": value, "units": "samples/s"}
        else:
            raise UserError(f"{where}: units {units!r}: expected a latency ({', '.join(_LATENCY_UNITS)}) or a "
                            f"throughput ({', '.join(_THROUGHPUT_UNITS)})")
        prec = str(p.get("precision") or "").lower() or None
        if prec is not None and prec not in PRECISIONS:
            raise UserError(f"{where}: precision {prec!r} (known: {', '.join(PRECISIONS)})")
        for key in ("profile", "system", "id"):
            if p.get(key) is not None and not isinstance(p.get(key), str):
                raise UserError(f"{where}: {key} {p.get(key)!r} must be text")
        system = str(p.get("system") or p.get("profile") or p.get("id") or f"point-{i}")
        dev = p.get("profile") or _device_from(system, profiles)
        imported = {"kind": "points", "file": path, "id": p.get("id"), "scenario": scenario,
                    "devices_in_system_from": "given" if p.get("devices_in_system") not in (None, "") else "assumed",
                    "figure": figure, "source": p.get("source"), "notes": p.get("notes"),
                    "model_variant": p.get("model_variant"), "software": p.get("software"),
                    "summary_file": p.get("summary_file")}
        docs.append(_doc(system=system, model=str(p["model"]), device=dev, devices=n_dev, precision=prec or "unknown",
                         scenario=scenario, batch=batch, latency=lat, throughput=thr, imported=imported,
                         created_utc=created_utc, key=json.dumps(p, sort_keys=True)))
        if prec is None:
            notes.append((where, "precision not given: imported as 'unknown'"))
    if not docs:
        raise UserError(f"{path}: no points")
    return docs, notes


# ----------------------------------------------------------------------------- documents


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)[:60] or "x"


def _doc(*, system: str, model: str, device: str | None, devices: int, precision: str, scenario: str | None,
         batch: int | None, latency: Mapping, throughput: float | None, imported: dict, created_utc: str,
         key: str) -> dict:
    from estimator import api

    digest = hashlib.sha256(key.encode()).hexdigest()[:8]
    run_id = f"imported-{_safe(system)}-{_safe(model)}-{scenario if scenario in SCENARIOS else 'point'}-{digest}"
    cfg = {"batch": batch, "precision": precision, "threads": None, "instances": 1, "scenario": scenario,
           "latency_s": dict(latency), "throughput_per_s": throughput,
           "throughput_per_device_per_s": None if throughput is None else throughput / devices,
           "peak_rss_bytes": None, "layers": [], "status": "ok", "figure": imported["figure"]}
    return {
        "schema": SCHEMA_NAME, "schema_version": SCHEMA_VERSION, "source": "imported", "run_id": run_id,
        "created_utc": created_utc, "partial": False,
        "model": {"name": model, "sha256": None, "inputs": [], "builtin": api.is_builtin(model),
                  "variant": imported.get("model_variant")},
        "host": {"hostname": system, "cpu": {"model": None}},
        "engine": {"name": imported.get("software") or ("MLPerf SUT " + str(imported.get("sut"))
                                                        if imported["kind"] == "mlperf_log_summary" else None),
                   "provider": None},
        "device": device, "devices_in_system": devices, "imported": imported,
        "configurations": [cfg],
    }


def is_imported(doc: Mapping) -> bool:
    return doc.get("source") == "imported"
