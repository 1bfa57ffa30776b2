"""Convolutions: Conv, ConvTranspose, DeformConv, CausalConvWithState, and the shared geometry
used by their quantized (quant.py) and fused (microsoft.py) forms.

Conventions: one MAC per weight tap per output element; the bias add is 1 non-MAC op per
output element; padding taps are counted as if real (no skipping of zeros at the borders).
"""

from __future__ import annotations

from dataclasses import dataclass

from .base import OpContext, OpCost, attr_str, conv_output_spatial, need, prod, register
from .elementwise import per_element_ops


@dataclass(slots=True)
class ConvGeometry:
    """Integer facts of one convolution: batch, channels, kernel, output elements."""

    batch: int
    c_in: int
    c_out: int
    group: int
    kernel: tuple[int, ...]
    strides: tuple[int, ...]
    dilations: tuple[int, ...]
    out_elems: int

    @property
    def macs(self) -> int:
        """out_elems * (C_in / group) * prod(kernel)."""
        return self.out_elems * (self.c_in // self.group) * prod(self.kernel)


def conv_geometry(ctx: OpContext, x: int = 0, w: int = 1,
                  channels_last: bool = False) -> ConvGeometry:
    """Read the geometry of a Conv-like node (X at input `x`, W at input `w`).

    The output shape comes from the context when known; otherwise it is computed from the
    input shape with the ONNX Conv rules (pads, strides, dilations, auto_pad).
    W is (C_out, C_in/group, k1, ..., kr) in ONNX layout; with `channels_last` (NhwcConv) X and
    Y are (N, spatial..., C) and W may be (C_out, k..., C_in/group): only prod(W[1:]) is used
    then, which is the same in both layouts.
    """
    op = ctx.node.op_type
    xs = need(ctx.in_shape(x), f"{op}: input X shape")
    ws = ctx.in_shape(w)
    group = int(ctx.attr("group", 1))
    rank = len(xs) - 2
    kernel = ctx.attr("kernel_shape")
    if kernel is None:
        ws = need(ws, f"{op}: weight shape (no kernel_shape attribute)")
        kernel = ws[1:-1] if (channels_last and ws[1] != xs[-1] // group) else ws[2:]
    kernel = tuple(int(k) for k in kernel)
    strides = tuple(int(s) for s in ctx.attr("strides", (1,) * rank))
    dilations = tuple(int(d) for d in ctx.attr("dilations", (1,) * rank))
    c_in = xs[-1] if channels_last else xs[1]
    ys = ctx.out_shape(0)
    if ys is not None:
        c_out = ys[-1] if channels_last else ys[1]
        out_elems = prod(ys)
    else:
        ws = need(ws, f"{op}: weight shape (output shape unknown)")
        c_out = ws[0]
        in_sp = xs[1:-1] if channels_last else xs[2:]
        pads = tuple(int(p) for p in ctx.attr("pads", (0,) * (2 * rank)))
        sp = conv_output_spatial(in_sp, kernel, strides, dilations, pads,
                                 attr_str(ctx, "auto_pad", "NOTSET"))
        out_elems = xs[0] * c_out * prod(sp)
    return ConvGeometry(xs[0], c_in, c_out, group, kernel, strides, dilations, out_elems)


#: at most this many input channels (RGB, RGBA, gray) makes a 2-D conv a stem
STEM_MAX_CHANNELS = 4


def conv_layer_class(g: ConvGeometry) -> str:
    """depthwise: group > 1 and group == C_in == C_out (one with a channel multiplier, C_out = m x
    C_in, is grouped: onnxruntime runs it as a plain grouped conv, not its depthwise kernel); gemv: a 1x1 conv (group 1) with one output pixel
    per sample; conv1x1: all kernel dims 1, group 1; conv_stem: a 2-D conv (group 1) of at most
    STEM_MAX_CHANNELS input channels, an image model's first; grouped: 1 < group < C_in (RegNet,
    ResNeXt); conv3x3: 2-D, 3x3 kernel, group 1; conv_other: the rest."""
    if g.group > 1 and g.group == g.c_in and g.c_out in (g.c_in, 0):
        return "depthwise"
    if g.group == 1 and all(k == 1 for k in g.kernel):
        # one output pixel per sample (a squeeze-excitation conv after global pooling): a
        # matrix-vector product, like a classifier head
        if g.batch and g.c_out and g.out_elems == g.batch * g.c_out:
            return "gemv"
        return "conv1x1"
    if g.group == 1 and g.c_in <= STEM_MAX_CHANNELS and len(g.kernel) == 2:
        # an image model's first conv, on 1-4 input channels: runtimes run it with another kernel
        # (onnxruntime's NCHWc reads its NCHW input directly) at another rate and fixed cost
        return "conv_stem"
    if g.group == 1 and g.kernel == (3, 3):
        return "conv3x3"
    if g.group > 1:
        return "grouped"
    return "conv_other"


def winograd_candidate(g: ConvGeometry) -> bool:
    """2-D conv, 3x3 kernel, strides 1, dilations 1, group 1."""
    return (g.kernel == (3, 3) and g.group == 1 and all(s == 1 for s in g.strides)
            and all(d == 1 for d in g.dilations))


def conv_cost(ctx: OpContext, g: ConvGeometry, extra_per_out: int = 0,
              kind: str = "contraction") -> OpCost:
    """OpCost of a conv with `extra_per_out` non-MAC ops per output element."""
    return OpCost(macs=g.macs, non_mac_ops=g.out_elems * extra_per_out, kind=kind,
                  layer_class=conv_layer_class(g), winograd_candidate=winograd_candidate(g))


def activation_ops(ctx: OpContext) -> int:
    """Per-element ops of the `activation` attribute of a fused op (FusedConv, FusedGemm).

    Looked up in elementwise.PER_ELEMENT; an activation missing from that table counts 1.
    """
    act = attr_str(ctx, "activation", "")
    if not act:
        return 0
    n = per_element_ops(act)
    return 1 if n is None else n


@register("Conv")
def conv(ctx: OpContext) -> OpCost:
    """macs = N * C_out * prod(out_spatial) * (C_in / group) * prod(kernel);
    non_mac_ops = out_elems if a bias B is given (one add per output element), else 0.

    Output shape from the context (computed with the ONNX rules when unknown). 1-D, 2-D and
    3-D convs, groups, depthwise, dilations, pads and auto_pad are all covered by the formula.
    """
    g = conv_geometry(ctx)
    return conv_cost(ctx, g, 1 if ctx.has_input(2) else 0)


def conv_transpose_out_elems(ctx: OpContext, xs: tuple[int, ...],
                             ws: tuple[int, ...] | None) -> int:
    """Output elements of a ConvTranspose: from the context, else the ONNX formula
    out = stride * (in - 1) + output_padding + (k - 1) * dilation + 1 - pad_begin - pad_end
    (or the output_shape attribute)."""
    ys = ctx.out_shape(0)
    if ys is not None:
        return prod(ys)
    ws = need(ws, "ConvTranspose: weight shape")
    rank = len(xs) - 2
    group = int(ctx.attr("group", 1))
    c_out = ws[1] * group
    if ctx.attr("output_shape") is not None:
        return xs[0] * c_out * prod(ctx.attr("output_shape")[-rank:])
    kernel = tuple(ctx.attr("kernel_shape", ws[2:]))
    strides = tuple(ctx.attr("strides", (1,) * rank))
    dil = tuple(ctx.attr("dilations", (1,) * rank))
    opad = tuple(ctx.attr("output_padding", (0,) * rank))
    pads = tuple(ctx.attr("pads", (0,) * (2 * rank)))
    auto_pad = attr_str(ctx, "auto_pad", "NOTSET")
    sp = []
    for i in range(rank):
        if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
            sp.append(xs[2 + i] * strides[i])
        else:
            sp.append(strides[i] * (xs[2 + i] - 1) + opad[i] + (kernel[i] - 1) * dil[i] + 1
                      - pads[i] - pads[i + rank])
    return xs[0] * c_out * prod(sp)


@register("ConvTranspose")
def conv_transpose(ctx: OpContext) -> OpCost:
    """macs = N * C_in * prod(in_spatial) * (C_out / group) * prod(kernel)
    (each input element is scattered through C_out/group kernels);
    non_mac_ops = out_elems if a bias is given.

    W is (C_in, C_out/group, k...). Layer class: depthwise if group == C_in > 1, conv1x1 if
    every kernel dim is 1 and group 1, else conv_other (a transposed 3x3 runs as GEMM + col2im,
    not the direct 3x3 path, and is never a Winograd candidate here).
    """
    xs = need(ctx.in_shape(0), "ConvTranspose: input X shape")
    ws = ctx.in_shape(1)
    group = int(ctx.attr("group", 1))
    rank = len(xs) - 2
    if ws is not None:
        per_in = prod(ws[1:]) if ctx.attr("kernel_shape") is None else \
            ws[1] * prod(ctx.attr("kernel_shape"))
    else:
        kernel = need(ctx.attr("kernel_shape"), "ConvTranspose: weight shape or kernel_shape")
        ys = need(ctx.out_shape(0), "ConvTranspose: output shape")
        per_in = (ys[1] // group) * prod(kernel[-rank:])
    macs = prod(xs) * per_in
    bias = conv_transpose_out_elems(ctx, xs, ws) if ctx.has_input(2) else 0
    kernel = tuple(ctx.attr("kernel_shape", ws[2:] if ws is not None else ()))
    if group > 1 and group == xs[1]:
        cls = "depthwise"
    elif group == 1 and kernel and all(int(k) == 1 for k in kernel):
        cls = "conv1x1"           # a plain GEMM, transposed or not
    else:
        cls = "conv_other"
    return OpCost(macs=macs, non_mac_ops=bias, kind="contraction", layer_class=cls)


# Bilinear sampling of one input value at a fractional position: 4 corner weights
# (4 multiplies) and their sum (3 adds) = 7 ops; the offset mask, when given, 1 multiply more.
BILINEAR_OPS = 7


@register("DeformConv")
def deform_conv(ctx: OpContext) -> OpCost:
    """macs = conv MACs (N * C_out * prod(out_spatial) * C_in/group * prod(kernel));
    non_mac_ops = N * C_in * prod(kernel) * prod(out_spatial) * (7 + mask)
                  + out_elems if bias.

    Each sampled input value (im2col column entry) costs one bilinear interpolation (7 ops,
    see BILINEAR_OPS) and one multiply by the modulation mask (input 4) when given; the
    sampled columns are shared by all output channels. Offset coordinate arithmetic ignored.
    """
    g = conv_geometry(ctx)
    spatial_out = g.out_elems // (g.batch * g.c_out)
    samples = g.batch * g.c_in * prod(g.kernel) * spatial_out
    ops = samples * (BILINEAR_OPS + (1 if ctx.has_input(4) else 0))
    ops += g.out_elems if ctx.has_input(3) else 0
    return OpCost(macs=g.macs, non_mac_ops=ops, kind="contraction", layer_class="conv_other")


@register("CausalConvWithState")
def causal_conv_with_state(ctx: OpContext) -> OpCost:
    """macs = B * C * L * k (depthwise causal 1-D conv, weight (C, 1, k));
    non_mac_ops = out_elems * (bias + activation) with bias 1 if given and activation
    5 for "silu"/"swish" (see elementwise.PER_ELEMENT["Swish"]), else 0.

    The state carry (concat of past_state, slicing of present_state) is data movement.
    """
    xs = need(ctx.in_shape(0), "CausalConvWithState: input shape")
    ws = need(ctx.in_shape(1), "CausalConvWithState: weight shape")
    k = ws[-1]
    out = prod(xs)
    act = attr_str(ctx, "activation", "none")
    swish = act.lower() in ("silu", "swish")
    per = (1 if ctx.has_input(2) else 0) + (per_element_ops("Swish") if swish else 0)
    return OpCost(macs=out * k, non_mac_ops=out * per, kind="contraction", layer_class="depthwise")

