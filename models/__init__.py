"""Reference models built from code: ResNet-50 v1.5 and v1, YOLOv3(-tiny), MobileNetV2, BERT-base,
and decoder language models with a KV cache: GPT-2, Llama 3.2 1B, Llama 3 8B (models/decoder.py), the
two Llamas also in onnxruntime-genai's int4 form (llama-3.2-1b-genai, llama-3-8b-genai).

    from estimator.models import BUILTINS, build, save
    model = build("yolov3", resolution=(1088, 1920), weights=False)   # graph-only, ~10 ms

Every model is built with onnx.helper and numpy only (no download, no torch), at opset 17 and
IR version 8, with a symbolic batch dimension "N" leading every graph input. Weights are random
(float32, numpy default_rng with a fixed seed per model: deterministic) or absent; the two genai
decoders store packed uint8 4-bit weights and float16 tensors, and import com.microsoft opset 1 too:

- ``weights=True``: initializers hold random data, small enough that outputs stay finite.
- ``weights=False`` (graph-only): initializers hold dims and data_type only; their data is
  marked external (``data_location`` EXTERNAL, ``external_data`` location
  ``<name>.weights.bin``, offset, length) and that file is never written. Such a model has
  every shape and every parameter count of the real one, builds in milliseconds, and can be
  analyzed statically, but not run. Load a saved one with
  ``onnx.load(path, load_external_data=False)``.

In both modes every initializer is a weight; constants that shape inference must read (Reshape
shapes, Unsqueeze axes, Clip bounds, Resize scales) are ``Constant`` nodes. BatchNormalization is
kept as separate nodes (an un-fused export), with weight, bias, running_mean and running_var
initializers; running mean/var are not trainable parameters and are reported apart.

Importing this package does not import onnx; ``build`` does.
"""

from __future__ import annotations

import importlib
import re
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Mapping

from estimator.errors import UserError

if TYPE_CHECKING:  # pragma: no cover
    import onnx

__all__ = ["BUILTINS", "BuiltinModel", "Figure", "build", "save", "MAX_EMBEDDED_BYTES"]

# Protobuf cannot serialize a message of 2 GB or more; above this, save() writes weights apart.
MAX_EMBEDDED_BYTES = int(1.8 * 1024 ** 3)


@dataclass(frozen=True)
class Figure:
    """One published figure a built-in model should match (or differ from, for a stated reason).

    quantity: "macs" (multiply-accumulates; vendor/Darknet "FLOPs" already halved),
    "params" (trainable), "params_total" (including BatchNorm running mean/var) or
    "max_activation_elems" (largest single activation tensor, per sample).
    at: the input the figure was published for ("224x224", "seq 128"...).
    """

    quantity: str
    value: float
    at: str
    source: str
    note: str = ""


@dataclass(frozen=True)
class BuiltinModel:
    """A reference model that `build` can construct."""

    name: str
    description: str
    default_resolution: tuple[int, int] | None   # (H, W) for vision models
    default_seq_len: int | None                  # for sequence models
    citation: str                                # the published figures to match, with source
    figures: tuple[Figure, ...] = ()
    resolution_multiple: int = 1                 # H and W must be multiples of this
    min_resolution: int = 32                     # and at least this

    @property
    def kind(self) -> str:
        return "sequence" if self.default_seq_len is not None else "vision"


_TV = "torchvision model docs (pytorch.org/vision/stable/models), ImageNet weights"
_DARKNET = "pjreddie.com/darknet/yolo (Redmon & Farhadi 2018, arXiv:1804.02767)"
_GENAI = ("github.com/microsoft/onnxruntime-genai src/python/py/models/builder.py, "
          "e.g. -p int4 -e cuda: int4 block 32 symmetric MatMulNBits, GroupQueryAttention with "
          "do_rotary, SkipSimplifiedLayerNormalization")
_CONTRIB = ("onnxruntime docs/ContribOperators.md (com.microsoft MatMulNBits, GroupQueryAttention, "
            "SkipSimplifiedLayerNormalization; SimplifiedLayerNormalization is registered in the default domain)")

