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
