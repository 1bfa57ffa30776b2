"""The loader's special cases and every bad input of the foundation issue (item 8)."""

import os

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from estimator import api
from estimator.errors import UserError
from estimator.onnx_io import load_graph

from conftest import LIGHT_DIR, conv_model, run_cli


def _bad(*args):
    code, out, err = run_cli(*args)
    assert code == 2, (code, out, err)
    assert "Traceback" not in out + err
    lines = [l for l in err.strip().splitlines() if l]
    assert len(lines) == 1, err
    return lines[0]


# ----------------------------------------------------------------------------- special cases


def test_symbolic_batch_defaults_to_one_with_note(tiny_path):
    g = load_graph(tiny_path)
    assert g.shape("x") == (1, 3, 8, 8)
    assert any("set to 1" in n for n in g.notes)


def test_batch_overrides_fixed_leading_dim(tmp_path):
    p = tmp_path / "fixed.onnx"
    onnx.save(conv_model(batch=1), str(p))
    g = load_graph(str(p), batch=8)
    assert g.shape("y") == (8, 4, 8, 8)
    assert any("overridden to 8" in n for n in g.notes)


def test_resolution_override(tiny_path):
    t = api.analyze(tiny_path, resolution=(16, 32))
    # conv: 4 out x 3 in x 9 x (16*32) outputs
    assert t.totals.macs == 4 * 3 * 9 * 16 * 32


def test_input_override_and_unknown_input(tiny_path):
    t = api.analyze(tiny_path, input_shapes={"x": (2, 3, 4, 4)})
    assert t.totals.macs == 2 * 4 * 3 * 9 * 16
    with pytest.raises(UserError, match="no input 'nope'"):
        api.analyze(tiny_path, input_shapes={"nope": (1,)})


def test_unresolved_symbolic_dim_names_input_dim_and_option(tmp_path):
    m = conv_model()
    m.graph.input[0].type.tensor_type.shape.dim[2].dim_param = "H"
    p = tmp_path / "h.onnx"
    onnx.save(m, str(p))
    with pytest.raises(UserError) as e:
        load_graph(str(p))
    msg = str(e.value)
    assert "'x'" in msg and "dim 2" in msg and "'H'" in msg and "--resolution" in msg


def test_ir3_initializers_listed_as_inputs_are_weights():
    g = load_graph(os.path.join(LIGHT_DIR, "light_resnet50.onnx"))
    assert g.inputs == ("gpu_0/data_0",)  # the 269 initializer-inputs are not user inputs


def test_external_data_absent_counts_from_shapes(tmp_path):
    from estimator import models

    p = tmp_path / "r.onnx"
    models.save("resnet50", str(p), weights=False)
    assert not os.path.exists(tmp_path / "resnet50.weights.bin")
    t = api.analyze(str(p))
    assert t.totals.params == 25_610_152
    assert not t.weights_present
    assert any("weights absent" in n for n in t.notes)


def test_external_data_present_is_not_read(tmp_path):
    m = conv_model()
    p = tmp_path / "ext.onnx"
    onnx.save_model(m, str(p), save_as_external_data=True, all_tensors_to_one_file=True, location="w.bin",
                    size_threshold=0)
    assert os.path.exists(tmp_path / "w.bin")
    t = api.analyze(str(p))
    assert t.totals.params == 4 * 3 * 9 and t.weights_present


def test_embedded_weights_are_stripped_before_shape_work(tmp_path):
    # A big embedded initializer must not be carried through inference: the Graph keeps
    # shapes only (no values for large float tensors).
    m = conv_model(c=64, k=64)
    p = tmp_path / "big.onnx"
    onnx.save(m, str(p))
    g = load_graph(str(p))
    assert "w" not in g.const_values
    assert g.tensors["w"].shape == (64, 64, 3, 3)


def test_shape_inference_completed_for_shape_chains():
    # x -> Shape -> Gather(0) -> Unsqueeze -> Concat([-1]) -> Reshape(x): ONNX inference with a
    # symbolic batch cannot tell the Reshape output; with the batch set and the chain evaluated
    # it is known.
    nodes = [
        helper.make_node("Shape", ["x"], ["s"], name="shape"),
        helper.make_node("Constant", [], ["i0"], name="c0", value=numpy_helper.from_array(np.array(0, np.int64))),
        helper.make_node("Gather", ["s", "i0"], ["n"], name="gather"),
        helper.make_node("Constant", [], ["ax"], name="c1", value=numpy_helper.from_array(np.array([0], np.int64))),
        helper.make_node("Unsqueeze", ["n", "ax"], ["n1"], name="unsq"),
        helper.make_node("Constant", [], ["m1"], name="c2", value=numpy_helper.from_array(np.array([-1], np.int64))),
        helper.make_node("Concat", ["n1", "m1"], ["shp"], name="concat", axis=0),
        helper.make_node("Reshape", ["x", "shp"], ["r"], name="reshape"),
        helper.make_node("MatMul", ["r", "w"], ["y"], name="mm"),
    ]
    w = numpy_helper.from_array(np.ones((48, 5), np.float32), "w")
    g = helper.make_graph(nodes, "chain", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 4, 4])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], [w])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    t = api._analyze_graph(load_graph(m, batch=2), batch=2)
    assert t.totals.macs == 2 * 48 * 5
    assert not t.totals.uncosted_ops


