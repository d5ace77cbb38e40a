"""evaluate's trust outputs (`tunepipe.trust.assess.assess`) for each task, on small hand-made outputs."""

from __future__ import annotations

import pytest
import torch

from tunepipe.modalities import get_modality
from tunepipe.tasks import get_task
from tunepipe.trust.assess import assess
from tunepipe.trust.slices import csv_fields, flat_rows

CFG = {"slice_columns": [], "bootstrap_resamples": 100, "slice_min_rows": 10, "alpha": 0.05}
N = 60


def run(task_name, names, rows, outputs, baseline, targets, decision=None):
    return assess(get_task(task_name), rows=rows, modality=get_modality("text"), names=names, outputs=outputs, baseline_outputs=baseline,
                  targets=targets, decision=decision or {}, evaluate_cfg=CFG, seed=0, train_summary={}, train_history=[], source="test.jsonl")


def text_rows(labels):
    # group a: rows 0-29, group b: rows 30-59
    return [{"id": str(i), "text": "word " * (1 + i % 7), "group": "a" if i < N // 2 else "b", "label": label} for i, label in enumerate(labels)]


def test_one_label_per_row_keeps_its_keys():
    targets = torch.tensor([i % 2 for i in range(N)])
    right = torch.nn.functional.one_hot(targets, 2).double()
    outputs = right.clone()
    outputs[N // 2: N // 2 + 10] = 1 - outputs[N // 2: N // 2 + 10]  # ten errors, all in group b
    slices, comparison, flat = run("single_label", ["neg", "pos"], text_rows(["neg", "pos"] * (N // 2)), outputs, 1 - right, targets)
    assert list(flat) == ["worst_slice_accuracy", "worst_slice_gap", "vs_baseline_p_value", "vs_baseline_accuracy_diff",
                          "vs_baseline_accuracy_diff_ci_low", "vs_baseline_accuracy_diff_ci_high", "vs_baseline_f1_macro_diff",
                          "vs_baseline_f1_macro_diff_ci_low", "vs_baseline_f1_macro_diff_ci_high"]
    assert slices["worst"]["value"] == "b" and flat["worst_slice_accuracy"] == pytest.approx(20 / 30, abs=1e-6)
    versus = comparison["fine_tuned_vs_baseline"]
    assert versus["verdict"] == "better" and "mcnemar" in versus and comparison["diagnosis"] is None


def test_label_sets_get_micro_f1_slices_and_a_wilcoxon_comparison():
    names = ["x", "y", "z"]
    targets = torch.tensor([[(i >> j) & 1 for j in range(3)] for i in range(N)], dtype=torch.float32)
    outputs = targets * 0.8 + 0.1
    outputs[N // 2:, 2] = 0.9  # group b claims z everywhere
    baseline = 1 - outputs.double()
    rows = text_rows([[n for n, on in zip(names, t) if on] for t in targets.tolist()])
    slices, comparison, flat = run("multi_label", names, rows, outputs, baseline, targets, {"thresholds": [0.5, 0.5, 0.5]})
    assert slices["metric"] == "f1_micro" and slices["worst"]["value"] == "b" and slices["worst"]["f1_micro"] < 1.0
    assert flat["worst_slice_f1_micro"] == slices["worst"]["f1_micro"] and flat["worst_slice_gap"] > 0
    assert {"vs_baseline_f1_micro_diff", "vs_baseline_f1_macro_diff_ci_high", "vs_baseline_p_value"} <= set(flat)
    versus = comparison["fine_tuned_vs_baseline"]
    assert versus["verdict"] == "better" and versus["wilcoxon"]["mean_difference"] < 0 and "Wilcoxon" in versus["sentence"]
    assert set(flat_rows(slices)[0]) == set(csv_fields(slices))
    # the baseline scored better: the diagnosis quotes the task's metric
    _, worse, _ = run("multi_label", names, rows, baseline, outputs.double(), targets, {"thresholds": [0.5, 0.5, 0.5]})
    assert worse["fine_tuned_vs_baseline"]["verdict"] == "worse" and "f1 micro" in worse["diagnosis"]["headline"]


def test_values_get_the_highest_error_slice_and_lower_errors_win():
    targets = torch.linspace(1.0, 9.0, N)
    outputs = targets + torch.tensor([0.1] * (N // 2) + [0.6] * (N // 2))
    baseline = (targets + 2.0).double()
    slices, comparison, flat = run("regression", ["rating"], text_rows(targets.tolist()), outputs, baseline, targets)
    assert slices["lower_is_better"] and slices["worst"]["value"] == "b"
    assert flat["worst_slice_mae"] == pytest.approx(0.6, abs=1e-5) and flat["worst_slice_gap"] == pytest.approx(0.25, abs=1e-5)
    assert flat["vs_baseline_mae_diff"] == pytest.approx(0.35 - 2.0, abs=1e-5) and flat["vs_baseline_mae_diff_ci_high"] < 0
    assert {"vs_baseline_rmse_diff", "vs_baseline_r2_diff_ci_low"} <= set(flat)
    assert comparison["fine_tuned_vs_baseline"]["verdict"] == "better" and comparison["diagnosis"] is None
    _, worse, _ = run("regression", ["rating"], text_rows(targets.tolist()), baseline.float(), outputs.double(), targets)
    assert "mae 2 against 0.35" in worse["diagnosis"]["headline"]
