"""Single-node cost tests with hand-computed numbers, shape cross-checks against ONNX shape
inference, and registry tests.

Convention: MAC = one multiply-accumulate; non-MAC ops as documented in each cost function.
"""

from __future__ import annotations

import numpy as np
import onnx
import onnx.defs
import pytest
from onnx import TensorProto, helper

import estimator.ops as ops
from estimator.graph import Node, TensorInfo
from estimator.ops.base import (FREE_OPS, KINDS, LAYER_CLASSES, OpContext, OpCost, ShapeUnknown,
                                lookup, register, registered)

UNKNOWN = "?"  # an input that is present but whose shape is unknown


def make_ctx(op: str, ins, outs=(), attrs=None, domain: str = "") -> OpContext:
    """Build an OpContext: `ins`/`outs` are shapes, None (omitted) or UNKNOWN."""
    in_names, in_infos = [], []
    for i, s in enumerate(ins):
        if s is None:
            in_names.append("")
            in_infos.append(None)
        else:
            name = f"in{i}"
            in_names.append(name)
            in_infos.append(TensorInfo(name, None if s is UNKNOWN else tuple(s), "float32"))
    out_names, out_infos = [], []
    for i, s in enumerate(outs):
        name = f"out{i}"
        out_names.append(name)
        known = s is not None and s is not UNKNOWN
        out_infos.append(TensorInfo(name, tuple(s), "float32") if known else None)
    if not out_names:
        out_names, out_infos = ["out0"], [None]
    node = Node(name=f"{op}_0", op_type=op, domain=domain, inputs=tuple(in_names),
                outputs=tuple(out_names), attrs=dict(attrs or {}))
    return OpContext(node=node, inputs=tuple(in_infos), outputs=tuple(out_infos),
                     const_inputs=tuple(False for _ in in_infos))


def cost(op: str, ins, outs=(), attrs=None, domain: str = "") -> OpCost:
    fn = lookup(op, domain)
    assert fn is not None, f"{domain}::{op} not registered"
    c = fn(make_ctx(op, ins, outs, attrs, domain))
    assert c.kind in KINDS and c.layer_class in LAYER_CLASSES
    return c


def infer_shape(op: str, inputs, attrs=None, inits=(), n_out: int = 1, domain: str = ""):
    """Output shapes of a one-node model after onnx.shape_inference.

    inputs: list of (name, shape); inits: list of (name, numpy array) constant inputs.
    """
    init_names = {n for n, _ in inits}
    vis = [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in inputs
           if n not in init_names]
    names = [n for n, _ in inputs]
    outs = [f"y{i}" for i in range(n_out)]
    node = helper.make_node(op, names, outs, **(attrs or {}))
    graph = helper.make_graph([node], "g", vis,
                              [helper.make_tensor_value_info(o, TensorProto.FLOAT, None)
                               for o in outs],
                              initializer=[onnx.numpy_helper.from_array(a, n) for n, a in inits])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)])
    inferred = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    res = []
    for o in inferred.graph.output:
        dims = o.type.tensor_type.shape.dim
        res.append(tuple(d.dim_value for d in dims))
    return res


# ------------------------------------------------------------------------------------ Conv


def test_conv2d_plain_3x3():
    # X (1,3,32,32), W (16,3,3,3), pads 1 -> Y (1,16,32,32)
    # MACs = N*Cout*H*W * Cin/g * kh*kw = 1*16*32*32 * 3 * 9 = 442368; bias = 16*32*32 = 16384
    c = cost("Conv", [(1, 3, 32, 32), (16, 3, 3, 3), (16,)], [(1, 16, 32, 32)],
             {"pads": [1, 1, 1, 1]})
    assert (c.macs, c.non_mac_ops) == (442368, 16384)
    # 3 input channels: an image model's first conv (conv_stem); 3x3 stride 1 stays a Winograd candidate
    assert c.layer_class == "conv_stem" and c.winograd_candidate and c.kind == "contraction"
    c8 = cost("Conv", [(1, 8, 32, 32), (16, 8, 3, 3), (16,)], [(1, 16, 32, 32)], {"pads": [1, 1, 1, 1]})
    assert c8.layer_class == "conv3x3"     # 5+ input channels: not a stem


def test_conv2d_strided_padded_matches_onnx_shape():
    # X (1,3,224,224), W (64,3,7,7), strides 2, pads 3: out = (224 + 6 - 7)//2 + 1 = 112
    # MACs = 64*112*112 * 3 * 49 = 118013952, no bias
    attrs = {"strides": [2, 2], "pads": [3, 3, 3, 3]}
    (ys,) = infer_shape("Conv", [("x", (1, 3, 224, 224)), ("w", (64, 3, 7, 7))], attrs)
    assert ys == (1, 64, 112, 112)
    c = cost("Conv", [(1, 3, 224, 224), (64, 3, 7, 7)], [ys], attrs)
    assert (c.macs, c.non_mac_ops) == (118013952, 0)
    assert c.layer_class == "conv_stem" and not c.winograd_candidate   # ResNet's 7x7 stem on RGB
    # same count when the output shape is unknown (computed from the ONNX rules)
    assert cost("Conv", [(1, 3, 224, 224), (64, 3, 7, 7)], [UNKNOWN], attrs).macs == 118013952


def test_conv2d_dilated():
    # X (1,8,20,20), W (8,8,3,3), dilations 2: eff_k = 5, out = 20 - 5 + 1 = 16
    # MACs = 8*16*16 * 8 * 9 = 147456; 3x3 group 1 -> conv3x3 but not Winograd (dilated)
    c = cost("Conv", [(1, 8, 20, 20), (8, 8, 3, 3)], [UNKNOWN], {"dilations": [2, 2]})
    assert c.macs == 147456
    assert c.layer_class == "conv3x3" and not c.winograd_candidate


def test_conv2d_grouped():
    # X (2,32,10,10), W (64,8,3,3), group 4, pads 1 -> Y (2,64,10,10)
    # MACs = 2*64*100 * (32/4) * 9 = 12800 * 72 = 921600
    c = cost("Conv", [(2, 32, 10, 10), (64, 8, 3, 3)], [(2, 64, 10, 10)],
             {"group": 4, "pads": [1, 1, 1, 1]})
    assert c.macs == 921600 and c.layer_class == "grouped" and not c.winograd_candidate


def test_conv2d_depthwise():
    # X (1,32,56,56), W (32,1,3,3), group 32, pads 1 -> Y (1,32,56,56)
    # MACs = 32*56*56 * 1 * 9 = 903168
    c = cost("Conv", [(1, 32, 56, 56), (32, 1, 3, 3)], [(1, 32, 56, 56)],
             {"group": 32, "pads": [1, 1, 1, 1]})
    assert c.macs == 903168 and c.layer_class == "depthwise" and not c.winograd_candidate


