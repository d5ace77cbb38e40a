"""Evaluation, "Explanations": Integrated Gradients attributions of the most confident errors and correct
predictions (results/explain/attributions.json), drawn by the modality (shaded tokens, heat maps)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tunepipe.report.sections import as_dict, as_list


def explanations(params: Mapping[str, Any], inputs: Mapping[str, Any]) -> dict[str, Any]:
    from tunepipe.modalities import get_modality

    record = as_dict(inputs.get("explanations"))
    base = inputs.get("explanations_dir")
    modality = get_modality(as_dict(params.get("data")).get("modality", "text"))
    items = []
    for item in as_list(record.get("items")):
        item = as_dict(item)
        items.append({
            **{k: item.get(k) for k in ("kind", "rank", "id", "label", "predicted", "confidence", "output", "baseline_output", "delta")},
            "input": item.get("input"),
            "drawing": modality.show_attribution(item, Path(base) if base else None),
        })
    return {
        "available": bool(record),
        # the skip rule's reason when the params left the step out (results/explain/skipped.json)
        "skipped_because": as_dict(inputs.get("skipped")).get("explain"),
        "method": record.get("method"),
        "steps": record.get("steps"),
        "max_delta": record.get("max_delta"),
        "baseline": next((as_dict(i).get("baseline") for i in as_list(record.get("items"))), None),
        "errors": [i for i in items if i["kind"] == "error"],
        "correct": [i for i in items if i["kind"] == "correct"],
    }
