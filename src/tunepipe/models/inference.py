"""Batched inference for a TextClassifier: class probabilities in the original order of the texts."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from tunepipe.data.datamodule import BucketBatchSampler, EncodedTexts, pad_batch


@torch.inference_mode()
def predict_logits(model: torch.nn.Module, tokenizer, texts: Sequence[str], max_length: int, batch_size: int, device: str | torch.device = "cpu") -> torch.Tensor:
    dataset = EncodedTexts(texts, None, tokenizer, max_length)
    model = model.to(device).eval()
    logits = torch.empty((len(dataset), model.head.out_features), dtype=torch.float32)
    for batch_indices in BucketBatchSampler(dataset.lengths(), batch_size, seed=0, shuffle=False):
        batch = pad_batch([dataset[i] for i in batch_indices], dataset.pad_id)
        out = model(batch["input_ids"].to(device), batch["attention_mask"].to(device))
        logits[batch_indices] = out.float().cpu()
    return logits


def pick_device(preferred: str = "auto") -> torch.device:
    if preferred in ("auto", "gpu", "cuda") and torch.cuda.is_available():
        return torch.device("cuda")
    return torch.device("cpu")
