"""Metrics per slice of the test split: is the model worse for some group or some kind of input?

A slice is the rows sharing one value of a column: the group column (`data.group_column`), any column the
user names (`evaluate.slice_columns`, carried from the data file into every row's `columns`), and the
modality's automatic slices (text length or image brightness quartiles). Each slice gets its size and the
task's metrics (`Task.trust_scores`: accuracy and macro F1; F1 micro/macro; MAE, RMSE, R2) with evaluate's seeded
bootstrap intervals. The worst slice is the one worst on the task's `trust_metric` (the lowest accuracy or F1, the
highest MAE) among those with at least `min_rows` rows (smaller ones are listed, not ranked: their scores are
mostly noise).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from tunepipe.errors import DataError

if TYPE_CHECKING:
    from tunepipe.tasks import Task

MIN_ROWS = 10
#: The metrics of a slices.json that names none (one label per row, as it always was); other files name theirs.
UNNAMED_METRICS = ("accuracy", "f1_macro")
LEVEL = 0.95


def quartile_labels(values: Sequence[float], unit: str, digits: int = 0) -> list[str]:
    """Each value's quartile of `values`, named by the range of values it holds, e.g. "Q2: 12-19 words".

    Quartile edges are the 25/50/75% quantiles; a value equal to an edge goes to the lower quartile, so tied
    values share one quartile (and a quartile may be empty when many values tie).
    """
    array = np.asarray(values, dtype=float)
    if not len(array):
        return []
    edges = np.quantile(array, [0.25, 0.5, 0.75])
    quartile = np.searchsorted(edges, array, side="left")
    names = {}
    for q in np.unique(quartile):
        held = array[quartile == q]
        low, high = (f"{x:.{digits}f}" for x in (held.min(), held.max()))
        names[int(q)] = f"Q{int(q) + 1}: {low}-{high} {unit}" if low != high else f"Q{int(q) + 1}: {low} {unit}"
    return [names[int(q)] for q in quartile]


def brightness(path: str) -> float:
    """An image's mean grey level (0-255), for the image modality's brightness slices."""
    from PIL import Image

    with Image.open(path) as image:
        return float(np.asarray(image.convert("L"), dtype=np.float32).mean())


def row_value(row: Mapping[str, Any], column: str) -> Any:
    """The row's value of a named column: a field of the row itself (`group`), else one of its data file's `columns`."""
    if column in row:
        return row[column]
    return (row.get("columns") or {}).get(column)


def named_slices(rows: Sequence[Mapping[str, Any]], columns: Sequence[str], source: str) -> dict[str, list[Any]]:
    """column -> each row's value, for the named columns; a column no row holds is a DataError naming the fix."""
    found: dict[str, list[Any]] = {}
    for column in columns:
        values = [row_value(row, column) for row in rows]
        if rows and all(value is None for value in values):
            kept = sorted({key for row in rows for key in (row.get("columns") or {})})
            raise DataError(f"evaluate.slice_columns: no test row of {source} has a column {column!r}; the rows carry: "
                            f"{', '.join(kept) or '(no extra columns)'}. Name a column of your data file (data.source: file).")
        found[column] = values
    return found


def slice_columns_of(rows: Sequence[Mapping[str, Any]], modality: Any, named: Sequence[str], source: str) -> dict[str, tuple[str, list[Any]]]:
    """The slice columns of the test rows: `group` when the rows have groups, the named columns, the modality's automatic ones."""
    columns: dict[str, tuple[str, list[Any]]] = {}
    groups = [row.get("group") for row in rows]
    if any(group is not None for group in groups):
        columns["group"] = ("group", groups)
    for column, values in named_slices(rows, [c for c in named if c not in columns], source).items():
        columns[column] = ("named", values)
    for column, values in modality.auto_slices(list(rows)).items():
        columns.setdefault(column, ("auto", values))
    return columns


def _metrics(task: Task, names: list[str], y: np.ndarray, p: np.ndarray, *, resamples: int, seed: int) -> dict[str, Any]:
    result: dict[str, Any] = {name: _rounded(value[0]) for name, value in task.trust_scores(p[None], y[None], names).items()}
    if resamples:
        index = task.trust_resamples(y, names, resamples=resamples, seed=seed)
        alpha = (1 - LEVEL) / 2
        for name, samples in task.trust_scores(p[index], y[index], names).items():
            low, high = np.quantile(samples, [alpha, 1 - alpha])
            result[f"{name}_ci_low"], result[f"{name}_ci_high"] = _rounded(low), _rounded(high)
    return result


