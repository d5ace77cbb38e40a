"""The robustness numbers on hand-computed cases."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from tunepipe.robustness import RowSubset, same_item
from tunepipe.robustness.metrics import (
    accuracy, attack_row, flat_metrics, flip_rate, flipped, perturbation_row, sample_rows, success_rate,
)

TARGETS = [0, 0, 1, 1]
CLEAN = [0, 1, 1, 1]        # 3 of 4 right
PERTURBED = [1, 1, 1, 0]    # rows 0 and 3 flip; 1 of 4 right


def test_accuracy_drop_and_flip_rate_on_a_known_case():
    assert accuracy(CLEAN, TARGETS) == 0.75 and accuracy(PERTURBED, TARGETS) == 0.25
    assert flip_rate(PERTURBED, CLEAN) == 0.5
    assert success_rate(PERTURBED, CLEAN, TARGETS) == pytest.approx(2 / 3, abs=1e-6)  # rows 0 and 3 of the right 0, 2, 3
    row = perturbation_row("typo_drop", 2, 0.05, "share of letters deleted", PERTURBED, CLEAN, TARGETS)
    assert row == {"perturbation": "typo_drop", "severity": 2, "amount": 0.05, "unit": "share of letters deleted", "rows": 4,
                   "accuracy": 0.25, "drop": 0.5, "flip_rate": 0.5}
    assert flipped(PERTURBED, CLEAN, TARGETS, limit=5) == [0, 3]
    assert flipped([1, 0, 1, 1], CLEAN, TARGETS, limit=5, only_correct=True) == [0]  # row 1 was wrong before
    assert success_rate([0, 0], [1, 1], [0, 0]) is None  # nothing was right: no success rate


def test_the_flat_record_has_worst_mean_and_attack_numbers():
    rows = [perturbation_row("a", 1, 0.1, "u", CLEAN, CLEAN, TARGETS), perturbation_row("a", 3, 0.3, "u", PERTURBED, CLEAN, TARGETS),
            perturbation_row("b", 1, 0.1, "u", [0, 0, 1, 1], CLEAN, TARGETS)]
    outcome = SimpleNamespace(name="pgd", space="pixels", epsilon=0.01, steps=5, max_edits=None, predictions=torch.tensor([1, 0, 0, 1]), queries=None)
    attacks = [attack_row(outcome, CLEAN, TARGETS)]
    assert attacks[0]["accuracy"] == 0.5 and attacks[0]["success_rate"] == pytest.approx(2 / 3, abs=1e-6)
    flat = flat_metrics(0.75, 4, rows, attacks)
    assert flat["robustness_worst_accuracy"] == 0.25 and flat["robustness_worst_drop"] == 0.5
    assert flat["robustness_mean_accuracy"] == pytest.approx((0.75 + 0.25 + 1.0) / 3, abs=1e-6)
    assert flat["robustness_a_accuracy"] == 0.25 and flat["robustness_b_accuracy"] == 1.0  # at the strongest severity run
    assert flat["attack_pgd_success_rate"] == attacks[0]["success_rate"] and flat["attack_rows"] == 4
    assert all(isinstance(v, (int, float)) for v in flat.values())  # flat: DVC can diff every value


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
