"""Section 4: the training curves (per step: results/train/steps.csv; per epoch: history.csv), the per-epoch table
and the run's summary."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tunepipe.report.sections import as_dict, as_list

HISTORY_COLUMNS = ("epoch", "train_loss", "val_loss", "val_accuracy", "val_f1_macro")


def training(inputs: Mapping[str, Any]) -> dict[str, Any]:
    from tunepipe.report import plots

    train = as_dict(inputs.get("train"))
    history = [row for row in as_list(inputs.get("train_history")) if isinstance(row, dict)]
    steps = [row for row in as_list(inputs.get("train_steps")) if isinstance(row, dict)]
    epoch_ends: dict[Any, float] = {}
    for row in steps:
        if isinstance(row.get("step"), (int, float)):
            epoch_ends[row.get("epoch")] = max(float(row["step"]), epoch_ends.get(row.get("epoch"), 0.0))
    return {
        "figure": plots.training_curves(history, train.get("best_epoch"), train.get("monitor")) if history else None,
        "step_figure": plots.step_curves(steps, sorted(epoch_ends.values())) if steps else None,
        "steps": len(steps),
        "history": [{key: row.get(key) for key in HISTORY_COLUMNS} for row in history],
        **{key: train.get(key) for key in (
            "best_epoch", "monitor", "best_score", "epochs_run", "device", "accelerator", "precision",
            "wall_seconds", "train_rows", "samples_per_second", "pretrained", "parameters",
        )},
    }
