"""Hardware profiles: one YAML file per device, validated in one function.

A profile is data, never code: peak MAC rate per precision (``mac_units[p] * clock_hz``),
on-chip SRAM, DRAM bandwidth, and a few optional refinements (vector rate for non-MAC work,
MAC-array shape, Winograd support, per-layer overhead, efficiencies, energy). The schema, with
every key, unit, default and range, is documented in ``docs/hardware-profiles.md``.

This is the only module of the project that reads or writes YAML. Everything else receives a
frozen :class:`HardwareProfile`.

- :func:`load_profile` finds a profile by path or by shipped name and parses it.
- :func:`profile_from_dict` is the single validation function; every problem becomes one
  :class:`~estimator.errors.UserError` line naming the file and the key path.
- :func:`profile_to_dict` / :func:`dump_profile` write a profile back (atomic, no clobber).
- :func:`with_overrides` answers "what if the SRAM were 2x bigger": a new, re-validated profile.

Units: MAC is the one unit of work (a vendor "FLOP" is half a MAC; convert before writing a
profile). Rates are per cycle and become per second through ``clock_hz``.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, NoReturn

import yaml

from estimator.errors import UserError
from estimator.fsutil import atomic_write_text

SCHEMA_VERSION = 1

#: Precisions a profile may rate, in the canonical order used for output.
PRECISIONS: tuple[str, ...] = ("fp32", "fp16", "bf16", "int8")

#: Kernel classes an efficiency or overhead may be given for (``efficiency.by_layer_class``); a
#: class without an entry takes its parent's (CLASS_PARENT), then the profile-wide value.
from .ops.base import CLASS_PARENT, LAYER_CLASSES  # noqa: E402  (one definition, in the cost model)


def _by_class(by: Mapping, layer_class: str, default: float) -> float:
    """A class's entry, else its parent's, its parent's parent's... (CLASS_PARENT), else `default`."""
    c: str | None = layer_class
    while c is not None:
        if c in by:
            return by[c]
        c = CLASS_PARENT.get(c)
    return default

WINOGRAD_TILES: tuple[int, ...] = (2, 4)
WINOGRAD_WEIGHTS: tuple[str, ...] = ("transformed", "expand_on_load")

#: Efficiencies are multipliers on peak rates; > 1 is allowed (calibration may find the
#: analytic count pessimistic) but bounded so that unit mistakes (80 for 0.8) are caught.
EFFICIENCY_MAX = 10.0
#: No number in a profile is larger than this (1e21 bytes is a zettabyte): a typo guard.
ABSURD = 1e21

#: A per-layer overhead of a second or more is a unit mistake (ms or us written as s).
LAYER_OVERHEAD_MAX_S = 1.0
#: ``weight_residency`` values (docs/roofline.md, "SRAM residency policy"): "pinned", weights that fit
#: in sram_bytes stay there from one pass to the next (an accelerator's explicitly managed SRAM);
#: "cache", a CPU's last-level cache: a whole graph reads its weights from DRAM every pass, a graph of
#: one weighted kernel called back to back (a kernel sample) finds the share that fits in the cache
WEIGHT_RESIDENCY: tuple[str, ...] = ("pinned", "cache")

_SHIPPED_PACKAGE = "estimator.hwprofiles"
_SHIPPED_PREFIX = "shipped:"
_PROFILE_SUFFIXES = (".yaml", ".yml", ".json")
_EXPECTED_TOP = "expected a YAML mapping with schema_version, name, source, ..."
_EXISTS = "already exists (not overwritten; pass overwrite=True to replace it)"

# Top-level keys in canonical output order, with the unit / meaning used in error hints.
_TOP_KEYS: dict[str, str] = {
    "schema_version": "integer, must be 1",
    "name": "the device's name, e.g. h100-sxm",
    "kind": "text such as gpu, cpu, npu",
    "source": "text: datasheet, paper or measurement behind the numbers",
    "description": "one paragraph about the device",
    "clock_hz": "Hz",
    "mac_units": "MACs per cycle, by precision",
    "vector_ops_per_cycle": "element operations per cycle, by precision",
    "mac_array": "rows and cols of one MAC array",
    "parallel": "units (SMs, cores, arrays) and the output tile one unit computes at a time (tile_m x tile_n)",
    "sram_bytes": "bytes",
    "dram_bandwidth_bytes_per_s": "bytes per second",
    "onchip_bandwidth_bytes_per_s": "bytes per second",
    "weight_fetch_bandwidth_bytes_per_s": "bytes per second: a contraction kernel's weights from DRAM, not overlapped with its MACs",
    "split_min_macs": "MACs per pass from which the runtime splits a contraction kernel over threads",
    "split_min_ops": "element ops per pass from which the runtime splits another kernel over threads",
    "dram_bytes": "bytes",
    "layer_overhead_s": "seconds per layer",
    "layer_overhead_by_class_s": "seconds per layer, by layer class",
    "kernel_overhead_in_graph_s": "seconds per kernel without MACs inside a whole graph, on top of the class's",
    "grouped_call_s": "seconds per call of the blocked convolution kernel in a grouped convolution (per row, group, input block)",
    "efficiency": "compute / memory multipliers",
    "winograd": "tile and weights",
    "fusion": "the fusion rules grouping layers into kernels: rule names or {name, head, then}",
    "layout": "the runtime's blocked channel layout whose conversions cost data movement: nchwc",
    "layout_block": "channels per block of that layout (default: mac_array.cols, else 16)",
    "weight_residency": "how weights stay in sram_bytes from one pass to the next: pinned (the default) or cache",
    "kernel_samples": "file name of the kernel samples `estimate hw detect` timed (next to the profile)",
    "energy": "joules per MAC and per DRAM byte",
    "notes": "key -> text",
}
_REQUIRED_KEYS: tuple[str, ...] = (
    "schema_version",
    "name",
    "source",
    "clock_hz",
    "mac_units",
    "sram_bytes",
    "dram_bandwidth_bytes_per_s",
)
_MAC_ARRAY_KEYS = ("rows", "cols")
_PARALLEL_KEYS = ("units", "tile_m", "tile_n")
_EFFICIENCY_KEYS = ("compute", "memory", "by_layer_class")
_WINOGRAD_KEYS = ("tile", "weights")
_ENERGY_KEYS = ("per_mac_j", "per_dram_byte_j")

#: Top-level keys whose value is a plain field (not provenance); overriding one of these
#: makes its old note stale.
_PROVENANCE_KEYS = ("schema_version", "name", "kind", "source", "description", "notes")


# --------------------------------------------------------------------------------------------
# Values
# --------------------------------------------------------------------------------------------


class FrozenMap(Mapping):
    """A read-only, hashable mapping (so profiles stay frozen and hashable).

    Compares equal to any mapping with the same items, e.g. a plain ``dict``.
    """

    __slots__ = ("_items",)

    def __init__(self, items: Mapping | Any = ()) -> None:
        self._items = dict(items)

    def __getitem__(self, key: str) -> Any:
        return self._items[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __hash__(self) -> int:
        return hash(frozenset(self._items.items()))

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Mapping):
            return self._items == dict(other.items())
        return NotImplemented

    def __repr__(self) -> str:
        return f"FrozenMap({self._items!r})"

    def __reduce__(self):  # pickling with __slots__
        return (FrozenMap, (self._items,))


def _frozen(value: Any) -> Any:
    return value if isinstance(value, FrozenMap) or value is None else FrozenMap(value)


@dataclass(frozen=True, kw_only=True)
class MacArray:
    """Shape of one MAC array (a layer's dimensions are mapped onto rows x cols)."""

    rows: int
    cols: int

    @property
    def macs(self) -> int:
        """MACs per cycle of one array: ``rows * cols``."""
        return self.rows * self.cols


@dataclass(frozen=True, kw_only=True)
class Parallel:
    """Work split into tiles over parallel units (docs/roofline.md, "Tiles and waves"): a
    contraction's output (M rows = batch x positions, N = output channels/columns) is cut into
    tile_m x tile_n tiles, run `units` at a time; a partial tile or a last partial wave leaves
    MACs idle."""

    units: int
    tile_m: int
    tile_n: int


@dataclass(frozen=True, kw_only=True)
class Efficiency:
    """Multipliers on peak rates: achieved = peak * efficiency.

    ``by_layer_class[c]`` replaces ``compute`` for layers of class ``c`` (it is not
    multiplied with it). ``memory`` multiplies ``dram_bandwidth_bytes_per_s``.
    """

    compute: float = 1.0
    memory: float = 1.0
    by_layer_class: FrozenMap = field(default_factory=FrozenMap)

    def __post_init__(self) -> None:
        object.__setattr__(self, "by_layer_class", _frozen(self.by_layer_class))

    def compute_for(self, layer_class: str) -> float:
        """Compute efficiency for a layer class: ``by_layer_class`` entry, else ``compute``."""
        if layer_class not in LAYER_CLASSES:
            raise ValueError(
                f"unknown layer class {layer_class!r}; known: {', '.join(LAYER_CLASSES)}"
            )
        return float(_by_class(self.by_layer_class, layer_class, self.compute))


@dataclass(frozen=True, kw_only=True)
class Winograd:
    """Winograd F(tile x tile, 3x3) support for 3x3 stride-1 convolutions.

    ``weights``: ``transformed`` = weights stored (in SRAM/DRAM) already transformed, i.e.
    (tile+2)^2/9 times larger; ``expand_on_load`` = stored untransformed and expanded on the
    way into the compute units, so storage and DRAM traffic do not grow.
    """

    tile: int
    weights: str


@dataclass(frozen=True, kw_only=True)
class Energy:
    """Energy per MAC (by precision) and per DRAM byte, in joules."""

    per_mac_j: FrozenMap = field(default_factory=FrozenMap)
    per_dram_byte_j: float | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "per_mac_j", _frozen(self.per_mac_j))


