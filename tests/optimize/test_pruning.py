"""Pruning: unstructured zeroes weights, structured really removes them, pruned models still run and reload."""

from __future__ import annotations

import pytest
import torch

from tunepipe.checkpoints import load_model, save_model
from tunepipe.modalities import get_modality
from tunepipe.models.structure import restore_structure, structure
from tunepipe.optimize.pruning import (
    PruningLevel,
    count_params,
    magnitude_prune,
    prunable_weights,
    select_level,
    sparsity_report,
    structured_prune,
)

def build_text_classifier(model_cfg):
    return get_modality("text").build_classifier(model_cfg, num_labels=2)


TOKENS = {"input_ids": torch.tensor([[101, 2023, 2003, 1037, 3231, 102], [101, 2204, 102, 0, 0, 0]]), "attention_mask": torch.tensor([[1] * 6, [1, 1, 1, 0, 0, 0]])}


def test_pruning_zeroes_the_requested_fraction_of_encoder_linear_weights(tiny_model_cfg):
    dense = build_text_classifier(tiny_model_cfg)
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
    pruned = magnitude_prune(build_text_classifier(tiny_model_cfg), 0.3)
    weights = torch.cat([getattr(m, n).detach().flatten() for m, n in prunable_weights(pruned)])
    kept = weights[weights != 0].abs()
    dense_weights = torch.cat([getattr(m, n).detach().flatten() for m, n in prunable_weights(build_text_classifier(tiny_model_cfg))])
    threshold = dense_weights.abs().kthvalue(int(0.3 * dense_weights.numel())).values
    assert kept.min() >= threshold


def test_finetune_after_unstructured_pruning_keeps_the_zeros(tiny_model_cfg):
    dense = build_text_classifier(tiny_model_cfg)

    def finetune(model):
        with torch.no_grad():  # stands in for optimizer steps: every weight moves
            for module, name in prunable_weights(model):
                getattr(module, f"{name}_orig").add_(1.0)

    pruned = magnitude_prune(dense, 0.5, finetune)
    assert sparsity_report(pruned)["actual_sparsity"] == pytest.approx(0.5, abs=1e-3)


def test_structured_pruning_removes_heads_and_ffn_neurons(tiny_model_cfg):
    # tiny BERT: hidden 32, 2 layers, 2 heads of 16, FFN 64. At 0.5 each layer loses 1 head and 32 FFN neurons:
    # q, k, v lose 16 rows (16*32 weights + 16 biases each), attention output loses 16 input columns (16*32);
    # FFN in loses 32 rows (32*32 + 32), FFN out loses 32 input columns (32*32).
    per_layer = 3 * (16 * 32 + 16) + 16 * 32 + (32 * 32 + 32) + 32 * 32
    dense = build_text_classifier(tiny_model_cfg).eval()
    pruned = structured_prune(dense, 0.5, TOKENS)
    assert count_params(dense) - count_params(pruned) == 2 * per_layer
    for layer in pruned.encoder.encoder.layer:
        assert layer.attention.self.num_attention_heads == 1 and layer.attention.self.query.out_features == 16
        assert layer.intermediate.dense.out_features == 32 and layer.output.dense.in_features == 32
    assert pruned(**TOKENS).shape == (2, 2) and torch.isfinite(pruned(**TOKENS)).all()
    assert count_params(dense) == count_params(build_text_classifier(tiny_model_cfg))  # original untouched


def test_structured_pruning_keeps_the_heads_with_the_largest_weights(tiny_model_cfg):
    dense = build_text_classifier(tiny_model_cfg).eval()
    attn = dense.encoder.encoder.layer[0].attention.self
    with torch.no_grad():
        for name in ("query", "key", "value"):
            getattr(attn, name).weight[:16].mul_(10.0)  # head 0 dominates
    pruned = structured_prune(dense, 0.5, TOKENS)
    assert torch.equal(pruned.encoder.encoder.layer[0].attention.self.query.weight, attn.query.weight[:16])


