"""Row files read without holding every row (tunepipe.io.JsonlRows) and frames written a chunk at a time."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from tunepipe.io import JsonlRows, read_frame, read_jsonl, read_rows, rows_digest, write_frame_jsonl, write_jsonl

ROWS = [{"id": "a", "text": "é ünïcode", "label": "fresh"}, {"id": 2, "text": "x", "label": ["p", "q"], "columns": {"n": 1.5}},
        {"id": "c", "text": "", "label": None}]


def test_rows_read_back_exactly_as_read_jsonl(tmp_path):
    path = tmp_path / "rows.jsonl"
    write_jsonl(path, ROWS)
    path.write_text(path.read_text() + "\n   \n" + json.dumps({"id": "last"}), encoding="utf-8")  # blank lines, no final newline
    rows = read_rows(path)
    assert isinstance(rows, JsonlRows)
    assert list(rows) == read_jsonl(path) == [*ROWS, {"id": "last"}]
    assert len(rows) == 4 and rows[-1] == {"id": "last"} and rows[1:3] == ROWS[1:3]
    assert rows.column("label") == ["fresh", ["p", "q"], None, None]
    assert rows.take([2, 0]) == [ROWS[2], ROWS[0]]
    assert [len(chunk) for chunk in rows.chunks(3)] == [3, 1]
    with pytest.raises(IndexError):
        rows[4]


def test_empty_file_has_no_rows(tmp_path):
    (tmp_path / "empty.jsonl").write_text("")
    assert len(read_rows(tmp_path / "empty.jsonl")) == 0 and list(read_rows(tmp_path / "empty.jsonl")) == []


def test_digest_names_the_content(tmp_path):
    write_jsonl(tmp_path / "a.jsonl", ROWS)
    write_jsonl(tmp_path / "b.jsonl", ROWS[:2])
    assert rows_digest(read_rows(tmp_path / "a.jsonl")) != rows_digest(read_rows(tmp_path / "b.jsonl"))
    assert rows_digest(ROWS) == rows_digest([dict(row) for row in ROWS]) != rows_digest(ROWS[:2])


def test_frame_written_in_chunks_equals_one_write(tmp_path):
    frame = pd.DataFrame({"id": [str(i) for i in range(7)], "text": [f"t{i}" for i in range(7)], "score": [i / 3 for i in range(7)]})
    write_jsonl(tmp_path / "whole.jsonl", frame.to_dict(orient="records"))
    assert write_frame_jsonl(tmp_path / "chunked.jsonl", frame, chunk=3) == 7
    assert (tmp_path / "chunked.jsonl").read_bytes() == (tmp_path / "whole.jsonl").read_bytes()


def _frame_of_dicts(path):
    return pd.DataFrame(read_jsonl(path))


@pytest.mark.parametrize("rows", [
    # the same dtypes in every chunk: the chunks are concatenated
    [{"id": str(i), "text": f"t {i}", "label": ["a", "b"][i % 2], "group": None if i % 3 else f"g{i}", "columns": {"n": str(i)}} for i in range(10)],
    # a column only in a later chunk; whole numbers in one chunk, fractions in another; a column null throughout a chunk
    [{"id": str(i), "label": i} for i in range(4)] + [{"id": "x", "label": 2.5, "fold": 1}, {"id": "y", "label": 3, "fold": 0}],
    [{"id": str(i), "group": None} for i in range(3)] + [{"id": "z", "group": "g"}, {"id": "w", "group": float("nan")}],
    [{"id": str(i), "augmented": bool(i % 2), "source_id": None if i < 3 else "s"} for i in range(7)],
])
def test_a_frame_read_a_chunk_at_a_time_equals_the_frame_of_every_row(tmp_path, rows):
    path = tmp_path / "rows.jsonl"
    write_jsonl(path, rows)
    whole = _frame_of_dicts(path)
    for chunk in (1, 2, 3, 50_000):
        frame = read_frame(path, chunk=chunk)
        pd.testing.assert_frame_equal(frame, whole, check_exact=True)
        assert list(frame.columns) == list(whole.columns)
        # written back, the rows are the same bytes
        write_frame_jsonl(tmp_path / "again.jsonl", frame, chunk=chunk)
        write_jsonl(tmp_path / "reference.jsonl", whole.to_dict(orient="records"))
        assert (tmp_path / "again.jsonl").read_bytes() == (tmp_path / "reference.jsonl").read_bytes()


def test_an_empty_row_file_is_an_empty_frame(tmp_path):
    (tmp_path / "empty.jsonl").write_text("")
    assert read_frame(tmp_path / "empty.jsonl").empty