@dataclass(frozen=True, kw_only=True)
class HardwareProfile:
    """One device, as the roofline sees it.

    Build it with :func:`load_profile`, :func:`profile_from_dict` or :func:`with_overrides`;
    direct construction skips validation. ``origin`` (the file path or ``shipped:<name>``) is
    for messages only and does not take part in equality.
    """

    schema_version: int = SCHEMA_VERSION
    name: str
    kind: str | None = None
    source: str
    description: str = ""
    clock_hz: float
    mac_units: FrozenMap
    vector_ops_per_cycle: FrozenMap | None = None
    mac_array: MacArray | None = None
    parallel: Parallel | None = None
    sram_bytes: int
    dram_bandwidth_bytes_per_s: float
    onchip_bandwidth_bytes_per_s: float | None = None
    weight_fetch_bandwidth_bytes_per_s: float | None = None  # None: a weight read overlaps the MACs (docs/roofline.md)
    split_min_macs: float | None = None   # where the runtime splits a contraction over threads (recorded)
    split_min_ops: float | None = None    # kernels without MACs from this many element ops pay
    #   kernel_overhead_in_graph_s; None: every kernel without MACs does (roofline.pays_in_graph)
    dram_bytes: int | None = None
    layer_overhead_s: float = 0.0
    layer_overhead_by_class_s: FrozenMap = field(default_factory=FrozenMap)
    kernel_overhead_in_graph_s: float = 0.0   # a kernel without MACs of a whole graph pays it on top of its class's
    grouped_call_s: float = 0.0   # per call of the blocked conv kernel in a grouped conv (kernels.grouped_calls)
    efficiency: Efficiency = field(default_factory=Efficiency)
    winograd: Winograd | None = None
    fusion: tuple | None = None       # fusion rules (names or kernels.Rule); None: the kind's defaults
    kernel_samples: str | None = None  # the samples file detect wrote, relative to the profile's folder
    layout: str | None = None          # "nchwc": layout conversions cost (estimator/kernels.py)
    layout_block: int | None = None    # the layout's channel block; None: the MAC array's columns
    weight_residency: str | None = None  # None/"pinned": weights that fit are pinned; "cache": docs/roofline.md
    energy: Energy | None = None
    notes: FrozenMap = field(default_factory=FrozenMap)
    origin: str = field(default="", compare=False, repr=False)

    def layout_spec(self) -> tuple[str, int] | None:
        """(layout, channel block) for the roofline: the block is `layout_block` (what `estimate hw
        detect` reads from the CPU's flags), else the MAC array's columns, else 16."""
        if self.layout is None:
            return None
        if self.layout_block is not None:
            return self.layout, int(self.layout_block)
        return self.layout, int(self.mac_array.cols) if self.mac_array else 16

    def kernel_samples_path(self) -> str | None:
        """The kernel samples file, resolved against the folder of the file the profile was
        read from (None if the profile names none)."""
        if self.kernel_samples is None:
            return None
        base = os.path.dirname(self.origin) if self.origin and os.path.isfile(self.origin) else "."
        return os.path.join(base, self.kernel_samples)

    def fusion_rules(self) -> tuple:
        """The kernels.Rule list that groups this device's layers into kernels."""
        from . import kernels

        return kernels.rules_for(self.fusion, self.kind)

    def overhead_for(self, layer_class: str) -> float:
        """Fixed time per layer of a class, as timed alone: ``layer_overhead_by_class_s`` entry,
        else ``layer_overhead_s`` (a kernel without MACs inside a whole graph adds ``kernel_overhead_in_graph_s``)."""
        return float(_by_class(self.layer_overhead_by_class_s, layer_class, self.layer_overhead_s))

    def __post_init__(self) -> None:
        object.__setattr__(self, "layer_overhead_by_class_s", _frozen(self.layer_overhead_by_class_s))
        object.__setattr__(self, "mac_units", _frozen(self.mac_units))
        object.__setattr__(self, "vector_ops_per_cycle", _frozen(self.vector_ops_per_cycle))
        object.__setattr__(self, "notes", _frozen(self.notes))

    @property
    def precisions(self) -> tuple[str, ...]:
        """Precisions with a MAC rate, in canonical order (fp32, fp16, bf16, int8)."""
        return tuple(p for p in PRECISIONS if p in self.mac_units)

    def _label(self) -> str:
        return self.origin or self.name

    def _require_precision(self, precision: str) -> None:
        if precision not in self.mac_units:
            have = ", ".join(self.precisions) or "none"
            raise UserError(
                f"{self._label()}: no MAC rate for precision '{precision}' "
                f"(profile '{self.name}' has: {have})"
            )

    def peak_macs_per_s(self, precision: str) -> float:
        """Peak MAC rate: ``mac_units[precision] * clock_hz`` (no efficiency applied)."""
        self._require_precision(precision)
        return float(self.mac_units[precision]) * self.clock_hz

    def ridge_point(self, precision: str) -> float:
        """Roofline ridge in MACs per DRAM byte: ``peak_macs_per_s / dram_bandwidth``.

        Layers whose MACs per byte fall below it are memory-bound. Raw peaks, no efficiency.
        """
        return self.peak_macs_per_s(precision) / self.dram_bandwidth_bytes_per_s

    def vector_ops_per_s(self, precision: str) -> float | None:
        """Rate for non-MAC element operations: ``vector_ops_per_cycle[p] * clock_hz``.

        ``None`` when the profile has no ``vector_ops_per_cycle`` (non-MAC work then costs
        only its memory traffic). A precision missing from the mapping falls back to the
        slowest rate listed (conservative).
        """
        rates = self.vector_ops_per_cycle
        if not rates:
            return None
        per_cycle = rates[precision] if precision in rates else min(rates.values())
        return float(per_cycle) * self.clock_hz


