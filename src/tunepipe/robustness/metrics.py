"""The robustness numbers, in the task's metric (`Task.trust_metric`: accuracy, F1 micro, MAE): the score, the drop
from clean and the flip rate per perturbation; success rate and score under attack; and the flat record
`results/robustness/metrics.json` (a DVC metric).

- score: the task's metric on the perturbed inputs (accuracy: share of rows predicted right).
- drop: how much worse than clean on the same rows, positive = worse (clean accuracy or F1 minus perturbed; for an
  error such as MAE, perturbed minus clean: the increase).
- flip rate: share of rows whose answer differs from the clean one, right or wrong (`Task.robust_differ`: another
  class, another label set, a value moved by more than a tolerance).
- attack success rate: among the rows an attack counts (`Task.robust_eligible`: those the model got right on clean
  inputs for one label per row; every row otherwise), the share whose answer it changed (None when there is none).
  The score under attack is over every attacked row.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import torch

    from tunepipe.tasks import Task

PERTURBATION_COLUMNS = ["perturbation", "severity", "amount", "unit", "rows", "accuracy", "drop", "flip_rate"]
ATTACK_COLUMNS = ["attack", "space", "epsilon", "steps", "max_edits", "rows", "clean_accuracy", "accuracy", "success_rate", "queries"]


@dataclass(frozen=True)
class Judge:
    """A task's view of robustness: how logits become answers (with evaluate's `decision`), how answers are scored and
    when one has changed. `stats` are the checkpoint's target stats (regression: the tolerance is a share of their std)."""

    task: Task
    names: list[str]
    stats: dict[str, float] = field(default_factory=dict)
    decision: dict[str, Any] | None = None

    @property
    def metric(self) -> str:
        return self.task.trust_metric[0]

    @property
    def sign(self) -> int:
        """+1 when higher is better, -1 for an error."""
        return 1 if self.task.trust_metric[1] == "max" else -1

    def outputs(self, logits: torch.Tensor) -> torch.Tensor:
        return self.task.outputs(logits, self.stats)

    def loss(self) -> Any:
        """The task's training loss in its plain form (no class weights): what FGSM and PGD raise."""
        return self.task.loss({}, self.stats, [])

    def answers(self, logits: torch.Tensor) -> np.ndarray:
        return self.task.trust_answers(self.outputs(logits), self.names, self.decision)

    def score(self, answers: Any, targets: Any) -> float | None:
        a, y = np.asarray(answers), np.asarray(targets)
        if not len(y):
            return None
        value = float(self.task.trust_scores(a[None], y[None], self.names)[self.metric][0])
        return round(value, 6) if np.isfinite(value) else None

    def differ(self, answers: Any, clean: Any) -> np.ndarray:
        return np.asarray(self.task.robust_differ(np.asarray(answers), np.asarray(clean), self.stats), dtype=bool)

    def columns(self) -> tuple[list[str], list[str]]:
        """The perturbations and attacks CSVs' columns (PERTURBATION_COLUMNS and ATTACK_COLUMNS in the task's metric)."""
        empty = np.zeros((0,))
        extra = list(self.task.robust_change(empty, empty))
        named = [self.metric if c == "accuracy" else c for c in PERTURBATION_COLUMNS] + extra
        return named, [{"accuracy": self.metric, "clean_accuracy": f"clean_{self.metric}"}.get(c, c) for c in ATTACK_COLUMNS]


def default_judge(names: Sequence[str] = ()) -> Judge:
    """One label per row (the default task): class indices scored by accuracy."""
    from tunepipe.tasks import DEFAULT, get_task

    return Judge(get_task(DEFAULT), list(names))


def sample_rows(rows: list[dict], max_rows: int | None, seed: int) -> list[dict]:
    """At most `max_rows` rows (a seeded sample, kept in file order); all of them when `max_rows` is None or larger."""
    if max_rows is None or len(rows) <= max_rows:
        return list(rows)
    keep = sorted(random.Random(f"robustness:{seed}").sample(range(len(rows)), max_rows))
    return [rows[i] for i in keep]


def _share(flags: np.ndarray) -> float | None:
    return round(float(np.mean(flags)), 6) if len(flags) else None


