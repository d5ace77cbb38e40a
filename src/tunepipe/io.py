"""Small file helpers shared by every stage: JSON/JSONL/CSV in and out, hashes, atomic writes."""

from __future__ import annotations

import csv
import hashlib
import json
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
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


class JsonlRows(Sequence):
    """A JSONL file's rows as a read-only sequence of dicts, parsed when asked for: the file is memory-mapped and only
    where each line starts is held (8 bytes a row), so a million rows cost megabytes, not gigabytes of dicts.

    Every row reads back exactly as `read_jsonl` gives it (the same `json.loads` of the same line; blank lines are
    skipped). Iterating parses one row at a time; `column(name)` gives one field of every row; `take(indices)` a list
    of some rows. The file must not change while this is open (the stages read their inputs, which only Snakemake
    replaces, between jobs)."""

    def __init__(self, path: Path) -> None:
        import mmap

        self.path = Path(path)
        size = self.path.stat().st_size
        with open(self.path, "rb") as handle:
            self._buffer = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) if size else b""
        bytes_ = np.frombuffer(self._buffer, dtype=np.uint8) if size else np.zeros(0, dtype=np.uint8)
        ends = np.flatnonzero(bytes_ == 10) + 1
        if size and (not len(ends) or ends[-1] != size):  # a last line without its newline
            ends = np.append(ends, size)
        starts = np.concatenate(([0], ends[:-1])).astype(np.int64) if len(ends) else np.zeros(0, dtype=np.int64)
        ends = ends.astype(np.int64)
        # Blank lines (only white space) are no rows; any line of at most 8 bytes is checked, longer ones hold JSON.
        short = np.flatnonzero(ends - starts <= 8)
        blank = [i for i in short if not bytes(self._buffer[starts[i] : ends[i]]).strip()]
        keep = np.ones(len(starts), dtype=bool)
        keep[blank] = False
        self._starts, self._ends = starts[keep], ends[keep]
        del bytes_

    def __len__(self) -> int:
        return len(self._starts)

    def _row(self, index: int) -> dict[str, Any]:
        return json.loads(self._buffer[self._starts[index] : self._ends[index]])

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [self._row(i) for i in range(*index.indices(len(self)))]
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(f"row {index} of {len(self)}")
        return self._row(index)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        for index in range(len(self)):
            yield self._row(index)

    def column(self, name: str, default: Any = None) -> list[Any]:
        """One field of every row (`default` where a row has none)."""
        return [row.get(name, default) for row in self]

    def take(self, indices: Iterable[int]) -> list[dict[str, Any]]:
        return [self._row(int(i)) for i in indices]

    def chunks(self, size: int = 50_000) -> Iterator[list[dict[str, Any]]]:
        """The rows in lists of at most `size`, in order."""
        for start in range(0, len(self), size):
            yield self[start : start + size]

    def digest(self) -> str:
        """sha256 of the file: what the rows are, for fingerprints."""
        return sha256_file(self.path)


def read_rows(path: Path) -> JsonlRows:
    """A stage's row file (JSONL), for reading without holding every row as a dict; see `JsonlRows`."""
    return JsonlRows(path)


def read_frame(path: Path, chunk: int = 50_000):
    """A stage's row file as a pandas frame, exactly `pd.DataFrame(read_jsonl(path))` (the same columns in the same order,
    dtypes and values), built from `chunk` rows at a time, so that never every row is a dict at once.

    Each chunk's frame infers its own dtypes. When every chunk has the same columns with the same dtypes, pandas infers
    those dtypes for all the rows together as well, and the chunks' concatenation is the frame. When they differ (a
    column missing from some chunk, whole numbers in one chunk and fractions in another, a column null throughout one
    chunk) the file is read as one list of dicts, as `pd.DataFrame(read_jsonl(path))` reads it."""
    import pandas as pd

    rows = read_rows(path)
    frames = [pd.DataFrame(part) for part in rows.chunks(chunk)]
    if not frames:
        return pd.DataFrame([])
    first = frames[0]
    alike = all(set(frame.columns) == set(first.columns) and all(frame[name].dtype == first[name].dtype for name in first.columns)
                for frame in frames[1:])
    if not alike:
        del frames
        return pd.DataFrame(list(rows))
    return frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)


def rows_digest(rows: Sequence[Mapping[str, Any]]) -> str:
    """sha256 of some rows: a JsonlRows's file, or the rows' JSON (one row at a time)."""
    if isinstance(rows, JsonlRows):
        return rows.digest()
    digest = hashlib.sha256()
    for row in rows:
        digest.update(json.dumps(row, sort_keys=True, default=str).encode())
        digest.update(b"\n")
    return digest.hexdigest()


def write_frame_jsonl(path: Path, frame, chunk: int = 50_000) -> int:
    """A pandas frame's rows as JSONL, exactly as `write_jsonl(path, frame.to_dict(orient="records"))` writes them, a
    chunk of rows at a time (never every row as a dict at once)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    count = 0
    with open(path, "w", encoding="utf-8") as handle:
        for start in range(0, len(frame), chunk):
            for row in frame.iloc[start : start + chunk].to_dict(orient="records"):
                handle.write(json.dumps(row, ensure_ascii=False, default=_default) + "\n")
                count += 1
    return count


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
