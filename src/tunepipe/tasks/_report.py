"""How the report names and prints a task's metrics: one record per metric, kept by each task (its `report_metrics`).

Cheap to import (no numpy, no torch): the task classes build their report tables from it at import time.
"""

from __future__ import annotations

from typing import NamedTuple


class Shown(NamedTuple):
    """One metric as the report prints it, wherever it appears (cards, tables, slices, pruning, export)."""

    #: The metric's key in metrics.json (without `baseline_`, `val_`, `test_`).
    key: str
    #: Its row in the evaluation's metrics table, e.g. "F1 (macro)".
    name: str
    #: Inside headers and sentences, e.g. "macro F1" ("Test macro F1", "Δ macro F1").
    short: str
    #: "pct": a fraction printed as a percentage, its differences in points; "num": a plain number.
    kind: str = "pct"
    lower_better: bool = False
    #: In narrow table headers ("Val acc."); `short` when None.
    abbr: str | None = None


def lookup(shown: tuple[Shown, ...], key: str) -> Shown:
    """The record of `key`, or one made from the key itself for a metric the task does not list (a file's own name)."""
    for record in shown:
        if record.key == key:
            return record
    words = key.replace("_", " ")
    return Shown(key, words[:1].upper() + words[1:], words, "num")


class ReportView(NamedTuple):
    """What the report shows for one task (each task's `report_view()`); the report draws every block it names."""

    #: The evaluation's metrics table, in order; also how any metric of the task is named elsewhere (`lookup`).
    metrics: tuple[Shown, ...]
    #: The metrics shown as summary cards, each beside the baseline's, with its interval.
    cards: tuple[str, ...]
    #: The data section's blocks after cleaning: "labels" (counts, imbalance), "label_bars" (frequency figure),
    #: "cardinality" (labels per row), "target" (the number's distribution).
    data: tuple[str, ...]
    #: The evaluation's blocks, in order: "confusion", "curves", "calibration", "per_class"; "cardinality",
    #: "per_label"; "scatter", "residuals", "by_range".
    evaluation: tuple[str, ...]
    #: The worst errors' columns after the input (kind "text", "int", "pct" or "num").
    worst: tuple[Shown, ...]
    #: The worst errors' heading, what they are, and what shows when there is none.
    worst_title: str
    worst_caption: str
    no_errors: str
    #: The evaluation's opening sentence, how its intervals resample, and the note under the metrics table.
    intro: str
    resampling: str
    metrics_note: str
