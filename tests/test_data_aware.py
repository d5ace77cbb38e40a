"""Data-aware defaults (`model.max_length: auto`, `train.max_epochs: auto`) on hand-built cases, and through training."""

from __future__ import annotations

import pytest

from tunepipe.data_aware import MAX_AUTO_EPOCHS, MAX_LENGTH_BUDGET, auto_max_epochs, auto_max_length, resolve_max_epochs, token_length_facts


def test_auto_length_covers_the_95th_percentile_rounded_up_to_a_multiple_of_8():
    lengths = list(range(1, 101))  # p95 = 95.05 -> 96
    assert auto_max_length(lengths, model_limit=512) == 96
    assert auto_max_length([3] * 50, model_limit=512) == 16  # never below 16
    assert auto_max_length([900] * 10, model_limit=512) == MAX_LENGTH_BUDGET  # the compute budget caps it
    assert auto_max_length([900] * 10, model_limit=128) == 128  # and so does the model's own limit


def test_truncation_is_counted_against_the_chosen_length():
    facts = token_length_facts([10, 20, 30, 40], max_length=25)
    assert facts["truncated_texts"] == 2 and facts["truncated_share"] == 0.5 and facts["longest"] == 40


def test_auto_epochs_give_at_least_min_steps_and_stay_within_bounds():
    assert auto_max_epochs(rows=4159, batch_size=32, accumulate_grad_batches=1, min_steps=250) == 2  # 130 steps an epoch
    assert auto_max_epochs(rows=320, batch_size=32, accumulate_grad_batches=1, min_steps=250) == MAX_AUTO_EPOCHS  # 10 steps: capped
    assert auto_max_epochs(rows=1000, batch_size=32, accumulate_grad_batches=1, min_steps=250) == 8  # 32 steps
    assert auto_max_epochs(rows=100_000, batch_size=32, accumulate_grad_batches=1, min_steps=250) == 1
    assert auto_max_epochs(rows=4159, batch_size=32, accumulate_grad_batches=2, min_steps=250) == 4  # 65 optimizer steps
    assert auto_max_epochs(rows=4159, batch_size=32, accumulate_grad_batches=1, min_steps=250, processes=2) == 4  # 65 per rank


def test_an_explicit_epoch_count_is_kept():
    cfg = {"max_epochs": 3, "batch_size": 32, "accumulate_grad_batches": 1, "min_steps": 250}
    assert resolve_max_epochs(cfg, rows=10) == (cfg, {"value": 3, "auto": False})
    resolved, facts = resolve_max_epochs({**cfg, "max_epochs": "auto"}, rows=1000)
    assert resolved["max_epochs"] == 8 and facts == {"value": 8, "auto": True, "min_steps": 250, "steps_per_epoch": 32, "rows": 1000}


@pytest.mark.parametrize("max_length", ["auto", 8])
def test_the_text_modality_resolves_the_length_from_the_user_texts_not_the_augmented_copies(tiny_model_cfg, max_length):
    from tunepipe.modalities import get_modality

    text = get_modality("text")
    tokenizer = text.load_processor(tiny_model_cfg)
    short, long = "a good film", " ".join(["word"] * 40)
    rows = [{"text": short}] * 17 + [{"text": long}] * 3 + [{"text": long * 3, "augmented": True}] * 50
    cfg, facts = text.resolve_model_cfg({**tiny_model_cfg, "max_length": max_length}, rows, tokenizer)
    lengths = [len(tokenizer(row["text"])["input_ids"]) for row in rows[:20]]
    if max_length == "auto":
        assert cfg["max_length"] == auto_max_length(lengths, tokenizer.model_max_length) == 48  # p95 of 17 x 5 and 3 x 42 tokens: 42, rounded up
    else:
        assert cfg["max_length"] == 8
    info = facts["model.max_length"]
    assert info["texts"] == 20 and info["value"] == cfg["max_length"] and info["auto"] is (max_length == "auto")
    assert info["truncated_texts"] == sum(length > cfg["max_length"] for length in lengths)