def test_dequantize_and_cast_weights_count(tmp_path):
    wq = numpy_helper.from_array(np.ones((4, 3, 3, 3), np.int8), "wq")
    sc = numpy_helper.from_array(np.array(0.1, np.float32), "sc")
    nodes = [helper.make_node("DequantizeLinear", ["wq", "sc"], ["w"], name="dq"),
             helper.make_node("Conv", ["x", "w"], ["y"], name="conv")]
    g = helper.make_graph(nodes, "dq", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], [wq, sc])
    t = api._analyze_graph(load_graph(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])))
    assert t.totals.params == 108
    assert t.totals.weight_bytes == 108  # stored as int8, traced back through DequantizeLinear


# ----------------------------------------------------------------------------- bad input


def test_missing_path():
    assert "no such file" in _bad("/nonexistent/model.onnx")


def test_directory(tmp_path):
    assert "directory" in _bad(str(tmp_path))


def test_text_file(tmp_path):
    p = tmp_path / "t.onnx"
    p.write_text("not a model\n")
    assert "not an ONNX model" in _bad(str(p))


def test_truncated_file(tmp_path):
    from estimator import models

    full = tmp_path / "full.onnx"
    models.save("mobilenetv2", str(full), weights=True)
    data = full.read_bytes()
    p = tmp_path / "trunc.onnx"
    p.write_bytes(data[: len(data) // 3])
    assert "not an ONNX model" in _bad(str(p))


def test_random_bytes(tmp_path):
    p = tmp_path / "r.onnx"
    p.write_bytes(np.random.default_rng(0).bytes(4096))
    assert "not an ONNX model" in _bad(str(p))


def test_unknown_builtin_lists_known():
    line = _bad("resnet5000")
    assert "resnet5000" in line and "resnet50" in line and "yolov3" in line


def test_external_data_outside_folder_refused(tmp_path):
    m = conv_model(weights=False)
    t = m.graph.initializer[0]
    t.data_location = TensorProto.EXTERNAL
    for k, v in (("location", "../../etc/passwd"), ("offset", "0"), ("length", "432")):
        e = t.external_data.add()
        e.key, e.value = k, v
    p = tmp_path / "evil.onnx"
    p.write_bytes(m.SerializeToString())
    assert "outside the model's folder" in _bad(str(p))


def test_external_shape_tensor_needed_but_absent(tmp_path):
    # A Reshape whose shape vector lives in an absent external file: the shape cannot be known.
    shp = numpy_helper.from_array(np.array([1, -1], np.int64), "shp")
    shp.ClearField("raw_data")
    shp.data_location = TensorProto.EXTERNAL
    for k, v in (("location", "missing.bin"), ("offset", "0"), ("length", "16")):
        e = shp.external_data.add()
        e.key, e.value = k, v
    w = numpy_helper.from_array(np.ones((48, 5), np.float32), "w")
    nodes = [helper.make_node("Reshape", ["x", "shp"], ["r"], name="reshape"),
             helper.make_node("MatMul", ["r", "w"], ["y"], name="mm")]
    g = helper.make_graph(nodes, "ext", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 4, 4])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], [shp, w])
    p = tmp_path / "ext.onnx"
    p.write_bytes(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString())
    line = _bad(str(p))
    assert "missing.bin" in line and "shp" in line


def test_cycle(tmp_path):
    g = helper.make_graph([helper.make_node("Relu", ["b"], ["a"], name="r1"), helper.make_node("Relu", ["a"], ["b"], name="r2")],
                          "cyc", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                          [helper.make_tensor_value_info("a", TensorProto.FLOAT, [1])])
    p = tmp_path / "cycle.onnx"
    onnx.save(helper.make_model(g), str(p))
    assert "cycle" in _bad(str(p))


