"""Single-kernel sample graphs: the shapes `estimate hw detect` times per kernel class and
`estimate calibrate` fits every class from (docs/calibration.md, "Kernel samples").

The way nn-Meter samples kernels: per class, a fixed set of shapes drawn from what real
networks use (channel counts, many not multiples of 16, spatial sizes 7..112, kernel 1/3/5/7,
stride 1/2, depthwise and grouped convolutions, batch-1 classifier heads, transformer GEMMs and
attention matmuls, SE-block broadcasts, channel shuffles). Each sample is a small ONNX graph of
the nodes an exporter writes for that kernel (a convolution carries its folded-BatchNorm bias
and, in some samples, its activation), built here so that detect (which times it with
onnxruntime, in validate/) and calibrate (which analyzes it with the cost model) use the same
graph. Pure: builds ModelProtos, no I/O, no onnxruntime.

A spec is a plain dict (it is written to the samples file and read back): {"class", "op", ...}.
The set is deterministic (a seeded draw), so two detections of one host time the same shapes.
"""

from __future__ import annotations

from typing import Any

import numpy as np

SCHEMA = "estimate-kernel-samples"
SCHEMA_VERSION = 1
#: the batches every sample is timed at (a batch-1 and a batch-4 point pin rate and overhead)
BATCHES = (1, 4)
#: no sample does more than this many MACs (or element ops) at batch 1: keeps the set to a
#: couple of minutes on a 2-core host
MAX_WORK = 4e8

_CH = (16, 24, 32, 40, 48, 58, 64, 72, 96, 116, 120, 128, 144, 160, 192, 232, 240, 256, 320, 384, 464,
       480, 512, 576, 672, 768, 960, 1024)
_HW = (7, 14, 28, 56, 112)
_ACTS = (None, "Relu", "Relu", "Clip", "HardSwish")


def _draw(rng: np.random.Generator, n: int, make, ok) -> list[dict]:
    out: list[dict] = []
    seen: set = set()
    tries = 0
    while len(out) < n and tries < 200 * n:
        tries += 1
        s = make(rng)
        key = tuple(sorted(s.items(), key=lambda kv: kv[0]))
        if key in seen or not ok(s):
            continue
        seen.add(key)
        out.append(s)
    return out


def _c(rng, lo=0, hi=None):
    ch = _CH[lo:hi]
    return int(ch[rng.integers(len(ch))])


