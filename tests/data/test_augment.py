"""Text augmentation adds changed, labelled copies of training rows, reproducibly."""

from __future__ import annotations

import random

from tunepipe.data.augment import augment_rows, augment_text


def test_augmented_rows_keep_labels_change_text_and_point_to_their_source(labelled_rows):
    extra = augment_rows(labelled_rows, multiplier=1.0, p_delete=0.2, p_swap=0.2, seed=0)
    by_id = {row["id"]: row for row in labelled_rows}
    assert 0.8 * len(labelled_rows) <= len(extra) <= len(labelled_rows)
    for row in extra:
        source = by_id[row["source_id"]]
        assert row["augmented"] is True and row["label"] == source["label"]
        assert row["text"] != source["text"]
        assert set(row["text"].split()) <= set(source["text"].split())


def test_same_seed_same_rows(labelled_rows):
    a = augment_rows(labelled_rows, multiplier=0.5, p_delete=0.1, p_swap=0.1, seed=7)
    b = augment_rows(labelled_rows, multiplier=0.5, p_delete=0.1, p_swap=0.1, seed=7)
    c = augment_rows(labelled_rows, multiplier=0.5, p_delete=0.1, p_swap=0.1, seed=8)
    assert a == b and a != c


def test_multiplier_zero_adds_nothing(labelled_rows):
    assert augment_rows(labelled_rows, multiplier=0, p_delete=0.5, p_swap=0.5, seed=0) == []


def test_multiplier_above_one(labelled_rows):
    extra = augment_rows(labelled_rows, multiplier=2.0, p_delete=0.3, p_swap=0.3, seed=0)
    assert len(extra) > len(labelled_rows)


def test_deletion_never_removes_more_than_half_of_the_words():
    text = "one two three four five six seven eight"
    for seed in range(50):
        out = augment_text(text, p_delete=0.9, p_swap=0.0, rng=random.Random(seed))
        assert len(out.split()) >= 4


def test_masking_replaces_words_with_the_mask_token():
    text = "one two three four five six seven eight nine ten"
    out = augment_text(text, p_delete=0.0, p_swap=0.0, p_mask=0.5, mask_token="[MASK]", rng=random.Random(1))
    words = out.split()
    assert len(words) == 10 and 0 < words.count("[MASK]") < 10
    assert [w for w in words if w != "[MASK]"] == [w for w, o in zip(text.split(), words) if o != "[MASK]"]
