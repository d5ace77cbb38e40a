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


def one_hot_probs(preds: list[int], num_classes: int, confidence: float = 0.8) -> torch.Tensor:
    rest = (1 - confidence) / (num_classes - 1)
    probs = torch.full((len(preds), num_classes), rest)
    probs[torch.arange(len(preds)), torch.tensor(preds)] = confidence
    return probs


def test_weighted_and_per_class_scores_match_hand_computation():
    from tunepipe.evaluation import evaluate_predictions

    # targets 0,0,0,1,1,2 ; predictions 0,0,1,1,2,2
    targets = torch.tensor([0, 0, 0, 1, 1, 2])
    result = evaluate_predictions(one_hot_probs([0, 0, 1, 1, 2, 2], 3), targets, ["a", "b", "c"], resamples=20, seed=0)
    per_class = {row["label"]: row for row in result["per_class"]}
    # a: TP 2, FP 0, FN 1 -> P 1, R 2/3, F1 0.8 ; b: TP 1, FP 1, FN 1 -> 0.5 ; c: TP 1, FP 1, FN 0 -> P .5, R 1, F1 2/3
    assert [per_class[c]["f1"] for c in "abc"] == pytest.approx([0.8, 0.5, 2 / 3], abs=1e-6)
    assert [per_class[c]["precision"] for c in "abc"] == pytest.approx([1.0, 0.5, 0.5], abs=1e-6)
    assert [per_class[c]["recall"] for c in "abc"] == pytest.approx([2 / 3, 0.5, 1.0], abs=1e-6)
    assert [per_class[c]["support"] for c in "abc"] == [3, 2, 1]
    m = result["metrics"]
    assert m["f1_macro"] == pytest.approx((0.8 + 0.5 + 2 / 3) / 3, abs=1e-6)
    assert m["f1_weighted"] == pytest.approx((3 * 0.8 + 2 * 0.5 + 1 * 2 / 3) / 6, abs=1e-6)
    assert m["recall_weighted"] == pytest.approx(m["accuracy"], abs=1e-6) == pytest.approx(4 / 6, abs=1e-6)
    assert result["confusion"] == [[2, 1, 0], [0, 1, 1], [0, 0, 1]]
    expected = [[2 / 3, 1 / 3, 0], [0, 0.5, 0.5], [0, 0, 1]]
    assert all(row == pytest.approx(want, abs=1e-6) for row, want in zip(result["confusion_normalized"], expected))
    # three labels: one ROC/PR curve per label (one-vs-rest)
    assert {row["class"] for row in result["roc"]} == {"a", "b", "c"} == {row["class"] for row in result["pr"]}


def test_ece_and_reliability_bins_on_four_rows():
    from tunepipe.evaluation import calibration_bins, evaluate_predictions

    # confidences .95 (right), .94 (wrong): same bin [14/15, 1); .65 (right): bin 9; .72 (right): bin 10
    probs = torch.tensor([[0.95, 0.05], [0.06, 0.94], [0.65, 0.35], [0.28, 0.72]])
    targets = torch.tensor([0, 0, 0, 1])
    bins = calibration_bins(probs, targets)
    assert [(b["bin"], b["count"]) for b in bins] == [(9, 1), (10, 1), (14, 2)]
    assert bins[2]["confidence"] == pytest.approx(0.945, abs=1e-6) and bins[2]["accuracy"] == 0.5
    assert bins[0]["accuracy"] == 1.0 and bins[0]["confidence"] == pytest.approx(0.65, abs=1e-6)
    # ECE = sum over bins of share * |accuracy - confidence| = (2 * .445 + .35 + .28) / 4
    ece = evaluate_predictions(probs, targets, ["x", "y"], resamples=10, seed=0)["metrics"]["ece"]
    assert ece == pytest.approx((2 * 0.445 + 0.35 + 0.28) / 4, abs=1e-6)


def test_reliability_bins_give_torchmetrics_ece():
    from torchmetrics.classification import MulticlassCalibrationError

    from tunepipe.evaluation import calibration_bins

    generator = torch.Generator().manual_seed(3)
    probs = torch.softmax(torch.randn(500, 4, generator=generator) * 2, dim=1)
    targets = torch.randint(4, (500,), generator=generator)
    bins = calibration_bins(probs, targets)
    assert sum(b["count"] for b in bins) == 500
    from_bins = sum(b["count"] * abs(b["accuracy"] - b["confidence"]) for b in bins) / 500
    expected = MulticlassCalibrationError(num_classes=4, n_bins=15, norm="l1")(probs, targets)
    assert from_bins == pytest.approx(float(expected), abs=1e-5)