def test_conv1d():
    # X (4,16,100), W (32,16,5) -> Y (4,32,96); MACs = 4*32*96 * 16 * 5 = 983040
    c = cost("Conv", [(4, 16, 100), (32, 16, 5)], [(4, 32, 96)])
    assert c.macs == 983040 and c.layer_class == "conv_other" and not c.winograd_candidate


def test_conv3d():
    # X (1,4,8,16,16), W (8,4,3,3,3), pads 1 -> Y (1,8,8,16,16)
    # MACs = 8*8*16*16 * 4 * 27 = 1769472
    c = cost("Conv", [(1, 4, 8, 16, 16), (8, 4, 3, 3, 3)], [(1, 8, 8, 16, 16)],
             {"pads": [1] * 6})
    assert c.macs == 1769472 and c.layer_class == "conv_other" and not c.winograd_candidate


def test_conv_auto_pad_same_upper_matches_onnx_shape():
    # X (1,3,15,15), W (8,3,3,3), strides 2, SAME_UPPER: out = ceil(15/2) = 8
    # MACs = 8*8*8 * 3 * 9 = 13824
    attrs = {"strides": [2, 2], "auto_pad": "SAME_UPPER"}
    (ys,) = infer_shape("Conv", [("x", (1, 3, 15, 15)), ("w", (8, 3, 3, 3))], attrs)
    assert ys == (1, 8, 8, 8)
    assert cost("Conv", [(1, 3, 15, 15), (8, 3, 3, 3)], [ys], attrs).macs == 13824
    assert cost("Conv", [(1, 3, 15, 15), (8, 3, 3, 3)], [UNKNOWN], attrs).macs == 13824


def test_conv1x1():
    # X (1,64,14,14), W (128,64,1,1): MACs = 128*14*14 * 64 = 1605632
    c = cost("Conv", [(1, 64, 14, 14), (128, 64, 1, 1)], [(1, 128, 14, 14)])
    assert c.macs == 1605632 and c.layer_class == "conv1x1"


def test_conv_unknown_input_raises():
    with pytest.raises(ShapeUnknown):
        cost("Conv", [UNKNOWN, (8, 3, 3, 3)], [UNKNOWN])


def test_conv_transpose_matches_onnx_shape():
    # X (1,16,8,8), W (16,8,4,4), strides 2, pads 1: out = (8-1)*2 + 4 - 2 = 16 -> (1,8,16,16)
    # MACs = N*Cin*H*W * Cout/g * kh*kw = 16*64 * 8 * 16 = 131072; bias = 8*16*16 = 2048
    attrs = {"strides": [2, 2], "pads": [1, 1, 1, 1]}
    (ys,) = infer_shape("ConvTranspose", [("x", (1, 16, 8, 8)), ("w", (16, 8, 4, 4))], attrs)
    assert ys == (1, 8, 16, 16)
    c = cost("ConvTranspose", [(1, 16, 8, 8), (16, 8, 4, 4), (8,)], [ys], attrs)
    assert (c.macs, c.non_mac_ops) == (131072, 2048)
    assert c.layer_class == "conv_other" and not c.winograd_candidate
    # output unknown: computed with the ONNX formula
    c2 = cost("ConvTranspose", [(1, 16, 8, 8), (16, 8, 4, 4), (8,)], [UNKNOWN], attrs)
    assert (c2.macs, c2.non_mac_ops) == (131072, 2048)


# --------------------------------------------------------------------------------- linalg


def test_gemm_transb_and_scalings():
    # A (4,256), B (10,256) transB, C (10,): MACs = 4*10*256 = 10240; C add = 4*10 = 40
    c = cost("Gemm", [(4, 256), (10, 256), (10,)], [(4, 10)], {"transB": 1})
    assert (c.macs, c.non_mac_ops) == (10240, 40) and c.layer_class == "gemm"
    # alpha 0.5, beta 2: alpha scale + C add + beta scale = 3 per output = 120
    c = cost("Gemm", [(4, 256), (10, 256), (10,)], [(4, 10)],
             {"transB": 1, "alpha": 0.5, "beta": 2.0})
    assert c.non_mac_ops == 120
    # transA: A (256,4) -> M=4, K=256
    assert cost("Gemm", [(256, 4), (256, 10)], [(4, 10)], {"transA": 1}).macs == 10240


def test_matmul_batched_broadcast_matches_onnx_shape():
    # A (2,1,8,16) @ B (3,16,4): batch broadcast (2,3) -> MACs = 6 * 8*4*16 = 3072
    (ys,) = infer_shape("MatMul", [("a", (2, 1, 8, 16)), ("b", (3, 16, 4))])
    assert ys == (2, 3, 8, 4)
    c = cost("MatMul", [(2, 1, 8, 16), (3, 16, 4)], [ys])
    # both operands are activations (no weight): the attention-matmul class
    assert (c.macs, c.non_mac_ops, c.kind, c.layer_class) == (3072, 0, "contraction", "attention")


def test_matmul_1d_operands():
    # (16,) @ (16,4): M=1, N=4, K=16 -> 64
    assert cost("MatMul", [(16,), (16, 4)]).macs == 64
    # (2,8,16) @ (16,): N=1 -> 2*8*16 = 256
    assert cost("MatMul", [(2, 8, 16), (16,)]).macs == 256
    # (16,) @ (16,): dot product -> 16
    assert cost("MatMul", [(16,), (16,)]).macs == 16


def test_einsum_batched_matmul_matches_onnx_shape():
    # bij,bjk->bik with b=2 i=3 j=4 k=5: MACs = 2*3*4*5 = 120 (j summed)
    attrs = {"equation": "bij,bjk->bik"}
    (ys,) = infer_shape("Einsum", [("a", (2, 3, 4)), ("b", (2, 4, 5))], attrs)
    assert ys == (2, 3, 5)
    c = cost("Einsum", [(2, 3, 4), (2, 4, 5)], [ys], attrs)
    assert (c.macs, c.kind, c.layer_class) == (120, "contraction", "gemm")
    # implicit output and ellipsis give the same count
    assert cost("Einsum", [(2, 3, 4), (2, 4, 5)], [], {"equation": "bij,bjk"}).macs == 120
    eq = {"equation": "...ij,...jk->...ik"}
    assert cost("Einsum", [(2, 3, 4), (2, 4, 5)], [], eq).macs == 120


