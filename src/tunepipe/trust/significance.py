"""Is one model really better than another on the same test rows? Paired tests on per-row predictions.

Two models scored on the same rows are compared row by row, not by their two accuracies: McNemar's test
looks only at the rows where exactly one of them is right (the discordant pairs), and a paired bootstrap
resamples rows once for both models, so the interval of the difference is not inflated by the variance
the two share. The verdict is McNemar's at `alpha`; the bootstrap intervals say how large the difference
plausibly is.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

#: Below this many discordant pairs McNemar's test is the exact binomial test; at and above it the chi-square
#: approximation with continuity correction (the usual rule of thumb: b + c >= 25).
EXACT_BELOW = 25
ALPHA = 0.05
BETTER, WORSE, NO_DIFFERENCE = "better", "worse", "no significant difference"
EXACT, CHI_SQUARE = "exact binomial", "chi-square with continuity correction"


def mcnemar(correct_a: Sequence[bool], correct_b: Sequence[bool], *, exact_below: int = EXACT_BELOW) -> dict[str, Any]:
    """McNemar's test of two models' paired correctness (two-sided).

    `b`: rows A gets right and B wrong; `c`: rows A gets wrong and B right. With b + c < `exact_below` the
    p-value is the exact binomial one, 2 * P(X <= min(b, c)) for X ~ Bin(b + c, 1/2), capped at 1; otherwise
    chi2 = (|b - c| - 1)^2 / (b + c) on one degree of freedom. No discordant pair at all: p = 1.
    """
    a, b_ = np.asarray(correct_a, dtype=bool), np.asarray(correct_b, dtype=bool)
    if a.shape != b_.shape:
        raise ValueError(f"paired correctness of different lengths: {a.shape} and {b_.shape}")
    b, c = int(np.sum(a & ~b_)), int(np.sum(~a & b_))
    n = b + c
    if n < exact_below:
        k = min(b, c)
        tail = sum(math.comb(n, i) for i in range(k + 1)) / 2**n if n else 1.0
        return {"method": EXACT, "b": b, "c": c, "discordant": n, "statistic": None, "p_value": min(1.0, 2 * tail)}
    statistic = (abs(b - c) - 1) ** 2 / n
    # The chi-square distribution with one degree of freedom: P(X > s) = erfc(sqrt(s / 2)).
    return {"method": CHI_SQUARE, "b": b, "c": c, "discordant": n, "statistic": statistic, "p_value": math.erfc(math.sqrt(statistic / 2))}


def macro_f1(predicted: np.ndarray, targets: np.ndarray, num_classes: int) -> np.ndarray:
    """Macro F1 of each row of `predicted` (resamples x rows) against the matching row of `targets`.

    As torchmetrics' MulticlassF1Score(average="macro"): per-class 2tp / (2tp + fp + fn), averaged over the
    classes that occur at all (tp + fp + fn > 0).
    """
    predicted, targets = np.atleast_2d(predicted), np.atleast_2d(targets)
    classes = np.arange(num_classes)[:, None, None]
    pred_is, true_is = predicted[None] == classes, targets[None] == classes
    tp = np.sum(pred_is & true_is, axis=2)
    fp = np.sum(pred_is & ~true_is, axis=2)
    fn = np.sum(~pred_is & true_is, axis=2)
    denominator = 2 * tp + fp + fn
    f1 = np.divide(2 * tp, denominator, out=np.zeros(denominator.shape, dtype=float), where=denominator > 0)
    present = denominator > 0
    return np.sum(f1 * present, axis=0) / np.maximum(np.sum(present, axis=0), 1)


def resample_indices(targets: Sequence[int], num_classes: int, *, resamples: int, seed: int) -> np.ndarray:
    """evaluate's seeded bootstrap (`tunepipe.evaluation.stratified_resamples`) as a resamples x rows array."""
    import torch

    from tunepipe.evaluation import stratified_resamples

    target = torch.as_tensor(np.asarray(targets, dtype=np.int64))
    return np.stack([index.numpy() for index in stratified_resamples(target, num_classes, resamples=resamples, seed=seed)])


def _interval(samples: np.ndarray, level: float) -> tuple[float, float]:
    alpha = (1 - level) / 2
    low, high = np.quantile(samples, [alpha, 1 - alpha])
    return round(float(low), 6), round(float(high), 6)


def paired_bootstrap(targets: Sequence[int], predicted_a: Sequence[int], predicted_b: Sequence[int], num_classes: int, *,
                     resamples: int, seed: int, level: float = 0.95) -> dict[str, Any]:
    """Percentile intervals of accuracy(A) - accuracy(B) and macro F1(A) - macro F1(B), one resample for both models."""
    y, a, b = (np.asarray(x, dtype=np.int64) for x in (targets, predicted_a, predicted_b))
    index = resample_indices(y, num_classes, resamples=resamples, seed=seed)
    ys, as_, bs = y[index], a[index], b[index]
    accuracy = np.mean(as_ == ys, axis=1) - np.mean(bs == ys, axis=1)
    f1 = macro_f1(as_, ys, num_classes) - macro_f1(bs, ys, num_classes)
    point_f1 = float(macro_f1(a, y, num_classes)[0] - macro_f1(b, y, num_classes)[0])
    return {
        "accuracy_diff": round(float(np.mean(a == y) - np.mean(b == y)), 6),
        "accuracy_diff_ci": _interval(accuracy, level),
        "f1_macro_diff": round(point_f1, 6),
        "f1_macro_diff_ci": _interval(f1, level),
        "resamples": resamples,
        "seed": seed,
        "level": level,
    }


