"""A short MLPerf LoadGen run when mlperf_loadgen is importable; otherwise the one-line
UserError that tells how to install it (both branches are real assertions, never a skip)."""

from __future__ import annotations

import importlib.util
import json

import pytest

from estimator.errors import UserError
from estimator.validate import mlperf, runner
try:  # the autouse fixture _cache is imported too, so it applies here as well
    from test_validate import _cache, fast_opts, tiny_cnn  # noqa: F401
except ImportError:  # tests/ made a package
    from tests.test_validate import _cache, fast_opts, tiny_cnn  # noqa: F401

HAVE_LOADGEN = importlib.util.find_spec("mlperf_loadgen") is not None


@pytest.mark.parametrize("scenario,batch", [("single-stream", 1), ("offline", 4)])
def test_loadgen_scenario(tmp_path, scenario, batch):
    model = tiny_cnn(tmp_path / "m.onnx")
    opts = fast_opts(scenario=scenario, batches=[batch], min_duration_s=0.2, min_query_count=32,
                     profile=False)
    if not HAVE_LOADGEN:
        with pytest.raises(UserError, match=r"pip install 'estimate\[loadgen\]'"):
            runner.run_validation(str(model), tmp_path / "out", opts)
        return
    oc = runner.run_validation(str(model), tmp_path / "out", opts)
    c = oc.doc["configurations"][0]
    lg = c["loadgen"]
    assert lg["scenario"] == scenario and lg["result"] in ("VALID", "INVALID")
    assert lg["queries_run"] >= 1 and c["latency_s"]["p50"] > 0
    if scenario == "single-stream":
        assert lg["p90_latency_s"] > 0 and lg["samples_run"] >= 32
    else:
        assert lg["samples_per_s"] > 0 and c["throughput_per_s"] == lg["samples_per_s"]
    assert json.loads(oc.json_path.read_text())["configurations"][0]["scenario"] == scenario


def test_parse_loadgen_summary():
    text = """Scenario : SingleStream
90.0th percentile latency (ns) : 116343
Result is : VALID
 * Early stopping 90.0th percentile estimate: 117584
QPS w/ loadgen overhead         : 11942.87
Min latency (ns)                : 47951
50.00 percentile latency (ns)   : 71656
90.00 percentile latency (ns)   : 116343
99.90 percentile latency (ns)   : 208409
"""
    p = mlperf.parse_summary(text)
    assert p["valid"] is True and p["samples_per_s"] == pytest.approx(11942.87)
    assert p["p90_latency_s"] == pytest.approx(116343e-9)
    assert p["percentiles_s"]["p99.9"] == pytest.approx(208409e-9)
    assert p["early_stopping_p90_s"] == pytest.approx(117584e-9)
