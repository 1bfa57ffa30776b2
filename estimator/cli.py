"""The `estimate` command. Thin commands, one function each; errors become exit codes here.

`estimate MODEL [options]` is short for `estimate analyze MODEL [options]`.
"""

from __future__ import annotations

import json
import os
import sys
from enum import Enum
from typing import List, Optional

import typer
from rich.console import Console

from . import api, report
from .entry import finish, guarded
from .errors import UserError

app = typer.Typer(add_completion=False, no_args_is_help=True, rich_markup_mode=None,
                  help="Inference cost estimator for ONNX models. `estimate MODEL` analyzes a model "
                       "(a path or a built-in name, see `estimate models`); add --hw PROFILE for a roofline prediction.")


class Format(str, Enum):
    table = "table"
    json = "json"
    csv = "csv"
    markdown = "markdown"


def _console() -> Console:
    return report.console()


def _emit(text: str) -> None:
    sys.stdout.write(text if text.endswith("\n") else text + "\n")


MODEL_HELP = "Path to an .onnx file, or a built-in model name (see `estimate models`)."


@app.command("analyze")
def analyze_cmd(
    model: str = typer.Argument(..., help=MODEL_HELP),
    hw: Optional[str] = typer.Option(None, "--hw", help="Hardware profile: a YAML path or a shipped name (see `estimate profiles`)."),
    batch: Optional[str] = typer.Option(None, "--batch", "-b", help="Batch size (sets the leading dim of every input); with --hw a list such as 1,2,4,8."),
    input_: Optional[List[str]] = typer.Option(None, "--input", "-i", help="Set an input's shape: NAME=1x3x608x608 (repeatable)."),
    resolution: Optional[str] = typer.Option(None, "--resolution", "-r", help="HxW of the single image input, e.g. 1088x1920."),
    seq_len: Optional[int] = typer.Option(None, "--seq-len", help="Sequence length: of a built-in encoder (bert-base), or the new tokens of a decoder with a KV cache."),
    precision: Optional[str] = typer.Option(None, "--precision", "-p", help="fp32|fp16|bf16|int8: bytes per float element (and MAC rate with --hw)."),
    winograd: Optional[str] = typer.Option(None, "--winograd", help="off|f2|f4 (with --hw; default: the profile's)."),
    layers: bool = typer.Option(False, "--layers", help="Print the per-layer table."),
    fmt: Format = typer.Option(Format.table, "--format", "-f", help="table (for people) | json | csv | markdown."),
    plot: Optional[str] = typer.Option(None, "--plot", help="With --hw: write a roofline + throughput plot (FILE.png or .svg; needs `pip install 'estimate[plot]'`)."),
    past: Optional[int] = typer.Option(None, "--past", help="A decoder's KV-cache length (past tokens; 0 = the prompt pass)."),
    prompt: Optional[int] = typer.Option(None, "--prompt", help="With --hw and a decoder: prompt tokens (prefill: time to first token)."),
    generate: Optional[int] = typer.Option(None, "--generate", help="With --prompt: tokens to generate (decode: time per output token)."),
    kv_precision: Optional[str] = typer.Option(None, "--kv-precision", help="With --prompt: KV-cache precision fp32|fp16|bf16|fp8|int8 (default: --precision)."),
    weights: Optional[str] = typer.Option(None, "--weights", help="With --prompt: weight-only quantization int4|int8 (MACs stay at --precision)."),
) -> None:
    """Analyze MODEL: per-layer MACs, params, activations; with --hw, predicted latency and throughput;
    for a decoder with --prompt and --generate, prefill and decode (docs/llm.md)."""
    from . import analyze_cli

    analyze_cli.run(model=model, hw=hw, batch=batch, input_=input_, resolution=resolution, seq_len=seq_len,
                    precision=precision, winograd=winograd, layers=layers, fmt=fmt.value, plot=plot, past=past,
                    prompt=prompt, generate=generate, kv_precision=kv_precision, weights=weights)