def test_binary_average_precision_and_roc_are_the_positive_class():
    from tunepipe.evaluation import evaluate_predictions

    # positive-class scores .9 (pos) .8 (neg) .7 (pos) .1 (neg): AP = .5 * 1 + .5 * 2/3
    p1 = torch.tensor([0.9, 0.8, 0.7, 0.1])
    probs = torch.stack([1 - p1, p1], dim=1)
    targets = torch.tensor([1, 0, 1, 0])
    result = evaluate_predictions(probs, targets, ["neg", "pos"], resamples=10, seed=0)
    assert result["metrics"]["average_precision"] == pytest.approx(0.5 + 0.5 * 2 / 3, abs=1e-6)
    assert result["metrics"]["auroc"] == pytest.approx(3 / 4, abs=1e-6)
    assert {row["class"] for row in result["roc"]} == {"pos"}
    points = [(row["fpr"], row["tpr"]) for row in result["roc"]]
    assert points == [(0, 0), (0, 0.5), (0.5, 0.5), (0.5, 1), (1, 1)]


def test_bootstrap_interval_contains_the_estimate_shrinks_with_more_data_and_is_seeded():
    from tunepipe.evaluation import bootstrap_intervals, classification_metrics

    generator = torch.Generator().manual_seed(0)
    targets = torch.randint(3, (60,), generator=generator)
    logits = torch.randn(60, 3, generator=generator) + 1.5 * torch.nn.functional.one_hot(targets, 3)
    probs = logits.softmax(dim=1)
    point = classification_metrics(probs, targets)
    small = bootstrap_intervals(probs, targets, resamples=300, seed=1)
    for name in ("accuracy", "f1_macro", "auroc"):
        low, high = small[name]
        assert low <= point[name] <= high and low < high, name
    big = bootstrap_intervals(probs.repeat(10, 1), targets.repeat(10), resamples=300, seed=1)
    for name in ("accuracy", "f1_macro", "auroc"):
        assert big[name][1] - big[name][0] < 0.6 * (small[name][1] - small[name][0]), name
    assert bootstrap_intervals(probs, targets, resamples=300, seed=1) == small
    assert bootstrap_intervals(probs, targets, resamples=300, seed=2) != small


def test_worst_errors_are_the_most_confident_wrong_predictions():
    from tunepipe.evaluation import worst_errors

    probs = torch.tensor([[0.9, 0.1], [0.2, 0.8], [0.4, 0.6], [0.05, 0.95], [0.7, 0.3]])
    targets = torch.tensor([0, 0, 0, 0, 1])  # wrong: rows 1 (.8), 2 (.6), 3 (.95), 4 (.7)
    assert worst_errors(probs, targets, 3) == [3, 1, 4]
    assert worst_errors(probs, targets, 0) == []
    assert worst_errors(probs[:1], targets[:1], 5) == []


def test_curves_are_thinned_keeping_both_ends():
    from tunepipe.evaluation import thin

    assert thin(5, 10) == [0, 1, 2, 3, 4]
    picked = thin(1001, 200)
    assert len(picked) == 200 and picked[0] == 0 and picked[-1] == 1000 and picked == sorted(set(picked))


@pytest.mark.parametrize("ties", [False, True])
def test_ranked_auroc_of_resamples_equals_torchmetrics(ties):
    """The bootstrap's AUROC for many rows x classes (one sort, weighted counts) is torchmetrics' exact AUROC."""
    from torchmetrics.classification import MulticlassAUROC

    from tunepipe.evaluation import RankedAUROC, stratified_resamples

    generator = torch.Generator().manual_seed(0)
    targets = torch.arange(300) % 7
    probs = torch.softmax(torch.randn(300, 7, generator=generator) + 2 * torch.nn.functional.one_hot(targets, 7), dim=1)
    if ties:  # scores repeated across rows, within and across classes
        probs = (probs * 8).round() / 8
    ranked = RankedAUROC(probs, targets)
    assert ranked.ties is ties
    for index in stratified_resamples(targets, 7, resamples=5, seed=1):
        expected = float(MulticlassAUROC(num_classes=7, average="macro")(probs[index], targets[index]))
        assert ranked.macro(index) == pytest.approx(expected, abs=1e-6)


def test_the_bootstrap_of_many_rows_and_classes_counts_auroc_from_one_sort(monkeypatch):
    from tunepipe import evaluation

    generator = torch.Generator().manual_seed(0)
    targets = torch.arange(400) % 5
    probs = torch.softmax(torch.randn(400, 5, generator=generator), dim=1)
    exact = evaluation.bootstrap_intervals(probs, targets, resamples=50, seed=3)
    monkeypatch.setattr(evaluation, "RANKED_AUROC_CELLS", 100)
    ranked = evaluation.bootstrap_intervals(probs, targets, resamples=50, seed=3)
    assert ranked["accuracy"] == exact["accuracy"] and ranked["f1_macro"] == exact["f1_macro"]
    assert ranked["auroc"] == pytest.approx(exact["auroc"], abs=2e-6)
