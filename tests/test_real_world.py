"""The shape computations of real framework exports, one small hand-built graph per pattern,
each with its hand-computed MACs; and every file of ../shared/corpus against its ground truth.

The patterns are written as torch.onnx.export (TorchScript, opset 17, dynamic batch) writes
them: sizes read with Shape -> Gather, arithmetic on them (Div, Mul, Add), Unsqueeze ->
Concat into a shape vector, and masks from Range/Equal/Where/Expand. Where ONNX's own shape
inference stops on a pattern, the test says so (`onnx_alone_stops`), so that it is known to
exercise the completion in estimator/onnx_shapes.py and not inference alone.
"""

from __future__ import annotations

import json
import os

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from estimator import api
from estimator.onnx_io import load_graph

from conftest import run_cli

OPSET = 17


class G:
    """A tiny graph builder: nodes, constant initializers, a name counter."""

    def __init__(self):
        self.nodes, self.inits, self.k = [], [], 0

    def name(self, base):
        self.k += 1
        return f"{base}_{self.k}"

    def const(self, value, dtype=np.int64):
        n = self.name("c")
        self.inits.append(numpy_helper.from_array(np.asarray(value, dtype=dtype), n))
        return n

    def weight(self, shape):
        """A graph-only float weight (dims and type, no payload), like the corpus files."""
        n = self.name("w")
        t = TensorProto()
        t.name, t.data_type = n, TensorProto.FLOAT
        t.dims.extend(shape)
        self.inits.append(t)
        return n

    def op(self, op_type, inputs, n_out=1, **attrs):
        outs = [self.name(op_type.lower()) for _ in range(n_out)]
        self.nodes.append(helper.make_node(op_type, list(inputs), outs, name=self.name(op_type), **attrs))
        return outs[0] if n_out == 1 else outs

    def dim(self, x, i):
        """Size of dim i of x as a 1-element int64 vector (Shape -> Gather -> Unsqueeze)."""
        s = self.op("Shape", [x])
        g = self.op("Gather", [s, self.const(i)], axis=0)
        return self.op("Unsqueeze", [g, self.const([0])])

    def model(self, inputs, outputs):
        g = helper.make_graph(self.nodes, "pattern", inputs,
                              [helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in outputs], self.inits)
        return helper.make_model(g, opset_imports=[helper.make_opsetid("", OPSET)])


def onnx_alone_stops(model, tensor, batch=1):
    """True when ONNX shape inference (data propagation on), given the input dims, does not
    know the shape of `tensor`."""
    m = onnx.ModelProto()
    m.CopyFrom(model)
    for vi in m.graph.input:
        vi.type.tensor_type.shape.dim[0].dim_value = batch
    inferred = onnx.shape_inference.infer_shapes(m, data_prop=True)
    for vi in inferred.graph.value_info:
        if vi.name == tensor:
            dims = vi.type.tensor_type.shape.dim
            return not dims or any(not d.HasField("dim_value") for d in dims)
    return True


def costed(model, batch=1):
    t = api._analyze_graph(load_graph(model, batch=batch), batch=batch)
    assert not t.totals.uncosted_ops and not t.totals.unsupported_ops, (t.totals.uncosted_ops, t.totals.unsupported_ops)
    assert t.totals.uncosted_layers == 0
    assert all(l.status == "ok" and (l.output_shape is not None) for l in t.layers), \
        [(l.name, l.status, l.note) for l in t.layers if l.status != "ok"]
    return t


# ----------------------------------------------------------------------------- patterns


