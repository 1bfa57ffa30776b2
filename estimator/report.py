"""Turning results into documents (JSON/CSV/markdown) and terminal tables. Pure: returns
strings and dicts, or renders onto a rich Console given by the caller. rich and tabulate are
imported where they are used: a JSON document needs neither."""

from __future__ import annotations

import csv
import io
import math
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Sequence


from . import __version__
from .analyze import CostTable, LayerCost

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table

SCHEMA_VERSION = 1

CONVENTIONS = {
    "mac": "1 MAC = one multiply-accumulate of a contraction op (Conv, ConvTranspose, Gemm, MatMul, "
           "Einsum, attention and RNN gate matmuls, quantized/fused forms); vendor FLOPs = 2 x MACs",
    "non_mac_ops": "every other arithmetic op (bias adds, BN scale+shift, activations, pooling, softmax, "
                   "normalization), per element as each cost function documents",
    "params": "elements of every weight tensor stored or derived from stored tensors alone, BatchNorm's four "
              "vectors (scale, bias, mean, var) included; constant control inputs (shapes, axes, scales), buffers "
              "computed from the inputs' shapes and integer/boolean masks the graph computes excluded",
    "activations": "tensors that are not model constants; bytes at the stored dtype, or with float tensors at --precision",
    "peak_activation_bytes": "peak of live activation bytes over a topological schedule (producer to last consumer)",
}

HEADER = "Counting: 1 MAC = 1 multiply-accumulate (FLOPs = 2 x MACs); params include BatchNorm's 4 vectors."


# ----------------------------------------------------------------------------- formatting


def console() -> Console:
    """The console every command prints on: the terminal's width, or a wide fixed width in a
    pipe so that tables are not cut to 80 columns."""
    import sys

    from rich.console import Console

    return Console(soft_wrap=False, width=None if sys.stdout.isatty() else 250)


