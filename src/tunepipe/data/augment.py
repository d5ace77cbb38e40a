"""Text augmentation: random word deletion and adjacent-word swaps, seeded per row."""

from __future__ import annotations

import random


def augment_text(text: str, *, p_delete: float, p_swap: float, rng: random.Random) -> str:
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
    return " ".join(kept)


def augment_rows(rows: list[dict], *, multiplier: float, p_delete: float, p_swap: float, seed: int) -> list[dict]:
    """Return new rows (marked `augmented`), about `multiplier` x len(rows), each changed from its source."""
    rng = random.Random(seed)
    count = int(round(multiplier * len(rows)))
    if count == 0 or not rows:
        return []
    sources = [rows[i % len(rows)] for i in rng.sample(range(len(rows) * max(1, int(multiplier) + 1)), count)]
    new_rows = []
    for n, source in enumerate(sources):
        row_rng = random.Random(f"{seed}:{source['id']}:{n}")
        text = augment_text(source["text"], p_delete=p_delete, p_swap=p_swap, rng=row_rng)
        if text == source["text"]:
            continue  # nothing changed: an exact copy adds weight, not variety
        new_rows.append({"id": f"{source['id']}-aug{n}", "text": text, "label": source["label"], "augmented": True, "source_id": source["id"]})
    return new_rows
