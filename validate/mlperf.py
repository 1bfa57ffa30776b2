"""MLPerf scenarios (single-stream, offline) under the official LoadGen (``mlperf_loadgen``,
PyPI ``mlcommons-loadgen``, the optional extra ``estimate[loadgen]``).

The system under test runs the configuration's first session on generated inputs; LoadGen
decides when queries are issued and computes the official figures, which are parsed from its
``mlperf_log_summary.txt`` (kept next to the results). Short settings by default: official
runs last 600 s and need >= 662 queries for a p99; ``--min-duration``/``--min-query-count``
set them. Results from short runs are usually reported INVALID by LoadGen: that verdict is
stored as is.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import numpy as np

from estimator.errors import UserError


def import_loadgen():
    try:
        import mlperf_loadgen
    except ImportError:
        raise UserError("--scenario needs MLPerf LoadGen: pip install 'estimate[loadgen]'") from None
    return mlperf_loadgen


def parse_summary(text: str) -> dict:
    """Figures from mlperf_log_summary.txt: validity, samples/s, latency percentiles (s)
    (validate.imported.summary_fields, plus the p90 and a samples/s that falls back to the
    QPS LoadGen measured)."""
    from .imported import summary_fields

    out = summary_fields(text)
    out["loadgen_scenario"] = out.pop("scenario")   # the runner's own `scenario` name stays
    if out["samples_per_s"] is None:
        out["samples_per_s"] = out.get("qps_with_loadgen_overhead")
    out["p90_latency_s"] = out["percentiles_s"].get("p90")
    return out


def run_scenario(lg, cfg, opts, log_dir: Path) -> dict:
    """Run LoadGen for one configuration; per-query latencies are also appended to cfg.lat."""
    sess = cfg.sessions[0]
    feeds = cfg.feeds
    batch = cfg.batch
    n_samples = 64
    per_sample = [{k: v[i % v.shape[0]: i % v.shape[0] + 1] for k, v in feeds.items()} for i in range(n_samples)]
    lats: list[float] = []
    samples = [0]

    def run_batch(feed):
        t0 = time.perf_counter()
        sess.run(None, feed)
        lats.append(time.perf_counter() - t0)

    def issue_queries(query_samples):
        if opts.scenario == "single-stream":
            for q in query_samples:
                run_batch(per_sample[q.index % n_samples])
                samples[0] += 1
                lg.QuerySamplesComplete([lg.QuerySampleResponse(q.id, 0, 0)])
        else:
            for start in range(0, len(query_samples), batch):
                chunk = query_samples[start:start + batch]
                n = len(chunk)
                run_batch(feeds if n == batch else {k: v[:n] for k, v in feeds.items()})
                samples[0] += n
                lg.QuerySamplesComplete([lg.QuerySampleResponse(q.id, 0, 0) for q in chunk])

    def flush_queries():
        pass

    settings = lg.TestSettings()
    settings.scenario = (lg.TestScenario.SingleStream if opts.scenario == "single-stream"
                         else lg.TestScenario.Offline)
    settings.mode = lg.TestMode.PerformanceOnly
    settings.min_duration_ms = int(opts.min_duration_s * 1000)
    settings.min_query_count = int(opts.min_query_count)
    # a quick estimate so LoadGen sizes its queries sensibly
    t0 = time.perf_counter()
    sess.run(None, feeds)
    est = max(1e-6, time.perf_counter() - t0)
    if opts.scenario == "single-stream":
        settings.single_stream_expected_latency_ns = int(est / batch * 1e9)
    else:
        settings.offline_expected_qps = batch / est
    log_dir.mkdir(parents=True, exist_ok=True)
    log = lg.LogSettings()
    log.log_output.outdir = str(log_dir)
    log.log_output.copy_summary_to_stdout = False
    log.enable_trace = False
    sut = lg.ConstructSUT(issue_queries, flush_queries)
    qsl = lg.ConstructQSL(n_samples, n_samples, lambda idx: None, lambda idx: None)
    wall0 = time.perf_counter()
    try:
        lg.StartTestWithLogSettings(sut, qsl, settings, log)
    finally:
        lg.DestroyQSL(qsl)
        lg.DestroySUT(sut)
    wall = time.perf_counter() - wall0
    summary_path = log_dir / "mlperf_log_summary.txt"
    parsed = parse_summary(summary_path.read_text()) if summary_path.is_file() else {}
    cfg.lat = [lats]
    cfg.samples = samples[0]
    cfg.wall_s = wall
    from . import host as hostmod
    cfg.peak_rss = max(cfg.peak_rss, hostmod.peak_rss_bytes())
    cfg.loadavg_during = hostmod.loadavg()
    try:
        from importlib.metadata import version
        lg_version = version("mlcommons-loadgen")
    except Exception:  # noqa: BLE001
        lg_version = None
    return {"scenario": opts.scenario, "loadgen_version": lg_version,
            "min_duration_s": opts.min_duration_s, "min_query_count": opts.min_query_count,
            "log_dir": str(log_dir), "queries_run": len(lats), "samples_run": samples[0],
            **parsed}
