"""Prune at every level, score and time each one, select one: what the prune stage computes, without its files."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset

from tunepipe.optimize import pruning
from tunepipe.optimize.pruning import DENSE, PruningLevel, metric_label
from tunepipe.tasks import DEFAULT, Task, get_task

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PruneSettings:
    """The `prune` params section."""

    method: str  # "unstructured", "structured" or "both"
    sparsities: tuple[float, ...]
    max_accuracy_drop: float
    select: str  # "smallest" or "fastest"
    finetune_steps: int
    finetune_lr: float
    finetune_batch_size: int
    latency_runs: int
    batch_size: int
    #: The recovery fine-tune learns from the dense teacher at this temperature and soft-loss weight (the `distill` section's).
    recovery_temperature: float = 2.0
    recovery_alpha: float = 0.5

    @classmethod
    def from_params(cls, section: Mapping[str, Any], distill: Mapping[str, Any] | None = None) -> PruneSettings:
        recovery = {"recovery_temperature": distill["temperature"], "recovery_alpha": distill["alpha"]} if distill else {}
        return cls(
            **recovery,
            method=section["method"],
            sparsities=tuple(section["sparsities"]),
            max_accuracy_drop=section["max_accuracy_drop"],
            select=section["select"],
            finetune_steps=section["finetune_steps"],
            finetune_lr=section["finetune_lr"],
            finetune_batch_size=section["finetune_batch_size"],
            latency_runs=section["latency_runs"],
            batch_size=section["batch_size"],
        )

    def plan(self) -> list[PruningLevel]:
        """Dense first, then each method at each sparsity, lowest first."""
        methods = ["unstructured", "structured"] if self.method == "both" else [self.method]
        return [DENSE] + [PruningLevel.at(method, ratio) for method in methods for ratio in sorted(self.sparsities)]


@dataclass(frozen=True)
class LabelledSet:
    rows: Dataset
    targets: torch.Tensor


@dataclass(frozen=True)
class Scoring:
    """How a candidate's logits become its numbers: the task's `scores` of its `outputs` (with the checkpoint's
    target_stats and evaluate's decision, multi_label's thresholds), kept for the task's `level_metrics`."""

    task: Task = field(default_factory=lambda: get_task(DEFAULT))
    names: list[str] = field(default_factory=list)
    stats: Mapping[str, float] = field(default_factory=dict)
    decision: Mapping[str, Any] | None = None

    @property
    def metrics(self) -> tuple[str, ...]:
        return tuple(self.task.level_metrics)

    @property
    def selection_metric(self) -> str:
        """The levels.json column candidates are selected on (higher is better)."""
        return f"val_{self.metrics[0]}"

    def __call__(self, logits: torch.Tensor, targets: torch.Tensor) -> dict[str, float]:
        values = self.task.scores(self.task.outputs(logits, dict(self.stats)), targets, self.names, dict(self.decision or {}))
        return {name: values[name] for name in self.metrics}


@dataclass(frozen=True)
class PruneResult:
    #: One row per level, in plan order: the level's record, its size, accuracy and latency (levels.json's "levels").
    levels: list[dict[str, Any]]
    selected: PruningLevel
    #: The selected level's model, on CPU in eval mode.
    model: nn.Module
    #: Why it was kept, in words, and the uncompressed candidate it was held to (`pruning.select_candidate`).
    reason: str = ""
    reference: str = DENSE.name
    #: {method: why its levels were left out} (structured pruning of an architecture it cannot cut)
    skipped: Mapping[str, str] = field(default_factory=dict)

    @property
    def structure(self) -> dict[str, dict[str, int]] | None:
        return pruning.saved_structure(self.model, self.selected)


def latency_ms(model: nn.Module, inputs: dict[str, torch.Tensor], runs: int) -> float:
    """Median eager milliseconds of one forward pass on CPU."""
    from tunepipe.optimize.onnx_export import median_ms

    model.cpu().eval()
    with torch.inference_mode():
        return round(median_ms(lambda: model(**inputs), runs), 3)


def score(model: nn.Module, splits: Mapping[str, LabelledSet], one_row: dict[str, torch.Tensor], *,
          scoring: Scoring, batch_size: int, latency_runs: int, device: torch.device | str = "cpu") -> dict[str, float]:
    """`<split>_<metric>` for each split and each of the task's `level_metrics` (single_label: `val_accuracy`,
    `val_f1_macro`, `test_accuracy`, `test_f1_macro`), then the eager batch-1 `latency_ms`."""
    from tunepipe.models.inference import model_inputs, predict_logits

    result = {}
    for name, split in splits.items():
        values = scoring(predict_logits(model, split.rows, batch_size, device), split.targets)
        result.update({f"{name}_{metric}": value for metric, value in values.items()})
    result["latency_ms"] = latency_ms(model, model_inputs(model, one_row), latency_runs)
    return result


