"""Remove rows that would mislead training or evaluation, and say why each one went.

One engine for every modality: per-row checks first (each row counted under the first reason that applies),
then conflicting labels and duplicates by two keys: an exact key and a near-duplicate key. Kept rows carry
their near-duplicate key (`key`) so the split can keep near-duplicates together and check for leakage.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from tunepipe.data.text import dedup_key, has_invalid_encoding, normalise_whitespace, word_count
from tunepipe.errors import DataError

# Examples kept per removal reason (and by augment); the report shows report.examples of them, so changing
# how many it shows does not rerun cleaning.
MAX_EXAMPLES = 20
TEXT_REASONS = ("empty", "invalid_encoding", "missing_label", "undeclared_label", "too_short", "too_long", "conflicting_label", "duplicate", "near_duplicate")
IMAGE_REASONS = ("unreadable", "too_large", "unsupported_mode", "too_small", "missing_label", "undeclared_label", "conflicting_label", "duplicate", "near_duplicate")


@dataclass
class CleanReport:
    input_rows: int
    reasons: tuple[str, ...] = TEXT_REASONS
    kept_rows: int = 0
    removed: dict[str, int] = field(default_factory=dict)
    examples: dict[str, list[str]] = field(default_factory=dict)
    labels: dict[str, int] = field(default_factory=dict)
    label_names: list[str] = field(default_factory=list)
    imbalance_ratio: float = 1.0

    def as_dict(self) -> dict[str, Any]:
        total = sum(self.labels.values()) or 1
        return {
            "input_rows": self.input_rows,
            "kept_rows": self.kept_rows,
            "removed": self.removed,
            "examples": self.examples,
            "labels": self.labels,
            "label_shares": {label: round(count / total, 4) for label, count in self.labels.items()},
            "label_names": self.label_names,
            "imbalance_ratio": self.imbalance_ratio,
        }


def _clean(
    rows: pd.DataFrame,
    early: list[tuple[str, pd.Series]],
    late: list[tuple[str, pd.Series]],
    *,
    reasons: tuple[str, ...],
    example_column: str,
    labels: list[str] | None,
    drop_duplicates: bool,
    drop_conflicting_labels: bool,
    max_examples: int,
    source: str,
) -> tuple[pd.DataFrame, CleanReport]:
    """Row checks in the order of `reasons`: the modality's early checks, the label checks, its late checks;
    then conflicting labels and duplicates among the rows still kept."""
    undeclared = ~rows["label"].isin(labels) if labels is not None else pd.Series(False, index=rows.index)
    checks = [*early, ("missing_label", rows["label"] == ""), ("undeclared_label", undeclared), *late]
    report = CleanReport(input_rows=len(rows), reasons=reasons)
    reason = pd.Series("", index=rows.index, dtype=object)

    def mark(mask: pd.Series, name: str) -> None:
        reason[mask & (reason == "")] = name

    for name, mask in checks:
        mark(mask, name)
    if drop_conflicting_labels:
        alive = reason == ""
        label_counts = rows[alive].groupby("key")["label"].nunique()
        mark(rows["key"].isin(set(label_counts[label_counts > 1].index)), "conflicting_label")
    if drop_duplicates:
        for key, name in (("exact", "duplicate"), ("key", "near_duplicate")):
            alive = reason == ""
            mark(rows[key].where(alive).duplicated(keep="first") & alive, name)

    for name in reasons:
        removed = rows[reason == name]
        report.removed[name] = int(len(removed))
        report.examples[name] = [str(v) for v in removed[example_column].head(max_examples)] if name != "empty" else []
    kept = rows[reason == ""].drop(columns=["exact"]).reset_index(drop=True)
    report.kept_rows = int(len(kept))
    _check_classes(kept, report, labels, source)
    return kept, report


def _check_classes(kept: pd.DataFrame, report: CleanReport, labels: list[str] | None, source: str) -> None:
    if kept.empty:
        raise DataError(
            f"{source}: no rows left after cleaning (removed: "
            + ", ".join(f"{k} {v}" for k, v in report.removed.items() if v)
            + "). Check the data.* columns and labels, and the clean.* limits."
        )
    counts = kept["label"].value_counts()
    order = list(labels) if labels is not None else sorted(counts.index)
    empty_declared = [label for label in order if counts.get(label, 0) == 0]
    if empty_declared:
        raise DataError(
            f"{source}: declared label(s) {', '.join(map(repr, empty_declared))} have no rows after cleaning; "
            f"found: {', '.join(f'{k} ({v})' for k, v in counts.items())}. Fix data.labels or the label column."
        )
    if len(order) < 2:
        raise DataError(
            f"{source}: only one class ({order[0]!r}, {int(counts.iloc[0])} rows) remains after cleaning; a classifier "
            "needs at least two. Check data.label_column and data.labels."
        )
    report.labels = {label: int(counts[label]) for label in order}
    report.label_names = order
    report.imbalance_ratio = round(float(counts.max() / counts.min()), 4)


def clean_texts(
    frame: pd.DataFrame,
    *,
    labels: list[str] | None,
    min_words: int,
    max_words: int | None = None,
    drop_duplicates: bool = True,
    drop_conflicting_labels: bool = True,
    max_examples: int = MAX_EXAMPLES,
    source: str = "dataset",
) -> tuple[pd.DataFrame, CleanReport]:
    """Return the kept rows (whitespace-normalised text, plus `key`) and the per-reason report."""
    rows = frame.copy()
    rows["text"] = rows["text"].map(normalise_whitespace)
    rows["label"] = rows["label"].map(lambda value: str(value).strip())
    rows["exact"] = rows["text"]
    rows["key"] = rows["text"].map(dedup_key)
    words = rows["text"].map(word_count)
    early = [("empty", rows["text"] == ""), ("invalid_encoding", rows["text"].map(has_invalid_encoding))]
    late = [
        ("too_short", words < min_words),
        ("too_long", words > max_words if max_words is not None else pd.Series(False, index=rows.index)),
    ]
    return _clean(rows, early, late, reasons=TEXT_REASONS, example_column="text", labels=labels, drop_duplicates=drop_duplicates,
                  drop_conflicting_labels=drop_conflicting_labels, max_examples=max_examples, source=source)


def inspect_images(paths: pd.Series, min_size: int) -> pd.DataFrame:
    """Per image: the first problem found (or ""), the exact pixel hash and the perceptual hash."""
    from tunepipe.data.images import SUPPORTED_MODES, ImageTooLarge, difference_hash, open_image, pixel_hash

    records = []
    for path in paths:
        try:
            image = open_image(path)
        except ImageTooLarge:
            records.append({"problem": "too_large", "exact": f"large:{path}", "key": f"large:{path}"})
            continue
        except DataError:
            records.append({"problem": "unreadable", "exact": f"unreadable:{path}", "key": f"unreadable:{path}"})
            continue
        if image.mode not in SUPPORTED_MODES:
            records.append({"problem": "unsupported_mode", "exact": f"mode:{path}", "key": f"mode:{path}"})
        elif min(image.size) < min_size:
            records.append({"problem": "too_small", "exact": f"small:{path}", "key": f"small:{path}"})
        else:
            records.append({"problem": "", "exact": pixel_hash(image), "key": difference_hash(image)})
    return pd.DataFrame(records, index=paths.index)


def clean_images(
    frame: pd.DataFrame,
    *,
    labels: list[str] | None,
    min_size: int,
    drop_duplicates: bool = True,
    drop_conflicting_labels: bool = True,
    max_examples: int = MAX_EXAMPLES,
    source: str = "dataset",
) -> tuple[pd.DataFrame, CleanReport]:
    rows = frame.copy()
    rows["label"] = rows["label"].map(lambda value: str(value).strip())
    info = inspect_images(rows["path"], min_size)
    rows["exact"], rows["key"] = info["exact"], info["key"]
    early = [(name, info["problem"] == name) for name in ("unreadable", "too_large", "unsupported_mode", "too_small")]
    return _clean(rows, early, [], reasons=IMAGE_REASONS, example_column="path", labels=labels, drop_duplicates=drop_duplicates,
                  drop_conflicting_labels=drop_conflicting_labels, max_examples=max_examples, source=source)
