"""Pinned end-to-end totals of the reference models, each next to the published figure it
must agree with. MACs are multiply-accumulates (FLOPs = 2 x MACs)."""

import os

import pytest

from estimator import api

from conftest import LIGHT_DIR

# BatchNorm running mean/var elements (2 per BN channel), which published "trainable params"
# exclude and our params include (BatchNorm's four vectors are counted).
BN_RUNNING = {"resnet50": 53_120, "resnet50-v1": 53_120, "yolov3": 52_608, "yolov3-tiny": 6_368, "mobilenetv2": 34_112}


@pytest.mark.parametrize("name, kw, macs, trainable, cite", [
    # torchvision resnet50 (v1.5): 25,557,032 trainable params; ~4.09 GMACs at 224x224
    # (torchvision model docs list 4.09 GFLOPS, counted as MACs by fvcore).
    ("resnet50", {}, 4_089_184_256, 25_557_032, "torchvision ResNet50_Weights.IMAGENET1K_V1: 25,557,032 params, 4.09 G"),
    # ResNet-50 v1 (He et al. 2016, Table 1: 3.8 x 10^9 FLOPs, i.e. multiply-adds)
    ("resnet50-v1", {}, 3_857_973_248, 25_557_032, "He et al. 2016: 3.8 G multiply-adds"),
    # Darknet yolov3.cfg at 416x416: 65.864 BFLOPs (2 per MAC) => 32.93 G MACs; 61.9 M params
    ("yolov3", {"resolution": (416, 416)}, 32_932_037_632, 61_949_149, "Darknet: 65.86 BFLOPs, yolov3.weights 61.9 M"),
    # Darknet yolov3-tiny.cfg at 416x416: 5.56 BFLOPs => 2.78 G MACs
    ("yolov3-tiny", {}, 2_782_480_896, 8_852_366, "Darknet yolov3-tiny: 5.56 BFLOPs"),
    # torchvision mobilenet_v2: 3,504,872 params, 0.30 G MACs (Sandler et al. 2018: 300 M multiply-adds)
    ("mobilenetv2", {}, 300_774_272, 3_504_872, "torchvision MobileNet_V2: 3,504,872 params; Sandler et al.: 300 M MAdds"),
    # BERT-base (Devlin et al. 2019: 110 M; Hugging Face bert-base-uncased with pooler: 109,482,240)
    ("bert-base", {}, 11_174_215_680, 109_482_240, "HF bert-base-uncased: 109,482,240 params"),
])
def test_reference_model_totals(name, kw, macs, trainable, cite):
    t = api.analyze(name, **kw).totals
    assert t.macs == macs, cite
    assert t.params == trainable + BN_RUNNING.get(name, 0), cite
    assert not t.unsupported_ops and not t.uncosted_ops


def test_yolov3_camera_resolution_matches_seed():
    # Seed 004: ~400 G MACs per 2-megapixel image; largest activation 32 channels at full
    # resolution = 67 MB at 8-bit.
    t = api.analyze("yolov3", resolution=(1088, 1920), precision="int8").totals
    assert abs(t.macs - 397.5e9) < 0.01 * 397.5e9
    assert t.max_activation_elems == 32 * 1088 * 1920 == 66_846_720
    assert t.max_activation_bytes == 66_846_720  # int8: one byte each


def test_yolov3_macs_grow_linearly_with_pixels():
    a = api.analyze("yolov3", resolution=(224, 224)).totals.macs
    b = api.analyze("yolov3", resolution=(448, 448)).totals.macs
    assert b == 4 * a  # every layer's MACs scale with H*W (pure conv/upsample network)
    assert abs(a - 9.5e9) < 0.01 * 9.5e9  # seed 004: 9.5 billion at 224x224


def test_resnet50_largest_activation_seed():
    # Seed 004: largest intermediate activation 112x112x64 = 0.8 MB at 8 bits.
    t = api.analyze("resnet50", precision="int8").totals
    assert t.max_activation_elems == 112 * 112 * 64
    assert t.max_activation_bytes == 802_816


def test_light_resnet50_constantofshape_weights():
    # The onnx package's "light" model builds all its weights with ConstantOfShape;
    # onnx-tool reports 1,792 params on it.
    t = api.analyze(os.path.join(LIGHT_DIR, "light_resnet50.onnx")).totals
    assert t.macs == 4_089_184_256
    assert t.params == 25_610_152


@pytest.mark.parametrize("name", ["light_densenet121", "light_inception_v1", "light_squeezenet", "light_vgg19",
                                  "light_bvlc_alexnet", "light_zfnet512", "light_shufflenet", "light_inception_v2"])
def test_light_models_have_weights(name):
    t = api.analyze(os.path.join(LIGHT_DIR, name + ".onnx")).totals
    assert t.params > 100_000  # weights come from ConstantOfShape: never ~0
    assert t.macs > 10_000_000
    assert not t.uncosted_ops


def test_batch_scales_costs():
    one = api.analyze("resnet50", batch=1).totals
    eight = api.analyze("resnet50", batch=8).totals
    assert eight.macs == 8 * one.macs
    assert eight.params == one.params
    assert eight.max_activation_elems == 8 * one.max_activation_elems
