"""Global magnitude pruning of the encoder's Linear and Conv2d weights (torch.nn.utils.prune), made permanent.

Unstructured sparsity shrinks a compressed model but gives no speed-up in dense runtimes; structured
pruning is what buys latency (a later stage).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn
from torch.nn.utils import prune


def prunable_weights(model: nn.Module) -> list[tuple[nn.Module, str]]:
    """Every Linear and Conv2d weight of the encoder; the small task head is left dense."""
    encoder = getattr(model, "encoder", model)
    return [(module, "weight") for module in encoder.modules() if isinstance(module, (nn.Linear, nn.Conv2d))]


def magnitude_prune(model: nn.Module, sparsity: float) -> nn.Module:
    """Return a copy with the `sparsity` fraction of smallest-magnitude encoder Linear weights set to zero."""
    pruned = copy.deepcopy(model)
    targets = prunable_weights(pruned)
    prune.global_unstructured(targets, pruning_method=prune.L1Unstructured, amount=sparsity)
    for module, name in targets:
        prune.remove(module, name)
    return pruned


def sparsity_report(model: nn.Module) -> dict[str, Any]:
    weights = [getattr(module, name) for module, name in prunable_weights(model)]
    total = sum(w.numel() for w in weights)
    zeros = sum(int((w == 0).sum()) for w in weights)
    all_params = sum(p.numel() for p in model.parameters())
    all_zeros = sum(int((p == 0).sum()) for p in model.parameters())
    return {
        "actual_sparsity": round(zeros / total, 6) if total else 0.0,
        "nonzero_params": int(all_params - all_zeros),
        "total_params": int(all_params),
    }


def select_level(levels: Sequence[dict[str, Any]], max_accuracy_drop: float) -> float:
    """The sparsest level whose validation accuracy is within `max_accuracy_drop` of the dense model's."""
    dense = next(level for level in levels if level["sparsity"] == 0.0)
    ok = [level for level in levels if level["val_accuracy"] >= dense["val_accuracy"] - max_accuracy_drop - 1e-12]
    return max(level["sparsity"] for level in ok)
