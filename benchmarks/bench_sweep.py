"""Design-space sweep throughput: hardware configurations per second for ResNet-50.

    python3 benchmarks/bench_sweep.py [--points 100] [--repeat 5]

Baseline measured in the same run: predicting the same configurations one profile at a time
(a Python loop over profiles, each a full roofline.predict). The sweep evaluates the whole
grid (points x points over sram_bytes and dram_bandwidth_bytes_per_s) as array arithmetic,
in cache-sized chunks of configurations (roofline.evaluate_summary), as `estimate sweep` does. MAESTRO (a C++ DSE tool) reports 0.17 M designs/s in its paper;
that figure is quoted, not measured here. Medians of --repeat runs; load recorded.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import numpy as np

from estimator import api, roofline
from estimator.hardware import load_profile, with_overrides


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--points", type=int, default=100, help="grid points per axis (points^2 configurations)")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--loop", type=int, default=50, help="configurations in the one-at-a-time baseline")
    args = ap.parse_args()
    base = load_profile("edge-npu")
    table = api.analyze("resnet50", batch=1, precision="int8")
    la = roofline.LayerArrays.from_table(table)
    sram = list(np.geomspace(2 ** 20, 2 ** 26, args.points))
    bw = list(np.geomspace(4e9, 64e9, args.points))
    n = len(sram) * len(bw)
    print(f"load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())}; ResNet-50 ({len(la.macs)} layers), int8, batch 1, "
          f"{n:,} configurations, repeat {args.repeat}")
    grid_t, loop_t = [], []
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        hw = roofline.HwArrays.grid(base, "int8", None, sram_bytes=sram, dram_bandwidth_bytes_per_s=bw)
        lat = roofline.evaluate_summary(la, hw, [1]).latency_s
        grid_t.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        for k in range(args.loop):
            p = with_overrides(base, sram_bytes=int(sram[k % len(sram)]), dram_bandwidth_bytes_per_s=float(bw[k % len(bw)]))
            roofline.predict(table, p, [1], "int8")
        loop_t.append((time.perf_counter() - t0) / args.loop)
    g = statistics.median(grid_t)
    one = statistics.median(loop_t)
    print(f"grid (array arithmetic):   {g * 1e3:8.1f} ms for {n:,} -> {n / g:12,.0f} configurations/s")
    print(f"one profile at a time:     {one * 1e3:8.3f} ms each    -> {1 / one:12,.0f} configurations/s")
    print(f"ratio grid / loop: {(n / g) / (1 / one):.1f}x;  vs MAESTRO's reported 170,000 designs/s: {(n / g) / 170000:.2f}x")
    assert np.isfinite(lat).all()
    return 0


if __name__ == "__main__":
    sys.exit(main())
