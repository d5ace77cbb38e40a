"""Seeded corruptions of texts: character typos, case changes, punctuation removal, word dropping.

Each function takes a text, a `random.Random` for that row and the severity's amount, and returns the
corrupted text. The number of edits is fixed by the amount (not drawn), so a severity always means the same
size of change: a typo at amount a edits max(1, round(a x letters)) letters, where letters are the ASCII
letters of the text (the keys a keyboard has neighbours for).
"""

from __future__ import annotations

import random
import string
from collections.abc import Callable, Sequence

from tunepipe.robustness import Perturbation, Perturbed, row_seed

#: Neighbouring keys on a QWERTY keyboard (same row and the rows above and below).
_ROWS = ("qwertyuiop", "asdfghjkl", "zxcvbnm")
KEYBOARD_NEIGHBOURS: dict[str, str] = {}
for _r, _keys in enumerate(_ROWS):
    for _c, _key in enumerate(_keys):
        _near = []
        for _dr in (-1, 0, 1):
            _row = _r + _dr
            if 0 <= _row < len(_ROWS):
                for _dc in (-1, 0, 1):
                    _col = _c + _dc
                    if (_dr, _dc) != (0, 0) and 0 <= _col < len(_ROWS[_row]):
                        _near.append(_ROWS[_row][_col])
        KEYBOARD_NEIGHBOURS[_key] = "".join(_near)

#: The amount each severity means, per perturbation: (unit, {severity: amount}).
AMOUNTS: dict[str, tuple[str, dict[int, float]]] = {
    "typo_swap": ("share of letters in swapped adjacent pairs", {1: 0.02, 2: 0.05, 3: 0.10}),
    "typo_drop": ("share of letters deleted", {1: 0.02, 2: 0.05, 3: 0.10}),
    "typo_insert": ("share of letters followed by an inserted neighbouring key", {1: 0.02, 2: 0.05, 3: 0.10}),
    "typo_keyboard": ("share of letters replaced by a neighbouring key", {1: 0.02, 2: 0.05, 3: 0.10}),
    "case_upper": ("share of words upper-cased", {1: 0.25, 2: 0.5, 3: 1.0}),
    "punctuation_drop": ("share of punctuation marks removed", {1: 0.34, 2: 0.67, 3: 1.0}),
    "word_drop": ("share of words deleted", {1: 0.1, 2: 0.2, 3: 0.3}),
}


def _letters(text: str) -> list[int]:
    return [i for i, ch in enumerate(text) if ch.lower() in KEYBOARD_NEIGHBOURS]


def edit_count(text: str, amount: float) -> int:
    """How many letters a typo of this amount edits: max(1, round(amount x letters)), 0 for a text without letters."""
    letters = len(_letters(text))
    return min(letters, max(1, round(amount * letters))) if letters else 0


def _neighbour(ch: str, rng: random.Random) -> str:
    near = rng.choice(KEYBOARD_NEIGHBOURS[ch.lower()])
    return near.upper() if ch.isupper() else near


def typo_swap(text: str, rng: random.Random, amount: float) -> str:
    """Swap edit_count // 2 (at least 1) non-overlapping pairs of adjacent, different letters."""
    pairs = [i for i in range(len(text) - 1) if text[i].lower() in KEYBOARD_NEIGHBOURS and text[i + 1].lower() in KEYBOARD_NEIGHBOURS
             and text[i] != text[i + 1]]
    wanted = max(1, edit_count(text, amount) // 2) if pairs else 0
    rng.shuffle(pairs)
    chars, used, done = list(text), set(), 0
    for i in pairs:
        if done == wanted:
            break
        if i in used or i + 1 in used:
            continue
        chars[i], chars[i + 1] = chars[i + 1], chars[i]
        used.update((i, i + 1))
        done += 1
    return "".join(chars)


def typo_drop(text: str, rng: random.Random, amount: float) -> str:
    drop = set(rng.sample(_letters(text), edit_count(text, amount)))
    return "".join(ch for i, ch in enumerate(text) if i not in drop)


def typo_insert(text: str, rng: random.Random, amount: float) -> str:
    after = set(rng.sample(_letters(text), edit_count(text, amount)))
    return "".join(ch + (_neighbour(ch, rng) if i in after else "") for i, ch in enumerate(text))


def typo_keyboard(text: str, rng: random.Random, amount: float) -> str:
    chars = list(text)
    for i in sorted(rng.sample(_letters(text), edit_count(text, amount))):
        chars[i] = _neighbour(chars[i], rng)
    return "".join(chars)


def _words(text: str) -> list[str]:
    return text.split()


def case_upper(text: str, rng: random.Random, amount: float) -> str:
    """Upper-case max(1, round(amount x words)) words (white space is normalised to single spaces)."""
    words = _words(text)
    if not words:
        return text
    chosen = set(rng.sample(range(len(words)), min(len(words), max(1, round(amount * len(words))))))
    return " ".join(word.upper() if i in chosen else word for i, word in enumerate(words))


def punctuation_drop(text: str, rng: random.Random, amount: float) -> str:
    marks = [i for i, ch in enumerate(text) if ch in string.punctuation]
    drop = set(rng.sample(marks, min(len(marks), max(1, round(amount * len(marks)))))) if marks else set()
    return "".join(ch for i, ch in enumerate(text) if i not in drop)


def word_drop(text: str, rng: random.Random, amount: float) -> str:
    """Delete max(1, round(amount x words)) words, always keeping at least one."""
    words = _words(text)
    if len(words) < 2:
        return text
    drop = set(rng.sample(range(len(words)), min(len(words) - 1, max(1, round(amount * len(words))))))
    return " ".join(word for i, word in enumerate(words) if i not in drop)


FUNCTIONS: dict[str, Callable[[str, random.Random, float], str]] = {
    "typo_swap": typo_swap,
    "typo_drop": typo_drop,
    "typo_insert": typo_insert,
    "typo_keyboard": typo_keyboard,
    "case_upper": case_upper,
    "punctuation_drop": punctuation_drop,
    "word_drop": word_drop,
}


def perturb_texts(name: str, severity: int, texts: Sequence[str], ids: Sequence[str], seed: int) -> list[str]:
    """Every text corrupted by `name` at `severity`, each with its own generator (seed, name, severity, row id)."""
    function, amount = FUNCTIONS[name], AMOUNTS[name][1][severity]
    return [function(text, random.Random(row_seed(seed, name, severity, row_id)), amount) for text, row_id in zip(texts, ids, strict=True)]


def text_perturbations(severities: Sequence[int], encode: Callable[[list[str]], object]) -> list[Perturbation]:
    """Every text perturbation at each severity; `encode(texts)` turns the corrupted texts into a dataset."""

    def make(name: str, severity: int) -> Perturbation:
        def apply(rows: list[dict], dataset: object, seed: int) -> Perturbed:
            texts = perturb_texts(name, severity, [row["text"] for row in rows], [str(row["id"]) for row in rows], seed)
            return Perturbed(encode(texts), texts)

        unit, amounts = AMOUNTS[name]
        return Perturbation(name, severity, amounts[severity], unit, apply)

    return [make(name, severity) for name in FUNCTIONS for severity in severities]
