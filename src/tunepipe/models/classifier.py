"""A text classifier: pretrained transformer encoder, masked mean pooling, dropout, linear head."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


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

    def layers(self) -> tuple[list[nn.Module], list[nn.Module]]:
        """(stem: the embeddings, the transformer layers in order), for train.freeze_layers."""
        for path in ("encoder.layer", "transformer.layer", "layers", "encoder.layers"):
            node: Any = self.encoder
            for part in path.split("."):
                node = getattr(node, part, None)
            if isinstance(node, nn.ModuleList):
                stem = getattr(self.encoder, "embeddings", None)
                if stem is None:
                    stem = self.encoder.get_input_embeddings()
                return [stem], list(node)
        raise ValueError(f"train.freeze_layers: cannot find the layers of {type(self.encoder).__name__}")
