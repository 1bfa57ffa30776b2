"""Model preparation for validation: resolve a path or built-in name, fill missing external
weights, generate inputs, and build (cached) FP16 / INT8 variants.

Cache directory: ``$ESTIMATE_CACHE_DIR`` or ``~/.cache/estimate``. Built-ins are keyed by
name + resolution + sequence length; variants by the source file's sha256 + precision +
onnxruntime version, so a changed model or engine never reuses a stale file.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, numpy_helper

from estimator.errors import UserError

PRECISIONS = ("fp32", "fp16", "int8")
#: Bumped whenever the way variants are made changes, so cached variants are rebuilt.
VARIANT_RECIPE = 2


def cache_dir() -> Path:
    d = Path(os.environ.get("ESTIMATE_CACHE_DIR") or Path.home() / ".cache" / "estimate")
    try:
        d.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"cache directory {d} cannot be created ({e.strerror}); "
                        "set ESTIMATE_CACHE_DIR to a writable directory") from None
    return d


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def parse_resolution(text: str | None) -> tuple[int, int] | None:
    if not text:
        return None
    m = re.fullmatch(r"\s*(\d+)\s*[xX,]\s*(\d+)\s*", text)
    if not m:
        m1 = re.fullmatch(r"\s*(\d+)\s*", text)
        if not m1:
            raise UserError(f"--resolution {text!r}: expected HxW, e.g. 416x416")
        return int(m1.group(1)), int(m1.group(1))
    return int(m.group(1)), int(m.group(2))


def _atomic_save(model: onnx.ModelProto, dest: Path) -> None:
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".onnx", dir=dest.parent)
    os.close(fd)
    try:
        if model.ByteSize() > 1_800_000_000:
            onnx.save(model, tmp, save_as_external_data=True, location=dest.name + ".data")
        else:
            onnx.save(model, tmp)
        os.replace(tmp, dest)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


@dataclass
class ResolvedModel:
    """The model the user named: where it is, what it is called, whether it is a built-in."""
    name: str
    path: Path
    builtin: bool
    task: str | None = None
    notes: list[str] = field(default_factory=list)


_TASKS = {"resnet50": "image classification", "resnet50-v1": "image classification",
          "mobilenetv2": "image classification", "yolov3": "object detection",
          "yolov3-tiny": "object detection", "bert-base": "language encoding"}


def resolve_model(model: str, *, resolution: tuple[int, int] | None = None,
                  seq_len: int | None = None) -> ResolvedModel:
    """A path to an .onnx file, or a built-in name built once and cached."""
    p = Path(model).expanduser()
    if p.is_file():
        return ResolvedModel(name=p.stem, path=p.resolve(), builtin=False)
    try:
        from estimator import models as builtin_models
        builtins = dict(getattr(builtin_models, "BUILTINS", {}))
    except ImportError:
        builtin_models, builtins = None, {}
    if model not in builtins:
        known = ", ".join(sorted(builtins)) or "(none available)"
        raise UserError(f"{model}: no such file, and not a built-in model (built-ins: {known})")
    key = model
    if resolution:
        key += f"-{resolution[0]}x{resolution[1]}"
    if seq_len:
        key += f"-s{seq_len}"
    dest = cache_dir() / "models" / f"{key}.onnx"
    if not dest.is_file():
        dest.parent.mkdir(parents=True, exist_ok=True)
        kwargs = {"weights": True}
        if resolution:
            kwargs["resolution"] = resolution
        if seq_len:
            kwargs["seq_len"] = seq_len
        try:
            proto = builtin_models.build(model, **kwargs)
        except TypeError as e:
            raise UserError(f"{model}: option not supported by this built-in ({e})") from None
        _atomic_save(proto, dest)
    return ResolvedModel(name=key, path=dest, builtin=True, task=_TASKS.get(model))


# ---------------------------------------------------------------------------------------------
# Loading, with generated weights when external data is absent


def _fan_in(shape: tuple[int, ...]) -> int:
    if len(shape) >= 3:
        return int(np.prod(shape[1:]))
    if len(shape) == 2:
        return int(shape[0])
    return 1


def _generated_array(tensor: TensorProto, rng: np.random.Generator, positive: bool) -> np.ndarray:
    shape = tuple(int(d) for d in tensor.dims)
    dtype = onnx.helper.tensor_dtype_to_np_dtype(tensor.data_type)
    if np.issubdtype(dtype, np.floating):
        if positive:
            arr = rng.uniform(0.5, 1.5, size=shape)
        else:  # He-like scale keeps activations away from 0/inf (and denormals) in deep nets
            arr = rng.normal(0.0, 1.0 / np.sqrt(max(1, _fan_in(shape))), size=shape)
        return arr.astype(dtype)
    if dtype == np.bool_:
        return np.ones(shape, dtype=dtype)
    return np.zeros(shape, dtype=dtype)


def load_with_weights(path: Path, seed: int = 0) -> tuple[onnx.ModelProto, bool]:
    """Load ``path``; if external weight files are missing, fill those initializers with
    generated values of the right shape/dtype. Returns (model, weights_generated)."""
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as e:  # noqa: BLE001 - protobuf raises many types
        raise UserError(f"{path}: not a readable ONNX file ({str(e).splitlines()[0][:160]})") from None
    base = path.parent
    missing: list[TensorProto] = []
    has_external = False
    for init in model.graph.initializer:
        if init.data_location == TensorProto.EXTERNAL:
            has_external = True
            loc = {e.key: e.value for e in init.external_data}.get("location", "")
            if not (base / loc).is_file():
                missing.append(init)
    if has_external and not missing:
        try:
            onnx.load_external_data_for_model(model, str(base))
        except (ValueError, OSError) as e:  # a data file that does not match the model
            raise UserError(f"{path}: its external weight data does not match the model "
                            f"({str(e).splitlines()[0][:160]})") from None
        return model, False
    if not missing:
        return model, False
    missing_names = {i.name for i in missing}
    if len(missing) != sum(1 for i in model.graph.initializer if i.data_location == TensorProto.EXTERNAL):
        # partial: load the external tensors whose files exist, generate the rest
        for init in model.graph.initializer:
            if init.data_location == TensorProto.EXTERNAL and init.name not in missing_names:
                try:
                    onnx.external_data_helper.load_external_data_for_tensor(init, str(base))
                except (ValueError, OSError) as e:
                    raise UserError(f"{path}: external weight data of '{init.name}' does not match the model "
                                    f"({str(e).splitlines()[0][:160]})") from None
                init.data_location = TensorProto.DEFAULT
                del init.external_data[:]
    positive = set()
    for node in model.graph.node:
        if node.op_type == "BatchNormalization" and len(node.input) >= 5:
            positive.add(node.input[4])  # running variance
    rng = np.random.default_rng(seed)
    for init in missing:
        arr = _generated_array(init, rng, init.name in positive)
        new = numpy_helper.from_array(arr, init.name)
        init.CopyFrom(new)
    return model, True


# ---------------------------------------------------------------------------------------------
# Inputs


@dataclass(frozen=True)
class InputSpec:
    name: str
    dtype: np.dtype
    shape: tuple  # ints and strings (symbolic)


def file_input_specs(path) -> list[InputSpec]:
    """input_specs of a file as declared, without reading its weights."""
    return input_specs(onnx.load(str(path), load_external_data=False))


def input_specs(model: onnx.ModelProto) -> list[InputSpec]:
    inits = {i.name for i in model.graph.initializer}
    specs = []
    for vi in model.graph.input:
        if vi.name in inits:
            continue
        tt = vi.type.tensor_type
        dtype = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(tt.elem_type))
        dims = []
        for d in tt.shape.dim:
            dims.append(d.dim_value if d.HasField("dim_value") else (d.dim_param or "?"))
        specs.append(InputSpec(vi.name, dtype, tuple(dims)))
    return specs


def concrete_shape(spec: InputSpec, batch: int, *, resolution: tuple[int, int] | None = None,
                   seq_len: int | None = None) -> tuple[int, ...]:
    """Leading dim -> batch; other symbolic dims: seq_len for token inputs, resolution for
    image H/W, else 1 (fixed dims are kept)."""
    out = []
    rank = len(spec.shape)
    for i, d in enumerate(spec.shape):
        if i == 0:
            out.append(batch)
        elif isinstance(d, int) and d > 0:
            out.append(d)
        elif rank == 4 and i in (2, 3):
            out.append((resolution or (224, 224))[i - 2])
        elif np.issubdtype(spec.dtype, np.integer) or rank == 2:
            out.append(seq_len or 128)
        else:
            out.append(1)
    return tuple(out)


def generate_inputs(specs: list[InputSpec], batch: int, *, seed: int = 0,
                    resolution: tuple[int, int] | None = None, seq_len: int | None = None) -> dict:
    """Random inputs: floats ~ U[0,1); integer ids in [0, 2) (valid for any embedding);
    inputs named like masks get ones; bools are True."""
    rng = np.random.default_rng(seed)
    feeds = {}
    for s in specs:
        shape = concrete_shape(s, batch, resolution=resolution, seq_len=seq_len)
        if np.issubdtype(s.dtype, np.floating):
            feeds[s.name] = rng.random(shape, dtype=np.float32).astype(s.dtype)
        elif s.dtype == np.bool_:
            feeds[s.name] = np.ones(shape, dtype=np.bool_)
        elif np.issubdtype(s.dtype, np.integer):
            if "mask" in s.name.lower():
                feeds[s.name] = np.ones(shape, dtype=s.dtype)
            else:
                feeds[s.name] = rng.integers(0, 2, size=shape).astype(s.dtype)
        else:
            raise UserError(f"input {s.name!r}: cannot generate data of type {s.dtype}")
    return feeds


def with_symbolic_batch(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy whose graph inputs/outputs have a symbolic leading dim "N" (for fixed-batch-1
    models swept over batch sizes); intermediate shape annotations are dropped."""
    m = onnx.ModelProto()
    m.CopyFrom(model)
    inits = {i.name for i in m.graph.initializer}
    for vi in list(m.graph.input) + list(m.graph.output):
        if vi.name in inits:
            continue
        dims = vi.type.tensor_type.shape.dim
        if len(dims) and dims[0].HasField("dim_value"):
            dims[0].Clear()
            dims[0].dim_param = "N"
    del m.graph.value_info[:]
    return m


