"""A text classifier: pretrained transformer encoder, masked mean pooling, dropout, linear head."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from tunepipe.models.backbone import load_encoder


class TextClassifier(nn.Module):
    input_names = ("input_ids", "attention_mask")

    def __init__(self, encoder: nn.Module, num_labels: int, dropout: float) -> None:
        super().__init__()
        self.encoder = encoder
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(encoder.config.hidden_size, num_labels)

    def embed(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.head(self.dropout(self.embed(input_ids, attention_mask)))


def build_classifier(model_cfg: dict[str, Any], num_labels: int, pretrained_weights: bool = True, modality: str = "text") -> nn.Module:
    """The classifier for a modality; every one has `input_names`, `embed(**inputs)`, `head` and `encoder`."""
    if modality == "image":
        from tunepipe.models.image_classifier import build_image_classifier

        return build_image_classifier(model_cfg, num_labels, pretrained_weights)
    encoder = load_encoder(model_cfg["pretrained"], model_cfg["allow_download"], pretrained_weights=pretrained_weights)
    return TextClassifier(encoder, num_labels, model_cfg["dropout"])


def save_model(path, model: nn.Module, model_cfg: dict, label_names: list[str], modality: str = "text", **extra: Any) -> None:
    """A portable file: the state dict plus what is needed to rebuild the module (used by prune -> export)."""
    torch.save({"model_cfg": model_cfg, "label_names": label_names, "modality": modality, "state_dict": model.state_dict(), **extra}, path)


def load_model(path) -> tuple[nn.Module, dict[str, Any]]:
    payload = torch.load(path, map_location="cpu", weights_only=True)
    modality = payload.get("modality", "text")
    model = build_classifier(payload["model_cfg"], len(payload["label_names"]), pretrained_weights=False, modality=modality)
    if payload.get("structure"):  # structurally pruned: give the modules their pruned shapes first
        from tunepipe.optimize.pruning import restore_structure

        restore_structure(model, payload["structure"], payload["state_dict"])
    model.load_state_dict(payload["state_dict"])
    model.eval()
    return model, dict(payload, modality=modality)


def load_checkpoint(path) -> tuple[nn.Module, dict[str, Any]]:
    """The fine-tuned classifier from a Lightning checkpoint written by the train stage."""
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    hparams = checkpoint["hyper_parameters"]
    modality = hparams.get("modality", "text")
    model = build_classifier(hparams["model_cfg"], len(hparams["label_names"]), pretrained_weights=False, modality=modality)
    state = {key.removeprefix("model."): value for key, value in checkpoint["state_dict"].items() if key.startswith("model.")}
    model.load_state_dict(state)
    model.eval()
    return model, {"model_cfg": hparams["model_cfg"], "label_names": hparams["label_names"], "modality": modality}
