"""Mid-epoch checkpoints: every `train.checkpoint_minutes`, and on SIGTERM / SIGUSR1, into the same `last.ckpt`.

A mid-epoch checkpoint must resume to exactly what an uninterrupted run does. Lightning's checkpoint already holds
the weights, the optimizer and schedule (stepped before `on_train_batch_end`, where this saves) and the loop
counters. The rest is ours:
- the data order of the rest of the epoch: the batch order is a pure function of (seed, epoch), so the checkpoint
  records how many batches of the epoch were trained and the resumed run's sampler skips them (the data module's
  `resume_at`, set when the checkpoint is loaded, before Lightning builds the training DataLoader);
- the RNG state of every process at that step, applied again when training starts: between loading the checkpoint
  and the first batch, Lightning builds the DataLoader's iterator, which draws a seed from torch's global RNG that
  the uninterrupted run drew at the epoch's start (`RNGState` restores it at load time, right for epoch ends);
- the epoch's running loss sums (the module's `EpochMeans`, behind train_loss_epoch): saved below, set again on load;
- the gradient accumulation window: saves happen only right after an optimizer step, when no gradient is pending;
- never on an epoch's last batch: the epoch-end `last.ckpt` follows it (after validation).
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
import warnings
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.utilities.exceptions import SIGTERMException

from tunepipe.models.backbone import ADAPTER_BASE

log = logging.getLogger("tunepipe.train")

# Lightning warns on every mid-epoch resume unless the DataLoader itself has a state: here the callback below keeps it.
warnings.filterwarnings("ignore", message="You're resuming from a checkpoint that ended before the epoch ended")


def per_rank(state: Any) -> list[Any]:
    """Every process's `state`, in rank order (DDP: gathered from all ranks, a collective); `[state]` alone."""
    dist = torch.distributed
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return [state]
    gathered: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, state)
    return gathered


def own(states: list[Any]) -> Any:
    """This process's entry of a `per_rank` list."""
    dist = torch.distributed
    rank = dist.get_rank() if dist.is_available() and dist.is_initialized() else 0
    return states[rank] if rank < len(states) else states[0]


