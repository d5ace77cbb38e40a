"""Small file helpers shared by every stage: JSON/JSONL/CSV in and out, hashes, atomic writes."""

from __future__ import annotations

import csv
import hashlib
import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np


def _default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, sort_keys=False, default=_default) + "\n", encoding="utf-8")


def read_json(path: Path) -> Any:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def write_jsonl(path: Path, rows: Iterable[Mapping[str, Any]]) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    count = 0
    with open(path, "w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False, default=_default) + "\n")
            count += 1
    return count


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    with open(path, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def write_csv(path: Path, rows: list[Mapping[str, Any]], fieldnames: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=fieldnames)
        writer.writeheader()
        writer.writerows(rows)


def read_csv_rows(path: Path) -> list[dict[str, str]]:
    """A CSV file's rows as dicts of strings (header row as keys)."""
    with open(path, encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def sha256_files(paths: list[str]) -> str:
    """One digest over many files' contents (e.g. the images a run read), in the given order."""
    digest = hashlib.sha256()
    for path in paths:
        digest.update(sha256_file(Path(path)).encode())
    return digest.hexdigest()


def partial_path(path: Path) -> Path:
    """Where a stage writes an output before it is complete (same folder, so the final rename is atomic)."""
    return path.with_name(f".{path.name}.partial")


def external_data_name(path: Path) -> str:
    """The external data file (weights over 2 GB) of the ONNX file at `path`, named after the output it becomes: a stage
    writes `.model.onnx.partial` and renames it to `model.onnx`, whose data is then `model.onnx.data` beside it."""
    return f"{path.name.removeprefix('.').removesuffix('.partial')}.data"


def commit_partial(partial: Path, final: Path) -> None:
    """Atomically move a finished output into place; a crash before this leaves no complete-looking file.

    A folder output replaces an old folder of the same name (os.replace alone refuses a non-empty one): the old
    one is renamed aside first, then deleted, so the final name never holds a half-written folder."""
    final.parent.mkdir(parents=True, exist_ok=True)
    if partial.is_dir() and final.is_dir() and not final.is_symlink():
        aside = final.with_name(f".{final.name}.old")
        remove_path(aside)
        os.replace(final, aside)
        os.replace(partial, final)
        remove_path(aside)
        return
    os.replace(partial, final)


def remove_path(path: Path) -> None:
    """Delete a file or a whole folder; nothing if it is not there."""
    if path.is_dir() and not path.is_symlink():
        import shutil

        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)
