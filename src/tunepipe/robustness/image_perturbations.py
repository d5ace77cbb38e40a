"""Seeded corruptions of images (kornia): Gaussian noise, blur, brightness, contrast, JPEG re-encoding, rotation.

They work on the decoded uint8 pixels the model sees (N x 3 x H x W, after resizing to `model.image_size`),
computed in [0, 1] and rounded back to uint8, so a perturbed image is a real image. Noise and the rotation's
direction are drawn from a generator per row (seed, perturbation, severity, row id); the rest is deterministic.
"""

from __future__ import annotations

import copy
import io
import math
from collections.abc import Callable, Sequence

import torch

from tunepipe.robustness import Perturbation, Perturbed, row_seed

#: The amount each severity means, per perturbation: (unit, {severity: amount}).
AMOUNTS: dict[str, tuple[str, dict[int, float]]] = {
    "gaussian_noise": ("noise standard deviation, pixels in [0, 1]", {1: 0.04, 2: 0.08, 3: 0.16}),
    "gaussian_blur": ("blur sigma in pixels", {1: 0.5, 2: 1.0, 3: 1.5}),
    "brightness": ("added to every pixel in [0, 1]", {1: 0.1, 2: 0.2, 3: 0.3}),
    "contrast": ("contrast factor around the image's mean (1 = unchanged)", {1: 0.7, 2: 0.5, 3: 0.3}),
    "jpeg": ("JPEG quality", {1: 50, 2: 25, 3: 10}),
    "rotation": ("degrees, direction drawn per image", {1: 5, 2: 10, 3: 15}),
}


def _generator(seed: int, name: str, severity: int, row_id: str) -> torch.Generator:
    return torch.Generator().manual_seed(row_seed(seed, name, severity, row_id))


def gaussian_noise(x: torch.Tensor, amount: float, gens: Sequence[torch.Generator]) -> torch.Tensor:
    noise = torch.stack([torch.randn(x.shape[1:], generator=g) for g in gens]) if len(gens) else torch.zeros_like(x)
    return x + amount * noise


def gaussian_blur(x: torch.Tensor, amount: float, gens: Sequence[torch.Generator]) -> torch.Tensor:
    from kornia.filters import gaussian_blur2d

    size = 2 * math.ceil(2.0 * amount) + 1
    return gaussian_blur2d(x, (size, size), (amount, amount), border_type="reflect")


def brightness(x: torch.Tensor, amount: float, gens: Sequence[torch.Generator]) -> torch.Tensor:
    from kornia.enhance import adjust_brightness

    return adjust_brightness(x, amount, clip_output=False)


def contrast(x: torch.Tensor, amount: float, gens: Sequence[torch.Generator]) -> torch.Tensor:
    from kornia.enhance import adjust_contrast_with_mean_subtraction

    return adjust_contrast_with_mean_subtraction(x, amount)


def jpeg(x: torch.Tensor, amount: float, gens: Sequence[torch.Generator]) -> torch.Tensor:
    """Re-encoded with Pillow at quality `amount` (the codec users' images go through), then decoded."""
    import numpy as np
    from PIL import Image

    out = []
    for image in (x.clamp(0, 1) * 255).round().to(torch.uint8):
        buffer = io.BytesIO()
        Image.fromarray(image.permute(1, 2, 0).numpy()).save(buffer, format="JPEG", quality=int(amount))
        buffer.seek(0)
        with Image.open(buffer) as decoded:
            out.append(torch.from_numpy(np.array(decoded.convert("RGB"))).permute(2, 0, 1))
    return torch.stack(out).float() / 255 if out else x


def rotation(x: torch.Tensor, amount: float, gens: Sequence[torch.Generator]) -> torch.Tensor:
    from kornia.geometry.transform import rotate

    signs = torch.tensor([1.0 if torch.rand(1, generator=g).item() < 0.5 else -1.0 for g in gens])
    return rotate(x, signs * float(amount), padding_mode="zeros") if len(gens) else x


FUNCTIONS: dict[str, Callable[[torch.Tensor, float, Sequence[torch.Generator]], torch.Tensor]] = {
    "gaussian_noise": gaussian_noise,
    "gaussian_blur": gaussian_blur,
    "brightness": brightness,
    "contrast": contrast,
    "jpeg": jpeg,
    "rotation": rotation,
}


def perturb_pixels(name: str, severity: int, pixels: torch.Tensor, ids: Sequence[str], seed: int) -> torch.Tensor:
    """uint8 images (N x 3 x H x W) corrupted by `name` at `severity`, each row with its own generator."""
    function, amount = FUNCTIONS[name], AMOUNTS[name][1][severity]
    gens = [_generator(seed, name, severity, str(row_id)) for row_id in ids]
    out = function(pixels.float() / 255, amount, gens)
    return (out.clamp(0, 1) * 255).round().to(torch.uint8)


def with_pixels(dataset, pixels: torch.Tensor):
    """A copy of an image dataset (tunepipe.data.datamodule.ImageTensors) holding other pixels."""
    perturbed = copy.copy(dataset)
    perturbed.pixels = pixels
    return perturbed


def image_perturbations(severities: Sequence[int]) -> list[Perturbation]:
    """Every image perturbation at each severity."""

    def make(name: str, severity: int) -> Perturbation:
        def apply(rows: list[dict], dataset, seed: int) -> Perturbed:
            pixels = perturb_pixels(name, severity, dataset.pixels, [str(row["id"]) for row in rows], seed)
            return Perturbed(with_pixels(dataset, pixels), pixels)

        unit, amounts = AMOUNTS[name]
        return Perturbation(name, severity, amounts[severity], unit, apply)

    return [make(name, severity) for name in FUNCTIONS for severity in severities]