# --------------------------------------------------------------------------------------------
# Validation: profile_from_dict is the one place that checks a profile
# --------------------------------------------------------------------------------------------


def _fail(origin: str, path: str, message: str) -> NoReturn:
    raise UserError(f"{origin}: {path}: {message}" if path else f"{origin}: {message}")


def _join(prefix: str, key: str) -> str:
    return f"{prefix}.{key}" if prefix else key


def _describe(value: Any) -> str:
    """How a wrong value is shown in a message: the value and what YAML made of it."""
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return f"{str(value).lower()} (a boolean)"
    if isinstance(value, str):
        shown = value if len(value) <= 40 else value[:37] + "..."
        return f"{shown!r} (text)"
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, (list, tuple)):
        return "a list"
    if isinstance(value, (int, float)):
        return _fmt(value)
    return f"a {type(value).__name__}"


def _fmt(value: float | int) -> str:
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return f"{value:g}" if isinstance(value, float) else str(value)


def _suggest(word: str, choices: tuple[str, ...] | list[str], prefix: str = "") -> str:
    match = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    if match:
        return f" (did you mean '{_join(prefix, match[0])}'?)"
    return f" (allowed: {', '.join(choices)})"


def _check_keys(
    origin: str,
    data: Mapping,
    allowed: tuple[str, ...],
    prefix: str,
    required: tuple[str, ...] = (),
) -> None:
    """Keys must be text, known (rejected by name, with a suggestion) and complete."""
    for key in data:
        if not isinstance(key, str):
            _fail(origin, prefix, f"key {key!r} must be text, got {_describe(key)}")
        if key not in allowed:
            raise UserError(
                f"{origin}: unknown key '{_join(prefix, key)}'{_suggest(key, allowed, prefix)}"
            )
    missing = [k for k in required if k not in data]
    if missing:
        if len(missing) == 1:
            what = f"missing required key '{_join(prefix, missing[0])}'"
            hint = _TOP_KEYS.get(missing[0]) if not prefix else None
            if hint:
                what += f" ({hint})"
        else:
            what = "missing required keys " + ", ".join(f"'{_join(prefix, k)}'" for k in missing)
        raise UserError(f"{origin}: {what}")