def _rounded(value: float) -> float | None:
    """A score for JSON: None where it is undefined (R2 of a slice whose targets do not vary)."""
    return round(float(value), 6) if np.isfinite(value) else None


def slice_table(task: Task, names: list[str], targets: np.ndarray, answers: np.ndarray, columns: Mapping[str, tuple[str, Sequence[Any]]], *,
                resamples: int, seed: int, min_rows: int = MIN_ROWS) -> dict[str, Any]:
    """Per slice of each column: rows, the task's `trust_scores` and (for slices of at least `min_rows` rows) bootstrap intervals.

    `answers` and `targets` are the task's (`Task.trust_answers`; the targets as the task encodes them). `columns` maps a column name to (kind,
    each row's value); kind is "group", "named" or "auto". Rows whose value is None belong to no slice of that column.
    Returns {overall, min_rows, columns: [{column, kind, slices: [...]}], worst: the ranked slice worst on the task's
    `trust_metric` with its gap (how much worse than overall, positive = worse) or None}; other tasks than the default
    also name the `metric` and the `metrics`.
    """
    metric, direction = task.trust_metric
    sign = 1 if direction == "max" else -1
    y, p = np.asarray(targets), np.asarray(answers)
    overall = {"rows": int(len(y)), **_metrics(task, names, y, p, resamples=0, seed=seed)}
    tables, ranked = [], []
    for column, (kind, values) in columns.items():
        if len(values) != len(y):
            raise ValueError(f"slice column {column!r}: {len(values)} values for {len(y)} rows")
        keys = np.asarray(["" if v is None else str(v) for v in values], dtype=object)
        present = np.asarray([v is not None for v in values])
        slices = []
        for value in sorted(set(keys[present])):
            mask = present & (keys == value)
            size = int(mask.sum())
            entry = {"column": column, "value": value, "rows": size, "ranked": size >= min_rows,
                     **_metrics(task, names, y[mask], p[mask], resamples=resamples if size >= min_rows else 0, seed=seed)}
            entry[f"{metric}_gap"] = round(sign * (overall[metric] - entry[metric]), 6)
            slices.append(entry)
            if entry["ranked"]:
                ranked.append(entry)
        tables.append({"column": column, "kind": kind, "slices": slices, "unsliced_rows": int((~present).sum())})
    worst = min(ranked, key=lambda s: (sign * s[metric], -s["rows"], s["column"], s["value"])) if ranked else None
    table = {"overall": overall, "min_rows": min_rows, "level": LEVEL, "resamples": resamples, "seed": seed,
             "columns": tables, "worst": dict(worst) if worst else None}
    if tuple(overall)[1:] != UNNAMED_METRICS:
        table = {"metric": metric, "lower_is_better": direction == "min", "metrics": list(overall)[1:], **table}
    return table


def csv_fields(table: Mapping[str, Any]) -> list[str]:
    """slices.csv's columns for a slice table: CSV_FIELDS with the table's own metrics (and its gap) in place of the default task's."""
    metrics = table.get("metrics")
    if not metrics:
        return list(CSV_FIELDS)
    return [*CSV_FIELDS[:5], *(f"{m}{end}" for m in metrics for end in ("", "_ci_low", "_ci_high")), f"{table['metric']}_gap", "ranked"]


def flat_rows(table: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One CSV row per slice (what results/evaluate/slices.csv holds, and DVC plots draw), with the columns of `csv_fields`."""
    rows = []
    for column in table["columns"]:
        for entry in column["slices"]:
            rows.append({"slice": f"{entry['column']}={entry['value']}", "kind": column["kind"],
                         **{key: entry.get(key) for key in csv_fields(table)[2:]}})
    return rows


#: slices.csv's columns for the default task (`csv_fields` gives any table's).
CSV_FIELDS = ["slice", "kind", "column", "value", "rows", "accuracy", "accuracy_ci_low", "accuracy_ci_high", "f1_macro",
              "f1_macro_ci_low", "f1_macro_ci_high", "accuracy_gap", "ranked"]


__all__ = ["CSV_FIELDS", "MIN_ROWS", "brightness", "csv_fields", "flat_rows", "named_slices", "quartile_labels", "row_value", "slice_columns_of", "slice_table"]
