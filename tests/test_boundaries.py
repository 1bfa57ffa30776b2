"""The design's boundaries (DESIGN.md, "I/O only at the edges"), checked on the source:
only the loader (estimator/onnx_io.py and its shape completion, onnx_shapes.py) imports onnx in
the core; only validate/ imports onnxruntime;
the core never prints, exits or reads the environment."""

import ast
import os

import estimator

PKG = os.path.dirname(estimator.__file__)
EDGE = {"cli.py", "entry.py", "analyze_cli.py", "predict_cli.py", "calibrate_cli.py", "report.py"}  # command-line edge: may print


def _modules(top):
    for root, _, files in os.walk(top):
        for f in files:
            if f.endswith(".py"):
                yield os.path.join(root, f)


def _imports(path):
    tree = ast.parse(open(path).read(), path)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                yield a.name.split(".")[0], node
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module.split(".")[0], node


def _core_files():
    for path in _modules(PKG):
        rel = os.path.relpath(path, PKG)
        if rel.split(os.sep)[0] in ("models", "validate", "hwprofiles"):
            continue  # installed beside the core as estimator.models / .validate
        yield rel, path


def test_only_onnx_io_imports_onnx():
    offenders = [rel for rel, path in _core_files() for mod, _ in _imports(path)
                 if mod == "onnx" and rel not in ("onnx_io.py", "onnx_shapes.py")]
    assert not offenders


def test_only_validate_imports_onnxruntime():
    offenders = [rel for rel, path in _core_files() for mod, _ in _imports(path) if mod == "onnxruntime"]
    assert not offenders


def test_core_never_prints_exits_or_reads_environment():
    bad = []
    for rel, path in _core_files():
        if os.path.basename(rel) in EDGE:
            continue
        tree = ast.parse(open(path).read(), path)
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("print", "exit", "input"):
                bad.append(f"{rel}:{node.lineno} {node.func.id}()")
            if isinstance(node, ast.Attribute) and node.attr in ("exit", "environ", "getenv") and \
                    isinstance(node.value, ast.Name) and node.value.id in ("sys", "os"):
                bad.append(f"{rel}:{node.lineno} {node.value.id}.{node.attr}")
    assert not bad
