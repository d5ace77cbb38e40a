"""Section 4: the training curves (per step: results/train/steps.csv; per epoch: history.csv), the per-epoch table
and the run's summary."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tunepipe.report.sections import as_dict, as_list, shown
from tunepipe.tasks._report import ReportView

#: The history table's first columns; the task's validation metrics (`val_<name>`) follow.
HISTORY_COLUMNS = ("epoch", "train_loss", "val_loss")


def training(inputs: Mapping[str, Any], val_metrics: tuple[str, ...], view: ReportView) -> dict[str, Any]:
    """`val_metrics`: the task's validation metrics (history.csv's `val_<name>` columns), named as the task names them."""
    from tunepipe.report import plots

    train = as_dict(inputs.get("train"))
    metrics = [shown(view, name) for name in val_metrics]
    history = [row for row in as_list(inputs.get("train_history")) if isinstance(row, dict)]
    steps = [row for row in as_list(inputs.get("train_steps")) if isinstance(row, dict)]
    epoch_ends: dict[Any, float] = {}
    for row in steps:
        if isinstance(row.get("step"), (int, float)):
            epoch_ends[row.get("epoch")] = max(float(row["step"]), epoch_ends.get(row.get("epoch"), 0.0))
    return {
        "figure": plots.training_curves(history, train.get("best_epoch"), train.get("monitor"),
                                        [(f"val_{m.key}", f"val {m.short}") for m in metrics]) if history else None,
        "step_figure": plots.step_curves(steps, sorted(epoch_ends.values())) if steps else None,
        "steps": len(steps),
        "val_metrics": [{"key": f"val_{m.key}", "name": f"Val {m.abbr or m.short}", "kind": m.kind} for m in metrics],
        "history": [{key: row.get(key) for key in HISTORY_COLUMNS + tuple(f"val_{m.key}" for m in metrics)} for row in history],
        **{key: train.get(key) for key in (
            "best_epoch", "monitor", "best_score", "epochs_run", "device", "accelerator", "precision",
            "wall_seconds", "train_rows", "samples_per_second", "pretrained", "parameters",
            "trainable_parameters", "trainable_share", "adapter", "gradient_checkpointing", "peak_device_memory_mb",
        )},
    }
