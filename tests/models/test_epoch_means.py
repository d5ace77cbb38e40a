"""The training loop's per-step bookkeeping (no Lightning `self.log` per step) and the passive thread pools."""

from __future__ import annotations

import os
import subprocess
import sys

import torch
from pytorch_lightning.strategies import SingleDeviceStrategy

from tunepipe.models.lightning_module import EpochMeans

STRATEGY = SingleDeviceStrategy(device=torch.device("cpu"))


def test_epoch_means_are_batch_size_weighted_and_start_again_after_each_epoch():
    means = EpochMeans()
    for loss, rows in ((1.0, 4), (4.0, 2)):
        means.add("train_loss", torch.tensor(loss), rows)
    assert means.pop(STRATEGY)["train_loss"].item() == (1.0 * 4 + 4.0 * 2) / 6
    assert means.pop(STRATEGY) == {}


def test_a_resumed_epoch_has_the_uninterrupted_epochs_mean_to_the_bit():
    torch.manual_seed(0)
    losses = torch.rand(9)
    whole, first, resumed = EpochMeans(), EpochMeans(), EpochMeans()
    for index, loss in enumerate(losses):
        whole.add("train_loss", loss, 16 - index)
        if index < 4:
            first.add("train_loss", loss, 16 - index)
    resumed.load(first.state(), torch.device("cpu"))  # what a mid-epoch checkpoint carries
    for index, loss in enumerate(losses[4:], start=4):
        resumed.add("train_loss", loss, 16 - index)
    assert torch.equal(resumed.pop(STRATEGY)["train_loss"], whole.pop(STRATEGY)["train_loss"])


def _policy(env: dict[str, str]) -> str:
    code = "import tunepipe, os; print(os.environ['OMP_WAIT_POLICY'])"
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout.strip()


def test_importing_tunepipe_makes_torchs_thread_pool_passive_unless_the_user_chose():
    env = {key: value for key, value in os.environ.items() if key != "OMP_WAIT_POLICY"}
    assert _policy(env) == "PASSIVE"
    assert _policy({**env, "OMP_WAIT_POLICY": "ACTIVE"}) == "ACTIVE"
