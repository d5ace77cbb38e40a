"""Classification metrics with torchmetrics, shared by evaluate, baseline and prune (one definition of each metric).

`classification_metrics` gives the headline numbers; `evaluate_predictions` the full picture the evaluate stage
writes: weighted and per-class scores, confusion matrix, ROC and precision-recall curves, calibration (ECE and the
reliability diagram's bins) and bootstrap confidence intervals. Every function takes class probabilities (rows sum
to 1) and integer targets, so the fine-tuned model and the baseline are scored by the same code.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch
import torchmetrics
from torchmetrics.classification import (
    MulticlassAccuracy,
    MulticlassAUROC,
    MulticlassAveragePrecision,
    MulticlassCalibrationError,
    MulticlassConfusionMatrix,
    MulticlassF1Score,
    MulticlassPrecision,
    MulticlassPrecisionRecallCurve,
    MulticlassRecall,
    MulticlassROC,
)

METRIC_NAMES = ("accuracy", "precision_macro", "recall_macro", "f1_macro", "auroc")
#: Scalar metrics `evaluate_predictions` reports for each model (flat keys of results/evaluate/metrics.json).
DETAILED_NAMES = METRIC_NAMES + ("precision_weighted", "recall_weighted", "f1_weighted", "average_precision", "ece")
#: Metrics given a bootstrap confidence interval.
CI_NAMES = ("accuracy", "f1_macro", "auroc")
CALIBRATION_BINS = 15
MAX_CURVE_POINTS = 200


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


def row_normalised(matrix: list[list[int]]) -> list[list[float]]:
    """Each row divided by its total (the share of each true label predicted as each label); empty rows stay 0."""
    return [[round(value / total, 6) if (total := sum(row)) else 0.0 for value in row] for row in matrix]


def detailed_collection(num_classes: int) -> torchmetrics.MetricCollection:
    """Every per-model number of the evaluate stage, computed in one pass over the test predictions."""
    n = {"num_classes": num_classes}
    return torchmetrics.MetricCollection(
        {
            "accuracy": MulticlassAccuracy(average="micro", **n),
            "precision_macro": MulticlassPrecision(average="macro", **n),
            "recall_macro": MulticlassRecall(average="macro", **n),
            "f1_macro": MulticlassF1Score(average="macro", **n),
            "precision_weighted": MulticlassPrecision(average="weighted", **n),
            "recall_weighted": MulticlassRecall(average="weighted", **n),
            "f1_weighted": MulticlassF1Score(average="weighted", **n),
            "precision_per_class": MulticlassPrecision(average=None, **n),
            "recall_per_class": MulticlassRecall(average=None, **n),
            "f1_per_class": MulticlassF1Score(average=None, **n),
            "auroc": MulticlassAUROC(average="macro", **n),
            "auroc_per_class": MulticlassAUROC(average=None, **n),
            "average_precision": MulticlassAveragePrecision(average="macro", **n),
            "average_precision_per_class": MulticlassAveragePrecision(average=None, **n),
            # Top-label calibration: the predicted class's probability against whether it was right.
            "ece": MulticlassCalibrationError(n_bins=CALIBRATION_BINS, norm="l1", **n),
            "confusion": MulticlassConfusionMatrix(**n),
            "roc": MulticlassROC(**n),
            "pr": MulticlassPrecisionRecallCurve(**n),
        },
        compute_groups=False,
    )


def curve_classes(num_classes: int) -> list[int]:
    """Classes whose curves are drawn: the positive class (index 1) for two classes, every class one-vs-rest otherwise."""
    return [1] if num_classes == 2 else list(range(num_classes))


def thin(n: int, max_points: int = MAX_CURVE_POINTS) -> list[int]:
    """At most `max_points` indices out of n, evenly spaced, always keeping the first and the last."""
    if n <= max_points:
        return list(range(n))
    step = (n - 1) / (max_points - 1)
    return sorted({round(i * step) for i in range(max_points)})


def calibration_bins(probs: torch.Tensor, targets: torch.Tensor, n_bins: int = CALIBRATION_BINS) -> list[dict[str, Any]]:
    """The reliability diagram: per non-empty equal-width confidence bin, mean confidence, accuracy and count.

    Binned like torchmetrics' CalibrationError (bin i holds confidences in [i/n, (i+1)/n)), except that a
    confidence of exactly 1.0 joins the last bin instead of a bin of its own.
    """
    confidence, predicted = probs.float().max(dim=1)
    correct = (predicted == targets.long()).float()
    index = (torch.bucketize(confidence, torch.linspace(0, 1, n_bins + 1), right=True) - 1).clamp(0, n_bins - 1)
    count = torch.zeros(n_bins).scatter_add_(0, index, torch.ones_like(confidence))
    conf_sum = torch.zeros(n_bins).scatter_add_(0, index, confidence)
    acc_sum = torch.zeros(n_bins).scatter_add_(0, index, correct)
    return [
        {
            "bin": i,
            "lower": round(i / n_bins, 6),
            "upper": round((i + 1) / n_bins, 6),
            "confidence": round(float(conf_sum[i] / count[i]), 6),
            "accuracy": round(float(acc_sum[i] / count[i]), 6),
            "count": int(count[i]),
        }
        for i in range(n_bins)
        if count[i] > 0
    ]


def stratified_resamples(targets: torch.Tensor, num_classes: int, *, resamples: int, seed: int) -> Iterator[torch.Tensor]:
    """Row indices of `resamples` bootstrap resamples, drawn with replacement within each true class (seeded).

    The one resampling scheme of every bootstrap interval (evaluate's, the slices', the paired comparisons').
    """
    targets = targets.long()
    generator = torch.Generator().manual_seed(seed)
    groups = [torch.nonzero(targets == c).flatten() for c in range(num_classes)]
    groups = [g for g in groups if len(g)]
    for _ in range(resamples):
        yield torch.cat([g[torch.randint(len(g), (len(g),), generator=generator)] for g in groups])


def percentile_interval(samples: list[float], level: float = 0.95) -> tuple[float, float]:
    """The percentile bootstrap interval of `samples` at `level` (float64 quantiles, rounded to 6 digits): every
    bootstrap interval of evaluate's metrics, whatever the task."""
    alpha = (1 - level) / 2
    q = torch.quantile(torch.tensor(samples, dtype=torch.float64), torch.tensor([alpha, 1 - alpha], dtype=torch.float64))
    return round(float(q[0]), 6), round(float(q[1]), 6)


def bootstrap_intervals(
    probs: torch.Tensor, targets: torch.Tensor, *, resamples: int, seed: int, level: float = 0.95
) -> dict[str, tuple[float, float]]:
    """Percentile bootstrap confidence intervals of accuracy, macro F1 and AUROC.

    Rows are resampled with replacement within each true class (a stratified bootstrap), so every resample
    holds every class the test split holds and AUROC is always defined. The same seed gives the same intervals.
    """
    probs, targets = probs.float(), targets.long()
    num_classes = probs.shape[1]
    # torchmetrics' exact AUROC sorts every class's scores again for each resample: 25 s for 20,000 rows and 632 classes,
    # 7 hours for 1,000 resamples. Past RANKED_AUROC_CELLS, one sort and weighted counts per resample (RankedAUROC, 0.7 s
    # there), over the first RANKED_AUROC_RESAMPLES resamples.
    ranked = RankedAUROC(probs, targets) if probs.numel() > RANKED_AUROC_CELLS and len(targets.unique()) == num_classes else None
    metrics = {
        "accuracy": MulticlassAccuracy(num_classes=num_classes, average="micro"),
        "f1_macro": MulticlassF1Score(num_classes=num_classes, average="macro"),
    }
    if ranked is None:
        metrics["auroc"] = MulticlassAUROC(num_classes=num_classes, average="macro")
    collection = torchmetrics.MetricCollection(metrics)
    values: dict[str, list[float]] = {name: [] for name in CI_NAMES}
    for index in stratified_resamples(targets, num_classes, resamples=resamples, seed=seed):
        collection.reset()
        collection.update(probs[index], targets[index])
        for name, value in collection.compute().items():
            values[name].append(float(value))
        if ranked is not None and len(values["auroc"]) < RANKED_AUROC_RESAMPLES:
            values["auroc"].append(ranked.macro(index))
    return {name: percentile_interval(samples, level) for name, samples in values.items()}


#: Scores (rows x classes) above which the bootstrap's AUROC is counted from one sort (RankedAUROC); the bundled data
#: has 800 x 2.
RANKED_AUROC_CELLS = 200_000
#: Resamples behind the AUROC interval past RANKED_AUROC_CELLS (the first of the same seeded draws): each is still a
#: pass over every score, and 200 place a 95% percentile interval well.
RANKED_AUROC_RESAMPLES = 200


class RankedAUROC:
    """One-vs-rest macro AUROC of resamples of the same scored rows, each class's scores sorted once.

    A resample is a multiset of rows: each row weighs its count. A class's AUROC is the weighted share of (positive,
    negative) pairs the positive scores higher, ties counting half, the statistic torchmetrics' exact AUROC computes
    (they agree to float32 rounding, tests/test_evaluation.py). Every class must have rows and non-rows (stratified
    resamples keep each class's count)."""

    def __init__(self, probs: torch.Tensor, targets: torch.Tensor) -> None:
        scores = probs.float().numpy()  # the float32 scores torchmetrics ranks, ties included
        rows, classes = scores.shape
        self.order = np.argsort(scores, axis=0, kind="stable").astype(np.int32)
        ranked = np.take_along_axis(scores, self.order, axis=0)
        self.positive = targets.numpy()[self.order] == np.arange(classes)
        new_group = np.ones(ranked.shape, dtype=bool)
        new_group[1:] = ranked[1:] != ranked[:-1]
        del ranked
        position = np.arange(rows, dtype=np.int32)[:, None]
        # each sorted row's tie group: its first and last position (ties are rare: rows scored alike)
        self.ties = not new_group.all()
        if self.ties:
            self.first = np.maximum.accumulate(np.where(new_group, position, np.int32(0)), axis=0)
            ends = np.ones(new_group.shape, dtype=bool)
            ends[:-1] = new_group[1:]
            self.last = np.ascontiguousarray(np.flip(np.minimum.accumulate(np.flip(np.where(ends, position, np.int32(rows - 1)), axis=0), axis=0), axis=0))

    def macro(self, index: torch.Tensor) -> float:
        # float32 holds these counts exactly (integers below 2**24)
        weights = np.bincount(index.numpy(), minlength=len(self.order)).astype(np.float32)[self.order]
        negative = np.where(self.positive, np.float32(0), weights)
        below = np.cumsum(negative, axis=0)  # negatives at or below each sorted row
        if self.ties:
            before = below - negative
            strictly = np.take_along_axis(before, self.first, axis=0)
            tied = np.take_along_axis(below, self.last, axis=0) - strictly
            credit = strictly + np.float32(0.5) * tied
        else:
            credit = below - negative
        positive = np.where(self.positive, weights, np.float32(0))
        pairs = positive.sum(axis=0, dtype=np.float64) * negative.sum(axis=0, dtype=np.float64)
        return float(np.mean((positive * credit).sum(axis=0, dtype=np.float64) / pairs))


def evaluate_predictions(
    probs: torch.Tensor,
    targets: torch.Tensor,
    names: list[str],
    *,
    resamples: int,
    seed: int,
) -> dict[str, Any]:
    """Everything evaluate reports for one model: flat scalars (with `*_ci_low`/`*_ci_high`), per class, confusion, curves, calibration."""
    probs, targets = probs.float(), targets.long()
    num_classes = len(names)
    if probs.shape[1] != num_classes:
        raise ValueError(f"{probs.shape[1]} probability columns for {num_classes} labels")
    collection = detailed_collection(num_classes)
    collection.update(probs, targets)
    values = collection.compute()
    support = torch.bincount(targets, minlength=num_classes)

    scalars = {name: round(float(values[name]), 6) for name in DETAILED_NAMES if name != "average_precision"}
    ap_per_class = values["average_precision_per_class"]
    # Two classes: the positive class's average precision (macro AP would mix in the negative class's).
    scalars["average_precision"] = round(float(ap_per_class[1] if num_classes == 2 else values["average_precision"]), 6)
    for name, (low, high) in bootstrap_intervals(probs, targets, resamples=resamples, seed=seed).items():
        scalars[f"{name}_ci_low"], scalars[f"{name}_ci_high"] = low, high

    per_class = [
        {
            "label": label,
            "precision": round(float(values["precision_per_class"][i]), 6),
            "recall": round(float(values["recall_per_class"][i]), 6),
            "f1": round(float(values["f1_per_class"][i]), 6),
            "auroc": round(float(values["auroc_per_class"][i]), 6),
            "average_precision": round(float(ap_per_class[i]), 6),
            "support": int(support[i]),
        }
        for i, label in enumerate(names)
    ]
    fpr, tpr, _ = values["roc"]
    precision, recall, _ = values["pr"]
    roc, pr = [], []
    for c in curve_classes(num_classes):
        roc += [{"class": names[c], "fpr": round(float(fpr[c][i]), 6), "tpr": round(float(tpr[c][i]), 6)} for i in thin(len(fpr[c]))]
        pr += [{"class": names[c], "recall": round(float(recall[c][i]), 6), "precision": round(float(precision[c][i]), 6)} for i in thin(len(recall[c]))]
    matrix = values["confusion"].tolist()
    return {
        "metrics": scalars,
        "per_class": per_class,
        "confusion": matrix,
        "confusion_normalized": row_normalised(matrix),
        "roc": roc,
        "pr": pr,
        "calibration": calibration_bins(probs, targets),
    }


def worst_errors(probs: torch.Tensor, targets: torch.Tensor, count: int) -> list[int]:
    """Row indices of the `count` wrong predictions made with the highest confidence, most confident first."""
    confidence, predicted = probs.max(dim=1)
    wrong = torch.nonzero(predicted != targets.long()).flatten()
    order = sorted(wrong.tolist(), key=lambda i: (-float(confidence[i]), i))
    return order[:count]


PROB_PREFIX = "prob:"


BASELINE_PREFIX = "baseline_"


def prediction_rows(rows: Sequence[dict[str, Any]], names: list[str], probs: torch.Tensor, input_field: str,
                    baseline_probs: torch.Tensor | None = None) -> tuple[Iterator[dict[str, Any]], list[str]]:
    """One CSV row per test row: id, label, prediction, its confidence, the input (`row[input_field]`: the
    modality's text or image path) and every class's probability; with `baseline_probs`, also the baseline's
    prediction and probabilities (`baseline_predicted`, `baseline_prob:<label>`), so runs can be compared row by row.

    Probabilities are written at the precision of their dtype (shortest exact repr), so metrics computed from
    the file equal those computed in memory. The rows are made one at a time as they are written: 20,000 rows of 632
    labels' probabilities, the model's and the baseline's, took 2.5 GB as a list of dicts of strings.
    """
    array = probs.detach().cpu().numpy()
    fields = ["id", "label", "predicted", "confidence", "input"] + [f"{PROB_PREFIX}{name}" for name in names]
    base = baseline_probs.detach().cpu().numpy() if baseline_probs is not None else None
    if base is not None:
        fields += [f"{BASELINE_PREFIX}predicted"] + [f"{BASELINE_PREFIX}{PROB_PREFIX}{name}" for name in names]

    def records() -> Iterator[dict[str, Any]]:
        for index, (row, p) in enumerate(zip(rows, array)):
            best = int(p.argmax())
            record = {"id": row["id"], "label": row["label"], "predicted": names[best], "confidence": str(p[best]), "input": row[input_field]}
            record.update({f"{PROB_PREFIX}{name}": str(value) for name, value in zip(names, p)})
            if base is not None:
                record[f"{BASELINE_PREFIX}predicted"] = names[int(base[index].argmax())]
                record.update({f"{BASELINE_PREFIX}{PROB_PREFIX}{name}": str(value) for name, value in zip(names, base[index])})
            yield record

    return records(), fields