def _mapping(origin: str, path: str, value: Any, what: str) -> Mapping:
    if not isinstance(value, Mapping):
        _fail(origin, path, f"expected a mapping of {what}, got {_describe(value)}")
    return value


def _number(origin: str, path: str, value: Any, unit: str, *, integer: bool = False) -> float | int:
    """A finite number; YAML text such as ``1e9`` (which PyYAML leaves as a string) is accepted."""
    kind = "an integer" if integer else "a number"
    if isinstance(value, bool) or value is None or isinstance(value, (Mapping, list, tuple)):
        _fail(origin, path, f"expected {kind} ({unit}), got {_describe(value)}")
    if isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            _fail(origin, path, f"expected {kind} ({unit}), got {_describe(value)}")
    elif isinstance(value, (int, float)):
        number = value
    else:
        _fail(origin, path, f"expected {kind} ({unit}), got {_describe(value)}")
    if isinstance(number, float) and not math.isfinite(number):
        _fail(origin, path, f"must be a finite number ({unit}), got {_describe(value)}")
    if abs(number) > ABSURD:
        _fail(origin, path, f"{_fmt(number)} {unit} is absurd (limit {_fmt(ABSURD)}); check the unit")
    if integer:
        if isinstance(number, float):
            if not number.is_integer():
                _fail(origin, path, f"expected a whole number ({unit}), got {_fmt(number)}")
            number = int(number)
        return int(number)
    return float(number)


def _positive(origin: str, path: str, value: Any, unit: str, *, integer: bool = False) -> Any:
    number = _number(origin, path, value, unit, integer=integer)
    if number <= 0:
        _fail(origin, path, f"must be > 0 ({unit}), got {_fmt(number)}")
    return number


def _non_negative(origin: str, path: str, value: Any, unit: str, *, integer: bool = False) -> Any:
    number = _number(origin, path, value, unit, integer=integer)
    if number < 0:
        _fail(origin, path, f"must be >= 0 ({unit}), got {_fmt(number)}")
    return number


def _efficiency_value(origin: str, path: str, value: Any) -> float:
    number = _number(origin, path, value, "fraction of peak")
    if not 0 < number <= EFFICIENCY_MAX:
        _fail(
            origin,
            path,
            f"must be > 0 and <= {_fmt(EFFICIENCY_MAX)} (fraction of peak), got {_fmt(number)}",
        )
    return number


def _text(origin: str, path: str, value: Any, *, single_line: bool = False) -> str:
    if not isinstance(value, str):
        _fail(origin, path, f"expected text, got {_describe(value)}")
    if not value.strip():
        _fail(origin, path, "must not be empty")
    if single_line and "\n" in value.strip():
        _fail(origin, path, "must be a single line")
    return value.strip() if single_line else value


def _choice(origin: str, path: str, value: Any, choices: tuple, what: str) -> Any:
    """``value`` must be one of ``choices``; text gets a did-you-mean."""
    if value in choices and not isinstance(value, bool):
        return value
    shown = ", ".join(str(c) for c in choices)
    if isinstance(value, str):
        match = difflib.get_close_matches(value, [str(c) for c in choices], n=1, cutoff=0.6)
        hint = f"did you mean '{match[0]}'? " if match else ""
        _fail(origin, path, f"unknown {what} '{value}' ({hint}allowed: {shown})")
    _fail(origin, path, f"must be one of {shown}, got {_describe(value)}")


def _precision_map(
    origin: str, path: str, value: Any, unit: str, *, allow_zero: bool = False
) -> FrozenMap:
    data = _mapping(origin, path, value, f"precision -> {unit}")
    if not data:
        _fail(origin, path, f"must list at least one precision ({', '.join(PRECISIONS)})")
    out: dict[str, float] = {}
    for key in data:
        if not isinstance(key, str) or key not in PRECISIONS:
            _choice(origin, path, key, PRECISIONS, "precision")
    for precision in PRECISIONS:  # canonical order
        if precision in data:
            check = _non_negative if allow_zero else _positive
            out[precision] = check(origin, _join(path, precision), data[precision], unit)
    return FrozenMap(out)


def _check_notes(origin: str, value: Any) -> FrozenMap:
    data = _mapping(origin, "notes", value, "key -> text")
    allowed = tuple(k for k in _TOP_KEYS if k != "notes")
    out: dict[str, str] = {}
    for key, text in data.items():
        if not isinstance(key, str) or not key.strip():
            _fail(
                origin,
                "notes",
                f"key {key!r} must be the name of a profile key, such as 'mac_units.int8'",
            )
        head = key.split(".", 1)[0]
        if head not in allowed:
            raise UserError(
                f"{origin}: notes: '{key}' does not name a profile key{_suggest(head, allowed)}"
            )
        out[key] = _text(origin, f"notes.{key}", text)
    return FrozenMap(out)


