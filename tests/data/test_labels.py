"""Labels: the declared set and its order, and a label the model does not know."""

from __future__ import annotations

import pytest

from tunepipe.data.labels import encode, label_names
from tunepipe.errors import DataError


def test_declared_labels_keep_their_order_and_found_labels_are_sorted():
    rows = [{"id": "1", "label": "b"}, {"id": "2", "label": "a"}]
    assert label_names(["b", "a"], rows) == ["b", "a"]
    assert label_names(None, rows) == ["a", "b"]
    assert encode(rows, ["b", "a"], "x.jsonl") == [0, 1]


def test_an_unknown_label_in_a_split_names_the_file_the_row_and_the_fix():
    with pytest.raises(DataError, match=r"test.jsonl: label 'c' \(row 7\) is not one of \['a', 'b'\]; fix data.labels or re-run clean"):
        encode([{"id": "7", "label": "c"}], ["a", "b"], "test.jsonl")


def test_one_label_only_is_refused():
    with pytest.raises(DataError, match="need at least two labels"):
        label_names(None, [{"id": "1", "label": "a"}])


def test_an_image_that_became_unreadable_after_cleaning_stops_with_its_path(tmp_path):
    from tunepipe.data.datamodule import ImageTensors

    bad = tmp_path / "gone-bad.png"
    bad.write_bytes(b"garbage")
    with pytest.raises(DataError, match=f"{bad}: not a readable image"):
        ImageTensors([str(bad)], [0], size=32)
