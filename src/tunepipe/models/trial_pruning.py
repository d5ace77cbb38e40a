"""The median pruning rule of a `sweep.method: tpe` trial as a Lightning callback (tunepipe.search has the rule itself)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import pytorch_lightning as pl

from tunepipe.models.lightning_module import validating_while_fitting
from tunepipe.search import worse_than_median

log = logging.getLogger("tunepipe.train")


class MedianPruning(pl.Callback):
    """Stops training after the first validation (after the warm-up) whose `metric` is worse than `medians[k]`, the
    earlier trials' median at their k-th validation: k is the epoch when validation runs at each epoch's end, else
    the count of validations (train.val_check_interval; the warm-up counts validations too).

    The medians come from earlier rounds' finished trials only, so the decision does not depend on scheduling.
    The value compared is the one history.csv records (rounded to 6 digits), so a rerun decides the same. The
    epoch it stopped at is kept in checkpoints: a killed pruned trial that resumes stops again at once.
    """

    def __init__(self, medians: Mapping[int, float], metric: str, mode: str, warmup_epochs: int) -> None:
        self.medians = {int(epoch): float(value) for epoch, value in medians.items()}
        self.metric, self.mode, self.warmup = metric, mode, warmup_epochs
        self.pruned_at: int | None = None
        self.validations = 0

    def on_train_start(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        if self.pruned_at is not None:
            trainer.should_stop = True

    def on_validation_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        if not validating_while_fitting(trainer):
            return
        self.validations += 1
        value = trainer.callback_metrics.get(self.metric)
        if value is None or self.pruned_at is not None:
            return
        value = round(float(value), 6)
        if worse_than_median(value, self.validations, self.medians, self.mode, self.warmup):
            self.pruned_at = self.validations
            trainer.should_stop = True
            log.info("pruned at validation %d: %s %.4f is worse than the earlier rounds' median %.4f", self.validations, self.metric, value,
                     self.medians[self.validations])

    def state_dict(self) -> dict[str, Any]:
        return {"pruned_at": self.pruned_at, "validations": self.validations}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.pruned_at = state_dict.get("pruned_at")
        self.validations = state_dict.get("validations", 0)