def profile_from_dict(data: Any, origin: str = "<profile>") -> HardwareProfile:
    """Validate parsed profile data and build a :class:`HardwareProfile`.

    Checks, in order: the top level is a mapping; no unknown keys at any level (each named,
    with a did-you-mean); required keys present; ``schema_version`` is 1; types (numbers may
    be ints, floats or numeric text such as ``1e9``); signs and ranges. The first problem
    raises :class:`UserError` with one line ``<origin>: <key path>: <problem>``.
    """
    if not isinstance(data, Mapping):
        raise UserError(
            f"{origin}: expected a mapping of profile keys (schema_version, name, source, ...) "
            f"at the top level, got {_describe(data)}"
        )
    _check_keys(origin, data, tuple(_TOP_KEYS), "", _REQUIRED_KEYS)

    version = data["schema_version"]
    if (
        isinstance(version, bool)
        or _number(origin, "schema_version", version, "integer") != SCHEMA_VERSION
    ):
        _fail(
            origin,
            "schema_version",
            f"unsupported version {_describe(version)} "
            f"(this estimate reads version {SCHEMA_VERSION})",
        )

    fields: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "name": _text(origin, "name", data["name"], single_line=True),
        "source": _text(origin, "source", data["source"]),
        "clock_hz": _positive(origin, "clock_hz", data["clock_hz"], "Hz"),
        "mac_units": _precision_map(origin, "mac_units", data["mac_units"], "MACs per cycle"),
        "sram_bytes": _non_negative(
            origin, "sram_bytes", data["sram_bytes"], "bytes", integer=True
        ),
        "dram_bandwidth_bytes_per_s": _positive(
            origin,
            "dram_bandwidth_bytes_per_s",
            data["dram_bandwidth_bytes_per_s"],
            "bytes per second",
        ),
    }
    if "kind" in data:
        fields["kind"] = _text(origin, "kind", data["kind"], single_line=True)
    if "description" in data:
        fields["description"] = _text(origin, "description", data["description"])
    if "vector_ops_per_cycle" in data:
        fields["vector_ops_per_cycle"] = _precision_map(
            origin,
            "vector_ops_per_cycle",
            data["vector_ops_per_cycle"],
            "element operations per cycle",
        )
    for key in ("weight_fetch_bandwidth_bytes_per_s",):
        if key in data:
            fields[key] = _positive(origin, key, data[key], "bytes per second")
    for key in ("split_min_macs", "split_min_ops"):
        if key in data:
            fields[key] = float(_non_negative(origin, key, data[key], "MACs or element ops per pass"))
    if "onchip_bandwidth_bytes_per_s" in data:
        fields["onchip_bandwidth_bytes_per_s"] = _positive(
            origin, "onchip_bandwidth_bytes_per_s", data["onchip_bandwidth_bytes_per_s"], "bytes per second"
        )
    if "dram_bytes" in data:
        fields["dram_bytes"] = _positive(
            origin, "dram_bytes", data["dram_bytes"], "bytes", integer=True
        )
    if "layer_overhead_s" in data:
        overhead = _non_negative(
            origin, "layer_overhead_s", data["layer_overhead_s"], "seconds per layer"
        )
        if overhead >= LAYER_OVERHEAD_MAX_S:
            _fail(
                origin,
                "layer_overhead_s",
                f"must be < {_fmt(LAYER_OVERHEAD_MAX_S)} (seconds per layer; 5 us is 5e-6), "
                f"got {_fmt(overhead)}",
            )
        fields["layer_overhead_s"] = overhead
    if "fusion" in data:
        from . import kernels

        rules = data["fusion"]
        if not isinstance(rules, list):
            _fail(origin, "fusion", f"expected a list of fusion rules (known names: {', '.join(kernels.RULES)})")
        fields["fusion"] = tuple(kernels.parse_rule(f"{origin}: fusion[{k}]", r) for k, r in enumerate(rules))
    if "layout" in data:
        from . import kernels

        fields["layout"] = _choice(origin, "layout", data["layout"], kernels.LAYOUTS, "layout")
    if "layout_block" in data:
        if "layout" not in data:
            _fail(origin, "layout_block", "is set but `layout` is not (a block of which layout?)")
        fields["layout_block"] = _positive(origin, "layout_block", data["layout_block"], "channels", integer=True)
    if "weight_residency" in data:
        fields["weight_residency"] = _choice(origin, "weight_residency", data["weight_residency"], WEIGHT_RESIDENCY,
                                             "weight residency")
    if "kernel_samples" in data:
        fields["kernel_samples"] = _text(origin, "kernel_samples", data["kernel_samples"], single_line=True)
    for key, unit in (("kernel_overhead_in_graph_s", "seconds per kernel"), ("grouped_call_s", "seconds per kernel call")):
        if key in data:
            v = _non_negative(origin, key, data[key], unit)
            if v >= LAYER_OVERHEAD_MAX_S:
                _fail(origin, key, f"must be < {_fmt(LAYER_OVERHEAD_MAX_S)} ({unit}), got {_fmt(v)}")
            fields[key] = float(v)
    if "layer_overhead_by_class_s" in data:
        by = _mapping(origin, "layer_overhead_by_class_s", data["layer_overhead_by_class_s"],
                      "layer class -> seconds per layer")
        out_by: dict[str, float] = {}
        for cls in by:
            _choice(origin, "layer_overhead_by_class_s", cls, LAYER_CLASSES, "layer class")
            key = f"layer_overhead_by_class_s.{cls}"
            v = _non_negative(origin, key, by[cls], "seconds per layer")
            if v >= LAYER_OVERHEAD_MAX_S:
                _fail(origin, key, f"must be < {_fmt(LAYER_OVERHEAD_MAX_S)} (seconds per layer), got {_fmt(v)}")
            out_by[cls] = float(v)
        fields["layer_overhead_by_class_s"] = FrozenMap(out_by)

    if "mac_array" in data:
        array = _mapping(origin, "mac_array", data["mac_array"], "rows and cols")
        _check_keys(origin, array, _MAC_ARRAY_KEYS, "mac_array", _MAC_ARRAY_KEYS)
        mac_array = MacArray(
            rows=_positive(origin, "mac_array.rows", array["rows"], "MAC rows", integer=True),
            cols=_positive(origin, "mac_array.cols", array["cols"], "MAC columns", integer=True),
        )
        widest = max(fields["mac_units"].values())
        if mac_array.macs > widest:
            _fail(
                origin,
                "mac_array",
                f"rows x cols = {mac_array.macs} MACs exceeds the largest mac_units entry "
                f"({_fmt(widest)})",
            )
        fields["mac_array"] = mac_array

    if "parallel" in data:
        par = _mapping(origin, "parallel", data["parallel"], "units, tile_m and tile_n")
        _check_keys(origin, par, _PARALLEL_KEYS, "parallel", _PARALLEL_KEYS)
        fields["parallel"] = Parallel(
            units=_positive(origin, "parallel.units", par["units"], "parallel units", integer=True),
            tile_m=_positive(origin, "parallel.tile_m", par["tile_m"], "output rows per tile", integer=True),
            tile_n=_positive(origin, "parallel.tile_n", par["tile_n"], "output columns per tile", integer=True))

    if "efficiency" in data:
        eff = _mapping(origin, "efficiency", data["efficiency"], "compute, memory, by_layer_class")
        _check_keys(origin, eff, _EFFICIENCY_KEYS, "efficiency")
        by_class: dict[str, float] = {}
        if "by_layer_class" in eff:
            classes = _mapping(
                origin,
                "efficiency.by_layer_class",
                eff["by_layer_class"],
                "layer class -> efficiency",
            )
            for key in classes:
                if not isinstance(key, str) or key not in LAYER_CLASSES:
                    _choice(origin, "efficiency.by_layer_class", key, LAYER_CLASSES, "layer class")
            for cls in LAYER_CLASSES:
                if cls in classes:
                    by_class[cls] = _efficiency_value(
                        origin, f"efficiency.by_layer_class.{cls}", classes[cls]
                    )
        fields["efficiency"] = Efficiency(
            compute=_efficiency_value(origin, "efficiency.compute", eff["compute"])
            if "compute" in eff
            else 1.0,
            memory=_efficiency_value(origin, "efficiency.memory", eff["memory"])
            if "memory" in eff
            else 1.0,
            by_layer_class=FrozenMap(by_class),
        )

    if "winograd" in data:
        wino = _mapping(origin, "winograd", data["winograd"], "tile and weights")
        _check_keys(origin, wino, _WINOGRAD_KEYS, "winograd", _WINOGRAD_KEYS)
        tile = _number(
            origin, "winograd.tile", wino["tile"], "output tile size, 2 or 4", integer=True
        )
        fields["winograd"] = Winograd(
            tile=_choice(origin, "winograd.tile", tile, WINOGRAD_TILES, "tile"),
            weights=_choice(
                origin, "winograd.weights", wino["weights"], WINOGRAD_WEIGHTS, "weights mode"
            ),
        )

    if "energy" in data:
        energy = _mapping(origin, "energy", data["energy"], "per_mac_j, per_dram_byte_j")
        _check_keys(origin, energy, _ENERGY_KEYS, "energy")
        if not energy:
            _fail(origin, "energy", "give per_mac_j and/or per_dram_byte_j, or leave energy out")
        fields["energy"] = Energy(
            per_mac_j=_precision_map(
                origin, "energy.per_mac_j", energy["per_mac_j"], "joules per MAC", allow_zero=True
            )
            if "per_mac_j" in energy
            else FrozenMap(),
            per_dram_byte_j=_non_negative(
                origin, "energy.per_dram_byte_j", energy["per_dram_byte_j"], "joules per byte"
            )
            if "per_dram_byte_j" in energy
            else None,
        )

    if "notes" in data:
        fields["notes"] = _check_notes(origin, data["notes"])

    return HardwareProfile(origin=origin, **fields)


