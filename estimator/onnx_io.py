"""The loader: the only module of the core that imports `onnx`.

load_graph(path or ModelProto, overrides) -> Graph, ready for costing:

1. Parse without external data (counting never needs weight bytes, so a 10 GB model with
   external data is analyzed from its graph alone; a missing data file is only a note).
2. Strip weight payloads before any shape work: initializers keep their dims and dtype, and
   only small integer tensors (shape vectors, axes) keep their values. Shape inference then
   costs what the graph costs, not what the weights weigh.
3. Check structure: undefined inputs and cycles are errors naming the node.
4. Set input dims: --input NAME=AxBxC, --batch N (leading dim of every input), --resolution HxW
   (single image input); an unresolved symbolic dim is an error naming input, dim and option.
5. ONNX shape inference with data propagation, then complete it where it stops in one
   topological pass that evaluates the static shape computations and infers node by node
   (estimator/onnx_shapes.py).
6. Classify constants: initializers and everything computed from them alone are model
   constants (weights, when a layer consumes them); values computed from static shapes are
   folded too but are not weights.
"""

from __future__ import annotations

import os
from collections import Counter, deque
from itertools import chain
from typing import Any, Iterable, Mapping

import numpy as np
import onnx
from onnx import helper, numpy_helper

from .errors import UserError
from .graph import FLOAT_DTYPES, Graph, Node, TensorInfo, elems_of
from .onnx_shapes import (_DTYPE_CACHE, RANDOM_OPS, SHAPE_READERS, SUBGRAPH_OPS, complete,  # noqa: F401
                          dtype_name, tensor_array)
from .ops.base import CONTROL_INPUTS

# Integer constants up to this many elements keep their values (shape arithmetic needs them).
_SMALL_CONST_ELEMS = 4096
# A tensor with more elements than this is an input mistake, not a model (2**50 ~ 1e15).
_ABSURD_ELEMS = 1 << 50
_ABSURD_DIM = 1 << 31

# Constant-only nodes of these ops are folded into derived weights (their output is the
# weight a layer consumes). Other ops with constant inputs are folded only when every output
# is a small tensor (shape arithmetic); otherwise they stay layers, so that e.g. a Gather from
# a constant embedding table with constant indices counts the table it stores as parameters.
_WEIGHT_DERIVING = frozenset({"Constant", "ConstantOfShape", "DequantizeLinear", "Cast", "CastLike",
                              "Reshape", "Transpose", "Identity", "Squeeze", "Unsqueeze", "Flatten",
                              "Concat"})
_INT_TYPES = {TensorProto_t for TensorProto_t in (
    onnx.TensorProto.INT64, onnx.TensorProto.INT32, onnx.TensorProto.INT16, onnx.TensorProto.INT8,
    onnx.TensorProto.UINT8, onnx.TensorProto.UINT16, onnx.TensorProto.UINT32,
    onnx.TensorProto.UINT64, onnx.TensorProto.BOOL)}


# ----------------------------------------------------------------------------- reading


def read_model(path: str) -> onnx.ModelProto:
    """Parse an .onnx file without its external data; every failure is a one-line UserError."""
    if not os.path.exists(path):
        raise UserError(f"{path}: no such file")
    if os.path.isdir(path):
        raise UserError(f"{path}: is a directory, not an .onnx file")
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise UserError(f"{path}: cannot read: {e.strerror or e}") from None
    if not data:
        raise UserError(f"{path}: empty file, not an ONNX model")
    model = onnx.ModelProto()
    try:
        model.ParseFromString(data)
    except Exception:  # protobuf's DecodeError and friends
        raise UserError(f"{path}: not an ONNX model (the protobuf does not parse; truncated or another format?)") from None
    del data
    if model.ir_version <= 0 or not model.HasField("graph") or (not model.graph.node and not model.graph.output):
        raise UserError(f"{path}: not an ONNX model (no IR version or no graph)")
    return model


def _external_info(t: onnx.TensorProto) -> dict[str, str]:
    return {e.key: e.value for e in t.external_data}


def _check_external_location(path: str, base_dir: str, tensor: str, location: str) -> str:
    """Resolve an external-data location; refuse one outside the model's folder."""
    if os.path.isabs(location):
        raise UserError(f"{path}: initializer '{tensor}': external data location '{location}' is an absolute path; refusing to read outside the model's folder")
    full = os.path.realpath(os.path.join(base_dir, location))
    root = os.path.realpath(base_dir)
    if os.path.commonpath([full, root]) != root:
        raise UserError(f"{path}: initializer '{tensor}': external data location '{location}' points outside the model's folder; refusing to read it")
    return full