@app.command("models")
def models_cmd(fmt: Format = typer.Option(Format.table, "--format", "-f", help="table | json | csv | markdown.")) -> None:
    """List the built-in reference models (usable wherever a model path is)."""
    from . import models

    rows = []
    for name, spec in models.BUILTINS.items():
        res = getattr(spec, "default_resolution", None)
        seq = getattr(spec, "default_seq_len", None)
        rows.append({"name": name, "description": getattr(spec, "description", ""),
                     "default_input": (f"{res[0]}x{res[1]}" if res else f"seq {seq}" if seq else ""),
                     "reference": getattr(spec, "citation", "")})
    cols = ["name", "description", "default_input", "reference"]
    if fmt == Format.json:
        _emit(json.dumps(rows, indent=1))
    elif fmt == Format.csv:
        _emit(report.rows_to_csv(rows, cols))
    elif fmt == Format.markdown:
        _emit(report.markdown_table(rows, cols))
    else:
        from rich.table import Table

        t = Table(title="Built-in reference models (estimate NAME, estimate export NAME -o FILE)", title_justify="left")
        for c in cols[:3]:
            t.add_column(c)
        for r in rows:
            t.add_row(r["name"], r["description"], r["default_input"])
        _console().print(t)


@app.command("export")
def export_cmd(
    name: str = typer.Argument(..., help="A built-in model name (see `estimate models`)."),
    output: str = typer.Option(..., "--output", "-o", help="The .onnx file to write."),
    weights: bool = typer.Option(True, "--weights/--no-weights", help="Random weights embedded, or graph-only (external data referenced but not written)."),
    resolution: Optional[str] = typer.Option(None, "--resolution", "-r", help="HxW of the image input."),
    seq_len: Optional[int] = typer.Option(None, "--seq-len", help="Sequence length (bert-base)."),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing file."),
) -> None:
    """Write a built-in reference model to an .onnx file."""
    from . import models, onnx_io

    if name not in models.BUILTINS:
        raise UserError(f"'{name}' is not a built-in model (built-ins: {', '.join(models.BUILTINS)})")
    if os.path.exists(output) and not force:
        raise UserError(f"{output}: exists; pass --force to overwrite")
    proto = models.build(name, resolution=api.parse_resolution(resolution), seq_len=seq_len, weights=weights)
    onnx_io.save_model(proto, output)
    typer.echo(f"wrote {output} ({'with random weights' if weights else 'graph-only: weights referenced, not written'})")


@app.command("profiles")
def profiles_cmd(fmt: Format = typer.Option(Format.table, "--format", "-f", help="table | json | csv | markdown.")) -> None:
    """List the shipped hardware profiles with their headline figures."""
    from . import hardware

    rows = []
    for p in hardware.list_profiles():
        rows.append({
            "name": p.name, "description": p.description or "", "clock_hz": p.clock_hz,
            "peak_macs_per_s": {k: p.peak_macs_per_s(k) for k in p.precisions},
            "sram_bytes": p.sram_bytes, "dram_bandwidth_bytes_per_s": p.dram_bandwidth_bytes_per_s,
            "winograd": (f"f{p.winograd.tile}" if p.winograd else "off"), "source": p.source,
        })
    if fmt == Format.json:
        _emit(json.dumps(rows, indent=1))
        return
    flat = [{**r, "peak_macs_per_s": ", ".join(f"{k} {report.si(v)}" for k, v in r["peak_macs_per_s"].items()),
             "sram": report.bytes_str(r["sram_bytes"]), "dram": report.si(r["dram_bandwidth_bytes_per_s"], "B/s")} for r in rows]
    cols = ["name", "peak_macs_per_s", "sram", "dram", "winograd", "description"]
    if fmt == Format.csv:
        precs = sorted({k for r in rows for k in r["peak_macs_per_s"]}, key=["fp32", "fp16", "bf16", "int8"].index)
        csv_rows = [{**r, **{f"peak_macs_per_s_{k}": r["peak_macs_per_s"].get(k, "") for k in precs}} for r in rows]
        _emit(report.rows_to_csv(csv_rows, ["name", "clock_hz", *[f"peak_macs_per_s_{k}" for k in precs], "sram_bytes",
                                            "dram_bandwidth_bytes_per_s", "winograd", "description"]))
    elif fmt == Format.markdown:
        _emit(report.markdown_table(flat, cols))
    else:
        from rich.table import Table

        t = Table(title="Shipped hardware profiles (--hw NAME); peak in MAC/s", title_justify="left")
        for c in cols:
            t.add_column(c)
        for r in flat:
            t.add_row(*[str(r[c]) for c in cols])
        _console().print(t)


