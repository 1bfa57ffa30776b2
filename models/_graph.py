"""A small graph builder shared by the reference model builders.

It collects nodes and initializers with readable, unique names, and knows the two weight modes:

- ``weights=True``: each initializer gets float32 random data drawn from one
  ``numpy.random.default_rng(seed)`` in creation order, so a build is deterministic.
- ``weights=False`` (graph-only): each initializer carries its name, dims and data_type, and is
  marked as external data (``data_location = EXTERNAL``; ``external_data`` entries ``location``
  = ``<model>.weights.bin``, ``offset``, ``length``). Nothing is drawn and nothing is written, so
  building is fast; the offsets are what a real weights file laid out in the same order would
  use (tensors back to back, no padding).

Small constants that shape inference and onnxruntime must be able to read (Reshape shapes,
Unsqueeze axes, Clip bounds, Resize scales, scalars) are ``Constant`` nodes, never initializers:
in both modes every initializer is a weight, and its data is either random or absent.
"""

from __future__ import annotations

import math
from typing import Iterable, Sequence

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17
IR_VERSION = 8  # IR 8 is the IR of the onnx release that introduced opset 17 (onnx 1.12)
PRODUCER = "estimate.models"


class GraphBuilder:
    """Accumulates one graph. Every node and tensor name is checked for uniqueness."""

    def __init__(self, model_name: str, *, weights: bool, seed: int) -> None:
        self.model_name = model_name
        self.weights = weights
        self.rng = np.random.default_rng(seed)
        self.location = f"{model_name}.weights.bin"
        # Tensors are created in place inside the final ModelProto: large weight data is never
        # copied from one message into another (make_graph/make_model would copy it twice).
        self.proto = onnx.ModelProto()
        self.graph = self.proto.graph
        self._offset = 0
        self._node_names: set[str] = set()
        self._tensor_names: set[str] = set()
        self._consts: dict[tuple, str] = {}

    # ----------------------------------------------------------------------------- names
    def _claim_tensor(self, name: str) -> str:
        if name in self._tensor_names:
            raise ValueError(f"duplicate tensor name {name!r}")
        self._tensor_names.add(name)
        return name

    # ----------------------------------------------------------------------------- inputs
    def input(self, name: str, elem_type: int, shape: Sequence[int | str]) -> str:
        self._claim_tensor(name)
        self.graph.input.append(helper.make_tensor_value_info(name, elem_type, list(shape)))
        return name

    def output(self, name: str, elem_type: int, shape: Sequence[int | str]) -> None:
        if name not in self._tensor_names:
            raise ValueError(f"output {name!r} is not produced by the graph")
        self.graph.output.append(helper.make_tensor_value_info(name, elem_type, list(shape)))

    # ----------------------------------------------------------------------------- weights
    def weight(self, name: str, shape: Sequence[int], kind: str = "normal", *,
               std: float = 0.02, low: float = 0.0, high: float = 1.0,
               value: float = 0.0) -> str:
        """Add a float32 initializer.

        kind: "normal" (mean 0, `std`), "uniform" (`low`..`high`), "const" (`value`).
        In graph-only mode nothing is drawn: the tensor is external and has no data.
        """
        self._claim_tensor(name)
        shape = [int(d) for d in shape]
        count = math.prod(shape)
        t = self.graph.initializer.add()
        t.name = name
        t.data_type = TensorProto.FLOAT
        t.dims.extend(shape)
        if self.weights:
            if kind == "normal":
                arr = self.rng.standard_normal(count, dtype=np.float32)
                arr *= np.float32(std)
            elif kind == "uniform":
                arr = self.rng.uniform(low, high, count).astype(np.float32)
            elif kind == "const":
                arr = np.full(count, value, dtype=np.float32)
            else:  # pragma: no cover - programming error
                raise ValueError(f"unknown init kind {kind!r}")
            t.raw_data = arr.astype("<f4", copy=False).tobytes()
        else:
            self._external(t, 4 * count)
        return name

    def _external(self, t: TensorProto, length: int) -> None:
        """Graph-only: the initializer's data is an (absent) external file of `length` bytes."""
        t.data_location = TensorProto.EXTERNAL
        for key, val in (("location", self.location), ("offset", str(self._offset)), ("length", str(length))):
            entry = t.external_data.add()
            entry.key = key
            entry.value = val
        self._offset += length

    def conv_weight(self, name: str, cout: int, cin_per_group: int, kh: int, kw: int,
                    gain: float = math.sqrt(2.0)) -> str:
        """Conv weight [cout, cin/group, kh, kw], He-normal: std = gain / sqrt(fan_in)."""
        fan_in = cin_per_group * kh * kw
        return self.weight(name, (cout, cin_per_group, kh, kw), std=gain / math.sqrt(fan_in))

    def batchnorm_params(self, prefix: str, c: int, scale: float = 1.0) -> list[str]:
        """BN weight (gamma ~ scale*U(0.8, 1.2)), bias, running_mean, running_var (> 0)."""
        return [
            self.weight(f"{prefix}.weight", (c,), "uniform", low=0.8 * scale, high=1.2 * scale),
            self.weight(f"{prefix}.bias", (c,), std=0.05),
            self.weight(f"{prefix}.running_mean", (c,), std=0.05),
            self.weight(f"{prefix}.running_var", (c,), "uniform", low=0.8, high=1.2),
        ]

    # ----------------------------------------------------------------------------- constants
    def const(self, name: str, array: np.ndarray) -> str:
        """A Constant node (readable by shape inference). Identical constants are shared."""
        array = np.asarray(array)
        key = (array.dtype.str, array.shape, array.tobytes())
        if key in self._consts:
            return self._consts[key]
        self._add_node(helper.make_node("Constant", [], [self._claim_tensor(name)], name=name,
                                        value=numpy_helper.from_array(array, name)))
        self._consts[key] = name
        return name

    def const_i64(self, name: str, values: Iterable[int]) -> str:
        return self.const(name, np.array(list(values), dtype=np.int64))

    def const_f32(self, name: str, value: float | Sequence[float]) -> str:
        return self.const(name, np.array(value, dtype=np.float32))

    # ----------------------------------------------------------------------------- nodes
    def _add_node(self, node: onnx.NodeProto) -> None:
        if node.name in self._node_names:
            raise ValueError(f"duplicate node name {node.name!r}")
        self._node_names.add(node.name)
        self.graph.node.append(node)

    def node(self, op_type: str, inputs: Sequence[str], name: str,
             outputs: Sequence[str] | None = None, **attrs) -> str:
        """Add a node; its (first) output tensor is named after the node unless given."""
        outs = list(outputs) if outputs is not None else [name]
        for o in outs:
            self._claim_tensor(o)
        self._add_node(helper.make_node(op_type, list(inputs), outs, name=name, **attrs))
        return outs[0]

    # ----------------------------------------------------------------------------- conv helpers
    def conv(self, x: str, name: str, cin: int, cout: int, k: int, stride: int = 1,
             pad: int | None = None, group: int = 1, bias: bool = False,
             gain: float = math.sqrt(2.0)) -> str:
        """Conv with a square kernel and symmetric padding (default k // 2)."""
        p = k // 2 if pad is None else pad
        inputs = [x, self.conv_weight(f"{name}.weight", cout, cin // group, k, k, gain)]
        if bias:
            inputs.append(self.weight(f"{name}.bias", (cout,), "const", value=0.0))
        return self.node("Conv", inputs, name, kernel_shape=[k, k], strides=[stride, stride],
                         pads=[p, p, p, p], group=group, dilations=[1, 1])

    def bn(self, x: str, name: str, c: int, scale: float = 1.0) -> str:
        return self.node("BatchNormalization", [x, *self.batchnorm_params(name, c, scale)],
                         name, epsilon=1e-5, momentum=0.9)

    # ----------------------------------------------------------------------------- model
    def model(self, doc: str, metadata: dict[str, str]) -> onnx.ModelProto:
        m = self.proto
        m.graph.name = self.model_name
        m.graph.doc_string = doc
        m.ir_version = IR_VERSION
        m.opset_import.append(helper.make_opsetid("", OPSET))
        m.producer_name = PRODUCER
        m.producer_version = "0.1.0"
        m.doc_string = doc
        helper.set_model_props(m, metadata)
        return m
