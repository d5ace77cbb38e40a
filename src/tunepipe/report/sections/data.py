"""Section 2: the source file, what cleaning removed and why (with examples), labels, and the splits."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tunepipe.report.format import number
from tunepipe.report.sections import as_dict, as_list, example_text
from tunepipe.tasks._report import ReportView


def _label_order(params: Mapping[str, Any], *count_maps: Any) -> list[str]:
    """The declared labels first (data.labels), then any other label found in the counts, in order of appearance."""
    order: list[str] = [str(x) for x in as_list(as_dict(params.get("data")).get("labels"))]
    for counts in count_maps:
        for label in as_dict(counts):
            if str(label) not in order:
                order.append(str(label))
    return order


def _label_rows(counts: Any) -> list[dict[str, Any]]:
    counts = as_dict(counts)
    total = sum(number(v) or 0 for v in counts.values())
    return [
        {"label": str(label), "count": value, "share": (number(value) / total if number(value) is not None and total else None)}
        for label, value in counts.items()
    ]


def _removals(clean: dict[str, Any], examples: int) -> list[dict[str, Any]]:
    removed = as_dict(clean.get("removed"))
    examples_by_reason = as_dict(clean.get("examples"))
    input_rows = number(clean.get("input_rows"))
    reasons = []
    for reason in list(removed) + [r for r in examples_by_reason if r not in removed]:
        count = removed.get(reason)
        reasons.append({
            "reason": str(reason).replace("_", " "),
            "count": count,
            "share": number(count) / input_rows if number(count) is not None and input_rows else None,
            "examples": [example_text(x) for x in as_list(examples_by_reason.get(reason))[:examples]],
        })
    return reasons


def _splits(params: Mapping[str, Any], split: dict[str, Any]) -> tuple[list[str], list[dict[str, Any]], dict[str, Any] | None]:
    """The split labels (columns), one row per split, and a total row (None where any cell is missing)."""
    splits = as_dict(split.get("splits"))
    labels = _label_order(params, *(as_dict(s).get("labels") for s in splits.values()))
    rows = []
    for name, info in splits.items():
        info = as_dict(info)
        per_label = as_dict(info.get("labels"))
        rows.append({"name": str(name), "rows": info.get("rows"), "labels": [per_label.get(label) for label in labels]})
    if not rows:
        return labels, rows, None

    def total(column: list[float | None]) -> float | None:
        return None if any(v is None for v in column) else sum(column)

    return labels, rows, {
        "name": "total",
        "rows": total([number(r["rows"]) for r in rows]),
        "labels": [total([number(r["labels"][i]) for r in rows]) for i in range(len(labels))],
    }


def _target(clean: dict[str, Any], details: dict[str, Any]) -> dict[str, Any]:
    """The number's distribution: clean's facts of all kept rows, and a histogram of the test split's true values
    (details.json's points: clean keeps no values)."""
    from tunepipe.report import plots

    stats = as_dict(clean.get("target"))
    truth = [as_dict(p).get("true") for p in as_list(as_dict(as_dict(details.get("models")).get("fine_tuned")).get("points"))]
    return {"stats": stats, "averaged": clean.get("conflicting_targets_averaged"),
            "figure": plots.target_distribution(truth, stats, details.get("target")) if truth else None}


def data(params: Mapping[str, Any], inputs: Mapping[str, Any], examples: int, view: ReportView) -> dict[str, Any]:
    """`view.data` names the blocks after cleaning: label counts, label frequency bars, labels per row, the target's distribution."""
    from tunepipe.report import plots

    prepare = as_dict(inputs.get("prepare"))
    clean = as_dict(inputs.get("clean"))
    split = as_dict(inputs.get("split"))
    removals = _removals(clean, examples)
    counted = [number(r["count"]) for r in removals if number(r["count"]) is not None]
    split_labels, split_rows, split_total = _splits(params, split)
    return {
        "source": prepare.get("source"),
        "path": prepare.get("path"),
        "sha256": prepare.get("sha256"),
        "rows": prepare.get("rows"),
        "source_labels": _label_rows(prepare.get("labels")),
        "input_rows": clean.get("input_rows"),
        "kept_rows": clean.get("kept_rows"),
        "removals": removals,
        "total_removed": sum(counted) if counted else None,
        "clean_labels": _label_rows(clean.get("labels")),
        "imbalance_ratio": clean.get("imbalance_ratio"),
        "blocks": list(view.data),
        **{key: clean.get(key) for key in ("label_cardinality", "rows_without_labels", "undeclared_labels_dropped")},
        **({"label_figure": plots.label_frequency(as_dict(clean.get("labels")), clean.get("kept_rows"))} if "label_bars" in view.data else {}),
        **({"target": _target(clean, as_dict(inputs.get("details")))} if "target" in view.data else {}),
        "seed": split.get("seed"),
        "sampled_from": split.get("sampled_from"),
        "split_labels": split_labels,
        "splits": split_rows,
        "split_total": split_total,
    }
