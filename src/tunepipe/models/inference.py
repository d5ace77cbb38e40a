"""Batched inference for any tunepipe classifier: logits in the original order of the rows."""

from __future__ import annotations

import torch
from torch.utils.data import Dataset

from tunepipe.data.datamodule import BucketBatchSampler


def model_inputs(model: torch.nn.Module, batch: dict[str, torch.Tensor], device: str | torch.device | None = None) -> dict[str, torch.Tensor]:
    """The tensors of a batch that the model takes (by its `input_names`), on `device` if given."""
    return {name: batch[name] if device is None else batch[name].to(device) for name in model.input_names}


@torch.inference_mode()
def predict_logits(model: torch.nn.Module, dataset: Dataset, batch_size: int, device: str | torch.device = "cpu",
                   precision: str = "32-true") -> torch.Tensor:
    """`precision` "bf16-mixed": matrix products in bfloat16 under autocast (CPUs with bf16 units such as AMX, and
    GPUs), logits back in float32; "32-true" computes every number in float32 (reproducible across machines)."""
    device = torch.device(device)
    model = model.to(device).eval()
    logits = torch.empty((len(dataset), model.head.out_features), dtype=torch.float32)
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16-mixed"):
        for batch_indices in BucketBatchSampler(dataset.lengths(), batch_size, seed=0, shuffle=False):
            batch = dataset.collate([dataset[i] for i in batch_indices])
            logits[batch_indices] = model(**model_inputs(model, batch, device)).float().cpu()
    return logits


def pick_device(preferred: str = "auto") -> torch.device:
    if preferred in ("auto", "gpu", "cuda") and torch.cuda.is_available():
        return torch.device("cuda")
    return torch.device("cpu")