BUILTINS: Mapping[str, BuiltinModel] = MappingProxyType({m.name: m for m in (
    BuiltinModel(
        name="resnet50",
        description="ResNet-50 v1.5 (torchvision layout: stride 2 on the 3x3 conv)",
        default_resolution=(224, 224), default_seq_len=None,
        citation=("torchvision ResNet50_Weights.IMAGENET1K_V1: 25,557,032 params, 4.09 GFLOPS "
                  "(torchvision counts MACs); conv+fc MACs at 224x224 = 4,089,184,256 (same as "
                  "onnx's light_resnet50 test model); He et al. 2016 (arXiv:1512.03385)"),
        figures=(Figure("params", 25_557_032, "224x224", _TV),
                 Figure("params_total", 25_610_152, "224x224", "onnx backend test data "
                        "light_resnet50.onnx", "includes 53,120 BN running mean/var values"),
                 Figure("macs", 4_089_184_256, "224x224", _TV, "conv + fc"),
                 Figure("macs", 3.5e9, "224x224", "inference-IP blog post (seed 004)",
                        "approximate; the post does not say which variant or what it counts"),
                 Figure("params", 22.7e6, "224x224", "inference-IP blog post (seed 004)",
                        "approximate; 23.5 M are conv weights, 2.05 M the fc layer")),
    ),
    BuiltinModel(
        name="resnet50-v1",
        description="ResNet-50 v1 (original: stride 2 on the first 1x1 conv of a block)",
        default_resolution=(224, 224), default_seq_len=None,
        citation=("He et al. 2016 (arXiv:1512.03385) Table 1: 3.8e9 multiply-adds at 224x224; "
                  "conv+fc MACs = 3,857,973,248; parameters as v1.5 (25,557,032)"),
        figures=(Figure("params", 25_557_032, "224x224", "He et al. 2016 / torchvision",
                        "the stride placement does not change any weight shape"),
                 Figure("macs", 3.8e9, "224x224", "He et al. 2016, Table 1", "rounded"),
                 Figure("macs", 3_857_973_248, "224x224", "conv + fc count of the v1 layout")),
    ),
    BuiltinModel(
        name="yolov3",
        description="YOLOv3 (Darknet-53 + 3 detection heads, 80 classes), Darknet yolov3.cfg",
        default_resolution=(416, 416), default_seq_len=None, resolution_multiple=32,
        citation=("Darknet yolov3.cfg at 416x416: 65.86 BFLOPs = 32.93 G MACs (" + _DARKNET +
                  "); 61,949,149 trainable params, 62,001,757 values in yolov3.weights incl. "
                  "BN running stats; MACs scale with pixels: ~397.5 G at 1088x1920, ~9.5 G at "
                  "224x224 (seed 004: ~400 G per 2 MP image, 9.5 G at 224x224)"),
        figures=(Figure("macs", 65.86e9 / 2, "416x416", _DARKNET, "65.86 BFLOPs / 2"),
                 Figure("params", 61_949_149, "416x416", "Darknet yolov3.cfg (as counted by "
                        "PyTorch ports: conv weights + BN scale/bias + head conv biases)"),
                 Figure("params_total", 62_001_757, "416x416", "yolov3.weights: "
                        "(248,007,048 bytes - 20-byte header) / 4"),
                 Figure("macs", 400e9, "1088x1920", "inference-IP blog post (seed 004)",
                        "approximate, 'per 2-megapixel image'"),
                 Figure("macs", 9.5e9, "224x224", "inference-IP blog post (seed 004)"),
                 Figure("max_activation_elems", 32 * 1088 * 1920, "1088x1920",
                        "inference-IP blog post (seed 004)",
                        "67 MB at 8 bits: 32 channels at full resolution (first conv)")),
    ),
    BuiltinModel(
        name="yolov3-tiny",
        description="YOLOv3-tiny (2 detection heads, 80 classes), Darknet yolov3-tiny.cfg",
        default_resolution=(416, 416), default_seq_len=None, resolution_multiple=32,
        citation=("Darknet yolov3-tiny.cfg at 416x416: 5.56 BFLOPs = 2.78 G MACs (" + _DARKNET +
                  "); 8,852,366 trainable params, 8,858,734 values in yolov3-tiny.weights "
                  "incl. BN running stats"),
        figures=(Figure("macs", 5.56e9 / 2, "416x416", _DARKNET, "5.56 BFLOPs / 2"),
                 Figure("params", 8_852_366, "416x416", "Darknet yolov3-tiny.cfg"),
                 Figure("params_total", 8_858_734, "416x416", "yolov3-tiny.weights: "
                        "(35,434,956 bytes - 20-byte header) / 4")),
    ),
    BuiltinModel(
        name="mobilenetv2",
        description="MobileNetV2 1.0 (torchvision layout, ReLU6 as Clip)",
        default_resolution=(224, 224), default_seq_len=None,
        citation=("torchvision MobileNet_V2_Weights.IMAGENET1K_V1: 3,504,872 params, 0.30 GFLOPS "
                  "(MACs); Sandler et al. 2018 (arXiv:1801.04381): 300 M multiply-adds, 3.4 M "
                  "params"),
        figures=(Figure("params", 3_504_872, "224x224", _TV),
                 Figure("macs", 300.8e6, "224x224", _TV, "0.30 GFLOPS in the docs"),
                 Figure("macs", 300e6, "224x224", "Sandler et al. 2018, ImageNet results table"),
                 Figure("params", 3.4e6, "224x224", "Sandler et al. 2018, ImageNet results table",
                        "rounded; counts conv + fc weights, not BN")),
    ),
    BuiltinModel(
        name="bert-base",
        description="BERT-base encoder (12 x 768, 12 heads) with pooler",
        default_resolution=None, default_seq_len=128,
        citation=("Devlin et al. 2019 (arXiv:1810.04805): 110 M params; Hugging Face "
                  "bert-base-uncased BertModel: 109,482,240 params with pooler"),
        figures=(Figure("params", 109_482_240, "seq 128", "Hugging Face bert-base-uncased "
                        "(BertModel with pooler)"),
                 Figure("params", 110e6, "seq 128", "Devlin et al. 2019", "rounded")),
    ),
    # Decoders with a KV cache (models/decoder.py): every dim symbolic (batch_size,
    # sequence_length, past_sequence_length, total_sequence_length), set when loaded; seq_len is
    # ignored by the builder. MACs per sample of one decode step (sequence 1) after P cached
    # tokens = every Linear's in*out (lm_head included) + layers*heads*head_dim*2*(P+1).
    BuiltinModel(
        name="gpt2",
        description="GPT-2 small decoder with KV cache (12 x 768, 12 heads, tied lm_head)",
        default_resolution=None, default_seq_len=1,
        citation=("Radford et al. 2019 (Language Models are Unsupervised Multitask Learners): 117 M "
                  "params (as first reported; 124 M as released); Hugging Face openai-community/gpt2 "
                  "config.json: 12 layers, n_embd 768, 12 heads, n_inner 3072, vocab 50257, 1024 "
                  "positions, tied lm_head: 124,439,808 params (GPT2LMHeadModel)"),
        figures=(Figure("params", 124_439_808, "seq 1", "Hugging Face openai-community/gpt2 "
                        "(GPT2LMHeadModel, tied lm_head)"),
                 Figure("macs", 123_550_464, "seq 1, past 0", "count from config.json: 12 x "
                        "7,077,888 (c_attn, c_proj, c_fc, c_proj) + 768 x 50257 (lm_head) + "
                        "12 x 12 x 64 x 2 x 1 (attention)")),
    ),
    BuiltinModel(
        name="llama-3.2-1b",
        description="Llama 3.2 1B decoder with KV cache (16 x 2048, 32/8 GQA heads, tied embeddings)",
        default_resolution=None, default_seq_len=1,
        citation=("Meta Llama 3.2 1B (Hugging Face meta-llama/Llama-3.2-1B config.json: 16 layers, "
                  "hidden 2048, 32 query / 8 KV heads of 64, FFN 8192, vocab 128256, tied embeddings, "
                  "131072 positions, rope_theta 500000): 1,235,814,400 params (1.23 B in Meta's model "
                  "card)"),
        figures=(Figure("params", 1_235_814_400, "seq 1", "Hugging Face meta-llama/Llama-3.2-1B "
                        "(LlamaForCausalLM, tied embeddings)"),
                 Figure("params", 1.23e9, "seq 1", "Meta Llama 3.2 model card", "rounded"),
                 Figure("macs", 1_235_812_352, "seq 1, past 0", "count from config.json: 16 x "
                        "60,817,408 (q, k, v, o, gate, up, down) + 2048 x 128256 (lm_head) + "
                        "16 x 32 x 64 x 2 x 1 (attention)")),
    ),
    BuiltinModel(
        name="llama-3-8b",
        description="Llama 3 8B decoder with KV cache (32 x 4096, 32/8 GQA heads, untied lm_head)",
        default_resolution=None, default_seq_len=1,
        citation=("Meta Llama 3 8B (Hugging Face meta-llama/Meta-Llama-3-8B config.json: 32 layers, "
                  "hidden 4096, 32 query / 8 KV heads of 128, FFN 14336, vocab 128256, untied lm_head, "
                  "RMSNorm eps 1e-5, rope_theta 500000, 8192 positions): 8,030,261,248 params (8.03 B)"),
        figures=(Figure("params", 8_030_261_248, "seq 1", "Hugging Face meta-llama/Meta-Llama-3-8B "
                        "(LlamaForCausalLM)"),
                 Figure("macs", 7_504_920_576, "seq 1, past 0", "count from config.json: 32 x "
                        "218,103,808 (q, k, v, o, gate, up, down) + 4096 x 128256 (lm_head) + "
                        "32 x 32 x 128 x 2 x 1 (attention)")),
    ),
    # The same two Llama configurations in onnxruntime-genai's int4 form (models/decoder.py,
    # form "genai"): MatMulNBits projections (4 bits, block 32, float16 scales),
    # GroupQueryAttention with fused rotary, (Skip)SimplifiedLayerNormalization; float16
    # embedding and lm_head. Same MACs as the plain form; the analyzer's params count stored
    # elements, and a packed uint8 holds two 4-bit weights.
    BuiltinModel(
        name="llama-3.2-1b-genai",
        description="Llama 3.2 1B in onnxruntime-genai's int4 form (MatMulNBits, GroupQueryAttention, fp16)",
        default_resolution=None, default_seq_len=1,
        citation=("Configuration as llama-3.2-1b (Hugging Face meta-llama/Llama-3.2-1B config.json); graph as "
                  "onnxruntime-genai's model builder writes it (" + _GENAI + "); ops as " + _CONTRIB + ". "
                  "1,235,814,400 logical params, stored as 973,078,528 linear weights in 486,539,264 packed "
                  "uint8 + 30,408,704 fp16 scales, 67,584 fp16 norm weights and a 262,668,288 fp16 tied "
                  "embedding: 779,683,840 elements, 1,072,828,416 bytes"),
        figures=(Figure("params", 1_235_814_400, "seq 1", "Hugging Face meta-llama/Llama-3.2-1B "
                        "(LlamaForCausalLM, tied embeddings)",
                        "logical weights; the graph stores 779,683,840 elements (4-bit pairs packed in uint8)"),
                 Figure("macs", 1_235_812_352, "seq 1, past 0", "count from config.json, as llama-3.2-1b",
                        "a MatMulNBits is rows x N x K MACs, as the MatMul it replaces")),
    ),
    BuiltinModel(
        name="llama-3-8b-genai",
        description="Llama 3 8B in onnxruntime-genai's int4 form (MatMulNBits, GroupQueryAttention, fp16)",
        default_resolution=None, default_seq_len=1,
        citation=("Configuration as llama-3-8b (Hugging Face meta-llama/Meta-Llama-3-8B config.json); graph as "
                  "onnxruntime-genai's model builder writes it (" + _GENAI + "); ops as " + _CONTRIB + ". "
                  "8,030,261,248 logical params, stored as 6,979,321,856 linear weights in 3,489,660,928 packed "
                  "uint8 + 218,103,808 fp16 scales, 266,240 fp16 norm weights and 1,050,673,152 fp16 "
                  "embedding + lm_head values: 4,758,704,128 elements, 6,027,747,328 bytes"),
        figures=(Figure("params", 8_030_261_248, "seq 1", "Hugging Face meta-llama/Meta-Llama-3-8B "
                        "(LlamaForCausalLM)",
                        "logical weights; the graph stores 4,758,704,128 elements (4-bit pairs packed in uint8)"),
                 Figure("macs", 7_504_920_576, "seq 1, past 0", "count from config.json, as llama-3-8b",
                        "a MatMulNBits is rows x N x K MACs, as the MatMul it replaces")),
    ),
)})

