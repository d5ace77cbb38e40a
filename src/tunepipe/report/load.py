"""Read the report's input files: CSV tables as rows, Snakemake benchmark files as timings, the rest as JSON.

Which files there are is the report stage's declaration (`tunepipe.stages.report.STAGE.inputs`); this
module only knows how to read each kind.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tunepipe.errors import DataError


def read_rows(path: Path) -> list[dict[str, Any]]:
    """A CSV table (the training history) as row dicts: numbers parsed, `epoch` as an int, blanks as None."""
    rows: list[dict[str, Any]] = []
    with open(path, encoding="utf-8", newline="") as handle:
        for raw in csv.DictReader(handle):
            row: dict[str, Any] = {}
            for key, value in raw.items():
                if key is None:
                    continue
                text = (value or "").strip()
                try:
                    parsed = float(text)
                except ValueError:
                    row[key] = text or None
                    continue
                row[key] = int(parsed) if key == "epoch" and parsed.is_integer() else parsed
            rows.append(row)
    return rows


def read_timings(paths: list[Path]) -> list[dict[str, Any]]:
    """Snakemake `benchmark:` files (TSV: s, h:m:s, max_rss, ...) as {rule, seconds, max_rss_mb}, one per file."""
    rows = []
    for path in paths:
        path = Path(path)
        try:
            with open(path, newline="", encoding="utf-8") as handle:
                records = list(csv.DictReader(handle, delimiter="\t"))
        except (OSError, UnicodeDecodeError, csv.Error) as exc:
            raise DataError(f"report input 'timings': {path} cannot be read: {exc}") from exc
        if not records:
            raise DataError(f"report input 'timings': {path} has no measurement; re-run its rule")
        record = records[-1]

        def measured(key: str) -> float | None:
            try:
                return float(record.get(key) or "")
            except ValueError:
                return None  # Snakemake writes NA where it could not measure

        # results/benchmarks/train.tsv -> "train"; results/benchmarks/trial/<variant>.tsv -> "trial/<variant>"
        parts = path.with_suffix("").parts
        label = "/".join(parts[parts.index("benchmarks") + 1:]) if "benchmarks" in parts[:-1] else path.stem
        rows.append({"rule": label, "seconds": measured("s"), "max_rss_mb": measured("max_rss")})
    return rows


def read_skipped(paths: list[Path]) -> dict[str, str]:
    """The skip rule's markers (results/<step>/skipped.json) as {step: why it did not run}, in pipeline order."""
    skipped = {}
    for path in paths:
        try:
            record = json.loads(Path(path).read_text(encoding="utf-8"))
            skipped[str(record["step"])] = str(record["reason"])
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as exc:
            raise DataError(f"report input 'skipped': {path} cannot be read ({exc}); re-run its skip rule") from exc
    return skipped


#: Inputs given as a list of files, each read into one value by its reader.
LIST_READERS = {"timings": read_timings, "skipped": read_skipped}


def load_inputs(paths: Mapping[str, Any]) -> dict[str, Any]:
    """Read each input by its kind: a list of files (`timings`, `skipped`) by its reader in LIST_READERS, a `.csv`
    file with `read_rows`, anything else as JSON. A missing or unreadable file is a DataError naming its key."""
    loaded: dict[str, Any] = {}
    for key, path in paths.items():
        if key in LIST_READERS:
            loaded[key] = LIST_READERS[key](list(path))
            continue
        path = Path(path)
        if not path.is_file():
            raise DataError(f"report input {key!r}: {path} does not exist; run the stage that writes it first")
        try:
            loaded[key] = read_rows(path) if path.suffix == ".csv" else json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError, csv.Error) as exc:
            raise DataError(f"report input {key!r}: {path} cannot be read: {exc}") from exc
    return loaded
