"""Regression tests for bugs found in review, each with the number worked out by hand."""

import json

import numpy as np
import pytest
from onnx import TensorProto as TP
from onnx import helper as H
from onnx import numpy_helper as NH

from estimator import api, roofline
from estimator.analyze import analyze
from estimator.hardware import profile_from_dict
from estimator.onnx_io import load_graph

from conftest import run_cli


def _model(nodes, inputs, outputs, inits=(), value_info=()):
    g = H.make_graph(nodes, "g", inputs, outputs, list(inits), value_info=list(value_info))
    m = H.make_model(g, opset_imports=[H.make_opsetid("", 17)])
    m.ir_version = 8
    return m


def _vi(name, shape, t=TP.FLOAT):
    return H.make_tensor_value_info(name, t, shape)


def _prof(**kw):
    d = dict(schema_version=1, name="t", source="test", clock_hz=1e9, mac_units={"fp32": 1000},
             sram_bytes=1 << 20, dram_bandwidth_bytes_per_s=1e9)
    d.update(kw)
    return profile_from_dict(d, "t")


def _two_convs(batch, declare_batch, shared=False):
    w1 = NH.from_array(np.ones((8, 8, 3, 3), np.float32), "w1")
    w2 = NH.from_array(np.ones((8, 8, 3, 3), np.float32), "w2")
    nodes = [H.make_node("Conv", ["x", "w1"], ["c1"], name="conv1", pads=[1] * 4),
             H.make_node("Relu", ["c1"], ["r"], name="relu"),
             H.make_node("Conv", ["r", "w1" if shared else "w2"], ["y"], name="conv2", pads=[1] * 4)]
    return _model(nodes, [_vi("x", [batch, 8, 16, 16])], [_vi("y", [declare_batch, 8, 16, 16])],
                  [w1] if shared else [w1, w2], value_info=[_vi("r", [declare_batch, 8, 16, 16])])


def test_declared_shapes_do_not_override_the_requested_batch():
    # exported at batch 1 with declared outputs; costed at batch 8: both convs at batch 8
    # conv MACs = 8 x 8 x 8 x 9 x 256 = 1,179,648 each
    t = analyze(load_graph(_two_convs(1, 1), batch=8))
    assert [l.macs for l in t.layers if l.op_type == "Conv"] == [1_179_648, 1_179_648]
    assert t.layers[1].output_shape == (8, 8, 16, 16)


def test_weight_reshaped_by_a_computed_shape_is_a_weight():
    # Reshape(Wf[5120], Concat(Unsqueeze(Gather(Shape(x), 1)), [-1])) -> W[8, 640]
    nodes = [H.make_node("Shape", ["x"], ["s"], name="shape"),
             H.make_node("Gather", ["s", "i1"], ["g"], axis=0, name="gather"),
             H.make_node("Unsqueeze", ["g", "ax"], ["u"], name="unsq"),
             H.make_node("Concat", ["u", "m1"], ["cs"], axis=0, name="concat"),
             H.make_node("Reshape", ["Wf", "cs"], ["W"], name="reshapeW"),
             H.make_node("Transpose", ["x"], ["xt"], perm=[0, 2, 3, 1], name="tr"),
             H.make_node("MatMul", ["xt", "W"], ["y"], name="mm")]
    inits = [NH.from_array(np.array(1, np.int64), "i1"), NH.from_array(np.array([0], np.int64), "ax"),
             NH.from_array(np.array([-1], np.int64), "m1"), NH.from_array(np.ones(5120, np.float32), "Wf")]
    g = load_graph(_model(nodes, [_vi("x", [1, 8, 16, 16])], [_vi("y", None)], inits))
    t = analyze(g)
    assert t.totals.params == 5120
    assert t.totals.macs == 256 * 8 * 640
    assert {"shape", "gather", "unsq", "concat", "reshapeW"} <= g.const_nodes  # folded, not layers


def test_gather_from_a_constant_table_keeps_the_table():
    nodes = [H.make_node("Gather", ["P", "idx"], ["e"], axis=0, name="gather"),
             H.make_node("Add", ["x", "e"], ["y"], name="add")]
    inits = [NH.from_array(np.ones((512, 64), np.float32), "P"), NH.from_array(np.arange(16, dtype=np.int64), "idx")]
    t = analyze(load_graph(_model(nodes, [_vi("x", [1, 16, 64])], [_vi("y", None)], inits)))
    assert t.totals.params == 512 * 64


