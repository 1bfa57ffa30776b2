"""Per-layer measured times: parse an onnxruntime JSON profile and join its kernels back to
the nodes of the ORIGINAL model (the fp32 model the user gave).

Profile format (undocumented upstream, onnxruntime #1297): a JSON list of trace events. Each
``session.run`` is one event ``{"cat": "Session", "name": "model_run", "ts", "dur"}``; each
kernel is ``{"cat": "Node", "name": "<optimized node>_kernel_time", "dur": <us>,
"args": {"op_name", "provider", ...}}`` whose ``ts`` falls inside its run.

Join method (see docs/validation.md): the session also saves its optimized graph
(``SessionOptions.optimized_model_filepath``), so every kernel name is an optimized node with
known inputs and outputs. For each optimized node we find the original tensors it represents:

1. its outputs, when they are original tensor names (Conv+BN+Relu -> a FusedConv/Conv whose
   output is the Relu's tensor);
2. its name, when onnxruntime named it after an original tensor (NCHWc: ``<tensor>_nchwc``)
   or after an original node (QDQ: ``conv1_token_3``), after stripping known prefixes and
   suffixes (``InsertedPrecisionFreeCast_``, ``_nchwc``, ``_token_<n>`` ...).

From those tensors we walk the original graph backwards, collecting the nodes that were fused
into the optimized node, and stop at tensors the optimized node reads (its inputs), tensors
another optimized node represents, constants and graph inputs. When the node reads tensors
with invented names (NCHWc ``reorder_token_<n>``), its true input boundary is unknown: the walk
then stops after the first compute op (Conv, Gemm, pooling ...). Element-wise nodes that are
left without an owner (an Add+Relu folded into the preceding NCHWc Conv) join the owner of
their producer. Nodes onnxruntime added (ReorderInput/Output, Cast, Quantize/DequantizeLinear,
layout Transposes) are attributed to the neighbour they serve and also totalled per kind.
Whatever cannot be placed is reported as ``unmapped`` with its time: nothing is dropped.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from dataclasses import dataclass, field

import onnx

#: Ops that onnxruntime inserts (layout, precision, device copies), attributed to neighbours.
ADDED_OPS = {"ReorderInput", "ReorderOutput", "QuantizeLinear", "DequantizeLinear",
             "DynamicQuantizeLinear", "Cast", "Transpose", "MemcpyToHost", "MemcpyFromHost"}
#: Added ops that serve their producer (post-processing of an output); others serve consumers.
SERVES_PRODUCER = {"ReorderOutput", "QuantizeLinear", "MemcpyToHost"}

#: Element-wise/normalization ops that onnxruntime fuses into the preceding compute node.
FOLLOWER_OPS = {"Relu", "Clip", "Sigmoid", "Tanh", "LeakyRelu", "HardSigmoid", "HardSwish",
                "BatchNormalization", "Add", "Sum", "Mul", "Div", "Sub", "Identity", "Gelu",
                "Elu", "Selu", "Softplus", "PRelu", "Erf", "Cast", "Dropout"}
#: Priority of the op that names a fused group (the "primary" node that gets its time).
MAIN_PRIORITY = ["Conv", "ConvTranspose", "Gemm", "MatMul", "Attention", "LSTM", "GRU", "RNN",
                 "Einsum", "MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool",
                 "LayerNormalization", "Softmax", "Resize", "Concat"]
_MAIN = set(MAIN_PRIORITY)

_PREFIXES = ("InsertedPrecisionFreeCast_", "FusedBack_")
_SUFFIX_RE = re.compile(r"(_nchwc|_token_\d+|_QuantizeLinear_Output|_DequantizeLinear_Output|"
                        r"_QuantizeLinear_Input|_quantized|_fused|_output_cast\d*|_input_cast\d*)$")


def name_candidates(name: str) -> list[str]:
    """``name`` and the forms it takes after stripping known onnxruntime prefixes/suffixes."""
    out = [name]
    cur = name
    for _ in range(6):
        new = cur
        for p in _PREFIXES:
            if new.startswith(p):
                new = new[len(p):]
        new = _SUFFIX_RE.sub("", new)
        if new == cur or not new:
            break
        out.append(new)
        cur = new
    return out


def node_names(model: onnx.ModelProto) -> list[str]:
    """Node names as reported in results: the ONNX name, or ``<op_type>_<index>`` if empty."""
    seen: set[str] = set()
    out = []
    for i, n in enumerate(model.graph.node):
        nm = n.name or f"{n.op_type}_{i}"
        if nm in seen:
            nm = f"{nm}_{i}"
        seen.add(nm)
        out.append(nm)
    return out


# ---------------------------------------------------------------------------------------------
# Profile parsing


@dataclass
class KernelTimes:
    """Kernel times per optimized node, summed over the kept runs, and the run count."""
    by_node: dict[str, float]          # optimized node name -> total us over kept runs
    op_by_node: dict[str, str]         # optimized node name -> op_name from args
    provider_by_node: dict[str, str]
    runs: int                          # runs kept (the first, cold run excluded)
    runs_in_profile: int
    run_totals_us: list[float] = field(default_factory=list)  # kernel time of each kept run


def parse_profile(path: str, *, skip_runs: int = 1) -> KernelTimes:
    """Sum kernel times (``cat == "Node"``, name ``*_kernel_time``) over runs, excluding the
    first ``skip_runs`` runs (the cold run includes kernel selection and allocation)."""
    with open(path) as f:
        events = json.load(f)
    runs = sorted((e["ts"], e["ts"] + e["dur"]) for e in events
                  if e.get("cat") == "Session" and e.get("name") == "model_run")
    kept = runs[skip_runs:]
    by_node: dict[str, float] = defaultdict(float)
    op_by_node: dict[str, str] = {}
    prov: dict[str, str] = {}
    import bisect
    starts = [r[0] for r in kept]
    per_run = [0.0] * len(kept)
    for e in events:
        if e.get("cat") != "Node" or not str(e.get("name", "")).endswith("_kernel_time"):
            continue
        ts = e.get("ts", 0)
        if runs:
            k = bisect.bisect_right(starts, ts) - 1
            if k < 0 or ts > kept[k][1]:
                continue  # belongs to a skipped run (or outside any run)
            per_run[k] += float(e.get("dur", 0))
        name = e["name"][: -len("_kernel_time")]
        by_node[name] += float(e.get("dur", 0))
        args = e.get("args", {}) or {}
        op_by_node.setdefault(name, args.get("op_name", "?"))
        prov.setdefault(name, args.get("provider", "?"))
    return KernelTimes(dict(by_node), op_by_node, prov, len(kept) if runs else 1, len(runs), per_run)


# ---------------------------------------------------------------------------------------------
# Join


@dataclass
class JoinResult:
    layers: list[dict]                 # one per original node, in graph order
    unmapped: list[dict]               # kernels that could not be placed
    total_s: float                     # mean kernel time per run
    mapped_s: float
    unmapped_s: float
    added_by_kind: dict[str, float] = field(default_factory=dict)
    runs: int = 0
    run_totals_s: list[float] = field(default_factory=list)

    @property
    def coverage(self) -> float:
        return self.mapped_s / self.total_s if self.total_s > 0 else 1.0

    def summary(self) -> dict:
        return {"kernel_total_s": self.total_s, "mapped_s": self.mapped_s,
                "unmapped_s": self.unmapped_s, "coverage": self.coverage,
                "added_by_kind_s": self.added_by_kind, "profiled_runs": self.runs,
                "kernel_total_per_run_s": _spread(self.run_totals_s)}


def _spread(xs: list[float]) -> dict | None:
    """min/median/max of the per-run kernel totals: shows how disturbed the profiled pass was."""
    if not xs:
        return None
    s = sorted(xs)
    return {"min": s[0], "p50": s[(len(s) - 1) // 2], "max": s[-1]}


class _Graph:
    def __init__(self, model: onnx.ModelProto, names: list[str] | None = None):
        g = model.graph
        self.nodes = list(g.node)
        self.names = names or [n.name for n in self.nodes]
        self.producer: dict[str, int] = {}
        self.consumers: dict[str, list[int]] = defaultdict(list)
        for i, n in enumerate(self.nodes):
            for t in n.output:
                if t:
                    self.producer[t] = i
            for t in n.input:
                if t:
                    self.consumers[t].append(i)
        self.consts = {i.name for i in g.initializer}
        self.consts |= {t for n in self.nodes if n.op_type == "Constant" for t in n.output}
        self.graph_inputs = {vi.name for vi in g.input}
        self.by_name = {nm: i for i, nm in enumerate(self.names)}


def _follows(O: "_Graph", t: str, targets: set[str], hops: int = 12) -> bool:
    """Whether tensor ``t`` is reached from one of ``targets`` through element-wise followers."""
    for _ in range(hops):
        if t in targets:
            return True
        i = O.producer.get(t)
        if i is None or O.nodes[i].op_type not in FOLLOWER_OPS:
            return False
        data = [u for u in O.nodes[i].input if u and u not in O.consts]
        if not data:
            return False
        if len(data) > 1:  # Add/Mul of two activations: either branch may lead to the target
            return any(_follows(O, u, targets, hops - 1) for u in data)
        t = data[0]
    return False


def join(original: onnx.ModelProto, optimized: onnx.ModelProto, kt: KernelTimes) -> JoinResult:
    """Attribute every kernel of ``kt`` to original nodes (see module docstring)."""
    O = _Graph(original, node_names(original))
    P = _Graph(optimized, [n.name or f"{n.op_type}_{i}" for i, n in enumerate(optimized.graph.node)])
    orig_tensors = set(O.producer)

    def orig_tensor(t: str) -> str | None:
        for c in name_candidates(t):
            if c in orig_tensors:
                return c
        return None

    def orig_node_by_name(name: str) -> int | None:
        for c in name_candidates(name):
            if c in O.by_name:
                return O.by_name[c]
        return None

    # 1. classify optimized nodes; representative original tensors of compute nodes
    added: dict[int, bool] = {}
    reps: dict[int, list[str]] = {}
    for j, p in enumerate(P.nodes):
        oi = orig_node_by_name(P.names[j])
        is_orig = oi is not None and O.nodes[oi].op_type == p.op_type
        added[j] = p.op_type in ADDED_OPS and not is_orig
        if added[j]:
            continue
        r: list[str] = []
        for t in p.output:
            ot = orig_tensor(t) if t else None
            if ot and ot not in r:
                r.append(ot)
        for c in name_candidates(P.names[j])[1:]:
            if c in orig_tensors and c not in r:
                r.append(c)
        if oi is not None:
            for t in O.nodes[oi].output:
                if t and t not in r:
                    r.append(t)
        reps[j] = r
    all_reps = {t for r in reps.values() for t in r}

    # 2. backward walks: original nodes owned by each optimized node
    owned: dict[int, list[int]] = {}
    owner: dict[int, int] = {}
    for j, r in reps.items():
        p = P.nodes[j]
        explicit = {orig_tensor(t) for t in p.input if t}
        tokens = [t for t in p.input if t and orig_tensor(t) is None and t in P.producer]
        token_mode = bool(tokens)
        # representative tensors of the optimized nodes that produce this node's token inputs
        token_reps = {x for t in tokens for x in reps.get(P.producer[t], [])}
        stop = (all_reps - set(r)) | explicit | O.consts | O.graph_inputs
        seen: list[int] = []
        stack = list(r)
        while stack:
            t = stack.pop()
            i = O.producer.get(t)
            if i is None or i in seen:
                continue
            seen.append(i)
            if token_mode and O.nodes[i].op_type in _MAIN:
                continue
            for u in O.nodes[i].input:
                if not u or u in stop:
                    continue
                if token_mode and _follows(O, u, token_reps):
                    continue  # element-wise tail of the producing node's group: the producer's
                stack.append(u)
        owned[j] = seen
        for i in seen:
            owner.setdefault(i, j)
    # 3. forward rule: unowned element-wise followers join the owner of their producer
    for i, n in enumerate(O.nodes):
        if i in owner or n.op_type not in FOLLOWER_OPS:
            continue
        for u in n.input:
            if u and u not in O.consts and u in O.producer:
                pi = O.producer[u]
                if pi in owner:
                    owner[i] = owner[pi]
                    owned[owner[pi]].append(i)
                break

    def primary(j: int) -> int | None:
        nodes = owned.get(j) or []
        if not nodes:
            return None
        for op in MAIN_PRIORITY:
            for i in nodes:
                if O.nodes[i].op_type == op:
                    return i
        return nodes[0]

    prim = {j: primary(j) for j in reps}

    def neighbour(j: int) -> int | None:
        """Primary original node of the nearest compute neighbour of an added node."""
        op = P.nodes[j].op_type
        direct_up = [P.producer[t] for t in P.nodes[j].input if t in P.producer]
        up_first = op in SERVES_PRODUCER or (op == "Cast" and "output" in P.names[j]) or (
            # a layout Transpose right after a compute node (NHWC QLinearConv) converts its output
            op == "Transpose" and any(not added[k] and prim.get(k) is not None for k in direct_up))
        for direction in ((0, 1) if up_first else (1, 0)):
            frontier, seen = [j], {j}
            for _ in range(8):
                nxt = []
                for k in frontier:
                    if direction == 0:
                        cand = [P.producer[t] for t in P.nodes[k].input if t in P.producer]
                    else:
                        cand = [c for t in P.nodes[k].output for c in P.consumers.get(t, [])]
                    for c in cand:
                        if c in seen:
                            continue
                        seen.add(c)
                        if not added[c] and prim.get(c) is not None:
                            return prim[c]
                        if added[c]:
                            nxt.append(c)
                frontier = nxt
                if not frontier:
                    break
        return None

    # 4. distribute kernel time
    runs = max(1, kt.runs)
    measured = defaultdict(float)
    added_on = defaultdict(float)
    kernels = defaultdict(list)
    added_by_kind: dict[str, float] = defaultdict(float)
    unmapped = []
    for name, us in kt.by_node.items():
        s = us / runs * 1e-6
        j = P.by_name.get(name)
        target = None
        if j is None:
            target = orig_node_by_name(name)
        elif added[j]:
            target = neighbour(j)
            if target is not None:
                added_on[target] += s
                added_by_kind[P.nodes[j].op_type] += s
        else:
            target = prim.get(j)
        if target is None:
            unmapped.append({"kernel": name, "op_type": kt.op_by_node.get(name, "?"),
                             "measured_s": s})
            continue
        measured[target] += s
        kernels[target].append(name)

    layers = []
    for i, n in enumerate(O.nodes):
        if n.op_type == "Constant":
            continue
        entry = {"name": O.names[i], "op_type": n.op_type, "measured_s": measured.get(i, 0.0)}
        if kernels.get(i):
            entry["kernels"] = kernels[i]
        if added_on.get(i):
            entry["added_s"] = added_on[i]
        j = owner.get(i)
        if j is not None and prim.get(j) is not None and prim[j] != i:
            entry["fused_into"] = O.names[prim[j]]
        elif i not in measured:
            entry["no_kernel"] = True
        layers.append(entry)
    total = sum(kt.by_node.values()) / runs * 1e-6
    unmapped_s = sum(u["measured_s"] for u in unmapped)
    unmapped.sort(key=lambda u: -u["measured_s"])
    return JoinResult(layers, unmapped, total, total - unmapped_s, unmapped_s, dict(added_by_kind),
                      kt.runs, [x * 1e-6 for x in kt.run_totals_us])
