"""Section 1: the headline cards (test accuracy and macro F1 beside the baseline's, device, precision)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tunepipe.report.sections import as_dict, difference


def summary(inputs: Mapping[str, Any]) -> dict[str, Any]:
    metrics = as_dict(inputs.get("metrics"))
    train = as_dict(inputs.get("train"))
    return {
        # the baseline stage names what it fitted; the report does not guess it from the modality
        "baseline_name": as_dict(inputs.get("baseline")).get("model"),
        "accuracy": metrics.get("accuracy"),
        "baseline_accuracy": metrics.get("baseline_accuracy"),
        "accuracy_diff": difference(metrics.get("accuracy"), metrics.get("baseline_accuracy")),
        "f1": metrics.get("f1_macro"),
        "baseline_f1": metrics.get("baseline_f1_macro"),
        "f1_diff": difference(metrics.get("f1_macro"), metrics.get("baseline_f1_macro")),
        "accuracy_ci": (metrics.get("accuracy_ci_low"), metrics.get("accuracy_ci_high")),
        "f1_ci": (metrics.get("f1_macro_ci_low"), metrics.get("f1_macro_ci_high")),
        "variant": train.get("variant"),
        "test_rows": metrics.get("test_rows"),
        "device": train.get("device"),
        "accelerator": train.get("accelerator"),
        "precision": train.get("precision"),
        # tunepipe.trust: the worst slice (headline numbers of metrics.json) and the paired test against the baseline, in words
        "worst_slice": _worst_slice(inputs),
        "versus_baseline": as_dict(as_dict(inputs.get("comparison")).get("fine_tuned_vs_baseline")).get("sentence"),
        # evaluate's verdict when the fine-tuned model is not better than the baseline (tunepipe.trust.diagnosis): shown first
        "diagnosis": as_dict(inputs.get("comparison")).get("diagnosis") or None,
        "data_aware": _data_aware(train),
        # optional steps the params left out, and why (the skip rule's results/<step>/skipped.json)
        "skipped": [{"step": step, "reason": reason} for step, reason in as_dict(inputs.get("skipped")).items()],
    }


def _data_aware(train: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The values training resolved (`auto` or set), with the truncation they cause: one line each in the summary."""
    rows = []
    for key, facts in as_dict(train.get("data_aware")).items():
        facts = as_dict(facts)
        rows.append({"key": key, "value": facts.get("value"), "auto": bool(facts.get("auto")),
                     "truncated_texts": facts.get("truncated_texts"), "texts": facts.get("texts"), "truncated_share": facts.get("truncated_share"),
                     "steps_per_epoch": facts.get("steps_per_epoch")})
    return rows


def _worst_slice(inputs: Mapping[str, Any]) -> dict[str, Any] | None:
    metrics, worst = as_dict(inputs.get("metrics")), as_dict(as_dict(inputs.get("slices")).get("worst"))
    if metrics.get("worst_slice_accuracy") is None:
        return None
    return {"accuracy": metrics.get("worst_slice_accuracy"), "gap": metrics.get("worst_slice_gap"),
            "column": worst.get("column"), "value": worst.get("value"), "rows": worst.get("rows")}