def prune_and_select(dense: nn.Module, settings: PruneSettings, *, val: LabelledSet, test: LabelledSet, scoring: Scoring, seed: int,
                     train: Dataset | None = None, device: torch.device | str = "cpu", log: logging.Logger = _log,
                     candidates: tuple[tuple[PruningLevel, nn.Module], ...] = ()) -> PruneResult:
    """Every level of `settings.plan()`, then each of `candidates` (the distilled student, the sweep's ensemble), scored
    on `val` (selection) and `test` (reported) by `scoring`, timed on one test row; the smallest or fastest within
    `max_accuracy_drop` of the best uncompressed candidate (dense, or the ensemble) on `scoring.selection_metric` is
    selected (`pruning.select_candidate`). `train` (rows with the task's targets) is needed only for the recovery
    fine-tune (`finetune_steps` > 0), which learns from `dense` as its teacher with the task's distillation loss."""
    one_row = test.rows.collate([test.rows[0]])
    example = test.rows.collate([test.rows[i] for i in range(min(2, len(test.rows)))])
    finetune = None
    if settings.finetune_steps > 0:
        if train is None:
            raise ValueError("prune.finetune_steps > 0 needs the training rows")

        def finetune(model: nn.Module) -> None:
            pruning.finetune_steps(model, train, settings.finetune_steps, settings.finetune_lr, settings.finetune_batch_size, seed,
                                   teacher=dense, temperature=settings.recovery_temperature, alpha=settings.recovery_alpha,
                                   task=scoring.task, stats=scoring.stats)

    dense_params = pruning.count_params(dense)
    splits = {"val": val, "test": test}
    rows, models = [], {}
    plan, skipped = settings.plan(), {}
    if any(level.method == "structured" for level in plan) and (why := pruning.structured_unsupported(dense)):
        log.info("prune: %s", why)
        plan, skipped = [level for level in plan if level.method != "structured"], {"structured": why}
    planned = [(level, None) for level in plan] + list(candidates)
    for level, ready in planned:
        model = ready if ready is not None else pruning.prune_at(dense, level, example, finetune)
        row = {**level.as_dict(), **pruning.sparsity_report(model, dense_params),
               **score(model, splits, one_row, scoring=scoring, batch_size=settings.batch_size, latency_runs=settings.latency_runs, device=device)}
        row["finetune_steps"] = 0 if level.method == "dense" or ready is not None else settings.finetune_steps
        rows.append(row)
        models[level.name] = (level, model)
        log.info(
            "%-18s %s %.4f  %s %.4f  params %d (non-zero %d)  eager batch-1 %.2f ms", level.name, metric_label(scoring.selection_metric),
            row[scoring.selection_metric], metric_label(f"test_{scoring.metrics[0]}"), row[f"test_{scoring.metrics[0]}"], row["total_params"],
            row["nonzero_params"], row["latency_ms"],
        )
    choice = pruning.select_candidate(rows, settings.max_accuracy_drop, settings.select, scoring.selection_metric)
    selected, model = models[choice.level["name"]]
    log.info("selected %s", choice.reason)
    return PruneResult(levels=rows, selected=selected, model=model.cpu().eval(), reason=choice.reason, reference=choice.reference["name"],
                       skipped=skipped)


def levels_record(result: PruneResult, settings: PruneSettings, threads: int, scoring: Scoring | None = None) -> dict[str, Any]:
    """results/prune/levels.json: every level, and the selected one by name (with its method and sparsity); which
    column it was selected on, and the decision the scores applied where the task has one (multi_label's thresholds)."""
    scoring = scoring or Scoring()
    decision = scoring.task.decision_in_use(scoring.names, scoring.decision)
    return {
        "method": settings.method,
        "select": settings.select,
        "max_accuracy_drop": settings.max_accuracy_drop,
        "selected": result.selected.name,
        "selected_sparsity": result.selected.sparsity,
        "selected_method": result.selected.method,
        "selected_reason": result.reason,
        "selection_reference": result.reference,
        "selection_split": "val",
        "selection_metric": scoring.selection_metric,
        **({"decision": decision} if decision else {}),
        "latency_batch_size": 1,
        "threads": threads,
        "levels": result.levels,
        **({"skipped_methods": dict(result.skipped)} if result.skipped else {}),
    }
