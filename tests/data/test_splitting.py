"""Stratified, seeded splits with no text in two splits."""

from __future__ import annotations

import pandas as pd
import pytest

from tunepipe.data.splitting import assert_no_leakage, group_members, split_rows, stratified_sample
from tunepipe.errors import DataError


def rows(n_pos=60, n_neg=40):
    data = [{"id": f"p{i}", "text": f"good film {i}", "label": "pos"} for i in range(n_pos)]
    data += [{"id": f"n{i}", "text": f"bad film {i}", "label": "neg"} for i in range(n_neg)]
    return pd.DataFrame(data)


def test_split_sizes_and_label_proportions():
    parts = split_rows(rows(), val_fraction=0.1, test_fraction=0.2, seed=1)
    assert {k: len(v) for k, v in parts.items()} == {"train": 70, "val": 10, "test": 20}
    assert parts["test"]["label"].value_counts().to_dict() == {"pos": 12, "neg": 8}
    assert sum(len(v) for v in parts.values()) == 100
    assert len(set().union(*(set(v["id"]) for v in parts.values()))) == 100


def test_same_seed_same_split_other_seed_other_split():
    a = split_rows(rows(), val_fraction=0.1, test_fraction=0.2, seed=1)
    b = split_rows(rows(), val_fraction=0.1, test_fraction=0.2, seed=1)
    c = split_rows(rows(), val_fraction=0.1, test_fraction=0.2, seed=2)
    assert a["test"]["id"].tolist() == b["test"]["id"].tolist()
    assert a["test"]["id"].tolist() != c["test"]["id"].tolist()


def test_equal_texts_never_straddle_splits_even_without_deduplication():
    frame = rows()
    dupes = frame.head(30).assign(id=lambda f: f["id"] + "-copy", text=lambda f: f["text"].str.upper())
    parts = split_rows(pd.concat([frame, dupes]), val_fraction=0.1, test_fraction=0.2, seed=3)
    assert_no_leakage(parts)  # would raise
    assert sum(len(v) for v in parts.values()) == 130


def test_leakage_check_fails_loudly():
    a = pd.DataFrame([{"id": "1", "text": "Same Text", "label": "pos"}])
    b = pd.DataFrame([{"id": "2", "text": "same,  text!", "label": "pos"}])
    with pytest.raises(DataError, match="leakage: row 2 .'same text'. is in both train and test"):
        assert_no_leakage({"train": a, "test": b})


def test_rows_of_one_group_never_straddle_splits():
    frame = rows().assign(group=[f"movie{i // 5}" for i in range(100)])
    parts = split_rows(frame, val_fraction=0.1, test_fraction=0.2, seed=5)
    homes = {}
    for name, part in parts.items():
        for group in part["group"]:
            assert homes.setdefault(group, name) == name
    assert len(homes) == 20


def test_a_group_shared_across_splits_is_caught():
    a = pd.DataFrame([{"id": "1", "text": "one", "label": "pos", "group": "g1"}])
    b = pd.DataFrame([{"id": "2", "text": "two", "label": "pos", "group": "g1"}])
    with pytest.raises(DataError, match="leakage: group 'g1' is in both train and val"):
        assert_no_leakage({"train": a, "val": b})


def test_folds_are_stratified_and_keep_groups_together():
    from tunepipe.data.splitting import assign_folds

    frame = rows(60, 40).assign(group=[f"g{i // 2}" for i in range(100)])
    folds = assign_folds(frame, 4, seed=0)
    assert sorted(folds.unique()) == [0, 1, 2, 3]
    assert frame.assign(fold=folds).groupby("group")["fold"].nunique().max() == 1
    per_fold = frame.assign(fold=folds).groupby("fold")["label"].value_counts().unstack()
    assert per_fold["pos"].min() >= 12 and per_fold["neg"].min() >= 8


def test_too_few_rows_in_a_class_is_explained():
    with pytest.raises(DataError, match="label 'neg' has only 2 row"):
        split_rows(rows(20, 2), val_fraction=0.1, test_fraction=0.2, seed=0)


def test_stratified_sample_keeps_proportions():
    sample = stratified_sample(rows(600, 400), 100, seed=0)
    assert len(sample) == 100 and sample["label"].value_counts().to_dict() == {"pos": 60, "neg": 40}
    assert stratified_sample(rows(), None, seed=0).shape[0] == 100


def test_rows_without_a_group_are_each_their_own_group():
    """A missing group id (None, or NaN after pandas) is no group: such rows are split one by one, not as one group."""
    frame = rows().assign(group=[f"movie{i // 5}" if i % 2 else (None if i % 4 else float("nan")) for i in range(100)])
    parts = split_rows(frame, val_fraction=0.1, test_fraction=0.2, seed=5)
    ungrouped = {name: int(part["group"].isna().sum()) for name, part in parts.items()}
    assert sum(ungrouped.values()) == 50 and all(ungrouped.values()), ungrouped  # in every split, not all in one


def test_rows_without_a_group_in_two_splits_are_no_leakage():
    a = pd.DataFrame([{"id": "1", "text": "one", "label": "pos", "group": None}])
    b = pd.DataFrame([{"id": "2", "text": "two", "label": "pos", "group": None}])
    assert_no_leakage({"train": a, "test": b})


def test_each_groups_members_are_what_groupby_lists_give():
    """split_rows lists each group's ids (and targets) itself, without a Series per group: the same lists, in the same order."""
    frame = pd.DataFrame({
        "id": [str(i) for i in range(12)],
        "label": [["a"], [], ["a", "b"], ["b"], ["a"], ["b"], ["a"], ["a"], ["b"], ["a", "b"], ["b"], []],
        "score": [1.5, float("nan"), 2.0, 3, 4, 5, 6, 7, 8, 9, 10, 11],
        "name": ["x", None, "y", "z", "x", None, "y", "z", "x", "y", "z", "w"],
    })
    component = pd.Series([5, 3, 5, 0, 3, 7, 0, 5, 9, 9, 3, 1])
    grouped = frame.assign(_component=component).groupby("_component", sort=False)
    for column in ("id", "label", "score", "name"):
        expected = grouped[column].agg(list).tolist()
        assert repr(group_members(component, frame[column])) == repr(expected)
    assert group_members(component, frame["id"])[0] == ["0", "2", "7"]  # component 5 first: its rows in row order
