"""McNemar's test and the paired bootstrap on hand-computed cases; pairing two runs' predictions tables."""

from __future__ import annotations

import numpy as np
import pytest

from tunepipe.trust.significance import (
    BETTER, CHI_SQUARE, EXACT, NO_DIFFERENCE, WORSE, compare_paired, compare_tables, macro_f1, mcnemar, paired_bootstrap, sentence, verdict,
)


def correctness(b: int, c: int, both: int = 5, neither: int = 2) -> tuple[list[bool], list[bool]]:
    """Paired correctness with b rows only A gets right and c rows only B gets right."""
    a = [True] * both + [True] * b + [False] * c + [False] * neither
    o = [True] * both + [False] * b + [True] * c + [False] * neither
    return a, o


def test_mcnemar_exact_binomial_on_a_hand_computed_case():
    # b=1, c=6: 7 discordant rows; P(X <= 1) for Bin(7, 1/2) = (1 + 7) / 128, two-sided p = 16/128 = 0.125
    result = mcnemar(*correctness(1, 6))
    assert (result["method"], result["b"], result["c"], result["discordant"]) == (EXACT, 1, 6, 7)
    assert result["p_value"] == pytest.approx(0.125, abs=1e-12)
    # symmetric in A and B, and capped at 1 when b == c
    assert mcnemar(*correctness(6, 1)[::-1])["p_value"] == pytest.approx(0.125)
    assert mcnemar(*correctness(3, 3))["p_value"] == 1.0
    assert mcnemar([True, False], [True, False])["p_value"] == 1.0  # no discordant row at all


def test_mcnemar_chi_square_with_continuity_correction_on_a_hand_computed_case():
    # b=10, c=25: 35 >= 25 discordant rows; chi2 = (|10 - 25| - 1)^2 / 35 = 196 / 35 = 5.6; P(chi2_1 > 5.6) = 0.0179605
    result = mcnemar(*correctness(10, 25))
    assert result["method"] == CHI_SQUARE
    assert result["statistic"] == pytest.approx(5.6)
    assert result["p_value"] == pytest.approx(0.0179605, abs=1e-6)
    # 24 discordant rows are still tested exactly
    assert mcnemar(*correctness(4, 20))["method"] == EXACT


def test_macro_f1_matches_torchmetrics():
    import torch
    from torchmetrics.functional.classification import multiclass_f1_score

    rng = np.random.default_rng(0)
    y, p = rng.integers(0, 3, 50), rng.integers(0, 3, 50)
    expected = float(multiclass_f1_score(torch.tensor(p), torch.tensor(y), num_classes=3, average="macro"))
    assert macro_f1(p, y, 3)[0] == pytest.approx(expected, abs=1e-6)


def test_paired_bootstrap_on_known_cases():
    y = np.array([0, 0, 0, 0, 0, 1, 1, 1, 1, 1])
    # Identical predictions: every resample's difference is exactly 0.
    same = paired_bootstrap(y, y, y, 2, resamples=200, seed=1)
    assert same["accuracy_diff"] == 0 and same["accuracy_diff_ci"] == (0.0, 0.0) and same["f1_macro_diff_ci"] == (0.0, 0.0)
    # A always right, B always wrong: the difference is 1 in every resample, whatever the rows drawn.
    always = paired_bootstrap(y, y, 1 - y, 2, resamples=200, seed=1)
    assert always["accuracy_diff"] == 1 and always["accuracy_diff_ci"] == (1.0, 1.0) and always["f1_macro_diff_ci"] == (1.0, 1.0)
    # A and B differ on exactly two rows (A right there): each resample's difference is (copies of those rows) / 10 >= 0.
    b = y.copy()
    b[[0, 5]] = 1 - b[[0, 5]]
    two = paired_bootstrap(y, y, b, 2, resamples=500, seed=3)
    assert two["accuracy_diff"] == pytest.approx(0.2)
    low, high = two["accuracy_diff_ci"]
    assert 0.0 <= low < 0.2 < high <= 0.6
    assert all(round(x * 10, 6).is_integer() for x in (low, high))  # multiples of 1/10: the rows were paired
    # seeded: the same seed gives the same interval
    assert paired_bootstrap(y, y, b, 2, resamples=500, seed=3) == two


def test_verdicts_at_alpha():
    assert verdict(0.01, 0.05) == BETTER
    assert verdict(0.01, -0.05) == WORSE
    assert verdict(0.2, 0.05) == NO_DIFFERENCE
    assert verdict(0.04, 0.05, alpha=0.01) == NO_DIFFERENCE
    y = np.array([0, 1] * 30)
    result = compare_paired(y, y, 1 - y, 2, resamples=50, seed=0)
    assert result["verdict"] == BETTER and result["mcnemar"]["method"] == CHI_SQUARE
    assert "is better than" in sentence(result, "the fine-tuned model", "the baseline")


def table(pairs):
    return [{"id": str(i), "label": label, "predicted": predicted} for i, (label, predicted) in enumerate(pairs)]