def verdict(p_value: float, accuracy_diff: float, alpha: float = ALPHA) -> str:
    """"better" / "worse" (A against B) when McNemar's p-value is below `alpha`, else "no significant difference"."""
    if p_value < alpha and accuracy_diff > 0:
        return BETTER
    if p_value < alpha and accuracy_diff < 0:
        return WORSE
    return NO_DIFFERENCE


def compare_paired(targets: Sequence[int], predicted_a: Sequence[int], predicted_b: Sequence[int], num_classes: int, *,
                   resamples: int, seed: int, alpha: float = ALPHA) -> dict[str, Any]:
    """A against B on the same rows: McNemar's test, the paired bootstrap intervals and the verdict."""
    y, a, b = (np.asarray(x, dtype=np.int64) for x in (targets, predicted_a, predicted_b))
    test = mcnemar(a == y, b == y)
    intervals = paired_bootstrap(y, a, b, num_classes, resamples=resamples, seed=seed)
    return {
        "paired": True,
        "rows": int(len(y)),
        "alpha": alpha,
        "accuracy_a": round(float(np.mean(a == y)), 6),
        "accuracy_b": round(float(np.mean(b == y)), 6),
        "f1_macro_a": round(float(macro_f1(a, y, num_classes)[0]), 6),
        "f1_macro_b": round(float(macro_f1(b, y, num_classes)[0]), 6),
        "mcnemar": test,
        "bootstrap": intervals,
        "verdict": verdict(test["p_value"], intervals["accuracy_diff"], alpha),
    }


def _unpaired(table: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    rows = len(table)
    right = sum(str(row.get("label")) == str(row.get("predicted")) for row in table)
    return {"rows": rows, "accuracy": round(right / rows, 6) if rows else None}


def compare_tables(a: Sequence[Mapping[str, Any]], b: Sequence[Mapping[str, Any]], *, resamples: int = 1000, seed: int = 0,
                   alpha: float = ALPHA) -> dict[str, Any]:
    """Two runs' predictions tables (rows with id, label, predicted) compared, A against B.

    Paired only when both hold the same test rows: the same ids with the same labels. Otherwise the result
    says how they differ (`paired: False`, `reason`) and gives each run's own accuracy, unpaired.
    """
    by_id_a = {str(row["id"]): row for row in a}
    by_id_b = {str(row["id"]): row for row in b}
    only_a, only_b = sorted(set(by_id_a) - set(by_id_b)), sorted(set(by_id_b) - set(by_id_a))
    relabelled = sorted(i for i in set(by_id_a) & set(by_id_b) if str(by_id_a[i]["label"]) != str(by_id_b[i]["label"]))
    if only_a or only_b or relabelled or len(by_id_a) != len(a) or len(by_id_b) != len(b):
        parts = []
        if only_a:
            parts.append(f"{len(only_a)} row(s) only in A")
        if only_b:
            parts.append(f"{len(only_b)} row(s) only in B")
        if relabelled:
            parts.append(f"{len(relabelled)} row(s) with a different label")
        if len(by_id_a) != len(a) or len(by_id_b) != len(b):
            parts.append("repeated row ids")
        return {"paired": False, "reason": "the test rows differ (" + ", ".join(parts) + "), so the runs are not paired",
                "a": _unpaired(a), "b": _unpaired(b), "alpha": alpha}
    ids = sorted(by_id_a)
    labels = sorted({str(by_id_a[i]["label"]) for i in ids} | {str(row["predicted"]) for row in (*a, *b)})
    code = {label: k for k, label in enumerate(labels)}
    targets = [code[str(by_id_a[i]["label"])] for i in ids]
    result = compare_paired(targets, [code[str(by_id_a[i]["predicted"])] for i in ids], [code[str(by_id_b[i]["predicted"])] for i in ids],
                            len(labels), resamples=resamples, seed=seed, alpha=alpha)
    return result


def sentence(result: Mapping[str, Any], a: str, b: str) -> str:
    """The comparison in words, e.g. "the fine-tuned model is better than the baseline (McNemar exact binomial, p = 0.003 < 0.05)"."""
    if not result.get("paired"):
        return f"{a} and {b} cannot be compared row by row: {result.get('reason')}."
    test = result["mcnemar"]
    p, alpha = test["p_value"], result["alpha"]
    how = f"McNemar's test, {test['method']}: p = {p:.3g} {'<' if p < alpha else '≥'} {alpha:g}; {test['b']} vs {test['c']} discordant rows"
    if result["verdict"] == NO_DIFFERENCE:
        return f"No significant difference between {a} and {b} ({how})."
    return f"{a[:1].upper()}{a[1:]} is {result['verdict']} than {b} ({how})."


__all__ = ["ALPHA", "BETTER", "CHI_SQUARE", "EXACT", "NO_DIFFERENCE", "WORSE", "compare_paired", "compare_tables", "macro_f1",
           "mcnemar", "paired_bootstrap", "sentence", "verdict"]
