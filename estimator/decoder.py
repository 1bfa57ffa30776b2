"""Decoder language models with a KV cache: recognising the file convention and setting its dims.

optimum, onnxruntime-genai and ``torch.onnx.export`` of a Hugging Face causal LM write the
same inputs:

- ``input_ids`` [batch, sequence] (int64), optional ``position_ids`` [batch, sequence];
- ``attention_mask`` [batch, past + sequence];
- per layer ``past_key_values.N.key`` and ``.value`` [batch, kv_heads, past, head_dim]
  (some exports: ``past.N.key``, ``past_key.N``), with outputs ``present.N.key|value``.

`detect` recognises them from the input names and shapes; `input_shapes` gives every one of
them its dims for a sequence length S and a past length P (what ``--seq-len`` and ``--past``
set), so that a file exported with those dims fixed (or symbolic) is costed at the asked size.
A past of 0 is the prompt pass (prefill) of a file with a cache input: zero-length cache tensors,
as runtimes feed them. Pure: names and dims in, dims out.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Mapping, Sequence

from .errors import UserError

_PAST = (re.compile(r"^past_key_values\.(\d+)\.(key|value)$"), re.compile(r"^past\.(\d+)\.(key|value)$"),
         re.compile(r"^past_(key|value)s?\.(\d+)$"))


@dataclass(frozen=True)
class DecoderIO:
    layers: int
    kv_heads: int | None          # None: symbolic in the file (then --input must set it)
    head_dim: int | None
    past_inputs: tuple[str, ...]  # every past key/value input
    ids: str                      # input_ids
    mask: str | None              # attention_mask
    positions: str | None         # position_ids

    @property
    def kv_values_per_token(self) -> int | None:
        """Cache values one token adds to one sequence: 2 (K and V) x layers x kv_heads x head_dim."""
        if self.kv_heads is None or self.head_dim is None:
            return None
        return 2 * self.layers * self.kv_heads * self.head_dim

    def describe(self) -> str:
        h = f"{self.kv_heads} KV heads of {self.head_dim}" if self.kv_heads else "KV heads symbolic"
        return (f"decoder with a KV cache ({self.ids}, {self.mask or 'no attention_mask'}, "
                f"{len(self.past_inputs)} past_key_values inputs: {self.layers} layers, {h})")


def cache_slot(name: str) -> tuple[int, str] | None:
    """(layer, 'key'|'value') of a cache input or output name (past_key_values.3.key,
    past.3.key, past_key.3, and the same with present): pairs a present output with the past
    input it feeds at the next step."""
    for prefix in ("present", "past"):
        if name.startswith(prefix):
            return _layer_kind("past" + name[len(prefix):]) or _layer_kind("past_key_values" + name[len(prefix):])
    return None


def _layer_kind(name: str) -> tuple[int, str] | None:
    for pat in _PAST:
        m = pat.match(name)
        if m:
            a, b = m.groups()
            return (int(a), b) if a.isdigit() else (int(b), a)
    return None


def detect(inputs: Sequence[tuple[str, Sequence]]) -> DecoderIO | None:
    """The convention, from (input name, dims) pairs; None when the model is not such a decoder."""
    names = {n: list(d) for n, d in inputs}
    past = {n: _layer_kind(n) for n in names}
    past = {n: k for n, k in past.items() if k is not None}
    if "input_ids" not in names or not past:
        return None
    layers = {k[0] for k in past.values()}
    dims = [names[n] for n in past]
    if any(len(d) != 4 for d in dims):
        return None

    def fixed(i: int) -> int | None:
        vals = {d[i] for d in dims}
        return vals.pop() if len(vals) == 1 and isinstance(next(iter(vals)), int) and next(iter(vals)) > 0 else None

    return DecoderIO(layers=len(layers), kv_heads=fixed(1), head_dim=fixed(3), past_inputs=tuple(sorted(past)),
                     ids="input_ids", mask="attention_mask" if "attention_mask" in names else None,
                     positions="position_ids" if "position_ids" in names else None)


def input_shapes(io: DecoderIO, inputs: Sequence[tuple[str, Sequence]], *, batch: int, seq_len: int,
                 past: int, given: Mapping[str, tuple[int, ...]] = ()) -> dict[str, tuple[int, ...]]:
    """Dims for every one of the decoder's inputs at (batch, sequence, past). A cache input in
    `given` (--input) lends its KV heads and head size (when the file leaves them symbolic); the
    batch, sequence and past always come from the arguments, so that one --input works for
    every phase. UserError when a cache input's heads or head size is symbolic and not given."""
    if seq_len < 1:
        raise UserError(f"--seq-len {seq_len}: must be >= 1")
    if past < 0:
        raise UserError(f"--past {past}: must be >= 0")
    dims = {n: list(d) for n, d in inputs}
    out: dict[str, tuple[int, ...]] = {}
    for n in (io.ids, io.positions):
        if n:
            out[n] = (batch, seq_len)
    if io.mask:
        out[io.mask] = (batch, past + seq_len)
    for n in io.past_inputs:
        d = list(dims[n])
        g = given.get(n)
        if g is not None and len(g) == 4:
            d[1], d[3] = g[1], g[3]
        for k, what in ((1, "KV heads"), (3, "head size")):
            if not (isinstance(d[k], int) and d[k] > 0):
                raise UserError(f"input '{n}': its {what} (dim {k}, '{d[k]}') is symbolic: set it with "
                                f"--input {n}={batch}x<kv_heads>x{past}x<head_dim> (its batch and past follow "
                                "--batch and --past)")
        out[n] = (batch, d[1], past, d[3])
    return out
