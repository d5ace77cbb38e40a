"""Magnitude pruning really zeroes weights, leaves the head alone, and the selection rule is right."""

from __future__ import annotations

import pytest
import torch

from tunepipe.models.classifier import build_classifier
from tunepipe.optimize.pruning import magnitude_prune, prunable_weights, select_level, sparsity_report


def test_pruning_zeroes_the_requested_fraction_of_encoder_linear_weights(tiny_model_cfg):
    dense = build_classifier(tiny_model_cfg, num_labels=2)
    pruned = magnitude_prune(dense, 0.5)
    report = sparsity_report(pruned)
    assert report["actual_sparsity"] == pytest.approx(0.5, abs=1e-3)
    assert report["nonzero_params"] < sparsity_report(dense)["nonzero_params"]
    assert torch.equal(pruned.head.weight, dense.head.weight)
    assert sparsity_report(dense)["actual_sparsity"] == 0.0  # the original is untouched
    # permanent: no pruning masks or hooks left behind
    assert not any(name.endswith("_mask") for name, _ in pruned.named_buffers())
    assert all(not hasattr(module, "weight_orig") for module, _ in prunable_weights(pruned))


def test_the_smallest_weights_go_first(tiny_model_cfg):
    pruned = magnitude_prune(build_classifier(tiny_model_cfg, num_labels=2), 0.3)
    weights = torch.cat([getattr(m, n).detach().flatten() for m, n in prunable_weights(pruned)])
    kept = weights[weights != 0].abs()
    dense_weights = torch.cat([getattr(m, n).detach().flatten() for m, n in prunable_weights(build_classifier(tiny_model_cfg, num_labels=2))])
    threshold = dense_weights.abs().kthvalue(int(0.3 * dense_weights.numel())).values
    assert kept.min() >= threshold


def test_select_level_picks_the_sparsest_within_the_allowed_drop():
    levels = [
        {"sparsity": 0.0, "val_accuracy": 0.80},
        {"sparsity": 0.2, "val_accuracy": 0.80},
        {"sparsity": 0.4, "val_accuracy": 0.792},
        {"sparsity": 0.6, "val_accuracy": 0.70},
    ]
    assert select_level(levels, 0.01) == 0.4
    assert select_level(levels, 0.0) == 0.2
    assert select_level(levels, 0.2) == 0.6
