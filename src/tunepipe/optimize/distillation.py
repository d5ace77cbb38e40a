"""Knowledge distillation: a smaller student made from the fine-tuned teacher and trained on its soft labels.

The student is a copy of the teacher that keeps every other transformer layer (`layer_fraction` of them,
evenly spaced from the first, as DistilBERT does), so it starts from the teacher's own weights. It is
trained on the training rows with the task's `distillation_loss` (tunepipe.tasks): `alpha` x its loss on the
teacher's outputs (softened at temperature T where the task has probabilities) plus (1 - alpha) x its loss on
the true targets; for one label per row, Hinton et al.'s KL + cross-entropy. The same loss is the recovery of
pruned levels (`prune.finetune_steps` > 0): they learn from the dense teacher.
What distill computes, without its files; prune evaluates and times the student like a pruning level.
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from tunepipe.errors import ParamsError
from tunepipe.tasks import DEFAULT, Task, get_task

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DistillSettings:
    """The `distill` params section."""

    enabled: bool
    layer_fraction: float
    steps: int
    lr: float
    batch_size: int
    temperature: float
    alpha: float

    @classmethod
    def from_params(cls, section: Mapping[str, Any]) -> DistillSettings:
        return cls(enabled=section["enabled"], layer_fraction=section["layer_fraction"], steps=section["steps"], lr=section["lr"],
                   batch_size=section["batch_size"], temperature=section["temperature"], alpha=section["alpha"])


def distillation_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, targets: torch.Tensor, *,
                      temperature: float, alpha: float, task: Task | None = None, stats: Mapping[str, float] | None = None) -> torch.Tensor:
    """The `task`'s distillation loss (single_label by default: alpha x T^2 x KL(softmax(teacher / T) || softmax(student / T))
    + (1 - alpha) x cross-entropy, batch means); `stats` are the checkpoint's target_stats (regression standardises with them)."""
    task = task or get_task(DEFAULT)
    return task.distillation_loss(student_logits, teacher_logits, targets, temperature=temperature, alpha=alpha, stats=dict(stats or {}))


def _layer_list(model: nn.Module) -> tuple[nn.Module, str, nn.ModuleList]:
    """The module holding the transformer layers, the attribute name and the list itself."""
    for path in ("encoder.encoder.layer", "encoder.transformer.layer", "encoder.layers", "encoder.encoder.layers"):
        parent: Any = model
        *parents, leaf = path.split(".")
        for part in parents:
            parent = getattr(parent, part, None)
        layers = getattr(parent, leaf, None) if parent is not None else None
        if isinstance(layers, nn.ModuleList):
            return parent, leaf, layers
    raise ParamsError(f"distill: cannot find the transformer layers of {type(model).__name__}; set distill.enabled: false.")


def kept_layers(total: int, layer_fraction: float) -> list[int]:
    """The teacher layers a student keeps: `round(total x layer_fraction)` (at least 1), evenly spaced from the first."""
    count = max(1, min(total, round(total * layer_fraction)))
    return sorted({int(i * total / count) for i in range(count)})


def make_student(teacher: nn.Module, layer_fraction: float) -> tuple[nn.Module, list[int]]:
    """A copy of `teacher` that keeps `kept_layers(...)` of its transformer layers (with their weights), and their indices."""
    student = copy.deepcopy(teacher)
    parent, leaf, layers = _layer_list(student)
    keep = kept_layers(len(layers), layer_fraction)
    setattr(parent, leaf, nn.ModuleList([layers[i] for i in keep]))
    config = getattr(getattr(student, "encoder", None), "config", None)
    if config is not None and hasattr(config, "num_hidden_layers"):
        config.num_hidden_layers = len(keep)
    return student, keep


def train_steps(model: nn.Module, dataset, *, steps: int, lr: float, batch_size: int, seed: int, teacher: nn.Module | None = None,
                temperature: float = 2.0, alpha: float = 0.5, decay: bool = False, task: Task | None = None,
                stats: Mapping[str, float] | None = None, device: torch.device | str = "cpu", log: logging.Logger | None = None,
                log_every: int = 50) -> dict[str, Any]:
    """`steps` AdamW steps of `model` on `dataset` (rows with the `task`'s targets, bucketed batches seeded by `seed`): the
    task's distillation loss against `teacher`'s logits, or without one that loss at alpha 0 (the true targets only);
    `decay`: the learning rate falls linearly to zero. The one short training loop of the optimisation phase (distill,
    prune's recovery)."""
    from tunepipe.data.datamodule import BucketBatchSampler
    from tunepipe.models.inference import model_inputs

    if teacher is not None:
        teacher.to(device).eval()
    torch.manual_seed(seed)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: max(0.0, 1.0 - step / max(1, steps))) if decay else None
    model.to(device).train()
    done, epoch, started, losses = 0, 0, time.perf_counter(), []
    while done < steps:
        sampler = BucketBatchSampler(dataset.lengths(), batch_size, seed=seed)
        sampler.set_epoch(epoch)
        for indices in sampler:
            batch = {key: value.to(device) for key, value in dataset.collate([dataset[i] for i in indices]).items()}
            inputs = model_inputs(model, batch)
            logits = model(**inputs)
            if teacher is None:
                loss = distillation_loss(logits, logits.detach(), batch["labels"], temperature=temperature, alpha=0.0, task=task, stats=stats)
            else:
                with torch.no_grad():
                    teacher_logits = teacher(**inputs)
                loss = distillation_loss(logits, teacher_logits, batch["labels"], temperature=temperature, alpha=alpha, task=task, stats=stats)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            if schedule is not None:
                schedule.step()
            losses.append(float(loss.detach()))
            done += 1
            if log is not None and (done % log_every == 0 or done == steps):
                log.info("step %d/%d  loss %.4f  %.1f s", done, steps, sum(losses[-log_every:]) / len(losses[-log_every:]), time.perf_counter() - started)
            if done >= steps:
                break
        epoch += 1
    model.eval()
    last = losses[-log_every:]
    return {"steps": done, "epochs_seen": round(done * batch_size / max(1, len(dataset)), 2),
            "final_loss": round(sum(last) / max(1, len(last)), 6), "seconds": round(time.perf_counter() - started, 2)}


def distill_steps(student: nn.Module, teacher: nn.Module, dataset, *, steps: int, lr: float, batch_size: int, temperature: float, alpha: float,
                  seed: int, task: Task | None = None, stats: Mapping[str, float] | None = None, device: torch.device | str = "cpu",
                  log: logging.Logger = _log, log_every: int = 50) -> dict[str, Any]:
    """Train `student` for `steps` AdamW steps on `dataset` (rows with the `task`'s targets) against `teacher`'s logits,
    the learning rate decayed linearly to zero (no warm-up: the student starts from trained weights); returns what happened."""
    return train_steps(student, dataset, steps=steps, lr=lr, batch_size=batch_size, seed=seed, teacher=teacher, temperature=temperature,
                       alpha=alpha, decay=True, task=task, stats=stats, device=device, log=log, log_every=log_every)
