"""The roofline predictor: CostTable (per sample) x hardware profile(s) x batch sizes.

Everything is array arithmetic over three axes: configurations (C: hardware variants),
batches (B) and layers (L). A prediction for one profile is C = 1; a design-space sweep over
10,000 variants is the same code with C = 10,000. Per layer, at batch b:

  compute_s = b * MACs' / (peak_MAC/s * utilization * compute_efficiency[class])
              + b * non_MAC_ops / (vector_ops_per_s * compute_efficiency[class])   (0 without a rate)
              + b * calls * grouped_call_s   (a grouped conv's calls of the blocked kernel, kernels.grouped_calls)
  memory_s  = DRAM_bytes(b) / (dram_bandwidth * memory_efficiency)
  time_s    = max(compute_s, memory_s) + overhead[class]      (views, fused epilogues: 0)
              overhead[class] includes kernel_overhead_in_graph_s (a kernel without MACs inside a whole graph)
  bound     = "compute" if compute_s >= memory_s else "memory"

and the model runs its layers one after another: latency(b) = sum of layer times,
throughput(b) = b / latency(b).

SRAM residency policy (explicit, all-or-nothing for weights):
- weights: if every weight of the model (at the precision, after Winograd growth when the
  profile stores transformed weights) fits in sram_bytes, they may be pinned: read from DRAM
  once and amortized away in steady state (0 DRAM bytes per inference). Otherwise, or when
  streaming is faster (pinned weights leave less SRAM to activations), every layer streams the
  weights it reads from DRAM once per pass (the samples of a pass share one read).
- activations: the SRAM left after resident weights holds activations. A layer "fits" when
  b x (its input + output activation bytes) fits there. A tensor stays on chip when its
  producer and every consumer fit; otherwise it is written to DRAM once and read back by
  each consumer. Graph inputs are read from DRAM; graph outputs are written to DRAM.
  View ops (Reshape, Flatten, ...) alias their input and cost nothing.

Winograd F(m x m, 3x3) on candidate layers (3x3, stride 1, dilation 1, group 1): MACs shrink
by (m*3)^2/(m+2)^2 (2.25 for F2, 4 for F4); stored weights grow by ((m+2)/3)^2 (16/9, 4) when
the profile stores them transformed; with `expand_on_load` they stay untransformed in SRAM
and DRAM and are expanded on the way into the compute units.

Utilization: with `mac_array: {rows, cols}` a contraction layer with reduction size K (input
channels per group) and N output channels uses K/(ceil(K/rows)*rows) of the rows and
N/(ceil(N/cols)*cols) of the columns; a depthwise conv has K = 1. Without an array, or for
ops with no such mapping (Einsum, attention, RNNs), utilization is 1.

Not modelled (stated in docs/roofline.md): pipelining between layers, on-chip bandwidth,
DRAM latency, tiling re-reads when a layer's working set exceeds SRAM (counted once).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from . import kernels
from .analyze import CostTable
from .errors import UserError
from .hardware import HardwareProfile
from .ops.base import LAYER_CLASSES

WINOGRAD_TILES = {"off": 0, "f2": 2, "f4": 4}


def winograd_factors(tile: int) -> tuple[float, float]:
    """(MAC reduction, weight growth) of F(tile x tile, 3x3): ((3m)^2/(m+2)^2, ((m+2)/3)^2)."""
    if tile == 0:
        return 1.0, 1.0
    m, r = tile, 3
    return (m * r) ** 2 / (m + r - 1) ** 2, ((m + r - 1) / r) ** 2


# ----------------------------------------------------------------------------- inputs


@dataclass(frozen=True)
class LayerArrays:
    """The per-layer columns the roofline needs, built once from a CostTable."""

    names: tuple[str, ...]
    op_types: tuple[str, ...]
    macs: np.ndarray            # (L,) per sample
    non_mac: np.ndarray         # (L,) per sample
    weight_bytes: np.ndarray    # (L,) at the precision, untransformed: the weights this layer owns
    winograd: np.ndarray        # (L,) bool candidate
    map_k: np.ndarray           # (L,) 0 = unmapped
    map_n: np.ndarray
    is_view: np.ndarray         # (L,) bool
    costed: np.ndarray          # (L,) bool: status ok
    class_idx: np.ndarray       # (L,) index into LAYER_CLASSES
    tensor_bytes: np.ndarray    # (T,) per sample
    producer: np.ndarray        # (T,) layer index, -1 for graph inputs
    is_output: np.ndarray       # (T,) bool
    edge_tensor: np.ndarray     # (E,) consumer edges: tensor index
    edge_layer: np.ndarray      # (E,) consumer edges: layer index
    ws_bytes: np.ndarray        # (L,) working set per sample (input + output activation bytes)
    in_pad: np.ndarray = field(default=None, repr=False)    # (L, k) input tensors of each layer, T = none
    out_pad: np.ndarray = field(default=None, repr=False)   # (L, k) output tensors of each layer, T = none
    cons_pad: np.ndarray = field(default=None, repr=False)  # (T, k) consumer layers of each tensor, L = none
    fused: np.ndarray = field(default=None, repr=False)     # (L,) bool: epilogue fused into its producer
    fused_input: np.ndarray = field(default=None, repr=False)  # (T,) bool: tensor consumed only by a fused epilogue
    fused_work: np.ndarray = field(default=None, repr=False)   # (L,) bool: a fused member that keeps its compute
    #   (attention's Softmax and P V, a pointwise chain; kernels.Rule.members_compute): no overhead of its own
    weight_read_bytes: np.ndarray = field(default=None, repr=False)  # (L,) all weights read, shared ones included
    kernel_bytes: np.ndarray = field(default=None, repr=False)  # (L,) conv kernel of Winograd candidates
    gather_cap: np.ndarray = field(default=None, repr=False)  # (L,) per sample: a lookup in a weight table
    #   (Gather of embeddings) reads only the rows it gathers, at most this many bytes per sample
    #   (its output); inf for every other layer
    reorder: np.ndarray = field(default=None, repr=False)  # (L,) elements per sample of the layout
    #   conversions next to each layer (kernels.layout_reorders), timed at the data class's rate
    kernel_head: np.ndarray = field(default=None, repr=False)  # (L,) the layer heading each one's kernel
    #   (estimator/kernels.py): its own index when it heads one or runs alone
    gemm_m: np.ndarray = field(default=None, repr=False)   # (L,) output rows per sample of a contraction's
    #   GEMM view (positions, or the rows of a MatMul), per group; 0 = unmapped
    gemm_groups: np.ndarray = field(default=None, repr=False)  # (L,) independent GEMMs (groups of a grouped conv)
    tensor_names: tuple = field(default=None, repr=False)  # (T,) the tensors' names (a view's: its root's)
    k_fill: np.ndarray = field(default=None, repr=False)   # (L,) real share of the input channels a blocked
    #   layout pads to whole blocks (kernels.input_channel_fill); None: no layout, all 1
    calls: np.ndarray = field(default=None, repr=False)    # (L,) per sample: blocked-kernel calls of a grouped
    #   conv (kernels.grouped_calls), each paying grouped_call_s; None: no layout, all 0

    @classmethod
    def from_table(cls, table: CostTable, graph_outputs: Sequence[str] = (),
                   rules: Sequence[kernels.Rule] | None = None, layout: tuple[str, int] | None = None) -> "LayerArrays":
        """`rules`: the fusion rules that group layers into kernels (a profile's, see
        kernels.rules_for; None: the default rules). `layout`: (name, channel block) of the
        runtime's blocked layout (a profile's `layout`, HardwareProfile.layout_spec()), whose
        conversions cost as data movement; None: no conversions."""
        layers = table.layers
        prec = table.precision
        graph_outputs = tuple(graph_outputs) or table.outputs
        is_view = np.array([l.kind == "view" for l in layers], dtype=bool)
        # aliases: a view's outputs are its (root) input
        alias: dict[str, str] = {}
        for l, v in zip(layers, is_view):
            if v and l.inputs and l.op_type not in ("Shape", "Size"):
                root = alias.get(l.inputs[0], l.inputs[0])
                for o in l.outputs:
                    alias[o] = root
        tbytes = table.tensor_bytes
        names: list[str] = []
        index: dict[str, int] = {}

        def tid(x: str) -> int:
            x = alias.get(x, x)
            if x not in index:
                index[x] = len(names)
                names.append(x)
            return index[x]

        producer: dict[int, int] = {}
        edges_t, edges_l = [], []
        for i, l in enumerate(layers):
            if is_view[i]:
                continue
            for x in l.outputs:
                producer[tid(x)] = i
            for x in dict.fromkeys(l.inputs):
                edges_t.append(tid(x))
                edges_l.append(i)
        outs = {alias.get(x, x) for x in graph_outputs}
        T = len(names)
        tb = np.array([float(tbytes.get(x, 0.0)) for x in names])
        prod = np.array([producer.get(t, -1) for t in range(T)], dtype=np.int64)
        is_out = np.array([x in outs for x in names], dtype=bool)
        et = np.array(edges_t, dtype=np.int64)
        el = np.array(edges_l, dtype=np.int64)
        L = len(layers)
        ws = np.zeros(L)
        if len(et):
            np.add.at(ws, el, tb[et])
        has_prod = prod >= 0
        np.add.at(ws, prod[has_prod], tb[has_prod])
        cls_index = {c: i for i, c in enumerate(LAYER_CLASSES)}
        unblocked = set() if not layout else {id(l) for l in layers if kernels.is_2d_conv(l)
                                              and not kernels.runs_blocked(l, layout[1])}
        # padded index matrices: gathers instead of segment sums (fast over many configurations)
        ins_of: list[list[int]] = [[] for _ in range(L)]
        outs_of: list[list[int]] = [[] for _ in range(L)]
        cons_of: list[list[int]] = [[] for _ in range(T)]
        for t_, l_ in zip(edges_t, edges_l):
            ins_of[l_].append(t_)
            cons_of[t_].append(l_)
        for t_, l_ in producer.items():
            outs_of[l_].append(t_)

        def pad(rows: list[list[int]], fill: int) -> np.ndarray:
            k = max((len(r) for r in rows), default=0) or 1
            out = np.full((len(rows), k), fill, dtype=np.int64)
            for i, r in enumerate(rows):
                out[i, :len(r)] = r
            return out
        heads_l, work_l = kernels.grouping(layers, kernels.rules_for(None, None) if rules is None else rules,
                                           dynamic=table.dynamic_shapes, graph_outputs=graph_outputs)
        heads = np.array(heads_l, dtype=np.int64)
        fused = heads != np.arange(L)
        fused_work = np.array(work_l, dtype=bool) & fused   # members that keep their arithmetic
        # a tensor between members of one kernel (read by nothing else) stays on chip
        fused_in = np.zeros(T, dtype=bool)
        for t_, p_ in producer.items():
            cons = cons_of[t_]
            if cons and all(fused[c] and heads[c] == heads[p_] for c in cons):
                fused_in[t_] = True
        # the non-MAC work of a convolution or Gemm node (its bias, alpha/beta, fused activation)
        # is its epilogue, applied while the output tile is in registers: not a separate pass
        # a data-movement kernel (Concat, Transpose, Slice, ...) does no arithmetic; its work is
        # the elements it reads and writes, timed at the element-wise rate like an operation each
        # (scaled by the data class's efficiency): without it an in-cache copy would cost nothing
        non_mac = np.array([0.0 if l.op_type in kernels.EPILOGUE_IN_NODE else
                            max(float(l.input_elems + l.output_elems), float(l.non_mac_ops))
                            if l.layer_class == "data" and l.kind == "data" else
                            l.non_mac_ops for l in layers], dtype=np.float64)
        return cls(
            names=tuple(l.name for l in layers), op_types=tuple(l.op_type for l in layers),
            macs=np.array([l.macs for l in layers], dtype=np.float64),
            non_mac=non_mac,
            weight_bytes=np.array([l.weight_bytes_at(prec) for l in layers], dtype=np.float64),
            winograd=np.array([l.winograd_candidate for l in layers], dtype=bool),
            # a conv outside the blocked layout runs unpadded: not mapped onto the channel block
            map_k=np.array([0 if id(l) in unblocked else l.map_k for l in layers], dtype=np.float64),
            map_n=np.array([0 if id(l) in unblocked else l.map_n for l in layers], dtype=np.float64),
            is_view=is_view, costed=np.array([l.status == "ok" for l in layers], dtype=bool),
            class_idx=np.array([cls_index.get(kernels.layout_class(l, layout[1]) if layout else l.layer_class,
                                              cls_index["other"]) for l in layers], dtype=np.int64),
            tensor_bytes=tb, producer=prod, is_output=is_out, edge_tensor=et, edge_layer=el, ws_bytes=ws,
            in_pad=pad(ins_of, T), out_pad=pad(outs_of, T), cons_pad=pad(cons_of, L),
            fused=fused, fused_input=fused_in, fused_work=fused_work,
            weight_read_bytes=np.array([l.weight_read_bytes_at(prec) for l in layers], dtype=np.float64),
            kernel_bytes=np.array([l.kernel_bytes_at(prec) for l in layers], dtype=np.float64),
            gather_cap=np.array([l.output_bytes_at(prec) if l.op_type in GATHER_OPS and l.weight_bytes > 0 else np.inf
                                 for l in layers], dtype=np.float64),
            kernel_head=heads,
            reorder=_reorders(layers, tbytes, graph_outputs, layout, heads), tensor_names=tuple(names),
            k_fill=None if not layout else np.array([kernels.input_channel_fill(l, layout[1]) for l in layers]),
            calls=None if not layout else np.array([kernels.grouped_calls(l, layout[1]) for l in layers]),
            **_gemm_view(layers))


def _gemm_view(layers) -> dict[str, np.ndarray]:
    """Each contraction's output as GEMMs for tiling (docs/roofline.md, "Tiles and waves"):
    N = map_n output columns (one group's for a grouped conv), groups = output channels / N
    for a grouped conv (else 1), M = output elements / (N x groups) rows per sample."""
    m = np.zeros(len(layers))
    g = np.ones(len(layers))
    for i, l in enumerate(layers):
        if not (l.macs and l.map_n):
            continue
        shape = l.output_shape or ()
        chan = shape[-1] if l.op_type.startswith("Nhwc") and shape else (shape[1] if len(shape) >= 2 else 0)
        if l.layer_class == "grouped" and chan:
            g[i] = max(1.0, float(chan) / l.map_n)
        m[i] = float(l.output_elems) / (l.map_n * g[i])
    return {"gemm_m": m, "gemm_groups": g}


_DATA = LAYER_CLASSES.index("data")


def _reorders(layers, tbytes, graph_outputs, layout, heads) -> np.ndarray:
    """Layout-conversion elements per layer (kernels.layout_reorders), a fused member's moved
    to its kernel's head (the member itself costs no compute)."""
    out = np.zeros(len(layers))
    if layout:
        np.add.at(out, heads, np.array(kernels.layout_reorders(layers, tbytes, graph_outputs, block=layout[1])))
    return out

#: Lookups that read only the rows they gather from a constant table (an embedding): their
#: weight traffic is the gathered bytes, not the whole table.
GATHER_OPS = frozenset({"Gather", "GatherElements", "GatherND"})


@dataclass(frozen=True)
class HwArrays:
    """Hardware parameters as (C,) columns: one entry per configuration."""

    names: tuple[str, ...]
    peak_macs_per_s: np.ndarray
    vector_ops_per_s: np.ndarray      # inf = non-MAC work costs memory traffic only
    sram_bytes: np.ndarray
    dram_bytes_per_s: np.ndarray
    mem_eff: np.ndarray
    compute_eff: np.ndarray           # (C, n_classes)
    rows: np.ndarray                  # 0 = no array
    cols: np.ndarray
    overhead_s: np.ndarray            # (C, n_classes) fixed seconds per layer of each class
    wino_tile: np.ndarray             # 0 = off
    wino_expand: np.ndarray           # bool: expand_on_load
    energy_mac_j: np.ndarray          # nan = unknown
    energy_byte_j: np.ndarray
    onchip_bytes_per_s: np.ndarray = None   # (C,) inf = on-chip operand traffic overlaps the MACs (no term)
    units: np.ndarray = None          # (C,) parallel units (profile `parallel`); 0 = no tile/wave term
    tile_m: np.ndarray = None         # (C,) output rows of one tile
    tile_n: np.ndarray = None         # (C,) output columns of one tile
    weight_cache: np.ndarray = None   # (C,) bool: weight_residency "cache" (docs/roofline.md); None = all pinned
    in_graph_s: np.ndarray = None     # (C,) kernel_overhead_in_graph_s: a kernel without MACs of a whole graph pays it
    split_ops: np.ndarray = None      # (C,) element ops per pass from which a kernel without MACs is split
    #                                        over threads and pays in_graph_s (pays_in_graph); 0: all are
    wfetch_bytes_per_s: np.ndarray = None  # (C,) weight_fetch_bandwidth_bytes_per_s; inf: overlapped (no term)
    call_s: np.ndarray = None         # (C,) grouped_call_s: seconds per blocked-kernel call of a grouped conv

    @property
    def count(self) -> int:
        return len(self.names)

    def subset(self, start: int, stop: int) -> "HwArrays":
        """Configurations start..stop-1 (for evaluating a large grid in cache-sized chunks)."""
        import dataclasses

        return dataclasses.replace(self, **{f.name: getattr(self, f.name)[start:stop] for f in dataclasses.fields(self)
                                            if getattr(self, f.name) is not None})

    @classmethod
    def from_profiles(cls, profiles: Sequence[HardwareProfile], precision: str, winograd: str | None = None) -> "HwArrays":
        if winograd is not None and winograd not in WINOGRAD_TILES:
            raise UserError(f"--winograd: unknown '{winograd}' (use off, f2 or f4)")
        cols: dict[str, list] = {k: [] for k in ("peak", "vec", "sram", "bw", "meff", "ceff", "rows", "cols", "ovh", "tile", "exp", "emac", "ebyte", "onchip", "units", "tm", "tn", "wcache", "ing", "sops", "wfetch", "call")}
        for p in profiles:
            cols["peak"].append(p.peak_macs_per_s(precision))  # raises naming the precisions it has
            v = p.vector_ops_per_s(precision)
            cols["vec"].append(np.inf if v is None else v)
            cols["sram"].append(float(p.sram_bytes))
            cols["bw"].append(float(p.dram_bandwidth_bytes_per_s))
            cols["onchip"].append(np.inf if p.onchip_bandwidth_bytes_per_s is None else float(p.onchip_bandwidth_bytes_per_s))
            cols["meff"].append(float(p.efficiency.memory))
            cols["ceff"].append([p.efficiency.compute_for(c) for c in LAYER_CLASSES])
            cols["rows"].append(float(p.mac_array.rows) if p.mac_array else 0.0)
            cols["cols"].append(float(p.mac_array.cols) if p.mac_array else 0.0)
            # a kernel's fixed cost as timed alone; a whole graph's kernels without MACs split over threads add in_graph_s
            cols["ovh"].append([p.overhead_for(c) for c in LAYER_CLASSES])
            cols["ing"].append(float(p.kernel_overhead_in_graph_s))
            cols["sops"].append(float(p.split_min_ops or 0.0))
            cols["wfetch"].append(np.inf if p.weight_fetch_bandwidth_bytes_per_s is None else float(p.weight_fetch_bandwidth_bytes_per_s))
            cols["call"].append(float(p.grouped_call_s))
            par = p.parallel
            cols["units"].append(float(par.units) if par else 0.0)
            cols["tm"].append(float(par.tile_m) if par else 1.0)
            cols["tn"].append(float(par.tile_n) if par else 1.0)
            cols["wcache"].append(p.weight_residency == "cache")
            if winograd is not None:
                tile = WINOGRAD_TILES[winograd]
            else:
                tile = p.winograd.tile if p.winograd else 0
            cols["tile"].append(tile)
            cols["exp"].append(bool(p.winograd and p.winograd.weights == "expand_on_load"))
            e = p.energy
            cols["emac"].append(float(e.per_mac_j[precision]) if e and precision in e.per_mac_j else np.nan)
            cols["ebyte"].append(float(e.per_dram_byte_j) if e and e.per_dram_byte_j is not None else np.nan)
        return cls(names=tuple(p.name for p in profiles), peak_macs_per_s=np.array(cols["peak"]),
                   vector_ops_per_s=np.array(cols["vec"]), sram_bytes=np.array(cols["sram"]),
                   dram_bytes_per_s=np.array(cols["bw"]), mem_eff=np.array(cols["meff"]),
                   compute_eff=np.array(cols["ceff"]).reshape(len(profiles), len(LAYER_CLASSES)),
                   rows=np.array(cols["rows"]), cols=np.array(cols["cols"]), overhead_s=np.array(cols["ovh"]).reshape(len(profiles), len(LAYER_CLASSES)),
                   wino_tile=np.array(cols["tile"]), wino_expand=np.array(cols["exp"], dtype=bool),
                   energy_mac_j=np.array(cols["emac"]), energy_byte_j=np.array(cols["ebyte"]),
                   onchip_bytes_per_s=np.array(cols["onchip"]), units=np.array(cols["units"]),
                   tile_m=np.array(cols["tm"]), tile_n=np.array(cols["tn"]), weight_cache=np.array(cols["wcache"], dtype=bool),
                   in_graph_s=np.array(cols["ing"]), split_ops=np.array(cols["sops"]),
                   wfetch_bytes_per_s=np.array(cols["wfetch"]), call_s=np.array(cols["call"]))

    @classmethod
    def grid(cls, base: HardwareProfile, precision: str, winograd: str | None = None,
             **axes: Sequence[float]) -> "HwArrays":
        """A full grid over some parameters of `base` (sram_bytes, dram_bandwidth_bytes_per_s,
        onchip_bandwidth_bytes_per_s, mac_units, clock_hz, layer_overhead_s), built as arrays without one profile per point."""
        one = cls.from_profiles([base], precision, winograd)
        allowed = {"sram_bytes", "dram_bandwidth_bytes_per_s", "onchip_bandwidth_bytes_per_s", "mac_units", "clock_hz",
                   "layer_overhead_s"}
        for k, v in axes.items():
            if k not in allowed:
                raise UserError(f"--vary: cannot vary '{k}' (can vary: {', '.join(sorted(allowed))})")
            if len(v) == 0 or any((not np.isfinite(x)) or x <= 0 and k != "layer_overhead_s" or x < 0 for x in v):
                raise UserError(f"--vary {k}: values must be positive numbers")
        keys = list(axes)
        mesh = np.meshgrid(*[np.asarray(axes[k], dtype=np.float64) for k in keys], indexing="ij") if keys else []
        n = int(np.prod([len(axes[k]) for k in keys])) if keys else 1
        flat = {k: m.reshape(-1) for k, m in zip(keys, mesh)}

        def col(arr: np.ndarray) -> np.ndarray:
            return np.repeat(arr, n, axis=0)

        peak = col(one.peak_macs_per_s)
        if "mac_units" in flat:
            peak = flat["mac_units"] * base.clock_hz
        if "clock_hz" in flat:
            units = flat["mac_units"] if "mac_units" in flat else float(base.mac_units[precision])
            peak = units * flat["clock_hz"]
        vec = col(one.vector_ops_per_s)
        if "clock_hz" in flat and np.isfinite(vec).all():
            vec = vec / base.clock_hz * flat["clock_hz"]
        return cls(names=tuple(f"{base.name}#{i}" for i in range(n)), peak_macs_per_s=peak, vector_ops_per_s=vec,
                   sram_bytes=flat.get("sram_bytes", col(one.sram_bytes)),
                   dram_bytes_per_s=flat.get("dram_bandwidth_bytes_per_s", col(one.dram_bytes_per_s)),
                   mem_eff=col(one.mem_eff), compute_eff=col(one.compute_eff), rows=col(one.rows), cols=col(one.cols),
                   overhead_s=(np.repeat(flat["layer_overhead_s"][:, None], len(LAYER_CLASSES), axis=1)
                               if "layer_overhead_s" in flat else col(one.overhead_s)), wino_tile=col(one.wino_tile),
                   wino_expand=col(one.wino_expand), energy_mac_j=col(one.energy_mac_j), energy_byte_j=col(one.energy_byte_j),
                   onchip_bytes_per_s=flat.get("onchip_bandwidth_bytes_per_s", col(one.onchip_bytes_per_s)),
                   units=col(one.units), tile_m=col(one.tile_m), tile_n=col(one.tile_n), weight_cache=col(one.weight_cache),
                   in_graph_s=col(one.in_graph_s), split_ops=col(one.split_ops),
                   wfetch_bytes_per_s=col(one.wfetch_bytes_per_s), call_s=col(one.call_s))


# ----------------------------------------------------------------------------- core


def _util(k: np.ndarray, n: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """(C, L) fraction of a rows x cols array a layer with (K, N) keeps busy; 1 if unmapped."""
    r = rows[:, None]
    c = cols[:, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        ur = np.where((r > 0) & (k[None, :] > 0), k[None, :] / (np.ceil(k[None, :] / np.where(r > 0, r, 1)) * np.where(r > 0, r, 1)), 1.0)
        uc = np.where((c > 0) & (n[None, :] > 0), n[None, :] / (np.ceil(n[None, :] / np.where(c > 0, c, 1)) * np.where(c > 0, c, 1)), 1.0)
    return ur * uc


def _wave_util(la: LayerArrays, hw: "HwArrays", b: np.ndarray) -> np.ndarray:
    """(C|1, B|1, L) share of the MAC peak a contraction keeps busy when its output GEMM
    (b x gemm_m rows, map_n columns, gemm_groups of them) is cut into tiles of
    min(tile_m, rows) x tile_n run `units` at a time: b x M x N x groups / (waves x units x
    tile rows x tile_n), waves = ceil(tiles / units). A layer with fewer tiles than units, a partial tile, or a last partial
    wave leaves MACs idle (NVIDIA's tile and wave quantization). 1 without a `parallel` key or
    for a layer without a GEMM view."""
    if hw.units is None or not np.any(hw.units > 0) or la.gemm_m is None:
        return np.ones((1, 1, 1), dtype=b.dtype)
    u = _uniform_rows(np.stack([hw.units, hw.tile_m, hw.tile_n], axis=1))
    units, tm, tn = (u[:, i][:, None, None] for i in range(3))        # (C|1, 1, 1)
    m = b * la.gemm_m[None, None, :]                                   # (1, B, L) rows of the batch
    n = la.map_n[None, None, :]
    g = la.gemm_groups[None, None, :]
    # fewer rows than a tile: the library runs a tile of just those rows (skinny-M GEMM and GEMV
    # kernels), so rows are padded only beyond tile_m; columns always to tile_n
    tm_eff = np.minimum(tm, np.maximum(m, 1.0))
    tiles = np.ceil(m / tm_eff) * np.ceil(n / tn) * g
    waves = np.ceil(tiles / np.where(units > 0, units, 1.0))
    with np.errstate(divide="ignore", invalid="ignore"):
        share = m * n * g / (waves * units * tm_eff * tn)
    ok = (units > 0) & (m > 0) & (n > 0)
    return np.where(ok, np.minimum(share, 1.0), 1.0).astype(b.dtype, copy=False)


def _uniform_rows(a: np.ndarray) -> np.ndarray:
    """a[:1] when every row of the 2-D array `a` equals the first (typical of sweeps), else a."""
    return a[:1] if a.shape[0] > 1 and np.all(a == a[:1]) else a


@dataclass(frozen=True)
class RawPrediction:
    """(C, B, L) arrays and (C,) / (C, B) summaries of one roofline evaluation."""

    batches: np.ndarray
    compute_s: np.ndarray
    memory_s: np.ndarray
    time_s: np.ndarray
    dram_bytes: np.ndarray          # per batch (all b samples), per layer
    util: np.ndarray                # (C, L)
    macs: np.ndarray                # (C, L) per sample, after Winograd
    weights_resident: np.ndarray    # (C, B) weights pinned in SRAM for this batch
    weight_bytes_total: np.ndarray  # (C,) stored (after Winograd growth when transformed)
    fits: np.ndarray                # (C, B, L)
    energy_j: np.ndarray            # (C, B) per batch; nan if unknown
    sub_batch: np.ndarray | None = None  # (C, B) the sub-batch each batch runs as

    @property
    def latency_s(self) -> np.ndarray:
        return self.time_s.sum(axis=-1)

    @property
    def compute_bound(self) -> np.ndarray:
        return self.compute_s >= self.memory_s


def evaluate(la: LayerArrays, hw: HwArrays, batches: Sequence[int]) -> RawPrediction:
    """The roofline over (C configurations, B batches, L layers), with sub-batching.

    A batch b may run as ceil(b/s) passes of a sub-batch s (s among the powers of two and the
    requested batches up to b), each pass layer by layer: whatever is fastest. So a batch
    whose activations no longer fit in SRAM is never slower per sample than a smaller batch
    that fits and divides it (a runtime would split it): throughput is non-decreasing over
    batches that are powers of two (a batch of 3 runs as 3 x 1, 2 x 2 or 1 x 3, no mixed split).
    """
    want = np.asarray(batches, dtype=np.int64)
    if want.size == 0 or want.min() < 1:
        raise ValueError("batches must be >= 1")
    top = int(want.max())
    cand = sorted(set(int(x) for x in want) | {1 << k for k in range(top.bit_length()) if (1 << k) <= top})
    plain = _best_residency(la, hw, cand)
    S = np.asarray(cand, dtype=np.float64)
    lat = plain.latency_s                                                # (C, S)
    passes = np.ceil(want[:, None] / S[None, :])                        # (B, S)
    total = np.where(S[None, None, :] <= want[None, :, None], passes[None] * lat[:, None, :], np.inf)  # (C, B, S)
    pick = np.argmin(total, axis=-1)                                     # (C, B)
    own = np.searchsorted(S, want)                                       # each batch as one pass
    if np.array_equal(S[own], want) and np.all(pick == own[None, :]):
        if np.array_equal(own, np.arange(len(S))):
            return RawPrediction(**{**plain.__dict__, "batches": want, "sub_batch": np.broadcast_to(want, pick.shape).copy()})
    ci = np.arange(hw.count)[:, None]
    npass = passes[np.arange(len(want))[None, :], pick]                  # (C, B)

    def take(a: np.ndarray, scale: bool) -> np.ndarray:
        g = a[ci, pick]                                                  # (C, B, L)
        return g * npass[..., None] if scale else g

    return RawPrediction(batches=want, compute_s=take(plain.compute_s, True), memory_s=take(plain.memory_s, True),
                         time_s=take(plain.time_s, True), dram_bytes=take(plain.dram_bytes, True), util=plain.util,
                         macs=plain.macs, weights_resident=plain.weights_resident[ci, pick],
                         weight_bytes_total=plain.weight_bytes_total, fits=take(plain.fits, False),
                         energy_j=plain.energy_j[ci, pick] * npass, sub_batch=S[pick].astype(np.int64))


def _best_residency(la: LayerArrays, hw: HwArrays, batches: Sequence[int]) -> RawPrediction:
    """Per configuration and batch, the faster of: weights pinned in SRAM (when they fit;
    activations get what is left) and weights streamed (activations get all of the SRAM).
    Pinning is not always better: pinned weights can push activations out to DRAM. Choosing
    the faster keeps latency non-increasing as SRAM grows."""
    stream = _evaluate_plain(la, hw, batches, pin_weights=False)
    if not can_pin(la, hw, stream.weight_bytes_total):
        return stream
    pin = _evaluate_plain(la, hw, batches, pin_weights=True)
    use_pin = pin.latency_s <= stream.latency_s                          # (C, B)

    def pick(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        m = use_pin if a.ndim == 2 else use_pin[..., None]
        return np.where(m, a, b)

    return RawPrediction(batches=stream.batches, compute_s=pick(pin.compute_s, stream.compute_s),
                         memory_s=pick(pin.memory_s, stream.memory_s), time_s=pick(pin.time_s, stream.time_s),
                         dram_bytes=pick(pin.dram_bytes, stream.dram_bytes), util=stream.util, macs=stream.macs,
                         weights_resident=use_pin & pin.weights_resident, weight_bytes_total=stream.weight_bytes_total,
                         fits=pick(pin.fits, stream.fits), energy_j=pick(pin.energy_j, stream.energy_j))


def weighted_kernels(la: LayerArrays) -> int:
    """How many kernels of the graph read weights (a fused member's, such as an unfolded
    BatchNormalization's, belong to its kernel)."""
    own = (la.weight_bytes > 0) & la.costed & ~la.is_view
    return int((own & ~la.fused).sum()) if la.fused is not None else int(own.sum())


def weight_hits(la: LayerArrays, hw: HwArrays, wtotal: np.ndarray) -> np.ndarray:
    """(C,) the share of the weights found in SRAM at the start of a pass (docs/roofline.md, "SRAM
    residency policy"). Pinned: 1 when all of them fit, else 0. Cache (weight_residency: cache, a
    CPU's last-level cache): a whole graph's weights are gone by the time a pass comes back to them
    (the rest of the model's traffic and other processes evict them), so 0; a graph of one weighted
    kernel called back to back keeps min(1, cache / weights) of them, as an LRU-like cache keeps
    part of a cyclic stream somewhat larger than itself."""
    wtotal = np.asarray(wtotal, dtype=float)
    pinned = (wtotal <= hw.sram_bytes).astype(float)
    if hw.weight_cache is None or not hw.weight_cache.any():
        return pinned
    one = weighted_kernels(la) <= 1
    cached = np.minimum(1.0, hw.sram_bytes / np.maximum(wtotal, 1.0)) if one else np.zeros_like(wtotal)
    return np.where(hw.weight_cache, cached, pinned)


def pays_in_graph(la: LayerArrays, hw: HwArrays, b: np.ndarray) -> np.ndarray:
    """(C, B, L) bool: the kernels of a whole graph that pay kernel_overhead_in_graph_s: those without
    MACs (element-wise, normalization, pooling, data movement) that the runtime splits over threads
    (at least split_min_ops element ops per pass; every one without the key). A convolution or
    matmul inside a graph costs what it costs timed alone (measured: docs/roofline.md, "The in-graph
    cost"), so split_min_macs, where onnxruntime splits a contraction, is recorded but not used."""
    sops = (hw.split_ops if hw.split_ops is not None else np.zeros(hw.count))[:, None, None]
    return (la.macs <= 0)[None, None, :] & (b * la.non_mac[None, None, :] >= sops)


def in_graph_cost(la: LayerArrays, hw: HwArrays, b: np.ndarray, active: np.ndarray) -> np.ndarray:
    """(C, B, L) kernel_overhead_in_graph_s of each kernel of a whole graph (pays_in_graph)."""
    return hw.in_graph_s[:, None, None] * (pays_in_graph(la, hw, b) & active[None, None, :])


def can_pin(la: LayerArrays, hw: HwArrays, wtotal: np.ndarray) -> bool:
    """Whether some configuration finds any weights in SRAM (else pinning is streaming)."""
    return bool(np.any(weight_hits(la, hw, wtotal) > 0))


def _evaluate_plain(la: LayerArrays, hw: HwArrays, batches: Sequence[int], pin_weights: bool = True) -> RawPrediction:
    """The roofline for each batch run in one pass, layer by layer; weights pinned in SRAM
    when `pin_weights` and they fit, else streamed."""
    dt = la.tensor_bytes.dtype                                           # float64, or float32 in sweeps
    b = np.asarray(batches, dtype=dt)[None, :, None]                    # (1, B, 1)
    C = hw.count
    costed = la.costed & ~la.is_view
    # fused epilogues (BN, activations after a conv/gemm) cost no compute and no overhead; members
    # of an attention or pointwise kernel keep their compute, not an overhead of their own
    active = costed & ~la.fused if la.fused is not None else costed
    computing = active | (costed & la.fused_work) if la.fused_work is not None else active
    # Winograd per configuration; columns that are equal across configurations stay (1, L)
    tile = hw.wino_tile
    uni = _uniform_rows
    mfac = np.ones(C, dtype=dt)
    wfac = np.ones(C, dtype=dt)
    for t in (0, 2, 4):
        m, w = winograd_factors(t)
        mfac[tile == t] = m
        wfac[tile == t] = w
    tile_u, mfac, wfac, expand = uni(tile[:, None])[:, 0], uni(mfac[:, None])[:, 0], uni(wfac[:, None])[:, 0], uni(hw.wino_expand[:, None])[:, 0]
    cand = la.winograd[None, :] & (tile_u[:, None] > 0)                # (C|1, L)
    macs = np.where(cand, la.macs[None, :] / mfac[:, None], la.macs[None, :])
    # a transformed kernel grows by wfac; biases and the rest of the weights do not
    grow = np.where(cand & ~expand[:, None], (wfac[:, None] - 1.0) * la.kernel_bytes[None, :], 0.0)
    wbytes = la.weight_bytes[None, :] + grow                             # (C|1, L) stored
    wtotal = np.broadcast_to(wbytes.sum(axis=1), (C,))                   # (C,)
    hit = (weight_hits(la, hw, wtotal) if pin_weights else np.zeros(C)).astype(dt)   # (C,) share of the weights in SRAM
    resident = hit >= 1.0
    act_cap = np.where(resident, hw.sram_bytes - wtotal, hw.sram_bytes)  # (C,)

    # compute
    rc = uni(np.stack([hw.rows, hw.cols], axis=1))
    util = _util(la.map_k, la.map_n, rc[:, 0], rc[:, 1])                 # (C|1, L)
    if la.k_fill is not None:   # a blocked layout's padded input channels (kernels.input_channel_fill)
        util = util * la.k_fill[None, :]
    eff = uni(hw.compute_eff)[:, la.class_idx]                           # (C|1, L)
    peak = uni(hw.peak_macs_per_s[:, None])                              # (C|1, 1)
    mac_rate = (peak * util * eff)[:, None, :] * _wave_util(la, hw, b)  # (C|1, 1|B, L)
    # the class efficiency scales the vector rate too (docs/hardware-profiles.md: "multiplies the MAC
    # (and vector) peak"): element-wise layers have no MACs, so this is what calibrates them
    vec_rate = (uni(hw.vector_ops_per_s[:, None]) * eff)[:, None, :]    # (C|1, 1, L)
    compute = b * macs[:, None, :] / mac_rate + b * la.non_mac[None, None, :] / vec_rate
    if la.reorder is not None and la.reorder.any():   # layout conversions: data movement at the data class's rate
        data_rate = (uni(hw.vector_ops_per_s[:, None]) * uni(hw.compute_eff)[:, [_DATA]])[:, None, :]   # (C|1, 1, 1)
        compute = compute + b * la.reorder[None, None, :] / data_rate
    # on-chip operand traffic not overlapped with the MACs (onchip_bandwidth_bytes_per_s, absent =
    # overlapped): a contraction layer also moves its activations (inputs + outputs) through the
    # caches/SRAM at that rate, e.g. a CPU's packing and output write (docs/roofline.md)
    if hw.wfetch_bytes_per_s is not None and np.isfinite(hw.wfetch_bytes_per_s).any():
        # the weights a contraction kernel reads from DRAM, not overlapped with its MACs (once per pass)
        fetch = (1.0 - hit)[:, None, None] * la.weight_read_bytes[None, None, :] / hw.wfetch_bytes_per_s[:, None, None]
        compute = compute + np.where((la.macs > 0)[None, None, :], fetch, 0.0)
    if hw.call_s is not None and la.calls is not None and np.any(hw.call_s > 0) and la.calls.any():
        # a grouped conv's calls of the blocked kernel, each a fixed cost (kernels.grouped_calls)
        compute = compute + b * la.calls[None, None, :] * hw.call_s[:, None, None]
    onchip = uni(hw.onchip_bytes_per_s[:, None]) if hw.onchip_bytes_per_s is not None else np.full((1, 1), np.inf)
    if np.isfinite(onchip).any():                                        # (C|1, 1)
        contraction = (la.macs > 0)[None, None, :]
        compute = compute + np.where(contraction, b * la.ws_bytes[None, None, :] / onchip[:, None, :], 0.0)
    compute = np.where(computing[None, None, :], compute, 0.0)

    # residency of activations
    fits = (b * la.ws_bytes[None, None, :]) <= act_cap[:, None, None]    # (C, B, L)
    fits = fits | la.is_view[None, None, :]
    pad_true = np.ones(fits.shape[:2] + (1,), dtype=bool)
    cons_fit = np.concatenate([fits, pad_true], axis=-1)[..., la.cons_pad].all(axis=-1)   # (C, B, T)
    prod = la.producer
    prod_fit = np.where(prod[None, None, :] >= 0, fits[..., np.maximum(prod, 0)], False)
    offchip = ~(prod_fit & cons_fit)                                     # (C, B, T)
    if la.fused_input is not None:                                       # producer -> fused epilogue: on chip
        offchip = offchip & ~la.fused_input[None, None, :]
    tbytes = b * la.tensor_bytes[None, None, :]                          # (1, B, T)
    zero = np.zeros(fits.shape[:2] + (1,), dtype=dt)
    reads = np.concatenate([tbytes * offchip, zero], axis=-1)[..., la.in_pad].sum(axis=-1)          # (C, B, L)
    write_t = tbytes * (offchip | la.is_output[None, None, :])           # (C, B, T)
    writes = np.concatenate([write_t, zero], axis=-1)[..., la.out_pad].sum(axis=-1)
    # streamed weights: every layer reads all the weights it uses (shared ones again), once per pass
    wread = la.weight_read_bytes[None, None, :]                           # (1, 1, L)
    if la.gather_cap is not None and np.isfinite(la.gather_cap).any():  # a table lookup reads the rows it gathers
        wread = np.minimum(wread, b * la.gather_cap[None, None, :])
    weight_traffic = (1.0 - hit)[:, None, None] * (wread + grow[:, None, :])
    dram = reads + writes + weight_traffic                               # (C, B, L) per batch
    dram = np.where(costed[None, None, :], dram, 0.0)
    memory = dram / (hw.dram_bytes_per_s * hw.mem_eff)[:, None, None]
    overhead = (uni(hw.overhead_s)[:, la.class_idx] * active.astype(dt)[None, :])[:, None, :]  # (C|1, 1, L)
    if hw.in_graph_s is not None and np.any(hw.in_graph_s > 0):
        overhead = overhead + in_graph_cost(la, hw, b, active).astype(dt)
    time = np.maximum(compute, memory)
    time += overhead
    energy = (hw.energy_mac_j[:, None] * (b[..., 0] * macs.sum(axis=1)[:, None])
              + hw.energy_byte_j[:, None] * dram.sum(axis=-1))
    compute = np.broadcast_to(compute, time.shape)  # a view: compute may be uniform over configurations
    return RawPrediction(batches=np.asarray(batches), compute_s=compute, memory_s=memory, time_s=time, dram_bytes=dram,
                         util=util, macs=macs, weights_resident=np.broadcast_to(resident[:, None], energy.shape).copy(),
                         weight_bytes_total=wtotal, fits=fits, energy_j=energy)


def _float32(obj):
    """A copy of a LayerArrays/HwArrays with its float64 arrays as float32."""
    import dataclasses

    return dataclasses.replace(obj, **{f.name: getattr(obj, f.name).astype(np.float32)
                                      for f in dataclasses.fields(obj)
                                      if isinstance(getattr(obj, f.name), np.ndarray) and getattr(obj, f.name).dtype == np.float64})


@dataclass(frozen=True)
class GridSummary:
    """(C, B) whole-model figures of a large grid, without the per-layer arrays."""

    batches: np.ndarray
    latency_s: np.ndarray
    dram_bytes: np.ndarray          # per batch
    compute_bound_fraction: np.ndarray
    weights_resident: np.ndarray    # (C, B)
    sub_batch: np.ndarray


def evaluate_summary(la: LayerArrays, hw: HwArrays, batches: Sequence[int], chunk: int = 512) -> GridSummary:
    """evaluate() over a large grid in chunks of configurations that fit in cache, keeping only
    the whole-model figures: the same numbers, without (C, B, L) arrays in memory."""
    # float32 halves the memory traffic of the (chunk, B, L) arrays; whole-model sums keep
    # about 6 significant digits, ample for a design-space sweep (tests compare to float64)
    la, hw = _float32(la), _float32(hw)
    parts = []
    for start in range(0, hw.count, chunk):
        r = evaluate(la, hw.subset(start, min(start + chunk, hw.count)), batches)
        lat = r.latency_s
        comp = (r.time_s * r.compute_bound).sum(axis=-1) / np.where(lat > 0, lat, 1.0)
        parts.append((lat, r.dram_bytes.sum(axis=-1), comp, r.weights_resident, r.sub_batch))
    cat = [np.concatenate([p[i] for p in parts], axis=0) for i in range(5)]
    cat[:3] = [c.astype(np.float64) for c in cat[:3]]
    return GridSummary(batches=np.asarray(batches), latency_s=cat[0], dram_bytes=cat[1], compute_bound_fraction=cat[2],
                       weights_resident=cat[3], sub_batch=cat[4])


# ----------------------------------------------------------------------------- one profile


@dataclass(frozen=True)
class Prediction:
    """One model on one profile over a batch sweep (the CLI's and the API's view)."""

    model: str
    hardware: HardwareProfile
    precision: str
    winograd: str                  # off | f2 | f4
    batches: np.ndarray            # (B,)
    raw: RawPrediction = field(repr=False)
    layers: LayerArrays = field(repr=False)
    total_macs: float = 0.0        # per sample, before Winograd
    excluded_layers: int = 0       # unsupported/uncosted layers left out of the time

    @property
    def latency_s(self) -> np.ndarray:
        return self.raw.latency_s[0]

    @property
    def throughput_per_s(self) -> np.ndarray:
        return self.batches / self.latency_s

    @property
    def layer_latency_s(self) -> np.ndarray:
        """(L, B) predicted time of each layer."""
        return self.raw.time_s[0].T

    @property
    def dram_bytes_per_inference(self) -> np.ndarray:
        return self.raw.dram_bytes[0].sum(axis=-1) / self.batches

    @property
    def dram_bandwidth_needed(self) -> np.ndarray:
        """Bytes/s the achieved throughput needs from DRAM."""
        return self.raw.dram_bytes[0].sum(axis=-1) / self.latency_s

    @property
    def mac_utilization(self) -> np.ndarray:
        """MACs done / (latency x peak MAC rate): the share of the peak the model attains."""
        peak = self.hardware.peak_macs_per_s(self.precision)
        return self.batches * self.raw.macs[0].sum() / (self.latency_s * peak)

    @property
    def bound_fraction(self) -> dict[str, np.ndarray]:
        """Share of latency spent in compute-bound and in memory-bound layers, per batch."""
        t = self.raw.time_s[0]
        cb = self.raw.compute_bound[0] & (t > 0)
        tot = np.where(t.sum(axis=-1) > 0, t.sum(axis=-1), 1.0)
        comp = (t * cb).sum(axis=-1) / tot
        return {"compute": comp, "memory": 1.0 - comp}

    @property
    def energy_per_inference_j(self) -> np.ndarray | None:
        e = self.raw.energy_j[0] / self.batches
        return None if np.isnan(e).all() else e

    @property
    def weights_resident(self) -> np.ndarray:
        """(B,) weights pinned in SRAM at each batch (the faster residency choice)."""
        return self.raw.weights_resident[0]

    @property
    def spilling_layers(self) -> np.ndarray:
        """(B,) costed layers whose working set does not fit in SRAM (views, fused epilogues and
        layers without a cost are not counted)."""
        la = self.layers
        active = la.costed & ~la.is_view & (~la.fused if la.fused is not None else True)
        return (~self.raw.fits[0] & active[None, :]).sum(axis=-1)

    @property
    def weights_fit_sram(self) -> bool:
        return self.weight_bytes <= self.hardware.sram_bytes

    @property
    def sub_batch(self) -> np.ndarray:
        """(B,) the sub-batch each batch runs as (ceil(batch / sub_batch) passes)."""
        return self.raw.sub_batch[0] if self.raw.sub_batch is not None else self.batches

    @property
    def weight_bytes(self) -> float:
        return float(self.raw.weight_bytes_total[0])

    def best_batch_index(self) -> int:
        return int(np.argmax(self.throughput_per_s))

    def batch_for_fraction(self, frac: float = 0.9) -> int | None:
        """Smallest batch in the sweep reaching `frac` of the sweep's peak throughput."""
        thr = self.throughput_per_s
        ok = np.flatnonzero(thr >= frac * thr.max())
        return int(self.batches[ok[0]]) if ok.size else None


def default_precision(table: CostTable, profile: HardwareProfile) -> str:
    """fp32 when the profile has it; else the profile's first precision."""
    return "fp32" if "fp32" in profile.mac_units else profile.precisions[0]


def predict(table: CostTable, profile: HardwareProfile, batches: Sequence[int], precision: str,
            winograd: str | None = None, graph_outputs: Sequence[str] = ()) -> Prediction:
    """Roofline of `table` (analyzed at batch 1 and at `precision`) on one profile."""
    if table.batch != 1:
        raise ValueError("predict needs a per-sample CostTable (analyzed at batch 1)")
    la = LayerArrays.from_table(table, graph_outputs, rules=profile.fusion_rules(), layout=profile.layout_spec())
    hw = HwArrays.from_profiles([profile], precision, winograd)
    raw = evaluate(la, hw, batches)
    tile = int(hw.wino_tile[0])
    mode = {0: "off", 2: "f2", 4: "f4"}[tile]
    excluded = int((~la.costed).sum())
    return Prediction(model=table.model, hardware=profile, precision=precision, winograd=mode,
                      batches=np.asarray(batches), raw=raw, layers=la, total_macs=float(la.macs.sum()),
                      excluded_layers=excluded)
