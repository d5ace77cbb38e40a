"""Stratified, seeded train/val/test split with no leakage: near-duplicates (same cleaning `key`) and rows of
one group (`data.group_column`) always land in the same split; a check verifies it and fails loudly."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedGroupKFold, train_test_split

from tunepipe.data.text import dedup_key
from tunepipe.errors import DataError

SPLITS = ("train", "val", "test")
#: Each row's stratum from its target (the task's `strata`); the label itself by default (single_label).
Strata = Callable[[pd.Series], pd.Series]
#: A split per group of rows, from each group's targets, the three fractions and the seed (the task's `assign_splits`);
#: None: split by `Strata` (stratified train_test_split).
Assign = Callable[[list[list], tuple[float, float, float], int], list[int] | None]


def iterative_assignment(label_sets: list[list[list[str]]], fractions: tuple[float, ...], seed: int) -> list[int]:
    """Iterative stratification (Sechidis, Tsoumakas and Vlahavas, 2011) of groups of multi-label rows: each group (its
    rows' label sets) goes to a split, so that every label's rows, and the rows overall, follow `fractions`.

    The label with the fewest rows still to place is dealt first: each of its groups goes to the split that still wants
    most of that label (ties: the one that wants most rows, then a seeded draw); groups without labels fill the splits
    that want most rows. Returns the split index of each group.
    """
    import random
    from collections import Counter

    draw = random.Random(seed)
    counts = [Counter(label for labels in group for label in set(labels)) for group in label_sets]
    sizes = [len(group) for group in label_sets]
    wanted_rows = [fraction * sum(sizes) for fraction in fractions]
    totals = Counter(label for count in counts for label in count.elements())
    wanted = [{label: fraction * total for label, total in totals.items()} for fraction in fractions]
    split = [-1] * len(label_sets)
    remaining = {index for index, count in enumerate(counts) if count}

    def place(index: int, by_label: str | None) -> None:
        keys = [((wanted[s][by_label] if by_label else 0.0), wanted_rows[s], draw.random()) for s in range(len(fractions))]
        chosen = max(range(len(fractions)), key=lambda s: keys[s])
        split[index] = chosen
        wanted_rows[chosen] -= sizes[index]
        for label, n in counts[index].items():
            wanted[chosen][label] -= n

    while remaining:
        left = Counter(label for index in remaining for label in counts[index].elements())
        label = min(left, key=lambda name: (left[name], name))
        holders = sorted(index for index in remaining if label in counts[index])
        draw.shuffle(holders)
        for index in holders:
            place(index, label)
            remaining.discard(index)
    for index in sorted(index for index, count in enumerate(counts) if not count):
        place(index, None)
    return split


def _labels(targets: pd.Series) -> pd.Series:
    return targets


def stratified_sample(frame: pd.DataFrame, max_rows: int | None, seed: int, strata: Strata = _labels) -> pd.DataFrame:
    """A stratified, seeded sample of at most `max_rows` rows, in the original order (frame attrs kept)."""
    if max_rows is None or len(frame) <= max_rows:
        return frame
    sample, _ = train_test_split(frame, train_size=max_rows, stratify=strata(frame["label"]), random_state=seed)
    result = sample.sort_index()
    result.attrs.update(frame.attrs)
    return result


def leakage_keys(frame: pd.DataFrame) -> pd.Series:
    """The near-duplicate key of each row (from cleaning; recomputed for text rows that lack it)."""
    if "key" in frame:
        return frame["key"].astype(str)
    return frame["text"].map(dedup_key)


def group_ids(frame: pd.DataFrame) -> pd.Series:
    """Each row's group id as a string, None for a row without a group (a missing value is no group, not a
    group called "None" or "nan" that would join every such row)."""
    return pd.Series([None if pd.isna(value) else str(value) for value in frame["group"]], index=frame.index, dtype=object)


def connected_groups(frame: pd.DataFrame) -> pd.Series:
    """Rows linked by an equal key or an equal group id form one component (union-find); a row without a
    group is linked by its key only."""
    parent = list(range(len(frame)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    columns = [leakage_keys(frame)] + ([group_ids(frame)] if "group" in frame else [])
    for column in columns:
        first: dict[str, int] = {}
        for position, value in enumerate(column):
            if value is None:
                continue
            if value in first:
                parent[find(position)] = find(first[value])
            else:
                first[value] = position
    return pd.Series([find(i) for i in range(len(frame))], index=frame.index)


def group_members(component: pd.Series, values: pd.Series) -> list[list]:
    """`values` of each group's rows, in row order; the groups (equal `component`) in the order they first appear, as
    `groupby(sort=False)` orders them. What `.agg(list)` gives, without a Series per group (a million rows are
    about as many groups)."""
    codes, uniques = pd.factorize(component, sort=False)
    grouped: list[list] = [[] for _ in range(len(uniques))]
    for code, value in zip(codes.tolist(), values.tolist()):
        grouped[code].append(value)
    return grouped


def split_rows(frame: pd.DataFrame, *, val_fraction: float, test_fraction: float, seed: int, strata: Strata = _labels,
               assign: Assign | None = None) -> dict[str, pd.DataFrame]:
    """Split rows by stratum proportion (the label; see `Strata`), or by `assign` (multi_label: iterative stratification),
    whole components at a time."""
    counts = strata(frame["label"]).value_counts()
    if counts.min() < 3:
        raise DataError(
            f"label {counts.idxmin()!r} has only {counts.min()} row(s); each label needs at least 3 rows "
            "(one per split) to stratify. Add data or drop that label from data.labels."
        )
    frame = frame.reset_index(drop=True)
    component = connected_groups(frame)
    groups = (frame.assign(_component=component, _stratum=strata(frame["label"])).groupby("_component", sort=False)
              .agg(label=("_stratum", "first")).reset_index())
    groups["rows"] = group_members(component, pd.Series(range(len(frame))))  # row positions
    if assign is not None:
        groups["targets"] = group_members(component, frame["label"])
    if groups["label"].value_counts().min() < 3:
        raise DataError("too few independent groups per label to split (rows of one group or near-duplicates stay together); add data or check data.group_column.")
    fractions = (1.0 - val_fraction - test_fraction, val_fraction, test_fraction)
    assignment = assign(list(groups["targets"]), fractions, seed) if assign is not None else None
    if assignment is not None:
        train, val, test = (groups[[number == s for number in assignment]] for s in range(3))
        if min(len(train), len(val), len(test)) == 0:
            raise DataError(f"{len(groups)} independent groups of rows are too few for three splits; add data or lower split.val_fraction/test_fraction.")
    else:
        rest, test = train_test_split(groups, test_size=test_fraction, stratify=groups["label"], random_state=seed)
        train, val = train_test_split(rest, test_size=val_fraction / (1.0 - test_fraction), stratify=rest["label"], random_state=seed)
    columns = ["id", *(column for column in frame.columns if column != "id")]
    result = {}
    for name, part in zip(SPLITS, (train, val, test)):
        positions = [position for group in part["rows"] for position in group]
        result[name] = frame.take(positions)[columns].reset_index(drop=True).sort_values("id", key=lambda s: s.astype(str)).reset_index(drop=True)
    assert_no_leakage(result)
    return result


def assign_folds(train: pd.DataFrame, folds: int, seed: int, strata: Strata = _labels) -> pd.Series:
    """A fold number per training row for k-fold cross-validation: stratified by label (see `Strata`), whole groups per fold."""
    if folds < 2:
        raise ValueError("folds must be at least 2")
    stratum = strata(train["label"])
    if stratum.value_counts().min() < folds:
        raise DataError(f"split.folds is {folds} but a label has only {stratum.value_counts().min()} training rows; lower split.folds.")
    splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
    fold = pd.Series(-1, index=train.index)
    for number, (_, held_out) in enumerate(splitter.split(train, stratum, groups=connected_groups(train))):
        fold.iloc[held_out] = number
    return fold


def _shared_values(splits: dict[str, pd.DataFrame]) -> bool:
    """Whether any near-duplicate key or group id is in two splits (a missing key counts as a value, a row without a
    group does not): one pass of pandas over every row, before `assert_no_leakage` looks for the first such row."""
    kinds = [[leakage_keys(part) for part in splits.values()],
             [group_ids(part).dropna() if "group" in part else pd.Series([], dtype=object) for part in splits.values()]]
    for values in kinds:
        owners = pd.DataFrame({"value": pd.concat(values, ignore_index=True).astype(object),
                               "split": np.repeat(np.arange(len(values)), [len(v) for v in values])})
        if owners.drop_duplicates()["value"].duplicated().any():
            return True
    return False


def assert_no_leakage(splits: dict[str, pd.DataFrame]) -> None:
    if not _shared_values(splits):
        return
    seen: dict[tuple[str, str], str] = {}
    for name, part in splits.items():
        columns = [("near-duplicate of", leakage_keys(part))] + ([("group", group_ids(part))] if "group" in part else [])
        for kind, values in columns:
            for value, row_id in zip(values, part["id"]):
                if value is None:
                    continue
                other = seen.setdefault((kind, value), name)
                if other != name:
                    what = f"group {value!r}" if kind == "group" else f"row {row_id} ({value[:60]!r})"
                    raise DataError(f"leakage: {what} is in both {other} and {name}.")


def cv_partition(rows: list[dict], fold: int) -> tuple[list[dict], list[dict]]:
    """(training rows, held-out rows) of one cross-validation fold of the augmented training split.

    Training: every row of the other folds, with the augmented copies of those rows (they take their
    source's fold). Held out: the original rows of `fold` only; augmented copies are never validated on.
    """
    fold_of = {row["id"]: row.get("fold") for row in rows if not row.get("augmented")}
    if any(value is None for value in fold_of.values()):
        raise DataError("cross-validation needs fold numbers on the training rows: the split was made with split.folds < 2; rerun split.")
    train, held_out = [], []
    for row in rows:
        number = fold_of.get(row["source_id"]) if row.get("augmented") else row["fold"]
        if number is None:
            raise DataError(f"augmented row {row['id']} comes from {row.get('source_id')!r}, which is not in the training split.")
        if number != fold:
            train.append(row)
        elif not row.get("augmented"):
            held_out.append(row)
    if not held_out or not train:
        raise DataError(f"fold {fold} leaves {len(train)} training and {len(held_out)} held-out rows; lower split.folds.")
    return train, held_out