def _check_text(src: str, model: onnx.ModelProto, *texts: Iterable[str]) -> None:
    """Every name the loader uses is text: protobuf hands a string field that is not valid
    UTF-8 over as raw bytes, which would crash path joins and reports much later. The names
    already read (`texts`: iterables of them) are checked by C-level joins; only when one
    fails is the model scanned for the culprit, to name it."""
    g = model.graph
    try:
        for t in texts:
            "".join(t)
        return
    except TypeError:
        pass

    def fields():
        yield "the graph name", g.name
        for o in model.opset_import:
            yield "an opset domain", o.domain
        for i, n in enumerate(g.node):
            where = f"node #{i}" + (f" '{n.name}'" if isinstance(n.name, str) and n.name else "")
            yield f"{where}: its name", n.name
            yield f"{where}: its op type", n.op_type
            yield f"{where}: its domain", n.domain
            for x in n.input:
                yield f"{where}: an input name", x
            for x in n.output:
                yield f"{where}: an output name", x
            for a in n.attribute:
                yield f"{where}: an attribute name", a.name
        for vis, what in ((g.input, "graph input"), (g.output, "graph output"), (g.value_info, "value_info entry")):
            for vi in vis:
                yield f"a {what} name", vi.name
        for t in g.initializer:
            where = "initializer" + (f" '{t.name}'" if isinstance(t.name, str) else "")
            yield f"an {where}: its name", t.name
            for e in t.external_data:
                yield f"{where}: an external data key", e.key
                yield f"{where}: external data {'location' if e.key == 'location' else 'entry'}", e.value

    try:
        "".join(v for _, v in fields())
        return
    except TypeError:
        pass
    for where, v in fields():
        if not isinstance(v, str):
            raise UserError(f"{src}: {where} is not valid UTF-8 text (raw bytes {bytes(v)[:40]!r}); "
                            "the file is corrupt or was not written by an ONNX exporter")
    raise UserError(f"{src}: a name in the file is not valid UTF-8 text; the file is corrupt or was not written by an "
                    "ONNX exporter")


# ----------------------------------------------------------------------------- structure


def _node_names(nodes: Iterable[onnx.NodeProto]) -> list[str]:
    """Stable unique node names: the node's own, else '<op_type>_<index>'; duplicates get '#k'."""
    seen: dict[str, int] = {}
    out = []
    for i, n in enumerate(nodes):
        name = n.name or f"{n.op_type}_{i}"
        if name in seen:
            seen[name] += 1
            name = f"{name}#{seen[name]}"
        else:
            seen[name] = 0
        out.append(name)
    return out


def _topo_order(src: str, nodes: list[tuple], names: list[str], available: set[str]) -> list[int]:
    """Indices of nodes (op_type, domain, inputs, outputs) in a topological order; errors for
    undefined inputs and cycles."""
    producer: dict[str, int] = {}
    for i, n in enumerate(nodes):
        for o in n[3]:
            if o:
                producer[o] = i
    indeg = [0] * len(nodes)
    users: list[list[int]] = [[] for _ in nodes]
    for i, n in enumerate(nodes):
        deps = set()
        for x in n[2]:
            if not x:
                continue
            d = producer.get(x)
            if d is not None:
                deps.add(d)
            elif x not in available:
                raise UserError(f"{src}: node '{names[i]}' ({n[0]}) reads '{x}', which no node, input or initializer defines")
        for d in deps:
            users[d].append(i)
        indeg[i] = len(deps)
    ready = deque(i for i in range(len(nodes)) if indeg[i] == 0)
    order = []
    while ready:
        i = ready.popleft()
        order.append(i)
        for u in users[i]:
            indeg[u] -= 1
            if indeg[u] == 0:
                ready.append(u)
    if len(order) != len(nodes):
        import networkx as nx

        g = nx.DiGraph()
        for i in range(len(nodes)):
            if indeg[i] > 0:
                for u in users[i]:
                    if indeg[u] > 0:
                        g.add_edge(i, u)
        try:
            cyc = nx.find_cycle(g)
            members = ", ".join(f"'{names[a]}'" for a, _ in cyc[:4])
        except nx.NetworkXNoCycle:  # pragma: no cover - indegree left means a cycle
            members = "?"
        raise UserError(f"{src}: the graph has a cycle through node(s) {members}")
    return order