def test_einsum_transpose_outer_reduce_three_operands():
    # transpose only: no ops, kind data
    c = cost("Einsum", [(3, 4)], [(4, 3)], {"equation": "ij->ji"})
    assert (c.macs, c.non_mac_ops, c.kind) == (0, 0, "data")
    # outer product i,j->ij (nothing summed): 1 multiply per output = 3*4 = 12
    c = cost("Einsum", [(3,), (4,)], [], {"equation": "i,j->ij"})
    assert (c.macs, c.non_mac_ops) == (0, 12)
    # single-operand reduction bij->bj: 2*3*4 = 24 adds
    c = cost("Einsum", [(2, 3, 4)], [], {"equation": "bij->bj"})
    assert (c.non_mac_ops, c.kind) == (24, "reduce")
    # 3 operands ij,jk,kl->il, i2 j3 k4 l5: (3-1) * 2*3*4*5 = 240 (naive evaluation)
    assert cost("Einsum", [(2, 3), (3, 4), (4, 5)], [], {"equation": "ij,jk,kl->il"}).macs == 240


def test_det():
    # (2,3,3): LU 3^3/3 = 9 MACs per matrix -> 18; diagonal product 3 per matrix -> 6
    c = cost("Det", [(2, 3, 3)], [(2,)])
    assert (c.macs, c.non_mac_ops) == (18, 6)


# ----------------------------------------------------------------------- norm and softmax


def test_batch_norm():
    # X (2,16,8,8) = 2048 elems * 2 (scale, shift) = 4096
    c = cost("BatchNormalization", [(2, 16, 8, 8), (16,), (16,), (16,), (16,)], [(2, 16, 8, 8)])
    assert (c.non_mac_ops, c.kind, c.layer_class) == (4096, "norm", "elementwise")


def test_layer_norm():
    # X (2,10,64), axis -1, with bias: 1280 * 7 + rows 20 * 4 = 8960 + 80 = 9040
    c = cost("LayerNormalization", [(2, 10, 64), (64,), (64,)], [(2, 10, 64)])
    assert c.non_mac_ops == 9040
    # without bias: 1280 * 6 + 80 = 7760
    assert cost("LayerNormalization", [(2, 10, 64), (64,)], [(2, 10, 64)]).non_mac_ops == 7760


def test_instance_and_group_norm_and_rms():
    # InstanceNorm X (2,3,4,4): 96*7 + (2*3)*4 = 672 + 24 = 696
    assert cost("InstanceNormalization", [(2, 3, 4, 4), (3,), (3,)]).non_mac_ops == 696
    # GroupNorm X (2,6,4,4), 3 groups: 192*7 + (2*3)*4 = 1344 + 24 = 1368
    assert cost("GroupNormalization", [(2, 6, 4, 4), (6,), (6,)], [],
                {"num_groups": 3}).non_mac_ops == 1368
    # RMSNorm X (2,10,64): 1280*4 + 20*3 = 5120 + 60 = 5180
    assert cost("RMSNormalization", [(2, 10, 64), (64,)]).non_mac_ops == 5180


def test_softmax_family():
    # Softmax (2,5,10): 100 * 5 = 500
    assert cost("Softmax", [(2, 5, 10)], [(2, 5, 10)]).non_mac_ops == 500
    # LogSoftmax: 500 + rows (100/10 = 10) logs = 510
    assert cost("LogSoftmax", [(2, 5, 10)], [(2, 5, 10)]).non_mac_ops == 510
    # Hardmax: 1 compare per element = 100
    assert cost("Hardmax", [(2, 5, 10)], [(2, 5, 10)]).non_mac_ops == 100


# ----------------------------------------------------------------------------------- pools


def test_pools():
    # MaxPool 2x2 s2 on (1,8,32,32) -> (1,8,16,16) = 2048 outputs * (4 - 1) compares = 6144
    c = cost("MaxPool", [(1, 8, 32, 32)], [(1, 8, 16, 16)],
             {"kernel_shape": [2, 2], "strides": [2, 2]})
    assert (c.non_mac_ops, c.kind) == (6144, "pool")
    # output unknown: same count from the pooling rules
    assert cost("MaxPool", [(1, 8, 32, 32)], [UNKNOWN],
                {"kernel_shape": [2, 2], "strides": [2, 2]}).non_mac_ops == 6144
    # AveragePool 3x3 s1 pads 1 -> (1,8,32,32) = 8192 * 9 = 73728
    assert cost("AveragePool", [(1, 8, 32, 32)], [(1, 8, 32, 32)],
                {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1]}).non_mac_ops == 73728
    # LpPool 2x2 s2: 2048 * 2*4 = 16384
    assert cost("LpPool", [(1, 8, 32, 32)], [(1, 8, 16, 16)],
                {"kernel_shape": [2, 2], "strides": [2, 2]}).non_mac_ops == 16384
    # GlobalAveragePool (2,64,7,7): 128 channels * 49 = 6272; GlobalMaxPool: 128 * 48 = 6144
    assert cost("GlobalAveragePool", [(2, 64, 7, 7)], [(2, 64, 1, 1)]).non_mac_ops == 6272
    assert cost("GlobalMaxPool", [(2, 64, 7, 7)], [(2, 64, 1, 1)]).non_mac_ops == 6144
    # RoiAlign out (3,8,7,7) = 1176 bins * 2*2 samples * (7 + 1) = 37632
    assert cost("RoiAlign", [(1, 8, 32, 32), (3, 4), (3,)], [(3, 8, 7, 7)],
                {"sampling_ratio": 2}).non_mac_ops == 37632
    assert cost("MaxUnpool", [(1, 8, 16, 16), (1, 8, 16, 16)], [(1, 8, 32, 32)]).kind == "data"


def test_maxpool_shape_matches_onnx():
    # ceil_mode: out = ceil((34 - 3) / 2) + 1 = ceil(15.5) + 1 = 17
    attrs = {"kernel_shape": [3, 3], "strides": [2, 2], "ceil_mode": 1}
    (ys,) = infer_shape("MaxPool", [("x", (1, 2, 34, 34))], attrs)
    assert ys == (1, 2, 17, 17)
    # 2*17*17 = 578 outputs * 8 compares = 4624, with or without the output shape
    assert cost("MaxPool", [(1, 2, 34, 34)], [ys], attrs).non_mac_ops == 4624
    assert cost("MaxPool", [(1, 2, 34, 34)], [UNKNOWN], attrs).non_mac_ops == 4624


# ---------------------------------------------------------------------------------- resize


def test_resize_modes_and_onnx_shape():
    scales = np.array([1, 1, 2, 2], dtype=np.float32)
    (ys,) = infer_shape("Resize", [("x", (1, 3, 10, 10)), ("", None), ("scales", (4,))],
                        {"mode": "linear"}, inits=[("scales", scales)])
    assert ys == (1, 3, 20, 20)
    # linear over 2 axes: 4 taps -> 4 mul + 3 add = 7 per output; 1*3*20*20 = 1200 -> 8400
    c = cost("Resize", [(1, 3, 10, 10), None, (4,)], [ys], {"mode": "linear"})
    assert (c.non_mac_ops, c.kind) == (8400, "elementwise")
    # cubic: 16 taps -> 31 per output -> 37200
    c = cost("Resize", [(1, 3, 10, 10), None, (4,)], [ys], {"mode": "cubic"})
    assert c.non_mac_ops == 37200
    # nearest (default): data movement, 0 ops
    c = cost("Resize", [(1, 3, 10, 10), None, (4,)], [ys])
    assert (c.non_mac_ops, c.kind) == (0, "data")


