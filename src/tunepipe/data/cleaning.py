"""Remove rows that would mislead training or evaluation, and say why each one went.

One engine for every modality and task: per-row checks first (each row counted under the first reason that
applies: the modality's input checks, then the task's target checks), then conflicting targets and duplicates by
two keys: an exact key and a near-duplicate key. Kept rows carry their near-duplicate key (`key`) so the split can
keep near-duplicates together and check for leakage.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pandas as pd

from tunepipe.data.text import dedup_key, has_invalid_encoding, normalise_whitespace, word_count
from tunepipe.errors import DataError

if TYPE_CHECKING:
    from tunepipe.tasks import Task

# Examples kept per removal reason (and by augment); the report shows report.examples of them, so changing
# how many it shows does not rerun cleaning.
MAX_EXAMPLES = 20
TEXT_EARLY, TEXT_LATE = ("empty", "invalid_encoding"), ("too_short", "too_long")
IMAGE_EARLY = ("unreadable", "too_large", "unsupported_mode", "too_small")
#: After every row check: near-duplicates whose targets disagree, then exact and near duplicates.
GROUP_REASONS = ("conflicting_label", "duplicate", "near_duplicate")
# The reasons of the default task (single_label), in order.
TEXT_REASONS = (*TEXT_EARLY, "missing_label", "undeclared_label", *TEXT_LATE, *GROUP_REASONS)
IMAGE_REASONS = (*IMAGE_EARLY, "missing_label", "undeclared_label", *GROUP_REASONS)


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
    #: The task's other facts: labels dropped from rows, label cardinality, the target's distribution, merged conflicts.
    targets: dict[str, Any] = field(default_factory=dict)

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
            **self.targets,
        }


def _clean(
    rows: pd.DataFrame,
    early: list[tuple[str, pd.Series]],
    late: list[tuple[str, pd.Series]],
    *,
    task: Task,
    example_column: str,
    labels: list[str] | None,
    drop_duplicates: bool,
    drop_conflicting_labels: bool,
    max_examples: int,
    source: str,
) -> tuple[pd.DataFrame, CleanReport]:
    """Row checks in order: the modality's early checks, the task's target checks, the modality's late checks;
    then conflicting targets and duplicates among the rows still kept."""
    rows, target_checks, facts = task.clean_targets(rows, labels)
    checks = [*early, *target_checks, *late]
    reasons = (*(name for name, _ in checks), *GROUP_REASONS)
    report = CleanReport(input_rows=len(rows), reasons=reasons)
    reason = pd.Series("", index=rows.index, dtype=object)

    def mark(mask: pd.Series, name: str) -> None:
        reason[mask & (reason == "")] = name

    for name, mask in checks:
        mark(mask, name)
    if drop_conflicting_labels:
        rows, conflicting, merged = task.resolve_conflicts(rows, reason == "")
        mark(conflicting, "conflicting_label")
        facts.update(merged)
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
    if kept.empty:
        raise DataError(
            f"{source}: no rows left after cleaning (removed: "
            + ", ".join(f"{k} {v}" for k, v in report.removed.items() if v)
            + "). Check the data.* columns and labels, and the clean.* limits."
        )
    summary = task.summarise(kept, labels, source)
    report.labels, report.label_names, report.imbalance_ratio = summary.pop("labels"), summary.pop("label_names"), summary.pop("imbalance_ratio")
    report.targets = {**facts, **summary}
    return kept, report


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
    task: Task,
) -> tuple[pd.DataFrame, CleanReport]:
    """Return the kept rows (whitespace-normalised text, plus `key`) and the per-reason report."""
    rows = frame.copy()
    rows["text"] = rows["text"].map(normalise_whitespace)
    rows["exact"] = rows["text"]
    rows["key"] = rows["text"].map(dedup_key)
    words = rows["text"].map(word_count)
    early = [("empty", rows["text"] == ""), ("invalid_encoding", rows["text"].map(has_invalid_encoding))]
    late = [
        ("too_short", words < min_words),
        ("too_long", words > max_words if max_words is not None else pd.Series(False, index=rows.index)),
    ]
    return _clean(rows, early, late, task=task, example_column="text", labels=labels, drop_duplicates=drop_duplicates,
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
    task: Task,
) -> tuple[pd.DataFrame, CleanReport]:
    rows = frame.copy()
    info = inspect_images(rows["path"], min_size)
    rows["exact"], rows["key"] = info["exact"], info["key"]
    early = [(name, info["problem"] == name) for name in ("unreadable", "too_large", "unsupported_mode", "too_small")]
    return _clean(rows, early, [], task=task, example_column="path", labels=labels, drop_duplicates=drop_duplicates,
                  drop_conflicting_labels=drop_conflicting_labels, max_examples=max_examples, source=source)