# --------------------------------------------------------------------------------------------
# Back to plain data
# --------------------------------------------------------------------------------------------


def _count_out(value: float) -> int | float:
    """MAC/op counts print as integers when they are whole."""
    return int(value) if float(value).is_integer() and abs(value) < 2**53 else float(value)


def profile_to_dict(p: HardwareProfile) -> dict[str, Any]:
    """Plain data (dicts, lists, numbers, text) in schema key order; optional keys left out
    when unset, defaults written out. ``profile_from_dict(profile_to_dict(p)) == p``."""
    out: dict[str, Any] = {"schema_version": p.schema_version, "name": p.name}
    if p.kind is not None:
        out["kind"] = p.kind
    out["source"] = p.source
    if p.description:
        out["description"] = p.description
    out["clock_hz"] = float(p.clock_hz)
    out["mac_units"] = {k: _count_out(v) for k, v in p.mac_units.items()}
    if p.vector_ops_per_cycle is not None:
        out["vector_ops_per_cycle"] = {k: _count_out(v) for k, v in p.vector_ops_per_cycle.items()}
    if p.mac_array is not None:
        out["mac_array"] = {"rows": p.mac_array.rows, "cols": p.mac_array.cols}
    if p.parallel is not None:
        out["parallel"] = {"units": p.parallel.units, "tile_m": p.parallel.tile_m, "tile_n": p.parallel.tile_n}
    out["sram_bytes"] = int(p.sram_bytes)
    out["dram_bandwidth_bytes_per_s"] = float(p.dram_bandwidth_bytes_per_s)
    if p.onchip_bandwidth_bytes_per_s is not None:
        out["onchip_bandwidth_bytes_per_s"] = float(p.onchip_bandwidth_bytes_per_s)
    for key in ("weight_fetch_bandwidth_bytes_per_s", "split_min_macs", "split_min_ops"):
        if getattr(p, key) is not None:
            out[key] = float(getattr(p, key))
    if p.dram_bytes is not None:
        out["dram_bytes"] = int(p.dram_bytes)
    out["layer_overhead_s"] = float(p.layer_overhead_s)
    if p.layer_overhead_by_class_s:
        out["layer_overhead_by_class_s"] = {k: float(v) for k, v in p.layer_overhead_by_class_s.items()}
    if p.kernel_overhead_in_graph_s:
        out["kernel_overhead_in_graph_s"] = float(p.kernel_overhead_in_graph_s)
    if p.grouped_call_s:
        out["grouped_call_s"] = float(p.grouped_call_s)
    eff: dict[str, Any] = {
        "compute": float(p.efficiency.compute),
        "memory": float(p.efficiency.memory),
    }
    if p.efficiency.by_layer_class:
        eff["by_layer_class"] = {k: float(v) for k, v in p.efficiency.by_layer_class.items()}
    out["efficiency"] = eff
    if p.winograd is not None:
        out["winograd"] = {"tile": p.winograd.tile, "weights": p.winograd.weights}
    if p.fusion is not None:
        from . import kernels

        out["fusion"] = [kernels.rule_to_data(r) for r in p.fusion]
    if p.layout is not None:
        out["layout"] = p.layout
    if p.layout_block is not None:
        out["layout_block"] = p.layout_block
    if p.weight_residency is not None:
        out["weight_residency"] = p.weight_residency
    if p.kernel_samples is not None:
        out["kernel_samples"] = p.kernel_samples
    if p.energy is not None:
        energy: dict[str, Any] = {}
        if p.energy.per_mac_j:
            energy["per_mac_j"] = {k: float(v) for k, v in p.energy.per_mac_j.items()}
        if p.energy.per_dram_byte_j is not None:
            energy["per_dram_byte_j"] = float(p.energy.per_dram_byte_j)
        out["energy"] = energy
    if p.notes:
        out["notes"] = dict(p.notes)
    return out


