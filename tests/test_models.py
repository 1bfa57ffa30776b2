"""Tests of the reference model builders (estimator.models).

Pinned counts and their sources:
- resnet50 / resnet50-v1: 25,557,032 trainable params (torchvision ResNet50_Weights docs) plus
  53,120 BN running mean/var (onnx's light_resnet50.onnx holds 25,610,152 values in all);
  conv+fc MACs at 224x224: 4,089,184,256 (v1.5, torchvision's "4.09 GFLOPS"), 3,857,973,248 (v1).
- yolov3: 61,949,149 trainable + 52,608 BN running stats = 62,001,757 values, the contents of
  Darknet's yolov3.weights ((248,007,048 - 20) / 4); 65.86 BFLOPs at 416 (pjreddie.com/darknet/yolo)
  = 32.93 G MACs; 397.5 G MACs and a largest activation of 32x1088x1920 at 1088x1920.
- yolov3-tiny: 8,852,366 + 6,368 = 8,858,734 values (yolov3-tiny.weights); 5.56 BFLOPs at 416.
- mobilenetv2: 3,504,872 trainable params, 0.30 GFLOPS (torchvision MobileNet_V2_Weights docs).
- bert-base: 109,482,240 params with pooler (Hugging Face bert-base-uncased BertModel).
- gpt2, llama-3.2-1b, llama-3-8b (decoders with a KV cache): 124,439,808 / 1,235,814,400 /
  8,030,261,248 params (Hugging Face config.json); their graphs and counts: test_decoders.py.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import onnx
import pytest
from onnx import TensorProto, shape_inference

from estimator.errors import UserError
from estimator.models import BUILTINS, build, save

# The onnxruntime-genai forms (packed uint8 and float16 initializers, com.microsoft ops) are
# tested in test_decoders.py.
GENAI = {"llama-3.2-1b-genai", "llama-3-8b-genai"}
NAMES = sorted(set(BUILTINS) - GENAI)

# name -> (trainable params, BN running mean + var values)
PARAMS = {
    "resnet50": (25_557_032, 53_120),      # torchvision docs; light_resnet50.onnx: 25,610,152
    "resnet50-v1": (25_557_032, 53_120),   # same weight shapes as v1.5
    "yolov3": (61_949_149, 52_608),        # yolov3.weights: 62,001,757 values
    "yolov3-tiny": (8_852_366, 6_368),     # yolov3-tiny.weights: 8,858,734 values
    "mobilenetv2": (3_504_872, 34_112),    # torchvision docs
    "bert-base": (109_482_240, 0),         # Hugging Face bert-base-uncased with pooler
    "gpt2": (124_439_808, 0),              # Hugging Face openai-community/gpt2 (tied lm_head)
    "llama-3.2-1b": (1_235_814_400, 0),    # Hugging Face meta-llama/Llama-3.2-1B (tied)
    "llama-3-8b": (8_030_261_248, 0),      # Hugging Face meta-llama/Meta-Llama-3-8B
}

# Decoders with a KV cache: every dim symbolic, the batch named "batch_size" (optimum's name).
DECODERS = {"gpt2", "llama-3.2-1b", "llama-3-8b"}
# Too large to build with random weights in a test (4.9 GB and 32 GB of float32).
NO_WEIGHTS_BUILD = {"llama-3.2-1b": "4.9 GB of random weights", "llama-3-8b": "32 GB of random weights"}

SMALL = {"resnet50": (64, 64), "resnet50-v1": (64, 64), "yolov3": (128, 128),
         "yolov3-tiny": (128, 128), "mobilenetv2": (64, 64)}


def _small_kwargs(name: str) -> dict:
    if name in DECODERS:
        return {}  # symbolic sequence dims: no size to choose at build time
    return {"resolution": SMALL[name]} if name in SMALL else {"seq_len": 16}


def _split_params(model: onnx.ModelProto) -> tuple[int, int]:
    stats = {i for n in model.graph.node if n.op_type == "BatchNormalization" for i in n.input[3:5]}
    trainable = bn = 0
    for t in model.graph.initializer:
        count = math.prod(t.dims)
        if t.name in stats:
            bn += count
        else:
            trainable += count
    return trainable, bn


def _shapes_at_batch1(model: onnx.ModelProto) -> dict[str, list[int]]:
    """Shape inference with N bound to 1 (a test helper, not the estimator's analyzer)."""
    m = onnx.ModelProto()
    m.CopyFrom(model)
    for inp in m.graph.input:
        dim = inp.type.tensor_type.shape.dim[0]
        dim.ClearField("dim_param")
        dim.dim_value = 1
    m = shape_inference.infer_shapes(m, strict_mode=True)
    shapes = {t.name: list(t.dims) for t in m.graph.initializer}
    for vi in [*m.graph.value_info, *m.graph.input, *m.graph.output]:
        shapes[vi.name] = [d.dim_value for d in vi.type.tensor_type.shape.dim]
    return shapes


def _macs_and_max_activation(model: onnx.ModelProto) -> tuple[int, int]:
    """Conv / Gemm / MatMul multiply-accumulates and the largest node output, per sample."""
    shapes = _shapes_at_batch1(model)
    macs = largest = 0
    for n in model.graph.node:
        if n.op_type == "Constant":
            continue
        out = shapes[n.output[0]]
        assert all(d > 0 for d in out), (n.name, out)
        largest = max(largest, math.prod(out))
        if n.op_type == "Conv":
            macs += math.prod(out) * math.prod(shapes[n.input[1]][1:])
        elif n.op_type in ("Gemm", "MatMul"):  # no transA anywhere: K is the last input dim
            macs += math.prod(out) * shapes[n.input[0]][-1]
    return macs, largest


# ------------------------------------------------------------------------------ registry


def test_builtins_registry():
    assert set(BUILTINS) == {"resnet50", "resnet50-v1", "yolov3", "yolov3-tiny", "mobilenetv2",
                             "bert-base", "gpt2", "llama-3.2-1b", "llama-3-8b", *GENAI}
    for name, info in BUILTINS.items():
        assert info.name == name and info.description and info.citation
        assert (info.default_resolution is None) != (info.default_seq_len is None)
        with pytest.raises(dataclasses.FrozenInstanceError):
            info.name = "x"  # type: ignore[misc]
    assert BUILTINS["yolov3"].default_resolution == (416, 416)
    assert BUILTINS["resnet50"].default_resolution == (224, 224)
    assert BUILTINS["bert-base"].default_seq_len == 128


# ------------------------------------------------------------------------------ graph-only


@pytest.mark.parametrize("name", NAMES)
def test_graph_only_build(name, tmp_path):
    model = build(name, weights=False)
    assert model.opset_import[0].version == 17 and model.ir_version == 8
    for inp in model.graph.input:
        assert inp.type.tensor_type.shape.dim[0].dim_param == ("batch_size" if name in DECODERS else "N")
    # No data anywhere: every initializer is external, back to back in <name>.weights.bin.
    offset = 0
    for t in model.graph.initializer:
        assert t.data_type == TensorProto.FLOAT and len(t.dims) > 0
        assert t.data_location == TensorProto.EXTERNAL
        assert not (t.raw_data or t.float_data or t.int64_data or t.int32_data)
        ext = {e.key: e.value for e in t.external_data}
        assert ext["location"] == f"{name}.weights.bin"
        assert int(ext["offset"]) == offset and int(ext["length"]) == 4 * math.prod(t.dims)
        offset += int(ext["length"])
    assert _split_params(model) == PARAMS[name]
    # onnx's checker requires the external file to exist (it never reads it): check the saved
    # model next to an empty placeholder. save() itself must not write any weights file.
    path = save(name, tmp_path / f"{name}.onnx", weights=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"{name}.onnx"]
    (tmp_path / f"{name}.weights.bin").touch()
    onnx.checker.check_model(str(path))
    loaded = onnx.load(str(path), load_external_data=False)
    assert loaded.SerializeToString() == model.SerializeToString()


@pytest.mark.parametrize("name", NAMES)
def test_names_unique_and_readable(name):
    model = build(name, weights=False)
    nodes = [n.name for n in model.graph.node]
    assert all(nodes) and len(set(nodes)) == len(nodes)
    produced = [o for n in model.graph.node for o in n.output]
    inits = [t.name for t in model.graph.initializer]
    tensors = produced + inits + [i.name for i in model.graph.input]
    assert all(tensors) and len(set(tensors)) == len(tensors)


@pytest.mark.parametrize("name, resolution, macs", [
    ("resnet50", (224, 224), 4_089_184_256),        # torchvision: 4.09 GFLOPS (MACs)
    ("resnet50-v1", (224, 224), 3_857_973_248),     # He et al. 2016: 3.8e9 multiply-adds
    ("mobilenetv2", (224, 224), 300_774_272),       # torchvision: 0.30 GFLOPS (MACs)
    ("yolov3", (416, 416), 32_932_037_632),         # Darknet: 65.86 BFLOPs = 2 x MACs
    ("yolov3", (224, 224), 9_548_342_272),          # seed 004: 9.5 G MACs at 224x224
    ("yolov3-tiny", (416, 416), 2_782_480_896),     # Darknet: 5.56 BFLOPs
])
def test_macs(name, resolution, macs):
    assert _macs_and_max_activation(build(name, resolution=resolution, weights=False))[0] == macs


def test_yolov3_two_megapixel():
    model = build("yolov3", resolution=(1088, 1920), weights=False)
    macs, largest = _macs_and_max_activation(model)
    assert macs == 397_522_821_120                  # ~397.5 G (seed 004: ~400 G per 2 MP)
    assert largest == 32 * 1088 * 1920 == 66_846_720
    assert [[d.dim_value or d.dim_param for d in o.type.tensor_type.shape.dim]
            for o in model.graph.output] == [["N", 255, 34, 60], ["N", 255, 68, 120],
                                             ["N", 255, 136, 240]]


def test_bert_macs_and_symbolic_seq_len():
    macs, largest = _macs_and_max_activation(build("bert-base", weights=False))
    # 12 x (128 x 7,077,888 + 2 x 128^2 x 768) + 768^2 (pooler)
    assert macs == 11_174_215_680 and largest == 128 * 3072
    model = build("bert-base", seq_len="S", weights=False)
    inferred = shape_inference.infer_shapes(model, strict_mode=True)
    dims = {vi.name: [d.dim_value or d.dim_param for d in vi.type.tensor_type.shape.dim]
            for vi in inferred.graph.value_info}
    assert dims["encoder.layer.11.attention.self.scores"] == ["N", 12, "S", "S"]
    assert dims["encoder.layer.0.output.residual"] == ["N", "S", 768]


# ------------------------------------------------------------------------------ with weights


@pytest.mark.parametrize("name", NAMES)
def test_weights_build(name):
    if name in NO_WEIGHTS_BUILD:
        pytest.skip(f"{name}: {NO_WEIGHTS_BUILD[name]}; test_decoders.py runs tiny configs of the same builder")
    model = build(name, weights=True, **_small_kwargs(name))
    onnx.checker.check_model(model, full_check=name not in ("bert-base", "gpt2"))  # >400 MB to copy
    assert all(t.data_location == TensorProto.DEFAULT and len(t.raw_data) == 4 * math.prod(t.dims)
               for t in model.graph.initializer)
    assert _split_params(model) == PARAMS[name]
    inits = {t.name: t for t in model.graph.initializer}
    for n in model.graph.node:
        if n.op_type == "BatchNormalization":
            var = onnx.numpy_helper.to_array(inits[n.input[4]])
            assert (var > 0).all()


def test_weights_are_deterministic():
    a = build("mobilenetv2", resolution=(64, 64))
    b = build("mobilenetv2", resolution=(64, 64))
    assert a.SerializeToString() == b.SerializeToString()


@pytest.mark.parametrize("name, resolution, out_shapes", [
    ("mobilenetv2", (64, 64), [(2, 1000)]),
    ("resnet50", (64, 64), [(2, 1000)]),
    ("yolov3-tiny", (128, 128), [(2, 255, 4, 4), (2, 255, 8, 8)]),
])
def test_runs_in_onnxruntime(name, resolution, out_shapes, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    path = save(name, tmp_path / "m.onnx", resolution=resolution)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).standard_normal((2, 3, *resolution), dtype=np.float32)
    outs = sess.run(None, {"input": x})
    assert [o.shape for o in outs] == out_shapes
    assert all(np.isfinite(o).all() for o in outs)


# ------------------------------------------------------------------------------ errors


def test_unknown_name():
    with pytest.raises(UserError, match="resnet5000.*known: .*yolov3"):
        build("resnet5000")


@pytest.mark.parametrize("name, kwargs", [
    ("yolov3", {"resolution": (417, 416)}),
    ("yolov3", {"resolution": (416, 400)}),
    ("yolov3-tiny", {"resolution": (100, 100)}),
    ("resnet50", {"resolution": (16, 224)}),
    ("resnet50", {"resolution": (224, 0)}),
    ("mobilenetv2", {"resolution": (224.0, 224)}),
    ("mobilenetv2", {"resolution": "224"}),
    ("resnet50", {"seq_len": 128}),
    ("bert-base", {"seq_len": 0}),
    ("bert-base", {"seq_len": 513}),
    ("bert-base", {"resolution": (224, 224)}),
])
def test_invalid_arguments(name, kwargs):
    with pytest.raises(UserError) as err:
        build(name, weights=False, **kwargs)
    assert "\n" not in str(err.value) and name in str(err.value)


def test_resolution_forms():
    for form in ("608x608", 608, [608, 608]):
        out = build("yolov3", resolution=form, weights=False).graph.output[0]
        assert [d.dim_value for d in out.type.tensor_type.shape.dim[2:]] == [19, 19]


def test_save_large_model_writes_external_weights(tmp_path, monkeypatch):
    import estimator.models as models

    monkeypatch.setattr(models, "MAX_EMBEDDED_BYTES", 0)  # pretend mobilenetv2 is > 1.8 GB
    path = save("mobilenetv2", tmp_path / "m.onnx", resolution=(64, 64))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx", "m.onnx.weights.bin"]
    onnx.checker.check_model(str(path))
    loaded = onnx.load(str(path))
    assert _split_params(loaded) == PARAMS["mobilenetv2"]
    assert all(len(t.raw_data) == 4 * math.prod(t.dims) for t in loaded.graph.initializer)
