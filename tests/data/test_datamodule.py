"""Length-bucketed batches: every row once per epoch, less padding, a new order each epoch set the way Lightning sets it."""

from __future__ import annotations

from lightning_fabric.utilities.data import _set_sampler_epoch
from torch.utils.data import DataLoader

from tunepipe.data.datamodule import BucketBatchSampler, Collate, EncodedTexts


def test_each_epoch_covers_every_row_once_with_a_new_order():
    lengths = [(i * 7) % 23 + 1 for i in range(100)]
    sampler = BucketBatchSampler(lengths, batch_size=8, seed=1, pool=2)
    loader = DataLoader(list(range(100)), batch_sampler=sampler)
    orders = []
    for epoch in range(3):
        _set_sampler_epoch(loader, epoch)  # exactly what Lightning calls at each epoch start
        batches = list(sampler)
        assert sorted(i for b in batches for i in b) == list(range(100))
        orders.append(batches)
    assert orders[0] != orders[1] != orders[2]
    sampler.set_epoch(1)
    assert list(sampler) == orders[1]  # the order depends only on (seed, epoch): resumable


def test_batches_group_similar_lengths():
    lengths = list(range(1, 257))
    batches = list(BucketBatchSampler(lengths, batch_size=16, seed=0, pool=16))
    spread = max(max(lengths[i] for i in b) - min(lengths[i] for i in b) for b in batches)
    assert spread == 15  # sorted within the pool: each batch spans 16 consecutive lengths


def test_padding_and_attention_mask(tiny_model_dir):
    from tunepipe.models.backbone import load_tokenizer

    tokenizer = load_tokenizer(str(tiny_model_dir))
    data = EncodedTexts(["short", "a somewhat longer text here", "x " * 100], [0, 1, 0], tokenizer, max_length=10)
    assert max(data.lengths()) == 10  # truncated
    batch = Collate(data)([data[0], data[1]])
    assert batch["input_ids"].shape == batch["attention_mask"].shape
    assert batch["attention_mask"][0].sum() == data.lengths()[0]
    assert batch["labels"].tolist() == [0, 1]


def test_compact_tokens_equal_the_tokenizers_lists_across_chunks(tiny_model_dir):
    """Chunks of 3 over 8 texts (a partial last chunk): the flat ids and offsets are the tokenizer's own lists, and
    the untruncated lengths (max_length: auto) are the lists' lengths."""
    from tunepipe.data.datamodule import token_lengths, tokenize_compact
    from tunepipe.models.backbone import load_tokenizer

    tokenizer = load_tokenizer(str(tiny_model_dir))
    texts = ["short", "a somewhat longer text here", "x " * 40, "", "one more", "and another one", "tokens " * 5, "end"]
    expected = tokenizer(texts, truncation=False)["input_ids"]
    ids, offsets = tokenize_compact(iter(texts), tokenizer, None, chunk=3)
    assert [ids[offsets[i]:offsets[i + 1]].tolist() for i in range(len(texts))] == expected
    assert token_lengths(iter(texts), tokenizer, chunk=3).tolist() == [len(row) for row in expected]
    truncated, _ = tokenize_compact(texts, tokenizer, 6, chunk=3)
    assert len(truncated) == sum(min(6, len(row)) for row in expected)
    assert tokenize_compact([], tokenizer, 6)[0].size == 0 and token_lengths([], tokenizer).size == 0
