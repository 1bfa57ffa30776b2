"""The `estimate` entry point.

`estimate MODEL [analysis options]`, the everyday command, is parsed here and run without
importing typer and the other commands (typer alone costs ~80 ms of imports, as much as the
analysis of a 10,000-node graph). Everything else (another command, --help, --version, an
option or value this parser does not take) goes to the typer application in estimator.cli,
which also gives the canonical usage errors. Both paths share `guarded`: user errors are one
line on stderr and exit code 2, never a traceback.

The analysis options here mirror `analyze_cmd` in estimator/cli.py; tests/test_cli.py checks
that the two accept the same options with the same meaning.
"""

from __future__ import annotations

import errno
import os
import sys
from typing import Any, Callable

from .errors import UserError

# Every command of estimator.cli (tests check this against the typer application);
# "results-import" is `estimate results import` (estimator.cli.main rewrites it).
COMMANDS = frozenset({"analyze", "models", "export", "profiles", "validate", "results", "compare", "sweep",
                      "hw", "calibrate", "results-import", "campaign"})

# The options of `estimate [analyze] MODEL`: flag -> (keyword of analyze_cli.run, kind).
# kind: "str" takes a value, "int" an integer value, "list" a repeatable value, "flag" none.
ANALYZE_OPTIONS: dict[str, tuple[str, str]] = {
    "--hw": ("hw", "str"),
    "--batch": ("batch", "str"), "-b": ("batch", "str"),
    "--input": ("input_", "list"), "-i": ("input_", "list"),
    "--resolution": ("resolution", "str"), "-r": ("resolution", "str"),
    "--seq-len": ("seq_len", "int"),
    "--precision": ("precision", "str"), "-p": ("precision", "str"),
    "--winograd": ("winograd", "str"),
    "--layers": ("layers", "flag"),
    "--format": ("fmt", "str"), "-f": ("fmt", "str"),
    "--plot": ("plot", "str"),
    "--past": ("past", "int"),
    "--prompt": ("prompt", "int"),
    "--generate": ("generate", "int"),
    "--kv-precision": ("kv_precision", "str"),
    "--weights": ("weights", "str"),
}
FORMATS = ("table", "json", "csv", "markdown")


def parse_analyze(args: list[str]) -> dict[str, Any] | None:
    """The keywords of analyze_cli.run for `[analyze] MODEL [options]`, or None when the
    arguments are anything else (then the typer application handles them)."""
    explicit = args[:1] == ["analyze"]
    if explicit:
        args = args[1:]
    if not args or args[0].startswith("-"):
        return None  # options before MODEL: the full parser says what it makes of them
    kw: dict[str, Any] = {"model": None, "hw": None, "batch": None, "input_": [], "resolution": None,
                          "seq_len": None, "precision": None, "winograd": None, "layers": False,
                          "fmt": "table", "plot": None, "past": None, "prompt": None, "generate": None,
                          "kv_precision": None, "weights": None}
    seen: set[str] = set()
    i = 0
    while i < len(args):
        a = args[i]
        if a == "--":
            return None
        if a.startswith("-") and a != "-":
            flag, eq, val = a.partition("=") if a.startswith("--") else (a, "", "")
            spec = ANALYZE_OPTIONS.get(flag)
            if spec is None:
                return None
            dest, kind = spec
            if kind == "flag":
                if eq:
                    return None
                kw[dest] = True
                i += 1
                continue
            if not eq:
                if i + 1 >= len(args):
                    return None
                val = args[i + 1]
                i += 1
            i += 1
            if kind == "list":
                kw[dest].append(val)
            elif dest in seen:
                return None  # given twice: let the full parser decide
            elif kind == "int":
                try:
                    kw[dest] = int(val)
                except ValueError:
                    return None
            else:
                kw[dest] = val
            seen.add(dest)
            continue
        if kw["model"] is not None:
            return None  # a second positional argument
        kw["model"] = a
        i += 1
    if kw["model"] is None or kw["fmt"] not in FORMATS:
        return None
    if kw["model"] in COMMANDS and not explicit and not os.path.exists(kw["model"]):
        return None
    kw["input_"] = kw["input_"] or None
    return kw


