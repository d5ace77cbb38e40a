"""Datasets of model inputs (tokenised texts, decoded images), bucketed batches and the Lightning DataModule.

Every dataset has `collate(items) -> batch dict` (model inputs by name, plus `labels`: the targets, whatever the
task's kind; see `target_tensor`) and `lengths()`; a
modality's `encode` (tunepipe.modalities) builds the right one from rows.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterable, Iterator, Sequence

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset, Sampler


#: Texts tokenised per call of the tokenizer's batch API: enough for its speed, few enough that the Python lists it
#: returns (about 10 KiB a row) stay small; each chunk is kept as int32 arrays.
TOKENIZE_CHUNK = 4096


def _tokenized_chunks(texts: Iterable[str], tokenizer, max_length: int | None, chunk: int) -> Iterator[list[list[int]]]:
    """The texts' token ids, `chunk` texts per call of the tokenizer's batch API (parallel threads when
    TOKENIZERS_PARALLELISM allows it: `parallel_tokenizer`). `max_length` None: not truncated."""
    kwargs = {"truncation": True, "max_length": max_length} if max_length is not None else {"truncation": False}
    texts = iter(texts)
    while batch := list(itertools.islice(texts, chunk)):
        yield tokenizer(batch, padding=False, return_attention_mask=False, return_token_type_ids=False, **kwargs)["input_ids"]


def tokenize_compact(texts: Iterable[str], tokenizer, max_length: int | None, chunk: int = TOKENIZE_CHUNK) -> tuple[np.ndarray, np.ndarray]:
    """Every text's token ids, as one flat int32 array and the offsets where each text's ids start (one more than there
    are texts): 4 bytes a token instead of a Python list of ints. `max_length` None: not truncated."""
    pieces, lengths = [], []
    for ids in _tokenized_chunks(texts, tokenizer, max_length, chunk):
        lengths.extend(len(row) for row in ids)
        pieces.append(np.fromiter(itertools.chain.from_iterable(ids), dtype=np.int32))
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    return (np.concatenate(pieces) if pieces else np.zeros(0, dtype=np.int32)), offsets


def token_lengths(texts: Iterable[str], tokenizer, chunk: int = TOKENIZE_CHUNK) -> np.ndarray:
    """Each text's untruncated token count (the data-aware `model.max_length` reads them), a chunk at a time; the ids
    themselves are not kept."""
    lengths = [len(row) for ids in _tokenized_chunks(texts, tokenizer, None, chunk) for row in ids]
    return np.asarray(lengths, dtype=np.int64)


class EncodedTexts(Dataset):
    """Texts tokenised once up front (truncated to max_length) with their label indices.

    The ids are one flat int32 array with offsets (`tokenize_compact`): a million short texts take about 200 MB,
    where lists of Python ints took 10 KiB a row. Items are numpy slices; `collate` pads them as before."""

    def __init__(self, texts: Iterable[str], labels: Sequence[int] | None, tokenizer, max_length: int) -> None:
        self.ids, self.offsets = tokenize_compact(texts, tokenizer, max_length)
        rows = len(self.offsets) - 1
        self.labels = list(labels) if labels is not None else [-1] * rows
        if len(self.labels) != rows:
            raise ValueError(f"{rows} texts but {len(self.labels)} labels")
        self.pad_id = tokenizer.pad_token_id or 0

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, index: int) -> tuple[np.ndarray, int]:
        return self.ids[self.offsets[index] : self.offsets[index + 1]], self.labels[index]

    def lengths(self) -> list[int]:
        return np.diff(self.offsets).tolist()

    def collate(self, items: list[tuple[np.ndarray, int]]) -> dict[str, torch.Tensor]:
        return pad_batch(items, self.pad_id)


class ImageTensors(Dataset):
    """Images decoded once up front to uint8 (3, size, size); the model scales them."""

    def __init__(self, paths: Sequence[str], labels: Sequence[int] | None, size: int) -> None:
        from tunepipe.data.images import open_image, to_array

        arrays = [to_array(open_image(path), size) for path in paths]
        self.pixels = torch.from_numpy(np.stack(arrays)) if arrays else torch.empty((0, 3, size, size), dtype=torch.uint8)
        self.labels = list(labels) if labels is not None else [-1] * len(arrays)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.pixels[index], self.labels[index]

    def lengths(self) -> list[int]:
        return [1] * len(self.labels)

    def collate(self, items: list[tuple[torch.Tensor, int]]) -> dict[str, torch.Tensor]:
        return {"pixels": torch.stack([pixels for pixels, _ in items]), "labels": target_tensor([label for _, label in items])}


def target_tensor(values: Sequence) -> torch.Tensor:
    """A batch's targets: label indices (single_label, and -1 for rows without one) as int64; 0/1 vectors
    (multi_label) and numbers (regression) as float32 (the task's `encode` makes them)."""
    if all(isinstance(value, int) for value in values):
        return torch.tensor(list(values), dtype=torch.long)
    return torch.tensor(list(values), dtype=torch.float32)


def pad_batch(items: list[tuple[Sequence[int], int]], pad_id: int) -> dict[str, torch.Tensor]:
    """Token ids (lists or int arrays) padded on the right to the longest, with the attention mask and the targets."""
    lengths = np.fromiter((len(ids) for ids, _ in items), dtype=np.int64, count=len(items))
    width = int(lengths.max())
    input_ids = np.full((len(items), width), pad_id, dtype=np.int64)
    real = np.arange(width) < lengths[:, None]  # each row's tokens: a prefix of the row
    input_ids[real] = np.concatenate([np.asarray(ids, dtype=np.int64) for ids, _ in items])  # filled row by row
    labels = target_tensor([label for _, label in items])
    return {"input_ids": torch.from_numpy(input_ids), "attention_mask": torch.from_numpy(real.astype(np.int64)), "labels": labels}


class Collate:
    """Picklable collate function (DataLoader workers) that defers to the dataset's own."""

    def __init__(self, dataset) -> None:
        self.dataset = dataset

    def __call__(self, items):
        return self.dataset.collate(items)


class EpochClock:
    """The epoch a batch sampler shuffles for. Lightning calls `set_epoch` on `batch_sampler.sampler`
    (not on the batch sampler itself) at the start of every epoch, including the first one after a resume."""

    def __init__(self) -> None:
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch


class BucketBatchSampler(Sampler[list[int]]):
    """Shuffled batches of similar-length texts (less padding, faster steps).

    The order depends only on (seed, epoch), so a resumed run sees the same batches as an uninterrupted one.
    Under DDP each of `world_size` processes takes its own share (Lightning shards only plain samplers, not a
    batch sampler like this one): training batches dealt round-robin, padded by repeating the first ones so every
    rank runs the same number of steps (DDP syncs gradients at each); evaluation (`shuffle=False`) splits rows,
    each row seen exactly once, so metrics summed over the ranks are the whole set's.
    """

    def __init__(self, lengths: Sequence[int], batch_size: int, seed: int, shuffle: bool = True, pool: int = 50,
                 rank: int = 0, world_size: int = 1) -> None:
        self.lengths = list(lengths)
        self.batch_size = batch_size
        self.seed = seed
        self.shuffle = shuffle
        self.pool = pool
        self.rank, self.world_size = rank, world_size
        self.sampler = EpochClock()

    @property
    def epoch(self) -> int:
        return self.sampler.epoch

    def set_epoch(self, epoch: int) -> None:
        self.sampler.set_epoch(epoch)

    def __len__(self) -> int:
        if not self.shuffle:
            rows = len(range(self.rank, len(self.lengths), self.world_size))
            return (rows + self.batch_size - 1) // self.batch_size
        batches = (len(self.lengths) + self.batch_size - 1) // self.batch_size
        return (batches + self.world_size - 1) // self.world_size

    _resume_at: tuple[int, int] | None = None

    def skip_once(self, epoch: int, batches: int) -> None:
        """Resume mid-epoch: the next pass over `epoch` leaves out its first `batches` batches (this process's share)."""
        self._resume_at = (epoch, batches)

    def __iter__(self) -> Iterator[list[int]]:
        resume, self._resume_at = self._resume_at, None
        skip = resume[1] if resume is not None and resume[0] == self.epoch else 0
        yield from itertools.islice(self._shard_batches(), skip, None)

    def _shard_batches(self) -> Iterator[list[int]]:
        if self.world_size == 1:
            yield from self._all_batches()
            return
        if not self.shuffle:
            indices = sorted(range(len(self.lengths)), key=lambda i: self.lengths[i])[self.rank :: self.world_size]
            yield from (indices[i : i + self.batch_size] for i in range(0, len(indices), self.batch_size))
            return
        batches = list(self._all_batches())
        padded = batches + batches[: len(self) * self.world_size - len(batches)]
        yield from padded[self.rank :: self.world_size]

    def _all_batches(self) -> Iterator[list[int]]:
        """Every batch of the epoch, for one process."""
        indices = list(range(len(self.lengths)))
        if not self.shuffle:
            indices.sort(key=lambda i: self.lengths[i])
            yield from (indices[i : i + self.batch_size] for i in range(0, len(indices), self.batch_size))
            return
        rng = random.Random(f"{self.seed}:{self.epoch}")
        rng.shuffle(indices)
        chunk = self.batch_size * self.pool
        batches = []
        for start in range(0, len(indices), chunk):
            block = sorted(indices[start : start + chunk], key=lambda i: self.lengths[i])
            batches.extend(block[i : i + self.batch_size] for i in range(0, len(block), self.batch_size))
        rng.shuffle(batches)
        yield from batches


class ClassificationDataModule(pl.LightningDataModule):
    def __init__(self, train: Dataset, val: Dataset, batch_size: int, eval_batch_size: int, seed: int, num_workers: int, pin_memory: bool) -> None:
        super().__init__()
        self.train_set, self.val_set = train, val
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size
        self.seed, self.num_workers, self.pin_memory = seed, num_workers, pin_memory
        # (epoch, batches): resuming from a mid-epoch checkpoint, the first pass skips the batches it already trained on
        # (set by tunepipe.models.checkpointing.MidEpochCheckpoint when the checkpoint is loaded).
        self.resume_at: tuple[int, int] | None = None

    def _loader(self, dataset: Dataset, sampler: BucketBatchSampler) -> DataLoader:
        return DataLoader(
            dataset,
            batch_sampler=sampler,
            collate_fn=Collate(dataset),
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
        )

    def _shard(self) -> dict[str, int]:
        """This process's rank and the number of processes (DDP), from the trainer; one process without one."""
        trainer = self.trainer
        return {"rank": trainer.global_rank, "world_size": trainer.world_size} if trainer is not None else {}

    def train_dataloader(self) -> DataLoader:
        sampler = BucketBatchSampler(self.train_set.lengths(), self.batch_size, self.seed, **self._shard())
        if self.resume_at is not None:  # set before the loader's worker processes (if any) start drawing batches
            sampler.set_epoch(self.resume_at[0])
            sampler.skip_once(*self.resume_at)
        return self._loader(self.train_set, sampler)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_set, BucketBatchSampler(self.val_set.lengths(), self.eval_batch_size, self.seed, shuffle=False,
                                                             **self._shard()))
