"""Image perturbations: uint8 in and out, deterministic per row, stronger with severity."""

from __future__ import annotations

import torch

from tunepipe.robustness.image_perturbations import AMOUNTS, FUNCTIONS, image_perturbations, perturb_pixels


def images(n: int = 4, size: int = 16) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    base = torch.zeros((n, 3, size, size))
    base[:, :, 4:12, 4:12] = 0.8  # a bright square on black, like Fashion-MNIST
    return ((base + 0.05 * torch.rand((n, 3, size, size), generator=g)).clamp(0, 1) * 255).round().to(torch.uint8)


def change(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.float() - b.float()).abs().mean())


def test_every_image_perturbation_keeps_the_format_and_grows_with_severity():
    x, ids = images(), ["a", "b", "c", "d"]
    for name in FUNCTIONS:
        out = [perturb_pixels(name, s, x, ids, seed=0) for s in (1, 2, 3)]
        assert all(o.dtype == torch.uint8 and o.shape == x.shape for o in out), name
        sizes = [change(o, x) for o in out]
        assert 0 < sizes[0] < sizes[2], (name, sizes)


def test_brightness_contrast_and_noise_do_what_their_amount_says():
    x, ids = images(), ["a", "b", "c", "d"]
    brighter = perturb_pixels("brightness", 1, x, ids, seed=0).float()
    unclipped = x.float() + 0.1 * 255 <= 255
    assert torch.allclose(brighter[unclipped], (x.float() + 25.5)[unclipped], atol=1.0)
    flat = perturb_pixels("contrast", 3, x, ids, seed=0).float()
    assert flat.std() < 0.45 * x.float().std()  # factor 0.3 around the mean
    noisy = perturb_pixels("gaussian_noise", 2, x, ids, seed=0).float() - x.float()
    assert abs(float(noisy[:, :, 5:11, 5:11].std()) / 255 - AMOUNTS["gaussian_noise"][1][2]) < 0.01


def test_image_perturbations_are_seeded_per_row():
    x, ids = images(), ["a", "b", "c", "d"]
    for name in ("gaussian_noise", "rotation"):
        first = perturb_pixels(name, 2, x, ids, seed=5)
        assert torch.equal(first, perturb_pixels(name, 2, x, ids, seed=5))
        assert torch.equal(perturb_pixels(name, 2, x.flip(0), ids[::-1], seed=5), first.flip(0))
        assert torch.equal(perturb_pixels(name, 2, x[2:3], ids[2:3], seed=5), first[2:3])
    assert not torch.equal(perturb_pixels("gaussian_noise", 2, x, ids, seed=5), perturb_pixels("gaussian_noise", 2, x, ids, seed=6))


def test_a_perturbation_returns_a_copy_of_the_dataset_with_other_pixels():
    class Pixels:
        def __init__(self, pixels):
            self.pixels = pixels

    x = images(2)
    dataset = Pixels(x)
    built = image_perturbations([2])
    assert [p.name for p in built] == list(FUNCTIONS)
    perturbed = built[0].apply([{"id": "a"}, {"id": "b"}], dataset, 0)
    assert perturbed.dataset is not dataset and dataset.pixels is x and torch.equal(perturbed.dataset.pixels, perturbed.inputs)
