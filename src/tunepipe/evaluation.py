"""Classification metrics with torchmetrics, shared by evaluate, baseline and prune (one definition of each metric)."""

from __future__ import annotations

import torch
import torchmetrics
from torchmetrics.classification import MulticlassConfusionMatrix

METRIC_NAMES = ("accuracy", "precision_macro", "recall_macro", "f1_macro", "auroc")


def metric_collection(num_classes: int) -> torchmetrics.MetricCollection:
    kwargs = {"task": "multiclass", "num_classes": num_classes}
    return torchmetrics.MetricCollection(
        {
            "accuracy": torchmetrics.Accuracy(**kwargs),
            "precision_macro": torchmetrics.Precision(average="macro", **kwargs),
            "recall_macro": torchmetrics.Recall(average="macro", **kwargs),
            "f1_macro": torchmetrics.F1Score(average="macro", **kwargs),
            # One-vs-rest macro AUROC; for two classes it equals the binary AUROC.
            "auroc": torchmetrics.AUROC(average="macro", **kwargs),
        }
    )


def classification_metrics(probs: torch.Tensor, targets: torch.Tensor) -> dict[str, float]:
    """Accuracy, macro precision/recall/F1 and AUROC from class probabilities (rows sum to 1)."""
    metrics = metric_collection(probs.shape[1])
    values = metrics(probs.float(), targets.long())
    return {name: round(float(values[name]), 6) for name in METRIC_NAMES}


def confusion_matrix(preds: torch.Tensor, targets: torch.Tensor, num_classes: int) -> list[list[int]]:
    """Rows are true labels, columns predicted labels."""
    return MulticlassConfusionMatrix(num_classes=num_classes)(preds.long(), targets.long()).tolist()
