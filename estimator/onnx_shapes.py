"""Shape completion: every tensor whose shape is static gets its shape (loader side; imports onnx).

ONNX's own shape inference runs once over the whole graph (C++, fast). It stops where a shape
depends on values it does not propagate: a Reshape to a shape vector computed by Div from
Shape outputs (channel shuffles), a Pad whose pads come through Cast, Range/Where/Expand chains
building attention masks and shifted-window partitions, and everything downstream of them.

Where it stops, one pass in topological order completes it:

1. values: a node whose inputs all have known values (constants, Shape outputs and everything
   computed from them) is evaluated when its output is small (shape arithmetic), with numpy
   for the common shape ops and onnx's reference implementation (`onnx.reference`) for the
   rest. Weights are never read: only small integer constants and Shape outputs have values.
2. shapes: a node with an output shape still unknown is inferred alone with onnx's op schema
   (`infer_node_outputs`), given its input shapes as completed so far and the values of its
   small inputs. That covers data-dependent but shape-static ops (a Where on a known-shape
   mask, an Expand to a computed shape, a Gather with known-shape indices).

One pass suffices because every node sees its inputs completed before it.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import onnx
from onnx import helper, numpy_helper, shape_inference

from .errors import UserError
from .graph import TensorInfo

_NO_INFO = (None, None, None, None)

# Static values computed while completing shapes are kept up to this many elements.
EVAL_LIMIT_ELEMS = 1 << 16

RANDOM_OPS = frozenset({"RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike",
                        "Multinomial", "Bernoulli"})
SUBGRAPH_OPS = frozenset({"If", "Loop", "Scan", "SequenceMap"})
SHAPE_READERS = frozenset({"Shape", "Size"})

_DTYPE_NAMES = {
    "FLOAT": "float32", "FLOAT16": "float16", "BFLOAT16": "bfloat16", "DOUBLE": "float64",
    "INT8": "int8", "UINT8": "uint8", "INT16": "int16", "UINT16": "uint16",
    "INT32": "int32", "UINT32": "uint32", "INT64": "int64", "UINT64": "uint64",
    "BOOL": "bool", "STRING": "string", "COMPLEX64": "complex64", "COMPLEX128": "complex128",
    "FLOAT8E4M3FN": "float8e4m3fn", "FLOAT8E4M3FNUZ": "float8e4m3fnuz",
    "FLOAT8E5M2": "float8e5m2", "FLOAT8E5M2FNUZ": "float8e5m2fnuz",
    "INT4": "int4", "UINT4": "uint4", "FLOAT4E2M1": "float4e2m1", "UNDEFINED": "unknown",
}
_DTYPE_CACHE: dict[int, str] = {}


def dtype_name(elem_type: int) -> str:
    """ONNX element type number -> numpy-style name ('float32', 'int64', ...)."""
    name = _DTYPE_CACHE.get(elem_type)
    if name is None:
        try:
            onnx_name = onnx.TensorProto.DataType.Name(elem_type)
        except ValueError:
            onnx_name = "UNDEFINED"
        name = _DTYPE_CACHE[elem_type] = _DTYPE_NAMES.get(onnx_name, onnx_name.lower())
    return name


def tensor_array(t: onnx.TensorProto) -> np.ndarray | None:
    """A tensor's value if it is small and embedded; None otherwise."""
    n = 1
    for d in t.dims:
        n *= int(d)
    if n > EVAL_LIMIT_ELEMS or t.data_location == onnx.TensorProto.EXTERNAL:
        return None
    try:
        return numpy_helper.to_array(t)
    except Exception:
        return None


# ----------------------------------------------------------------------------- inference


def infer(src: str, model: onnx.ModelProto) -> onnx.ModelProto:
    """ONNX shape inference with data propagation over the whole graph; errors are UserErrors."""
    try:
        return shape_inference.infer_shapes(model, check_type=False, strict_mode=False, data_prop=True)
    except Exception as e:  # inference errors on malformed graphs
        msg = str(e).strip().splitlines()
        raise UserError(f"{src}: ONNX shape inference failed: {(msg[-1] if msg else type(e).__name__)[:300]}") from None


