"""Section 5: test metrics with bootstrap intervals beside the baseline's, confusion, curves, calibration,
per-label scores and the most confident errors (results/evaluate/*)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tunepipe.report.format import number
from tunepipe.report.sections import as_dict, as_list, difference, example_text

#: Metrics table rows: metrics.json key, name, format, whether lower is better. `*_ci_low/high` keys give intervals.
METRICS = (
    ("accuracy", "Accuracy", "pct", False),
    ("precision_macro", "Precision (macro)", "pct", False),
    ("recall_macro", "Recall (macro)", "pct", False),
    ("f1_macro", "F1 (macro)", "pct", False),
    ("precision_weighted", "Precision (weighted)", "pct", False),
    ("recall_weighted", "Recall (weighted)", "pct", False),
    ("f1_weighted", "F1 (weighted)", "pct", False),
    ("auroc", "AUROC", "num", False),
    ("average_precision", "Average precision", "num", False),
    ("ece", "Calibration error (ECE)", "num", True),
)


def _metric_rows(metrics: dict[str, Any]) -> list[dict[str, Any]]:
    def interval(prefix: str, key: str) -> tuple[Any, Any] | None:
        low, high = metrics.get(f"{prefix}{key}_ci_low"), metrics.get(f"{prefix}{key}_ci_high")
        return (low, high) if number(low) is not None and number(high) is not None else None

    rows = []
    for key, label, kind, lower_better in METRICS:
        value, base = metrics.get(key), metrics.get(f"baseline_{key}")
        diff = difference(value, base)
        rows.append({
            "name": label, "kind": kind, "model": value, "baseline": base, "diff": diff,
            # the sign that colours the difference: positive when the fine-tuned model is better
            "better": -diff if lower_better and diff is not None else diff,
            "model_ci": interval("", key), "baseline_ci": interval("baseline_", key),
        })
    return rows


def _per_class(model: dict[str, Any], baseline: dict[str, Any]) -> list[dict[str, Any]]:
    base_rows = {str(as_dict(r).get("label")): as_dict(r) for r in as_list(baseline.get("per_class"))}
    rows = []
    for row in as_list(model.get("per_class")):
        row = as_dict(row)
        label = str(row.get("label"))
        base_f1 = base_rows.get(label, {}).get("f1")
        rows.append({**{k: row.get(k) for k in ("precision", "recall", "f1", "auroc", "average_precision", "support")},
                     "label": label, "baseline_f1": base_f1, "f1_diff": difference(row.get("f1"), base_f1)})
    return rows


def _worst(worst_errors: Any, examples: int) -> list[dict[str, Any]]:
    rows = []
    for row in as_list(as_dict(worst_errors).get("rows"))[:examples]:
        row = as_dict(row)
        text = row.get("input")
        rows.append({**{k: row.get(k) for k in ("rank", "id", "label", "predicted", "confidence", "label_probability")},
                     "input": example_text(text) if text is not None else None})
    return rows


def evaluation(inputs: Mapping[str, Any], examples: int) -> dict[str, Any]:
    from tunepipe.report import plots

    metrics = as_dict(inputs.get("metrics"))
    confusion = as_dict(inputs.get("confusion"))
    details = as_dict(inputs.get("details"))
    models = as_dict(details.get("models"))
    model, baseline = as_dict(models.get("fine_tuned")), as_dict(models.get("baseline"))
    rows = _metric_rows(metrics)
    matrix = as_list(confusion.get("matrix"))
    return {
        "rows": rows,
        "test_rows": metrics.get("test_rows"),
        "bootstrap_resamples": as_dict(details.get("bootstrap")).get("resamples"),
        "has_ci": any(r["model_ci"] for r in rows),
        "curve_labels": [str(x) for x in as_list(details.get("curve_labels"))],
        "confusion_figure": plots.confusion_matrix(as_list(confusion.get("labels")), matrix) if matrix else None,
        "curves_figure": plots.roc_pr_curves(model, baseline, metrics) if model else None,
        "calibration_figure": plots.reliability_diagram(as_list(model.get("calibration")), as_list(baseline.get("calibration")),
                                                        metrics.get("ece"), metrics.get("baseline_ece")) if model else None,
        "per_class": _per_class(model, baseline),
        "worst": _worst(inputs.get("worst_errors"), examples),
        "worst_available": isinstance(inputs.get("worst_errors"), dict) and "rows" in inputs["worst_errors"],
    }
