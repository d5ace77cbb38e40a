"""Sweep variants (names, order, validation), cross-validation folds and the selection of the winner."""

from __future__ import annotations

import pytest

from tunepipe.config import validate_params
from tunepipe.data.splitting import cv_partition
from tunepipe.errors import DataError, ParamsError
from tunepipe.sweep import Variant, apply_overrides, expand_variants, select, sweep_enabled, validate_run_params

GRID = {"train.encoder_lr": [1.0e-5, 5.0e-5], "train.batch_size": [8, 16]}


def params(**sweep):
    return validate_params({"sweep": sweep}) if sweep else validate_params({})


def test_no_sweep_and_no_folds_means_no_variants():
    default = params()
    assert expand_variants(default) == [] and not sweep_enabled(default)


def test_folds_alone_cross_validate_the_params_as_they_are():
    cv = validate_params({"split": {"folds": 3}})
    assert expand_variants(cv) == [Variant("default", {})] and sweep_enabled(cv)


def test_a_2x2_grid_gives_four_named_variants_in_declared_order():
    variants = expand_variants(params(method="grid", parameters=GRID))
    assert [v.name for v in variants] == [
        "encoder_lr-1e-05__batch_size-8", "encoder_lr-1e-05__batch_size-16",
        "encoder_lr-5e-05__batch_size-8", "encoder_lr-5e-05__batch_size-16",
    ]
    assert variants[1].overrides == {"train.encoder_lr": 1.0e-5, "train.batch_size": 16}


def test_random_draws_are_distinct_seeded_and_reproducible():
    grid = {"train.encoder_lr": [1e-5, 2e-5, 3e-5, 5e-5], "train.head_lr": [1e-4, 1e-3, 1e-2], "seed": [1, 2]}
    a = expand_variants(params(method="random", parameters=grid, samples=5, seed=3))
    b = expand_variants(params(method="random", parameters=grid, samples=5, seed=3))
    c = expand_variants(params(method="random", parameters=grid, samples=5, seed=4))
    assert a == b and len(a) == 5 and len({v.name for v in a}) == 5
    assert a != c
    all_of_it = expand_variants(params(method="random", parameters=grid, samples=100))
    assert len(all_of_it) == 24  # never more than the grid holds


def test_values_given_as_text_are_read_as_the_schema_says():
    # `snakemake --config sweep='{...}'` hands nested values over as strings.
    variants = expand_variants(params(method="grid", parameters={"train.batch_size": ["8"]}))
    assert variants == [Variant("batch_size-8", {"train.batch_size": 8})]


def test_optimizer_keyword_arguments_can_be_swept():
    variants = expand_variants(params(method="grid", parameters={"train.optimizer._target_": ["torch.optim.SGD"], "train.optimizer.momentum": [0.9]}))
    assert variants[0].name == "_target_-SGD__momentum-0.9"
    resolved = apply_overrides(params(), variants[0].overrides)
    assert resolved["train"]["optimizer"] == {"_target_": "torch.optim.SGD", "weight_decay": 0.01, "momentum": 0.9}


@pytest.mark.parametrize(("grid", "message"), [
    ({"train.encoder_lrr": [1e-5]}, "unknown key 'train.encoder_lrr'"),
    ({"trian.encoder_lr": [1e-5]}, "'trian.encoder_lr' cannot be swept"),
    ({"split.folds": [2, 3]}, "'split.folds' cannot be swept"),
    ({"train.batch_size": [16, 0]}, "train.batch_size: expected an integer >= 1"),
    ({"train.monitor": ["val_f2"]}, "train.monitor: \"val_f2\" is not allowed"),
])
def test_bad_sweep_parameters_name_the_key(grid, message):
    with pytest.raises(ParamsError, match=message.replace("(", r"\(").replace(".", r"\.")):
        validate_run_params({"sweep": {"method": "grid", "parameters": grid}})


def test_a_method_without_parameters_and_parameters_without_a_method_are_errors():
    with pytest.raises(ParamsError, match="sweep.parameters is empty"):
        validate_run_params({"sweep": {"method": "grid"}})
    with pytest.raises(ParamsError, match="sweep.method is none"):
        validate_run_params({"sweep": {"parameters": GRID}})


def test_run_params_name_the_source_and_the_variant_that_is_invalid():
    with pytest.raises(ParamsError) as info:
        validate_run_params({"sweep": {"method": "grid", "parameters": {"train.batch_size": [16, 0]}}}, source="mine.yaml")
    assert str(info.value).startswith("invalid parameters in mine.yaml") and '{"train.batch_size": 0}' in str(info.value)
    assert validate_run_params({}) == validate_params({})


def test_config_alone_does_not_expand_the_sweep():
    # config sits below sweep (no import cycle): a bad sweep only fails where variants are expanded.
    bad = {"sweep": {"method": "grid"}}
    assert validate_params(bad)["sweep"]["method"] == "grid"
    with pytest.raises(ParamsError):
        validate_run_params(bad)


def trial(variant, fold, score):
    return {"variant": variant, "overrides": {"train.encoder_lr": variant}, "fold": fold, "score": score}


def test_selection_ranks_on_the_cross_validation_mean_with_std():
    trials = [trial("a", 0, 0.78), trial("a", 1, 0.60), trial("b", 1, 0.72), trial("b", 0, 0.68), trial("c", 0, 0.9), trial("c", 1, 0.3)]
    chosen = select(trials, "val_f1_macro", "max")
    assert chosen["winner"] == "b" and chosen["overrides"] == {"train.encoder_lr": "b"}
    assert [v["name"] for v in chosen["variants"]] == ["b", "a", "c"] and [v["rank"] for v in chosen["variants"]] == [1, 2, 3]
    b = chosen["variants"][0]
    assert b["folds"] == [0, 1] and b["scores"] == [0.68, 0.72]
    assert b["mean"] == pytest.approx(0.70) and b["std"] == pytest.approx(0.028284271, abs=1e-8)  # sample std of 0.68, 0.72
    assert chosen["mean"] == pytest.approx(0.70) and b["winner"] and not chosen["variants"][1]["winner"]


def test_selection_minimises_when_asked_and_breaks_ties_by_declared_order():
    trials = [trial("a", None, 0.5), trial("b", None, 0.3), trial("c", None, 0.3)]
    assert select(trials, "val_loss", "min")["winner"] == "b"
    assert select(trials, "val_loss", "max")["winner"] == "a"
    assert select([trial("x", None, 0.5), trial("y", None, 0.5)], "val_accuracy", "max")["winner"] == "x"
    assert select(trials, "val_loss", "min")["variants"][0]["std"] == 0.0


def test_a_cv_fold_trains_on_the_other_folds_with_their_augmented_copies():
    rows = [{"id": f"r{i}", "label": "x", "fold": i % 2, "augmented": False} for i in range(6)]
    rows += [{"id": "r1-aug0", "label": "x", "augmented": True, "source_id": "r1"}, {"id": "r2-aug0", "label": "x", "augmented": True, "source_id": "r2"}]
    train, held_out = cv_partition(rows, 0)
    assert [r["id"] for r in train] == ["r1", "r3", "r5", "r1-aug0"]
    assert [r["id"] for r in held_out] == ["r0", "r2", "r4"]  # the augmented copy of r2 is neither trained nor validated on
    with pytest.raises(DataError, match="fold numbers"):
        cv_partition([{"id": "a", "label": "x", "augmented": False}], 0)
