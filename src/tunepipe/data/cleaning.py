"""Remove rows that would mislead training or evaluation, and say why each one went."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from tunepipe.data.text import dedup_key, normalise_whitespace, word_count
from tunepipe.errors import DataError

# Each removed row is counted under the first reason that applies, in this order.
REASONS = ("empty", "missing_label", "undeclared_label", "too_short", "conflicting_label", "duplicate")


@dataclass
class CleanReport:
    input_rows: int
    kept_rows: int = 0
    removed: dict[str, int] = field(default_factory=lambda: {reason: 0 for reason in REASONS})
    examples: dict[str, list[str]] = field(default_factory=lambda: {reason: [] for reason in REASONS})
    labels: dict[str, int] = field(default_factory=dict)
    label_names: list[str] = field(default_factory=list)
    imbalance_ratio: float = 1.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "input_rows": self.input_rows,
            "kept_rows": self.kept_rows,
            "removed": self.removed,
            "examples": self.examples,
            "labels": self.labels,
            "label_names": self.label_names,
            "imbalance_ratio": self.imbalance_ratio,
        }


def clean_texts(
    frame: pd.DataFrame,
    *,
    labels: list[str] | None,
    min_words: int,
    drop_duplicates: bool = True,
    drop_conflicting_labels: bool = True,
    max_examples: int = 5,
    source: str = "dataset",
) -> tuple[pd.DataFrame, CleanReport]:
    """Return the kept rows (id, text, label) with whitespace-normalised text, and the per-reason report."""
    report = CleanReport(input_rows=len(frame))
    rows = frame.copy()
    rows["text"] = rows["text"].map(normalise_whitespace)
    rows["label"] = rows["label"].map(lambda value: str(value).strip())
    rows["_key"] = rows["text"].map(dedup_key)
    reason = pd.Series("", index=rows.index, dtype=object)

    def mark(mask: pd.Series, name: str) -> None:
        fresh = mask & (reason == "")
        reason[fresh] = name

    mark(rows["text"] == "", "empty")
    mark(rows["label"] == "", "missing_label")
    if labels is not None:
        mark(~rows["label"].isin(labels), "undeclared_label")
    mark(rows["text"].map(word_count) < min_words, "too_short")
    alive = reason == ""
    if drop_conflicting_labels:
        label_counts = rows[alive].groupby("_key")["label"].nunique()
        conflicting = set(label_counts[label_counts > 1].index)
        mark(rows["_key"].isin(conflicting), "conflicting_label")
    if drop_duplicates:
        alive = reason == ""
        duplicated = rows["_key"].where(alive).duplicated(keep="first") & alive
        mark(duplicated, "duplicate")

    for name in REASONS:
        removed = rows[reason == name]
        report.removed[name] = int(len(removed))
        report.examples[name] = removed["text"].head(max_examples).tolist() if name != "empty" else []
    kept = rows[reason == ""].drop(columns="_key").reset_index(drop=True)
    report.kept_rows = int(len(kept))

    if kept.empty:
        raise DataError(
            f"{source}: no rows left after cleaning (removed: "
            + ", ".join(f"{k} {v}" for k, v in report.removed.items() if v)
            + "). Check data.text_column / data.label_column / data.labels and clean.min_words."
        )
    counts = kept["label"].value_counts()
    order = list(labels) if labels is not None else sorted(counts.index)
    empty_declared = [label for label in order if counts.get(label, 0) == 0]
    if empty_declared:
        raise DataError(
            f"{source}: declared label(s) {', '.join(map(repr, empty_declared))} have no rows after cleaning; "
            f"found: {', '.join(f'{k} ({v})' for k, v in counts.items())}. Fix data.labels or the label column."
        )
    if len(order) < 2:
        raise DataError(
            f"{source}: only one class ({order[0]!r}, {int(counts.iloc[0])} rows) remains after cleaning; a classifier "
            "needs at least two. Check data.label_column and data.labels."
        )
    report.labels = {label: int(counts[label]) for label in order}
    report.label_names = order
    report.imbalance_ratio = round(float(counts.max() / counts.min()), 4)
    return kept, report