# ---------------------------------------------------------------------------------------------
# Precision variants


class _Calibration:
    """Calibration data for quantize_static: a few generated batch-1 inputs."""

    def __init__(self, specs, n, resolution, seq_len):
        self._it = iter([generate_inputs(specs, 1, seed=100 + i, resolution=resolution,
                                         seq_len=seq_len) for i in range(n)])

    def get_next(self):
        return next(self._it, None)

    def rewind(self):  # pragma: no cover - newer ORT calls it
        pass


def make_variant(fp32_path: Path, precision: str, *, sha256: str, resolution=None, seq_len=None,
                 calibration_samples: int = 4) -> Path:
    """Path of the ``precision`` variant of the (weights-complete) fp32 model at fp32_path.

    fp16: onnxruntime.transformers.float16.convert_float_to_float16(keep_io_types=True).
    int8: onnxruntime.quantization.quantize_static, QDQ, QUInt8 activations, QInt8 weights,
    MinMax calibration on generated inputs (latency only: accuracy is not meaningful)."""
    if precision == "fp32":
        return fp32_path
    if precision not in PRECISIONS:
        raise UserError(f"precision {precision!r}: onnxruntime runs one of {', '.join(PRECISIONS)}")
    import onnxruntime as ort
    dest = cache_dir() / "variants" / f"{sha256[:16]}-{precision}-r{VARIANT_RECIPE}-ort{ort.__version__}.onnx"
    if dest.is_file():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    model = onnx.load(str(fp32_path))
    try:
        if precision == "fp16":
            from onnxruntime.transformers.float16 import convert_float_to_float16
            out = convert_float_to_float16(model, keep_io_types=True)
            _atomic_save(out, dest)
        else:
            import logging
            from onnxruntime.quantization import QuantFormat, QuantType, quantize_static
            specs = input_specs(model)
            fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".onnx", dir=dest.parent)
            os.close(fd)
            level = logging.getLogger().level
            logging.getLogger().setLevel(logging.ERROR)  # quantizer warns about pre-processing
            pre = tmp + ".pre.onnx"
            try:
                # quant_pre_process: shape inference + onnxruntime's basic optimizations (folds
                # BatchNormalization into Conv), as onnxruntime recommends before quantizing;
                # if it fails on this model, quantize the model as given.
                src = str(fp32_path)
                try:
                    from onnxruntime.quantization.shape_inference import quant_pre_process
                    quant_pre_process(str(fp32_path), pre, skip_symbolic_shape=True)
                    src = pre
                except Exception:  # noqa: BLE001
                    src = str(fp32_path)
                quantize_static(src, tmp,
                                _Calibration(specs, calibration_samples, resolution, seq_len),
                                quant_format=QuantFormat.QDQ, activation_type=QuantType.QUInt8,
                                weight_type=QuantType.QInt8)
                os.replace(tmp, dest)
            finally:
                logging.getLogger().setLevel(level)
                for f in (tmp, pre):
                    if os.path.exists(f):
                        os.unlink(f)
    except UserError:
        raise
    except Exception as e:  # noqa: BLE001 - converters raise anything
        msg = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
        raise UserError(f"precision {precision}: could not convert {fp32_path.name} ({msg})") from None
    return dest
