"""Augmentation, seeded per row: random word deletion, adjacent swaps and masking for texts; flips, affine
transforms, colour jitter and erasing (kornia) for images."""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterator, Sequence


def augment_text(text: str, *, p_delete: float, p_swap: float, rng: random.Random, p_mask: float = 0.0, mask_token: str = "[MASK]") -> str:
    words = text.split()
    if len(words) < 2:
        return text
    kept = [word for word in words if rng.random() >= p_delete]
    if len(kept) < max(1, len(words) // 2):
        kept = words[:]  # never gut a text: deleting more than half changes what it says
    swaps = int(round(p_swap * len(kept)))
    for _ in range(swaps):
        if len(kept) < 2:
            break
        i = rng.randrange(len(kept) - 1)
        kept[i], kept[i + 1] = kept[i + 1], kept[i]
    if p_mask:
        kept = [mask_token if rng.random() < p_mask else word for word in kept]
    return " ".join(kept)


def pick_sources(rows: Sequence[dict], multiplier: float, seed: int) -> Iterator[dict]:
    """About `multiplier` x len(rows) source rows, each used at most ceil(multiplier) times, one at a time (`rows` may be
    a row file read lazily, tunepipe.io.JsonlRows: only the picked row is parsed)."""
    rng = random.Random(seed)
    count = int(round(multiplier * len(rows)))
    if count == 0 or not rows:
        return
    for i in rng.sample(range(len(rows) * max(1, int(multiplier) + 1)), count):
        yield rows[i % len(rows)]


def augment_rows(rows: Sequence[dict], *, multiplier: float, p_delete: float, p_swap: float, seed: int, p_mask: float = 0.0,
                 mask_token: str = "[MASK]") -> Iterator[dict]:
    """New rows (marked `augmented`), about `multiplier` x len(rows), each changed from its source, made one at a time."""
    for n, source in enumerate(pick_sources(rows, multiplier, seed)):
        row_rng = random.Random(f"{seed}:{source['id']}:{n}")
        text = augment_text(source["text"], p_delete=p_delete, p_swap=p_swap, rng=row_rng, p_mask=p_mask, mask_token=mask_token)
        if text == source["text"]:
            continue  # nothing changed: an exact copy adds weight, not variety
        yield {"id": f"{source['id']}-aug{n}", "text": text, "label": source["label"], "augmented": True, "source_id": source["id"]}


def image_seed(seed: int, row_id: str, n: int) -> int:
    """The torch seed of one augmented image: a hash of the whole (seed, row, copy) string, so every part of
    it (the global seed included) changes the image."""
    digest = hashlib.sha256(f"{seed}:{row_id}:{n}".encode()).digest()
    return int.from_bytes(digest[:8], "little") % (2**63)


def image_augmenter(cfg: dict):
    """A kornia pipeline from `augment.image` params (no torchvision)."""
    import kornia.augmentation as K

    return K.AugmentationSequential(
        K.RandomHorizontalFlip(p=cfg["hflip"]),
        K.RandomAffine(degrees=cfg["degrees"], translate=(cfg["translate"], cfg["translate"]), scale=(1 - cfg["scale"], 1 + cfg["scale"]), p=1.0),
        K.ColorJitter(brightness=cfg["brightness"], contrast=cfg["contrast"], p=0.8),
        K.RandomErasing(p=cfg["erase"], scale=(0.02, 0.15)),
    )


def augment_images(rows: Sequence[dict], *, multiplier: float, cfg: dict, seed: int, out_dir) -> Iterator[dict]:
    """Augmented copies of training images, written as PNG files into `out_dir` one at a time; their rows."""
    from pathlib import Path

    import numpy as np
    import torch

    from tunepipe.data.images import open_image, save_png

    augmenter = image_augmenter(cfg)
    out_dir = Path(out_dir)
    for n, source in enumerate(pick_sources(rows, multiplier, seed)):
        image = np.asarray(open_image(source["path"]).convert("RGB"), dtype=np.float32) / 255.0
        tensor = torch.from_numpy(image).permute(2, 0, 1)[None]
        torch.manual_seed(image_seed(seed, source["id"], n))
        with torch.no_grad():
            augmented = augmenter(tensor)[0].clamp(0, 1)
        path = out_dir / f"{source['id']}-aug{n}.png"
        save_png((augmented.numpy() * 255).round().astype(np.uint8), path)
        yield {"id": f"{source['id']}-aug{n}", "path": str(path.resolve()), "label": source["label"], "augmented": True, "source_id": source["id"]}
