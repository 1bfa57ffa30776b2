"""YOLOv3 and YOLOv3-tiny, layer for layer as Darknet's yolov3.cfg and yolov3-tiny.cfg (80 classes).

The networks are written below as the cfg files' layer lists and interpreted the way Darknet
does, so node names carry Darknet's layer index (``layer12.conv``, ``layer12.bn``,
``layer12.leaky``, ``layer36.shortcut``, ``layer86.route``, ``layer85.upsample``):

- [convolutional]: pad=1 means padding size//2. With batch_normalize=1: Conv without bias +
  BatchNormalization + LeakyRelu(alpha=0.1). The three (tiny: two) detection convs before each
  [yolo] layer are 1x1, 255 = 3 * (80 + 5) filters, with bias, linear activation.
- [shortcut] from=-3, activation=linear: Add.
- [route] layers=-1,61: Concat on channels in the listed order; a single-layer route only
  re-points to an earlier output (no node).
- [upsample] stride=2: Resize mode nearest with a constant scales input [1, 1, 2, 2]
  (coordinate_transformation_mode asymmetric, nearest_mode floor, as torch exports it).
- [maxpool]: Darknet pads size-1 in total, (size-1)//2 before: a 2x2 stride-1 pool keeps 13x13
  with pads [0, 0, 1, 1] (bottom/right only); 2x2 stride-2 pools need no padding on even inputs.
- [yolo]: box decoding is not part of the graph; the raw head tensors are the outputs
  ``out_stride32``, ``out_stride16`` (and ``out_stride8`` for YOLOv3), [N, 255, H/s, W/s].
"""

from __future__ import annotations

import math

import onnx
from onnx import TensorProto

from ._graph import GraphBuilder

NUM_CLASSES = 80
HEAD_FILTERS = 3 * (NUM_CLASSES + 5)  # 255
LEAKY_GAIN = math.sqrt(2.0 / (1.0 + 0.1 ** 2))

# Layer tuples: ("conv", filters, size, stride) with BN + leaky; ("head", filters) 1x1 linear conv
# with bias; ("shortcut", from); ("route", (layers...)); ("upsample",); ("maxpool", size, stride);
# ("yolo",).


