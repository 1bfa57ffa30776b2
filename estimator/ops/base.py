"""The op registry: one pure cost function per ONNX op type, registered by exact name.

A cost function sees an `OpContext` (normalized shapes, dtypes, attributes; never protobuf)
and returns an `OpCost`. Conventions (stated in every report):

- MAC: one multiply-accumulate. Only contraction ops (Conv, ConvTranspose, Gemm, MatMul,
  Einsum, attention and RNN gate matmuls, their quantized and fused forms) count MACs.
- non-MAC ops: every other arithmetic operation, one per output element per elementary
  operation unless the function's docstring says otherwise (bias adds, BN scale+shift,
  activations, pooling window reductions, softmax, normalization).
- Data-movement ops (Concat, Transpose, Gather, ...) cost no arithmetic, but they read and
  write memory: their kind is "data" and the roofline charges their bytes.
- View ops (Reshape, Flatten, Squeeze, Unsqueeze, Identity, ...) neither compute nor move data:
  they are in FREE_OPS on purpose.

An op with no cost function is never counted as zero silently: the analyzer lists it as
unsupported in every report.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from ..graph import Node, TensorInfo, elems_of

# Layer kinds. "contraction" layers do MACs; "elementwise"/"norm"/"pool"/"reduce" do non-MAC
# arithmetic; "data" moves bytes; "view" changes only metadata.
KINDS = ("contraction", "elementwise", "norm", "pool", "reduce", "data", "view", "quant", "rnn",
         "unknown")  # unknown: unsupported or uncosted layers (never counted as zero)

# Kernel classes (docs/roofline.md): a compute efficiency and a per-kernel overhead per class in
# a hardware profile, fitted per class by calibration.
LAYER_CLASSES = ("conv3x3", "conv1x1", "conv_other", "grouped", "depthwise", "gemm", "gemv", "attention",
                 "elementwise", "pool", "norm", "data", "other", "conv_stem", "grouped_nchw", "depthwise_nchw")

# A class a profile gives no figure for takes its parent's (then the profile-wide default): the
# finer classes split a coarser one, so profiles written before the split keep their meaning.
CLASS_PARENT = {"conv_stem": "conv_other", "grouped": "conv_other", "grouped_nchw": "grouped", "depthwise_nchw": "depthwise", "gemv": "gemm", "attention": "gemm", "pool": "elementwise", "norm": "elementwise",
                "data": "elementwise"}

# kind -> class for the non-contraction kinds the cost functions file under "elementwise" (one
# place, rather than in every cost function)
_CLASS_OF_KIND = {"pool": "pool", "reduce": "pool", "norm": "norm", "data": "data"}


def kernel_class(kind: str, layer_class: str) -> str:
    """The class a layer is costed and calibrated as: pooling/reduce, normalization and data
    movement are their own classes whatever class their cost function named."""
    if layer_class == "elementwise":   # an op its cost function files under "other" keeps it
        return _CLASS_OF_KIND.get(kind, layer_class)
    return layer_class


def matmul_class(m_rows: int, weights_const: bool) -> str:
    """gemv: one row per sample (a classifier head at batch 1: bound by reading the weights);
    attention: both operands are activations (Q @ K^T, P @ V); gemm otherwise."""
    if not weights_const:
        return "attention"
    return "gemv" if m_rows == 1 else "gemm"


@dataclass(slots=True)
class OpContext:
    """What a cost function may read about one node (at the analyzed batch size). Read-only by
    convention (not frozen: built once per layer, and frozen dataclasses are slow to build)."""

    node: Node
    inputs: tuple[TensorInfo | None, ...]   # one per node input; None if omitted or unknown
    outputs: tuple[TensorInfo | None, ...]
    const_inputs: tuple[bool, ...]          # input i is a model constant (weight)

    def attr(self, name: str, default: Any = None) -> Any:
        return self.node.attrs.get(name, default)

    def in_shape(self, i: int) -> tuple[int, ...] | None:
        if i >= len(self.inputs) or self.inputs[i] is None:
            return None
        return self.inputs[i].shape

    def out_shape(self, i: int = 0) -> tuple[int, ...] | None:
        if i >= len(self.outputs) or self.outputs[i] is None:
            return None
        return self.outputs[i].shape

    def in_elems(self, i: int) -> int | None:
        return elems_of(self.in_shape(i))

    def out_elems(self, i: int = 0) -> int | None:
        return elems_of(self.out_shape(i))

    def has_input(self, i: int) -> bool:
        return i < len(self.node.inputs) and self.node.inputs[i] != ""


@dataclass(slots=True)
class OpCost:
    """The hardware-independent cost of one node at the analyzed batch size.

    winograd_candidate: a 2-D conv with a 3x3 kernel, stride 1, dilation 1, group 1.
    """

    macs: int = 0
    non_mac_ops: int = 0
    kind: str = "elementwise"
    layer_class: str = "other"
    winograd_candidate: bool = False


class ShapeUnknown(Exception):
    """Raised by a cost function when a shape it needs is unknown; the analyzer reports it."""


CostFn = Callable[[OpContext], OpCost]

_REGISTRY: dict[tuple[str, str], CostFn] = {}


def _norm_domain(domain: str) -> str:
    return "" if domain in ("", "ai.onnx") else domain


def register(*op_types: str, domain: str = "") -> Callable[[CostFn], CostFn]:
    """Register `fn` as the cost function of each op type; a second registration raises."""

    def deco(fn: CostFn) -> CostFn:
        for op in op_types:
            key = (_norm_domain(domain), op)
            if key in _REGISTRY:
                raise RuntimeError(f"cost function for {domain or 'ai.onnx'}::{op} registered twice")
            _REGISTRY[key] = _guarded(fn)
        return fn

    return deco


def lookup(op_type: str, domain: str = "") -> CostFn | None:
    return _REGISTRY.get((_norm_domain(domain), op_type))


def registered() -> Mapping[tuple[str, str], CostFn]:
    return dict(_REGISTRY)


def need(shape: tuple[int, ...] | None, what: str) -> tuple[int, ...]:
    """Return `shape` or raise ShapeUnknown naming what was needed."""
    if shape is None:
        raise ShapeUnknown(what)
    return shape


# Inputs that are control data, not weights, even when constant (shape vectors, indices,
# axes, scales of Resize...). Constant tensors feeding other inputs count as parameters.
CONTROL_INPUTS: Mapping[str, frozenset[int]] = {
    "Reshape": frozenset({1}), "Expand": frozenset({1}), "Tile": frozenset({1}),
    "Slice": frozenset({1, 2, 3, 4}), "Pad": frozenset({1, 2, 3}), "Resize": frozenset({1, 2, 3}),
    "Upsample": frozenset({1}), "Squeeze": frozenset({1}), "Unsqueeze": frozenset({1}),
    "Split": frozenset({1}), "TopK": frozenset({1}), "ConstantOfShape": frozenset({0}),
    "Range": frozenset({0, 1, 2}), "OneHot": frozenset({1, 2}), "Gather": frozenset({1}),
    "GatherElements": frozenset({1}), "GatherND": frozenset({1}), "ScatterND": frozenset({1}),
    "ReduceSum": frozenset({1}), "ReduceMean": frozenset({1}), "ReduceMax": frozenset({1}),
    "ReduceMin": frozenset({1}), "ReduceProd": frozenset({1}), "ReduceL1": frozenset({1}),
    "ReduceL2": frozenset({1}), "ReduceLogSum": frozenset({1}), "ReduceLogSumExp": frozenset({1}),
    "ReduceSumSquare": frozenset({1}), "CumSum": frozenset({1}), "Trilu": frozenset({1}),
    "NonMaxSuppression": frozenset({2, 3, 4}), "Clip": frozenset({1, 2}),
    "ReverseSequence": frozenset({1}), "Compress": frozenset({1}), "LSTM": frozenset({4}),
    "GRU": frozenset({4}), "RNN": frozenset({4}), "Dropout": frozenset({1, 2}),
    "Shape": frozenset({0}), "Size": frozenset({0}), "CenterCropPad": frozenset({1}),
    "DFT": frozenset({1, 2}), "STFT": frozenset({1, 2, 3}), "ScatterElements": frozenset({1}),
    "Col2Im": frozenset({1, 2}), "AffineGrid": frozenset({1}), "CumProd": frozenset({1}),
    "RoiAlign": frozenset({1, 2}), "MaxRoiPool": frozenset({1}),
}

# Ops that are free on purpose: they change metadata only (no arithmetic, no data movement in
# any real runtime). Shape/Size read metadata only. Listed here, not silently defaulted.
FREE_OPS = frozenset({
    "Reshape", "Flatten", "Squeeze", "Unsqueeze", "Identity", "Shape", "Size", "Dropout",
    "Constant", "ConstantOfShape", "Optional", "OptionalGetElement", "OptionalHasElement",
})


# Contraction ops: the inputs whose element count bounds the op's MACs from below when the
# other shapes are unknown (MatMul/Gemm: M*K*N >= M*K and >= K*N; Conv: N*out_pixels*|W| >= |W|;
# ConvTranspose: N*in_pixels*|W| >= |W| and >= |X|; Einsum: the product of all index sizes is at
# least the size of every operand).
_MAC_OPERANDS: Mapping[tuple[str, str], tuple[int, ...] | None] = {
    ("", "Conv"): (1,), ("", "ConvTranspose"): (0, 1), ("", "ConvInteger"): (1,), ("", "QLinearConv"): (3,),
    ("", "DeformConv"): (1,), ("", "MatMul"): (0, 1), ("", "Gemm"): (0, 1), ("", "MatMulInteger"): (0, 1),
    ("", "QLinearMatMul"): (0, 3), ("", "Einsum"): None,
    ("com.microsoft", "FusedConv"): (1,), ("com.microsoft", "FusedMatMul"): (0, 1),
    ("com.microsoft", "FusedGemm"): (0, 1), ("com.microsoft", "MatMulIntegerToFloat"): (0, 1),
    ("com.microsoft", "QGemm"): (0, 3), ("com.microsoft", "NhwcConv"): (1,),
    ("com.microsoft.nchwc", "Conv"): (1,),
}


def macs_at_least(ctx: OpContext) -> int:
    """A lower bound of a contraction layer's MACs from whichever operand shapes are known
    (0 for other ops or when none is known): what an uncosted layer leaves out at least."""
    key = (_norm_domain(ctx.node.domain), ctx.node.op_type)
    if key not in _MAC_OPERANDS:
        return 0
    idx = _MAC_OPERANDS[key]
    if idx is None:
        idx = tuple(range(len(ctx.inputs)))
    return max((ctx.in_elems(i) or 0 for i in idx), default=0)


# ---------------------------------------------------------------------------------------------
# Helpers shared by the cost functions (appended; pure functions of shapes and attributes).


def prod(dims) -> int:
    """Product of a sequence of ints (1 for an empty sequence)."""
    n = 1
    for d in dims:
        n *= int(d)
    return n


def broadcast_shapes(*shapes: tuple[int, ...]) -> tuple[int, ...]:
    """Numpy (multidirectional) broadcast of shapes; raises ValueError if incompatible."""
    rank = max((len(s) for s in shapes), default=0)
    out = []
    for i in range(rank):
        dims = {s[len(s) - rank + i] for s in shapes if len(s) - rank + i >= 0}
        dims.discard(1)
        if len(dims) > 1:
            raise ValueError(f"shapes {shapes} do not broadcast")
        out.append(dims.pop() if dims else 1)
    return tuple(out)


def out_elems_broadcast(ctx: OpContext, what: str) -> int:
    """Elements of output 0; when unknown, of the numpy broadcast of all present inputs."""
    n = ctx.out_elems(0)
    if n is not None:
        return n
    shapes = [ctx.in_shape(i) for i in range(len(ctx.node.inputs)) if ctx.has_input(i)]
    if not shapes or any(s is None for s in shapes):
        raise ShapeUnknown(what)
    try:
        return elems_of(broadcast_shapes(*shapes))
    except ValueError as exc:
        raise ShapeUnknown(f"{what}: {exc}") from None


def conv_output_spatial(in_spatial: tuple[int, ...], kernel: tuple[int, ...],
                        strides: tuple[int, ...], dilations: tuple[int, ...],
                        pads: tuple[int, ...], auto_pad: str = "NOTSET",
                        ceil_mode: bool = False) -> tuple[int, ...]:
    """Output spatial dims of a Conv / pooling window (ONNX rules, pads = begins + ends).

    SAME_UPPER / SAME_LOWER: out = ceil(in / stride); VALID: out = ceil((in - eff_k + 1) / s)
    (equivalently floor((in - eff_k) / s) + 1); NOTSET: floor or ceil of
    (in + pad_begin + pad_end - eff_k) / s, plus 1, with eff_k = (k - 1) * dilation + 1.
    """
    r = len(in_spatial)
    out = []
    for i in range(r):
        eff_k = (kernel[i] - 1) * dilations[i] + 1
        if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
            out.append(-(-in_spatial[i] // strides[i]))
        elif auto_pad == "VALID":
            out.append((in_spatial[i] - eff_k) // strides[i] + 1)
        else:
            span = in_spatial[i] + pads[i] + pads[i + r] - eff_k
            q = -(-span // strides[i]) if ceil_mode else span // strides[i]
            out.append(q + 1)
    return tuple(out)


def norm_axis(axis: int, rank: int) -> int:
    """A possibly negative axis made non-negative for a tensor of `rank` dims."""
    return axis + rank if axis < 0 else axis


def attr_str(ctx: OpContext, name: str, default: str) -> str:
    """A string attribute as str (bytes decoded), with its ONNX default."""
    v = ctx.attr(name, default)
    if v is None:
        return default
    return v.decode() if isinstance(v, bytes) else str(v)


class CostInputError(ShapeUnknown):
    """A cost function met shapes or attributes that do not fit its op (a malformed or
    mis-inferred node). A ShapeUnknown, so the analyzer reports the node as uncosted instead of
    crashing; the message names the op, the node, the input shapes and the error."""


def _guarded(fn: CostFn) -> CostFn:
    """`fn`, with its arithmetic and indexing errors turned into CostInputError (registry use)."""

    @functools.wraps(fn)
    def wrapper(ctx: OpContext) -> OpCost:
        try:
            return fn(ctx)
        except ShapeUnknown:
            raise
        except (ArithmeticError, IndexError, KeyError, TypeError, ValueError) as exc:
            shapes = [None if t is None else t.shape for t in ctx.inputs]
            raise CostInputError(
                f"{ctx.node.qualified_type} node {ctx.node.name!r}: shapes or attributes do not "
                f"fit the op (input shapes {shapes}, attributes {dict(ctx.node.attrs)}): "
                f"{type(exc).__name__}: {exc}") from exc

    return wrapper