def _register_commands() -> None:
    """Commands defined in other modules: validate/results (validate/), compare/sweep
    (predict_cli), hw detect/calibrate (calibrate_cli). A broken import fails loudly."""
    from . import calibrate_cli, predict_cli
    from .validate.cli import campaign_command, import_command, results_command, validate_command

    app.command("validate")(validate_command)
    app.command("results")(results_command)
    app.command("results-import", hidden=True)(import_command)   # `estimate results import ...` (main())
    app.command("campaign")(campaign_command)
    predict_cli.register(app)
    calibrate_cli.register(app)


_register_commands()


def _known_commands() -> set[str]:
    cmd = typer.main.get_command(app)
    return set(getattr(cmd, "commands", {}).keys())


def main(argv: list[str] | None = None) -> int:
    """Entry point: `estimate MODEL ...` is routed to `analyze`. Every user error (ours, or a
    usage error from typer) is one line on stderr and exit code 2."""
    import difflib

    args = list(sys.argv[1:] if argv is None else argv) or ["--help"]
    known = _known_commands()
    if args[:1] == ["--version"]:
        from . import __version__

        return finish(guarded(lambda: typer.echo(f"estimate {__version__}") or 0), argv)

    def run() -> int:
        nonlocal args
        if args and args[0] not in known and not args[0].startswith("-"):
            near = difflib.get_close_matches(args[0], sorted(known), n=1, cutoff=0.75)
            if near and not os.path.exists(args[0]) and not api.is_builtin(args[0]):
                raise UserError(f"unknown command '{args[0]}' (did you mean '{near[0]}'? see 'estimate --help')")
            args = ["analyze", *args]
        cmd = typer.main.get_command(app)
        prog = "estimate"
        if args[:2] == ["results", "import"]:   # a sub-command of `results`, which takes paths
            cmd, args, prog = cmd.commands["results-import"], args[2:], "estimate results import"
        try:
            rv = cmd.main(args=args, prog_name=prog, standalone_mode=False)
            return rv if isinstance(rv, int) else 0
        except SystemExit as e:  # click exits 1 when stdout's reader has gone (`| head`)
            code = e.code if isinstance(e.code, int) else 0
            if isinstance(e.__context__, BrokenPipeError):
                code = 0  # click already pointed stdout at /dev/null
            return code

    return finish(guarded(run, lambda e: _click_exception(e, args)), argv)


def _click_exception(e: Exception, args: list[str]) -> int | None:
    """Exit code for typer/click's own exceptions (usage errors, Exit, Abort), found by name
    so that this works with click and with typer's vendored copy; None for anything else."""
    names = {c.__name__ for c in type(e).__mro__}
    if "Exit" in names and hasattr(e, "exit_code"):
        return int(e.exit_code or 0)
    if "Abort" in names:
        sys.stderr.write("estimate: aborted\n")
        return 130
    if "NoArgsIsHelpError" in names and getattr(e, "ctx", None) is not None:  # `estimate hw`: its help
        sys.stdout.write(e.ctx.get_help() + "\n")
        return 0
    if "ClickException" in names and hasattr(e, "format_message"):
        msg = " ".join(e.format_message().split()).replace("Value error, ", "")
        sub = args[0] if args and args[0] in _known_commands() else ""
        sys.stderr.write(f"estimate: error: {msg} (see 'estimate {sub + ' ' if sub else ''}--help')\n")
        return 2
    return None


if __name__ == "__main__":  # pragma: no cover
    main()
