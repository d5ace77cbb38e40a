"""Data-aware defaults: the `auto` values of `model.max_length` and `train.max_epochs`, made concrete from the
training rows. Pure functions of the data and the params (deterministic), used by training before it encodes.

- `model.max_length: auto`: the 95th percentile of the training texts' token lengths, rounded up to a multiple
  of 8, at least 16, at most the model's own limit and `MAX_LENGTH_BUDGET` (attention costs grow with the
  square of the length: past it, say what you want explicitly). The share of texts longer than the chosen
  length (truncated) is reported either way.
- `train.max_epochs: auto`: enough epochs for at least `train.min_steps` optimizer steps, between 1 and
  `MAX_AUTO_EPOCHS`: a few hundred rows get many short epochs, a large dataset one; early stopping does the rest.
  With `train.max_steps`, the epochs that many steps take (the steps decide).
- `train.val_check_interval: auto`: an epoch of at most `LONG_EPOCH_STEPS` optimizer steps is validated at its
  end, as always; a longer one several times (`auto_val_check_interval`), so early stopping and the best
  checkpoint are not one decision per hour. A run that `train.max_steps` ends before its first epoch does is
  validated at least at its end.
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
    if train_cfg.get("max_steps"):
        steps = steps_per_epoch(rows, train_cfg["batch_size"], train_cfg["accumulate_grad_batches"], processes)
        epochs = math.ceil(train_cfg["max_steps"] / steps)
        return {**train_cfg, "max_epochs": epochs}, {"value": epochs, "auto": True, "max_steps": train_cfg["max_steps"], "steps_per_epoch": steps,
                                                     "rows": rows}
    epochs = auto_max_epochs(rows, train_cfg["batch_size"], train_cfg["accumulate_grad_batches"], train_cfg["min_steps"], processes)
    steps = steps_per_epoch(rows, train_cfg["batch_size"], train_cfg["accumulate_grad_batches"], processes)
    return {**train_cfg, "max_epochs": epochs}, {"value": epochs, "auto": True, "min_steps": train_cfg["min_steps"],
                                                 "steps_per_epoch": steps, "rows": rows}


#: An epoch of at most this many optimizer steps is validated once, at its end (`train.val_check_interval: auto`).
LONG_EPOCH_STEPS = 1000
#: The most validations `auto` puts in one epoch.
MAX_CHECKS_PER_EPOCH = 10


def auto_val_check_interval(steps_per_epoch: int, max_steps: int | None, train_rows: int, val_rows: int) -> int | None:
    """Optimizer steps between validations for `train.val_check_interval: auto`; None: at each epoch's end.

    The stretch that matters is an epoch, or the whole run when `max_steps` ends it sooner. Up to LONG_EPOCH_STEPS
    steps it is validated at its end. A longer one gets one validation per LONG_EPOCH_STEPS steps, at least 2 and at
    most MAX_CHECKS_PER_EPOCH, and no more than keep validation's cost to about a third of training's (a validation
    row is a forward pass, a third of a training row's work: at most train_rows / (3 x val_rows) checks an epoch)."""
    stretch = steps_per_epoch if not max_steps else min(steps_per_epoch, max_steps)
    if stretch <= LONG_EPOCH_STEPS:
        return None if not max_steps or max_steps >= steps_per_epoch else max_steps
    affordable = train_rows // max(1, 3 * val_rows)
    checks = max(2, min(MAX_CHECKS_PER_EPOCH, stretch // LONG_EPOCH_STEPS, affordable))
    return math.ceil(stretch / checks)


def resolve_val_check_interval(train_cfg: dict[str, Any], train_rows: int, val_rows: int, processes: int = 1) -> tuple[dict[str, Any], dict[str, Any]]:
    """`train_cfg` with `val_check_interval` as optimizer steps between validations (None: at each epoch's end)."""
    wanted = train_cfg.get("val_check_interval")
    steps = steps_per_epoch(train_rows, train_cfg["batch_size"], train_cfg["accumulate_grad_batches"], processes)
    interval = auto_val_check_interval(steps, train_cfg.get("max_steps"), train_rows, val_rows) if wanted == "auto" else wanted
    facts = {"value": interval if interval is not None else "epoch end", "auto": wanted == "auto", "steps_per_epoch": steps}
    return {**train_cfg, "val_check_interval": interval}, facts
