"""The normalized graph that crosses from the loader (onnx_io) into the core.

Nothing here knows about protobuf: shapes are tuples of ints, attributes are plain Python
values (ints, floats, strings, tuples, numpy arrays for tensor attributes), with ONNX defaults
filled in by the cost functions that read them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from operator import itemgetter
from typing import Any, Mapping

import numpy as np

# Bytes per element of the ONNX element types the project meets. Sub-byte types are rounded
# to their packed size (int4: 0.5 byte).
DTYPE_BYTES: Mapping[str, float] = {
    "float32": 4, "float16": 2, "bfloat16": 2, "float64": 8,
    "int8": 1, "uint8": 1, "int16": 2, "uint16": 2, "int32": 4, "uint32": 4,
    "int64": 8, "uint64": 8, "bool": 1, "string": 8, "complex64": 8, "complex128": 16,
    "float8e4m3fn": 1, "float8e4m3fnuz": 1, "float8e5m2": 1, "float8e5m2fnuz": 1,
    "int4": 0.5, "uint4": 0.5, "float4e2m1": 0.5, "unknown": 4,
}

# Bytes per element of a floating-point tensor when the model runs at a chosen precision.
PRECISION_BYTES: Mapping[str, int] = {"fp32": 4, "fp16": 2, "bf16": 2, "int8": 1}

FLOAT_DTYPES = frozenset({"float32", "float16", "bfloat16", "float64"})


def elems_of(shape: tuple[int, ...] | None) -> int | None:
    """Number of elements of a shape; None when the shape is unknown."""
    if shape is None:
        return None
    n = 1
    for d in shape:
        n *= int(d)
    return n


class TensorInfo(tuple):
    """A tensor's static facts: name, shape (None if unknown) and element type; `elems` is the
    element count (None if the shape is unknown).

    An immutable tuple (name, shape, dtype, elems) with named fields: the loader makes one per
    tensor (tens of thousands in a large graph), and a tuple is built several times faster
    than a frozen dataclass.
    """

    __slots__ = ()

    def __new__(cls, name: str, shape: tuple[int, ...] | None, dtype: str) -> "TensorInfo":
        if shape is None:
            return tuple.__new__(cls, (name, None, dtype, None))
        n = 1
        for d in shape:
            n *= int(d)
        return tuple.__new__(cls, (name, shape, dtype, n))

    name: str = property(itemgetter(0))  # type: ignore[assignment]
    shape: tuple[int, ...] | None = property(itemgetter(1))  # type: ignore[assignment]
    dtype: str = property(itemgetter(2))  # type: ignore[assignment]
    elems: int | None = property(itemgetter(3))  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"TensorInfo(name={self[0]!r}, shape={self[1]!r}, dtype={self[2]!r})"

    def __getnewargs__(self):  # pickling and copying rebuild from the three fields
        return self[:3]

    @property
    def itemsize(self) -> float:
        return DTYPE_BYTES.get(self[2], 4)

    def bytes_at(self, precision: str | None = None) -> float | None:
        """Bytes of the tensor at its stored dtype, or with float tensors cast to `precision`."""
        n = self[3]
        if n is None:
            return None
        if precision is not None and self[2] in FLOAT_DTYPES:
            return n * PRECISION_BYTES[precision]
        return n * DTYPE_BYTES.get(self[2], 4)


@dataclass(slots=True)
class Node:
    """One ONNX node, normalized. `domain` is "" for the default ONNX domain. Treated as
    immutable (not frozen: a frozen dataclass is slower to build, which shows on 10,000+ nodes)."""

    name: str
    op_type: str
    domain: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    attrs: Mapping[str, Any] = field(default_factory=dict)

    @property
    def qualified_type(self) -> str:
        return self.op_type if self.domain in ("", "ai.onnx") else f"{self.domain}.{self.op_type}"


@dataclass(frozen=True)
class Graph:
    """A loaded model, ready for costing.

    nodes: every node in topological order, including the ones that only compute constants.
    tensors: the static facts of every tensor whose shape or type is known.
    inputs: the graph inputs the user feeds (initializers listed as inputs are excluded).
    constants: names of tensors whose values are fixed by the model (initializers and the
        outputs of nodes whose inputs are all constant).
    const_nodes: names of nodes folded as constant computation (not layers).
    const_values: small constant tensors whose values are known (shape arithmetic).
    notes: what the loader changed or assumed (overridden dims, stripped weights...).
    """

    name: str
    path: str
    nodes: tuple[Node, ...]
    tensors: Mapping[str, TensorInfo]
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    constants: frozenset[str]
    const_nodes: frozenset[str]
    const_values: Mapping[str, np.ndarray] = field(default_factory=dict)
    notes: tuple[str, ...] = ()
    opset: int = 0
    weights_present: bool = True
    symbolic_dims: tuple[str, ...] = ()   # symbolic dim names of the file's inputs the loader bound ('N')

    def shape(self, name: str) -> tuple[int, ...] | None:
        t = self.tensors.get(name)
        return None if t is None else t.shape
