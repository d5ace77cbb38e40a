"""Section 6: every pruning level (results/prune/levels.json) with the one prune selected highlighted."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from tunepipe.report.format import number
from tunepipe.report.sections import as_dict, as_list, capital, shown
from tunepipe.tasks._report import ReportView, Shown

#: Table order: the dense reference first, then each method's levels by sparsity.
METHOD_ORDER = {"dense": 0, "unstructured": 1, "structured": 2, "distilled": 3, "ensemble": 4}


def level_metrics(record: Mapping[str, Any], view: ReportView, default: tuple[str, str]) -> tuple[Shown, Shown]:
    """The metric compressed candidates are held to and the second one reported: the file's own (`metrics`), else the
    task's `level_metrics` (levels carry `val_<first>`, `test_<first>`, `test_<second>`)."""
    named = [str(m) for m in as_list(record.get("metrics"))][:2]
    first, second = (*named, *default[len(named):])
    return shown(view, first), shown(view, second)


def pruning(inputs: Mapping[str, Any], view: ReportView, metrics: tuple[str, str]) -> dict[str, Any]:
    """The selected level is the one whose `name` is levels.json's `selected`: prune decided it, the report reads it.
    `metrics`: the task's `level_metrics`."""
    from tunepipe.report import plots

    record = as_dict(inputs.get("levels"))
    metric, second = level_metrics(record, view, metrics)
    keys = (f"val_{metric.key}", f"test_{metric.key}", f"test_{second.key}")
    names = (f"val {metric.short}", f"test {metric.short}", f"test {second.short}")
    selected_name = record.get("selected")
    levels = [level for level in as_list(record.get("levels")) if isinstance(level, dict)]
    levels.sort(key=lambda level: (METHOD_ORDER.get(level.get("method"), 9),
                                   number(level.get("sparsity")) if number(level.get("sparsity")) is not None else math.inf))
    dense = next((level for level in levels if level.get("method") == "dense"), None)
    dense_latency = number(dense.get("latency_ms")) if dense else None
    rows = []
    for level in levels:
        latency = number(level.get("latency_ms"))
        rows.append({
            **level,
            "method": level.get("method"),
            "selected": isinstance(selected_name, str) and level.get("name") == selected_name,
            "latency_ratio": latency / dense_latency if latency is not None and dense_latency else None,
            "val_score": level.get(keys[0]), "test_score": level.get(keys[1]), "test_second": level.get(keys[2]),
        })
    return {
        "metric": {"short": metric.short, "title": capital(metric.short), "abbr": metric.abbr or metric.short, "kind": metric.kind},
        "second": {"abbr": second.abbr or second.short, "kind": second.kind},
        "selected": next((row for row in rows if row["selected"]), None),
        "select": record.get("select"),
        "threads": record.get("threads"),
        "max_accuracy_drop": record.get("max_accuracy_drop"),
        "reason": record.get("selected_reason"),
        "levels": rows,
        "has_latency": any(row.get("latency_ms") is not None for row in rows),
        "has_params": any(row.get("total_params") is not None for row in rows),
        "figure": plots.pruning_curve(rows, record.get("max_accuracy_drop"), keys, names, capital(metric.short)) if rows else None,
        "latency_figure": plots.pruning_latency(rows, record.get("max_accuracy_drop"), keys[0], names[0]) if rows else None,
    }