def collect_infos(model: onnx.ModelProto) -> tuple[dict[str, TensorInfo], dict[str, int]]:
    """TensorInfo of every tensor with a declared or inferred type; shapes with a symbolic or
    unknown dim are None. Also the ONNX element type of each.

    Types repeat (a graph of 10,000 tensors has a few dozen distinct shapes): each distinct
    serialized TypeProto is decoded once, the others are a dict lookup, which is several times
    faster than walking every dim through protobuf's Python objects."""
    infos: dict[str, TensorInfo] = {}
    etypes: dict[str, int] = {}
    g = model.graph
    decoded: dict[bytes, tuple[tuple[int, ...] | None, int, str] | None] = {}
    for vis in (g.value_info, g.output, g.input):
        for vi in vis:
            ty = vi.type
            key = ty.SerializeToString()
            d = decoded.get(key, False)
            if d is False:
                d = decoded[key] = _decode_type(ty)
            if d is None:
                continue
            dims, et, dt = d
            name = vi.name
            prev = infos.get(name)
            if prev is None or (prev[1] is None and dims is not None):
                infos[name] = TensorInfo(name, dims, dt)
                etypes[name] = et
    return infos, etypes


def _decode_type(ty) -> tuple[tuple[int, ...] | None, int, str] | None:
    """(dims or None, elem_type, dtype name) of a tensor TypeProto; None for other types."""
    if not ty.HasField("tensor_type"):
        return None
    tt = ty.tensor_type
    return _shape_of(tt), tt.elem_type, dtype_name(tt.elem_type)


def _shape_of(tt) -> tuple[int, ...] | None:
    if not tt.HasField("shape"):
        return None
    dl = tt.shape.dim
    dims = tuple([d.dim_value for d in dl])
    # a 0 is either a real zero-size dim or an unset/symbolic one: ask only then
    if 0 not in dims or all(d.WhichOneof("value") == "dim_value" for d in dl):
        return dims
    return None


def complete(src: str, model: onnx.ModelProto, nodes: list, plain: list[tuple], order: list[int],
             init_infos: Mapping[str, TensorInfo], init_types: Mapping[str, int],
             const_values: dict[str, np.ndarray], declared: Mapping[str, tuple[int, ...] | None],
             opset: int, notes: list[str]):
    """Shapes of every tensor: ONNX inference, then one completing pass where it stopped.

    `declared`: the shapes the model declares (value_info, outputs), used for a tensor that
    nothing else can tell (the output of an op ONNX does not know), so that what follows it
    is inferred too.

    Returns (infos, const_values, static, used_declared): TensorInfo per tensor; the known
    small values (initializers' and computed ones); the names of the computed values (static,
    not weights); the tensors whose shape was taken from a declaration.
    """
    inferred = infer(src, model)
    infos, etypes = collect_infos(inferred)
    del inferred
    static: set[str] = set()
    get = infos.get
    if all((get(o) or _NO_INFO)[1] is not None for p in plain for o in p[3] if o):
        return infos, const_values, static, []
    # outputs that matter: read by a node or a graph output (an unused Dropout mask does not)
    needed = {x for p in plain for x in p[2] if x}
    needed.update(o.name for o in model.graph.output)
    if all(o in infos and infos[o].shape is not None for p in plain for o in p[3] if o in needed):
        return infos, const_values, static, []
    for k, et in init_types.items():
        etypes.setdefault(k, et)
    for k, t in init_infos.items():
        if k not in infos or infos[k].shape is None:
            infos[k] = t
    completer = _Completer(model, infos, etypes, dict(const_values), opset, declared)
    before = sum(1 for p in plain for o in p[3] if o in needed and (o not in infos or infos[o].shape is None))
    for i in order:
        completer.visit(nodes[i], plain[i])
    after = sum(1 for p in plain for o in p[3] if o in needed and (o not in infos or infos[o].shape is None))
    static.update(k for k in completer.values if k not in init_infos)
    if before > after:
        notes.append(f"shape inference completed for {before - after} tensor(s) by evaluating the graph's static "
                     f"shape computations ({completer.evaluated} value(s) computed)")
    if completer.failed is not None:
        nm, op, msg = completer.failed
        notes.append(f"shapes stop at node '{nm}' ({op}), which refuses its input shapes: {msg} "
                     "(do the input dims fit the model? see --input/--resolution/--batch)")
    return infos, completer.values, static, completer.used_declared


