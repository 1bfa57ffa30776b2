"""Grouping layers into kernels (estimator/kernels.py): fusion rules as data, on hand-built
graphs; the profile key `fusion`; and a convolution's bias charged as its epilogue."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from estimator import api, kernels, roofline
from estimator.errors import UserError
from estimator.hardware import profile_from_dict, profile_to_dict
from estimator.onnx_io import load_graph


def _table(nodes, inputs, inits, output):
    g = helper.make_graph(nodes, "k", [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in inputs],
                          [helper.make_tensor_value_info(output, TensorProto.FLOAT, None)], inits)
    return api._analyze_graph(load_graph(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])))


def _w(name, shape):
    return numpy_helper.from_array(np.full(shape, 0.1, np.float32), name)


def _kernels(table, names):
    heads = kernels.group(table.layers, kernels.rules_for(names, None), dynamic=table.dynamic_shapes)
    by = [l.name for l in table.layers]
    return {by[i]: by[h] for i, h in enumerate(heads)}


def conv_bias_relu():
    return _table([helper.make_node("Conv", ["x", "w", "b"], ["c"], name="conv", kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
                   helper.make_node("Relu", ["c"], ["y"], name="relu")],
                  [("x", [1, 8, 8, 8])], [_w("w", [8, 8, 3, 3]), _w("b", [8])], "y")


def residual():
    return _table([helper.make_node("Conv", ["x", "w", "b"], ["c"], name="conv", kernel_shape=[1, 1]),
                   helper.make_node("Add", ["c", "x"], ["a"], name="add"),
                   helper.make_node("Relu", ["a"], ["y"], name="relu")],
                  [("x", [1, 8, 8, 8])], [_w("w", [8, 8, 1, 1]), _w("b", [8])], "y")


def test_a_rule_naming_the_op_wins_over_the_generic_epilogue_in_any_order():
    """A detected host lists [epilogue, conv_epilogue, ...]: the Conv must still take
    conv_epilogue (which fuses the residual Add), not the generic epilogue that stops at it."""
    t = residual()
    fused = {"conv": "conv", "add": "conv", "relu": "conv"}
    assert _kernels(t, ["epilogue", "conv_epilogue"]) == fused
    assert _kernels(t, ["conv_epilogue", "epilogue"]) == fused
    assert _kernels(t, ["epilogue"]) == {"conv": "conv", "add": "add", "relu": "relu"}


def test_conv_bias_relu_is_one_kernel():
    t = conv_bias_relu()
    for rules in (None, ["conv_epilogue"]):
        assert _kernels(t, rules) == {"conv": "conv", "relu": "conv"}


def test_residual_add_joins_the_conv_only_with_the_conv_epilogue_rule():
    t = residual()
    assert _kernels(t, ["conv_epilogue"]) == {"conv": "conv", "add": "conv", "relu": "conv"}
    # the default epilogue rule: BatchNormalization and activations only; the Add stands alone,
    # and the Relu after it reads the Add, not a contraction
    assert _kernels(t, None) == {"conv": "conv", "add": "add", "relu": "relu"}


@pytest.mark.parametrize("order", [("x", "s"), ("s", "x")])
def test_silu_is_one_kernel(order):
    t = _table([helper.make_node("Sigmoid", ["x"], ["s"], name="sig"),
                helper.make_node("Mul", list(order), ["y"], name="mul")], [("x", [2, 16])], [], "y")
    assert _kernels(t, ["silu"]) == {"sig": "sig", "mul": "sig"}
    assert _kernels(t, None) == {"sig": "sig", "mul": "mul"}


def test_gelu_written_with_erf_is_one_kernel():
    c = [numpy_helper.from_array(np.array(v, np.float32), n) for n, v in (("r2", 1.4142135), ("one", 1.0), ("half", 0.5))]
    t = _table([helper.make_node("Div", ["x", "r2"], ["d"], name="div"),
                helper.make_node("Erf", ["d"], ["e"], name="erf"),
                helper.make_node("Add", ["e", "one"], ["a"], name="add"),
                helper.make_node("Mul", ["x", "a"], ["m"], name="mul"),
                helper.make_node("Mul", ["m", "half"], ["y"], name="half_mul")], [("x", [2, 16])], c, "y")
    assert set(_kernels(t, ["gelu_erf"]).values()) == {"div"}
    # one kernel that still does every step: 5 ops per element (Div, Erf, Add, Mul, Mul: the
    # counting rule of estimator/ops/elementwise.py), 32 elements, at 1 op per ns; one overhead
    fused = roofline.predict(t, _profile(vector_ops_per_cycle={"fp32": 1.0}, layer_overhead_s=1e-5,
                                         fusion=["gelu_erf"]), [1], "fp32")
    assert fused.latency_s[0] == pytest.approx(1e-5 + 5 * 32 / 1e9, rel=1e-6)


def test_silu_kernel_keeps_the_mul():
    """x * sigmoid(x) as one kernel: Sigmoid's 3 ops and the Mul's 1 per element, one overhead."""
    t = _table([helper.make_node("Sigmoid", ["x"], ["s"], name="sig"),
                helper.make_node("Mul", ["x", "s"], ["y"], name="mul")], [("x", [2, 16])], [], "y")
    p = roofline.predict(t, _profile(vector_ops_per_cycle={"fp32": 1.0}, layer_overhead_s=1e-5, fusion=["silu"]),
                         [1], "fp32")
    assert p.latency_s[0] == pytest.approx(1e-5 + 4 * 32 / 1e9, rel=1e-6)


def test_batchnorm_after_a_concat_and_its_relu_are_one_kernel():
    """DenseNet's pre-activation: Concat -> BatchNormalization -> Relu. The BN is not after a
    contraction (no epilogue); onnxruntime runs BN + Relu as one NCHWc kernel (bn_activation,
    confirmed by hw detect's probe); the Relu then costs nothing of its own."""
    bn = [_w(n, [16]) for n in ("s", "b", "m", "v")]
    t = _table([helper.make_node("Concat", ["x", "x"], ["c"], name="cat", axis=1),
                helper.make_node("BatchNormalization", ["c", "s", "b", "m", "v"], ["n"], name="bn"),
                helper.make_node("Relu", ["n"], ["y"], name="relu")], [("x", [1, 8, 4, 4])], bn, "y")
    assert _kernels(t, ["epilogue", "bn_activation"]) == {"cat": "cat", "bn": "bn", "relu": "bn"}
    assert _kernels(t, ["epilogue"]) == {"cat": "cat", "bn": "bn", "relu": "relu"}
    fused, alone = (roofline.predict(t, _profile(vector_ops_per_cycle={"fp32": 8.0}, layer_overhead_s=1e-5,
                                                 fusion=f), [1], "fp32")
                    for f in (["epilogue", "bn_activation"], ["epilogue"]))
    # the Relu's own pass (256 elements at 8 per ns: 32 ns) and its 10 us overhead are gone
    assert alone.latency_s[0] - fused.latency_s[0] == pytest.approx(1e-5 + 256 / 8e9, rel=1e-6)


def test_matmul_bias_add_fuses_a_residual_add_does_not():
    t = _table([helper.make_node("MatMul", ["x", "w"], ["m"], name="mm"),
                helper.make_node("Add", ["m", "b"], ["a"], name="bias"),
                helper.make_node("Add", ["a", "x"], ["y"], name="residual")],
               [("x", [2, 16])], [_w("w", [16, 16]), _w("b", [16])], "y")
    assert _kernels(t, ["matmul_add"]) == {"mm": "mm", "bias": "mm", "residual": "residual"}


def _bias_matmul(shape, batch_sym):
    """MatMul [.., 16] x [16, 16] + bias; the first input dim symbolic ('N') or fixed."""
    shp = ["N"] + list(shape[1:]) if batch_sym else list(shape)
    g = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["m"], name="mm"),
                           helper.make_node("Add", ["m", "b"], ["y"], name="bias")], "k",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, shp)],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], [_w("w", [16, 16]), _w("b", [16])])
    return api._analyze_graph(load_graph(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])))


