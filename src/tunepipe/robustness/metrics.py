"""The robustness numbers: accuracy, drop from clean and flip rate per perturbation; success rate and accuracy
under attack; and the flat record `results/robustness/metrics.json` (a DVC metric).

- accuracy: share of rows predicted right on the perturbed inputs.
- drop: clean accuracy minus that, on the same rows (positive = worse).
- flip rate: share of rows whose prediction differs from the clean prediction (right or wrong).
- attack success rate: among the rows the model got right on clean inputs, the share it gets wrong under
  attack (None when it got none right). Accuracy under attack is over every attacked row.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

PERTURBATION_COLUMNS = ["perturbation", "severity", "amount", "unit", "rows", "accuracy", "drop", "flip_rate"]
ATTACK_COLUMNS = ["attack", "space", "epsilon", "steps", "max_edits", "rows", "clean_accuracy", "accuracy", "success_rate", "queries"]


def sample_rows(rows: list[dict], max_rows: int | None, seed: int) -> list[dict]:
    """At most `max_rows` rows (a seeded sample, kept in file order); all of them when `max_rows` is None or larger."""
    if max_rows is None or len(rows) <= max_rows:
        return list(rows)
    keep = sorted(random.Random(f"robustness:{seed}").sample(range(len(rows)), max_rows))
    return [rows[i] for i in keep]


def _share(flags: Sequence[bool]) -> float | None:
    return round(sum(flags) / len(flags), 6) if len(flags) else None


def accuracy(predictions: Sequence[int], targets: Sequence[int]) -> float | None:
    return _share([int(p) == int(t) for p, t in zip(predictions, targets, strict=True)])


def flip_rate(predictions: Sequence[int], clean: Sequence[int]) -> float | None:
    return _share([int(p) != int(c) for p, c in zip(predictions, clean, strict=True)])


def success_rate(predictions: Sequence[int], clean: Sequence[int], targets: Sequence[int]) -> float | None:
    """Flipped to wrong among the originally correct rows."""
    correct = [i for i, (c, t) in enumerate(zip(clean, targets, strict=True)) if int(c) == int(t)]
    return _share([int(predictions[i]) != int(targets[i]) for i in correct])


def perturbation_row(name: str, severity: int, amount: float, unit: str, predictions: Sequence[int], clean: Sequence[int],
                     targets: Sequence[int]) -> dict[str, Any]:
    acc, clean_acc = accuracy(predictions, targets), accuracy(clean, targets)
    return {"perturbation": name, "severity": severity, "amount": amount, "unit": unit, "rows": len(targets), "accuracy": acc,
            "drop": round(clean_acc - acc, 6) if acc is not None and clean_acc is not None else None,
            "flip_rate": flip_rate(predictions, clean)}


def attack_row(outcome: Any, clean: Sequence[int], targets: Sequence[int]) -> dict[str, Any]:
    predictions = [int(p) for p in outcome.predictions]
    return {"attack": outcome.name, "space": outcome.space, "epsilon": outcome.epsilon, "steps": outcome.steps, "max_edits": outcome.max_edits,
            "rows": len(targets), "clean_accuracy": accuracy(clean, targets), "accuracy": accuracy(predictions, targets),
            "success_rate": success_rate(predictions, clean, targets), "queries": outcome.queries}


def flat_metrics(clean_accuracy: float | None, rows: int, perturbations: list[dict[str, Any]], attacks: list[dict[str, Any]]) -> dict[str, Any]:
    """The headline numbers, flat (DVC diffs them): worst and mean over every perturbation and severity, each
    perturbation's accuracy at its strongest severity, and each attack's accuracy and success rate."""
    flat: dict[str, Any] = {"robustness_rows": rows, "robustness_clean_accuracy": clean_accuracy}
    scored = [row for row in perturbations if row["accuracy"] is not None]
    if scored:
        worst = min(scored, key=lambda row: row["accuracy"])
        flat |= {
            "robustness_worst_accuracy": worst["accuracy"],
            "robustness_worst_drop": max(row["drop"] for row in scored),
            "robustness_mean_accuracy": round(sum(row["accuracy"] for row in scored) / len(scored), 6),
            "robustness_mean_flip_rate": round(sum(row["flip_rate"] for row in scored) / len(scored), 6),
        }
        for name in dict.fromkeys(row["perturbation"] for row in scored):
            strongest = max((row for row in scored if row["perturbation"] == name), key=lambda row: row["severity"])
            flat[f"robustness_{name}_accuracy"] = strongest["accuracy"]
    if attacks:
        flat["attack_rows"] = attacks[0]["rows"]
    for row in attacks:
        flat[f"attack_{row['attack']}_accuracy"] = row["accuracy"]
        flat[f"attack_{row['attack']}_success_rate"] = row["success_rate"]
    return flat


def flipped(predictions: Sequence[int], clean: Sequence[int], targets: Sequence[int], limit: int, *, only_correct: bool = False) -> list[int]:
    """The first `limit` rows whose prediction changed (only those that were right before, with `only_correct`)."""
    picked = []
    for i, (p, c, t) in enumerate(zip(predictions, clean, targets, strict=True)):
        if len(picked) == limit:
            break
        if int(p) != int(c) and (not only_correct or int(c) == int(t)):
            picked.append(i)
    return picked