def _to_plain(value: Any) -> Any:
    """Dataclasses and mappings (as given to with_overrides) to plain dicts."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {
            f.name: _to_plain(getattr(value, f.name))
            for f in dataclasses.fields(value)
            if getattr(value, f.name) is not None and getattr(value, f.name) != FrozenMap()
        }
    if isinstance(value, Mapping):
        return {k: _to_plain(v) for k, v in value.items()}
    return value


def with_overrides(p: HardwareProfile, **changes: Any) -> HardwareProfile:
    """A new profile with some top-level fields replaced, re-validated.

    ``with_overrides(p, sram_bytes=2 * p.sram_bytes)`` answers "what if SRAM were 2x bigger".
    Values replace the whole field (``efficiency={"compute": 0.8}`` resets ``memory`` to its
    default); nested values may be dicts or the dataclasses above; ``None`` removes an
    optional field. The note of an overridden key is replaced by one recording the old value.
    """
    data = profile_to_dict(p)
    label = p.origin or p.name
    allowed = tuple(_TOP_KEYS)
    notes = dict(data.get("notes", {}))
    for key, value in changes.items():
        if key not in allowed:
            raise UserError(f"{label}: cannot override unknown key '{key}'{_suggest(key, allowed)}")
        if key not in _PROVENANCE_KEYS and not (value is None and key not in data):
            old = data.get(key)
            notes = {k: v for k, v in notes.items() if k != key and not k.startswith(key + ".")}
            notes[key] = (
                f"overridden (was {old!r})" if old is not None else "overridden (was unset)"
            )
        if value is None:
            data.pop(key, None)
        else:
            data[key] = _to_plain(value)
    if "notes" in changes:  # given notes replace the old ones, like any other field
        notes = dict(data.get("notes", {}))
    if notes:
        data["notes"] = notes
    else:
        data.pop("notes", None)
    return profile_from_dict(data, origin=f"{label} (overrides: {', '.join(changes) or 'none'})")


# --------------------------------------------------------------------------------------------
# YAML in and out (the only YAML in the project)
# --------------------------------------------------------------------------------------------


_SafeLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml parser when available


class _StrictLoader(_SafeLoader):
    """Safe loader that rejects duplicate keys (PyYAML silently keeps the last one)."""

    def construct_mapping(self, node, deep=False):  # noqa: D401 - PyYAML hook
        seen: set[Any] = set()
        for key_node, _value_node in node.value:
            key = self.construct_object(key_node, deep=deep)
            try:
                duplicate = key in seen
                seen.add(key)
            except TypeError:
                continue  # unhashable key: the base class reports it
            if duplicate:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark
                )
        return super().construct_mapping(node, deep=deep)


_StrictLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _StrictLoader.construct_mapping
)


class _Dumper(yaml.SafeDumper):
    """Writes large and small floats in short scientific form (1.83e+09), readable and exact."""


def _represent_float(dumper: yaml.SafeDumper, value: float):
    if math.isfinite(value) and value != 0 and (abs(value) >= 1e5 or abs(value) < 1e-3):
        for digits in range(1, 18):
            text = f"{value:.{digits}e}"
            if float(text) == value:
                return dumper.represent_scalar("tag:yaml.org,2002:float", text)
    return yaml.SafeDumper.represent_float(dumper, value)


def _represent_str(dumper: yaml.SafeDumper, value: str):
    style = "|" if "\n" in value.strip() else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(float, _represent_float)
_Dumper.add_representer(str, _represent_str)


def _parse_text(text: str, origin: str) -> HardwareProfile:
    if not text.strip():
        raise UserError(f"{origin}: file is empty ({_EXPECTED_TOP})")
    try:
        data = yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - SafeLoader subclass
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = " ".join(str(exc.problem or exc.context or "invalid YAML").split())
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        raise UserError(f"{origin}: invalid YAML{where}: {problem}") from None
    except yaml.YAMLError as exc:
        raise UserError(f"{origin}: invalid YAML: {' '.join(str(exc).split())}") from None
    if data is None:
        raise UserError(f"{origin}: file has no content ({_EXPECTED_TOP})")
    return profile_from_dict(data, origin)


def _read_file(path: Path) -> HardwareProfile:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise UserError(f"{path}: is a directory, not a profile file") from None
    except PermissionError:
        if path.is_dir():
            raise UserError(f"{path}: is a directory, not a profile file") from None
        raise UserError(f"{path}: cannot read (permission denied)") from None
    except UnicodeDecodeError:
        raise UserError(f"{path}: not a UTF-8 text file") from None
    except OSError as exc:
        raise UserError(f"{path}: cannot read ({exc.strerror or exc})") from None
    return _parse_text(text, str(path))


def _shipped_files() -> dict[str, Any]:
    """Shipped profile name (file stem) -> resource, found via importlib.resources."""
    root = resources.files(_SHIPPED_PACKAGE)
    return {
        entry.name.rsplit(".", 1)[0]: entry
        for entry in root.iterdir()
        if entry.name.endswith((".yaml", ".yml")) and entry.is_file()
    }


def shipped_profile_names() -> list[str]:
    """Names of the profiles shipped with the package, sorted."""
    return sorted(_shipped_files())


def _looks_like_path(spec: str) -> bool:
    seps = {"/", os.sep} | ({os.altsep} if os.altsep else set())
    return (
        spec.lower().endswith(_PROFILE_SUFFIXES)
        or any(s in spec for s in seps)
        or spec.startswith(("~", "."))
    )


def load_profile(spec: str | os.PathLike) -> HardwareProfile:
    """Load a profile from a path or by shipped name.

    ``spec`` is a path when it is a ``PathLike``, ends in ``.yaml``/``.yml``/``.json`` or
    contains a path separator; otherwise it is the name of a shipped profile (the file stem in
    ``hwprofiles/``), or, failing that, an existing file of that name.
    """
    is_pathlike = not isinstance(spec, str)
    text = os.fspath(spec)
    if not str(text).strip():
        raise UserError("hardware profile: empty name or path")
    if is_pathlike or _looks_like_path(text):
        return _read_file(Path(text).expanduser())
    shipped = _shipped_files()
    if text in shipped:
        origin = f"{_SHIPPED_PREFIX}{text}"
        return _parse_text(shipped[text].read_text(encoding="utf-8"), origin)
    if Path(text).is_file():
        return _read_file(Path(text))
    names = sorted(shipped)
    match = difflib.get_close_matches(text, names, n=1, cutoff=0.5)
    hint = f"did you mean '{match[0]}'? " if match else ""
    raise UserError(
        f"unknown hardware profile '{text}': not a shipped profile and not a file "
        f"({hint}shipped profiles: {', '.join(names)}; or give a path to a .yaml file)"
    )


def list_profiles() -> list[HardwareProfile]:
    """All shipped profiles, sorted by name."""
    profiles = [load_profile(name) for name in shipped_profile_names()]
    return sorted(profiles, key=lambda p: p.name)


def profile_to_yaml(p: HardwareProfile) -> str:
    """The YAML text that :func:`dump_profile` writes."""
    header = (
        f"# estimate hardware profile, schema_version {p.schema_version}. "
        "Schema: docs/hardware-profiles.md\n"
    )
    body = yaml.dump(
        profile_to_dict(p),
        Dumper=_Dumper,
        sort_keys=False,
        default_flow_style=False,
        allow_unicode=True,
        width=100,
    )
    return header + body


def dump_profile(p: HardwareProfile, path: str | os.PathLike, overwrite: bool = False) -> Path:
    """Write ``p`` as YAML to ``path`` atomically (temp file in the same directory, then
    rename). An existing file is replaced only with ``overwrite=True``; without it the
    no-clobber check and the rename are one atomic step (a hard link) where the filesystem
    allows it. Returns the path written."""
    target = Path(path).expanduser()
    parent = target.parent
    if not parent.is_dir():
        raise UserError(f"{target}: directory {parent} does not exist")
    if target.is_dir():
        raise UserError(f"{target}: is a directory")
    if target.exists() and not overwrite:
        raise UserError(f"{target}: {_EXISTS}")
    text = profile_to_yaml(p)
    try:
        atomic_write_text(target, text, overwrite=overwrite)
    except FileExistsError:
        raise UserError(f"{target}: {_EXISTS}") from None
    except OSError as exc:
        raise UserError(f"{target}: cannot write ({exc.strerror or exc})") from None
    return target