class _Completer:
    """The completing pass: values of static tensors, then shapes node by node."""

    def __init__(self, model: onnx.ModelProto, infos: dict[str, TensorInfo], etypes: dict[str, int],
                 values: dict[str, np.ndarray], opset: int, declared: Mapping[str, tuple[int, ...] | None]):
        self.infos = infos
        self.declared = declared
        self.used_declared: list[str] = []
        self.etypes = etypes
        self.values = values
        self.opset = opset
        self.opset_imports = list(model.opset_import)
        self.versions = {o.domain or "": o.version for o in model.opset_import}
        self.schemas: dict[tuple[str, str], Any] = {}
        self.protos: dict[str, onnx.TensorProto] = {}
        self.evaluated = 0
        self.failed: tuple[str, str, str] | None = None  # (node, op, ONNX's message) of the first refusal

    def known(self, x: str) -> bool:
        t = self.infos.get(x)
        return t is not None and t.shape is not None

    def visit(self, node: onnx.NodeProto, p: tuple) -> None:
        op, dom, ins, outs = p
        if op in RANDOM_OPS or op in SUBGRAPH_OPS:
            return
        default = dom in ("", "ai.onnx")
        values = self.values
        if default and not all(o in values for o in outs if o):
            res = self.evaluate(node, op, ins)
            if res is not None:
                for o, r in zip(outs, res):
                    if o and r is not None and r.size <= EVAL_LIMIT_ELEMS:
                        values[o] = r
                        self.set_info(o, tuple(r.shape), r.dtype)
                self.evaluated += 1
        if all(not o or self.known(o) for o in outs):
            return
        self.infer_node(node, op, dom, ins, outs)
        for o in outs:
            if o and not self.known(o) and self.declared.get(o) is not None:
                et = self.etypes.get(o) or onnx.TensorProto.FLOAT
                self.etypes[o] = et
                self.infos[o] = TensorInfo(o, self.declared[o], dtype_name(et))
                self.used_declared.append(o)

    def set_info(self, name: str, shape: tuple[int, ...], dtype: np.dtype) -> None:
        et = helper.np_dtype_to_tensor_dtype(np.dtype(dtype))
        self.etypes[name] = et
        self.infos[name] = TensorInfo(name, tuple(int(d) for d in shape), dtype_name(et))

    # ------------------------------------------------------------------ values

    def evaluate(self, node, op: str, ins: tuple[str, ...]) -> list[np.ndarray] | None:
        if op in SHAPE_READERS:
            t = self.infos.get(ins[0]) if ins else None
            if t is None or t.shape is None:
                return None
            if op == "Size":
                return [np.array(int(np.prod(t.shape, dtype=np.int64)), dtype=np.int64)]
            start = end = None
            for a in node.attribute:
                if a.name == "start":
                    start = a.i
                elif a.name == "end":
                    end = a.i
            return [np.array(t.shape, dtype=np.int64)[start:end]]
        if op == "Constant":
            for a in node.attribute:
                if a.name == "value":
                    arr = tensor_array(a.t)
                    return None if arr is None else [arr]
                if a.name in ("value_int", "value_ints", "value_float", "value_floats"):
                    return [np.array(helper.get_attribute_value(a),
                                     dtype=np.int64 if "int" in a.name else np.float32)]
            return None
        values = self.values
        if not ins or not all((not x) or x in values for x in ins):
            return None
        vals = [values[x] if x else None for x in ins]
        bound = _out_elems_bound(op, vals)
        if bound is None or bound > EVAL_LIMIT_ELEMS:
            return None
        fast = _FAST.get(op)
        if fast is not None:
            try:
                r = fast(node, vals, self.opset)
            except Exception:
                r = None
            if r is not None:
                return [r]
        return _eval_reference(node, vals, self.opset)

    # ------------------------------------------------------------------ shapes

    def schema(self, op: str, dom: str):
        key = (op, dom)
        if key not in self.schemas:
            d = "" if dom == "ai.onnx" else dom
            try:
                self.schemas[key] = onnx.defs.get_schema(op, self.versions.get(d, self.opset) or self.opset, d)
            except Exception:
                self.schemas[key] = None
        return self.schemas[key]

    def type_proto(self, x: str) -> onnx.TypeProto | None:
        et = self.etypes.get(x)
        t = self.infos.get(x)
        if et is None and t is None:
            return None
        shape = t.shape if t is not None else None
        return helper.make_tensor_type_proto(et or onnx.TensorProto.FLOAT, shape)

    def infer_node(self, node, op: str, dom: str, ins: tuple[str, ...], outs: tuple[str, ...]) -> None:
        schema = self.schema(op, dom)
        if schema is None:
            return
        types = {}
        for x in ins:
            if not x:
                continue
            tp = self.type_proto(x)
            if tp is None:
                return
            types[x] = tp
        data = {}
        for x in ins:
            if x and x in self.values and x not in data:
                pr = self.protos.get(x)
                if pr is None:
                    try:
                        pr = self.protos[x] = numpy_helper.from_array(np.asarray(self.values[x]), x)
                    except Exception:
                        continue
                data[x] = pr
        try:
            got = shape_inference.infer_node_outputs(schema, node, types, data,
                                                     opset_imports=self.opset_imports)
        except Exception as e:
            # with every input shape known, the op itself refuses them (a sequence longer than
            # the position table, an image size the reshapes do not divide): say where, once
            if self.failed is None and all(self.known(x) for x in ins if x):
                msg = " ".join(str(e).split())
                self.failed = (node.name or op, op, msg[msg.find("]") + 1:].strip()[:240] if "]" in msg else msg[:240])
            return
        for o, tp in got.items():
            if not o or self.known(o) or not tp.HasField("tensor_type"):
                continue
            tt = tp.tensor_type
            shape = _shape_of(tt)
            if shape is not None or o not in self.infos:
                et = tt.elem_type or self.etypes.get(o, onnx.TensorProto.FLOAT)
                self.etypes[o] = et
                self.infos[o] = TensorInfo(o, shape, dtype_name(et))


