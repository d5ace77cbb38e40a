"""Evaluation, "Slices": test metrics per slice (group, named columns, automatic quartiles) with intervals,
and the worst slice (results/evaluate/slices.json)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tunepipe.report.format import number
from tunepipe.report.sections import as_dict, as_list

#: Slices shown per column (the worst first); slices.json and slices.csv hold them all.
MAX_SLICES = 12
KINDS = {"group": "group column (data.group_column)", "named": "evaluate.slice_columns", "auto": "automatic"}


def _slice(entry: Any) -> dict[str, Any]:
    entry = as_dict(entry)
    return {**{k: entry.get(k) for k in ("column", "value", "rows", "accuracy", "f1_macro", "accuracy_gap")},
            "ranked": bool(entry.get("ranked")),
            "diff": -gap if (gap := number(entry.get("accuracy_gap"))) is not None else None,
            "accuracy_ci": (entry.get("accuracy_ci_low"), entry.get("accuracy_ci_high")) if "accuracy_ci_low" in entry else None,
            "f1_ci": (entry.get("f1_macro_ci_low"), entry.get("f1_macro_ci_high")) if "f1_macro_ci_low" in entry else None}


def slices(inputs: Mapping[str, Any]) -> dict[str, Any]:
    record = as_dict(inputs.get("slices"))
    worst = as_dict(record.get("worst")) or None
    columns = []
    for column in as_list(record.get("columns")):
        column = as_dict(column)
        entries = [_slice(e) for e in as_list(column.get("slices"))]
        ranked = sorted((e for e in entries if e["ranked"]), key=lambda e: (e["accuracy"] if e["accuracy"] is not None else 2, str(e["value"])))
        shown = ranked[:MAX_SLICES] if len(entries) > MAX_SLICES else sorted(entries, key=lambda e: str(e["value"]))
        for entry in shown:
            entry["worst"] = bool(worst) and entry["column"] == worst.get("column") and entry["value"] == worst.get("value")
        columns.append({"column": column.get("column"), "kind": KINDS.get(str(column.get("kind")), column.get("kind")),
                        "slices": shown, "total": len(entries), "hidden": len(entries) - len(shown), "unsliced_rows": column.get("unsliced_rows")})
    return {
        "available": bool(record),
        "overall": as_dict(record.get("overall")),
        "min_rows": record.get("min_rows"),
        "resamples": record.get("resamples"),
        "columns": columns,
        "worst": _slice(worst) if worst else None,
    }
