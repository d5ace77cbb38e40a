"""Adversarial attacks on the fine-tuned model: FGSM and PGD in the modality's input space, and for texts a bounded
greedy character-level attack that only queries the model.

Every attack is untargeted (it pushes the true label's probability down) and returns, per attacked row, the
prediction under attack and the attacked input where one can be shown (a text, or uint8 pixels; None for an
embedding-space perturbation, which is no text).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from tunepipe.robustness import row_seed
from tunepipe.robustness.adversarial import AttackSpace, PixelSpace, search


@dataclass
class AttackOutcome:
    name: str
    space: str
    epsilon: float | None
    steps: int | None
    #: The prediction under attack, per attacked row.
    predictions: torch.Tensor
    #: The attacked input per row (text or uint8 pixels), or None where it cannot be shown.
    inputs: list[Any] = field(default_factory=list)
    #: Model queries the attack made (query-based attacks), else None.
    queries: int | None = None
    max_edits: int | None = None


class GradientAttack:
    """FGSM (`method: fgsm`, one step) or PGD (`pgd`) in `space`, batch by batch."""

    def __init__(self, method: str, space: AttackSpace, epsilon: float, steps: int) -> None:
        self.name, self.method, self.space, self.epsilon, self.steps = method, method, space, epsilon, steps

    def run(self, model: nn.Module, rows: list[dict], dataset, targets: torch.Tensor, clean: torch.Tensor, *,
            batch_size: int, seed: int, device: str | torch.device = "cpu") -> AttackOutcome:
        from tunepipe.data.datamodule import BucketBatchSampler
        from tunepipe.models.inference import model_inputs

        model = model.to(device).eval()
        predictions = torch.empty(len(rows), dtype=torch.long)
        shown: list[Any] = [None] * len(rows)
        for indices in BucketBatchSampler(dataset.lengths(), batch_size, seed=0, shuffle=False):
            inputs = model_inputs(model, dataset.collate([dataset[i] for i in indices]), device)
            labels = targets[indices].to(device)
            delta = search(self.space, model, inputs, labels, method=self.method, epsilon=self.epsilon, steps=self.steps)
            with torch.no_grad():
                predictions[indices] = self.space.logits(model, inputs, delta).argmax(dim=-1).cpu()
            if isinstance(self.space, PixelSpace):
                for i, image in zip(indices, self.space.adversarial_pixels(inputs, delta).cpu(), strict=True):
                    shown[i] = image
        return AttackOutcome(self.name, self.space.name, self.epsilon, self.steps if self.method == "pgd" else 1, predictions, shown)


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
    """At most `max_edits` character edits per text: each round tries `candidates` single edits of every text not yet
    flipped and keeps the one that lowers the true label's probability most; a text stops once its prediction flips.
    Only originally correct texts are attacked. Queries: at most rows x max_edits x candidates."""

    name = "char_greedy"

    def __init__(self, encode: Callable[[list[str]], Any], attack_cfg: dict[str, Any]) -> None:
        self.encode = encode
        self.max_edits = attack_cfg["char_max_edits"]
        self.candidates = attack_cfg["char_candidates"]

    def run(self, model: nn.Module, rows: list[dict], dataset, targets: torch.Tensor, clean: torch.Tensor, *,
            batch_size: int, seed: int, device: str | torch.device = "cpu") -> AttackOutcome:
        from tunepipe.models.inference import predict_logits

        texts = [row["text"] for row in rows]
        predictions = clean.clone()
        active = [i for i in range(len(rows)) if int(clean[i]) == int(targets[i])]
        queries = 0
        for edit in range(self.max_edits):
            options = {i: _candidates(texts[i], random.Random(row_seed(seed, self.name, edit, rows[i]["id"])), self.candidates) for i in active}
            flat = [text for i in active for text in options[i]]
            if not flat:
                break
            probs = predict_logits(model, self.encode(flat), batch_size, device).softmax(dim=-1)
            queries += len(flat)
            start, still = 0, []
            for i in active:
                block = probs[start : start + len(options[i])]
                start += len(options[i])
                if not len(block):
                    continue
                best = int(block[:, int(targets[i])].argmin())
                texts[i] = options[i][best]
                predictions[i] = int(block[best].argmax())
                if int(predictions[i]) == int(targets[i]):
                    still.append(i)
            active = still
        return AttackOutcome(self.name, "characters (queries only)", None, None, predictions, texts, queries, self.max_edits)


def attack_predictions(attacks: Sequence[Any], model: nn.Module, rows: list[dict], dataset, targets: torch.Tensor, clean: torch.Tensor, *,
                       batch_size: int, seed: int, device: str | torch.device = "cpu") -> list[AttackOutcome]:
    return [attack.run(model, rows, dataset, targets, clean, batch_size=batch_size, seed=seed, device=device) for attack in attacks]