def channel_shuffle_model(c=8, hw=6, groups=2, k=16):
    """ShuffleNetV2's unit as torchvision exports it: `x.chunk(2, dim=1)` as two Slices whose
    bounds are C // 2 * 0, C // 2 * 1, C // 2 * 2 (Div and Mul of a Shape value), a 1x1 conv on
    the second half, Concat, then the channel shuffle: sizes from Shape, C // groups by Div
    and two Casts, the 5-D view and the 4-D view back from Concat'd shape vectors."""
    b = G()
    x = "x"
    half = b.op("Div", [b.dim(x, 1), b.const([2])])
    bounds = [b.op("Mul", [half, b.const([i])]) for i in range(3)]
    left = b.op("Slice", [x, bounds[0], bounds[1], b.const([1])])
    right = b.op("Slice", [x, bounds[1], bounds[2], b.const([1])])
    conv = b.op("Conv", [right, b.weight([c // 2, c // 2, 1, 1])], kernel_shape=[1, 1])
    y = b.op("Concat", [left, conv], axis=1)
    n, ch, h, w = (b.dim(y, i) for i in range(4))
    per = b.op("Cast", [b.op("Cast", [b.op("Div", [ch, b.const([groups])])], to=TensorProto.INT64)], to=TensorProto.INT64)
    v = b.op("Reshape", [y, b.op("Concat", [n, b.const([groups]), per, h, w], axis=0)])
    t = b.op("Transpose", [v], perm=[0, 2, 1, 3, 4])
    z = b.op("Reshape", [t, b.op("Concat", [n, b.const([-1]), h, w], axis=0)])
    out = b.op("Conv", [z, b.weight([k, c, 1, 1])], kernel_shape=[1, 1])
    m = b.model([helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", c, hw, hw])], [out])
    return m, out


def test_channel_shuffle():
    m, conv = channel_shuffle_model()
    assert onnx_alone_stops(m, conv)
    for batch in (1, 3):
        t = costed(m, batch)
        # the 1x1 conv on the half (4 -> 4 channels) and the one after the shuffle (8 -> 16), at 6x6
        assert t.totals.macs == batch * 36 * (4 * 4 + 8 * 16)
        assert t.totals.max_activation_elems == batch * 16 * 36


def shifted_window_model(hw=8, c=4, win=4, shift=2, heads=2):
    """Swin's shifted-window attention as torchvision exports it: pad to a multiple of the
    window (pads computed from Shape through Cast), a roll as Slice + Concat, the window
    partition by Reshape/Transpose with sizes from Div, attention per window (q @ k^T, p @ v),
    and the shift mask from Range, Div, Equal and Where."""
    b = G()
    x = "x"  # (N, H, W, C)
    h, w = b.dim(x, 1), b.dim(x, 2)
    # pad_b = (win - H % win) % win, as Mod/Sub; pads in ONNX order, cast to int64
    pad_b = b.op("Mod", [b.op("Sub", [b.const([win]), b.op("Mod", [h, b.const([win])])]), b.const([win])])
    pad_r = b.op("Mod", [b.op("Sub", [b.const([win]), b.op("Mod", [w, b.const([win])])]), b.const([win])])
    zeros = b.const([0])
    pads = b.op("Cast", [b.op("Concat", [zeros, zeros, zeros, zeros, zeros, pad_b, pad_r, zeros], axis=0)], to=TensorProto.INT64)
    xp = b.op("Pad", [x, pads], mode="constant")
    hp, wp = b.dim(xp, 1), b.dim(xp, 2)
    # roll by -shift on H and W: Slice + Concat, with ends from the padded sizes
    big = b.const([1 << 62])
    r1 = b.op("Concat", [b.op("Slice", [xp, b.const([shift]), big, b.const([1])]),
                         b.op("Slice", [xp, zeros, b.const([shift]), b.const([1])])], axis=1)
    r2 = b.op("Concat", [b.op("Slice", [r1, b.const([shift]), big, b.const([2])]),
                         b.op("Slice", [r1, zeros, b.const([shift]), b.const([2])])], axis=2)
    n = b.dim(x, 0)
    nh = b.op("Div", [hp, b.const([win])])
    nw = b.op("Div", [wp, b.const([win])])
    part = b.op("Reshape", [r2, b.op("Concat", [n, nh, b.const([win]), nw, b.const([win]), b.const([c])], axis=0)])
    part = b.op("Transpose", [part], perm=[0, 1, 3, 2, 4, 5])
    tokens = b.op("Reshape", [part, b.const([-1, win * win, c])])           # (N*nW, 16, C)
    qkv = b.op("MatMul", [tokens, b.weight([c, 3 * c])])                      # (N*nW, 16, 3C)
    qkv = b.op("Reshape", [qkv, b.op("Concat", [b.dim(qkv, 0), b.dim(qkv, 1), b.const([3, heads, c // heads])], axis=0)])
    qkv = b.op("Transpose", [qkv], perm=[2, 0, 3, 1, 4])                      # (3, B, heads, 16, d)
    q, k, v = (b.op("Gather", [qkv, b.const(i)], axis=0) for i in range(3))
    scores = b.op("MatMul", [q, b.op("Transpose", [k], perm=[0, 1, 3, 2])])  # (B, heads, 16, 16)
    # the shift mask: window-region ids from Range over the padded sizes, compared by Equal
    ids_h = b.op("Div", [b.op("Range", [b.const(0), b.op("Squeeze", [hp, b.const([0])]), b.const(1)]), b.const(win)])
    ids_w = b.op("Div", [b.op("Range", [b.const(0), b.op("Squeeze", [wp, b.const([0])]), b.const(1)]), b.const(win)])
    region = b.op("Add", [b.op("Mul", [b.op("Unsqueeze", [ids_h, b.const([1])]), b.const(3)]),
                          b.op("Unsqueeze", [ids_w, b.const([0])])])          # (Hp, Wp)
    rw = b.op("Reshape", [region, b.op("Concat", [nh, b.const([win]), nw, b.const([win])], axis=0)])
    rw = b.op("Reshape", [b.op("Transpose", [rw], perm=[0, 2, 1, 3]), b.const([-1, win * win])])  # (nW, 16)
    same = b.op("Equal", [b.op("Unsqueeze", [rw, b.const([1])]), b.op("Unsqueeze", [rw, b.const([2])])])
    mask = b.op("Where", [same, b.const(0.0, np.float32), b.const(-100.0, np.float32)])  # (nW, 16, 16)
    nwin = b.op("Mul", [nh, nw])
    s5 = b.op("Reshape", [scores, b.op("Concat", [b.const([-1]), nwin, b.const([heads, win * win, win * win])], axis=0)])
    s5 = b.op("Add", [s5, b.op("Unsqueeze", [b.op("Unsqueeze", [mask, b.const([1])]), b.const([0])])])
    probs = b.op("Softmax", [b.op("Reshape", [s5, b.const([-1, heads, win * win, win * win])])], axis=-1)
    out = b.op("MatMul", [probs, v])                                          # (B, heads, 16, d)
    m = b.model([helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", hw - 2, hw - 2, c])], [out])
    return m, out, scores


def test_shifted_window_partition():
    hw, c, win, heads = 8, 4, 4, 2
    m, out, scores = shifted_window_model(hw=hw, c=c, win=win, heads=heads)
    assert onnx_alone_stops(m, out) and onnx_alone_stops(m, scores)
    for batch in (1, 2):
        t = costed(m, batch)
        windows = batch * (hw // win) ** 2          # 6x6 input padded to 8x8: 4 windows
        tokens = windows * win * win
        d = c // heads
        qkv = tokens * c * 3 * c
        attn = 2 * windows * heads * (win * win) * (win * win) * d   # q @ k^T and p @ v
        assert t.totals.macs == qkv + attn


def mask_construction_model(s=8, d=8, heads=2):
    """Recent transformers' encoder mask: position ids sliced from the registered buffer
    (1, max_positions) up to the sequence length (Slice with an end from Shape), the padding mask expanded to (N, 1, S, S) by Expand of a Concat'd shape, combined with a
    causal comparison (GreaterOrEqual, And) and turned into additive form by Where; then one
    attention head block (q/k/v projections, q @ k^T, softmax, p @ v)."""
    b = G()
    ids, am = "input_ids", "attention_mask"
    n, sl = b.dim(ids, 0), b.dim(ids, 1)
    pos = b.op("Slice", [b.const(np.arange(64)[None, :]), b.const([0]), sl, b.const([1])])   # (1, S)
    emb = b.op("Add", [b.op("Gather", [b.weight([100, d]), ids], axis=0),
                       b.op("Gather", [b.weight([64, d]), pos], axis=0)])     # (N, S, d)
    full = b.op("Concat", [n, b.const([1]), sl, sl], axis=0)
    pad = b.op("Expand", [b.op("Cast", [b.op("Unsqueeze", [am, b.const([1, 2])])], to=TensorProto.BOOL), full])
    rng = b.op("Range", [b.const(0), b.op("Squeeze", [sl, b.const([0])]), b.const(1)])
    causal = b.op("GreaterOrEqual", [b.op("Unsqueeze", [rng, b.const([1])]), b.op("Unsqueeze", [rng, b.const([0])])])
    keep = b.op("And", [pad, causal])
    add = b.op("Where", [keep, b.const(0.0, np.float32), b.const(-3.0e38, np.float32)])  # (N, 1, S, S)
    dh = d // heads
    split = b.op("Concat", [n, b.const([-1, heads, dh])], axis=0)

    def proj():
        p = b.op("Reshape", [b.op("MatMul", [emb, b.weight([d, d])]), split])
        return b.op("Transpose", [p], perm=[0, 2, 1, 3])                    # (N, heads, S, dh)

    q, k, v = proj(), proj(), proj()
    scores = b.op("Add", [b.op("MatMul", [q, b.op("Transpose", [k], perm=[0, 1, 3, 2])]), add])
    out = b.op("MatMul", [b.op("Softmax", [scores], axis=-1), v])
    ins = [helper.make_tensor_value_info(ids, TensorProto.INT64, ["batch", s]),
           helper.make_tensor_value_info(am, TensorProto.INT64, ["batch", s])]
    return b.model(ins, [out]), out


def test_transformers_mask_construction():
    s, d, heads = 8, 8, 2
    m, out = mask_construction_model(s=s, d=d, heads=heads)
    for batch in (1, 4):
        t = costed(m, batch)
        proj = 3 * batch * s * d * d
        attn = 2 * batch * heads * s * s * (d // heads)
        assert t.totals.macs == proj + attn
        # parameters: the two embedding tables and three projections; the boolean masks the
        # graph computes are not parameters
        assert t.totals.params == 100 * d + 64 * d + 3 * d * d


def test_expand_of_a_computed_shape():
    """x (N, 1, D) expanded to (N, S, D) with S read from another input's Shape, then a
    projection: MACs = N * S * D * E."""
    b = G()
    n, sl = b.dim("ids", 0), b.dim("ids", 1)
    e = b.op("Expand", ["x", b.op("Concat", [n, sl, b.const([1])], axis=0)])
    y = b.op("MatMul", [e, b.weight([6, 5])])
    m = b.model([helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 1, 6]),
                 helper.make_tensor_value_info("ids", TensorProto.INT64, ["batch", 7])], [y])
    for batch in (1, 2):
        t = costed(m, batch)
        assert t.totals.macs == batch * 7 * 6 * 5


def test_range_position_ids():
    """Position ids from Range(0, S) with S from Shape, gathered from a position table and
    added to the token embeddings, then a projection: MACs = N * S * D * E."""
    b = G()
    sl = b.op("Squeeze", [b.dim("ids", 1), b.const([0])])
    pos = b.op("Unsqueeze", [b.op("Range", [b.const(0), sl, b.const(1)]), b.const([0])])
    emb = b.op("Add", [b.op("Gather", [b.weight([50, 12]), "ids"], axis=0), b.op("Gather", [b.weight([32, 12]), pos], axis=0)])
    y = b.op("MatMul", [emb, b.weight([12, 3])])
    m = b.model([helper.make_tensor_value_info("ids", TensorProto.INT64, ["batch", 9])], [y])
    for batch in (1, 5):
        t = costed(m, batch)
        assert t.totals.macs == batch * 9 * 12 * 3
        assert t.totals.params == 50 * 12 + 32 * 12 + 12 * 3


# ----------------------------------------------------------------------------- unknown is loud


def unknown_shape_model():
    """A custom-domain op ONNX cannot infer (no declared shape) feeding a Conv and a MatMul."""
    b = G()
    f = b.op("Mystery", ["x"])
    b.nodes[-1].domain = "com.acme"
    conv = b.op("Conv", [f, b.weight([8, 3, 3, 3])], kernel_shape=[3, 3])
    y = b.op("Relu", [conv])
    g = helper.make_graph(b.nodes, "u", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 16, 16])],
                          [helper.make_tensor_value_info(y, TensorProto.FLOAT, None)], b.inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", OPSET), helper.make_opsetid("com.acme", 1)])


def test_unknown_shapes_are_loud(tmp_path):
    t = api._analyze_graph(load_graph(unknown_shape_model()))
    assert t.totals.uncosted_ops == {"Conv": 1, "Relu": 1}
    assert t.totals.unsupported_ops == {"com.acme.Mystery": 1}
    assert t.totals.uncosted_layers == 3
    assert t.totals.macs == 0
    assert t.totals.macs_missing_at_least == 8 * 3 * 3 * 3  # the conv's weight: at least one output pixel
    assert all(l.status != "ok" for l in t.layers)
    p = tmp_path / "u.onnx"
    onnx.save(unknown_shape_model(), str(p))
    code, out, err = run_cli(str(p))
    assert code == 0, err
    lines = out.splitlines()
    warn = next(i for i, line in enumerate(lines) if line.startswith("WARNING: the totals are incomplete"))
    macs = next(i for i, line in enumerate(lines) if line.startswith("MACs"))
    assert warn < macs, out  # the warning comes first, above the totals
    assert "3 of 3 layers are not counted" in lines[warn] and "at least 216" in out
    assert "The first: 'Mystery_" in out and "(com.acme.Mystery): no cost function" in out
    code, out, err = run_cli(str(p), "--format", "json")
    doc = json.loads(out)
    assert code == 0 and doc["totals"]["uncosted_layers"] == 3 and doc["totals"]["macs_missing_at_least"] == 216
    assert "WARNING: the totals are incomplete" in err  # stdout stays a clean document


def test_input_dims_the_model_refuses_are_explained():
    """A sequence longer than the position table: the first node that refuses its shapes is
    named, in the notes and in the warning, instead of a silent partial count."""
    m, _ = mask_construction_model(s=8, d=8, heads=2)          # position table of 64 rows
    t = api._analyze_graph(load_graph(m, input_shapes={"input_ids": (1, 80), "attention_mask": (1, 80)}))
    assert t.totals.uncosted_layers > 0
    assert "do not broadcast" in t.totals.first_uncounted and "(Add)" in t.totals.first_uncounted
    assert any("which refuses its input shapes" in n for n in t.notes)


def test_view_with_unknown_output_is_not_ok():
    """A Reshape whose target shape cannot be known (it comes from a custom op) is uncosted,
    never a free 'ok' layer."""
    b = G()
    s = b.op("Mystery", ["x"])
    b.nodes[-1].domain = "com.acme"
    r = b.op("Reshape", ["x", s])
    g = helper.make_graph(b.nodes, "v", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 6])],
                          [helper.make_tensor_value_info(r, TensorProto.FLOAT, None)], b.inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", OPSET), helper.make_opsetid("com.acme", 1)])
    t = api._analyze_graph(load_graph(m))
    layer = next(l for l in t.layers if l.op_type == "Reshape")
    assert layer.status == "uncosted" and "output shape unknown" in layer.note
    assert t.totals.uncosted_ops == {"Reshape": 1}


# ----------------------------------------------------------------------------- the corpus

CORPUS = os.environ.get("ESTIMATE_CORPUS") or os.path.join(os.path.dirname(__file__), "..", "..", "shared", "corpus")
_GT = os.path.join(CORPUS, "ground_truth.json")
_CASES = sorted(json.load(open(_GT))["models"].items()) if os.path.exists(_GT) else []


@pytest.mark.skipif(not _CASES, reason=f"no corpus: {os.path.abspath(_GT)} is absent (set ESTIMATE_CORPUS to its folder)")
@pytest.mark.parametrize("name,truth", _CASES, ids=[c[0] for c in _CASES])
def test_corpus_file_counts_as_executed(name, truth):
    """Each real export counted as executing it measured: MACs and params within 0.5%, the
    largest activation exact, no uncosted or unsupported layer."""
    t = api.analyze(os.path.join(CORPUS, truth["file"]), batch=1).totals
    assert not t.uncosted_ops and not t.unsupported_ops and t.uncosted_layers == 0
    assert abs(t.macs - truth["macs"]) <= 0.005 * truth["macs"], (t.macs, truth["macs"])
    assert abs(t.params - truth["params_onnx_float"]) <= 0.005 * truth["params_onnx_float"], (t.params, truth["params_onnx_float"])
    assert t.max_activation_elems == truth["max_activation_elems"]


def test_corpus_is_there_when_shared_is():
    """Never pass silently: where ../shared exists (CI lays it beside the checkout), the corpus
    must be found and hold its 13 files."""
    shared = os.path.join(os.path.dirname(__file__), "..", "..", "shared")
    if not os.path.isdir(shared) and not os.environ.get("ESTIMATE_CORPUS"):
        pytest.skip(f"no ../shared beside the checkout ({os.path.abspath(shared)})")
    assert len(_CASES) == 13, f"{_GT}: expected 13 corpus models, found {len(_CASES)}"


def test_static_values_are_bounded_before_they_are_computed():
    """Two small static vectors can broadcast into a huge matrix (a mask from Range: a
    16384-long sequence gives 268 M elements): the completion bounds an op's output before
    evaluating it and leaves such values to shape inference (found in review: 2.1 GB, 3.9 s)."""
    from estimator.onnx_shapes import EVAL_LIMIT_ELEMS, _out_elems_bound

    r = np.arange(16384, dtype=np.int64)
    assert _out_elems_bound("Sub", [r[:, None], r[None, :]]) == 16384 * 16384 > EVAL_LIMIT_ELEMS
    assert _out_elems_bound("MatMul", [np.ones((300, 1)), np.ones((1, 300))]) >= 90000
    assert _out_elems_bound("Concat", [np.ones(3), np.ones(5)]) == 8
    b = G()
    sl = b.op("Squeeze", [b.dim("ids", 1), b.const([0])])
    rng = b.op("Range", [b.const(0), sl, b.const(1)])
    mask = b.op("Sub", [b.op("Unsqueeze", [rng, b.const([1])]), b.op("Unsqueeze", [rng, b.const([0])])])
    y = b.op("Add", [b.op("Cast", [mask], to=TensorProto.FLOAT), "x"])
    m = b.model([helper.make_tensor_value_info("ids", TensorProto.INT64, ["batch", 16384]),
                 helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 16384, 16384])], [y])
    t = costed(m, 1)
    assert t.totals.max_activation_elems == 16384 * 16384
