"""Multi-label metrics with torchmetrics (per-label probabilities, 0/1 targets, a decision threshold per label).

Shared by the multi-label task's validation scores, its test evaluation (with bootstrap intervals) and the
threshold tuning on validation. A row whose true and predicted sets are both empty counts as a perfect row in
`f1_samples` (nothing to find, nothing claimed).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torchmetrics.classification import (
    MultilabelAUROC,
    MultilabelAveragePrecision,
    MultilabelF1Score,
    MultilabelHammingDistance,
    MultilabelPrecision,
    MultilabelRecall,
)

from tunepipe.evaluation import percentile_interval

#: The flat metrics of one model (results/evaluate/metrics.json keys).
SCALARS = ("f1_micro", "f1_macro", "f1_samples", "subset_accuracy", "hamming_loss", "precision_micro", "recall_micro",
           "auroc_macro", "average_precision_macro", "label_cardinality_true", "label_cardinality_predicted")
#: The metrics given a bootstrap interval.
CI_NAMES = ("f1_micro", "f1_macro", "subset_accuracy")


def decisions(probs: torch.Tensor, thresholds: Sequence[float]) -> torch.Tensor:
    """0/1 predictions: a label is predicted where its probability reaches its threshold."""
    return (probs.float() >= torch.tensor(list(thresholds), dtype=torch.float32)).long()


def _f1_samples(predicted: torch.Tensor, targets: torch.Tensor) -> float:
    both = (predicted & targets).sum(dim=1).float()
    sizes = (predicted.sum(dim=1) + targets.sum(dim=1)).float()
    per_row = torch.where(sizes > 0, 2 * both / sizes.clamp(min=1), torch.ones_like(sizes))
    return float(per_row.mean()) if len(per_row) else float("nan")


def headline_scores(probs: torch.Tensor, targets: torch.Tensor, thresholds: Sequence[float]) -> dict[str, float]:
    """F1 (micro, macro, samples), subset accuracy and Hamming loss at the given thresholds."""
    targets = targets.long()
    n = targets.shape[1]
    predicted = decisions(probs, thresholds)
    values = {
        "f1_micro": MultilabelF1Score(num_labels=n, average="micro")(predicted, targets),
        "f1_macro": MultilabelF1Score(num_labels=n, average="macro")(predicted, targets),
        "f1_samples": _f1_samples(predicted, targets),
        "subset_accuracy": (predicted == targets).all(dim=1).float().mean(),
        "hamming_loss": MultilabelHammingDistance(num_labels=n, average="micro")(predicted, targets),
    }
    return {name: round(float(value), 6) for name, value in values.items()}


def tune_thresholds(probs: torch.Tensor, targets: torch.Tensor, grid: Sequence[float]) -> list[float]:
    """Per label, the grid threshold with the best F1 on these (validation) rows; ties go to the one nearest 0.5."""
    targets = targets.long()
    chosen = []
    for j in range(targets.shape[1]):
        truth = targets[:, j]
        best = (-1.0, 0.0, 0.5)
        for threshold in grid:
            predicted = (probs[:, j].float() >= threshold).long()
            tp = float((predicted & truth).sum())
            f1 = 2 * tp / max(1.0, float(predicted.sum() + truth.sum()))
            key = (round(f1, 9), -abs(threshold - 0.5), threshold)
            if key > best:
                best = key
        chosen.append(float(best[2]))
    return chosen


def _bootstrap(probs: torch.Tensor, targets: torch.Tensor, thresholds: Sequence[float], *, resamples: int, seed: int,
               level: float = 0.95) -> dict[str, tuple[float, float]]:
    """Percentile intervals of CI_NAMES over rows resampled with replacement (seeded)."""
    generator = torch.Generator().manual_seed(seed)
    samples: dict[str, list[float]] = {name: [] for name in CI_NAMES}
    for _ in range(resamples):
        index = torch.randint(len(targets), (len(targets),), generator=generator)
        values = headline_scores(probs[index], targets[index], thresholds)
        for name in CI_NAMES:
            samples[name].append(values[name])
    return {name: percentile_interval(values, level) for name, values in samples.items()}


def evaluate_label_sets(probs: torch.Tensor, targets: torch.Tensor, names: list[str], thresholds: Sequence[float], *,
                        resamples: int, seed: int) -> dict[str, Any]:
    """Everything evaluate reports for one multi-label model: flat scalars (with intervals) and the per-label table."""
    probs, targets = probs.float(), targets.long()
    n = len(names)
    if probs.shape[1] != n:
        raise ValueError(f"{probs.shape[1]} probability columns for {n} labels")
    predicted = decisions(probs, thresholds)
    scalars = headline_scores(probs, targets, thresholds)
    scalars["precision_micro"] = round(float(MultilabelPrecision(num_labels=n, average="micro")(predicted, targets)), 6)
    scalars["recall_micro"] = round(float(MultilabelRecall(num_labels=n, average="micro")(predicted, targets)), 6)
    support = targets.sum(dim=0)
    present = [j for j in range(n) if 0 < int(support[j]) < len(targets)]  # AUROC/AP need both classes of a label
    auroc = MultilabelAUROC(num_labels=n, average=None)(probs, targets) if len(targets) else torch.full((n,), float("nan"))
    ap = MultilabelAveragePrecision(num_labels=n, average=None)(probs, targets) if len(targets) else torch.full((n,), float("nan"))
    scalars["auroc_macro"] = round(float(auroc[present].mean()), 6) if present else None
    scalars["average_precision_macro"] = round(float(ap[present].mean()), 6) if present else None
    scalars["label_cardinality_true"] = round(float(targets.sum(dim=1).float().mean()), 6)
    scalars["label_cardinality_predicted"] = round(float(predicted.sum(dim=1).float().mean()), 6)
    for name, (low, high) in _bootstrap(probs, targets, thresholds, resamples=resamples, seed=seed).items():
        scalars[f"{name}_ci_low"], scalars[f"{name}_ci_high"] = low, high
    precision = MultilabelPrecision(num_labels=n, average=None)(predicted, targets)
    recall = MultilabelRecall(num_labels=n, average=None)(predicted, targets)
    f1 = MultilabelF1Score(num_labels=n, average=None)(predicted, targets)
    per_label = [
        {"label": label, "threshold": round(float(thresholds[j]), 6), "precision": round(float(precision[j]), 6),
         "recall": round(float(recall[j]), 6), "f1": round(float(f1[j]), 6),
         "auroc": round(float(auroc[j]), 6) if j in present else None,
         "average_precision": round(float(ap[j]), 6) if j in present else None,
         "support": int(support[j]), "predicted": int(predicted[:, j].sum())}
        for j, label in enumerate(names)
    ]
    return {"metrics": scalars, "per_label": per_label}
