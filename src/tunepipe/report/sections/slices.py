"""Evaluation, "Slices": test metrics per slice (group, named columns, automatic quartiles) with intervals,
and the worst slice (results/evaluate/slices.json). The metrics are the file's own: any task's names."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tunepipe.report.format import number
from tunepipe.report.sections import as_dict, as_list, capital, shown
from tunepipe.tasks._report import ReportView

#: Slices shown per column (the worst first); slices.json and slices.csv hold them all.
MAX_SLICES = 12
KINDS = {"group": "group column (data.group_column)", "named": "evaluate.slice_columns", "auto": "automatic"}
#: Keys of a slice entry that are not metrics.
_NOT_METRICS = {"column", "value", "rows", "ranked"}


def slice_metric(record: Mapping[str, Any], metrics: Mapping[str, Any] | None = None) -> str:
    """The metric slices are ranked by: slices.json's `metric`, else the one whose gap its entries carry, else the one
    metrics.json's `worst_slice_*` names; accuracy for a file that says none of these."""
    if isinstance(record.get("metric"), str):
        return record["metric"]
    entries = [as_dict(record.get("worst"))] + [as_dict(e) for c in as_list(record.get("columns")) for e in as_list(as_dict(c).get("slices"))]
    for entry in entries:
        for key in entry:
            if key.endswith("_gap"):
                return key[: -len("_gap")]
    for key in as_dict(metrics):
        if key.startswith("worst_slice_") and not key.endswith("_gap"):
            return key[len("worst_slice_"):]
    return "accuracy"


def _slice_metrics(record: Mapping[str, Any], metric: str) -> list[str]:
    """Every metric the slices carry, the ranked one first (slices.json's `metrics` when it lists them)."""
    listed = [str(m) for m in as_list(record.get("metrics"))]
    if not listed:
        entries = [as_dict(e) for c in as_list(record.get("columns")) for e in as_list(as_dict(c).get("slices"))]
        for entry in entries:
            for key, value in entry.items():
                if key not in _NOT_METRICS and not key.endswith(("_ci_low", "_ci_high", "_gap")) and key not in listed and (number(value) is not None or value is None):
                    listed.append(key)
    return [metric] + [m for m in listed if m != metric]


def _slice(entry: Any, names: list[str], lower_better: bool) -> dict[str, Any]:
    entry = as_dict(entry)
    metric = names[0]
    gap, value, overall = number(entry.get(f"{metric}_gap")), number(entry.get(metric)), number(entry.get("_overall"))
    diff = -gap if gap is not None else (value - overall if value is not None and overall is not None else None)
    return {"column": entry.get("column"), "value": entry.get("value"), "rows": entry.get("rows"), "ranked": bool(entry.get("ranked")),
            "score": entry.get(metric), "gap": entry.get(f"{metric}_gap"), "diff": diff,
            "better": -diff if lower_better and diff is not None else diff,
            "cells": [{"value": entry.get(m), "ci": (entry.get(f"{m}_ci_low"), entry.get(f"{m}_ci_high")) if f"{m}_ci_low" in entry else None}
                      for m in names]}


def slices(inputs: Mapping[str, Any], view: ReportView) -> dict[str, Any]:
    record = as_dict(inputs.get("slices"))
    metric = shown(view, slice_metric(record, as_dict(inputs.get("metrics"))))
    names = _slice_metrics(record, metric.key)
    overall = as_dict(record.get("overall"))

    def read(entry: Any) -> dict[str, Any]:
        return _slice({**as_dict(entry), "_overall": overall.get(metric.key)}, names, metric.lower_better)

    worst = as_dict(record.get("worst")) or None
    worst_last = -1 if metric.lower_better else 2  # slices without a score sort after the rest

    def rank(e: dict[str, Any]) -> tuple[float, str]:
        score = number(e["score"])
        return (worst_last if score is None else (-score if metric.lower_better else score), str(e["value"]))

    columns = []
    for column in as_list(record.get("columns")):
        column = as_dict(column)
        entries = [read(e) for e in as_list(column.get("slices"))]
        ranked = sorted((e for e in entries if e["ranked"]), key=rank)
        shown_entries = ranked[:MAX_SLICES] if len(entries) > MAX_SLICES else sorted(entries, key=lambda e: str(e["value"]))
        for entry in shown_entries:
            entry["worst"] = bool(worst) and entry["column"] == worst.get("column") and entry["value"] == worst.get("value")
        columns.append({"column": column.get("column"), "kind": KINDS.get(str(column.get("kind")), column.get("kind")),
                        "slices": shown_entries, "total": len(entries), "hidden": len(entries) - len(shown_entries), "unsliced_rows": column.get("unsliced_rows")})
    headers = [shown(view, m) for m in names]
    return {
        "available": bool(record),
        "overall": overall.get(metric.key),
        "metric": metric,
        "headers": [{"name": capital(h.short), "kind": h.kind} for h in headers],
        "direction": "above" if metric.lower_better else "below",
        "min_rows": record.get("min_rows"),
        "resamples": record.get("resamples"),
        "columns": columns,
        "worst": read(worst) if worst else None,
    }