def test_tables_are_paired_by_id_only_when_the_test_rows_are_the_same():
    a = table([("pos", "pos"), ("neg", "neg"), ("pos", "neg"), ("neg", "neg")])
    b = table([("pos", "neg"), ("neg", "neg"), ("pos", "neg"), ("neg", "pos")])
    paired = compare_tables(a, list(reversed(b)), resamples=50)  # row order does not matter, ids do
    assert paired["paired"] and paired["rows"] == 4
    assert (paired["accuracy_a"], paired["accuracy_b"]) == (0.75, 0.25)
    assert (paired["mcnemar"]["b"], paired["mcnemar"]["c"]) == (2, 0)

    other_ids = [dict(row, id=f"x{row['id']}") for row in b]
    result = compare_tables(a, other_ids)
    assert not result["paired"] and "4 row(s) only in A" in result["reason"] and "4 row(s) only in B" in result["reason"]
    assert result["a"] == {"rows": 4, "accuracy": 0.75}  # the unpaired numbers are still there
    relabelled = [dict(row, label="neg") if row["id"] == "0" else row for row in b]
    result = compare_tables(a, relabelled)
    assert not result["paired"] and "1 row(s) with a different label" in result["reason"]
    assert "cannot be compared row by row" in sentence(result, "this run", "the last recorded run")


def test_wilcoxon_on_paired_errors_and_its_direction():
    from tunepipe.trust.significance import wilcoxon

    same = wilcoxon([1.0, 2.0, 3.0], [1.0, 2.0, 3.0])
    assert same["p_value"] == 1.0 and same["differing"] == 0
    smaller = wilcoxon([0.1] * 30, [1.0 + 0.01 * i for i in range(30)])
    assert smaller["p_value"] < 1e-4 and smaller["mean_difference"] < 0  # A's errors are smaller


def test_label_set_and_value_tables_are_compared_in_their_tasks_terms():
    from tunepipe.runs import compare_predictions, predictions_task

    labels = ["a", "b", "a;b", ""] * 10
    multi_a = [{"id": str(i), "label": l, "predicted": l, "input": "t", "prob:a": "0.5", "prob:b": "0.5"} for i, l in enumerate(labels)]
    multi_b = [{**row, "predicted": "a;b"} for row in multi_a]  # every row claims both labels
    assert predictions_task(multi_a).name == "multi_label"
    result = compare_predictions(multi_a, multi_b, alpha=0.05, resamples=100, seed=0)
    assert result["paired"] and result["f1_micro_a"] == 1.0 and result["verdict"] == BETTER and "wilcoxon" in result
    # b claims 80 labels, the 40 true ones among them: tp 40, fp 40, fn 0 -> F1 80/120
    assert result["f1_micro_b"] == pytest.approx(2 / 3, abs=1e-6)
    assert "Wilcoxon signed-rank test" in sentence(result, "A", "B")

    values = [{"id": str(i), "label": str(float(i)), "predicted": str(i + 0.1), "error": "0.1", "input": "t"} for i in range(30)]
    worse = [{**row, "predicted": str(float(row["label"]) + 1.0 + 0.01 * i)} for i, row in enumerate(values)]
    assert predictions_task(values).name == "regression"
    tested = compare_predictions(values, worse, alpha=0.05, resamples=100, seed=0)
    assert tested["mae_a"] == pytest.approx(0.1) and tested["verdict"] == BETTER
    assert tested["bootstrap"]["mae_diff"] < 0 and tested["bootstrap"]["mae_diff_ci"][1] < 0
    mixed = compare_predictions(values, multi_a, alpha=0.05, resamples=10, seed=0)
    assert not mixed["paired"] and "different tasks" in mixed["reason"]
    short = compare_tables(values, worse[1:], task=predictions_task(values))
    assert not short["paired"] and short["a"] == {"rows": 30, "mae": pytest.approx(0.1)}


def test_macro_f1_counts_equal_the_masks_it_replaced():
    """macro_f1 counts with one bincount; the classes x resamples x rows masks it replaced give the same floats."""
    from tunepipe.trust.significance import macro_f1

    def with_masks(predicted, targets, num_classes):
        predicted, targets = np.atleast_2d(predicted), np.atleast_2d(targets)
        classes = np.arange(num_classes)[:, None, None]
        pred_is, true_is = predicted[None] == classes, targets[None] == classes
        tp, fp, fn = (np.sum(pred_is & true_is, axis=2), np.sum(pred_is & ~true_is, axis=2), np.sum(~pred_is & true_is, axis=2))
        denominator = 2 * tp + fp + fn
        f1 = np.divide(2 * tp, denominator, out=np.zeros(denominator.shape, dtype=float), where=denominator > 0)
        present = denominator > 0
        return np.sum(f1 * present, axis=0) / np.maximum(np.sum(present, axis=0), 1)

    rng = np.random.default_rng(0)
    targets = rng.integers(0, 9, size=(40, 120))
    predicted = np.where(rng.random((40, 120)) < 0.6, targets, rng.integers(0, 9, size=(40, 120)))
    assert macro_f1(predicted, targets, 9).tolist() == with_masks(predicted, targets, 9).tolist()
    assert macro_f1(predicted[0], targets[0], 12).tolist() == with_masks(predicted[0], targets[0], 12).tolist()
