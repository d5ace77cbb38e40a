"""Regression metrics with torchmetrics (predicted values against true values), with bootstrap intervals and the error
by target range, shared by the regression task's scores and its test evaluation."""

from __future__ import annotations

from typing import Any

import torch
import torchmetrics

from tunepipe.evaluation import percentile_interval

#: The flat metrics of one model (results/evaluate/metrics.json keys).
SCALARS = ("mae", "rmse", "r2", "pearson", "spearman")
CI_NAMES = ("mae", "rmse", "r2")
#: Quantile bins of the true target the error is broken down by.
RANGE_BINS = 5
MAX_POINTS = 1000


def headline_scores(values: torch.Tensor, targets: torch.Tensor) -> dict[str, float]:
    values, targets = values.double().flatten(), targets.double().flatten()
    if len(values) < 2:
        return {name: float("nan") for name in SCALARS}
    scores = {
        "mae": torchmetrics.functional.mean_absolute_error(values, targets),
        "rmse": torch.sqrt(torchmetrics.functional.mean_squared_error(values, targets)),
        "r2": torchmetrics.functional.r2_score(values, targets),
        "pearson": torchmetrics.functional.pearson_corrcoef(values, targets),
        "spearman": torchmetrics.functional.spearman_corrcoef(values, targets),
    }
    return {name: round(float(value), 6) for name, value in scores.items()}


def by_range(values: torch.Tensor, targets: torch.Tensor, bins: int = RANGE_BINS) -> list[dict[str, Any]]:
    """The error in each quantile bin of the true target: rows, range, MAE, mean signed error (bias)."""
    values, targets = values.double().flatten(), targets.double().flatten()
    if not len(targets):
        return []
    order = torch.argsort(targets, stable=True)
    rows = []
    for number, chunk in enumerate(torch.tensor_split(order, min(bins, len(order)))):
        errors = values[chunk] - targets[chunk]
        rows.append({"bin": number, "low": round(float(targets[chunk].min()), 6), "high": round(float(targets[chunk].max()), 6),
                     "rows": int(len(chunk)), "mae": round(float(errors.abs().mean()), 6), "bias": round(float(errors.mean()), 6)})
    return rows


def evaluate_numbers(values: torch.Tensor, targets: torch.Tensor, *, resamples: int, seed: int, level: float = 0.95) -> dict[str, Any]:
    """Everything evaluate reports for one regression model: flat scalars (with intervals), error by range, and points."""
    values, targets = values.double().flatten(), targets.double().flatten()
    scalars = headline_scores(values, targets)
    generator = torch.Generator().manual_seed(seed)
    samples: dict[str, list[float]] = {name: [] for name in CI_NAMES}
    for _ in range(resamples if len(targets) > 1 else 0):
        index = torch.randint(len(targets), (len(targets),), generator=generator)
        scores = headline_scores(values[index], targets[index])
        for name in CI_NAMES:
            samples[name].append(scores[name])
    for name, drawn in samples.items():
        if drawn:
            scalars[f"{name}_ci_low"], scalars[f"{name}_ci_high"] = percentile_interval(drawn, level)
    step = max(1, len(targets) // MAX_POINTS)
    points = [{"true": round(float(t), 6), "predicted": round(float(v), 6)} for t, v in zip(targets[::step], values[::step])]
    return {"metrics": scalars, "by_range": by_range(values, targets), "points": points}