def test_mixed_dtype_layer_bytes_at_a_precision():
    # Gather(data fp16 [10,4], indices int64 [3]) -> [3,4]: at fp32, 40 x 4 + 3 x 8 = 184 B in
    nodes = [H.make_node("Gather", ["d", "idx"], ["y"], axis=0, name="gather")]
    m = _model(nodes, [_vi("d", [10, 4], TP.FLOAT16), _vi("idx", [3], TP.INT64)], [_vi("y", None, TP.FLOAT16)])
    t = analyze(load_graph(m), precision="fp32")
    layer = t.layers[0]
    assert layer.input_bytes_at("fp32") == 184 and layer.input_bytes_at("fp16") == 104
    assert layer.output_bytes_at("fp32") == 48


def test_shared_weight_is_read_by_each_consumer_when_streamed():
    t = analyze(load_graph(_two_convs(1, 1, shared=True)), precision="fp32")
    assert t.totals.params == 8 * 8 * 9  # counted once
    p = roofline.predict(t, _prof(sram_bytes=1000), [1], "fp32", "off")
    names = p.layers.names
    w = 8 * 8 * 9 * 4
    dram = dict(zip(names, p.raw.dram_bytes[0, 0]))
    assert dram["conv2"] >= w + 8 * 256 * 4  # reads the shared weight and its input


def test_winograd_grows_the_kernel_not_the_bias():
    w = NH.from_array(np.ones((64, 64, 3, 3), np.float32), "w")
    bias = NH.from_array(np.ones(64, np.float32), "b")
    m = _model([H.make_node("Conv", ["x", "w", "b"], ["y"], name="conv", pads=[1] * 4)],
               [_vi("x", [1, 64, 8, 8])], [_vi("y", None)], [w, bias])
    t = analyze(load_graph(m), precision="fp32")
    off = roofline.predict(t, _prof(sram_bytes=10 ** 9), [1], "fp32", "off")
    on = roofline.predict(t, _prof(sram_bytes=10 ** 9), [1], "fp32", "f2")
    kernel = 64 * 64 * 9 * 4
    assert on.weight_bytes - off.weight_bytes == pytest.approx(kernel * (16 / 9 - 1))


def test_nothing_to_predict_is_an_error(tmp_path):
    import onnx

    m = _model([H.make_node("Foo", ["x"], ["y"], name="foo", domain="custom")], [_vi("x", [1, 4])], [_vi("y", [1, 4])])
    m.opset_import.append(H.make_opsetid("custom", 1))
    p = tmp_path / "foo.onnx"
    onnx.save(m, str(p))
    code, _, err = run_cli(str(p), "--hw", "edge-npu", "--precision", "fp16")
    assert code == 2 and "no layer has a cost" in err and "custom.Foo x1" in err


def test_compare_json_is_strict_json():
    code, out, err = run_cli("compare", "mobilenetv2", "--hw", "edge-npu", "--batch", "4,8", "--format", "json")
    assert code == 0, err

    def bad(x):
        raise ValueError(f"non-finite number {x} in JSON")

    rows = json.loads(out, parse_constant=bad)["models"]
    assert rows[0]["latency_b1_s"] > 0  # batch 1 is always in the comparison


def test_shape_of_a_known_tensor_is_folded_and_takes_no_memory():
    # x -> Relu r -> Shape s (folded) -> Reshape(r, s) y: live tensors never exceed x and r
    nodes = [H.make_node("Relu", ["x"], ["r"], name="relu"),
             H.make_node("Shape", ["r"], ["s"], name="shape"),
             H.make_node("Reshape", ["r", "s"], ["y"], name="reshape")]
    g = load_graph(_model(nodes, [_vi("x", [1, 16, 16, 16])], [_vi("y", None)]))
    assert "shape" in g.const_nodes
    t = analyze(g, precision="fp32")
    assert t.totals.peak_activation_bytes == 2 * 16 * 16 * 16 * 4


def test_layer_bound_is_decided_per_batch():
    from conftest import run_json

    doc = run_json("mobilenetv2", "--hw", "edge-npu", "--batch", "1,64")
    for layer in doc["layers"]:
        pr = layer["predicted"]
        for t, b in zip(pr["time_s"], pr["bound"]):
            assert (b == "none") == (not t)
