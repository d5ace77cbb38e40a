"""The robustness numbers on hand-computed cases."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from tunepipe.robustness import RowSubset, same_item
from tunepipe.robustness.metrics import (
    PERTURBATION_COLUMNS, Judge, attack_row, default_judge, flat_metrics, flip_rate, flipped, perturbation_row, sample_rows, success_rate,
)
from tunepipe.tasks import get_task

TARGETS = np.array([0, 0, 1, 1])
CLEAN = np.array([0, 1, 1, 1])        # 3 of 4 right
PERTURBED = np.array([1, 1, 1, 0])    # rows 0 and 3 flip; 1 of 4 right
ONE = default_judge(["neg", "pos"])


def test_accuracy_drop_and_flip_rate_on_a_known_case():
    assert ONE.score(CLEAN, TARGETS) == 0.75 and ONE.score(PERTURBED, TARGETS) == 0.25
    assert flip_rate(PERTURBED, CLEAN, ONE) == 0.5
    assert success_rate(PERTURBED, CLEAN, TARGETS, ONE) == pytest.approx(2 / 3, abs=1e-6)  # rows 0 and 3 of the right 0, 2, 3
    row = perturbation_row("typo_drop", 2, 0.05, "share of letters deleted", PERTURBED, CLEAN, TARGETS, ONE)
    assert row == {"perturbation": "typo_drop", "severity": 2, "amount": 0.05, "unit": "share of letters deleted", "rows": 4,
                   "accuracy": 0.25, "drop": 0.5, "flip_rate": 0.5}
    assert list(row) == PERTURBATION_COLUMNS and ONE.columns()[0] == PERTURBATION_COLUMNS  # the default task's files as they were
    assert flipped(ONE.differ(PERTURBED, CLEAN), limit=5) == [0, 3]
    assert flipped(ONE.differ([1, 0, 1, 1], CLEAN), limit=5, eligible=CLEAN == TARGETS) == [0]  # row 1 was wrong before
    assert success_rate(np.array([0, 0]), np.array([1, 1]), np.array([0, 0]), ONE) is None  # nothing was right: no success rate


def test_the_flat_record_has_worst_mean_and_attack_numbers():
    rows = [perturbation_row("a", 1, 0.1, "u", CLEAN, CLEAN, TARGETS, ONE), perturbation_row("a", 3, 0.3, "u", PERTURBED, CLEAN, TARGETS, ONE),
            perturbation_row("b", 1, 0.1, "u", np.array([0, 0, 1, 1]), CLEAN, TARGETS, ONE)]
    outcome = SimpleNamespace(name="pgd", space="pixels", epsilon=0.01, steps=5, max_edits=None, predictions=np.array([1, 0, 0, 1]), queries=None)
    attacks = [attack_row(outcome, CLEAN, TARGETS, ONE)]
    assert attacks[0]["accuracy"] == 0.5 and attacks[0]["success_rate"] == pytest.approx(2 / 3, abs=1e-6)
    flat = flat_metrics(0.75, 4, rows, attacks, ONE)
    assert flat["robustness_worst_accuracy"] == 0.25 and flat["robustness_worst_drop"] == 0.5
    assert flat["robustness_mean_accuracy"] == pytest.approx((0.75 + 0.25 + 1.0) / 3, abs=1e-6)
    assert flat["robustness_a_accuracy"] == 0.25 and flat["robustness_b_accuracy"] == 1.0  # at the strongest severity run
    assert flat["attack_pgd_success_rate"] == attacks[0]["success_rate"] and flat["attack_rows"] == 4
    assert all(isinstance(v, (int, float)) for v in flat.values())  # flat: DVC can diff every value


def test_label_sets_are_scored_by_micro_f1_and_a_changed_set_is_a_flip():
    judge = Judge(get_task("multi_label"), ["a", "b", "c"], {}, {"thresholds": [0.5, 0.5, 0.5]})
    targets = np.array([[1, 0, 0], [0, 1, 1], [1, 1, 0]])
    clean = targets.copy()                                  # every label right: F1 1
    perturbed = np.array([[1, 0, 0], [0, 1, 0], [1, 1, 1]])  # row 1 misses c, row 2 adds c: tp 4, fp 1, fn 1 -> F1 8/10
    row = perturbation_row("typo", 1, 0.1, "u", perturbed, clean, targets, judge)
    assert row["f1_micro"] == pytest.approx(0.8, abs=1e-6) and row["drop"] == pytest.approx(0.2, abs=1e-6)
    assert row["flip_rate"] == pytest.approx(2 / 3, abs=1e-6)  # two of three label sets changed
    assert judge.columns() == (["perturbation", "severity", "amount", "unit", "rows", "f1_micro", "drop", "flip_rate"],
                               ["attack", "space", "epsilon", "steps", "max_edits", "rows", "clean_f1_micro", "f1_micro", "success_rate", "queries"])
    flat = flat_metrics(1.0, 3, [row], [], judge)
    assert flat["robustness_clean_f1_micro"] == 1.0 and flat["robustness_worst_f1_micro"] == row["f1_micro"]
    # the answers come from the thresholds of evaluate's decision
    assert judge.answers(torch.tensor([[0.0, 2.0, -2.0]])).tolist() == [[1, 1, 0]]
    assert Judge(judge.task, judge.names, {}, {"thresholds": [0.6, 0.95, 0.5]}).answers(torch.tensor([[0.0, 2.0, -2.0]])).tolist() == [[0, 0, 0]]


def test_values_are_scored_by_mae_and_a_move_past_the_tolerance_is_a_flip():
    judge = Judge(get_task("regression"), ["rating"], {"mean": 5.0, "std": 2.0})
    targets = np.array([4.0, 6.0, 8.0, 2.0])
    clean = np.array([4.5, 6.0, 7.0, 2.0])       # MAE 0.375
    perturbed = np.array([4.5, 7.0, 7.2, 2.0])   # row 1 moves by 1.0 (> 0.25 x std 2 = 0.5), row 2 by 0.2: MAE 0.575
    row = perturbation_row("typo", 2, 0.1, "u", perturbed, clean, targets, judge)
    assert row["mae"] == pytest.approx(0.575) and row["drop"] == pytest.approx(0.2)  # the increase: positive = worse
    assert row["flip_rate"] == 0.25 and row["mean_abs_change"] == pytest.approx(0.3)
    worse = perturbation_row("typo", 3, 0.2, "u", targets + 3, clean, targets, judge)
    flat = flat_metrics(0.375, 4, [row, worse], [], judge)
    assert flat["robustness_worst_mae"] == 3.0 and flat["robustness_worst_drop"] == pytest.approx(2.625)
    assert flat["robustness_mean_abs_change"] == pytest.approx((0.3 + (3.0 + 2.5 + 4.0 + 3.0) / 4) / 2, abs=1e-6)
    assert judge.answers(torch.tensor([[0.5], [-1.0]])).tolist() == [6.0, 3.0]  # logits on the standardised scale
    outcome = SimpleNamespace(name="fgsm", space="s", epsilon=0.1, steps=1, max_edits=None, predictions=perturbed, queries=None)
    assert attack_row(outcome, clean, targets, judge)["success_rate"] == 0.25  # every row counts, one moved past the tolerance


def test_the_row_sample_is_seeded_and_keeps_file_order():
    rows = [{"id": i} for i in range(50)]
    a = sample_rows(rows, 10, seed=1)
    assert a == sample_rows(rows, 10, seed=1) and a != sample_rows(rows, 10, seed=2)
    assert [r["id"] for r in a] == sorted(r["id"] for r in a) and len(a) == 10
    assert sample_rows(rows, None, 1) == rows and sample_rows(rows, 99, 1) == rows


def test_a_row_subset_and_item_equality():
    class Data:
        def __getitem__(self, i):
            return [i, i + 1], -1

        def lengths(self):
            return [2, 3, 4]

        def collate(self, items):
            return items

    subset = RowSubset(Data(), [2, 0])
    assert len(subset) == 2 and subset[0] == ([2, 3], -1) and subset.lengths() == [4, 2] and subset.collate([1]) == [1]
    assert same_item(([1, 2], -1), ([1, 2], -1)) and not same_item(([1, 2], -1), ([1, 3], -1))
    assert same_item((torch.ones(2), -1), (torch.ones(2), -1)) and not same_item((torch.ones(2), -1), (torch.zeros(2), -1))
    ids = np.array([5, 6, 7], dtype=np.int32)  # EncodedTexts items: int32 slices
    assert same_item((ids, -1), (ids.copy(), -1)) and not same_item((ids, -1), (ids[:2], -1)) and not same_item((ids, -1), (ids + 1, -1))
