"""Grouping layers into kernels: the groups of ONNX nodes a runtime executes as one.

The pipeline is load -> analyze -> **group into kernels** -> predict -> report. A runtime does
not run the ONNX graph node by node: onnxruntime folds a Conv's bias, BatchNormalization,
activation and residual Add into one NCHWc convolution, turns x * sigmoid(x) into one node,
a MatMul and its bias Add into one Gemm; TensorRT, TFLite and NPU compilers do the same. The
roofline charges a kernel once: one per-kernel overhead, no separate element-wise pass for
what runs in the epilogue, and the tensors between its members never leave the chip.

A fusion rule is data (a hardware profile's `fusion` key: rule names from RULES, or rules
written out in the same form; DEFAULTS gives the rules per profile `kind`):

    {"name": "conv_epilogue",
     "head": ["Conv", ...],                   # ops that start a kernel ("contraction": any layer with MACs)
     "then": [                                 # the members that may follow, in order
        {"ops": ["BatchNormalization"]},
        {"ops": ["Add", "Sum"], "other": "any"},
        {"ops": ["Relu", "Clip", ...], "repeat": true}]}

A layer joins the kernel of the layer it follows when its op is the next step's (steps are
optional: the chain may skip any; a `repeat` step may match several layers in a row), one of
its activation inputs is the kernel's current output, and that tensor has no other reader. `other` says what its other activation inputs may be:
"constant" (default: only model constants, such as a bias), "any" (a residual from another
branch) or "head_input" (the kernel's own input, as in x * sigmoid(x)).

Pure: layer costs in, a head index per layer out (estimator/roofline.py uses it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from .errors import UserError

ACTIVATIONS = ("Relu", "Clip", "LeakyRelu", "Sigmoid", "Tanh", "HardSigmoid", "HardSwish", "Elu", "Selu",
               "Softplus", "Mish", "PRelu", "Gelu")
CONTRACTION = "contraction"
#: Nodes whose non-MAC work (bias, alpha/beta, a fused activation) is their own epilogue: the
#: roofline charges their MACs only (docs/roofline.md).
EPILOGUE_IN_NODE = frozenset({"Conv", "ConvTranspose", "ConvInteger", "QLinearConv", "Gemm", "FusedConv",
                              "FusedGemm", "NhwcConv", "FusedMatMul"})
OTHER_KINDS = ("constant", "any", "head_input")


@dataclass(frozen=True)
class Step:
    ops: frozenset[str]
    other: str = "constant"
    repeat: bool = False      # the step may match several layers in a row
    exact: bool = False       # only right after the step before it (that step may not be skipped)


@dataclass(frozen=True)
class Rule:
    name: str
    head: frozenset[str]          # op types, or {"contraction"}
    then: tuple[Step, ...]
    members_compute: bool = False  # members keep their own arithmetic (one kernel, but the work is done):
    #   attention's Softmax and P V, a pointwise chain's ops; an epilogue's members are free
    flatten_2d: bool = False       # the runtime fuses only a head it can view as 2-D: rank <= 2, or any
    #   rank when the file's shapes are static (onnxruntime's MatMulAddFusion; grouping(dynamic=...))
    unfused_at_output: frozenset[str] = frozenset()  # member ops that do not join when their output
    #   leaves the graph (onnxruntime runs a HardSwish graph output as HardSigmoid and Mul)

    def starts(self, op_type: str, kind: str, rank: int = 0, dynamic: bool = False) -> bool:
        if self.flatten_2d and dynamic and rank > 2:
            return False
        return op_type in self.head or (CONTRACTION in self.head and kind == "contraction")


#: The catalog of rules by name (docs/roofline.md, "Kernels").
RULES: Mapping[str, Rule] = {}


def _rule(name: str, head: Sequence[str], *then: tuple, repeat: bool = False, members_compute: bool = False,
          flatten_2d: bool = False, unfused_at_output: Sequence[str] = ()) -> None:
    RULES[name] = Rule(name, frozenset(head), tuple(Step(frozenset(o), other, repeat) for o, other in then),  # type: ignore[index]
                       members_compute, flatten_2d, frozenset(unfused_at_output))


#: What every runtime folds into the contraction that produces its input: BatchNormalization
#: (into the weights) and activations (on the output tile), any number in a row.
EPILOGUE_OPS = ("BatchNormalization", "Relu", "Clip", "LeakyRelu", "Sigmoid", "Tanh", "HardSigmoid", "HardSwish",
                "Elu", "Selu", "Softplus", "Mish")
#: onnxruntime (1.32, checked) folds a HardSwish into the convolution before it only when another
#: node reads it: a HardSwish whose output leaves the graph runs as HardSigmoid and Mul next to the
#: convolution (Relu, Clip, HardSigmoid and Sigmoid fold either way). Every kernel sample of `hw
#: detect` ends in its activation, so its HardSwish samples (a fifth of the convolutions) had been
#: predicted as if fused
UNFUSED_AT_OUTPUT = ("HardSwish",)
_rule("epilogue", [CONTRACTION], (EPILOGUE_OPS, "constant"), repeat=True, unfused_at_output=UNFUSED_AT_OUTPUT)


# a convolution's epilogue: bias (in the node), BatchNormalization, residual add, activation
_rule("conv_epilogue", ["Conv", "ConvTranspose", "ConvInteger", "QLinearConv", "FusedConv", "NhwcConv"],
      (["BatchNormalization"], "constant"), (["Add", "Sum"], "any"), (ACTIVATIONS, "constant"),
      unfused_at_output=UNFUSED_AT_OUTPUT)
# a Gemm (its bias in the node) and its activation
_rule("gemm_activation", ["Gemm", "FusedGemm"], (ACTIVATIONS, "constant"))
# a bias added after a MatMul (Gemm when onnxruntime fuses it); then an activation. onnxruntime
# (MatMulAddFusion, checked on 1.32) fuses a 2-D MatMul always, a 3-D one ([N, 128, 768]) only
# when the file's shapes are static (it rewrites it as Reshape, Gemm, Reshape); with a symbolic
# dim (every torch export with dynamic axes) the MatMul and the Add run as two kernels
_rule("matmul_add", ["MatMul"], (["Add"], "constant"), (ACTIVATIONS, "constant"), flatten_2d=True)
# the same at any rank: runtimes that fuse a MatMul's bias whatever its input's shape (TensorRT's
# fully connected + bias, oneDNN's matmul with a bias post-op)
_rule("matmul_bias", ["MatMul"], (["Add"], "constant"), (ACTIVATIONS, "constant"))
# x * sigmoid(x) (SiLU / Swish): one element-wise kernel that still does both ops (the Mul is
# not free: no contraction hides it)
_rule("silu", ["Sigmoid", "HardSigmoid"], (["Mul"], "head_input"), members_compute=True)
# GELU written out with Erf: x / sqrt(2) -> Erf -> + 1 -> * x -> * 0.5; one kernel (onnxruntime's
# Gelu / BiasGelu) that still evaluates every step, the Erf above all: on this host a Gelu
# costs about 3 times an Add of the same size (kernel samples of hw detect)
_rule("gelu_erf", ["Div", "Mul"], (["Erf"], "constant"), (["Add"], "constant"), (["Mul"], "head_input"),
      (["Mul"], "constant"), members_compute=True)
# a BatchNormalization not folded into a conv (DenseNet's pre-activation after a Concat) and its
# activation: one per-channel scale-shift kernel (onnxruntime: a depthwise 1x1 NCHWc Conv with
# the activation fused)
_rule("bn_activation", ["BatchNormalization"], (ACTIVATIONS, "constant"))
# an element-wise chain right after a normalization (scale, shift) runs in its pass
_rule("norm_epilogue", ["LayerNormalization", "BatchNormalization", "InstanceNormalization"],
      (ACTIVATIONS, "constant"))

# scaled dot-product attention as one kernel: Q K^T, a scale, an additive mask, Softmax, P V
# (TensorRT's multi-head attention fusion, onnxruntime's Attention/MultiHeadAttention fusion,
# FlashAttention-style kernels); the scores never leave the chip
_rule("attention", ["MatMul"], (["Div", "Mul"], "constant"), (["Add", "Where"], "any"), (["Softmax"], "constant"),
      (["MatMul"], "any"), members_compute=True)
RULES["attention"] = Rule("attention", RULES["attention"].head,
                          RULES["attention"].then[:-1] + (Step(frozenset({"MatMul"}), "any", exact=True),), True)

# a chain of element-wise ops (any other inputs) as one kernel: TensorRT's PointWise fusion
# ("multiple adjacent PointWise layers can be fused into a single PointWise layer", TensorRT
# Developer Guide, Types of Fusions), XLA's and TorchInductor's loop fusion
POINTWISE_OPS = ("Add", "Sub", "Mul", "Div", "Neg", "Sqrt", "Pow", "Reciprocal", "Exp", "Log", "Erf", "Abs",
                 "Cast", "Where", "Max", "Min") + ACTIVATIONS
_rule("pointwise", POINTWISE_OPS, (POINTWISE_OPS, "any"), repeat=True, members_compute=True)

#: Rules by profile kind; a profile without `fusion` and without a known kind gets "default".
#: Every kind gets the epilogue rule only: what a shipped device's compiler fuses beyond it is not
#: known here. `estimate hw detect` checks each rule against onnxruntime's optimized graph on
#: the host and writes the confirmed ones into the profile's `fusion` (docs/roofline.md, "Kernels").
DEFAULTS: Mapping[str, tuple[str, ...]] = {
    "cpu": ("epilogue",),
    "gpu": ("epilogue",),
    "npu": ("epilogue",),
    "default": ("epilogue",),
}


def rules_for(names: Sequence[Any] | None, kind: str | None) -> tuple[Rule, ...]:
    """The rules a profile asks for (`names`: its `fusion` list, None for the kind's default)."""
    if names is None:
        names = DEFAULTS.get((kind or "").lower(), DEFAULTS["default"])
    return tuple(r if isinstance(r, Rule) else RULES[r] for r in names)


def parse_rule(where: str, data: Any) -> Rule | str:
    """A rule from a profile: a catalog name, or a mapping {name, head, then}; errors name the
    key (UserError)."""
    if isinstance(data, str):
        if data not in RULES:
            raise UserError(f"{where}: unknown fusion rule '{data}' (known: {', '.join(RULES)})")
        return data
    if not isinstance(data, Mapping):
        raise UserError(f"{where}: expected a rule name or a mapping with name, head, then")
    unknown = set(data) - {"name", "head", "then", "members_compute", "flatten_2d", "unfused_at_output"}
    if unknown:
        raise UserError(f"{where}: unknown key '{sorted(unknown)[0]}' (known: name, head, then, members_compute, "
                        "flatten_2d, unfused_at_output)")
    uao = _ops(f"{where}.unfused_at_output", data["unfused_at_output"]) if "unfused_at_output" in data else frozenset()
    mc = data.get("members_compute", False)
    if not isinstance(mc, bool):
        raise UserError(f"{where}.members_compute: expected true or false, got {mc!r}")
    f2 = data.get("flatten_2d", False)
    if not isinstance(f2, bool):
        raise UserError(f"{where}.flatten_2d: expected true or false, got {f2!r}")
    name = data.get("name")
    if not isinstance(name, str) or not name:
        raise UserError(f"{where}.name: expected a text")
    head = _ops(f"{where}.head", data.get("head"))
    then = data.get("then")
    if not isinstance(then, list) or not then:
        raise UserError(f"{where}.then: expected a list of steps, each {{ops: [...], other: constant|any|head_input}}")
    steps = []
    for k, st in enumerate(then):
        w = f"{where}.then[{k}]"
        if not isinstance(st, Mapping) or set(st) - {"ops", "other", "repeat", "exact"}:
            raise UserError(f"{w}: expected a mapping with ops and, optionally, other, repeat and exact")
        other = st.get("other", "constant")
        if other not in OTHER_KINDS:
            raise UserError(f"{w}.other: expected one of {', '.join(OTHER_KINDS)}, got {other!r}")
        repeat = st.get("repeat", False)
        if not isinstance(repeat, bool):
            raise UserError(f"{w}.repeat: expected true or false, got {repeat!r}")
        exact = st.get("exact", False)
        if not isinstance(exact, bool):
            raise UserError(f"{w}.exact: expected true or false, got {exact!r}")
        steps.append(Step(_ops(f"{w}.ops", st.get("ops")), other, repeat, exact))
    return Rule(name, head, tuple(steps), mc, f2, uao)


def _ops(where: str, v: Any) -> frozenset[str]:
    if not isinstance(v, list) or not v or not all(isinstance(x, str) and x for x in v):
        raise UserError(f"{where}: expected a list of ONNX op types (or 'contraction')")
    return frozenset(v)


def rule_to_data(r: Rule | str) -> Any:
    """The profile form of a rule (its name when it is the catalog's)."""
    if isinstance(r, str):
        return r
    if RULES.get(r.name) == r:
        return r.name
    return {"name": r.name, "head": sorted(r.head),
            "then": [{"ops": sorted(s.ops), **({"other": s.other} if s.other != "constant" else {}),
                      **({"repeat": True} if s.repeat else {}), **({"exact": True} if s.exact else {})}
                     for s in r.then], **({"members_compute": True} if r.members_compute else {}),
            **({"flatten_2d": True} if r.flatten_2d else {}),
            **({"unfused_at_output": sorted(r.unfused_at_output)} if r.unfused_at_output else {})}


def group(layers: Sequence, rules: Sequence[Rule], constants: frozenset[str] | set[str] = frozenset(),
          dynamic: bool = False) -> list[int]:
    """Kernel head of every layer (see grouping())."""
    return grouping(layers, rules, dynamic)[0]


def grouping(layers: Sequence, rules: Sequence[Rule], dynamic: bool = False,
             graph_outputs: Sequence[str] = ()) -> tuple[list[int], list[bool]]:
    """(kernel head of every layer: its own index when it heads a kernel or runs alone; whether
    a member keeps its own arithmetic: it joined under a rule with members_compute, such as
    attention's P V MatMul).

    `layers`: LayerCost rows in topological order (op_type, kind, status, inputs, outputs;
    `inputs` are the activations a layer reads: constants are not among them). Views
    (Reshape, ...) neither join nor break a chain: a layer reading a view of a kernel's output
    reads that output. Every rule that can start at a layer is a candidate, and a following
    layer joins when it matches any of them (the candidates it does not match drop out), so a
    profile's list order does not hide a rule: a Conv followed by a residual Add joins under
    conv_epilogue even when epilogue is listed first, a MatMul followed by a scale and a Softmax
    under attention even when matmul_add is listed too. `dynamic`: the file has symbolic dims (the
    loader bound them), so a runtime cannot flatten a head of rank > 2 (Rule.flatten_2d).
    `graph_outputs`: the graph's output tensors (Rule.unfused_at_output).
    """
    n = len(layers)
    head = list(range(n))
    work = [False] * n
    if not rules:
        return head, work
    alias: dict[str, str] = {}
    producer: dict[str, int] = {}
    readers: dict[str, int] = {}
    outs = set(graph_outputs)
    for i, l in enumerate(layers):
        if l.kind == "view":
            if l.inputs and l.op_type not in ("Shape", "Size"):
                for o in l.outputs:
                    alias[o] = alias.get(l.inputs[0], l.inputs[0])
            continue
        for o in l.outputs:
            producer[o] = i
        for x in set(l.inputs):
            r = alias.get(x, x)
            readers[r] = readers.get(r, 0) + 1
    # per kernel head: (candidate rules with their next step index, current output tensor, the head's input);
    # every rule that can start at the head stays a candidate while the layers that join match it
    state: dict[int, tuple[list[tuple[Rule, int]], str, str]] = {}
    for i, l in enumerate(layers):
        if l.kind == "view" or l.status != "ok":
            continue
        joined = False
        ins = [alias.get(x, x) for x in l.inputs]
        for pos, x in enumerate(ins):  # the input that is a kernel's current output, read only here
            p = producer.get(x)
            h = head[p] if p is not None else None
            if h is None or h not in state or readers.get(x, 0) != 1:
                continue
            cands, out, hin = state[h]
            if out != x:
                continue
            rest = ins[:pos] + ins[pos + 1:]
            advanced = []
            for rule, k in cands:
                for j in range(k, len(rule.then)):
                    st = rule.then[j]
                    if st.exact and j != k:
                        continue
                    if l.op_type in st.ops and _others_ok(st.other, rest, hin) and not (
                            l.op_type in rule.unfused_at_output and any(o in outs for o in l.outputs)):
                        advanced.append((rule, j if st.repeat else j + 1))
                        break
            if advanced:
                head[i] = h
                # the member's work stays when every rule still matching says so
                work[i] = all(r.members_compute for r, _ in advanced)
                state[h] = (advanced, l.outputs[0] if l.outputs else "", hin)
                joined = True
            break
        if joined:
            continue
        rank = len(l.output_shape or ())
        cands = [(rule, 0) for rule in rules if rule.starts(l.op_type, l.kind, rank, dynamic)]
        if cands and l.outputs:
            state[i] = (cands, l.outputs[0], ins[0] if ins else "")
    return head, work


def _others_ok(other: str, rest: list[str], head_input: str) -> bool:
    if other == "any":
        return True
    if other == "head_input":
        return all(x == head_input for x in rest) and bool(rest)
    return not rest  # "constant": the layer reads no other activation


# ----------------------------------------------------------------------------- layout reorders

#: Ops onnxruntime's CPU provider runs in its blocked channel layout (NCHWc) once their inputs are
#: in it (checked on its optimized graph: a Conv always converts; pools, same-shape Add/Mul,
#: channel Concat and activations stay in the layout; Slice, Transpose, Resize, a broadcast Mul,
#: Gemm and views do not). The profile key `layout: nchwc` turns the rule on.
NCHWC_NATIVE = frozenset({"MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool", "Add", "Sum", "Mul",
                          "Concat", "BatchNormalization"} | set(ACTIVATIONS))
NCHWC_CONV = frozenset({"Conv", "FusedConv"})
LAYOUTS = ("nchwc",)
#: onnxruntime (1.32, checked on its optimized graphs of one-conv probes, channel block 16, and 8 on
#: an AVX2 host) runs a convolution in the blocked layout only if its input channels come in whole
#: vector loads: a
#: dense conv of fewer input channels than a block (a stem: it reads NCHW directly) or of a
#: multiple of this many (20, 24, 116 do; 17, 18, 30, 58 do not), a depthwise conv of a multiple
#: of this many channels (4, 12, 24, 116 do; 6, 14, 58 do not), a grouped conv whose groups have a
#: whole number of blocks of channels. Any other conv runs as a plain NCHW Conv (im2col and GEMM
#: per group), outside the layout.
NCHWC_CHANNEL_STEP = 4
#: the class a grouped or depthwise conv outside the blocked layout is costed as: onnxruntime runs
#: it as a plain NCHW Conv, group by group, another kernel at another rate than the blocked ones
#: (docs/roofline.md, "Kernel classes"; measured: ShuffleNetV2-1.0's 58-channel depthwise convs
#: on 28 x 28 took 74 us each at batch 1 inside the model against 25 us predicted at the blocked
#: depthwise kernel's rate)
UNBLOCKED_CLASS = {"grouped": "grouped_nchw", "depthwise": "depthwise_nchw"}


def is_2d_conv(l) -> bool:
    """A 2-D convolution: the only layers onnxruntime's blocked layout takes."""
    return l.op_type in NCHWC_CONV and l.kind == "contraction" and len(l.output_shape or ()) == 4


def runs_blocked(l, block: int) -> bool:
    """Whether onnxruntime runs conv layer `l` in its blocked layout (NCHWC_CHANNEL_STEP); False
    for any layer that is not a 2-D convolution."""
    if not is_2d_conv(l):
        return False
    if l.layer_class == "depthwise":
        return l.map_n % NCHWC_CHANNEL_STEP == 0
    if l.layer_class == "grouped":
        return l.map_n % block == 0 and l.map_k % block == 0
    return l.map_k < block or l.map_k % NCHWC_CHANNEL_STEP == 0


def input_channel_fill(l, block: int) -> float:
    """The share of a blocked conv's input channels that are real: onnxruntime's ReorderInput
    pads a dense conv's input channels to whole blocks, and the kernel multiplies the padding too
    (measured on this project's host, 1x1 convs to 128 outputs at 28 x 28: 116 input channels cost
    the same as 128, 112 cost 11% less; 40 the same as 48). 1 for a conv that reads NCHW (fewer
    input channels than a block), a depthwise conv (it reduces over its window), a grouped conv
    (its groups are whole blocks) and every other layer. The output channels' padding is the
    profile's `mac_array` columns."""
    if l.layer_class in ("depthwise", "grouped") or not runs_blocked(l, block):
        return 1.0
    k = int(l.map_k)
    return 1.0 if k < block else k / (-(-k // block) * block)


#: output blocks one call of onnxruntime's blocked convolution kernel computes together (MLAS's
#: NCHWc "filter set"): each call covers one output row of up to this many blocks of one group,
#: for one block of its input channels
NCHWC_FILTER_SET = 4


def grouped_calls(l, block: int) -> float:
    """Per sample, the calls of onnxruntime's blocked convolution kernel a grouped conv makes
    (one per output row, set of NCHWC_FILTER_SET output blocks and input-channel block of each
    group): groups x ceil(outputs per group / (4 x block)) x output rows x input blocks per group.
    A RegNet-X conv of 25 groups of 16 channels at 7 x 7 makes 25 x 1 x 7 x 1 = 175 calls of
    16 x 16 x 9 x 7 MACs each, short enough that each call's fixed cost shows (the profile's
    grouped_call_s; docs/roofline.md, "Kernel classes"). 0 for every other layer, and for a grouped
    conv the layout cannot take (it runs as grouped_nchw)."""
    if l.layer_class != "grouped" or not runs_blocked(l, block):
        return 0.0
    shape = l.output_shape
    n_out, k_in = int(l.map_n), int(l.map_k)
    if not n_out or not k_in or not shape[1]:
        return 0.0
    groups = int(shape[1]) // n_out
    return float(groups * -(-n_out // (NCHWC_FILTER_SET * block)) * int(shape[2]) * -(-k_in // block))


def layout_class(l, block: int) -> str:
    """The kernel class layer `l` is costed as on a host with a blocked layout: a grouped or
    depthwise conv the layout cannot take runs as another kernel (UNBLOCKED_CLASS: grouped_nchw,
    depthwise_nchw); every other layer keeps its class."""
    c = l.layer_class
    if c in UNBLOCKED_CLASS and is_2d_conv(l) and not runs_blocked(l, block):
        return UNBLOCKED_CLASS[c]
    return c


def layout_conversions(layers: Sequence, tensor_bytes: Mapping[str, float], graph_outputs: Sequence[str],
                       block: int = 16) -> list[tuple[int, str, int]]:
    """The layout conversions the runtime adds (onnxruntime's ReorderInput/ReorderOutput
    kernels), as (layer served, tensor, elements per sample): a convolution whose input comes from
    outside the blocked layout converts that input (unless it has fewer channels than a block: the
    first conv of an image model reads NCHW directly); a layer in the layout whose output is read
    by a layer outside it, or is a graph output, converts that output once. The profiler
    attributes both to the layer they serve, and so does the roofline."""
    producer: dict[str, int] = {}
    consumers: dict[str, list[int]] = {}
    for i, l in enumerate(layers):
        for o in l.outputs:
            producer[o] = i
        for x in l.inputs:
            consumers.setdefault(x, []).append(i)
    inside = [False] * len(layers)
    for i, l in enumerate(layers):
        if is_2d_conv(l):
            inside[i] = runs_blocked(l, block)
        elif l.op_type in NCHWC_NATIVE and l.inputs and all(x in producer and inside[producer[x]] for x in l.inputs):
            sizes = {tensor_bytes.get(x) for x in l.inputs}
            if l.op_type in ("Add", "Sum", "Mul"):
                inside[i] = len(sizes) == 1
            elif l.op_type == "Concat":   # along channels, each input a whole number of blocks
                shapes = [layers[producer[x]].output_shape or () for x in l.inputs]
                out = l.output_shape or ()
                inside[i] = (len(out) == 4 and all(len(sh) == 4 and tuple(sh[2:]) == tuple(out[2:]) and sh[1] % block == 0
                                                   for sh in shapes) and sum(sh[1] for sh in shapes) == out[1])
            else:
                inside[i] = True
    outs = set(graph_outputs)
    found: list[tuple[int, str, int]] = []
    for i, l in enumerate(layers):
        if inside[i] and l.op_type in NCHWC_CONV and l.inputs:
            x = l.inputs[0]
            p = producer.get(x)
            stem = l.layer_class in ("conv3x3", "conv1x1", "conv_other", "gemv", "conv_stem") and l.map_k < block
            if (p is None or not inside[p]) and not stem:
                found.append((i, x, int(l.input_elems)))
        if inside[i]:
            for o in l.outputs:
                if o in outs or any(not inside[c] for c in consumers.get(o, ())):
                    found.append((i, o, int(l.output_elems)))
                    break
    return found


def layout_reorders(layers: Sequence, tensor_bytes: Mapping[str, float], graph_outputs: Sequence[str],
                    block: int = 16) -> list[float]:
    """Per layer, the elements (per sample) its layout conversions read and write (2 x each
    converted tensor; layout_conversions)."""
    extra = [0.0] * len(layers)
    for i, _, n in layout_conversions(layers, tensor_bytes, graph_outputs, block):
        extra[i] += 2.0 * n
    return extra