# --------------------------------------------------------------------------- data movement


@pytest.mark.parametrize("op", ["Concat", "Transpose", "Split", "Slice", "Gather", "Pad",
                                "Expand", "Tile", "DepthToSpace", "SpaceToDepth", "Where",
                                "GatherElements", "GatherND", "Trilu", "OneHot"])
def test_data_movement_is_zero_ops(op):
    c = cost(op, [(2, 3, 4), (2, 3, 4)], [(4, 3, 4)])
    assert (c.macs, c.non_mac_ops, c.kind, c.layer_class) == (0, 0, "data", "elementwise")


def test_data_ops_with_arithmetic():
    # ScatterND with reduction add: 1 per update element, updates (3,4) -> 12
    assert cost("ScatterND", [(5, 4), (3, 1), (3, 4)], [(5, 4)],
                {"reduction": "add"}).non_mac_ops == 12
    assert cost("ScatterND", [(5, 4), (3, 1), (3, 4)], [(5, 4)]).non_mac_ops == 0
    # TopK (2,100), k=10: 200 * ceil(log2 10) = 200 * 4 = 800
    assert cost("TopK", [(2, 100), (1,)], [(2, 10), (2, 10)]).non_mac_ops == 800
    # NonZero (3,4): 12 tests
    assert cost("NonZero", [(3, 4)], [UNKNOWN]).non_mac_ops == 12
    # Range with unknown output length: unknown, not zero
    with pytest.raises(ShapeUnknown):
        cost("Range", [(), (), ()], [UNKNOWN])


# ----------------------------------------------------------------------------- elementwise


def test_add_broadcast_counts_output_elements():
    # (2,3,4) + (4,) -> (2,3,4): 24 adds
    (ys,) = infer_shape("Add", [("a", (2, 3, 4)), ("b", (4,))])
    assert ys == (2, 3, 4)
    assert cost("Add", [(2, 3, 4), (4,)], [ys]).non_mac_ops == 24
    # output unknown: broadcast of the inputs (3,1) + (1,5) -> 15
    assert cost("Add", [(3, 1), (1, 5)], [UNKNOWN]).non_mac_ops == 15
    c = cost("Mul", [(2, 3, 4), (2, 3, 4)], [(2, 3, 4)])
    assert (c.non_mac_ops, c.kind, c.layer_class) == (24, "elementwise", "elementwise")


def test_composite_activations():
    x = [(10,)]
    y = [(10,)]
    assert cost("Relu", x, y).non_mac_ops == 10             # 1 per element
    assert cost("Gelu", x, y).non_mac_ops == 50             # erf form: 5
    assert cost("Gelu", x, y, {"approximate": "tanh"}).non_mac_ops == 90  # tanh form: 9
    assert cost("Mish", x, y).non_mac_ops == 50             # exp, add, log, tanh, mul
    assert cost("HardSwish", x, y).non_mac_ops == 50        # mul, add, min, max, mul
    assert cost("Softplus", x, y).non_mac_ops == 30         # exp, add, log
    assert cost("Sigmoid", x, y).non_mac_ops == 30          # exp, add, div
    assert cost("Clip", x, y).non_mac_ops == 20             # max, min
    assert cost("Celu", x, y).non_mac_ops == 70
    assert cost("Cast", x, y, {"to": 10}).non_mac_ops == 10
    # variadic: Sum of 3 inputs (2,3): 2 adds per output = 12; Mean: 2 adds + 1 scale = 18
    assert cost("Sum", [(2, 3)] * 3, [(2, 3)]).non_mac_ops == 12
    assert cost("Mean", [(2, 3)] * 3, [(2, 3)]).non_mac_ops == 18


# ----------------------------------------------------------------------------------- reduce


def test_reduce_family():
    # ReduceMean (4,8) -> (4,1): 32 adds + 4 divides = 36
    c = cost("ReduceMean", [(4, 8), (1,)], [(4, 1)])
    assert (c.non_mac_ops, c.kind) == (36, "reduce")
    assert cost("ReduceSum", [(4, 8), (1,)], [(4, 1)]).non_mac_ops == 32
    assert cost("ReduceSumSquare", [(4, 8), (1,)], [(4, 1)]).non_mac_ops == 64  # square + add
    assert cost("ReduceL2", [(4, 8), (1,)], [(4, 1)]).non_mac_ops == 68        # 64 + 4 sqrt
    assert cost("ReduceLogSumExp", [(4, 8), (1,)], [(4, 1)]).non_mac_ops == 68  # 64 + 4 log
    assert cost("ArgMax", [(4, 8)], [(4, 1)]).non_mac_ops == 32
    assert cost("CumSum", [(3, 4), ()], [(3, 4)]).non_mac_ops == 12
    # noop_with_empty_axes and no axes: identity
    assert cost("ReduceSum", [(4, 8)], [(4, 8)], {"noop_with_empty_axes": 1}).non_mac_ops == 0


# -------------------------------------------------------------------------------------- RNN


def test_lstm_forward_and_bidirectional():
    # X (seq 5, batch 2, input 10), hidden 20, with bias
    # MACs = 5*2*1 * 4*20*(10+20) = 24000; non-MAC = 5*2*1*20 * 23 = 4600
    ins = [(5, 2, 10), (1, 80, 10), (1, 80, 20), (1, 160)]
    c = cost("LSTM", ins, [UNKNOWN], {"hidden_size": 20})
    assert (c.macs, c.non_mac_ops, c.kind, c.layer_class) == (24000, 4600, "rnn", "gemm")
    ins = [(5, 2, 10), (2, 80, 10), (2, 80, 20), (2, 160)]
    c = cost("LSTM", ins, [UNKNOWN], {"hidden_size": 20, "direction": "bidirectional"})
    assert (c.macs, c.non_mac_ops) == (48000, 9200)
    # layout 1 (batch first) and hidden size from W: same numbers
    c = cost("LSTM", [(2, 5, 10), (2, 80, 10), (2, 80, 20), (2, 160)], [UNKNOWN],
             {"direction": "bidirectional", "layout": 1})
    assert (c.macs, c.non_mac_ops) == (48000, 9200)


