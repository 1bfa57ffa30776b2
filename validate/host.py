"""Facts about the host and its load: CPU model, cores, SIMD flags, caches, memory, load.

Everything here reads Linux /proc and /sys when present and degrades to ``None`` elsewhere.
"""

from __future__ import annotations

import os
import platform
import resource
import socket
import sys
import time
from pathlib import Path

#: /proc/cpuinfo flags worth recording: they decide which kernels onnxruntime's MLAS picks.
SIMD_FLAGS = (
    "sse4_1", "sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512dq",
    "avx512vl", "avx512cd", "avx512_vnni", "avx_vnni", "avx512_bf16", "avx512_fp16",
    "amx_tile", "amx_int8", "amx_bf16", "amx_fp16",
    # Arm (Features line)
    "neon", "asimd", "asimdhp", "asimddp", "sve", "sve2", "i8mm", "bf16", "fphp",
)


def _read(path: str) -> str | None:
    try:
        return Path(path).read_text()
    except (OSError, UnicodeDecodeError):
        return None


def cpu_info() -> dict:
    """CPU model, logical/physical/usable cores, SIMD flags present."""
    text = _read("/proc/cpuinfo") or ""
    model = None
    flags: set[str] = set()
    cores = set()
    phys_id = core_id = None
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key, value = key.strip(), value.strip()
        if key in ("model name", "Model", "Processor", "cpu model") and model is None and value:
            model = value
        elif key in ("flags", "Features"):
            flags.update(value.split())
        elif key == "physical id":
            phys_id = value
        elif key == "core id":
            core_id = value
            cores.add((phys_id, core_id))
    if model is None:
        model = platform.processor() or platform.machine()
    try:
        usable = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        usable = os.cpu_count()
    return {
        "model": model,
        "arch": platform.machine(),
        "logical_cores": os.cpu_count(),
        "physical_cores": len(cores) or None,
        "usable_cores": usable,
        "simd_flags": sorted(f for f in SIMD_FLAGS if f in flags),
    }


def cache_info() -> list[dict]:
    """Caches of cpu0 from /sys/devices/system/cpu/cpu0/cache (level, type, size, sharing)."""
    base = Path("/sys/devices/system/cpu/cpu0/cache")
    out = []
    if not base.is_dir():
        return out
    for d in sorted(base.glob("index*")):
        def rd(name: str) -> str | None:
            v = _read(str(d / name))
            return v.strip() if v else None
        size = rd("size")
        size_bytes = None
        if size:
            mult = {"K": 1024, "M": 1024 ** 2, "G": 1024 ** 3}.get(size[-1], 1)
            try:
                size_bytes = int(size.rstrip("KMG")) * mult
            except ValueError:
                pass
        out.append({"level": int(rd("level") or 0), "type": rd("type"), "size_bytes": size_bytes,
                    "shared_cpu_list": rd("shared_cpu_list")})
    return out


def memory_total_bytes() -> int | None:
    for line in (_read("/proc/meminfo") or "").splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) * 1024
    return None


def idle_wake(root: str = "/") -> dict:
    """How an idle CPU waits (Linux cpuidle): {"driver", "governor", "halt_poll_ns"} for what the
    kernel exposes. On a virtual machine with the haltpoll driver and guest halt polling off
    (guest_halt_poll_ns 0) an idle vCPU halts at once, so every wake of a sleeping thread (onnxruntime's
    pool with spinning off) goes through the hypervisor, and its latency follows the other tenants'
    load (docs/calibration.md)."""
    base = Path(root)
    out: dict = {}
    for key, rel in (("driver", "sys/devices/system/cpu/cpuidle/current_driver"),
                     ("governor", "sys/devices/system/cpu/cpuidle/current_governor"),
                     ("governor", "sys/devices/system/cpu/cpuidle/current_governor_ro"),
                     ("halt_poll_ns", "sys/module/haltpoll/parameters/guest_halt_poll_ns")):
        text = (_read(str(base / rel)) or "").strip()
        if text and key not in out:
            out[key] = text
            if key == "halt_poll_ns":
                try:
                    out[key] = int(text)
                except ValueError:
                    pass
    return out


def idle_wake_note(info: dict) -> str | None:
    """One line for a profile's notes when idle_wake() says thread wakes are slow and variable."""
    # guest_halt_poll_ns belongs to the haltpoll governor: with another governor it says nothing
    if info.get("driver") == "haltpoll" and info.get("governor") in (None, "haltpoll") and info.get("halt_poll_ns") == 0:
        return ("cpuidle haltpoll with guest halt polling off (guest_halt_poll_ns 0): an idle vCPU halts at once, so "
                "every wake of a sleeping onnxruntime pool thread goes through the hypervisor and small kernels' times "
                "move with the other tenants' load (docs/calibration.md)")
    return None


def host_info() -> dict:
    """The ``host`` object of the results schema."""
    return {
        "hostname": socket.gethostname(),
        "cpu": cpu_info(),
        "caches": cache_info(),
        "memory_bytes": memory_total_bytes(),
        "os": platform.platform(),
        "kernel": platform.release(),
        "python": sys.version.split()[0],
    }


# ---------------------------------------------------------------------------------------------
# Load and memory sampling


def cpu_times() -> tuple[float, float] | None:
    """(busy, total) jiffies of all CPUs from /proc/stat; None if unavailable."""
    text = _read("/proc/stat")
    if not text:
        return None
    fields = [float(x) for x in text.splitlines()[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0.0)  # idle + iowait
    total = sum(fields[:8])  # user nice system idle iowait irq softirq steal (guest counted in user)
    return total - idle, total


def busy_percent(start: tuple[float, float] | None, end: tuple[float, float] | None) -> float | None:
    if start is None or end is None or end[1] <= start[1]:
        return None
    return 100.0 * (end[0] - start[0]) / (end[1] - start[1])


def sample_busy_percent(seconds: float = 0.3) -> float | None:
    """Host CPU busy-% measured over a short idle window (before a run starts)."""
    a = cpu_times()
    time.sleep(seconds)
    return busy_percent(a, cpu_times())


def loadavg() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def process_cpu_s() -> float:
    t = os.times()
    return t.user + t.system


def peak_rss_bytes() -> int:
    """Peak resident set size of this process: VmHWM from /proc/self/status, else ru_maxrss."""
    for line in (_read("/proc/self/status") or "").splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(r) if sys.platform == "darwin" else int(r) * 1024


def current_rss_bytes() -> int | None:
    for line in (_read("/proc/self/status") or "").splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return None


def reset_peak_rss() -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0: write 5 to /proc/self/clear_refs)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False