def _conv_macs(s: dict) -> float:
    ho = -(-s["hw"] // s["stride"])
    return float(s["cout"]) * ho * ho * (s["cin"] // s["group"]) * s["k"] ** 2


def sample_specs(quick: bool = False) -> list[dict]:
    """The sample set: a list of specs, deterministic. quick: about a third of it."""
    rng = np.random.default_rng(13)
    n = (lambda k: max(2, k // 3)) if quick else (lambda k: k)
    conv_ok = lambda s: 2e5 <= _conv_macs(s) <= MAX_WORK  # noqa: E731
    specs: list[dict] = []

    def conv(cls, k, group_of, count, stride=(1, 1, 2), cin=None):
        def make(r):
            ci = cin if cin is not None else _c(r)
            co = _c(r)
            g = group_of(r, ci)
            if g > 1 and g == ci:
                co = ci
            return {"class": cls, "op": "conv", "cin": ci, "cout": co, "hw": int(r.choice(_HW)), "k": k,
                    "stride": int(r.choice(stride)), "group": g, "act": r.choice(_ACTS)}
        specs.extend(_draw(rng, n(count), make, conv_ok))

    one = lambda r, c: 1  # noqa: E731
    conv("conv1x1", 1, one, 24, stride=(1,))
    # a residual block's last convolution: Conv + bias, then Add of the block input (+ Relu)
    def residual(r):
        c, k = _c(r), int(r.choice((1, 3)))
        return {"class": "conv1x1" if k == 1 else "conv3x3", "op": "conv", "cin": _c(r) if k == 1 else c, "cout": c,
                "hw": int(r.choice(_HW)), "k": k, "stride": 1, "group": 1, "act": r.choice((None, "Relu")),
                "residual": True}
    specs.extend(_draw(rng, n(8), residual, conv_ok))
    conv("conv3x3", 3, one, 16)
    conv("conv_stem", 3, one, 3, stride=(2,), cin=3)         # the stem: 3 input channels
    conv("conv_other", 5, one, 4)
    conv("conv_stem", 7, one, 2, stride=(2,), cin=3)
    # grouped (RegNet, ResNeXt): group width 8..64
    def grouped(r):   # RegNet's and ResNeXt's: width = groups x group width, in = out
        gw, g = int(r.choice((8, 16, 24, 32, 64))), int(r.choice((2, 3, 4, 6, 8, 12, 16, 24)))
        return {"class": "grouped", "op": "conv", "cin": g * gw, "cout": g * gw, "hw": int(r.choice(_HW)), "k": 3,
                "stride": int(r.choice((1, 1, 2))), "group": g, "act": r.choice(_ACTS)}
    specs.extend(_draw(rng, n(8), grouped, conv_ok))
    conv("depthwise", 3, lambda r, c: c, 14)
    conv("depthwise", 5, lambda r, c: c, 6)

    def gemm_ok(s):
        return 2e4 <= s["rows"] * s["k"] * s["n"] <= MAX_WORK

    # transformer projections and MLPs: rows = sequence length per sample
    specs.extend(_draw(rng, n(10), lambda r: {"class": "gemm", "op": "matmul", "rows": int(r.choice((49, 64, 128, 196))),
                                              "k": int(r.choice((256, 384, 512, 768, 1024, 3072))),
                                              "n": int(r.choice((256, 384, 768, 1024, 1536, 3072)))}, gemm_ok))
    # batch-1 classifier heads and MLP layers: one row per sample
    specs.extend(_draw(rng, n(8), lambda r: {"class": "gemv", "op": "gemm", "rows": 1,
                                             "k": int(r.choice((256, 512, 576, 768, 1024, 1280, 2048, 4096, 9216))),
                                             "n": int(r.choice((10, 1000, 1024, 4096)))}, gemm_ok))
    # squeeze-excitation convolutions: 1x1 convs on a globally pooled (1 x 1) map, C -> C/4 -> C
    def se_conv(r):
        c = _c(r, 2)
        sq = max(8, c // 4)
        cin, cout = (c, sq) if r.random() < 0.5 else (sq, c)
        return {"class": "gemv", "op": "conv", "cin": cin, "cout": cout, "hw": 1, "k": 1, "stride": 1, "group": 1,
                "act": r.choice(("Relu", "HardSigmoid", None))}
    specs.extend(_draw(rng, n(8), se_conv, lambda s: True))
    specs.extend(_draw(rng, n(8), lambda r: {"class": "attention", "op": "attention",
                                             "heads": int(r.choice((3, 6, 12))), "seq": int(r.choice((49, 64, 128, 196))),
                                             "dim": int(r.choice((32, 64))), "which": str(r.choice(("qk", "pv")))},
                       lambda s: True))

    def act_map(r):
        return {"c": _c(r), "hw": int(r.choice(_HW))}

    def ew_ok(s):
        return 1e3 <= s["c"] * s["hw"] ** 2 <= MAX_WORK / 4

    for op, count in (("add", 6), ("mul_bcast", 5), ("sigmoid", 3), ("hardswish", 3), ("relu", 2), ("silu", 4),
                      ("gelu", 3)):
        specs.extend(_draw(rng, n(count), lambda r, op=op: {"class": "elementwise", "op": op, **act_map(r)}, ew_ok))
    for op, count in (("gap", 5), ("maxpool", 3), ("avgpool", 2)):
        specs.extend(_draw(rng, n(count), lambda r, op=op: {"class": "pool", "op": op, **act_map(r)}, ew_ok))
    specs.extend(_draw(rng, n(4), lambda r: {"class": "norm", "op": "layernorm", "c": int(r.choice((96, 192, 384, 768))),
                                             "hw": int(r.choice((7, 8, 11, 14)))}, lambda s: True))
    specs.extend(_draw(rng, n(3), lambda r: {"class": "norm", "op": "softmax", "c": int(r.choice((3, 6, 12))),
                                             "hw": int(r.choice((7, 8, 11, 14)))}, lambda s: True))
    for op, count in (("concat", 5), ("shuffle", 4), ("slice", 3)):
        specs.extend(_draw(rng, n(count), lambda r, op=op: {"class": "data", "op": op, **act_map(r)},
                           lambda s: ew_ok(s) and s["c"] % 2 == 0))
    # onnxruntime runs a grouped conv in its blocked layout only when a group's channels fill
    # whole blocks (group width 16, 32, 48, 64: RegNet-X's), else as a plain per-group conv
    # (kernels.runs_blocked): two kernels, costed as two classes on such a host; the draw above
    # has few of the blocked kind, so more of them (and of the plain kind) are drawn here, last,
    # leaving the samples above as they were
    def grouped_wide(r):
        gw, g = int(r.choice((16, 16, 32, 48, 64, 12, 20))), int(r.choice((2, 4, 5, 8, 10, 16, 25)))
        return {"class": "grouped", "op": "conv", "cin": g * gw, "cout": g * gw, "hw": int(r.choice(_HW[:4])), "k": 3,
                "stride": int(r.choice((1, 1, 2))), "group": g, "act": r.choice((None, "Relu"))}
    specs.extend(_draw(rng, n(10), grouped_wide, lambda s: conv_ok(s) and s["cin"] <= 1024))
    # a depthwise conv whose channels are not a multiple of 4 (ShuffleNetV2's 58 and 122) runs
    # outside the blocked layout as a plain per-channel conv (class depthwise_nchw); the draws
    # above have one of them, so these, last, leave the samples above as they were
    def depthwise_plain(r):
        c = int(r.choice((58, 122, 18, 30, 90, 174, 42, 66)))
        return {"class": "depthwise", "op": "conv", "cin": c, "cout": c, "hw": int(r.choice(_HW[:4])),
                "k": int(r.choice((3, 3, 3, 5))), "stride": int(r.choice((1, 1, 2))), "group": c,
                "act": r.choice((None, "Relu"))}
    specs.extend(_draw(rng, n(8), depthwise_plain, conv_ok))
    for i, s in enumerate(specs):
        s["id"] = f"{s['class']}/{i:03d}"
    return specs


# ----------------------------------------------------------------------------- graphs


def build(spec: dict, batch: int) -> tuple[Any, dict[str, tuple[tuple[int, ...], str]]]:
    """(ModelProto, {input name: (shape, numpy dtype)}) of one sample at `batch`."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    F = TensorProto.FLOAT
    op = spec["op"]
    nodes: list = []
    inits: list = []
    feeds: dict[str, tuple[tuple[int, ...], str]] = {}

    def init(name, shape, scale=0.1):
        inits.append(numpy_helper.from_array((rng.standard_normal(shape) * scale).astype(np.float32), name))

    def inp(name, shape):
        feeds[name] = (tuple(int(d) for d in shape), "float32")

    b = batch
    if op == "conv":
        ci, co, hw, k, st, g = (spec[x] for x in ("cin", "cout", "hw", "k", "stride", "group"))
        inp("x", (b, ci, hw, hw))
        init("w", (co, ci // g, k, k))
        init("bias", (co,))
        nodes.append(helper.make_node("Conv", ["x", "w", "bias"], ["c"], name="conv", kernel_shape=[k, k],
                                      pads=[k // 2] * 4, strides=[st, st], group=g))
        last = "c"
        act = spec.get("act")
        if act == "Clip":   # ReLU6 as torch exports it: Clip(min 0, max 6) with constant inputs
            inits.append(numpy_helper.from_array(np.array(0.0, np.float32), "lo"))
            inits.append(numpy_helper.from_array(np.array(6.0, np.float32), "hi"))
            nodes.append(helper.make_node("Clip", ["c", "lo", "hi"], ["y"], name="act"))
            last = "y"
        elif act:
            nodes.append(helper.make_node(act, ["c"], ["y"], name="act"))
            last = "y"
        if spec.get("residual"):    # the block's input, from another branch
            if spec["residual"] == "branch":   # computed by a 1x1 conv of the same input (a downsample)
                init("w_skip", (co, ci, 1, 1))
                nodes.append(helper.make_node("Conv", ["x", "w_skip"], ["skip"], name="skip_conv", kernel_shape=[1, 1],
                                              strides=[st, st]))
                if act:
                    nodes[-2], nodes[-1] = nodes[-1], nodes[-2]   # keep the activation last, to be popped
            else:                              # a second graph input
                inp("skip", (b, co, -(-hw // st), -(-hw // st)))
            pre = "c"
            if act:                 # the activation comes after the add in a residual block
                nodes.pop()
            nodes.append(helper.make_node("Add", [pre, "skip"], ["s"], name="residual_add"))
            last = "s"
            if act:
                nodes.append(helper.make_node(act if act != "Clip" else "Relu", ["s"], ["y"], name="act"))
                last = "y"
        out = last
    elif op in ("matmul", "gemm"):
        rows, k, n = spec["rows"], spec["k"], spec["n"]
        if op == "matmul":
            inp("x", (b, rows, k))
            init("w", (k, n))
            init("bias", (n,))
            nodes += [helper.make_node("MatMul", ["x", "w"], ["m"], name="matmul"),
                      helper.make_node("Add", ["m", "bias"], ["y"], name="bias_add")]
        else:
            inp("x", (b, k))
            init("w", (n, k))
            init("bias", (n,))
            nodes.append(helper.make_node("Gemm", ["x", "w", "bias"], ["y"], name="gemm", transB=1))
        out = "y"
        if spec.get("act"):
            nodes[-1].output[0] = "pre"
            nodes.append(helper.make_node(spec["act"], ["pre"], ["y"], name="act"))
    elif op == "attention":
        h, s, d = spec["heads"], spec["seq"], spec["dim"]
        if spec["which"] == "qk":
            inp("q", (b, h, s, d))
            inp("kt", (b, h, d, s))
            nodes.append(helper.make_node("MatMul", ["q", "kt"], ["y"], name="scores"))
        else:
            inp("p", (b, h, s, s))
            inp("v", (b, h, s, d))
            nodes.append(helper.make_node("MatMul", ["p", "v"], ["y"], name="context"))
        out = "y"
    elif op in ("layernorm", "softmax"):
        c, hw = spec["c"], spec["hw"]
        if op == "layernorm":        # (batch, tokens, channels)
            inp("x", (b, hw * hw, c))
            init("gamma", (c,))
            init("beta", (c,))
            nodes.append(helper.make_node("LayerNormalization", ["x", "gamma", "beta"], ["y"], name="ln", axis=-1))
        else:                        # attention probabilities (batch, heads, tokens, tokens)
            inp("x", (b, c, hw * hw, hw * hw))
            nodes.append(helper.make_node("Softmax", ["x"], ["y"], name="softmax", axis=-1))
        out = "y"
    else:
        c, hw = spec["c"], spec["hw"]
        x = (b, c, hw, hw)
        inp("x", x)
        out = "y"
        if op == "add":
            inp("x2", x)
            nodes.append(helper.make_node("Add", ["x", "x2"], ["y"], name="add"))
        elif op == "mul_bcast":     # squeeze-excitation scale: (b, c, h, w) * (b, c, 1, 1)
            inp("s", (b, c, 1, 1))
            nodes.append(helper.make_node("Mul", ["x", "s"], ["y"], name="scale"))
        elif op == "silu":          # x * sigmoid(x), as torch exports SiLU / Swish
            nodes += [helper.make_node("Sigmoid", ["x"], ["sg"], name="sigmoid"),
                      helper.make_node("Mul", ["x", "sg"], ["y"], name="silu_mul")]
        elif op == "gelu":          # GELU written out with Erf, as torch exports it
            for nm, v in (("sqrt2", 1.4142135), ("one", 1.0), ("half", 0.5)):
                inits.append(numpy_helper.from_array(np.array(v, np.float32), nm))
            nodes += [helper.make_node("Div", ["x", "sqrt2"], ["d"], name="gelu_div"),
                      helper.make_node("Erf", ["d"], ["e"], name="gelu_erf"),
                      helper.make_node("Add", ["e", "one"], ["a"], name="gelu_add"),
                      helper.make_node("Mul", ["x", "a"], ["m"], name="gelu_mul"),
                      helper.make_node("Mul", ["m", "half"], ["y"], name="gelu_half")]
        elif op in ("sigmoid", "hardswish", "relu"):
            nodes.append(helper.make_node({"sigmoid": "Sigmoid", "hardswish": "HardSwish", "relu": "Relu"}[op],
                                          ["x"], ["y"], name=op))
        elif op == "gap":
            nodes.append(helper.make_node("GlobalAveragePool", ["x"], ["y"], name="gap"))
        elif op == "maxpool":
            nodes.append(helper.make_node("MaxPool", ["x"], ["y"], name="maxpool", kernel_shape=[3, 3],
                                          strides=[2, 2], pads=[1, 1, 1, 1]))
        elif op == "avgpool":
            nodes.append(helper.make_node("AveragePool", ["x"], ["y"], name="avgpool", kernel_shape=[2, 2],
                                          strides=[2, 2]))
        elif op == "concat":
            inp("x2", x)
            nodes.append(helper.make_node("Concat", ["x", "x2"], ["y"], name="concat", axis=1))
        elif op == "shuffle":       # ShuffleNet's channel shuffle, as exported: reshape, transpose, reshape
            inits.append(numpy_helper.from_array(np.array([b, 2, c // 2, hw, hw], np.int64), "s5"))
            inits.append(numpy_helper.from_array(np.array([b, c, hw, hw], np.int64), "s4"))
            nodes += [helper.make_node("Reshape", ["x", "s5"], ["r"], name="split_groups"),
                      helper.make_node("Transpose", ["r"], ["t"], name="shuffle", perm=[0, 2, 1, 3, 4]),
                      helper.make_node("Reshape", ["t", "s4"], ["y"], name="merge_groups")]
        elif op == "concat_bn":     # conv -> Concat(y, y) -> BatchNormalization -> Relu (a fusion probe)
            init("w", (c, c, 1, 1))
            init("bias", (c,))
            for nm, v in (("bn_s", 1.0), ("bn_b", 0.0), ("bn_m", 0.0), ("bn_v", 1.0)):
                inits.append(numpy_helper.from_array(np.full(2 * c, v, np.float32), nm))
            nodes += [helper.make_node("Conv", ["x", "w", "bias"], ["cv"], name="conv", kernel_shape=[1, 1]),
                      helper.make_node("Concat", ["cv", "cv"], ["cc"], name="concat", axis=1),
                      helper.make_node("BatchNormalization", ["cc", "bn_s", "bn_b", "bn_m", "bn_v"], ["bn"], name="bn"),
                      helper.make_node("Relu", ["bn"], ["y"], name="relu")]
        elif op == "slice":         # the channel split before a ShuffleNet branch
            for nm, v in (("st", [c // 2]), ("en", [c]), ("ax", [1])):
                inits.append(numpy_helper.from_array(np.array(v, np.int64), nm))
            nodes.append(helper.make_node("Slice", ["x", "st", "en", "ax"], ["y"], name="slice"))
        else:
            raise ValueError(f"unknown kernel sample op {op!r}")
    inputs = [helper.make_tensor_value_info(n, F, list(s)) for n, (s, _) in feeds.items()]
    graph = helper.make_graph(nodes, f"kernel_{spec.get('id', op)}", inputs,
                              [helper.make_tensor_value_info(out, F, None)], initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model, feeds


#: One probe graph per fusion rule of estimator/kernels.py: (spec, the op types that disappear
#: from onnxruntime's optimized graph when the runtime fuses the pattern). `estimate hw detect`
#: runs each and writes the rules it confirmed into the profile's `fusion`.
FUSION_PROBES: dict[str, tuple[dict, tuple[str, ...]]] = {
    "epilogue": ({"op": "conv", "cin": 32, "cout": 32, "hw": 14, "k": 3, "stride": 1, "group": 1, "act": "Relu"},
                 ("Relu",)),
    "conv_epilogue": ({"op": "conv", "cin": 32, "cout": 32, "hw": 14, "k": 3, "stride": 1, "group": 1, "act": "Relu",
                       "residual": "branch"}, ("Add", "Relu")),
    "gemm_activation": ({"op": "gemm", "rows": 1, "k": 64, "n": 64, "act": "Relu"}, ("Relu",)),
    "matmul_add": ({"op": "matmul", "rows": 16, "k": 64, "n": 64}, ("Add",)),
    "silu": ({"op": "silu", "c": 16, "hw": 14}, ("Sigmoid", "Mul")),
    "gelu_erf": ({"op": "gelu", "c": 16, "hw": 14}, ("Erf",)),
    "bn_activation": ({"op": "concat_bn", "c": 32, "hw": 14}, ("BatchNormalization", "Relu")),
}
