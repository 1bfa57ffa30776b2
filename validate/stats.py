"""Latency statistics for the validation runner.

Percentiles use the **nearest-rank** method (the one MLPerf LoadGen uses): for ``n`` sorted
samples ``x[0] <= ... <= x[n-1]`` the p-th percentile is ``x[ceil(p/100 * n) - 1]`` (``x[0]``
for p = 0). It always returns a measured sample, never an interpolated value, so p99 of 10
samples is simply the maximum. A p99 from fewer than 662 samples is only an estimate (MLPerf's
minimum query count for a 99th-percentile bound at 99% confidence); see ``percentile_note``.
"""

from __future__ import annotations

import math
from typing import Sequence

#: Percentiles reported for every configuration.
PERCENTILES = (50, 90, 95, 99)

#: MLPerf's minimum sample count for a p99 (99% confidence, 0.5% margin) and for a p90.
MIN_SAMPLES_P99 = 662
MIN_SAMPLES_P90 = 64

#: A configuration whose latency coefficient of variation exceeds this is flagged as noisy.
HIGH_CV = 0.10


def percentile_nearest_rank(sorted_values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile: ``x[ceil(p/100 * n) - 1]`` of the ascending ``sorted_values``."""
    n = len(sorted_values)
    if n == 0:
        raise ValueError("percentile of no samples")
    if not 0 <= p <= 100:
        raise ValueError(f"percentile {p} outside [0, 100]")
    rank = max(1, math.ceil(p / 100.0 * n - 1e-9))
    return float(sorted_values[min(rank, n) - 1])


def latency_summary(samples_s: Sequence[float]) -> dict:
    """min, mean, std (population, ddof=0), p50/p90/p95/p99 (nearest rank), max, in seconds."""
    xs = sorted(float(x) for x in samples_s)
    n = len(xs)
    if n == 0:
        raise ValueError("no latency samples")
    mean = sum(xs) / n
    var = sum((x - mean) ** 2 for x in xs) / n
    out = {"min": xs[0], "mean": mean, "std": math.sqrt(var)}
    for p in PERCENTILES:
        out[f"p{p}"] = percentile_nearest_rank(xs, p)
    out["max"] = xs[-1]
    return out


def coefficient_of_variation(samples_s: Sequence[float]) -> float:
    """std / mean (population std); 0 for fewer than two samples."""
    xs = [float(x) for x in samples_s]
    if len(xs) < 2:
        return 0.0
    mean = sum(xs) / len(xs)
    if mean <= 0:
        return 0.0
    return math.sqrt(sum((x - mean) ** 2 for x in xs) / len(xs)) / mean


def percentile_note(n: int) -> str | None:
    """A caveat for small sample counts, or None when p99 is backed by enough samples."""
    if n >= MIN_SAMPLES_P99:
        return None
    if n >= MIN_SAMPLES_P90:
        return f"{n} samples: p99 is an estimate (MLPerf needs >= {MIN_SAMPLES_P99} for p99)"
    return (f"{n} samples: p90/p95/p99 are estimates (MLPerf needs >= {MIN_SAMPLES_P90} for p90, "
            f">= {MIN_SAMPLES_P99} for p99)")
