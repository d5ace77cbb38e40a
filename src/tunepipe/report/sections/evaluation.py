"""Section 5: test metrics with bootstrap intervals beside the baseline's, then the blocks the task names (confusion,
curves, calibration, per-class scores; label cardinality and per-label scores with thresholds; predicted against true,
residuals and the error by range) and the worst errors (results/evaluate/*)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from markupsafe import Markup

from tunepipe.report.format import number
from tunepipe.report.sections import as_dict, as_list, difference, example_text
from tunepipe.tasks._report import ReportView


def _metric_rows(metrics: dict[str, Any], view: ReportView) -> list[dict[str, Any]]:
    def interval(prefix: str, key: str) -> tuple[Any, Any] | None:
        low, high = metrics.get(f"{prefix}{key}_ci_low"), metrics.get(f"{prefix}{key}_ci_high")
        return (low, high) if number(low) is not None and number(high) is not None else None

    rows = []
    for metric in view.metrics:
        key = metric.key
        value, base = metrics.get(key), metrics.get(f"baseline_{key}")
        diff = difference(value, base)
        rows.append({
            "name": metric.name, "kind": metric.kind, "model": value, "baseline": base, "diff": diff,
            # the sign that colours the difference: positive when the fine-tuned model is better
            "better": -diff if metric.lower_better and diff is not None else diff,
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


#: A label's scores in details.json's per_label rows, shown for both models.
LABEL_SCORES = ("precision", "recall", "f1", "auroc", "average_precision")


def _per_label(model: dict[str, Any], baseline: dict[str, Any]) -> list[dict[str, Any]]:
    """Each label's threshold, support and scores of both models (details.json's per_label rows), F1 difference beside."""
    base_rows = {str(as_dict(r).get("label")): as_dict(r) for r in as_list(baseline.get("per_label"))}
    rows = []
    for row in as_list(model.get("per_label")):
        row = as_dict(row)
        label = str(row.get("label"))
        base = base_rows.get(label, {})
        rows.append({"label": label, **{k: row.get(k) for k in ("threshold", "support", "predicted")},
                     "model": {k: row.get(k) for k in LABEL_SCORES}, "baseline": {k: base.get(k) for k in LABEL_SCORES},
                     "baseline_predicted": base.get("predicted"), "f1_diff": difference(row.get("f1"), base.get("f1"))})
    return rows


def _by_range(model: dict[str, Any], baseline: dict[str, Any]) -> list[dict[str, Any]]:
    """The error of both models in each range of the true target (details.json's by_range rows, matched by bin)."""
    base_rows = {as_dict(r).get("bin"): as_dict(r) for r in as_list(baseline.get("by_range"))}
    rows = []
    for row in as_list(model.get("by_range")):
        row = as_dict(row)
        base = base_rows.get(row.get("bin"), {})
        diff = difference(row.get("mae"), base.get("mae"))
        rows.append({**{k: row.get(k) for k in ("bin", "low", "high", "rows", "mae", "bias")},
                     "baseline_mae": base.get("mae"), "baseline_bias": base.get("bias"), "mae_diff": diff,
                     "better": -diff if diff is not None else None})
    return rows


def _worst(worst_errors: Any, examples: int, view: ReportView) -> list[dict[str, Any]]:
    rows = []
    for row in as_list(as_dict(worst_errors).get("rows"))[:examples]:
        row = as_dict(row)
        text = row.get("input")
        rows.append({**{k: row.get(k) for k in ("rank", "id", *(c.key for c in view.worst))},
                     "input": example_text(text) if text is not None else None})
    return rows


def _blocks(inputs: Mapping[str, Any], metrics: dict[str, Any], model: dict[str, Any], baseline: dict[str, Any]) -> dict[str, Callable[[], dict[str, Any]]]:
    """Each evaluation block the report can draw, built only when the task names it."""
    from tunepipe.report import plots

    confusion = as_dict(inputs.get("confusion"))
    details = as_dict(inputs.get("details"))
    target = details.get("target")

    def cardinality() -> dict[str, Any]:
        keys = ("label_cardinality_true", "label_cardinality_predicted", "baseline_label_cardinality_predicted",
                "subset_accuracy", "baseline_subset_accuracy", "hamming_loss", "baseline_hamming_loss")
        return {**{k: metrics.get(k) for k in keys}, "thresholds_from": as_dict(inputs.get("decision")).get("thresholds_from")}

    def per_label() -> dict[str, Any]:
        rows = _per_label(model, baseline)
        return {"per_label": rows, "per_label_figure": plots.per_label_scores(rows) if rows else None}

    points, base_points = as_list(model.get("points")), as_list(baseline.get("points"))
    return {
        "confusion": lambda: {"confusion_figure": plots.confusion_matrix(as_list(confusion.get("labels")), matrix)
                              if (matrix := as_list(confusion.get("matrix"))) else None},
        "curves": lambda: {"curves_figure": plots.roc_pr_curves(model, baseline, metrics) if model else None},
        "calibration": lambda: {"calibration_figure": plots.reliability_diagram(
            as_list(model.get("calibration")), as_list(baseline.get("calibration")), metrics.get("ece"), metrics.get("baseline_ece")) if model else None},
        "per_class": lambda: {"per_class": _per_class(model, baseline)},
        "cardinality": lambda: {"cardinality": cardinality()},
        "per_label": per_label,
        "scatter": lambda: {"scatter_figure": plots.predicted_vs_true(points, base_points, target) if points else None, "target": target},
        "residuals": lambda: {"residual_figure": plots.residuals(points, base_points, target) if points else None, "target": target},
        "by_range": lambda: {"by_range": _by_range(model, baseline), "target": target},
    }


def evaluation(inputs: Mapping[str, Any], examples: int, view: ReportView) -> dict[str, Any]:
    metrics = as_dict(inputs.get("metrics"))
    details = as_dict(inputs.get("details"))
    models = as_dict(details.get("models"))
    model, baseline = as_dict(models.get("fine_tuned")), as_dict(models.get("baseline"))
    rows = _metric_rows(metrics, view)
    builders = _blocks(inputs, metrics, model, baseline)
    result: dict[str, Any] = {
        "rows": rows,
        "test_rows": metrics.get("test_rows"),
        "bootstrap_resamples": as_dict(details.get("bootstrap")).get("resamples"),
        "has_ci": any(r["model_ci"] for r in rows),
        "curve_labels": [str(x) for x in as_list(details.get("curve_labels"))],
        "blocks": [block for block in view.evaluation if block in builders],
        # the task's own sentences (code, not data: printed as written)
        **{key: Markup(getattr(view, key)) for key in ("intro", "resampling", "metrics_note", "worst_title", "worst_caption", "no_errors")},
        "worst_columns": list(view.worst),
        "worst": _worst(inputs.get("worst_errors"), examples, view),
        "worst_available": isinstance(inputs.get("worst_errors"), dict) and "rows" in inputs["worst_errors"],
    }
    for block in result["blocks"]:
        result.update(builders[block]())
    return result
