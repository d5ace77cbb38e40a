"""Metrics per slice on a known split; the columns a slice needs reach the split rows."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tunepipe.errors import DataError
from tunepipe.tasks import DEFAULT, get_task
from tunepipe.trust.slices import CSV_FIELDS, csv_fields, flat_rows, named_slices, quartile_labels, slice_columns_of, slice_table

ONE = get_task(DEFAULT)


def test_slice_table_on_a_known_split():
    # 12 rows; group a: 6 rows, 5 right; group b: 4 rows, 1 right; group c: 2 rows, both right (below min_rows).
    y = np.array([0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1])
    right = [1, 1, 1, 1, 1, 0, 1, 0, 0, 0, 1, 1]
    p = np.where(np.array(right) == 1, y, 1 - y)
    groups = ["a"] * 6 + ["b"] * 4 + ["c"] * 2
    table = slice_table(ONE, ["neg", "pos"], y, p, {"group": ("group", groups)}, resamples=200, seed=0, min_rows=4)
    assert table["overall"] == {"rows": 12, "accuracy": pytest.approx(8 / 12, abs=1e-6), "f1_macro": table["overall"]["f1_macro"]}
    by_value = {s["value"]: s for s in table["columns"][0]["slices"]}
    assert {v: (s["rows"], s["accuracy"]) for v, s in by_value.items()} == {"a": (6, pytest.approx(5 / 6, abs=1e-6)),
                                                                         "b": (4, 0.25), "c": (2, 1.0)}
    # group b: true labels 0,1,0,1, predicted 0,0,1,0 -> class 0: tp 1 fp 2 fn 1 (F1 0.4); class 1: tp 0 (F1 0); macro 0.2
    assert by_value["b"]["f1_macro"] == pytest.approx(0.2)
    assert by_value["a"]["ranked"] and by_value["b"]["ranked"] and not by_value["c"]["ranked"]
    assert "accuracy_ci_low" not in by_value["c"]  # too small for an interval
    low, high = by_value["b"]["accuracy_ci_low"], by_value["b"]["accuracy_ci_high"]
    assert 0.0 <= low <= 0.25 <= high <= 1.0
    worst = table["worst"]
    assert (worst["column"], worst["value"], worst["accuracy"]) == ("group", "b", 0.25)
    assert worst["accuracy_gap"] == pytest.approx(8 / 12 - 0.25, abs=1e-6)
    csv_rows = flat_rows(table)
    assert [r["slice"] for r in csv_rows] == ["group=a", "group=b", "group=c"]
    assert "metric" not in table and csv_fields(table) == CSV_FIELDS  # the default task's files as they always were
    # rows without a value belong to no slice of that column
    partial = slice_table(ONE, ["neg", "pos"], y, p, {"g": ("named", ["x"] * 6 + [None] * 6)}, resamples=0, seed=0, min_rows=1)
    assert partial["columns"][0]["unsliced_rows"] == 6 and partial["columns"][0]["slices"][0]["rows"] == 6


def test_label_set_slices_rank_on_micro_f1():
    task = get_task("multi_label")
    y = np.array([[1, 0], [0, 1], [1, 1], [0, 0]] * 3)
    p = y.copy()
    p[6:] = [[0, 0], [0, 0], [0, 0], [0, 0], [0, 0], [0, 0]]  # slice b predicts nothing: F1 0
    table = slice_table(task, ["x", "y"], y, p, {"g": ("named", ["a"] * 6 + ["b"] * 6)}, resamples=50, seed=0, min_rows=3)
    assert (table["metric"], table["lower_is_better"], table["metrics"]) == ("f1_micro", False, ["f1_micro", "f1_macro"])
    by_value = {s["value"]: s for s in table["columns"][0]["slices"]}
    assert by_value["a"]["f1_micro"] == 1.0 and by_value["b"]["f1_micro"] == 0.0
    # overall: 6 labels of 12 found, none claimed wrongly -> F1 2*6/(12+6)
    assert table["overall"]["f1_micro"] == pytest.approx(12 / 18, abs=1e-6) and by_value["b"]["f1_micro_gap"] == pytest.approx(12 / 18, abs=1e-6)
    assert table["worst"]["value"] == "b"
    assert csv_fields(table)[5:8] == ["f1_micro", "f1_micro_ci_low", "f1_micro_ci_high"] and set(flat_rows(table)[0]) == set(csv_fields(table))


def test_value_slices_rank_on_the_highest_error():
    task = get_task("regression")
    y = np.arange(12, dtype=float)
    p = y + np.array([0.5] * 6 + [2.0] * 6)
    table = slice_table(task, ["rating"], y, p, {"g": ("named", ["a"] * 6 + ["b"] * 6)}, resamples=50, seed=0, min_rows=3)
    assert table["metric"] == "mae" and table["lower_is_better"]
    worst = table["worst"]
    assert worst["value"] == "b" and worst["mae"] == 2.0 and worst["mae_gap"] == pytest.approx(2.0 - 1.25)  # positive: worse than overall
    assert worst["mae_ci_low"] == worst["mae_ci_high"] == 2.0 and worst["rmse"] == 2.0


def test_quartile_labels_name_their_ranges():
    labels = quartile_labels([1, 2, 3, 4, 5, 6, 7, 8], "words")
    assert labels == ["Q1: 1-2 words"] * 2 + ["Q2: 3-4 words"] * 2 + ["Q3: 5-6 words"] * 2 + ["Q4: 7-8 words"] * 2
    assert set(quartile_labels([5, 5, 5, 5], "words")) == {"Q1: 5 words"}  # ties share a quartile


def test_named_columns_and_automatic_slices_of_test_rows():
    from tunepipe.modalities import get_modality

    rows = [{"id": str(i), "text": "word " * (i + 1), "label": "pos", "columns": {"source": "web" if i % 2 else "print"}} for i in range(8)]
    columns = slice_columns_of(rows, get_modality("text"), ["source"], "test.jsonl")
    assert columns["source"] == ("named", ["print", "web"] * 4)
    assert columns["text length"][0] == "auto" and columns["text length"][1][0] == "Q1: 1-2 words"
    assert "group" not in columns  # no row has a group
    with pytest.raises(DataError, match=r"evaluate.slice_columns: no test row of test.jsonl has a column 'sourse'; the rows carry: source"):
        named_slices(rows, ["sourse"], "test.jsonl")


def test_a_data_files_other_columns_reach_the_split_rows(tmp_path, default_params):
    """Any column of the user's file (not the text, label or group) rides along in each row's `columns`."""
    from tunepipe.stages import clean, prepare, split
    from tunepipe.stages.harness import main

    lines = ["review,sentiment,source,user"]
    for i in range(80):
        lines.append(f"{'a good and moving film' if i % 2 else 'a dull and tedious film'} number {i},{'pos' if i % 2 else 'neg'},"
                     f"{'web' if i % 4 < 2 else 'print'},u{i % 40}")
    (tmp_path / "reviews.csv").write_text("\n".join(lines) + "\n")
    params = default_params
    params["data"].update(source="file", path=str(tmp_path / "reviews.csv"), text_column="review", label_column="sentiment",
                          labels=None, group_column="user")
    params["split"].update(max_rows=None)
    out = tmp_path / "results"
    assert main(prepare.STAGE, ["--params", json.dumps(params), "--in", f"raw={tmp_path / 'reviews.csv'}",
                                "--out", f"rows={out / 'prepare.jsonl'}", "--out", f"summary={out / 'prepare.json'}"]) == 0
    assert main(clean.STAGE, ["--params", json.dumps(params), "--in", f"rows={out / 'prepare.jsonl'}",
                              "--out", f"rows={out / 'clean.jsonl'}", "--out", f"report={out / 'clean.json'}"]) == 0
    argv = ["--params", json.dumps(params), "--in", f"rows={out / 'clean.jsonl'}", "--out", f"summary={out / 'split.json'}"]
    for name in ("train", "val", "test"):
        argv += ["--out", f"{name}={out / (name + '.jsonl')}"]
    assert main(split.STAGE, argv) == 0
    test_rows = [json.loads(line) for line in (out / "test.jsonl").read_text().splitlines()]
    assert test_rows and all(set(row["columns"]) == {"source"} and row["columns"]["source"] in ("web", "print") for row in test_rows)
    assert all(row["group"].startswith("u") for row in test_rows)  # the group column is a field of its own, not in `columns`