def si(x: float | int | None, unit: str = "", digits: int = 3) -> str:
    """1234567 -> '1.23 M'."""
    if x is None:
        return "-"
    if isinstance(x, float) and (math.isnan(x) or math.isinf(x)):
        return str(x)
    ax = abs(x)
    for f, p in ((1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if ax >= f:
            return f"{x / f:.{digits}g} {p}{unit}".rstrip()
    if isinstance(x, int) or float(x).is_integer():
        return f"{int(x)} {unit}".rstrip()
    return f"{x:.{digits}g} {unit}".rstrip()


def bytes_str(x: float | None) -> str:
    if x is None:
        return "-"
    for f, p in ((1 << 40, "TiB"), (1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")):
        if abs(x) >= f:
            return f"{x / f:.3g} {p}"
    return f"{x:.0f} B"


def seconds_str(s: float | None) -> str:
    if s is None or (isinstance(s, float) and math.isnan(s)):
        return "-"
    if s >= 1:
        return f"{s:.3g} s"
    if s >= 1e-3:
        return f"{s * 1e3:.3g} ms"
    if s >= 1e-6:
        return f"{s * 1e6:.3g} us"
    return f"{s * 1e9:.3g} ns"


def shape_str(shape: Sequence[int] | None) -> str:
    return "?" if shape is None else "x".join(str(d) for d in shape)


# ----------------------------------------------------------------------------- documents


def incomplete_warning(t, where: str = "below") -> str | None:
    """The words a new user reads first when totals leave layers out (None when none is).
    `where` the totals are: "below" (the terminal summary) or "in the document"."""
    if not t.uncosted_layers:
        return None
    parts = []
    if t.uncosted_ops:
        parts.append("shape unknown: " + ", ".join(f"{k} x{v}" for k, v in t.uncosted_ops.items()))
    if t.unsupported_ops:
        parts.append("no cost function: " + ", ".join(f"{k} x{v}" for k, v in t.unsupported_ops.items()))
    short = (f"the MACs {where} are short by at least {si(t.macs_missing_at_least)} ({t.macs_missing_at_least:,})"
             if t.macs_missing_at_least else "what they cost is not known, not zero")
    first = getattr(t, "first_uncounted", "")
    return (f"WARNING: the totals are incomplete: {t.uncosted_layers} of {t.layers} layers are not counted "
            f"({'; '.join(parts)}); {short}." + (f" The first: {first[:300]}" if first else ""))


def layer_dict(l: LayerCost, precision: str | None) -> dict[str, Any]:
    return {
        "name": l.name, "op_type": l.op_type, "domain": l.domain, "kind": l.kind,
        "layer_class": l.layer_class, "macs": l.macs, "non_mac_ops": l.non_mac_ops,
        "params": l.params, "weight_bytes": l.weight_bytes_at(precision),
        "weight_bytes_stored": l.weight_bytes,
        "input_elems": l.input_elems, "input_bytes": l.input_bytes_at(precision),
        "output_elems": l.output_elems, "output_bytes": l.output_bytes_at(precision),
        "output_shape": list(l.output_shape) if l.output_shape is not None else None,
        "winograd_candidate": l.winograd_candidate, "status": l.status,
        **({"note": l.note} if l.note else {}),
    }


def analysis_document(table: CostTable, *, source: str = "") -> dict[str, Any]:
    t = table.totals
    return {
        "schema_version": SCHEMA_VERSION,
        "tool": {"name": "estimate", "version": __version__},
        "conventions": CONVENTIONS,
        "model": {
            "name": table.model, "source": source, "batch": table.batch,
            "precision": table.precision or "stored",
            "inputs": [{"name": i.name, "shape": list(i.shape) if i.shape is not None else None, "dtype": i.dtype} for i in table.inputs],
            "weights_present": table.weights_present,
            "notes": list(table.notes),
        },
        "totals": {
            "macs": t.macs, "non_mac_ops": t.non_mac_ops, "params": t.params,
            "weight_bytes": t.weight_bytes,
            "max_activation_elems": t.max_activation_elems, "max_activation_bytes": t.max_activation_bytes,
            "max_activation_tensor": t.max_activation_tensor,
            "peak_activation_bytes": t.peak_activation_bytes,
            "macs_by_op_type": dict(t.macs_by_op_type), "layers": t.layers,
            "uncosted_layers": t.uncosted_layers, "macs_missing_at_least": t.macs_missing_at_least,
            "first_uncounted": t.first_uncounted,
        },
        "unsupported_ops": dict(t.unsupported_ops),
        "uncosted_ops": dict(t.uncosted_ops),
        "layers": [layer_dict(l, table.precision) for l in table.layers],
    }


LAYER_COLUMNS = ("name", "op_type", "macs", "non_mac_ops", "params", "weight_bytes", "input_bytes",
                 "output_bytes", "output_shape", "winograd_candidate", "status")


def rows_to_csv(rows: Iterable[Mapping[str, Any]], columns: Sequence[str]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(columns)
    for r in rows:
        w.writerow([_cell(r.get(c)) for c in columns])
    return buf.getvalue()


def _cell(v: Any) -> Any:
    if isinstance(v, (list, tuple)):
        return "x".join(str(x) for x in v)
    if isinstance(v, float) and v.is_integer():
        return int(v)
    return v


def layers_csv(doc: Mapping[str, Any], extra: Sequence[str] = ()) -> str:
    return rows_to_csv(doc["layers"], list(LAYER_COLUMNS) + list(extra))


def markdown_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> str:
    from tabulate import tabulate

    return tabulate([[_cell(r.get(c)) for c in columns] for r in rows], headers=list(columns), tablefmt="github")


def analysis_markdown(doc: Mapping[str, Any], with_layers: bool) -> str:
    t = doc["totals"]
    m = doc["model"]
    warn = incomplete_warning(_TotalsView(doc))
    lines = [f"# {m['name']}", "", *([f"**{warn}**", ""] if warn else []), f"_{HEADER}_", "",
             f"Inputs: {', '.join(i['name'] + ' ' + shape_str(i['shape']) for i in m['inputs'])}; "
             f"batch {m['batch']}; precision {m['precision']}", ""]
    rows = [("MACs", f"{t['macs']:,}"), ("non-MAC ops", f"{t['non_mac_ops']:,}"), ("params", f"{t['params']:,}"),
            ("weight bytes", f"{t['weight_bytes']:,.0f}"),
            ("largest activation", f"{t['max_activation_elems']:,} elems, {t['max_activation_bytes']:,.0f} B ({t['max_activation_tensor']})"),
            ("peak live activations", f"{t['peak_activation_bytes']:,.0f} B")]
    from tabulate import tabulate

    lines.append(tabulate(rows, headers=["total", "value"], tablefmt="github"))
    lines += ["", "Unsupported ops: " + (", ".join(f"{k} x{v}" for k, v in doc["unsupported_ops"].items()) or "none")]
    if doc.get("uncosted_ops"):
        lines.append("Uncosted (shape unknown): " + ", ".join(f"{k} x{v}" for k, v in doc["uncosted_ops"].items()))
    if with_layers:
        lines += ["", markdown_table(doc["layers"], LAYER_COLUMNS)]
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------- terminal


def render_analysis(console: Console, table: CostTable, *, with_layers: bool = False, top: int = 8) -> None:
    """The ten-second summary: inputs, totals, heaviest layers, unsupported ops, convention."""
    t = table.totals
    shown = table.inputs if len(table.inputs) <= 6 else table.inputs[:4]
    more = f", ... {len(table.inputs) - len(shown)} more inputs (--format json lists them)" if len(shown) < len(table.inputs) else ""
    console.print(f"[bold]{table.model}[/bold]  batch {table.batch}, precision {table.precision or 'as stored'}; "
                  + ", ".join(f"{i.name} {shape_str(i.shape)} {i.dtype}" for i in shown) + more)
    warn = incomplete_warning(t)
    if warn:
        console.print(f"[bold red]{warn}[/bold red]", soft_wrap=True)
    console.print(f"[dim]{HEADER}[/dim]")
    for n in table.notes:
        console.print(f"[yellow]note:[/yellow] {n}")
    from rich.table import Table

    tot = Table(show_header=False, box=None, pad_edge=False)
    tot.add_column(style="bold")
    tot.add_column()
    tot.add_row("MACs", f"{si(t.macs)}  ({t.macs:,})" + (
        f"  [red]+ at least {si(t.macs_missing_at_least)} in {t.uncosted_layers} uncounted layer(s)[/red]"
        if t.macs_missing_at_least else f"  [red]+ {t.uncosted_layers} uncounted layer(s)[/red]" if t.uncosted_layers else ""))
    tot.add_row("non-MAC ops", si(t.non_mac_ops))
    tot.add_row("params", f"{si(t.params)}  ({t.params:,})")
    tot.add_row("weights", bytes_str(t.weight_bytes))
    tot.add_row("largest activation", f"{bytes_str(t.max_activation_bytes)}  ({t.max_activation_elems:,} elems, {t.max_activation_tensor})")
    tot.add_row("peak live activations", bytes_str(t.peak_activation_bytes))
    by = ", ".join(f"{k} {100.0 * v / t.macs:.0f}%" for k, v in list(t.macs_by_op_type.items())[:4]) if t.macs else "-"
    tot.add_row("MACs by op type", by)
    tot.add_row("layers", str(t.layers))
    console.print(tot)
    _render_unsupported(console, t.unsupported_ops, t.uncosted_ops)
    if with_layers:
        console.print(layers_table(table))
    else:
        heavy = sorted(table.layers, key=lambda l: l.macs, reverse=True)[:top]
        heavy = [l for l in heavy if l.macs > 0]
        if heavy:
            tb = Table(title=f"Heaviest layers by MACs (top {len(heavy)}; --layers for all)", title_justify="left")
            for c in ("layer", "op", "MACs", "% of total", "params", "output"):
                tb.add_column(c, justify="right" if c not in ("layer", "op", "output") else "left")
            for l in heavy:
                tb.add_row(l.name, l.op_type, si(l.macs), f"{100.0 * l.macs / t.macs:.1f}", si(l.params), shape_str(l.output_shape))
            console.print(tb)


def _render_unsupported(console: Console, unsupported: Mapping[str, int], uncosted: Mapping[str, int]) -> None:
    if unsupported:
        console.print("[bold red]Unsupported ops (not counted, NOT zero):[/bold red] "
                      + ", ".join(f"{k} x{v}" for k, v in unsupported.items()))
    else:
        console.print("Unsupported ops: none")
    if uncosted:
        console.print("[bold red]Uncosted ops (shape unknown):[/bold red] " + ", ".join(f"{k} x{v}" for k, v in uncosted.items()))


class _TotalsView:
    """The totals of an analysis document, read like analyze.Totals (for incomplete_warning)."""

    def __init__(self, doc: Mapping[str, Any]):
        t = doc["totals"]
        self.uncosted_layers = t.get("uncosted_layers", 0)
        self.layers = t.get("layers", 0)
        self.macs_missing_at_least = t.get("macs_missing_at_least", 0)
        self.first_uncounted = t.get("first_uncounted", "")
        self.uncosted_ops = doc.get("uncosted_ops", {})
        self.unsupported_ops = doc.get("unsupported_ops", {})


def layers_table(table: CostTable) -> Table:
    from rich.table import Table

    tb = Table(title="Layers", title_justify="left")
    for c in ("#", "layer", "op", "MACs", "non-MAC", "params", "weights", "in", "out", "output", "wino"):
        tb.add_column(c, justify="left" if c in ("layer", "op", "output") else "right")
    for i, l in enumerate(table.layers):
        tb.add_row(str(i), l.name, l.op_type + ("" if l.status == "ok" else f" [red]({l.status})[/red]"),
                   si(l.macs), si(l.non_mac_ops), si(l.params), bytes_str(l.weight_bytes_at(table.precision)),
                   bytes_str(l.input_bytes_at(table.precision)), bytes_str(l.output_bytes_at(table.precision)),
                   shape_str(l.output_shape), "yes" if l.winograd_candidate else "")
    return tb
