"""DDP for real on the CPU: `train.accelerator: cpu, train.devices: 2` trains with two processes (gloo).

The stage command is run as Snakemake runs it; Lightning's `ddp` launcher starts rank 1 by re-running that same
command. Checked here: the batch sampler's sharding (every row once per epoch, same steps on every rank), that
both ranks train and only rank 0 writes (no checkpoint, partial file or output from rank 1), bit-identical
results across two runs, metrics reduced over both ranks, a killed run resuming to the uninterrupted run's
result, and the sweep's trial stage on the same path.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from tunepipe.data.datamodule import BucketBatchSampler

pytestmark = pytest.mark.e2e

OUTPUTS = ("best", "history", "config", "summary")


# ------------------------------------------------------------------------------------------- the sampler
@pytest.mark.parametrize("rows, batch_size", [(37, 4), (40, 8), (3, 8), (16, 4)])
def test_training_batches_are_shared_out_evenly_and_cover_every_row(rows, batch_size):
    lengths = [(i * 7) % 13 + 1 for i in range(rows)]
    whole = BucketBatchSampler(lengths, batch_size, seed=5)
    whole.set_epoch(2)
    shards = []
    for rank in range(2):
        sampler = BucketBatchSampler(lengths, batch_size, seed=5, rank=rank, world_size=2)
        sampler.set_epoch(2)
        shards.append(list(sampler))
        assert len(shards[-1]) == len(sampler)
    assert len(shards[0]) == len(shards[1])  # DDP syncs gradients at every step: same number of steps
    dealt = [batch for pair in zip(*shards) for batch in pair]
    assert dealt[: len(list(whole))] == list(whole)  # the one-process order, dealt round-robin, then padding
    assert {i for batch in dealt for i in batch} == set(range(rows))
    again = BucketBatchSampler(lengths, batch_size, seed=5, rank=1, world_size=2)
    again.set_epoch(2)
    assert list(again) == shards[1]  # a pure function of (seed, epoch, rank)
    again.set_epoch(3)
    assert list(again) != shards[1] or rows <= batch_size


@pytest.mark.parametrize("rows", [1, 2, 63, 64, 129])
def test_evaluation_rows_are_split_so_each_is_seen_exactly_once(rows):
    lengths = [(i * 5) % 11 + 1 for i in range(rows)]
    seen = []
    for rank in range(2):
        sampler = BucketBatchSampler(lengths, 64, seed=0, shuffle=False, rank=rank, world_size=2)
        batches = list(sampler)
        assert len(batches) == len(sampler)
        seen += [i for batch in batches for i in batch]
    assert sorted(seen) == list(range(rows))


# ----------------------------------------------------------------------------------- two real processes
def ddp_params(default_params, tiny_model_cfg, **train):
    cfg = dict(default_params["train"], accelerator="cpu", devices=2, max_epochs=3, early_stopping_patience=10, batch_size=8,
               log_every_n_steps=2, head_lr=5e-3, encoder_lr=1e-3, head_init="random")
    cfg.update(train)
    return {"seed": 3, "data": dict(default_params["data"], labels=["neg", "pos"]), "model": tiny_model_cfg, "train": cfg}


def stage_command(stage: str, params: dict, data: Path, out: Path) -> list[str]:
    """The stage's command line as a rule writes it, every output it requires under `out`."""
    import importlib

    spec = importlib.import_module(f"tunepipe.stages.{stage}").STAGE
    suffix = {"best": ".ckpt", "config": ".yaml", "summary": ".json"}
    outs = [arg for key in spec.outputs if key not in spec.optional or key == "best"
            for arg in ("--out", f"{key}={out / (key + suffix.get(key, '.csv'))}")]
    return [sys.executable, "-m", f"tunepipe.stages.{stage}", "--params", json.dumps(params), "--threads", "2",
            "--in", f"train={data / 'train.jsonl'}", "--in", f"val={data / 'val.jsonl'}", *outs]


def history(out: Path) -> list[list[str]]:  # every column but the wall time
    return [line.split(",")[:-1] for line in (out / "history.csv").read_text().splitlines()]


def weights(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, weights_only=True)["state_dict"]


@pytest.fixture(scope="module")
def ddp_data(tmp_path_factory) -> Path:
    from tests.conftest import NEGATIVE, POSITIVE
    from tunepipe.io import write_jsonl

    rows = [{"id": f"{label}{copy}-{i}", "text": f"{text} (take {copy})", "label": label}
            for copy in range(4) for label, texts in (("pos", POSITIVE), ("neg", NEGATIVE)) for i, text in enumerate(texts)]
    data = tmp_path_factory.mktemp("ddp-data")
    write_jsonl(data / "train.jsonl", rows[:36])
    write_jsonl(data / "val.jsonl", rows[36:])  # 12 rows: 6 per rank
    return data