# ----------------------------------------------------------------------------- input dims


def _dims(vi: onnx.ValueInfoProto) -> list[int | str | None]:
    tt = vi.type.tensor_type
    if not tt.HasField("shape"):
        return []
    out: list[int | str | None] = []
    for d in tt.shape.dim:
        kind = d.WhichOneof("value")
        out.append(d.dim_value if kind == "dim_value" else d.dim_param if kind == "dim_param" else None)
    return out


def _set_dims(vi: onnx.ValueInfoProto, dims: list[int]) -> None:
    shape = vi.type.tensor_type.shape
    shape.ClearField("dim")
    for d in dims:
        shape.dim.add().dim_value = int(d)


def _decoder_shapes(src: str, inputs: list[onnx.ValueInfoProto], batch: int | None,
                    input_shapes: dict[str, tuple[int, ...]], seq_len: int | None, past: int | None,
                    notes: list[str]) -> dict[str, tuple[int, ...]]:
    """--input shapes plus those of a decoder's ids, mask and cache inputs at (seq_len, past);
    the file's own dims where it fixes them and nothing is asked, else sequence 1, past 0."""
    from . import decoder

    pairs = [(vi.name, _dims(vi)) for vi in inputs]
    io = decoder.detect(pairs)
    if io is None:
        if seq_len is not None or past is not None:
            what = " and ".join(o for o, v in (("--seq-len", seq_len), ("--past", past)) if v is not None)
            raise UserError(f"{src}: {what} set a decoder's sequence and KV-cache lengths, but the model has no "
                            "input_ids and past_key_values.N.key/value inputs (use --input NAME=... for its inputs)")
        return input_shapes
    dims = dict(pairs)

    def file_dim(name, k):
        d = dims.get(name) or []
        return d[k] if len(d) > k and isinstance(d[k], int) and d[k] >= 0 else None

    g_ids, g_past = input_shapes.get(io.ids), input_shapes.get(io.past_inputs[0])   # --input wins
    s = seq_len if seq_len is not None else (g_ids[1] if g_ids and len(g_ids) > 1 else (file_dim(io.ids, 1) or 1))
    fixed_past = file_dim(io.past_inputs[0], 2)
    p = past if past is not None else (g_past[2] if g_past and len(g_past) > 2 else
                                       (fixed_past if fixed_past is not None else 0))
    b = batch if batch is not None else (g_ids[0] if g_ids else (file_dim(io.ids, 0) or 1))
    shapes = decoder.input_shapes(io, pairs, batch=b, seq_len=s, past=p, given=input_shapes)
    unset = [o for o, v in (("--seq-len", seq_len is not None or g_ids), ("--past", past is not None or g_past)) if not v]
    notes.append(f"{io.describe()}: costed at sequence {s}, past {p}" + (
        f" (set {' and '.join(unset)})" if unset else ""))
    if (seq_len is not None and file_dim(io.ids, 1) not in (None, seq_len)) or (
            past is not None and fixed_past not in (None, past)):
        notes.append(f"the file fixes sequence {file_dim(io.ids, 1)} and past {fixed_past}: the counts are the "
                     "graph's at the asked lengths; a runtime may refuse them")
    return {**input_shapes, **shapes}


