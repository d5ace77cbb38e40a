"""Text perturbations: each one deterministic per row, and of the size its severity says."""

from __future__ import annotations

import random
import string

import pytest

from tunepipe.robustness.text_perturbations import (
    AMOUNTS, FUNCTIONS, KEYBOARD_NEIGHBOURS, case_upper, edit_count, perturb_texts, punctuation_drop, text_perturbations,
    typo_drop, typo_insert, typo_keyboard, typo_swap, word_drop,
)

TEXT = "A warm, funny and wise film; the best of the year by far!"  # 42 letters
LETTERS = sum(ch.isalpha() for ch in TEXT)


def hamming(a: str, b: str) -> int:
    assert len(a) == len(b)
    return sum(x != y for x, y in zip(a, b))


def is_subsequence(short: str, long: str) -> bool:
    it = iter(long)
    return all(ch in it for ch in short)


@pytest.mark.parametrize("amount", [0.0, 0.02, 0.05, 0.10])
def test_each_typo_edits_exactly_the_letters_its_amount_says(amount):
    n = edit_count(TEXT, amount)
    assert n == max(1, round(amount * LETTERS))
    rng = lambda: random.Random(3)  # noqa: E731
    dropped = typo_drop(TEXT, rng(), amount)
    assert len(TEXT) - len(dropped) == n and is_subsequence(dropped, TEXT)
    inserted = typo_insert(TEXT, rng(), amount)
    assert len(inserted) - len(TEXT) == n and is_subsequence(TEXT, inserted)
    keyed = typo_keyboard(TEXT, rng(), amount)
    assert hamming(keyed, TEXT) == n
    assert all(b.lower() in KEYBOARD_NEIGHBOURS[a.lower()] for a, b in zip(TEXT, keyed) if a != b)  # a neighbouring key
    swapped = typo_swap(TEXT, rng(), amount)
    assert hamming(swapped, TEXT) == 2 * max(1, n // 2) and sorted(swapped) == sorted(TEXT)


def test_word_case_and_punctuation_changes_have_the_size_of_their_severity():
    words = TEXT.split()
    for amount in (0.1, 0.2, 0.3):
        dropped = word_drop(TEXT, random.Random(0), amount).split()
        assert len(words) - len(dropped) == max(1, round(amount * len(words))) and is_subsequence(dropped, words)
    lower = TEXT.lower()
    upper = case_upper(lower, random.Random(0), 0.5).split()
    assert sum(a != b for a, b in zip(upper, lower.split())) == round(0.5 * len(words))
    assert case_upper(TEXT, random.Random(0), 1.0) == TEXT.upper()
    marks = sum(ch in string.punctuation for ch in TEXT)
    assert marks == 3
    assert sum(ch in string.punctuation for ch in punctuation_drop(TEXT, random.Random(0), 0.67)) == marks - 2
    assert punctuation_drop(TEXT, random.Random(0), 1.0) == TEXT.translate(str.maketrans("", "", string.punctuation))
    assert word_drop("single", random.Random(0), 0.3) == "single"  # one word is always kept


def test_perturbations_are_seeded_per_row_not_per_batch():
    texts = [TEXT, "tedious, overlong and badly written throughout", "a delightful story that never loses its charm"]
    ids = ["a", "b", "c"]
    for name in FUNCTIONS:
        first = perturb_texts(name, 3, texts, ids, seed=42)
        assert first == perturb_texts(name, 3, texts, ids, seed=42)
        # the same row gets the same corruption whatever else is scored with it, in any order
        assert perturb_texts(name, 3, texts[::-1], ids[::-1], seed=42) == first[::-1]
        assert perturb_texts(name, 3, texts[1:2], ids[1:2], seed=42) == first[1:2]
    assert perturb_texts("typo_drop", 3, texts, ids, seed=1) != perturb_texts("typo_drop", 3, texts, ids, seed=2)


def test_every_perturbation_at_every_severity_is_built_and_stronger_severities_edit_more():
    built = text_perturbations([1, 2, 3], encode=lambda texts: texts)
    assert [(p.name, p.severity) for p in built] == [(name, s) for name in FUNCTIONS for s in (1, 2, 3)]
    assert all(p.amount == AMOUNTS[p.name][1][p.severity] and p.unit for p in built)
    rows = [{"id": "r1", "text": TEXT}]
    lengths = [len(p.apply(rows, None, 0).inputs[0]) for p in built if p.name == "typo_drop"]
    assert lengths == sorted(lengths, reverse=True) and lengths[0] > lengths[-1]
    perturbed = built[0].apply(rows, None, 0)
    assert perturbed.dataset == perturbed.inputs  # what `encode` made of the corrupted texts
