"""Hardware profiles: shipped files, validation messages, lookup, dump, overrides."""

from __future__ import annotations

import dataclasses
import json
import math
import os
from pathlib import Path

import pytest

from estimator.errors import UserError
from estimator.hardware import (
    LAYER_CLASSES,
    PRECISIONS,
    Efficiency,
    HardwareProfile,
    dump_profile,
    list_profiles,
    load_profile,
    profile_from_dict,
    profile_to_dict,
    shipped_profile_names,
    with_overrides,
)

SHIPPED = ["edge-npu", "edge-tpu", "h100-sxm", "jetson-agx-orin", "jetson-agx-xavier", "rpi4", "xeon-8380", "xeon-8480"]


def minimal(**changes) -> dict:
    """A valid profile as plain data; a value of ... removes the key."""
    data = {
        "schema_version": 1,
        "name": "test-chip",
        "source": "synthetic test profile",
        "clock_hz": 1.0e9,
        "mac_units": {"fp32": 1000, "int8": 4000},
        "sram_bytes": 1024,
        "dram_bandwidth_bytes_per_s": 1.0e9,
    }
    for key, value in changes.items():
        if value is ...:
            data.pop(key, None)
        else:
            data[key] = value
    return data


def write(tmp_path: Path, text: str, name: str = "profile.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def error_of(fn, *args, **kwargs) -> str:
    with pytest.raises(UserError) as info:
        fn(*args, **kwargs)
    message = str(info.value)
    assert "\n" not in message, f"error is not one line: {message!r}"
    return message


def invalid(tmp_path: Path, **changes) -> str:
    """Write minimal(**changes) as a file and return the load error."""
    path = write(tmp_path, json.dumps(minimal(**changes)), "bad.yaml")
    message = error_of(load_profile, str(path))
    assert "bad.yaml" in message
    return message


# --- shipped profiles ------------------------------------------------------------------------


def test_shipped_names():
    assert shipped_profile_names() == SHIPPED
    assert [p.name for p in list_profiles()] == SHIPPED


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_profile_loads_and_round_trips(name, tmp_path):
    p = load_profile(name)
    assert p.name == name  # file stem == name
    assert p.origin == f"shipped:{name}"
    assert p.source.strip() and p.kind
    assert p.precisions and set(p.precisions) <= set(PRECISIONS)
    for precision in p.precisions:
        assert p.peak_macs_per_s(precision) > 0
        assert math.isclose(
            p.ridge_point(precision), p.peak_macs_per_s(precision) / p.dram_bandwidth_bytes_per_s
        )
    # Every derived number has a note: each precision's MAC rate, clock, SRAM and bandwidth.
    for key in ["clock_hz", "sram_bytes", "dram_bandwidth_bytes_per_s"] + [
        f"mac_units.{q}" for q in p.precisions
    ]:
        assert key in p.notes, f"{name}: no note for {key}"
    # Dict round trip and file round trip.
    assert profile_from_dict(profile_to_dict(p), origin="again") == p
    path = dump_profile(p, tmp_path / f"{name}.yaml")
    assert load_profile(str(path)) == p
    assert hash(load_profile(str(path))) == hash(p)


@pytest.mark.parametrize(
    "name, precision, published_ops_per_s, tolerance",
    [
        ("h100-sxm", "fp16", 989.4e12, 0.001),  # dense FP16 tensor TFLOPS
        ("h100-sxm", "bf16", 989.4e12, 0.001),
        ("h100-sxm", "int8", 1978.9e12, 0.001),  # dense INT8 TOPS
        ("h100-sxm", "fp32", 494.7e12, 0.001),  # dense TF32 TFLOPS
        ("jetson-agx-orin", "int8", 170e12 / 2, 0.005),  # 170 sparse INT8 TOPS, dense = half
        ("edge-tpu", "int8", 4e12, 0.03),  # 4 TOPS (64x64 at 500 MHz = 4.096)
        ("xeon-8380", "fp32", 40 * 2 * 16 * 2 * 2.3e9, 1e-9),
        ("xeon-8380", "int8", 40 * 2 * 64 * 2 * 2.3e9, 1e-9),
        ("rpi4", "fp32", 4 * 4 * 2 * 1.5e9, 1e-9),  # 48 GFLOPS
        ("edge-npu", "int8", 4096 * 2 * 1e9, 1e-9),
    ],
)
def test_shipped_headline_rates(name, precision, published_ops_per_s, tolerance):
    """Vendor figures count 2 ops per MAC; the profile must reproduce them."""
    ops = 2 * load_profile(name).peak_macs_per_s(precision)
    assert math.isclose(ops, published_ops_per_s, rel_tol=tolerance)


def test_shipped_memory_figures():
    assert load_profile("h100-sxm").dram_bandwidth_bytes_per_s == 3.35e12
    assert load_profile("h100-sxm").sram_bytes == 50 * 2**20
    assert load_profile("jetson-agx-orin").dram_bandwidth_bytes_per_s == 204.8e9
    assert load_profile("xeon-8380").dram_bandwidth_bytes_per_s == 8 * 25.6e9
    assert load_profile("rpi4").dram_bandwidth_bytes_per_s == 3200e6 * 4
    assert load_profile("edge-npu").dram_bandwidth_bytes_per_s == 4266e6 * 4
    tpu = load_profile("edge-tpu")
    assert tpu.winograd is None and tpu.mac_array is not None and tpu.mac_array.macs == 4096
    npu = load_profile("edge-npu")
    assert npu.winograd is not None and (npu.winograd.tile, npu.winograd.weights) == (
        2,
        "transformed",
    )
    assert "not a real product" in npu.source


# --- validation messages -----------------------------------------------------------------------


def test_typo_key_named_with_suggestion(tmp_path):
    message = invalid(tmp_path, dram_bandwith=1e9, dram_bandwidth_bytes_per_s=...)
    assert "unknown key 'dram_bandwith'" in message
    assert "did you mean 'dram_bandwidth_bytes_per_s'" in message


def test_unknown_key_reported_before_missing_key(tmp_path):
    # The acceptance check's typo: the misspelt key must be named, not just "missing".
    message = invalid(tmp_path, dram_bandwith_bytes_per_s=1e9, dram_bandwidth_bytes_per_s=...)
    assert "dram_bandwith_bytes_per_s" in message and "did you mean" in message


def test_negative_bandwidth_names_key(tmp_path):
    message = invalid(tmp_path, dram_bandwidth_bytes_per_s=-5)
    assert "dram_bandwidth_bytes_per_s: must be > 0" in message and "-5" in message


def test_missing_required_key(tmp_path):
    message = invalid(tmp_path, sram_bytes=...)
    assert "missing required key 'sram_bytes'" in message
    message = invalid(tmp_path, source=..., clock_hz=...)
    assert "'source'" in message and "'clock_hz'" in message


@pytest.mark.parametrize(
    "changes, expected",
    [
        ({"clock_hz": "fast"}, "clock_hz: expected a number (Hz), got 'fast'"),
        ({"clock_hz": True}, "clock_hz: expected a number"),
        ({"clock_hz": None}, "clock_hz: expected a number"),
        ({"clock_hz": 0}, "clock_hz: must be > 0"),
        ({"sram_bytes": 1.5}, "sram_bytes: expected a whole number"),
        ({"sram_bytes": -1}, "sram_bytes: must be >= 0"),
        ({"mac_units": [1000]}, "mac_units: expected a mapping"),
        ({"mac_units": {}}, "mac_units: must list at least one precision"),
        ({"mac_units": {"fp32": -3}}, "mac_units.fp32: must be > 0"),
        ({"name": ""}, "name: must not be empty"),
        ({"name": 7}, "name: expected text"),
        ({"schema_version": 2}, "schema_version: unsupported version 2"),
        ({"efficiency": {"compute": -1}}, "efficiency.compute: must be > 0 and <= 10"),
        ({"efficiency": {"memory": 11}}, "efficiency.memory: must be > 0 and <= 10"),
        (
            {"efficiency": {"by_layer_class": {"gemm": 0}}},
            "efficiency.by_layer_class.gemm: must be > 0",
        ),
        (
            {"efficiency": {"by_layer_class": {"conv3": 0.5}}},
            "unknown layer class 'conv3' (did you mean 'conv3x3'?",
        ),
        (
            {"winograd": {"tile": 3, "weights": "transformed"}},
            "winograd.tile: must be one of 2, 4, got 3",
        ),
        ({"winograd": {"tile": 2, "weights": "transfromed"}}, "did you mean 'transformed'?"),
        ({"winograd": {"tile": 2}}, "missing required key 'winograd.weights'"),
        ({"mac_array": {"rows": 64, "cols": 0}}, "mac_array.cols: must be > 0"),
        ({"mac_array": {"rows": 128, "cols": 64}}, "exceeds the largest mac_units entry"),
        ({"layer_overhead_s": 5}, "layer_overhead_s: must be < 1"),
        ({"energy": {"per_dram_byte_j": -1}}, "energy.per_dram_byte_j: must be >= 0"),
        ({"notes": {"dram_bandwith": "x"}}, "did you mean 'dram_bandwidth_bytes_per_s'"),
        ({"vector_ops_per_cycle": {"int4": 8}}, "vector_ops_per_cycle: unknown precision 'int4'"),
    ],
)
def test_type_sign_and_range_errors(tmp_path, changes, expected):
    message = invalid(tmp_path, **changes)
    assert expected in message, message


def test_unknown_precision(tmp_path):
    message = invalid(tmp_path, mac_units={"fp32": 1000, "fp8": 8000})
    assert "mac_units: unknown precision 'fp8'" in message
    assert "fp32, fp16, bf16, int8" in message


def test_nested_unknown_key(tmp_path):
    message = invalid(tmp_path, efficiency={"compte": 0.5})
    assert "unknown key 'efficiency.compte'" in message
    assert "did you mean 'efficiency.compute'" in message
    message = invalid(tmp_path, mac_array={"rows": 8, "colls": 8})
    assert "unknown key 'mac_array.colls'" in message


def test_numbers_as_yaml_text_and_ints(tmp_path):
    # PyYAML reads 1e9 and 2.5e9 (no sign in the exponent) as strings: they are accepted.
    text = (
        "schema_version: 1\nname: t\nsource: s\nclock_hz: 2.5e9\n"
        "mac_units: {int8: 64}\nsram_bytes: 4e6\ndram_bandwidth_bytes_per_s: 1e9\n"
    )
    p = load_profile(str(write(tmp_path, text)))
    assert p.clock_hz == 2.5e9 and p.sram_bytes == 4_000_000 and isinstance(p.sram_bytes, int)
    assert p.dram_bandwidth_bytes_per_s == 1e9


def test_json_content_is_accepted(tmp_path):
    path = write(tmp_path, json.dumps(minimal()), "as-json.yaml")
    assert load_profile(str(path)).name == "test-chip"


def test_defaults(tmp_path):
    p = profile_from_dict(minimal(), "t.yaml")
    assert p.layer_overhead_s == 0.0
    assert p.efficiency == Efficiency(compute=1.0, memory=1.0)
    assert p.winograd is None and p.mac_array is None and p.energy is None
    assert p.vector_ops_per_s("fp32") is None  # absent: non-MAC work costs memory traffic only


# --- file problems ---------------------------------------------------------------------------


def test_missing_file(tmp_path):
    message = error_of(load_profile, str(tmp_path / "none.yaml"))
    assert "none.yaml" in message and "no such file" in message


def test_directory(tmp_path):
    folder = tmp_path / "dir.yaml"
    folder.mkdir()
    assert "is a directory" in error_of(load_profile, str(folder))


def test_empty_file(tmp_path):
    path = write(tmp_path, "")
    assert "profile.yaml: file is empty" in error_of(load_profile, str(path))
    path = write(tmp_path, "# only a comment\n")
    assert "profile.yaml" in error_of(load_profile, str(path))


def test_not_a_mapping(tmp_path):
    path = write(tmp_path, "- a\n- b\n")
    message = error_of(load_profile, str(path))
    assert "profile.yaml: expected a mapping" in message and "a list" in message


def test_yaml_syntax_error_says_line(tmp_path):
    path = write(tmp_path, "schema_version: 1\nname: x\nmac_units: {fp32: 1\nsram_bytes: 3\n")
    message = error_of(load_profile, str(path))
    assert "profile.yaml: invalid YAML at line" in message


def test_duplicate_key_rejected(tmp_path):
    text = json.dumps(minimal())[:-1] + ', "clock_hz": 2e9}'
    message = error_of(load_profile, str(write(tmp_path, text)))
    assert "duplicate key 'clock_hz'" in message and "line 1" in message


def test_not_utf8(tmp_path):
    path = tmp_path / "binary.yaml"
    path.write_bytes(b"\xff\xfe\x00garbage")
    assert "binary.yaml" in error_of(load_profile, str(path))


# --- lookup ----------------------------------------------------------------------------------


def test_lookup_by_name_and_by_path(tmp_path):
    assert load_profile("rpi4").name == "rpi4"
    path = write(tmp_path, json.dumps(minimal(name="mine")), "mine.yml")
    assert load_profile(path).name == "mine"  # PathLike
    assert load_profile(str(path)).origin == str(path)


def test_unknown_name_lists_shipped(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    message = error_of(load_profile, "h100")
    assert "unknown hardware profile 'h100'" in message
    assert "did you mean 'h100-sxm'" in message
    for name in SHIPPED:
        assert name in message


def test_bare_file_name_without_suffix(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write(tmp_path, json.dumps(minimal(name="local")), "mychip")
    assert load_profile("mychip").name == "local"


# --- dump ------------------------------------------------------------------------------------


def test_dump_refuses_to_overwrite(tmp_path):
    p = load_profile("edge-npu")
    path = tmp_path / "out.yaml"
    path.write_text("keep me", encoding="utf-8")
    message = error_of(dump_profile, p, path)
    assert "out.yaml" in message and "already exists" in message
    assert path.read_text(encoding="utf-8") == "keep me"
    dump_profile(p, path, overwrite=True)
    assert load_profile(str(path)) == p
    assert sorted(os.listdir(tmp_path)) == ["out.yaml"]  # no temp file left behind


def test_dump_into_missing_directory(tmp_path):
    message = error_of(dump_profile, load_profile("rpi4"), tmp_path / "nope" / "x.yaml")
    assert "does not exist" in message


# --- overrides and derived values ------------------------------------------------------------


def test_with_overrides_replaces_and_revalidates():
    p = load_profile("h100-sxm")
    bigger = with_overrides(p, sram_bytes=2 * p.sram_bytes)
    assert bigger.sram_bytes == 2 * p.sram_bytes and bigger.mac_units == p.mac_units
    assert p.sram_bytes == 50 * 2**20  # the original is untouched
    assert "overridden" in bigger.notes["sram_bytes"]
    assert bigger != p
    message = error_of(with_overrides, p, dram_bandwidth_bytes_per_s=-1)
    assert "dram_bandwidth_bytes_per_s: must be > 0" in message
    message = error_of(with_overrides, p, sram=1)
    assert "unknown key 'sram'" in message
    faster = with_overrides(
        p, dram_bandwidth_bytes_per_s="6.7e12", efficiency=Efficiency(compute=0.5)
    )
    assert faster.dram_bandwidth_bytes_per_s == 6.7e12 and faster.efficiency.compute == 0.5
    assert with_overrides(load_profile("edge-npu"), winograd=None).winograd is None
    assert "required" in error_of(with_overrides, p, source=None)


def test_peak_ridge_and_efficiency():
    p = profile_from_dict(
        minimal(
            vector_ops_per_cycle={"fp32": 10},
            efficiency={"compute": 0.5, "by_layer_class": {"depthwise": 0.1}},
        ),
        "t.yaml",
    )
    assert p.peak_macs_per_s("int8") == 4000 * 1e9
    assert p.ridge_point("fp32") == 1000 * 1e9 / 1e9
    assert p.vector_ops_per_s("fp32") == 10e9
    assert p.vector_ops_per_s("int8") == 10e9  # missing precision: slowest listed rate
    assert p.efficiency.compute_for("depthwise") == 0.1
    assert p.efficiency.compute_for("gemm") == 0.5
    assert set(LAYER_CLASSES) >= {"conv3x3", "depthwise", "gemm"}
    with pytest.raises(ValueError):
        p.efficiency.compute_for("nonsense")
    message = error_of(p.peak_macs_per_s, "bf16")
    assert "bf16" in message and "fp32, int8" in message


def test_profile_is_frozen_and_hashable():
    p = load_profile("rpi4")
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.clock_hz = 1.0  # type: ignore[misc]
    with pytest.raises(TypeError):
        p.mac_units["fp32"] = 1  # type: ignore[index]
    assert len({p, load_profile("rpi4")}) == 1
    assert isinstance(p, HardwareProfile)


def test_only_hardware_module_imports_yaml():
    """Design rule: one module of the package reads YAML."""
    package = Path(__file__).resolve().parents[1] / "estimator"
    offenders = [
        str(path.relative_to(package))
        for path in package.rglob("*.py")
        if path.name != "hardware.py" and "import yaml" in path.read_text(encoding="utf-8")
    ]
    assert offenders == []


def test_absurd_number_is_rejected(tmp_path):
    import pytest as _pytest

    from estimator.errors import UserError as _UE
    from estimator.hardware import profile_from_dict as _pfd

    d = {"schema_version": 1, "name": "x", "source": "s", "clock_hz": 1e9, "mac_units": {"int8": 1},
         "sram_bytes": 1e30, "dram_bandwidth_bytes_per_s": 1e9}
    with _pytest.raises(_UE, match="sram_bytes.*absurd"):
        _pfd(d, "x.yaml")


def test_layout_block_is_the_runtimes_block_not_the_mac_columns():
    """`layout_block` (what detect reads from the CPU flags) sets the layout's block even when
    mac_array.cols was halved to fit a low measured MAC rate; without it the columns stand in."""
    arr = {"rows": 1, "cols": 8}
    p = profile_from_dict(minimal(layout="nchwc", layout_block=16, mac_array=arr), "t.yaml")
    assert p.layout_spec() == ("nchwc", 16)
    assert profile_from_dict(profile_to_dict(p), "t.yaml") == p
    assert profile_from_dict(minimal(layout="nchwc", mac_array=arr), "t.yaml").layout_spec() == ("nchwc", 8)
    assert profile_from_dict(minimal(layout="nchwc"), "t.yaml").layout_spec() == ("nchwc", 16)
    assert "layout_block" in error_of(profile_from_dict, minimal(layout_block=16), "t.yaml")
    assert "layout_block" in error_of(profile_from_dict, minimal(layout="nchwc", layout_block=0), "t.yaml")
