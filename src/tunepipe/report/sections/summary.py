"""Section 1: the headline cards (the task's headline test metrics beside the baseline's, device, precision)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tunepipe.report.sections import as_dict, difference, shown
from tunepipe.report.sections.slices import slice_metric
from tunepipe.tasks._report import ReportView, Shown


def card(metrics: Mapping[str, Any], metric: Shown) -> dict[str, Any]:
    """One headline metric beside the baseline's, with its interval and the difference coloured by which way is better."""
    value, base = metrics.get(metric.key), metrics.get(f"baseline_{metric.key}")
    diff = difference(value, base)
    return {"label": f"Test {metric.short}", "kind": metric.kind, "value": value, "baseline": base, "diff": diff,
            "better": -diff if metric.lower_better and diff is not None else diff,
            "ci": (metrics.get(f"{metric.key}_ci_low"), metrics.get(f"{metric.key}_ci_high"))}


def summary(inputs: Mapping[str, Any], view: ReportView) -> dict[str, Any]:
    metrics = as_dict(inputs.get("metrics"))
    train = as_dict(inputs.get("train"))
    return {
        # the baseline stage names what it fitted; the report does not guess it from the modality
        "baseline_name": as_dict(inputs.get("baseline")).get("model"),
        "cards": [card(metrics, shown(view, key)) for key in view.cards],
        "variant": train.get("variant"),
        "test_rows": metrics.get("test_rows"),
        "device": train.get("device"),
        "accelerator": train.get("accelerator"),
        "precision": train.get("precision"),
        # tunepipe.trust: the worst slice (headline numbers of metrics.json) and the paired test against the baseline, in words
        "worst_slice": _worst_slice(inputs, view),
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


def _worst_slice(inputs: Mapping[str, Any], view: ReportView) -> dict[str, Any] | None:
    """metrics.json's worst slice, in the metric the slices are ranked by (the file's own name for it)."""
    metrics, record = as_dict(inputs.get("metrics")), as_dict(inputs.get("slices"))
    worst = as_dict(record.get("worst"))
    metric = shown(view, slice_metric(record, metrics))
    if metrics.get(f"worst_slice_{metric.key}") is None:
        return None
    gap = metrics.get("worst_slice_gap", metrics.get(f"worst_slice_{metric.key}_gap"))
    return {"score": metrics.get(f"worst_slice_{metric.key}"), "kind": metric.kind, "gap": gap,
            "direction": "above" if metric.lower_better else "below",
            "column": worst.get("column"), "value": worst.get("value"), "rows": worst.get("rows")}