def _apply_overrides(src: str, inputs: list[onnx.ValueInfoProto], batch: int | None,
                     input_shapes: Mapping[str, tuple[int, ...]], resolution: tuple[int, int] | None,
                     notes: list[str]) -> dict[str, int]:
    """Set every input dim; returns the values given to symbolic dim names ('N' -> 1), which
    the caller substitutes wherever the model declares shapes with the same names."""
    names = [vi.name for vi in inputs]
    for key in input_shapes:
        if key not in names:
            raise UserError(f"{src}: --input {key}=...: the model has no input '{key}' (inputs: {', '.join(names) or 'none'})")
    for key, want in input_shapes.items():
        if batch is not None and want and want[0] != batch:
            raise UserError(f"{src}: --batch {batch} and --input {key}={'x'.join(map(str, want))} disagree on the batch dim; give one of them")
        if resolution is not None and len(want) == 4 and len([vi for vi in inputs if len(_dims(vi)) == 4]) == 1:
            raise UserError(f"{src}: --resolution and --input {key}=... both set the image size; give one of them")
    image_inputs = [vi for vi in inputs if len(_dims(vi)) == 4 and vi.name not in input_shapes]
    defaulted: list[str] = []
    bindings: dict[str, int] = {}
    if resolution is not None and len(image_inputs) != 1:
        raise UserError(f"{src}: --resolution needs exactly one 4-D image input, the model has {len(image_inputs)} ({', '.join(v.name for v in image_inputs) or 'none'}); use --input NAME=NxCxHxW")
    for vi in inputs:
        dims = _dims(vi)
        if vi.name in input_shapes:
            want = list(input_shapes[vi.name])
            if dims and len(want) != len(dims):
                raise UserError(f"{src}: --input {vi.name}: the model's input has rank {len(dims)} ({_fmt_dims(dims)}), got {len(want)} dims")
            fixed = [k for k, (d, w) in enumerate(zip(dims, want)) if isinstance(d, int) and d > 0 and d != w]
            notes.append(f"input '{vi.name}' shape set to {'x'.join(map(str, want))} by --input"
                         + (f" (the file fixes dim{'s' if len(fixed) > 1 else ''} {', '.join(map(str, fixed))} at "
                            f"{_fmt_dims(dims)}: the counts are the graph's at this size; a runtime may refuse it)"
                            if fixed else ""))
            _bind(bindings, dims, want)
            _set_dims(vi, want)
            continue
        if not vi.type.HasField("tensor_type"):
            raise UserError(f"{src}: input '{vi.name}' is not a tensor; this tool handles tensor inputs only")
        if not vi.type.tensor_type.HasField("shape"):
            raise UserError(f"{src}: input '{vi.name}' has no shape; set it with --input {vi.name}=AxBx...")
        new = list(dims)
        if new and batch is not None:
            if isinstance(new[0], int) and new[0] != batch:
                notes.append(f"input '{vi.name}': leading dim {new[0]} overridden to {batch} by --batch")
            new[0] = batch
        elif new and not isinstance(new[0], int):
            defaulted.append(f"'{vi.name}'")
            new[0] = 1
        if resolution is not None and vi is image_inputs[0]:
            if isinstance(new[2], int) and isinstance(new[3], int) and (new[2], new[3]) != tuple(resolution):
                notes.append(f"input '{vi.name}': resolution {new[2]}x{new[3]} overridden to {resolution[0]}x{resolution[1]} "
                             "(the file fixes it: the counts are the graph's at this size; a runtime may refuse it)")
            new[2], new[3] = resolution
        for k, d in enumerate(new):
            if not isinstance(d, int) or d <= 0:
                hint = f"--resolution HxW or --input {vi.name}=..." if len(new) == 4 and k >= 2 else f"--input {vi.name}={'x'.join(str(x) if isinstance(x, int) and x > 0 else '?' for x in new)}"
                raise UserError(f"{src}: input '{vi.name}' dim {k} ('{d if d is not None else '?'}') is not set; set it with {hint}")
        _bind(bindings, dims, new)
        _set_dims(vi, new)
    if defaulted:
        notes.append(f"symbolic batch dim of input(s) {', '.join(defaulted)} set to 1 (change with --batch)")
    return bindings


def _bind(bindings: dict[str, int], old: list, new: list) -> None:
    """Record the symbolic dims set: a named one by its name, an unnamed one ('?', no value) as
    '?<k>', which matches no dim_param but says that the file has dynamic dims (Graph.symbolic_dims)."""
    for o, n in zip(old, new):
        if isinstance(o, str) and o and o not in bindings:
            bindings[o] = int(n)
        elif o is None or o == "" or (isinstance(o, int) and o <= 0):
            bindings[f"?{len(bindings)}"] = int(n)


def _take_declared_shapes(g: onnx.GraphProto) -> dict[str, tuple[int, ...] | None]:
    """Remove the declared shapes of value_info and graph outputs (keeping their types) and
    return them: {tensor: shape if every dim is a number, else None}."""
    out: dict[str, tuple[int, ...] | None] = {}
    for vi in list(g.value_info) + list(g.output):
        tt = vi.type.tensor_type if vi.type.HasField("tensor_type") else None
        if tt is None or not tt.HasField("shape"):
            continue
        dims = _dims(vi)
        out[vi.name] = tuple(dims) if dims and all(isinstance(d, int) and d > 0 for d in dims) else None
        tt.ClearField("shape")
    return out


