"""Training steered by steps on big data: train.max_steps, validation within epochs (train.val_check_interval) and
the linear probe's sample (train.probe_rows); a run validated within epochs still resumes bit for bit."""

from __future__ import annotations

import signal

import pytest

from tests.test_resume import At, assert_same_weights, mid_epoch_position, run_fit, send, train_cfg, without_seconds
from tunepipe.data_aware import LONG_EPOCH_STEPS, auto_val_check_interval, resolve_max_epochs, resolve_val_check_interval
from tunepipe.errors import TunepipeError
from tunepipe.training import probe_sample


def test_auto_validates_short_epochs_at_their_end_and_long_ones_several_times():
    assert auto_val_check_interval(100, None, 3200, 800) is None  # the bundled data: ~100 steps an epoch
    assert auto_val_check_interval(LONG_EPOCH_STEPS, None, 32_000, 8000) is None
    # a million rows at batch 32 (31,250 steps), 900k training and 100k validation rows: 3 checks keep validation's cost
    # within a third of training's
    assert auto_val_check_interval(31_250, None, 900_000, 100_000) == 10_417
    # lots of training rows per validation row: one check per 1,000 steps, at most 10
    assert auto_val_check_interval(5_000, None, 5_000_000, 1_000) == 1_000
    assert auto_val_check_interval(31_250, None, 5_000_000, 1_000) == 3_125
    # at least 2 checks however costly
    assert auto_val_check_interval(3_000, None, 96_000, 48_000) == 1_500
    # max_steps ends the run within its first epoch: validated at its end, or within it when that is long
    assert auto_val_check_interval(900, 300, 28_800, 3_000) == 300
    assert auto_val_check_interval(31_250, 4_000, 900_000, 10_000) == 1_000
    assert auto_val_check_interval(900, 2_000, 28_800, 3_000) is None  # max_steps past the epoch: epochs end normally


def test_max_steps_sets_auto_epochs_and_an_explicit_interval_is_kept(default_params):
    cfg = dict(default_params["train"], batch_size=32, max_steps=500)
    resolved, facts = resolve_max_epochs(cfg, 3200)
    assert resolved["max_epochs"] == 5 and facts == {"value": 5, "auto": True, "max_steps": 500, "steps_per_epoch": 100, "rows": 3200}
    resolved, facts = resolve_val_check_interval(dict(cfg, val_check_interval=40), 3200, 800)
    assert resolved["val_check_interval"] == 40 and facts["auto"] is False
    resolved, facts = resolve_val_check_interval(dict(cfg, max_steps=None, val_check_interval="auto"), 3200, 800)
    assert resolved["val_check_interval"] is None and facts["value"] == "epoch end"


def test_probe_sample_is_every_row_up_to_the_cap_then_a_seeded_sample():
    rows = list(range(0, 100, 2))
    assert probe_sample(rows, 50, seed=1) == rows
    sample = probe_sample(rows, 10, seed=1)
    assert len(sample) == 10 and sample == sorted(sample) and set(sample) <= set(rows)
    assert probe_sample(rows, 10, seed=1) == sample != probe_sample(rows, 10, seed=2)


def test_validation_every_n_steps_gives_a_history_row_per_validation(tmp_path, labelled_rows, tiny_model_cfg, default_params):
    # 36 training rows at batch 4: 9 steps an epoch; validation every 3 steps, across 2 epochs: 6 validations
    result = run_fit(labelled_rows, tmp_path / "run", tiny_model_cfg, train_cfg(default_params, max_epochs=2, val_check_interval=3))
    assert [row["epoch"] for row in result.history] == [0.3333, 0.6667, 1.0, 1.3333, 1.6667, 2.0]
    assert all({"train_loss", "val_loss", "val_f1_macro"} <= set(row) for row in result.history)
    assert len({row["train_loss"] for row in result.history}) == 6  # each the mean since the validation before
    best = max(result.history, key=lambda row: row["val_f1_macro"])
    assert result.summary["best_score"] == pytest.approx(best["val_f1_macro"], abs=1e-6) and result.summary["best_epoch"] == best["epoch"]
    assert result.summary["validations"] == 6 and result.summary["steps"] == 18 and result.summary["epochs_run"] == 2.0


def test_max_steps_stops_within_an_epoch_and_validates_at_the_end(tmp_path, labelled_rows, tiny_model_cfg, default_params):
    result = run_fit(labelled_rows, tmp_path / "run", tiny_model_cfg, train_cfg(default_params, max_epochs="auto", max_steps=5))
    assert result.summary["steps"] == 5 and result.summary["val_check_interval"] == 5
    assert [row["epoch"] for row in result.history] == [0.5556]
    assert result.summary["data_aware"]["train.max_epochs"]["value"] == 1


def test_a_run_validated_within_epochs_resumes_from_a_mid_epoch_checkpoint_bit_for_bit(tmp_path, labelled_rows, tiny_model_cfg, default_params):
    cfg = train_cfg(default_params, max_epochs=2, val_check_interval=4)
    reference = run_fit(labelled_rows, tmp_path / "ref", tiny_model_cfg, cfg)
    # 9 steps an epoch, validations at global steps 4, 8, 12 and 16. SIGTERM at epoch 2, step 2 (global step 11): saved
    # between the validations at 8 and 12; the resumed run must still validate at 12 and 16, with the same means.
    with pytest.raises(TunepipeError, match="re-run to resume"):
        run_fit(labelled_rows, tmp_path / "run", tiny_model_cfg, cfg, callbacks=(At(2, 2, send(signal.SIGTERM)),))
    assert mid_epoch_position(tmp_path / "run" / "last.ckpt") == (1, 2)
    resumed = run_fit(labelled_rows, tmp_path / "run", tiny_model_cfg, cfg)
    assert resumed.summary["resumed"] is True and len(reference.history) == 4
    assert without_seconds(resumed.history) == without_seconds(reference.history)
    assert_same_weights(resumed.best_checkpoint, reference.best_checkpoint)
    assert_same_weights(tmp_path / "run" / "last.ckpt", tmp_path / "ref" / "last.ckpt")