class MidEpochCheckpoint(pl.Callback):
    """Writes `path` (the run's last.ckpt) in the middle of an epoch: every `minutes` of training since the last
    checkpoint (None or 0: never), on SIGUSR1 (then training goes on), and on SIGTERM (then training stops, and
    `fit` reports it as an interruption). Written under a temporary name and renamed, like every checkpoint here.

    Under DDP rank 0 decides (its clock, its signals) and every rank follows, since saving is collective.
    """

    def __init__(self, path: Path, minutes: float | None, clock=time.monotonic) -> None:
        self.path = Path(path)
        self.seconds = minutes * 60 if minutes else None
        self.clock = clock
        self._last = clock()
        self._usr1 = self._sigterm = False
        self._previous: dict[int, Any] = {}
        self._saving: dict[str, Any] | None = None
        self._trainer: pl.Trainer | None = None
        self._rng_to_restore: dict[str, Any] | None = None

    # -- signals -----------------------------------------------------------------------------------------------
    # While training runs, SIGTERM and SIGUSR1 are this callback's: Lightning's own SIGTERM handler would stop
    # after the current batch even inside a gradient accumulation window (nothing to save there), and under DDP
    # each rank would stop on its own signal; here rank 0's signal decides, at the next step every rank can save.
    # Installed once Lightning has installed its handlers (on_train_start) and put back before it restores the
    # ones from before the run (on_train_end, on_exception).
    def setup(self, trainer: pl.Trainer, module: pl.LightningModule, stage: str) -> None:
        self._trainer = trainer  # setup runs before a checkpoint is loaded (load_state_dict needs the data module)

    def _on_signal(self, signum: int, frame: Any) -> None:
        if signum == signal.SIGTERM:
            self._sigterm = True
        else:
            self._usr1 = True

    def _install_handlers(self) -> None:
        if threading.current_thread() is threading.main_thread() and not self._previous:
            self._previous = {signum: signal.signal(signum, self._on_signal) for signum in (signal.SIGTERM, signal.SIGUSR1)}

    def _restore_handlers(self) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous = {}

    def on_train_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        self._restore_handlers()

    def on_exception(self, trainer: pl.Trainer, module: pl.LightningModule, exception: BaseException) -> None:
        self._restore_handlers()

    # -- when ---------------------------------------------------------------------------------------------------
    def on_train_start(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        from tunepipe.models.lightning_module import RNGState

        self._install_handlers()
        self._last = self.clock()
        if self._rng_to_restore is not None:
            RNGState._set_local_state(self._rng_to_restore)
            self._rng_to_restore = None

    def on_validation_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        self._last = self.clock()  # the epoch-end last.ckpt is written now

    def _decided(self, trainer: pl.Trainer, reason: str | None) -> str | None:
        """Rank 0's `reason`, on every rank (a collective under DDP: called at the same point by all)."""
        return trainer.strategy.broadcast(reason, src=0) if trainer.world_size > 1 else reason

    def _reason(self, trainer: pl.Trainer) -> str | None:
        if not trainer.is_global_zero:
            return None
        if self._sigterm or trainer.received_sigterm:  # Lightning's flag: a SIGTERM before training started
            return "SIGTERM"
        if self._usr1:
            return "SIGUSR1"
        if self.seconds is not None and self.clock() - self._last >= self.seconds:
            return f"every {self.seconds / 60:g} min"
        return None

    def on_train_batch_end(self, trainer: pl.Trainer, module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int) -> None:
        step = batch_idx + 1
        if step % trainer.accumulate_grad_batches or step >= trainer.num_training_batches:
            return  # gradients pending (checkpoints hold none), or the epoch's last batch: wait for a step that can save
        reason = self._decided(trainer, self._reason(trainer))
        if reason is None:
            return
        self.save(trainer, step, reason)
        if reason == "SIGTERM":
            raise SIGTERMException  # every rank stops here, after the same save; `fit` reports the interruption

    def on_train_epoch_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        # A SIGTERM during the epoch's last batch or its validation: stop once the epoch-end last.ckpt is written
        # (by ModelCheckpoint, after this hook), through Lightning's own flag, checked when the epoch ends.
        if self._decided(trainer, "SIGTERM" if trainer.is_global_zero and self._sigterm else None):
            trainer._signal_connector.received_sigterm = True

    # -- what -----------------------------------------------------------------------------------------------------
    def save(self, trainer: pl.Trainer, step: int, reason: str) -> None:
        started = time.perf_counter()
        partial = f"{self.path}.partial"
        from tunepipe.models.lightning_module import RNGState

        self._saving = {"epoch": trainer.current_epoch, "batches": step, "rng": per_rank(RNGState._local_state()),
                        "epoch_sums": per_rank(trainer.lightning_module.epoch_means.state())}
        try:
            trainer.save_checkpoint(partial)
        finally:
            self._saving = None
        if trainer.is_global_zero:
            os.replace(partial, self.path)
            log.info("saved a mid-epoch checkpoint (%s): epoch %d, step %d/%d, %.1f MB in %.2fs", reason, trainer.current_epoch + 1, step,
                     trainer.num_training_batches, self.path.stat().st_size / 1e6, time.perf_counter() - started)
        self._usr1 = False
        self._last = self.clock()

    def state_dict(self) -> dict[str, Any]:
        return dict(self._saving) if self._saving else {}  # empty in the epoch-end last.ckpt: nothing to carry over

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if "batches" not in state:
            return  # an epoch-end checkpoint
        datamodule = self._trainer.datamodule if self._trainer is not None else None
        if datamodule is None or not hasattr(datamodule, "resume_at"):
            raise RuntimeError("a mid-epoch checkpoint resumes only with tunepipe's ClassificationDataModule")
        datamodule.resume_at = (state["epoch"], state["batches"])
        self._rng_to_restore = own(state["rng"])
        module = self._trainer.lightning_module
        module.epoch_means.load(own(state["epoch_sums"]), module.device)
        log.info("resuming in the middle of epoch %d, after its step %d", state["epoch"] + 1, state["batches"])


class AdapterCheckpoint(pl.Callback):
    """Every checkpoint of an adapter run (best, last, mid-epoch) keeps the trainable weights (adapter, head) and the
    training state, not the frozen base, which it names by path and sha256 instead (a few MB for a multi-GB base).
    `tunepipe.checkpoints.load_checkpoint` loads the base, checks it and merges the adapter into it."""

    def __init__(self, base: dict[str, Any]) -> None:
        self.base = base

    def on_save_checkpoint(self, trainer: pl.Trainer, module: pl.LightningModule, checkpoint: dict[str, Any]) -> None:
        trainable = {name for name, parameter in module.named_parameters() if parameter.requires_grad}
        checkpoint["state_dict"] = {key: value for key, value in checkpoint["state_dict"].items() if key in trainable}
        checkpoint[ADAPTER_BASE] = dict(self.base)