def _substitute_dims(g: onnx.GraphProto, bindings: Mapping[str, int]) -> None:
    """Declared shapes (value_info, outputs) that use a symbolic name bound by an input get
    its value, so that inference and the declared shapes of ops it cannot infer agree."""
    if not bindings:
        return
    for vi in list(g.value_info) + list(g.output):
        if not vi.type.HasField("tensor_type") or not vi.type.tensor_type.HasField("shape"):
            continue
        for d in vi.type.tensor_type.shape.dim:
            if d.WhichOneof("value") == "dim_param" and d.dim_param in bindings:
                d.dim_value = bindings[d.dim_param]


def _fmt_dims(dims: list) -> str:
    return "x".join("?" if d is None else str(d) for d in dims)


# ----------------------------------------------------------------------------- attributes


_A = onnx.AttributeProto


def _attr_value(a: onnx.AttributeProto) -> Any:
    t = a.type
    if t == _A.INT:
        return a.i
    if t == _A.INTS:
        return tuple(a.ints)
    if t == _A.FLOAT:
        return a.f
    if t == _A.FLOATS:
        return tuple(a.floats)
    if t == _A.STRING:
        return a.s.decode("utf-8", "replace")
    if a.type == onnx.AttributeProto.GRAPH or a.type == onnx.AttributeProto.GRAPHS:
        return "<subgraph>"
    if a.type == onnx.AttributeProto.TENSOR:
        return tensor_array(a.t)
    if a.type == onnx.AttributeProto.SPARSE_TENSOR:
        return "<sparse tensor>"
    v = helper.get_attribute_value(a)
    if isinstance(v, bytes):
        return v.decode("utf-8", "replace")
    if isinstance(v, list):
        return tuple(x.decode("utf-8", "replace") if isinstance(x, bytes) else x for x in v)
    return v


# ----------------------------------------------------------------------------- main entry


