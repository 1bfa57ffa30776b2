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
        winograd: Optional[str] = None, layers: bool = False, fmt: str = "table", plot: Optional[str] = None,
        past: Optional[int] = None, prompt: Optional[int] = None, generate: Optional[int] = None,
        kv_precision: Optional[str] = None, weights: Optional[str] = None) -> None:
    """Analyze MODEL (per-layer MACs, params, activations); with `hw`, the roofline prediction;
    with `prompt` and `generate`, a decoder's prefill and decode phases (estimator/llm.py)."""
    if precision is not None and precision not in api.PRECISIONS:
        raise UserError(f"--precision: unknown '{precision}' (known: {', '.join(api.PRECISIONS)})")
    llm_opts = {"--prompt": prompt, "--generate": generate, "--kv-precision": kv_precision, "--weights": weights}
    if any(v is not None for v in llm_opts.values()):
        if hw is None:
            raise UserError(f"{', '.join(k for k, v in llm_opts.items() if v is not None)}: the phases of a decoder need "
                            "a hardware profile: add --hw PROFILE")
        if prompt is None or generate is None:
            raise UserError("--prompt and --generate go together (prompt tokens, tokens to generate)")
        if past is not None or seq_len is not None:
            raise UserError("--prompt/--generate set the sequence and cache lengths of each phase: drop --seq-len/--past")
        extra = [o for o, v in (("--layers", layers), ("--plot", plot), ("--winograd", winograd),
                                ("--resolution", resolution)) if v]
        if extra:
            raise UserError(f"{', '.join(extra)}: not available with --prompt/--generate (the phases' table); run "
                            "`estimate MODEL --hw P --seq-len S --past N` for one pass with them")
        from . import predict_cli

        predict_cli.run_llm(model=model, hw=hw, batches=api.parse_batches(batch), input_shapes=api.parse_inputs(input_),
                            precision=precision, prompt=prompt, generate=generate, kv_precision=kv_precision,
                            weights=weights, fmt=fmt, emit=_emit, console=report.console())
        return
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
                            resolution=res, seq_len=seq_len, precision=precision, past=past)
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
                    emit=_emit, console=report.console(), past=past)