@pytest.mark.parametrize("shape,sym,fused", [((2, 16), True, True), ((2, 16), False, True),
                                             ((1, 8, 16), True, False), ((1, 8, 16), False, True)])
def test_matmul_add_needs_a_2d_view(shape, sym, fused):
    """onnxruntime 1.32 (MatMulAddFusion) turns MatMul + bias Add into Gemm when the MatMul is 2-D,
    or of higher rank with static shapes (Reshape, Gemm, Reshape); a 3-D MatMul of a file with a
    symbolic dim ([N, 128, 768] of every dynamic-axes torch export) runs as MatMul, then Add."""
    t = _bias_matmul(shape, sym)
    assert t.dynamic_shapes is sym
    assert _kernels(t, ["matmul_add"])["bias"] == ("mm" if fused else "bias")
    # TensorRT's and oneDNN's bias fusion does not depend on the shapes (the shipped GPU/Xeon profiles)
    assert _kernels(t, ["matmul_bias"])["bias"] == "mm"


def test_an_unnamed_dynamic_dim_counts_as_dynamic_and_the_roofline_sees_it():
    """An input dim with neither a value nor a name ('?') is dynamic to onnxruntime too; and the
    roofline itself (not only kernels.group) uses the table's flag: with the symbolic 3-D MatMul
    the bias Add is a kernel of its own (one more overhead and its pass)."""
    g = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["m"], name="mm"),
                           helper.make_node("Add", ["m", "b"], ["y"], name="bias")], "k",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 8, 16])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], [_w("w", [16, 16]), _w("b", [16])])
    t = api._analyze_graph(load_graph(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])))
    assert t.dynamic_shapes
    prof = _profile(vector_ops_per_cycle={"fp32": 1.0}, layer_overhead_s=1e-5, fusion=["matmul_add"])
    dyn = roofline.predict(t, prof, [1], "fp32").latency_s[0]
    static = roofline.predict(_bias_matmul((1, 8, 16), False), prof, [1], "fp32").latency_s[0]
    assert dyn - static == pytest.approx(1e-5 + 8 * 16 / 1e9, rel=1e-6)


def test_flatten_2d_round_trips_and_is_checked():
    r = kernels.RULES["matmul_add"]
    assert r.flatten_2d
    data = kernels.rule_to_data(kernels.Rule("mine", r.head, r.then, False, True))
    assert data["flatten_2d"] is True and kernels.parse_rule("p.yaml: fusion[0]", data).flatten_2d
    with pytest.raises(UserError, match=r"fusion\[0\]\.flatten_2d: expected true or false"):
        kernels.parse_rule("p.yaml: fusion[0]", {**data, "flatten_2d": "yes"})