def yolov3_layers() -> list[tuple]:
    """The 107 layers (0..106) of yolov3.cfg."""
    layers: list[tuple] = [("conv", 32, 3, 1)]
    for filters, blocks in ((64, 1), (128, 2), (256, 8), (512, 8), (1024, 4)):  # Darknet-53
        layers.append(("conv", filters, 3, 2))
        for _ in range(blocks):
            layers += [("conv", filters // 2, 1, 1), ("conv", filters, 3, 1), ("shortcut", -3)]
    assert len(layers) == 75

    def head(width: int) -> list[tuple]:
        return [("conv", width, 1, 1), ("conv", 2 * width, 3, 1)] * 3 + \
               [("head", HEAD_FILTERS), ("yolo",)]

    layers += head(512)                                                          # 75..82
    layers += [("route", (-4,)), ("conv", 256, 1, 1), ("upsample",), ("route", (-1, 61))]
    layers += head(256)                                                          # 87..94
    layers += [("route", (-4,)), ("conv", 128, 1, 1), ("upsample",), ("route", (-1, 36))]
    layers += head(128)                                                          # 99..106
    assert len(layers) == 107
    return layers


def yolov3_tiny_layers() -> list[tuple]:
    """The 24 layers (0..23) of yolov3-tiny.cfg."""
    layers: list[tuple] = []
    for filters in (16, 32, 64, 128, 256):
        layers += [("conv", filters, 3, 1), ("maxpool", 2, 2)]
    layers += [("conv", 512, 3, 1), ("maxpool", 2, 1), ("conv", 1024, 3, 1),    # 10..12
               ("conv", 256, 1, 1), ("conv", 512, 3, 1), ("head", HEAD_FILTERS), ("yolo",),
               ("route", (-4,)), ("conv", 128, 1, 1), ("upsample",), ("route", (-1, 8)),
               ("conv", 256, 3, 1), ("head", HEAD_FILTERS), ("yolo",)]
    assert len(layers) == 24
    return layers


def build(name: str, resolution: tuple[int, int], *, weights: bool, tiny: bool,
          seed: int = 3) -> onnx.ModelProto:
    h, w = resolution
    layers = yolov3_tiny_layers() if tiny else yolov3_layers()
    g = GraphBuilder(name, weights=weights, seed=seed)
    x = g.input("input", TensorProto.FLOAT, ["N", 3, h, w])
    scales = None
    outs: list[str] = []        # output tensor of each layer, by Darknet index
    chans: list[int] = []       # its channel count
    strides: list[int] = []     # its total stride w.r.t. the input
    heads: list[tuple[str, int]] = []
    c, s = 3, 1
    for i, layer in enumerate(layers):
        kind, p = layer[0], f"layer{i}"
        if kind == "conv":
            _, filters, size, stride = layer
            residual_end = i + 1 < len(layers) and layers[i + 1][0] == "shortcut"
            x = g.conv(x, f"{p}.conv", c, filters, size, stride=stride, gain=LEAKY_GAIN)
            # A small gamma on the BN before each shortcut keeps random activations bounded.
            x = g.bn(x, f"{p}.bn", filters, scale=0.2 if residual_end else 1.0)
            x = g.node("LeakyRelu", [x], f"{p}.leaky", alpha=0.1)
            c, s = filters, s * stride
        elif kind == "head":
            out = f"out_stride{s}"
            x = g.node("Conv", [x, g.conv_weight(f"{p}.conv.weight", layer[1], c, 1, 1, gain=1.0),
                                g.weight(f"{p}.conv.bias", (layer[1],), "const", value=0.0)],
                       f"{p}.conv", outputs=[out], kernel_shape=[1, 1], strides=[1, 1],
                       pads=[0, 0, 0, 0], group=1, dilations=[1, 1])
            c = layer[1]
            heads.append((out, s))
        elif kind == "yolo":
            pass  # decoding is not part of the graph: the previous layer's output is a result
        elif kind == "shortcut":
            j = i + layer[1]
            if chans[j] != c or strides[j] != s:  # pragma: no cover - layer list error
                raise AssertionError(f"{p}: shortcut shape mismatch")
            x = g.node("Add", [x, outs[j]], f"{p}.shortcut")
        elif kind == "route":
            src = [i + r if r < 0 else r for r in layer[1]]
            if len(src) == 1:
                x, c, s = outs[src[0]], chans[src[0]], strides[src[0]]
            else:
                if len({strides[j] for j in src}) != 1:  # pragma: no cover
                    raise AssertionError(f"{p}: route of different resolutions")
                x = g.node("Concat", [outs[j] for j in src], f"{p}.route", axis=1)
                c, s = sum(chans[j] for j in src), strides[src[0]]
        elif kind == "upsample":
            if scales is None:
                scales = g.const_f32("upsample.scales", [1.0, 1.0, 2.0, 2.0])
            x = g.node("Resize", [x, "", scales], f"{p}.upsample", mode="nearest",
                       coordinate_transformation_mode="asymmetric", nearest_mode="floor")
            s //= 2
        elif kind == "maxpool":
            _, size, stride = layer
            before = (size - 1) // 2
            after = size - 1 - before
            pads = [before, before, after, after] if stride == 1 else [0, 0, 0, 0]
            x = g.node("MaxPool", [x], f"{p}.maxpool", kernel_shape=[size, size],
                       strides=[stride, stride], pads=pads)
            s *= stride
        else:  # pragma: no cover
            raise AssertionError(kind)
        outs.append(x)
        chans.append(c)
        strides.append(s)
    for out, s in heads:
        g.output(out, TensorProto.FLOAT, ["N", HEAD_FILTERS, h // s, w // s])
    cfg = "yolov3-tiny.cfg" if tiny else "yolov3.cfg"
    return g.model(f"{name} as Darknet's {cfg} (80 classes), input {h}x{w}, raw head outputs "
                   "(no box decoding), un-fused BatchNormalization",
                   {"estimate.builtin": name, "estimate.resolution": f"{h}x{w}",
                    "estimate.weights": "random" if weights else "none (graph-only)"})
