"""A text classifier: pretrained transformer backbone, pooling (masked mean for an encoder, last real token for a decoder
LLM), dropout, linear head."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


class TextClassifier(nn.Module):
    input_names = ("input_ids", "attention_mask")

    def __init__(self, encoder: nn.Module, num_labels: int, dropout: float, pooling: str = "mean") -> None:
        """`pooling`: `mean` of the real tokens (encoders), or the `last` real token (decoders: the only one that attends
        to the whole text; rows are padded on the right)."""
        super().__init__()
        self.encoder = encoder
        self.pooling = pooling
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(encoder.config.hidden_size, num_labels)

    def embed(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        if self.pooling == "last":
            last = (attention_mask.sum(dim=1) - 1).clamp(min=0)
            return hidden.gather(1, last.view(-1, 1, 1).expand(-1, 1, hidden.shape[-1])).squeeze(1)
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.head(self.dropout(self.embed(input_ids, attention_mask)))

    def layers(self) -> tuple[list[nn.Module], list[nn.Module]]:
        """(stem: the embeddings, the transformer layers in order), for train.freeze_layers."""
        for path in ("encoder.layer", "transformer.layer", "layers", "encoder.layers", "h"):
            node: Any = self.encoder
            for part in path.split("."):
                node = getattr(node, part, None)
            if isinstance(node, nn.ModuleList):
                stem = getattr(self.encoder, "embeddings", None)
                if stem is None:
                    stem = self.encoder.get_input_embeddings()
                return [stem], list(node)
        raise ValueError(f"train.freeze_layers: cannot find the layers of {type(self.encoder).__name__}")
