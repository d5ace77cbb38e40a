"""The image classifier on the bundled ImageNet EfficientNet-Lite0 weights: frozen BatchNorm, real pretrained
features, and an ONNX export that matches it."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from tunepipe.errors import TunepipeError
from tunepipe.checkpoints import load_model, save_model
from tunepipe.modalities import get_modality
from tunepipe.optimize.onnx_export import export_onnx, ort_session, parity

CFG = {"pretrained": "efficientnet-lite0", "allow_download": False, "dropout": 0.1, "image_size": 32}
build_classifier = get_modality("image").build_classifier


@pytest.fixture(scope="module")
def model():
    return build_classifier(CFG, num_labels=3)


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    folder = tmp_path_factory.mktemp("imgs")
    rng = np.random.default_rng(0)
    paths = []
    for i in range(5):
        path = folder / f"{i}.png"
        Image.fromarray(rng.integers(0, 255, (28 + i, 30, 3), dtype=np.uint8)).save(path)
        paths.append(str(path))
    return get_modality("image").encode([{"path": path} for path in paths], [0, 1, 2, 0, 1], CFG, None)


def test_pretrained_weights_are_the_bundled_imagenet_ones(model):
    random_init = build_classifier(CFG, num_labels=3, pretrained_weights=False)
    stem = model.encoder._conv_stem.weight
    assert not torch.allclose(stem, random_init.encoder._conv_stem.weight)
    assert model.encoder._bn0.running_var.mean() != 1.0  # ImageNet statistics, not the initial ones


def test_batchnorm_stays_frozen_in_training_mode(model):
    model.train()
    assert model.training and model.dropout.training
    assert all(not m.training for m in model.encoder.modules() if isinstance(m, torch.nn.BatchNorm2d))
    before = model.encoder._bn1.running_mean.clone()
    model(torch.randint(0, 255, (4, 3, 32, 32), dtype=torch.uint8))
    assert torch.equal(before, model.encoder._bn1.running_mean)
    model.eval()


def test_images_are_decoded_resized_and_batched(images):
    batch = images.collate([images[i] for i in range(3)])
    assert batch["pixels"].shape == (3, 3, 32, 32) and batch["pixels"].dtype == torch.uint8
    assert batch["labels"].tolist() == [0, 1, 2]


def test_save_load_and_onnx_parity(tmp_path, model, images):
    save_model(tmp_path / "m.pt", model, model_cfg=CFG, label_names=["a", "b", "c"], modality="image",
               pruning_level={"name": "dense", "method": "dense", "sparsity": 0.0})
    loaded, payload = load_model(tmp_path / "m.pt")
    assert payload["modality"] == "image"
    path = tmp_path / "model.onnx"
    export_onnx(loaded, path, images.collate([images[0], images[1]]), opset=17, dynamo=False)
    report = parity(loaded, ort_session(path, threads=1), images, batch_size=4)
    assert report["prediction_agreement"] == 1.0 and report["max_abs_logit_diff"] < 1e-3


def test_unknown_image_model_is_a_clear_error():
    with pytest.raises(TunepipeError, match="not an image model tunepipe knows; use one of: efficientnet-lite0"):
        build_classifier(dict(CFG, pretrained="resnet50"), num_labels=2)