def test_a_tensor_read_twice_is_not_fused():
    t = _table([helper.make_node("Conv", ["x", "w"], ["c"], name="conv", kernel_shape=[1, 1]),
                helper.make_node("Relu", ["c"], ["r"], name="relu"),
                helper.make_node("Add", ["r", "c"], ["y"], name="add")],
               [("x", [1, 8, 4, 4])], [_w("w", [8, 8, 1, 1])], "y")
    assert _kernels(t, None)["relu"] == "relu"  # c is also read by the Add: it must be written out


def _profile(**extra):
    d = {"schema_version": 1, "name": "t", "kind": "cpu", "source": "test", "clock_hz": 1e9,
         "mac_units": {"fp32": 1.0}, "vector_ops_per_cycle": {"fp32": 0.1}, "sram_bytes": 1 << 30,
         "dram_bandwidth_bytes_per_s": 1e15}
    d.update(extra)
    return profile_from_dict(d, "test")


def test_conv_bias_is_its_epilogue_not_an_elementwise_pass():
    """The bias-add bug: a Conv with a bias (every torch export, BatchNorm folded in) was charged
    its bias adds at the vector rate / the class efficiency (1.4 ms instead of 0.38 ms for the first
    depthwise conv of MobileNetV2 on this host). By hand, MobileNetV2's first depthwise conv
    (32 channels, 112x112, 3x3) on 1e9 MAC/s, 1e8 element ops/s: MACs 32*112*112*9 = 3,612,672
    -> 3.612672 ms; its 401,408 bias adds would have added 4.01408 ms. The conv with a bias and
    the same conv followed by a BatchNormalization (fused) cost the same compute."""
    w = _w("w", [32, 1, 3, 3])
    biased = _table([helper.make_node("Conv", ["x", "w", "b"], ["y"], name="dw", group=32, kernel_shape=[3, 3],
                                      pads=[1, 1, 1, 1])], [("x", [1, 32, 112, 112])], [w, _w("b", [32])], "y")
    bn = [_w(n, [32]) for n in ("s", "bb", "m", "v")]
    unfolded = _table([helper.make_node("Conv", ["x", "w"], ["c"], name="dw", group=32, kernel_shape=[3, 3],
                                        pads=[1, 1, 1, 1]),
                       helper.make_node("BatchNormalization", ["c", "s", "bb", "m", "v"], ["y"], name="bn")],
                      [("x", [1, 32, 112, 112])], [w, *bn], "y")
    prof = _profile()
    t_biased = roofline.predict(biased, prof, [1], "fp32").latency_s[0]
    t_unfolded = roofline.predict(unfolded, prof, [1], "fp32").latency_s[0]
    assert biased.totals.macs == 3_612_672 and biased.layers[0].non_mac_ops == 401_408
    assert t_biased == pytest.approx(3.612672e-3, rel=1e-6)  # + ns of DRAM time at 1e15 B/s
    # the unfolded form differs by exactly its BatchNormalization's output write (32x112x112 fp32
    # at 1e15 B/s = 1.605632 ns): a fused member's DRAM traffic is its own time, not yet
    # overlapped with the kernel's compute (docs/roofline.md, "Kernels")
    assert t_unfolded - t_biased == pytest.approx(32 * 112 * 112 * 4 / 1e15, rel=1e-6)


def test_fusion_key_in_profiles():
    p = _profile(fusion=["conv_epilogue", {"name": "mine", "head": ["Tanh"], "then": [{"ops": ["Mul"], "other": "any"}]}])
    rules = p.fusion_rules()
    assert [r.name for r in rules] == ["conv_epilogue", "mine"]
    assert profile_from_dict(profile_to_dict(p), "again") == p
    assert _profile().fusion_rules() == (kernels.RULES["epilogue"],)
    for bad, words in ((["nosuch"], "unknown fusion rule 'nosuch'"), ("conv_epilogue", "expected a list"),
                       ([{"name": "x", "head": ["Relu"], "then": [{"ops": ["Add"], "other": "maybe"}]}], "other"),
                       ([{"name": "x", "head": [], "then": [{"ops": ["Add"]}]}], "head"),
                       ([{"name": "x", "head": ["Relu"], "then": [], "extra": 1}], "unknown key 'extra'")):
        with pytest.raises(UserError) as e:
            _profile(fusion=bad)
        assert words in str(e.value) and "fusion" in str(e.value)


def test_rules_change_predictions_as_stated():
    """With the conv_epilogue rule the residual Add and the Relu cost no pass of their own."""
    t = residual()
    plain = roofline.predict(t, _profile(), [1], "fp32")
    fused = roofline.predict(t, _profile(fusion=["conv_epilogue"]), [1], "fp32")
    assert fused.latency_s[0] < plain.latency_s[0]
    conv = 8 * 8 * 8 * 8 / 1e9  # MACs / peak: the conv alone
    assert fused.latency_s[0] == pytest.approx(conv, rel=1e-6)