def test_gru_and_rnn_bidirectional():
    # GRU: 5*2*2 * 3*20*30 = 36000 MACs; 5*2*2*20 * 18 = 7200 non-MAC (with bias)
    c = cost("GRU", [(5, 2, 10), (2, 60, 10), (2, 60, 20), (2, 120)], [UNKNOWN],
             {"hidden_size": 20, "direction": "bidirectional"})
    assert (c.macs, c.non_mac_ops) == (36000, 7200)
    # RNN without bias: 5*2*2 * 20*30 = 12000 MACs; 5*2*2*20 * 2 (sum, tanh) = 800
    c = cost("RNN", [(5, 2, 10), (2, 20, 10), (2, 20, 20)], [UNKNOWN],
             {"hidden_size": 20, "direction": "bidirectional"})
    assert (c.macs, c.non_mac_ops) == (12000, 800)


# ------------------------------------------------------------------------------- quantized


def test_qlinear_conv():
    # same geometry as test_conv2d_plain_3x3: MACs = 442368;
    # non-MAC = 16384 outputs * (requantize 3 + bias 1) = 65536
    ins = [(1, 3, 32, 32), (), (), (16, 3, 3, 3), (), (), (), (), (16,)]
    c = cost("QLinearConv", ins, [(1, 16, 32, 32)], {"pads": [1, 1, 1, 1]})
    assert (c.macs, c.non_mac_ops) == (442368, 65536)
    assert c.layer_class == "conv_stem" and c.winograd_candidate
    c = cost("ConvInteger", [(1, 3, 32, 32), (16, 3, 3, 3)], [(1, 16, 32, 32)],
             {"pads": [1, 1, 1, 1]})
    assert (c.macs, c.non_mac_ops) == (442368, 0) and c.winograd_candidate


def test_quantize_dequantize_and_qmatmul():
    # QuantizeLinear (2,100): 200 * 3 = 600; DequantizeLinear: 200 * 2 = 400
    c = cost("QuantizeLinear", [(2, 100), (), ()], [(2, 100)])
    assert (c.non_mac_ops, c.kind) == (600, "quant")
    assert cost("DequantizeLinear", [(2, 100), (), ()], [(2, 100)]).non_mac_ops == 400
    assert cost("DynamicQuantizeLinear", [(2, 100)], [(2, 100), (), ()]).non_mac_ops == 1000
    # QLinearMatMul (8,16) x (16,4): 512 MACs, 32 outputs * 3 requantize = 96
    c = cost("QLinearMatMul", [(8, 16), (), (), (16, 4), (), (), (), ()], [(8, 4)])
    assert (c.macs, c.non_mac_ops) == (512, 96)
    assert cost("MatMulInteger", [(8, 16), (16, 4)], [(8, 4)]).macs == 512


# ------------------------------------------------------------------------ attention family


MS = "com.microsoft"


def test_ms_attention():
    # input (B2, S8, 64), weights (64, 192), bias (192), 4 heads -> head size 16, L = S = 8
    # projection MACs = 2*8*64*192 = 196608; scores = 2*4*8*8 = 512; QK^T + PV = 512*(16+16)
    # = 16384 -> 212992 MACs; non-MAC: bias 2*8*192 = 3072 + scores*(1 scale + 5 softmax) 3072
    c = cost("Attention", [(2, 8, 64), (64, 192), (192,)], [(2, 8, 64)], {"num_heads": 4}, MS)
    assert (c.macs, c.non_mac_ops, c.layer_class) == (212992, 6144, "gemm")
    # with a mask: + 512 -> 6656
    c = cost("Attention", [(2, 8, 64), (64, 192), (192,), (2, 8)], [(2, 8, 64)],
             {"num_heads": 4}, MS)
    assert c.non_mac_ops == 6656


def test_ms_multi_head_attention():
    # query (2,8,64), key/value (2,10,64), 4 heads: scores 2*4*8*10 = 640;
    # MACs = 640*(16+16) = 20480; non-MAC = 640*6 = 3840
    c = cost("MultiHeadAttention", [(2, 8, 64), (2, 10, 64), (2, 10, 64)], [(2, 8, 64)],
             {"num_heads": 4}, MS)
    assert (c.macs, c.non_mac_ops) == (20480, 3840)
    # with bias (192): + 2*8*64 (q) + 2*10*128 (k, v) = 1024 + 2560 -> 7424
    c = cost("MultiHeadAttention", [(2, 8, 64), (2, 10, 64), (2, 10, 64), (192,)], [(2, 8, 64)],
             {"num_heads": 4}, MS)
    assert c.non_mac_ops == 7424
    # packed QKV (2,8,4,3,16): L = S = 8 -> scores 512 * 32 = 16384 MACs
    c = cost("MultiHeadAttention", [(2, 8, 4, 3, 16)], [(2, 8, 64)], {"num_heads": 4}, MS)
    assert c.macs == 16384


def test_default_attention_gqa_with_past():
    # Q (2,4,8,16), K/V (2,2,10,16), past_key (2,2,6,16) -> L = 16
    # scores 2*4*8*16 = 1024; MACs = 1024*32 = 32768; non-MAC = 1024*6 = 6144
    c = cost("Attention", [(2, 4, 8, 16), (2, 2, 10, 16), (2, 2, 10, 16), None, (2, 2, 6, 16),
                           (2, 2, 6, 16)], [(2, 4, 8, 16)])
    assert (c.macs, c.non_mac_ops) == (32768, 6144)


def test_skip_layer_norm():
    # input (2,8,64) = 1024 elems * (skip 1 + bias 1 + LN 6 + beta 1) = 9216; rows 16 * 4 = 64
    c = cost("SkipLayerNormalization", [(2, 8, 64), (2, 8, 64), (64,), (64,), (64,)],
             [(2, 8, 64)], {}, MS)
    assert (c.non_mac_ops, c.kind) == (9280, "norm")


def test_fused_conv_and_nhwc_conv():
    # conv of test_conv2d_plain_3x3 + bias + Relu: 16384 * (1 + 1) = 32768
    ins = [(1, 3, 32, 32), (16, 3, 3, 3), (16,)]
    c = cost("FusedConv", ins, [(1, 16, 32, 32)], {"pads": [1, 1, 1, 1], "activation": "Relu"}, MS)
    assert (c.macs, c.non_mac_ops, c.layer_class, c.winograd_candidate) == \
        (442368, 32768, "conv_stem", True)
    # LeakyRelu (2) + Z residual input (1) + bias (1): 16384 * 4 = 65536
    c = cost("FusedConv", ins + [(1, 16, 32, 32)], [(1, 16, 32, 32)],
             {"pads": [1, 1, 1, 1], "activation": "LeakyRelu"}, MS)
    assert c.non_mac_ops == 65536
    # NhwcConv: X (1,32,32,3), Y (1,32,32,16): same MACs
    c = cost("NhwcConv", [(1, 32, 32, 3), (16, 3, 3, 3)], [(1, 32, 32, 16)],
             {"pads": [1, 1, 1, 1]}, MS)
    assert c.macs == 442368 and c.winograd_candidate


