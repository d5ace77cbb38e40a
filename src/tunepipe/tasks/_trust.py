"""Scores of multi-label answers and of values on stacked bootstrap resamples (numpy), for the trust layer's slices
and paired comparisons (tunepipe.trust): one number per resample, computed at once over the leading axes."""

from __future__ import annotations

import numpy as np


def _f1(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray) -> np.ndarray:
    denominator = 2 * tp + fp + fn
    return np.divide(2 * tp, denominator, out=np.zeros(denominator.shape, dtype=float), where=denominator > 0)


def set_scores(answers: np.ndarray, targets: np.ndarray) -> dict[str, np.ndarray]:
    """F1 micro and macro of 0/1 answers against 0/1 targets, both (..., rows, labels). Macro averages the labels that
    occur at all (tp + fp + fn > 0): a label a slice neither holds nor is predicted in says nothing about it."""
    a, y = np.asarray(answers) == 1, np.asarray(targets) == 1
    tp, fp, fn = (np.sum(mask, axis=-2) for mask in (a & y, a & ~y, ~a & y))
    present = (tp + fp + fn) > 0
    macro = np.sum(_f1(tp, fp, fn) * present, axis=-1) / np.maximum(np.sum(present, axis=-1), 1)
    return {"f1_micro": _f1(tp.sum(axis=-1), fp.sum(axis=-1), fn.sum(axis=-1)), "f1_macro": macro}


def value_scores(answers: np.ndarray, targets: np.ndarray) -> dict[str, np.ndarray]:
    """MAE, RMSE and R2 of values against targets, both (..., rows); R2 is nan where the targets do not vary."""
    values, truth = np.asarray(answers, dtype=float), np.asarray(targets, dtype=float)
    errors = values - truth
    spread = np.sum((truth - truth.mean(axis=-1, keepdims=True)) ** 2, axis=-1)
    residual = np.sum(errors ** 2, axis=-1)
    r2 = np.divide(residual, spread, out=np.full(spread.shape, np.nan), where=spread > 0)
    return {"mae": np.mean(np.abs(errors), axis=-1), "rmse": np.sqrt(np.mean(errors ** 2, axis=-1)), "r2": 1 - r2}