def test_kernel_classes_of_a_hand_built_graph():
    """The finer kernel classes (docs/roofline.md): a batch-1 classifier Gemm is gemv, a MatMul of
    two activations is attention, a MatMul with a weight over 8 rows is gemm; pooling, reduce,
    normalization and data movement are their own classes; a class a profile does not name takes
    its parent's figures."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    from estimator import hardware
    from estimator.analyze import analyze as analyze_graph
    from estimator.onnx_io import load_graph
    from estimator.ops.base import CLASS_PARENT

    f = TensorProto.FLOAT
    w = numpy_helper.from_array(np.ones((16, 16), np.float32), "W")
    g = numpy_helper.from_array(np.ones((16,), np.float32), "G")
    nodes = [
        helper.make_node("MatMul", ["x", "W"], ["h"], name="proj"),              # (8,16) @ weight
        helper.make_node("Transpose", ["h"], ["ht"], perm=[1, 0], name="tr"),
        helper.make_node("MatMul", ["h", "ht"], ["s"], name="scores"),           # activations only
        helper.make_node("LayerNormalization", ["h", "G"], ["n"], axis=-1, name="ln"),
        helper.make_node("ReduceMean", ["n"], ["r"], axes=[0], keepdims=1, name="pool"),
        helper.make_node("Gemm", ["r", "W"], ["y"], name="head"),               # (1,16): one row
    ]
    graph = helper.make_graph(nodes, "classes", [helper.make_tensor_value_info("x", f, [8, 16])],
                              [helper.make_tensor_value_info("s", f, [8, 8]), helper.make_tensor_value_info("y", f, [1, 16])],
                              initializer=[w, g])
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    table = analyze_graph(load_graph(m))
    cls = {l.name: l.layer_class for l in table.layers}
    assert cls == {"proj": "gemm", "tr": "data", "scores": "attention", "ln": "norm", "pool": "pool", "head": "gemv"}
    # a profile naming only the parents: the children take the parents' figures, not the defaults
    parents = sorted(set(CLASS_PARENT.values()))
    prof = hardware.profile_from_dict({
        "schema_version": 1, "name": "p", "source": "test", "clock_hz": 1e9, "mac_units": {"fp32": 64},
        "sram_bytes": 1 << 20, "dram_bandwidth_bytes_per_s": 1e10, "layer_overhead_s": 1e-6,
        "layer_overhead_by_class_s": {p: 1e-5 * (k + 2) for k, p in enumerate(parents)},
        "efficiency": {"compute": 0.9, "by_layer_class": {p: 0.1 * (k + 2) for k, p in enumerate(parents)}}}, "test")
    for child, parent in CLASS_PARENT.items():
        if child in parents:   # a parent itself (grouped, of grouped_nchw): named, so its own figure
            continue
        k = parents.index(parent)
        assert prof.efficiency.compute_for(child) == pytest.approx(0.1 * (k + 2)), child
        assert prof.overhead_for(child) == pytest.approx(1e-5 * (k + 2)), child
    assert prof.efficiency.compute_for("other") == 0.9 and prof.overhead_for("other") == 1e-6
    # a profile naming only the root of a chain: grouped_nchw -> grouped -> conv_other
    root = hardware.profile_from_dict({
        "schema_version": 1, "name": "p", "source": "test", "clock_hz": 1e9, "mac_units": {"fp32": 64},
        "sram_bytes": 1 << 20, "dram_bandwidth_bytes_per_s": 1e10, "layer_overhead_by_class_s": {"conv_other": 7e-6},
        "efficiency": {"compute": 0.9, "by_layer_class": {"conv_other": 0.4}}}, "test")
    assert root.efficiency.compute_for("grouped_nchw") == 0.4 and root.overhead_for("grouped_nchw") == 7e-6


def test_layout_reorders_match_onnxruntimes_optimized_graph():
    """kernels.layout_reorders counts the layout conversions onnxruntime inserts: on graphs conv ->
    X -> conv (32 channels, 14x14) it finds as many conversions as onnxruntime's optimized graph
    holds ReorderInput/ReorderOutput nodes, for X native (Relu, MaxPool, GlobalAveragePool...) and
    not (Transpose, Slice, a squeeze-excitation broadcast Mul)."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    from estimator import kernels
    from estimator.analyze import analyze as analyze_graph
    from estimator.onnx_io import load_graph

    pytest.importorskip("onnxruntime")
    from estimator.validate.detect import optimized_ops

    rng = np.random.default_rng(0)

    def conv(x, y, name, cin=32, group=1):
        w = numpy_helper.from_array(rng.standard_normal((32, cin // group, 1, 1)).astype(np.float32), name + "_w")
        return helper.make_node("Conv", [x, name + "_w"], [y], name=name, group=group), w

    g8 = numpy_helper.from_array(rng.standard_normal((64, 4, 3, 3)).astype(np.float32), "g8_w")

    C = lambda v, n: numpy_helper.from_array(np.array(v, np.int64), n)  # noqa: E731
    middles = {
        "relu": ([helper.make_node("Relu", ["a"], ["m"], name="r")], []),
        "maxpool": ([helper.make_node("MaxPool", ["a"], ["m"], kernel_shape=[3, 3], pads=[1, 1, 1, 1], name="p")], []),
        "add": ([helper.make_node("Add", ["a", "a"], ["m"], name="add")], []),
        "se_mul": ([helper.make_node("GlobalAveragePool", ["a"], ["s"], name="gap"),
                    helper.make_node("Mul", ["a", "s"], ["m"], name="mul")], []),
        "transpose": ([helper.make_node("Transpose", ["a"], ["m"], perm=[0, 1, 3, 2], name="t")], []),
        "slice_concat": ([helper.make_node("Slice", ["a", "st", "en", "ax"], ["h"], name="sl"),
                          helper.make_node("Concat", ["h", "h"], ["m"], axis=1, name="cat")],
                         [C([0], "st"), C([16], "en"), C([1], "ax")]),
        "concat_spatial": ([helper.make_node("Relu", ["a"], ["h"], name="r"),
                            helper.make_node("Concat", ["a", "h"], ["m"], axis=2, name="cat")], []),
        "concat_24": ([helper.make_node("Slice", ["a", "st", "en", "ax"], ["h"], name="sl"),
                       helper.make_node("Concat", ["h", "h"], ["m"], axis=1, name="cat")],
                      [C([0], "st"), C([24], "en"), C([1], "ax")]),
        # a grouped conv with 4 input and 8 output channels per group (64 -> 64, group 8): NCHW
        "grouped_narrow": ([helper.make_node("Conv", ["a2", "g8_w"], ["m"], name="g", group=8, pads=[1, 1, 1, 1],
                                             kernel_shape=[3, 3])], [g8]),
    }
    cin2 = {"concat_24": 48, "grouped_narrow": 64}
    for name, (mid, extra) in middles.items():
        n1, w1 = conv("x", "a", "c1")
        n2, w2 = conv("m", "y", "c2", cin=cin2.get(name, 32))
        if name == "grouped_narrow":   # c1 makes 32 channels; a 1x1 conv widens them to 64 first
            wide, ww = conv("a", "a2", "wide")
            ww = numpy_helper.from_array(rng.standard_normal((64, 32, 1, 1)).astype(np.float32), "wide_w")
            mid = [wide, *mid]
            extra = [*extra, ww]
        g = helper.make_graph([n1, *mid, n2], name, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 32, 14, 14])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                              initializer=[w1, w2, *extra])
        m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
        m.ir_version = 8
        ops = optimized_ops(m, 2)
        n_ort = sum(o in ("ReorderInput", "ReorderOutput") for o in ops)
        if n_ort == 0:
            pytest.skip("this onnxruntime build does not use the NCHWc layout")
        table = analyze_graph(load_graph(m))
        found = kernels.layout_conversions(table.layers, table.tensor_bytes, table.outputs, block=16)
        n_ours = len(found)
        assert n_ours == n_ort, (name, ops, found)


def _attention_graph():
    """Q K^T / 8 + mask -> Softmax -> P V, then an output projection."""
    return _table([helper.make_node("MatMul", ["q", "kt"], ["s"], name="qk"),
                   helper.make_node("Div", ["s", "d"], ["sd"], name="scale"),
                   helper.make_node("Add", ["sd", "m"], ["sm"], name="mask"),
                   helper.make_node("Softmax", ["sm"], ["p"], name="softmax", axis=-1),
                   helper.make_node("MatMul", ["p", "v"], ["o"], name="pv"),
                   helper.make_node("MatMul", ["o", "wo"], ["y"], name="proj")],
                  [("q", [1, 2, 4, 8]), ("kt", [1, 2, 8, 4]), ("m", [1, 1, 4, 4]), ("v", [1, 2, 4, 8])],
                  [numpy_helper.from_array(np.array(8.0, np.float32), "d"), _w("wo", [8, 8])], "y")


def test_attention_is_one_kernel_whose_members_keep_their_work():
    t = _attention_graph()
    k = _kernels(t, ["matmul_add", "attention"])
    assert k == {"qk": "qk", "scale": "qk", "mask": "qk", "softmax": "qk", "pv": "qk", "proj": "proj"}
    la = roofline.LayerArrays.from_table(t, rules=kernels.rules_for(["matmul_add", "attention"], None))
    names = list(la.names)
    pv, sm = names.index("pv"), names.index("softmax")
    assert la.fused[pv] and la.fused_work[pv] and la.fused_work[sm]
    p = profile_from_dict({"schema_version": 1, "name": "x", "source": "s", "clock_hz": 1e9,
                           "mac_units": {"fp32": 10}, "vector_ops_per_cycle": {"fp32": 10}, "sram_bytes": 1 << 30,
                           "dram_bandwidth_bytes_per_s": 1e18, "layer_overhead_s": 1e-6,
                           "fusion": ["matmul_add", "attention"]}, "x.yaml")
    raw = roofline.evaluate(la, roofline.HwArrays.from_profiles([p], "fp32"), [1])
    assert raw.compute_s[0, 0, pv] == pytest.approx(la.macs[pv] / 1e10)     # P V's MACs are not free
    assert raw.time_s[0, 0, pv] == pytest.approx(raw.compute_s[0, 0, pv])    # but no overhead of its own


def test_attention_needs_its_softmax():
    """MatMul -> MatMul (two projections) is not attention: the P V step needs the Softmax right before."""
    t = _table([helper.make_node("MatMul", ["x", "w1"], ["h"], name="a"),
                helper.make_node("MatMul", ["h", "w2"], ["y"], name="b")],
               [("x", [1, 4, 8])], [_w("w1", [8, 8]), _w("w2", [8, 8])], "y")
    assert _kernels(t, ["attention"]) == {"a": "a", "b": "b"}


def test_written_out_rules_round_trip_exact_and_members_compute():
    r = kernels.RULES["attention"]
    data = kernels.rule_to_data(kernels.Rule("mine", r.head, r.then, True))
    back = kernels.parse_rule("p.yaml: fusion[0]", data)
    assert back.members_compute and back.then[-1].exact and back.then == r.then


def test_the_in_graph_cost_is_paid_once_per_kernel_without_macs():
    """kernel_overhead_in_graph_s: every kernel without MACs of a graph pays it on top of its
    class's fixed cost, a convolution none (measured: it costs inside a graph what it costs alone);
    conv + bias + relu is one conv kernel, conv + add + relu with the default rules three (the Add
    and the Relu pay it)."""
    for table, kernels_n in ((conv_bias_relu(), 0), (residual(), 2)):
        base = roofline.predict(table, _profile(layer_overhead_s=1e-5), [1], "fp32").latency_s[0]
        more = roofline.predict(table, _profile(layer_overhead_s=1e-5, kernel_overhead_in_graph_s=4e-6), [1],
                                "fp32").latency_s[0]
        assert more - base == pytest.approx(kernels_n * 4e-6, rel=1e-9, abs=1e-15)
    with pytest.raises(UserError, match="kernel_overhead_in_graph_s"):
        _profile(kernel_overhead_in_graph_s=-1e-6)


def test_only_kernels_without_macs_split_over_threads_pay_the_in_graph_cost():
    """split_min_ops: with spinning off a kernel the runtime splits over threads wakes one; a kernel
    below the split runs on one thread and pays no in-graph cost, and a contraction pays none even
    when it is split. Conv + Add + Relu at 8 x 8 x 8: the conv has 4096 MACs per sample, the Add
    and Relu 512 element ops each."""
    t = residual()
    def lat(b, **kv):
        return roofline.predict(t, _profile(layer_overhead_s=1e-5, **kv), [b], "fp32").latency_s[0]
    base = lat(1)
    assert lat(1, kernel_overhead_in_graph_s=4e-6) - base == pytest.approx(2 * 4e-6, rel=1e-9)
    # the conv splits (4096 >= 4000 MACs) but pays nothing; the Add and the Relu do not split (512 < 1000 ops)
    split = dict(kernel_overhead_in_graph_s=4e-6, split_min_macs=4000, split_min_ops=1000)
    assert lat(1, **split) - base == pytest.approx(0.0, abs=1e-15)
    # at batch 2 the Add and the Relu (1024 ops per pass) split and pay it
    assert lat(2, **split) - lat(2) == pytest.approx(2 * 4e-6, rel=1e-9)
    with pytest.raises(UserError, match="split_min_ops"):
        _profile(split_min_ops=-1)


def test_a_whole_graphs_weights_cost_their_fetch_on_a_cache_host():
    """weight_fetch_bandwidth_bytes_per_s (weight_residency: cache): a contraction kernel of a whole
    graph reads its weights from DRAM at that rate, not overlapped with its MACs; a graph of one
    kernel whose weights fit in the cache does not."""
    two = _table([helper.make_node("Conv", ["x", "w", "b"], ["c"], name="conv", kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
                  helper.make_node("Conv", ["c", "w2"], ["y"], name="conv2", kernel_shape=[1, 1])],
                 [("x", [1, 8, 8, 8])], [_w("w", [8, 8, 3, 3]), _w("b", [8]), _w("w2", [8, 8, 1, 1])], "y")
    wbytes = (8 * 8 * 9 + 8 + 8 * 8) * 4
    cache = dict(weight_residency="cache")
    base = roofline.predict(two, _profile(**cache), [1, 4], "fp32").latency_s
    fetch = roofline.predict(two, _profile(weight_fetch_bandwidth_bytes_per_s=1e6, **cache), [1, 4], "fp32").latency_s
    # once per pass, whatever the batch
    assert fetch - base == pytest.approx([wbytes / 1e6] * 2, rel=1e-9)
    # one kernel whose weights fit in the cache: no fetch; pinned weights: none either
    one = conv_bias_relu()
    assert roofline.predict(one, _profile(weight_fetch_bandwidth_bytes_per_s=1e6, **cache), [1], "fp32").latency_s[0] == \
        pytest.approx(roofline.predict(one, _profile(**cache), [1], "fp32").latency_s[0], rel=1e-12)
    assert roofline.predict(two, _profile(weight_fetch_bandwidth_bytes_per_s=1e6), [1], "fp32").latency_s[0] == \
        pytest.approx(roofline.predict(two, _profile(), [1], "fp32").latency_s[0], rel=1e-12)


def test_a_hardswish_leaving_the_graph_is_not_folded_into_the_conv():
    """onnxruntime (1.32) folds a HardSwish into the conv before it only when another node reads
    it; as a graph output it runs as HardSigmoid and Mul (Relu folds either way). Every kernel
    sample ends in its activation, so this decides what a HardSwish sample is predicted as."""
    def conv_act(act, tail):
        nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], name="conv", kernel_shape=[1, 1]),
                 helper.make_node(act, ["c"], ["h"], name="act")]
        if tail:
            nodes.append(helper.make_node("GlobalAveragePool", ["h"], ["y"], name="pool"))
        return _table(nodes, [("x", [1, 8, 8, 8])], [_w("w", [8, 8, 1, 1]), _w("b", [8])], "y" if tail else "h")

    for rules in (["epilogue"], ["conv_epilogue"]):
        out = conv_act("HardSwish", False)
        heads = kernels.grouping(out.layers, kernels.rules_for(rules, None), graph_outputs=out.outputs)[0]
        assert heads == [0, 1], rules                       # the HardSwish runs on its own
        assert kernels.grouping(out.layers, kernels.rules_for(rules, None))[0] == [0, 0]   # outputs not given
        inner = conv_act("HardSwish", True)
        assert kernels.grouping(inner.layers, kernels.rules_for(rules, None), graph_outputs=inner.outputs)[0][:2] == [0, 0]
        relu = conv_act("Relu", False)
        assert kernels.grouping(relu.layers, kernels.rules_for(rules, None), graph_outputs=relu.outputs)[0] == [0, 0]
    # the roofline passes the graph's outputs: the lone HardSwish is costed as its own kernel
    out = conv_act("HardSwish", False)
    p = roofline.predict(out, _profile(layer_overhead_s=1e-5), [1], "fp32")
    fused = roofline.predict(conv_act("Relu", False), _profile(layer_overhead_s=1e-5), [1], "fp32")
    assert p.latency_s[0] > fused.latency_s[0] + 1e-5 * 0.999
    # a written-out rule keeps the field
    r = kernels.RULES["epilogue"]
    mine = kernels.Rule("mine", r.head, r.then, unfused_at_output=frozenset({"HardSwish"}))
    back = kernels.parse_rule("p.yaml: fusion[0]", kernels.rule_to_data(mine))
    assert back.unfused_at_output == frozenset({"HardSwish"})
    with pytest.raises(UserError, match="unfused_at_output"):
        kernels.parse_rule("p.yaml: fusion[0]", {**kernels.rule_to_data(mine), "unfused_at_output": "HardSwish"})


