"""Reading the bundled dataset and users' CSV/JSONL/Parquet files, with clear errors for bad files."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from tunepipe.data.readers import DataSource, read_text_table, resolve_source
from tunepipe.errors import DataError


def source(path, fmt="auto", text="review", label="sentiment"):
    return resolve_source({"source": "file", "path": str(path), "format": fmt, "text_column": text, "label_column": label})


def test_bundled_rotten_tomatoes_is_read_offline_from_the_installed_package():
    src = resolve_source({"source": "rotten_tomatoes", "path": None, "format": "auto", "text_column": "text", "label_column": "category"})
    frame = read_text_table(src)
    assert len(frame) == 13905
    assert frame["label"].value_counts().to_dict() == {"fresh": 7403, "rotten": 5405, "plot": 1097}
    assert list(frame.columns) == ["id", "text", "label"]


@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".parquet"])
def test_user_file_with_custom_column_names(tmp_path, suffix):
    table = pd.DataFrame({"review": ["good film", "bad film", "fine"], "sentiment": ["pos", "neg", "pos"], "extra": [1, 2, 3]})
    path = tmp_path / f"mine{suffix}"
    if suffix == ".csv":
        table.to_csv(path, index=False)
    elif suffix == ".jsonl":
        path.write_text("\n".join(json.dumps(r) for r in table.to_dict(orient="records")) + "\n")
    else:
        table.to_parquet(path)
    frame = read_text_table(source(path))
    assert frame["text"].tolist() == ["good film", "bad film", "fine"]
    assert frame["label"].tolist() == ["pos", "neg", "pos"]


def test_missing_column_names_the_file_the_columns_found_and_the_fix(tmp_path):
    path = tmp_path / "mine.csv"
    path.write_text("text,label\nhello there,pos\n")
    with pytest.raises(DataError) as info:
        read_text_table(source(path))
    message = str(info.value)
    assert str(path) in message and "'review' and 'sentiment' not found" in message
    assert "the file has: text, label" in message and "data.text_column" in message


def test_empty_file_is_reported(tmp_path):
    path = tmp_path / "empty.csv"
    path.write_text("")
    with pytest.raises(DataError, match="the file is empty"):
        read_text_table(source(path))


def test_header_only_file_is_reported(tmp_path):
    path = tmp_path / "header.csv"
    path.write_text("review,sentiment\n")
    with pytest.raises(DataError, match="no data rows"):
        read_text_table(source(path))


def test_non_utf8_file_is_reported_with_the_fix(tmp_path):
    path = tmp_path / "latin1.csv"
    path.write_bytes("review,sentiment\ncaf\xe9 cr\xe8me,pos\n".encode("latin-1"))
    with pytest.raises(DataError, match="not valid UTF-8.*re-save the file as UTF-8"):
        read_text_table(source(path))


def test_missing_file_and_unknown_extension(tmp_path):
    with pytest.raises(DataError, match="file not found"):
        read_text_table(source(tmp_path / "nope.csv"))
    with pytest.raises(DataError, match="set data.format"):
        source(tmp_path / "data.txt")


def test_explicit_format_overrides_the_extension(tmp_path):
    path = tmp_path / "data.txt"
    path.write_text("review,sentiment\nnice one,pos\n")
    assert isinstance(source(path, fmt="csv"), DataSource)
    assert read_text_table(source(path, fmt="csv"))["label"].tolist() == ["pos"]


@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".parquet"])
def test_missing_labels_and_groups_are_missing_not_the_strings_nan_or_none(tmp_path, suffix):
    table = pd.DataFrame({"review": ["good film", "bad film", "fine", "meh"], "sentiment": ["pos", None, "pos", "neg"],
                          "movie": ["m1", None, "m1", None]})
    path = tmp_path / f"mine{suffix}"
    if suffix == ".csv":
        table.to_csv(path, index=False)  # a missing cell is written empty
    elif suffix == ".jsonl":
        path.write_text("\n".join(json.dumps(r) for r in table.to_dict(orient="records")) + "\n")
    else:
        table.to_parquet(path)
    src = resolve_source({"source": "file", "path": str(path), "format": "auto", "text_column": "review",
                          "label_column": "sentiment", "group_column": "movie"})
    frame = read_text_table(src)
    assert frame["label"].tolist() == ["pos", "", "pos", "neg"]
    assert frame["group"].tolist() == ["m1", None, "m1", None]