def load_graph(source: str | onnx.ModelProto, *, batch: int | None = None,
               input_shapes: Mapping[str, tuple[int, ...]] | None = None,
               resolution: tuple[int, int] | None = None, name: str | None = None,
               seq_len: int | None = None, past: int | None = None) -> Graph:
    """Load a model (path, or a ModelProto this function may modify) into a costable Graph.
    `seq_len`, `past`: the sequence and KV-cache lengths of a decoder with a cache
    (estimator/decoder.py; an error for other models)."""
    notes: list[str] = []
    if isinstance(source, onnx.ModelProto):
        model = source
        src = name or model.graph.name or "<model>"
        path = ""
    else:
        path = str(source)
        src = path
        model = read_model(path)
    if batch is not None and batch <= 0:
        raise UserError(f"{src}: --batch must be >= 1, got {batch}")
    g = model.graph
    _check_text(src, model, [g.name], [o.domain for o in model.opset_import], [vi.name for vi in g.input],
                [vi.name for vi in g.output], [vi.name for vi in g.value_info])
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    base_dir = os.path.dirname(os.path.abspath(path)) if path else os.getcwd()

    # 1-2. Initializers: note external data, keep small integer values, strip the rest.
    init_info: dict[str, TensorInfo] = {}
    init_types: dict[str, int] = {}
    const_values: dict[str, np.ndarray] = {}
    weights_present = True
    missing_files: set[str] = set()
    missing_small: dict[str, str] = {}  # small integer initializers whose external file is absent
    checked_locations: dict[str, str | None] = {}  # location -> resolved path (None: absent)
    EXTERNAL = onnx.TensorProto.EXTERNAL
    _DTYPES = _DTYPE_CACHE
    for t in g.initializer:
        tn = t.name
        dt = t.data_type
        info = init_info[tn] = TensorInfo(tn, tuple(t.dims), _DTYPES.get(dt) or dtype_name(dt))
        init_types[tn] = dt
        n = info[3]
        small_int = dt in _INT_TYPES and n <= _SMALL_CONST_ELEMS
        if t.data_location == EXTERNAL:
            ed = t.external_data
            e0 = ed[0] if len(ed) else None
            loc = e0.value if e0 is not None and e0.key == "location" else next(
                (e.value for e in ed if e.key == "location"), "")
            if loc.__class__ is not str:
                _check_text(src, model, [loc])
            if not path:
                full = None
            elif loc in checked_locations:
                full = checked_locations[loc]
            else:
                full = checked_locations[loc] = _check_external_location(src, base_dir, t.name, loc)
                if full is not None and not os.path.exists(full):
                    full = checked_locations[loc] = None
            if full is None or not os.path.exists(full):
                weights_present = False
                missing_files.add(loc)
                if small_int:
                    missing_small[t.name] = loc
            elif small_int:
                arr = _read_external_small(full, t, _external_info(t))
                if arr is not None:
                    const_values[t.name] = arr
            if small_int:  # a shape vector inference may read: its value, if any, is supplied
                t.ClearField("external_data")
                t.data_location = onnx.TensorProto.DEFAULT
            continue  # other external references are harmless for shape inference: kept
        if small_int or n <= 16:
            arr = tensor_array(t)
            if arr is not None:
                const_values[t.name] = arr
                continue
        for fld in ("raw_data", "float_data", "int32_data", "int64_data", "double_data",
                    "uint64_data", "string_data"):
            t.ClearField(fld)
    init_names = set(init_info)
    if missing_files and path:
        notes.append(f"weights absent (external data not found: {', '.join(sorted(missing_files))}); counting from shapes only")
    if not path and any(not t.HasField("raw_data") for t in g.initializer if t.name not in const_values):
        weights_present = False if missing_files else weights_present

    # 3. Structure: real inputs (IR3 lists initializers as inputs too), undefined inputs, cycles.
    real_inputs = [vi for vi in g.input if vi.name not in init_names]
    nodes = list(g.node)
    names = _node_names(nodes)
    # one pass over the protobuf: (op_type, domain, inputs, outputs) reused by every later pass
    plain = [(n.op_type, n.domain, tuple(n.input), tuple(n.output)) for n in nodes]
    _check_text(src, model, init_names, names, [p[0] for p in plain], [p[1] for p in plain],
                chain.from_iterable([p[2] for p in plain]), chain.from_iterable([p[3] for p in plain]))
    available = init_names | {vi.name for vi in g.input}
    order = _topo_order(src, plain, names, available)

    # 4. Input dims (a decoder's sequence and cache lengths first: estimator/decoder.py).
    given = dict(input_shapes or {})
    input_shapes = _decoder_shapes(src, real_inputs, batch, given, seq_len, past, notes)
    quiet = [f"input '{n}' shape set to" for n in input_shapes if n not in given]   # said once, by the decoder note
    n_before = len(notes)
    bindings = _apply_overrides(src, real_inputs, batch, input_shapes, resolution, notes)
    dropped = [n for n in notes[n_before:] if any(n.startswith(q) for q in quiet)]
    notes[n_before:] = [n for n in notes[n_before:] if n not in dropped]
    if any("the file fixes" in n for n in dropped):
        notes.append("the file fixes some dims of its decoder inputs (batch, sequence or cache length): the counts are "
                     "the graph's at the asked size; a runtime may refuse it")
    _substitute_dims(g, bindings)
    # Declared shapes (value_info, outputs) may carry the exported batch or resolution: infer
    # without them, and use a declaration only for a tensor inference cannot tell (the output
    # of an op ONNX does not know), with a note.
    declared = _take_declared_shapes(g)
    for vi in real_inputs:
        n = elems_of(tuple(_dims(vi)))  # all ints now
        if n is not None and n > _ABSURD_ELEMS:
            raise UserError(f"{src}: input '{vi.name}' would have {n:.3g} elements ({_fmt_dims(_dims(vi))}): check --batch/--input/--resolution")
        for d in _dims(vi):
            if isinstance(d, int) and d > _ABSURD_DIM:
                raise UserError(f"{src}: input '{vi.name}' dim {d} is absurd (> 2^31): check --batch/--input/--resolution")

    # 5. Shape inference, completed by evaluating constant/shape subgraphs.
    if model.ir_version < 3:
        model.ir_version = 3
    infos, const_values, static, used_decl = complete(src, model, nodes, plain, order, init_info, init_types,
                                                      const_values, declared, opset, notes)
    for k, v in init_info.items():
        infos.setdefault(k, v)
    infos.pop("", None)  # "" is an omitted optional input, never a tensor
    # graph outputs no node produces (an input or initializer passed through) keep a declaration
    late = [k for k, shp in declared.items() if (k not in infos or infos[k].shape is None) and shp is not None]
    for k in late:
        infos[k] = TensorInfo(k, declared[k], infos[k].dtype if k in infos else "float32")
    used_decl = used_decl + late
    if used_decl:
        notes.append(f"shape of {len(used_decl)} tensor(s) taken from the model's declarations, which inference could not "
                     f"check ({', '.join(used_decl[:3])}{'...' if len(used_decl) > 3 else ''})")
    if missing_small:
        _check_missing_values(src, plain, names, infos, missing_small)
    for vi in real_inputs:
        infos[vi.name] = TensorInfo(vi.name, tuple(int(d) for d in _dims(vi)),
                                    dtype_name(vi.type.tensor_type.elem_type))
    for t in infos.values():
        n = t.elems
        if n is not None and n > _ABSURD_ELEMS:
            raise UserError(f"{src}: tensor '{t.name}' would have {n:.3g} elements (shape {'x'.join(map(str, t.shape))}): the input dims are absurd")

    # 6. Constants: from initializers alone -> model constants; from static shapes -> folded.
    constants = set(init_names)
    constants.discard("")
    const_nodes: set[str] = set()
    # shape arithmetic folded here from dims a symbolic input dim set: a runtime sees the dims
    # unbound and may compute it at run time (onnxruntime runs the nodes its optimizer keeps)
    runtime_t: set[str] = set()
    runtime_nodes: list[str] = []   # their op types
    for i in order:
        op, dom, n_in, n_out = plain[i]
        x0 = n_in[0] if n_in else ""
        if x0 and x0 not in constants and x0 not in static and op not in SHAPE_READERS:
            continue  # the common case, decided early: a layer reading an activation
        if op in RANDOM_OPS or op in SUBGRAPH_OPS:
            continue
        ins = [x for x in n_in if x]
        outs = [o for o in n_out if o]
        if op in SHAPE_READERS and ins and infos.get(ins[0]) is not None and infos[ins[0]].shape is not None:
            const_nodes.add(names[i])  # reads only metadata of a tensor whose shape is known
            static.update(outs)
            if bindings and ins[0] not in constants and ins[0] not in static:   # an activation's shape
                runtime_t.update(outs)
                runtime_nodes.append(op)
            continue
        if not all(x in constants or x in static for x in ins):
            continue  # the common case: a layer reading activations
        # data inputs: all but the control inputs (shape vectors, axes...) of the op
        ctrl = CONTROL_INPUTS.get(op, frozenset()) if dom in ("", "ai.onnx") else frozenset()
        data = [x for k, x in enumerate(n_in) if x and k not in ctrl]
        # fold a non-weight-deriving op only when everything it touches is small shape
        # arithmetic: a Gather from a constant table (a float weight of more than one element)
        # stays a layer that owns the table, whatever its size
        small = all(_is_small(infos.get(x)) for x in outs + ins) and not any(
            _is_float_weight(infos.get(x)) for x in data if x in constants)
        # a node without data inputs (ConstantOfShape) makes a weight only from model
        # constants: from a shape computed from the inputs' shapes it makes a buffer (a mask)
        from_constants = all(x in constants for x in data) and (bool(data) or all(x in constants for x in ins))
        if from_constants and (op in _WEIGHT_DERIVING or small):
            const_nodes.add(names[i])
            constants.update(outs)  # a weight, possibly reshaped by a statically computed shape
        elif small or op in _WEIGHT_DERIVING:
            const_nodes.add(names[i])
            static.update(outs)
            if runtime_t and any(x in runtime_t for x in ins):
                runtime_t.update(outs)
                runtime_nodes.append(op)

    if runtime_nodes:
        kinds = Counter(runtime_nodes)
        notes.append(f"up to {len(runtime_nodes)} shape-computation node(s) ({', '.join(f'{k} x{v}' for k, v in kinds.most_common(4))}"
                     f"{', ...' if len(kinds) > 4 else ''}) are folded here with the symbolic dims bound, but a runtime sees "
                     "the dims unbound and may compute them at run time (onnxruntime runs those its optimizer keeps as "
                     "kernels, 0.2-0.4 us apiece on the host of docs/calibration.md; it fuses a flatten's into its Reshape); "
                     "they are not in the layers or the predicted time")
    # initializers no top-level node reads: unused, or read inside If/Loop/Scan bodies (which
    # this tool does not descend into): say so, never count them silently as zero or as params
    read = {x for p in plain for x in p[2] if x}
    unread = [k for k in init_info if k not in read]
    if unread:
        n_el = sum(init_info[k].elems or 0 for k in unread)
        where = (" (control-flow bodies are not analyzed: their weights and ops are not counted)"
                 if any(p[0] in SUBGRAPH_OPS for p in plain) else "")
        notes.append(f"{len(unread)} initializer(s) ({n_el:,} elements) are not read by any top-level node and are not "
                     f"counted as params{where}")

    out_list = []
    for i in order:
        op, dom, n_in, n_out = plain[i]
        nm = names[i]
        attrs = nodes[i].attribute
        out_list.append(Node(nm, op, dom if dom != "ai.onnx" else "", n_in, n_out,
                             {a.name: _attr_value(a) for a in attrs} if len(attrs) and nm not in const_nodes else {}))
    out_nodes = tuple(out_list)
    _check_text(src, model, chain.from_iterable([n.attrs for n in out_nodes if n.attrs]))
    return Graph(
        name=name or g.name or os.path.splitext(os.path.basename(path))[0] or "model",
        path=path, nodes=out_nodes, tensors=infos,
        inputs=tuple(vi.name for vi in real_inputs), outputs=tuple(o.name for o in g.output),
        constants=frozenset(constants), const_nodes=frozenset(const_nodes),
        const_values=const_values, notes=tuple(notes), opset=opset, weights_present=weights_present,
        symbolic_dims=tuple(sorted(bindings)))