def test_fused_matmul_and_gelus():
    # A (2,16,8) transA -> (2,8,16) @ B (16,4): 2*8*4*16 = 1024 MACs; alpha 2: 64 scalings
    c = cost("FusedMatMul", [(2, 16, 8), (16, 4)], [(2, 8, 4)], {"transA": 1, "alpha": 2.0}, MS)
    assert (c.macs, c.non_mac_ops) == (1024, 64)
    assert cost("FastGelu", [(4, 8), (8,)], [(4, 8)], {}, MS).non_mac_ops == 32 * 10
    assert cost("BiasGelu", [(4, 8), (8,)], [(4, 8)], {}, MS).non_mac_ops == 32 * 6
    assert cost("QuickGelu", [(4, 8)], [(4, 8)], {}, MS).non_mac_ops == 32 * 5
    assert cost("BiasAdd", [(4, 8), (8,), (4, 8)], [(4, 8)], {}, MS).non_mac_ops == 32 * 2


def test_group_query_attention():
    # query (2,8,64), key/value (2,8,32), past_key (2,2,4,16); 4 query heads, 2 kv heads
    # H = 64/4 = 16, L = 8 + 4 = 12 (present_key (2,2,12,16)); scores = 2*4*8*12 = 768
    # MACs = 768 * (16 + 16) = 24576; non-MAC = 768 * (1 scale + 5 softmax + 1 causal mask) = 5376
    ins = [(2, 8, 64), (2, 8, 32), (2, 8, 32), (2, 2, 4, 16), (2, 2, 4, 16)]
    attrs = {"num_heads": 4, "kv_num_heads": 2}
    c = cost("GroupQueryAttention", ins, [(2, 8, 64), (2, 2, 12, 16)], attrs, MS)
    assert (c.macs, c.non_mac_ops) == (24576, 5376)
    c = cost("GroupQueryAttention", ins, [UNKNOWN, UNKNOWN], attrs, MS)  # L from past + S
    assert (c.macs, c.non_mac_ops) == (24576, 5376)


def test_embed_layer_norm_output_from_inputs():
    # input_ids (2,8), word_embedding (100,64) -> output (2,8,64) = 1024 elems
    # per elem: position add 1 + segment add 1 + LN 6 + beta 1 = 9 -> 9216; rows 16 * 4 = 64
    ins = [(2, 8), (2, 8), (100, 64), (16, 64), (2, 64), (64,), (64,)]
    assert cost("EmbedLayerNormalization", ins, [UNKNOWN], {}, MS).non_mac_ops == 9280


def test_ms_quantized_and_nbits():
    # QLinearAdd (2,3,4) + (4,), scalar scales: 24 outputs * 8 = 192 (output shape unknown)
    ins = [(2, 3, 4), (), (), (4,), (), (), (), ()]
    assert cost("QLinearAdd", ins, [UNKNOWN], {}, MS).non_mac_ops == 192
    # MatMulNBits A (2,8,64), K=64, N=32: MACs = 16*32*64 = 32768; the dequantization is in the
    # MAC loop (no separate ops); a bias (input 5) adds one op per output: 16*32 = 512
    c = cost("MatMulNBits", [(2, 8, 64), (32, 2, 16), (64,)], [(2, 8, 32)],
             {"K": 64, "N": 32, "bits": 4, "block_size": 32}, MS)
    assert (c.macs, c.non_mac_ops) == (32768, 0)
    c = cost("MatMulNBits", [(2, 8, 64), (32, 2, 16), (64,), (), (), (32,)], [(2, 8, 32)],
             {"K": 64, "N": 32, "bits": 4, "block_size": 32}, MS)
    assert c.non_mac_ops == 512
    # QLinearConcat of (1,4,8) and (1,6,8): (32 + 48) * 3 requantize = 240
    ins = [(), (), (1, 4, 8), (), (), (1, 6, 8), (), ()]
    assert cost("QLinearConcat", ins, [UNKNOWN], {"axis": 1}, MS).non_mac_ops == 240
    # NhwcMaxPool x (1,16,16,8), 2x2 s2 -> (1,8,8,8) = 512 outputs * 3 compares = 1536
    assert cost("NhwcMaxPool", [(1, 16, 16, 8)], [UNKNOWN],
                {"kernel_shape": [2, 2], "strides": [2, 2]}, MS).non_mac_ops == 1536


def test_rotary_swiglu_lrn_deformconv():
    # RotaryEmbedding X (2,4,8,16), cos_cache (8,4): rot_dim 8 of 16; 2*4*8 rows * 8 * 3 = 1536
    c = cost("RotaryEmbedding", [(2, 4, 8, 16), (8, 4), (8, 4)], [(2, 4, 8, 16)])
    assert c.non_mac_ops == 1536
    # SwiGLU (4,8): Swish 5 + multiply 1 = 6 per element -> 192; Swish: 160
    assert cost("SwiGLU", [(4, 8), (4, 8)], [(4, 8)]).non_mac_ops == 192
    assert cost("Swish", [(4, 8)], [(4, 8)]).non_mac_ops == 160
    # LRN size 5 on (1,8,4,4) = 128 elems * (5 + 5) = 1280
    assert cost("LRN", [(1, 8, 4, 4)], [(1, 8, 4, 4)], {"size": 5}).non_mac_ops == 1280
    # DeformConv X (1,4,8,8), W (8,4,3,3) -> (1,8,6,6): MACs = 8*36 * 4*9 = 10368;
    # bilinear samples = 1*4*9*36 = 1296 * 7 = 9072
    c = cost("DeformConv", [(1, 4, 8, 8), (8, 4, 3, 3), (1, 18, 6, 6)], [(1, 8, 6, 6)])
    assert (c.macs, c.non_mac_ops) == (10368, 9072)


