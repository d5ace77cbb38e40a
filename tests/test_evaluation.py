"""Metric values checked against hand-computed cases."""

from __future__ import annotations

import pytest
import torch

from tunepipe.evaluation import classification_metrics, confusion_matrix


def test_binary_metrics_match_hand_computation():
    # targets: 1,1,1,0,0 ; predictions (argmax): 1,1,0,0,1
    probs = torch.tensor([[0.1, 0.9], [0.3, 0.7], [0.6, 0.4], [0.8, 0.2], [0.45, 0.55]])
    targets = torch.tensor([1, 1, 1, 0, 0])
    m = classification_metrics(probs, targets)
    assert m["accuracy"] == pytest.approx(3 / 5)
    # class 1: precision 2/3, recall 2/3; class 0: precision 1/2, recall 1/2
    assert m["precision_macro"] == pytest.approx((2 / 3 + 1 / 2) / 2, abs=1e-6)
    assert m["recall_macro"] == pytest.approx((2 / 3 + 1 / 2) / 2, abs=1e-6)
    assert m["f1_macro"] == pytest.approx((2 / 3 + 1 / 2) / 2, abs=1e-6)
    # AUROC on the positive-class score: positive scores .9 .7 .4 vs negatives .2 .55 -> 5 of 6 pairs ordered
    assert m["auroc"] == pytest.approx(5 / 6, abs=1e-6)


def test_confusion_matrix_rows_are_true_labels():
    preds = torch.tensor([0, 1, 1, 2, 2, 2])
    targets = torch.tensor([0, 0, 1, 2, 2, 1])
    assert confusion_matrix(preds, targets, 3) == [[1, 1, 0], [0, 1, 1], [0, 0, 2]]