_MODULES = {
    "resnet50": ("resnet", {"v15": True}),
    "resnet50-v1": ("resnet", {"v15": False}),
    "yolov3": ("yolov3", {"tiny": False}),
    "yolov3-tiny": ("yolov3", {"tiny": True}),
    "mobilenetv2": ("mobilenetv2", {}),
    "bert-base": ("bert", {}),
    "gpt2": ("decoder", {"config": "gpt2"}),
    "llama-3.2-1b": ("decoder", {"config": "llama-3.2-1b"}),
    "llama-3-8b": ("decoder", {"config": "llama-3-8b"}),
    "llama-3.2-1b-genai": ("decoder", {"config": "llama-3.2-1b-genai"}),
    "llama-3-8b-genai": ("decoder", {"config": "llama-3-8b-genai"}),
}

MAX_SEQ_LEN = 512
_SYMBOL = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


def _lookup(name: str) -> BuiltinModel:
    try:
        return BUILTINS[name]
    except (KeyError, TypeError):
        raise UserError(f"unknown built-in model {name!r}; known: "
                        f"{', '.join(BUILTINS)}") from None


def _check_resolution(info: BuiltinModel, resolution) -> tuple[int, int]:
    if resolution is None:
        return info.default_resolution  # type: ignore[return-value]
    raw = resolution
    if isinstance(resolution, str):
        m = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", resolution)
        if not m:
            raise UserError(f"{info.name}: resolution {raw!r} is not HxW (e.g. 416x416)")
        resolution = (int(m.group(1)), int(m.group(2)))
    elif isinstance(resolution, int) and not isinstance(resolution, bool):
        resolution = (resolution, resolution)
    try:
        h, w = resolution
    except (TypeError, ValueError):
        raise UserError(f"{info.name}: resolution {raw!r} is not (H, W)") from None
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in (h, w)):
        raise UserError(f"{info.name}: resolution {raw!r} must be two integers (H, W)")
    if h < info.min_resolution or w < info.min_resolution:
        raise UserError(f"{info.name}: resolution {h}x{w} is too small "
                        f"(H and W must be at least {info.min_resolution})")
    k = info.resolution_multiple
    if h % k or w % k:
        raise UserError(f"{info.name}: resolution {h}x{w} is not valid: H and W must be "
                        f"multiples of {k} (e.g. {max(k, h // k * k)}x{max(k, w // k * k)})")
    return h, w