def test_ms_fused_contractions():
    # FusedGemm A (4,16) B (16,8) C (8,) + Relu: MACs 4*8*16 = 512; 32 * (C add 1 + Relu 1) = 64
    c = cost("FusedGemm", [(4, 16), (16, 8), (8,)], [(4, 8)], {"activation": "Relu"}, MS)
    assert (c.macs, c.non_mac_ops) == (512, 64)
    # QGemm (A at 0, B at 3, C at 6, y_scale at 7): 512 MACs; 32 * (scale 1 + C 1 + requant 3)
    ins = [(4, 16), (), (), (16, 8), (), (), (8,), (), ()]
    assert (cost("QGemm", ins, [(4, 8)], {}, MS).non_mac_ops) == 160
    # DynamicQuantizeMatMul with bias: 512 MACs; A 64 * 5 + 32 * (dequant 1 + bias 1) = 384
    c = cost("DynamicQuantizeMatMul", [(4, 16), (16, 8), (), (), (8,)], [(4, 8)], {}, MS)
    assert (c.macs, c.non_mac_ops) == (512, 384)
    # MatMulIntegerToFloat: 512 MACs, 32 scalings
    c = cost("MatMulIntegerToFloat", [(4, 16), (16, 8), (), ()], [(4, 8)], {}, MS)
    assert (c.macs, c.non_mac_ops) == (512, 32)
    # GemmFastGelu with bias: 512 MACs, 32 * (1 + 9) = 320
    c = cost("GemmFastGelu", [(4, 16), (16, 8), (8,)], [(4, 8)], {}, MS)
    assert (c.macs, c.non_mac_ops) == (512, 320)
    # QAttention = Attention counts (212992 MACs) + dequantize of the projection (3072 ops):
    # bias 3072 + dequant 3072 + scores 512 * 6 = 3072 -> 9216
    c = cost("QAttention", [(2, 8, 64), (64, 192), (192,), (), ()], [(2, 8, 64)],
             {"num_heads": 4}, MS)
    assert (c.macs, c.non_mac_ops) == (212992, 9216)
    # NCHWc Conv with bias and Relu: X (1,16,8,8), W (32,16,3,3), pads 1:
    # MACs = 32*64 * 16*9 = 294912; 2048 outputs * (bias 1 + Relu 1) = 4096
    c = cost("Conv", [(1, 16, 8, 8), (32, 16, 3, 3), (32,)], [UNKNOWN],
             {"pads": [1, 1, 1, 1], "activation": "Relu"}, "com.microsoft.nchwc")
    assert (c.macs, c.non_mac_ops, c.winograd_candidate) == (294912, 4096, True)


def test_ms_norms_pools_misc():
    # SkipSimplifiedLayerNormalization (2,8,64) + bias: 1024 * (1 + 1 + 4) + 16 rows * 3 = 6192
    ins = [(2, 8, 64), (2, 8, 64), (64,), (64,)]
    assert cost("SkipSimplifiedLayerNormalization", ins, [(2, 8, 64)], {}, MS).non_mac_ops == 6192
    # GroupNorm NHWC (1,4,4,8), 2 groups, Swish: 128 * (7 + 5) + 1*2 * 4 = 1544
    assert cost("GroupNorm", [(1, 4, 4, 8), (8,), (8,)], [(1, 4, 4, 8)],
                {"groups": 2, "activation": 1}, MS).non_mac_ops == 1544
    # QLinearGlobalAveragePool (1,8,4,4): 128 adds + 8 * 3 requantize = 152
    assert cost("QLinearGlobalAveragePool", [(1, 8, 4, 4), (), (), (), ()], [(1, 8, 1, 1)],
                {}, MS).non_mac_ops == 152
    # QLinearAveragePool 2x2 s2 on (1,8,4,4) -> (1,8,2,2) = 32 * (4 + 3) = 224
    assert cost("QLinearAveragePool", [(1, 8, 4, 4), (), (), (), ()], [UNKNOWN],
                {"kernel_shape": [2, 2], "strides": [2, 2]}, MS).non_mac_ops == 224
    # BiasSplitGelu X (2,16,32) -> (2,16,16) = 512 outputs * 8 = 4096
    assert cost("BiasSplitGelu", [(2, 16, 32), (32,)], [UNKNOWN], {}, MS).non_mac_ops == 4096
    # Inverse (3,4,4): 3 * 4^3 = 192 MACs, 3 * 16 = 48 divisions
    c = cost("Inverse", [(3, 4, 4)], [(3, 4, 4)], {}, MS)
    assert (c.macs, c.non_mac_ops) == (192, 48)
    # CDist euclidean A (5,3) B (4,3): 60 MACs; 60 subtractions + 20 sqrt = 80
    c = cost("CDist", [(5, 3), (4, 3)], [(5, 4)], {"metric": "euclidean"}, MS)
    assert (c.macs, c.non_mac_ops) == (60, 80)


def test_ms_registrations_exist_in_onnxruntime():
    ort_state = pytest.importorskip("onnxruntime.capi.onnxruntime_pybind11_state")
    known = {(s.domain, s.name) for s in ort_state.get_all_operator_schema()}
    ours = [k for k in registered() if k[0] == MS]
    assert ours and not [k for k in ours if k not in known]


def test_spectral():
    # DFT of 16 complex points: 5 * 16 * log2(16) = 320
    assert cost("DFT", [(1, 16, 2)], [(1, 16, 2)]).non_mac_ops == 320


# --------------------------------------------------------------------------------- registry

REQUIRED_DEFAULT = """
Conv ConvTranspose Gemm MatMul Einsum BatchNormalization LayerNormalization
InstanceNormalization GroupNormalization Softmax LogSoftmax Hardmax MaxPool AveragePool LpPool
GlobalAveragePool GlobalMaxPool GlobalLpPool MaxRoiPool RoiAlign MaxUnpool Resize Upsample
Concat Split Slice Gather GatherElements GatherND ScatterND ScatterElements Pad Transpose Expand
Tile DepthToSpace SpaceToDepth Where Compress ReverseSequence NonZero TopK Cast CastLike Range
OneHot Trilu CumSum Add Sub Mul Div Pow Mod Min Max Sum Mean Abs Neg Exp Log Sqrt Reciprocal
Floor Ceil Round Sign Relu LeakyRelu PRelu Elu Selu Celu Sigmoid HardSigmoid HardSwish Tanh
Softplus Softsign Erf Gelu Mish Clip ThresholdedRelu Sin Cos Tan Asin Acos Atan Sinh Cosh Asinh
Acosh Atanh Equal Less Greater LessOrEqual GreaterOrEqual And Or Xor Not IsNaN IsInf BitShift
BitwiseAnd BitwiseOr BitwiseXor BitwiseNot Shrink ReduceSum ReduceMean ReduceMax ReduceMin
ReduceProd ReduceL1 ReduceL2 ReduceLogSum ReduceLogSumExp ReduceSumSquare ArgMax ArgMin LSTM GRU
RNN QLinearConv QLinearMatMul ConvInteger MatMulInteger QuantizeLinear DequantizeLinear
DynamicQuantizeLinear
""".split()

REQUIRED_MS = """
FusedConv FusedMatMul FusedGemm Attention MultiHeadAttention SkipLayerNormalization Gelu BiasGelu
FastGelu QuickGelu BiasAdd NhwcConv QLinearAdd QLinearMul QLinearSigmoid DynamicQuantizeMatMul
MatMulIntegerToFloat
""".split()

