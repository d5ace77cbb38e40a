"""Text augmentation adds changed, labelled copies of training rows, reproducibly."""

from __future__ import annotations

import json
import random

import pytest

from tunepipe.data.augment import augment_rows, augment_text
from tunepipe.io import read_rows, write_jsonl


def test_augmented_rows_keep_labels_change_text_and_point_to_their_source(labelled_rows):
    extra = list(augment_rows(labelled_rows, multiplier=1.0, p_delete=0.2, p_swap=0.2, seed=0))
    by_id = {row["id"]: row for row in labelled_rows}
    assert 0.8 * len(labelled_rows) <= len(extra) <= len(labelled_rows)
    for row in extra:
        source = by_id[row["source_id"]]
        assert row["augmented"] is True and row["label"] == source["label"]
        assert row["text"] != source["text"]
        assert set(row["text"].split()) <= set(source["text"].split())


def test_same_seed_same_rows(labelled_rows):
    a = list(augment_rows(labelled_rows, multiplier=0.5, p_delete=0.1, p_swap=0.1, seed=7))
    b = list(augment_rows(labelled_rows, multiplier=0.5, p_delete=0.1, p_swap=0.1, seed=7))
    c = list(augment_rows(labelled_rows, multiplier=0.5, p_delete=0.1, p_swap=0.1, seed=8))
    assert a == b and a != c


def test_multiplier_zero_adds_nothing(labelled_rows):
    assert list(augment_rows(labelled_rows, multiplier=0, p_delete=0.5, p_swap=0.5, seed=0)) == []


def test_multiplier_above_one(labelled_rows):
    extra = list(augment_rows(labelled_rows, multiplier=2.0, p_delete=0.3, p_swap=0.3, seed=0))
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


def test_rows_read_lazily_augment_as_a_list_of_them_does(labelled_rows, tmp_path):
    write_jsonl(tmp_path / "train.jsonl", labelled_rows)
    settings = dict(multiplier=1.5, p_delete=0.2, p_swap=0.2, seed=3)
    assert list(augment_rows(read_rows(tmp_path / "train.jsonl"), **settings)) == list(augment_rows(labelled_rows, **settings))


@pytest.mark.parametrize("multiplier", [0.0, 0.5, 2.0])
def test_the_augment_stage_writes_the_originals_then_their_copies(labelled_rows, default_params, tmp_path, multiplier):
    """The stage streams (originals, then copies as they are made); the file and the summary are what the whole list gave."""
    from tunepipe.data.cleaning import MAX_EXAMPLES
    from tunepipe.stages.augment import STAGE
    from tunepipe.stages.harness import main

    write_jsonl(tmp_path / "train.jsonl", labelled_rows)
    params = dict(default_params, augment=dict(default_params["augment"], multiplier=multiplier))
    argv = ["--params", json.dumps(params), "--in", f"train={tmp_path / 'train.jsonl'}",
            "--out", f"train={tmp_path / 'out' / 'train.jsonl'}", "--out", f"summary={tmp_path / 'out' / 'summary.json'}"]
    assert main(STAGE, argv) == 0

    cfg = params["augment"]
    extra = list(augment_rows(labelled_rows, multiplier=multiplier, p_delete=cfg["p_delete"], p_swap=cfg["p_swap"], seed=params["seed"],
                              p_mask=cfg["p_mask"], mask_token=cfg["mask_token"]))
    write_jsonl(tmp_path / "expected.jsonl", [dict(row, augmented=False) for row in labelled_rows] + extra)
    assert (tmp_path / "out" / "train.jsonl").read_bytes() == (tmp_path / "expected.jsonl").read_bytes()
    texts = {row["id"]: row["text"] for row in labelled_rows}
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["original_rows"] == len(labelled_rows) and summary["augmented_rows"] == len(extra)
    assert summary["examples"] == [{"original": texts[row["source_id"]], "augmented": row["text"]} for row in extra[:MAX_EXAMPLES]]
    assert (len(extra) > MAX_EXAMPLES) == (multiplier > 0)  # the examples are then only the first copies
