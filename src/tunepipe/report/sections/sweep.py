"""The sweep/cross-validation part of the training section (results/select/selection.json, when a sweep ran)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from tunepipe.report.sections import as_dict, as_list


def sweep(inputs: Mapping[str, Any]) -> dict[str, Any]:
    """One row per variant with its overrides and score; `ran` is False when there was no sweep."""
    from tunepipe.report import plots

    selection = as_dict(inputs.get("selection"))
    variants = [v for v in as_list(selection.get("variants")) if isinstance(v, dict)]
    keys: list[str] = []
    for variant in variants:
        keys += [key for key in as_dict(variant.get("overrides")) if key not in keys]
    rows = []
    for v in variants:
        overrides = as_dict(v.get("overrides"))
        rows.append({
            "name": v.get("name"),
            "rank": v.get("rank"),
            "winner": v.get("name") == selection.get("winner"),
            "values": [json.dumps(overrides[key]) if key in overrides else "" for key in keys],
            "mean": v.get("mean"),
            "std": v.get("std"),
            "runs": len(as_list(v.get("scores"))),
        })
    return {
        "ran": bool(variants),
        "method": selection.get("method"),
        "folds": selection.get("folds"),
        "metric": selection.get("metric"),
        "mode": selection.get("mode"),
        "winner": selection.get("winner"),
        "keys": keys,
        "rows": rows,
        "figure": plots.sweep_scores(variants, selection.get("metric"), selection.get("winner")) if variants else None,
    }
