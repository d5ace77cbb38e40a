"""Every cleaning reason removes what it should, is counted, and the dataset-level checks fail clearly."""

from __future__ import annotations

import pandas as pd
import pytest

from tunepipe.data.cleaning import TEXT_REASONS, clean_texts
from tunepipe.errors import DataError
from tunepipe.tasks import get_task

SINGLE = get_task("single_label")


def frame(rows):
    return pd.DataFrame([{"id": str(i), "text": t, "label": l} for i, (t, l) in enumerate(rows)])


def test_each_reason_is_counted_once_with_examples():
    rows = [
        ("a truly great film here", "pos"),
        ("a  truly GREAT film, here!", "pos"),  # near-duplicate: case, spacing and punctuation folded
        ("a truly great film here", "pos"),  # exact duplicate
        ("   ", "pos"),  # empty
        ("broken \ufffd bytes in this review", "pos"),  # invalid encoding
        ("one two three four five six seven eight nine ten eleven", "neg"),  # too long
        ("fine", "pos"),  # too short
        ("an awful boring film indeed", "neg"),
        ("a plot summary of the film", "plot"),  # undeclared label
        ("some text without a label", ""),  # missing label
        ("same words different label", "pos"),
        ("same words   different label", "neg"),  # conflicting pair
        ("another good movie to see", "pos"),
        ("another bad movie to skip", "neg"),
    ]
    kept, report = clean_texts(frame(rows), labels=["pos", "neg"], min_words=3, max_words=10, task=SINGLE)
    assert report.removed == {"empty": 1, "invalid_encoding": 1, "missing_label": 1, "undeclared_label": 1, "too_short": 1,
                              "too_long": 1, "conflicting_label": 2, "duplicate": 1, "near_duplicate": 1}
    assert report.kept_rows == len(kept) == 4
    assert report.input_rows == len(rows)
    assert report.examples["too_short"] == ["fine"]
    assert report.examples["near_duplicate"] == ["a truly GREAT film, here!"]
    assert report.labels == {"pos": 2, "neg": 2}
    assert set(report.removed) == set(TEXT_REASONS)
    assert "key" in kept  # the split keeps near-duplicates together by this key


def test_whitespace_is_normalised_in_kept_rows():
    kept, _ = clean_texts(frame([("a\tgood\n\nfilm  here", "pos"), ("a bad film here", "neg")]), labels=None, min_words=1, task=SINGLE)
    assert kept["text"].tolist() == ["a good film here", "a bad film here"]


def test_duplicates_and_conflicts_can_be_kept_when_turned_off():
    rows = [("same text here", "pos"), ("same text here", "pos"), ("other text here", "neg"), ("other text here", "pos")]
    kept, report = clean_texts(frame(rows), labels=None, min_words=1, drop_duplicates=False, drop_conflicting_labels=False, task=SINGLE)
    assert len(kept) == 4 and sum(report.removed.values()) == 0


def test_one_class_left_is_an_error_that_says_why():
    rows = [("a good film here", "pos"), ("another good film", "pos"), ("bad", "neg")]
    with pytest.raises(DataError, match=r"declared label\(s\) 'neg' have no rows after cleaning"):
        clean_texts(frame(rows), labels=["pos", "neg"], min_words=2, source="mine.csv", task=SINGLE)
    with pytest.raises(DataError, match="only one class .'pos', 2 rows"):
        clean_texts(frame(rows), labels=None, min_words=2, source="mine.csv", task=SINGLE)


def test_nothing_left_is_an_error_naming_the_source():
    with pytest.raises(DataError, match="mine.csv: no rows left after cleaning"):
        clean_texts(frame([("x", "pos"), ("y", "neg")]), labels=None, min_words=3, source="mine.csv", task=SINGLE)


def test_imbalance_figures():
    rows = [(f"good film number {i}", "pos") for i in range(6)] + [(f"bad film number {i}", "neg") for i in range(2)]
    _, report = clean_texts(frame(rows), labels=None, min_words=1, task=SINGLE)
    assert report.imbalance_ratio == 3.0
    assert report.as_dict()["label_shares"] == {"neg": 0.25, "pos": 0.75}