def _check_missing_values(src, nodes, names, infos, missing_small) -> None:
    """Small integer constants (shape vectors) are needed for shapes: absent data is an error
    when a node that reads one ends up with an unknown output shape."""
    for (op, _, n_in, n_out), nm in zip(nodes, names):
        needed = [x for x in n_in if x in missing_small]
        if needed and any(o and (o not in infos or infos[o].shape is None) for o in n_out):
            x = needed[0]
            raise UserError(f"{src}: node '{nm}' ({op}) needs the values of initializer '{x}', whose external "
                            f"data file '{missing_small[x]}' is absent; put it next to the model")


def _is_float_weight(t: TensorInfo | None) -> bool:
    """A floating-point tensor of more than one element (a weight, not a scalar constant)."""
    return t is not None and t.dtype in FLOAT_DTYPES and (t.elems is None or t.elems > 1)


def _is_small(t: TensorInfo | None) -> bool:
    """A known tensor of at most _SMALL_CONST_ELEMS elements (shape arithmetic, not weights)."""
    return t is not None and t.elems is not None and t.elems <= _SMALL_CONST_ELEMS


def _read_external_small(full: str, t: onnx.TensorProto, info: Mapping[str, str]) -> np.ndarray | None:
    try:
        offset = int(info.get("offset", 0))
        length = int(info.get("length", 0)) or None
        with open(full, "rb") as f:
            f.seek(offset)
            raw = f.read(length if length is not None else -1)
        c = onnx.TensorProto()
        c.CopyFrom(t)
        c.ClearField("external_data")
        c.data_location = onnx.TensorProto.DEFAULT
        c.raw_data = raw
        return numpy_helper.to_array(c)
    except Exception:
        return None