def flip_rate(answers: Any, clean: Any, judge: Judge) -> float | None:
    return _share(judge.differ(answers, clean))


def success_rate(answers: Any, clean: Any, targets: Any, judge: Judge) -> float | None:
    """Changed among the rows the task's attacks count (one label per row: flipped to wrong among the originally correct)."""
    eligible = np.asarray(judge.task.robust_eligible(np.asarray(clean), np.asarray(targets)), dtype=bool)
    return _share(judge.differ(answers, clean)[eligible])


def _drop(clean_score: float | None, score: float | None, judge: Judge) -> float | None:
    return round(judge.sign * (clean_score - score), 6) if score is not None and clean_score is not None else None


def perturbation_row(name: str, severity: int, amount: float, unit: str, answers: Any, clean: Any, targets: Any, judge: Judge) -> dict[str, Any]:
    score, clean_score = judge.score(answers, targets), judge.score(clean, targets)
    return {"perturbation": name, "severity": severity, "amount": amount, "unit": unit, "rows": len(targets), judge.metric: score,
            "drop": _drop(clean_score, score, judge), "flip_rate": flip_rate(answers, clean, judge),
            **judge.task.robust_change(np.asarray(answers), np.asarray(clean))}


def attack_row(outcome: Any, clean: Any, targets: Any, judge: Judge) -> dict[str, Any]:
    answers = np.asarray(outcome.predictions)
    return {"attack": outcome.name, "space": outcome.space, "epsilon": outcome.epsilon, "steps": outcome.steps, "max_edits": outcome.max_edits,
            "rows": len(targets), f"clean_{judge.metric}": judge.score(clean, targets), judge.metric: judge.score(answers, targets),
            "success_rate": success_rate(answers, clean, targets, judge), "queries": outcome.queries}


def flat_metrics(clean_score: float | None, rows: int, perturbations: list[dict[str, Any]], attacks: list[dict[str, Any]], judge: Judge) -> dict[str, Any]:
    """The headline numbers, flat (DVC diffs them), in the task's metric <m>: robustness_clean_<m>, the worst and the mean
    over every perturbation and severity (robustness_worst_<m>, robustness_worst_drop, robustness_mean_<m>,
    robustness_mean_flip_rate, robustness_<column> the mean of a task column such as mean_abs_change), each perturbation's score at its strongest severity,
    and each attack's score and success rate."""
    m = judge.metric
    flat: dict[str, Any] = {"robustness_rows": rows, f"robustness_clean_{m}": clean_score}
    scored = [row for row in perturbations if row[m] is not None]
    if scored:
        worst = min(scored, key=lambda row: judge.sign * row[m])
        flat |= {
            f"robustness_worst_{m}": worst[m],
            "robustness_worst_drop": max(row["drop"] for row in scored),
            f"robustness_mean_{m}": round(sum(row[m] for row in scored) / len(scored), 6),
            "robustness_mean_flip_rate": round(sum(row["flip_rate"] for row in scored) / len(scored), 6),
        }
        for extra in judge.columns()[0][len(PERTURBATION_COLUMNS):]:
            values = [row[extra] for row in scored if row.get(extra) is not None]
            if values:
                flat[f"robustness_{extra}"] = round(sum(values) / len(values), 6)  # over every perturbation
        for name in dict.fromkeys(row["perturbation"] for row in scored):
            strongest = max((row for row in scored if row["perturbation"] == name), key=lambda row: row["severity"])
            flat[f"robustness_{name}_{m}"] = strongest[m]
    if attacks:
        flat["attack_rows"] = attacks[0]["rows"]
    for row in attacks:
        flat[f"attack_{row['attack']}_{m}"] = row[m]
        flat[f"attack_{row['attack']}_success_rate"] = row["success_rate"]
    return flat


def flipped(changed: Sequence[bool], limit: int, eligible: Sequence[bool] | None = None) -> list[int]:
    """The first `limit` rows whose answer changed (among the `eligible` ones, when given)."""
    picked = []
    for i, moved in enumerate(changed):
        if len(picked) == limit:
            break
        if moved and (eligible is None or eligible[i]):
            picked.append(i)
    return picked
