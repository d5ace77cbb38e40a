"""Adversarial attacks on the fine-tuned model: FGSM and PGD in the modality's input space, and for texts a bounded
greedy character-level attack that only queries the model.

Every attack is untargeted and judged in the task's terms (`tunepipe.robustness.metrics.Judge`): FGSM and PGD raise
the task's loss of the true targets; the greedy character attack keeps the edit that brings the answer nearest to
changing (`Task.robust_margin`: the true class's probability down; a label across its threshold; the value away from
the clean one). Each returns, per attacked row, the answer under attack and the attacked input where one can be shown
(a text, or uint8 pixels; None for an embedding-space perturbation, which is no text).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from tunepipe.robustness import row_seed
from tunepipe.robustness.adversarial import AttackSpace, PixelSpace, search
from tunepipe.robustness.metrics import Judge, default_judge


@dataclass
class AttackOutcome:
    name: str
    space: str
    epsilon: float | None
    steps: int | None
    #: The answer under attack, per attacked row (`Task.trust_answers`: class indices, 0/1 label vectors, values).
    predictions: np.ndarray
    #: The attacked input per row (text or uint8 pixels), or None where it cannot be shown.
    inputs: list[Any] = field(default_factory=list)
    #: Model queries the attack made (query-based attacks), else None.
    queries: int | None = None
    max_edits: int | None = None


class GradientAttack:
    """FGSM (`method: fgsm`, one step) or PGD (`pgd`) in `space`, batch by batch."""

    def __init__(self, method: str, space: AttackSpace, epsilon: float, steps: int) -> None:
        self.name, self.method, self.space, self.epsilon, self.steps = method, method, space, epsilon, steps

    def run(self, model: nn.Module, rows: list[dict], dataset, targets: torch.Tensor, clean: np.ndarray, *,
            batch_size: int, seed: int, device: str | torch.device = "cpu", judge: Judge | None = None) -> AttackOutcome:
        from tunepipe.data.datamodule import BucketBatchSampler
        from tunepipe.models.inference import model_inputs

        judge = judge or default_judge()
        loss = judge.loss()
        model = model.to(device).eval()
        answers: list[Any] = [None] * len(rows)
        shown: list[Any] = [None] * len(rows)
        for indices in BucketBatchSampler(dataset.lengths(), batch_size, seed=0, shuffle=False):
            inputs = model_inputs(model, dataset.collate([dataset[i] for i in indices]), device)
            labels = targets[indices].to(device)
            delta = search(self.space, model, inputs, labels, method=self.method, epsilon=self.epsilon, steps=self.steps, loss=loss)
            with torch.no_grad():
                for i, answer in zip(indices, judge.answers(self.space.logits(model, inputs, delta).cpu()), strict=True):
                    answers[i] = answer
            if isinstance(self.space, PixelSpace):
                for i, image in zip(indices, self.space.adversarial_pixels(inputs, delta).cpu(), strict=True):
                    shown[i] = image
        return AttackOutcome(self.name, self.space.name, self.epsilon, self.steps if self.method == "pgd" else 1, np.asarray(answers), shown)


def gradient_attacks(space: AttackSpace, attack_cfg: dict[str, Any]) -> list[GradientAttack]:
    return [GradientAttack(method, space, attack_cfg["epsilon"], attack_cfg["steps"]) for method in ("fgsm", "pgd")]


def _candidates(text: str, rng: random.Random, count: int) -> list[str]:
    """Up to `count` distinct texts one character edit away (swap, drop, insert or keyboard neighbour)."""
    from tunepipe.robustness.text_perturbations import typo_drop, typo_insert, typo_keyboard, typo_swap

    edits = (typo_swap, typo_drop, typo_insert, typo_keyboard)
    found: dict[str, None] = {}
    for _ in range(3 * count):
        if len(found) == count:
            break
        edited = rng.choice(edits)(text, rng, 0.0)  # amount 0: exactly one edit
        if edited != text:
            found.setdefault(edited)
    return list(found)


class GreedyCharAttack:
    """At most `max_edits` character edits per text: each round tries `candidates` single edits of every text whose answer
    has not changed yet and keeps the one nearest to changing it (`Task.robust_margin`; one label per row: the lowest true
    label's probability); a text stops once its answer changes (`Task.robust_differ`). Only the rows the task's attacks
    count are attacked (`robust_eligible`: the originally correct ones for one label per row). Queries: at most rows x
    max_edits x candidates."""

    name = "char_greedy"

    def __init__(self, encode: Callable[[list[str]], Any], attack_cfg: dict[str, Any]) -> None:
        self.encode = encode
        self.max_edits = attack_cfg["char_max_edits"]
        self.candidates = attack_cfg["char_candidates"]

    def run(self, model: nn.Module, rows: list[dict], dataset, targets: torch.Tensor, clean: np.ndarray, *,
            batch_size: int, seed: int, device: str | torch.device = "cpu", judge: Judge | None = None) -> AttackOutcome:
        from tunepipe.models.inference import predict_logits

        judge = judge or default_judge()
        texts = [row["text"] for row in rows]
        clean = np.asarray(clean)
        predictions = clean.copy()
        eligible = judge.task.robust_eligible(clean, np.asarray(targets))
        active = [i for i in range(len(rows)) if eligible[i]]
        queries = 0
        for edit in range(self.max_edits):
            options = {i: _candidates(texts[i], random.Random(row_seed(seed, self.name, edit, rows[i]["id"])), self.candidates) for i in active}
            flat = [text for i in active for text in options[i]]
            if not flat:
                break
            logits = predict_logits(model, self.encode(flat), batch_size, device)
            outputs, answers = judge.outputs(logits), judge.answers(logits)
            queries += len(flat)
            start, still = 0, []
            for i in active:
                block = slice(start, start + len(options[i]))
                start += len(options[i])
                if not len(options[i]):
                    continue
                best = block.start + int(np.argmax(judge.task.robust_margin(outputs[block], clean[i], targets[i], judge.stats, judge.decision)))
                texts[i] = options[i][best - block.start]
                predictions[i] = answers[best]
                if not judge.differ(np.asarray(answers[best])[None], np.asarray(clean[i])[None])[0]:
                    still.append(i)
            active = still
        return AttackOutcome(self.name, "characters (queries only)", None, None, predictions, texts, queries, self.max_edits)


def attack_predictions(attacks: Sequence[Any], model: nn.Module, rows: list[dict], dataset, targets: torch.Tensor, clean: np.ndarray, *,
                       batch_size: int, seed: int, device: str | torch.device = "cpu", judge: Judge | None = None) -> list[AttackOutcome]:
    return [attack.run(model, rows, dataset, targets, clean, batch_size=batch_size, seed=seed, device=device, judge=judge) for attack in attacks]
