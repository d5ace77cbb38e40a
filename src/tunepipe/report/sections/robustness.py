"""Section 5b: the model on perturbed test inputs (accuracy against severity per perturbation) and under adversarial
attacks, with flipped predictions (results/robustness/*)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from tunepipe.report.format import number
from tunepipe.report.sections import as_dict, as_list, example_text, shown
from tunepipe.tasks._report import ReportView

_COLOURS = ("#2563eb", "#ea580c", "#16a34a", "#7c3aed", "#dc2626", "#0891b2", "#ca8a04", "#db2777")
_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")


def robustness_metric(metrics: Mapping[str, Any]) -> str:
    """The metric the robustness files are in: the `<m>` of metrics.json's `robustness_clean_<m>` (accuracy by default)."""
    prefix = "robustness_clean_"
    return next((key[len(prefix):] for key in metrics if key.startswith(prefix)), "accuracy")


def severity_curves(rows: Sequence[Mapping[str, Any]], clean_accuracy: Any, key: str = "accuracy", metric: str = "accuracy") -> str | None:
    """The score `key` against severity, one line per perturbation, each starting at the clean score (severity 0)."""
    import matplotlib

    from tunepipe.report.plots import _close, _new_figure, _rc, figure_to_svg

    curves: dict[str, list[tuple[float, float]]] = {}
    for row in rows:
        severity, accuracy = number(row.get("severity")), number(row.get(key))
        if severity is not None and accuracy is not None:
            curves.setdefault(str(row.get("perturbation")), []).append((severity, accuracy))
    if not curves:
        return None
    clean = number(clean_accuracy)
    with matplotlib.rc_context(_rc("robustness")):
        fig = _new_figure(6.4, 3.4)
        try:
            ax = fig.add_subplot()
            for i, (name, points) in enumerate(curves.items()):
                points = ([(0.0, clean)] if clean is not None else []) + sorted(points)
                ax.plot([x for x, _ in points], [y for _, y in points], marker=_MARKERS[i % len(_MARKERS)], markersize=4.5,
                        linewidth=1.4, color=_COLOURS[i % len(_COLOURS)], label=name)
            severities = sorted({x for points in curves.values() for x, _ in points} | ({0.0} if clean is not None else set()))
            ax.set_xticks(severities, ["clean" if x == 0 else f"{x:.0f}" for x in severities])
            ax.set_xlabel("severity")
            ax.set_ylabel(f"test {metric}")
            ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=7)
            return figure_to_svg(fig, "fig-robustness", f"Test {metric} against perturbation severity")
        finally:
            _close(fig)


def _table(rows: Sequence[Mapping[str, Any]], key: str) -> tuple[list[int], list[dict[str, Any]]]:
    """One row per perturbation with its cells per severity (accuracy, drop, flip rate) and what a severity means."""
    severities = sorted({int(s) for s in (number(row.get("severity")) for row in rows) if s is not None})
    table: dict[str, dict[str, Any]] = {}
    for row in rows:
        severity = number(row.get("severity"))
        if severity is None:
            continue
        entry = table.setdefault(str(row.get("perturbation")), {"name": str(row.get("perturbation")), "unit": row.get("unit"), "cells": {}, "amounts": []})
        drop = number(row.get("drop"))
        entry["cells"][int(severity)] = {**{k: row.get(k) for k in ("drop", "flip_rate")}, "score": row.get(key),
                                         "change": 0.0 - drop if drop is not None else None}
        entry["amounts"].append(row.get("amount"))
    for entry in table.values():
        entry["cells"] = [entry["cells"].get(s, {}) for s in severities]
        entry["amounts"] = ", ".join(str(a) for a in entry["amounts"] if a is not None)
    return severities, list(table.values())


def _examples(items: Any, key: str, limit: int) -> list[dict[str, Any]]:
    """Up to `limit` examples, taken in turn from each perturbation (or attack) so that one does not fill the table."""
    groups: dict[Any, list[dict[str, Any]]] = {}
    for item in as_list(items):
        groups.setdefault(as_dict(item).get(key), []).append(as_dict(item))
    picked = [group[i] for i in range(max((len(g) for g in groups.values()), default=0)) for group in groups.values() if i < len(group)]
    shown = []
    for item in picked[:limit]:
        shown.append({**{k: item.get(k) for k in ("id", "label", "clean_prediction", "perturbed_prediction", "severity")},
                      "what": item.get(key),
                      "original": example_text(item["original"]) if isinstance(item.get("original"), str) else None,
                      "perturbed": example_text(item["perturbed"]) if isinstance(item.get("perturbed"), str) else None})
    return shown


def robustness(inputs: Mapping[str, Any], examples: int, view: ReportView) -> dict[str, Any]:
    metrics = as_dict(inputs.get("robustness_metrics"))
    metric = shown(view, robustness_metric(metrics))
    key = metric.key
    record = as_dict(inputs.get("robustness_examples"))
    rows = [as_dict(r) for r in as_list(inputs.get("robustness_perturbations"))]
    attacks = [as_dict(r) for r in as_list(inputs.get("robustness_attacks"))]
    severities, table = _table(rows, key)
    scored = [r for r in rows if number(r.get(key)) is not None]
    worst = (max if metric.lower_better else min)(scored, key=lambda r: r[key], default=None)
    return {
        "available": bool(metrics),
        # the skip rule's reason when the params left the step out (results/robustness/skipped.json)
        "skipped_because": as_dict(inputs.get("skipped")).get("robustness"),
        "rows": metrics.get("robustness_rows"),
        "metric": {"short": metric.short, "kind": metric.kind},
        "clean_score": metrics.get(f"robustness_clean_{key}"),
        "worst_score": metrics.get(f"robustness_worst_{key}"),
        "worst": {**worst, "score": worst.get(key)} if worst else None,
        "worst_change": 0.0 - number(worst.get("drop")) if worst and number(worst.get("drop")) is not None else None,
        "mean_flip_rate": metrics.get("robustness_mean_flip_rate"),
        "severities": severities,
        "table": table,
        "figure": severity_curves(rows, metrics.get(f"robustness_clean_{key}"), key, metric.short) if rows else None,
        "attacks": attacks,
        "attack_rows": metrics.get("attack_rows"),
        "perturbation_examples": _examples(record.get("perturbations"), "perturbation", examples),
        "attack_examples": _examples(record.get("attacks"), "attack", examples),
    }
