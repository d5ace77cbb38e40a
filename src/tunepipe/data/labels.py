"""The label set of a run: declared in params (`data.labels`, in that order) or every label found, sorted."""

from __future__ import annotations

from collections.abc import Iterable

from tunepipe.errors import DataError


def label_names(declared: list[str] | None, *row_sets: Iterable[dict]) -> list[str]:
    if declared is not None:
        return list(declared)
    found = sorted({row["label"] for rows in row_sets for row in rows})
    if len(found) < 2:
        raise DataError(f"need at least two labels, found {found}.")
    return found


def encode(rows: Iterable[dict], names: list[str], source: str) -> list[int]:
    index = {name: i for i, name in enumerate(names)}
    codes = []
    for row in rows:
        if row["label"] not in index:
            raise DataError(f"{source}: label {row['label']!r} (row {row['id']}) is not one of {names}; fix data.labels or re-run clean.")
        codes.append(index[row["label"]])
    return codes
