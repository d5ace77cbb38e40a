"""Learning-rate schedules referenced from params by `_target_` (built with hydra.utils.instantiate)."""

from __future__ import annotations

import math

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR


def linear_warmup_decay(optimizer: Optimizer, total_steps: int, warmup_fraction: float = 0.1) -> LambdaLR:
    """Rise linearly over the first `warmup_fraction` of steps, then fall linearly to zero."""
    warmup = max(1, int(round(warmup_fraction * total_steps)))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup))

    return LambdaLR(optimizer, factor)


def cosine_warmup(optimizer: Optimizer, total_steps: int, warmup_fraction: float = 0.1, min_factor: float = 0.0) -> LambdaLR:
    """Rise linearly over the first `warmup_fraction` of steps, then follow a half cosine down to `min_factor`."""
    warmup = max(1, int(round(warmup_fraction * total_steps)))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = min(1.0, (step - warmup) / max(1, total_steps - warmup))
        return min_factor + (1.0 - min_factor) * 0.5 * (1.0 + math.cos(math.pi * progress))

    return LambdaLR(optimizer, factor)


def constant(optimizer: Optimizer, total_steps: int) -> LambdaLR:
    return LambdaLR(optimizer, lambda step: 1.0)
