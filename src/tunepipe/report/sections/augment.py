"""Section 3: how many training rows augmentation added, with before/after examples."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tunepipe.report.format import number
from tunepipe.report.sections import as_dict, as_list, example_text


def augment(inputs: Mapping[str, Any], examples: int) -> dict[str, Any]:
    summary = as_dict(inputs.get("augment"))
    original, added = number(summary.get("original_rows")), number(summary.get("augmented_rows"))
    pairs = []
    for item in as_list(summary.get("examples"))[:examples]:
        item = as_dict(item)
        pairs.append({"original": example_text(item.get("original", "")), "augmented": example_text(item.get("augmented", ""))})
    return {
        "original_rows": summary.get("original_rows"),
        "augmented_rows": summary.get("augmented_rows"),
        "total_rows": original + added if original is not None and added is not None else None,
        "multiplier": summary.get("multiplier"),
        "examples": pairs,
    }
