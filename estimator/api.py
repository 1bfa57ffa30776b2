"""The pipeline on one screen: resolve the model -> load -> analyze -> (predict) -> return.

Everything the CLI does goes through these functions; they never print, exit or read the
environment. Errors the user can fix are raised as UserError.
"""

from __future__ import annotations

import gc
import os
from contextlib import contextmanager
from typing import Mapping, Sequence

from .analyze import CostTable, analyze as _analyze_graph
from .errors import UserError
from .graph import Graph, PRECISION_BYTES
from .onnx_io import load_graph

PRECISIONS = tuple(PRECISION_BYTES)


def builtin_names() -> list[str]:
    from .models import BUILTINS

    return list(BUILTINS)


def is_builtin(spec: str) -> bool:
    """A spec names a built-in model unless it looks like a path (exists, has a separator or .onnx)."""
    if os.path.exists(spec) or os.sep in spec or spec.endswith(".onnx"):
        return False
    return spec in builtin_names()


def is_decoder_builtin(spec: str) -> bool:
    """A built-in decoder language model with a KV cache (models/decoder.py)."""
    try:
        from .models import decoder as _dec
    except ImportError:
        return False
    return spec in getattr(_dec, "CONFIGS", {})


def load(spec: str, *, batch: int | None = None, input_shapes: Mapping[str, tuple[int, ...]] | None = None,
         resolution: tuple[int, int] | None = None, seq_len: int | None = None, past: int | None = None) -> Graph:
    """Step 1: a path or a built-in name -> Graph with every dim set. `seq_len` and `past` set a
    decoder's sequence and KV-cache lengths (estimator/decoder.py; `seq_len` also a built-in
    encoder's sequence)."""
    if is_builtin(spec):
        from . import models

        if resolution is not None and input_shapes:
            raise UserError(f"{spec}: --resolution and --input both set the input shape; give one of them")
        # built-ins are built graph-only (no weight bytes) at the requested size
        if is_decoder_builtin(spec):   # built with symbolic dims; the loader sets them
            proto = models.build(spec, weights=False)
            return load_graph(proto, batch=batch, input_shapes=input_shapes, name=spec, seq_len=seq_len, past=past)
        if past is not None:
            raise UserError(f"{spec}: --past sets a decoder's KV-cache length; {spec} has no cache")
        proto = models.build(spec, resolution=resolution, seq_len=seq_len, weights=False)
        return load_graph(proto, batch=batch, input_shapes=input_shapes, name=spec)
    if not os.path.exists(spec) and os.sep not in spec and not spec.endswith(".onnx"):
        raise UserError(f"'{spec}' is neither a file nor a built-in model (built-ins: {', '.join(builtin_names())})")
    return load_graph(spec, batch=batch, input_shapes=input_shapes, resolution=resolution, seq_len=seq_len, past=past)


def analyze(spec: str, *, batch: int | None = None, input_shapes: Mapping[str, tuple[int, ...]] | None = None,
            resolution: tuple[int, int] | None = None, seq_len: int | None = None,
            precision: str | None = None, past: int | None = None) -> CostTable:
    """Load and cost a model: per-layer MACs, params, activations (see docs/counting.md)."""
    if precision is not None and precision not in PRECISION_BYTES:
        raise UserError(f"unknown precision '{precision}' (known: {', '.join(PRECISIONS)})")
    with _no_gc():
        graph = load(spec, batch=batch, input_shapes=input_shapes, resolution=resolution, seq_len=seq_len, past=past)
        return _analyze_graph(graph, precision=precision, batch=batch or _common_batch(graph))


def _common_batch(graph: Graph) -> int:
    """The batch the inputs were set to when no --batch was given (--input, or a model exported
    at a fixed batch): their common leading dim, else 1."""
    lead = {graph.tensors[x].shape[0] for x in graph.inputs
            if x in graph.tensors and graph.tensors[x].shape}
    return lead.pop() if len(lead) == 1 else 1