def test_undefined_input(tmp_path):
    g = helper.make_graph([helper.make_node("Add", ["x", "ghost"], ["y"], name="add")], "u",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    p = tmp_path / "undef.onnx"
    onnx.save(helper.make_model(g), str(p))
    line = _bad(str(p))
    assert "'add'" in line and "'ghost'" in line


def test_absurd_dims(tiny_path):
    line = _bad(tiny_path, "--input", "x=100000000x3x100000x100000")
    assert "absurd" in line or "elements" in line


def test_batch_zero_and_bad_lists(tiny_path):
    assert "--batch" in _bad("resnet50", "--batch", "0")
    assert "--batch" in _bad("resnet50", "--batch", "two")
    assert "--hw" in _bad("resnet50", "--batch", "1,2")


def test_bad_resolution_and_input_syntax(tiny_path):
    assert "--resolution" in _bad("resnet50", "--resolution", "224")
    assert "--input" in _bad(tiny_path, "--input", "x:1x3")
    assert "multiples of 32" in _bad("yolov3", "--resolution", "417x416")


def test_peak_live_memory_by_hand():
    # x[1,4] -> Relu a -> Reshape r (view of a) -> Relu b -> Add(a_view r, b) y.
    # Steps: relu1 {x, a} = 32 B; reshape (view) {a}; relu2 {a(=r), b} = 32; add {a, b, y} = 48.
    # x dies after relu1. Peak 48 B (fp32, 4 elements = 16 B each); a view taking its own
    # memory would have made it 64.
    shp = numpy_helper.from_array(np.array([1, 4], np.int64), "shp")
    nodes = [helper.make_node("Relu", ["x"], ["a"], name="relu1"),
             helper.make_node("Reshape", ["a", "shp"], ["r"], name="reshape"),
             helper.make_node("Relu", ["r"], ["b"], name="relu2"),
             helper.make_node("Add", ["r", "b"], ["y"], name="add")]
    g = helper.make_graph(nodes, "peak", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], [shp])
    t = api._analyze_graph(load_graph(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])))
    assert t.totals.peak_activation_bytes == 48
    assert t.totals.max_activation_bytes == 16


def test_declared_shapes_with_bound_symbolic_dims(tmp_path):
    # An op ONNX cannot infer (custom domain) whose output shape the model declares with the
    # same symbolic batch name as the input: once the batch is set, the declared shape is known
    # and the Conv after it is costed.
    w = numpy_helper.from_array(np.ones((8, 16, 1, 1), np.float32), "w")
    nodes = [helper.make_node("Fancy", ["x"], ["f"], name="fancy", domain="com.acme"),
             helper.make_node("Conv", ["f", "w"], ["y"], name="conv")]
    g = helper.make_graph(nodes, "c", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 8, 8])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], [w],
                          value_info=[helper.make_tensor_value_info("f", TensorProto.FLOAT, ["N", 16, 8, 8])])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.acme", 1)])
    t = api._analyze_graph(load_graph(m, batch=2), batch=2)
    assert t.totals.macs == 2 * 8 * 16 * 64
    assert t.totals.unsupported_ops == {"com.acme.Fancy": 1} and not t.totals.uncosted_ops


def _utf8_broken(tmp_path, placeholder: bytes, raw: bytes, name: str) -> str:
    """A model whose string field `placeholder` is replaced by as many bytes that are not
    UTF-8 (same length: the protobuf stays well-formed)."""
    w = TensorProto()
    w.name, w.data_type = "w", TensorProto.FLOAT
    w.dims.extend([4, 4])
    w.data_location = TensorProto.EXTERNAL
    e = w.external_data.add()
    e.key, e.value = "location", "LOCATIONXX"
    g = helper.make_graph([helper.make_node("MatMul", ["INPUTNAMEX", "w"], ["y"], name="NODENAMEXX")], "g",
                          [helper.make_tensor_value_info("INPUTNAMEX", TensorProto.FLOAT, [1, 4])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], [w])
    data = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()
    assert placeholder in data
    p = tmp_path / name
    p.write_bytes(data.replace(placeholder, raw))
    return str(p)


@pytest.mark.parametrize("placeholder,raw,words", [
    (b"LOCATIONXX", b"\xff\xfe\x80abcdefg", "external data location is not valid UTF-8"),
    (b"NODENAMEXX", b"\xc3\x28node\xa0\xa1xx", "its name is not valid UTF-8"),
    (b"MatMul", b"Mat\xffMu", "its op type is not valid UTF-8"),
    (b"INPUTNAMEX", b"INPUT\xffNAME", "name is not valid UTF-8"),
])
def test_names_that_are_not_utf8_are_a_one_line_error(tmp_path, placeholder, raw, words):
    """Found by fuzzing: protobuf hands an invalid UTF-8 string field over as bytes; the
    external-data location crashed path joins ('Can't mix strings and bytes'), names crashed
    the report. Each is a one-line error naming the file, exit 2."""
    from conftest import run_cli

    p = _utf8_broken(tmp_path, placeholder, raw, "broken.onnx")
    code, out, err = run_cli(p)
    assert code == 2, (out, err)
    assert err.startswith(f"estimate: error: {p}: ") and words in err and len(err.strip().splitlines()) == 1
    assert "Traceback" not in err


