"""Data-aware defaults: the `auto` values of `model.max_length` and `train.max_epochs`, made concrete from the
training rows. Pure functions of the data and the params (deterministic), used by training before it encodes.

- `model.max_length: auto`: the 95th percentile of the training texts' token lengths, rounded up to a multiple
  of 8, at least 16, at most the model's own limit and `MAX_LENGTH_BUDGET` (attention costs grow with the
  square of the length: past it, say what you want explicitly). The share of texts longer than the chosen
  length (truncated) is reported either way.
- `train.max_epochs: auto`: enough epochs for at least `train.min_steps` optimizer steps, between 1 and
  `MAX_AUTO_EPOCHS`: a few hundred rows get many short epochs, a large dataset one; early stopping does the rest.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

#: Percentile of the training texts' token lengths that `model.max_length: auto` covers.
LENGTH_PERCENTILE = 95
#: The longest `auto` length: a compute budget (MiniLM at 256 tokens is about 6x the cost of 48).
MAX_LENGTH_BUDGET = 256
MIN_AUTO_LENGTH = 16
#: The most epochs `train.max_epochs: auto` picks.
MAX_AUTO_EPOCHS = 20


def token_length_facts(lengths: Sequence[int], max_length: int) -> dict[str, Any]:
    """How many texts `max_length` truncates, with the length percentiles behind the choice."""
    values = np.asarray(lengths, dtype=np.int64)
    truncated = int((values > max_length).sum()) if len(values) else 0
    percentiles = {f"p{q}": int(np.percentile(values, q)) if len(values) else 0 for q in (50, LENGTH_PERCENTILE, 99)}
    return {"max_length": int(max_length), "texts": int(len(values)), "truncated_texts": truncated,
            "truncated_share": round(truncated / len(values), 6) if len(values) else 0.0, "longest": int(values.max()) if len(values) else 0,
            **percentiles}


def auto_max_length(lengths: Sequence[int], model_limit: int) -> int:
    """The `auto` token length for texts of these (untruncated) token lengths and a model that takes `model_limit`."""
    cap = max(MIN_AUTO_LENGTH, min(int(model_limit), MAX_LENGTH_BUDGET))
    if not len(lengths):
        return min(cap, 64)
    covering = int(math.ceil(float(np.percentile(np.asarray(lengths), LENGTH_PERCENTILE))))
    return int(min(cap, max(MIN_AUTO_LENGTH, 8 * math.ceil(covering / 8))))


def steps_per_epoch(rows: int, batch_size: int, accumulate_grad_batches: int, processes: int = 1) -> int:
    """Optimizer steps one process takes in an epoch over `rows` training rows (at least 1)."""
    batches = math.ceil(rows / max(1, processes) / batch_size) if rows else 1
    return max(1, batches // max(1, accumulate_grad_batches))


def auto_max_epochs(rows: int, batch_size: int, accumulate_grad_batches: int, min_steps: int, processes: int = 1) -> int:
    """Epochs for at least `min_steps` optimizer steps over `rows` training rows (between 1 and MAX_AUTO_EPOCHS)."""
    return int(min(MAX_AUTO_EPOCHS, max(1, math.ceil(min_steps / steps_per_epoch(rows, batch_size, accumulate_grad_batches, processes)))))


def resolve_max_epochs(train_cfg: dict[str, Any], rows: int, processes: int = 1) -> tuple[dict[str, Any], dict[str, Any]]:
    """`train_cfg` with a concrete `max_epochs`, and what was decided (for the summary and the report)."""
    if train_cfg["max_epochs"] != "auto":
        return train_cfg, {"value": train_cfg["max_epochs"], "auto": False}
    epochs = auto_max_epochs(rows, train_cfg["batch_size"], train_cfg["accumulate_grad_batches"], train_cfg["min_steps"], processes)
    steps = steps_per_epoch(rows, train_cfg["batch_size"], train_cfg["accumulate_grad_batches"], processes)
    return {**train_cfg, "max_epochs": epochs}, {"value": epochs, "auto": True, "min_steps": train_cfg["min_steps"],
                                                 "steps_per_epoch": steps, "rows": rows}
