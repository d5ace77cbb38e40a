"""Stratified, seeded train/val/test split with a leakage check: no text lands in two splits."""

from __future__ import annotations

import pandas as pd
from sklearn.model_selection import train_test_split

from tunepipe.data.text import dedup_key
from tunepipe.errors import DataError

SPLITS = ("train", "val", "test")


def stratified_sample(frame: pd.DataFrame, max_rows: int | None, seed: int) -> pd.DataFrame:
    if max_rows is None or len(frame) <= max_rows:
        return frame
    sample, _ = train_test_split(frame, train_size=max_rows, stratify=frame["label"], random_state=seed)
    return sample.sort_index()


def split_rows(frame: pd.DataFrame, *, val_fraction: float, test_fraction: float, seed: int) -> dict[str, pd.DataFrame]:
    """Split rows by label proportion; texts equal after normalisation are kept in the same split."""
    counts = frame["label"].value_counts()
    smallest = counts.min()
    if smallest < 3:
        raise DataError(
            f"label {counts.idxmin()!r} has only {smallest} row(s); each label needs at least 3 rows "
            "(one per split) to stratify. Add data or drop that label from data.labels."
        )
    # Group equal texts (should be none after cleaning, but users may turn deduplication off).
    keys = frame["text"].map(dedup_key)
    groups = frame.assign(_key=keys).groupby("_key", sort=False).agg(label=("label", "first"), rows=("id", list))
    groups = groups.reset_index()
    rest, test = train_test_split(groups, test_size=test_fraction, stratify=groups["label"], random_state=seed)
    val_share = val_fraction / (1.0 - test_fraction)
    train, val = train_test_split(rest, test_size=val_share, stratify=rest["label"], random_state=seed)
    by_id = frame.set_index("id")
    result = {}
    for name, part in zip(SPLITS, (train, val, test)):
        ids = [row_id for row_ids in part["rows"] for row_id in row_ids]
        result[name] = by_id.loc[ids].reset_index().sort_values("id", key=lambda s: s.astype(str)).reset_index(drop=True)
    assert_no_leakage(result)
    return result


def assert_no_leakage(splits: dict[str, pd.DataFrame]) -> None:
    seen: dict[str, str] = {}
    for name, part in splits.items():
        for text in part["text"]:
            key = dedup_key(text)
            other = seen.setdefault(key, name)
            if other != name:
                raise DataError(f"leakage: the text {text[:60]!r} is in both {other} and {name}.")
