"""Where gradient attacks and adversarial training move an input, and the FGSM/PGD search itself.

Two input spaces, one per modality (`Modality.attack_space()`):

- `PixelSpace`: images, an L-inf ball on raw pixels scaled to [0, 1] (epsilon 4/255 = 0.0157 moves each pixel by
  at most 4 grey levels), kept inside [0, 1]. The perturbed pixels stay floats (not rounded to uint8).
- `EmbeddingSpace`: texts, the token embeddings (the output of the encoder's word-embedding table, before
  position embeddings and LayerNorm). Each real token's perturbation has an L2 norm of at most epsilon times
  that token's embedding norm (epsilon 0.1: 10% of the embedding); padding is never moved.

FGSM/FGM is one step of size epsilon from the clean input; PGD takes `steps` steps of 2.5 x epsilon / steps,
each projected back into the ball (no random start, so it is deterministic).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Protocol

import torch
from torch import nn

METHODS = ("fgsm", "pgd")


class AttackSpace(Protocol):
    name: str

    def start(self, model: nn.Module, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        """The zero perturbation (what an attack moves), shaped for these inputs."""

    def logits(self, model: nn.Module, inputs: dict[str, torch.Tensor], delta: torch.Tensor) -> torch.Tensor:
        """The model's logits on the inputs moved by `delta` (differentiable in `delta` and the weights)."""

    def step(self, model: nn.Module, inputs: dict[str, torch.Tensor], delta: torch.Tensor, grad: torch.Tensor,
             size: float, epsilon: float) -> torch.Tensor:
        """`delta` moved `size` (in epsilon's units) up the gradient, projected back into the epsilon ball."""


class PixelSpace:
    name = "pixels in [0, 1], L-inf"

    def start(self, model, inputs):
        return torch.zeros_like(inputs["pixels"], dtype=torch.float32)

    def _clean(self, inputs):
        return inputs["pixels"].float() / 255.0

    def logits(self, model, inputs, delta):
        return model(pixels=(self._clean(inputs) + delta).clamp(0.0, 1.0) * 255.0)

    def step(self, model, inputs, delta, grad, size, epsilon):
        moved = (delta + size * grad.sign()).clamp(-epsilon, epsilon)
        clean = self._clean(inputs)
        return (clean + moved).clamp(0.0, 1.0) - clean

    def adversarial_pixels(self, inputs, delta) -> torch.Tensor:
        """The attacked images as uint8 (for thumbnails)."""
        return ((self._clean(inputs) + delta).clamp(0.0, 1.0) * 255.0).round().to(torch.uint8)


class EmbeddingSpace:
    name = "token embeddings, L2 per token (relative)"

    def _table(self, model: nn.Module) -> nn.Module:
        return model.encoder.get_input_embeddings()

    def start(self, model, inputs):
        ids = inputs["input_ids"]
        return torch.zeros((*ids.shape, self._table(model).embedding_dim), dtype=torch.float32, device=ids.device)

    @contextlib.contextmanager
    def _moved(self, model: nn.Module, delta: torch.Tensor, mask: torch.Tensor) -> Iterator[None]:
        shift = delta * mask.unsqueeze(-1).to(delta.dtype)

        def hook(module, args, output):
            return output + shift.to(output.dtype)

        handle = self._table(model).register_forward_hook(hook)
        try:
            yield
        finally:
            handle.remove()

    def logits(self, model, inputs, delta):
        with self._moved(model, delta, inputs["attention_mask"]):
            return model(**inputs)

    def _radius(self, model, inputs, epsilon):
        with torch.no_grad():
            norms = self._table(model)(inputs["input_ids"]).float().norm(dim=-1, keepdim=True)
        return epsilon * norms * inputs["attention_mask"].unsqueeze(-1).float()

    def step(self, model, inputs, delta, grad, size, epsilon):
        radius = self._radius(model, inputs, 1.0)  # each token's embedding norm
        direction = grad / grad.norm(dim=-1, keepdim=True).clamp(min=1e-12)
        moved = delta + size * radius * direction
        limit = epsilon * radius
        scale = (limit / moved.norm(dim=-1, keepdim=True).clamp(min=1e-12)).clamp(max=1.0)
        return moved * scale


def search(space: AttackSpace, model: nn.Module, inputs: dict[str, torch.Tensor], labels: torch.Tensor, *,
           method: str, epsilon: float, steps: int, loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None) -> torch.Tensor:
    """The perturbation (detached) that raises the loss of `labels` (the task's; cross-entropy by default): FGSM (one
    step) or PGD (`steps` steps).

    Only the perturbation gets gradients (`torch.autograd.grad`), so the model's `.grad` is left untouched.
    """
    if method not in METHODS:
        raise ValueError(f"unknown attack method {method!r}; use one of {METHODS}")
    loss = loss or nn.functional.cross_entropy
    delta = space.start(model, inputs)
    count, size = (1, epsilon) if method == "fgsm" else (steps, 2.5 * epsilon / steps)
    for _ in range(count):
        delta = delta.detach().requires_grad_(True)
        with torch.enable_grad():
            (grad,) = torch.autograd.grad(loss(space.logits(model, inputs, delta).float(), labels), delta)
        delta = space.step(model, inputs, delta.detach(), grad, size, epsilon)
    return delta.detach()


def adversarial_loss(space: AttackSpace, model: nn.Module, inputs: dict[str, torch.Tensor], labels: torch.Tensor, *,
                     method: str, epsilon: float, steps: int,
                     loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None) -> torch.Tensor:
    """The training loss (the task's; cross-entropy by default) on the inputs moved by the attack (FGM/FGSM or PGD):
    the term `train.adversarial` adds."""
    loss = loss or nn.functional.cross_entropy
    delta = search(space, model, inputs, labels, method="fgsm" if method == "fgm" else method, epsilon=epsilon, steps=steps, loss=loss)
    return loss(space.logits(model, inputs, delta).float(), labels)