# ----------------------------------------------------------------------------- evaluation


# Ops whose output can be larger than the broadcast of their inputs for reasons the bound
# below does not compute (padding, resizing, contractions, one-hot): evaluated only when the
# product of their input sizes is within the limit.
_GROWING_OPS = frozenset({"Pad", "Resize", "Upsample", "OneHot", "MatMul", "Gemm", "Einsum", "ConvTranspose",
                          "CenterCropPad", "Conv", "MatMulInteger", "Trilu", "EyeLike", "DFT", "STFT", "Col2Im"})


def _out_elems_bound(op: str, values: list[np.ndarray | None]) -> int | None:
    """An upper bound of the output elements, before evaluating (None: unknown): set by a
    value for ConstantOfShape, Expand, Tile and Range; the product of the inputs' sizes for
    ops that grow (Pad, MatMul, OneHot, ...); the numpy broadcast of the inputs for the rest
    (element-wise ops on two small vectors can make a large matrix: a mask from Range)."""
    try:
        present = [np.asarray(v) for v in values if v is not None]
        if op in _GROWING_OPS:
            return int(np.prod([max(v.size, 1) for v in present], dtype=np.float64)) if present else 0
        if op == "ConstantOfShape":
            return int(np.prod(values[0])) if values[0] is not None else None
        if op == "Expand":
            return int(np.prod(np.broadcast_shapes(values[0].shape, tuple(int(x) for x in values[1]))))
        if op == "Tile":
            return int(values[0].size * np.prod(values[1]))
        if op == "Range":
            s, lim, d = (float(np.asarray(v).reshape(-1)[0]) for v in values[:3])
            return max(int(np.ceil((lim - s) / d)), 0) if d else None
        try:
            return int(np.prod(np.broadcast_shapes(*(v.shape for v in present)))) if present else 0
        except ValueError:  # not broadcastable (Concat, Gather, Reshape...): at most the inputs together
            return int(sum(v.size for v in present))
    except Exception:
        return None