@pytest.fixture(scope="module")
def ddp_run(ddp_data, tmp_path_factory, tiny_model_dir):
    """One uninterrupted 2-process training through the train stage's command."""
    from tunepipe.config import validate_params

    tiny_model_cfg = {"pretrained": str(tiny_model_dir), "allow_download": False, "max_length": 24, "dropout": 0.1}
    params = ddp_params(validate_params({}), tiny_model_cfg)
    out = tmp_path_factory.mktemp("ddp-train")
    started = time.monotonic()
    result = subprocess.run(stage_command("train", params, ddp_data, out), capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]
    print(f"2-process training: {time.monotonic() - started:.0f} s")
    return params, out, result.stderr


def test_two_processes_train_and_only_rank_0_writes(ddp_run):
    _, out, log = ddp_run
    assert "rank 0 of 2 (LightningEnvironment): 3 training batches per epoch, 1 threads" in log  # 36 rows / 8 = 5 batches, 3 each
    assert "rank 1 of 2 (LightningEnvironment): 3 training batches per epoch, 1 threads" in log  # 2 threads shared by 2
    assert log.count("epoch 3 done") == 2  # both ranks trained every epoch
    summary = json.loads((out / "summary.json").read_text())
    assert summary["strategy"] == "ddp" and summary["accelerator"] == "cpu" and summary["epochs_run"] == 3
    left = sorted(str(path.relative_to(out)) for path in out.rglob("*") if ".partial" in path.name or ".rank" in path.name)
    assert left == []  # no temporary file of either rank survives
    assert {path.name for path in (out / "checkpoints").iterdir()} == {"best.ckpt", "last.ckpt", "run.json"}


def test_validation_metrics_are_those_of_the_whole_validation_set(ddp_run, ddp_data):
    """Each rank validates half the rows; the history (rank 0's) must hold what both halves give together."""
    from transformers import AutoTokenizer

    from tunepipe.checkpoints import load_checkpoint
    from tunepipe.data.datamodule import pad_batch
    from tunepipe.io import read_jsonl
    from tunepipe.models.inference import model_inputs

    params, out, _ = ddp_run
    rows = read_jsonl(ddp_data / "val.jsonl")
    model, _ = load_checkpoint(out / "checkpoints" / "last.ckpt")  # the weights after the last epoch, as validated then
    tokenizer = AutoTokenizer.from_pretrained(params["model"]["pretrained"])
    ids = tokenizer([row["text"] for row in rows], truncation=True, max_length=24)["input_ids"]
    batch = pad_batch([(row_ids, ["neg", "pos"].index(row["label"])) for row_ids, row in zip(ids, rows)], tokenizer.pad_token_id)
    with torch.inference_mode():
        logits = model(**model_inputs(model, batch)).float()
    loss = float(torch.nn.functional.cross_entropy(logits, batch["labels"]))
    accuracy = float((logits.argmax(-1) == batch["labels"]).float().mean())
    header, *epochs = (out / "history.csv").read_text().splitlines()
    last = dict(zip(header.split(","), map(float, epochs[-1].split(","))))
    assert last["val_loss"] == pytest.approx(loss, abs=2e-6) and last["val_accuracy"] == pytest.approx(accuracy, abs=1e-6)
    for rank in range(2):  # and neither half alone gives that loss
        half = [i for i in sorted(range(len(rows)), key=lambda i: len(ids[i]))][rank::2]
        assert abs(float(torch.nn.functional.cross_entropy(logits[half], batch["labels"][half])) - last["val_loss"]) > 1e-4


def test_a_killed_two_process_trial_resumes_to_the_uninterrupted_training(ddp_run, ddp_data, tmp_path):
    """The sweep's trial stage (no fold: the same training as train's) killed with SIGKILL, both ranks, after its
    first epoch's checkpoint; re-run, it resumes from last.ckpt and ends bit for bit as the uninterrupted run."""
    params, reference, _ = ddp_run
    trial = dict(params, variant={"name": "base", "overrides": {}, "fold": None})
    out = tmp_path / "trial"
    command = stage_command("trial", trial, ddp_data, out)
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True)
    last = out / "checkpoints" / "last.ckpt"
    deadline = time.monotonic() + 300
    while not last.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert last.exists(), process.stderr.read()[-3000:] if process.poll() is not None else "no checkpoint in 300 s"
    os.killpg(process.pid, signal.SIGKILL)  # rank 0 and the rank 1 it started
    process.communicate(timeout=60)
    assert not (out / "summary.json").exists()
    resumed = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-4000:]
    assert f"resuming from {last}" in resumed.stderr
    assert json.loads((out / "summary.json").read_text())["resumed"] is True
    assert history(out) == history(reference) and len(history(out)) == 4
    ours, theirs = weights(out / "best.ckpt"), weights(reference / "best.ckpt")
    assert ours.keys() == theirs.keys() and all(torch.equal(ours[key], theirs[key]) for key in theirs)
