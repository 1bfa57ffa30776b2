"""ResNet-50 in torchvision's layout: v1.5 (default) and the original v1.

Layout (He et al. 2016, torchvision.models.resnet50): conv1 7x7/2 (64) + BN + ReLU, MaxPool
3x3/2 pad 1, four stages of bottleneck blocks [3, 4, 6, 3] with widths [64, 128, 256, 512] and
expansion 4, GlobalAveragePool, Flatten, fc Gemm 2048 -> 1000 (weight [1000, 2048], transB=1).
Convolutions have no bias; every one is followed by its own BatchNormalization node (un-fused,
as torch.onnx.export with training=TrainingMode.TRAINING or do_constant_folding=False gives).

- v1.5: the first block of stages 2-4 puts stride 2 on its 3x3 conv (conv2).
- v1:   it puts stride 2 on the first 1x1 conv (conv1), as in the original paper / Caffe model.

The downsample branch (1x1 conv with the block's stride + BN) is the same in both.
Names follow torchvision's state_dict: ``layer2.0.conv1``, ``layer2.0.bn1``,
``layer2.0.downsample.0`` ...
"""

from __future__ import annotations

import onnx
from onnx import TensorProto

from ._graph import GraphBuilder

STAGES = ((64, 3), (128, 4), (256, 6), (512, 3))
EXPANSION = 4
NUM_CLASSES = 1000


def _bottleneck(g: GraphBuilder, x: str, p: str, cin: int, planes: int, stride: int,
                v15: bool) -> str:
    cout = planes * EXPANSION
    s1, s2 = (1, stride) if v15 else (stride, 1)
    y = g.conv(x, f"{p}.conv1", cin, planes, 1, stride=s1)
    y = g.bn(y, f"{p}.bn1", planes)
    y = g.node("Relu", [y], f"{p}.relu1")
    y = g.conv(y, f"{p}.conv2", planes, planes, 3, stride=s2)
    y = g.bn(y, f"{p}.bn2", planes)
    y = g.node("Relu", [y], f"{p}.relu2")
    y = g.conv(y, f"{p}.conv3", planes, cout, 1)
    # A small gamma on the last BN of the residual branch keeps the random-weight network's
    # activations from growing block after block (like torchvision's zero_init_residual).
    y = g.bn(y, f"{p}.bn3", cout, scale=0.2)
    if stride != 1 or cin != cout:
        sc = g.conv(x, f"{p}.downsample.0", cin, cout, 1, stride=stride)
        sc = g.bn(sc, f"{p}.downsample.1", cout)
    else:
        sc = x
    y = g.node("Add", [y, sc], f"{p}.add")
    return g.node("Relu", [y], f"{p}.relu3")


def build(name: str, resolution: tuple[int, int], *, weights: bool, v15: bool,
          seed: int = 50) -> onnx.ModelProto:
    h, w = resolution
    g = GraphBuilder(name, weights=weights, seed=seed)
    x = g.input("input", TensorProto.FLOAT, ["N", 3, h, w])
    x = g.conv(x, "conv1", 3, 64, 7, stride=2, pad=3)
    x = g.bn(x, "bn1", 64)
    x = g.node("Relu", [x], "relu")
    x = g.node("MaxPool", [x], "maxpool", kernel_shape=[3, 3], strides=[2, 2],
               pads=[1, 1, 1, 1])
    cin = 64
    for si, (planes, blocks) in enumerate(STAGES, start=1):
        for bi in range(blocks):
            stride = 2 if (bi == 0 and si > 1) else 1
            x = _bottleneck(g, x, f"layer{si}.{bi}", cin, planes, stride, v15)
            cin = planes * EXPANSION
    x = g.node("GlobalAveragePool", [x], "avgpool")
    x = g.node("Flatten", [x], "flatten", axis=1)
    fc_w = g.weight("fc.weight", (NUM_CLASSES, cin), std=0.01)
    fc_b = g.weight("fc.bias", (NUM_CLASSES,), "const", value=0.0)
    g.node("Gemm", [x, fc_w, fc_b], "fc", outputs=["output"], transB=1)
    g.output("output", TensorProto.FLOAT, ["N", NUM_CLASSES])
    variant = "v1.5 (stride on 3x3)" if v15 else "v1 (stride on first 1x1)"
    return g.model(f"ResNet-50 {variant}, torchvision layout, input {h}x{w}, "
                   "un-fused BatchNormalization",
                   {"estimate.builtin": name, "estimate.resolution": f"{h}x{w}",
                    "estimate.weights": "random" if weights else "none (graph-only)"})