def main(argv: list[str] | None = None) -> int:
    """`estimate ...`: the fast analysis path, else the full command-line application."""
    args = list(sys.argv[1:] if argv is None else argv)
    kw = parse_analyze(args) if args and args[0] not in COMMANDS - {"analyze"} else None
    if kw is not None and args[0] != "analyze" and not os.path.exists(kw["model"]):
        import difflib

        if difflib.get_close_matches(kw["model"], sorted(COMMANDS), n=1, cutoff=0.75):
            kw = None  # a mistyped command: the full application says so
    if kw is None:
        from .cli import main as full

        return full(argv)

    def run() -> int:
        from . import analyze_cli

        analyze_cli.run(**kw)
        return 0

    return finish(guarded(run), argv, fast_exit=True)


def guarded(fn: Callable[[], int], other: Callable[[Exception], int | None] | None = None) -> int:
    """Run `fn`; every error becomes a one-line message on stderr and an exit code: 2 for the
    user's errors, 130 when interrupted, 1 for a bug (traceback with ESTIMATE_TRACEBACK=1).
    `other` maps further exception types (click's) to codes, None for 'not mine'."""
    try:
        return fn()
    except SystemExit as e:  # rich and click exit 1 when stdout's reader has gone (`| head`)
        if isinstance(e.__context__, BrokenPipeError):
            return 0  # they already pointed stdout at /dev/null
        raise
    except UserError as e:
        sys.stderr.write(f"estimate: error: {e}\n")
        return 2
    except KeyboardInterrupt:
        sys.stderr.write("estimate: interrupted\n")
        return 130
    except BrokenPipeError:
        return 0
    except OSError as e:
        if e.errno in _WRITE_FAILURES:  # writing the output failed (disk full, a file size limit)
            sys.stderr.write(f"estimate: error: cannot write the output: {e.strerror or e}\n")
            return 2
        return _other(e, other)
    except MemoryError:
        sys.stderr.write("estimate: error: out of memory (is an input dim absurd?)\n")
        return 2
    except Exception as e:
        return _other(e, other)


_WRITE_FAILURES = frozenset({errno.ENOSPC, errno.EFBIG, errno.EIO, errno.EDQUOT})


def _other(e: Exception, other: Callable[[Exception], int | None] | None) -> int:
    code = other(e) if other is not None else None
    if code is None:  # a bug: one line, the traceback only on request
        if os.environ.get("ESTIMATE_TRACEBACK"):
            raise e
        sys.stderr.write(f"estimate: internal error: {type(e).__name__}: {e} "
                         "(set ESTIMATE_TRACEBACK=1 for the traceback; please report)\n")
        code = 1
    return code


def finish(code: int, argv: list[str] | None, fast_exit: bool = False) -> int:
    """Flush stdout (a reader that left, `| head`, is not an error) and exit when run as the
    command; return the code when called with explicit arguments (tests).

    `fast_exit` (the analysis path, which writes nothing but stdout/stderr and a --plot file
    it has closed): leave with os._exit once both streams are flushed, skipping the
    interpreter's teardown of a large graph's objects (~30 ms for 10,000 nodes)."""
    if argv is None:
        try:
            sys.stdout.flush()
        except BrokenPipeError:  # `estimate ... | head`: the reader left; not an error
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            code = 0 if code in (0, 1) else code
        except OSError as e:  # disk full, file size limit: one line, and the output is not complete
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            sys.stderr.write(f"estimate: error: cannot write the output: {e.strerror or e}\n")
            code = 2
        if fast_exit:
            try:
                sys.stderr.flush()
            finally:
                os._exit(code)
        sys.exit(code)
    return code
