"""analyze(graph) -> CostTable: per-layer costs that depend on the graph alone, never on hardware.

Conventions (also in docs/counting.md and every report header):
- MACs: multiply-accumulates of contraction ops only (1 MAC = 1 multiply + 1 add; vendor
  "FLOPs" are 2 per MAC). Everything else is counted as non-MAC ops.
- params: elements of every weight tensor the graph stores or derives from constants alone
  (initializers, Constant, ConstantOfShape of an initializer, DequantizeLinear/Cast/Reshape/
  Transpose of constants), BatchNorm's four vectors included. A weight shared by several
  layers is counted once, at its first consumer, also when a layer reads a layout of it (a
  tied lm_head's Transpose of the embedding table). Constant control inputs (shape vectors,
  axes, Resize scales, Clip bounds) are not parameters.
- activations: every tensor a layer reads or writes that is not a model constant.
- A layer is every node that is not folded as constant computation. Ops without a cost
  function are listed as unsupported; ops whose cost needs an unknown shape are listed as
  uncosted. Neither is ever counted as zero silently.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from functools import cached_property
from typing import Mapping

import numpy as np

from . import ops as _ops  # noqa: F401  (registers every cost function)
from .graph import DTYPE_BYTES, FLOAT_DTYPES, PRECISION_BYTES, Graph, TensorInfo
from .ops.base import CONTROL_INPUTS, FREE_OPS, kernel_class, OpContext, OpCost, ShapeUnknown, macs_at_least, registered

# Dtypes through which a constant's stored dtype is traced back (weights stored int8 and
# dequantized, or stored fp16 and cast up, are stored at the narrow type).
_PASS_THROUGH = frozenset({"DequantizeLinear", "Cast", "Reshape", "Transpose", "Identity",
                           "Squeeze", "Unsqueeze", "Flatten"})


@dataclass(slots=True)
class LayerCost:
    """The cost of one layer (node) at the analyzed batch size. Treated as immutable (not
    frozen only because a frozen dataclass of this many fields is 4x slower to build, which
    shows on graphs of 10,000+ layers)."""

    name: str
    op_type: str
    domain: str
    kind: str
    layer_class: str
    macs: int
    non_mac_ops: int
    params: int
    weight_bytes: float          # at the stored dtype
    weight_float_elems: int      # the part of params stored as floating point
    weight_other_bytes: float    # bytes of weights stored as integers (already quantized)
    input_elems: int             # activations read (non-constant inputs)
    input_bytes: float           # at the stored dtype
    input_float_elems: int
    output_elems: int
    output_bytes: float
    output_float_elems: int
    output_shape: tuple[int, ...] | None
    winograd_candidate: bool
    status: str = "ok"           # ok | unsupported | uncosted (shape unknown)
    note: str = ""
    map_k: int = 0                 # reduction size per output (rows of a MAC array); 0: not mapped
    map_n: int = 0                 # output channels / columns (cols of a MAC array); 0: not mapped
    input_float_bytes: float = 0.0   # the float part of input_bytes, at the stored dtype
    output_float_bytes: float = 0.0
    shared_weight_float_elems: int = 0      # weights read here but owned (counted) by an earlier layer
    shared_weight_other_bytes: float = 0.0
    kernel_elems: int = 0            # Winograd candidates: elements of the conv kernel (grows when transformed)
    kernel_float: bool = True
    inputs: tuple[str, ...] = ()   # activation tensors read
    outputs: tuple[str, ...] = ()  # activation tensors written

    def weight_bytes_at(self, precision: str | None) -> float:
        """Weight bytes with floating-point weights at `precision` (None: as stored)."""
        if precision is None:
            return self.weight_bytes
        return self.weight_other_bytes + self.weight_float_elems * PRECISION_BYTES[precision]

    def weight_read_bytes_at(self, precision: str | None) -> float:
        """Bytes of every weight this layer reads (its own and shared ones owned earlier)."""
        pb = PRECISION_BYTES[precision] if precision is not None else 4
        return self.weight_bytes_at(precision) + self.shared_weight_other_bytes + self.shared_weight_float_elems * pb

    def kernel_bytes_at(self, precision: str | None) -> float:
        """Bytes of the conv kernel of a Winograd candidate (what a transform grows)."""
        if not self.kernel_elems:
            return 0.0
        if self.kernel_float and precision is not None:
            return self.kernel_elems * PRECISION_BYTES[precision]
        return self.kernel_elems * (self.weight_bytes / max(self.params, 1))

    def input_bytes_at(self, precision: str | None) -> float:
        if precision is None:
            return self.input_bytes
        return self.input_bytes - self.input_float_bytes + self.input_float_elems * PRECISION_BYTES[precision]

    def output_bytes_at(self, precision: str | None) -> float:
        if precision is None:
            return self.output_bytes
        return self.output_bytes - self.output_float_bytes + self.output_float_elems * PRECISION_BYTES[precision]


# The fields of LayerCost in order (analyze builds them positionally).
LAYER_FIELDS = ("name", "op_type", "domain", "kind", "layer_class", "macs", "non_mac_ops", "params",
                "weight_bytes", "weight_float_elems", "weight_other_bytes", "input_elems", "input_bytes",
                "input_float_elems", "output_elems", "output_bytes", "output_float_elems", "output_shape",
                "winograd_candidate", "status", "note", "map_k", "map_n", "input_float_bytes",
                "output_float_bytes", "shared_weight_float_elems", "shared_weight_other_bytes",
                "kernel_elems", "kernel_float", "inputs", "outputs")


@dataclass(frozen=True)
class Totals:
    macs: int
    non_mac_ops: int
    params: int
    weight_bytes: float
    max_activation_elems: int
    max_activation_bytes: float
    max_activation_tensor: str
    peak_activation_bytes: float
    macs_by_op_type: Mapping[str, int]
    layers: int
    unsupported_ops: Mapping[str, int]
    uncosted_ops: Mapping[str, int]
    uncosted_layers: int = 0          # layers left out of the totals: unsupported or uncosted
    macs_missing_at_least: int = 0    # a lower bound of the MACs those layers leave out
    first_uncounted: str = ""         # the first of them in topological order, and why: "name (op): reason"


@dataclass(frozen=True)
class CostTable:
    """Per-layer costs of one graph at one batch size (default 1: per sample)."""

    model: str
    batch: int
    inputs: tuple[TensorInfo, ...]
    layers: tuple[LayerCost, ...]
    totals: Totals
    precision: str | None = None   # bytes figures use this precision for float tensors
    notes: tuple[str, ...] = ()
    weights_present: bool = True
    tensor_bytes: Mapping[str, float] = field(default_factory=dict, repr=False, compare=False)
    outputs: tuple[str, ...] = ()  # graph outputs (written to DRAM by the roofline)
    dynamic_shapes: bool = False   # the file has symbolic dims (bound at load): a runtime sees them unbound

    # numpy columns, built once, for array arithmetic in the roofline and sweeps
    @cached_property
    def macs(self) -> np.ndarray:
        return np.array([l.macs for l in self.layers], dtype=np.float64)

    @cached_property
    def non_mac_ops(self) -> np.ndarray:
        return np.array([l.non_mac_ops for l in self.layers], dtype=np.float64)

    def column(self, attr: str) -> np.ndarray:
        return np.array([getattr(l, attr) for l in self.layers], dtype=np.float64)


def _stored_dtype(graph: Graph, name: str, producers: Mapping[str, object]) -> tuple[str, bool]:
    """The dtype a constant is stored at, traced back through Cast/DequantizeLinear/reshapes,
    and whether it is computed by the graph (its origin is the output of an op other than
    Constant: a mask or an index table built from constants) rather than stored."""
    seen = 0
    cur = name
    while cur in producers and seen < 16:
        node = producers[cur]
        if node.op_type not in _PASS_THROUGH or not node.inputs or not node.inputs[0]:
            break
        cur = node.inputs[0]
        seen += 1
    t = graph.tensors.get(cur) or graph.tensors.get(name)
    origin = producers.get(cur)
    return (t.dtype if t is not None else "float32"), origin is not None and origin.op_type != "Constant"


_NO_SIZES = (0, 0.0, 0, 0.0)


def _sizes(infos) -> tuple[int, float, int, float]:
    """(elements, bytes, float elements, float bytes) of the known tensors among `infos`."""
    n = nb = nf = nfb = 0
    for t in infos:
        if t is not None:
            e = t[3]
            if e is not None:
                dt = t[2]
                b = e * DTYPE_BYTES.get(dt, 4)
                n += e
                nb += b
                if dt in FLOAT_DTYPES:
                    nf += e
                    nfb += b
    return n, float(nb), nf, float(nfb)


def analyze(graph: Graph, *, precision: str | None = None, batch: int = 1) -> CostTable:
    """Cost every layer of `graph`; `precision` (fp32|fp16|bf16|int8) sizes float tensors.

    `batch` is the batch size the graph's shapes were set to (recorded, not applied).
    """
    # constants are produced by folded nodes only (or are initializers): trace their origin there
    const_nodes = graph.const_nodes
    producers = {o: n for n in graph.nodes if n.name in const_nodes for o in n.outputs if o}
    layers: list[LayerCost] = []
    weight_owner: set[str] = set()
    roots: dict[str, str] = {}
    macs_by_type: Counter[str] = Counter()
    unsupported: Counter[str] = Counter()
    uncosted: Counter[str] = Counter()
    incomplete = missing_macs = 0
    first_uncounted = ""
    needed: set[str] | None = None  # built when first asked: outputs read by a node or graph outputs
    tensors = graph.tensors
    is_const = graph.constants

    registry = registered()
    no_control: frozenset[int] = frozenset()
    get = tensors.get
    for node in graph.nodes:
        if node.name in const_nodes:
            continue
        default_domain = node.domain in ("", "ai.onnx")
        qtype = node.op_type if default_domain else node.qualified_type
        control = CONTROL_INPUTS.get(node.op_type, no_control) if default_domain else no_control
        # (no tensor is named "": an omitted optional input maps to None / False)
        in_infos = tuple(map(get, node.inputs))
        out_infos = tuple(map(get, node.outputs))
        const_flags = tuple(map(is_const.__contains__, node.inputs))

        # one pass over the inputs: parameters (constant, non-control, owned by their first
        # consumer) and activations read
        params = wfloat = sh_float = 0
        wbytes = wother = sh_other = 0.0
        act_in: list[str] = []
        in_infos_act: list[TensorInfo | None] = []
        for i, x in enumerate(node.inputs):
            if not x:
                continue
            t = in_infos[i]
            if const_flags[i]:
                if t is None or t[3] is None or t[3] <= 1 or i in control:
                    continue  # scalar constants (GELU's 0.5, a 1/sqrt(d) scale) are not parameters
                sd, computed = _stored_dtype(graph, x, producers) if x in producers else (t.dtype, False)
                owner = _weight_root(x, producers, tensors, roots)
                if owner in weight_owner or (computed and sd not in FLOAT_DTYPES):
                    # shared (counted at its first consumer, read here too), or an integer or
                    # boolean tensor the graph computes from constants (a mask, an index
                    # table): read, but not a parameter
                    if sd in FLOAT_DTYPES:
                        sh_float += t.elems
                    else:
                        sh_other += t.elems * DTYPE_BYTES.get(sd, 4)
                    continue
                weight_owner.add(owner)
                params += t.elems
                b = t.elems * DTYPE_BYTES.get(sd, 4)
                wbytes += b
                if sd in FLOAT_DTYPES:
                    wfloat += t.elems
                else:
                    wother += b
                continue
            act_in.append(x)
            in_infos_act.append(t)
        in_elems, in_bytes, in_float, in_fbytes = _sizes(in_infos_act) if in_infos_act else _NO_SIZES
        # outputs: sizes, and the ones that matter whose shape is unknown
        act_out = []
        missing = []
        out_elems = out_float = 0
        out_bytes = out_fbytes = 0.0
        for x, t in zip(node.outputs, out_infos):
            if not x:
                continue
            act_out.append(x)
            if t is None or t[3] is None:
                if needed is None:  # outputs that matter (an unused Dropout mask does not)
                    needed = {y for n in graph.nodes for y in n.inputs if y}
                    needed.update(graph.outputs)
                if x in needed:
                    missing.append(x)
                continue
            e = t[3]
            b = e * DTYPE_BYTES.get(t[2], 4)
            out_elems += e
            out_bytes += b
            if t[2] in FLOAT_DTYPES:
                out_float += e
                out_fbytes += b
        out_shape = out_infos[0][1] if out_infos and out_infos[0] is not None else None

        status, note = "ok", ""
        if default_domain and node.op_type in FREE_OPS:
            cost = OpCost(kind="view", layer_class="other")
        else:
            fn = registry.get((node.domain if not default_domain else "", node.op_type))
            if fn is None:
                cost = OpCost(kind="unknown", layer_class="other")
                status, note = "unsupported", f"no cost function for {qtype}"
                unsupported[qtype] += 1
            else:
                ctx = OpContext(node=node, inputs=in_infos, outputs=out_infos, const_inputs=const_flags)
                try:
                    cost = fn(ctx)
                except ShapeUnknown as e:
                    cost = OpCost(kind="unknown", layer_class="other")
                    status, note = "uncosted", f"shape unknown: {e}"
        if missing and status == "ok":
            # an output whose shape is unknown: whatever the cost function made of the inputs,
            # the layer's bytes (and, for most ops, its work) are unknown: never counted as ok
            status, note = "uncosted", f"output shape unknown: {missing[0]}"
        if status == "uncosted":
            uncosted[qtype] += 1
            ctx = OpContext(node=node, inputs=in_infos, outputs=out_infos, const_inputs=const_flags)
            missing_macs += max(int(cost.macs), macs_at_least(ctx))
            cost = OpCost(kind="unknown", layer_class="other")
        if status != "ok":
            incomplete += 1
            if not first_uncounted:
                first_uncounted = f"'{node.name}' ({qtype}): {note}"
        if cost.macs:
            macs_by_type[qtype] += int(cost.macs)
        mk, mn = _mapping_dims(node, in_infos) if cost.macs else (0, 0)
        kel, kfl = 0, True
        if cost.winograd_candidate:
            wi = 3 if node.op_type == "QLinearConv" else 1
            kt = in_infos[wi] if wi < len(in_infos) else None
            if kt is not None and kt.elems:
                kel, kfl = int(kt.elems), kt.dtype in FLOAT_DTYPES
        # positional, in the order of LAYER_FIELDS (a keyword call of 31 fields is ~2x slower;
        # tests/test_ops.py checks the order against the dataclass)
        layers.append(LayerCost(
            node.name, node.op_type, node.domain, cost.kind, kernel_class(cost.kind, cost.layer_class), int(cost.macs),
            int(cost.non_mac_ops), params, wbytes, wfloat, wother, in_elems, in_bytes, in_float,
            out_elems, float(out_bytes), out_float, out_shape, bool(cost.winograd_candidate), status, note,
            mk, mn, in_fbytes, float(out_fbytes), sh_float, sh_other, kel, kfl, tuple(act_in), tuple(act_out)))

    # activation tensors: graph inputs and every layer output
    act_names: list[str] = list(graph.inputs)
    for l in layers:
        act_names.extend(l.outputs)
    max_name, max_elems = "", 0
    tensor_bytes: dict[str, float] = {}
    pb = PRECISION_BYTES[precision] if precision is not None else None
    for x in act_names:
        t = get(x)
        if t is None or t[3] is None:
            tensor_bytes[x] = 0.0
            continue
        e = t[3]
        tensor_bytes[x] = float(e * (pb if pb is not None and t[2] in FLOAT_DTYPES else DTYPE_BYTES.get(t[2], 4)))
        if e > max_elems:
            max_name, max_elems = x, e
    max_bytes = tensor_bytes.get(max_name, 0.0)
    peak = _peak_live_bytes(graph, layers, tensor_bytes)

    weight_bytes = sum(l.weight_bytes_at(precision) for l in layers)
    totals = Totals(
        macs=int(sum(l.macs for l in layers)),
        non_mac_ops=int(sum(l.non_mac_ops for l in layers)),
        params=int(sum(l.params for l in layers)),
        weight_bytes=float(weight_bytes),
        max_activation_elems=int(max_elems), max_activation_bytes=float(max_bytes),
        max_activation_tensor=max_name, peak_activation_bytes=float(peak),
        macs_by_op_type=dict(macs_by_type.most_common()), layers=len(layers),
        unsupported_ops=dict(unsupported.most_common()), uncosted_ops=dict(uncosted.most_common()),
        uncosted_layers=incomplete, macs_missing_at_least=int(missing_macs), first_uncounted=first_uncounted)
    inputs = tuple(graph.tensors[x] for x in graph.inputs if x in graph.tensors)
    return CostTable(model=graph.name, batch=batch, inputs=inputs, layers=tuple(layers),
                     totals=totals, precision=precision, notes=graph.notes,
                     weights_present=graph.weights_present, tensor_bytes=tensor_bytes,
                     outputs=tuple(graph.outputs), dynamic_shapes=bool(graph.symbolic_dims))


_CONV_W = {"Conv": 1, "FusedConv": 1, "ConvInteger": 1, "NhwcConv": 1, "QLinearConv": 3}
_MATMUL_B = {"MatMul": 1, "FusedMatMul": 1, "MatMulInteger": 1, "QLinearMatMul": 3,
             "MatMulIntegerToFloat": 1, "DynamicQuantizeMatMul": 1}


#: ops that only rearrange (or retype) one constant: their output is the same weight
LAYOUT_OPS = frozenset({"Transpose", "Reshape", "Identity", "Squeeze", "Unsqueeze", "Flatten", "Cast"})


def _weight_root(x: str, producers, tensors, memo: dict[str, str]) -> str:
    """The stored tensor a constant is a layout of (a tied lm_head's Transpose of the embedding
    table is the table): a weight is counted once whatever views of it the layers read."""
    if x in memo:
        return memo[x]
    root = x
    n = producers.get(x)
    if n is not None and n.op_type in LAYOUT_OPS and n.inputs and n.inputs[0]:
        src, a, b = n.inputs[0], tensors.get(n.inputs[0]), tensors.get(x)
        if a is not None and b is not None and a[3] is not None and a[3] == b[3]:
            root = _weight_root(src, producers, tensors, memo)
    memo[x] = root
    return root


def _mapping_dims(node, in_infos) -> tuple[int, int]:
    """(K, N) of a contraction layer for mapping onto a rows x cols MAC array.

    K = input channels per group (convs) or the reduction dim (matmuls); N = output channels
    (all groups; one group's for a grouped, not depthwise, conv) or the output columns. The kernel window and the spatial/batch dims are
    iterated in time. (0, 0) where the op has no such mapping (Einsum, attention, RNNs):
    the roofline then assumes full utilization and says so.
    """
    def shape(i):
        return in_infos[i].shape if i < len(in_infos) and in_infos[i] is not None else None

    op = node.op_type
    try:
        if op in _CONV_W:
            w = shape(_CONV_W[op])
            if not w or len(w) < 2:
                return (0, 0)
            g = int(node.attrs.get("group", 1) or 1)
            # a grouped (not depthwise) conv runs group after group: one group's outputs per pass
            n = int(w[0]) // g if g > 1 and int(w[1]) > 1 and int(w[0]) % g == 0 else int(w[0])
            return (int(w[1]), n)
        if op == "ConvTranspose":
            w = shape(1)
            g = int(node.attrs.get("group", 1))
            return (int(w[0]) // g, int(w[1]) * g) if w and len(w) >= 2 else (0, 0)
        if op == "Gemm":
            b = shape(1)
            if not b or len(b) != 2:
                return (0, 0)
            return (int(b[1]), int(b[0])) if node.attrs.get("transB", 0) else (int(b[0]), int(b[1]))
        if op in _MATMUL_B:
            b = shape(_MATMUL_B[op])
            if not b:
                return (0, 0)
            if op == "FusedMatMul" and node.attrs.get("transB", 0) and len(b) >= 2:
                return (int(b[-1]), int(b[-2]))
            return (int(b[-2]), int(b[-1])) if len(b) >= 2 else (int(b[0]), 1)
    except (TypeError, ValueError, IndexError):
        return (0, 0)
    return (0, 0)


def _peak_live_bytes(graph: Graph, layers: list[LayerCost], tensor_bytes: Mapping[str, float]) -> float:
    """Peak of live activation bytes over the topological schedule of the layers.

    A tensor is live from its producer's step (graph inputs: step 0) through its last
    consumer's step (graph outputs: the last step). While a layer runs, its inputs and outputs
    are all live. View layers (Reshape, Flatten, ...) alias their input: their output takes no
    memory of its own and keeps the input alive until the view's last consumer.
    """
    n = len(layers)
    if n == 0:
        return float(sum(tensor_bytes.get(x, 0.0) for x in graph.inputs))
    alias: dict[str, str] = {}
    for l in layers:
        if l.kind == "view" and l.inputs and l.op_type not in ("Shape", "Size"):
            root = alias.get(l.inputs[0], l.inputs[0])
            for o in l.outputs:
                alias[o] = root
    start: dict[str, int] = {x: 0 for x in graph.inputs}
    end: dict[str, int] = {}
    for i, l in enumerate(layers):
        for x in l.outputs:
            if x in alias:
                continue
            start.setdefault(x, i)
            end.setdefault(x, i)
        for x in l.inputs:
            end[alias.get(x, x)] = i
    for x in graph.outputs:
        r = alias.get(x, x)
        if r in start:
            end[r] = n - 1
    delta = np.zeros(n + 1)
    for x, s in start.items():
        e = end.get(x, s)
        b = tensor_bytes.get(x, 0.0)
        delta[s] += b
        delta[e + 1] -= b
    return float(np.cumsum(delta)[:n].max())
