"""Shared helpers for the tests: tiny ONNX models built in code, and a CLI runner."""

from __future__ import annotations

import io
import json
import os
import sys
from contextlib import redirect_stderr, redirect_stdout

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper


def conv_model(batch="N", c=3, hw=8, k=4, weights=True, ir_version=8):
    """x[N,c,hw,hw] -> Conv(k, 3x3, pad 1) -> Relu -> y."""
    w = numpy_helper.from_array(np.ones((k, c, 3, 3), np.float32), "w")
    if not weights:  # dims and type only, no payload
        w = TensorProto()
        w.name, w.data_type = "w", TensorProto.FLOAT
        w.dims.extend([k, c, 3, 3])
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], name="conv", pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["y"], name="relu")]
    g = helper.make_graph(nodes, "tiny", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, c, hw, hw])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], [w])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = ir_version
    return m


def run_cli(*args: str) -> tuple[int, str, str]:
    """Run the `estimate` entry point in-process: (exit code, stdout, stderr)."""
    from estimator.entry import main

    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main(list(args))
    return code, out.getvalue(), err.getvalue()


def run_json(*args: str) -> dict:
    code, out, err = run_cli(*args, "--format", "json")
    assert code == 0, err
    return json.loads(out)


@pytest.fixture
def tiny_path(tmp_path):
    p = tmp_path / "tiny.onnx"
    onnx.save(conv_model(), str(p))
    return str(p)


LIGHT_DIR = os.path.join(os.path.dirname(onnx.__file__), "backend", "test", "data", "light")