# ----------------------------------------------------------------------------- writing


def save_model(model: onnx.ModelProto, path: str) -> None:
    """Write a model atomically (temp file in the same folder, then rename).

    A graph-only model (initializers marked external, data not written) gets its external
    data location renamed after the output file (`<stem>.weights.bin`); if a file of that name
    already exists next to it, the model would silently read it as its weights: refused.
    """
    d = os.path.dirname(os.path.abspath(path)) or "."
    if not os.path.isdir(d):
        raise UserError(f"{path}: folder {d} does not exist")
    external = [t for t in model.graph.initializer if t.data_location == onnx.TensorProto.EXTERNAL]
    if external:
        loc = os.path.splitext(os.path.basename(path))[0] + ".weights.bin"
        if os.path.exists(os.path.join(d, loc)):
            raise UserError(f"{path}: {os.path.join(d, loc)} exists; a graph-only model written here would read it as its "
                            "weights. Remove it or choose another output name")
        for t in external:
            for e in t.external_data:
                if e.key == "location":
                    e.value = loc
    tmp = os.path.join(d, f".{os.path.basename(path)}.tmp{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            f.write(model.SerializeToString())
        os.replace(tmp, path)
    except OSError as e:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise UserError(f"{path}: cannot write: {e.strerror or e}") from None
    except ValueError as e:  # protobuf > 2 GB
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise UserError(f"{path}: cannot serialize: {e}") from None