def _check_seq_len(info: BuiltinModel, seq_len) -> int | str:
    if seq_len is None:
        return info.default_seq_len  # type: ignore[return-value]
    if isinstance(seq_len, str):
        if seq_len.strip().isdigit():
            seq_len = int(seq_len)
        elif _SYMBOL.match(seq_len) and seq_len != "N":
            return seq_len  # a symbolic sequence dimension
        else:
            raise UserError(f"{info.name}: seq_len {seq_len!r} is neither an integer nor a "
                            "symbolic dimension name (other than 'N')")
    if isinstance(seq_len, bool) or not isinstance(seq_len, int):
        raise UserError(f"{info.name}: seq_len {seq_len!r} must be an integer")
    if not 1 <= seq_len <= MAX_SEQ_LEN:
        raise UserError(f"{info.name}: seq_len {seq_len} is out of range 1..{MAX_SEQ_LEN}")
    return seq_len


def build(name: str, *, resolution=None, seq_len=None, weights: bool = True) -> "onnx.ModelProto":
    """Build the built-in model `name` as an onnx.ModelProto.

    resolution: (H, W) for vision models (an int means square; "HxW" is accepted); default
    `BUILTINS[name].default_resolution`. seq_len: for bert-base, 1..512 (default 128), or a
    symbol name such as "S" for a symbolic sequence dimension. weights: random data (True) or
    graph-only external placeholders (False). Raises UserError for an unknown name or an
    argument the model cannot take.
    """
    info = _lookup(name)
    module, kwargs = _MODULES[info.name]
    builder = importlib.import_module(f"{__name__}.{module}").build
    if info.kind == "vision":
        if seq_len is not None:
            raise UserError(f"{info.name} takes a resolution, not a sequence length")
        return builder(info.name, _check_resolution(info, resolution), weights=bool(weights),
                       **kwargs)
    if resolution is not None:
        raise UserError(f"{info.name} takes a sequence length, not a resolution")
    return builder(info.name, _check_seq_len(info, seq_len), weights=bool(weights), **kwargs)


def save(name: str, path, *, resolution=None, seq_len=None, weights: bool = True) -> Path:
    """Build `name` and write it to `path`; returns the path.

    With weights, they are embedded in the file when the model is smaller than 1.8 GB, and
    otherwise written next to it as ``<file name>.weights.bin`` (ONNX external data).
    Graph-only (weights=False): only the .onnx file is written; its initializers point to a
    ``<name>.weights.bin`` that does not exist.
    """
    model = build(name, resolution=resolution, seq_len=seq_len, weights=weights)
    path = Path(path)
    try:
        if weights and model.ByteSize() >= MAX_EMBEDDED_BYTES:
            import onnx

            onnx.save_model(model, str(path), save_as_external_data=True,
                            all_tensors_to_one_file=True, location=f"{path.name}.weights.bin",
                            size_threshold=1024)
        else:
            path.write_bytes(model.SerializeToString())
    except OSError as exc:
        raise UserError(f"cannot write {path}: {exc.strerror or exc}") from None
    return path
