"""Campaign plans: the YAML file `estimate campaign` runs, validated in one place.

A plan names models, the settings of `estimate validate`, and targets (a device or a group of
identical devices, selected on a Ray cluster by a resource the nodes advertise). Every problem is
one UserError naming the file and the key; unknown keys are rejected by name, with a suggestion.
docs/campaigns.md documents the keys.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from estimator.errors import UserError

TOP_KEYS = ("models", "batches", "precisions", "threads", "instances", "iterations", "duration",
            "warmup", "rounds", "scenario", "profile", "profile_runs", "opt_level", "retries", "targets")
MODEL_KEYS = ("model", "resolution", "seq_len")
TARGET_KEYS = ("name", "resources", "provider", "hw")
SCENARIOS = ("sweep", "single-stream", "offline")
OPT_LEVELS = ("disable", "basic", "extended", "all")
PRECISIONS = ("fp32", "fp16", "int8")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


@dataclass(frozen=True)
class Target:
    name: str
    resources: dict            # Ray resource -> amount; empty: a local target (this process, no Ray)
    provider: str = "CPUExecutionProvider"
    hw: str | None = None      # a profile path (absolute) or a shipped name

    @property
    def local(self) -> bool:
        return not self.resources


@dataclass(frozen=True)
class ModelSpec:
    model: str                 # an absolute .onnx path or a built-in name
    resolution: str | None = None
    seq_len: int | None = None

    @property
    def is_file(self) -> bool:
        return self.model.endswith(".onnx")

    @property
    def label(self) -> str:
        base = Path(self.model).stem if self.is_file else self.model
        # the name its results carry (modelprep.resolve_model): resnet50-112x112, bert-base-s64
        return base + (f"-{self.resolution}" if self.resolution else "") + (f"-s{self.seq_len}" if self.seq_len else "")


@dataclass
class Plan:
    path: Path
    models: list[ModelSpec]
    targets: list[Target]
    batches: list[int] = field(default_factory=lambda: [1])
    precisions: list[str] = field(default_factory=lambda: ["fp32"])
    threads: list[int] | None = None
    instances: list[int] = field(default_factory=lambda: [1])
    iterations: int | None = None
    duration: float | None = None
    warmup: int = 3
    rounds: int = 4
    scenario: str = "sweep"
    profile: bool = True
    profile_runs: int = 10
    opt_level: str = "all"
    retries: int = 2


@dataclass(frozen=True)
class Group:
    """One task: every batch, thread count and instance count of one model at one precision on one target."""
    target: Target
    model: ModelSpec
    precision: str
    model_sha256: str | None   # of the file; None for a built-in (built where it runs)
    hw_sha256: str | None      # of the target's profile file, when it is a file

    def key(self, plan: Plan) -> dict:
        """Everything that makes two runs the same measurement (the resume key hashes it)."""
        return {"target": self.target.name, "resources": self.target.resources, "provider": self.target.provider,
                "hw": self.target.hw, "hw_sha256": self.hw_sha256,
                "model": self.model.model if not self.model.is_file else Path(self.model.model).name,
                "model_sha256": self.model_sha256, "resolution": self.model.resolution, "seq_len": self.model.seq_len,
                "precision": self.precision, "batches": plan.batches, "threads": plan.threads,
                "instances": plan.instances, "iterations": plan.iterations, "duration": plan.duration,
                "warmup": plan.warmup, "rounds": plan.rounds, "scenario": plan.scenario, "profile": plan.profile,
                "profile_runs": plan.profile_runs, "opt_level": plan.opt_level}

    def group_id(self, plan: Plan) -> str:
        return hashlib.sha256(json.dumps(self.key(plan), sort_keys=True).encode()).hexdigest()[:16]

    @property
    def label(self) -> str:
        return f"{self.target.name}/{self.model.label}/{self.precision}"


def _suggest(word: str, allowed) -> str:
    m = difflib.get_close_matches(word, list(allowed), n=1, cutoff=0.6)
    return f" (did you mean '{m[0]}'?)" if m else f" (allowed: {', '.join(allowed)})"


def _keys(origin: str, data: dict, allowed, where: str) -> None:
    for k in data:
        if not isinstance(k, str) or k not in allowed:
            raise UserError(f"{origin}: unknown key '{where}{k}'{_suggest(str(k), allowed)}")


def _int_list(origin: str, key: str, v, minimum: int = 1) -> list[int]:
    if isinstance(v, int) and not isinstance(v, bool):
        v = [v]
    elif isinstance(v, str):
        try:
            v = [int(x) for x in v.replace(" ", "").split(",") if x]
        except ValueError:
            raise UserError(f"{origin}: '{key}' {v!r}: expected integers, e.g. [1, 4]") from None
    if not isinstance(v, list) or not v or any(not isinstance(x, int) or isinstance(x, bool) or x < minimum for x in v):
        raise UserError(f"{origin}: '{key}' must be a list of integers >= {minimum}, got {v!r}")
    return list(dict.fromkeys(v))


def _int(origin: str, key: str, v, minimum: int) -> int:
    if not isinstance(v, int) or isinstance(v, bool) or v < minimum:
        raise UserError(f"{origin}: '{key}' must be an integer >= {minimum}, got {v!r}")
    return v


def _resources(origin: str, where: str, v) -> dict:
    """{device: orin} -> {'device:orin': 1}; {GPU: 1} -> {'GPU': 1.0} (a count)."""
    if not isinstance(v, dict) or not v:
        raise UserError(f"{origin}: '{where}resources' must be a mapping such as {{device: jetson-agx-orin}}, got {v!r}")
    out = {}
    for k, val in v.items():
        if not isinstance(k, str) or not k:
            raise UserError(f"{origin}: '{where}resources' key {k!r} must be text")
        if isinstance(val, str) and val:
            out[f"{k}:{val}"] = 1.0
        elif isinstance(val, (int, float)) and not isinstance(val, bool) and val > 0:
            out[k] = float(val)
        else:
            raise UserError(f"{origin}: '{where}resources.{k}' must be a name (device: NAME -> resource 'device:NAME') "
                            f"or an amount > 0, got {val!r}")
    return out


def _profile(origin: str, where: str, v, base: Path) -> str:
    from estimator import hardware
    if not isinstance(v, str) or not v:
        raise UserError(f"{origin}: '{where}hw' must be a profile path or a shipped name, got {v!r}")
    p = (base / v).expanduser() if not Path(v).expanduser().is_absolute() else Path(v).expanduser()
    spec = str(p.resolve()) if p.is_file() else v
    try:
        hardware.load_profile(spec)
    except UserError as e:
        raise UserError(f"{origin}: '{where}hw': {e}") from None
    return spec


def load_plan(path: str | Path) -> Plan:
    origin = str(path)
    p = Path(path).expanduser()
    if not p.is_file():
        raise UserError(f"{origin}: no such plan file" if not p.exists() else f"{origin}: is not a file")
    try:
        data = yaml.safe_load(p.read_text())
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"{origin}: cannot read ({getattr(e, 'strerror', None) or e})") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark is not None else ""
        raise UserError(f"{origin}: not valid YAML{at} ({getattr(e, 'problem', None) or e})") from None
    if not isinstance(data, dict):
        raise UserError(f"{origin}: a plan is a mapping with 'models' and 'targets' (docs/campaigns.md)")
    _keys(origin, data, TOP_KEYS, "")
    for k in ("models", "targets"):
        if k not in data:
            raise UserError(f"{origin}: missing required key '{k}'")
    base = p.resolve().parent
    models = _models(origin, data["models"], base)
    targets = _targets(origin, data["targets"], base)
    plan = Plan(path=p.resolve(), models=models, targets=targets)
    if "batches" in data:
        plan.batches = _int_list(origin, "batches", data["batches"])
    if "precisions" in data:
        v = data["precisions"]
        v = [v] if isinstance(v, str) else v
        if not isinstance(v, list) or not v or any(x not in PRECISIONS for x in v):
            raise UserError(f"{origin}: 'precisions' must be a list of {', '.join(PRECISIONS)}, got {data['precisions']!r}")
        plan.precisions = list(dict.fromkeys(v))
    if data.get("threads") is not None:
        plan.threads = _int_list(origin, "threads", data["threads"])
    if "instances" in data:
        plan.instances = _int_list(origin, "instances", data["instances"])
    if "iterations" in data and "duration" in data:
        raise UserError(f"{origin}: give either 'iterations' or 'duration', not both")
    if "iterations" in data:
        plan.iterations = _int(origin, "iterations", data["iterations"], 1)
    if "duration" in data:
        d = data["duration"]
        if not isinstance(d, (int, float)) or isinstance(d, bool) or d <= 0:
            raise UserError(f"{origin}: 'duration' must be a number of seconds > 0, got {d!r}")
        plan.duration = float(d)
    for k, lo in (("warmup", 0), ("rounds", 1), ("profile_runs", 1), ("retries", 0)):
        if k in data:
            setattr(plan, k, _int(origin, k, data[k], lo))
    if "scenario" in data:
        if data["scenario"] not in SCENARIOS:
            raise UserError(f"{origin}: 'scenario' {data['scenario']!r}: choose one of {', '.join(SCENARIOS)}")
        plan.scenario = data["scenario"]
    if "profile" in data:
        if not isinstance(data["profile"], bool):
            raise UserError(f"{origin}: 'profile' must be true or false, got {data['profile']!r}")
        plan.profile = data["profile"]
    if "opt_level" in data:
        if data["opt_level"] not in OPT_LEVELS:
            raise UserError(f"{origin}: 'opt_level' {data['opt_level']!r}: choose one of {', '.join(OPT_LEVELS)}")
        plan.opt_level = data["opt_level"]
    return plan


def _entries(origin: str, key: str, v, short: str, allowed, what: str):
    """(where, mapping) per entry of the list `key`; a bare string is {short: string}."""
    if not isinstance(v, list) or not v:
        raise UserError(f"{origin}: '{key}' must be a list of {what}, got {v!r}")
    for i, item in enumerate(v):
        if isinstance(item, str):
            item = {short: item}
        if not isinstance(item, dict):
            raise UserError(f"{origin}: '{key}[{i}]' must be a name or a mapping with '{short}', got {item!r}")
        _keys(origin, item, allowed, f"{key}[{i}].")
        yield f"{key}[{i}].", item


def _models(origin: str, v, base: Path) -> list[ModelSpec]:
    from estimator import models as builtin_models
    builtins = sorted(getattr(builtin_models, "BUILTINS", {}))
    out = []
    for where, item in _entries(origin, "models", v, "model", MODEL_KEYS, ".onnx paths or built-in names"):
        m = item.get("model")
        if not isinstance(m, str) or not m:
            raise UserError(f"{origin}: '{where}model' is required: a .onnx path or a built-in name")
        if m.endswith(".onnx"):
            fp = Path(m).expanduser()
            fp = fp if fp.is_absolute() else base / fp
            if not fp.is_file():
                raise UserError(f"{origin}: '{where}model' {m}: no such file ({fp})")
            m = str(fp.resolve())
        elif m not in builtins:
            raise UserError(f"{origin}: '{where}model' {m!r}: neither a .onnx file nor a built-in model"
                            f"{_suggest(m, builtins)}")
        res = item.get("resolution")
        if res is not None:
            from .modelprep import parse_resolution
            try:
                parse_resolution(str(res))
            except UserError as e:
                raise UserError(f"{origin}: '{where}resolution': {e}") from None
            res = str(res)
        sl = item.get("seq_len")
        if sl is not None:
            sl = _int(origin, f"{where}seq_len", sl, 1)
        out.append(ModelSpec(m, res, sl))
    if len(set(out)) != len(out):
        raise UserError(f"{origin}: 'models' lists the same model twice")
    return out


def _targets(origin: str, v, base: Path) -> list[Target]:
    out, names = [], set()
    for where, t in _entries(origin, "targets", v, "name", TARGET_KEYS, "targets, each with a 'name' (docs/campaigns.md)"):
        name = t.get("name")
        if name is None:
            raise UserError(f"{origin}: missing required key '{where}name'")
        if not isinstance(name, str) or not _NAME.match(name):
            raise UserError(f"{origin}: '{where}name' must be a name of letters, digits, '-', '_' or '.', got {name!r}")
        if name in names:
            raise UserError(f"{origin}: target '{name}' is listed twice")
        names.add(name)
        res = _resources(origin, where, t["resources"]) if "resources" in t else {}
        prov = t.get("provider", "CPUExecutionProvider")
        if not isinstance(prov, str) or not prov:
            raise UserError(f"{origin}: '{where}provider' must be an onnxruntime execution provider name, got {prov!r}")
        hw = _profile(origin, where, t["hw"], base) if t.get("hw") is not None else None
        out.append(Target(name, res, prov, hw))
    return out


def _sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def groups(plan: Plan, targets: list[Target] | None = None) -> list[Group]:
    """Every (target, model, precision) of the plan, in plan order."""
    shas: dict[str, str] = {}
    out = []
    for t in targets if targets is not None else plan.targets:
        hw_sha = _sha256(t.hw) if t.hw and Path(t.hw).is_file() else None
        for m in plan.models:
            if m.is_file and m.model not in shas:
                shas[m.model] = _sha256(m.model)
            for prec in plan.precisions:
                out.append(Group(t, m, prec, shas.get(m.model), hw_sha))
    return out
