"""`tunepipe predict`: score a table (CSV, JSONL, Parquet) of texts or image paths, or a folder of images, into a CSV."""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from tunepipe.errors import TunepipeError
from tunepipe.serving.runtime import InputError, Predictor

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"}
TABLE_SUFFIXES = {".csv": "CSV", ".tsv": "TSV", ".jsonl": "JSONL", ".ndjson": "JSONL", ".parquet": "Parquet"}


@dataclass(frozen=True)
class Rows:
    ids: list[str]
    inputs: list
    #: Where an input came from, for errors: "reviews.csv line 12", "photos/cat.png".
    where: list[str]


def _table(path: Path) -> tuple[list[dict], Callable[[int], str]]:
    kind = TABLE_SUFFIXES.get(path.suffix.lower())
    if kind is None:
        raise TunepipeError(f"{path}: cannot read {path.suffix or 'a file without a suffix'}; give a .csv, .tsv, .jsonl or .parquet file, or a folder of images.")
    try:
        if kind in ("CSV", "TSV"):
            with open(path, encoding="utf-8", newline="") as handle:
                rows = list(csv.DictReader(handle, delimiter="\t" if kind == "TSV" else ","))
            return rows, lambda i: f"{path} line {i + 2}"
        if kind == "JSONL":
            rows = []
            with open(path, encoding="utf-8") as handle:
                for number, line in enumerate(handle, 1):
                    if line.strip():
                        try:
                            row = json.loads(line)
                        except json.JSONDecodeError as exc:
                            raise TunepipeError(f"{path} line {number}: not valid JSON ({exc.msg}); each line must be one JSON object.") from None
                        if not isinstance(row, dict):
                            raise TunepipeError(f"{path} line {number}: a JSON {type(row).__name__}, expected an object like {{\"text\": ...}}.")
                        rows.append(row)
            return rows, lambda i: f"{path} row {i + 1}"
        try:
            import pyarrow.parquet as pq
        except ImportError:
            raise TunepipeError(f"{path}: reading Parquet needs pyarrow (`pip install pyarrow`), or convert the file to CSV/JSONL.") from None
        return pq.read_table(path).to_pylist(), lambda i: f"{path} row {i + 1}"
    except UnicodeDecodeError as exc:
        raise TunepipeError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start}); save it as UTF-8.") from None


def read_inputs(path: Path, *, modality: str, input_column: str | None = None, id_column: str = "id") -> Rows:
    """The ids and raw inputs of a table, or every image under a folder (ids are paths relative to it)."""
    path = Path(path)
    if not path.exists():
        raise TunepipeError(f"{path}: no such file or folder.")
    if path.is_dir():
        if modality != "image":
            raise TunepipeError(f"{path} is a folder; this bundle classifies texts: give a CSV/JSONL/Parquet file with a text column.")
        files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise TunepipeError(f"{path}: no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in this folder or below it.")
        names = [str(p.relative_to(path)) for p in files]
        return Rows(ids=names, inputs=[str(p) for p in files], where=[str(p) for p in files])
    rows, where = _table(path)
    if not rows:
        raise TunepipeError(f"{path}: no rows to score.")
    column = input_column or ("text" if modality == "text" else "path")
    if column not in rows[0]:
        option = "--text-column" if modality == "text" else "--image-column"
        raise TunepipeError(f"{path}: no column {column!r} (columns: {', '.join(map(str, rows[0]))}); name the input column with {option}.")
    inputs = [row.get(column) for row in rows]
    if modality == "image":  # relative image paths are relative to the table's folder
        inputs = [str(path.parent / value) if isinstance(value, str) and not Path(value).is_absolute() else value for value in inputs]
    ids = [str(row[id_column]) if row.get(id_column) is not None else str(i) for i, row in enumerate(rows)]
    return Rows(ids=ids, inputs=inputs, where=[where(i) for i in range(len(rows))])


def batches(count: int, size: int) -> Iterator[range]:
    for start in range(0, count, size):
        yield range(start, min(start + size, count))


def predict_file(predictor: Predictor, source: Path, out: Path, *, batch_size: int = 64, input_column: str | None = None,
                 id_column: str = "id", progress: bool | None = None) -> int:
    """Score `source` into the CSV `out`; returns the row count. Its columns are `id` and the task's answer: label, confidence
    and one prob_<label> column per label; multi_label: labels (joined by ";") and prob_<label>; regression: prediction.

    `progress` None shows a bar only on a terminal. The CSV is written beside `out` first and renamed when complete.
    """
    from tqdm import tqdm

    rows = read_inputs(source, modality=predictor.bundle.modality, input_column=input_column, id_column=id_column)
    labels, task = predictor.labels, predictor.task
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(f".{out.name}.partial")
    try:
        with open(partial, "w", encoding="utf-8", newline="") as handle, \
                tqdm(total=len(rows.ids), unit="row", desc=f"scoring {source.name}", disable=False if progress else None if progress is None else True) as bar:
            writer = csv.writer(handle)
            writer.writerow(["id", *task.answer_columns(labels)])
            for chunk in batches(len(rows.ids), batch_size):
                values = [rows.inputs[i] for i in chunk]
                try:
                    outputs = predictor.predict(values)
                except InputError as exc:
                    raise TunepipeError(f"{rows.where[chunk[exc.index]]}: the input {exc.reason}. Fix or remove that row, then run again.") from None
                for i, cells in zip(chunk, task.answer_rows(outputs, labels, predictor.decision), strict=True):
                    writer.writerow([rows.ids[i], *cells])
                bar.update(len(chunk))
        partial.replace(out)
    finally:
        partial.unlink(missing_ok=True)
    return len(rows.ids)