def _eval_reference(node: onnx.NodeProto, values: list[np.ndarray | None], opset: int) -> list[np.ndarray] | None:
    """Evaluate one node on known values with ONNX's reference implementation."""
    try:
        from onnx.reference import ReferenceEvaluator

        ins = [f"in{i}" if v is not None else "" for i, v in enumerate(values)]
        outs = [f"out{i}" for i in range(len(node.output))]
        n = helper.make_node(node.op_type, ins, outs, domain=node.domain or None)
        n.attribute.extend(node.attribute)
        vis = [helper.make_tensor_value_info(x, helper.np_dtype_to_tensor_dtype(v.dtype), v.shape)
               for x, v in zip(ins, values) if x]
        g = helper.make_graph([n], "eval", vis, [helper.make_tensor_value_info(o, 0, None) for o in outs])
        m = helper.make_model(g, opset_imports=[helper.make_opsetid("", max(opset, 7))])
        feeds = {x: v for x, v in zip(ins, values) if x}
        res = ReferenceEvaluator(m).run(None, feeds)
        return [np.asarray(r) for r in res]
    except Exception:
        return None


def _attr_i(node, name: str, default: int) -> int:
    for a in node.attribute:
        if a.name == name:
            return a.i
    return default


def _attr_ints(node, name: str) -> tuple[int, ...] | None:
    for a in node.attribute:
        if a.name == name:
            return tuple(a.ints)
    return None


def _axes(node, vals, opset: int, since: int) -> tuple[int, ...] | None:
    if opset >= since:
        return tuple(int(a) for a in np.asarray(vals[1]).reshape(-1)) if len(vals) > 1 and vals[1] is not None else None
    return _attr_ints(node, "axes")


def _fast_unsqueeze(node, vals, opset):
    axes = _axes(node, vals, opset, 13)
    if axes is None:
        return None
    x = np.asarray(vals[0])
    rank = x.ndim + len(axes)
    shape = list(x.shape)
    for a in sorted(a + rank if a < 0 else a for a in axes):
        shape.insert(a, 1)
    return x.reshape(shape)


def _fast_squeeze(node, vals, opset):
    axes = _axes(node, vals, opset, 13)
    x = np.asarray(vals[0])
    if axes is None:
        return np.squeeze(x)
    return np.squeeze(x, axis=tuple(a + x.ndim if a < 0 else a for a in axes))


def _fast_concat(node, vals, opset):
    return np.concatenate([np.asarray(v) for v in vals if v is not None], axis=_attr_i(node, "axis", 0))


def _fast_gather(node, vals, opset):
    x, idx = np.asarray(vals[0]), np.asarray(vals[1])
    if idx.dtype.kind not in "iu":
        return None
    axis = _attr_i(node, "axis", 0)
    n = x.shape[axis]
    if idx.size and (idx.min() < -n or idx.max() >= n):
        return None
    return np.take(x, np.where(idx < 0, idx + n, idx), axis=axis)


# Numpy versions of the ops most common in exported shape computations (same results as the
# reference implementation on these inputs; anything unusual returns None and falls back).
_FAST = {
    "Unsqueeze": _fast_unsqueeze,
    "Squeeze": _fast_squeeze,
    "Concat": _fast_concat,
    "Gather": _fast_gather,
    "Identity": lambda node, vals, opset: np.asarray(vals[0]),
}