# Default-domain ops deliberately left without a cost function: the analyzer reports them as
# unsupported. Keep this list short.
KNOWN_UNSUPPORTED = {
    # control flow: cost lives in the subgraphs, which the analyzer does not expand
    "If", "Loop", "Scan",
    # sequence ops: tensors of data-dependent count
    "SequenceAt", "SequenceConstruct", "SequenceEmpty", "SequenceErase", "SequenceInsert",
    "SequenceLength", "SequenceMap", "SplitToSequence", "ConcatFromSequence",
    # random generators
    "RandomNormal", "RandomNormalLike", "RandomUniform", "RandomUniformLike", "Bernoulli",
    "Multinomial",
    # string ops and text vectorization
    "RegexFullMatch", "StringConcat", "StringNormalizer", "StringSplit", "TfIdfVectorizer",
    # image decoding
    "ImageDecoder",
}


def test_required_ops_registered():
    missing = [op for op in REQUIRED_DEFAULT if lookup(op) is None]
    missing += [f"{MS}::{op}" for op in REQUIRED_MS if lookup(op, MS) is None]
    assert not missing, missing


def test_duplicate_registration_raises():
    with pytest.raises(RuntimeError):
        register("Conv")(lambda ctx: OpCost())
    with pytest.raises(RuntimeError):
        register("FusedConv", domain=MS)(lambda ctx: OpCost())
    # "ai.onnx" is the default domain
    with pytest.raises(RuntimeError):
        register("Relu", domain="ai.onnx")(lambda ctx: OpCost())


def test_free_ops_not_registered():
    overlap = sorted(op for (dom, op) in registered() if dom == "" and op in FREE_OPS)
    assert not overlap


def test_every_default_domain_schema_is_costed_free_or_listed():
    schemas = [s for s in onnx.defs.get_all_schemas()
               if s.domain in ("", "ai.onnx") and not s.deprecated]
    names = {s.name for s in schemas}
    uncovered = sorted(n for n in names
                       if lookup(n) is None and n not in FREE_OPS and n not in KNOWN_UNSUPPORTED)
    assert not uncovered, f"default-domain ops with no cost function: {uncovered}"
    # the list must not hold ops that are now supported
    stale = sorted(n for n in KNOWN_UNSUPPORTED if lookup(n) is not None or n in FREE_OPS)
    assert not stale


def test_every_cost_function_documents_its_formula():
    undocumented = sorted(f"{d}::{op}" for (d, op), fn in registered().items()
                          if not (fn.__doc__ or "").strip())
    assert not undocumented


def test_package_import_registers_everything():
    assert ops.lookup("Conv") is not None
    assert len(registered()) > 200


# ------------------------------------------- every cost function on ONNX's own node tests


def _onnx_node_cases():
    """(case name, OpContext, inferred model) for each single-node test case shipped with onnx
    whose op has a cost function; shapes from onnx.shape_inference."""
    import warnings

    from onnx import numpy_helper
    from onnx.backend.test.case import node as node_cases

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cases = node_cases.collect_testcases(None)
    out = []
    for case in cases:
        model = case.model
        if model is None or len(model.graph.node) != 1:
            continue
        n = model.graph.node[0]
        if lookup(n.op_type, n.domain) is None:
            continue
        try:
            model = onnx.shape_inference.infer_shapes(model)
        except Exception:  # a few cases are not inferable; their declared shapes remain
            pass
        infos = {}
        g = model.graph
        for vi in list(g.input) + list(g.output) + list(g.value_info):
            tt = vi.type.tensor_type
            dims = [d.dim_value if d.HasField("dim_value") else None for d in tt.shape.dim]
            shape = None if (not tt.HasField("shape") or None in dims) else tuple(dims)
            infos[vi.name] = TensorInfo(vi.name, shape, "float32")
        attrs = {}
        for a in n.attribute:
            v = helper.get_attribute_value(a)
            if isinstance(v, bytes):
                v = v.decode()
            elif isinstance(v, list):
                v = tuple(x.decode() if isinstance(x, bytes) else x for x in v)
            elif isinstance(v, onnx.TensorProto):
                v = numpy_helper.to_array(v)
            attrs[a.name] = v
        node = Node(n.name or n.op_type, n.op_type, n.domain, tuple(n.input), tuple(n.output),
                    attrs)
        ctx = OpContext(node, tuple(infos.get(i) if i else None for i in n.input),
                        tuple(infos.get(o) for o in n.output), tuple(False for _ in n.input))
        out.append((case.name, ctx))
    return out


@pytest.fixture(scope="module")
def onnx_node_cases():
    return _onnx_node_cases()


def test_cost_functions_run_on_onnx_node_test_cases(onnx_node_cases):
    assert len(onnx_node_cases) > 1000
    problems = []
    for name, ctx in onnx_node_cases:
        try:
            c = lookup(ctx.node.op_type, ctx.node.domain)(ctx)
        except Exception as exc:  # ShapeUnknown included: all these shapes are known
            problems.append(f"{name}: {type(exc).__name__}: {exc}")
            continue
        if not (isinstance(c.macs, int) and isinstance(c.non_mac_ops, int)
                and c.macs >= 0 and c.non_mac_ops >= 0
                and c.kind in KINDS and c.layer_class in LAYER_CLASSES):
            problems.append(f"{name}: bad OpCost {c}")
    assert not problems, problems


def test_conv_and_matmul_macs_agree_with_onnx_inferred_outputs(onnx_node_cases):
    # Independent form of the same count: Conv MACs = out_elems * prod(W.shape[1:]),
    # MatMul MACs = out_elems * K, with out_elems from onnx's shape inference.
    checked = 0
    for name, ctx in onnx_node_cases:
        op = ctx.node.op_type
        if op == "Conv" and ctx.out_shape(0) and ctx.in_shape(1):
            expect = ctx.out_elems(0) * int(np.prod(ctx.in_shape(1)[1:]))
        elif op == "MatMul" and ctx.out_shape(0) is not None:
            expect = ctx.out_elems(0) * ctx.in_shape(0)[-1]
        else:
            continue
        assert lookup(op)(ctx).macs == expect, name
        checked += 1
    assert checked >= 10


def test_malformed_node_becomes_shape_unknown_not_a_crash():
    # A 2-D "MatMul" operand of rank 0 and an Attention query of the wrong rank: the registry's
    # guard turns the IndexError/ValueError into a ShapeUnknown subclass naming the node.
    from estimator.ops.base import CostInputError
    with pytest.raises(CostInputError, match="MatMul node 'MatMul_0'"):
        cost("MatMul", [(), (3, 4)])
    with pytest.raises(ShapeUnknown):
        cost("Attention", [(2, 8), (64, 192)], [UNKNOWN], {"num_heads": 4}, MS)


def test_layer_cost_fields_in_the_order_analyze_builds_them():
    import dataclasses

    from estimator.analyze import LAYER_FIELDS, LayerCost

    assert tuple(f.name for f in dataclasses.fields(LayerCost)) == LAYER_FIELDS