@contextmanager
def _no_gc():
    """The cyclic garbage collector paused while a graph is loaded and costed: they build tens
    of thousands of small acyclic objects (nodes, tensor facts, layer costs), over which the
    collector's passes cost ~20% of the time on a 10,000-node graph and free nothing.
    Reference counting still frees everything; the collector's state is restored after."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def parse_shape(text: str, what: str) -> tuple[int, ...]:
    """'1x3x224x224' -> (1, 3, 224, 224); errors name the option."""
    parts = text.lower().replace("*", "x").replace(",", "x").split("x")
    try:
        dims = tuple(int(p) for p in parts)
    except ValueError:
        raise UserError(f"{what}: '{text}' is not a shape like 1x3x224x224") from None
    if not dims or any(d <= 0 for d in dims):
        raise UserError(f"{what}: '{text}': every dim must be a positive integer")
    if any(d > 1 << 31 for d in dims):
        raise UserError(f"{what}: '{text}': a dim above 2^31 is absurd")
    return dims


def parse_inputs(items: Sequence[str] | None) -> dict[str, tuple[int, ...]]:
    out: dict[str, tuple[int, ...]] = {}
    for item in items or ():
        if "=" not in item:
            raise UserError(f"--input '{item}': expected NAME=AxBxC, e.g. input=1x3x608x608")
        name, shape = item.rsplit("=", 1)
        out[name] = parse_shape(shape, f"--input {name}")
    return out


def parse_resolution(text: str | None, what: str = "--resolution") -> tuple[int, int] | None:
    if text is None:
        return None
    parts = text.lower().split("x")
    if len(parts) != 2 or not all(p.strip().isdigit() for p in parts):
        raise UserError(f"{what}: '{text}' must be HxW, e.g. 416x416")
    dims = parse_shape(text, what)
    return dims  # type: ignore[return-value]


def parse_batches(text: str | None) -> list[int] | None:
    """'1,2,4' -> [1, 2, 4]; each >= 1."""
    if text is None:
        return None
    out = []
    parts = str(text).split(",")
    for p in parts:
        p = p.strip()
        if not p:
            raise UserError(f"--batch: '{text}' has an empty entry (use e.g. --batch 1,2,4,8)")
        try:
            b = int(p)
        except ValueError:
            raise UserError(f"--batch: '{p}' is not an integer (use e.g. --batch 1,2,4,8)") from None
        if b < 1:
            raise UserError(f"--batch: batch sizes must be >= 1, got {b}")
        if b > 1 << 20:
            raise UserError(f"--batch: {b} is absurd (> 2^20)")
        out.append(b)
    if not out:
        raise UserError("--batch: no batch size given")
    return sorted(set(out))


DEFAULT_BATCHES = (1, 2, 4, 8, 16, 32, 64)


def load_profile(hw: str):
    """A profile by path or shipped name (estimator.hardware validates it)."""
    from .hardware import load_profile as _load

    return _load(hw)


def estimate(spec: str, hw, *, batches: Sequence[int] | None = None, precision: str | None = None,
             winograd: str | None = None, input_shapes: Mapping[str, tuple[int, ...]] | None = None,
             resolution: tuple[int, int] | None = None, seq_len: int | None = None, past: int | None = None):
    """The whole pipeline: (CostTable, Prediction, Prediction without Winograd or None).

    1. the profile (path, shipped name, or a HardwareProfile);
    2. load + analyze at batch 1 (costs are per sample; the roofline scales by batch);
    3. predict over the batch sweep at the precision, with the Winograd mode;
    4. when Winograd is on, the same prediction without it, for the comparison.
    """
    from . import roofline

    profile = load_profile(hw) if isinstance(hw, str) else hw
    if precision is None:
        precision = "fp32" if "fp32" in profile.mac_units else profile.precisions[0]
    elif precision not in PRECISION_BYTES:
        raise UserError(f"unknown precision '{precision}' (known: {', '.join(PRECISIONS)})")
    profile.peak_macs_per_s(precision)  # the profile must have this precision (names the ones it has)
    table = analyze(spec, batch=1, input_shapes=_batch1(input_shapes), resolution=resolution, seq_len=seq_len,
                    precision=precision, past=past)
    bs = list(batches or DEFAULT_BATCHES)
    pred = roofline.predict(table, profile, bs, precision, winograd)
    if not (pred.latency_s > 0).all():
        t = table.totals
        what = ", ".join(f"{k} x{v}" for k, v in {**t.unsupported_ops, **t.uncosted_ops}.items()) or "none"
        raise UserError(f"{spec}: no layer has a cost to predict (unsupported or uncosted: {what}); see `estimate {spec}`")
    base = roofline.predict(table, profile, bs, precision, "off") if pred.winograd != "off" else None
    return table, pred, base


def _batch1(shapes: Mapping[str, tuple[int, ...]] | None) -> dict[str, tuple[int, ...]] | None:
    """--input shapes for a per-sample analysis: the roofline scales by batch itself, so a
    leading dim other than 1 is an error that says how to ask for that batch."""
    if not shapes:
        return None
    for k, v in shapes.items():
        if len(v) > 1 and v[0] != 1:
            rest = "x".join(map(str, v[1:]))
            raise UserError(f"--input {k}={'x'.join(map(str, v))}: with --hw the batch comes from --batch; "
                            f"write --input {k}=1x{rest} --batch {v[0]}")
    return dict(shapes)


def predict(model_path: str, hw, *, batches: Sequence[int], precision: str | None = None,
            winograd: str | None = None):
    """Prediction for a model and a profile (used by validate/): .batches, .latency_s,
    .layer_latency_s ((L, B)) aligned with analyze(model_path).layers."""
    return estimate(model_path, hw, batches=batches, precision=precision, winograd=winograd)[1]
