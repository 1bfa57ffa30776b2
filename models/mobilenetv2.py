"""MobileNetV2 1.0 in torchvision's layout (Sandler et al. 2018, torchvision.models.mobilenet_v2).

features.0: Conv 3x3/2 3->32 + BN + ReLU6; 17 inverted-residual blocks from the table
(t, c, n, s) = (1,16,1,1) (6,24,2,2) (6,32,3,2) (6,64,4,2) (6,96,3,1) (6,160,3,2) (6,320,1,1);
features.18: Conv 1x1 320->1280 + BN + ReLU6; GlobalAveragePool, Flatten, classifier.1 Gemm
1280 -> 1000 (dropout omitted: it is the identity at inference).

A block with t != 1 is expand 1x1 + BN + ReLU6, depthwise 3x3 (stride s) + BN + ReLU6,
project 1x1 + BN (linear); t == 1 has no expand conv. The residual Add is used when the stride
is 1 and the input and output widths agree. ReLU6 is Clip with constant min 0 / max 6 inputs.
Names follow torchvision's state_dict (``features.2.conv.1.0`` is block 2's depthwise conv).
"""

from __future__ import annotations

import onnx
from onnx import TensorProto

from ._graph import GraphBuilder

SETTINGS = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
            (6, 160, 3, 2), (6, 320, 1, 1))
LAST_CHANNEL = 1280
NUM_CLASSES = 1000


def build(name: str, resolution: tuple[int, int], *, weights: bool,
          seed: int = 2) -> onnx.ModelProto:
    h, w = resolution
    g = GraphBuilder(name, weights=weights, seed=seed)
    lo = g.const_f32("relu6.min", 0.0)
    hi = g.const_f32("relu6.max", 6.0)

    def conv_bn_relu6(x: str, p: str, cin: int, cout: int, k: int, stride: int,
                      group: int = 1) -> str:
        x = g.conv(x, f"{p}.0", cin, cout, k, stride=stride, group=group)
        x = g.bn(x, f"{p}.1", cout)
        return g.node("Clip", [x, lo, hi], f"{p}.2")

    x = g.input("input", TensorProto.FLOAT, ["N", 3, h, w])
    x = conv_bn_relu6(x, "features.0", 3, 32, 3, 2)
    cin, idx = 32, 1
    for t, c, n, s in SETTINGS:
        for i in range(n):
            stride = s if i == 0 else 1
            p = f"features.{idx}.conv"
            hidden = cin * t
            y, j = x, 0
            if t != 1:
                y = conv_bn_relu6(y, f"{p}.{j}", cin, hidden, 1, 1)
                j += 1
            y = conv_bn_relu6(y, f"{p}.{j}", hidden, hidden, 3, stride, group=hidden)
            y = g.conv(y, f"{p}.{j + 1}", hidden, c, 1)
            use_res = stride == 1 and cin == c
            y = g.bn(y, f"{p}.{j + 2}", c, scale=0.3 if use_res else 1.0)
            if use_res:
                y = g.node("Add", [x, y], f"features.{idx}.add")
            x, cin, idx = y, c, idx + 1
    x = conv_bn_relu6(x, f"features.{idx}", cin, LAST_CHANNEL, 1, 1)
    x = g.node("GlobalAveragePool", [x], "avgpool")
    x = g.node("Flatten", [x], "flatten", axis=1)
    fc_w = g.weight("classifier.1.weight", (NUM_CLASSES, LAST_CHANNEL), std=0.01)
    fc_b = g.weight("classifier.1.bias", (NUM_CLASSES,), "const", value=0.0)
    g.node("Gemm", [x, fc_w, fc_b], "classifier.1", outputs=["output"], transB=1)
    g.output("output", TensorProto.FLOAT, ["N", NUM_CLASSES])
    return g.model(f"MobileNetV2 1.0, torchvision layout, input {h}x{w}, un-fused "
                   "BatchNormalization, ReLU6 as Clip(0, 6)",
                   {"estimate.builtin": name, "estimate.resolution": f"{h}x{w}",
                    "estimate.weights": "random" if weights else "none (graph-only)"})
