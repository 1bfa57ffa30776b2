"""`estimate [analyze] MODEL`: the analysis command's body, shared by the fast entry path
(estimator/entry.py) and the typer application (estimator/cli.py). Imports only what the
chosen output needs: rich for the terminal table, the roofline modules with --hw."""

from __future__ import annotations

import json
import sys
from typing import List, Optional

from . import api, report
from .errors import UserError


def _emit(text: str) -> None:
    sys.stdout.write(text if text.endswith("\n") else text + "\n")


def run(*, model: str, hw: Optional[str] = None, batch: Optional[str] = None, input_: Optional[List[str]] = None,
        resolution: Optional[str] = None, seq_len: Optional[int] = None, precision: Optional[str] = None,
        winograd: Optional[str] = None, layers: bool = False, fmt: str = "table", plot: Optional[str] = None) -> None:
    """Analyze MODEL (per-layer MACs, params, activations); with `hw`, the roofline prediction."""
    if precision is not None and precision not in api.PRECISIONS:
        raise UserError(f"--precision: unknown '{precision}' (known: {', '.join(api.PRECISIONS)})")
    batches = api.parse_batches(batch)
    shapes = api.parse_inputs(input_)
    res = api.parse_resolution(resolution)
    if hw is None:
        if winograd is not None or plot is not None:
            given = " and ".join(o for o, v in (("--winograd", winograd), ("--plot", plot)) if v is not None)
            raise UserError(f"{given} need{'s' if ' and ' not in given else ''} a hardware profile: add --hw PROFILE "
                            "(see `estimate profiles`)")
        if batches is not None and len(batches) > 1:
            raise UserError("--batch: a list of batch sizes needs --hw (a prediction per batch); without --hw give one size")
        table = api.analyze(model, batch=batches[0] if batches else None, input_shapes=shapes,
                            resolution=res, seq_len=seq_len, precision=precision)
        if fmt == "table":
            report.render_analysis(report.console(), table, with_layers=layers)
            return
        doc = report.analysis_document(table, source=model)
        warn = report.incomplete_warning(table.totals, "in the document")
        if warn and fmt in ("json", "csv"):
            sys.stderr.write(f"estimate: {warn}\n")  # stdout stays a clean document
        if fmt == "json":
            _emit(json.dumps(doc, indent=1))
        elif fmt == "csv":
            _emit(report.layers_csv(doc))
        else:
            _emit(report.analysis_markdown(doc, with_layers=layers))
        return
    from . import predict_cli

    predict_cli.run(model=model, hw=hw, batches=batches, input_shapes=shapes, resolution=res, seq_len=seq_len,
                    precision=precision, winograd=winograd, layers=layers, fmt=fmt, plot=plot,
                    emit=_emit, console=report.console())