# (input channels, output channels, kernel, group) of one-conv probes: whether onnxruntime (1.32,
# 16-lane blocks; checked on an 8-lane AVX2 host too) ran each in NCHWc, as its optimized graph says;
# kernels.runs_blocked at the host's block must agree
_BLOCK_PROBES = [(64, 64, 1, 1), (58, 58, 1, 1), (64, 58, 1, 1), (58, 64, 1, 1), (24, 24, 1, 1), (116, 116, 1, 1),
                 (18, 64, 1, 1), (17, 64, 3, 1), (20, 20, 3, 1), (6, 64, 1, 1), (15, 64, 3, 1), (3, 24, 3, 1),
                 (58, 58, 3, 58), (116, 116, 3, 116), (12, 12, 3, 12), (6, 6, 3, 6), (30, 30, 3, 30),
                 (64, 64, 3, 8), (128, 128, 3, 8), (64, 64, 3, 2), (96, 96, 3, 4), (16, 16, 3, 2),
                 (16, 32, 3, 16), (32, 64, 3, 32), (12, 24, 3, 12),   # depthwise with a channel multiplier: plain
                 (4, 4, 3, 4), (8, 8, 3, 8), (20, 20, 3, 20), (40, 40, 3, 40), (30, 32, 3, 1), (16, 16, 3, 4),
                 (24, 24, 3, 2)]