def test_a_structurally_pruned_model_saves_and_reloads(tmp_path, tiny_model_cfg):
    pruned = structured_prune(build_text_classifier(tiny_model_cfg).eval(), 0.5, TOKENS)
    path = tmp_path / "model.pt"
    level = PruningLevel.at("structured", 0.5)
    save_model(path, pruned, model_cfg=tiny_model_cfg, label_names=["neg", "pos"], modality="text", pruning_level=level.as_dict(), structure=structure(pruned))
    reloaded, payload = load_model(path)
    assert PruningLevel.from_dict(payload["pruning_level"]) == level
    assert count_params(reloaded) == count_params(pruned)
    with torch.no_grad():
        assert torch.allclose(reloaded(**TOKENS), pruned(**TOKENS), atol=1e-6)


def test_channel_pruning_shrinks_the_cnn_and_it_still_runs():
    cfg = {"pretrained": "efficientnet-lite0", "dropout": 0.0, "image_size": 32}
    dense = get_modality("image").build_classifier(cfg, num_labels=3, pretrained_weights=False).eval()
    pixels = {"pixels": torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8)}
    pruned = structured_prune(dense, 0.5, pixels)
    convs = [m for m in pruned.encoder.modules() if isinstance(m, torch.nn.Conv2d)]
    dense_convs = [m for m in dense.encoder.modules() if isinstance(m, torch.nn.Conv2d)]
    assert sum(c.out_channels for c in convs) < 0.6 * sum(c.out_channels for c in dense_convs)
    assert count_params(pruned) < 0.5 * count_params(dense)
    assert pruned.head.out_features == 3 and pruned.head.in_features < dense.head.in_features
    assert pruned(**pixels).shape == (2, 3)
    fresh = get_modality("image").build_classifier(cfg, num_labels=3, pretrained_weights=False)
    restore_structure(fresh, structure(pruned), pruned.state_dict()).load_state_dict(pruned.state_dict())
    with torch.no_grad():
        assert torch.allclose(fresh.eval()(**pixels), pruned(**pixels), atol=1e-5)


LEVELS = [
    {"name": "dense", "method": "dense", "val_accuracy": 0.80, "nonzero_params": 1000, "latency_ms": 10.0},
    {"name": "unstructured-0.20", "method": "unstructured", "val_accuracy": 0.80, "nonzero_params": 800, "latency_ms": 10.0},
    {"name": "unstructured-0.40", "method": "unstructured", "val_accuracy": 0.792, "nonzero_params": 600, "latency_ms": 10.1},
    {"name": "structured-0.20", "method": "structured", "val_accuracy": 0.795, "nonzero_params": 700, "latency_ms": 7.0},
    {"name": "unstructured-0.60", "method": "unstructured", "val_accuracy": 0.70, "nonzero_params": 400, "latency_ms": 10.0},
]


def test_select_level_picks_the_smallest_or_fastest_within_the_allowed_drop():
    assert select_level(LEVELS, 0.01)["name"] == "unstructured-0.40"
    assert select_level(LEVELS, 0.01, "fastest")["name"] == "structured-0.20"
    assert select_level(LEVELS, 0.0)["name"] == "unstructured-0.20"
    assert select_level(LEVELS, 0.0, "fastest")["name"] == "dense"  # dense and unstructured-0.20 tie (10 ms, 0.80): the first listed wins
    assert select_level(LEVELS, 0.2)["name"] == "unstructured-0.60"


def test_a_level_is_one_record_that_round_trips():
    level = PruningLevel.at("unstructured", 0.4)
    assert level.as_dict() == {"name": "unstructured-0.40", "method": "unstructured", "sparsity": 0.4}
    assert PruningLevel.from_dict(level.as_dict()) == level
    assert PruningLevel.at("dense", 0.0).name == "dense"
    with pytest.raises(ValueError, match="unknown pruning method"):
        PruningLevel.at("random", 0.5)


def test_the_plan_starts_dense_then_each_method_from_the_lowest_sparsity():
    from dataclasses import replace

    from tunepipe.optimize.levels import PruneSettings

    settings = PruneSettings(method="both", sparsities=(0.4, 0.2), max_accuracy_drop=0.01, select="smallest", finetune_steps=0,
                             finetune_lr=1e-5, finetune_batch_size=4, latency_runs=2, batch_size=8)
    assert [level.name for level in settings.plan()] == ["dense", "unstructured-0.20", "unstructured-0.40", "structured-0.20", "structured-0.40"]
    assert [level.method for level in replace(settings, method="structured").plan()] == ["dense", "structured", "structured"]
