"""How the fine-tuned model holds up beyond clean test accuracy: seeded input corruptions, adversarial attacks,
and the adversarial loss that `train.adversarial` adds to training.

What a perturbation or an attack does to an input depends on the modality, so each modality builds its own
(`Modality.perturbations`, `Modality.attacks`, `Modality.attack_space`); the implementations live here:
`text_perturbations`, `image_perturbations`, `adversarial` (the input spaces gradient attacks move in), `attacks`
(FGSM/PGD and the greedy character attack) and `metrics` (accuracy, drop, flip rate, attack success).

Every random choice comes from a generator seeded by (seed, perturbation, severity, row id), so a row's
corruption does not depend on which other rows were scored with it or in what order.
Importing this package is cheap (no torch): modalities import it at DAG-build time.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

#: Severity levels a perturbation knows (1 mild .. 3 strong); `robustness.severities` picks among them.
SEVERITIES = (1, 2, 3)


def row_seed(seed: int, *parts: Any) -> int:
    """A 63-bit seed for one row's random choices: a hash of the run's seed and what is being done to which row."""
    text = ":".join(str(part) for part in (seed, *parts))
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "big") >> 1


@dataclass(frozen=True)
class Perturbed:
    """A perturbed copy of the scored rows: the dataset to predict on, and each row's perturbed input (a text, or
    a uint8 image array CHW) for examples."""

    dataset: Any
    inputs: Sequence[Any]


@dataclass(frozen=True)
class Perturbation:
    """One corruption at one severity. `apply(rows, dataset, seed)` returns the `Perturbed` rows; `amount` is what
    the severity means in `unit` (e.g. 0.05 "of the characters edited")."""

    name: str
    severity: int
    amount: float
    unit: str
    apply: Callable[[list[dict], Any, int], Perturbed]


class RowSubset:
    """Some rows of a tunepipe dataset (anything with `__getitem__`, `lengths()` and `collate`), as a dataset of its own."""

    def __init__(self, dataset: Any, indices: Sequence[int]) -> None:
        self.dataset, self.indices = dataset, list(indices)
        lengths = dataset.lengths()
        self._lengths = [lengths[i] for i in self.indices]

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int) -> Any:
        return self.dataset[self.indices[index]]

    def lengths(self) -> list[int]:
        return list(self._lengths)

    def collate(self, items: list[Any]) -> Any:
        return self.dataset.collate(items)


def same_item(a: Any, b: Any) -> bool:
    """Whether two dataset items (token ids and label, or a pixel tensor and label) are the same model input."""
    if isinstance(a, (tuple, list)) and isinstance(b, (tuple, list)):
        return len(a) == len(b) and all(same_item(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, np.ndarray) and isinstance(b, np.ndarray):  # token ids (EncodedTexts)
        return a.shape == b.shape and bool(np.array_equal(a, b))
    if hasattr(a, "shape") and hasattr(b, "shape"):
        import torch

        return bool(torch.equal(torch.as_tensor(a), torch.as_tensor(b)))
    return a == b