def test_constant_of_shape_weight_vs_mask_buffer():
    """ConstantOfShape with a stored shape makes a weight (the onnx 'light' models build
    every weight this way); with a shape computed from an input's Shape it makes a buffer
    (Swin's shifted-window mask), which is not a parameter."""
    shp = numpy_helper.from_array(np.array([4], np.int64), "shp")
    nodes = [helper.make_node("ConstantOfShape", ["shp"], ["gamma"], value=numpy_helper.from_array(np.ones(1, np.float32))),
             helper.make_node("Mul", ["x", "gamma"], ["a"], name="scale"),
             helper.make_node("Shape", ["x"], ["s"]),
             helper.make_node("ConstantOfShape", ["s"], ["buf"], value=numpy_helper.from_array(np.zeros(1, np.float32))),
             helper.make_node("Add", ["a", "buf"], ["y"], name="add")]
    g = helper.make_graph(nodes, "cos", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], [shp])
    t = api._analyze_graph(load_graph(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), batch=3))
    by = {l.name: l for l in t.layers}
    assert by["scale"].params == 4 and by["add"].params == 0 and t.totals.params == 4


def test_fuzzed_files_give_a_result_or_a_user_error(tmp_path):
    """Bounded, seeded fuzzing of a small model with every kind of string field (names,
    external data, value_info, attributes): each mutated file is analyzed (exit 0) or refused
    with a one-line error (exit 2), never an internal error or a traceback."""
    import random

    from conftest import run_cli

    w = TensorProto()
    w.name, w.data_type = "weight", TensorProto.FLOAT
    w.dims.extend([4, 4])
    w.data_location = TensorProto.EXTERNAL
    for k, v in (("location", "w.bin"), ("offset", "0"), ("length", "64")):
        e = w.external_data.add()
        e.key, e.value = k, v
    shp = numpy_helper.from_array(np.array([1, -1], np.int64), "shape")
    g = helper.make_graph([helper.make_node("MatMul", ["x", "weight"], ["y"], name="mm"),
                           helper.make_node("Reshape", ["y", "shape"], ["z"], name="rs"),
                           helper.make_node("LeakyRelu", ["z"], ["out"], name="act", alpha=0.1)], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
                          [helper.make_tensor_value_info("out", TensorProto.FLOAT, None)], [w, shp],
                          value_info=[helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])])
    src = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()
    rng = random.Random(20261201)
    p = str(tmp_path / "f.onnx")
    bad = []
    for _ in range(300):
        b = bytearray(src)
        for _ in range(rng.randint(1, 4)):
            k = rng.randrange(len(b))
            r = rng.random()
            if r < 0.6:
                b[k] = rng.randrange(256)
            elif r < 0.8:
                b[k] = rng.choice([0x80, 0xFF, 0xC3, 0xFE])
            else:
                del b[k:k + rng.randint(1, 8)]
        with open(p, "wb") as f:
            f.write(b)
        code, out, err = run_cli(p, "--format", "json")
        if code not in (0, 2) or "internal error" in err or "Traceback" in err:
            bad.append((code, err.strip()[:160]))
    assert not bad, bad[:5]


def test_shape_arithmetic_of_a_symbolic_batch_is_reported_as_run_time_work():
    """A torch export's flatten: Shape -> Gather -> Unsqueeze -> Concat -> Reshape. With the batch
    dim symbolic ('N') a runtime computes the four shape nodes at run time (onnxruntime runs each
    as a kernel); folded here with N bound, they are not costed, so the loader says so and how many.
    With a fixed batch they are constants for every runtime: no note."""
    ints = lambda v, n: numpy_helper.from_array(np.array(v, np.int64), n)  # noqa: E731
    nodes = [helper.make_node("Shape", ["x"], ["s"], name="shape"),
             helper.make_node("Gather", ["s", "i0"], ["n"], name="gather", axis=0),
             helper.make_node("Unsqueeze", ["n", "ax"], ["u"], name="unsq"),
             helper.make_node("Concat", ["u", "m1"], ["shp"], name="cat", axis=0),
             helper.make_node("Reshape", ["x", "shp"], ["y"], name="flatten")]

    def notes(batch_dim):
        g = helper.make_graph(nodes, "f", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch_dim, 8, 2, 2])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                              [ints(0, "i0"), ints([0], "ax"), ints([-1], "m1")])
        graph = load_graph(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), batch=2)
        assert [n.name for n in graph.nodes if n.name not in graph.const_nodes] == ["flatten"]
        return [x for x in graph.notes if "shape-computation" in x]

    (note,) = notes("N")
    assert note.startswith("up to 4 shape-computation node(s)") and "run time" in note
    assert notes(2) == []
