"""The verdict against the baseline in words: each cause fires on its stated evidence and names the params to change."""

from __future__ import annotations

from tunepipe.trust.diagnosis import diagnose

WORSE = {"verdict": "worse", "accuracy_a": 0.643, "accuracy_b": 0.719}
TIE = {"verdict": "no significant difference", "accuracy_a": 0.70, "accuracy_b": 0.71}


def summary(**facts):
    base = {"epochs_run": 2, "best_epoch": 1, "train_rows": 5000,
            "data_aware": {"model.max_length": {"value": 48, "max_length": 48, "auto": False, "texts": 5000, "truncated_texts": 50,
                                                "truncated_share": 0.01, "p95": 40, "longest": 60},
                           "train.max_epochs": {"value": 2, "auto": True, "steps_per_epoch": 150}}}
    for key, value in facts.items():
        if key in ("max_length", "max_epochs"):
            name = f"model.{key}" if key == "max_length" else f"train.{key}"
            base["data_aware"][name] = {**base["data_aware"][name], **value}
        else:
            base[key] = value
    return base


HEALTHY = [{"epoch": "1", "train_loss": "0.6", "val_loss": "0.5"}, {"epoch": "2", "train_loss": "0.4", "val_loss": "0.48"}]
BALANCED = ["a"] * 50 + ["b"] * 50


def causes(result):
    return {cause["cause"]: cause for cause in result["causes"]}


def test_a_better_model_needs_no_diagnosis():
    assert diagnose({"verdict": "better"}, summary=summary(), history=HEALTHY, test_labels=BALANCED, baseline_name="TF-IDF") is None


def test_a_worse_model_is_said_first_and_a_healthy_run_gets_the_generic_advice():
    result = diagnose(WORSE, summary=summary(), history=HEALTHY, test_labels=BALANCED, baseline_name="TF-IDF + logistic regression")
    assert result["headline"].startswith("The fine-tuned model is worse than the TF-IDF + logistic regression baseline")
    assert "64.3% against 71.9%" in result["headline"] and "the baseline is the better model" in result["headline"]
    assert list(causes(result)) == ["no visible cause"]
    tie = diagnose(TIE, summary=summary(), history=HEALTHY, test_labels=BALANCED, baseline_name="TF-IDF")
    assert "not significantly better" in tie["headline"]


def test_truncation_is_named_with_its_share_and_the_param_to_change():
    auto = summary(max_length={"auto": True, "truncated_texts": 1350, "truncated_share": 0.27, "p95": 410, "longest": 700, "max_length": 256, "value": 256})
    found = causes(diagnose(WORSE, summary=auto, history=HEALTHY, test_labels=BALANCED, baseline_name="TF-IDF"))["truncation"]
    assert "27% of the training texts (1350 of 5000) are longer than 256 tokens" in found["evidence"]
    assert "compute budget" in found["advice"] and "`model.max_length`" in found["advice"] and "e.g. 416" in found["advice"]
    fixed = summary(max_length={"truncated_texts": 600, "truncated_share": 0.12})
    assert "set it to `auto`" in causes(diagnose(WORSE, summary=fixed, history=HEALTHY, test_labels=BALANCED, baseline_name="x"))["truncation"]["advice"]
    below = summary(max_length={"truncated_texts": 450, "truncated_share": 0.09})  # under the 10% threshold
    assert "truncation" not in causes(diagnose(WORSE, summary=below, history=HEALTHY, test_labels=BALANCED, baseline_name="x"))


def test_short_or_unfinished_training_and_overfitting_are_told_apart():
    few = summary(max_epochs={"steps_per_epoch": 40, "value": 2})
    assert "80 optimizer steps" in causes(diagnose(WORSE, summary=few, history=HEALTHY, test_labels=BALANCED, baseline_name="x"))["too few steps"]["evidence"]
    improving = summary(best_epoch=2)  # best at the last allowed epoch
    assert "still improving" in causes(diagnose(WORSE, summary=improving, history=HEALTHY, test_labels=BALANCED, baseline_name="x"))
    stopped_early = summary(best_epoch=2, epochs_run=2, max_epochs={"value": 5})  # stopped by early stopping, not by the limit
    assert "still improving" not in causes(diagnose(WORSE, summary=stopped_early, history=HEALTHY, test_labels=BALANCED, baseline_name="x"))
    # 4 of 8 epochs of 32 steps: few steps, but early stopping ended the training, so more steps were not the cure
    short_but_stopped = summary(best_epoch=2, epochs_run=4, max_epochs={"steps_per_epoch": 32, "value": 8})
    assert "too few steps" not in causes(diagnose(WORSE, summary=short_but_stopped, history=HEALTHY, test_labels=BALANCED, baseline_name="x"))
    rising = [{"train_loss": "0.6", "val_loss": "0.50"}, {"train_loss": "0.3", "val_loss": "0.52"}, {"train_loss": "0.1", "val_loss": "0.61"}]
    found = causes(diagnose(WORSE, summary=summary(epochs_run=3), history=rising, test_labels=BALANCED, baseline_name="x"))
    assert "rose to 0.610 from its best 0.500" in found["overfitting"]["evidence"]
    flat = [{"train_loss": "0.6", "val_loss": "0.50"}, {"train_loss": "0.3", "val_loss": "0.52"}]  # +4%: below the threshold
    assert "overfitting" not in causes(diagnose(WORSE, summary=summary(), history=flat, test_labels=BALANCED, baseline_name="x"))


def test_imbalance_and_small_data_are_named():
    found = causes(diagnose(WORSE, summary=summary(max_length={"texts": 300}), history=HEALTHY, test_labels=["a"] * 90 + ["b"] * 30 + ["c"] * 10,
                            baseline_name="x"))
    assert "'a' has 90 test rows, 'c' 10" in found["class imbalance"]["evidence"]
    assert "300 training rows" in found["few rows"]["evidence"]
    assert "class imbalance" not in causes(diagnose(WORSE, summary=summary(), history=HEALTHY, test_labels=["a"] * 20 + ["b"] * 10, baseline_name="x"))