@pytest.mark.parametrize("cin,cout,k,group", _BLOCK_PROBES)
def test_which_convs_onnxruntime_runs_in_its_blocked_layout(cin, cout, k, group):
    """kernels.runs_blocked against onnxruntime's optimized graph of a one-conv probe, at this host's
    channel block (MLAS's NCHWc block, detect.nchwc_block: 16 fp32 lanes with AVX-512, 8 with AVX2):
    a dense conv of fewer input channels
    than a block or a multiple of 4, a depthwise conv of a multiple of 4, a grouped conv of whole
    blocks per group run in NCHWc; any other as a plain Conv (a depthwise conv with a channel
    multiplier too). On an AVX2 host 15 -> 64 runs plain and groups of 8 or 24 channels blocked, on an
    AVX-512 host the other way round. A grouped conv outside the layout is costed as grouped_nchw,
    a depthwise one as depthwise_nchw."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    from estimator.analyze import analyze as analyze_graph
    from estimator.onnx_io import load_graph

    pytest.importorskip("onnxruntime")
    from estimator.validate.detect import optimized_ops

    w = numpy_helper.from_array(np.ones((cout, cin // group, k, k), np.float32), "w")
    node = helper.make_node("Conv", ["x", "w"], ["y"], name="c", group=group, kernel_shape=[k, k], pads=[k // 2] * 4)
    g = helper.make_graph([node], "probe", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, cin, 14, 14])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], initializer=[w])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    ops = optimized_ops(m, 2)
    if "ReorderOutput" not in ops and not any(o in ("Conv", "FusedConv") for o in ops):
        pytest.skip(f"unexpected optimized graph {ops}")
    ort_blocked = "ReorderOutput" in ops
    (conv,) = analyze_graph(load_graph(m)).layers
    from estimator.validate.detect import _all_flags, nchwc_block

    block = nchwc_block(_all_flags())
    if block is None:
        pytest.skip("not an x86-64 host: onnxruntime's NCHWc block is not known here")
    assert kernels.runs_blocked(conv, block) == ort_blocked, (block, ops)
    # a grouped or depthwise conv outside the layout is costed as grouped_nchw / depthwise_nchw; a dense
    # one keeps its class
    want = (kernels.UNBLOCKED_CLASS.get(conv.layer_class, conv.layer_class) if not ort_blocked else conv.layer_class)
    assert kernels.layout_class(conv, block) == want
    if group == cin and cout != cin:
        assert conv.layer_class == "grouped"   # a channel multiplier: not onnxruntime's depthwise kernel


def test_nchwc_block_follows_onnxruntimes_choice():
    """MLAS's NCHWc block on x86-64: 16 with AVX-512F, else 8 (AVX2 and plain SSE alike); unknown
    elsewhere."""
    from estimator.validate.detect import nchwc_block

    assert nchwc_block(["sse4_2", "avx", "avx2", "fma", "avx512f"], "x86_64") == 16
    assert nchwc_block(["sse4_2", "avx", "avx2", "fma"], "x86_64") == 8
    assert nchwc_block(["sse2"], "AMD64") == 8
    assert nchwc_block(["asimd"], "aarch64") is None


def test_a_blocked_layout_pads_a_dense_convs_input_channels():
    """Under layout nchwc, a 1x1 conv of 116 input channels runs at 116/128 of the rate of one of
    128 (measured: the same time); a depthwise conv, a stem and a conv outside the layout are not
    padded on input; without the layout nothing is."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    from estimator.analyze import analyze as analyze_graph
    from estimator.onnx_io import load_graph

    def conv_table(cin, cout, k, group):
        w = numpy_helper.from_array(np.ones((cout, cin // group, k, k), np.float32), "w")
        node = helper.make_node("Conv", ["x", "w"], ["y"], name="c", group=group, kernel_shape=[k, k], pads=[k // 2] * 4)
        g = helper.make_graph([node], "p", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, cin, 14, 14])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], initializer=[w])
        return analyze_graph(load_graph(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])))

    def conv_layer(*a):
        (l,) = conv_table(*a).layers
        return l

    assert kernels.input_channel_fill(conv_layer(116, 128, 1, 1), 16) == pytest.approx(116 / 128)
    assert kernels.input_channel_fill(conv_layer(40, 128, 3, 1), 16) == pytest.approx(40 / 48)
    assert kernels.input_channel_fill(conv_layer(128, 128, 1, 1), 16) == 1.0
    assert kernels.input_channel_fill(conv_layer(3, 32, 3, 1), 16) == 1.0       # a stem reads NCHW
    assert kernels.input_channel_fill(conv_layer(116, 116, 3, 116), 16) == 1.0  # depthwise
    assert kernels.input_channel_fill(conv_layer(58, 64, 1, 1), 16) == 1.0      # plain NCHW, unpadded
    # through the roofline: per MAC, the 116-channel conv takes 128/116 of the 128-channel one's time
    # under the layout, the same without it
    prof = profile_from_dict({"schema_version": 1, "name": "h", "kind": "cpu", "source": "test", "clock_hz": 1e9,
                              "mac_units": {"fp32": 100.0}, "sram_bytes": 1 << 30, "dram_bandwidth_bytes_per_s": 1e15,
                              "mac_array": {"rows": 1, "cols": 16}}, "test")
    hw = roofline.HwArrays.from_profiles([prof], "fp32")
    per_mac = {}
    for layout in (("nchwc", 16), None):
        for cin in (116, 128):
            t = conv_table(cin, 128, 1, 1)
            raw = roofline.evaluate(roofline.LayerArrays.from_table(t, layout=layout), hw, [1])
            per_mac[layout, cin] = float(raw.compute_s[0, 0].sum()) / t.layers[0].macs
    assert per_mac[("nchwc", 16), 116] / per_mac[("nchwc", 16), 128] == pytest.approx(128 / 116)
    assert per_mac[None, 116] == pytest.approx(per_mac[None, 128])


def test_a_three_channel_stem_reads_nchw_without_a_conversion():
    """An image model's first conv (3 input channels, class conv_stem) reads the NCHW input
    directly: onnxruntime's optimized graph has a ReorderOutput and no ReorderInput, and so does
    kernels.layout_conversions (it had charged the stem a ReorderInput)."""
    from estimator.analyze import analyze as analyze_graph

    pytest.importorskip("onnxruntime")
    from estimator.validate.detect import optimized_ops

    w = numpy_helper.from_array(np.ones((16, 3, 3, 3), np.float32), "w")
    node = helper.make_node("Conv", ["x", "w"], ["y"], name="stem", kernel_shape=[3, 3], strides=[2, 2], pads=[1] * 4)
    g = helper.make_graph([node], "stem", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 32, 32])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], initializer=[w])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    ops = optimized_ops(m, 2)
    table = analyze_graph(load_graph(m))
    assert table.layers[0].layer_class == "conv_stem"
    found = kernels.layout_conversions(table.layers, table.tensor_bytes, table.outputs, block=16)
    assert len(found) == sum(o in ("ReorderInput", "ReorderOutput") for o in ops) == 1, (ops, found)
